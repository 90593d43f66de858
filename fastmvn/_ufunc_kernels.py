"""The gufunc kernels of :mod:`fastmvn.ufuncs`: one item of a table entry through the per-item
kernels of :mod:`fastmvn.kernels` in a single lane (``m = 1``), as the CUDA kernels run them.

Nothing here restates the arithmetic. A gufunc's core arrays become one-item slots (a matrix
``(r, c)`` as ``(1, r, c)``, variances ``(n,)`` as ``(1, n, 1)``, views), which are gathered into
lane scratch of one lane, evaluated and written out as the batch driver does
(:func:`~fastmvn.kernels.values.gather_slots`, :func:`~fastmvn.kernels.values.evaluate`,
:func:`~fastmvn.kernels.values.finish`): a failing item is NaN. :func:`evaluate_item` takes the
mode at run time, so it is compiled once per dtype and shared by every gufunc. Importing this
module imports Numba and compiles nothing; :func:`gufunc` compiles (or loads from the on-disk
cache, this file being one of :func:`fastmvn._jit.sources_stamp`'s sources).
"""

import contextlib
import functools

import numba
import numpy as np
from numba.core import types
from numba.core.compiler_lock import global_compiler_lock
from numba.extending import overload
from numba.np.ufunc.gufunc import GUFunc
from numba.np.ufunc.sigparse import parse_signature

from . import _config, _jit
from .kernels.scratch import QUAD, SCALARS
from .kernels.values import evaluate, finish, gather_slots, slot_layout


def _compiled(func=None, *, inline=False):
    """A CPU function compiled lazily with fastmvn's options and on-disk cache, as
    :func:`fastmvn._jit.item` compiles, but not recorded among the per-item kernels that other
    targets compile (these allocate)."""
    if func is None:
        return lambda func: _compiled(func, inline=inline)
    return _jit._cached(numba.njit(inline="always" if inline else "never", **_jit.OPTIONS)(func))


def as_slot(a):
    """The core array ``a`` as a one-item slot: ``(1, r, c)``, or ``(1, n, 1)`` for variances."""


@overload(as_slot, inline="always")
def _as_slot(a):
    if a.ndim == 1:
        return lambda a: a[None, :, None]
    return lambda a: a[None]


@_compiled(inline=True)
def piece(buffer, start, rows, cols):
    """``buffer[start : start + rows·cols]`` as a ``(rows, cols, 1)`` lane array."""
    return buffer[start:start + rows * cols].reshape((rows, cols, 1))


@_compiled(inline=True)
def item_scratch(a0, a1, a2, a3, a4, a5, n, p, dtype):
    """The scratch of :func:`~fastmvn.kernels.values.evaluate` for one lane (the table
    ``VALUE_SCRATCH`` of :mod:`fastmvn.kernels.scratch`): the slots, each of its slot's shape,
    and the reciprocal diagonals in one array of ``dtype``, ``v`` and the result in one of
    float64. Two allocations per item, not the batch driver's twelve per chunk: a gufunc
    allocates for every item."""
    o0 = a0.shape[1] * a0.shape[2]
    o1 = o0 + a1.shape[1] * a1.shape[2]
    o2 = o1 + a2.shape[1] * a2.shape[2]
    o3 = o2 + a3.shape[1] * a3.shape[2]
    o4 = o3 + a4.shape[1] * a4.shape[2]
    o5 = o4 + a5.shape[1] * a5.shape[2]
    buffer = np.empty(o5 + 2 * (n + p), dtype)
    scalars = np.empty(SCALARS + 1)
    return (piece(buffer, 0, a0.shape[1], a0.shape[2]), piece(buffer, o0, a1.shape[1], a1.shape[2]),
            piece(buffer, o1, a2.shape[1], a2.shape[2]), piece(buffer, o2, a3.shape[1], a3.shape[2]),
            piece(buffer, o3, a4.shape[1], a4.shape[2]), piece(buffer, o4, a5.shape[1], a5.shape[2]),
            buffer[o5:o5 + n].reshape((n, 1)), buffer[o5 + n:o5 + n + p].reshape((p, 1)),
            buffer[o5 + n + p:o5 + 2 * n + p].reshape((n, 1)), buffer[o5 + 2 * n + p:o5 + 2 * (n + p)].reshape((p, 1)),
            scalars[:SCALARS].reshape((SCALARS, 1)), scalars[SCALARS:])


@_compiled
def evaluate_item(mode, a0, a1, a2, a3, a4, a5, out, dtype):
    """``out[0] = evaluate(mode, a0[0], …, a5[0])`` (NaN if not finite), in arithmetic of ``dtype``:
    the batch driver ``fastmvn.kernels.evaluate_batch`` for one item, in one lane."""
    n = a0.shape[1]
    p = a0.shape[2]
    S0, S1, S2, S3, S4, S5, ru1, rv1, ru2, rv2, v, res = item_scratch(a0, a1, a2, a3, a4, a5, n, p, dtype)
    gather_slots(a0, a1, a2, a3, a4, a5, 0, S0, S1, S2, S3, S4, S5, slot_layout(mode, False), v[QUAD], 1)
    evaluate(mode, S0, S1, S2, S3, S4, S5, ru1, rv1, ru2, rv2, v, res, 1, n, p)
    finish(res, out, 0, 1, 1)


