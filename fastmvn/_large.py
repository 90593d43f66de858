"""The plan for large items: each item through LAPACK and BLAS.

The lane kernels (:mod:`fastmvn.kernels`) compute many small items side by side, each with
its own scalar loops; for one large item those loops are far slower than LAPACK's blocked
factorisations and BLAS-3 triangular solves, which also use every core. Few large items take
this path (:func:`chosen`, :data:`fastmvn._config.LAPACK_BATCH_SIDE`): the same quantities, by
the same formulas (``docs/architecture.md``), read from the same slots, with the same failure
rules (a Cholesky pivot ``L_jj² ≤ n·ε·a_jj`` is singular, a factor needs a positive diagonal,
a variance must be positive, a result that is not finite fails its item), computed in
float64. No ``np×np`` matrix is formed, and no inverse for a value (a gradient such as
``∂KL/∂U1 = ½(t_v U2⁻¹ − p U1⁻¹)`` is one). Failing items are NaN, and :func:`evaluate`
returns the first of them as the lane drivers do, for :func:`fastmvn._batch.report` to
explain.

An item's value, or its value and gradients, is one compiled call (:mod:`fastmvn._large_items`)
of SciPy's BLAS and LAPACK (:mod:`fastmvn._lapack`), without Python between its routines
(diagonal covariances never come here: :mod:`fastmvn._batch` streams them). Every BLAS and
LAPACK call goes to SciPy's library, none to NumPy's (``@``, ``np.dot``): wheels of NumPy and SciPy each bring an OpenBLAS with a
thread pool of its own, and two pools taking turns on the same cores spin against each other
(a 128×128 KL then took ten times as long). Threads serve one item or many, never both at
once (:func:`_threads`): items whose work is large enough (:func:`workers`) and of less than
:data:`fastmvn._config.ITEM_THREADS_MAX_SIDE` are split over threads with one BLAS thread
each; other items run one after another, large ones on the BLAS library's threads, small
ones on one BLAS thread, since waking and waiting for a thread pool costs them more than it
saves, many times more when other processes hold the cores.
"""

import contextlib
import functools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import _config, _jit, _modes, _pool

__all__ = ["chosen", "sized", "largest_side", "workers", "evaluate", "value_and_grad", "kron_sum_logpdf"]

_KL_MODES = (_modes.KL_COV, _modes.KL_CHOL, _modes.KL_STD_COV, _modes.KL_STD_CHOL)


_FLOAT64 = np.dtype(np.float64)


class _Failed(Exception):
    """An item fails: its result is NaN."""


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


def _second(mean1, row1, col1, mean2, row2, col2):
    """The second distribution's items as the compiled terms take them: the first's again for a
    standard mode (None there), which they do not read."""
    return (mean1, row1, col1) if mean2 is None else (mean2, row2, col2)


def _value(mode, items, arena):
    """The value of ``mode`` for one item: ``items`` holds its slots as C-ordered float64
    matrices; its scratch comes from ``arena`` (:func:`_arena`). Not the values of diagonal
    covariances: :mod:`fastmvn._batch` streams those (``kernels.drivers.diagonal_batch``, and
    ``diagonal_grad_batch`` for their gradients)."""
    terms = _linalg()[1]
    if mode in _KL_MODES:
        items = (*items[:3], *_second(*items, *([None] * (6 - len(items)))))
        defined, value = terms.kl_parts(arena, mode, *items, False, _config.TRIANGULAR_BLOCKS)[:2]
    elif mode == _modes.LOGDET:
        defined, value = terms.logdet_value(arena, *items)
    elif mode == _modes.TRACE_SOLVE:
        defined, value = terms.trace_solve_value(arena, *items)
    else:
        defined, value = terms.logpdf_parts(arena, mode, *items)[:2]
    return _defined(defined, value)


def _defined(defined, value):
    """``value`` of an item whose compiled terms say whether it is ``defined``; raises
    :class:`_Failed` where it is not."""
    if not defined:
        raise _Failed
    return value


def kron_sum_logpdf(slots, out, epsilons):
    """The log-densities of Kronecker-sum normals (:func:`fastmvn.logpdf_kron_sum`) over
    ``slots`` (points, means, signal and noise covariances, a noise variance ``σ²`` as the
    ``1×1`` matrix), one compiled call per item (:func:`fastmvn._large_items.kron_sum_logpdf`,
    with the ``epsilons`` of the row and column signals' data, its scratch from an arena),
    into ``out``; returns the flat index of the first item left NaN, or None."""
    return _each(lambda items, arena: (_defined(*_linalg()[1].kron_sum_logpdf(arena, *items, *epsilons)), ()),
                 slots, out, (), (), "kron_sum_logpdf")


