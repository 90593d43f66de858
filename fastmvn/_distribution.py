"""Matrix-normal distributions: density, entropy, sampling, maximum-likelihood fitting and
the frozen, possibly batched, :class:`MatrixNormal`.

Everything here is NumPy around the compiled kernels of :mod:`fastmvn._api`: densities and
divergences go through the kernels; sampling, fitting and the conditioning algebra use
``numpy.linalg`` on the whole batch at once. Factorisations that fail are located item by
item so that every error names the argument and the batch index, as the core functions do.
"""

import math
import operator
import warnings

import numpy as np
from numpy.linalg import LinAlgError

from ._api import (CHOL, COV, MEAN, _Arg, _check, _check_errors, _check_out, _diagnose, _lower_factors, _slot, _where,
                   kl_chol, logdet, logpdf, logpdf_chol, mahalanobis_chol, result_dtype)
from .reference import singular_pivots

__all__ = ["pdf", "pdf_chol", "entropy", "entropy_chol", "rvs", "fit", "MatrixNormal", "MatrixNormalFit"]

# np·(1 + log 2π) is the constant of the entropy per entry.
_ENTROPY_PER_ENTRY = 1.0 + math.log(2.0 * math.pi)


def _deliver(value, dtype, out):
    """``value`` as the public result: written into ``out``, or an array of ``dtype`` (a scalar when 0-d)."""
    if out is not None:
        out[...] = value
        return out
    value = np.asarray(value, dtype=dtype)
    return value if value.ndim else value[()]


def _first(mask):
    """The multi-index (a tuple of ints) of the first True entry of ``mask``."""
    return tuple(int(i) for i in np.unravel_index(np.argmax(mask), mask.shape))


def _full(value, batch_shape):
    """``value`` broadcast to ``batch_shape`` as a new array (a scalar when 0-d)."""
    value = np.array(np.broadcast_to(value, batch_shape))
    return value if value.ndim else value[()]


# Densities and entropy ------------------------------------------------------------------


def _exp(logdensity, errors):
    """``exp`` of a log-density result, in place where it is an array; an overflow to
    infinity fails the item as a non-finite kernel result does."""
    with np.errstate(over="ignore"):
        if isinstance(logdensity, np.ndarray):
            density = np.exp(logdensity, out=logdensity)
        else:
            density = np.exp(logdensity)
    overflow = np.isinf(density)
    if not overflow.any():
        return density
    if errors == "raise":
        raise FloatingPointError(f"the density overflowed{_where(_first(overflow))}")
    if isinstance(density, np.ndarray):
        density[overflow] = np.nan
        return density
    return type(density)(np.nan)


def pdf(x, mean, rowcov, colcov, *, out=None, errors="raise"):
    """Density of the matrix normal ``MN(mean, rowcov, colcov)`` at ``x``, batched.

    ``exp`` of :func:`fastmvn.logpdf`; see there for the formula and conventions.

    Parameters
    ----------
    x : (..., n, p) array_like
        Points.
    mean : (..., n, p) array_like or None
        Means ``M``; ``None`` means zero.
    rowcov : (..., n, n) array_like
        Row covariances ``U`` (symmetric positive definite; lower triangle read).
    colcov : (..., p, p) array_like
        Column covariances ``V`` (symmetric positive definite; lower triangle read).
    out : ndarray, optional
        Array of the broadcast batch shape and the result dtype to write into.
    errors : {"raise", "nan"}
        As in :func:`fastmvn.kl`. A density too large for the result dtype fails its
        item (``FloatingPointError`` naming the batch index, or NaN).

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


def pdf_chol(x, mean, rowchol, colchol, *, out=None, errors="raise", lower=True):
    """Density of the matrix normal given by Cholesky factors, batched.

    ``exp`` of :func:`fastmvn.logpdf_chol`, with ``U = rowchol @ rowchol.T`` and
    ``V = colchol @ colchol.T``.

    Parameters
    ----------
    x : (..., n, p) array_like
        Points.
    mean : (..., n, p) array_like or None
        Means ``M``; ``None`` means zero.
    rowchol : (..., n, n) array_like
        Cholesky factors of the row covariances (lower triangle read, positive diagonal).
    colchol : (..., p, p) array_like
        Cholesky factors of the column covariances.
    out : ndarray, optional
        Array of the broadcast batch shape and the result dtype to write into.
    errors : {"raise", "nan"}
        As in :func:`pdf`.
    lower : bool, optional
        Lower factors ``U = L Lᵀ`` (default) or, with ``False``, upper ones ``U = Rᵀ R``
        (upper triangles read), as in :func:`fastmvn.kl_chol`.

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
    _check_errors(errors)
    dtype, batch_shape = _check(args)
    _check_out(out, dtype, batch_shape)
    n, p = (arg.array.shape[-1] for arg in args)
    logdet_row, logdet_col = (np.asarray(logdet_of(np.asarray(arg.array, dtype)), dtype=np.float64) for arg in args)
    value = np.asarray(0.5 * (n * p * _ENTROPY_PER_ENTRY + n * logdet_col + p * logdet_row))
    failed = np.isnan(value)
    if errors == "raise" and failed.any():
        raise _diagnose(args, [_slot(arg, dtype, batch_shape) for arg in args], _first(failed))
    return _deliver(value, dtype, out)


