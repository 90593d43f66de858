"""The per-item kernels of :mod:`fastmvn.kernels` compiled for CUDA, and the CUDA batch kernel.

Nothing here restates the arithmetic: :func:`retarget` compiles copies of the plain
Python sources (``py_func``) of the CPU per-item functions (those that
:func:`fastmvn._jit.item` recorded) as CUDA device functions, and :func:`batch_kernel`
runs their ``evaluate`` once per thread, one batch item each (:func:`grad_kernel` their
``value_and_grad``, :func:`kron_sum_kernel` their Kronecker-sum KL or log-density). Each
kernel's thread-local scratch is written out from the tables of
``fastmvn.kernels.scratch``, which the CPU drivers allocate: CUDA wants the shape of a
local array as a constant. Importing this module needs numba-cuda but no GPU; kernels
compile on first use.
"""

import builtins
from functools import lru_cache
from types import FunctionType

from numba import cuda, float64, int64, types, void
from numba.np.numpy_support import from_dtype

from . import _config, _jit
from .kernels import scratch  # the package's import records every per-item kernel in _jit.ITEMS
from .kernels.eigen import JACOBI_ROWS
from .kernels.kronsum import KRON_SCALARS


def retarget(functions, compile):
    """Copies of the per-item ``functions`` (numba dispatchers), compiled by ``compile``.

    Each function's plain Python source (``py_func``) is copied (same code, defaults and
    closure) into one new globals namespace, the functions' own globals merged, in which
    each function's name is then bound to its compiled copy, so the copies call one another
    across the modules they come from. ``compile`` is e.g. ``cuda.jit(device=True)``; it
    compiles lazily, so only the functions a kernel calls are ever compiled.

    Returns
    -------
    namespace : dict
        The copies' globals: ``namespace["evaluate"]`` is the compiled ``evaluate``.

    Raises
    ------
    ValueError
        Where one name means two things in the functions' modules.
    """
    namespace = {"__builtins__": builtins}
    for dispatcher in functions:
        for name, value in dispatcher.py_func.__globals__.items():
            if name.startswith("__") and name.endswith("__"):
                continue
            if namespace.setdefault(name, value) is not value:
                raise ValueError(f"{name!r} means two things in the modules of the per-item functions")
    for dispatcher in functions:
        func = dispatcher.py_func
        copy = FunctionType(func.__code__, namespace, func.__name__, func.__defaults__, func.__closure__)
        copy.__kwdefaults__ = func.__kwdefaults__
        copy.__qualname__ = func.__qualname__
        copy.__doc__ = func.__doc__
        namespace[func.__name__] = compile(copy)
    return namespace


DEVICE = retarget(_jit.ITEMS, cuda.jit(device=True))


def scratch_size(largest):
    """The scratch size compiled for matrices whose largest side is ``largest``."""
    for size in _config.CUDA_SCRATCH_SIZES:
        if largest <= size:
            return size
    raise ValueError(f"the CUDA kernels take matrices up to {_config.MAX_SIZE}×{_config.MAX_SIZE}; "
                     f"got a side of {largest}")


def local_scratch(table, size):
    """Python source that allocates the scratch of ``table`` (``kernels.scratch.VALUE_SCRATCH``,
    ``GRADIENT_SCRATCH``, ``KRON_SUM_LOGPDF_SCRATCH`` or ``KRON_SUM_KL_SCRATCH``) in a thread's
    local memory, for sides up to ``size``: one item each, float64, every extent but ``v``'s
    rows ``size``."""
    shapes = {scratch.ROW_VECTOR: (size, 1), scratch.COL_VECTOR: (size, 1),
              scratch.SCALAR_ROWS: (scratch.SCALARS, 1), scratch.KRON_SCALAR_ROWS: (KRON_SCALARS + JACOBI_ROWS, 1),
              scratch.RESULT: 1}
    return "".join(f"    {name} = cuda.local.array({shapes.get(rule, (size, size, 1))}, float64)\n"
                   for name, rule in table)


