"""The NumPy specification of fastmvn: every public function written plainly.

Each function here computes the same quantity as the fastmvn function of the same name, in
float64 (with the two exceptions below), by the formulas of the documentation, with NumPy's
Cholesky factorisation, batched solves and ``einsum``; it broadcasts over leading axes the
same way. It is slower and has no ``out=`` or ``errors=``: a failed factorisation raises
``LinAlgError``, as NumPy's does, also for a numerically singular matrix (see
:func:`cholesky`). Every kernel is tested against it. :func:`cholesky`,
:func:`singular_pivots` and :func:`kron_sum_cov` have no namesake in fastmvn: they are the
factorisation, the test of its pivots and the dense covariance that the others build on.

The results are float64, also for float32 input, with two exceptions. :func:`cholesky` keeps
the dtype of its input, as ``numpy.linalg.cholesky`` does, so that :func:`logdet` and
:func:`trace_solve` return float32 for float32 input; and a float32 covariance given to
:func:`mahalanobis`, :func:`logpdf`, :func:`pdf`, :func:`entropy`, :func:`kl` or
:func:`kl_full` is factorised by :func:`cholesky` in float32 before the rest is computed in
float64. Every other argument is read in float64.

Conventions: ``vec`` stacks columns, ``vec X ~ N(vec M, V ⊗ U)`` for ``MN(M, U, V)``.
Only the lower triangle of a covariance is read (``numpy.linalg.cholesky`` reads no more).
A Cholesky factor is the lower ``L`` of ``U = L Lᵀ``, of which the lower triangle is read,
or, with ``lower=False``, the upper ``R`` of ``U = Rᵀ R``, of which the upper triangle is read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import _docs

if TYPE_CHECKING:
    from ._typing import ArrayLike, FloatArray, NDArray, Result

__all__ = ["cholesky", "entropy", "entropy_chol", "entropy_diag", "kl", "kl_chol", "kl_diag", "kl_full", "kl_kron_sum",
           "kron_sum_cov", "logdet", "logpdf", "logpdf_chol", "logpdf_diag", "logpdf_kron_sum", "logpdf_prec",
           "mahalanobis", "mahalanobis_chol", "pdf", "pdf_chol", "singular_pivots", "trace_solve"]


def singular_pivots(chol: FloatArray, a: FloatArray) -> NDArray[np.bool_]:
    """Where a Cholesky factor has a numerically singular pivot.

    The mask over the batch axes of ``L_jj² ≤ n·ε·a_jj`` for some ``j``, with ``L`` the
    Cholesky factor ``chol`` of ``a`` and ``ε`` the machine epsilon of ``chol``'s dtype.

    Parameters
    ----------
    chol : (..., n, n) ndarray
        Lower Cholesky factors of ``a``, as ``numpy.linalg.cholesky`` returns them.
    a : (..., n, n) ndarray
        The factorised matrices; only their diagonals are read.

    Returns
    -------
    singular : (...) ndarray of bool or numpy.bool
        ``True`` where some pivot is numerically singular.

    See Also
    --------
    cholesky : raises where this is true.

    Notes
    -----
    A pivot no larger than that is the rounding error of the subtractions that made it, not
    information about the matrix: ``[[2, 1], [1, 0.5]]`` (rank 1) leaves ``1e-16`` instead of 0.
    Every matrix of condition number below about ``1/(n·ε)`` passes.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmvn import reference
    >>> a = np.array([[[2.0, 1.0], [1.0, 0.5]], [[2.0, 1.0], [1.0, 1.0]]])   # rank 1, full rank
    >>> reference.singular_pivots(np.linalg.cholesky(a), a)
    array([ True, False])
    """
    size = a.shape[-1]
    pivots = np.diagonal(chol, axis1=-2, axis2=-1) ** 2
    floor = size * np.finfo(chol.dtype).eps * np.diagonal(a, axis1=-2, axis2=-1)
    return (pivots <= floor).any(axis=-1)


def cholesky(a: ArrayLike) -> FloatArray:
    """Lower Cholesky factor of symmetric positive definite matrices, by LAPACK.

    ``numpy.linalg.cholesky`` (only the lower triangle of ``a`` is read), which also rejects a
    numerically singular matrix (:func:`singular_pivots`), as fastmvn decides it everywhere.

    Parameters
    ----------
    a : (..., n, n) array_like
        Symmetric positive definite matrices.

    Returns
    -------
    chol : (..., n, n) ndarray
        The lower factors ``L`` of ``a = L Lᵀ``, with positive diagonals: float32 for float32
        input (with ``ε`` of float32 in the singularity test), float64 otherwise.

    Raises
    ------
    numpy.linalg.LinAlgError
        A matrix is not positive definite, or is numerically singular.

    See Also
    --------
    singular_pivots : the test of a numerically singular pivot.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmvn import reference
    >>> reference.cholesky([[4.0, 2.0], [2.0, 5.0]])
    array([[2., 0.],
           [1., 2.]])
    >>> reference.cholesky([[2.0, 1.0], [1.0, 0.5]])
    Traceback (most recent call last):
    ...
    numpy.linalg.LinAlgError: Matrix is numerically singular
    """
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
    with ``lower=False`` (``chol`` an upper factor ``R = Lᵀ``) that of its transpose, after
    checking that its diagonal is positive (NaN fails), as fastmvn's kernels do."""
    chol = np.asarray(chol, dtype=float)
    if np.any(~(np.diagonal(chol, axis1=-2, axis2=-1) > 0)):
        raise np.linalg.LinAlgError("a Cholesky factor's diagonal must be positive")
    return np.tril(chol if lower else np.swapaxes(chol, -1, -2))