def entropy(rowcov, colcov, *, out=None, errors="raise"):
    r"""Differential entropy of the matrix normal ``MN(M, rowcov, colcov)``, batched.

    .. math::

        H = \tfrac12\big[np(1 + \log 2\pi) + n\log|V| + p\log|U|\big],

    the entropy of ``N(vec M, V⊗U)``; it does not depend on the mean. The log-determinants
    come from :func:`fastmvn.logdet` (only the lower triangles are read).

    Parameters
    ----------
    rowcov : (..., n, n) array_like
        Row covariances ``U`` (symmetric positive definite).
    colcov : (..., p, p) array_like
        Column covariances ``V`` (symmetric positive definite).
    out : ndarray, optional
        Array of the broadcast batch shape and the result dtype to write into.
    errors : {"raise", "nan"}
        As in :func:`fastmvn.kl`.

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
    args = [_Arg("rowcov", COV, rowcov, "nn"), _Arg("colcov", COV, colcov, "pp")]
    return _entropy(args, lambda a: logdet(a, errors="nan"), out, errors)


def entropy_chol(rowchol, colchol, *, out=None, errors="raise", lower=True):
    """Differential entropy of the matrix normal given by Cholesky factors, batched.

    The same as :func:`entropy` with ``U = rowchol @ rowchol.T`` and ``V = colchol @ colchol.T``:
    ``log|U| = 2 Σ log diag(rowchol)``, so nothing is factorised. The lower triangles (the
    upper ones with ``lower=False``) must be finite and the diagonals positive.

    Parameters
    ----------
    rowchol : (..., n, n) array_like
        Cholesky factors of the row covariances.
    colchol : (..., p, p) array_like
        Cholesky factors of the column covariances.
    out : ndarray, optional
        Array of the broadcast batch shape and the result dtype to write into.
    errors : {"raise", "nan"}
        As in :func:`fastmvn.kl`.
    lower : bool, optional
        Lower factors ``U = L Lᵀ`` (default) or, with ``False``, upper ones ``U = Rᵀ R``,
        as in :func:`fastmvn.kl_chol`.

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
    rowchol, colchol = _lower_factors(lower, rowchol, colchol)
    args = [_Arg("rowchol", CHOL, rowchol, "nn"), _Arg("colchol", CHOL, colchol, "pp")]
    return _entropy(args, _factor_logdet, out, errors)


# Factorisation with located failures ----------------------------------------------------


def _cholesky(stack):
    """LAPACK's lower Cholesky factors of a stack ``(k, m, m)`` and the mask of the items
    where the factorisation fails (their factor is the identity).

    One call when every item succeeds; otherwise the stack is halved until each failing
    item is alone, so ``f`` failures cost ``O(f log k)`` calls on ever smaller stacks.
    """
    try:
        return np.linalg.cholesky(stack), np.zeros(len(stack), dtype=bool)
    except LinAlgError:
        if len(stack) == 1:
            return np.eye(stack.shape[-1])[None], np.ones(1, dtype=bool)
    half = len(stack) // 2
    (low, low_failed), (high, high_failed) = _cholesky(stack[:half]), _cholesky(stack[half:])
    return np.concatenate([low, high]), np.concatenate([low_failed, high_failed])


def _factor(arg):
    """Lower Cholesky factors (by LAPACK) of covariance argument ``arg`` over its own batch
    shape, and the mask of the items that fail: not positive definite, numerically singular
    (:func:`fastmvn.reference.singular_pivots`, the rule of the kernels' own Cholesky), or not
    finite (which LAPACK either rejects or carries into the factor). A failed item's factor is the identity.

    When LAPACK rejects the stack, the kernels' own Cholesky marks the failing items in one
    pass; the halving of :func:`_cholesky` is left for any item it accepts and LAPACK does not.
    """
    a = np.asarray(arg.array, dtype=np.float64)
    size = a.shape[-1]
    stack = a.reshape((-1, size, size))
    failed = np.zeros(len(stack), dtype=bool)
    try:
        chol = np.linalg.cholesky(stack)
    except LinAlgError:
        failed = np.isnan(logdet(stack, errors="nan"))
        chol, rejected = _cholesky(np.where(failed[:, None, None], np.eye(size), stack))
        failed |= rejected
    failed |= ~np.isfinite(chol).all(axis=(-2, -1)) | singular_pivots(chol, stack)
    chol[failed] = np.eye(size)
    return chol.reshape(a.shape), failed.reshape(a.shape[:-2])


def _nonfinite(arg):
    """Mask of the items of ``arg`` with a non-finite entry among those read."""
    return ~np.isfinite(np.tril(arg.array) if arg.kind in (COV, CHOL) else arg.array).all(axis=(-2, -1))


def _failing(masks, batch_shape):
    """The union over ``batch_shape`` of masks given over their arguments' own batch shapes."""
    failing = np.zeros(batch_shape, dtype=bool)
    for mask in masks:
        failing |= mask
    return failing


def _report(failures, batch_shape):
    """Raise for the first failing item over ``batch_shape``, if any.

    ``failures`` holds ``(mask over an argument's own batch shape, exception type, message)``
    in the order they are tried for one item: every non-finite check before any
    positive-definiteness check, as in the core functions.
    """
    failing = _failing([mask for mask, _, _ in failures], batch_shape)
    if failing.any():
        index = _first(failing)
        for mask, error, message in failures:
            if np.broadcast_to(mask, batch_shape)[index]:
                raise error(f"{message}{_where(index)}")


def _not_pd(name):
    return f"{name} is not positive definite (Cholesky failed)"


# Sampling -------------------------------------------------------------------------------


def _sample_shape(size):
    if size is None:
        return ()
    if np.ndim(size) == 0:
        return (operator.index(size),)
    return tuple(operator.index(s) for s in size)


def _sample(mean, rowchol, colchol, size, random_state, dtype, batch_shape):
    """``M + A Z Bᵀ`` with ``Z`` standard normal of shape ``size + batch_shape + (n, p)``,
    in float64, returned as ``dtype``."""
    rng = np.random.default_rng(random_state)
    z = rng.standard_normal(_sample_shape(size) + batch_shape + mean.shape[-2:])
    return (mean + rowchol @ z @ np.swapaxes(colchol, -1, -2)).astype(dtype, copy=False)


def rvs(mean, rowcov, colcov, size=None, random_state=None, *, errors="raise"):
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
    samples : (*size, ..., n, p) ndarray
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
    _check_errors(errors)
    (mean_arg, _, _), rowchol, colchol, dtype, batch_shape, failing = _checked(mean, rowcov, colcov, COV, errors)
    samples = _sample(np.asarray(mean_arg.array, dtype=np.float64), rowchol, colchol, size, random_state, dtype,
                      batch_shape)
    np.copyto(samples, np.nan, where=failing[..., None, None])
    return samples


# The frozen distribution ----------------------------------------------------------------