def compute(mode, a0, a1, a2, a3, a4, a5, out):
    """:func:`evaluate_item` in the arithmetic the CPU batch functions use
    (``fastmvn._batch.working_dtype``): float32 for float32 data of sides up to
    ``FLOAT32_ARITHMETIC_MAX_SIDE``, float64 otherwise."""


@overload(compute, inline="always")
def _compute(mode, a0, a1, a2, a3, a4, a5, out):
    if a0.dtype != types.float32:
        return lambda mode, a0, a1, a2, a3, a4, a5, out: evaluate_item(mode, a0, a1, a2, a3, a4, a5, out, np.float64)

    def impl(mode, a0, a1, a2, a3, a4, a5, out):
        largest = max(max(a0.shape[1], a0.shape[2]), max(a1.shape[1], a1.shape[2]), max(a2.shape[1], a2.shape[2]),
                      max(a3.shape[1], a3.shape[2]), max(a4.shape[1], a4.shape[2]), max(a5.shape[1], a5.shape[2]))
        if largest <= _config.FLOAT32_ARITHMETIC_MAX_SIDE:
            evaluate_item(mode, a0, a1, a2, a3, a4, a5, out, np.float32)
        else:
            evaluate_item(mode, a0, a1, a2, a3, a4, a5, out, np.float64)

    return impl


def _kernel(mode, arity):
    """The gufunc kernel of ``mode`` for ``arity`` core arrays and the output: the slots a
    mode does not use are one-entry views of the first (as the batch driver's padding, a
    ``(1, 1)`` matrix each)."""

    def six(a0, a1, a2, a3, a4, a5, out):
        compute(mode, as_slot(a0), as_slot(a1), as_slot(a2), as_slot(a3), as_slot(a4), as_slot(a5), out)

    def four(a0, a1, a2, a3, out):
        s0 = as_slot(a0)
        pad = s0[:, :1, :1]
        compute(mode, s0, as_slot(a1), as_slot(a2), as_slot(a3), pad, pad, out)

    def two(a0, a1, out):
        s0 = as_slot(a0)
        pad = s0[:, :1, :1]
        compute(mode, s0, as_slot(a1), pad, pad, pad, pad, out)

    def one(a0, out):
        s0 = as_slot(a0)
        pad = s0[:, :1, :1]
        compute(mode, s0, pad, pad, pad, pad, pad, out)

    return {6: six, 4: four, 2: two, 1: one}[arity]


def gufunc(name, doc, mode, layout, dtypes=(np.float64, np.float32)):
    """The gufunc ``name`` of ``mode`` with the core signature ``layout``
    (``"(n,p),(n,n),(p,p)->()"`` …), compiled for ``dtypes`` (or loaded from the on-disk
    cache, unless ``FASTMVN_CACHE=0``)."""
    core, _ = parse_signature(layout)
    kernel = _kernel(mode, len(core))
    kernel.__name__ = kernel.__qualname__ = name
    kernel.__doc__ = doc
    return build(kernel, layout, dtypes)


def build(kernel, layout, dtypes):
    """The gufunc of the Python function ``kernel`` with the core signature ``layout`` and a
    one-entry output, compiled for ``dtypes`` with fastmvn's options (or loaded from the
    on-disk cache, unless ``FASTMVN_CACHE=0``)."""
    core, _ = parse_signature(layout)
    result = GUFunc(kernel, layout, cache=_jit.CACHE, targetoptions={"nopython": True, "fastmath": _jit.FASTMATH})
    dispatcher = result.gufunc_builder.nb_func
    if _jit.CACHE:  # the kernel, stamped as every kernel (a gufunc's dispatcher keeps its cache in .cache)
        dispatcher.cache = _jit._cache_class()[0](kernel)
    for dtype in dtypes:
        item = numba.from_dtype(np.dtype(dtype))
        result.add(types.void(*(types.Array(item, len(axes), "A") for axes in core), types.Array(item, 1, "A")))
    with global_compiler_lock, _stamped_loops(dispatcher):
        return result.build_ufunc()


@contextlib.contextmanager
def _stamped_loops(kernel):
    """Numba's loops around the gufunc kernel ``kernel`` (its dispatcher) cached under
    :func:`fastmvn._jit.sources_stamp` and the name of the kernel's compilation they call
    (``LoopCache`` of :func:`fastmvn._jit._cache_class`): a loop keeps a copy of its kernel's
    machine code, which Numba's own cache would reload after a change to another kernel source
    (it stamps this file alone). Numba builds the loop's cache from a global of
    :mod:`numba.np.ufunc.wrappers`, replaced while the caller holds Numba's compiler lock."""
    from numba.np.ufunc import wrappers

    numba_cache = wrappers.GufWrapperCache
    if _jit.CACHE:
        wrappers.GufWrapperCache = functools.partial(_jit._cache_class()[2], kernel=kernel)
    try:
        yield
    finally:
        wrappers.GufWrapperCache = numba_cache
