"""The gradient kernels of the KL and of the log-density: the products their gradients are
made of, one fused value-and-gradient pass per mode (:func:`value_and_grad`) and the stores
of the gradients asked for."""

import math

from .._jit import item
from .._modes import KL_CHOL, KL_COV, KL_DIAG, KL_STD_CHOL, KL_STD_COV, LOGPDF, LOGPDF_CHOL, LOGPDF_DIAG
from .lanes import (cholesky, copy, diagonal_sum, fill, log_diagonals, lower_norm2, reciprocal_diagonal, solve_rows,
                    squared_norm, trace_tri, whitened_norm2)
from .scratch import (FOLD, LOG_RATIO_U, LOG_RATIO_V, LOGDET_U, LOGDET_V, ONES, QUAD, SLOT0, SLOT1, SLOT2, SLOT3,
                      SLOT4, SLOT5, TRACE_U, TRACE_V)
from .values import (both_factors, diagonal_sum_log, diagonal_terms, kl_value, logpdf_value, own_factors,
                     scaled_quad)

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
def row_products(G, X, Y, s, add, m, n, p):
    """Lower triangle of ``G = s·X Yᵀ`` (``G += s·X Yᵀ`` if ``add``) for ``X``, ``Y`` of shape ``(n, p)``."""
    for i in range(n):
        for j in range(i + 1):
            if not add:
                for l in range(m):
                    G[i, j, l] = 0.0
            for k in range(p):
                for l in range(m):
                    G[i, j, l] += s * X[i, k, l] * Y[j, k, l]


@item
def col_products(G, X, Y, s, add, m, n, p):
    """Lower triangle of ``G = s·Xᵀ Y`` (``p×p``; ``G += s·Xᵀ Y`` if ``add``) for ``X``, ``Y`` of shape ``(n, p)``."""
    for i in range(p):
        for j in range(i + 1):
            if not add:
                for l in range(m):
                    G[i, j, l] = 0.0
            for k in range(n):
                for l in range(m):
                    G[i, j, l] += s * X[k, i, l] * Y[k, j, l]


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
def right_solve(Y, K, rk, m, n, p):
    """``Y ← Y K⁻¹`` for lower-triangular ``K`` (``rk = 1/diag(K)``): back substitution along
    each row of ``Y`` (``n×p``)."""
    for i in range(n):
        for c in range(p - 1, -1, -1):
            for k in range(c + 1, p):
                for l in range(m):
                    Y[i, c, l] -= Y[i, k, l] * K[k, c, l]
            for l in range(m):
                Y[i, c, l] *= rk[c, l]


@item
def unwhiten(Y, L, rl, K, rk, m, n, p):
    """``Y ← L⁻ᵀ Y K⁻¹``, the adjoint of the whitening ``Y → L⁻¹ Y K⁻ᵀ``: rows by
    :func:`solve_rows`, then :func:`right_solve`."""
    solve_rows(L, rl, Y, m, n, p, True)
    right_solve(Y, K, rk, m, n, p)


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
def density_diagonal_grad(G, r, size, m, count):
    """``G = ½ r (G − size)`` in column 0, where ``G`` holds ``Σ D²/(a bᵀ)`` along the other side
    on entry and ``r = 1/x``: a log-density's gradient with respect to the variances ``x``."""
    for i in range(count):
        for l in range(m):
            G[i, 0, l] = 0.5 * r[i, l] * (G[i, 0, l] - size)


@item
def standard_diagonal_grad(G, x1, trace, size, m, count):
    """``G = ½(trace − size/x1)`` in column 0: :func:`diagonal_grad` against unit variances."""
    for i in range(count):
        for l in range(m):
            G[i, 0, l] = 0.5 * (trace[l] - size / x1[i, 0, l])


