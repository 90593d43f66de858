"""The NumPy specification of fastmvn: every public function written plainly.

Each function here computes what the fastmvn function of the same name computes, by the
formulas of the documentation, with NumPy's Cholesky factorisation, batched solves and
``einsum``; it broadcasts over leading axes the same way. It is slower and has no
``out=`` or ``errors=``: a failed factorisation raises ``LinAlgError``, as NumPy's does,
also for a numerically singular matrix (see :func:`cholesky`).
Every kernel is tested against it.

Conventions: ``vec`` stacks columns, ``vec X ~ N(vec M, V ⊗ U)`` for ``MN(M, U, V)``.
Only the lower triangle of a covariance is read (``numpy.linalg.cholesky`` reads no more).
A Cholesky factor is the lower ``L`` of ``U = L Lᵀ``, of which the lower triangle is read,
or, with ``lower=False``, the upper ``R`` of ``U = Rᵀ R``, of which the upper triangle is read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ._typing import ArrayLike, FloatArray, NDArray, Result

__all__ = ["cholesky", "entropy", "entropy_chol", "entropy_diag", "kl", "kl_chol", "kl_diag", "kl_full", "kl_kron_sum",
           "kron_sum_cov", "logdet", "logpdf", "logpdf_chol", "logpdf_diag", "logpdf_kron_sum", "logpdf_prec",
           "mahalanobis", "mahalanobis_chol", "pdf", "pdf_chol", "singular_pivots", "trace_solve"]


def singular_pivots(chol: FloatArray, a: FloatArray) -> NDArray[np.bool_]:
    """Where the Cholesky factor ``chol`` of ``a`` (``(..., n, n)``) has a numerically singular
    pivot: the mask over the batch axes of ``L_jj² ≤ n·ε·a_jj`` for some ``j``, with ``ε`` of
    ``chol``'s dtype.

    A pivot no larger than that is the rounding error of the subtractions that made it, not
    information about the matrix: ``[[2, 1], [1, 0.5]]`` (rank 1) leaves ``1e-16`` instead of 0.
    Every matrix of condition number below about ``1/(n·ε)`` passes.
    """
    size = a.shape[-1]
    pivots = np.diagonal(chol, axis1=-2, axis2=-1) ** 2
    floor = size * np.finfo(chol.dtype).eps * np.diagonal(a, axis1=-2, axis2=-1)
    return (pivots <= floor).any(axis=-1)


def cholesky(a: ArrayLike) -> FloatArray:
    """Lower Cholesky factor of symmetric positive definite ``a`` (``(..., n, n)``, lower
    triangle read), by LAPACK; ``LinAlgError`` where ``a`` is not positive definite or is
    numerically singular (:func:`singular_pivots`), as fastmvn decides it everywhere."""
    a = np.asarray(a)
    chol = np.linalg.cholesky(a)
    if singular_pivots(chol, a).any():
        raise np.linalg.LinAlgError("Matrix is numerically singular")
    return chol


def _logdet_factor(chol):
    """``log|L Lᵀ|`` for lower-triangular ``L`` with positive diagonal."""
    return 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(axis=-1)


def _solve(chol, b):
    """``L⁻¹ b`` for lower-triangular ``L``, batched."""
    return np.linalg.solve(chol, b)


def _frobenius2(a):
    """``‖a‖_F²`` over the last two axes."""
    return np.einsum("...ij,...ij->...", a, a)


def _factor(chol, lower):
    """The lower factor ``L`` that a factor argument gives: the lower triangle of ``chol``, or
    with ``lower=False`` (``chol`` an upper factor ``R = Lᵀ``) that of its transpose."""
    chol = np.asarray(chol, dtype=float)
    return np.tril(chol if lower else np.swapaxes(chol, -1, -2))


def logdet(a: ArrayLike) -> Result:
    """``log|a|`` for symmetric positive definite ``a`` of shape ``(..., n, n)``."""
    return _logdet_factor(cholesky(a))


def trace_solve(a: ArrayLike, b: ArrayLike) -> Result:
    """``tr(a⁻¹ b)`` for symmetric positive definite ``a`` and square ``b``, ``(..., n, n)``."""
    chol = cholesky(a)
    w = _solve(chol, b)  # L⁻¹ b
    return np.trace(_solve(np.swapaxes(chol, -1, -2), w), axis1=-2, axis2=-1)  # tr(L⁻ᵀ L⁻¹ b)


def _whitened_norm2(d, rowchol, colchol):
    """``‖L_U⁻¹ D L_V⁻ᵀ‖_F² = tr(V⁻¹ Dᵀ U⁻¹ D)``."""
    y = _solve(rowchol, d)  # L_U⁻¹ D
    z = _solve(colchol, np.swapaxes(y, -1, -2))  # L_V⁻¹ (L_U⁻¹ D)ᵀ
    return _frobenius2(z)


def mahalanobis(x: ArrayLike, mean: ArrayLike | None, rowcov: ArrayLike, colcov: ArrayLike) -> Result:
    """``tr(V⁻¹ (X−M)ᵀ U⁻¹ (X−M))``; ``mean=None`` means zero."""
    d = np.asarray(x, dtype=float) - (0.0 if mean is None else np.asarray(mean, dtype=float))
    return _whitened_norm2(d, cholesky(rowcov), cholesky(colcov))


def mahalanobis_chol(x: ArrayLike, mean: ArrayLike | None, rowchol: ArrayLike, colchol: ArrayLike, *,
                     lower: bool = True) -> Result:
    """``tr(V⁻¹ (X−M)ᵀ U⁻¹ (X−M))`` from factors of ``U`` and ``V`` (upper with ``lower=False``);
    ``mean=None`` means zero."""
    d = np.asarray(x, dtype=float) - (0.0 if mean is None else np.asarray(mean, dtype=float))
    return _whitened_norm2(d, _factor(rowchol, lower), _factor(colchol, lower))


def logpdf_chol(x: ArrayLike, mean: ArrayLike | None, rowchol: ArrayLike, colchol: ArrayLike, *,
                lower: bool = True) -> Result:
    """Log-density of ``MN(mean, L_U L_Uᵀ, L_V L_Vᵀ)`` at ``x`` from factors (upper with
    ``lower=False``); ``mean=None`` means zero."""
    rowchol, colchol = _factor(rowchol, lower), _factor(colchol, lower)
    d = np.asarray(x, dtype=float) - (0.0 if mean is None else np.asarray(mean, dtype=float))
    n, p = d.shape[-2:]
    return -0.5 * (n * p * np.log(2 * np.pi) + p * _logdet_factor(rowchol) + n * _logdet_factor(colchol)
                   + _whitened_norm2(d, rowchol, colchol))


def logpdf(x: ArrayLike, mean: ArrayLike | None, rowcov: ArrayLike, colcov: ArrayLike) -> Result:
    """Log-density of ``MN(mean, rowcov, colcov)`` at ``x``; ``mean=None`` means zero."""
    return logpdf_chol(x, mean, cholesky(rowcov), cholesky(colcov))


def pdf_chol(x: ArrayLike, mean: ArrayLike | None, rowchol: ArrayLike, colchol: ArrayLike, *,
             lower: bool = True) -> Result:
    """Density of ``MN(mean, L_U L_Uᵀ, L_V L_Vᵀ)`` at ``x`` from factors (upper with ``lower=False``);
    ``mean=None`` means zero."""
    return np.exp(logpdf_chol(x, mean, rowchol, colchol, lower=lower))


def pdf(x: ArrayLike, mean: ArrayLike | None, rowcov: ArrayLike, colcov: ArrayLike) -> Result:
    """Density of ``MN(mean, rowcov, colcov)`` at ``x``; ``mean=None`` means zero."""
    return np.exp(logpdf(x, mean, rowcov, colcov))


def entropy_chol(rowchol: ArrayLike, colchol: ArrayLike, *, lower: bool = True) -> Result:
    """Entropy ``½[np(1 + log 2π) + n log|V| + p log|U|]`` from factors ``(..., n, n)``, ``(..., p, p)``
    (upper with ``lower=False``)."""
    n, p = np.shape(rowchol)[-1], np.shape(colchol)[-1]
    return 0.5 * (n * p * (1.0 + np.log(2 * np.pi)) + n * _logdet_factor(_factor(colchol, lower))
                  + p * _logdet_factor(_factor(rowchol, lower)))


def entropy(rowcov: ArrayLike, colcov: ArrayLike) -> Result:
    """Entropy of ``MN(M, rowcov, colcov)`` (any ``M``)."""
    return entropy_chol(cholesky(rowcov), cholesky(colcov))


def _difference(x, mean):
    """``X − M`` in float64; ``mean=None`` means zero."""
    return np.asarray(x, dtype=float) - (0.0 if mean is None else np.asarray(mean, dtype=float))


def _positive(*variances):
    """The variances in float64, after checking that they are positive."""
    variances = [np.asarray(v, dtype=float) for v in variances]
    if any(np.any(~(v > 0)) for v in variances):
        raise np.linalg.LinAlgError("variances must be positive")
    return variances


def logpdf_diag(x: ArrayLike, mean: ArrayLike | None, rowvar: ArrayLike, colvar: ArrayLike) -> Result:
    """Log-density of ``MN(mean, diag(rowvar), diag(colvar))`` at ``x``:
    ``−½[np log 2π + p Σ log a + n Σ log b + Σ_ij D_ij² / (a_i b_j)]``, ``D = X − M``;
    ``mean=None`` means zero."""
    a, b = _positive(rowvar, colvar)
    d = _difference(x, mean)
    n, p = d.shape[-2:]
    quad = np.einsum("...ij,...ij->...", d / a[..., :, None] / b[..., None, :], d)
    return -0.5 * (n * p * np.log(2 * np.pi) + p * np.log(a).sum(axis=-1) + n * np.log(b).sum(axis=-1) + quad)


def entropy_diag(rowvar: ArrayLike, colvar: ArrayLike) -> Result:
    """Entropy ``½[np(1 + log 2π) + n Σ log b + p Σ log a]`` of ``MN(M, diag(a), diag(b))``."""
    a, b = _positive(rowvar, colvar)
    n, p = a.shape[-1], b.shape[-1]
    return 0.5 * (n * p * (1.0 + np.log(2 * np.pi)) + n * np.log(b).sum(axis=-1) + p * np.log(a).sum(axis=-1))


def logpdf_prec(x: ArrayLike, mean: ArrayLike | None, rowprec: ArrayLike, colprec: ArrayLike) -> Result:
    """Log-density of ``MN(mean, rowprec⁻¹, colprec⁻¹)`` at ``x`` by the dense precision of
    ``vec X``, ``Ω = colprec ⊗ rowprec`` (``(np, np)``; lower triangles read):
    ``−½[np log 2π − log|Ω| + vec(D)ᵀ Ω vec(D)]``, ``D = X − M``, with ``Ω = L Lᵀ`` so that
    ``vec(D)ᵀ Ω vec(D) = ‖Lᵀ vec D‖²``; nothing is inverted. ``mean=None`` means zero."""
    precision = _kron(_symmetric(colprec), _symmetric(rowprec))
    chol = cholesky(precision)
    d = _difference(x, mean)
    size = d.shape[-2] * d.shape[-1]
    vec_d = np.swapaxes(d, -1, -2).reshape(d.shape[:-2] + (size, 1))
    return -0.5 * (size * np.log(2 * np.pi) - _logdet_factor(chol)
                   + _frobenius2(np.swapaxes(chol, -1, -2) @ vec_d))


def kl_chol(mean1: ArrayLike, rowchol1: ArrayLike, colchol1: ArrayLike, mean2: ArrayLike | None = None,
            rowchol2: ArrayLike | None = None, colchol2: ArrayLike | None = None, *, lower: bool = True) -> Result:
    """KL between matrix normals given by lower Cholesky factors (lower triangles read), or
    upper ones with ``lower=False`` (upper triangles read).

    ``None`` for a second argument means zero mean or identity factor.
    """
    mean1 = np.asarray(mean1, dtype=float)
    n, p = mean1.shape[-2:]
    rowchol1, colchol1 = _factor(rowchol1, lower), _factor(colchol1, lower)
    rowchol2 = np.eye(n) if rowchol2 is None else _factor(rowchol2, lower)
    colchol2 = np.eye(p) if colchol2 is None else _factor(colchol2, lower)
    d = (0.0 if mean2 is None else np.asarray(mean2, dtype=float)) - mean1
    trace_u = _frobenius2(_solve(rowchol2, rowchol1))  # tr(U2⁻¹ U1)
    trace_v = _frobenius2(_solve(colchol2, colchol1))  # tr(V2⁻¹ V1)
    quad = _whitened_norm2(d, rowchol2, colchol2)
    return 0.5 * (trace_u * trace_v + quad - n * p
                  + p * (_logdet_factor(rowchol2) - _logdet_factor(rowchol1))
                  + n * (_logdet_factor(colchol2) - _logdet_factor(colchol1)))


def kl(mean1: ArrayLike, rowcov1: ArrayLike, colcov1: ArrayLike, mean2: ArrayLike | None = None,
       rowcov2: ArrayLike | None = None, colcov2: ArrayLike | None = None) -> Result:
    """KL between matrix normals ``MN(mean1, rowcov1, colcov1) ‖ MN(mean2, rowcov2, colcov2)``.

    ``None`` for a second argument means zero mean or identity covariance.
    """
    def factor(cov):
        return None if cov is None else cholesky(cov)

    return kl_chol(mean1, factor(rowcov1), factor(colcov1), mean2, factor(rowcov2), factor(colcov2))


def kl_diag(mean1: ArrayLike, rowvar1: ArrayLike, colvar1: ArrayLike, mean2: ArrayLike | None = None,
            rowvar2: ArrayLike | None = None, colvar2: ArrayLike | None = None) -> Result:
    """KL between matrix normals with diagonal covariances ``diag(rowvar)``, ``diag(colvar)``.

    ``None`` for a second argument means zero mean or unit variances.
    """
    mean1 = np.asarray(mean1, dtype=float)
    n, p = mean1.shape[-2:]
    rowvar1, colvar1 = np.asarray(rowvar1, dtype=float), np.asarray(colvar1, dtype=float)
    rowvar2 = np.ones(n) if rowvar2 is None else np.asarray(rowvar2, dtype=float)
    colvar2 = np.ones(p) if colvar2 is None else np.asarray(colvar2, dtype=float)
    if np.any(rowvar1 <= 0) or np.any(colvar1 <= 0) or np.any(rowvar2 <= 0) or np.any(colvar2 <= 0):
        raise np.linalg.LinAlgError("variances must be positive")
    d = (0.0 if mean2 is None else np.asarray(mean2, dtype=float)) - mean1
    trace_u = (rowvar1 / rowvar2).sum(axis=-1)
    trace_v = (colvar1 / colvar2).sum(axis=-1)
    quad = np.einsum("...ij,...ij->...", d / rowvar2[..., :, None] / colvar2[..., None, :], d)  # D/(a bᵀ), then ·D
    return 0.5 * (trace_u * trace_v + quad - n * p
                  + p * _log_ratio(rowvar2, rowvar1).sum(axis=-1) + n * _log_ratio(colvar2, colvar1).sum(axis=-1))


def _log_ratio(a, b):
    """``log(a/b)`` for positive ``a``, ``b``: of the ratio, accurate where they are close, or
    ``log a − log b`` where the ratio leaves the range of floats."""
    with np.errstate(over="ignore", under="ignore"):
        ratio = a / b
    inside = np.isfinite(ratio) & (ratio > 0)
    return np.where(inside, np.log(np.where(inside, ratio, 1.0)), np.log(a) - np.log(b))


def kl_full(mean1: ArrayLike, cov1: ArrayLike, mean2: ArrayLike | None = None, cov2: ArrayLike | None = None) -> Result:
    """KL between matrix Gaussians ``N(vec mean1, cov1) ‖ N(vec mean2, cov2)``.

    Means ``(..., n, p)``, covariances ``(..., np, np)`` of column-major ``vec``; ``None``
    for a second argument means zero mean or identity covariance. The multivariate-normal
    KL ``½[tr(Σ2⁻¹Σ1) + vec(D)ᵀ Σ2⁻¹ vec(D) − np + log|Σ2| − log|Σ1|]``, ``D = M2 − M1``.
    The specification of ``fastmvn.kl_full``, and of ``fastmvn.kl_gaussian`` for two
    ``MatrixGaussian`` given their ``mean`` and ``cov``.
    """
    mean1 = np.asarray(mean1, dtype=float)
    size = mean1.shape[-2] * mean1.shape[-1]
    chol1 = cholesky(cov1)
    chol2 = np.eye(size) if cov2 is None else cholesky(cov2)
    d = (0.0 if mean2 is None else np.asarray(mean2, dtype=float)) - mean1
    vec_d = np.swapaxes(d, -1, -2).reshape(d.shape[:-2] + (size, 1))
    trace = _frobenius2(_solve(chol2, chol1))  # tr(Σ2⁻¹ Σ1)
    quad = _frobenius2(_solve(chol2, vec_d))
    return 0.5 * (trace + quad - size + _logdet_factor(chol2) - _logdet_factor(chol1))


def _symmetric(a):
    """The symmetric matrices whose lower triangles are those of ``a``."""
    a = np.tril(np.asarray(a, dtype=float))
    return a + np.swapaxes(np.tril(a, -1), -1, -2)


def _kron(col, row):
    """``col ⊗ row``, ``(..., np, np)``: entry ``[i + n·j, k + n·l]`` is ``col_jl row_ik``."""
    dense = np.einsum("...jl,...ik->...jilk", col, row)
    size = col.shape[-1] * row.shape[-1]
    return dense.reshape(dense.shape[:-4] + (size, size))


def kron_sum_cov(rowcov: ArrayLike, colcov: ArrayLike, noise_rowcov: ArrayLike | float,
                 noise_colcov: ArrayLike | None = None) -> FloatArray:
    """The dense covariance ``V⊗U + B⊗A`` (``(..., np, np)``) of column-major ``vec X`` for the
    Kronecker-sum normal; a scalar ``noise_rowcov`` is ``σ² I`` and ``noise_colcov=None`` the
    identity. Entry ``[i + n·j, k + n·l]`` is ``V_jl U_ik + B_jl A_ik``; the lower triangles
    are read."""
    symmetric, kron = _symmetric, _kron
    row, col = symmetric(np.asarray(rowcov)), symmetric(np.asarray(colcov))
    n, p = row.shape[-1], col.shape[-1]
    noise_row = np.asarray(noise_rowcov)
    noise_row = float(noise_row) * np.eye(n) if noise_row.ndim == 0 else symmetric(noise_row)
    noise_col = np.eye(p) if noise_colcov is None else np.asarray(noise_colcov)
    noise_col = float(noise_col) * np.eye(p) if noise_col.ndim == 0 else symmetric(noise_col)
    return kron(col, row) + kron(noise_col, noise_row)


def _vec_column(x):
    """Column-major ``vec`` of each matrix as an ``np×1`` matrix."""
    x = np.asarray(x, dtype=float)
    return np.swapaxes(x, -1, -2).reshape(x.shape[:-2] + (-1, 1))


def logpdf_kron_sum(x: ArrayLike, mean: ArrayLike | None, rowcov: ArrayLike, colcov: ArrayLike,
                    noise_rowcov: ArrayLike | float, noise_colcov: ArrayLike | None = None) -> Result:
    """Log-density of ``vec X ~ N(vec M, V⊗U + B⊗A)`` at ``x`` by the dense ``np×np`` covariance
    (:func:`kron_sum_cov`), its Cholesky factor and :func:`logpdf_chol` on ``np×1`` matrices;
    ``mean=None`` means zero."""
    x = np.asarray(x, dtype=float)
    mean = np.zeros(x.shape[-2:]) if mean is None else mean
    cov = kron_sum_cov(rowcov, colcov, noise_rowcov, noise_colcov)
    return logpdf_chol(_vec_column(x), _vec_column(mean), cholesky(cov), np.ones((1, 1)))


def kl_kron_sum(mean1: ArrayLike | None, rowcov1: ArrayLike, colcov1: ArrayLike, noise_rowcov1: ArrayLike | float,
                noise_colcov1: ArrayLike | None, mean2: ArrayLike | None, rowcov2: ArrayLike, colcov2: ArrayLike,
                noise_rowcov2: ArrayLike | float, noise_colcov2: ArrayLike | None) -> Result:
    """KL between Kronecker-sum normals by their dense covariances (:func:`kron_sum_cov`) and
    :func:`kl_full`; ``None`` for a mean means zero."""
    n, p = np.shape(rowcov1)[-1], np.shape(colcov1)[-1]
    mean1 = np.zeros((n, p)) if mean1 is None else mean1
    return kl_full(mean1, kron_sum_cov(rowcov1, colcov1, noise_rowcov1, noise_colcov1), mean2,
                   kron_sum_cov(rowcov2, colcov2, noise_rowcov2, noise_colcov2))
