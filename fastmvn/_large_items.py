"""The terms of one large item, each function one compiled call (:mod:`fastmvn._large`'s
values, and the factors and solves its gradients are made of), by the formulas of
``docs/architecture.md`` on the routines of :mod:`fastmvn._lapack`.

Arguments are C-ordered float64 matrices. The matrices a function makes come from its first
argument, the item's ``arena`` (:func:`fastmvn._lapack.matrix`): what it returns is valid until
the arena serves the next item. Each function returns whether the item is defined
(every Cholesky factorisation succeeded with no numerically singular pivot, every given
factor has a positive diagonal) before what it computed; the caller makes a failed item NaN.
"""

import math

import numba
import numpy as np

from . import _modes
from ._jit import OPTIONS, _cached
from ._lapack import _compiled, cholesky, copied, eigh, factor, gram, inner, inverse, logdet, lower_cross, \
    lower_inverse, lower_solve_t, matrix, norm2, reflect, solve, solve_lower, solve_right, times_lower, times_rows, \
    tridiagonal, whitened
from .kernels.drivers import kl_of_terms

__all__ = ["kl_parts", "kl_grads", "logpdf_parts", "logpdf_grads", "logdet_value", "trace_solve_value",
           "kron_sum_logpdf", "KRON_SUM", "items_batch", "items_serial"]

_LOG_2PI = math.log(2.0 * math.pi)


@_compiled
def _factored(covariance, a, out):
    """``out ←`` the lower factor of ``a``: its Cholesky factor where ``covariance``, else ``a``
    itself (a factor); whether it is defined."""
    return cholesky(a, out) if covariance else factor(a, out)


@_compiled
def _difference(arena, a, b):
    """``a − b`` in ``arena``, and whether any entry of it is not zero."""
    result = matrix(arena, a.shape[0], a.shape[1])
    nonzero = False
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            result[i, j] = a[i, j] - b[i, j]
            nonzero |= result[i, j] != 0.0
    return result, nonzero


@_compiled
def _into(arena, place, wanted, rows, columns):
    """Where a gradient is made: ``place`` (its item of the output) where it is ``wanted``,
    else a ``rows×columns`` matrix of ``arena`` (a term another gradient is made from)."""
    return place if wanted else matrix(arena, rows, columns)


@_compiled
def _negated(result, a):
    """``result ← −a``."""
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            result[i, j] = -a[i, j]


