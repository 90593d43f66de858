"""Matrix normals fitted to data: :func:`fit` (maximum likelihood for samples, returning a
:class:`MatrixNormalFit`), and to a matrix Gaussian: :func:`nearest_kronecker` (the
Frobenius-nearest ``V⊗U``) and :func:`project` (the nearest in KL).

:func:`fit` and :func:`project` iterate a fixed point of ``(U, V)`` the same way, through
:func:`_converge`: per item, each until its relative change is at most ``tol``, on items
divided by a power of two so that the scale of the data changes nothing but the result's scale.
"""

from __future__ import annotations

import operator
import warnings
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
from numpy.linalg import LinAlgError

from .. import _config, _large
from .._arguments import COV, MEAN, Arg, check, result_dtype, where
from ._base import _cholesky, _first, _in_range, _nonfinite, _report, _symmetric
from .functions import entropy
from .gaussian import MatrixGaussian, _kron_layout
from .kl import kl_gaussian
from .normal import MatrixNormal

if TYPE_CHECKING:
    from .._typing import ArrayLike, FloatArray, NDArray, Result

    #: Iterations per item: an int array of the batch shape, or an int for a single item.
    Counts = NDArray[np.integer[Any]] | int

__all__ = ["fit", "MatrixNormalFit", "nearest_kronecker", "project"]


# Maximum likelihood for samples ---------------------------------------------------------


class MatrixNormalFit(MatrixNormal):
    """A :class:`MatrixNormal` fitted by :func:`fit` (which makes it), with how the fit went.

    Indexing (``fit[i]``) and the methods that return distributions give plain
    :class:`MatrixNormal` objects.

    Parameters
    ----------
    distribution : MatrixNormal
        The fitted distribution.
    n_iter : (...) int ndarray or int
        Flip-flop iterations run for each fit.
    loglik : (...) float64 ndarray or float
        The maximised log-likelihood of each fit.
    converged : (...) bool ndarray or bool
        Whether each fit converged.

    Attributes
    ----------
    n_iter : (...) int ndarray or int
        Flip-flop iterations run for each fit (each iteration updates ``U``, then ``V``).
    loglik : (...) float64 ndarray or float
        The maximised log-likelihood ``Σ_k log p(X_k)`` over the ``N`` samples of each fit.
    converged : (...) bool ndarray or bool
        Whether each fit met ``tol`` within ``max_iter`` iterations.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> samples = fm.MatrixNormal(np.zeros((3, 2)), np.eye(3), np.eye(2)).rvs(size=500, random_state=0)
    >>> result = fm.fit(samples)
    >>> type(result).__name__, bool(result.converged), result.shape
    ('MatrixNormalFit', True, (3, 2))
    """

    n_iter: Counts
    loglik: FloatArray | float
    converged: NDArray[np.bool_] | bool

    def __init__(self, distribution: MatrixNormal, n_iter: Counts, loglik: FloatArray | float,
                 converged: NDArray[np.bool_] | bool) -> None:
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
                          f"{where(tuple(int(i) for i in index))}")
    return chol


def _scatter(d, chol):
    """``Σ_k D_k (L Lᵀ)⁻¹ D_kᵀ`` for ``d`` of shape ``(fits, N, a, b)`` and lower factors ``L``
    of shape ``(fits, b, b)``.

    Large samples (at least :data:`fastmvn._config.LAPACK_MIN_SIDE` on a side) go through
    SciPy's BLAS, one compiled call per fit (:func:`fastmvn._lapack.scatter`)."""
    if min(d.shape[-2:]) >= _config.LAPACK_MIN_SIDE:
        lapack = _large._linalg()[0]
        scatter = np.empty(d.shape[:1] + d.shape[-2:-1] * 2)
        for fit, (samples, factor) in enumerate(zip(d, chol)):
            scatter[fit] = lapack.scatter(np.ascontiguousarray(samples, dtype=np.float64),
                                          np.ascontiguousarray(factor, dtype=np.float64))
        return scatter
    w = d @ np.swapaxes(np.linalg.inv(chol), -1, -2)[:, None]  # D_k L⁻ᵀ
    flat = np.swapaxes(w, 1, 2).reshape(w.shape[0], w.shape[2], -1)  # (fits, a, N·b)
    return flat @ np.swapaxes(flat, -1, -2)


# The fixed-point iteration shared by fit and project ----------------------------------------


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


def _iterations(tol, max_iter):
    """``max_iter`` as an int, after checking that ``max_iter ≥ 1`` and ``tol ≥ 0``."""
    try:
        max_iter = operator.index(max_iter)
    except TypeError:
        raise TypeError(f"max_iter must be an integer; got {max_iter!r}") from None
    if max_iter < 1 or not tol >= 0:
        raise ValueError(f"need max_iter ≥ 1 and tol ≥ 0; got max_iter={max_iter}, tol={tol}")
    return max_iter


