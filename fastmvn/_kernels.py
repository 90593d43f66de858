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
def trace_tri(L2, r2, W, n):
    """``tr((L2 L2ᵀ)⁻¹ W Wᵀ) = ‖L2⁻¹ W‖_F²`` for lower-triangular ``L2``, ``W``, overwriting
    ``W`` with ``L2⁻¹ W`` (lower triangular too).

    Solved a row at a time by updates of whole (contiguous) rows, which vectorise; only
    the lower triangle of ``W`` is read.
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
def copy_lower(a, L, n):
    """``tril(L) = tril(a)``."""
    for i in range(n):
        for j in range(i + 1):
            L[i, j] = a[i, j]


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
def kl_factored(m1, Lu1, Lv1, m2, Lu2, ru2, Lv2, rv2, dlogdet_u, dlogdet_v, Y, n, p):
    """KL between two matrix normals given by Cholesky factors, overwriting ``Lu1``, ``Lv1``.

    ``dlogdet_u = log|U2| − log|U1|`` and ``dlogdet_v = log|V2| − log|V1|``.
    """
    trace_u = trace_tri(Lu2, ru2, Lu1, n)
    trace_v = trace_tri(Lv2, rv2, Lv1, p)
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
                           logdet_u2 - logdet_u1, logdet_v2 - logdet_v1, Y, n, p)
    if mode == KL_CHOL:
        logdet_u1 = factor_logdet(a1, ru1, n)
        logdet_v1 = factor_logdet(a2, rv1, p)
        logdet_u2 = factor_logdet(a4, ru2, n)
        logdet_v2 = factor_logdet(a5, rv2, p)
        if math.isnan(logdet_u1 + logdet_v1 + logdet_u2 + logdet_v2):
            return math.nan
        copy_lower(a1, Lu1, n)
        copy_lower(a2, Lv1, p)
        return kl_factored(a0, Lu1, Lv1, a3, a4, ru2, a5, rv2,
                           logdet_u2 - logdet_u1, logdet_v2 - logdet_v1, Y, n, p)
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