def _symmetric(a, dtype):
    """A copy of ``a`` as ``dtype``, made symmetric from its lower triangle where it is not."""
    a = np.array(a, dtype=dtype)
    if not (a == np.swapaxes(a, -1, -2)).all():
        a = np.tril(a) + np.swapaxes(np.tril(a, -1), -1, -2)
    return a


def _indices(selection, size, name):
    """Positions along an axis of length ``size`` chosen by ``selection`` (anything that
    indexes a 1-D array: ints, a slice, a boolean mask), as a 1-D int array."""
    index = np.atleast_1d(np.arange(size)[selection])
    if index.size == 0:
        raise ValueError(f"{name} selects nothing")
    if np.unique(index).size != index.size:
        raise ValueError(f"{name} repeats an index: {index.tolist()}")
    return index


class MatrixNormal:
    """A frozen matrix normal distribution ``MN(mean, rowcov, colcov)``, possibly batched.

    ``vec X ~ N(vec M, V⊗U)`` with column-major ``vec`` (the convention of
    ``scipy.stats.matrix_normal``). The arguments broadcast over leading axes like those of
    the core functions; a batched distribution is a stack of independent distributions of
    shape :attr:`batch_shape`. The inputs are copied, checked and factorised once, here:
    shapes, finiteness and positive definiteness (through the Cholesky factors that every
    method then reuses), each failure naming the argument and the batch index. Only the
    lower triangles of the covariances are read; the stored covariances are symmetric.

    Parameters
    ----------
    mean : (..., n, p) array_like or None
        Mean ``M``; ``None`` means zero.
    rowcov : (..., n, n) array_like
        Row covariance ``U`` (symmetric positive definite).
    colcov : (..., p, p) array_like
        Column covariance ``V`` (symmetric positive definite).

    Raises
    ------
    numpy.linalg.LinAlgError
        A covariance is not positive definite (names the argument and batch index).
    ValueError
        NaN or infinity (names the argument and batch index); shapes that do not fit.

    See Also
    --------
    MatrixNormal.from_chol : the same from lower Cholesky factors.
    fit : maximum-likelihood fit to samples.

    Notes
    -----
    The arrays are stored with their own batch shapes (a covariance shared by the whole
    batch is stored once); the attributes return read-only views broadcast to
    :attr:`batch_shape`. Arithmetic is in float64; the distribution stores and returns
    float32 when every input is float32 (``fastmvn.kl`` states the rule). A float32
    distribution keeps its parameters and factors as computed, in float64, as well: a
    method given a float64 argument computes its float64 result from those, as a float64
    distribution of the same inputs would.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> d = fm.MatrixNormal(np.zeros((5, 3, 2)), np.eye(3), [[2.0, 0.5], [0.5, 1.0]])
    >>> d
    MatrixNormal(shape=(3, 2), batch_shape=(5,), dtype=float64)
    >>> x = d.rvs(size=100, random_state=1)
    >>> x.shape, d.logpdf(x).shape, d.entropy().shape, d[0].batch_shape
    ((100, 5, 3, 2), (100, 5), (5,), ())
    >>> d.marginal(rows=[0, 2], cols=[1]).shape
    (2, 1)
    >>> d.condition(cols=[1], values=np.ones((3, 1))).colcov[0]
    array([[1.75]])
    """

    def __init__(self, mean, rowcov, colcov):
        self._init(*_parameters(mean, rowcov, colcov, COV))

    @staticmethod
    def from_chol(mean, rowchol, colchol, *, lower=True):
        """The matrix normal with ``U = rowchol @ rowchol.T`` and ``V = colchol @ colchol.T``.

        Parameters
        ----------
        mean : (..., n, p) array_like or None
            Mean ``M``; ``None`` means zero.
        rowchol : (..., n, n) array_like
            Cholesky factor of the row covariance (lower triangle read, positive diagonal).
        colchol : (..., p, p) array_like
            Cholesky factor of the column covariance.
        lower : bool, optional
            Lower factors ``U = L Lᵀ`` (default) or, with ``False``, upper ones
            ``U = Rᵀ R`` (upper triangles read), as in :func:`fastmvn.kl_chol`. The
            distribution stores the lower factors either way (:attr:`rowchol`).

        Returns
        -------
        MatrixNormal

        Raises
        ------
        numpy.linalg.LinAlgError
            A diagonal entry is not positive (names the argument and batch index).
        ValueError
            NaN or infinity; shapes that do not fit.
        FloatingPointError
            A covariance ``L Lᵀ`` is too large for the dtype (names the argument and batch index).

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> L = np.array([[2.0, 0.0], [1.0, 1.0]])
        >>> fm.MatrixNormal.from_chol(None, L, np.eye(1)).rowcov
        array([[4., 2.],
               [2., 2.]])
        >>> fm.MatrixNormal.from_chol(None, L.T, np.eye(1), lower=False).rowcov   # U = Rᵀ R, R = Lᵀ
        array([[4., 2.],
               [2., 2.]])
        """
        rowchol, colchol = _lower_factors(lower, rowchol, colchol)
        return _assemble(*_parameters(mean, rowchol, colchol, CHOL))

    def _init(self, mean, rowcov, colcov, rowchol, colchol, dtype, batch_shape):
        self._dtype = np.dtype(dtype)
        self._batch_shape = tuple(batch_shape)
        self._exact = tuple(_read_only(a, np.float64) for a in (mean, rowcov, colcov, rowchol, colchol))
        self._mean, self._rowcov, self._colcov, self._rowchol, self._colchol = (
            self._exact if self._dtype == np.float64 else [_read_only(a, dtype) for a in self._exact])

    def _parts_for(self, *arrays):
        """``(mean, rowcov, colcov, rowchol, colchol)`` in the dtype of a result from this
        distribution and ``arrays``: as stored, or the float64 parts as computed."""
        if result_dtype(self._mean, *arrays) == self._dtype:
            return self._mean, self._rowcov, self._colcov, self._rowchol, self._colchol
        return self._exact

    # Attributes

    @property
    def shape(self):
        """``(n, p)``: the shape of one random matrix."""
        return self._mean.shape[-2:]

    @property
    def batch_shape(self):
        """The shape of the stack of distributions; ``()`` for a single one."""
        return self._batch_shape

    @property
    def dtype(self):
        """The dtype of the stored parameters and of the results."""
        return self._dtype

    def _view(self, array):
        return np.broadcast_to(array, self._batch_shape + array.shape[-2:])

    @property
    def mean(self):
        """``(..., n, p)`` mean ``M`` (read-only)."""
        return self._view(self._mean)

    @property
    def rowcov(self):
        """``(..., n, n)`` row covariance ``U`` (read-only)."""
        return self._view(self._rowcov)

    @property
    def colcov(self):
        """``(..., p, p)`` column covariance ``V`` (read-only)."""
        return self._view(self._colcov)

    @property
    def rowchol(self):
        """``(..., n, n)`` lower Cholesky factor of ``U`` (read-only)."""
        return self._view(self._rowchol)

    @property
    def colchol(self):
        """``(..., p, p)`` lower Cholesky factor of ``V`` (read-only)."""
        return self._view(self._colchol)

    @property
    def cov(self):
        """``(..., np, np)`` dense covariance ``V⊗U`` of column-major ``vec X`` (read-only).

        Entry ``[i + n·j, k + n·l]`` is ``Cov(X_ij, X_kl) = V_jl U_ik``. It holds ``(np)²``
        numbers per item: meant for small sizes and checks.
        """
        n, p = self.shape
        dense = np.einsum("...jl,...ik->...jilk", self._colcov, self._rowcov)
        return np.broadcast_to(dense.reshape(dense.shape[:-4] + (n * p, n * p)),
                               self._batch_shape + (n * p, n * p))

    def __repr__(self):
        return (f"{type(self).__name__}(shape={self.shape}, batch_shape={self._batch_shape}, "
                f"dtype={self._dtype}{self._repr_extra()})")

    def _repr_extra(self):
        return ""

    def __getitem__(self, index):
        """The sub-batch ``index`` selects (NumPy indexing on the batch axes only); a
        :class:`MatrixNormal` with the selected parameters and factors."""
        if not self._batch_shape:
            raise IndexError("a single (unbatched) MatrixNormal cannot be indexed")
        positions = np.arange(math.prod(self._batch_shape)).reshape(self._batch_shape)[index]
        where = np.unravel_index(positions, self._batch_shape)
        parts = [self._view(a)[where] for a in self._exact]
        return _assemble(*parts, self._dtype, positions.shape)

    # Densities, entropy, divergence

    def logpdf(self, x, *, out=None, errors="raise"):
        """Log-density at ``x``, by :func:`fastmvn.logpdf_chol` on the stored factors.

        Parameters
        ----------
        x : (..., n, p) array_like
            Points; their leading axes broadcast with :attr:`batch_shape`.
        out : ndarray, optional
            Array of the broadcast batch shape and the result dtype to write into.
        errors : {"raise", "nan"}
            As in :func:`fastmvn.kl` (only ``x`` can fail).

        Returns
        -------
        logpdf : (...) ndarray or scalar
        """
        x = _Arg("x", MEAN, x, "np").array
        mean, _, _, rowchol, colchol = self._parts_for(x)
        return logpdf_chol(x, mean, rowchol, colchol, out=out, errors=errors)

    def pdf(self, x, *, out=None, errors="raise"):
        """Density at ``x``: ``exp`` of :meth:`logpdf` (see :func:`pdf` for overflow).

        Parameters
        ----------
        x : (..., n, p) array_like
            Points; their leading axes broadcast with :attr:`batch_shape`.
        out : ndarray, optional
            Array of the broadcast batch shape and the result dtype to write into.
        errors : {"raise", "nan"}
            As in :func:`pdf`.

        Returns
        -------
        pdf : (...) ndarray or scalar
        """
        return _exp(self.logpdf(x, out=out, errors=errors), errors)

    def mahalanobis(self, x, *, out=None, errors="raise"):
        """Squared Mahalanobis distance ``tr(V⁻¹ (X−M)ᵀ U⁻¹ (X−M))`` from the stored factors.

        Parameters
        ----------
        x : (..., n, p) array_like
            Points; their leading axes broadcast with :attr:`batch_shape`.
        out : ndarray, optional
            Array of the broadcast batch shape and the result dtype to write into.
        errors : {"raise", "nan"}
            As in :func:`fastmvn.kl`.

        Returns
        -------
        distance : (...) ndarray or scalar
        """
        x = _Arg("x", MEAN, x, "np").array
        mean, _, _, rowchol, colchol = self._parts_for(x)
        return mahalanobis_chol(x, mean, rowchol, colchol, out=out, errors=errors)

    def entropy(self):
        """Differential entropy ``½[np(1 + log 2π) + n log|V| + p log|U|]`` from the stored factors.

        Returns
        -------
        entropy : (...) ndarray or scalar
            Over :attr:`batch_shape`.
        """
        return _full(entropy_chol(self._rowchol, self._colchol), self._batch_shape)

    def to_matrix_gaussian(self):
        """This distribution as a :class:`~fastmvn.MatrixGaussian`, ``N(vec M, V⊗U)``.

        The same as :meth:`MatrixGaussian.from_normal`: the ``np×np`` covariance is formed
        (from the stored factors, nothing is factorised), so it is for small ``n·p``.

        Returns
        -------
        MatrixGaussian
            Of the same shape ``(n, p)``, batch shape and dtype.

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> d = fm.MatrixNormal(np.zeros((2, 3)), 2 * np.eye(2), np.eye(3))
        >>> g = d.to_matrix_gaussian()
        >>> g.cov.shape, bool(np.allclose(g.cov, d.cov))
        ((6, 6), True)
        """
        from ._gaussian import MatrixGaussian

        return MatrixGaussian.from_normal(self)

    def kl(self, other):
        """``KL(self ‖ other)``, by :func:`fastmvn.kl_chol` on the stored factors.

        Parameters
        ----------
        other : MatrixNormal or MatrixGaussian
            Of the same :attr:`shape`; the batch shapes broadcast. A
            :class:`~fastmvn.MatrixGaussian` goes to :func:`fastmvn.kl_gaussian`.

        Returns
        -------
        kl : (...) ndarray or scalar
            Over the broadcast batch shape.

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> p = fm.MatrixNormal(np.zeros((2, 2)), 2 * np.eye(2), np.eye(2))
        >>> q = fm.MatrixNormal(np.zeros((2, 2)), np.eye(2), 2 * np.eye(2))   # the same distribution
        >>> abs(float(p.kl(q))) < 1e-12
        True
        """
        if not isinstance(other, MatrixNormal):
            from ._gaussian import MatrixGaussian, kl_gaussian

            if isinstance(other, MatrixGaussian):
                return kl_gaussian(self, other)
            raise TypeError(f"other must be a MatrixNormal or a MatrixGaussian, not {type(other).__name__}")
        if other.shape != self.shape:
            raise ValueError(f"cannot compare matrix normals of shapes {self.shape} and {other.shape}")
        mean1, _, _, rowchol1, colchol1 = self._parts_for(other._mean)
        mean2, _, _, rowchol2, colchol2 = other._parts_for(self._mean)
        return kl_chol(mean1, rowchol1, colchol1, mean2, rowchol2, colchol2)

    def rvs(self, size=None, random_state=None):
        """Random draws ``M + A Z Bᵀ`` from the stored factors ``A``, ``B``.

        Parameters
        ----------
        size : int or tuple of ints, optional
            Sample axes put in front of :attr:`batch_shape`; ``None`` adds none.
        random_state : numpy.random.Generator, int or None
            As in :func:`rvs`; the same seed gives the same draws as :func:`rvs` (bit for
            bit: both draw from the float64 factors).

        Returns
        -------
        samples : (*size, ..., n, p) ndarray
        """
        mean, _, _, rowchol, colchol = self._exact
        return _sample(mean, rowchol, colchol, size, random_state, self._dtype, self._batch_shape)

    # New distributions

    def marginal(self, rows=None, cols=None):
        """The distribution of the sub-matrix ``X[rows][:, cols]``: ``MN(M[r, c], U[r, r], V[c, c])``.

        Parameters
        ----------
        rows, cols : int, sequence of ints, slice or boolean mask, optional
            The rows and columns kept, in the order given (no repeats); ``None`` keeps all.

        Returns
        -------
        MatrixNormal
            Of shape ``(len(rows), len(cols))`` and the same batch shape.
        """
        n, p = self.shape
        r = np.arange(n) if rows is None else _indices(rows, n, "rows")
        c = np.arange(p) if cols is None else _indices(cols, p, "cols")
        return MatrixNormal(self._mean[..., r[:, None], c], self._rowcov[..., r[:, None], r],
                            self._colcov[..., c[:, None], c])

    def condition(self, *, rows=None, cols=None, values):
        """The distribution of the other rows (or columns) given observed ones.

        Split by columns, ``X = [X1 X2]`` with ``X2 = X[:, cols]`` observed:
        ``X1 | X2 ~ MN(M1 + (X2 − M2) V22⁻¹ V21, U, V11 − V12 V22⁻¹ V21)``; by rows, likewise
        with ``U``: ``MN(M1 + U12 U22⁻¹ (X2 − M2), U11 − U12 U22⁻¹ U21, V)`` (the Schur
        complement of the dense covariance on ``vec``).

        Parameters
        ----------
        rows, cols : int, sequence of ints, slice or boolean mask
            The observed rows, or the observed columns: exactly one of the two, leaving
            at least one row (column) unobserved.
        values : (..., k, p) or (..., n, k) array_like
            The observed rows (``k = len(rows)``) or columns (``k = len(cols)``), in the
            order of ``rows`` or ``cols``; leading axes broadcast with :attr:`batch_shape`.

        Returns
        -------
        MatrixNormal
            Over the unobserved rows (or columns), in their original order.
        """
        if (rows is None) == (cols is None):
            raise ValueError("give exactly one of rows= and cols=")
        by_rows = rows is not None
        value_axes = "kp" if by_rows else "nk"
        values_arg = _Arg("values", MEAN, values, value_axes)
        dtype = result_dtype(self._mean, values_arg.array)
        mean, rowcov, colcov = (np.asarray(a, dtype=np.float64) for a in self._parts_for(values_arg.array)[:3])
        if by_rows:  # conditioning on rows of X is conditioning on columns of Xᵀ ~ MN(Mᵀ, V, U)
            mean, rowcov, colcov = np.swapaxes(mean, -1, -2), colcov, rowcov
        name = "rows" if by_rows else "cols"
        size = colcov.shape[-1]
        observed = _indices(rows if by_rows else cols, size, name)
        free = np.setdiff1d(np.arange(size), observed)
        if free.size == 0:
            raise ValueError(f"{name} observes every {'row' if by_rows else 'column'}: nothing is left to condition")
        observed_mean = mean[..., observed]
        mean_arg = _Arg("mean", MEAN, np.swapaxes(observed_mean, -1, -2) if by_rows else observed_mean, value_axes)
        _, batch_shape = _check([mean_arg, values_arg])
        _report([(_nonfinite(values_arg), ValueError, "values contains NaN or infinity")], batch_shape)
        values = np.asarray(values_arg.array, dtype=np.float64)
        if by_rows:
            values = np.swapaxes(values, -1, -2)
        gain = np.linalg.solve(colcov[..., observed[:, None], observed], colcov[..., observed[:, None], free])
        new_mean = mean[..., free] + (values - observed_mean) @ gain
        new_colcov = colcov[..., free[:, None], free] - np.swapaxes(colcov[..., observed[:, None], free], -1, -2) @ gain
        if by_rows:
            return MatrixNormal(np.swapaxes(new_mean, -1, -2).astype(dtype), new_colcov.astype(dtype),
                                rowcov.astype(dtype))
        return MatrixNormal(new_mean.astype(dtype), rowcov.astype(dtype), new_colcov.astype(dtype))

    def affine(self, A=None, B=None, C=None):
        """The distribution of ``A X B + C``: ``MN(A M B + C, A U Aᵀ, Bᵀ V B)``.

        Parameters
        ----------
        A : (..., m, n) array_like, optional
            Left factor, of full row rank (``m ≤ n``); ``None`` means the identity.
        B : (..., p, q) array_like, optional
            Right factor, of full column rank (``q ≤ p``); ``None`` means the identity.
        C : (..., m, q) array_like, optional
            Shift; ``None`` means zero.

        Returns
        -------
        MatrixNormal
            Of shape ``(m, q)``; leading axes broadcast with :attr:`batch_shape`.

        Raises
        ------
        numpy.linalg.LinAlgError
            ``A U Aᵀ`` or ``Bᵀ V B`` is not positive definite (``A`` or ``B`` is rank
            deficient), naming the batch index.
        ValueError
            NaN or infinity in ``A``, ``B`` or ``C``; shapes that do not fit.
        """
        args = [_Arg("mean", MEAN, self._mean, "np")]
        shift_axes = ("n" if A is None else "m") + ("p" if B is None else "q")  # the shape of A X B
        args += [_Arg(name, MEAN, value, axes)
                 for name, value, axes in (("A", A, "mn"), ("B", B, "pq"), ("C", C, shift_axes)) if value is not None]
        dtype, batch_shape = _check(args)
        _report([(_nonfinite(arg), ValueError, f"{arg.name} contains NaN or infinity") for arg in args[1:]],
                batch_shape)
        mean, rowcov, colcov = (np.asarray(a, dtype=np.float64)
                                for a in self._parts_for(*(arg.array for arg in args[1:]))[:3])
        if A is not None:
            A = np.asarray(A, dtype=np.float64)
            mean, rowcov = A @ mean, A @ rowcov @ np.swapaxes(A, -1, -2)
        if B is not None:
            B = np.asarray(B, dtype=np.float64)
            mean, colcov = mean @ B, np.swapaxes(B, -1, -2) @ colcov @ B
        if C is not None:
            mean = mean + np.asarray(C, dtype=np.float64)
        return _assemble(*_parameters(*(a.astype(dtype) for a in (mean, rowcov, colcov)), COV,
                                      names=("A mean B + C", "A rowcov Aᵀ", "Bᵀ colcov B")))

    # Expectations

    def expect_xtax(self, A):
        """``E[Xᵀ A X] = Mᵀ A M + tr(A U) V``.

        Parameters
        ----------
        A : (..., n, n) array_like
            Any square matrices; leading axes broadcast with :attr:`batch_shape`.

        Returns
        -------
        expectation : (..., p, p) ndarray

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> fm.MatrixNormal(np.zeros((2, 1)), [[1.0, 0.5], [0.5, 2.0]], [[3.0]]).expect_xtax(np.eye(2))
        array([[9.]])
        """
        return self._expect_quadratic(A, transpose=False)

    def expect_xaxt(self, A):
        """``E[X A Xᵀ] = M A Mᵀ + tr(A V) U``.

        Parameters
        ----------
        A : (..., p, p) array_like
            Any square matrices; leading axes broadcast with :attr:`batch_shape`.

        Returns
        -------
        expectation : (..., n, n) ndarray

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> fm.MatrixNormal(np.zeros((2, 1)), [[1.0, 0.5], [0.5, 2.0]], [[3.0]]).expect_xaxt(np.eye(1))
        array([[3. , 1.5],
               [1.5, 6. ]])
        """
        return self._expect_quadratic(A, transpose=True)

    def _expect_quadratic(self, A, transpose):
        """``E[Xᵀ A X]``, or with ``transpose`` ``E[X A Xᵀ]``: that of ``Xᵀ ~ MN(Mᵀ, V, U)``."""
        mean_arg, a_arg = _Arg("mean", MEAN, self.mean, "np"), _Arg("A", MEAN, A, "pp" if transpose else "nn")
        dtype, batch_shape = _check([mean_arg, a_arg])
        mean, rowcov, colcov = self._parts_for(a_arg.array)[:3]
        mean, a, rowcov, colcov = (np.asarray(x, dtype=np.float64) for x in (mean, a_arg.array, rowcov, colcov))
        if transpose:
            mean, rowcov, colcov = np.swapaxes(mean, -1, -2), colcov, rowcov
        value = (np.swapaxes(mean, -1, -2) @ a @ mean
                 + np.trace(a @ rowcov, axis1=-2, axis2=-1)[..., None, None] * colcov)
        return _full(value.astype(dtype), batch_shape + value.shape[-2:])


