"""The matrix normal as functions of its parameters, batched: :func:`pdf`, :func:`pdf_chol`,
:func:`entropy`, :func:`entropy_chol` and :func:`rvs`; the same for diagonal covariances
(:func:`entropy_diag`, :func:`rvs_diag`; :func:`fastmvn.logpdf_diag` is a kernel of
:mod:`fastmvn._api`) and the log-density from precisions (:func:`logpdf_prec`); with the
checks and factorisation of the parameters (:func:`_checked`) that
:class:`~fastmvn.MatrixNormal` shares.

Densities and entropies from covariances and factors go through the compiled kernels of
:mod:`fastmvn._api`; those from variances and precisions, and sampling, are NumPy on the
whole batch at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.linalg import LinAlgError

from .._api import logdet, logpdf, logpdf_chol
from .._arguments import COV, MEAN, VAR, Arg, bind, check, check_errors, check_out
from .._batch import slot, working_dtype
from .._docs import filled, shared
from .._reports import diagnose
from .._table import FUNCTIONS
from ._base import _ENTROPY_PER_ENTRY, _exp, _factor, _failing, _first, _nonfinite, _not_pd, _report, _sample_shape

if TYPE_CHECKING:
    from .._typing import ArrayLike, Errors, FloatArray, Result, Seed, Size

__all__ = ["pdf", "pdf_chol", "entropy", "entropy_chol", "rvs", "entropy_diag", "rvs_diag", "logpdf_prec"]


_LOG_2PI = float(np.log(2.0 * np.pi))


def _deliver(value, dtype, out):
    """``value`` as the public result: written into ``out``, or an array of ``dtype`` (a scalar when 0-d)."""
    if out is not None:
        out[...] = value
        return out
    value = np.asarray(value, dtype=dtype)
    return value if value.ndim else value[()]


# Densities and entropy ------------------------------------------------------------------


@filled("pdf")
def pdf(x: ArrayLike, mean: ArrayLike | None, rowcov: ArrayLike, colcov: ArrayLike, *, out: FloatArray | None = None,
        errors: Errors = "raise") -> Result:
    """Density of the matrix normal ``MN(mean, rowcov, colcov)`` at ``x``, batched.

    ``exp`` of :func:`fastmvn.logpdf`; see there for the formula and conventions. A density
    too large for the result dtype fails its item (``FloatingPointError`` naming the batch
    index, or NaN with ``errors="nan"``).

    %(parameters)s

    Returns
    -------
    pdf : (...) ndarray or scalar
        The densities over the broadcast batch shape.

    Raises
    ------
    %(raises_cov)s
    %(raises_input)s
    %(raises_density)s

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> from scipy.stats import matrix_normal
    >>> x, u, v = np.ones((2, 3)), 2 * np.eye(2), np.eye(3)
    >>> bool(np.isclose(fm.pdf(x, None, u, v), matrix_normal(None, u, v).pdf(x)))
    True
    """
    return _exp(logpdf(x, mean, rowcov, colcov, out=out, errors=errors), errors)


@filled("pdf_chol")
def pdf_chol(x: ArrayLike, mean: ArrayLike | None, rowchol: ArrayLike, colchol: ArrayLike, *,
             out: FloatArray | None = None, errors: Errors = "raise", lower: bool = True) -> Result:
    """Density of the matrix normal given by Cholesky factors, batched.

    ``exp`` of :func:`fastmvn.logpdf_chol`, with ``U = rowchol @ rowchol.T`` and
    ``V = colchol @ colchol.T``. A density too large for the result dtype fails its item,
    as in :func:`pdf`.

    %(parameters)s

    Returns
    -------
    pdf : (...) ndarray or scalar
        The densities over the broadcast batch shape.

    Raises
    ------
    %(raises_chol)s
    %(raises_input)s
    %(raises_density)s

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> L = np.array([[1.0, 0.0], [0.5, 2.0]])
    >>> bool(np.isclose(fm.pdf_chol(np.ones((2, 2)), None, L, np.eye(2)),
    ...                 fm.pdf(np.ones((2, 2)), None, L @ L.T, np.eye(2))))
    True
    """
    return _exp(logpdf_chol(x, mean, rowchol, colchol, out=out, errors=errors, lower=lower), errors)


def _factor_logdet(chol):
    """``log|L Lᵀ|`` from the diagonal of each factor; NaN where the lower triangle is not
    finite or the diagonal not positive."""
    chol = np.asarray(chol, dtype=np.float64)
    diagonal = np.diagonal(chol, axis1=-2, axis2=-1)
    valid = (diagonal > 0).all(axis=-1) & np.isfinite(np.tril(chol)).all(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 2.0 * np.log(diagonal).sum(axis=-1)
    return np.where(valid, value, np.nan)


def _entropy(args, logdet_of, out, errors):
    """``½[np(1 + log 2π) + n log|V| + p log|U|]`` from the log-determinants of the two
    arguments (NaN marks a failed item), each taken in the result dtype, reported like the
    core functions."""
    check_errors(errors)
    dtype, batch_shape = check(args)
    check_out(out, dtype, batch_shape)
    n, p = (arg.array.shape[-1] for arg in args)
    logdet_row, logdet_col = (np.asarray(logdet_of(np.asarray(arg.array, dtype)), dtype=np.float64) for arg in args)
    value = np.asarray(0.5 * (n * p * _ENTROPY_PER_ENTRY + n * logdet_col + p * logdet_row))
    failed = np.isnan(value)
    if errors == "raise" and failed.any():
        slots, index = [slot(arg, dtype, batch_shape) for arg in args], _first(failed)
        raise diagnose(args, [s[index] for s in slots], index, working_dtype(slots))
    return _deliver(value, dtype, out)


@filled("entropy")
def entropy(rowcov: ArrayLike, colcov: ArrayLike, *, out: FloatArray | None = None, errors: Errors = "raise") -> Result:
    r"""Differential entropy of the matrix normal ``MN(M, rowcov, colcov)``, batched.

    .. math::

        H = \tfrac12\big[np(1 + \log 2\pi) + n\log|V| + p\log|U|\big],

    the entropy of ``N(vec M, V⊗U)``; it does not depend on the mean. The log-determinants
    come from :func:`fastmvn.logdet` (only the lower triangles are read).

    %(parameters)s

    Returns
    -------
    entropy : (...) ndarray or scalar
        The entropies (in nats) over the broadcast batch shape of ``rowcov`` and ``colcov``.

    Raises
    ------
    %(raises_cov)s
    %(raises_input)s

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> from scipy.stats import matrix_normal
    >>> u, v = 2 * np.eye(2), np.eye(3) + 0.5
    >>> bool(np.isclose(fm.entropy(u, v), matrix_normal(None, u, v).entropy()))
    True
    >>> fm.entropy(np.eye(2) * [[[1.0]], [[2.0]]], np.eye(3)).shape
    (2,)
    """
    args, _ = bind(FUNCTIONS["entropy"], (rowcov, colcov))
    return _entropy(args, lambda a: logdet(a, errors="nan"), out, errors)


@filled("entropy_chol")
def entropy_chol(rowchol: ArrayLike, colchol: ArrayLike, *, out: FloatArray | None = None, errors: Errors = "raise",
                 lower: bool = True) -> Result:
    """Differential entropy of the matrix normal given by Cholesky factors, batched.

    The same as :func:`entropy` with ``U = rowchol @ rowchol.T`` and ``V = colchol @ colchol.T``:
    ``log|U| = 2 Σ log diag(rowchol)``, so nothing is factorised. The lower triangles (the
    upper ones with ``lower=False``) must be finite and the diagonals positive.

    %(parameters)s

    Returns
    -------
    entropy : (...) ndarray or scalar
        The entropies over the broadcast batch shape of ``rowchol`` and ``colchol``.

    Raises
    ------
    %(raises_chol)s
    %(raises_input)s

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> L = np.array([[1.0, 0.0], [0.5, 2.0]])
    >>> bool(np.isclose(fm.entropy_chol(L, np.eye(3)), fm.entropy(L @ L.T, np.eye(3))))
    True
    """
    args, _ = bind(FUNCTIONS["entropy_chol"], (rowchol, colchol), lower=lower)
    return _entropy(args, _factor_logdet, out, errors)


# Sampling -------------------------------------------------------------------------------


def _sample(mean, rowchol, colchol, size, random_state, dtype, batch_shape, out=None, failing=None, diagonal=False):
    """``M + A Z Bᵀ`` with ``Z`` standard normal of shape ``size + batch_shape + (n, p)``,
    in float64, returned as ``dtype``, or written into ``out`` and returned (checked before
    anything is drawn); the draws of the items in ``failing`` (a mask over ``batch_shape``) are NaN.

    With ``diagonal``, ``rowchol`` and ``colchol`` are the square roots ``a``, ``b`` of
    variances, shaped ``(..., n, 1)`` and ``(..., 1, p)``: then ``M + (a Z) b``, the same
    numbers as the products with the diagonal factors."""
    shape = _sample_shape(size) + batch_shape + mean.shape[-2:]
    check_out(out, dtype, shape)
    rng = np.random.default_rng(random_state)
    z = rng.standard_normal(shape)
    if diagonal:
        samples = mean + rowchol * z * colchol
    else:
        samples = mean + rowchol @ z @ np.swapaxes(colchol, -1, -2)
    if failing is not None:
        np.copyto(samples, np.nan, where=failing[..., None, None])
    if out is None:
        return samples.astype(dtype, copy=False)
    out[...] = samples
    return out


def rvs(mean: ArrayLike, rowcov: ArrayLike, colcov: ArrayLike, size: Size = None, random_state: Seed = None, *,
        errors: Errors = "raise", out: FloatArray | None = None) -> FloatArray:
    """Random draws from the matrix normal ``MN(mean, rowcov, colcov)``, batched.

    ``X = M + A Z Bᵀ`` with ``A``, ``B`` the lower Cholesky factors of ``rowcov`` and
    ``colcov`` (by ``numpy.linalg.cholesky``, lower triangles read) and ``Z`` standard
    normal, drawn in float64 in the C order of the result, so one seed gives the same
    draws for float32 and float64 input.

    Parameters
    ----------
    mean : (..., n, p) array_like
        Means ``M``.
    rowcov : (..., n, n) array_like
        Row covariances ``U`` (symmetric positive definite).
    colcov : (..., p, p) array_like
        Column covariances ``V`` (symmetric positive definite).
    size : int or tuple of ints, optional
        Sample axes put in front of the broadcast batch shape; ``None`` (default) adds none.
    random_state : numpy.random.Generator, int or None
        A generator (which is advanced), a seed, or ``None`` for fresh entropy; passed to
        ``numpy.random.default_rng``.
    errors : {"raise", "nan"}
        ``"raise"`` (default) raises on the first failing item; ``"nan"`` fills the draws
        of each failing item with NaN.
    out : ``(*size, ..., n, p)`` ndarray, optional
        Array of the samples' shape and dtype to write the draws into (the same numbers as
        without it); it is returned.

    Returns
    -------
    samples : ``(*size, ..., n, p)`` ndarray
        float32 when every input is float32, float64 otherwise; ``out`` where given.

    Raises
    ------
    numpy.linalg.LinAlgError
        A covariance is not positive definite; names the argument and batch index.
    ValueError
        NaN or infinity in an input (names the argument and batch index); shapes that do
        not fit (names the shapes); ``out`` of another shape, or read-only.
    TypeError
        ``out`` of another dtype than the samples'.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> x = fm.rvs(np.zeros((3, 2)), np.eye(3), 2 * np.eye(2), size=(1000, 5), random_state=0)
    >>> x.shape
    (1000, 5, 3, 2)
    >>> bool(np.array_equal(x, fm.rvs(np.zeros((3, 2)), np.eye(3), 2 * np.eye(2), (1000, 5), 0)))
    True
    >>> buffer = np.empty((1000, 5, 3, 2))
    >>> fm.rvs(np.zeros((3, 2)), np.eye(3), 2 * np.eye(2), (1000, 5), 0, out=buffer) is buffer
    True
    """
    check_errors(errors)
    (mean_arg, _, _), rowchol, colchol, dtype, batch_shape, failing = _checked(mean, rowcov, colcov, COV, errors)
    return _sample(np.asarray(mean_arg.array, dtype=np.float64), rowchol, colchol, size, random_state, dtype,
                   batch_shape, out, failing)


# Diagonal covariances and precisions ----------------------------------------------------


def _point_args(x, mean, row, col):
    """The arguments ``[x, mean, row, col]`` of a density at points ``x``: ``row`` and ``col``
    as ``(name, kind, value, axes)``; a ``mean`` of None is a zero mean that does not decide
    the result dtype."""
    x_arg = Arg("x", MEAN, x, "np")
    if mean is None:
        mean_arg = Arg("mean", MEAN, np.zeros(x_arg.core_shape), "np", default=True)
    else:
        mean_arg = Arg("mean", MEAN, mean, "np")
    return [x_arg, mean_arg, Arg(*row), Arg(*col)]


def _nonfinite_failures(args):
    """The failures of :func:`_report` for NaN or infinity in ``args``."""
    return [(_nonfinite(arg), ValueError, f"{arg.name} contains NaN or infinity") for arg in args]


def _variances(args):
    """The float64 variances of the arguments ``args`` and their failures (not positive)."""
    variances = [np.asarray(arg.array, dtype=np.float64) for arg in args]
    with np.errstate(invalid="ignore"):
        failures = [(~(v > 0).all(axis=-1), LinAlgError, f"{arg.name} must be positive")
                    for v, arg in zip(variances, args)]
    return variances, failures


def _finish(value, failures, dtype, batch_shape, out, errors):
    """The public result of a function computed in NumPy: ``value`` (float64, broadcast to
    ``batch_shape``) in ``dtype``, with the items of ``failures`` (as for :func:`_report`)
    and those that overflow failed by ``errors``, written into ``out`` where given."""
    with np.errstate(over="ignore", invalid="ignore"):
        result = np.array(np.broadcast_to(value, batch_shape), dtype=dtype)
    if not failures and np.isfinite(result).all():  # nothing to report
        return _deliver(result, dtype, out)
    failing = _failing([mask for mask, _, _ in failures], batch_shape)
    overflow = ~np.isfinite(result) & ~failing
    if errors == "raise":
        _report(failures + [(overflow, FloatingPointError, "the result overflowed")], batch_shape)
    result[failing | overflow] = np.nan
    return _deliver(result, dtype, out)


@shared
def entropy_diag(rowvar: ArrayLike, colvar: ArrayLike, *, out: FloatArray | None = None,
                 errors: Errors = "raise") -> Result:
    """Differential entropy of the matrix normal with diagonal covariances, batched.

    :func:`entropy` with ``U = diag(a)``, ``V = diag(b)``:
    ``½[np(1 + log 2π) + n Σ log b + p Σ log a]``, ``O(n + p)`` per item.

    Parameters
    ----------
    %(diag_variances)s
    %(out)s
    %(errors)s

    Returns
    -------
    entropy : (...) ndarray or scalar
        The entropies (in nats) over the broadcast batch shape of ``rowvar`` and ``colvar``.

    Raises
    ------
    numpy.linalg.LinAlgError, ValueError, TypeError
        As in :func:`logpdf_diag`.

    See Also
    --------
    fastmvn.reference.entropy_diag : the NumPy specification of this function.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> a, b = np.array([1.0, 2.0]), np.array([0.5, 1.0, 4.0])
    >>> bool(np.isclose(fm.entropy_diag(a, b), fm.entropy(np.diag(a), np.diag(b))))
    True
    """
    check_errors(errors)
    args = [Arg("rowvar", VAR, rowvar, "n"), Arg("colvar", VAR, colvar, "p")]
    dtype, batch_shape = check(args)
    check_out(out, dtype, batch_shape)
    (a, b), positive = _variances(args)
    n, p = a.shape[-1], b.shape[-1]
    with np.errstate(all="ignore"):
        value = 0.5 * (n * p * _ENTROPY_PER_ENTRY + n * np.log(b).sum(axis=-1) + p * np.log(a).sum(axis=-1))
    return _finish(value, _nonfinite_failures(args) + positive, dtype, batch_shape, out, errors)


def rvs_diag(mean: ArrayLike | None, rowvar: ArrayLike, colvar: ArrayLike, size: Size = None,
             random_state: Seed = None, *, errors: Errors = "raise", out: FloatArray | None = None) -> FloatArray:
    """Random draws from the matrix normal with diagonal covariances, batched.

    ``X_ij = M_ij + √a_i Z_ij √b_j``: :func:`rvs` with ``U = diag(a)``, ``V = diag(b)``,
    ``O(np)`` per draw. The same seed gives the same draws as :func:`rvs` given the diagonal
    matrices, bit for bit.

    Parameters
    ----------
    mean : (..., n, p) array_like or None
        Means ``M``; ``None`` means zero.
    rowvar : (..., n) array_like
        Row variances ``a`` (positive).
    colvar : (..., p) array_like
        Column variances ``b`` (positive).
    size : int or tuple of ints, optional
        Sample axes put in front of the broadcast batch shape; ``None`` (default) adds none.
    random_state : numpy.random.Generator, int or None
        As in :func:`rvs`.
    errors : {"raise", "nan"}
        ``"raise"`` (default) raises on the first failing item; ``"nan"`` fills the draws
        of each failing item with NaN.
    out : ``(*size, ..., n, p)`` ndarray, optional
        As in :func:`rvs`.

    Returns
    -------
    samples : ``(*size, ..., n, p)`` ndarray
        float32 when every input is float32, float64 otherwise; ``out`` where given.

    Raises
    ------
    numpy.linalg.LinAlgError, ValueError, TypeError
        As in :func:`logpdf_diag` and, for ``out``, :func:`rvs`.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> a, b = np.array([1.0, 2.0]), np.array([0.5, 1.0, 4.0])
    >>> x = fm.rvs_diag(None, a, b, size=1000, random_state=0)
    >>> x.shape
    (1000, 2, 3)
    >>> bool(np.array_equal(x, fm.rvs(np.zeros((2, 3)), np.diag(a), np.diag(b), 1000, 0)))
    True
    """
    check_errors(errors)
    row_arg, col_arg = Arg("rowvar", VAR, rowvar, "n"), Arg("colvar", VAR, colvar, "p")
    if mean is None:
        mean_arg = Arg("mean", MEAN, np.zeros(row_arg.core_shape + col_arg.core_shape), "np", default=True)
    else:
        mean_arg = Arg("mean", MEAN, mean, "np")
    args = [mean_arg, row_arg, col_arg]
    dtype, batch_shape = check(args)
    (rowvar, colvar), positive = _variances(args[1:])
    failures = _nonfinite_failures(args) + positive
    if errors == "raise":
        _report(failures, batch_shape)
    failing = _failing([mask for mask, _, _ in failures], batch_shape)
    with np.errstate(invalid="ignore"):
        rowroot, colroot = np.sqrt(rowvar)[..., :, None], np.sqrt(colvar)[..., None, :]
    return _sample(np.asarray(mean_arg.array, dtype=np.float64), rowroot, colroot, size, random_state, dtype,
                   batch_shape, out, failing, diagonal=True)


@shared
def logpdf_prec(x: ArrayLike, mean: ArrayLike | None, rowprec: ArrayLike, colprec: ArrayLike, *,
                out: FloatArray | None = None, errors: Errors = "raise") -> Result:
    r"""Log-density of the matrix normal ``MN(mean, rowprec⁻¹, colprec⁻¹)`` given by precisions, batched.

    With the precisions' lower Cholesky factors ``Ω_U = L Lᵀ`` and ``Ω_V = K Kᵀ``
    (``U = Ω_U⁻¹``, ``V = Ω_V⁻¹``),

    .. math::

        -\tfrac12\big[np\log 2\pi - 2p\sum\log\operatorname{diag}L
        - 2n\sum\log\operatorname{diag}K + \lVert L^\top (X-M) K\rVert_F^2\big]:

    the precisions are factorised and multiplied by, never inverted or solved with, as Stan's
    ``matrix_normal_prec_lpdf``. Only the lower triangles are read. NumPy on the whole batch
    (``numpy.linalg.cholesky`` and ``matmul``; there is no compiled kernel for it).

    Parameters
    ----------
    x : (..., n, p) array_like
        Points.
    mean : (..., n, p) array_like or None
        Means ``M``; ``None`` means zero.
    rowprec : (..., n, n) array_like
        Row precisions ``Ω_U = U⁻¹`` (symmetric positive definite).
    colprec : (..., p, p) array_like
        Column precisions ``Ω_V = V⁻¹`` (symmetric positive definite).
    %(out)s
    %(errors)s

    Returns
    -------
    logpdf : (...) ndarray or scalar
        The log-densities over the broadcast batch shape; float32 when every input is float32.

    Raises
    ------
    numpy.linalg.LinAlgError
        A precision is not positive definite, or numerically singular (the rule of
        :func:`fastmvn.reference.cholesky`); names the argument and batch index.
    ValueError, TypeError, FloatingPointError
        As in :func:`logpdf_diag`.

    See Also
    --------
    MatrixNormal.from_precision : the frozen distribution of precisions.
    fastmvn.reference.logpdf_prec : the specification, by the dense precision ``Ω_V⊗Ω_U``.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> x, omega_u, omega_v = np.ones((2, 3)), np.array([[2.0, 0.5], [0.5, 1.0]]), np.eye(3) + 0.5
    >>> bool(np.isclose(fm.logpdf_prec(x, None, omega_u, omega_v),
    ...                 fm.logpdf(x, None, np.linalg.inv(omega_u), np.linalg.inv(omega_v))))
    True
    """
    check_errors(errors)
    args = _point_args(x, mean, ("rowprec", COV, rowprec, "nn"), ("colprec", COV, colprec, "pp"))
    dtype, batch_shape = check(args)
    check_out(out, dtype, batch_shape)
    (rowfactor, row_bad), (colfactor, col_bad) = _factor(args[2]), _factor(args[3])
    x, mean = (np.asarray(arg.array, dtype=np.float64) for arg in args[:2])
    n, p = x.shape[-2:]
    with np.errstate(all="ignore"):
        whitened = np.swapaxes(rowfactor, -1, -2) @ (x - mean) @ colfactor  # Lᵀ (X − M) K
        value = -0.5 * (n * p * _LOG_2PI - p * _factor_logdet(rowfactor) - n * _factor_logdet(colfactor)
                        + np.einsum("...ij,...ij->...", whitened, whitened))
    failures = _nonfinite_failures(args) + [(row_bad, LinAlgError, _not_pd("rowprec")),
                                            (col_bad, LinAlgError, _not_pd("colprec"))]
    return _finish(value, failures, dtype, batch_shape, out, errors)


# Checks and factorisation of the parameters ---------------------------------------------


def _checked(mean, row, col, kind, errors="raise", names=None):
    """Check and factorise the parameters of a matrix normal given by covariances
    (``kind=COV``) or lower Cholesky factors (``kind=CHOL``).

    Returns the arguments ``(mean, row, col)``, the lower factors ``rowchol`` and
    ``colchol`` (float64, over their own batch shapes), the dtype, the broadcast batch shape
    and the mask of failing items over it. With ``errors="raise"`` the first failing item
    raises; ``"nan"`` (for covariances) leaves the failing items in place, with an
    identity factor where the factorisation failed.
    """
    stem = "cov" if kind == COV else "chol"
    mean_name, row_name, col_name = names or ("mean", f"row{stem}", f"col{stem}")
    row_arg, col_arg = Arg(row_name, kind, row, "nn"), Arg(col_name, kind, col, "pp")
    if mean is None:
        n, p = row_arg.array.shape[-2], col_arg.array.shape[-2]
        mean_arg = Arg(mean_name, MEAN, np.zeros((n, p)), "np", default=True)
        args = [row_arg, col_arg, mean_arg]
    else:
        mean_arg = Arg(mean_name, MEAN, mean, "np")
        args = [mean_arg, row_arg, col_arg]
    dtype, batch_shape = check(args)
    if kind == COV:
        (rowchol, row_bad), (colchol, col_bad) = _factor(row_arg), _factor(col_arg)
        reasons = [_not_pd(name) for name in (row_name, col_name)]
    else:
        rowchol, colchol = (np.tril(np.asarray(arg.array, dtype=np.float64)) for arg in (row_arg, col_arg))
        row_bad, col_bad = (~np.isfinite(chol).all(axis=(-2, -1))
                            | ~(np.diagonal(chol, axis1=-2, axis2=-1) > 0).all(axis=-1) for chol in (rowchol, colchol))
        reasons = [f"{name} is not a Cholesky factor: its diagonal must be positive" for name in (row_name, col_name)]
    failing = _failing([_nonfinite(mean_arg), row_bad, col_bad], batch_shape)
    if errors == "raise" and failing.any():
        _report([(_nonfinite(arg), ValueError, f"{arg.name} contains NaN or infinity") for arg in args]
                + [(row_bad, LinAlgError, reasons[0]), (col_bad, LinAlgError, reasons[1])], batch_shape)
    return (mean_arg, row_arg, col_arg), rowchol, colchol, dtype, batch_shape, failing