@_docs.filled("logdet", keywords=[])
def logdet(a: ArrayLike) -> Result:
    """Log-determinant ``log|a|`` of symmetric positive definite matrices.

    ``2 Σ log diag L`` of the factor of :func:`cholesky` (only the lower triangle of ``a`` is
    read).

    %(parameters)s

    Returns
    -------
    logdet : (...) ndarray or scalar
        ``log|a|``: float32 for float32 input (the dtype of :func:`cholesky`), float64
        otherwise.

    Raises
    ------
    numpy.linalg.LinAlgError
        As in :func:`cholesky`.

    See Also
    --------
    fastmvn.logdet : the compiled function.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> from fastmvn import reference
    >>> a = np.stack([np.eye(3), 2 * np.eye(3)])
    >>> reference.logdet(a) / np.log(2)
    array([0., 3.])
    >>> bool(np.allclose(reference.logdet(a), fm.logdet(a)))
    True
    """
    return _logdet_factor(cholesky(a))


@_docs.filled("trace_solve", keywords=[])
def trace_solve(a: ArrayLike, b: ArrayLike) -> Result:
    """``tr(a⁻¹ b)`` for symmetric positive definite ``a`` and square ``b``.

    ``tr(L⁻ᵀ L⁻¹ b)`` with ``L`` the factor of :func:`cholesky` (only the lower triangle of
    ``a`` is read) and two batched solves; no inverse is formed.

    %(parameters)s

    Returns
    -------
    trace : (...) ndarray or scalar
        ``tr(a⁻¹ b)``: float32 when ``a`` and ``b`` are both float32, float64 otherwise.

    Raises
    ------
    numpy.linalg.LinAlgError
        As in :func:`cholesky`, for ``a``.

    See Also
    --------
    fastmvn.trace_solve : the compiled function.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> from fastmvn import reference
    >>> a, b = 2 * np.eye(3), np.ones((3, 3))
    >>> round(float(reference.trace_solve(a, b)), 12)
    1.5
    >>> bool(np.isclose(reference.trace_solve(a, b), fm.trace_solve(a, b)))
    True
    """
    chol = cholesky(a)
    w = _solve(chol, b)  # L⁻¹ b
    return np.trace(_solve(np.swapaxes(chol, -1, -2), w), axis1=-2, axis2=-1)  # tr(L⁻ᵀ L⁻¹ b)


def _whitened_norm2(d, rowchol, colchol):
    """``‖L_U⁻¹ D L_V⁻ᵀ‖_F² = tr(V⁻¹ Dᵀ U⁻¹ D)``."""
    y = _solve(rowchol, d)  # L_U⁻¹ D
    z = _solve(colchol, np.swapaxes(y, -1, -2))  # L_V⁻¹ (L_U⁻¹ D)ᵀ
    return _frobenius2(z)


@_docs.filled("mahalanobis", keywords=[])
def mahalanobis(x: ArrayLike, mean: ArrayLike | None, rowcov: ArrayLike, colcov: ArrayLike) -> Result:
    """Squared Mahalanobis distance ``tr(V⁻¹ (X−M)ᵀ U⁻¹ (X−M))`` of a matrix normal.

    ``‖L_U⁻¹ (X−M) L_V⁻ᵀ‖_F²`` with the factors of :func:`cholesky` (only the lower triangles
    of the covariances are read): ``vec(X−M)ᵀ (V⊗U)⁻¹ vec(X−M)`` without forming ``V⊗U``.

    %(parameters)s

    Returns
    -------
    mahalanobis : (...) ndarray or scalar
        The squared distances over the broadcast batch shape; float64, also for float32 input.

    Raises
    ------
    numpy.linalg.LinAlgError
        As in :func:`cholesky`, for ``rowcov`` or ``colcov``.

    See Also
    --------
    fastmvn.mahalanobis : the compiled function.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> from fastmvn import reference
    >>> x = np.random.default_rng(0).standard_normal((100, 3, 2))
    >>> u, v = np.eye(3) + 0.5, np.array([[2.0, 0.3], [0.3, 1.0]])
    >>> bool(np.allclose(reference.mahalanobis(x, None, u, v), fm.mahalanobis(x, None, u, v)))
    True
    """
    d = np.asarray(x, dtype=float) - (0.0 if mean is None else np.asarray(mean, dtype=float))
    return _whitened_norm2(d, cholesky(rowcov), cholesky(colcov))