@_compiled
def _blocks(n, most):
    """The blocks of columns of a triangular solve of ``n`` rows: one per 64 rows, at most ``most``."""
    return min(most, max(1, n // 64))


@_compiled
def kl_parts(arena, mode, mean1, row1, col1, mean2, row2, col2, inverses, most_blocks):
    """The KL of covariances or factors (``KL_COV``, ``KL_CHOL`` or their standard forms, whose
    second distribution's arguments are not read) and the matrices its gradients are made of:
    ``(defined, value, l1, q1, l2, q2, a, b, z, t_u, t_v, u2, v2)`` with the lower factors
    ``l``, ``q`` (``l2``, ``q2`` empty for a standard mode), ``a = l2⁻¹ l1``, ``b = q2⁻¹ q1``,
    ``z = l2⁻¹ (M2 − M1) q2⁻ᵀ`` (``l1``, ``q1`` and ``M1`` for a standard mode: the same norms)
    and the traces ``t_u = ‖a‖²``, ``t_v = ‖b‖²``; ``l2⁻¹ l1`` and ``q2⁻¹ q1`` in at most
    ``most_blocks`` blocks of columns (:func:`fastmvn._lapack.solve_lower`).

    With ``inverses`` (``KL_COV``, for the gradients of the covariances, which need
    ``U2⁻¹ L1`` and ``V2⁻¹ Q1``), ``a`` and ``b`` are those products instead, the traces
    ``⟨L1, U2⁻¹ L1⟩`` and ``⟨Q1, V2⁻¹ Q1⟩`` (no solve for them), and ``u2``, ``v2`` the inverses
    ``U2⁻¹``, ``V2⁻¹`` (empty otherwise)."""
    n, p = mean1.shape
    covariances = mode == _modes.KL_COV or mode == _modes.KL_STD_COV
    standard = mode == _modes.KL_STD_COV or mode == _modes.KL_STD_CHOL
    empty = np.empty((0, 0))
    l1, q1 = matrix(arena, n, n), matrix(arena, p, p)
    l2, q2, u2, v2 = empty, empty, empty, empty
    failed = (False, math.nan, l1, q1, l2, q2, empty, empty, empty, 0.0, 0.0, u2, v2)
    if not (_factored(covariances, row1, l1) and _factored(covariances, col1, q1)):
        return failed
    if standard:
        a, b, z = l1, q1, mean1
        log_ratio_u, log_ratio_v = -logdet(l1), -logdet(q1)
    else:
        l2, q2 = matrix(arena, n, n), matrix(arena, p, p)
        if not (_factored(covariances, row2, l2) and _factored(covariances, col2, q2)):
            return failed
        z, nonzero = _difference(arena, mean2, mean1)
        if nonzero:  # equal means: ``z = 0`` without the two solves, half of the value's work at n = p
            solve(l2, z, False)
            solve_right(q2, z, True)
        log_ratio_u, log_ratio_v = logdet(l2) - logdet(l1), logdet(q2) - logdet(q1)
        a, b = l1, q1
    if inverses:
        u2, defined_u = inverse(arena, l2)
        v2, defined_v = inverse(arena, q2)
        if not (defined_u and defined_v):
            return failed
        a, b = times_lower(arena, u2, l1), times_lower(arena, v2, q1)
        t_u, t_v = inner(l1, a), inner(q1, b)
    else:
        if not standard:
            a, b = (solve_lower(arena, l2, l1, _blocks(n, most_blocks)),
                    solve_lower(arena, q2, q1, _blocks(p, most_blocks)))
        t_u, t_v = norm2(a), norm2(b)
    value = kl_of_terms(t_u, t_v, norm2(z), log_ratio_u, log_ratio_v, n, p)
    return True, value, l1, q1, l2, q2, a, b, z, t_u, t_v, u2, v2


@_compiled
def _factor_gradient(result, scale, factor_, times, other):
    """``result ← tril(scale·other) − times·diag(1/diag(factor_))``: the gradient with respect
    to a Cholesky factor's lower triangle of ``½scale·‖…‖² − times·log|factor_|``-type terms
    (``result`` may be ``other``)."""
    n = factor_.shape[0]
    for i in range(n):
        for j in range(n):
            result[i, j] = scale * other[i, j] if j <= i else 0.0
        result[i, i] -= times / factor_[i, i]


@_compiled
def _symmetric_sum(a, scale, other_scale, other, shift):
    """``a ← scale·a + other_scale·other + shift·I`` from the lower triangles of ``a`` and
    ``other`` (their upper ones not read; ``other`` not at all where ``other_scale`` is zero),
    symmetric: each entry of the lower triangle made and mirrored in one pass, in the tiles of
    :func:`fastmvn._lapack.mirror_lower`."""
    n = a.shape[0]
    for top in range(0, n, 16):
        for left in range(top, n, 16):
            for j in range(top, min(top + 16, n)):
                for i in range(max(left, j), min(left + 16, n)):
                    x = scale * a[i, j]
                    if other_scale != 0.0:
                        x += other_scale * other[i, j]
                    a[i, j] = x
                    a[j, i] = x
    for i in range(n):
        a[i, i] += shift


@_compiled
def _plus_identity(scale, a):
    """``scale·I + a``, written over ``a``."""
    for i in range(a.shape[0]):
        a[i, i] += scale
    return a


@_compiled
def kl_grads(arena, mode, wanted, mean1, row1, col1, mean2, row2, col2, most_blocks, places):
    """The KL of ``mode`` (as :func:`kl_parts`) and its gradients ``(∂/∂mean1, ∂/∂row1,
    ∂/∂col1, ∂/∂mean2, ∂/∂row2, ∂/∂col2)`` by the closed forms of ``docs/gradients.md`` (those
    of a factor with respect to its lower triangle), from the factors and solves of the value:
    ``(defined, value)``, each gradient that ``wanted`` (six flags) marks written into its
    matrix of ``places`` (six, apart from the arguments and each other; the others not
    written, nor the second distribution's of a standard mode). Where the item is not
    defined, what ``places`` hold is unspecified."""
    n, p = mean1.shape
    inverses = mode == _modes.KL_COV and (wanted[1] or wanted[2] or wanted[4] or wanted[5])
    defined, value, l1, q1, l2, q2, a, b, z, t_u, t_v, u2, v2 = kl_parts(
        arena, mode, mean1, row1, col1, mean2, row2, col2, inverses, most_blocks)
    if not defined:
        return False, value
    d0, d1, d2, d3, d4, d5 = places
    if mode == _modes.KL_STD_COV or mode == _modes.KL_STD_CHOL:
        if wanted[0]:
            d0[:] = mean1
        if mode == _modes.KL_STD_CHOL:
            if wanted[1]:
                _factor_gradient(d1, t_v, l1, p, l1)
            if wanted[2]:
                _factor_gradient(d2, t_u, q1, n, q1)
            return True, value
        if wanted[1]:
            defined = lower_inverse(d1, l1) and defined
            _symmetric_sum(d1, -0.5 * p, 0.0, d1, 0.5 * t_v)
        if wanted[2]:
            defined = lower_inverse(d2, q1) and defined
            _symmetric_sum(d2, -0.5 * n, 0.0, d2, 0.5 * t_u)
    elif mode == _modes.KL_COV:  # a, b are U2⁻¹ L1 and V2⁻¹ Q1 where a covariance's gradient is wanted
        if wanted[0] or wanted[3] or wanted[4]:
            y = copied(arena, z)                           # U2⁻¹ D Q2⁻ᵀ
            solve(l2, y, True)
            if wanted[0] or wanted[3]:
                w = _into(arena, d3, wanted[3], n, p)      # U2⁻¹ D V2⁻¹
                w[:] = y
                solve_right(q2, w, False)
                if wanted[0]:
                    _negated(d0, w)
            if wanted[4]:
                gram(d4, 0.5 * p, u2, -0.5 * t_v, a, -0.5, y, False)
        if wanted[1]:
            defined = lower_inverse(d1, l1) and defined
            _symmetric_sum(d1, -0.5 * p, 0.5 * t_v, u2, 0.0)
        if wanted[2]:
            defined = lower_inverse(d2, q1) and defined
            _symmetric_sum(d2, -0.5 * n, 0.5 * t_u, v2, 0.0)
        if wanted[5]:
            solve_right(q2, z, False)                      # L2⁻¹ D V2⁻¹, the last use of z
            gram(d5, 0.5 * n, v2, -0.5 * t_u, b, -0.5, z, True)
    else:  # KL_CHOL
        if wanted[0] or wanted[3]:
            w = _into(arena, d3, wanted[3], n, p)          # P2⁻ᵀ Z Q2⁻¹
            w[:] = z
            solve_right(q2, w, False)
            solve(l2, w, True)
            if wanted[0]:
                _negated(d0, w)
        # a, b are lower triangular: their Gram matrices and the lower triangles of the solves
        # with them take a third of the full work, in blocks of columns
        rows, columns = _blocks(n, most_blocks), _blocks(p, most_blocks)
        if wanted[1]:
            d1[:] = a
            lower_solve_t(l2, d1, rows)
            _factor_gradient(d1, t_v, l1, p, d1)
        if wanted[2]:
            d2[:] = b
            lower_solve_t(q2, d2, columns)
            _factor_gradient(d2, t_u, q1, n, d2)
        if wanted[4]:
            gram(d4, 0.0, a, -t_v, a, -1.0, z, False, rows)
            lower_solve_t(l2, _plus_identity(p, d4), rows)
        if wanted[5]:
            gram(d5, 0.0, b, -t_u, b, -1.0, z, True, columns)
            lower_solve_t(q2, _plus_identity(n, d5), columns)
    return defined, value


@_compiled
def logpdf_parts(arena, mode, x, mean, row, col):
    """The log-density or Mahalanobis form of ``mode`` (``LOGPDF``, ``LOGPDF_CHOL``,
    ``MAHALANOBIS`` or ``MAHALANOBIS_CHOL``) and what its gradients are made of:
    ``(defined, value, p_, q_, z)`` with the lower factors ``p_``, ``q_`` of the row and column
    covariances and the whitened residual ``z = p_⁻¹ (x − mean) q_⁻ᵀ``."""
    n, p = x.shape
    covariances = mode == _modes.LOGPDF or mode == _modes.MAHALANOBIS
    row_factor, col_factor = matrix(arena, n, n), matrix(arena, p, p)
    z = _difference(arena, x, mean)[0]
    if not (_factored(covariances, row, row_factor) and _factored(covariances, col, col_factor)):
        return False, math.nan, row_factor, col_factor, z
    solve(row_factor, z, False)
    solve_right(col_factor, z, True)
    quad = norm2(z)
    if mode == _modes.MAHALANOBIS or mode == _modes.MAHALANOBIS_CHOL:
        return True, quad, row_factor, col_factor, z
    value = -0.5 * (n * p * _LOG_2PI + p * logdet(row_factor) + n * logdet(col_factor) + quad)
    return True, value, row_factor, col_factor, z


@_compiled
def logdet_value(arena, a):
    """``(defined, log |a|)``."""
    chol = matrix(arena, a.shape[0], a.shape[1])
    if not cholesky(a, chol):
        return False, math.nan
    return True, logdet(chol)


@_compiled
def trace_solve_value(arena, a, b):
    """``(defined, tr(a⁻¹ b))``: ``Σᵢⱼ (a⁻¹)ᵢⱼ bᵢⱼ`` (``a⁻¹`` is symmetric), with ``a⁻¹`` from
    the Cholesky factor ``L`` (``potri``: a third of the work of the two solves
    ``L⁻ᵀ (L⁻¹ b)``, with errors of the same size, ``docs/performance.md``)."""
    chol = matrix(arena, a.shape[0], a.shape[1])
    if not cholesky(a, chol):
        return False, math.nan
    inverse_, defined = inverse(arena, chol)
    return defined, inner(inverse_, b)


@_compiled
def logpdf_grads(arena, mode, wanted, x, mean, row, col, most_blocks, places):
    """The log-density of ``mode`` (``LOGPDF`` or ``LOGPDF_CHOL``) and its gradients ``(∂/∂x,
    ∂/∂mean, ∂/∂row, ∂/∂col)`` by the closed forms of ``docs/gradients.md``, with ``Z`` the
    whitened residual of the value, ``Y = P⁻ᵀ Z`` and ``Y' = Z Q⁻¹``: ``(defined, value)``,
    each gradient that ``wanted`` (four flags) marks written into its matrix of ``places``
    (as :func:`kl_grads`); lower triangles of products in at most ``most_blocks`` blocks."""
    defined, value, row_factor, col_factor, z = logpdf_parts(arena, mode, x, mean, row, col)
    n, p = x.shape
    if not defined:
        return False, value
    d0, d1, d2, d3 = places
    y = z
    if wanted[0] or wanted[1] or wanted[2]:
        y = copied(arena, z)                           # P⁻ᵀ Z
        solve(row_factor, y, True)
    if wanted[0] or wanted[1]:
        w = _into(arena, d1, wanted[1], n, p)          # P⁻ᵀ Z Q⁻¹ = U⁻¹ (X − M) V⁻¹
        w[:] = y
        solve_right(col_factor, w, False)
        if wanted[0]:
            _negated(d0, w)
    if mode == _modes.LOGPDF:
        if wanted[2]:
            row_inverse, defined_u = inverse(arena, row_factor)
            gram(d2, -0.5 * p, row_inverse, 0.5, y, 0.0, y, False)
            defined = defined and defined_u
        if wanted[3]:
            solve_right(col_factor, z, False)          # Y' = Z Q⁻¹, the last use of Z
            col_inverse, defined_v = inverse(arena, col_factor)
            gram(d3, -0.5 * n, col_inverse, 0.0, col_inverse, 0.5, z, True)
            defined = defined and defined_v
    else:  # the lower triangles of Y Zᵀ (a product) and of Y'ᵀ Z = Q⁻ᵀ Zᵀ Z (a solve), in blocks
        if wanted[2]:
            lower_cross(d2, y, z, False, _blocks(n, most_blocks))
            _factor_gradient(d2, 1.0, row_factor, p, d2)
        if wanted[3]:
            gram(d3, 0.0, col_factor, 0.0, col_factor, 1.0, z, True)
            lower_solve_t(col_factor, d3, _blocks(p, most_blocks))
            _factor_gradient(d3, 1.0, col_factor, n, d3)
    return defined, value


# Kronecker sums ``V⊗U + B⊗A`` (``docs/kronecker_sums.md``): the larger side tridiagonal, the
# smaller diagonalised.

@_compiled
def _finite(a):
    """Whether every entry of ``a`` is finite (``0·x`` is NaN for an infinite or NaN ``x``)."""
    total = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            total += 0.0 * a[i, j]
    return total == 0.0


@_compiled
def _below(diagonal, off, shift):
    """How many eigenvalues of the symmetric tridiagonal matrix of ``diagonal`` and ``off`` lie
    below ``shift``: the negative pivots of its ``LDLᵀ`` factorisation less ``shift·I``
    (Sylvester's law of inertia; an eigenvalue at ``shift`` is not below it)."""
    count, pivot = 0, 1.0
    for i in range(diagonal.size):
        pivot = diagonal[i] - shift - (off[i - 1] * off[i - 1] / pivot if i else 0.0)
        if pivot < 0.0:
            count += 1
        elif pivot == 0.0:
            pivot = 1e-300
    return count


@_compiled
def _extreme(diagonal, off, largest):
    """The largest (or smallest) eigenvalue of a symmetric tridiagonal matrix, to about 1% (an
    upper bound of its magnitude): bisection of Gershgorin's interval on :func:`_below`."""
    n = diagonal.size
    low, high = math.inf, -math.inf
    for i in range(n):
        radius = (abs(off[i - 1]) if i else 0.0) + (abs(off[i]) if i < n - 1 else 0.0)
        low, high = min(low, diagonal[i] - radius), max(high, diagonal[i] + radius)
    for _ in range(100):
        if high - low <= 0.01 * max(abs(low), abs(high)):
            break
        middle = 0.5 * (low + high)
        if (_below(diagonal, off, middle) == n) if largest else (_below(diagonal, off, middle) == 0):
            high, low = (middle, low) if largest else (high, middle)
        else:
            high, low = (high, middle) if largest else (middle, low)
    return high if largest else low


@_compiled
def _kron_side(arena, signal, noise):
    """One side's noise taken out of its signal: ``(defined, whitened, chol, variance, log|noise|)``,
    the signal ``L⁻¹ S L⁻ᵀ`` (its lower triangle) and ``L`` for a noise matrix ``L Lᵀ``, or the
    signal as it is and the variance ``σ²`` for a ``1×1`` noise (``σ² I``; for a side of one
    they are the same)."""
    size = signal.shape[0]
    if noise.shape[0] == 1:
        variance = noise[0, 0]
        return variance > 0.0, signal, np.empty((0, 0)), variance, size * math.log(variance)
    chol = matrix(arena, size, size)
    if not cholesky(noise, chol):
        return False, signal, chol, 1.0, 0.0
    return True, whitened(arena, chol, signal), chol, 1.0, logdet(chol)


@_compiled
def kron_sum_logpdf(arena, x, mean, row, col, row_noise, col_noise, row_eps, col_eps):
    """``(defined, log N(vec x; vec mean, V⊗U + B⊗A))`` for ``n×p`` points and mean, the signal
    covariances ``U = row``, ``V = col`` and the noises ``A = row_noise``, ``B = col_noise``
    (positive definite matrices, or ``1×1`` variances); ``row_eps`` and ``col_eps`` are the
    epsilons of the signals' data, for their semi-definiteness floors.

    The noise is whitened away (``Ũ = L_A⁻¹ U L_A⁻ᵀ``, ``D̃ = L_A⁻¹ (x − mean) L_B⁻ᵀ``); the smaller
    side is diagonalised, ``Ṽ = Q_v Λ_v Q_vᵀ``, and the larger only made tridiagonal,
    ``Ũ = H T Hᵀ`` (a third of an eigensolver's work). Then ``Σ̃ = (Q_v⊗H)(Λ_v⊗T + I)(Q_v⊗H)ᵀ``
    is block diagonal: column ``j`` of ``E = Hᵀ D̃ Q_v`` meets the tridiagonal ``λ_v,j T + I``,
    whose ``LDLᵀ`` factorisation gives its log-determinant (the pivots' logarithms) and its
    quadratic form (``Σ_i y_i²/d_i`` with ``L y = e_j``) in ``O(n)``. Undefined (for the caller
    to compute again and explain) where an entry is not finite, a noise not positive definite, a
    signal has an eigenvalue below ``−m·ε·max|λ|`` or a pivot is not positive."""
    n, p = x.shape
    residual = _difference(arena, x, mean)[0]
    if p > n:  # the larger side on the rows: the log-density of ``xᵀ`` under ``U⊗V + A⊗B``
        residual = copied(arena, residual.T)
        row, col, row_noise, col_noise = col, row, col_noise, row_noise
        row_eps, col_eps = col_eps, row_eps
        n, p = p, n
    if not (_finite(residual) and _finite(row) and _finite(col) and _finite(row_noise) and _finite(col_noise)):
        return False, math.nan
    row_ok, signal_u, chol_a, variance_a, logdet_a = _kron_side(arena, row, row_noise)
    col_ok, signal_v, chol_b, variance_b, logdet_b = _kron_side(arena, col, col_noise)
    if not (row_ok and col_ok):
        return False, math.nan
    if chol_a.size:
        solve(chol_a, residual, False)
    if chol_b.size:
        solve_right(chol_b, residual, True)
    col_vals, col_rows, converged = eigh(arena, signal_v)
    if not converged:
        return False, math.nan
    col_vals /= variance_b
    if p and col_vals[0] < -p * col_eps * max(abs(col_vals[0]), abs(col_vals[-1])):
        return False, math.nan
    col_vals = np.maximum(col_vals, 0.0)
    reflectors, tau, diagonal, off = tridiagonal(arena, signal_u)
    diagonal /= variance_a
    off /= variance_a
    top = 0.0
    if n:
        top = max(abs(_extreme(diagonal, off, True)), abs(_extreme(diagonal, off, False)))
        if _below(diagonal, off, -n * row_eps * top) > 0:
            return False, math.nan
    reflect(arena, reflectors, tau, residual)
    e = times_rows(arena, residual, col_rows)
    # The pivots of λ_j T + I, at least about 1, at most λ_j·max|λ(T)| + 1: their running
    # products stay below 2^900 over ``rows`` rows, then one logarithm per column.
    largest = (col_vals[-1] if p else 0.0) * top + 2.0
    rows = max(1, int(900.0 / math.log2(largest)))
    pivot, y, product = np.ones(p), np.zeros(p), np.ones(p)
    quad, logs, least = 0.0, 0.0, math.inf
    for i in range(n):
        coupling = off[i - 1] if i else 0.0
        for j in range(p):
            b = col_vals[j] * coupling
            l = b / pivot[j]
            pivot[j] = col_vals[j] * diagonal[i] + 1.0 - l * b
            y[j] = e[i, j] - l * y[j]
            quad += y[j] * y[j] / pivot[j]
            product[j] *= pivot[j]
            least = min(least, pivot[j])
        if (i + 1) % rows == 0 or i == n - 1:
            for j in range(p):
                if not 1e-300 < product[j] < 1e300:
                    return False, math.nan
                logs += math.log(product[j])
                product[j] = 1.0
    if not least > 0.0:
        return False, math.nan
    quad /= variance_a * variance_b
    value = -0.5 * (n * p * _LOG_2PI + p * logdet_a + n * logdet_b + logs + quad)
    return math.isfinite(value), value


#: The code of :func:`kron_sum_logpdf` in :func:`items_batch` (not a kernel mode).
KRON_SUM = -1


@_compiled
def _value(arena, code, a0, a1, a2, a3, a4, a5, most_blocks, row_eps, col_eps):
    """``(defined, value)`` of one item of ``code`` (a mode, or :data:`KRON_SUM`) from its slots
    (those the code does not use are not read)."""
    if code == _modes.KL_COV or code == _modes.KL_CHOL or code == _modes.KL_STD_COV or code == _modes.KL_STD_CHOL:
        parts = kl_parts(arena, code, a0, a1, a2, a3, a4, a5, False, most_blocks)
        return parts[0], parts[1]
    if code == _modes.LOGDET:
        return logdet_value(arena, a0)
    if code == _modes.TRACE_SOLVE:
        return trace_solve_value(arena, a0, a1)
    if code == KRON_SUM:
        return kron_sum_logpdf(arena, a0, a1, a2, a3, a4, a5, row_eps, col_eps)
    parts = logpdf_parts(arena, code, a0, a1, a2, a3)
    return parts[0], parts[1]


def _items(code, gradients, wanted, s0, s1, s2, s3, s4, s5, index, out, g0, g1, g2, g3, g4, g5, buffer, asked,
           runs, most_blocks, row_eps, col_eps):
    """Every item of ``code`` (a mode, or :data:`KRON_SUM` for :func:`kron_sum_logpdf` with the
    epsilons ``row_eps`` and ``col_eps``), in ``runs`` contiguous runs of items run in parallel:
    ``out[i]`` the value of item ``i``, whose slot ``k`` is ``s_k[index[k, i]]`` (C-ordered
    float64 matrices), and with ``gradients`` its gradients ``g_k[i]`` that ``wanted`` marks (the
    others may be ``(1, 1, 1)`` placeholders). An item whose value is undefined or not finite is
    NaN; its gradients are left as they are (:func:`fastmvn._large._run` makes those of every
    NaN value NaN, a value that a cast into float32 spoils included). Run ``r`` takes its scratch
    from the ``r``-th of ``runs`` equal parts of ``buffer`` (:func:`fastmvn._lapack.matrix`) and
    records in ``asked[r]`` the most any of its items asked for. Its loops run over the items of
    a run one after another, each item one compiled call of LAPACK and BLAS."""
    count = out.shape[0]
    size = buffer.shape[0] // runs
    for run in numba.prange(runs):
        used = np.zeros(2, np.int64)
        arena = (buffer[run * size:(run + 1) * size], used)
        most = 0
        for i in range(count * run // runs, count * (run + 1) // runs):
            used[:] = 0
            a0, a1, a2 = s0[index[0, i]], s1[index[1, i]], s2[index[2, i]]
            a3, a4, a5 = s3[index[3, i]], s4[index[4, i]], s5[index[5, i]]
            if not gradients:
                defined, value = _value(arena, code, a0, a1, a2, a3, a4, a5, most_blocks, row_eps, col_eps)
            else:  # each gradient made in its item of the output (a placeholder's item 0 where not wanted)
                places = (g0[i if wanted[0] else 0], g1[i if wanted[1] else 0], g2[i if wanted[2] else 0],
                          g3[i if wanted[3] else 0], g4[i if wanted[4] else 0], g5[i if wanted[5] else 0])
                if code == _modes.LOGPDF or code == _modes.LOGPDF_CHOL:
                    defined, value = logpdf_grads(arena, code, (wanted[0], wanted[1], wanted[2], wanted[3]),
                                                  a0, a1, a2, a3, most_blocks, places[:4])
                else:
                    defined, value = kl_grads(arena, code, (wanted[0], wanted[1], wanted[2], wanted[3], wanted[4],
                                                            wanted[5]), a0, a1, a2, a3, a4, a5, most_blocks, places)
            out[i] = value if defined and math.isfinite(value) else math.nan
            most = max(most, used[1])
        asked[run] = most


#: :func:`_items` compiled to split its runs over Numba's threads, and to run them on the calling thread.
items_batch = _cached(numba.njit(**OPTIONS, parallel=True)(_items))
items_serial = _cached(numba.njit(**OPTIONS)(_items), serial=True)
