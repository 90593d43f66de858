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


# Gradients of the KL, in one fused pass per item; the formulas are derived in
# docs/gradients.md. Notation there and here: P = L_U, Q = L_V (lower Cholesky factors),
# A = P2⁻¹ P1, B = Q2⁻¹ Q1, Z = P2⁻¹ D Q2⁻ᵀ with D = M2 − M1, t_u = ‖A‖², t_v = ‖B‖²,
# W = P2⁻ᵀ Z Q2⁻¹ = U2⁻¹ D V2⁻¹. Every gradient buffer is float64 scratch that the batch
# driver stores (cast, and negated for mean1) into the caller's arrays.


@item
def lower_gram(G, c, A, d, n):
    """Lower triangle of ``G = c·A Aᵀ + d·I`` for lower-triangular ``A`` (``G`` is not ``A``)."""
    for i in range(n):
        for j in range(i + 1):
            s = 0.0
            for k in range(j + 1):
                s += A[i, k] * A[j, k]
            G[i, j] = c * s
        G[i, i] += d


@item
def add_row_gram(G, c, Z, n, p):
    """Lower triangle of ``G += c·Z Zᵀ`` for ``Z`` of shape ``(n, p)``."""
    for i in range(n):
        for j in range(i + 1):
            s = 0.0
            for k in range(p):
                s += Z[i, k] * Z[j, k]
            G[i, j] += c * s


@item
def add_col_gram(G, c, Z, n, p):
    """Lower triangle of ``G += c·Zᵀ Z`` (``p×p``) for ``Z`` of shape ``(n, p)``."""
    for i in range(p):
        for j in range(i + 1):
            s = 0.0
            for k in range(n):
                s += Z[k, i] * Z[k, j]
            G[i, j] += c * s


@item
def tri_back_solve(L, r, X, Y, n):
    """``X ← tril(L⁻ᵀ X)`` and ``Y ← tril(L⁻ᵀ Y)``, reading the lower triangles of ``X``
    and ``Y`` only; zeros above the diagonal.

    ``L⁻ᵀ`` is upper triangular, so row ``i`` of ``L⁻ᵀ X`` is a back substitution that
    needs only the rows below it, and its entries up to the diagonal only theirs up to
    column ``i``: the lower triangle costs a sixth of a full solve. Rows are updated
    whole (contiguous), both matrices in one sweep.
    """
    for i in range(n - 1, -1, -1):
        for k in range(i + 1, n):
            lki = L[k, i]
            for j in range(i + 1):
                X[i, j] -= lki * X[k, j]
                Y[i, j] -= lki * Y[k, j]
        ri = r[i]
        for j in range(i + 1):
            X[i, j] *= ri
            Y[i, j] *= ri
        for j in range(i + 1, n):
            X[i, j] = 0.0
            Y[i, j] = 0.0


@item
def scale_minus_diagonal(G, c, d, r, n):
    """Lower triangle of ``G ← c·G − d·diag(r)``; zeros above the diagonal."""
    for i in range(n):
        for j in range(i):
            G[i, j] *= c
            G[j, i] = 0.0
        G[i, i] = c * G[i, i] - d * r[i]


@item
def negated(Y, a, n, p):
    """``Y = −a``; returns ``‖a‖_F²``."""
    acc = 0.0
    for i in range(n):
        for c in range(p):
            x = float(a[i, c])
            Y[i, c] = -x
            acc += x * x
    return acc


@item
def unwhiten(Y, L, rl, K, rk, n, p):
    """``Y ← L⁻ᵀ Y K⁻¹``, the adjoint of the whitening ``Y → L⁻¹ Y K⁻ᵀ``.

    ``L⁻ᵀ Y`` by back substitution with whole-row updates; ``· K⁻¹`` by back
    substitution along each row.
    """
    for i in range(n - 1, -1, -1):
        for k in range(i + 1, n):
            lki = L[k, i]
            for c in range(p):
                Y[i, c] -= lki * Y[k, c]
        ri = rl[i]
        for c in range(p):
            Y[i, c] *= ri
    for i in range(n):
        for c in range(p - 1, -1, -1):
            s = Y[i, c]
            for k in range(c + 1, p):
                s -= Y[i, k] * K[k, c]
            Y[i, c] = s * rk[c]