@_docs.filled("mahalanobis_chol", keywords=["lower"])
def mahalanobis_chol(x: ArrayLike, mean: ArrayLike | None, rowchol: ArrayLike, colchol: ArrayLike, *,
                     lower: bool = True) -> Result:
    """Squared Mahalanobis distance ``tr(V⁻¹ (X−M)ᵀ U⁻¹ (X−M))`` from Cholesky factors of ``U`` and ``V``.

    ``‖L_U⁻¹ (X−M) L_V⁻ᵀ‖_F²`` with ``U = L_U L_Uᵀ`` and ``V = L_V L_Vᵀ``, or with upper factors
    (``U = Rᵀ R``) given ``lower=False``.

    %(parameters)s

    Returns
    -------
    mahalanobis : (...) ndarray or scalar
        The squared distances over the broadcast batch shape; float64, also for float32 input.

    Raises
    ------
    numpy.linalg.LinAlgError
        A factor's diagonal is not positive.

    See Also
    --------
    fastmvn.mahalanobis_chol : the compiled function.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> from fastmvn import reference
    >>> x = np.random.default_rng(0).standard_normal((100, 3, 2))
    >>> lu, lv = np.linalg.cholesky(np.eye(3) + 0.5), np.array([[1.5, 0.0], [0.2, 1.0]])
    >>> d = reference.mahalanobis_chol(x, None, lu, lv)
    >>> bool(np.allclose(d, fm.mahalanobis_chol(x, None, lu, lv)))
    True
    >>> bool(np.allclose(d, reference.mahalanobis_chol(x, None, lu.T, lv.T, lower=False)))
    True
    """
    d = np.asarray(x, dtype=float) - (0.0 if mean is None else np.asarray(mean, dtype=float))
    return _whitened_norm2(d, _factor(rowchol, lower), _factor(colchol, lower))


@_docs.filled("logpdf_chol", keywords=["lower"])
def logpdf_chol(x: ArrayLike, mean: ArrayLike | None, rowchol: ArrayLike, colchol: ArrayLike, *,
                lower: bool = True) -> Result:
    """Log-density of the matrix normal ``MN(mean, L_U L_Uᵀ, L_V L_Vᵀ)`` at ``x`` from Cholesky factors.

    ``−½[np log 2π + p log|U| + n log|V| + ‖L_U⁻¹ (X−M) L_V⁻ᵀ‖_F²]``, or from upper factors
    (``U = Rᵀ R``) given ``lower=False``.

    %(parameters)s

    Returns
    -------
    logpdf : (...) ndarray or scalar
        The log-densities over the broadcast batch shape; float64, also for float32 input.

    Raises
    ------
    numpy.linalg.LinAlgError
        A factor's diagonal is not positive.

    See Also
    --------
    fastmvn.logpdf_chol : the compiled function.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> from fastmvn import reference
    >>> x = np.random.default_rng(0).standard_normal((100, 3, 2))
    >>> lu, lv = np.linalg.cholesky(np.eye(3) + 0.5), np.array([[1.5, 0.0], [0.2, 1.0]])
    >>> bool(np.allclose(reference.logpdf_chol(x, None, lu, lv), fm.logpdf_chol(x, None, lu, lv)))
    True
    """
    rowchol, colchol = _factor(rowchol, lower), _factor(colchol, lower)
    d = np.asarray(x, dtype=float) - (0.0 if mean is None else np.asarray(mean, dtype=float))
    n, p = d.shape[-2:]
    return -0.5 * (n * p * np.log(2 * np.pi) + p * _logdet_factor(rowchol) + n * _logdet_factor(colchol)
                   + _whitened_norm2(d, rowchol, colchol))


@_docs.filled("logpdf", keywords=[])
def logpdf(x: ArrayLike, mean: ArrayLike | None, rowcov: ArrayLike, colcov: ArrayLike) -> Result:
    """Log-density of the matrix normal ``MN(mean, rowcov, colcov)`` at ``x``.

    :func:`logpdf_chol` of the factors of :func:`cholesky` (only the lower triangles of the
    covariances are read).

    %(parameters)s

    Returns
    -------
    logpdf : (...) ndarray or scalar
        The log-densities over the broadcast batch shape; float64, also for float32 input.

    Raises
    ------
    numpy.linalg.LinAlgError
        As in :func:`cholesky`, for ``rowcov`` or ``colcov``.

    See Also
    --------
    fastmvn.logpdf : the compiled function.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> from fastmvn import reference
    >>> from scipy.stats import matrix_normal
    >>> x = np.random.default_rng(0).standard_normal((100, 3, 2))
    >>> u, v = np.eye(3) + 0.5, np.array([[2.0, 0.3], [0.3, 1.0]])
    >>> logpdf = reference.logpdf(x, None, u, v)
    >>> bool(np.allclose(logpdf, matrix_normal(None, u, v).logpdf(x)))
    True
    >>> bool(np.allclose(logpdf, fm.logpdf(x, None, u, v)))
    True
    """
    return logpdf_chol(x, mean, cholesky(rowcov), cholesky(colcov))


