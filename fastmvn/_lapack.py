"""The BLAS and LAPACK routines of the large-item plan (:mod:`fastmvn._large`), callable from
compiled code.

They are SciPy's own routines (``scipy.linalg.cython_blas``, ``cython_lapack``), declared to
Numba as external functions at the addresses SciPy exports. A compiled function calls them
directly: one item's factorisations, solves and norms run in one compiled call, without the
microseconds of Python and ctypes that each call from Python took (at 64×64 those were more
than half of a KL's time). The addresses are registered under fastmvn's own names when this
module is imported, in every process, and cached machine code refers to those names, never to
an address. Under ``NUMBA_DISABLE_JIT=1`` the same functions run as Python and call the
routines through ctypes.

Matrices here are C-ordered float64 arrays; LAPACK and BLAS read Fortran order, in which a
C-ordered ``a`` is ``aᵀ``. A lower triangular factor ``L`` is therefore handed over as the
upper one ``R = Lᵀ``, read in place, and each call's side, triangle and transposition are
chosen to match (the docstrings say what is computed on the C-ordered arrays). Items split over
Numba's threads (:func:`fastmvn._large_items.items_batch`, one BLAS thread each) run their
routines at once.
"""

import ctypes
import math

import numba
import numpy as np
from numba import types
from numba.extending import get_cython_function_address

from ._jit import OPTIONS, _cached

__all__ = ["arena", "matrix", "vector", "copied", "cholesky", "factor", "solve", "solve_right", "solve_lower",
           "lower_solve_t", "inverse", "lower_inverse", "times_lower", "gram", "add_gram", "add_lower_gram",
           "mirror_lower", "lower_cross", "scatter", "norm2", "logdet", "inner", "eigh", "whitened", "tridiagonal",
           "reflect", "times_rows"]

_EPS = np.finfo(np.float64).eps
# The flags of the routines, as the bytes of their one-letter arguments.
_L, _N, _R, _T, _U, _V = (ord(letter) for letter in "LNRTUV")


def _declare(name, module, arguments, result=None):
    """SciPy's routine ``name`` of ``cython_{module}``, of ``arguments`` pointers, returning
    float64 where ``result``: a Numba external function, or a ctypes one without the JIT."""
    address = get_cython_function_address(f"scipy.linalg.cython_{module}", name)
    if numba.config.DISABLE_JIT:
        return ctypes.CFUNCTYPE(ctypes.c_double if result else None, *[ctypes.c_void_p] * arguments)(address)
    import llvmlite.binding

    symbol = f"fastmvn_{name}"
    llvmlite.binding.add_symbol(symbol, address)
    return types.ExternalFunction(symbol, (types.float64 if result else types.void)(*[types.voidptr] * arguments))


_dpotrf = _declare("dpotrf", "lapack", 5)
_dpotri = _declare("dpotri", "lapack", 5)
_dtrsm = _declare("dtrsm", "blas", 11)
_dtrmm = _declare("dtrmm", "blas", 11)
_dsyrk = _declare("dsyrk", "blas", 10)
_dgemm = _declare("dgemm", "blas", 13)
_ddot = _declare("ddot", "blas", 5, result=True)
_dsyevd = _declare("dsyevd", "lapack", 11)
_dsygst = _declare("dsygst", "lapack", 8)
_dsytrd = _declare("dsytrd", "lapack", 10)
_dormtr = _declare("dormtr", "lapack", 13)


def _compiled(func):
    return _cached(numba.njit(**OPTIONS)(func))


# The routines, with their scalar arguments passed by value. Arrays are flat (one-dimensional)
# views of Fortran storage from its first element; LAPACK's leading dimensions say the rest.

