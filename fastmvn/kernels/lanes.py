"""The lane linear algebra of the per-item kernels: constants of the arithmetic's dtype, the
folded products behind every log-determinant, Cholesky factors, triangular solves, traces,
norms and products, each on ``m`` items side by side in lanes (see :mod:`fastmvn.kernels`)."""

import math

import numpy as np
from numba.extending import overload

from .._jit import item

def like(value, array):
    """``value`` as a scalar of the dtype of ``array``: a constant that keeps float32
    arithmetic in float32 (a bare ``1.0`` would promote it to float64)."""
    return array.dtype.type(value)


@overload(like, target="generic")
def _like(value, array):
    dtype = array.dtype
    return lambda value, array: dtype(value)


def epsilon(array):
    """The machine epsilon of the dtype of ``array``, as a scalar of that dtype."""
    return array.dtype.type(np.finfo(array.dtype).eps)


@overload(epsilon, target="generic")
def _epsilon(array):
    dtype = array.dtype
    eps = np.finfo(np.dtype(str(dtype))).eps
    return lambda array: dtype(eps)


# A running product of positive factors is kept within [2⁻³⁰⁰, 2³⁰⁰] by exact rescaling by
# 2^∓600, counted in steps of log 2⁶⁰⁰: one log per product instead of one per factor. Each
# factor is brought within [2⁻⁴⁷⁴, 2⁴²⁴] the same way before it is multiplied in, so no
# finite factor (down to the smallest normal float) can overflow or underflow the product.
# A KL needs the ratios |U2|/|U1| and |V2|/|V1| only, one product (and one log) each.
_FOLD_LIMIT = 2.0 ** 300
_FOLD_DOWN = 2.0 ** -600
_FOLD_UP = 2.0 ** 600
_LOG_FOLD = 600.0 * math.log(2.0)


@item
def fill(v, value, m):
    """``v[l] = value``."""
    for l in range(m):
        v[l] = value


@item(inline=True)
def fold(prod, count, l, x, narrow):
    """``prod[l] ·= x`` for ``x ≥ 0``, ``x`` and then the product rescaled by 2^∓600 (counted
    in ``count[l]``) where they leave [2⁻³⁰⁰, 2³⁰⁰]: exact, and never out of the range of floats.
    ``narrow`` (a constant: a float32 ``x``, within 2^±150) skips the rescaling of ``x``."""
    x_high = False if narrow else x > _FOLD_LIMIT
    x_low = False if narrow else x < 1.0 / _FOLD_LIMIT
    q = prod[l] * (x if narrow else x * (_FOLD_DOWN if x_high else (_FOLD_UP if x_low else 1.0)))
    high = q > _FOLD_LIMIT
    low = q < 1.0 / _FOLD_LIMIT
    prod[l] = q * (_FOLD_DOWN if high else (_FOLD_UP if low else 1.0))
    count[l] += (1.0 if x_high else (-1.0 if x_low else 0.0)) + (1.0 if high else (-1.0 if low else 0.0))


@item(inline=True)
def fold_reciprocal(prod, count, l, x, narrow):
    """:func:`fold` of ``1/x`` for ``x > 0``, taken of ``x`` rescaled into [2⁻³⁰⁰, 2³⁰⁰] first:
    ``1/x`` itself overflows for ``x`` below 2⁻¹⁰²⁴ (not a float32 ``x``: ``narrow``)."""
    x_high = False if narrow else x > _FOLD_LIMIT
    x_low = False if narrow else x < 1.0 / _FOLD_LIMIT
    fold(prod, count, l, 1.0 / (x if narrow else x * (_FOLD_DOWN if x_high else (_FOLD_UP if x_low else 1.0))),
         narrow)
    count[l] += 1.0 if x_low else (-1.0 if x_high else 0.0)


def narrow(array):
    """Whether the entries of ``array`` are float32 (a compile-time constant in the kernels):
    within 2^±150, so :func:`fold` need not rescale them."""
    return array.dtype == np.float32


@overload(narrow, target="generic")
def _narrow(array):
    answer = np.dtype(str(array.dtype)) == np.float32
    return lambda array: answer


