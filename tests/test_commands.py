"""One entry point for the course's commands: ``python -m aae_tutorial COMMAND``, each with its own ``--help``."""
import subprocess
import sys

import pytest

from aae_tutorial import __main__ as commands


def aae(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aae_tutorial", *args], capture_output=True, text=True, timeout=120)


def test_the_entry_point_lists_every_command():
    shown = aae("--help")
    assert shown.returncode == 0 and all(f"\n    {name} " in shown.stdout for name in commands.COMMANDS)
    assert aae().returncode == 2  # no command: the list, and a failing exit


@pytest.mark.parametrize("command", sorted(commands.COMMANDS))
def test_every_command_has_its_help(command):
    shown = aae(command.replace("_", "-") if command == "gpu_check" else command, "--help")
    assert shown.returncode == 0 and "usage:" in shown.stdout and "--" in shown.stdout, shown.stderr[-500:]


def test_a_command_runs_as_its_module_does_and_an_unknown_one_is_named():
    assert aae("run", "--list").stdout == subprocess.run(
        [sys.executable, "-m", "aae_tutorial.run", "--list"], capture_output=True, text=True, timeout=120).stdout
    unknown = aae("train")
    assert unknown.returncode == 2 and "no command 'train'; the commands are run, full_course" in unknown.stderr
