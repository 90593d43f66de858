"""Per-item kernels (one small matrix problem each) and the CPU batch driver.

Every per-item function works on one item of a batch: scalars, small 2-D arrays and
preallocated scratch arrays, no allocation, no exceptions. A failure (a matrix that is
not positive definite, a non-positive variance) makes the result NaN; non-finite inputs
propagate to a non-finite result. The batch driver records the first such item per
chunk and the Python layer (``fastmvn._api``) turns it into an exception that names
the argument and the batch index.

Arithmetic is in float64 whatever the input dtype: float32 data is read as float32 and
the result stored as float32, so the float32 path moves half the bytes at full accuracy.

Only the lower triangle (diagonal included) of a covariance or a Cholesky factor is read.

The functions are compiled with :func:`fastmvn._jit.item`; their plain Python
sources (``func.py_func``) are what other targets compile as well.
"""

import math

import numpy as np
from numba import float32, float64, int64, prange, types, void

from ._jit import batch, item

from ._modes import (KL_CHOL, KL_COV, KL_DIAG, KL_STD_CHOL, KL_STD_COV, KL_STD_DIAG, LOGDET,
                     LOGPDF, LOGPDF_CHOL, MAHALANOBIS_CHOL, TRACE_SOLVE)

_LOG_2PI = math.log(2.0 * math.pi)

_BIG = 1e150
_SMALL = 1e-150


@item
def log_accumulate(logsum, prod, x):
    """Fold ``x`` into the running product ``prod``, moving it into ``logsum`` before
    it could overflow or underflow: one log per ~300 decades instead of one per factor."""
    prod *= x
    if prod > _BIG or prod < _SMALL:
        logsum += math.log(prod)
        prod = 1.0
    return logsum, prod


@item
def cholesky(a, L, r, n):
    """Lower Cholesky factor ``L`` (``r = 1/diag(L)``) of the lower triangle of ``a``.

    Returns ``log|a|``, or NaN when ``a`` is not positive definite.
    """
    logsum = 0.0
    prod = 1.0
    for j in range(n):
        s = float(a[j, j])
        for k in range(j):
            s -= L[j, k] * L[j, k]
        if not s > 0.0:
            return math.nan
        d = math.sqrt(s)
        rj = 1.0 / d
        L[j, j] = d
        r[j] = rj
        logsum, prod = log_accumulate(logsum, prod, s)
        for i in range(j + 1, n):
            t = float(a[i, j])
            for k in range(j):
                t -= L[i, k] * L[j, k]
            L[i, j] = t * rj
    return logsum + math.log(prod)


@item
def factor_logdet(L, r, n):
    """``log|L Lᵀ|`` for a lower-triangular factor ``L`` (``r = 1/diag(L)``).

    Returns NaN when a diagonal entry is not positive.
    """
    logsum = 0.0
    prod = 1.0
    for j in range(n):
        d = float(L[j, j])
        if not d > 0.0:
            return math.nan
        r[j] = 1.0 / d
        logsum, prod = log_accumulate(logsum, prod, d)
    return 2.0 * (logsum + math.log(prod))


@item
def lower_norm2(L, n):
    """``‖tril(L)‖_F² = tr(L Lᵀ)``."""
    acc = 0.0
    for i in range(n):
        for j in range(i + 1):
            x = float(L[i, j])
            acc += x * x
    return acc


@item
def diagonal_sum(a, n):
    """``tr(a)``."""
    acc = 0.0
    for i in range(n):
        acc += a[i, i]
    return acc


@item
def trace_tri(L2, r2, L1, t, n):
    """``tr((L2 L2ᵀ)⁻¹ L1 L1ᵀ) = ‖L2⁻¹ L1‖_F²`` for lower-triangular ``L1``, ``L2``.

    ``L2⁻¹ L1`` is lower triangular, so each column is a forward substitution that
    starts at the diagonal; ``t`` holds the column, updated a solved entry at a time.
    """
    acc = 0.0
    for j in range(n):
        for i in range(j, n):
            t[i] = L1[i, j]
        for k in range(j, n):
            x = t[k] * r2[k]
            acc += x * x
            for i in range(k + 1, n):
                t[i] -= L2[i, k] * x
    return acc