@_compiled
def _factorisation(routine_is_potri, upper, n, a, lda):
    """LAPACK's ``info`` of ``dpotrf`` (``dpotri`` where ``routine_is_potri``) on the ``n×n``
    matrix at ``a``, in its triangle ``upper`` or lower, written over it."""
    flags = np.array((_U if upper else _L,), np.uint8)
    ints = np.array((n, lda, 0), np.int32)
    if routine_is_potri:
        _dpotri(flags.ctypes, ints.ctypes, a.ctypes, ints[1:].ctypes, ints[2:].ctypes)
    else:
        _dpotrf(flags.ctypes, ints.ctypes, a.ctypes, ints[1:].ctypes, ints[2:].ctypes)
    return ints[2]


@_compiled
def _triangular(routine_is_trmm, right, upper, transposed, m, n, alpha, a, lda, b, ldb):
    """``b ← alpha·op(a)⁻¹ b`` (``dtrsm``; ``alpha·op(a) b`` by ``dtrmm`` where ``routine_is_trmm``),
    or ``b op(a)`` forms where ``right``, for the triangular ``a`` and the ``m×n`` matrix ``b``."""
    flags = np.array((_R if right else _L, _U if upper else _L, _T if transposed else _N, _N), np.uint8)
    ints = np.array((m, n, lda, ldb), np.int32)
    scalar = np.array((alpha,))
    if routine_is_trmm:
        _dtrmm(flags.ctypes, flags[1:].ctypes, flags[2:].ctypes, flags[3:].ctypes, ints.ctypes, ints[1:].ctypes,
               scalar.ctypes, a.ctypes, ints[2:].ctypes, b.ctypes, ints[3:].ctypes)
    else:
        _dtrsm(flags.ctypes, flags[1:].ctypes, flags[2:].ctypes, flags[3:].ctypes, ints.ctypes, ints[1:].ctypes,
               scalar.ctypes, a.ctypes, ints[2:].ctypes, b.ctypes, ints[3:].ctypes)


@_compiled
def _rank_k(upper, transposed, n, k, alpha, a, lda, beta, c, ldc):
    """``c ← alpha·a aᵀ + beta·c`` (``aᵀ a`` where ``transposed``) in one triangle: ``dsyrk``."""
    flags = np.array((_U if upper else _L, _T if transposed else _N), np.uint8)
    ints = np.array((n, k, lda, ldc), np.int32)
    scalars = np.array((alpha, beta))
    _dsyrk(flags.ctypes, flags[1:].ctypes, ints.ctypes, ints[1:].ctypes, scalars.ctypes, a.ctypes, ints[2:].ctypes,
           scalars[1:].ctypes, c.ctypes, ints[3:].ctypes)


@_compiled
def _product(transposed_a, transposed_b, m, n, k, alpha, a, lda, b, ldb, c, ldc):
    """``c ← alpha·op(a) op(b)`` for the ``m×n`` matrix ``c``: ``dgemm``."""
    flags = np.array((_T if transposed_a else _N, _T if transposed_b else _N), np.uint8)
    ints = np.array((m, n, k, lda, ldb, ldc), np.int32)
    scalars = np.array((alpha, 0.0))
    _dgemm(flags.ctypes, flags[1:].ctypes, ints.ctypes, ints[1:].ctypes, ints[2:].ctypes, scalars.ctypes, a.ctypes,
           ints[3:].ctypes, b.ctypes, ints[4:].ctypes, scalars[1:].ctypes, c.ctypes, ints[5:].ctypes)


@_compiled
def _dot(n, x, y):
    """``Σ xᵢ yᵢ`` over ``n`` entries: ``ddot``."""
    ints = np.array((n, 1), np.int32)
    return _ddot(ints.ctypes, x.ctypes, ints[1:].ctypes, y.ctypes, ints[1:].ctypes)


