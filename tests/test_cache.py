"""The on-disk kernel cache: shared by new processes, stale once any kernel source changes."""

import contextlib
import importlib.util
import os
import pickle
import shutil
import subprocess
import sys
import threading

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
    for name in ["kernels/lanes.py", "kernels/drivers.py", "_config.py", "_modes.py", "_jit.py", "_ufunc_kernels.py",
                 "_lapack.py", "_large_items.py"]:
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
    from fastmvn import _lapack, _large_items  # the large items' compiled terms

    for dispatcher in [*_jit.ITEMS, driver, _lapack.cholesky, _large_items.kl_grads]:
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


def build_twice_in_new_process(directory, compilations_before=0):
    """A gufunc ``(n)->()`` (twice the first entry) of a module in ``directory``, built in a new
    process through :func:`fastmvn._ufunc_kernels.build` (as every gufunc of
    :mod:`fastmvn.ufuncs`) with the cache in ``directory/cache``, after
    ``compilations_before`` other compilations (which number the kernel's mangled name): its
    result for ``[1.5, 2.5]``, the kernel's name, how many loops it built and how many
    functions it compiled."""
    from conftest import run_python

    (directory / "twice.py").write_text("def twice(x, out):\n    out[0] = 2 * x[0]\n")
    script = ("import sys, numpy as np\n"
              "from numba.core import compiler\n"
              "from numba.core.bytecode import FunctionIdentity\n"
              "from numba.np.ufunc import wrappers\n"
              f"sys.path.insert(0, {str(directory)!r})\n"
              "from fastmvn import _ufunc_kernels\n"
              "import twice\n"
              f"for _ in range({compilations_before}):\n"
              "    next(FunctionIdentity._unique_ids)\n"
              "built, build = [], wrappers._GufuncWrapper._build_wrapper\n"
              "wrappers._GufuncWrapper._build_wrapper = lambda self, *a: built.append(1) or build(self, *a)\n"
              "compiled, compile_extra = [], compiler.compile_extra\n"
              "compiler.compile_extra = lambda *a, **k: compiled.append(1) or compile_extra(*a, **k)\n"
              "ufunc = _ufunc_kernels.build(twice.twice, '(n)->()', [np.float64])\n"
              "[kernel] = ufunc.gufunc_builder.nb_func.overloads.values()\n"
              "print(float(ufunc(np.array([1.5, 2.5]))), kernel.fndesc.mangled_name, len(built), len(compiled))\n")
    value, name, built, compiled = run_python(script, NUMBA_CACHE_DIR=str(directory / "cache")).split()
    return float(value), name, int(built), int(compiled)


@pytest.mark.skipif(not _jit.CACHE, reason="FASTMVN_CACHE=0")
def test_a_new_process_loads_a_ufunc_and_its_loop_from_the_cache(tmp_path):
    """A gufunc (as those of fastmvn.ufuncs) is its kernel and the loop Numba builds around it:
    both come from the cache in a new process (the loop under fastmvn's stamp, since it keeps
    a copy of the kernel), so nothing is compiled."""
    value, name, built, compiled = build_twice_in_new_process(tmp_path)
    assert (value, built) == (3.0, 1) and compiled > 0
    assert build_twice_in_new_process(tmp_path) == (3.0, name, 0, 0)
    indexes = list(tmp_path.rglob("*twice.twice-*.nbi"))
    assert len(indexes) == 2  # the kernel's and the loop's
    for index in indexes:
        with index.open("rb") as file:
            pickle.load(file)  # Numba's version, then the stamp and the overloads
            assert pickle.loads(file.read())[0] == _jit.sources_stamp()
    import fastmvn.ufuncs as fmu

    assert fmu.logdet.gufunc_builder.nb_func.cache._impl.locator.get_source_stamp() == _jit.sources_stamp()


