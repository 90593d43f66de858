"""The on-disk kernel cache: shared by new processes, stale once any kernel source changes."""

import importlib.util
import shutil

import numpy as np
import pytest

import fastmvn as fm
from fastmvn import _jit


def load_jit(root):
    """The module ``_jit`` of a copy of the package at ``root``, loaded on its own."""
    spec = importlib.util.spec_from_file_location("copied_jit", root / "_jit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_change_to_any_kernel_source_makes_every_cached_kernel_stale(tmp_path):
    # A driver inlines per-item kernels from other files; Numba's own stamp is of the
    # driver's file alone, so a fix in kernels/lanes.py would leave stale drivers loaded.
    root = tmp_path / "fastmvn"
    shutil.copytree(_jit.__file__.rsplit("/", 1)[0], root, ignore=shutil.ignore_patterns("__pycache__"))
    stamps = [load_jit(root).sources_stamp()]
    for name in ["kernels/lanes.py", "kernels/drivers.py", "_config.py", "_modes.py", "_jit.py", "_ufunc_kernels.py"]:
        with open(root / name, "a") as file:
            file.write("\n# changed\n")
        stamps.append(load_jit(root).sources_stamp())
    assert len(set(stamps)) == len(stamps)
    with open(root / "cli.py", "a") as file:  # not a kernel source
        file.write("\n# changed\n")
    assert load_jit(root).sources_stamp() == stamps[-1]


@pytest.mark.skipif(not _jit.CACHE, reason="FASTMVN_CACHE=0")
def test_every_kernel_is_cached_under_the_stamp_of_all_sources():
    fm.kl(np.zeros((3, 2, 2)), np.eye(2), np.eye(2))  # compiles or loads the value driver
    batch = next(driver for driver in _jit._BATCHES if driver.__name__ == "evaluate_batch")
    driver = batch.compiled((np.dtype(np.float64), np.dtype(np.float64)))
    for dispatcher in [*_jit.ITEMS, driver]:
        assert dispatcher._cache._impl.locator.get_source_stamp() == _jit.sources_stamp()


@pytest.mark.skipif(not _jit.CACHE, reason="FASTMVN_CACHE=0")
def test_serial_and_parallel_drivers_are_cached_apart(tmp_path):
    """Numba's cache index does not tell a serial compilation of a driver from a parallel one:
    each has files of its own, and a new process loads each from its own."""
    from conftest import run_python

    script = ("import numpy as np, fastmvn as fm\n"
              "from fastmvn import _jit\n"
              "one, many = fm.kl(np.ones((2, 2)), np.eye(2), np.eye(2)), fm.kl(np.ones((600, 2, 2)), np.eye(2), np.eye(2))\n"
              "batch = next(d for d in _jit._BATCHES if d.__name__ == 'evaluate_batch')\n"
              "key = (np.dtype(np.float64), np.dtype(np.float64))\n"
              "hits = [sum(batch.compiled(key, parallel).stats.cache_hits.values()) for parallel in (False, True)]\n"
              "print(float(one), float(many[0]), hits)\n")
    first = run_python(script, NUMBA_CACHE_DIR=str(tmp_path)).split()
    second = run_python(script, NUMBA_CACHE_DIR=str(tmp_path)).split()
    assert first[:2] == second[:2] and first[0] == first[1]
    assert " ".join(first[2:]) == "[0, 0]" and " ".join(second[2:]) == "[1, 1]"
    assert len(list(tmp_path.rglob("*evaluate_batch.serial*.nbi"))) == 1


@pytest.mark.skipif(not _jit.CACHE, reason="FASTMVN_CACHE=0")
def test_a_new_process_loads_a_ufunc_and_its_loop_from_the_cache():
    """A gufunc of fastmvn.ufuncs is its kernel and the loop Numba builds around it: both come
    from the cache in a new process (the loop under fastmvn's stamp, since it keeps a copy of
    the kernel), so nothing is compiled."""
    from conftest import run_python

    script = ("import numpy as np, fastmvn.ufuncs as fmu\n"
              "from numba.np.ufunc import wrappers\n"
              "from fastmvn import _jit\n"
              "from numba.core import compiler\n"
              "built, build = [], wrappers._GufuncWrapper._build_wrapper\n"
              "wrappers._GufuncWrapper._build_wrapper = lambda self, *a: built.append(1) or build(self, *a)\n"
              "compiled, compile_extra = [], compiler.compile_extra\n"
              "compiler.compile_extra = lambda *a, **k: compiled.append(1) or compile_extra(*a, **k)\n"
              "value = float(fmu.logdet(2 * np.eye(2)))\n"
              "assert fmu.logdet.gufunc_builder.nb_func.cache._impl.locator.get_source_stamp() == _jit.sources_stamp()\n"
              "print(value, len(built), len(compiled))\n")
    run_python(script)  # compiles and saves, unless an earlier process did
    value, loops_built, functions_compiled = run_python(script).split()
    assert float(value) == pytest.approx(2 * np.log(2), rel=1e-15)
    assert (loops_built, functions_compiled) == ("0", "0")