@item
def log_of_fold(prod, count, scale, m):
    """``count[l] = scale · log(prod[l] · 2^(600·count[l]))``: the log of a folded product."""
    for l in range(m):
        count[l] = scale * (math.log(prod[l]) + count[l] * _LOG_FOLD)


@item
def cholesky(L, r, m, n):
    """Lower Cholesky factor, in place, of the lower triangle that ``L`` holds, and
    ``r = 1/diag(L)``; NaN on the diagonal and in ``r`` from the first pivot that fails.

    A pivot fails where it is not finite or not above ``n·ε`` times its diagonal entry
    (``ε`` of the arithmetic): the matrix is not positive definite, or numerically singular,
    its pivot no larger than the rounding error of the subtractions that made it (a rank-1
    ``[[2, 1], [1, 0.5]]`` leaves ``1e-16`` instead of 0). A condition number up to about
    ``1/(n·ε)`` always passes. ``r`` holds each pivot's floor until its reciprocal is known.
    """
    one = like(1.0, L)
    nan = like(math.nan, L)
    inf = like(math.inf, L)
    floor = like(n, L) * epsilon(L)
    for j in range(n):
        for l in range(m):
            r[j, l] = floor * L[j, j, l]
        for k in range(j):
            for l in range(m):
                L[j, j, l] -= L[j, k, l] * L[j, k, l]
        for l in range(m):
            s = L[j, j, l]
            s = s if (s > r[j, l] and s < inf) else nan
            d = math.sqrt(s)
            L[j, j, l] = d
            r[j, l] = one / d
        for i in range(j + 1, n):
            for k in range(j):
                for l in range(m):
                    L[i, j, l] -= L[i, k, l] * L[j, k, l]
            for l in range(m):
                L[i, j, l] *= r[j, l]


@item
def reciprocal_diagonal(L, r, m, n):
    """``r = 1/diag(L)`` for a lower-triangular factor ``L``, NaN where a diagonal entry is
    not positive or not finite (``1/∞`` would hide an infinite entry)."""
    one = like(1.0, L)
    nan = like(math.nan, L)
    inf = like(math.inf, L)
    for j in range(n):
        for l in range(m):
            d = L[j, j, l]
            r[j, l] = one / (d if (d > 0.0 and d < inf) else nan)


@item
def log_diagonal(L, r, scale, acc, t, m, n):
    """``acc = scale · log Π_i L[i, i]·r[i]`` (``Π_i L[i, i]`` if ``r`` is None), one log per
    lane; ``t`` is scratch.

    With ``scale = 2``, ``log|L Lᵀ|``; with ``r = 1/diag(L_a)`` as well,
    ``log|L Lᵀ| − log|L_a L_aᵀ|`` from one product, accurate where the two determinants are
    close and finite wherever the difference is, however far apart the factors' scales. A
    diagonal entry that is not positive or not finite, or NaN in ``r`` (a failed factor),
    gives NaN.
    """
    fill(t, 1.0, m)
    fill(acc, 0.0, m)
    fold_diagonal(L, r, acc, t, m, n)
    log_of_fold(t, acc, scale, m)


@item
def fold_diagonal(L, r, acc, t, m, n):
    """Fold ``Π_i L[i, i]·r[i]`` (``Π_i L[i, i]`` if ``r`` is None) into the running product
    ``t``, ``acc`` (see :func:`fold`): each factor on its own, so that no product of two can
    overflow. NaN for a diagonal entry that is not positive or not finite."""
    inf = like(math.inf, L)
    small = narrow(L)
    for i in range(n):
        for l in range(m):
            x = L[i, i, l]
            fold(t, acc, l, x if (x > 0.0 and x < inf) else math.nan, small)  # NaN, not a log's error
        if r is not None:
            for l in range(m):
                fold(t, acc, l, r[i, l], small)