def _assemble(*parts):
    """A :class:`MatrixNormal` from checked parts ``(mean, rowcov, colcov, rowchol, colchol, dtype, batch_shape)``."""
    distribution = object.__new__(MatrixNormal)
    distribution._init(*parts)
    return distribution


def _read_only(array, dtype):
    """``array`` as ``dtype``, read-only; the parts of a distribution are never a caller's arrays."""
    array = np.asarray(array, dtype=dtype)
    array.flags.writeable = False
    return array


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
    row_arg, col_arg = _Arg(row_name, kind, row, "nn"), _Arg(col_name, kind, col, "pp")
    if mean is None:
        n, p = row_arg.array.shape[-2], col_arg.array.shape[-2]
        mean_arg = _Arg(mean_name, MEAN, np.zeros((n, p)), "np", default=True)
        args = [row_arg, col_arg, mean_arg]
    else:
        mean_arg = _Arg(mean_name, MEAN, mean, "np")
        args = [mean_arg, row_arg, col_arg]
    dtype, batch_shape = _check(args)
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


def _in_range(value, dtype, name, batch_shape):
    """``value`` (float64 covariances over their own batch shape, as computed), after checking
    that ``dtype`` holds it: the first item with an entry too large for ``dtype``, or a
    diagonal entry too small for its normal numbers, raises FloatingPointError saying that
    ``name`` overflows (underflows) and naming the index in ``batch_shape``."""
    limits = np.finfo(dtype)
    with np.errstate(invalid="ignore"):
        large = ~(np.abs(value) <= limits.max).all(axis=(-2, -1))
        small = ~(np.diagonal(value, axis1=-2, axis2=-1) >= limits.tiny).all(axis=-1)
    _report([(large, FloatingPointError, f"{name} overflows {dtype}"),
             (small, FloatingPointError, f"{name} underflows {dtype}")], batch_shape)
    return value