def _converge(step, rowcov, colcov, tol, max_iter, measure_first=True):
    """Iterate ``(U, V) ← step(items, V)`` on a stack of items, each until it converges.

    ``step(items, colcov)`` gives the next ``U`` and ``V`` of the items ``items`` (positions
    in the stack) from their ``V``; the pair is then scaled to ``tr(U) = n``. An item has
    converged when the relative change of both ``U`` and ``V`` in Frobenius norm is at most
    ``tol``, and leaves the iteration then: its result does not depend on the other items.
    ``rowcov`` ``(items, n, n)`` and ``colcov`` ``(items, p, p)`` hold the starting point and
    are updated in place; with ``measure_first=False`` ``rowcov`` holds none and the change
    is measured from the second iteration on.

    Returns the iterations run per item and the relative change of each item's last iteration
    (``inf`` when only one was run without a measure); see :func:`_warn_unconverged`.
    """
    n = rowcov.shape[-1]
    n_iter = np.zeros(len(rowcov), dtype=np.int64)
    change = np.full(len(rowcov), np.inf)
    active = np.arange(len(rowcov))
    for iteration in range(1, max_iter + 1):
        if not len(active):
            break
        u, v = step(active, colcov[active])
        scale = np.trace(u, axis1=-2, axis2=-1)[:, None, None] / n
        u, v = u / scale, v * scale
        if measure_first or iteration > 1:
            change[active] = np.maximum(_relative_change(u, rowcov[active]), _relative_change(v, colcov[active]))
        rowcov[active], colcov[active], n_iter[active] = u, v, iteration
        active = active[~(change[active] <= tol)]
    return n_iter, change


def _warn_unconverged(change, tol, max_iter, name, items, batch_shape):
    """Warn (for the caller of ``name``, :func:`fit` or :func:`project`) where some item's last
    relative ``change`` exceeds ``tol``, saying how many of the ``items`` over ``batch_shape``
    and the first; returns the mask of the items that converged."""
    converged = change <= tol
    if not converged.all():
        message = f"{name} did not converge within max_iter={max_iter} iterations"
        if batch_shape:
            message += (f" for {int((~converged).sum())} of {len(change)} {items}"
                        f" (first{where(_first(~converged.reshape(batch_shape)))})")
        warnings.warn(f"{message}: the relative change in the last iteration was "
                      f"{change[~converged].max():.3g} > tol={tol:g}", RuntimeWarning, stacklevel=3)
    return converged


# Fitting to samples ---------------------------------------------------------------------


def fit(samples: ArrayLike, *, tol: float = 1e-8, max_iter: int = 100) -> MatrixNormalFit:
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
    TypeError
        ``max_iter`` is not an integer.
    ValueError
        ``samples`` has fewer than 3 dimensions, or too few samples: positive definite
        estimates need ``(N − 1)·min(n, p) ≥ max(n, p)`` (with ``N ≥ 2``), that is
        ``N ≥ 1 + p/n`` and ``N ≥ 1 + n/p``; or NaN or infinity (names the batch index);
        or ``max_iter < 1``, or ``tol`` negative or NaN.
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
    arg = Arg("samples", MEAN, samples, "Nnp")
    shape = arg.array.shape
    batch_shape, (count, n, p) = shape[:-3], shape[-3:]
    if n == 0 or p == 0:
        raise ValueError(f"samples has shape {shape}: matrices must be at least 1×1")
    if (count - 1) * min(n, p) < max(n, p):
        raise ValueError(f"too few samples: samples has shape {shape}, N = {count} samples of {n}×{p} matrices; "
                         f"positive definite estimates need (N − 1)·min(n, p) ≥ max(n, p), "
                         f"here N ≥ {1 + -(-max(n, p) // min(n, p))}")
    max_iter = _iterations(tol, max_iter)
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

    def step(active, colcov):
        part, part_transposed = (d, d_transposed) if len(active) == fits else (d[active], d_transposed[active])
        u = _scatter(part, _fitted_factor(colcov, "colcov", active, batch_shape)) / (count * p)
        return u, _scatter(part_transposed, _fitted_factor(u, "rowcov", active, batch_shape)) / (count * n)

    n_iter, change = _converge(step, rowcov, colcov, tol, max_iter, measure_first=False)
    _fitted_factor(colcov, "colcov", np.arange(fits), batch_shape)
    converged = _warn_unconverged(change, tol, max_iter, "fit", "fits", batch_shape)
    mean = np.ldexp(mean, mean_exponent[:, None, None]).reshape(batch_shape + (n, p))
    rowcov = rowcov.reshape(batch_shape + (n, n))
    colcov = _unscaled(colcov, 2 * (mean_exponent + scale_exponent), "the fitted colcov", dtype, batch_shape)
    loglik = -count * np.asarray(entropy(rowcov, colcov), dtype=np.float64)
    distribution = MatrixNormal(*(a.astype(dtype) for a in (mean, rowcov, colcov)))

    def shaped(values):
        values = values.reshape(batch_shape)
        return values if values.ndim else values.item()  # one fit: a Python int, float or bool

    return MatrixNormalFit(distribution, shaped(n_iter), shaped(loglik), shaped(converged))