@item
def invert_lower(L, r, n):
    """``L ← L⁻¹`` in place for lower-triangular ``L`` (``r = 1/diag(L)``), column by column."""
    for j in range(n):
        L[j, j] = r[j]
        for i in range(j + 1, n):
            s = 0.0
            for k in range(j, i):
                s += L[i, k] * L[k, j]
            L[i, j] = -s * r[i]


@item
def inverse_gram(G, c, K, d, add, n):
    """``G ← c·Kᵀ K + d·I`` (plus ``G`` when ``add``), every entry, for lower-triangular ``K``.

    With ``K = L⁻¹``, ``Kᵀ K = (L Lᵀ)⁻¹``.
    """
    for i in range(n):
        for j in range(i + 1):
            s = 0.0
            for k in range(i, n):
                s += K[k, i] * K[k, j]
            s *= c
            if i == j:
                s += d
            if add:
                s += G[i, j]
            G[i, j] = s
            G[j, i] = s


@item
def congruence(G, c, K, X, n):
    """``G ← c·Kᵀ S K`` for the symmetric ``S`` whose lower triangle ``G`` holds and
    lower-triangular ``K``; every entry. ``X`` (``n×n``) is scratch."""
    for i in range(n):
        for j in range(n):
            s = 0.0
            for k in range(j, n):
                s += (G[i, k] if k <= i else G[k, i]) * K[k, j]
            X[i, j] = s
    for i in range(n):
        for j in range(i + 1):
            s = 0.0
            for k in range(i, n):
                s += K[k, i] * X[k, j]
            s *= c
            G[i, j] = s
            G[j, i] = s


@item(inline=True)
def kl_chol_grad(m1, P1, Q1, m2, P2, Q2, W, G1, H1, G2, H2, rp1, rq1, rp2, rq2, n, p):
    """KL from Cholesky factors and its gradient: returns the KL and sets

    ``W = ∂/∂m2 = −∂/∂m1 = P2⁻ᵀ Z Q2⁻¹``,
    ``G1 = ∂/∂P1 = tril(t_v P2⁻ᵀ A) − p·diag(1/P1)``,
    ``H1 = ∂/∂Q1 = tril(t_u Q2⁻ᵀ B) − n·diag(1/Q1)``,
    ``G2 = ∂/∂P2 = tril(P2⁻ᵀ (p I − t_v A Aᵀ − Z Zᵀ))``,
    ``H2 = ∂/∂Q2 = tril(Q2⁻ᵀ (n I − t_u B Bᵀ − Zᵀ Z))``,
    the factor gradients lower triangular with zeros above the diagonal.
    """
    logdet_u1 = factor_logdet(P1, rp1, n)
    logdet_v1 = factor_logdet(Q1, rq1, p)
    logdet_u2 = factor_logdet(P2, rp2, n)
    logdet_v2 = factor_logdet(Q2, rq2, p)
    if math.isnan(logdet_u1 + logdet_v1 + logdet_u2 + logdet_v2):
        return math.nan
    copy_lower(P1, G1, n)
    copy_lower(Q1, H1, p)
    trace_u = trace_tri(P2, rp2, G1, n)
    trace_v = trace_tri(Q2, rq2, H1, p)
    difference(W, m2, m1, n, p)
    quad = whitened_norm2(W, P2, rp2, Q2, rq2, n, p)
    lower_gram(G2, -trace_v, G1, p, n)
    add_row_gram(G2, -1.0, W, n, p)
    lower_gram(H2, -trace_u, H1, n, p)
    add_col_gram(H2, -1.0, W, n, p)
    tri_back_solve(P2, rp2, G1, G2, n)
    tri_back_solve(Q2, rq2, H1, H2, p)
    scale_minus_diagonal(G1, trace_v, p, rp1, n)
    scale_minus_diagonal(H1, trace_u, n, rq1, p)
    unwhiten(W, P2, rp2, Q2, rq2, n, p)
    return 0.5 * (trace_u * trace_v + quad - n * p + p * (logdet_u2 - logdet_u1) + n * (logdet_v2 - logdet_v1))


