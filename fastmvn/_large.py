"""The plan for large items: each item through LAPACK and BLAS.

The lane kernels (:mod:`fastmvn.kernels`) compute many small items side by side, each with
its own scalar loops; for one large item those loops are far slower than LAPACK's blocked
factorisations and BLAS-3 triangular solves, which also use every core. Few large items take
this path (:func:`chosen`, :data:`fastmvn._config.LAPACK_BATCH_SIDE`): the same quantities, by
the same formulas (``docs/architecture.md``), read from the same slots, with the same failure
rules (a Cholesky pivot ``L_jj² ≤ n·ε·a_jj`` is singular, a factor needs a positive diagonal,
a variance must be positive, a result that is not finite fails its item), computed in
float64. No ``np×np`` matrix is formed, and no inverse for a value but ``tr(a⁻¹ b)``'s
(``Σᵢⱼ (a⁻¹)ᵢⱼ bᵢⱼ``: a third of the two solves' work, with errors of the same size; a
gradient such as ``∂KL/∂U1 = ½(t_v U2⁻¹ − p U1⁻¹)`` is one). Failing items are NaN, and
:func:`evaluate` returns the first of them as the lane drivers do, for
:func:`fastmvn._batch.report` to explain.

An item's value, or its value and gradients, is one compiled call (:mod:`fastmvn._large_items`)
of SciPy's BLAS and LAPACK (:mod:`fastmvn._lapack`), without Python between its routines
(diagonal covariances never come here: :mod:`fastmvn._batch` streams them). Every BLAS and
LAPACK call goes to SciPy's library, none to NumPy's (``@``, ``np.dot``): wheels of NumPy and
SciPy each bring an OpenBLAS with a thread pool of its own, and two pools taking turns on the
same cores spin against each other (a 128×128 KL then took ten times as long). A call's items
are one compiled call too (:func:`fastmvn._large_items.items_batch`). Threads serve one item
or many, never both at once (:func:`_threads`): items whose work is large enough
(:func:`workers`) and of less than :data:`fastmvn._config.ITEM_THREADS_MAX_SIDE` are split
over Numba's threads with one BLAS thread each; other items run one after another on the
calling thread, large ones on the BLAS library's threads, small ones on one BLAS thread, since
waking and waiting for a thread pool costs them more than it saves, many times more when other
processes hold the cores.
"""

import contextlib
import functools
import math
import threading
import typing

import numpy as np

from . import _config, _jit, _pool

__all__ = ["chosen", "sized", "largest_side", "workers", "evaluate", "value_and_grad", "kron_sum_logpdf"]


def chosen(slots, count, gradients=False):
    """Whether ``count`` items of ``slots`` (``(…, r, c)`` arrays) take this path, for their
    values or, with ``gradients``, their values and gradients: large items, and few enough of
    them unless they are larger still (:data:`fastmvn._config.LAPACK_BATCH_SIDE` and the
    thresholds after it); never float32 items that the lanes compute in float32 (up to
    :data:`fastmvn._config.FLOAT32_ARITHMETIC_MAX_SIDE`), which this path would compute in
    float64."""
    side = largest_side(slots)
    if side <= _config.FLOAT32_ARITHMETIC_MAX_SIDE and slots[0].dtype == np.float32:
        return False  # computed in float32 in lanes, with or without gradients: the same values and errors
    thresholds = (
        (_config.LAPACK_GRADIENT_MIN_SIDE, _config.LAPACK_GRADIENT_BATCH_SIDE, _config.LAPACK_GRADIENT_ALL_SIDE)
        if gradients else (_config.LAPACK_MIN_SIDE, _config.LAPACK_BATCH_SIDE, _config.LAPACK_ALL_SIDE))
    return sized(side, count, *thresholds)