@_compiled
def _eigensystem(arena, n, a, w):
    """LAPACK's ``info`` of ``dsyevd``: the eigenvalues of the symmetric ``n×n`` matrix at ``a``
    (its upper triangle read) into ``w``, ascending, and its eigenvectors over ``a``, in columns
    (its workspace from ``arena``)."""
    flags = np.array((_V, _U), np.uint8)
    ints = np.array((n, n, 1 + 6 * n + 2 * n * n, 3 + 5 * n, 0), np.int32)
    work, iwork = vector(arena, ints[2]), np.empty(ints[3], np.int32)
    _dsyevd(flags.ctypes, flags[1:].ctypes, ints.ctypes, a.ctypes, ints[1:].ctypes, w.ctypes, work.ctypes,
            ints[2:].ctypes, iwork.ctypes, ints[3:].ctypes, ints[4:].ctypes)
    return ints[4]


@_compiled
def _congruence(n, a, b):
    """LAPACK's ``info`` of ``dsygst`` (type 1, upper): ``a ← R⁻ᵀ a R⁻¹`` in its upper triangle,
    for the ``n×n`` symmetric ``a`` and the upper triangular ``b = R`` (a Cholesky factor ``RᵀR``)."""
    flags = np.array((_U,), np.uint8)
    ints = np.array((1, n, n, n, 0), np.int32)
    _dsygst(ints.ctypes, flags.ctypes, ints[1:].ctypes, a.ctypes, ints[2:].ctypes, b.ctypes, ints[3:].ctypes,
            ints[4:].ctypes)
    return ints[4]


@_compiled
def _reduction(arena, n, a, diagonal, off, tau):
    """LAPACK's ``info`` of ``dsytrd`` (upper): ``a = Q T Qᵀ`` with the symmetric tridiagonal
    ``T`` into ``diagonal`` and ``off`` and ``Q``'s elementary reflectors over ``a`` and ``tau``
    (the workspace asked of the routine first, then taken from ``arena``)."""
    flags = np.array((_U,), np.uint8)
    ints = np.array((n, n, -1, 0), np.int32)
    size = np.empty(1)
    _dsytrd(flags.ctypes, ints.ctypes, a.ctypes, ints[1:].ctypes, diagonal.ctypes, off.ctypes, tau.ctypes,
            size.ctypes, ints[2:].ctypes, ints[3:].ctypes)
    ints[2] = max(1, int(size[0]))
    work = vector(arena, ints[2])
    _dsytrd(flags.ctypes, ints.ctypes, a.ctypes, ints[1:].ctypes, diagonal.ctypes, off.ctypes, tau.ctypes,
            work.ctypes, ints[2:].ctypes, ints[3:].ctypes)
    return ints[3]


@_compiled
def _reflection(arena, m, n, a, tau, c):
    """LAPACK's ``info`` of ``dormtr`` (right, upper, not transposed): ``c ← c Q`` for the
    ``m×n`` matrix at ``c`` and the ``Q`` of :func:`_reduction` (``n×n``, its reflectors at
    ``a`` and ``tau``; the workspace from ``arena``)."""
    flags = np.array((_R, _U, _N), np.uint8)
    ints = np.array((m, n, n, m, -1, 0), np.int32)
    size = np.empty(1)
    _dormtr(flags.ctypes, flags[1:].ctypes, flags[2:].ctypes, ints.ctypes, ints[1:].ctypes, a.ctypes,
            ints[2:].ctypes, tau.ctypes, c.ctypes, ints[3:].ctypes, size.ctypes, ints[4:].ctypes, ints[5:].ctypes)
    ints[4] = max(1, int(size[0]))
    work = vector(arena, ints[4])
    _dormtr(flags.ctypes, flags[1:].ctypes, flags[2:].ctypes, ints.ctypes, ints[1:].ctypes, a.ctypes,
            ints[2:].ctypes, tau.ctypes, c.ctypes, ints[3:].ctypes, work.ctypes, ints[4:].ctypes, ints[5:].ctypes)
    return ints[5]


# Matrices: C-ordered float64.

@_compiled
def _flat(a):
    return a.reshape(a.size)


