"""The Kronecker-sum kernels: the log-density and the KL of ``vec X ~ N(vec M, V⊗U + B⊗A)``
per item, in lanes, in the eigenbasis form of ``docs/kronecker_sums.md``.

Each side is whitened by the lane Cholesky factor of its noise and its whitened signal
diagonalised by :func:`~fastmvn.kernels.eigen.jacobi`::

    A = L Lᵀ,   L⁻¹ U L⁻ᵀ = Q diag(λ) Qᵀ,   P = L Q,   R = P⁻¹ = Qᵀ L⁻¹,

so that ``Σ = (P_v ⊗ P_u) diag(vec d) (P_v ⊗ P_u)ᵀ`` with ``d_ij = λ_u,i λ_v,j + 1``. A noise
that is not positive definite (the lane Cholesky's rule), or a signal with a whitened
eigenvalue below ``−m·ε·max|λ|`` (not positive semi-definite; those above are rounding and
taken as zero) makes the lane's result NaN. The logs of the determinants are taken of folded
products (:func:`~fastmvn.kernels.lanes.fold`): one for the noise factors and one for the
``d_ij``, per item. A KL diagonalises only the smaller side of each distribution. The first's
for its eigenvalues: the other side's whitened signal enters through ``det(I + λ_j W)``
(:func:`fold_shifted`), which also tests it for positive semi-definiteness. The second's with
its eigenvectors, which make its covariance block diagonal with the blocks ``λ_j W + I`` of
its other side's whitened signal ``W``, each factorised by the lane Cholesky
(:func:`block_terms`, which tests ``W`` as :func:`fold_shifted` does).
"""

import math

from .._jit import item
from .eigen import jacobi, jacobi_values
from .gradients import invert_lower
from .lanes import cholesky, epsilon, fill, fold, like, log_diagonals, log_of_fold, narrow, solve_rows
from .values import _LOG_2PI

# Rows of the per-lane float64 scratch ``v`` of the Kronecker-sum kernels; ``w`` below them
# is the scratch of :func:`~fastmvn.kernels.eigen.jacobi`.
_LOG_NOISE_U = 0
_LOG_NOISE_V = 1
_LOG_PRODUCTS = 2
_TRACE = 3  # a KL's trace and quadratic form together (block_terms)
_QUAD = 4
_PRODUCT = 5
#: Rows of the scalar scratch ``v`` of :func:`kron_sum_logpdf` and :func:`kron_sum_kl`.
KRON_SCALARS = 6

# The smallest normal float32, the shift's floor in fold_shifted: a zero signal is positive
# semi-definite, and its shifted Cholesky factorisation must succeed, in float32 or float64.
_TINY_NORMAL = 1.1754943508222875e-38


@item
def transpose(Y, m, n):
    """``Y ← Yᵀ`` for square ``Y``, in place."""
    for i in range(n):
        for j in range(i):
            for l in range(m):
                x = Y[i, j, l]
                Y[i, j, l] = Y[j, i, l]
                Y[j, i, l] = x


@item
def multiply(X, transposed, Y, Z, m, rows, inner, cols):
    """``Z = X Y`` (``Xᵀ Y`` if ``transposed``) for ``Z`` of ``rows × cols``."""
    for i in range(rows):
        for c in range(cols):
            for l in range(m):
                Z[i, c, l] = 0.0
            for k in range(inner):
                for l in range(m):
                    Z[i, c, l] += (X[k, i, l] if transposed else X[i, k, l]) * Y[k, c, l]


@item
def whiten(S, L, r, m, n):
    """The noise ``L`` (its lower triangle) becomes its Cholesky factor with ``r = 1/diag(L)``,
    and the signal ``S`` (its lower triangle) ``L⁻¹ S L⁻ᵀ`` (both triangles)."""
    cholesky(L, r, m, n)
    for i in range(n):
        for j in range(i):
            for l in range(m):
                S[j, i, l] = S[i, j, l]
    solve_rows(L, r, S, m, n, n, False)
    transpose(S, m, n)
    solve_rows(L, r, S, m, n, n, False)