def sized(side, count, least, batch_side, all_side):
    """Whether ``count`` items of largest side ``side`` take this path under the thresholds
    ``least`` (no smaller side), ``batch_side`` (at most ``(side/batch_side)²`` items) and
    ``all_side`` (any number of items from this side)."""
    return side >= least and (side >= all_side or count * batch_side ** 2 <= side * side)


@functools.cache
def _linalg():
    """The compiled BLAS and LAPACK calls (:mod:`fastmvn._lapack`) and the compiled terms of one
    item (:mod:`fastmvn._large_items`), imported on first use so that
    ``import fastmvn`` compiles nothing (and looked up once: an import statement's lookup took
    a few microseconds of a call whose item takes tens)."""
    from . import _lapack, _large_items

    return _lapack, _large_items


def kron_sum_logpdf(slots, out, epsilons):
    """The log-densities of Kronecker-sum normals (:func:`fastmvn.logpdf_kron_sum`) over
    ``slots`` (points, means, signal and noise covariances, a noise variance ``σ²`` as the
    ``1×1`` matrix), each item by :func:`fastmvn._large_items.kron_sum_logpdf` (with the
    ``epsilons`` of the row and column signals' data, its scratch from an arena),
    into ``out``; returns the flat index of the first item left NaN, or None."""
    return _run(_linalg()[1].KRON_SUM, slots, out, (), (), "kron_sum_logpdf", epsilons)


def evaluate(mode, slots, out):
    """Run ``mode`` over ``slots`` (``(*batch, r, c)`` arrays) into ``out`` (of the batch
    shape), each item through LAPACK; return the flat index of the first failing item, or None.
    Not the values of diagonal covariances: :mod:`fastmvn._batch` streams those
    (``kernels.drivers.diagonal_batch``, and ``diagonal_grad_batch`` for their gradients)."""
    return _run(mode, slots, out, (), (), mode)


def value_and_grad(mode, slots, out, grads, wanted):
    """Run the KL or log-density ``mode`` and its gradients over ``slots`` into ``out`` and the
    ``grads`` (``(*batch, r, c)`` arrays) that ``wanted`` marks, each item by the
    closed forms of ``docs/gradients.md`` in BLAS-3 operations (those of a factor with respect to
    its lower triangle); a failing item's value and gradients are NaN. Returns the flat index of
    the first failing item, or None."""
    return _run(mode, slots, out, grads, wanted, (mode, tuple(bool(wants) for wants in wanted)))