@pytest.mark.skipif(not _jit.CACHE, reason="FASTMVN_CACHE=0")
def test_a_gufunc_loop_is_loaded_only_beside_the_kernel_it_calls(tmp_path):
    """A gufunc's kernel and its loop are saved to separate files, and the loop calls the
    kernel by a name that holds a per-process count of compilations. Where the cached kernel
    is another process's compilation (two processes built the gufunc at once, and the last
    to save each file was a different one), the loop saved beside it must not be called: it
    is built again, and a new process then loads the pair."""
    value, first, built, _ = build_twice_in_new_process(tmp_path)
    assert (value, built) == (3.0, 1)
    # Another process compiled the kernel at the same time and saved it last.
    [index] = [path for path in tmp_path.rglob("twice.twice-*.nbi") if not path.name.startswith("fastmvn-guf")]
    index.unlink()
    value, second, built, _ = build_twice_in_new_process(tmp_path, 1000)
    assert second != first  # the case to test: the cached loop calls a kernel of another name
    assert (value, built) == (3.0, 1)
    assert build_twice_in_new_process(tmp_path) == (3.0, second, 0, 0)


AFFINE = "def affine(x):\n    return 3 * x + 1\n"
ARGUMENTS = {"int64": "7", "float64": "2.5", "float32": "np.float32(0.5)", "complex128": "1j"}


def write_affine(directory):
    """A module ``affine.py`` in ``directory`` with one small function (Numba caches a function
    beside its source, or under ``NUMBA_CACHE_DIR``)."""
    (directory / "affine.py").write_text(AFFINE)


def load_in_new_process(directory, cache):
    """What ``affine`` returns for one argument of each type in :data:`ARGUMENTS`, run in a new
    process with fastmvn's kernel cache in ``cache``, and how many of its overloads it
    compiled instead of loading them."""
    from conftest import run_python

    script = ("import sys, numba, numpy as np\n"
              f"sys.path.insert(0, {str(directory)!r})\n"
              "from fastmvn import _jit\n"
              "import affine\n"
              "dispatcher = numba.njit(affine.affine)\n"
              "dispatcher._cache = _jit._cache_class()[0](affine.affine)\n"
              f"print(*(repr(dispatcher(x)) for x in [{', '.join(ARGUMENTS.values())}]), "
              "sum(dispatcher.stats.cache_misses.values()))\n")
    *values, compiled = run_python(script, NUMBA_CACHE_DIR=str(cache)).split()
    return values, int(compiled)


EXPECTED = ["22", "8.5", "2.5", "(1+3j)"]


