"""The matrix normal as functions of its parameters, batched: :func:`pdf`, :func:`pdf_chol`,
:func:`entropy`, :func:`entropy_chol` and :func:`rvs`, with the checks and factorisation of
the parameters (:func:`_checked`) that :class:`~fastmvn.MatrixNormal` shares.

Densities and entropies go through the compiled kernels of :mod:`fastmvn._api`; sampling
uses ``numpy.linalg`` on the whole batch at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.linalg import LinAlgError

from .._api import logdet, logpdf, logpdf_chol
from .._arguments import COV, MEAN, Arg, bind, check, check_errors, check_out
from .._batch import slot, working_dtype
from .._docs import filled
from .._reports import diagnose
from .._table import FUNCTIONS
from ._base import _ENTROPY_PER_ENTRY, _exp, _factor, _failing, _first, _nonfinite, _not_pd, _report, _sample_shape

if TYPE_CHECKING:
    from .._typing import ArrayLike, Errors, FloatArray, Result, Seed, Size

__all__ = ["pdf", "pdf_chol", "entropy", "entropy_chol", "rvs"]


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
    numpy.linalg.LinAlgError, ValueError, TypeError
        As in :func:`fastmvn.kl`.
    FloatingPointError
        The density overflows (with ``errors="raise"``).

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
    numpy.linalg.LinAlgError, ValueError, TypeError
        As in :func:`fastmvn.kl`, naming ``rowcov`` or ``colcov`` and the batch index.

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


def _sample(mean, rowchol, colchol, size, random_state, dtype, batch_shape):
    """``M + A Z Bᵀ`` with ``Z`` standard normal of shape ``size + batch_shape + (n, p)``,
    in float64, returned as ``dtype``."""
    rng = np.random.default_rng(random_state)
    z = rng.standard_normal(_sample_shape(size) + batch_shape + mean.shape[-2:])
    return (mean + rowchol @ z @ np.swapaxes(colchol, -1, -2)).astype(dtype, copy=False)


def rvs(mean: ArrayLike, rowcov: ArrayLike, colcov: ArrayLike, size: Size = None, random_state: Seed = None, *,
        errors: Errors = "raise") -> FloatArray:
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

    Returns
    -------
    samples : ``(*size, ..., n, p)`` ndarray
        float32 when every input is float32, float64 otherwise.

    Raises
    ------
    numpy.linalg.LinAlgError
        A covariance is not positive definite; names the argument and batch index.
    ValueError
        NaN or infinity in an input (names the argument and batch index); shapes that do
        not fit (names the shapes).

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> x = fm.rvs(np.zeros((3, 2)), np.eye(3), 2 * np.eye(2), size=(1000, 5), random_state=0)
    >>> x.shape
    (1000, 5, 3, 2)
    >>> bool(np.array_equal(x, fm.rvs(np.zeros((3, 2)), np.eye(3), 2 * np.eye(2), (1000, 5), 0)))
    True
    """
    check_errors(errors)
    (mean_arg, _, _), rowchol, colchol, dtype, batch_shape, failing = _checked(mean, rowcov, colcov, COV, errors)
    samples = _sample(np.asarray(mean_arg.array, dtype=np.float64), rowchol, colchol, size, random_state, dtype,
                      batch_shape)
    np.copyto(samples, np.nan, where=failing[..., None, None])
    return samples


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