def _covariance(chol, name, dtype, batch_shape):
    """``L Lᵀ`` for the lower factors ``chol`` (float64) of argument ``name``; a covariance
    too large for ``dtype`` raises, naming the argument and the batch index."""
    with np.errstate(over="ignore", invalid="ignore"):
        cov = chol @ np.swapaxes(chol, -1, -2)
    return _in_range(cov, dtype, f"the covariance {name} @ {name}ᵀ", batch_shape)


def _parameters(mean, row, col, kind, names=None):
    """The parts ``(mean, rowcov, colcov, rowchol, colchol, dtype, batch_shape)`` of a
    :class:`MatrixNormal`, checked as by :func:`_checked`, in new float64 arrays."""
    (mean_arg, row_arg, col_arg), rowchol, colchol, dtype, batch_shape, _ = _checked(mean, row, col, kind, names=names)
    if kind == COV:
        rowcov, colcov = (_symmetric(arg.array, np.float64) for arg in (row_arg, col_arg))
    else:
        rowcov, colcov = (_covariance(chol, arg.name, dtype, batch_shape)
                          for chol, arg in ((rowchol, row_arg), (colchol, col_arg)))
    return np.array(mean_arg.array, dtype=np.float64), rowcov, colcov, rowchol, colchol, dtype, batch_shape