# Matrix normals close to a matrix Gaussian -----------------------------------------------


def _nearest(sigma, n, p):
    """The Frobenius-nearest ``V⊗U`` to ``sigma`` (float64), scaled to ``tr(U) = n`` where ``tr(U) ≠ 0``."""
    left, singular, right = np.linalg.svd(_kron_layout(sigma, n, p))
    root = np.sqrt(singular[..., :1, None])
    rowcov = (root * left[..., :, :1]).reshape(sigma.shape[:-2] + (n, n))
    colcov = (root * right[..., :1, :]).reshape(sigma.shape[:-2] + (p, p))
    rowcov, colcov = (0.5 * (a + np.swapaxes(a, -1, -2)) for a in (rowcov, colcov))
    trace = np.trace(rowcov, axis1=-2, axis2=-1)[..., None, None]
    scale = np.where(trace == 0, 1.0, trace / n)  # a negative scale flips the free sign of the pair
    return rowcov / scale, colcov * scale


def nearest_kronecker(cov: ArrayLike, n: int, p: int) -> tuple[FloatArray, FloatArray]:
    """The Frobenius-nearest Kronecker product ``V⊗U`` to ``cov``, batched (Van Loan and Pitsianis).

    ``‖Σ − V⊗U‖_F`` equals ``‖R − vec'(U) vec'(V)ᵀ‖_F`` for the rearrangement
    ``R = E[(X−M)⊗(X−M)]`` of ``Σ`` (:attr:`MatrixGaussian.kron_layout`, ``vec'`` stacking
    rows), so ``U`` and ``V`` come from the leading singular pair of ``R``. The pair is
    defined up to ``(cU, V/c)``: the sign is chosen so that ``tr(U) > 0`` and the scale so
    that ``tr(U) = n``, as in :func:`fastmvn.fit`. When ``cov`` is symmetric positive
    definite, so are ``U`` and ``V``.

    Parameters
    ----------
    cov : (..., np, np) array_like
        Symmetric matrices (the lower triangle is read).
    n, p : int
        The shape of the random matrices, ``n·p`` the size of ``cov``.

    Returns
    -------
    rowcov : (..., n, n) ndarray
        ``U``, with ``tr(U) = n``.
    colcov : (..., p, p) ndarray
        ``V``.

    Raises
    ------
    ValueError
        ``cov`` is not of size ``n·p``, or contains NaN or infinity (names the batch index).

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> u, v = np.array([[2.0, 0.5], [0.5, 1.0]]), np.array([[1.0, 0.3, 0.0], [0.3, 1.0, 0.3], [0.0, 0.3, 1.0]])
    >>> rowcov, colcov = fm.nearest_kronecker(np.kron(v, u), 2, 3)
    >>> bool(np.allclose(rowcov, u * 2 / 3) and np.allclose(colcov, v * 3 / 2))   # tr(U) = n = 2
    True
    """
    n, p = operator.index(n), operator.index(p)
    cov_arg = Arg("cov", COV, cov, "kk")
    dtype, batch_shape = check([cov_arg])
    if cov_arg.array.shape[-1] != n * p:
        raise ValueError(f"cov has shape {cov_arg.array.shape}; expected (..., {n * p}, {n * p}) for n·p = {n}·{p}")
    _report([(_nonfinite(cov_arg), ValueError, "cov contains NaN or infinity")], batch_shape)
    rowcov, colcov = _nearest(_symmetric(cov_arg.array, np.float64), n, p)
    return rowcov.astype(dtype), colcov.astype(dtype)


@overload
def project(g: MatrixGaussian, *, tol: float = ..., max_iter: int = ...,
            return_n_iter: Literal[False] = ...) -> tuple[MatrixNormal, Result]: ...


@overload
def project(g: MatrixGaussian, *, tol: float = ..., max_iter: int = ...,
            return_n_iter: Literal[True]) -> tuple[MatrixNormal, Result, Counts]: ...