def items(slots, split):
    """Python source that names item ``b`` of each of ``slots`` slots ``a0, a1, …``: slot ``k`` as
    ``xk`` and the item's index in it as ``i``. A slot is ``(count, r, c)``, or with ``split``
    ``(outer, inner, r, c)``: a batch whose axes do not merge into one, in two parts whose axes
    do (a prior per mixture component), item ``b`` at ``[b // inner, b % inner]``."""
    names = ", ".join(f"x{k}" for k in range(slots))
    if not split:
        return f"        {names}, i = {', '.join(f'a{k}' for k in range(slots))}, b\n"
    return (f"        o = b // a0.shape[1]\n        i = b - o * a0.shape[1]\n"
            f"        {names} = {', '.join(f'a{k}[o]' for k in range(slots))}\n")


def define(source, table, size, slots, split, **names):
    """The kernel ``source`` defines, its ``{scratch}`` the allocations of ``table`` for sides
    up to ``size``, its ``{items}`` the items of its ``slots`` slots (:func:`items`, ``split``
    or not) and ``{rows}`` the axis of their rows; ``names`` (device functions, the mode) are
    its globals besides ``cuda``, ``float64`` and the names of :mod:`fastmvn.kernels.scratch`."""
    namespace = {name: value for name, value in vars(scratch).items() if name.isupper()}
    namespace.update(cuda=cuda, float64=float64, **names)
    exec(source.format(scratch=local_scratch(table, size), items=items(slots, split), rows=2 if split else 1),
         namespace)
    return namespace["kernel"]


_BATCH_KERNEL = """
def kernel(a0, a1, a2, a3, a4, a5, out, first_bad, start):
    n = a0.shape[{rows}]
    p = a0.shape[{rows} + 1]
    count = out.shape[0]
{scratch}    layout = slot_layout(mode, False)
    for b in range(cuda.grid(1), count, cuda.gridsize(1)):
{items}        gather_slots(x0, x1, x2, x3, x4, x5, i, S0, S1, S2, S3, S4, S5, layout, v[QUAD], 1)
        evaluate(mode, S0, S1, S2, S3, S4, S5, ru1, rv1, ru2, rv2, v, res, 1, n, p)
        if finish(res, out, b, 1, count) < count:
            cuda.atomic.min(first_bad, 0, start + b)
"""


def batch_kernel(mode, size, split=False):
    """The batch kernel for ``mode`` with scratch for sides up to ``size``, uncompiled.

    ``kernel(a0, …, a5, out, first_bad, start)`` sets ``out[b] = evaluate(mode, a0[b], …, a5[b])``
    for every ``b`` of ``out``, one thread per item (grid-stride when the grid is smaller):
    the CPU driver ``fastmvn.kernels.evaluate_batch`` with one lane. An item whose result
    is not finite is stored as NaN and ``first_bad[0]`` becomes at most ``start + b``.
    With ``split`` the slots are ``(outer, inner, r, c)`` (:func:`items`). ``mode``, ``size``
    and ``split`` are compile-time constants.
    """
    return define(_BATCH_KERNEL, scratch.VALUE_SCRATCH, size, 6, split, mode=mode,
                  **{name: DEVICE[name] for name in ("gather_slots", "evaluate", "finish", "slot_layout")})


_GRAD_KERNEL = """
def kernel(a0, a1, a2, a3, a4, a5, out, g0, g1, g2, g3, g4, g5, wanted, first_bad, start):
    n = a0.shape[{rows}]
    p = a0.shape[{rows} + 1]
    count = out.shape[0]
{scratch}    layout = slot_layout(mode, True)
    for b in range(cuda.grid(1), count, cuda.gridsize(1)):
{items}        gather_slots(x0, x1, x2, x3, x4, x5, i, S0, S1, S2, S3, S4, S5, layout, v[QUAD], 1)
        value_and_grad(mode, S0, S1, S2, S3, S4, S5, W, G1, H1, G2, H2, A, B,
                       rp1, rq1, rp2, rq2, v, res, 1, n, p)
        if finish(res, out, b, 1, count) < count:
            cuda.atomic.min(first_bad, 0, start + b)
        store_wanted(mode, g0, g1, g2, g3, g4, g5, W, G1, H1, G2, H2, A, B, wanted, b, res, 1)
"""