@item
def log_diagonals(U, ru, V, rv, scale, lu, lv, t, m, n, p):
    """``lu``, ``lv`` as :func:`log_diagonal` of ``U`` (``n×n``, with ``ru``) and ``V``
    (``p×p``, with ``rv``), for a sum ``p·lu + n·lv``. When ``n == p`` that is
    ``n·(lu + lv)``: ``lu`` receives the log of the two products together and ``lv`` zero,
    one log per lane instead of two."""
    if n == p:
        fill(t, 1.0, m)
        fill(lu, 0.0, m)
        fold_diagonal(U, ru, lu, t, m, n)
        fold_diagonal(V, rv, lu, t, m, p)
        log_of_fold(t, lu, scale, m)
        fill(lv, 0.0, m)
    else:
        log_diagonal(U, ru, scale, lu, t, m, n)
        log_diagonal(V, rv, scale, lv, t, m, p)


@item
def lower_norm2(L, acc, m, n):
    """``acc = ‖tril(L)‖_F² = tr(L Lᵀ)``."""
    fill(acc, 0.0, m)
    for i in range(n):
        for j in range(i + 1):
            for l in range(m):
                acc[l] += L[i, j, l] * L[i, j, l]


@item
def diagonal_sum(a, acc, m, n):
    """``acc = tr(a)``."""
    fill(acc, 0.0, m)
    for i in range(n):
        for l in range(m):
            acc[l] += a[i, i, l]


@item
def squared_norm(Y, acc, m, n, p):
    """``acc = ‖Y‖_F²``."""
    fill(acc, 0.0, m)
    for i in range(n):
        for c in range(p):
            for l in range(m):
                acc[l] += Y[i, c, l] * Y[i, c, l]


@item
def copy(a, Y, m, rows, cols, lower):
    """``Y = a`` (``tril(Y) = tril(a)`` if ``lower``)."""
    for i in range(rows):
        for j in range(i + 1 if lower else cols):
            for l in range(m):
                Y[i, j, l] = a[i, j, l]


@item
def solve_rows(L, r, Y, m, n, cols, transposed):
    """``Y ← L⁻¹ Y`` (``L⁻ᵀ Y`` if ``transposed``) for lower-triangular ``L`` (``r = 1/diag(L)``)
    and ``Y`` of ``n × cols``: forward (back) substitution by updates of whole rows."""
    for step in range(n):
        i = n - 1 - step if transposed else step
        first, stop = (i + 1, n) if transposed else (0, i)
        for k in range(first, stop):
            for c in range(cols):
                for l in range(m):
                    Y[i, c, l] -= (L[k, i, l] if transposed else L[i, k, l]) * Y[k, c, l]
        for c in range(cols):
            for l in range(m):
                Y[i, c, l] *= r[i, l]


@item
def trace_tri(L2, r2, W, acc, m, n):
    """``acc = tr((L2 L2ᵀ)⁻¹ W Wᵀ) = ‖L2⁻¹ W‖_F²`` for lower-triangular ``L2``, ``W``,
    overwriting ``W`` with ``L2⁻¹ W`` (lower triangular too); only the lower triangle of
    ``W`` is read."""
    fill(acc, 0.0, m)
    for i in range(n):
        for k in range(i):
            for c in range(k + 1):
                for l in range(m):
                    W[i, c, l] -= L2[i, k, l] * W[k, c, l]
        for c in range(i + 1):
            for l in range(m):
                x = W[i, c, l] * r2[i, l]
                W[i, c, l] = x
                acc[l] += x * x


@item
def whitened_norm2(Y, L, rl, K, rk, acc, m, n, p):
    """``acc = ‖L⁻¹ Y K⁻ᵀ‖_F² = tr((K Kᵀ)⁻¹ Yᵀ (L Lᵀ)⁻¹ Y)``, overwriting ``Y`` with
    ``L⁻¹ Y K⁻ᵀ``: rows by :func:`solve_rows`, then forward substitution along each row."""
    solve_rows(L, rl, Y, m, n, p, False)
    fill(acc, 0.0, m)
    for i in range(n):
        for c in range(p):
            for k in range(c):
                for l in range(m):
                    Y[i, c, l] -= K[c, k, l] * Y[i, k, l]
            for l in range(m):
                x = Y[i, c, l] * rk[c, l]
                Y[i, c, l] = x
                acc[l] += x * x
