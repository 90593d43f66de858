"""Per-item kernels (one small matrix problem each, in lanes) and the CPU batch drivers.

Every per-item function works on ``m`` items of a batch at once, side by side in *lanes*:
each of its arrays has a trailing lane axis (a factor is ``L[i, j, l]``, a per-item scalar
``t[l]``), and every loop over the lanes is innermost. The CPU driver runs
:func:`lane_count` items per call, so the independent items fill the vector units and hide
the latency of the square roots and divisions that one small Cholesky factor is made of;
the CUDA kernel runs one item per thread (``m = 1``) through the same source.

The inputs are first copied into lane scratch (:func:`gather_slots`, only the lower
triangle of a covariance or a Cholesky factor); the kernels then work in place on the
copies, with preallocated scratch, no allocation and no exceptions. A failure (a matrix
that is not positive definite, a non-positive variance) makes that lane's result NaN;
non-finite inputs propagate to a non-finite result. The batch driver records the first
such item per chunk and the Python layer (``fastmvn._api``) turns it into an exception
that names the argument and the batch index.

The arithmetic is done in the dtype of the scratch, which the batch drivers take from an
argument ``work``: float32 for float32 data of small matrices (half the bytes through the
caches, twice the lanes per vector), float64 otherwise (see
``fastmvn._api.working_dtype``). The CUDA kernels compute in float64. Sums over a matrix
(traces, quadratic forms) and the products behind the log-determinants are accumulated in
float64 either way. Logs are the one operation the CPU cannot vectorise (there is no vector
math library), so a KL takes two: ``log(|U2|/|U1|)`` and ``log(|V2|/|V1|)``, each of one
product of ratios of diagonal entries (:func:`log_diagonal`); for square means (``n == p``)
only one, of both products together (:func:`log_diagonals`).

The functions are compiled with :func:`fastmvn._jit.item`; their plain Python
sources (``func.py_func``) are what other targets compile as well.
"""

import math

import numpy as np
from numba import float32, float64, int64, prange, types, void
from numba.extending import overload

from ._jit import batch, item

from ._modes import (KL_CHOL, KL_COV, KL_DIAG, KL_STD_CHOL, KL_STD_COV, KL_STD_DIAG, LOGDET,
                     LOGPDF_CHOL, MAHALANOBIS, MAHALANOBIS_CHOL, TRACE_SOLVE)

#: Items computed side by side by one call of a per-item kernel in the CPU drivers ...
LANES = 32
#: ... and for matrices up to 4×4, whose loops over the lanes are the only long ones: 128 amortise
#: the setup of each short loop over more items (64 were 10% slower, 256 no faster).
SMALL_LANES = 128


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