def grad_kernel(mode, size, split=False):
    """The value-and-gradient kernel for ``mode`` (a ``KL_*`` or ``LOGPDF*`` mode), uncompiled.

    ``kernel(a0, …, a5, out, g0, …, g5, wanted, first_bad, start)`` is the CPU driver
    ``fastmvn.kernels.value_and_grad_batch`` with one lane, one thread per item: the KL
    (or log-density) into ``out[b]`` and the gradients that bit ``k`` of ``wanted`` asks for into ``gk[b]``;
    the slots as in :func:`batch_kernel`.
    """
    return define(_GRAD_KERNEL, scratch.GRADIENT_SCRATCH, size, 6, split, mode=mode,
                  **{name: DEVICE[name] for name in ("gather_slots", "value_and_grad", "finish", "store_wanted",
                                                     "slot_layout")})


_KRON_SUM_KERNEL = """
def kernel(a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, out, first_bad, start):
    n = a0.shape[{rows}]
    p = a0.shape[{rows} + 1]
    count = out.shape[0]
{scratch}    for b in range(cuda.grid(1), count, cuda.gridsize(1)):
{items}        gather(x1, x1, i, U1, True, False, 1)
        gather(x2, x2, i, V1, True, False, 1)
        gather(x3, x3, i, A1, True, False, 1)
        gather(x4, x4, i, B1, True, False, 1)
        if kl:
            gather(x0, x5, i, D, False, True, 1)
            gather(x6, x6, i, U2, True, False, 1)
            gather(x7, x7, i, V2, True, False, 1)
            gather(x8, x8, i, A2, True, False, 1)
            gather(x9, x9, i, B2, True, False, 1)
            kron_sum_kl(D, U1, V1, A1, B1, U2, V2, A2, B2, Qu1, Qv1, Qu2, Qv2, T, ru1, rv1, ru2, rv2,
                        vals_u1, vals_v1, vals_u2, vals_v2, au, cv, eu, fv, v, res, 1, n, p)
        else:
            gather(x5, x0, i, D, False, True, 1)
            kron_sum_logpdf(D, U1, V1, A1, B1, Qu1, Qv1, T, ru1, rv1, vals_u1, vals_v1, v, res, 1, n, p)
        if finish(res, out, b, 1, count) < count:
            cuda.atomic.min(first_bad, 0, start + b)
"""


def kron_sum_kernel(kl, size, split=False):
    """The Kronecker-sum kernel, the KL (``kl``) or the log-density, with scratch for sides up
    to ``size``, uncompiled.

    ``kernel(a0, …, a9, out, first_bad, start)`` is the CPU driver
    ``fastmvn.kernels.kron_sum_batch`` with one lane, one thread per item (grid-stride when
    the grid is smaller), in float64. ``a0 … a4`` are ``M, U, V, A, B`` of the first
    distribution (only the lower triangles of the covariances read); a KL reads the second's
    from ``a5 … a9``, a log-density the point ``X`` from ``a5`` (``a6 … a9`` unused). An item
    whose result is not finite is stored as NaN and ``first_bad[0]`` becomes at most
    ``start + b``. With ``split`` the slots are ``(outer, inner, r, c)`` (:func:`items`).
    ``kl``, ``size`` and ``split`` are compile-time constants.
    """
    table = scratch.KRON_SUM_KL_SCRATCH if kl else scratch.KRON_SUM_LOGPDF_SCRATCH
    return define(_KRON_SUM_KERNEL, table, size, 10, split, kl=kl,
                  **{name: DEVICE[name] for name in ("gather", "kron_sum_kl", "kron_sum_logpdf", "finish")})