def evaluate(mode, slots, out):
    """Run ``mode`` over ``slots`` (``(*batch, r, c)`` arrays) into ``out`` (of the batch
    shape), one item at a time; return the flat index of the first failing item, or None."""
    return _each(lambda items, arena: (_value(mode, items, arena), ()), slots, out, (), (), mode)


class _OneBlasThread:
    """A context in which BLAS runs on one thread (every BLAS library loaded, through
    threadpoolctl), entered by any number of threads at once: the first in sets the limit,
    the last out restores what was there before, so that two calls overlapping in time
    cannot leave the limit behind."""

    def __init__(self):
        self._lock = threading.Lock()
        self._inside = 0
        self._limit = None

    @functools.cached_property
    def _controller(self):
        from threadpoolctl import ThreadpoolController  # scans the loaded libraries: once, when first needed

        return ThreadpoolController()

    def __enter__(self):
        with self._lock:
            if self._inside == 0:
                self._limit = self._controller.limit(limits=1, user_api="blas")
            self._inside += 1

    def __exit__(self, *exc):
        with self._lock:
            self._inside -= 1
            if self._inside == 0:
                self._limit.restore_original_limits()
                self._limit = None


_ONE_BLAS_THREAD = _OneBlasThread()


class _Workers:
    """The threads that items are split over: one pool for the process, made on first use
    (starting threads for each call cost about 0.2 ms more than handing runs to waiting ones);
    a child process after a fork, which has none of its parent's threads, makes its own.
    Runs never split further, so a run cannot wait for a thread of the pool."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pool = None

    def pool(self):
        with self._lock:
            if self._pool is None:
                import numba

                self._pool = ThreadPoolExecutor(numba.config.NUMBA_NUM_THREADS, thread_name_prefix="fastmvn-lapack")
            return self._pool

    def forget(self):
        self._lock, self._pool = threading.Lock(), None


_WORKERS = _Workers()

if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_WORKERS.forget)


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


def _each(compute, slots, out, grads, wanted, what):
    """``compute(items, arena)`` (the value and gradients of one item from its slots in float64,
    its scratch from ``arena``) for every item of ``slots``, into ``out`` and the ``grads`` that
    ``wanted`` marks; a failing item's value and gradients are NaN. Returns the flat index of
    the first failing item. ``what`` names the computation (a mode, and the gradients wanted),
    for :func:`_arena`.

    The items run one after another, or split over threads in contiguous runs, the first on
    the calling thread, with BLAS on one thread or on its own threads, as :func:`_threads`
    decides (limiting BLAS to one thread took about 25 µs a call); the BLAS and LAPACK calls
    (:mod:`fastmvn._lapack`) release the interpreter lock. Handing every run to the pool and
    waiting ran both runs on one core of two about half the time (the woken threads started
    where the waiting one was): 1.0 times the speed of one thread where the calling thread's
    own run gives 1.5–1.9."""
    count = out.size
    split, one_blas_thread = _threads(count, largest_side(slots), bool(grads))
    with _ONE_BLAS_THREAD if one_blas_thread else contextlib.nullcontext():
        key = (what, *(slot.shape[-2:] for slot in slots))
        if split == 1:
            return _each_item(compute, key, slots, out, grads, wanted, range(count))
        edges = [count * k // split for k in range(split + 1)]
        runs = [range(start, stop) for start, stop in zip(edges, edges[1:])]
        others = [_WORKERS.pool().submit(_each_item, compute, key, slots, out, grads, wanted, run) for run in runs[1:]]
        try:
            first = _each_item(compute, key, slots, out, grads, wanted, runs[0])
        finally:  # the other runs write into out: none outlives the call
            firsts = [other.result() for other in others]
        return min((bad for bad in (first, *firsts) if bad is not None), default=None)


def _each_item(compute, key, slots, out, grads, wanted, flats):
    """:func:`_each` for the items of flat indices ``flats`` (increasing), their scratch from
    one arena (:func:`_arena`) for items of ``key``, each item's results copied out before the
    next item takes it."""
    bad = None
    arena = _arena(key)
    asked = 0
    shape = out.shape
    # Casts into float32 of a failing item: NaN, no warning. A float64 value is compiled
    # arithmetic, stored as it is.
    quiet = np.errstate(all="ignore") if grads or out.dtype != np.float64 else contextlib.nullcontext()
    with quiet:
        for flat in flats:
            index = (flat,) if len(shape) == 1 else np.unravel_index(flat, shape)
            items = [_item(slot[index]) for slot in slots]
            arena[1].fill(0)
            try:
                value, item_grads = compute(items, arena)
            except _Failed:
                value, item_grads = math.nan, ()
            asked = max(asked, int(arena[1][1]))
            out[index] = value
            finite = math.isfinite(out[index])  # as stored: beyond float32's range fails in a float32 out
            if not finite:
                out[index] = math.nan
                bad = flat if bad is None else bad
            for k, (grad, wants) in enumerate(zip(grads, wanted)):
                if wants:
                    grad[index] = item_grads[k] if finite else math.nan
    _asked(key, asked)
    return bad


#: What the compiled call of one item asked of its arena, in float64 numbers, by the
#: computation and the items' shapes (:func:`_arena`), for the calls that repeat them.
_ASKED: dict[tuple, int] = {}
_ASKED_LOCK = threading.Lock()
_NO_BUFFER = np.empty(0)


def _arena(key):
    """The scratch of items of ``key`` (:func:`fastmvn._lapack.matrix`): ``(buffer, used)``,
    a buffer as large as the last such items asked for: from the buffer pool
    (:mod:`fastmvn._pool`, which keeps it between calls) from
    :data:`fastmvn._config.ARENA_MIN_BYTES` on, from ``np.empty`` below, and empty the first
    time and above :data:`~fastmvn._config.ARENA_MAX_BYTES`. A matrix that does not fit in it
    is new memory, as it is without an arena."""
    size = _ASKED.get(key, 0)
    fits = 0 < 8 * size <= _config.ARENA_MAX_BYTES
    return _linalg()[0].arena(_pool.empty((size,), np.float64, least=_config.ARENA_MIN_BYTES) if fits else _NO_BUFFER)


def _asked(key, size):
    """Record that items of ``key`` asked for ``size`` numbers of scratch; the record keeps the
    last :data:`fastmvn._config.ARENA_KEYS` computations and shapes."""
    with _ASKED_LOCK:
        _ASKED.pop(key, None)
        _ASKED[key] = size
        while len(_ASKED) > _config.ARENA_KEYS:
            del _ASKED[next(iter(_ASKED))]


def _item(view):
    """One item of a slot as the compiled terms take it: a C-ordered, read-only float64 matrix,
    the item itself where it is one already (a small call's views are), else a read-only view
    of its conversion. Read-only either way, the compiled terms take every slot's item as one
    type whether it was converted (float32 data, a new array) or not (a view of the caller's),
    and compile once, not once per mixture."""
    if view.dtype == _FLOAT64 and not view.flags.writeable and view.flags.c_contiguous:
        return view
    item = np.ascontiguousarray(view, dtype=np.float64)
    if item.flags.writeable:
        item = item.view()
        item.flags.writeable = False
    return item


def _kl_grad(arena, mode, wanted, mean1, row1, col1, mean2=None, row2=None, col2=None):
    """The KL of ``mode`` and its gradients ``(∂/∂mean1, ∂/∂row1, ∂/∂col1, ∂/∂mean2, ∂/∂row2,
    ∂/∂col2)`` (the last three left out for a standard mode), by the closed forms of
    ``docs/gradients.md`` in BLAS-3 operations, from the factors and solves of the value (one
    compiled call, :func:`fastmvn._large_items.kl_grads`, its scratch from ``arena``); only
    those that ``wanted`` marks are computed (None in their place otherwise)."""
    flags = tuple(bool(wants) for wants in wanted) + (False,) * (6 - len(wanted))
    defined, value, *grads = _linalg()[1].kl_grads(arena, mode, flags, mean1, row1, col1,
                                                   *_second(mean1, row1, col1, mean2, row2, col2),
                                                   _config.TRIANGULAR_BLOCKS)
    if not defined:
        raise _Failed
    return value, [grad if wants else None for grad, wants in zip(grads, wanted)]


def _logpdf_grad(arena, mode, wanted, x, mean, row, col):
    """The log-density of ``mode`` (``LOGPDF`` or ``LOGPDF_CHOL``) and its gradients ``(∂/∂x,
    ∂/∂mean, ∂/∂row, ∂/∂col)``, one compiled call (:func:`fastmvn._large_items.logpdf_grads`)
    with its scratch from ``arena``; only those that ``wanted`` marks are computed (None in their place otherwise)."""
    defined, value, *grads = _linalg()[1].logpdf_grads(arena, mode, tuple(bool(wants) for wants in wanted), x, mean,
                                                       row, col)
    if not defined:
        raise _Failed
    return value, [grad if wants else None for grad, wants in zip(grads, wanted)]


def value_and_grad(mode, slots, out, grads, wanted):
    """Run the KL or log-density ``mode`` and its gradients over ``slots`` into ``out`` and the
    ``grads`` (``(*batch, r, c)`` arrays) that ``wanted`` marks, one item at a time; a failing
    item's value and gradients are NaN. Returns the flat index of the first failing item, or None."""
    gradient = _logpdf_grad if mode in (_modes.LOGPDF, _modes.LOGPDF_CHOL) else _kl_grad
    return _each(lambda items, arena: gradient(arena, mode, wanted, *items), slots, out, grads, wanted,
                 (mode, tuple(bool(wants) for wants in wanted)))
