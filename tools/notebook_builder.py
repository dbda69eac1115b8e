"""Shared pieces of the notebook generators (``tools/make_*_notebook.py``).

Notebooks are generated, not hand-edited, so their code stays reviewable as Python and the
committed ``.ipynb`` carries no outputs. Each one starts with the same install cell (for a
fresh Colab runtime) and declares in its metadata the strings its output must contain,
which ``tests/test_notebooks.py`` checks when it executes the notebook.
"""

from __future__ import annotations

import pathlib

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

__all__ = ["install_cell", "md", "code", "write_notebook"]

md = new_markdown_cell
code = new_code_cell


def install_cell() -> nbformat.NotebookNode:
    """Installs jaxdl when it is missing (``JAXDL_SOURCE``: a pip requirement or path)."""
    return new_code_cell(
        "import importlib.util, os, subprocess, sys\n"
        "if importlib.util.find_spec('jaxdl') is None:  # e.g. a fresh Colab runtime\n"
        "    source = os.environ.get('JAXDL_SOURCE', 'jaxdl')\n"
        "    subprocess.check_call([sys.executable, '-m', 'pip', 'install', '-q', source])"
    )


def write_notebook(cells: list, path: str | pathlib.Path, *,
                   expect: tuple[str, ...] = ()) -> None:
    """Write ``cells`` to ``path`` with Colab metadata and the strings the test expects."""
    notebook = new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "accelerator": "GPU",
        "colab": {"provenance": []},
        "jaxdl": {"expect": list(expect)},
    })
    nbformat.write(notebook, str(path))