@_docs.filled("pdf_chol", keywords=["lower"])
def pdf_chol(x: ArrayLike, mean: ArrayLike | None, rowchol: ArrayLike, colchol: ArrayLike, *,
             lower: bool = True) -> Result:
    """Density of the matrix normal ``MN(mean, L_U L_Uᵀ, L_V L_Vᵀ)`` at ``x`` from Cholesky factors.

    ``exp`` of :func:`logpdf_chol`.

    %(parameters)s

    Returns
    -------
    pdf : (...) ndarray or scalar
        The densities over the broadcast batch shape; float64, also for float32 input.

    Raises
    ------
    numpy.linalg.LinAlgError
        A factor's diagonal is not positive.

    See Also
    --------
    fastmvn.pdf_chol : the compiled function.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> from fastmvn import reference
    >>> x = np.random.default_rng(0).standard_normal((100, 3, 2))
    >>> lu, lv = np.linalg.cholesky(np.eye(3) + 0.5), np.array([[1.5, 0.0], [0.2, 1.0]])
    >>> bool(np.allclose(reference.pdf_chol(x, None, lu, lv), fm.pdf_chol(x, None, lu, lv)))
    True
    """
    return np.exp(logpdf_chol(x, mean, rowchol, colchol, lower=lower))


@_docs.filled("pdf", keywords=[])
def pdf(x: ArrayLike, mean: ArrayLike | None, rowcov: ArrayLike, colcov: ArrayLike) -> Result:
    """Density of the matrix normal ``MN(mean, rowcov, colcov)`` at ``x``.

    ``exp`` of :func:`logpdf`.

    %(parameters)s

    Returns
    -------
    pdf : (...) ndarray or scalar
        The densities over the broadcast batch shape; float64, also for float32 input.

    Raises
    ------
    numpy.linalg.LinAlgError
        As in :func:`cholesky`, for ``rowcov`` or ``colcov``.

    See Also
    --------
    fastmvn.pdf : the compiled function.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmvn import reference
    >>> from scipy.stats import matrix_normal
    >>> x = np.random.default_rng(0).standard_normal((100, 3, 2))
    >>> u, v = np.eye(3) + 0.5, np.array([[2.0, 0.3], [0.3, 1.0]])
    >>> bool(np.allclose(reference.pdf(x, None, u, v), matrix_normal(None, u, v).pdf(x)))
    True
    """
    return np.exp(logpdf(x, mean, rowcov, colcov))


@_docs.filled("entropy_chol", keywords=["lower"])
def entropy_chol(rowchol: ArrayLike, colchol: ArrayLike, *, lower: bool = True) -> Result:
    """Differential entropy of the matrix normal given by Cholesky factors.

    ``½[np(1 + log 2π) + n log|V| + p log|U|]`` with ``log|U| = 2 Σ log diag L_U``, or from
    upper factors (``U = Rᵀ R``) given ``lower=False``.

    %(parameters)s

    Returns
    -------
    entropy : (...) ndarray or scalar
        The entropies (in nats) over the broadcast batch shape; float64, also for float32 input.

    Raises
    ------
    numpy.linalg.LinAlgError
        A factor's diagonal is not positive.

    See Also
    --------
    fastmvn.entropy_chol : the compiled function.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> from fastmvn import reference
    >>> lu, lv = np.linalg.cholesky(np.eye(3) + 0.5), np.array([[1.5, 0.0], [0.2, 1.0]])
    >>> h = reference.entropy_chol(lu, lv)
    >>> bool(np.isclose(h, fm.entropy_chol(lu, lv)))
    True
    >>> bool(np.isclose(h, reference.entropy(lu @ lu.T, lv @ lv.T)))
    True
    """
    n, p = np.shape(rowchol)[-1], np.shape(colchol)[-1]
    return 0.5 * (n * p * (1.0 + np.log(2 * np.pi)) + n * _logdet_factor(_factor(colchol, lower))
                  + p * _logdet_factor(_factor(rowchol, lower)))


@_docs.filled("entropy", keywords=[])
def entropy(rowcov: ArrayLike, colcov: ArrayLike) -> Result:
    """Differential entropy of the matrix normal ``MN(M, rowcov, colcov)`` (any ``M``).

    :func:`entropy_chol` of the factors of :func:`cholesky` (only the lower triangles of the
    covariances are read).

    %(parameters)s

    Returns
    -------
    entropy : (...) ndarray or scalar
        The entropies (in nats) over the broadcast batch shape; float64, also for float32 input.

    Raises
    ------
    numpy.linalg.LinAlgError
        As in :func:`cholesky`, for ``rowcov`` or ``colcov``.

    See Also
    --------
    fastmvn.entropy : the compiled function.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmvn import reference
    >>> from scipy.stats import matrix_normal
    >>> u, v = 2 * np.eye(2), np.eye(3) + 0.5
    >>> bool(np.isclose(reference.entropy(u, v), matrix_normal(None, u, v).entropy()))
    True
    """
    return entropy_chol(cholesky(rowcov), cholesky(colcov))