@item
def second_moments(S3, P2, rp2, Q2, rq2, A, B, W, G2, H2, v, m, n, p):
    """The terms both factor gradients share, from ``A = P1``, ``B = Q1`` and ``S3 = D``:
    ``A ← P2⁻¹ P1``, ``B ← Q2⁻¹ Q1``, ``v[TRACE_U] = t_u = ‖A‖²``,
    ``v[TRACE_V] = t_v = ‖B‖²``, ``W ← Z = P2⁻¹ D Q2⁻ᵀ``, ``v[QUAD] = ‖Z‖²`` and the lower
    triangles of ``G2 = p I − t_v A Aᵀ − Z Zᵀ``, ``H2 = n I − t_u B Bᵀ − Zᵀ Z`` (``v[ONES]``
    holds ones)."""
    trace_tri(P2, rp2, A, v[TRACE_U], m, n)
    trace_tri(Q2, rq2, B, v[TRACE_V], m, p)
    copy(S3, W, m, n, p, False)
    whitened_norm2(W, P2, rp2, Q2, rq2, v[QUAD], m, n, p)
    lower_gram(G2, A, -1.0, v[TRACE_V], m, n)
    row_products(G2, W, W, -1.0, True, m, n, p)
    add_diagonal(G2, p, v[ONES], m, n)
    lower_gram(H2, B, -1.0, v[TRACE_U], m, p)
    col_products(H2, W, W, -1.0, True, m, n, p)
    add_diagonal(H2, n, v[ONES], m, p)


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
    scale_minus_diagonal(G1, v[TRACE_V], p, rp1, m, n)
    scale_minus_diagonal(H1, v[TRACE_U], n, rq1, m, p)
    unwhiten(W, S4, rp2, S5, rq2, m, n, p)
    kl_value(res, v[TRACE_U], v[TRACE_V], v[QUAD], v[LOG_RATIO_U], v[LOG_RATIO_V], m, n, p)


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
    inverse_gram(G1, S1, -0.5 * p, v[ONES], False, m, n)
    inverse_gram(G1, S4, 0.5, v[TRACE_V], True, m, n)
    inverse_gram(H1, S2, -0.5 * n, v[ONES], False, m, p)
    inverse_gram(H1, S5, 0.5, v[TRACE_U], True, m, p)
    kl_value(res, v[TRACE_U], v[TRACE_V], v[QUAD], v[LOG_RATIO_U], v[LOG_RATIO_V], m, n, p)


@item(inline=True)
def kl_diag_grad(S0, S1, S2, S3, S4, S5, W, G1, H1, G2, H2, ra, rb, v, res, m, n, p):
    """KL for diagonal covariances ``diag(a)``, ``diag(b)`` (``S1, S2, S4, S5 = a1, b1, a2, b2``,
    variances as ``(·, 1)`` columns; ``S3 = m2 − m1``) and its gradient, in column 0 of ``G1 = ∂/∂a1``,
    ``H1 = ∂/∂b1``, ``G2 = ∂/∂a2``, ``H2 = ∂/∂b2``; ``W = ∂/∂m2 = −∂/∂m1 = D / (a2 b2ᵀ)``.
    """
    diagonal_terms(S1, S4, ra, v[TRACE_U], v[LOG_RATIO_U], v[FOLD], m, n)
    diagonal_terms(S2, S5, rb, v[TRACE_V], v[LOG_RATIO_V], v[FOLD], m, p)
    scaled_quad(W, S3, ra, rb, v[QUAD], m, n, p)
    row_col_sums(G2, H2, W, S3, m, n, p)
    diagonal_grad(G1, G2, S1, ra, v[TRACE_V], p, m, n)
    diagonal_grad(H1, H2, S2, rb, v[TRACE_U], n, m, p)
    kl_value(res, v[TRACE_U], v[TRACE_V], v[QUAD], v[LOG_RATIO_U], v[LOG_RATIO_V], m, n, p)


@item(inline=True)
def logpdf_diag_grad(S0, S2, S3, W, A, B, ra, rb, v, res, m, n, p):
    """Log-density for diagonal covariances ``diag(a)``, ``diag(b)`` (``S2, S3 = a, b`` as
    ``(·, 1)`` columns; ``S0 = X − M``) and its gradient: ``W = ∂/∂M = −∂/∂X = D / (a bᵀ)``, and
    in column 0 of ``A = ∂/∂a = ½(Σ_c D W − p)/a`` and ``B = ∂/∂b = ½(Σ_i D W − n)/b``."""
    diagonal_sum_log(S2, None, ra, v[LOGDET_U], v[FOLD], 1.0, m, n)
    diagonal_sum_log(S3, None, rb, v[LOGDET_V], v[FOLD], 1.0, m, p)
    scaled_quad(W, S0, ra, rb, v[QUAD], m, n, p)
    logpdf_value(res, v[QUAD], v[LOGDET_U], v[LOGDET_V], m, n, p)
    row_col_sums(A, B, W, S0, m, n, p)
    density_diagonal_grad(A, ra, p, m, n)
    density_diagonal_grad(B, rb, n, m, p)