# An item's scratch: the matrices its compiled call makes come from an arena ``(buffer, used)``,
# a float64 buffer that the caller keeps between calls (:mod:`fastmvn._large`, from
# :mod:`fastmvn._pool`) and two counters. New memory from the allocator is new pages at these
# sizes: the C library hands large blocks back to the system when they are freed, and the
# system zeroes every page again when it is next touched (on a 2-core VM about 3 µs a page: a
# 1,024×1,024 KL spent 18 ms of its 108 there, a 256×256 one 2.6 ms of 4.5).

_ALIGN = 8  # float64 numbers: a matrix of the arena starts on a 64-byte line


def arena(buffer):
    """An arena over ``buffer`` (one-dimensional, C-contiguous float64; empty for none) with
    nothing given out or asked for yet (:func:`matrix`)."""
    return buffer, np.zeros(2, np.int64)


@_compiled
def matrix(arena, rows, columns):
    """An uninitialised C-ordered ``rows×columns`` matrix from ``arena = (buffer, used)``: the
    next free stretch of ``buffer`` (``used[0]`` numbers given out so far), or new memory where
    the buffer has no room left. ``used[1]`` counts every number asked for, aligned: the buffer
    that the same call needs to take all its matrices from the arena."""
    buffer, used = arena
    size = rows * columns
    start, padded = used[0], size + (-size) % _ALIGN
    used[1] += padded
    if start + size > buffer.size:
        return np.empty((rows, columns))
    used[0] = start + padded
    return buffer[start:start + size].reshape((rows, columns))


@_compiled
def vector(arena, size):
    """An uninitialised vector of ``size`` numbers (any integer type) from ``arena`` (:func:`matrix`)."""
    return matrix(arena, 1, np.int64(size))[0]


@_compiled
def copied(arena, a):
    """A copy of the matrix ``a`` in ``arena`` (:func:`matrix`)."""
    result = matrix(arena, a.shape[0], a.shape[1])
    result[:] = a
    return result


@_compiled
def cholesky(a, out):
    """``out ← L``, the lower Cholesky factor of ``a`` (its lower triangle read), the strict
    upper triangle zero. Whether it exists with no numerically singular pivot
    (``L_jj² ≤ n·ε·a_jj`` is one)."""
    n = a.shape[0]
    for i in range(n):
        for j in range(n):
            out[i, j] = a[i, j] if j <= i else 0.0
    if n == 0:
        return True
    if _factorisation(False, True, n, _flat(out), n) != 0:  # the upper triangle of outᵀ: Lᵀ
        return False
    for j in range(n):
        if not out[j, j] * out[j, j] > n * _EPS * a[j, j]:
            return False
    return True


@_compiled
def factor(a, out):
    """``out ←`` the lower triangle of the Cholesky factor ``a``, as given; whether its
    diagonal is positive."""
    n = a.shape[0]
    for i in range(n):
        for j in range(n):
            out[i, j] = a[i, j] if j <= i else 0.0
        if not a[i, i] > 0.0:
            return False
    return True


@_compiled
def solve(chol, b, transposed):
    """``b ← chol⁻¹ b`` (``chol⁻ᵀ b`` where ``transposed``) for the lower triangular ``n×n``
    ``chol`` and ``n×m`` ``b``: ``bᵀ ← bᵀ R⁻¹`` (``R⁻ᵀ``) with ``R = cholᵀ``."""
    n, m = b.shape
    if n and m:
        _triangular(False, True, True, transposed, m, n, 1.0, _flat(chol), n, _flat(b), m)


@_compiled
def solve_right(chol, b, transposed):
    """``b ← b chol⁻¹`` (``b chol⁻ᵀ`` where ``transposed``) for the lower triangular ``p×p``
    ``chol`` and ``n×p`` ``b``: ``bᵀ ← R⁻¹ bᵀ`` (``R⁻ᵀ bᵀ``) with ``R = cholᵀ``."""
    n, p = b.shape
    if n and p:
        _triangular(False, False, True, transposed, p, n, 1.0, _flat(chol), p, _flat(b), p)