@item
def difference(Y, a, b, n, p):
    """``Y = a − b``."""
    for i in range(n):
        for c in range(p):
            Y[i, c] = float(a[i, c]) - float(b[i, c])


@item
def whitened_norm2(Y, L, rl, K, rk, n, p):
    """``‖L⁻¹ Y K⁻ᵀ‖_F² = tr((K Kᵀ)⁻¹ Yᵀ (L Lᵀ)⁻¹ Y)``, overwriting ``Y``.

    ``L⁻¹ Y`` is solved a row at a time by updates of whole (contiguous) rows, which
    vectorise; ``· K⁻ᵀ`` by forward substitution along each row.
    """
    for i in range(n):
        for k in range(i):
            lik = L[i, k]
            for c in range(p):
                Y[i, c] -= lik * Y[k, c]
        ri = rl[i]
        for c in range(p):
            Y[i, c] *= ri
    acc = 0.0
    for i in range(n):
        for c in range(p):
            s = Y[i, c]
            for k in range(c):
                s -= K[c, k] * Y[i, k]
            s *= rk[c]
            Y[i, c] = s
            acc += s * s
    return acc


@item
def squared_norm(m, n, p):
    """``‖m‖_F²``."""
    acc = 0.0
    for i in range(n):
        for c in range(p):
            x = float(m[i, c])
            acc += x * x
    return acc


@item
def kl_factored(m1, Lu1, Lv1, m2, Lu2, ru2, Lv2, rv2, dlogdet_u, dlogdet_v, Y, t, n, p):
    """KL between two matrix normals given by Cholesky factors.

    ``dlogdet_u = log|U2| − log|U1|`` and ``dlogdet_v = log|V2| − log|V1|``.
    """
    trace_u = trace_tri(Lu2, ru2, Lu1, t, n)
    trace_v = trace_tri(Lv2, rv2, Lv1, t, p)
    difference(Y, m2, m1, n, p)
    quad = whitened_norm2(Y, Lu2, ru2, Lv2, rv2, n, p)
    return 0.5 * (trace_u * trace_v + quad - n * p + p * dlogdet_u + n * dlogdet_v)


@item
def kl_standard(trace_u, trace_v, mean_norm2, logdet_u, logdet_v, n, p):
    """KL from MN(M, U, V) to MN(0, I, I) given its traces, ‖M‖² and log-determinants."""
    return 0.5 * (trace_u * trace_v + mean_norm2 - n * p - p * logdet_u - n * logdet_v)


@item
def diagonal_terms(var1, var2, r2, n):
    """``(Σ var1/var2, log Π var2/var1)`` for positive variances (``r2 = 1/var2``).

    Returns NaN terms when a variance is not positive.
    """
    trace = 0.0
    logsum = 0.0
    prod = 1.0
    for i in range(n):
        x1 = float(var1[i, 0])
        x2 = float(var2[i, 0])
        if not (x1 > 0.0 and x2 > 0.0):
            return math.nan, math.nan
        ri = 1.0 / x2
        r2[i] = ri
        trace += x1 * ri
        logsum, prod = log_accumulate(logsum, prod, x2 / x1)
    return trace, logsum + math.log(prod)


@item
def diagonal_sum_logdet(var, n):
    """``(Σ var, log Π var)``; NaN terms when a variance is not positive."""
    trace = 0.0
    logsum = 0.0
    prod = 1.0
    for i in range(n):
        x = float(var[i, 0])
        if not x > 0.0:
            return math.nan, math.nan
        trace += x
        logsum, prod = log_accumulate(logsum, prod, x)
    return trace, logsum + math.log(prod)


