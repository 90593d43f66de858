"""The documentation (``docs/``): its API reference names every public name of fastmvn, and the
Python examples of its pages run; the docstrings' sections say what each function raises and
follow its signature."""

import importlib.util
import inspect
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

import fastmvn
from fastmvn._table import FUNCTIONS

ROOT = pathlib.Path(__file__).parent.parent
DOCS = ROOT / "docs"
MODULES = ("fastmvn", "fastmvn.reference", "fastmvn.testing", "fastmvn.torch", "fastmvn.jax", "fastmvn.dask",
           "fastmvn.cuda", "fastmvn.ufuncs")
# The pages whose Python blocks are not run here: the Dask example streams 38 GB (tests/test_dask.py
# runs it at a small size), and those of adding_a_function.md are fragments of the package's modules.
NOT_RUN = {"dask.md", "adding_a_function.md"}


def public_names():
    """Each importable module's ``__all__``, read in a new process where ``fastmvn.cuda`` runs in
    Numba's CUDA simulator (as when the documentation is built), so that it imports without a GPU."""
    script = ("import importlib, json, sys\nnames = {}\nfor module in sys.argv[1:]:\n"
              "    try:\n        names[module] = importlib.import_module(module).__all__\n"
              "    except ImportError:\n        pass\nprint(json.dumps(names))")
    environment = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", script, *MODULES], capture_output=True, text=True,
                            env=environment, check=True)
    return json.loads(result.stdout)


def documented(module):
    """The names that the API reference page of ``module`` documents: its autosummary entries and
    the objects it describes directly (``.. data::``, ``.. autodata::``, …)."""
    text = (DOCS / "api" / f"{module.removeprefix('fastmvn.') if module != 'fastmvn' else 'fastmvn'}.rst").read_text()
    names = set()
    for block in re.findall(r"^\.\. autosummary::\n((?:[ \t]+.*\n|\n)*)", text, flags=re.M):
        names |= {line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith(":")}
    names |= set(re.findall(r"^\.\. (?:auto)?(?:data|function|class|exception):: (\S+)", text, flags=re.M))
    return names


def test_api_reference_names_every_public_name():
    names = public_names()
    assert {"fastmvn", "fastmvn.reference", "fastmvn.testing"} <= names.keys()
    if importlib.util.find_spec("numba_cuda") is not None:
        assert "fastmvn.cuda" in names
    for module, public in names.items():
        missing = sorted(set(public) - documented(module))
        assert not missing, f"docs/api/ leaves out these public names of {module}: {missing}"


def test_gpu_pages_name_every_function_of_fastmvn_cuda():
    """The GPU guide and the page that stands in for the CUDA API reference where fastmvn.cuda
    cannot be imported list every function of fastmvn.cuda."""
    functions = [name for name in public_names().get("fastmvn.cuda", []) if not name.isupper()]
    for page in (DOCS / "gpu.md", DOCS / "api" / "cuda_unavailable.rst"):
        named = set(re.findall(r"`+(\w+)`+", page.read_text()))
        assert not sorted(set(functions) - named), page.name


def test_every_api_page_is_in_the_reference_toctree():
    index = (DOCS / "api" / "index.rst").read_text()
    for module in MODULES:
        page = "fastmvn" if module == "fastmvn" else module.removeprefix("fastmvn.")
        assert re.search(rf"^   {page}\*?$", index, flags=re.M), page


def blocks(page):
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md") if blocks(p) and p.name not in NOT_RUN))
def test_page_examples_run(page):
    """Each page's Python blocks run in order in one namespace (a PyTorch block needs torch, a
    JAX block jax)."""
    namespace = {}
    for block in blocks(DOCS / page):
        if any(f"import {name}" in block and importlib.util.find_spec(name) is None for name in ("torch", "jax")):
            continue
        exec(compile(block, str(DOCS / page), "exec"), namespace)


def test_sources_and_pages_hold_no_control_characters():
    """No tab, backspace, form feed or carriage return in the package's sources, the tests or
    the pages: a docstring's ``\\b`` or ``\\f`` written outside a raw string becomes one, and
    its mathematics no longer renders."""
    paths = [*ROOT.joinpath("fastmvn").rglob("*.py"), *ROOT.joinpath("tests").glob("*.py"),
             *DOCS.glob("*.md"), ROOT / "README.md"]
    bad = [f"{path.relative_to(ROOT)}:{number}" for path in paths
           for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1)
           if re.search("[\t\b\f\r]", line)]
    assert not bad, bad


def _section(function, name):
    """The entries of the numpydoc section ``name`` of ``function``'s docstring (read by
    numpydoc, of the ``docs`` extra)."""
    return pytest.importorskip("numpydoc.docscrape").FunctionDoc(function)[name]


def _raises(function):
    return {error.strip() for entry in _section(function, "Raises") for error in entry.type.split(",")}


@pytest.mark.parametrize("name", sorted({*FUNCTIONS, *(f.gradient_name for f in FUNCTIONS.values() if f.gradient),
                                         "kl_kron_sum", "logpdf_kron_sum"}))
def test_batched_functions_say_what_they_raise(name):
    """Each batched function of fastmvn documents the errors of a bad argument: a covariance
    that is not positive definite or a factor whose diagonal is not positive, NaN or a shape
    that does not fit, complex input; a reference to another function's Raises section finds one."""
    function = getattr(fastmvn, name)
    assert {"numpy.linalg.LinAlgError", "ValueError", "TypeError"} <= _raises(function)
    for entry in _section(function, "Raises"):
        for other in re.findall(r"As in :func:`(?:fastmvn\.)?(\w+)`", " ".join(entry.desc)):
            assert _section(getattr(fastmvn, other), "Raises"), (name, other)


@pytest.mark.parametrize(("name", "raises"), [("project", {"TypeError", "ValueError"}),
                                              ("set_buffer_pool", {"ValueError"})])
def test_checked_settings_say_what_they_raise(name, raises):
    assert raises <= _raises(getattr(fastmvn, name))


def test_project_describes_every_parameter():
    assert all(param.desc for param in _section(fastmvn.project, "Parameters"))


@pytest.mark.parametrize("name", sorted(name for name in fastmvn.__all__ if inspect.isfunction(getattr(fastmvn, name))))
def test_keywords_are_documented_in_the_signature_order(name):
    """The keyword-only parameters of each public function appear in its Parameters section in
    the order of its signature (a pair such as ``noise1, noise2`` where its first is)."""
    function = getattr(fastmvn, name)
    keywords = [p.name for p in inspect.signature(function).parameters.values() if p.kind == p.KEYWORD_ONLY]
    entry = {part.strip(): k for k, param in enumerate(_section(function, "Parameters"))
             for part in param.name.split(",")}
    order = list(dict.fromkeys(entry[keyword] for keyword in keywords))
    assert order == sorted(order), keywords