# Fitting --------------------------------------------------------------------------------


class MatrixNormalFit(MatrixNormal):
    """A :class:`MatrixNormal` fitted by :func:`fit` (which makes it), with how the fit went.

    Attributes
    ----------
    n_iter : (...) int ndarray or int
        Flip-flop iterations run for each fit (each iteration updates ``U``, then ``V``).
    loglik : (...) float64 ndarray or float
        The maximised log-likelihood ``Σ_k log p(X_k)`` over the ``N`` samples of each fit.
    converged : (...) bool ndarray or bool
        Whether each fit met ``tol`` within ``max_iter`` iterations.

    Indexing (``fit[i]``) and the methods that return distributions give plain
    :class:`MatrixNormal` objects.
    """

    def __init__(self, distribution, n_iter, loglik, converged):
        self._init(*distribution._exact, distribution._dtype, distribution._batch_shape)
        self.n_iter, self.loglik, self.converged = n_iter, loglik, converged

    def _repr_extra(self):
        if self._batch_shape:
            return (f", max_n_iter={int(np.max(self.n_iter, initial=0))}, "
                    f"converged={int(np.sum(self.converged))}/{np.size(self.converged)}")
        return f", n_iter={int(self.n_iter)}, converged={bool(self.converged)}"


def _fitted_factor(cov, name, items, batch_shape):
    """The Cholesky factors of the fitted covariances ``cov`` of the fits ``items`` (flat
    positions in ``batch_shape``); a failure means the samples of that fit are degenerate."""
    chol, failed = _cholesky(cov)
    if failed.any():
        index = np.unravel_index(items[np.argmax(failed)], batch_shape)
        raise LinAlgError(f"the samples are degenerate: the fitted {name} is not positive definite"
                          f"{_where(tuple(int(i) for i in index))}")
    return chol