@item
def kl_diagonal(m1, u1, v1, m2, u2, v2, ru, rv, n, p):
    """KL between two matrix normals with diagonal row and column covariances."""
    trace_u, dlogdet_u = diagonal_terms(u1, u2, ru, n)
    trace_v, dlogdet_v = diagonal_terms(v1, v2, rv, p)
    quad = 0.0
    for i in range(n):
        row = 0.0
        for c in range(p):
            d = float(m2[i, c]) - float(m1[i, c])
            row += d * d * rv[c]
        quad += row * ru[i]
    return 0.5 * (trace_u * trace_v + quad - n * p + p * dlogdet_u + n * dlogdet_v)


@item
def trace_solve_factored(L, r, b, W, t, n):
    """``tr((L Lᵀ)⁻¹ b)`` for any square ``b``, using ``W`` (n×n) and ``t`` as scratch.

    With ``W = L⁻¹ b``, ``tr(L⁻ᵀ W) = tr(L⁻¹ Wᵀ)``, whose diagonal entry ``i`` is the
    last unknown of a forward substitution of length ``i + 1``.
    """
    for c in range(n):
        for i in range(n):
            s = float(b[i, c])
            for k in range(i):
                s -= L[i, k] * W[k, c]
            W[i, c] = s * r[i]
    acc = 0.0
    for i in range(n):
        for j in range(i + 1):
            s = W[i, j]
            for k in range(j):
                s -= L[j, k] * t[k]
            t[j] = s * r[j]
        acc += t[i]
    return acc


@item(inline=True)
def evaluate(mode, a0, a1, a2, a3, a4, a5, Lu1, Lv1, Lu2, Lv2, Y, ru1, rv1, ru2, rv2, t, n, p):
    """One item of the batch: the quantity ``mode`` names, from the slots ``a0..a5``."""
    if mode == KL_COV:
        logdet_u1 = cholesky(a1, Lu1, ru1, n)
        logdet_v1 = cholesky(a2, Lv1, rv1, p)
        logdet_u2 = cholesky(a4, Lu2, ru2, n)
        logdet_v2 = cholesky(a5, Lv2, rv2, p)
        if math.isnan(logdet_u1 + logdet_v1 + logdet_u2 + logdet_v2):
            return math.nan
        return kl_factored(a0, Lu1, Lv1, a3, Lu2, ru2, Lv2, rv2,
                           logdet_u2 - logdet_u1, logdet_v2 - logdet_v1, Y, t, n, p)
    if mode == KL_CHOL:
        logdet_u1 = factor_logdet(a1, ru1, n)
        logdet_v1 = factor_logdet(a2, rv1, p)
        logdet_u2 = factor_logdet(a4, ru2, n)
        logdet_v2 = factor_logdet(a5, rv2, p)
        if math.isnan(logdet_u1 + logdet_v1 + logdet_u2 + logdet_v2):
            return math.nan
        return kl_factored(a0, a1, a2, a3, a4, ru2, a5, rv2,
                           logdet_u2 - logdet_u1, logdet_v2 - logdet_v1, Y, t, n, p)
    if mode == KL_DIAG:
        return kl_diagonal(a0, a1, a2, a3, a4, a5, ru2, rv2, n, p)
    if mode == KL_STD_COV:
        logdet_u = cholesky(a1, Lu1, ru1, n)
        logdet_v = cholesky(a2, Lv1, rv1, p)
        return kl_standard(diagonal_sum(a1, n), diagonal_sum(a2, p), squared_norm(a0, n, p),
                           logdet_u, logdet_v, n, p)
    if mode == KL_STD_CHOL:
        logdet_u = factor_logdet(a1, ru1, n)
        logdet_v = factor_logdet(a2, rv1, p)
        return kl_standard(lower_norm2(a1, n), lower_norm2(a2, p), squared_norm(a0, n, p),
                           logdet_u, logdet_v, n, p)
    if mode == KL_STD_DIAG:
        trace_u, logdet_u = diagonal_sum_logdet(a1, n)
        trace_v, logdet_v = diagonal_sum_logdet(a2, p)
        return kl_standard(trace_u, trace_v, squared_norm(a0, n, p), logdet_u, logdet_v, n, p)
    if mode == LOGDET:
        return cholesky(a0, Lu1, ru1, n)
    if mode == TRACE_SOLVE:
        if math.isnan(cholesky(a0, Lu1, ru1, n)):
            return math.nan
        return trace_solve_factored(Lu1, ru1, a1, Y, t, n)
    if mode == LOGPDF_CHOL or mode == MAHALANOBIS_CHOL:
        logdet_u = factor_logdet(a2, ru2, n)
        logdet_v = factor_logdet(a3, rv2, p)
        if math.isnan(logdet_u + logdet_v):
            return math.nan
        difference(Y, a0, a1, n, p)
        quad = whitened_norm2(Y, a2, ru2, a3, rv2, n, p)
        if mode == MAHALANOBIS_CHOL:
            return quad
        return -0.5 * (n * p * _LOG_2PI + p * logdet_u + n * logdet_v + quad)
    # MAHALANOBIS, LOGPDF
    logdet_u = cholesky(a2, Lu2, ru2, n)
    logdet_v = cholesky(a3, Lv2, rv2, p)
    if math.isnan(logdet_u + logdet_v):
        return math.nan
    difference(Y, a0, a1, n, p)
    quad = whitened_norm2(Y, Lu2, ru2, Lv2, rv2, n, p)
    if mode == LOGPDF:
        return -0.5 * (n * p * _LOG_2PI + p * logdet_u + n * logdet_v + quad)
    return quad