def project(g: MatrixGaussian, *, tol: float = 1e-8, max_iter: int = 100,
            return_n_iter: bool = False) -> tuple[MatrixNormal, Result] | tuple[MatrixNormal, Result, Counts]:
    """The matrix normal closest to a matrix Gaussian in ``KL(g ‖ MN)``, batched.

    The mean is ``g``'s. The covariances solve the fixed point of the KL's minimisation,
    ``U = (1/p) Σ_jl (V⁻¹)_jl Σ^(j,l)`` and ``V_jl = (1/n) tr(U⁻¹ Σ^(j,l))`` over the
    ``n×n`` blocks ``Σ^(j,l)`` of ``Σ``, iterated from :func:`nearest_kronecker` (each
    half-step minimises the KL exactly over ``U`` or ``V``, so the KL never rises); after
    each iteration the pair is scaled to ``tr(U) = n``. Each item stops when the relative
    change of both ``U`` and ``V`` in Frobenius norm is at most ``tol``. For a ``Σ`` that
    is a Kronecker product the first iteration returns it. The iteration runs on ``Σ``
    divided by a power of two (exactly): ``cΣ`` gives the same iterations and ``U``, and
    ``V`` scaled by ``c`` (bit for bit when ``c`` is a power of two).

    Parameters
    ----------
    g : MatrixGaussian
        The Gaussian ``N(vec M, Σ)`` of ``n×p`` matrices to project, over its batch shape.
    tol : float
        Relative change of the covariances at which an item has converged, ``≥ 0``.
    max_iter : int
        Most iterations per item, ``≥ 1``.
    return_n_iter : bool
        Also return the number of iterations of each item.

    Returns
    -------
    normal : MatrixNormal
        Of the shape and batch shape of ``g``, with ``tr(U) = n``.
    kl : (...) ndarray or scalar
        ``KL(g ‖ normal)``, the divergence that remains: how far ``Σ`` is from any
        Kronecker product (0 for one).
    n_iter : (...) int ndarray or int
        Only with ``return_n_iter``: the iterations run per item (over the batch shape of
        ``g.cov``).

    Raises
    ------
    TypeError
        ``g`` is not a :class:`~fastmvn.MatrixGaussian`, or ``max_iter`` not an integer.
    ValueError
        ``max_iter < 1``, or ``tol`` negative or NaN.
    FloatingPointError
        The projected ``V`` is beyond the range of ``g``'s dtype; names the batch index.

    Warns
    -----
    RuntimeWarning
        Some item did not converge within ``max_iter`` iterations; the result holds the
        last iterate.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> u, v = np.array([[2.0, 0.5], [0.5, 1.0]]), np.array([[1.0, 0.3], [0.3, 1.0]])
    >>> normal, kl = fm.project(fm.MatrixGaussian(np.zeros((2, 2)), np.kron(v, u)))
    >>> bool(np.allclose(normal.cov, np.kron(v, u))), abs(float(kl)) < 1e-12
    (True, True)
    >>> cov = np.kron(v, u) + np.diag([1.0, 0.0, 0.0, 1.0])
    >>> normal, kl, n_iter = fm.project(fm.MatrixGaussian(np.zeros((2, 2)), cov), return_n_iter=True)
    >>> bool(kl > 0), int(n_iter) < 20
    (True, True)
    """
    if not isinstance(g, MatrixGaussian):
        raise TypeError(f"g must be a MatrixGaussian, not {type(g).__name__}")
    max_iter = _iterations(tol, max_iter)
    n, p = g.shape
    cov_batch = g._cov.shape[:-2]
    sigma, exponent = _unit_scaled(g._exact[1].reshape((-1, n * p, n * p)))
    blocks = sigma.reshape((-1, p, n, p, n))  # [item, j, a, l, b]: Σ^(j,l)[a, b]
    rowcov, colcov = _nearest(sigma, n, p)

    def step(active, colcov):
        part = blocks[active]
        u = np.einsum("...jl,...jalb->...ab", np.linalg.inv(colcov), part) / p
        return u, np.einsum("...ab,...jbla->...jl", np.linalg.inv(u), part) / n

    n_iter, change = _converge(step, rowcov, colcov, tol, max_iter)
    _warn_unconverged(change, tol, max_iter, "project", "items", cov_batch)
    rowcov = rowcov.reshape(cov_batch + (n, n))
    colcov = _unscaled(colcov, exponent, "the projected colcov", g.dtype, cov_batch)
    normal = MatrixNormal(g._mean, rowcov.astype(g.dtype), colcov.astype(g.dtype))
    kl = kl_gaussian(g, normal)
    if return_n_iter:
        n_iter = n_iter.reshape(cov_batch)
        return normal, kl, n_iter if n_iter.ndim else int(n_iter)
    return normal, kl