@item
def whitened_eigen(S, L, r, Q, vals, w, m, n, vectors):
    """One side of the form: :func:`whiten`, and ``vals = max(λ, 0)`` the eigenvalues of the
    whitened signal; ``vals`` is NaN in a lane whose noise fails or whose signal is not
    positive semi-definite. With ``vectors``, :func:`~fastmvn.kernels.eigen.jacobi`
    overwrites ``S`` and puts the eigenvectors in ``Q``; without, ``S`` keeps ``L⁻¹ S L⁻ᵀ`` and
    :func:`~fastmvn.kernels.eigen.jacobi_values` works on a copy in ``Q``. ``w[0]`` afterwards
    holds ``max|λ|``."""
    whiten(S, L, r, m, n)
    E = S  # where the eigenvalues end up, on the diagonal
    if vectors:
        jacobi(S, Q, w, m, n)
    else:
        for i in range(n):
            for j in range(i + 1):
                for l in range(m):
                    Q[i, j, l] = S[i, j, l]
        jacobi_values(Q, w, m, n)
        E = Q
    zero = like(0.0, S)
    fill(w[0], 0.0, m)
    for i in range(n):
        for l in range(m):
            w[0, l] = max(w[0, l], abs(E[i, i, l]))
    floor = like(n, S) * epsilon(S)
    nan = like(math.nan, S)
    for i in range(n):
        for l in range(m):
            x = E[i, i, l]
            x = nan if x < -floor * w[0, l] else x
            vals[i, l] = max(x, zero) if x == x else nan  # NaN kept: max(NaN, 0) need not be NaN
        for l in range(m):
            vals[i, l] += r[n - 1, l] * zero  # a failed noise (NaN in r from its first failed pivot on)


@item
def fold_products(vals_u, vals_v, t, count, m, n, p):
    """Fold ``Π_ij (λ_u,i λ_v,j + 1)`` into the running product ``t``, ``count``
    (:func:`~fastmvn.kernels.lanes.fold`)."""
    for i in range(n):
        for j in range(p):
            for l in range(m):
                fold(t, count, l, vals_u[i, l] * vals_v[j, l] + 1.0, False)


@item
def flag_indefinite(S, C, r, t, m, n):
    """``t`` becomes NaN in a lane where the whitened signal ``S`` (``n×n``, its lower triangle
    read) is not positive semi-definite: where the Cholesky factorisation of ``S + τI`` fails,
    ``τ = 4n²ε·max_i |S_ii|`` (plus the smallest normal float32, for ``S = 0``), that is where
    an eigenvalue of ``S`` lies below about ``−τ``. The shift keeps a positive semi-definite
    ``S`` of any rank clear of the Cholesky's pivot rule (``n·ε`` times the diagonal entry) and
    of its rounding (of the order of ``n·ε·‖S‖``). ``C`` and ``r`` are scratch."""
    zero = like(0.0, C)
    fill(r[0], 0.0, m)  # max_i |S_ii|, until the factorisation overwrites it
    for i in range(n):
        for l in range(m):
            r[0, l] = max(r[0, l], abs(S[i, i, l]))
    for l in range(m):
        r[0, l] = like(4 * n * n, C) * epsilon(C) * r[0, l] + like(_TINY_NORMAL, C)
    for i in range(n):
        for j in range(i + 1):
            for l in range(m):
                C[i, j, l] = S[i, j, l] + (r[0, l] if i == j else zero)
    cholesky(C, r, m, n)
    for l in range(m):
        t[l] += r[n - 1, l] * zero  # NaN from the first failed pivot on


@item
def shifted(S, x, C, m, n):
    """``C = I + x S`` (lower triangle) for the per-lane scalars ``x``."""
    one = like(1.0, C)
    zero = like(0.0, C)
    for i in range(n):
        for j in range(i + 1):
            for l in range(m):
                C[i, j, l] = x[l] * S[i, j, l] + (one if i == j else zero)


@item
def fold_shifted(S, vals, C, r, t, count, m, n, k):
    """Fold ``Π_j det(I + λ_j S)⁻¹`` over the ``k`` entries ``λ_j ≥ 0`` of ``vals`` into the
    running product ``t``, ``count`` (:func:`~fastmvn.kernels.lanes.fold`), for the whitened
    signal ``S`` (``n×n``, its lower triangle read): ``Π_ij (λ_i λ_j + 1)⁻¹`` with ``λ_i`` the
    eigenvalues of ``S``, which are never computed. Each ``I + λ_j S`` (eigenvalues at least 1)
    is factorised in ``C`` by the lane Cholesky (``r = 1/diag``) and its determinant is the
    product of the ``r_i⁻²``. ``S`` must be positive semi-definite (:func:`flag_indefinite`:
    the product is NaN in a lane where it is not)."""
    small = narrow(C)
    flag_indefinite(S, C, r, t, m, n)
    for q in range(k):
        shifted(S, vals[q], C, m, n)
        cholesky(C, r, m, n)
        for i in range(n):
            for l in range(m):
                fold(t, count, l, r[i, l] * r[i, l], small)