_SIGNATURES = [void(int64, *(types.Array(dtype, 3, "A", readonly=True),) * 6, dtype[:], int64[:])
               for dtype in (float32, float64)]


@batch(_SIGNATURES)
def evaluate_batch(mode, a0, a1, a2, a3, a4, a5, out, first_bad):
    """``out[b] = evaluate(mode, a0[b], …, a5[b])`` for every ``b``, in parallel chunks.

    The batch is split into ``len(first_bad)`` contiguous chunks; each allocates its
    scratch once. An item whose result is not finite is stored as NaN, and
    ``first_bad[c]`` receives the first such index of chunk ``c`` (``len(out)`` if none).
    """
    count = out.shape[0]
    n = a0.shape[1]
    p = a0.shape[2]
    chunks = first_bad.shape[0]
    size = (count + chunks - 1) // chunks
    for c in prange(chunks):
        Lu1 = np.empty((n, n))
        Lv1 = np.empty((p, p))
        Lu2 = np.empty((n, n))
        Lv2 = np.empty((p, p))
        Y = np.empty((n, p))
        ru1 = np.empty(n)
        rv1 = np.empty(p)
        ru2 = np.empty(n)
        rv2 = np.empty(p)
        t = np.empty(max(n, p))
        bad = count
        for b in range(c * size, min(count, (c + 1) * size)):
            value = evaluate(mode, a0[b], a1[b], a2[b], a3[b], a4[b], a5[b],
                             Lu1, Lv1, Lu2, Lv2, Y, ru1, rv1, ru2, rv2, t, n, p)
            if not math.isfinite(value):
                value = math.nan
                bad = min(bad, b)
            out[b] = value
        first_bad[c] = bad



@item
def cholesky_factor(a, L, r, n):
    """:func:`cholesky` with the upper triangle of ``L`` set to zero, so that ``L`` is the
    whole factor; where the log-determinant is not finite (``a`` is not positive definite
    or not finite), ``L`` is the identity."""
    logdet = cholesky(a, L, r, n)
    good = math.isfinite(logdet)
    for i in range(n):
        for j in range(i + 1, n):
            L[i, j] = 0.0
        if not good:
            for j in range(i + 1):
                L[i, j] = 1.0 if i == j else 0.0
    return logdet


