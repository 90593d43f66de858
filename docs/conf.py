"""Sphinx configuration of fastmvn's documentation: ``sphinx-build -W -n -b html docs docs/_build/html``."""

import importlib
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# fastmvn.cuda imports only where numba-cuda finds a GPU, or in Numba's CUDA simulator: the
# simulator lets it import on any machine with numba-cuda, so that autodoc reads the functions it
# generates from fastmvn._table. Where numba-cuda is missing, api/cuda_unavailable.rst stands in
# for api/cuda.rst and its generated pages (api/index.rst finds whichever is left by a glob).
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
try:
    importlib.import_module("fastmvn.cuda")
    CUDA_PAGES = ["api/cuda_unavailable.rst"]
except ImportError:
    CUDA_PAGES = ["api/cuda.rst", "api/generated/fastmvn.cuda.*"]

import fastmvn  # noqa: E402

project = "fastmvn"
copyright = "2026, the fastmvn developers"
author = "the fastmvn developers"
release = version = fastmvn.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", *CUDA_PAGES]
templates_path = ["_templates"]

autosummary_generate = True
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

html_theme = "pydata_sphinx_theme"
html_title = f"fastmvn {release}"
html_theme_options = {"navigation_with_keys": False}

# Names of other projects that a docstring refers to: without intersphinx (the build reads no
# inventories over the network) they have no target here.
nitpick_ignore = [
    ("py:class", "dask.array.Array"),
    ("py:func", "dask.array.blockwise"),
    ("py:func", "dask.array.from_array"),
    ("py:func", "dask.array.store"),
    ("py:func", "dask.array.to_npy_stack"),
    ("py:func", "dask.array.to_zarr"),
    ("py:func", "numpy.asarray"),
    ("py:class", "jax.errors.JaxRuntimeError"),
    ("py:class", "jax.Array"),
    *(("py:func", f"jax.{name}") for name in ("custom_vjp", "grad", "jit", "jvp", "numpy.asarray", "pure_callback",
                                               "vmap")),
]