@item
def whitened_difference(D, Lu, ru, Lv, rv, m, n, p):
    """``D ← L_u⁻¹ D L_v⁻ᵀ``."""
    solve_rows(Lu, ru, D, m, n, p, False)
    for i in range(n):  # D ← D L_v⁻ᵀ: forward substitution along each row
        for c in range(p):
            for k in range(c):
                for l in range(m):
                    D[i, c, l] -= Lv[c, k, l] * D[i, k, l]
            for l in range(m):
                D[i, c, l] *= rv[c, l]


@item
def whitened_mean(D, Lu, ru, Qu, Lv, rv, Qv, T, m, n, p):
    """``D ← R_u D R_vᵀ = Q_uᵀ L_u⁻¹ D L_v⁻ᵀ Q_v``; ``T`` (at least ``n×p``) is scratch."""
    whitened_difference(D, Lu, ru, Lv, rv, m, n, p)
    multiply(Qu, True, D, T, m, n, n, p)
    multiply(T, False, Qv, D, m, n, p, p)


@item
def scaled_squares(W, vals_u, vals_v, acc, m, n, p):
    """``acc = Σ_ij W_ij² / (λ_u,i λ_v,j + 1)``."""
    fill(acc, 0.0, m)
    for i in range(n):
        for j in range(p):
            for l in range(m):
                acc[l] += W[i, j, l] * W[i, j, l] / (vals_u[i, l] * vals_v[j, l] + 1.0)


@item
def kron_sum_logpdf(D, U, V, A, B, Qu, Qv, T, ru, rv, vals_u, vals_v, v, res, m, n, p):
    """``res = −½[np·log 2π + log|Σ| + Σ_ij W_ij²/d_ij]`` for ``D = X − M``, the signals ``U``,
    ``V`` and the noises ``A``, ``B`` (lower triangles), with
    ``log|Σ| = p log|A| + n log|B| + Σ_ij log d_ij`` and ``W = R_u D R_vᵀ``. Everything but
    ``res`` is overwritten or scratch; ``v`` is ``(KRON_SCALARS + JACOBI_ROWS, lanes)``."""
    w = v[KRON_SCALARS:]
    whitened_eigen(U, A, ru, Qu, vals_u, w, m, n, True)
    whitened_eigen(V, B, rv, Qv, vals_v, w, m, p, True)
    log_diagonals(A, None, B, None, 2.0, v[_LOG_NOISE_U], v[_LOG_NOISE_V], v[_PRODUCT], m, n, p)
    fill(v[_PRODUCT], 1.0, m)
    fill(v[_LOG_PRODUCTS], 0.0, m)
    fold_products(vals_u, vals_v, v[_PRODUCT], v[_LOG_PRODUCTS], m, n, p)
    log_of_fold(v[_PRODUCT], v[_LOG_PRODUCTS], 1.0, m)
    whitened_mean(D, A, ru, Qu, B, rv, Qv, T, m, n, p)
    scaled_squares(D, vals_u, vals_v, v[_QUAD], m, n, p)
    for l in range(m):
        res[l] = -0.5 * (n * p * _LOG_2PI + p * v[_LOG_NOISE_U, l] + n * v[_LOG_NOISE_V, l]
                         + v[_LOG_PRODUCTS, l] + v[_QUAD, l])


@item
def gains(L2, r2, L1, Q2, W1, H, Z, a, e, m, n):
    """``a = diag(R₂ U₁ R₂ᵀ)`` and ``e = diag(R₂ A₁ R₂ᵀ)`` for ``R₂ = Q₂ᵀ L₂⁻¹``, the first
    distribution's noise ``A₁ = L₁ L₁ᵀ`` and signal ``U₁ = L₁ W₁ L₁ᵀ``: with
    ``H = Q₂ᵀ L₂⁻¹ L₁``, ``a = diag(H W₁ Hᵀ)`` and ``e = diag(H Hᵀ)`` (the first distribution's
    eigenvectors are not needed). ``W1`` is read in its lower triangle, ``Z`` is scratch and
    ``L1`` is overwritten with ``L₂⁻¹ L₁``."""
    zero = like(0.0, L1)
    for i in range(n):
        for j in range(i + 1, n):
            for l in range(m):
                L1[i, j, l] = zero
    solve_rows(L2, r2, L1, m, n, n, False)
    multiply(Q2, True, L1, H, m, n, n, n)
    for i in range(n):  # Z = H W₁
        for c in range(n):
            for l in range(m):
                Z[i, c, l] = 0.0
            for k in range(n):
                for l in range(m):
                    Z[i, c, l] += H[i, k, l] * W1[max(k, c), min(k, c), l]
    for i in range(n):
        for l in range(m):
            a[i, l] = 0.0
            e[i, l] = 0.0
        for k in range(n):
            for l in range(m):
                a[i, l] += Z[i, k, l] * H[i, k, l]
                e[i, l] += H[i, k, l] * H[i, k, l]