def test_saves_of_two_overloads_at_once_keep_each_overload_in_its_own_file(tmp_path, monkeypatch):
    """A save reads the cache's index, numbers a new data file from it and writes the index and
    the data: a second process saving another overload of the function in between read the
    same index, both overloads took data file 1, and the index named one overload's machine
    code for the other's argument types (a new process that loaded it crashed). Here the
    second save runs while the first has read the index, and the first writes its data
    between the second's index and data, as Numba wrote them; the second must wait instead."""
    import numba
    from numba.core import types

    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path / "cache"))
    write_affine(tmp_path)
    spec = importlib.util.spec_from_file_location("affine", tmp_path / "affine.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "affine", module)  # where a loaded kernel's globals come from
    spec.loader.exec_module(module)
    plain = numba.njit(module.affine)
    signatures = [(types.int64,), (types.float64,)]
    for signature in signatures:
        plain.compile(signature)
    results = [plain.overloads[signature] for signature in signatures]
    first, second = (_jit._cache_class()[0](module.affine) for _ in signatures)
    second_waits_or_wrote_index, first_wrote_data = threading.Event(), threading.Event()
    load_index, save_data = first._cache_file._load_index, first._cache_file._save_data
    save_index, take_lock = second._cache_file._save_index, _jit._locked

    def first_load_index():
        index = load_index()
        saver.start()
        assert second_waits_or_wrote_index.wait(timeout=60)
        return index

    def first_save_data(*args):
        save_data(*args)
        first_wrote_data.set()

    def second_save_index(*args):
        save_index(*args)
        second_waits_or_wrote_index.set()
        assert first_wrote_data.wait(timeout=60)

    @contextlib.contextmanager
    def second_takes_lock(*args, **kwargs):
        if threading.current_thread() is saver:
            second_waits_or_wrote_index.set()
        with take_lock(*args, **kwargs):
            yield

    def save_second():
        try:
            second.save_overload(signatures[1], results[1])
        finally:
            second_waits_or_wrote_index.set()

    saver = threading.Thread(target=save_second)
    monkeypatch.setattr(_jit, "_locked", second_takes_lock)
    first._cache_file._load_index, first._cache_file._save_data = first_load_index, first_save_data
    second._cache_file._save_index = second_save_index
    try:
        first.save_overload(signatures[0], results[0])
    finally:
        first_wrote_data.set()
        if saver.ident is not None:
            saver.join()

    fresh = _jit._cache_class()[0](module.affine)
    for signature in signatures:
        assert fresh.load_overload(signature, plain.targetctx).signature.args == signature
    index = fresh._cache_file._load_index()
    assert {key[0] for key in index} == set(signatures) and len(set(index.values())) == 2
    values, compiled = load_in_new_process(tmp_path, tmp_path / "cache")
    assert values == EXPECTED and compiled == 2  # int64 and float64 loaded, the others compiled


def test_processes_compiling_overloads_at_once_leave_a_cache_of_every_overload(tmp_path):
    """Processes that compile different overloads of one function into a fresh cache at once
    (Dask workers, pytest-xdist) leave every overload in the index, each in its own data file:
    a new process loads each, and gets each type's result."""
    write_affine(tmp_path)
    signatures, processes = list(ARGUMENTS), 3
    # Each compiles every overload, from a different one on; its first save waits until every
    # process has compiled its first overload, so that they save at about the same time.
    script = ("import os, sys, time, numba\n"
              f"sys.path.insert(0, {str(tmp_path)!r})\n"
              "from fastmvn import _jit\n"
              "import affine\n"
              "signatures = sys.argv[1:]\n"
              "dispatcher = numba.njit(affine.affine)\n"
              "cache = dispatcher._cache = _jit._cache_class()[0](affine.affine)\n"
              "save = cache._cache_file.save\n"
              "def save_together(*args):\n"
              f"    open(os.path.join({str(tmp_path)!r}, 'compiled-' + signatures[0]), 'w').close()\n"
              f"    while len([n for n in os.listdir({str(tmp_path)!r}) if n.startswith('compiled-')]) < {processes}:\n"
              "        time.sleep(0.001)\n"
              "    cache._cache_file.save = save\n"
              "    save(*args)\n"
              "cache._cache_file.save = save_together\n"
              "for signature in signatures:\n"
              "    dispatcher.compile((getattr(numba.types, signature),))\n")
    environment = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    running = [subprocess.Popen([sys.executable, "-c", script, *signatures[i:], *signatures[:i]], env=environment,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(processes)]
    for process in running:
        _, errors = process.communicate(timeout=300)
        assert process.returncode == 0, errors
    values, compiled = load_in_new_process(tmp_path, tmp_path / "cache")
    assert values == EXPECTED and compiled == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_child_forked_while_the_cache_is_locked_does_not_keep_it_locked(tmp_path):
    """A thread may save a kernel while another forks (a Dask or PyTorch worker): the child
    inherits the lock file open, and the lock, which the parent releases all the same."""
    from conftest import run_python

    script = ("import fcntl, os\n"
              "from fastmvn import _jit\n"
              f"with _jit._locked({str(tmp_path)!r}, exclusive=True):\n"
              "    read, write = os.pipe()\n"
              "    child = os.fork()\n"
              "    if child == 0:  # waits until the parent has tried the lock\n"
              "        os.close(write)\n"
              "        os.read(read, 1)\n"
              "        os._exit(0)\n"
              f"descriptor = os.open(os.path.join({str(tmp_path)!r}, 'fastmvn.lock'), os.O_RDWR)\n"
              "try:\n"
              "    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
              "    print('free')\n"
              "except BlockingIOError:\n"
              "    print('held')\n"
              "os.write(write, b'.')\n"
              "os.waitpid(child, 0)\n")
    assert run_python(script) == "free"