def signature(slot_dtypes, out_dtype, split=False):
    """The kernel signature: the ``(batch, r, c)`` slots (six; ten for :func:`kron_sum_kernel`),
    ``(outer, inner, r, c)`` with ``split``, of any layout (stride 0 included), ``out``,
    ``first_bad`` and ``start``."""
    slots = [types.Array(from_dtype(dtype), 4 if split else 3, "A") for dtype in slot_dtypes]
    return void(*slots, types.Array(from_dtype(out_dtype), 1, "C"), int64[::1], int64)


def grad_signature(slot_dtypes, out_dtype, split=False):
    """The gradient kernel's signature: the slots (as in :func:`signature`), ``out``, six
    C-contiguous ``(batch, r, c)`` gradients (or ``(1, 1, 1)`` placeholders), ``wanted``,
    ``first_bad`` and ``start``."""
    slots = [types.Array(from_dtype(dtype), 4 if split else 3, "A") for dtype in slot_dtypes]
    dtype = from_dtype(out_dtype)
    return void(*slots, types.Array(dtype, 1, "C"), *(types.Array(dtype, 3, "C"),) * 6,
                int64, int64[::1], int64)


@lru_cache(maxsize=None)
def compiled(mode, size, slot_dtypes, out_dtype, grad=False, split=False):
    """The batch kernel (or with ``grad`` the value-and-gradient kernel) for ``mode``,
    scratch ``size``, these dtypes and slots ``split`` or not, compiled on first use."""
    if grad:
        return cuda.jit(grad_signature(slot_dtypes, out_dtype, split))(grad_kernel(mode, size, split))
    return cuda.jit(signature(slot_dtypes, out_dtype, split))(batch_kernel(mode, size, split))


@lru_cache(maxsize=None)
def compiled_kron_sum(kl, size, slot_dtypes, out_dtype, split=False):
    """The Kronecker-sum kernel (:func:`kron_sum_kernel`) for ``kl``, scratch ``size``, these
    dtypes and slots ``split`` or not, compiled on first use."""
    return cuda.jit(signature(slot_dtypes, out_dtype, split))(kron_sum_kernel(kl, size, split))


@lru_cache(maxsize=None)
def sum_rows():
    """``total[target[b]] += rows[b]`` for every row ``b``, by atomic additions (float64 ``total``)."""

    @cuda.jit
    def kernel(rows, target, total):
        b = cuda.grid(1)
        if b < rows.shape[0]:
            t = target[b]
            for j in range(rows.shape[1]):
                cuda.atomic.add(total, (t, j), rows[b, j])

    return kernel


@lru_cache(maxsize=None)
def cast():
    """``out[i] = total[i]``, row by row, converting to the dtype of ``out``."""

    @cuda.jit
    def kernel(total, out):
        i = cuda.grid(1)
        if i < out.shape[0]:
            for j in range(out.shape[1]):
                out[i, j] = total[i, j]

    return kernel


@lru_cache(maxsize=None)
def interleave():
    """``dst[a, i, c] = src[i, a, c]``: results computed with a batch axis moved to the front
    (``src``, ``(size, before, inner)``) put in their places (``dst``, ``(before, size, inner)``)."""

    @cuda.jit
    def kernel(src, dst):
        b = cuda.grid(1)
        size, before, inner = src.shape
        if b < size * before * inner:
            i, rest = b // (before * inner), b % (before * inner)
            dst[rest // inner, i, rest % inner] = src[i, rest // inner, rest % inner]

    return kernel


@lru_cache(maxsize=None)
def lower_to():
    """``first_bad[0] = min(first_bad[0], index)``, on the stream."""

    @cuda.jit
    def kernel(first_bad, index):
        cuda.atomic.min(first_bad, 0, index)

    return kernel