@_compiled
def _trailing_solves(chol, b, blocks, transposed):
    """``b ← chol⁻¹ b`` (``chol⁻ᵀ b`` where ``transposed``) for the lower triangular ``n×n``
    ``chol`` and ``n×n`` ``b``, in rows ``s:`` of each of ``blocks`` blocks of columns ``s:t`` only,
    with the trailing block ``chol[s:, s:]``: all of ``chol⁻¹ b`` where ``b`` is lower triangular
    (its rows above ``s`` are zero in those columns, and stay zero), the lower triangle of
    ``chol⁻ᵀ b`` for any ``b`` (the rows from ``s`` on of ``chol⁻ᵀ b`` depend on those of ``b``
    alone). A third of the work of one solve with the whole matrix, less the blocks' steps."""
    n = chol.shape[0]
    a, x = _flat(chol), _flat(b)
    for k in range(blocks):
        start, stop = n * k // blocks, n * (k + 1) // blocks
        if stop > start:  # rows start: of columns start:stop, from entry (start, start) on
            _triangular(False, True, True, transposed, stop - start, n - start, 1.0, a[start * n + start:], n,
                        x[start * n + start:], n)


@_compiled
def solve_lower(arena, chol, lower, blocks):
    """``chol⁻¹ lower`` for the lower triangular ``chol`` and ``lower``, a lower triangular
    matrix in ``arena`` (:func:`matrix`), in ``blocks`` blocks of columns
    (:func:`_trailing_solves`)."""
    result = copied(arena, lower)
    _trailing_solves(chol, result, blocks, False)
    return result


@_compiled
def lower_solve_t(chol, b, blocks):
    """``b ← tril(chol⁻ᵀ b)`` for the lower triangular ``chol`` and any ``n×n`` ``b``, in
    ``blocks`` blocks of columns (:func:`_trailing_solves`), the strict upper triangle zero."""
    _trailing_solves(chol, b, blocks, True)
    for i in range(b.shape[0]):
        for j in range(i + 1, b.shape[1]):
            b[i, j] = 0.0


@_compiled
def lower_inverse(result, chol):
    """``result ←`` the lower triangle of ``(L Lᵀ)⁻¹`` from the lower factor ``L`` (its strict
    upper triangle that of ``L``); whether LAPACK formed it."""
    n = chol.shape[0]
    result[:] = chol
    return n == 0 or _factorisation(True, True, n, _flat(result), n) == 0


@_compiled
def inverse(arena, chol):
    """``(L Lᵀ)⁻¹`` from the lower factor ``L``, symmetric, in ``arena``, and whether LAPACK
    formed it."""
    result = matrix(arena, chol.shape[0], chol.shape[1])
    if not lower_inverse(result, chol):
        return result, False
    mirror_lower(result)
    return result, True


@_compiled
def times_lower(arena, symmetric, lower):
    """``symmetric · lower`` in ``arena`` for a symmetric ``n×n`` matrix and a lower triangular
    one (one triangular product, which takes less time than the solve it stands for):
    ``(S L)ᵀ = R S`` with ``R = lowerᵀ``."""
    n = lower.shape[0]
    result = copied(arena, symmetric)
    if n:
        _triangular(True, False, True, False, n, n, 1.0, _flat(lower), n, _flat(result), n)
    return result


@_compiled
def norm2(a):
    """``Σᵢⱼ aᵢⱼ²`` of a C-ordered matrix (on the BLAS library's threads)."""
    flat = _flat(a)
    return _dot(flat.size, flat, flat) if flat.size else 0.0


@_compiled
def logdet(chol):
    """``log |L Lᵀ|`` from the lower factor ``L``."""
    total = 0.0
    for j in range(chol.shape[0]):
        total += math.log(chol[j, j])
    return 2.0 * total


