"""Compilation options for every Numba kernel in fastmvn, set in one place.

``FASTMVN_CACHE=0`` switches the on-disk cache off (it is on by default, so a new
process loads compiled kernels instead of compiling them). A cached kernel is stale once
any source it may be compiled from changes: every module of :mod:`fastmvn.kernels`, this
one, :mod:`fastmvn._config`, :mod:`fastmvn._modes`, the gufunc kernels of
:mod:`fastmvn._ufunc_kernels` and the large items' compiled terms (:mod:`fastmvn._lapack`,
:mod:`fastmvn._large_items`) (Numba's own cache looks at the kernel's file alone, and a
driver inlines kernels of other files). Processes may compile into one cache at once (Dask
workers, pytest-xdist): a save holds the cache directory's lock (its file ``fastmvn.lock``)
alone and a load shares it, so no two saves number their files from the same index; a gufunc's
loop is kept under the name of the kernel compilation it calls (``LoopCache`` of
:func:`_cache_class`), so that it is never loaded beside another process's kernel.
``NUMBA_DISABLE_JIT=1`` runs every kernel as plain Python, which tells a kernel bug from a
compiler quirk.

Numba's threading layer is process-wide and chosen once, at the first parallel launch or
compilation. Numba's default prefers TBB, then OpenMP, and the GNU OpenMP of Linux kills a
child forked after its first use (as ``multiprocessing``'s fork context and PyTorch's
``DataLoader`` workers do) at the child's first parallel kernel. Unless the user chose a
layer (``NUMBA_THREADING_LAYER`` or ``NUMBA_THREADING_LAYER_PRIORITY`` in the environment,
or ``numba.config.THREADING_LAYER`` set before fastmvn's first kernel), fastmvn asks Numba
for its ``"forksafe"`` layer: TBB where it is installed, else OpenMP where it is fork-safe
(not on Linux), else the workqueue layer. A layer loaded before fastmvn's first kernel (by
other parallel Numba code) stays: Numba cannot change it.

TBB comes with fastmvn on Linux x86-64 (the ``tbb`` package). Numba looks for its library by
name only, which pip puts in the environment's ``lib`` folder, off the system's search path:
fastmvn loads it from there first (:func:`_load_tbb`). On 2 cores (2026-12-07) the workqueue
layer took 0.15–0.27 ms for a batch of 1,000 4×4 KLs that TBB ran in 0.067–0.10 ms, and two tasks
of 0.4 to 4 ms each, launched together, ran one after the other in 3 launches of 4 (TBB ran
them side by side, 1.5–1.9 times as fast as one thread).
"""

import contextlib
import ctypes
import errno
import functools
import hashlib
import itertools
import os
import pathlib
import sys
import threading

if sys.platform == "win32":
    import msvcrt
else:
    import fcntl

CACHE = os.environ.get("FASTMVN_CACHE", "1").lower() not in ("0", "false", "no", "off")

# No ``nnan``/``ninf``: the kernels detect failures through NaN and infinity. No ``reassoc``
# and no ``arcp``: with either, an item computed in the vector body of a loop over lanes and
# one computed in its scalar remainder could round differently, so a result would depend on
# where the item fell in its batch (a Dask block, a slice). ``arcp`` lets LLVM replace a
# float32 division by a reciprocal estimate and a Newton step in vector code only (x86 does
# this for vectors, not scalars), 1–2 ULP apart. ``contract`` (fused multiply-add) applies
# to vector and scalar code alike.
FASTMATH = {"contract", "nsz"}

OPTIONS = dict(error_model="numpy", fastmath=FASTMATH, nogil=True)

# ``reassoc`` as well, for code whose floating-point loops run over the entries of one item only
# (never over lanes of several items): its sums may then run in vector partial sums, whose
# order depends on the item's shape and the instruction set, never on where the item falls in
# its batch. Without it, a loop with a running sum of floats stays scalar.
ITEM_OPTIONS = dict(OPTIONS, fastmath=FASTMATH | {"reassoc"})