@item
def lane_count(n, p, itemsize):
    """How many items the CPU drivers compute side by side for ``n×p`` means in arithmetic
    of ``itemsize`` bytes: twice as many in float32, in the same scratch as float64."""
    return (SMALL_LANES if max(n, p) <= 4 else LANES) * (8 // itemsize)


#: Rows of the per-lane scalar scratch ``v`` (log-determinants, traces, …).
SCALARS = 9

_LOG_2PI = math.log(2.0 * math.pi)

# A running product of positive factors is kept within [2⁻³⁰⁰, 2³⁰⁰] by exact rescaling by
# 2^∓600, counted in steps of log 2⁶⁰⁰: one log per product instead of one per factor. Each
# factor is brought within [2⁻⁴⁷⁴, 2⁴²⁴] the same way before it is multiplied in, so no
# finite factor (down to the smallest normal float) can overflow or underflow the product.
# A KL needs the ratios |U2|/|U1| and |V2|/|V1| only, one product (and one log) each.
_FOLD_LIMIT = 2.0 ** 300
_FOLD_DOWN = 2.0 ** -600
_FOLD_UP = 2.0 ** 600
_LOG_FOLD = 600.0 * math.log(2.0)


#: Bit of a slot layout: slot 3 receives ``a3 − a0`` (the difference of the means) and slot 0
#: is not gathered.
MEANS_DIFFERENCE = 64
#: Bit of a slot layout: slot 0 receives ``a0 − a1`` (``X − M``) and slot 1 is not gathered.
X_DIFFERENCE = 128
#: Bit of a slot layout: slot 0 is not gathered; its squared norm is summed from the input.
SQUARED_NORM = 256


@item
def slot_layout(mode, grad):
    """How :func:`gather_slots` fills the slots of ``mode`` (for its gradient too if ``grad``):
    bit ``k`` (``k < 6``) set, slot ``k`` is a covariance or a factor, of which only the lower
    triangle is read; :data:`MEANS_DIFFERENCE` or :data:`X_DIFFERENCE`, a difference is
    gathered in one pass; :data:`SQUARED_NORM`, only ``‖a0‖²`` is (the value of a KL to
    MN(0, I, I) needs no more of the mean, and summing it from the input takes a quarter
    less time than copying it)."""
    if mode == KL_COV or mode == KL_CHOL:
        return 0b110110 | MEANS_DIFFERENCE
    if mode == KL_DIAG:
        return MEANS_DIFFERENCE
    standard = 0 if grad else SQUARED_NORM
    if mode == KL_STD_COV or mode == KL_STD_CHOL:
        return 0b110 | standard
    if mode == LOGDET or mode == TRACE_SOLVE:
        return 0b1
    if mode == KL_STD_DIAG:
        return standard
    return 0b1100 | X_DIFFERENCE  # LOGPDF, LOGPDF_CHOL, MAHALANOBIS, MAHALANOBIS_CHOL


@item(inline=True)
def copy_items(a, b, start, S, lower, subtract, m, rows, cols):
    """``S[i, j, l] = a[start + l, i, j]`` (``− b[start + l, i, j]`` if ``subtract``) for
    ``l < m``, the lower triangle only if ``lower``."""
    for l in range(m):
        for i in range(rows):
            for j in range(i + 1 if lower else cols):
                x = float(a[start + l, i, j])
                if subtract:
                    x -= float(b[start + l, i, j])
                S[i, j, l] = x


@item
def gather(a, b, start, S, lower, subtract, m):
    """Items ``start … start + m − 1`` of ``a`` (minus those of ``b`` if ``subtract``) into
    the lanes of ``S``, the lower triangle only if ``lower``. 4×4 items, the commonest
    latent, and 2×2 items are copied by loops of fixed length, which unroll: a quarter less
    time than loops of a length read at run time at 4×4, a third at 2×2."""
    rows = a.shape[1]
    cols = a.shape[2]
    if rows == 4 and cols == 4:
        copy_items(a, b, start, S, lower, subtract, m, 4, 4)
    elif rows == 2 and cols == 2:
        copy_items(a, b, start, S, lower, subtract, m, 2, 2)
    else:
        copy_items(a, b, start, S, lower, subtract, m, rows, cols)


@item(inline=True)
def item_norms(a, start, acc, m, rows, cols):
    """``acc[l] = ‖a[start + l]‖_F²`` for ``l < m``, in float64: one sum per row, so that the
    rows' additions overlap."""
    for l in range(m):
        total = 0.0
        for i in range(rows):
            row = 0.0
            for j in range(cols):
                x = float(a[start + l, i, j])
                row += x * x
            total += row
        acc[l] = total


@item
def squared_norms(a, start, acc, m):
    """``acc[l] = ‖a[start + l]‖_F²`` for ``l < m``, read from the input itself; 4×4 and 2×2
    items by loops of fixed length, as in :func:`gather`."""
    if a.shape[1] == 4 and a.shape[2] == 4:
        item_norms(a, start, acc, m, 4, 4)
    elif a.shape[1] == 2 and a.shape[2] == 2:
        item_norms(a, start, acc, m, 2, 2)
    else:
        item_norms(a, start, acc, m, a.shape[1], a.shape[2])


@item
def gather_slots(a0, a1, a2, a3, a4, a5, start, S0, S1, S2, S3, S4, S5, layout, quad, m):
    """Items ``start … start + m − 1`` of the six slots into their lane scratch, as the
    ``layout`` of :func:`slot_layout` says (``quad[l] = ‖a0[start + l]‖²`` for
    :data:`SQUARED_NORM`)."""
    if layout & X_DIFFERENCE:
        gather(a0, a1, start, S0, False, True, m)
    else:
        if layout & SQUARED_NORM:
            squared_norms(a0, start, quad, m)
        elif not layout & MEANS_DIFFERENCE:
            gather(a0, a0, start, S0, layout & 1, False, m)
        gather(a1, a1, start, S1, layout & 2, False, m)
    gather(a2, a2, start, S2, layout & 4, False, m)
    gather(a3, a0, start, S3, layout & 8, layout & MEANS_DIFFERENCE, m)
    gather(a4, a4, start, S4, layout & 16, False, m)
    gather(a5, a5, start, S5, layout & 32, False, m)


@item
def finish(res, out, start, m, none):
    """``out[start + l] = res[l]`` (NaN where not finite); returns the first index whose
    result is not finite, or ``none``."""
    bad = none
    for l in range(m):
        value = res[l]
        if not math.isfinite(value):
            value = math.nan
            bad = min(bad, start + l)
        out[start + l] = value
    return bad


@item
def fill(v, value, m):
    """``v[l] = value``."""
    for l in range(m):
        v[l] = value


@item(inline=True)
def fold(prod, count, l, x):
    """``prod[l] ·= x`` for ``x ≥ 0``, ``x`` and then the product rescaled by 2^∓600 (counted
    in ``count[l]``) where they leave [2⁻³⁰⁰, 2³⁰⁰]: exact, and never out of the range of floats."""
    x_high = x > _FOLD_LIMIT
    x_low = x < 1.0 / _FOLD_LIMIT
    q = prod[l] * (x * (_FOLD_DOWN if x_high else (_FOLD_UP if x_low else 1.0)))
    high = q > _FOLD_LIMIT
    low = q < 1.0 / _FOLD_LIMIT
    prod[l] = q * (_FOLD_DOWN if high else (_FOLD_UP if low else 1.0))
    count[l] += (1.0 if x_high else (-1.0 if x_low else 0.0)) + (1.0 if high else (-1.0 if low else 0.0))


@item(inline=True)
def fold_reciprocal(prod, count, l, x):
    """:func:`fold` of ``1/x`` for ``x > 0``, taken of ``x`` rescaled into [2⁻³⁰⁰, 2³⁰⁰] first:
    ``1/x`` itself overflows for ``x`` below 2⁻¹⁰²⁴ (and in float32 far sooner)."""
    x_high = x > _FOLD_LIMIT
    x_low = x < 1.0 / _FOLD_LIMIT
    fold(prod, count, l, 1.0 / (x * (_FOLD_DOWN if x_high else (_FOLD_UP if x_low else 1.0))))
    count[l] += 1.0 if x_low else (-1.0 if x_high else 0.0)


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
    for i in range(n):
        for l in range(m):
            x = L[i, i, l]
            fold(t, acc, l, x if (x > 0.0 and x < inf) else math.nan)  # NaN, not a log's error
        if r is not None:
            for l in range(m):
                fold(t, acc, l, r[i, l])


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


@item
def kl_value(res, trace_u, trace_v, quad, log_ratio_u, log_ratio_v, m, n, p):
    """``res = ½(t_u t_v + quad − np + p·log(|U2|/|U1|) + n·log(|V2|/|V1|))``, never negative:
    a KL is not, and rounding below zero (of two equal distributions, say) gives 0."""
    for l in range(m):
        kl = 0.5 * (trace_u[l] * trace_v[l] + quad[l] - n * p + p * log_ratio_u[l] + n * log_ratio_v[l])
        res[l] = 0.0 if (kl < 0.0 and kl > -math.inf) else kl  # -inf is a failure, kept


@item
def logpdf_value(res, quad, logdet_u, logdet_v, m, n, p):
    """``res = −½(np log 2π + p log|U| + n log|V| + quad)``."""
    for l in range(m):
        res[l] = -0.5 * (n * p * _LOG_2PI + p * logdet_u[l] + n * logdet_v[l] + quad[l])


@item
def diagonal_terms(var1, var2, r2, trace, logratio, t, m, n):
    """``trace = Σ var1/var2``, ``logratio = log Π var2/var1`` and ``r2 = 1/var2`` for
    variances held as ``(n, 1)`` columns; NaN where a variance is not positive. ``var2`` and
    ``1/var1`` are folded in one by one: their ratio could overflow where its log does not."""
    one = like(1.0, var2)
    nan = like(math.nan, var2)
    fill(t, 1.0, m)
    fill(trace, 0.0, m)
    fill(logratio, 0.0, m)
    for i in range(n):
        for l in range(m):
            x1 = var1[i, 0, l]
            x2 = var2[i, 0, l]
            x2 = x2 if (x1 > 0.0 and x2 > 0.0) else nan
            ri = one / x2
            r2[i, l] = ri
            trace[l] += x1 * ri
            fold(t, logratio, l, x2)
            fold_reciprocal(t, logratio, l, x1)
    log_of_fold(t, logratio, 1.0, m)


@item
def diagonal_sum_log(var, trace, acc, t, scale, m, n):
    """``trace = Σ var`` and ``acc = scale · log Π var``; NaN where a variance is not positive."""
    fill(t, 1.0, m)
    fill(trace, 0.0, m)
    fill(acc, 0.0, m)
    for i in range(n):
        for l in range(m):
            x = var[i, 0, l]
            x = x if x > 0.0 else like(math.nan, var)
            trace[l] += x
            fold(t, acc, l, x)
    log_of_fold(t, acc, scale, m)


@item
def scaled_quad(W, Y, ru, rv, quad, m, n, p):
    """``W = Y / (u vᵀ)`` (``W`` may be ``Y``) and ``quad = Σ Y² / (u vᵀ)`` for ``ru = 1/u``, ``rv = 1/v``."""
    fill(quad, 0.0, m)
    for i in range(n):
        for c in range(p):
            for l in range(m):
                y = Y[i, c, l]
                w = y * ru[i, l] * rv[c, l]
                W[i, c, l] = w
                quad[l] += y * w


@item
def both_factors(S1, S2, S4, S5, ru1, rv1, ru2, rv2, v, factor, m, n, p):
    """The row and column factors of both distributions: Cholesky factors of the covariances
    ``S1, S2, S4, S5`` in place if ``factor`` (else they are factors already), their reciprocal
    diagonals ``ru1 … rv2``, and ``v[0] = log(|U2|/|U1|)``, ``v[1] = log(|V2|/|V1|)`` (as
    :func:`log_diagonals` combines them: ``p·v[0] + n·v[1]`` is what :func:`kl_value` takes)."""
    if factor:
        cholesky(S1, ru1, m, n)
        cholesky(S2, rv1, m, p)
        cholesky(S4, ru2, m, n)
        cholesky(S5, rv2, m, p)
    else:
        reciprocal_diagonal(S1, ru1, m, n)
        reciprocal_diagonal(S2, rv1, m, p)
        reciprocal_diagonal(S4, ru2, m, n)
        reciprocal_diagonal(S5, rv2, m, p)
    log_diagonals(S4, ru1, S5, rv1, 2.0, v[0], v[1], v[7], m, n, p)


@item
def own_factors(S1, S2, ru1, rv1, v, factor, m, n, p):
    """:func:`both_factors` for one distribution against MN(0, I, I): ``v[0] = −log|U1|``,
    ``v[1] = −log|V1|``."""
    if factor:
        cholesky(S1, ru1, m, n)
        cholesky(S2, rv1, m, p)
    else:
        reciprocal_diagonal(S1, ru1, m, n)
        reciprocal_diagonal(S2, rv1, m, p)
    log_diagonals(S1, None, S2, None, -2.0, v[0], v[1], v[7], m, n, p)


@item
def kl_factored(S1, S2, S3, S4, ru2, S5, rv2, v, res, m, n, p):
    """KL between two matrix normals given by the Cholesky factors ``S1, S2, S4, S5`` (with
    ``ru2, rv2`` the reciprocal diagonals of the second pair) and the difference of the
    means ``S3``, with ``v[0:2]`` from :func:`both_factors`; overwrites ``S1``, ``S2``, ``S3``."""
    trace_tri(S4, ru2, S1, v[4], m, n)
    trace_tri(S5, rv2, S2, v[5], m, p)
    whitened_norm2(S3, S4, ru2, S5, rv2, v[6], m, n, p)
    kl_value(res, v[4], v[5], v[6], v[0], v[1], m, n, p)


@item(inline=True)
def evaluate(mode, S0, S1, S2, S3, S4, S5, ru1, rv1, ru2, rv2, v, res, m, n, p):
    """``res[l]``: the quantity ``mode`` names for lane ``l`` of the slots ``S0..S5``
    (overwritten); ``ru1 … rv2`` (``(n or p, lanes)``) and ``v`` (``(SCALARS, lanes)``) are
    scratch. See :mod:`fastmvn._modes` for what each slot holds, and :func:`slot_layout` for
    the differences gathered in their place (``S3 = M2 − M1`` for a KL, ``S0 = X − M`` for a
    density) and for ``v[6] = ‖M1‖²``, gathered in place of ``S0`` for a KL to MN(0, I, I)."""
    if mode == KL_COV:
        both_factors(S1, S2, S4, S5, ru1, rv1, ru2, rv2, v, True, m, n, p)
        kl_factored(S1, S2, S3, S4, ru2, S5, rv2, v, res, m, n, p)
    elif mode == KL_CHOL:
        both_factors(S1, S2, S4, S5, ru1, rv1, ru2, rv2, v, False, m, n, p)
        kl_factored(S1, S2, S3, S4, ru2, S5, rv2, v, res, m, n, p)
    elif mode == KL_DIAG:
        diagonal_terms(S1, S4, ru2, v[4], v[2], v[7], m, n)
        diagonal_terms(S2, S5, rv2, v[5], v[3], v[7], m, p)
        scaled_quad(S3, S3, ru2, rv2, v[6], m, n, p)
        kl_value(res, v[4], v[5], v[6], v[2], v[3], m, n, p)
    elif mode == KL_STD_COV:
        diagonal_sum(S1, v[4], m, n)
        diagonal_sum(S2, v[5], m, p)
        own_factors(S1, S2, ru1, rv1, v, True, m, n, p)
        kl_value(res, v[4], v[5], v[6], v[0], v[1], m, n, p)
    elif mode == KL_STD_CHOL:
        own_factors(S1, S2, ru1, rv1, v, False, m, n, p)
        lower_norm2(S1, v[4], m, n)
        lower_norm2(S2, v[5], m, p)
        kl_value(res, v[4], v[5], v[6], v[0], v[1], m, n, p)
    elif mode == KL_STD_DIAG:
        diagonal_sum_log(S1, v[4], v[0], v[7], -1.0, m, n)
        diagonal_sum_log(S2, v[5], v[1], v[7], -1.0, m, p)
        kl_value(res, v[4], v[5], v[6], v[0], v[1], m, n, p)
    elif mode == LOGDET:
        cholesky(S0, ru1, m, n)
        log_diagonal(S0, None, 2.0, res, v[7], m, n)
    elif mode == TRACE_SOLVE:
        # tr(a⁻¹ b) = tr(L⁻ᵀ L⁻¹ b); a failed factor leaves NaN in ru1 and so in the result.
        cholesky(S0, ru1, m, n)
        solve_rows(S0, ru1, S1, m, n, n, False)
        solve_rows(S0, ru1, S1, m, n, n, True)
        diagonal_sum(S1, res, m, n)
    else:  # LOGPDF, LOGPDF_CHOL, MAHALANOBIS, MAHALANOBIS_CHOL
        if mode == LOGPDF_CHOL or mode == MAHALANOBIS_CHOL:
            reciprocal_diagonal(S2, ru2, m, n)
            reciprocal_diagonal(S3, rv2, m, p)
        else:
            cholesky(S2, ru2, m, n)
            cholesky(S3, rv2, m, p)
        if mode == MAHALANOBIS or mode == MAHALANOBIS_CHOL:
            whitened_norm2(S0, S2, ru2, S3, rv2, res, m, n, p)
        else:
            log_diagonals(S2, None, S3, None, 2.0, v[2], v[3], v[7], m, n, p)
            whitened_norm2(S0, S2, ru2, S3, rv2, v[6], m, n, p)
            logpdf_value(res, v[6], v[2], v[3], m, n, p)


@item
def lane_scratch(a0, a1, a2, a3, a4, a5, lanes, dtype):
    """Scratch of ``dtype`` for ``lanes`` items of each slot (CPU drivers only)."""
    return (np.empty((a0.shape[1], a0.shape[2], lanes), dtype), np.empty((a1.shape[1], a1.shape[2], lanes), dtype),
            np.empty((a2.shape[1], a2.shape[2], lanes), dtype), np.empty((a3.shape[1], a3.shape[2], lanes), dtype),
            np.empty((a4.shape[1], a4.shape[2], lanes), dtype), np.empty((a5.shape[1], a5.shape[2], lanes), dtype))


#: The (data, arithmetic) dtypes the drivers are compiled for, each on first use.
_PRECISIONS = ((float64, float64), (float32, float32), (float32, float64))

_SIGNATURES = {(np.dtype(dtype.name), np.dtype(work.name)):
               void(int64, *(types.Array(dtype, 3, "A", readonly=True),) * 6, dtype[:], int64[:], work[:])
               for dtype, work in _PRECISIONS}


@batch(_SIGNATURES)
def evaluate_batch(mode, a0, a1, a2, a3, a4, a5, out, first_bad, work):
    """``out[b] = evaluate(mode, a0[b], …, a5[b])`` for every ``b``, in parallel chunks.

    The batch is split into ``len(first_bad)`` contiguous chunks, each computed
    :func:`lane_count` items at a time with scratch allocated once per chunk. An item whose
    result is not finite is stored as NaN, and ``first_bad[c]`` receives the first such
    index of chunk ``c`` (``len(out)`` if none). The arithmetic is done in the dtype of
    ``work``, an empty array.
    """
    count = out.shape[0]
    n = a0.shape[1]
    p = a0.shape[2]
    chunks = first_bad.shape[0]
    size = (count + chunks - 1) // chunks
    layout = slot_layout(mode, False)
    dtype = work.dtype
    lanes = lane_count(n, p, work.itemsize)
    for c in prange(chunks):
        S0, S1, S2, S3, S4, S5 = lane_scratch(a0, a1, a2, a3, a4, a5, lanes, dtype)
        ru1 = np.empty((n, lanes), dtype)
        rv1 = np.empty((p, lanes), dtype)
        ru2 = np.empty((n, lanes), dtype)
        rv2 = np.empty((p, lanes), dtype)
        v = np.empty((SCALARS, lanes))
        res = np.empty(lanes)
        bad = count
        stop = min(count, (c + 1) * size)
        for start in range(c * size, stop, lanes):
            m = min(lanes, stop - start)
            gather_slots(a0, a1, a2, a3, a4, a5, start, S0, S1, S2, S3, S4, S5, layout, v[6], m)
            evaluate(mode, S0, S1, S2, S3, S4, S5, ru1, rv1, ru2, rv2, v, res, m, n, p)
            bad = min(bad, finish(res, out, start, m, count))
        first_bad[c] = bad


# Gradients of the KL, in one fused pass per item; the formulas are derived in
# docs/gradients.md. Notation there and here: P = L_U, Q = L_V (lower Cholesky factors),
# A = P2⁻¹ P1, B = Q2⁻¹ Q1, Z = P2⁻¹ D Q2⁻ᵀ with D = M2 − M1, t_u = ‖A‖², t_v = ‖B‖²,
# W = P2⁻ᵀ Z Q2⁻¹ = U2⁻¹ D V2⁻¹. Every gradient buffer is float64 lane scratch that the
# batch driver stores (cast, and negated for mean1) into the caller's arrays.


@item
def lower_gram(G, A, s, c, m, n):
    """Lower triangle of ``G = s·c·A Aᵀ`` for lower-triangular ``A`` (``G`` is not ``A``)."""
    for i in range(n):
        for j in range(i + 1):
            for l in range(m):
                G[i, j, l] = 0.0
            for k in range(j + 1):
                for l in range(m):
                    G[i, j, l] += A[i, k, l] * A[j, k, l]
            for l in range(m):
                G[i, j, l] *= s * c[l]


@item
def add_row_gram(G, Z, s, m, n, p):
    """Lower triangle of ``G += s·Z Zᵀ`` for ``Z`` of shape ``(n, p)``."""
    for i in range(n):
        for j in range(i + 1):
            for k in range(p):
                for l in range(m):
                    G[i, j, l] += s * Z[i, k, l] * Z[j, k, l]


@item
def add_col_gram(G, Z, s, m, n, p):
    """Lower triangle of ``G += s·Zᵀ Z`` (``p×p``) for ``Z`` of shape ``(n, p)``."""
    for i in range(p):
        for j in range(i + 1):
            for k in range(n):
                for l in range(m):
                    G[i, j, l] += s * Z[k, i, l] * Z[k, j, l]


@item
def add_diagonal(G, s, d, m, n):
    """``G[i, i] += s·d``."""
    for i in range(n):
        for l in range(m):
            G[i, i, l] += s * d[l]


@item
def tri_back_solve(L, r, X, Y, m, n):
    """``X ← tril(L⁻ᵀ X)`` and ``Y ← tril(L⁻ᵀ Y)``, reading the lower triangles of ``X``
    and ``Y`` only; zeros above the diagonal.

    ``L⁻ᵀ`` is upper triangular, so row ``i`` of ``L⁻ᵀ X`` is a back substitution that
    needs only the rows below it, and its entries up to the diagonal only theirs up to
    column ``i``: the lower triangle costs a sixth of a full solve.
    """
    for i in range(n - 1, -1, -1):
        for k in range(i + 1, n):
            for j in range(i + 1):
                for l in range(m):
                    X[i, j, l] -= L[k, i, l] * X[k, j, l]
                    Y[i, j, l] -= L[k, i, l] * Y[k, j, l]
        for j in range(i + 1):
            for l in range(m):
                X[i, j, l] *= r[i, l]
                Y[i, j, l] *= r[i, l]
        for j in range(i + 1, n):
            for l in range(m):
                X[i, j, l] = 0.0
                Y[i, j, l] = 0.0


@item
def scale_minus_diagonal(G, c, d, r, m, n):
    """Lower triangle of ``G ← c·G − d·diag(r)``; zeros above the diagonal."""
    for i in range(n):
        for j in range(i):
            for l in range(m):
                G[i, j, l] *= c[l]
                G[j, i, l] = 0.0
        for l in range(m):
            G[i, i, l] = c[l] * G[i, i, l] - d * r[i, l]


@item
def negated(W, Y, acc, m, n, p):
    """``W = −Y``; ``acc = ‖Y‖_F²``."""
    squared_norm(Y, acc, m, n, p)
    for i in range(n):
        for c in range(p):
            for l in range(m):
                W[i, c, l] = -Y[i, c, l]


@item
def unwhiten(Y, L, rl, K, rk, m, n, p):
    """``Y ← L⁻ᵀ Y K⁻¹``, the adjoint of the whitening ``Y → L⁻¹ Y K⁻ᵀ``: rows by
    :func:`solve_rows`, then back substitution along each row."""
    solve_rows(L, rl, Y, m, n, p, True)
    for i in range(n):
        for c in range(p - 1, -1, -1):
            for k in range(c + 1, p):
                for l in range(m):
                    Y[i, c, l] -= Y[i, k, l] * K[k, c, l]
            for l in range(m):
                Y[i, c, l] *= rk[c, l]


@item
def invert_lower(L, r, m, n):
    """``L ← L⁻¹`` in place for lower-triangular ``L`` (``r = 1/diag(L)``), column by column.

    Entry ``(i, j)`` of the inverse is ``−r_i Σ_{j≤k<i} L[i, k] L⁻¹[k, j]``: the factor's
    entries right of column ``j`` are still in place, the inverse's above row ``i`` are done.
    """
    for j in range(n):
        for l in range(m):
            L[j, j, l] = r[j, l]
        for i in range(j + 1, n):
            for l in range(m):
                L[i, j, l] *= L[j, j, l]
            for k in range(j + 1, i):
                for l in range(m):
                    L[i, j, l] += L[i, k, l] * L[k, j, l]
            for l in range(m):
                L[i, j, l] *= -r[i, l]


@item
def inverse_gram(G, K, s, c, add, m, n):
    """``G ← s·c·Kᵀ K`` (plus ``G`` when ``add``), every entry, for lower-triangular ``K``.

    With ``K = L⁻¹``, ``Kᵀ K = (L Lᵀ)⁻¹``.
    """
    for i in range(n):
        for j in range(i + 1):
            if not add:
                for l in range(m):
                    G[i, j, l] = 0.0
            for k in range(i, n):
                for l in range(m):
                    G[i, j, l] += s * c[l] * K[k, i, l] * K[k, j, l]
            for l in range(m):
                G[j, i, l] = G[i, j, l]


@item
def congruence(G, s, K, X, m, n):
    """``G ← s·Kᵀ S K`` for the symmetric ``S`` whose lower triangle ``G`` holds and
    lower-triangular ``K``; every entry. ``X`` (``n×n``) is scratch."""
    for i in range(n):
        for j in range(n):
            for l in range(m):
                X[i, j, l] = 0.0
            for k in range(j, n):
                if k <= i:
                    for l in range(m):
                        X[i, j, l] += G[i, k, l] * K[k, j, l]
                else:
                    for l in range(m):
                        X[i, j, l] += G[k, i, l] * K[k, j, l]
    for i in range(n):
        for j in range(i + 1):
            for l in range(m):
                G[i, j, l] = 0.0
            for k in range(i, n):
                for l in range(m):
                    G[i, j, l] += K[k, i, l] * X[k, j, l]
            for l in range(m):
                G[i, j, l] *= s
                G[j, i, l] = G[i, j, l]


@item
def row_col_sums(R, C, W, Y, m, n, p):
    """``R[i, 0] = Σ_c Y W`` and ``C[c, 0] = Σ_i Y W`` (elementwise products)."""
    for c in range(p):
        for l in range(m):
            C[c, 0, l] = 0.0
    for i in range(n):
        for l in range(m):
            R[i, 0, l] = 0.0
        for c in range(p):
            for l in range(m):
                x = Y[i, c, l] * W[i, c, l]
                R[i, 0, l] += x
                C[c, 0, l] += x


@item
def diagonal_grad(G1, G2, x1, r2, trace, size, m, count):
    """The variance gradients along one side (rows or columns), in column 0:
    ``G1 = ½(trace/x2 − size/x1)`` and ``G2 = ½/x2 · (size − trace·x1/x2 − G2)``,
    where ``x2 = 1/r2`` and ``G2`` holds the mean term's sums ``Σ D²/(a2 b2ᵀ)`` on entry."""
    for i in range(count):
        for l in range(m):
            x = x1[i, 0, l]
            ri = r2[i, l]
            G1[i, 0, l] = 0.5 * (trace[l] * ri - size / x)
            G2[i, 0, l] = 0.5 * ri * (size - trace[l] * x * ri - G2[i, 0, l])


@item
def standard_diagonal_grad(G, x1, trace, size, m, count):
    """``G = ½(trace − size/x1)`` in column 0: :func:`diagonal_grad` against unit variances."""
    for i in range(count):
        for l in range(m):
            G[i, 0, l] = 0.5 * (trace[l] - size / x1[i, 0, l])


@item
def second_moments(S3, P2, rp2, Q2, rq2, A, B, W, G2, H2, v, m, n, p):
    """The terms both factor gradients share, from ``A = P1``, ``B = Q1`` and ``S3 = D``:
    ``A ← P2⁻¹ P1``, ``B ← Q2⁻¹ Q1``, ``v[4] = t_u = ‖A‖²``, ``v[5] = t_v = ‖B‖²``,
    ``W ← Z = P2⁻¹ D Q2⁻ᵀ``, ``v[6] = ‖Z‖²`` and the lower triangles of
    ``G2 = p I − t_v A Aᵀ − Z Zᵀ``, ``H2 = n I − t_u B Bᵀ − Zᵀ Z`` (``v[8]`` holds ones)."""
    trace_tri(P2, rp2, A, v[4], m, n)
    trace_tri(Q2, rq2, B, v[5], m, p)
    copy(S3, W, m, n, p, False)
    whitened_norm2(W, P2, rp2, Q2, rq2, v[6], m, n, p)
    lower_gram(G2, A, -1.0, v[5], m, n)
    add_row_gram(G2, W, -1.0, m, n, p)
    add_diagonal(G2, p, v[8], m, n)
    lower_gram(H2, B, -1.0, v[4], m, p)
    add_col_gram(H2, W, -1.0, m, n, p)
    add_diagonal(H2, n, v[8], m, p)


@item(inline=True)
def kl_chol_grad(S0, S1, S2, S3, S4, S5, W, G1, H1, G2, H2, rp1, rq1, rp2, rq2, v, res, m, n, p):
    """KL from Cholesky factors (``S1, S2, S4, S5 = P1, Q1, P2, Q2``, ``S3 = m2 − m1``) and its gradient:

    ``W = ∂/∂m2 = −∂/∂m1 = P2⁻ᵀ Z Q2⁻¹``,
    ``G1 = ∂/∂P1 = tril(t_v P2⁻ᵀ A) − p·diag(1/P1)``,
    ``H1 = ∂/∂Q1 = tril(t_u Q2⁻ᵀ B) − n·diag(1/Q1)``,
    ``G2 = ∂/∂P2 = tril(P2⁻ᵀ (p I − t_v A Aᵀ − Z Zᵀ))``,
    ``H2 = ∂/∂Q2 = tril(Q2⁻ᵀ (n I − t_u B Bᵀ − Zᵀ Z))``,
    the factor gradients lower triangular with zeros above the diagonal.
    """
    both_factors(S1, S2, S4, S5, rp1, rq1, rp2, rq2, v, False, m, n, p)
    copy(S1, G1, m, n, n, True)
    copy(S2, H1, m, p, p, True)
    second_moments(S3, S4, rp2, S5, rq2, G1, H1, W, G2, H2, v, m, n, p)
    tri_back_solve(S4, rp2, G1, G2, m, n)
    tri_back_solve(S5, rq2, H1, H2, m, p)
    scale_minus_diagonal(G1, v[5], p, rp1, m, n)
    scale_minus_diagonal(H1, v[4], n, rq1, m, p)
    unwhiten(W, S4, rp2, S5, rq2, m, n, p)
    kl_value(res, v[4], v[5], v[6], v[0], v[1], m, n, p)


@item(inline=True)
def kl_cov_grad(S0, S1, S2, S3, S4, S5, W, G1, H1, G2, H2, A, B, rp1, rq1, rp2, rq2, v, res, m, n, p):
    """KL from covariances (``S1, S2, S4, S5 = U1, V1, U2, V2``, ``S3 = m2 − m1``) and its
    gradient: the symmetric

    ``G1 = ∂/∂U1 = ½(t_v U2⁻¹ − p U1⁻¹)``, ``H1 = ∂/∂V1 = ½(t_u V2⁻¹ − n V1⁻¹)``,
    ``G2 = ∂/∂U2 = ½ P2⁻ᵀ (p I − t_v A Aᵀ − Z Zᵀ) P2⁻¹``,
    ``H2 = ∂/∂V2 = ½ Q2⁻ᵀ (n I − t_u B Bᵀ − Zᵀ Z) Q2⁻¹`` and ``W = ∂/∂m2 = −∂/∂m1``.
    ``A, B`` are scratch.
    """
    both_factors(S1, S2, S4, S5, rp1, rq1, rp2, rq2, v, True, m, n, p)
    copy(S1, A, m, n, n, True)
    copy(S2, B, m, p, p, True)
    second_moments(S3, S4, rp2, S5, rq2, A, B, W, G2, H2, v, m, n, p)
    unwhiten(W, S4, rp2, S5, rq2, m, n, p)
    invert_lower(S1, rp1, m, n)
    invert_lower(S4, rp2, m, n)
    invert_lower(S2, rq1, m, p)
    invert_lower(S5, rq2, m, p)
    congruence(G2, 0.5, S4, A, m, n)
    congruence(H2, 0.5, S5, B, m, p)
    inverse_gram(G1, S1, -0.5 * p, v[8], False, m, n)
    inverse_gram(G1, S4, 0.5, v[5], True, m, n)
    inverse_gram(H1, S2, -0.5 * n, v[8], False, m, p)
    inverse_gram(H1, S5, 0.5, v[4], True, m, p)
    kl_value(res, v[4], v[5], v[6], v[0], v[1], m, n, p)


@item(inline=True)
def kl_diag_grad(S0, S1, S2, S3, S4, S5, W, G1, H1, G2, H2, ra, rb, v, res, m, n, p):
    """KL for diagonal covariances ``diag(a)``, ``diag(b)`` (``S1, S2, S4, S5 = a1, b1, a2, b2``,
    variances as ``(·, 1)`` columns; ``S3 = m2 − m1``) and its gradient, in column 0 of ``G1 = ∂/∂a1``,
    ``H1 = ∂/∂b1``, ``G2 = ∂/∂a2``, ``H2 = ∂/∂b2``; ``W = ∂/∂m2 = −∂/∂m1 = D / (a2 b2ᵀ)``.
    """
    diagonal_terms(S1, S4, ra, v[4], v[2], v[7], m, n)
    diagonal_terms(S2, S5, rb, v[5], v[3], v[7], m, p)
    scaled_quad(W, S3, ra, rb, v[6], m, n, p)
    row_col_sums(G2, H2, W, S3, m, n, p)
    diagonal_grad(G1, G2, S1, ra, v[5], p, m, n)
    diagonal_grad(H1, H2, S2, rb, v[4], n, m, p)
    kl_value(res, v[4], v[5], v[6], v[2], v[3], m, n, p)


@item(inline=True)
def kl_std_chol_grad(S0, S1, S2, W, G1, H1, rp1, rq1, v, res, m, n, p):
    """KL from Cholesky factors to MN(0, I, I) and its gradient: :func:`kl_chol_grad` with
    ``P2 = I``, ``Q2 = I``, ``m2 = 0``: ``G1 = t_v tril(P1) − p·diag(1/P1)``, ``W = −m1``."""
    own_factors(S1, S2, rp1, rq1, v, False, m, n, p)
    copy(S1, G1, m, n, n, True)
    copy(S2, H1, m, p, p, True)
    lower_norm2(S1, v[4], m, n)
    lower_norm2(S2, v[5], m, p)
    negated(W, S0, v[6], m, n, p)
    scale_minus_diagonal(G1, v[5], p, rp1, m, n)
    scale_minus_diagonal(H1, v[4], n, rq1, m, p)
    kl_value(res, v[4], v[5], v[6], v[0], v[1], m, n, p)


@item(inline=True)
def kl_std_cov_grad(S0, S1, S2, W, G1, H1, rp1, rq1, v, res, m, n, p):
    """KL from covariances to MN(0, I, I) and its gradient: ``G1 = ½(tr(V1) I − p U1⁻¹)``,
    ``H1 = ½(tr(U1) I − n V1⁻¹)``, ``W = −m1``."""
    diagonal_sum(S1, v[4], m, n)
    diagonal_sum(S2, v[5], m, p)
    own_factors(S1, S2, rp1, rq1, v, True, m, n, p)
    negated(W, S0, v[6], m, n, p)
    invert_lower(S1, rp1, m, n)
    invert_lower(S2, rq1, m, p)
    inverse_gram(G1, S1, -0.5 * p, v[8], False, m, n)
    add_diagonal(G1, 0.5, v[5], m, n)
    inverse_gram(H1, S2, -0.5 * n, v[8], False, m, p)
    add_diagonal(H1, 0.5, v[4], m, p)
    kl_value(res, v[4], v[5], v[6], v[0], v[1], m, n, p)


@item(inline=True)
def kl_std_diag_grad(S0, S1, S2, W, G1, H1, v, res, m, n, p):
    """KL for diagonal covariances to MN(0, I, I) and its gradient: ``G1 = ½(Σb1 − p/a1)``,
    ``H1 = ½(Σa1 − n/b1)``, ``W = −m1``."""
    diagonal_sum_log(S1, v[4], v[0], v[7], -1.0, m, n)
    diagonal_sum_log(S2, v[5], v[1], v[7], -1.0, m, p)
    negated(W, S0, v[6], m, n, p)
    standard_diagonal_grad(G1, S1, v[5], p, m, n)
    standard_diagonal_grad(H1, S2, v[4], n, m, p)
    kl_value(res, v[4], v[5], v[6], v[0], v[1], m, n, p)


@item(inline=True)
def value_and_grad(mode, S0, S1, S2, S3, S4, S5, W, G1, H1, G2, H2, A, B, rp1, rq1, rp2, rq2, v, res, m, n, p):
    """``res[l]``: the KL that ``mode`` names (one of the ``KL_*`` modes) for lane ``l`` of the
    slots ``S0..S5`` (overwritten), and its gradient, ``W = ∂/∂a3 = −∂/∂a0`` and
    ``G1, H1, G2, H2 = ∂/∂a1, ∂/∂a2, ∂/∂a4, ∂/∂a5``."""
    fill(v[8], 1.0, m)
    if mode == KL_CHOL:
        kl_chol_grad(S0, S1, S2, S3, S4, S5, W, G1, H1, G2, H2, rp1, rq1, rp2, rq2, v, res, m, n, p)
    elif mode == KL_COV:
        kl_cov_grad(S0, S1, S2, S3, S4, S5, W, G1, H1, G2, H2, A, B, rp1, rq1, rp2, rq2, v, res, m, n, p)
    elif mode == KL_DIAG:
        kl_diag_grad(S0, S1, S2, S3, S4, S5, W, G1, H1, G2, H2, rp2, rq2, v, res, m, n, p)
    elif mode == KL_STD_CHOL:
        kl_std_chol_grad(S0, S1, S2, W, G1, H1, rp1, rq1, v, res, m, n, p)
    elif mode == KL_STD_COV:
        kl_std_cov_grad(S0, S1, S2, W, G1, H1, rp1, rq1, v, res, m, n, p)
    else:
        kl_std_diag_grad(S0, S1, S2, W, G1, H1, v, res, m, n, p)


@item(inline=True)
def put_items(dst, start, src, sign, res, m, rows, cols):
    """``dst[start + l] = sign·src[:rows, :cols, l]`` (NaN where ``res[l]`` is not finite)."""
    for l in range(m):
        valid = math.isfinite(res[l])
        for i in range(rows):
            for j in range(cols):
                dst[start + l, i, j] = sign * src[i, j, l] if valid else math.nan


@item
def store(dst, start, src, sign, res, m):
    """``dst[start + l] = sign·src[:, :, l]`` over the shape of ``dst`` (NaN where ``res[l]``
    is not finite); 4×4 and 2×2 items by loops of fixed length, as in :func:`gather`."""
    rows = dst.shape[1]
    cols = dst.shape[2]
    if rows == 4 and cols == 4:
        put_items(dst, start, src, sign, res, m, 4, 4)
    elif rows == 2 and cols == 2:
        put_items(dst, start, src, sign, res, m, 2, 2)
    else:
        put_items(dst, start, src, sign, res, m, rows, cols)


@item
def store_wanted(g0, g1, g2, g3, g4, g5, W, G1, H1, G2, H2, wanted, start, res, m):
    """The gradients that bit ``k`` of ``wanted`` asks for into ``g0 … g5``."""
    if wanted & 1:
        store(g0, start, W, -1.0, res, m)
    if wanted & 2:
        store(g1, start, G1, 1.0, res, m)
    if wanted & 4:
        store(g2, start, H1, 1.0, res, m)
    if wanted & 8:
        store(g3, start, W, 1.0, res, m)
    if wanted & 16:
        store(g4, start, G2, 1.0, res, m)
    if wanted & 32:
        store(g5, start, H2, 1.0, res, m)


_GRAD_SIGNATURES = {(np.dtype(dtype.name), np.dtype(work.name)):
                    void(int64, *(types.Array(dtype, 3, "A", readonly=True),) * 6, dtype[:],
                         *(types.Array(dtype, 3, "C"),) * 6, int64, int64[:], work[:])
                    for dtype, work in _PRECISIONS}


@batch(_GRAD_SIGNATURES)
def value_and_grad_batch(mode, a0, a1, a2, a3, a4, a5, out, g0, g1, g2, g3, g4, g5, wanted, first_bad, work):
    """``out[b]`` and ``g0[b] … g5[b]`` = the KL of item ``b`` and its gradient with respect to
    ``a0[b] … a5[b]``, for every ``b``, in parallel chunks as :func:`evaluate_batch`.

    Gradient ``k`` is stored only where bit ``k`` of ``wanted`` is set (the others may be
    ``(1, 1, 1)`` placeholders). An item whose KL is not finite gets NaN for its KL and
    its gradients, and counts in ``first_bad``.
    """
    count = out.shape[0]
    n = a0.shape[1]
    p = a0.shape[2]
    chunks = first_bad.shape[0]
    size = (count + chunks - 1) // chunks
    layout = slot_layout(mode, True)
    dtype = work.dtype
    lanes = lane_count(n, p, work.itemsize)
    for c in prange(chunks):
        S0, S1, S2, S3, S4, S5 = lane_scratch(a0, a1, a2, a3, a4, a5, lanes, dtype)
        W = np.empty((n, p, lanes), dtype)
        G1 = np.empty((a1.shape[1], a1.shape[2], lanes), dtype)
        H1 = np.empty((a2.shape[1], a2.shape[2], lanes), dtype)
        G2 = np.empty((a4.shape[1], a4.shape[2], lanes), dtype)
        H2 = np.empty((a5.shape[1], a5.shape[2], lanes), dtype)
        A = np.empty((n, n, lanes), dtype)
        B = np.empty((p, p, lanes), dtype)
        rp1 = np.empty((n, lanes), dtype)
        rq1 = np.empty((p, lanes), dtype)
        rp2 = np.empty((n, lanes), dtype)
        rq2 = np.empty((p, lanes), dtype)
        v = np.empty((SCALARS, lanes))
        res = np.empty(lanes)
        bad = count
        stop = min(count, (c + 1) * size)
        for start in range(c * size, stop, lanes):
            m = min(lanes, stop - start)
            gather_slots(a0, a1, a2, a3, a4, a5, start, S0, S1, S2, S3, S4, S5, layout, v[6], m)
            value_and_grad(mode, S0, S1, S2, S3, S4, S5, W, G1, H1, G2, H2, A, B,
                           rp1, rq1, rp2, rq2, v, res, m, n, p)
            bad = min(bad, finish(res, out, start, m, count))
            store_wanted(g0, g1, g2, g3, g4, g5, W, G1, H1, G2, H2, wanted, start, res, m)
        first_bad[c] = bad