@_compiled
def inner(a, b):
    """``Σᵢⱼ aᵢⱼ bᵢⱼ``."""
    total = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            total += a[i, j] * b[i, j]
    return total


@_compiled
def add_gram(result, alpha, a, transposed):
    """``result ← result + alpha·a aᵀ`` (``alpha·aᵀ a`` where ``transposed``) in its lower
    triangle, its upper one unchanged: ``dsyrk`` on the upper triangle of the Fortran view,
    ``A_Fᵀ A_F`` (``A_F A_Fᵀ``) with ``A_F = aᵀ``."""
    rows, columns = a.shape
    n, k = (columns, rows) if transposed else (rows, columns)
    if n and k and alpha != 0.0:
        _rank_k(True, not transposed, n, k, alpha, _flat(a), columns, 1.0, _flat(result), n)


@_compiled
def add_lower_gram(result, alpha, lower, blocks):
    """``result ← result + alpha·L Lᵀ`` in its lower triangle (as :func:`add_gram`) for the
    lower triangular ``n×n`` ``L``: the columns ``s:t`` of each of ``blocks`` blocks meet rows
    ``s:`` only, one rank-k update of ``result[s:, s:]`` each, a third of the work of one
    update with the whole matrix, less the blocks' steps."""
    if alpha == 0.0:
        return
    n = lower.shape[0]
    a, c = _flat(lower), _flat(result)
    for k in range(blocks):
        start, stop = n * k // blocks, n * (k + 1) // blocks
        if stop > start:
            _rank_k(True, True, n - start, stop - start, alpha, a[start * n + start:], n, 1.0, c[start * n + start:], n)


@_compiled
def gram(result, scale, s, alpha, a, beta, b, transposed, blocks=0):
    """``result ← scale·s + alpha·a aᵀ + beta·op(b) op(b)ᵀ``, symmetric, for the symmetric
    ``n×n`` ``s`` (its lower triangle read), the ``n×k`` ``a`` and ``op(b) = b`` (``n×m``), or
    ``bᵀ`` (``b`` of ``m×n``) where ``transposed``: one triangle, two rank-k updates into it,
    mirrored. With ``blocks``, ``a`` is lower triangular and its update goes in that many blocks
    (:func:`add_lower_gram`). A zero ``scale``, ``alpha`` or ``beta`` leaves its matrix unread;
    ``result`` is none of the others."""
    n = a.shape[0]
    for i in range(n):
        for j in range(i + 1):
            result[i, j] = scale * s[i, j] if scale != 0.0 else 0.0
    if blocks:
        add_lower_gram(result, alpha, a, blocks)
    else:
        add_gram(result, alpha, a, False)
    add_gram(result, beta, b, transposed)
    mirror_lower(result)
    return result


@_compiled
def mirror_lower(a):
    """``a``'s lower triangle (the upper of the Fortran view) copied into its upper one, in
    tiles of 16×16: one entry after another, each write a row apart from the last, took 2.5
    times as long from 256×256 up."""
    n = a.shape[0]
    for top in range(0, n, 16):
        for left in range(top, n, 16):
            for j in range(top, min(top + 16, n)):
                for i in range(max(left, j + 1), min(left + 16, n)):
                    a[j, i] = a[i, j]


@_compiled
def lower_cross(result, a, b, transposed, blocks):
    """``result ←`` the lower triangle of ``a bᵀ`` (``aᵀ b`` where ``transposed``) for ``a``,
    ``b`` of one shape ``n×k``, in ``blocks`` blocks of rows ``s:t``, each the product of columns
    ``:t`` only: a little over half the work of the whole product (``dgemm`` on the Fortran
    views, ``(a bᵀ)ᵀ = B_Fᵀ A_F`` and ``(aᵀ b)ᵀ = B_F A_Fᵀ`` with ``A_F = aᵀ``, ``B_F = bᵀ``).
    Entries right of a block's columns are not written."""
    n, k = a.shape
    size = k if transposed else n
    if not (n and k):
        result[:] = 0.0
        return
    x, y, c = _flat(a), _flat(b), _flat(result)
    for block in range(blocks):
        start, stop = size * block // blocks, size * (block + 1) // blocks
        if stop > start:  # result_F[:stop, start:stop] = (rows start:stop of the product, columns :stop)ᵀ
            if transposed:
                _product(False, True, stop, stop - start, n, 1.0, y, k, x[start:], k, c[start * size:], size)
            else:
                _product(True, False, stop, stop - start, k, 1.0, y, k, x[start * k:], k, c[start * size:], size)