@functools.cache
def sources_stamp():
    """A hash of every source the kernels are compiled from (see the module's docstring)."""
    root = pathlib.Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted([*root.joinpath("kernels").glob("*.py"), *(root / name for name in
                                                                    ("_jit.py", "_config.py", "_modes.py",
                                                                     "_ufunc_kernels.py", "_lapack.py",
                                                                     "_large_items.py"))]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(directory, exclusive):
    """Hold the lock of the cache ``directory`` (its file ``fastmvn.lock``), which processes and
    threads take turns on: ``exclusive`` to save, shared to load (Windows has no shared lock:
    each holder has it alone there). Where it cannot be taken (no directory yet, so nothing to
    load; a file system without locks), the files are used unlocked, as Numba uses them."""
    try:
        descriptor = os.open(os.path.join(directory, "fastmvn.lock"), os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        yield
        return
    held = False
    try:
        held = _lock(descriptor, exclusive)
        yield
    finally:
        # Released before the file is closed: a child forked meanwhile keeps the file open
        # (and with it a flock), and Windows may keep a range locked a while after a close.
        if held and sys.platform == "win32":
            msvcrt.locking(descriptor, msvcrt.LK_UNLCK, 1)
        elif held:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)


def _lock(descriptor, exclusive):
    """Wait for the lock on the open file ``descriptor``; whether it is held (False where the
    file system has no locks)."""
    try:
        if sys.platform != "win32":
            fcntl.flock(descriptor, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            return True
        while True:
            try:  # tries for 10 seconds, then raises
                msvcrt.locking(descriptor, msvcrt.LK_LOCK, 1)
                return True
            except OSError as error:
                if error.errno != errno.EDEADLOCK:
                    raise
    except OSError:
        return False


@functools.cache
def _cache_class():
    """Numba's on-disk function cache, with :func:`sources_stamp` in place of the stamp of
    the kernel's own file, for each place Numba may keep it: for a kernel, for the serial
    compilation of a parallel driver, and for the loop of a gufunc
    (:mod:`fastmvn._ufunc_kernels`); each saves and loads its files under :func:`_locked`."""
    from numba.core import caching

    class Stamped:
        def get_source_stamp(self):
            return sources_stamp()

    def locator(name):  # Numba before 0.61 named them with a leading underscore
        return getattr(caching, name, None) or getattr(caching, "_" + name)

    class LockedFile(caching.IndexDataCacheFile):
        """The index and data files of one function, each save holding the directory's lock
        alone and each load sharing it (:func:`_locked`)."""

        def save(self, key, data):
            # Numba numbers a new data file from the index it read, then writes the index and
            # the data: two processes saving overloads of one function at once took the same
            # number, and the index of one named the other's machine code for its signature.
            # Under the lock the index read is the latest. The data goes first, so that an index
            # never names a file its key's data is not in yet (nor after a crash in between).
            with _locked(self._cache_path, exclusive=True):
                overloads = self._load_index()
                name = overloads.get(key)
                if name is None:
                    taken = set(overloads.values())
                    name = next(free for free in map(self._data_name, itertools.count(1)) if free not in taken)
                self._save_data(name, data)
                if key not in overloads:
                    overloads[key] = name
                    self._save_index(overloads)

        def load(self, key):
            # Numba replaces each file whole (written aside, then renamed), but a save under
            # another source stamp (another version of fastmvn sharing the directory) numbers its
            # files afresh from 1, and could replace the data file between a load's reading of
            # the index and its reading of the data.
            with _locked(self._cache_path, exclusive=False):
                return super().load(key)

        def flush(self):
            with _locked(self._cache_path, exclusive=True):
                super().flush()

    class Locked:  # Numba's cache, with its files in a LockedFile
        def __init__(self, py_func):
            super().__init__(py_func)
            self._cache_file = LockedFile(self._cache_path, self._impl.filename_base,
                                          self._impl.locator.get_source_stamp())

    class Impl(caching.CompileResultCacheImpl):
        _locator_classes = [type(f"Stamped{name}", (Stamped, locator(name)), {}) for name in
                            ("UserProvidedCacheLocator", "InTreeCacheLocator", "UserWideCacheLocator")]

    class KernelCache(Locked, caching.FunctionCache):
        _impl_class = Impl

    class SerialImpl(Impl):  # Numba's index keys do not tell a serial compilation from a parallel one
        def get_filename_base(self, fullname, abiflags):
            return super().get_filename_base(fullname + ".serial", abiflags)

    class SerialKernelCache(Locked, caching.FunctionCache):
        _impl_class = SerialImpl

    class LoopImpl(caching.CodeLibraryCacheImpl):  # a gufunc's loop, which keeps a copy of its kernel
        _filename_prefix = "fastmvn-guf"
        _locator_classes = Impl._locator_classes

    class LoopCache(Locked, caching.Cache):
        """The loops of the gufunc whose kernel is the dispatcher ``kernel``, each kept under the
        name of the kernel's compilation it calls.

        A loop calls its kernel by the kernel's mangled name, which holds a number that each
        process draws from a counter of its own compilations (Numba's ABI tag ``v<n>``), and the
        kernel and its loops are saved to separate files. Numba keys a loop by the signature
        alone: two processes compiling one gufunc at once left the kernel of one beside the loop
        of the other, whose call NumPy then made through a null pointer (a segmentation fault
        in every process that loaded the pair; numba/numba#10128). Keyed by the name as well, a
        loop is found only beside the kernel it was built for, and is otherwise built again."""
        _impl_class = LoopImpl

        def __init__(self, py_func, kernel):
            super().__init__(py_func)
            self._kernel = kernel

        def _index_key(self, sig, codegen):
            return *super()._index_key(sig, codegen), self._kernel.overloads[sig].fndesc.mangled_name

    return KernelCache, SerialKernelCache, LoopCache


def _cached(dispatcher, serial=False):
    """``dispatcher`` with fastmvn's on-disk cache, unless ``FASTMVN_CACHE=0`` (or it is the
    plain function that ``NUMBA_DISABLE_JIT=1`` leaves); a ``serial`` compilation of a parallel
    driver is kept in files of its own."""
    if CACHE and hasattr(dispatcher, "py_func"):
        dispatcher._cache = _cache_class()[serial](dispatcher.py_func)
    return dispatcher


#: Every per-item kernel, in the order defined: what other targets compile from its source
#: (:func:`fastmvn._cuda_kernels.retarget`).
ITEMS: list = []


def item(func=None, *, inline=False):
    """Compile a per-item kernel for the CPU, lazily, and record it in :data:`ITEMS`.

    LLVM inlines small kernels into their callers by itself; ``inline=True`` inlines at
    Numba's level as well, for a kernel with so many array arguments that passing them
    costs more than a small item's arithmetic.
    """
    import numba

    if func is None:
        return lambda func: item(func, inline=inline)
    dispatcher = _cached(numba.njit(inline="always" if inline else "never", **OPTIONS)(func))
    ITEMS.append(dispatcher)
    return dispatcher


#: Every batch driver, so that a forked child can give each a lock of its own.
_BATCHES: list["_Batch"] = []


class _Batch:
    """A multi-threaded CPU batch driver with one explicit signature per pair of dtypes (the
    data's and the arithmetic's), each compiled (or loaded from the on-disk cache) on the first
    call with that pair, so that a process loads only the drivers it runs.

    :meth:`serial` runs the same source compiled without threads: for a batch of one chunk,
    which one thread computes either way, it spares waking the thread pool (0.2 ms under the
    workqueue layer)."""

    def __init__(self, func, signatures, options):
        self.py_func = func
        self.__name__, self.__doc__, self.__module__ = func.__name__, func.__doc__, func.__module__
        self._signatures = signatures
        self._options = options
        self._compiled = {}
        self._lock = threading.Lock()
        _BATCHES.append(self)

    def compiled(self, dtypes, parallel=True):
        """The driver for data and arithmetic of ``dtypes`` (a pair of NumPy dtypes), a
        Numba dispatcher, multi-threaded unless ``parallel`` is False."""
        key = dtypes + (parallel,)
        dispatcher = self._compiled.get(key)
        if dispatcher is None:
            import numba

            with self._lock:
                dispatcher = self._compiled.get(key)
                if dispatcher is None:
                    if parallel:
                        threading_layer()
                    signature = self._signatures[dtypes]
                    dispatcher = _cached(numba.njit(parallel=parallel, **self._options)(self.py_func),
                                         serial=not parallel)
                    if hasattr(dispatcher, "py_func"):  # not under NUMBA_DISABLE_JIT=1
                        dispatcher.compile(signature)
                        dispatcher.disable_compile()
                    self._compiled[key] = dispatcher
        return dispatcher

    def __call__(self, *args):
        """Run the driver: its second argument (the first slot) has the dtype of every slot,
        its last (``work``) the dtype of the arithmetic."""
        return self.compiled((args[1].dtype, args[-1].dtype))(*args)

    def serial(self, *args):
        """Run the driver on the calling thread alone."""
        return self.compiled((args[1].dtype, args[-1].dtype), parallel=False)(*args)


def batch(signatures, options=OPTIONS):
    """A batch driver for the CPU, multi-threaded, with ``signatures`` (a dict from a pair of
    NumPy dtypes, the data's and the arithmetic's, to a Numba signature) compiled lazily,
    each on its first use, with Numba's ``options`` (:data:`ITEM_OPTIONS` for a driver whose
    floating-point loops run over one item's entries only)."""
    return lambda func: _Batch(func, signatures, options)


def threading_layer():
    """The name of Numba's threading layer. Where none is loaded yet, loads Numba's
    ``"forksafe"`` one first, unless the user chose (see the module's docstring): call this
    before anything parallel is compiled or run, or asks Numba for its threads."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:
        pass
    _load_tbb()
    chosen = {"NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY"} & set(os.environ)
    if not chosen and numba.config.THREADING_LAYER == "default":
        numba.config.THREADING_LAYER = "forksafe"
    # Loaded now, so that Numba's re-reading of a changed environment cannot undo the choice.
    numba.get_num_threads()
    return numba.threading_layer()


#: The name Numba loads the TBB library by, on each system.
_TBB_NAMES = {"linux": "libtbb.so.12", "darwin": "libtbb.12.dylib", "win32": "tbb12.dll"}


def _load_tbb():
    """Load the TBB library of the installed ``tbb`` package, if any (pip puts it in the
    environment's ``lib`` folder, off the system's search path), so that Numba's TBB layer can
    load (see the module's docstring): into the global namespace, where Numba's load by name then
    finds it, before any other TBB on the search path (which may be older than Numba takes).
    Nothing happens where no such package is installed or its library fails to load (Numba then
    looks for one by name, and else takes its next layer)."""
    name = _TBB_NAMES.get(sys.platform)
    if name is None:
        return
    from importlib import metadata

    try:
        files = metadata.distribution("tbb").files or []
    except metadata.PackageNotFoundError:
        return
    for file in files:
        if file.name == name:
            try:
                ctypes.CDLL(str(file.locate()), mode=ctypes.RTLD_GLOBAL)
            except OSError:
                pass
            return


def threads():
    """Numba's thread count (``numba.get_num_threads``), the threading layer loaded first as
    :func:`threading_layer` chooses it."""
    import numba

    threading_layer()
    return numba.get_num_threads()


class _LaunchLock:
    """The lock that parallel launches take turns on. Where the C library has POSIX threads it is
    a pthread mutex at :attr:`address`, which compiled code takes as well (the XLA handlers of
    ``fastmvn._xla``, which run the drivers without Python); elsewhere a :class:`threading.Lock`
    and ``address`` is None. Waiting for it (a ctypes call) releases the GIL."""

    def __init__(self):
        self.address, self._lock = None, threading.Lock()
        try:
            libc = ctypes.CDLL(None)
            functions = libc.pthread_mutex_init, libc.pthread_mutex_lock, libc.pthread_mutex_unlock
        except (OSError, AttributeError, TypeError):  # no C library by that name: Windows
            return
        for function in functions:
            function.argtypes, function.restype = (ctypes.c_void_p,) * (1 + (function is functions[0])), ctypes.c_int
        self._init, self.lock, self.unlock = functions
        self._memory = ctypes.create_string_buffer(128)  # a pthread_mutex_t takes 40 bytes (glibc) to 64 (macOS)
        self.address = ctypes.addressof(self._memory)
        self.renew()

    def renew(self):
        """A new, released lock at the same address (in a forked child)."""
        if self.address is None:
            self._lock = threading.Lock()
        elif self._init(self.address, None):
            raise OSError("pthread_mutex_init failed")

    def __enter__(self):
        if self.address is None:
            self._lock.acquire()
        else:
            self.lock(self.address)

    def __exit__(self, *exc_info):
        if self.address is None:
            self._lock.release()
        else:
            self.unlock(self.address)


# Numba's workqueue threading layer (the fork-safe one where TBB is not installed, on Linux)
# aborts the process when two threads launch parallel kernels at once; until Numba has picked
# its layer, at the first launch, launches take turns as well.
_LAUNCH = _LaunchLock()

if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    # A thread that holds a lock across a fork (launching, or compiling a driver: seconds) does
    # not exist in the child, which starts with locks of its own (Numba resets the workqueue
    # itself). Not taken before the fork: a thread in a launch may collect a pooled buffer and
    # so take the pool's lock, which a fork takes too, and two locks taken in opposite orders
    # deadlock. The launch lock is renewed in place: compiled handlers hold its address.
    def _renew_locks():
        _LAUNCH.renew()
        for driver in _BATCHES:
            driver._lock = threading.Lock()

    os.register_at_fork(after_in_child=_renew_locks)


def _launch_needs_lock():
    """Whether parallel launches must take turns (:data:`_LAUNCH`)."""
    import numba

    try:
        return numba.threading_layer() == "workqueue"
    except ValueError:
        return True


@contextlib.contextmanager
def launching():
    """Hold around every call of a parallel batch driver: safe from any number of threads."""
    if _launch_needs_lock():
        with _LAUNCH:
            yield
    else:
        yield
