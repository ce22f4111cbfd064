"""Every notebook in notebooks/ runs top to bottom on the tiny bundle."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tiny_bundle, tmp_path, monkeypatch):
    figures = tmp_path / "figures"
    monkeypatch.setenv("ROLECALL_BUNDLE", str(tiny_bundle))
    monkeypatch.setenv("ROLECALL_FIGURES", str(figures))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # jupyter_core warns about its path migration unless told which.
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    nb = nbformat.read(path, as_version=4)
    # A failing cell raises CellExecutionError naming the cell.
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT)}}).execute()
    assert sorted(p.name for p in figures.glob("*.png")), "no figures"