def _difference(x, mean):
    """``X − M`` in float64; ``mean=None`` means zero."""
    return np.asarray(x, dtype=float) - (0.0 if mean is None else np.asarray(mean, dtype=float))


def _positive(*variances: ArrayLike) -> list[FloatArray]:
    """The variances in float64, after checking that they are positive (NaN fails)."""
    arrays = [np.asarray(v, dtype=float) for v in variances]
    if any(np.any(~(a > 0)) for a in arrays):
        raise np.linalg.LinAlgError("variances must be positive")
    return arrays


@_docs.shared
def logpdf_diag(x: ArrayLike, mean: ArrayLike | None, rowvar: ArrayLike, colvar: ArrayLike) -> Result:
    """Log-density of the matrix normal ``MN(mean, diag(rowvar), diag(colvar))`` at ``x``.

    ``−½[np log 2π + p Σ log a + n Σ log b + Σ_ij D_ij² / (a_i b_j)]``, ``D = X − M``,
    ``a = rowvar``, ``b = colvar``.

    Parameters
    ----------
    %(density_at)s
    %(diag_variances)s

    Returns
    -------
    logpdf : (...) ndarray or scalar
        The log-densities over the broadcast batch shape; float64, also for float32 input.

    Raises
    ------
    numpy.linalg.LinAlgError
        A variance is not positive (or is NaN).

    See Also
    --------
    fastmvn.logpdf_diag : the compiled function.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> from fastmvn import reference
    >>> x = np.random.default_rng(0).standard_normal((100, 3, 2))
    >>> a, b = np.array([1.0, 2.0, 0.5]), np.array([0.5, 4.0])
    >>> logpdf = reference.logpdf_diag(x, None, a, b)
    >>> bool(np.allclose(logpdf, fm.logpdf_diag(x, None, a, b)))
    True
    >>> bool(np.allclose(logpdf, reference.logpdf(x, None, np.diag(a), np.diag(b))))
    True
    """
    a, b = _positive(rowvar, colvar)
    d = _difference(x, mean)
    n, p = d.shape[-2:]
    quad = np.einsum("...ij,...ij->...", d / a[..., :, None] / b[..., None, :], d)
    return -0.5 * (n * p * np.log(2 * np.pi) + p * np.log(a).sum(axis=-1) + n * np.log(b).sum(axis=-1) + quad)


@_docs.shared
def entropy_diag(rowvar: ArrayLike, colvar: ArrayLike) -> Result:
    """Differential entropy of the matrix normal ``MN(M, diag(rowvar), diag(colvar))``.

    ``½[np(1 + log 2π) + n Σ log b + p Σ log a]`` with ``a = rowvar``, ``b = colvar``.

    Parameters
    ----------
    %(diag_variances)s

    Returns
    -------
    entropy : (...) ndarray or scalar
        The entropies (in nats) over the broadcast batch shape; float64, also for float32 input.

    Raises
    ------
    numpy.linalg.LinAlgError
        A variance is not positive (or is NaN).

    See Also
    --------
    fastmvn.entropy_diag : the compiled function.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> from fastmvn import reference
    >>> a, b = np.array([1.0, 2.0]), np.array([0.5, 1.0, 4.0])
    >>> h = reference.entropy_diag(a, b)
    >>> bool(np.isclose(h, fm.entropy_diag(a, b)))
    True
    >>> bool(np.isclose(h, reference.entropy(np.diag(a), np.diag(b))))
    True
    """
    a, b = _positive(rowvar, colvar)
    n, p = a.shape[-1], b.shape[-1]
    return 0.5 * (n * p * (1.0 + np.log(2 * np.pi)) + n * np.log(b).sum(axis=-1) + p * np.log(a).sum(axis=-1))


