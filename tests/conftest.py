"""Test setup.

* Quick mode unless AAE_MODE is set explicitly, so a CUDA machine never trains at paper scale by surprise.
* Nothing the tests do changes a tracked file (the plugin ``scratch``): notebooks executed by nbval write their
  records to a scratch folder, not into book/results, and the session fails if ``git status`` changed.
* The claim tests marked ``fresh_records`` read the records this session's notebooks made, so they run last.
* The committed book may hold full-mode outputs (``python -m aae_tutorial.full_course`` stamps the mode into each
  notebook's metadata). nbval then still executes every cell in the test's mode, and still compares every cell's
  output, except cells tagged ``output-depends-on-mode`` (the printed configuration: run mode, device, network
  sizes, epochs; and random numbers drawn on the device), whose committed output comes from the other mode.
"""
import os

os.environ.setdefault("AAE_MODE", "quick")

pytest_plugins = ["pytester", "scratch"]
MODE_TAG = "output-depends-on-mode"


def notebook_mode(metadata: dict) -> str:
    """The mode a committed notebook was executed in: stamped by full_course; quick where no stamp exists."""
    return metadata.get("aae_tutorial", {}).get("mode", "quick")


def compares_output(notebook_metadata: dict, cell_tags: list[str], run_mode: str) -> bool:
    """Whether nbval compares a cell's fresh output with the committed one: not for a mode-dependent cell of a
    notebook committed from another mode."""
    return MODE_TAG not in cell_tags or notebook_mode(notebook_metadata) == run_mode


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.get_closest_marker("fresh_records") is not None)  # stable: else in order
    for item in items:
        nb = getattr(item.parent, "nb", None)
        if nb is None or not hasattr(item, "cell"):
            continue
        if not compares_output(nb.metadata, item.cell.metadata.get("tags", []), os.environ["AAE_MODE"]):
            item.options["check"] = False