@item(inline=True)
def kl_cov_grad(m1, U1, V1, m2, U2, V2, W, G1, H1, G2, H2, P1, Q1, P2, Q2, A, B, rp1, rq1, rp2, rq2, n, p):
    """KL from covariances and its gradient: returns the KL and sets the symmetric

    ``G1 = ∂/∂U1 = ½(t_v U2⁻¹ − p U1⁻¹)``, ``H1 = ∂/∂V1 = ½(t_u V2⁻¹ − n V1⁻¹)``,
    ``G2 = ∂/∂U2 = ½ P2⁻ᵀ (p I − t_v A Aᵀ − Z Zᵀ) P2⁻¹``,
    ``H2 = ∂/∂V2 = ½ Q2⁻ᵀ (n I − t_u B Bᵀ − Zᵀ Z) Q2⁻¹`` and ``W = ∂/∂m2 = −∂/∂m1``.
    ``P1, Q1, P2, Q2, A, B`` are scratch.
    """
    logdet_u1 = cholesky(U1, P1, rp1, n)
    logdet_v1 = cholesky(V1, Q1, rq1, p)
    logdet_u2 = cholesky(U2, P2, rp2, n)
    logdet_v2 = cholesky(V2, Q2, rq2, p)
    if math.isnan(logdet_u1 + logdet_v1 + logdet_u2 + logdet_v2):
        return math.nan
    copy_lower(P1, A, n)
    copy_lower(Q1, B, p)
    trace_u = trace_tri(P2, rp2, A, n)
    trace_v = trace_tri(Q2, rq2, B, p)
    difference(W, m2, m1, n, p)
    quad = whitened_norm2(W, P2, rp2, Q2, rq2, n, p)
    lower_gram(G2, -trace_v, A, p, n)
    add_row_gram(G2, -1.0, W, n, p)
    lower_gram(H2, -trace_u, B, n, p)
    add_col_gram(H2, -1.0, W, n, p)
    unwhiten(W, P2, rp2, Q2, rq2, n, p)
    invert_lower(P1, rp1, n)
    invert_lower(P2, rp2, n)
    invert_lower(Q1, rq1, p)
    invert_lower(Q2, rq2, p)
    congruence(G2, 0.5, P2, A, n)
    congruence(H2, 0.5, Q2, B, p)
    inverse_gram(G1, -0.5 * p, P1, 0.0, False, n)
    inverse_gram(G1, 0.5 * trace_v, P2, 0.0, True, n)
    inverse_gram(H1, -0.5 * n, Q1, 0.0, False, p)
    inverse_gram(H1, 0.5 * trace_u, Q2, 0.0, True, p)
    return 0.5 * (trace_u * trace_v + quad - n * p + p * (logdet_u2 - logdet_u1) + n * (logdet_v2 - logdet_v1))


@item
def diagonal_grad(G1, G2, x1, r2, trace, size, count):
    """The variance gradients along one side (rows or columns), in column 0:
    ``G1 = ½(trace/x2 − size/x1)`` and ``G2 = ½/x2 · (size − trace·x1/x2 − G2)``,
    where ``x2 = 1/r2`` and ``G2`` holds the mean term's sums ``Σ D²/(a2 b2ᵀ)`` on entry."""
    for i in range(count):
        x = float(x1[i, 0])
        ri = r2[i]
        G1[i, 0] = 0.5 * (trace * ri - size / x)
        G2[i, 0] = 0.5 * ri * (size - trace * x * ri - G2[i, 0])


@item
def standard_diagonal_grad(G, x1, trace, size, count):
    """``G = ½(trace − size/x1)`` in column 0: :func:`diagonal_grad` against unit variances."""
    for i in range(count):
        G[i, 0] = 0.5 * (trace - size / float(x1[i, 0]))