@item
def trace_tri_rows(L2, r2, W, n):
    """``‖L2⁻¹ W‖_F²`` for lower-triangular ``W``, overwriting ``W`` with ``L2⁻¹ W``.

    The value of :func:`trace_tri` with ``L1 = W``, solved a row at a time by updates of
    whole (contiguous) rows, which vectorise: faster for the large factors of a full
    ``np×np`` covariance, where the column-wise substitution is bound by strided reads.
    """
    acc = 0.0
    for i in range(n):
        for k in range(i):
            lik = L2[i, k]
            for c in range(k + 1):
                W[i, c] -= lik * W[k, c]
        ri = r2[i]
        for c in range(i + 1):
            x = W[i, c] * ri
            W[i, c] = x
            acc += x * x
    return acc


@item
def whitened_vector_norm2(L, r, a, b, y, n):
    """``‖L⁻¹ (a − b)‖²`` for columns ``a``, ``b`` (``n×1``), by forward substitution into ``y``
    (dot products along the contiguous rows of ``L``)."""
    acc = 0.0
    for i in range(n):
        s = float(a[i, 0]) - float(b[i, 0])
        for k in range(i):
            s -= L[i, k] * y[k]
        s *= r[i]
        y[i] = s
        acc += s * s
    return acc


@item(inline=True)
def kl_full_cov(m1, S1, m2, S2, L1, L2, r1, r2, y, n):
    """KL between ``N(m1, S1)`` and ``N(m2, S2)`` (means as ``n×1`` columns, full covariances):
    ``½[‖L2⁻¹ L1‖² + ‖L2⁻¹ (m2 − m1)‖² − n + log|S2| − log|S1|]``; NaN when a covariance
    is not positive definite."""
    logdet1 = cholesky(S1, L1, r1, n)
    logdet2 = cholesky(S2, L2, r2, n)
    if math.isnan(logdet1 + logdet2):
        return math.nan
    trace = trace_tri_rows(L2, r2, L1, n)
    quad = whitened_vector_norm2(L2, r2, m2, m1, y, n)
    return 0.5 * (trace + quad - n + logdet2 - logdet1)


#: Modes of :func:`full_batch`; the slots ``a0..a3`` hold, in order:
FULL_FACTOR = 0  # cov (the factors go to ``factor``, the log-determinants to ``out``)
FULL_KL = 1  # vec mean1 (np×1), cov1, vec mean2, cov2

_FULL_SIGNATURES = [void(int64, *(types.Array(dtype, 3, "A", readonly=True),) * 4, float64[:, :, ::1], dtype[:],
                         int64[:])
                    for dtype in (float32, float64)]


@batch(_FULL_SIGNATURES)
def full_batch(mode, a0, a1, a2, a3, factor, out, first_bad):
    """The batch driver of the matrix Gaussian's full ``np×np`` covariances, in parallel chunks.

    ``FULL_FACTOR``: ``factor[b]`` = the lower Cholesky factor of ``a0[b]`` (the identity
    where it fails) and ``out[b] = log|a0[b]|``. ``FULL_KL``: ``out[b]`` = :func:`kl_full_cov`
    of ``a0[b], …, a3[b]``; ``factor`` is not used. Chunks, scratch and ``first_bad`` are
    as in :func:`evaluate_batch`.
    """
    count = out.shape[0]
    n = a0.shape[1]
    chunks = first_bad.shape[0]
    size = (count + chunks - 1) // chunks
    for c in prange(chunks):
        L1 = np.empty((n, n))
        L2 = np.empty((n, n))
        r1 = np.empty(n)
        r2 = np.empty(n)
        y = np.empty(n)
        bad = count
        for b in range(c * size, min(count, (c + 1) * size)):
            if mode == FULL_FACTOR:
                value = cholesky_factor(a0[b], factor[b], r1, n)
            else:
                value = kl_full_cov(a0[b], a1[b], a2[b], a3[b], L1, L2, r1, r2, y, n)
            if not math.isfinite(value):
                value = math.nan
                bad = min(bad, b)
            out[b] = value
        first_bad[c] = bad