@_docs.shared
def logpdf_prec(x: ArrayLike, mean: ArrayLike | None, rowprec: ArrayLike, colprec: ArrayLike) -> Result:
    """Log-density of the matrix normal ``MN(mean, rowprec⁻¹, colprec⁻¹)`` at ``x`` from precisions.

    By the dense precision of ``vec X``, ``Ω = colprec ⊗ rowprec`` (``(np, np)``; lower
    triangles read): ``−½[np log 2π − log|Ω| + vec(D)ᵀ Ω vec(D)]``, ``D = X − M``, with
    ``Ω = L Lᵀ`` so that ``vec(D)ᵀ Ω vec(D) = ‖Lᵀ vec D‖²``; nothing is inverted.

    Parameters
    ----------
    %(density_at)s
    rowprec : (..., n, n) array_like
        Row precisions ``U⁻¹`` (symmetric positive definite).
    colprec : (..., p, p) array_like
        Column precisions ``V⁻¹`` (symmetric positive definite).

    Returns
    -------
    logpdf : (...) ndarray or scalar
        The log-densities over the broadcast batch shape; float64, also for float32 input.

    Raises
    ------
    numpy.linalg.LinAlgError
        As in :func:`cholesky`, for ``Ω``.

    See Also
    --------
    fastmvn.logpdf_prec : the compiled function.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> from fastmvn import reference
    >>> x = np.random.default_rng(0).standard_normal((100, 2, 3))
    >>> omega_u, omega_v = np.array([[2.0, 0.5], [0.5, 1.0]]), np.eye(3) + 0.5
    >>> logpdf = reference.logpdf_prec(x, None, omega_u, omega_v)
    >>> bool(np.allclose(logpdf, fm.logpdf_prec(x, None, omega_u, omega_v)))
    True
    >>> bool(np.allclose(logpdf, reference.logpdf(x, None, np.linalg.inv(omega_u), np.linalg.inv(omega_v))))
    True
    """
    precision = _kron(_symmetric(colprec), _symmetric(rowprec))
    chol = cholesky(precision)
    d = _difference(x, mean)
    size = d.shape[-2] * d.shape[-1]
    vec_d = np.swapaxes(d, -1, -2).reshape(d.shape[:-2] + (size, 1))
    return -0.5 * (size * np.log(2 * np.pi) - _logdet_factor(chol)
                   + _frobenius2(np.swapaxes(chol, -1, -2) @ vec_d))