@_compiled
def scatter(samples, chol):
    """``Σ_k D_k (L Lᵀ)⁻¹ D_kᵀ`` for the samples ``D_k`` (``(N, a, b)``) and the lower factor
    ``L`` (``b×b``): ``D_k L⁻ᵀ`` by a triangular solve from the right and the sum of its Gram
    matrices by rank-k updates into one triangle, half the work of an inverse and a full
    product."""
    a = samples.shape[1]
    result = np.zeros((a, a))
    work = np.empty(samples.shape[1:])
    for k in range(samples.shape[0]):
        work[:] = samples[k]
        solve_right(chol, work, True)
        add_gram(result, 1.0, work, False)
    mirror_lower(result)
    return result


@_compiled
def eigh(arena, a):
    """The eigenvalues of the symmetric ``a`` (its lower triangle read), ascending, and its
    eigenvectors in the rows of a matrix in ``arena`` (``Qᵀ`` of ``a = Q diag(λ) Qᵀ``), and
    whether LAPACK converged."""
    n = a.shape[0]
    vectors, values = copied(arena, a), np.empty(n)
    if n == 0:
        return values, vectors, True
    return values, vectors, _eigensystem(arena, n, _flat(vectors), values) == 0


@_compiled
def whitened(arena, chol, a):
    """``L⁻¹ a L⁻ᵀ`` for the lower factor ``L`` and the symmetric ``a`` (its lower triangle
    read; half the work of two triangular solves), in the lower triangle of a matrix in
    ``arena``."""
    n = a.shape[0]
    result = copied(arena, a)
    if n:
        _congruence(n, _flat(result), _flat(chol))
    return result


@_compiled
def tridiagonal(arena, a):
    """``a = Q T Qᵀ`` for the symmetric ``a`` (its lower triangle read): ``(reflectors, tau,
    diagonal, off)``, ``T``'s diagonal and off-diagonal and ``Q`` as the elementary reflectors
    that :func:`reflect` applies (the reflectors in ``arena``)."""
    n = a.shape[0]
    reflectors = copied(arena, a)
    diagonal, off, tau = np.empty(n), np.empty(max(n - 1, 0)), np.empty(max(n - 1, 0))
    if n:
        _reduction(arena, n, _flat(reflectors), diagonal, off, tau)
    return reflectors, tau, diagonal, off


@_compiled
def reflect(arena, reflectors, tau, b):
    """``b ← Qᵀ b`` for the ``Q`` of :func:`tridiagonal` and the ``n×m`` matrix ``b``
    (``(Qᵀ b)ᵀ = bᵀ Q``; LAPACK's workspace from ``arena``)."""
    n, m = b.shape
    if n > 1 and m:
        _reflection(arena, m, n, _flat(reflectors), tau, _flat(b))


@_compiled
def times_rows(arena, b, rows):
    """``b Q`` for the ``n×m`` matrix ``b`` and ``Q`` given by ``rows = Qᵀ`` (``m×m``, as
    :func:`eigh` returns eigenvectors), in ``arena``: ``(b Q)ᵀ = Qᵀ bᵀ``."""
    n, m = b.shape
    result = matrix(arena, n, m)
    if n and m:
        _product(True, False, m, n, m, 1.0, _flat(rows), m, _flat(b), m, _flat(result), m)
    return result