@item(inline=True)
def kl_diag_grad(m1, a1, b1, m2, a2, b2, W, G1, H1, G2, H2, ra, rb, n, p):
    """KL for diagonal covariances ``diag(a)``, ``diag(b)`` (as ``(·, 1)`` columns) and its
    gradient, in column 0 of ``G1 = ∂/∂a1``, ``H1 = ∂/∂b1``, ``G2 = ∂/∂a2``, ``H2 = ∂/∂b2``;
    ``W = ∂/∂m2 = −∂/∂m1 = D / (a2 b2ᵀ)``.
    """
    trace_u, dlogdet_u = diagonal_terms(a1, a2, ra, n)
    trace_v, dlogdet_v = diagonal_terms(b1, b2, rb, p)
    if math.isnan(trace_u + trace_v):
        return math.nan
    for c in range(p):
        H2[c, 0] = 0.0
    quad = 0.0
    for i in range(n):
        row = 0.0
        for c in range(p):
            d = float(m2[i, c]) - float(m1[i, c])
            w = d * ra[i] * rb[c]
            W[i, c] = w
            row += d * w
            H2[c, 0] += d * w
        G2[i, 0] = row
        quad += row
    diagonal_grad(G1, G2, a1, ra, trace_v, p, n)
    diagonal_grad(H1, H2, b1, rb, trace_u, n, p)
    return 0.5 * (trace_u * trace_v + quad - n * p + p * dlogdet_u + n * dlogdet_v)


@item(inline=True)
def kl_std_chol_grad(m1, P1, Q1, W, G1, H1, rp1, rq1, n, p):
    """KL from Cholesky factors to MN(0, I, I) and its gradient: :func:`kl_chol_grad` with
    ``P2 = I``, ``Q2 = I``, ``m2 = 0``: ``G1 = t_v tril(P1) − p·diag(1/P1)``, ``W = −m1``."""
    logdet_u = factor_logdet(P1, rp1, n)
    logdet_v = factor_logdet(Q1, rq1, p)
    if math.isnan(logdet_u + logdet_v):
        return math.nan
    copy_lower(P1, G1, n)
    copy_lower(Q1, H1, p)
    trace_u = lower_norm2(P1, n)
    trace_v = lower_norm2(Q1, p)
    quad = negated(W, m1, n, p)
    scale_minus_diagonal(G1, trace_v, p, rp1, n)
    scale_minus_diagonal(H1, trace_u, n, rq1, p)
    return kl_standard(trace_u, trace_v, quad, logdet_u, logdet_v, n, p)


@item(inline=True)
def kl_std_cov_grad(m1, U1, V1, W, G1, H1, P1, Q1, rp1, rq1, n, p):
    """KL from covariances to MN(0, I, I) and its gradient: ``G1 = ½(tr(V1) I − p U1⁻¹)``,
    ``H1 = ½(tr(U1) I − n V1⁻¹)``, ``W = −m1``."""
    logdet_u = cholesky(U1, P1, rp1, n)
    logdet_v = cholesky(V1, Q1, rq1, p)
    if math.isnan(logdet_u + logdet_v):
        return math.nan
    trace_u = diagonal_sum(U1, n)
    trace_v = diagonal_sum(V1, p)
    quad = negated(W, m1, n, p)
    invert_lower(P1, rp1, n)
    invert_lower(Q1, rq1, p)
    inverse_gram(G1, -0.5 * p, P1, 0.5 * trace_v, False, n)
    inverse_gram(H1, -0.5 * n, Q1, 0.5 * trace_u, False, p)
    return kl_standard(trace_u, trace_v, quad, logdet_u, logdet_v, n, p)


@item(inline=True)
def kl_std_diag_grad(m1, a1, b1, W, G1, H1, n, p):
    """KL for diagonal covariances to MN(0, I, I) and its gradient: ``G1 = ½(Σb1 − p/a1)``,
    ``H1 = ½(Σa1 − n/b1)``, ``W = −m1``."""
    trace_u, logdet_u = diagonal_sum_logdet(a1, n)
    trace_v, logdet_v = diagonal_sum_logdet(b1, p)
    if math.isnan(trace_u + trace_v):
        return math.nan
    quad = negated(W, m1, n, p)
    standard_diagonal_grad(G1, a1, trace_v, p, n)
    standard_diagonal_grad(H1, b1, trace_u, n, p)
    return kl_standard(trace_u, trace_v, quad, logdet_u, logdet_v, n, p)


