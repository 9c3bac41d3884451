"""Execute the whole book, chapter by chapter, in place: at paper scale, the command to run when a GPU is at hand.

    python -m aae_tutorial.full_course                 # every chapter, AAE_MODE=full
    python -m aae_tutorial.full_course 06 07           # only the chapters whose file names start so
    python -m aae_tutorial.full_course --mode quick    # the quick-mode book, as committed from a CPU
    python -m aae_tutorial.full_course --plan          # what full mode costs: runs, ensembles, projected time

Each notebook is executed in place (nbclient, no cell time limit) from the ``book/`` folder, so it writes its results
to ``book/results/<mode>/``. Trained weights are checkpointed as each run finishes, so after an interruption the same
command resumes: finished runs load in seconds. ``book/results/full_course.json`` (``quick_course.json`` in quick mode)
records the device, the torch version and, for every chapter, its wall time and the model-epochs it trained (from the
runs' log), with the total; re-running some chapters updates their entries. A progress bar estimates the time left
from the previous record. The executed notebooks carry no training progress bars (``AAE_PROGRESS=0``): the static
book cannot render them.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import plan, tables
from .course import TIMES, is_times
from .files import folder_lock, read_json
from .train import describe_device
from .results import write_json
from .train import pick_device

BOOK = Path(__file__).resolve().parents[1] / "book"
#: The chapters in reading order (the appendices only render what the chapters wrote).
CHAPTERS = ("00_introduction", "01_autoencoders", "02_vae", "03_aae", "04_labels", "05_supervised",
            "06_semisupervised", "07_clustering", "08_dimensionality_reduction", "results", "appendix_performance")


def execute(notebook: Path, stamp: dict) -> None:
    """Run every cell of ``notebook`` in a fresh kernel, from its own folder, and write it back in place with
    ``stamp`` (mode, device, date) as its ``aae_tutorial`` metadata: the tests read the mode from there."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(nb, timeout=None, kernel_name="python3",
                   resources={"metadata": {"path": str(notebook.parent)}}).execute()
    nb.metadata["aae_tutorial"] = stamp
    views = [o for cell in nb.cells for o in cell.get("outputs", [])
             if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    if not views:  # widget state an earlier execution left behind (nbclient keeps it when no widget is shown now)
        nb.metadata.pop("widgets", None)
    nbformat.write(nb, notebook)


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of a ``with`` block, then restore each to what it was."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run(chapters: list[str], book: Path = BOOK, mode: str = "full", times: Path | None = None) -> dict:
    """Execute ``chapters`` in ``mode`` and record them in ``results/<mode>_course.json``; return its contents.
    Their wall times also go into ``times`` (by default the package's ``course_times.json``).

    Chapters run earlier and not re-run now keep their entries, so re-running a few chapters updates the record. A
    re-run that loads more runs from checkpoints than the entry it would replace leaves that colder measurement; the
    record's ``latest_run`` says what this run itself did (each chapter's time, runs loaded, model-epochs trained).
    """
    out = book / "results" / f"{mode}_course.json"
    entries, latest = _entries(out), []
    device = describe_device(pick_device())
    estimate = sum(entries[c]["wall_time_s"] for c in chapters if c in entries)
    bar = tqdm(total=round(estimate) or None, unit="s", desc=f"{mode} course (estimate from the last run)")
    # the chapters' kernels inherit these; this process's own environment is as it was afterwards
    with environment(AAE_MODE=mode, AAE_PROGRESS="0", AAE_RESULTS_DIR=str(out.parent)):
        for chapter in chapters:
            bar.set_postfix_str(chapter)
            with tempfile.NamedTemporaryFile(suffix=".jsonl") as log, environment(AAE_RUN_LOG=log.name):
                start = time.perf_counter()
                execute(book / f"{chapter}.ipynb", {"mode": mode, "device": device, "date": time.strftime("%Y-%m-%d")})
                seconds = time.perf_counter() - start
                runs = [json.loads(line) for line in Path(log.name).read_text().splitlines()]
            trained = [r for r in runs if not r["from_checkpoint"]]
            latest.append({"chapter": chapter, "wall_time_s": round(seconds, 1), "runs": len(runs),
                           "runs_loaded_from_checkpoints": len(runs) - len(trained),
                           "model_epochs_trained": sum(r["epochs"] for r in trained)})
            before = entries.get(chapter)
            bar.update(round(before["wall_time_s"] if before else seconds))
            tqdm.write(f"{chapter}: {seconds:.0f} s, {len(trained)} runs trained, {len(runs) - len(trained)} loaded")
            if before and len(runs) - len(trained) > before["runs_loaded_from_checkpoints"]:
                tqdm.write(f"  (the record keeps its colder measurement: {before['wall_time_s']:.0f} s on "
                           f"{before['date']}, {before['runs_loaded_from_checkpoints']} runs loaded)")
                continue
            entries[chapter] = {**latest[-1], "device": device, "date": time.strftime("%Y-%m-%d")}
    bar.close()
    ours = {c: entries[c] for c in chapters if c in entries}
    with folder_lock(out.parent):  # another run may have recorded other chapters meanwhile: merge, never replace
        entries = {**_entries(out), **ours}
        report = {"experiment": f"{mode}_course", "mode": mode, "device": device, "torch": torch.__version__,
                  "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
                  "chapters": sorted(entries.values(), key=lambda c: CHAPTERS.index(c["chapter"])
                                     if c["chapter"] in CHAPTERS else len(CHAPTERS)),
                  "total_wall_time_s": round(sum(c["wall_time_s"] for c in entries.values()), 1),
                  "total_model_epochs_trained": sum(c["model_epochs_trained"] for c in entries.values()),
                  "latest_run": {"date": time.strftime("%Y-%m-%d"), "device": device, "chapters": latest,
                                 "wall_time_s": round(sum(c["wall_time_s"] for c in latest), 1),
                                 "model_epochs_trained": sum(c["model_epochs_trained"] for c in latest)}}
        write_json(out, report)
    write_times({**report, "chapters": list(ours.values())}, times or TIMES)
    return report


def _is_course_record(value: object) -> bool:
    fields = {"chapter", "wall_time_s", "runs", "runs_loaded_from_checkpoints", "model_epochs_trained", "date"}
    return isinstance(value, dict) and isinstance(value.get("chapters"), list) and all(
        isinstance(c, dict) and fields <= set(c) for c in value["chapters"])


def _entries(path: Path) -> dict[str, dict]:
    """The chapters of a course record, by name; none if it does not exist or is unusable (then set aside)."""
    record = read_json(path, _is_course_record, "the course record")
    return {c["chapter"]: c for c in record["chapters"]} if record else {}


def write_times(record: dict, path: Path = TIMES) -> None:
    """Merge a course record's per-chapter wall times into ``path`` (``course_times.json``), as a learner's first run
    would see them: only of chapters that trained or hold no runs, and never over a colder measurement. A chapter
    resumed after an interrupt (some of its runs loaded from checkpoints) does not replace a time measured with fewer
    runs loaded; each time keeps its count of loaded runs, so a resumed measurement says what it is. (Chapter 6
    always loads the digit judge that chapter 5 trains, so "nothing loaded" would never record it.)"""
    with folder_lock(path.parent):
        times = read_json(path, is_times, "the measured chapter times") or {}
        mode = times.setdefault(record["mode"], {})
        for c in record["chapters"]:
            before = mode.get(c["chapter"], {}).get("runs_loaded_from_checkpoints")
            loaded = c.get("runs_loaded_from_checkpoints", 0)
            if (c["model_epochs_trained"] or not c["runs"]) and (before is None or loaded <= before):
                mode[c["chapter"]] = {**{k: c[k] for k in ("wall_time_s", "device", "date")},
                                      "runs": c["runs"], "runs_loaded_from_checkpoints": loaded}
        write_json(path, times)


def markdown(record: dict) -> str:
    """A course record as a Markdown table: each chapter's wall time and what it trained, with the total."""
    rows = [[c["chapter"], f"{c['wall_time_s']:.0f} s", c["model_epochs_trained"], c["runs_loaded_from_checkpoints"]]
            for c in record["chapters"]]
    rows.append(["**total**", f"**{record['total_wall_time_s']:.0f} s**", record["total_model_epochs_trained"], ""])
    note = f"{record['mode']} mode on {record['device']}, torch {record['torch']}, {record['date']}."
    header = ["chapter", "wall time", "model-epochs trained", "runs loaded from checkpoints"]
    return tables.markdown(header, rows, f"The whole book, {record['mode']} mode", note)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("chapters", nargs="*", help="prefixes of the chapters to run (default: all, in order)")
    p.add_argument("--mode", choices=("full", "quick"), default="full", help="the run mode (default: full)")
    p.add_argument("--plan", action="store_true", help="print the full-mode plan and its projected time; run nothing")
    p.add_argument("--device", default="H200", help="the GPU the plan projects for (default: H200)")
    args = p.parse_args(argv)
    if not args.device.strip():
        p.error("--device must name a GPU, e.g. H200 or H100")
    if args.plan:
        print(plan.markdown(plan.project(args.device)))
        return
    chosen = [c for c in CHAPTERS if not args.chapters or any(c.startswith(a) for a in args.chapters)]
    if not chosen:
        p.error(f"no chapter starts with {args.chapters}; the chapters are {', '.join(CHAPTERS)}")
    if args.mode == "full" and pick_device().type != "cuda":
        print("warning: no CUDA GPU found; paper scale on this device will take a very long time")
    report = run(chosen, mode=args.mode)
    print(f"wrote {BOOK / 'results' / f'{args.mode}_course.json'}: {report['total_wall_time_s']:.0f} s in all, "
          f"{report['total_model_epochs_trained']} model-epochs trained")


if __name__ == "__main__":
    main()
