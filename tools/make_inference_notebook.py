"""Write notebooks/07_inference.ipynb (run from the repository root; outputs not stored).

The cells come from two parts: decoding and quantization
(``tools/inference_notebook_decoding.py``) and, when that file exists, adaptation and
generative models (``tools/inference_notebook_adaptation.py``). Each part's ``cells()``
returns a list of cells; its optional ``EXPECT`` names strings the output must contain.
"""

import importlib
import pathlib

from notebook_builder import code, install_cell, md, write_notebook

HERE = pathlib.Path(__file__).resolve().parent
PARTS = ["inference_notebook_decoding", "inference_notebook_adaptation"]

cells = [
    md("# Inference and adaptation in jaxdl\n\n"
       "KV-cache decoding, sampling strategies, beam search, speculative decoding and "
       "weight quantization, then the adaptation and generative-model tools of issue 8. "
       "Runs on CPU, GPU or TPU (Colab); the Tiny Shakespeare text is read from "
       "`JAXDL_DATA_DIR`."),
    install_cell(),
    code("import os, pathlib, sys\n"
         "if pathlib.Path('experiments').is_dir():  # run from the repository root\n"
         "    sys.path.insert(0, os.getcwd())"),
]
expect = []
for name in PARTS:
    if (HERE / f"{name}.py").exists():
        part = importlib.import_module(name)
        cells += part.cells()
        expect += list(getattr(part, "EXPECT", ()))

write_notebook(cells, HERE.parent / "notebooks" / "07_inference.ipynb", expect=tuple(expect))