@item(inline=True)
def value_and_grad(mode, a0, a1, a2, a3, a4, a5, W, G1, H1, G2, H2, P1, Q1, P2, Q2, A, B,
                   rp1, rq1, rp2, rq2, n, p):
    """One item of the batch: the KL that ``mode`` names (one of the ``KL_*`` modes) and its
    gradient, ``W = ∂/∂a3 = −∂/∂a0`` and ``G1, H1, G2, H2 = ∂/∂a1, ∂/∂a2, ∂/∂a4, ∂/∂a5``."""
    if mode == KL_CHOL:
        return kl_chol_grad(a0, a1, a2, a3, a4, a5, W, G1, H1, G2, H2, rp1, rq1, rp2, rq2, n, p)
    if mode == KL_COV:
        return kl_cov_grad(a0, a1, a2, a3, a4, a5, W, G1, H1, G2, H2, P1, Q1, P2, Q2, A, B,
                           rp1, rq1, rp2, rq2, n, p)
    if mode == KL_DIAG:
        return kl_diag_grad(a0, a1, a2, a3, a4, a5, W, G1, H1, G2, H2, rp2, rq2, n, p)
    if mode == KL_STD_CHOL:
        return kl_std_chol_grad(a0, a1, a2, W, G1, H1, rp1, rq1, n, p)
    if mode == KL_STD_COV:
        return kl_std_cov_grad(a0, a1, a2, W, G1, H1, P1, Q1, rp1, rq1, n, p)
    return kl_std_diag_grad(a0, a1, a2, W, G1, H1, n, p)


@item(inline=True)
def store(dst, src, sign, valid):
    """``dst = sign·src`` over the shape of ``dst`` (NaN where not ``valid``)."""
    for i in range(dst.shape[0]):
        for j in range(dst.shape[1]):
            dst[i, j] = sign * src[i, j] if valid else math.nan


_GRAD_SIGNATURES = [void(int64, *(types.Array(dtype, 3, "A", readonly=True),) * 6, dtype[:],
                         *(types.Array(dtype, 3, "C"),) * 6, int64, int64[:])
                    for dtype in (float32, float64)]


@batch(_GRAD_SIGNATURES)
def value_and_grad_batch(mode, a0, a1, a2, a3, a4, a5, out, g0, g1, g2, g3, g4, g5, wanted, first_bad):
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
    for c in prange(chunks):
        W = np.empty((n, p))
        G1 = np.empty((n, n))
        H1 = np.empty((p, p))
        G2 = np.empty((n, n))
        H2 = np.empty((p, p))
        P1 = np.empty((n, n))
        Q1 = np.empty((p, p))
        P2 = np.empty((n, n))
        Q2 = np.empty((p, p))
        A = np.empty((n, n))
        B = np.empty((p, p))
        rp1 = np.empty(n)
        rq1 = np.empty(p)
        rp2 = np.empty(n)
        rq2 = np.empty(p)
        bad = count
        for b in range(c * size, min(count, (c + 1) * size)):
            value = value_and_grad(mode, a0[b], a1[b], a2[b], a3[b], a4[b], a5[b], W, G1, H1, G2, H2,
                                   P1, Q1, P2, Q2, A, B, rp1, rq1, rp2, rq2, n, p)
            valid = math.isfinite(value)
            if not valid:
                value = math.nan
                bad = min(bad, b)
            out[b] = value
            if wanted & 1:
                store(g0[b], W, -1.0, valid)
            if wanted & 2:
                store(g1[b], G1, 1.0, valid)
            if wanted & 4:
                store(g2[b], H1, 1.0, valid)
            if wanted & 8:
                store(g3[b], W, 1.0, valid)
            if wanted & 16:
                store(g4[b], G2, 1.0, valid)
            if wanted & 32:
                store(g5[b], H2, 1.0, valid)
        first_bad[c] = bad
