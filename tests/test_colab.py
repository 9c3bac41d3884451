"""Installing the package on Colab upgrades nothing that Colab's running kernel has already imported."""
from pathlib import Path

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")  # Python 3.11 on

ROOT = Path(__file__).resolve().parents[1]
#: Versions Colab preinstalls of the packages whose upgrade inside a running kernel breaks the page: its widget
#: manager supports ipywidgets 7 (googlecolab/colabtools#3020 and #4525: Colab ships 7.7.1, and ipywidgets 8
#: widgets do not render there).
COLAB_PREINSTALLED = {"ipywidgets": "7.7.1"}


def test_the_install_cell_leaves_colabs_ipywidgets_as_it_is():
    deps = [Requirement(d) for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    pinned = {r.name: r for r in deps if r.name in COLAB_PREINSTALLED}
    assert set(pinned) == set(COLAB_PREINSTALLED)
    for name, version in COLAB_PREINSTALLED.items():
        assert pinned[name].specifier.contains(version), f"{pinned[name]} would upgrade Colab's {name} {version}"
    assert "ipywidgets>=7.7.1" in (ROOT / "environment.yml").read_text()