@item(inline=True)
def kl_std_chol_grad(S0, S1, S2, W, G1, H1, rp1, rq1, v, res, m, n, p):
    """KL from Cholesky factors to MN(0, I, I) and its gradient: :func:`kl_chol_grad` with
    ``P2 = I``, ``Q2 = I``, ``m2 = 0``: ``G1 = t_v tril(P1) − p·diag(1/P1)``, ``W = −m1``."""
    own_factors(S1, S2, rp1, rq1, v, False, m, n, p)
    copy(S1, G1, m, n, n, True)
    copy(S2, H1, m, p, p, True)
    lower_norm2(S1, v[TRACE_U], m, n)
    lower_norm2(S2, v[TRACE_V], m, p)
    negated(W, S0, v[QUAD], m, n, p)
    scale_minus_diagonal(G1, v[TRACE_V], p, rp1, m, n)
    scale_minus_diagonal(H1, v[TRACE_U], n, rq1, m, p)
    kl_value(res, v[TRACE_U], v[TRACE_V], v[QUAD], v[LOG_RATIO_U], v[LOG_RATIO_V], m, n, p)


@item(inline=True)
def kl_std_cov_grad(S0, S1, S2, W, G1, H1, rp1, rq1, v, res, m, n, p):
    """KL from covariances to MN(0, I, I) and its gradient: ``G1 = ½(tr(V1) I − p U1⁻¹)``,
    ``H1 = ½(tr(U1) I − n V1⁻¹)``, ``W = −m1``."""
    diagonal_sum(S1, v[TRACE_U], m, n)
    diagonal_sum(S2, v[TRACE_V], m, p)
    own_factors(S1, S2, rp1, rq1, v, True, m, n, p)
    negated(W, S0, v[QUAD], m, n, p)
    invert_lower(S1, rp1, m, n)
    invert_lower(S2, rq1, m, p)
    inverse_gram(G1, S1, -0.5 * p, v[ONES], False, m, n)
    add_diagonal(G1, 0.5, v[TRACE_V], m, n)
    inverse_gram(H1, S2, -0.5 * n, v[ONES], False, m, p)
    add_diagonal(H1, 0.5, v[TRACE_U], m, p)
    kl_value(res, v[TRACE_U], v[TRACE_V], v[QUAD], v[LOG_RATIO_U], v[LOG_RATIO_V], m, n, p)


@item(inline=True)
def kl_std_diag_grad(S0, S1, S2, W, G1, H1, v, res, m, n, p):
    """KL for diagonal covariances to MN(0, I, I) and its gradient: ``G1 = ½(Σb1 − p/a1)``,
    ``H1 = ½(Σa1 − n/b1)``, ``W = −m1``."""
    diagonal_sum_log(S1, v[TRACE_U], None, v[LOG_RATIO_U], v[FOLD], -1.0, m, n)
    diagonal_sum_log(S2, v[TRACE_V], None, v[LOG_RATIO_V], v[FOLD], -1.0, m, p)
    negated(W, S0, v[QUAD], m, n, p)
    standard_diagonal_grad(G1, S1, v[TRACE_V], p, m, n)
    standard_diagonal_grad(H1, S2, v[TRACE_U], n, m, p)
    kl_value(res, v[TRACE_U], v[TRACE_V], v[QUAD], v[LOG_RATIO_U], v[LOG_RATIO_V], m, n, p)