def _scatter(d, chol):
    """``Σ_k D_k (L Lᵀ)⁻¹ D_kᵀ`` for ``d`` of shape ``(fits, N, a, b)`` and lower factors ``L``
    of shape ``(fits, b, b)``."""
    w = d @ np.swapaxes(np.linalg.inv(chol), -1, -2)[:, None]  # D_k L⁻ᵀ
    flat = np.swapaxes(w, 1, 2).reshape(w.shape[0], w.shape[2], -1)  # (fits, a, N·b)
    return flat @ np.swapaxes(flat, -1, -2)


def _relative_change(new, old):
    return np.linalg.norm(new - old, axis=(-2, -1)) / np.linalg.norm(new, axis=(-2, -1))


def _unit_scaled(a):
    """``a`` (a stack of finite items, ``(items, ...)``) divided per item by the power of two
    ``2^e`` that brings its largest entry in magnitude into [½, 1), and the exponents ``e``.

    The fixed-point iterations of :func:`fit` and :func:`fastmvn.project` run on such items,
    so that neither their products overflow or underflow nor their convergence depends on
    the scale of the data; a division by a power of two is exact, so ``a`` and ``2^k a`` give
    the same items bit for bit. Undo with ``numpy.ldexp``.
    """
    largest = np.max(np.abs(a), axis=tuple(range(1, a.ndim)), initial=0.0)
    exponent = np.frexp(largest)[1]
    return np.ldexp(a, -exponent.reshape((-1,) + (1,) * (a.ndim - 1))), exponent


def _unscaled(a, exponent, name, dtype, batch_shape):
    """``a`` (items of ``(items, m, m)``) times ``2^exponent`` per item, checked to be in the
    range of ``dtype``; reshaped to ``batch_shape``."""
    with np.errstate(over="ignore"):
        a = np.ldexp(a, exponent[:, None, None]).reshape(batch_shape + a.shape[-2:])
    return _in_range(a, dtype, name, batch_shape)