@_docs.filled("kl_chol", keywords=["lower"])
def kl_chol(mean1: ArrayLike, rowchol1: ArrayLike, colchol1: ArrayLike, mean2: ArrayLike | None = None,
            rowchol2: ArrayLike | None = None, colchol2: ArrayLike | None = None, *, lower: bool = True) -> Result:
    """KL divergence between matrix normals given by Cholesky factors.

    :func:`kl` with ``U = L_U L_Uᵀ`` and ``V = L_V L_Vᵀ``:
    ``½[‖L_U2⁻¹ L_U1‖_F² ‖L_V2⁻¹ L_V1‖_F² + ‖L_U2⁻¹ D L_V2⁻ᵀ‖_F² − np
    + p log(|U2|/|U1|) + n log(|V2|/|V1|)]``, ``D = M2 − M1``. The factors are lower
    triangular (lower triangles read), or upper ones with ``lower=False`` (upper triangles
    read).

    %(parameters)s

    Returns
    -------
    kl : (...) ndarray or scalar
        The divergences over the broadcast batch shape; float64, also for float32 input.

    Raises
    ------
    numpy.linalg.LinAlgError
        A factor's diagonal is not positive.

    See Also
    --------
    fastmvn.kl_chol : the compiled function.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> from fastmvn import reference
    >>> mean = np.random.default_rng(0).standard_normal((100, 3, 2))
    >>> lu, lv = np.linalg.cholesky(np.eye(3) + 0.5), np.array([[1.5, 0.0], [0.2, 1.0]])
    >>> kl = reference.kl_chol(mean, lu, lv)                    # each against MN(0, I, I)
    >>> bool(np.allclose(kl, fm.kl_chol(mean, lu, lv)))
    True
    >>> bool(np.allclose(kl, reference.kl_chol(mean, lu.T, lv.T, lower=False)))
    True
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


@_docs.filled("kl", keywords=[])
def kl(mean1: ArrayLike, rowcov1: ArrayLike, colcov1: ArrayLike, mean2: ArrayLike | None = None,
       rowcov2: ArrayLike | None = None, colcov2: ArrayLike | None = None) -> Result:
    """KL divergence ``KL(MN(mean1, rowcov1, colcov1) ‖ MN(mean2, rowcov2, colcov2))``.

    :func:`kl_chol` of the factors of :func:`cholesky` (only the lower triangles of the
    covariances are read).

    %(parameters)s

    Returns
    -------
    kl : (...) ndarray or scalar
        The divergences over the broadcast batch shape; float64, also for float32 input.

    Raises
    ------
    numpy.linalg.LinAlgError
        As in :func:`cholesky`, for a covariance.

    See Also
    --------
    fastmvn.kl : the compiled function.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> from fastmvn import reference
    >>> mean = np.random.default_rng(0).standard_normal((100, 3, 2))
    >>> u, v = np.eye(3) + 0.5, np.array([[2.0, 0.3], [0.3, 1.0]])
    >>> bool(np.allclose(reference.kl(mean, u, v), fm.kl(mean, u, v)))    # each against MN(0, I, I)
    True
    >>> abs(reference.kl(mean[0], 2 * u, v, mean[0], u, 2 * v)) < 1e-12    # (2U, V) is (U, 2V)
    np.True_
    """
    def factor(cov):
        return None if cov is None else cholesky(cov)

    return kl_chol(mean1, factor(rowcov1), factor(colcov1), mean2, factor(rowcov2), factor(colcov2))


@_docs.filled("kl_diag", keywords=[])
def kl_diag(mean1: ArrayLike, rowvar1: ArrayLike, colvar1: ArrayLike, mean2: ArrayLike | None = None,
            rowvar2: ArrayLike | None = None, colvar2: ArrayLike | None = None) -> Result:
    """KL divergence between matrix normals with diagonal covariances ``diag(rowvar)``, ``diag(colvar)``.

    :func:`kl` with ``U = diag(a)``, ``V = diag(b)``: every term a sum over the variances.
    Each ``log(a2/a1)`` is the logarithm of the ratio, accurate where the variances are
    close, or ``log a2 − log a1`` where the ratio leaves the range of floats.

    %(parameters)s

    Returns
    -------
    kl : (...) ndarray or scalar
        The divergences over the broadcast batch shape; float64, also for float32 input.

    Raises
    ------
    numpy.linalg.LinAlgError
        A variance is not positive.

    See Also
    --------
    fastmvn.kl_diag : the compiled function.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> from fastmvn import reference
    >>> mean = np.random.default_rng(0).standard_normal((100, 3, 2))
    >>> a, b = np.array([1.0, 2.0, 0.5]), np.array([0.5, 4.0])
    >>> kl = reference.kl_diag(mean, a, b)                      # each against MN(0, I, I)
    >>> bool(np.allclose(kl, fm.kl_diag(mean, a, b)))
    True
    >>> bool(np.allclose(kl, reference.kl(mean, np.diag(a), np.diag(b))))
    True
    """
    mean1 = np.asarray(mean1, dtype=float)
    n, p = mean1.shape[-2:]
    rowvar1, colvar1 = np.asarray(rowvar1, dtype=float), np.asarray(colvar1, dtype=float)
    rowvar2 = np.ones(n) if rowvar2 is None else np.asarray(rowvar2, dtype=float)
    colvar2 = np.ones(p) if colvar2 is None else np.asarray(colvar2, dtype=float)
    rowvar1, colvar1, rowvar2, colvar2 = _positive(rowvar1, colvar1, rowvar2, colvar2)
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
    """KL divergence between matrix Gaussians ``N(vec mean1, cov1) ‖ N(vec mean2, cov2)``.

    The multivariate-normal KL on column-major ``vec``,
    ``½[tr(Σ2⁻¹Σ1) + vec(D)ᵀ Σ2⁻¹ vec(D) − np + log|Σ2| − log|Σ1|]``, ``D = M2 − M1``, from the
    factors of :func:`cholesky` (only the lower triangles of the covariances are read).
    The specification of ``fastmvn.kl_full``, and of ``fastmvn.kl_gaussian`` for two
    ``MatrixGaussian`` given their ``mean`` and ``cov``.

    Parameters
    ----------
    mean1 : (..., n, p) array_like
        Mean of the first distribution.
    cov1 : (..., np, np) array_like
        Covariance of column-major ``vec X`` under the first distribution (symmetric
        positive definite).
    mean2 : (..., n, p) array_like, optional
        Mean of the second distribution; ``None`` means zero.
    cov2 : (..., np, np) array_like, optional
        Covariance of the second distribution; ``None`` means the identity.

    Returns
    -------
    kl : (...) ndarray or scalar
        The divergences over the broadcast batch shape; float64, also for float32 input.

    Raises
    ------
    numpy.linalg.LinAlgError
        As in :func:`cholesky`, for ``cov1`` or ``cov2``.

    See Also
    --------
    fastmvn.kl_full : the compiled function.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> from fastmvn import reference
    >>> mean = np.random.default_rng(0).standard_normal((100, 3, 2))
    >>> u, v = np.eye(3) + 0.5, np.array([[2.0, 0.3], [0.3, 1.0]])
    >>> kl = reference.kl_full(mean, np.kron(v, u))             # a matrix normal's V⊗U
    >>> bool(np.allclose(kl, fm.kl_full(mean, np.kron(v, u))))
    True
    >>> bool(np.allclose(kl, reference.kl(mean, u, v)))
    True
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
    """The dense covariance ``V⊗U + B⊗A`` of column-major ``vec X`` for the Kronecker-sum normal.

    Entry ``[i + n·j, k + n·l]`` is ``V_jl U_ik + B_jl A_ik``; the lower triangles of the
    matrices are read.

    Parameters
    ----------
    rowcov : (..., n, n) array_like
        Row covariances ``U`` of the signal.
    colcov : (..., p, p) array_like
        Column covariances ``V`` of the signal.
    noise_rowcov : (..., n, n) array_like or float
        Row covariances ``A`` of the noise, or a scalar ``σ²`` for ``σ² I``.
    noise_colcov : (..., p, p) array_like or float, optional
        Column covariances ``B`` of the noise, or a scalar ``τ²`` for ``τ² I``; ``None``
        means the identity.

    Returns
    -------
    cov : (..., np, np) ndarray
        The covariances over the broadcast batch shape; float64, also for float32 input.

    See Also
    --------
    logpdf_kron_sum, kl_kron_sum : the specifications built on it.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmvn import reference
    >>> u, v = np.eye(3) + 0.5, np.array([[2.0, 0.3], [0.3, 1.0]])
    >>> cov = reference.kron_sum_cov(u, v, 0.1)
    >>> cov.shape, bool(np.allclose(cov, np.kron(v, u) + 0.1 * np.eye(6)))
    ((6, 6), True)
    """
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