class _OneBlasThread:
    """A context in which BLAS runs on one thread (every BLAS library loaded, through
    threadpoolctl's controller of each), entered by any number of threads at once: the first
    in sets the limit, the last out restores what was there before, so that two calls
    overlapping in time cannot leave the limit behind. Each library's own ``get`` and
    ``set_num_threads`` are called: about 5 µs in and out, where ``ThreadpoolController.limit``
    took 13 µs (it records every library's state first)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._inside = 0
        self._saved: list[tuple[typing.Any, int | None]] = []

    @functools.cached_property
    def _libraries(self):
        """threadpoolctl's controllers of the BLAS libraries loaded (scanned once, when first
        needed)."""
        from threadpoolctl import ThreadpoolController

        return ThreadpoolController().select(user_api="blas").lib_controllers

    def __enter__(self):
        with self._lock:
            if self._inside == 0:
                self._saved = [(library, library.get_num_threads()) for library in self._libraries]
                for library, _ in self._saved:
                    library.set_num_threads(1)
            self._inside += 1

    def __exit__(self, *exc):
        with self._lock:
            self._inside -= 1
            if self._inside == 0:
                for library, threads in self._saved:
                    if threads is not None:
                        library.set_num_threads(threads)
                self._saved = []


_ONE_BLAS_THREAD = _OneBlasThread()


def largest_side(slots):
    """The largest side of the items of ``slots``."""
    return max([max(slot.shape[-2:]) for slot in slots])


def workers(count, side, gradients):
    """The threads that ``count`` items of largest side ``side`` (their values, or with
    ``gradients`` their values and gradients) are split over, in lanes or in this plan: Numba's
    threads, at most one per item, where their work ``count·side³`` reaches
    :data:`fastmvn._config.THREADS_MIN_WORK` (``THREADS_MIN_GRADIENT_WORK``), else one."""
    least = _config.THREADS_MIN_GRADIENT_WORK if gradients else _config.THREADS_MIN_WORK
    return min(count, _jit.threads()) if count >= 2 and count * side ** 3 >= least else 1


def _threads(count, side, gradients):
    """How ``count`` items of largest side ``side`` use the cores: ``(workers, one_blas_thread)``,
    the threads the items are split over (:func:`workers`, below
    :data:`fastmvn._config.ITEM_THREADS_MAX_SIDE`) and whether BLAS runs on one thread
    (:data:`~fastmvn._config.BLAS_THREADS_MIN_SIDE`)."""
    if side < _config.ITEM_THREADS_MAX_SIDE:
        split = workers(count, side, gradients)
        if split > 1:
            return split, True
    return 1, side < _config.BLAS_THREADS_MIN_SIDE


def _run(code, slots, out, grads, wanted, what, epsilons=(0.0, 0.0)):
    """Every item of ``slots`` (``(*batch, r, c)`` arrays of any layout and float dtype) for
    ``code`` (a mode, or the Kronecker-sum log-density), into ``out`` and the ``grads`` that
    ``wanted`` marks (values only where ``grads`` is empty); a failing item's value and
    gradients are NaN. Returns the flat index of the first failing item. ``what`` names the
    computation (a mode, and the gradients wanted), for :func:`_arena`.

    One compiled call (:func:`fastmvn._large_items.items_batch`) computes the items, one after
    another on the calling thread or split over Numba's threads in contiguous runs, with BLAS
    on one thread or on its own threads, as :func:`_threads` decides (limiting BLAS to one thread
    takes about 4 µs a call, :class:`_OneBlasThread`). It reads each slot's items where they lie
    when they are C-ordered float64 matrices, from a converted copy of the slot's own items
    otherwise (a broadcast argument is read once per item that shares it, not copied per item),
    and writes into ``out`` and the gradients where they are C-ordered float64 arrays, through
    float64 copies otherwise (where a value beyond float32's range fails its item). The
    gradients of every failed item are made NaN here, once, after the copies. Splitting the
    items over Python threads instead, each item's call made from Python, ran two runs on one
    core of two about half the time, and 64 KLs of 24×24 took twice as long on two threads as
    on one."""
    terms = _linalg()[1]
    count = out.size
    split, one_blas_thread = _threads(count, largest_side(slots), bool(grads))
    items, index = _compacted(slots, out.shape)
    values = out.reshape(count) if _writable(out) else np.empty(count)
    targets = [(grad.reshape((count,) + grad.shape[-2:]) if _writable(grad) else np.empty((count,) + grad.shape[-2:]))
               if wants else _NO_GRADIENT for grad, wants in zip(grads, wanted)]
    targets += [_NO_GRADIENT] * (6 - len(targets))
    flags = np.zeros(6, np.bool_)
    flags[:len(wanted)] = [bool(wants) for wants in wanted]
    key = (what, *(slot.shape[-2:] for slot in slots))
    buffer, asked = _arena(key, split), np.zeros(split, np.int64)
    with _ONE_BLAS_THREAD if one_blas_thread else contextlib.nullcontext():
        arguments = (code, bool(grads), flags, *items, index, values, *targets, buffer, asked, split,
                     _config.TRIANGULAR_BLOCKS, *epsilons)
        if split == 1:
            terms.items_serial(*arguments)
        else:
            with _jit.launching():
                terms.items_batch(*arguments)
    _asked(key, int(asked.max()))
    with np.errstate(all="ignore"):  # a cast into float32 beyond its range: infinity, a failure
        for array, target in zip((out, *grads), (values, *targets)):
            if target is not _NO_GRADIENT and not _writable(array):
                array[...] = target.reshape(array.shape)
    flat = out.reshape(-1)
    failed = np.flatnonzero(~np.isfinite(flat))
    if not failed.size:
        return None
    flat[failed] = math.nan
    for grad, wants in zip(grads, wanted):
        if wants:
            grad.reshape((count,) + grad.shape[-2:])[failed] = math.nan
    return int(failed[0])


#: A slot that an item does not use, and a gradient not wanted: ``(1, 1, 1)``, never read or written.
_PLACEHOLDER = np.zeros((1, 1, 1))
_PLACEHOLDER.flags.writeable = False
_NO_GRADIENT = np.zeros((1, 1, 1))


def _writable(array):
    """Whether the compiled items write into ``array`` itself: C-ordered, writeable float64."""
    return array.dtype == np.float64 and array.flags.c_contiguous and array.flags.writeable


def _compacted(slots, batch_shape):
    """The slots as the compiled items read them: for each, its own items as a read-only
    C-ordered float64 ``(m, r, c)`` array (the slot's memory where it is one already, else a
    converted copy of its distinct items, an argument broadcast along batch axes counted once
    along them), padded to six with a placeholder; and ``index`` (``(6, count)``), the item of
    each slot for each flat index of the batch."""
    count = math.prod(batch_shape)
    items, index = [], np.zeros((6, count), np.int64)
    every = None
    for k, slot in enumerate(slots):
        core = slot.shape[-2:]
        if slot.dtype == _FLOAT64 and slot.flags.c_contiguous:  # no batch axis broadcast: every item its own
            own = slot.reshape((count,) + core)
            every = np.arange(count) if every is None else every
            index[k] = every
        else:
            base = slot[tuple(slice(0, 1) if stride == 0 else slice(None) for stride in slot.strides[:-2])]
            own = np.ascontiguousarray(base, dtype=np.float64).reshape((-1,) + core)
            if own.shape[0] > 1:  # one item for all (index 0) or along some batch axes only
                index[k] = np.broadcast_to(np.arange(own.shape[0]).reshape(base.shape[:-2]), batch_shape).reshape(count)
        if own.flags.writeable:
            own = own.view()
            own.flags.writeable = False
        items.append(own)
    items += [_PLACEHOLDER] * (6 - len(items))
    return items, index


_FLOAT64 = np.dtype(np.float64)


#: What the compiled call of one item asked of its arena, in float64 numbers, by the
#: computation and the items' shapes (:func:`_arena`), for the calls that repeat them.
_ASKED: dict[tuple, int] = {}
_ASKED_LOCK = threading.Lock()
_NO_BUFFER = np.empty(0)


def _arena(key, runs):
    """The scratch of ``runs`` runs of items of ``key`` (:func:`fastmvn._lapack.matrix`): one
    buffer for each run as large as the last such items asked for, together: from the buffer
    pool (:mod:`fastmvn._pool`, which keeps it between calls) from
    :data:`fastmvn._config.ARENA_MIN_BYTES` on, from ``np.empty`` below, and empty the first
    time and where one run's part would exceed :data:`~fastmvn._config.ARENA_MAX_BYTES`. A
    matrix that does not fit in its run's part is new memory, as it is without an arena."""
    size = _ASKED.get(key, 0)
    if not 0 < 8 * size <= _config.ARENA_MAX_BYTES:
        return _NO_BUFFER
    return _pool.empty((size * runs,), np.float64, least=_config.ARENA_MIN_BYTES)


def _asked(key, size):
    """Record that items of ``key`` asked for ``size`` numbers of scratch; the record keeps the
    last :data:`fastmvn._config.ARENA_KEYS` computations and shapes."""
    with _ASKED_LOCK:
        _ASKED.pop(key, None)
        _ASKED[key] = size
        while len(_ASKED) > _config.ARENA_KEYS:
            del _ASKED[next(iter(_ASKED))]