@item
def block_terms(S2, L2, r2, L1, W1, vals, c, f, Y, Z, G, rG, t, count, acc, m, s, k):
    """The terms of a KL that the second distribution's blocks give, on its side of ``s``
    (``docs/kronecker_sums.md`` §6): its other side diagonalised (eigenvalues ``vals``, ``k`` of
    them), ``Σ₂`` is block diagonal with the ``k`` blocks ``C_j = λ_j S₂ + I`` (``s×s``) for
    the whitened signal ``S₂ = L₂⁻¹ U₂ L₂⁻ᵀ``. With ``G_j`` the lane Cholesky factor of
    ``C_j``, ``Π_j det C_j`` is folded into ``t``, ``count``
    (:func:`~fastmvn.kernels.lanes.fold`) and
    ``Σ_j tr(C_j⁻¹ (c_j Ũ₁ + f_j Ã₁ + y_j y_jᵀ))`` added to ``acc``, for the first
    distribution's ``Ũ₁ = H W₁ Hᵀ`` and ``Ã₁ = H Hᵀ``, ``H = L₂⁻¹ L₁``, its whitened signal
    ``W₁`` and noise factor ``L₁`` on this side, its gains ``c``, ``f`` on the other
    (:func:`gains`) and ``y_j`` the column ``j`` of the whitened difference of the means ``Y``
    (``s×k``).

    ``S₂`` (lower triangle) must be positive semi-definite (:func:`flag_indefinite`), and
    ``t`` is NaN in a lane where it is not or the noise failed (``r2``, ``1/diag(L₂)``).
    ``L2``, ``L1``, ``W1``, ``Z``, ``G`` and ``rG`` are overwritten."""
    zero = like(0.0, G)
    small = narrow(G)
    flag_indefinite(S2, G, rG, t, m, s)
    for l in range(m):
        t[l] += r2[s - 1, l] * zero
    for i in range(s):  # L1 ← H = L₂⁻¹ L₁, lower triangular
        for j in range(i + 1, s):
            for l in range(m):
                L1[i, j, l] = zero
    solve_rows(L2, r2, L1, m, s, s, False)
    for i in range(s):  # Z = H W₁
        for j in range(s):
            for l in range(m):
                Z[i, j, l] = 0.0
            for q in range(i + 1):
                for l in range(m):
                    Z[i, j, l] += L1[i, q, l] * W1[max(q, j), min(q, j), l]
    for i in range(s):  # W1 ← Ũ₁ = Z Hᵀ and L2 ← Ã₁ = H Hᵀ, lower triangles
        for j in range(i + 1):
            for l in range(m):
                W1[i, j, l] = 0.0
                L2[i, j, l] = 0.0
            for q in range(j + 1):
                for l in range(m):
                    W1[i, j, l] += Z[i, q, l] * L1[j, q, l]
                    L2[i, j, l] += L1[i, q, l] * L1[j, q, l]
    for b in range(k):
        shifted(S2, vals[b], G, m, s)
        cholesky(G, rG, m, s)
        for i in range(s):
            for l in range(m):
                fold(t, count, l, G[i, i, l] * G[i, i, l], small)
        invert_lower(G, rG, m, s)  # G ← G⁻¹
        for i in range(s):  # Z ← C⁻¹ = G⁻ᵀ G⁻¹, lower triangle
            for j in range(i + 1):
                for l in range(m):
                    Z[i, j, l] = 0.0
                for q in range(i, s):
                    for l in range(m):
                        Z[i, j, l] += G[q, i, l] * G[q, j, l]
        for i in range(s):
            for j in range(i + 1):
                for l in range(m):
                    x = c[b, l] * W1[i, j, l] + f[b, l] * L2[i, j, l] + Y[i, b, l] * Y[j, b, l]
                    acc[l] += (1.0 if i == j else 2.0) * Z[i, j, l] * x