@_docs.shared
def logpdf_kron_sum(x: ArrayLike, mean: ArrayLike | None, rowcov: ArrayLike, colcov: ArrayLike,
                    noise_rowcov: ArrayLike | float, noise_colcov: ArrayLike | None = None) -> Result:
    """Log-density of ``vec X ~ N(vec M, V⊗U + B⊗A)`` at ``x``.

    By the dense ``np×np`` covariance (:func:`kron_sum_cov`), its Cholesky factor
    (:func:`cholesky`) and :func:`logpdf_chol` on ``np×1`` matrices.

    Parameters
    ----------
    %(kron_sum)s

    Returns
    -------
    logpdf : (...) ndarray or scalar
        The log-densities over the broadcast batch shape; float64, also for float32 input.

    Raises
    ------
    numpy.linalg.LinAlgError
        As in :func:`cholesky`, for the dense covariance ``V⊗U + B⊗A``.

    See Also
    --------
    fastmvn.logpdf_kron_sum : the compiled function.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> from fastmvn import reference
    >>> from scipy.stats import multivariate_normal
    >>> x = np.random.default_rng(0).standard_normal((100, 3, 2))
    >>> u, v = np.eye(3) + 0.5, np.ones((2, 2))                 # a signal of rank 1
    >>> logpdf = reference.logpdf_kron_sum(x, None, u, v, 0.1)
    >>> bool(np.allclose(logpdf, fm.logpdf_kron_sum(x, None, u, v, 0.1)))
    True
    >>> vec_x = np.swapaxes(x, -1, -2).reshape(100, 6)
    >>> bool(np.allclose(logpdf, multivariate_normal(None, np.kron(v, u) + 0.1 * np.eye(6)).logpdf(vec_x)))
    True
    """
    x = np.asarray(x, dtype=float)
    mean = np.zeros(x.shape[-2:]) if mean is None else mean
    cov = kron_sum_cov(rowcov, colcov, noise_rowcov, noise_colcov)
    return logpdf_chol(_vec_column(x), _vec_column(mean), cholesky(cov), np.ones((1, 1)))


@_docs.shared
def kl_kron_sum(mean1: ArrayLike | None, rowcov1: ArrayLike, colcov1: ArrayLike, noise_rowcov1: ArrayLike | float,
                noise_colcov1: ArrayLike | None, mean2: ArrayLike | None, rowcov2: ArrayLike, colcov2: ArrayLike,
                noise_rowcov2: ArrayLike | float, noise_colcov2: ArrayLike | None) -> Result:
    """KL divergence between Kronecker-sum normals ``N(vec M₁, Σ₁) ‖ N(vec M₂, Σ₂)``.

    ``Σ = V⊗U + B⊗A`` of each, by their dense covariances (:func:`kron_sum_cov`) and
    :func:`kl_full`.

    Parameters
    ----------
    %(kron_sum_pair)s

    Returns
    -------
    kl : (...) ndarray or scalar
        The divergences over the broadcast batch shape; float64, also for float32 input.

    Raises
    ------
    numpy.linalg.LinAlgError
        As in :func:`cholesky`, for a dense covariance.

    See Also
    --------
    fastmvn.kl_kron_sum : the compiled function.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> from fastmvn import reference
    >>> mean = np.random.default_rng(0).standard_normal((100, 3, 2))
    >>> u, v = np.eye(3) + 0.5, np.ones((2, 2))
    >>> args = (mean, u, v, 0.1, None, None, np.eye(3), np.eye(2), 1.0, None)
    >>> bool(np.allclose(reference.kl_kron_sum(*args), fm.kl_kron_sum(*args)))
    True
    >>> bool(np.allclose(reference.kl_kron_sum(*args),
    ...                  reference.kl_full(mean, reference.kron_sum_cov(u, v, 0.1), None, 2 * np.eye(6))))
    True
    """
    n, p = np.shape(rowcov1)[-1], np.shape(colcov1)[-1]
    mean1 = np.zeros((n, p)) if mean1 is None else mean1
    return kl_full(mean1, kron_sum_cov(rowcov1, colcov1, noise_rowcov1, noise_colcov1), mean2,
                   kron_sum_cov(rowcov2, colcov2, noise_rowcov2, noise_colcov2))