def fit(samples, *, tol=1e-8, max_iter=100):
    """Maximum-likelihood matrix normal for samples, by Dutilleul's flip-flop; batched.

    ``M`` is the sample mean; then, from ``V = I``, each iteration sets
    ``U = (1/(N p)) Σ_k (X_k − M) V⁻¹ (X_k − M)ᵀ`` and
    ``V = (1/(N n)) Σ_k (X_k − M)ᵀ U⁻¹ (X_k − M)``, and rescales the pair so that
    ``tr(U) = n`` (the scale ambiguity ``(cU, V/c)``: the row variances average one). The
    log-likelihood never decreases from one iteration to the next. Each fit of a batch
    stops on its own, when the relative change of both ``U`` and ``V`` in Frobenius norm
    is at most ``tol``; a fit is thus the same alone and in a batch. The iteration runs on
    the samples of each fit centred and divided by a power of two (exactly), so that samples
    scaled by ``s`` give the same iterations and ``rowcov``, and ``colcov`` scaled by ``s²``
    (bit for bit when ``s`` is a power of two).

    Parameters
    ----------
    samples : (..., N, n, p) array_like
        ``N`` samples per fit; leading axes are independent fits. (Draws from
        :func:`rvs` with ``size=N`` from a batched distribution have shape
        ``(N, ..., n, p)``: ``numpy.moveaxis(x, 0, -3)`` gives this layout.)
    tol : float
        Relative change of the covariances at which a fit has converged.
    max_iter : int
        Most iterations per fit.

    Returns
    -------
    MatrixNormalFit
        A :class:`MatrixNormal` of batch shape ``...`` with ``n_iter``, ``loglik`` (the
        maximised total log-likelihood of the samples, ``−N`` times the entropy of the
        fitted distribution) and ``converged`` per fit. float32 samples give float32
        parameters (the arithmetic is float64), any other samples float64.

    Raises
    ------
    ValueError
        ``samples`` has fewer than 3 dimensions, or too few samples: positive definite
        estimates need ``(N − 1)·min(n, p) ≥ max(n, p)`` (with ``N ≥ 2``), that is
        ``N ≥ 1 + p/n`` and ``N ≥ 1 + n/p``; or NaN or infinity (names the batch index).
    numpy.linalg.LinAlgError
        The samples of a fit are degenerate (they span too few dimensions for a positive
        definite estimate), naming the batch index.
    FloatingPointError
        The fitted ``colcov`` (of the scale of the squared samples) overflows or underflows
        the result dtype, naming the batch index.

    Warns
    -----
    RuntimeWarning
        Some fit did not converge within ``max_iter`` iterations; the result holds the
        last iterate.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> u, v = np.array([[1.5, 0.5], [0.5, 0.5]]), np.array([[2.0, -1.0], [-1.0, 3.0]])
    >>> x = fm.rvs(np.zeros((2, 2)), u, v, size=20_000, random_state=0)
    >>> d = fm.fit(x)
    >>> bool(d.converged), bool(np.isclose(np.trace(d.rowcov), 2.0))
    (True, True)
    >>> bool(np.allclose(np.kron(d.colcov, d.rowcov), np.kron(v, u), atol=0.1))
    True
    """
    arg = _Arg("samples", MEAN, samples, "Nnp")
    shape = arg.array.shape
    batch_shape, (count, n, p) = shape[:-3], shape[-3:]
    if n == 0 or p == 0:
        raise ValueError(f"samples has shape {shape}: matrices must be at least 1×1")
    if (count - 1) * min(n, p) < max(n, p):
        raise ValueError(f"too few samples: samples has shape {shape}, N = {count} samples of {n}×{p} matrices; "
                         f"positive definite estimates need (N − 1)·min(n, p) ≥ max(n, p), "
                         f"here N ≥ {1 + -(-max(n, p) // min(n, p))}")
    max_iter = operator.index(max_iter)
    if max_iter < 1 or not tol >= 0:
        raise ValueError(f"need max_iter ≥ 1 and tol ≥ 0; got max_iter={max_iter}, tol={tol}")
    dtype = result_dtype(arg.array)
    x = np.asarray(arg.array, dtype=np.float64).reshape((-1, count, n, p))
    _report([(~np.isfinite(x).all(axis=(1, 2, 3)).reshape(batch_shape), ValueError,
              "samples contains NaN or infinity")], batch_shape)
    x, mean_exponent = _unit_scaled(x)
    mean = x.mean(axis=1)
    d, scale_exponent = _unit_scaled(x - mean[:, None])
    d_transposed = np.swapaxes(d, -1, -2)
    fits = len(x)
    rowcov = np.empty((fits, n, n))
    colcov = np.broadcast_to(np.eye(p), (fits, p, p)).copy()
    n_iter = np.zeros(fits, dtype=np.int64)
    change = np.full(fits, np.inf)
    active = np.arange(fits)
    for iteration in range(1, max_iter + 1):
        if not len(active):
            break
        part, part_transposed = (d, d_transposed) if len(active) == fits else (d[active], d_transposed[active])
        u = _scatter(part, _fitted_factor(colcov[active], "colcov", active, batch_shape)) / (count * p)
        v = _scatter(part_transposed, _fitted_factor(u, "rowcov", active, batch_shape)) / (count * n)
        scale = np.trace(u, axis1=-2, axis2=-1)[:, None, None] / n
        u, v = u / scale, v * scale
        if iteration > 1:
            change[active] = np.maximum(_relative_change(u, rowcov[active]), _relative_change(v, colcov[active]))
        rowcov[active], colcov[active], n_iter[active] = u, v, iteration
        active = active[~(change[active] <= tol)]
    _fitted_factor(colcov, "colcov", np.arange(fits), batch_shape)
    converged = change <= tol
    if not converged.all():
        message = f"fit did not converge within max_iter={max_iter} iterations"
        if batch_shape:
            message += (f" for {int((~converged).sum())} of {fits} fits"
                        f" (first{_where(_first(~converged.reshape(batch_shape)))})")
        warnings.warn(f"{message}: the relative change in the last iteration was "
                      f"{change[~converged].max():.3g} > tol={tol:g}", RuntimeWarning, stacklevel=2)
    mean = np.ldexp(mean, mean_exponent[:, None, None]).reshape(batch_shape + (n, p))
    rowcov = rowcov.reshape(batch_shape + (n, n))
    colcov = _unscaled(colcov, 2 * (mean_exponent + scale_exponent), "the fitted colcov", dtype, batch_shape)
    loglik = -count * np.asarray(entropy(rowcov, colcov), dtype=np.float64)
    distribution = MatrixNormal(*(a.astype(dtype) for a in (mean, rowcov, colcov)))

    def shaped(values):
        values = values.reshape(batch_shape)
        return values if values.ndim else values[()]

    return MatrixNormalFit(distribution, shaped(n_iter), shaped(loglik), shaped(converged))