@item
def kron_sum_kl(D, U1, V1, A1, B1, U2, V2, A2, B2, Qu1, Qv1, Qu2, Qv2, T, ru1, rv1, ru2, rv2,
                vals_u1, vals_v1, vals_u2, vals_v2, a, c, e, f, v, res, m, n, p):
    """``res = KL(N(vec M₁, Σ₁) ‖ N(vec M₂, Σ₂))`` for ``D = M₁ − M₂`` and the signals and
    noises of both (lower triangles)::

        ½[tr(Σ₂⁻¹Σ₁) + δᵀΣ₂⁻¹δ − np + log|Σ₂| − log|Σ₁|],

    never negative (rounding below zero gives 0). Each distribution has its smaller side
    diagonalised, the first for its eigenvalues alone
    (:func:`~fastmvn.kernels.eigen.jacobi_values`, the other side's determinants by
    :func:`fold_shifted`), the second with its eigenvectors: say ``V₂`` (``p ≤ n``; ``U₂`` if
    ``n < p``), with ``R_v = Q_vᵀ L_B₂⁻¹``, and ``Σ₂`` is block diagonal in the basis
    ``L_A₂⁻¹`` on the rows and ``R_v`` on the columns (:func:`block_terms`), the first
    distribution entering through ``c``, ``f``, the diagonals of ``R_v V₁ R_vᵀ``,
    ``R_v B₁ R_vᵀ`` (:func:`gains`; ``a``, ``e`` those of ``R_u U₁ R_uᵀ``, ``R_u A₁ R_uᵀ``
    if ``n < p``). Everything but ``res`` is overwritten or scratch; ``T`` is
    ``(max(n, p), max(n, p))``, ``v`` as in :func:`kron_sum_logpdf`."""
    w = v[KRON_SCALARS:]
    # Each distribution has only its smaller side diagonalised: the first for its eigenvalues,
    # its other side's determinants taken by fold_shifted; the second with its eigenvectors,
    # which make its covariance block diagonal on the other side (block_terms). A lane Cholesky
    # factorisation costs about a twentieth of a Jacobi eigensolver's work at 4×4.
    if p <= n:
        whitened_eigen(V1, B1, rv1, Qv1, vals_v1, w, m, p, False)
        whiten(U1, A1, ru1, m, n)
        whitened_eigen(V2, B2, rv2, Qv2, vals_v2, w, m, p, True)
        whiten(U2, A2, ru2, m, n)
    else:
        whitened_eigen(U1, A1, ru1, Qu1, vals_u1, w, m, n, False)
        whiten(V1, B1, rv1, m, p)
        whitened_eigen(U2, A2, ru2, Qu2, vals_u2, w, m, n, True)
        whiten(V2, B2, rv2, m, p)
    log_diagonals(A2, ru1, B2, rv1, 2.0, v[_LOG_NOISE_U], v[_LOG_NOISE_V], v[_PRODUCT], m, n, p)
    fill(v[_PRODUCT], 1.0, m)
    fill(v[_LOG_PRODUCTS], 0.0, m)
    fill(v[_TRACE], 0.0, m)
    whitened_difference(D, A2, ru2, B2, rv2, m, n, p)
    if p <= n:
        fold_shifted(U1, vals_v1, T, vals_u1, v[_PRODUCT], v[_LOG_PRODUCTS], m, n, p)
        gains(B2, rv2, B1, Qv2, V1, T, Qv1, c, f, m, p)
        multiply(D, False, Qv2, T, m, n, p, p)  # the blocks' columns: L_u⁻¹ D R_vᵀ
        block_terms(U2, A2, ru2, A1, U1, vals_v2, c, f, T, Qu1, Qu2, vals_u2, v[_PRODUCT], v[_LOG_PRODUCTS],
                    v[_TRACE], m, n, p)
    else:
        fold_shifted(V1, vals_u1, T, vals_v1, v[_PRODUCT], v[_LOG_PRODUCTS], m, p, n)
        gains(A2, ru2, A1, Qu2, U1, T, Qu1, a, e, m, n)
        multiply(D, True, Qu2, T, m, p, n, n)  # the blocks' columns: (R_u D L_v⁻ᵀ)ᵀ
        block_terms(V2, B2, rv2, B1, V1, vals_u2, a, e, T, Qv1, Qv2, vals_v2, v[_PRODUCT], v[_LOG_PRODUCTS],
                    v[_TRACE], m, p, n)
    log_of_fold(v[_PRODUCT], v[_LOG_PRODUCTS], 1.0, m)
    for l in range(m):
        kl = 0.5 * (v[_TRACE, l] - n * p + p * v[_LOG_NOISE_U, l] + n * v[_LOG_NOISE_V, l] + v[_LOG_PRODUCTS, l])
        res[l] = 0.0 if (kl < 0.0 and kl > -math.inf) else kl
