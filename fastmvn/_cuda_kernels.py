"""The per-item kernels of :mod:`fastmvn._kernels` compiled for CUDA, and the CUDA batch kernel.

Nothing here restates the arithmetic: :func:`retarget` compiles copies of the plain
Python sources (``py_func``) of the CPU per-item functions as CUDA device functions,
and :func:`batch_kernel` runs their ``evaluate`` once per thread, one batch item each.
Importing this module needs numba-cuda but no GPU; kernels compile on first use.
"""

import math
from functools import lru_cache
from types import FunctionType

from numba import cuda, float64, int64, types, void
from numba.np.numpy_support import from_dtype

from . import _kernels

#: The largest ``n`` and ``p`` the CUDA kernels take: the per-thread scratch is fixed in size.
MAX_SIZE = 32

# Scratch sizes compiled for: the smallest that fits is used, so a 4×4 problem does not
# reserve local memory for 32×32 in every thread.
_SCRATCH_SIZES = (4, 8, 16, MAX_SIZE)


def retarget(module, compile):
    """Copies of the per-item functions of ``module``, compiled by ``compile``.

    Every numba dispatcher defined in ``module`` that has a ``py_func`` is copied
    (same code, defaults and closure) into one new globals namespace, in which each
    such name is then bound to the compiled copy, so the copies call one another.
    ``compile`` is e.g. ``cuda.jit(device=True)``; it compiles lazily, so only the
    functions a kernel calls are ever compiled.

    Returns
    -------
    namespace : dict
        The copies' globals: ``namespace["evaluate"]`` is the compiled ``evaluate``.
    """
    namespace = dict(vars(module))
    for name, value in vars(module).items():
        func = getattr(value, "py_func", None)
        if isinstance(func, FunctionType) and func.__module__ == module.__name__:
            copy = FunctionType(func.__code__, namespace, func.__name__, func.__defaults__, func.__closure__)
            copy.__kwdefaults__ = func.__kwdefaults__
            copy.__qualname__ = func.__qualname__
            copy.__doc__ = func.__doc__
            namespace[name] = compile(copy)
    return namespace


DEVICE = retarget(_kernels, cuda.jit(device=True))


def scratch_size(largest):
    """The scratch size compiled for matrices whose largest side is ``largest``."""
    for size in _SCRATCH_SIZES:
        if largest <= size:
            return size
    raise ValueError(f"the CUDA kernels take matrices up to {MAX_SIZE}×{MAX_SIZE}; got a side of {largest}")


def batch_kernel(mode, size):
    """The Python source of the batch kernel for ``mode`` with scratch for sides up to ``size``.

    ``kernel(a0, …, a5, out, first_bad, start)`` sets ``out[b] = evaluate(mode, a0[b], …, a5[b])``
    for every ``b`` of ``out``, one thread per item (grid-stride when the grid is smaller).
    An item whose result is not finite is stored as NaN and ``first_bad[0]`` becomes at
    most ``start + b``. ``mode`` and ``size`` are compile-time constants. The scratch is
    that of the CPU driver ``fastmvn._kernels.evaluate_batch``, each side at most ``size``;
    the two change together.
    """
    evaluate = DEVICE["evaluate"]

    def kernel(a0, a1, a2, a3, a4, a5, out, first_bad, start):
        n = a0.shape[1]
        p = a0.shape[2]
        Lu1 = cuda.local.array((size, size), float64)
        Lv1 = cuda.local.array((size, size), float64)
        Lu2 = cuda.local.array((size, size), float64)
        Lv2 = cuda.local.array((size, size), float64)
        Y = cuda.local.array((size, size), float64)
        ru1 = cuda.local.array(size, float64)
        rv1 = cuda.local.array(size, float64)
        ru2 = cuda.local.array(size, float64)
        rv2 = cuda.local.array(size, float64)
        t = cuda.local.array(size, float64)
        for b in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
            value = evaluate(mode, a0[b], a1[b], a2[b], a3[b], a4[b], a5[b],
                             Lu1, Lv1, Lu2, Lv2, Y, ru1, rv1, ru2, rv2, t, n, p)
            if not math.isfinite(value):
                value = math.nan
                cuda.atomic.min(first_bad, 0, start + b)
            out[b] = value

    return kernel


def signature(slot_dtypes, out_dtype):
    """The kernel signature: six ``(batch, r, c)`` slots of any layout (stride 0 included)."""
    slots = [types.Array(from_dtype(dtype), 3, "A") for dtype in slot_dtypes]
    return void(*slots, types.Array(from_dtype(out_dtype), 1, "C"), int64[::1], int64)


@lru_cache(maxsize=None)
def compiled(mode, size, slot_dtypes, out_dtype):
    """The batch kernel for ``mode``, scratch ``size`` and these dtypes, compiled on first use."""
    return cuda.jit(signature(slot_dtypes, out_dtype))(batch_kernel(mode, size))
