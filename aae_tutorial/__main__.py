"""The course's commands behind one entry point: ``python -m aae_tutorial COMMAND [--help]``.

    run          train any experiment of the catalogue at any scale, resumably, and write its record
    full_course  execute the book's notebooks (paper scale by default), or print its plan (--plan)
    gpu_check    every chapter's step captured as a CUDA graph against the same step run eagerly, on a GPU
    bench        the training benchmark of the Performance appendix

Each command's own ``--help`` says what it takes, e.g. ``python -m aae_tutorial run --help``.
"""
from __future__ import annotations

import sys


def _run(argv: list[str]) -> int | None:
    from .run import main

    return main(argv)


def _full_course(argv: list[str]) -> int | None:
    from .full_course import main

    return main(argv)


def _gpu_check(argv: list[str]) -> int | None:
    from .gpu_check import main

    return main(argv)


def _bench(argv: list[str]) -> int | None:
    from .bench import main

    return main(argv)


#: Each command, imported only when it is asked for (``--help`` stays quick).
COMMANDS = {"run": _run, "full_course": _full_course, "gpu_check": _gpu_check, "bench": _bench}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    command, rest = argv[0].replace("-", "_"), argv[1:]
    if command not in COMMANDS:
        print(f"python -m aae_tutorial: no command {argv[0]!r}; the commands are {', '.join(COMMANDS)} "
              "(python -m aae_tutorial --help)", file=sys.stderr)
        return 2
    sys.argv[0] = f"python -m aae_tutorial {command}"  # what each command's usage line names
    return COMMANDS[command](rest) or 0


if __name__ == "__main__":
    sys.exit(main())