@item(inline=True)
def logpdf_grad(S0, S2, S3, W, Y, GU, GV, ru, rv, v, res, factor, m, n, p):
    """Log-density of ``MN(M, U, V)`` (``S0 = X − M``; ``S2, S3 = U, V`` if ``factor``, else
    their Cholesky factors ``P, Q``) and its gradient. With ``Z = P⁻¹ (X − M) Q⁻ᵀ``,
    ``Y = P⁻ᵀ Z`` and ``Y' = Z Q⁻¹`` (``S0`` ends as ``Y'``, ``Y`` as scratch of ``n×p``):

    ``W = ∂/∂M = −∂/∂X = P⁻ᵀ Z Q⁻¹ = U⁻¹ (X − M) V⁻¹``;
    covariances: the symmetric ``GU = ∂/∂U = ½(Y Yᵀ − p U⁻¹)``, ``GV = ∂/∂V = ½(Y'ᵀ Y' − n V⁻¹)``;
    factors: ``GU = ∂/∂P = tril(Y Zᵀ) − p·diag(1/P)``, ``GV = ∂/∂Q = tril(Y'ᵀ Z) − n·diag(1/Q)``,
    lower triangular with zeros above the diagonal.
    """
    if factor:
        cholesky(S2, ru, m, n)
        cholesky(S3, rv, m, p)
    else:
        reciprocal_diagonal(S2, ru, m, n)
        reciprocal_diagonal(S3, rv, m, p)
    log_diagonals(S2, None, S3, None, 2.0, v[LOGDET_U], v[LOGDET_V], v[FOLD], m, n, p)
    whitened_norm2(S0, S2, ru, S3, rv, v[QUAD], m, n, p)
    logpdf_value(res, v[QUAD], v[LOGDET_U], v[LOGDET_V], m, n, p)
    copy(S0, Y, m, n, p, False)
    solve_rows(S2, ru, Y, m, n, p, True)
    copy(Y, W, m, n, p, False)
    right_solve(W, S3, rv, m, n, p)
    if factor:
        row_products(GU, Y, Y, 0.5, False, m, n, p)
        right_solve(S0, S3, rv, m, n, p)
        col_products(GV, S0, S0, 0.5, False, m, n, p)
        invert_lower(S2, ru, m, n)
        invert_lower(S3, rv, m, p)
        inverse_gram(GU, S2, -0.5 * p, v[ONES], True, m, n)
        inverse_gram(GV, S3, -0.5 * n, v[ONES], True, m, p)
    else:
        row_products(GU, Y, S0, 1.0, False, m, n, p)
        copy(S0, Y, m, n, p, False)
        right_solve(Y, S3, rv, m, n, p)
        col_products(GV, Y, S0, 1.0, False, m, n, p)
        scale_minus_diagonal(GU, v[ONES], p, ru, m, n)
        scale_minus_diagonal(GV, v[ONES], n, rv, m, p)


@item(inline=True)
def value_and_grad(mode, S0, S1, S2, S3, S4, S5, W, G1, H1, G2, H2, A, B, rp1, rq1, rp2, rq2, v, res, m, n, p):
    """``res[l]``: the KL or log-density that ``mode`` names (a ``KL_*`` or ``LOGPDF*`` mode) for
    lane ``l`` of the slots ``S0..S5`` (overwritten), and its gradient: of a KL
    ``W = ∂/∂a3 = −∂/∂a0`` and ``G1, H1, G2, H2 = ∂/∂a1, ∂/∂a2, ∂/∂a4, ∂/∂a5``; of a
    log-density ``W = ∂/∂a1 = −∂/∂a0`` and ``A, B = ∂/∂a2, ∂/∂a3``, with ``G1`` (the mean's
    shape there) as scratch. :func:`store_wanted` stores each where it belongs."""
    fill(v[ONES], 1.0, m)
    if mode == LOGPDF or mode == LOGPDF_CHOL:
        logpdf_grad(S0, S2, S3, W, G1, A, B, rp1, rq1, v, res, mode == LOGPDF, m, n, p)
    elif mode == LOGPDF_DIAG:
        logpdf_diag_grad(S0, S2, S3, W, A, B, rp1, rq1, v, res, m, n, p)
    elif mode == KL_CHOL:
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
def store_wanted(mode, g0, g1, g2, g3, g4, g5, W, G1, H1, G2, H2, A, B, wanted, start, res, m):
    """The gradients of ``mode`` that bit ``k`` of ``wanted`` asks for into ``g0 … g5``, from
    where :func:`value_and_grad` left them."""
    density = mode == LOGPDF or mode == LOGPDF_CHOL or mode == LOGPDF_DIAG
    if wanted & SLOT0:
        store(g0, start, W, -1.0, res, m)
    if wanted & SLOT1:
        store(g1, start, W if density else G1, 1.0, res, m)
    if wanted & SLOT2:
        store(g2, start, A if density else H1, 1.0, res, m)
    if wanted & SLOT3:
        store(g3, start, B if density else W, 1.0, res, m)
    if wanted & SLOT4:
        store(g4, start, G2, 1.0, res, m)
    if wanted & SLOT5:
        store(g5, start, H2, 1.0, res, m)
