"""Notebooks run headless with tiny settings, so they cannot rot.

Every notebook must execute top to bottom and show at least one figure. A notebook may
name further strings its output must contain in its metadata (``jaxdl.expect``), so each
tour pins its own results without this file knowing about them.
"""

import os
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted(pathlib.Path("notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXDL_NOTEBOOK_STEPS", "30")
    monkeypatch.setenv("JAXDL_NOTEBOOK_WORKDIR", str(tmp_path / "run"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # Run as a user would, on the default devices (one CPU here), not the suite's 8 simulated
    # ones: splitting every tiny step 8 ways made the notebooks ~30% slower. The sharding
    # notebook asks for its own 8 simulated devices.
    flags = os.environ.get("XLA_FLAGS", "").split()
    monkeypatch.setenv("XLA_FLAGS", " ".join(
        f for f in flags if "xla_force_host_platform_device_count" not in f))
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": os.getcwd()}}).execute()
    text = "\n".join(
        output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )
    for expected in notebook.metadata.get("jaxdl", {}).get("expect", []):
        assert expected in text, f"{path.name}: output lacks {expected!r}"
    assert any("image/png" in o.get("data", {}) for c in notebook.cells
               for o in c.get("outputs", [])), f"{path.name} shows no figure"
    if path.stem == "00_quickstart":
        assert "held-out accuracy:" in text and "refused:" in text
        assert (tmp_path / "run" / "curves.png").exists()
