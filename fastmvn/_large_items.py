"""The terms of one large item, each function one compiled call (:mod:`fastmvn._large`'s
values, and the factors and solves its gradients are made of), by the formulas of
``docs/architecture.md`` on the routines of :mod:`fastmvn._lapack`.

Arguments are C-ordered float64 matrices. Each function returns whether the item is defined
(every Cholesky factorisation succeeded with no numerically singular pivot, every given
factor has a positive diagonal) before what it computed; the caller makes a failed item NaN.
"""

import math

import numpy as np

from . import _modes
from ._lapack import _compiled, cholesky, factor, inverse, inner, logdet, norm2, solve, solve_lower, solve_right, \
    times_lower

__all__ = ["kl_value", "kl_parts", "logpdf_parts", "logdet_value", "trace_solve_value"]

_LOG_2PI = math.log(2.0 * math.pi)


@_compiled
def kl_value(trace_u, trace_v, quad, log_ratio_u, log_ratio_v, n, p):
    """``½(t_u t_v + quad − np + p·log(|U2|/|U1|) + n·log(|V2|/|V1|))`` in the kernels' order,
    halved term by term; never negative (rounding below zero gives 0, -inf stays a failure)."""
    kl = (0.5 * trace_u) * trace_v + 0.5 * quad - 0.5 * n * p + (0.5 * p) * log_ratio_u + (0.5 * n) * log_ratio_v
    return 0.0 if -math.inf < kl < 0.0 else kl


@_compiled
def _factored(covariance, a, out):
    """``out ←`` the lower factor of ``a``: its Cholesky factor where ``covariance``, else ``a``
    itself (a factor); whether it is defined."""
    return cholesky(a, out) if covariance else factor(a, out)


@_compiled
def _blocks(n, most):
    """The blocks of columns of a triangular solve of ``n`` rows: one per 64 rows, at most ``most``."""
    return min(most, max(1, n // 64))


@_compiled
def kl_parts(mode, mean1, row1, col1, mean2, row2, col2, inverses, most_blocks):
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
    l1, q1 = np.empty((n, n)), np.empty((p, p))
    l2, q2, u2, v2 = empty, empty, empty, empty
    failed = (False, math.nan, l1, q1, l2, q2, empty, empty, empty, 0.0, 0.0, u2, v2)
    if not (_factored(covariances, row1, l1) and _factored(covariances, col1, q1)):
        return failed
    if standard:
        a, b, z = l1, q1, mean1
        log_ratio_u, log_ratio_v = -logdet(l1), -logdet(q1)
    else:
        l2, q2 = np.empty((n, n)), np.empty((p, p))
        if not (_factored(covariances, row2, l2) and _factored(covariances, col2, q2)):
            return failed
        z = mean2 - mean1
        solve(l2, z, False)
        solve_right(q2, z, True)
        log_ratio_u, log_ratio_v = logdet(l2) - logdet(l1), logdet(q2) - logdet(q1)
        a, b = l1, q1
    if inverses:
        u2, defined_u = inverse(l2)
        v2, defined_v = inverse(q2)
        if not (defined_u and defined_v):
            return failed
        a, b = times_lower(u2, l1), times_lower(v2, q1)
        t_u, t_v = inner(l1, a), inner(q1, b)
    else:
        if not standard:
            a, b = solve_lower(l2, l1, _blocks(n, most_blocks)), solve_lower(q2, q1, _blocks(p, most_blocks))
        t_u, t_v = norm2(a), norm2(b)
    value = kl_value(t_u, t_v, norm2(z), log_ratio_u, log_ratio_v, n, p)
    return True, value, l1, q1, l2, q2, a, b, z, t_u, t_v, u2, v2


@_compiled
def logpdf_parts(mode, x, mean, row, col):
    """The log-density or Mahalanobis form of ``mode`` (``LOGPDF``, ``LOGPDF_CHOL``,
    ``MAHALANOBIS`` or ``MAHALANOBIS_CHOL``) and what its gradients are made of:
    ``(defined, value, p_, q_, z)`` with the lower factors ``p_``, ``q_`` of the row and column
    covariances and the whitened residual ``z = p_⁻¹ (x − mean) q_⁻ᵀ``."""
    n, p = x.shape
    covariances = mode == _modes.LOGPDF or mode == _modes.MAHALANOBIS
    row_factor, col_factor = np.empty((n, n)), np.empty((p, p))
    z = x - mean
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
def logdet_value(a):
    """``(defined, log |a|)``."""
    chol = np.empty_like(a)
    if not cholesky(a, chol):
        return False, math.nan
    return True, logdet(chol)


@_compiled
def trace_solve_value(a, b):
    """``(defined, tr(a⁻¹ b))``: ``tr(L⁻ᵀ (L⁻¹ b))``."""
    chol = np.empty_like(a)
    if not cholesky(a, chol):
        return False, math.nan
    x = b.copy()
    solve(chol, x, False)
    solve(chol, x, True)
    return True, np.trace(x)
