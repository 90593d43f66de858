"""The Kronecker-sum normal :class:`KroneckerSumNormal`, ``vec X ~ N(vec M, V⊗U + B⊗A)`` (a
Kronecker product plus noise), held in the eigenbasis that whitens the noise and
diagonalises the signal, and its batched function forms :func:`logpdf_kron_sum`,
:func:`kl_kron_sum` and :func:`kl_eig` (from eigendecompositions).

Every distribution of this module is stored in one form (``docs/kronecker_sums.md``)::

    Σ = (P_v ⊗ P_u) diag(vec d) (P_v ⊗ P_u)ᵀ,   d_ij = (λ_u,i λ_v,j + 1)^s,

with square ``P_u`` (``n×n``), ``P_v`` (``p×p``), their inverses ``R_u``, ``R_v``, the
eigenvalues ``λ_u ≥ 0``, ``λ_v ≥ 0``, ``log|P_u P_uᵀ|``, ``log|P_v P_vᵀ|`` and the power
``s``: ``+1`` for a covariance ``V⊗U + B⊗A`` (``P_u = L_A Q_u``), ``−1`` for a precision
``V⊗U + δI`` (``P_u = Q_u/√δ``). A :class:`~fastmvn.MatrixNormal` is the form with
``P = L`` (its Cholesky factors) and ``λ = 0``, so every method and divergence is one
computation on the form. NumPy and SciPy on whole stacks (LAPACK's Cholesky, triangular
solves, ``eigh`` and matrix products): ``O(n³ + p³)`` once at construction, ``O(n²p + np²)``
per density or divergence.

The function forms compute items up to ``_config.KRON_SUM_MAX_SIDE`` (32) on a side with
the compiled kernels instead (:mod:`fastmvn.kernels.kronsum`: the lane Cholesky, the lane
Jacobi eigensolver of :mod:`fastmvn.kernels.eigen` and the same formulas, item by item),
where NumPy's per-matrix LAPACK calls would dominate; log-densities from
``_config.KRON_SUM_LAPACK_MIN_SIDE`` (12) on a side by one compiled call of LAPACK per item
(:func:`fastmvn._large_items.kron_sum_logpdf`: the larger side only made tridiagonal, each
column's block ``λ_j T + I`` factorised in ``O(n)``). An item either leaves NaN is computed
again here, which gives its value or explains its failure.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from numpy.linalg import LinAlgError

from .. import _config, _large
from .._arguments import COV, MEAN, VAR, Arg, argument, check, check_errors, check_out, result_dtype
from .._docs import shared
from .._jit import launching
from .._reports import batch_index, relocated, with_batch_axes
from ._base import (_ENTROPY_PER_ENTRY, _compared, _divergence, _eigen, _factor, _failing, _Frozen, _full, _inverse,
                    _Links, _nonfinite, _not_pd, _report, _sample_shape, _symmetric)
from .functions import _finish
from .normal import MatrixNormal, _eig_factors

if TYPE_CHECKING:
    from .._typing import ArrayLike, Errors, FloatArray, Result, Seed, Size
    from .gaussian import MatrixGaussian

__all__ = ["KroneckerSumNormal", "logpdf_kron_sum", "kl_kron_sum", "kl_eig"]

_LOG_2PI = math.log(2.0 * math.pi)


class _Form(NamedTuple):
    """The parts of a distribution in the eigenbasis form, float64, each over its own batch shape."""

    mean: np.ndarray  # (..., n, p)
    rowbasis: np.ndarray  # P_u (..., n, n)
    rowwhiten: np.ndarray  # R_u = P_u⁻¹ (..., n, n)
    rowvals: np.ndarray  # λ_u (..., n)
    rowlogdet: np.ndarray  # log|P_u P_uᵀ| (...)
    colbasis: np.ndarray  # P_v (..., p, p)
    colwhiten: np.ndarray  # R_v = P_v⁻¹ (..., p, p)
    colvals: np.ndarray  # λ_v (..., p)
    collogdet: np.ndarray  # log|P_v P_vᵀ| (...)
    power: np.ndarray  # s, +1 (covariance) or −1 (precision), one value for the whole batch


def _swap(a):
    return np.swapaxes(a, -1, -2)


# The computations on the form -------------------------------------------------------------


def _products(form):
    """``λ_u,i λ_v,j + 1`` over ``(..., n, p)``."""
    return form.rowvals[..., :, None] * form.colvals[..., None, :] + 1.0


def _scales(form):
    """``d_ij = (λ_u,i λ_v,j + 1)^s``: the variances of the whitened entries."""
    products = _products(form)
    if (form.power > 0).all():  # a covariance form, the common case: no pass for the reciprocals
        return products
    return np.where(form.power[..., None, None] > 0, products, 1.0 / products)


def _logdet(form):
    """``log|Σ| = p log|P_u P_uᵀ| + n log|P_v P_vᵀ| + s Σ_ij log(λ_u,i λ_v,j + 1)``."""
    n, p = form.mean.shape[-2:]
    products = np.log1p(form.rowvals[..., :, None] * form.colvals[..., None, :]).sum(axis=(-2, -1))
    return p * form.rowlogdet + n * form.collogdet + form.power * products


def _mahalanobis(form, x):
    """``Σ_ij W_ij² / d_ij`` with ``W = R_u (X − M) R_vᵀ``."""
    w = form.rowwhiten @ (x - form.mean) @ _swap(form.colwhiten)
    w *= w
    w /= _scales(form)
    return w.sum(axis=(-2, -1))


def _logpdf(form, x):
    """``−½[np·log 2π + log|Σ| + Σ_ij W_ij²/d_ij]``."""
    n, p = form.mean.shape[-2:]
    return -0.5 * (n * p * _LOG_2PI + _logdet(form) + _mahalanobis(form, x))


def _kl(first, second):
    """``KL(first ‖ second)`` between two forms, float64, over the broadcast batch shape::

        ½[tr(Σ₂⁻¹Σ₁) + Mahalanobis₂(M₁) − np + log|Σ₂| − log|Σ₁|],
        tr(Σ₂⁻¹Σ₁) = Σ_ij (G_u d₁ G_vᵀ)_ij / d₂,ij,   G = (R₂ P₁)∘²  (entrywise square).

    For two covariance forms ``G_u d₁ G_vᵀ = a cᵀ + e fᵀ`` with ``a, c, e, f`` the diagonals
    of ``R₂ U₁ R₂ᵀ``, ``R₂ V₁ R₂ᵀ``, ``R₂ A₁ R₂ᵀ``, ``R₂ B₁ R₂ᵀ``; the product form serves
    every pair (a precision form's ``d`` is not of rank two).
    """
    n, p = first.mean.shape[-2:]
    row_gain = np.square(second.rowwhiten @ first.rowbasis)
    col_gain = np.square(second.colwhiten @ first.colbasis)
    trace = ((row_gain @ _scales(first) @ _swap(col_gain)) / _scales(second)).sum(axis=(-2, -1))
    return _divergence(0.5 * (trace + _mahalanobis(second, first.mean) - n * p + _logdet(second) - _logdet(first)))


def _normal_form(normal):
    """A :class:`~fastmvn.MatrixNormal` ``MN(M, L_U L_Uᵀ, L_V L_Vᵀ)`` as the form with
    ``P = L``, ``λ = 0``: its stored Cholesky factors, inverted by triangular solves."""
    mean, _, _, rowchol, colchol = normal._exact
    return _chol_form(mean, rowchol, colchol)


def _chol_form(mean, rowchol, colchol):
    """The form of ``MN(M, L_U L_Uᵀ, L_V L_Vᵀ)`` from the mean and lower Cholesky factors (float64)."""
    parts = [mean]
    for chol in (rowchol, colchol):
        size = chol.shape[-1]
        logdet = 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(axis=-1)
        parts += [chol, _inverse(chol), np.zeros(chol.shape[:-2] + (size,)), logdet]
    return _Form(*parts, np.array(1.0))


# Checks and factorisation -----------------------------------------------------------------


def _noise(value, name, axes, device=None):
    """The argument of a noise covariance: a matrix, or a scalar ``σ²`` (the covariance ``σ² I``,
    an argument of no axes; a Python number does not decide the result dtype)."""
    if value is None:
        raise TypeError(f"{name} must be a matrix or a scalar, not None")
    if np.ndim(value) == 0:
        return Arg(name, VAR, value, "", default=isinstance(value, (int, float)))
    return argument(name, COV, value, axes, device)


def _noise_matrix(arg, n, p):
    """The argument ``arg`` with a noise variance ``σ²`` (an argument of no axes) made the
    covariance ``σ² I`` of its side (``n`` for a row noise, ``p`` for a column noise), in its
    own dtype and ``default`` if it was; any other argument as it is."""
    if arg.kind != VAR:
        return arg
    row = arg.name.startswith("noise_row")
    return Arg(arg.name, COV, np.eye(n if row else p, dtype=arg.dtype) * arg.array, "nn" if row else "pp",
               default=arg.default)


def _epsilon(arg):
    """The machine epsilon of the data of ``arg``: float32's for float32 data (whose rounding is
    what a low-rank matrix carries), float64's otherwise."""
    return float(np.finfo(np.float32 if arg.dtype == np.float32 else np.float64).eps)


def _semidefinite_floor(arg, eigvals):
    """``m·ε·max|λ|`` for the eigenvalues ``eigvals`` (``(..., m)``) of the matrix ``arg``, ``ε``
    its data's epsilon: an eigenvalue below minus this is not the rounding of a semi-definite
    matrix."""
    return eigvals.shape[-1] * _epsilon(arg) * np.abs(eigvals).max(axis=-1)


def _whiten(signal_arg, noise_arg):
    """One side of the form from its signal ``U`` and noise ``A`` (a matrix or a scalar):
    ``A = L Lᵀ``, ``L⁻¹ U L⁻ᵀ = Q diag(λ) Qᵀ``, ``P = L Q``, ``R = Qᵀ L⁻¹``.

    Returns ``(P, R, λ, log|A|)`` and the masks of the items whose noise is not positive
    definite and whose signal is not positive semi-definite (a whitened eigenvalue below
    ``−m·ε·max|λ|``, ``ε`` the epsilon of the signal's dtype; those within it are taken as
    zero). Items with non-finite entries are replaced (identity noise, zero signal) for the
    caller to report or fill with NaN.
    """
    size = signal_arg.shape[-1]
    nonfinite = _nonfinite(signal_arg)
    if noise_arg.kind == COV:
        signal = _symmetric(signal_arg.array, np.float64)
        signal[nonfinite] = 0.0
        chol, noise_bad = _factor(noise_arg)
        inverse = _inverse(chol)
        eigvals, eigvecs = np.linalg.eigh(inverse @ signal @ _swap(inverse))
        basis, whiten = chol @ eigvecs, _swap(eigvecs) @ inverse
        logdet = 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(axis=-1)
    else:
        variance = float(noise_arg.array)
        noise_bad = np.array(not (np.isfinite(variance) and variance > 0))
        if noise_bad:
            variance = 1.0
        signal = np.asarray(signal_arg.array, dtype=np.float64)  # eigh reads its lower triangle alone
        if nonfinite.any():
            signal = signal.copy()
            signal[nonfinite] = 0.0
        eigvals, eigvecs = np.linalg.eigh(signal)  # of U/σ²: the same vectors, the values over σ²
        eigvals /= variance
        scale = math.sqrt(variance)
        whiten = _swap(eigvecs) / scale
        eigvecs *= scale  # the basis, in place: large arrays are new pages for the system to hand over
        basis, logdet = eigvecs, np.array(size * math.log(variance))
    not_psd = eigvals[..., 0] < -_semidefinite_floor(signal_arg, eigvals)
    return (basis, whiten, np.maximum(eigvals, 0.0), logdet), noise_bad, not_psd


def _arguments(mean, rowcov, colcov, noise_rowcov, noise_colcov, suffix="", device=None):
    """The arguments ``(mean, rowcov, colcov, noise_rowcov, noise_colcov)`` of one distribution,
    named with ``suffix``, as :class:`~fastmvn._arguments.Arg`: a scalar noise is a variance,
    ``noise_colcov=None`` the default variance 1 and ``mean=None`` default zeros. ``device``, a
    GPU backend's adapter (:func:`~fastmvn._arguments.bind`), reads GPU arrays in place."""
    row_arg = argument(f"rowcov{suffix}", COV, rowcov, "nn", device)
    col_arg = argument(f"colcov{suffix}", COV, colcov, "pp", device)
    row_noise = _noise(noise_rowcov, f"noise_rowcov{suffix}", "nn", device)
    col_noise = (Arg(f"noise_colcov{suffix}", VAR, 1.0, "", default=True) if noise_colcov is None
                 else _noise(noise_colcov, f"noise_colcov{suffix}", "pp", device))
    if mean is None:
        n, p = row_arg.shape[-1], col_arg.shape[-1]
        mean_arg = Arg(f"mean{suffix}", MEAN, np.zeros((n, p)), "np", default=True)
    else:
        mean_arg = argument(f"mean{suffix}", MEAN, mean, "np", device)
    return [mean_arg, row_arg, col_arg, row_noise, col_noise]


def _parameters(mean, rowcov, colcov, noise_rowcov, noise_colcov, suffix=""):
    """The parts of a :class:`KroneckerSumNormal` in covariance form (``_Form``), its dtype,
    batch shape and failures, from the arguments named with ``suffix``.

    The failures, for :func:`_report`, come as two lists: NaN or infinity (ValueError), and
    a noise that is not positive definite or a signal that is not positive semi-definite
    (LinAlgError); a caller reports every argument's first list before any second one.
    """
    return _parts(_arguments(mean, rowcov, colcov, noise_rowcov, noise_colcov, suffix))


def _parts(args):
    """:func:`_parameters` from the arguments of :func:`_arguments`."""
    mean_arg, row_arg, col_arg, row_noise, col_noise = args
    dtype, batch_shape = check(args)
    row_parts, row_noise_bad, row_not_psd = _whiten(row_arg, row_noise)
    col_parts, col_noise_bad, col_not_psd = _whiten(col_arg, col_noise)
    nonfinite = [(_nonfinite(arg) if arg.axes else ~np.isfinite(np.asarray(arg.array, dtype=np.float64)),
                  ValueError, f"{arg.name} contains NaN or infinity") for arg in args]
    invalid = [(row_noise_bad, LinAlgError, _not_pd(row_noise.name)),
               (col_noise_bad, LinAlgError, _not_pd(col_noise.name)),
               (row_not_psd, LinAlgError, f"{row_arg.name} is not positive semi-definite"),
               (col_not_psd, LinAlgError, f"{col_arg.name} is not positive semi-definite")]
    form = _Form(np.array(mean_arg.array, dtype=np.float64), *row_parts, *col_parts, np.array(1.0))
    return form, dtype, batch_shape, (nonfinite, invalid)


def _checked(failures, batch_shape, errors):
    """The mask over ``batch_shape`` of the items that fail one of ``failures`` (pairs of lists
    from :func:`_parameters`, in the order of the arguments); with ``errors="raise"`` the
    first failing item raises, every non-finite check tried before any other."""
    ordered = [failure for first, _ in failures for failure in first] + [
        failure for _, second in failures for failure in second]
    if errors == "raise":
        _report(ordered, batch_shape)
    return _failing([mask for mask, _, _ in ordered], batch_shape)


def _from_eigen(mean, eigen, scalar, power, names):
    """The form, dtype and batch shape of :func:`_eigen_form`; a failing item raises."""
    form, dtype, batch_shape, failures = _eigen_form(mean, eigen, scalar, power, names)
    _checked([failures], batch_shape, "raise")
    return form, dtype, batch_shape


def _eigen_form(mean, eigen, scalar, power, names):
    """The form of ``Σ = V⊗U + σ²I`` (``power=1``, ``scalar=σ²``) or of ``Σ⁻¹ = V⊗U + δI``
    (``power=−1``, ``scalar=δ``) from ``eigen = (Q_u, λ_u, Q_v, λ_v)`` of ``U`` and ``V``, with
    ``names`` those of the five arguments and of the scalar: ``P_u = √c Q_u``, ``R_u = Q_uᵀ/√c``,
    ``λ_u/t``, ``log|P_u P_uᵀ| = n log c`` with ``c = t = σ²``, or ``c = 1/δ``, ``t = δ``.
    Returns the form, dtype, batch shape and failures as :func:`_parameters` does (a failing
    item's parts may be NaN)."""
    mean_name, rowvecs_name, rowvals_name, colvecs_name, colvals_name, scalar_name = names
    args = [Arg(rowvecs_name, MEAN, eigen[0], "nn"), Arg(rowvals_name, VAR, eigen[1], "n"),
            Arg(colvecs_name, MEAN, eigen[2], "pp"), Arg(colvals_name, VAR, eigen[3], "p"),
            Arg(scalar_name, VAR, scalar, "", default=isinstance(scalar, (int, float)))]
    n, p = args[0].shape[-1], args[2].shape[-1]
    args.insert(0, Arg(mean_name, MEAN, np.zeros((n, p)) if mean is None else mean, "np", default=mean is None))
    dtype, batch_shape = check(args)
    (row_nonfinite, row_other), (col_nonfinite, col_other) = _eigen(*args[1:3], False), _eigen(*args[3:5], False)
    value = np.asarray(args[5].array, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        low = ~(value > 0)
    failures = ([(_nonfinite(args[0]), ValueError, f"{mean_name} contains NaN or infinity"), *row_nonfinite,
                 *col_nonfinite, (~np.isfinite(value), ValueError, f"{scalar_name} is NaN or infinity")],
                [*row_other, *col_other, (low & np.isfinite(value), ValueError, f"{scalar_name} must be positive")])
    rowvecs, rowvals, colvecs, colvals = (np.asarray(arg.array, dtype=np.float64) for arg in args[1:5])
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        scale = value if power > 0 else 1.0 / value
        root = np.sqrt(scale)[..., None, None]
        form = _Form(np.array(args[0].array, dtype=np.float64), root * rowvecs, _swap(rowvecs) / root,
                     rowvals / value[..., None], n * np.log(scale), colvecs, _swap(colvecs), colvals,
                     np.zeros(np.shape(colvals)[:-1]), np.array(float(power)))
    return form, dtype, batch_shape, failures


def _precision(mean, rowprec, colprec, damping):
    """The form of the precision ``V⊗U + δI`` (:meth:`KroneckerSumNormal.from_precision`), its
    dtype, batch shape and failures (for :func:`_checked`: each factor's NaN or infinity and
    negative eigenvalues first, then the mean's and the damping's), the arguments ``(mean,
    rowprec, colprec, damping)`` and the eigendecompositions ``(Q_u, λ_u, Q_v, λ_v)`` of ``U``
    and ``V`` (their lower triangles read; a failing item's may be of zeros)."""
    row_arg, col_arg = Arg("rowprec", COV, rowprec, "nn"), Arg("colprec", COV, colprec, "pp")
    eigen = []
    failures = [(_nonfinite(arg), ValueError, f"{arg.name} contains NaN or infinity") for arg in (row_arg, col_arg)]
    for arg in (row_arg, col_arg):
        matrix = _symmetric(arg.array, np.float64)
        matrix[_nonfinite(arg)] = 0.0
        vals, vecs = np.linalg.eigh(matrix)
        failures.append((vals[..., 0] < -_semidefinite_floor(arg, vals), LinAlgError,
                         f"{arg.name} is not positive semi-definite"))
        eigen += [vecs, np.maximum(vals, 0.0)]
    form, _, batch_shape, eigen_failures = _eigen_form(
        mean, eigen, damping, -1, ("mean", "rowprec", "rowprec", "colprec", "colprec", "damping"))
    given = ([arg.array for arg in (row_arg, col_arg)] + ([] if mean is None else [mean])
             + ([] if isinstance(damping, (int, float)) else [damping]))
    damping_arg = Arg("damping", VAR, damping, "", default=isinstance(damping, (int, float)))
    mean_arg = Arg("mean", MEAN, form.mean, "np", default=mean is None)
    return (form, result_dtype(*given), batch_shape, [(failures, []), eigen_failures],
            [mean_arg, row_arg, col_arg, damping_arg], eigen)


# The frozen distribution ------------------------------------------------------------------


class KroneckerSumNormal(_Frozen):
    """A frozen Kronecker-sum normal, ``vec X ~ N(vec M, V⊗U + B⊗A)``, possibly batched.

    A Kronecker product (the signal ``V⊗U``, positive semi-definite: it may be of low rank
    or zero) plus noise (``B⊗A``, positive definite; a scalar ``σ²`` means ``σ² I``), with
    column-major ``vec`` as in :class:`~fastmvn.MatrixNormal`. The noise whitens and the
    signal is diagonalised once, here (``A = L_A L_Aᵀ``, ``L_A⁻¹ U L_A⁻ᵀ = Q_u Λ_u Q_uᵀ``,
    ``P_u = L_A Q_u``, likewise ``P_v``), giving
    ``Σ = (P_v⊗P_u)(Λ_v⊗Λ_u + I)(P_v⊗P_u)ᵀ``; every method works on that form and never
    forms the ``np×np`` covariance. The arguments broadcast over leading axes; failures name
    the argument and the batch index. Only the lower triangles of the matrices are read.

    Parameters
    ----------
    mean : (..., n, p) array_like or None
        Mean ``M``; ``None`` means zero.
    rowcov : (..., n, n) array_like
        Row covariance ``U`` of the signal (symmetric positive semi-definite).
    colcov : (..., p, p) array_like
        Column covariance ``V`` of the signal (symmetric positive semi-definite).
    noise_rowcov : (..., n, n) array_like or float
        Row covariance ``A`` of the noise (symmetric positive definite), or a scalar
        ``σ² > 0`` for ``A = σ² I``.
    noise_colcov : (..., p, p) array_like or float, optional
        Column covariance ``B`` of the noise; ``None`` (default) means the identity.

    Raises
    ------
    numpy.linalg.LinAlgError
        A noise covariance is not positive definite, or a signal covariance has a negative
        eigenvalue beyond rounding (names the argument and batch index).
    ValueError
        NaN or infinity (names the argument and batch index); shapes that do not fit.

    See Also
    --------
    KroneckerSumNormal.from_eig, KroneckerSumNormal.from_precision : from eigendecompositions,
        and the precision ``V⊗U + δI``.
    logpdf_kron_sum, kl_kron_sum : the function forms, with ``out=`` and ``errors=``.
    fastmvn.reference.kron_sum_cov : the dense covariance, the specification.

    Notes
    -----
    The factorisation costs ``O(n³ + p³)`` (a Cholesky factorisation, a triangular solve
    and ``eigh`` per side; for scalar noise only ``eigh``), a density or divergence
    ``O(n²p + np²)``. Arithmetic is in float64; the results are float32 when every input
    is float32. The stored covariances (:attr:`rowcov`, …) are rebuilt from the form.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> from scipy.stats import multivariate_normal
    >>> u, v = np.array([[2.0, 0.5], [0.5, 1.0]]), np.array([[1.0, 1.0], [1.0, 1.0]])  # v of rank 1
    >>> d = fm.KroneckerSumNormal(np.zeros((2, 2)), u, v, 0.1)        # V⊗U + 0.1 I
    >>> x = np.array([[1.0, 0.0], [0.5, -1.0]])
    >>> dense = multivariate_normal(np.zeros(4), np.kron(v, u) + 0.1 * np.eye(4))
    >>> bool(np.isclose(d.logpdf(x), dense.logpdf(x.ravel(order="F"))))
    True
    >>> bool(np.allclose(d.cov, np.kron(v, u) + 0.1 * np.eye(4)))
    True
    >>> fm.KroneckerSumNormal(np.zeros((3, 2, 2)), u, v, np.eye(2), 2.0).entropy().shape
    (3,)
    """

    _PARTS = tuple(f"_{name}" for name in _Form._fields)
    _CORES = {"_rowvals": 1, "_colvals": 1, "_rowlogdet": 0, "_collogdet": 0, "_power": 0}
    _power: np.ndarray

    def __init__(self, mean: ArrayLike | None, rowcov: ArrayLike, colcov: ArrayLike, noise_rowcov: ArrayLike | float,
                 noise_colcov: ArrayLike | None = None) -> None:
        form, dtype, batch_shape, failures = _parameters(mean, rowcov, colcov, noise_rowcov, noise_colcov)
        _checked([failures], batch_shape, "raise")
        self._init(*form, dtype, batch_shape)

    @staticmethod
    def from_eig(mean: ArrayLike | None, rowvecs: ArrayLike, rowvals: ArrayLike, colvecs: ArrayLike, colvals: ArrayLike,
                 *, noise: ArrayLike | float | None = None,
                 damping: ArrayLike | float | None = None) -> KroneckerSumNormal:
        """The Kronecker-sum normal of ``U = Q_u diag(λ_u) Q_uᵀ`` and ``V = Q_v diag(λ_v) Q_vᵀ``
        given by their eigendecompositions, with isotropic noise or damping; nothing is factorised.

        With ``noise=σ²`` the covariance is ``V⊗U + σ² I``; with ``damping=δ`` the precision
        is ``V⊗U + δ I`` (Laplace approximations and damped K-FAC), so that
        ``Σ = (Q_v⊗Q_u) diag(1/(λ_v,j λ_u,i + δ)) (Q_v⊗Q_u)ᵀ``. Give exactly one of the two.

        Parameters
        ----------
        mean : (..., n, p) array_like or None
            Mean ``M``; ``None`` means zero.
        rowvecs : (..., n, n) array_like
            Orthonormal eigenvectors ``Q_u`` of ``U``, in columns (as ``numpy.linalg.eigh`` returns them).
        rowvals : (..., n) array_like
            Eigenvalues ``λ_u ≥ 0`` of ``U``.
        colvecs : (..., p, p) array_like
            Orthonormal eigenvectors ``Q_v`` of ``V``.
        colvals : (..., p) array_like
            Eigenvalues ``λ_v ≥ 0`` of ``V``.
        noise : (...) array_like, optional
            Noise variance ``σ² > 0`` of the covariance form.
        damping : (...) array_like, optional
            Damping ``δ > 0`` of the precision form.

        Returns
        -------
        KroneckerSumNormal

        Raises
        ------
        ValueError
            NaN or infinity; eigenvectors that are not orthonormal (an entry of ``QᵀQ − I``
            beyond the square root of the dtype's epsilon); ``noise`` or ``damping`` not
            positive; both or neither given; shapes that do not fit.
        numpy.linalg.LinAlgError
            A negative eigenvalue. Each names the argument and batch index.

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> u, v = np.array([[2.0, 0.5], [0.5, 1.0]]), np.diag([3.0, 0.0])
        >>> (lu, qu), (lv, qv) = np.linalg.eigh(u), np.linalg.eigh(v)
        >>> d = fm.KroneckerSumNormal.from_eig(None, qu, lu, qv, lv, noise=0.5)
        >>> bool(np.allclose(d.cov, np.kron(v, u) + 0.5 * np.eye(4)))
        True
        >>> q = fm.KroneckerSumNormal.from_eig(None, qu, lu, qv, lv, damping=0.5)
        >>> bool(np.allclose(np.linalg.inv(q.cov), np.kron(v, u) + 0.5 * np.eye(4)))
        True
        """
        if (noise is None) == (damping is None):
            raise ValueError("give exactly one of noise= (covariance V⊗U + σ²I) and damping= (precision V⊗U + δI)")
        power, scalar, name = (1, noise, "noise") if damping is None else (-1, damping, "damping")
        form, dtype, batch_shape = _from_eigen(
            mean, (rowvecs, rowvals, colvecs, colvals), scalar, power,
            ("mean", "rowvecs", "rowvals", "colvecs", "colvals", name))
        return KroneckerSumNormal._assemble(*form, dtype, batch_shape)

    @staticmethod
    @shared
    def from_precision(mean: ArrayLike | None, rowprec: ArrayLike, colprec: ArrayLike,
                       damping: ArrayLike | float) -> KroneckerSumNormal:
        """The Gaussian whose precision is ``V⊗U + δI``: a Laplace approximation, or damped
        K-FAC's curvature, with Kronecker factors ``U`` (rows) and ``V`` (columns).

        ``U`` and ``V`` are diagonalised once (``numpy.linalg.eigh``), then as
        :meth:`from_eig` with ``damping=δ``: ``Σ = (Q_v⊗Q_u) diag(1/(λ_v,j λ_u,i + δ)) (Q_v⊗Q_u)ᵀ``.

        Parameters
        ----------
        %(kron_prec)s

        Returns
        -------
        KroneckerSumNormal

        Raises
        ------
        numpy.linalg.LinAlgError
            ``rowprec`` or ``colprec`` has a negative eigenvalue beyond rounding (names it and
            the batch index).
        ValueError
            NaN or infinity; ``damping`` not positive; shapes that do not fit.

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> u, v = np.array([[2.0, 0.5], [0.5, 1.0]]), np.array([[1.0, 0.2], [0.2, 3.0]])
        >>> d = fm.KroneckerSumNormal.from_precision(np.zeros((2, 2)), u, v, 1e-2)
        >>> bool(np.allclose(d.cov, np.linalg.inv(np.kron(v, u) + 1e-2 * np.eye(4))))
        True
        """
        form, dtype, batch_shape, failures, _, _ = _precision(mean, rowprec, colprec, damping)
        _checked(failures, batch_shape, "raise")
        return KroneckerSumNormal._assemble(*form, dtype, batch_shape)

    # Attributes

    @property
    def _form(self):
        return _Form(*self._exact)

    def _require_covariance_form(self, what):
        if self.is_precision:
            raise ValueError(f"{what} is not defined for a distribution given by its precision V⊗U + δI: "
                             "its covariance is not a Kronecker sum")

    def _covariance(self, side, signal, what):
        """``P Λ Pᵀ`` (the signal) or ``P Pᵀ`` (the noise) of the rows or the columns."""
        self._require_covariance_form(what)
        form = self._form
        basis, vals = (form.rowbasis, form.rowvals) if side == "row" else (form.colbasis, form.colvals)
        scaled = basis * vals[..., None, :] if signal else basis
        return self._view((scaled @ _swap(basis)).astype(self._dtype))

    @property
    def rowcov(self) -> FloatArray:
        """``(..., n, n)`` row covariance ``U = P_u Λ_u P_uᵀ`` of the signal (covariance form only)."""
        return self._covariance("row", True, "rowcov")

    @property
    def colcov(self) -> FloatArray:
        """``(..., p, p)`` column covariance ``V = P_v Λ_v P_vᵀ`` of the signal (covariance form only)."""
        return self._covariance("col", True, "colcov")

    @property
    def noise_rowcov(self) -> FloatArray:
        """``(..., n, n)`` row covariance ``A = P_u P_uᵀ`` of the noise (covariance form only)."""
        return self._covariance("row", False, "noise_rowcov")

    @property
    def noise_colcov(self) -> FloatArray:
        """``(..., p, p)`` column covariance ``B = P_v P_vᵀ`` of the noise (covariance form only)."""
        return self._covariance("col", False, "noise_colcov")

    @property
    def is_precision(self) -> bool:
        """Whether the distribution was given by its precision ``V⊗U + δI`` (``d = 1/(λ_u λ_vᵀ + 1)``)."""
        return bool((self._power < 0).any())

    @property
    def cov(self) -> FloatArray:
        """``(..., np, np)`` dense covariance of column-major ``vec X`` (for small sizes and checks).

        Entry ``[i + n·j, k + n·l]`` is ``Σ_ab P_u,ia P_v,jb d_ab P_u,ka P_v,lb``.
        """
        form = self._form
        n, p = self.shape
        dense = np.einsum("...ia,...jb,...ab,...ka,...lb->...jilk", form.rowbasis, form.colbasis, _scales(form),
                          form.rowbasis, form.colbasis)
        dense = dense.reshape(dense.shape[:-4] + (n * p, n * p))
        return np.broadcast_to(dense.astype(self._dtype), self._batch_shape + (n * p, n * p))

    def _repr_extra(self):
        return ", precision" if self.is_precision else ""

    # Densities, entropy, divergence

    def _at_points(self, x, function, out, errors, failures=()):
        """``function(form, x)`` over the broadcast batch shape, checked like the core functions:
        an item fails where ``x`` has NaN or infinity or one of ``failures`` (those of the
        parameters, from :func:`_parameters`) holds."""
        check_errors(errors)
        x_arg = Arg("x", MEAN, x, "np")
        if x_arg.core_shape != self.shape:
            raise ValueError(f"x has shape {x_arg.shape}; expected (..., {self.shape[0]}, {self.shape[1]})")
        batch_shape = np.broadcast_shapes(self._batch_shape, x_arg.batch_shape)
        dtype = result_dtype(self._mean, x_arg.array)
        check_out(out, dtype, batch_shape)
        failing = _checked([([(_nonfinite(x_arg), ValueError, "x contains NaN or infinity")], []), *failures],
                           batch_shape, errors)
        x = np.asarray(x_arg.array, dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            value = np.array(np.broadcast_to(function(self._form, x), batch_shape))
        value[failing] = np.nan
        return _finish(value, [], dtype, batch_shape, out, errors)

    @shared
    def logpdf(self, x: ArrayLike, *, out: FloatArray | None = None, errors: Errors = "raise") -> Result:
        """Log-density ``−½[np·log 2π + log|Σ| + Σ_ij W_ij²/d_ij]``, ``W = P_u⁻¹ (X − M) P_v⁻ᵀ``.

        Parameters
        ----------
        %(points)s
        %(out)s
        errors : {"raise", "nan"}
            ``"raise"`` (default) raises on the first ``x`` with NaN or infinity; ``"nan"``
            makes its item NaN.

        Returns
        -------
        logpdf : (...) ndarray or scalar
        """
        return self._at_points(x, _logpdf, out, errors)

    @shared
    def mahalanobis(self, x: ArrayLike, *, out: FloatArray | None = None, errors: Errors = "raise") -> Result:
        """Squared Mahalanobis distance ``vec(X−M)ᵀ Σ⁻¹ vec(X−M) = Σ_ij W_ij²/d_ij``.

        Parameters
        ----------
        %(points)s
        %(out)s
        errors : {"raise", "nan"}
            As in :meth:`logpdf`.

        Returns
        -------
        distance : (...) ndarray or scalar
        """
        return self._at_points(x, _mahalanobis, out, errors)

    def logdet(self) -> Result:
        """``log|Σ| = p log|A| + n log|B| + Σ_ij log(λ_u,i λ_v,j + 1)`` (with the power ``−1`` of
        the products for a precision form).

        Returns
        -------
        logdet : (...) ndarray or scalar
            Over :attr:`batch_shape`.
        """
        return _full(np.asarray(_logdet(self._form), dtype=self._dtype), self._batch_shape)

    def entropy(self) -> Result:
        """Differential entropy ``½[np(1 + log 2π) + log|Σ|]``.

        Returns
        -------
        entropy : (...) ndarray or scalar
            Over :attr:`batch_shape`.
        """
        n, p = self.shape
        value = 0.5 * (n * p * _ENTROPY_PER_ENTRY + _logdet(self._form))
        return _full(np.asarray(value, dtype=self._dtype), self._batch_shape)

    def kl(self, other: KroneckerSumNormal | MatrixNormal | MatrixGaussian) -> Result:
        """``KL(self ‖ other)`` on the two eigenbasis forms, ``O(n³ + p³ + n²p + np²)``.

        ``½[tr(Σ₂⁻¹Σ₁) + Mahalanobis₂(M₁) − np + log|Σ₂| − log|Σ₁|]`` with
        ``tr(Σ₂⁻¹Σ₁) = Σ_ij (G_u d₁ G_vᵀ)_ij / d₂,ij``, ``G_u = (R₂,u P₁,u)∘²``,
        ``G_v = (R₂,v P₁,v)∘²`` (entrywise squares). A :class:`~fastmvn.MatrixNormal`
        ``MN(M, L_U L_Uᵀ, L_V L_Vᵀ)`` on either side enters as the form ``P = L``, ``λ = 0``
        (its stored Cholesky factors).

        Parameters
        ----------
        other : KroneckerSumNormal, MatrixNormal or MatrixGaussian
            Of the same :attr:`shape`; the batch shapes broadcast. A
            :class:`~fastmvn.MatrixGaussian` goes to :func:`fastmvn.kl_gaussian` (dense).

        Returns
        -------
        kl : (...) ndarray or scalar
            Over the broadcast batch shape.

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> u, v = np.array([[2.0, 0.5], [0.5, 1.0]]), np.eye(3)
        >>> p = fm.KroneckerSumNormal(np.zeros((2, 3)), u, v, 0.5)
        >>> q = fm.MatrixNormal(np.zeros((2, 3)), u + 0.5 * np.eye(2), v)   # the same Σ = V⊗(U + 0.5 I)
        >>> abs(float(p.kl(q))) < 1e-12 and abs(float(q.kl(p))) < 1e-12
        True
        """
        if isinstance(other, (KroneckerSumNormal, MatrixNormal)):
            return _kl_between(self, other)
        return _Links.kl(self, other)

    @shared
    def rvs(self, size: Size = None, random_state: Seed = None) -> FloatArray:
        """Random draws ``M + P_u (S ∘ Z) P_vᵀ``, ``S_ij = √d_ij``, ``Z`` standard normal.

        Parameters
        ----------
        %(size)s
        random_state : numpy.random.Generator, int or None
            Passed to ``numpy.random.default_rng``; ``Z`` is drawn in float64.

        Returns
        -------
        samples : ``(*size, ..., n, p)`` ndarray

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> d = fm.KroneckerSumNormal(np.zeros((2, 2)), np.eye(2), np.eye(2), 1.0)
        >>> d.rvs(size=(1000, 3), random_state=0).shape
        (1000, 3, 2, 2)
        """
        form = self._form
        z = np.random.default_rng(random_state).standard_normal(
            _sample_shape(size) + self._batch_shape + self.shape)
        draws = form.mean + form.rowbasis @ (np.sqrt(_scales(form)) * z) @ _swap(form.colbasis)
        return draws.astype(self._dtype, copy=False)

    # New distributions

    def marginal(self, rows: Any = None, cols: Any = None) -> KroneckerSumNormal:
        """The distribution of ``X[rows][:, cols]``: ``V[c, c] ⊗ U[r, r] + B[c, c] ⊗ A[r, r]``.

        Refactorised from the sub-blocks (covariance form only: the marginal of a precision
        form is not a Kronecker sum).

        Parameters
        ----------
        rows, cols : int, sequence of ints, slice or boolean mask, optional
            The rows and columns kept, in the order given (no repeats); ``None`` keeps all.

        Returns
        -------
        KroneckerSumNormal
            Of shape ``(len(rows), len(cols))`` and the same batch shape.
        """
        self._require_covariance_form("marginal")
        r, c = self._selection(rows, cols)
        form = self._form

        def block(basis, vals, keep):
            kept = basis[..., keep, :]
            return (kept if vals is None else kept * vals[..., None, :]) @ _swap(kept)

        parts = (form.mean[..., r[:, None], c], block(form.rowbasis, form.rowvals, r),
                 block(form.colbasis, form.colvals, c), block(form.rowbasis, None, r), block(form.colbasis, None, c))
        return KroneckerSumNormal(*(a.astype(self._dtype) for a in parts))

    # Expectations

    def _expect_quadratic(self, A, transpose):
        """``E[Xᵀ A X]_ij = (Mᵀ A M)_ij + (P_v diag(Σ_k g_k d_kl) P_vᵀ)_ij`` with
        ``g = diag(P_uᵀ A P_u)``; with ``transpose`` that of ``Xᵀ``."""
        n, p = self.shape
        a_arg = Arg("A", MEAN, A, "pp" if transpose else "nn")
        dtype, batch_shape = check([Arg("mean", MEAN, self._mean, "np"), a_arg])
        batch_shape = np.broadcast_shapes(batch_shape, self._batch_shape)
        form, a = self._form, np.asarray(a_arg.array, dtype=np.float64)
        mean, scales, left, right = form.mean, _scales(form), form.rowbasis, form.colbasis
        if transpose:
            mean, scales, left, right = _swap(mean), _swap(scales), right, left
        gains = np.einsum("...ak,...ab,...bk->...k", left, a, left)
        spread = (gains[..., None, :] @ scales)[..., 0, :]
        value = _swap(mean) @ a @ mean + (right * spread[..., None, :]) @ _swap(right)
        return _full(value.astype(dtype), batch_shape + value.shape[-2:])


def _kl_between(first, second):
    """``KL(first ‖ second)`` for two distributions of :class:`KroneckerSumNormal` or
    :class:`~fastmvn.MatrixNormal` (at least one of the first), in the dtype of the two."""
    batch_shape = _compared(first, second)
    forms = [d._form if isinstance(d, KroneckerSumNormal) else _normal_form(d) for d in (first, second)]
    return _full(np.asarray(_kl(*forms), dtype=result_dtype(first._mean, second._mean)), batch_shape)


# Function forms ---------------------------------------------------------------------------


@shared
def logpdf_kron_sum(x: ArrayLike, mean: ArrayLike | None, rowcov: ArrayLike, colcov: ArrayLike,
                    noise_rowcov: ArrayLike | float, noise_colcov: ArrayLike | None = None, *,
                    out: FloatArray | None = None, errors: Errors = "raise") -> Result:
    """Log-density of ``vec X ~ N(vec M, V⊗U + B⊗A)`` at ``x``, batched.

    :meth:`KroneckerSumNormal.logpdf` of ``KroneckerSumNormal(mean, rowcov, colcov,
    noise_rowcov, noise_colcov)``: the same log-density, with ``out=`` and ``errors=`` over
    every argument. Small items are computed by compiled kernels in lanes (the noise whitened
    by its Cholesky factor, the whitened signals diagonalised by a cyclic Jacobi eigensolver),
    larger ones (from 12×12 for a few items, 20×20 for any number) by one compiled call of
    LAPACK per item: the noise whitened, the smaller side diagonalised and the larger only
    reduced to tridiagonal form ``T``, whose blocks ``λ_j T + I`` are factorised in ``O(n)``
    each (``docs/kronecker_sums.md``), ``O(n³ + p³ + n²p + np²)`` in all.

    Parameters
    ----------
    %(kron_sum)s
    %(out)s
    %(errors)s

    Returns
    -------
    logpdf : (...) ndarray or scalar
        Over the broadcast batch shape; float32 when every input is float32.

    Raises
    ------
    %(raises_kron_sum)s
    %(raises_input)s

    See Also
    --------
    fastmvn.reference.logpdf_kron_sum : the dense specification.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> u, v = 2 * np.eye(2), np.ones((3, 3))
    >>> x = np.zeros((4, 2, 3))
    >>> fm.logpdf_kron_sum(x, None, u, v, 0.1).shape
    (4,)
    >>> a = np.eye(2) * np.array([1.0, -1.0])[:, None, None]        # item 1 is not positive definite
    >>> fm.logpdf_kron_sum(x[:2], None, u, v, a, errors="nan")[1]
    np.float64(nan)
    """
    check_errors(errors)
    args = _arguments(mean, rowcov, colcov, noise_rowcov, noise_colcov)
    dtype, batch_shape = check(args)
    n, p = args[0].core_shape
    x_arg = Arg("x", MEAN, x, "np")
    if x_arg.core_shape != (n, p):
        raise ValueError(f"x has shape {x_arg.shape}; expected (..., {n}, {p})")
    batch_shape = np.broadcast_shapes(batch_shape, x_arg.batch_shape)
    dtype = result_dtype(np.empty(0, dtype), x_arg.array)
    check_out(out, dtype, batch_shape)
    large = max(n, p) > _config.KRON_SUM_MAX_SIDE or _large_plan(max(n, p), math.prod(batch_shape))
    slots = _slots([x_arg, *args], (n, p), None if large else dtype, batch_shape, variances=large)
    value = (_large_items(slots, batch_shape, (_epsilon(args[1]), _epsilon(args[2]))) if large
             else _compiled(False, slots, dtype, batch_shape))
    _redo_failed(value, [x_arg, *args], (n, p), _logpdf_lapack, errors, batch_shape)
    return _finish(value, [], dtype, batch_shape, out, errors)


def _logpdf_lapack(x, mean, rowcov, colcov, noise_rowcov, noise_colcov, *, out=None, errors="raise"):
    """:func:`logpdf_kron_sum` through NumPy and LAPACK (the frozen distribution's code)."""
    check_errors(errors)
    form, dtype, batch_shape, failures = _parameters(mean, rowcov, colcov, noise_rowcov, noise_colcov)
    distribution = KroneckerSumNormal._assemble(*form, dtype, batch_shape)
    return distribution._at_points(x, _logpdf, out, errors, [failures])


@shared
def kl_kron_sum(mean1: ArrayLike | None, rowcov1: ArrayLike, colcov1: ArrayLike, noise_rowcov1: ArrayLike | float,
                noise_colcov1: ArrayLike | None, mean2: ArrayLike | None, rowcov2: ArrayLike, colcov2: ArrayLike,
                noise_rowcov2: ArrayLike | float, noise_colcov2: ArrayLike | None, *, out: FloatArray | None = None,
                errors: Errors = "raise") -> Result:
    """KL divergence between Kronecker-sum normals ``N(vec M₁, V₁⊗U₁ + B₁⊗A₁) ‖ N(vec M₂, V₂⊗U₂ + B₂⊗A₂)``, batched.

    :meth:`KroneckerSumNormal.kl` of the two distributions, with ``out=`` and ``errors=``
    over every argument; items up to 32×32 by compiled kernels, as in :func:`logpdf_kron_sum`.

    Parameters
    ----------
    %(kron_sum_pair)s
    %(out)s
    %(errors)s

    Returns
    -------
    kl : (...) ndarray or scalar
        Over the broadcast batch shape; float32 when every input is float32.

    Raises
    ------
    %(raises_kron_sum)s
    %(raises_input)s

    See Also
    --------
    fastmvn.reference.kl_kron_sum : the dense specification.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> rng = np.random.default_rng(0)
    >>> u = rng.standard_normal((10_000, 4, 2)); u = u @ np.swapaxes(u, -1, -2)   # rank 2
    >>> kl = fm.kl_kron_sum(None, u, np.eye(4), 0.1, None, None, np.eye(4), np.eye(4), 1.0, None)
    >>> kl.shape, bool((kl > 0).all())
    ((10000,), True)
    """
    check_errors(errors)
    args1 = _arguments(mean1, rowcov1, colcov1, noise_rowcov1, noise_colcov1, "1")
    args2 = _arguments(mean2, rowcov2, colcov2, noise_rowcov2, noise_colcov2, "2")
    (dtype1, batch1), (dtype2, batch2) = check(args1), check(args2)
    n, p = args1[0].core_shape
    if max(n, p) > _config.KRON_SUM_MAX_SIDE or args2[0].core_shape != (n, p):
        return _kl_lapack(mean1, rowcov1, colcov1, noise_rowcov1, noise_colcov1, mean2, rowcov2, colcov2,
                          noise_rowcov2, noise_colcov2, out=out, errors=errors)
    batch_shape = np.broadcast_shapes(batch1, batch2)
    dtype = np.dtype(np.float32 if dtype1 == dtype2 == np.float32 else np.float64)
    check_out(out, dtype, batch_shape)
    slots = _slots([*args1, *args2], (n, p), dtype, batch_shape)
    value = _compiled(True, slots, dtype, batch_shape)
    _redo_failed(value, [*args1, *args2], (n, p), _kl_lapack, errors, batch_shape)
    return _finish(value, [], dtype, batch_shape, out, errors)


def _kl_lapack(mean1, rowcov1, colcov1, noise_rowcov1, noise_colcov1, mean2, rowcov2, colcov2, noise_rowcov2,
               noise_colcov2, *, out=None, errors="raise"):
    """:func:`kl_kron_sum` through NumPy and LAPACK (the frozen distribution's code)."""
    check_errors(errors)
    first, dtype1, batch1, failures1 = _parameters(mean1, rowcov1, colcov1, noise_rowcov1, noise_colcov1, "1")
    second, dtype2, batch2, failures2 = _parameters(mean2, rowcov2, colcov2, noise_rowcov2, noise_colcov2, "2")
    if first.mean.shape[-2:] != second.mean.shape[-2:]:
        raise ValueError(f"mean1 has shape {first.mean.shape} and mean2 {second.mean.shape}: "
                         "the two distributions must be of one (n, p)")
    return _kl_checked(first, second, (dtype1, dtype2), (batch1, batch2), (failures1, failures2), out, errors)


def _kl_checked(first, second, dtypes, batch_shapes, failures, out, errors):
    """``KL(first ‖ second)`` between two forms of the given dtypes, batch shapes and failures
    (from :func:`_parameters` or :func:`_eigen_form`), with ``out=`` and ``errors=``: float32
    when both dtypes are, a failing item raising or NaN."""
    batch_shape = np.broadcast_shapes(*batch_shapes)
    dtype = np.dtype(np.float32 if dtypes[0] == dtypes[1] == np.float32 else np.float64)
    check_out(out, dtype, batch_shape)
    failing = _checked(list(failures), batch_shape, errors)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        value = np.array(np.broadcast_to(_kl(first, second), batch_shape))
    value[failing] = np.nan
    return _finish(value, [], dtype, batch_shape, out, errors)


@shared
def kl_eig(mean1: ArrayLike | None, rowvecs1: ArrayLike, rowvals1: ArrayLike, colvecs1: ArrayLike,
           colvals1: ArrayLike, mean2: ArrayLike | None, rowvecs2: ArrayLike, rowvals2: ArrayLike, colvecs2: ArrayLike,
           colvals2: ArrayLike, *, noise1: ArrayLike | float | None = None, damping1: ArrayLike | float | None = None,
           noise2: ArrayLike | float | None = None, damping2: ArrayLike | float | None = None,
           out: FloatArray | None = None, errors: Errors = "raise") -> Result:
    """KL divergence between Gaussians given by the eigendecompositions of Kronecker factors, batched.

    Each side is ``U = Q_u diag(λ_u) Q_uᵀ``, ``V = Q_v diag(λ_v) Q_vᵀ`` (as Laplace
    approximations and noisy or damped K-FAC hold them) and one of

    * neither ``noise`` nor ``damping``: the matrix normal ``MN(M, U, V)``, covariance ``V⊗U``
      (as :meth:`MatrixNormal.from_eig <fastmvn.MatrixNormal.from_eig>`, ``λ > 0``);
    * ``noise=σ²``: the covariance ``V⊗U + σ²I``;
    * ``damping=δ``: the precision ``V⊗U + δI``

    (the last two as :meth:`KroneckerSumNormal.from_eig`, ``λ ≥ 0``). The function form of
    ``KroneckerSumNormal.from_eig(...).kl(KroneckerSumNormal.from_eig(...))`` (with
    :meth:`MatrixNormal.from_eig <fastmvn.MatrixNormal.from_eig>` for a matrix normal side):
    the same code, with ``out=`` and ``errors=`` over every argument. Nothing is
    refactorised: a side with noise or damping is its eigenvectors scaled, a matrix normal
    side the QR factorisation of ``diag(√λ) Qᵀ`` (``O(n³ + p³)``); then ``O(n²p + np²)``.

    Parameters
    ----------
    %(eig_pair)s
    %(out)s
    %(errors)s

    Returns
    -------
    kl : (...) ndarray or scalar
        ``KL(first ‖ second)`` over the broadcast batch shape; float32 when every input array
        is float32 (a Python number does not decide).

    Raises
    ------
    ValueError
        NaN or infinity; eigenvectors that are not orthonormal (an entry of ``QᵀQ − I``
        beyond the square root of the dtype's epsilon); ``noise`` or ``damping`` not
        positive, or both given for one side; shapes that do not fit.
    numpy.linalg.LinAlgError
        A negative eigenvalue (for a matrix normal side, one that is not positive). Each
        names the argument and batch index.

    See Also
    --------
    KroneckerSumNormal.from_eig, MatrixNormal.from_eig : the distributions compared.
    kl_kron_sum : the same from the covariances of Kronecker sums.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> rng = np.random.default_rng(0)
    >>> g = rng.standard_normal((5, 3, 3)); u = g @ np.swapaxes(g, -1, -2)   # five row factors
    >>> (lu, qu), (lv, qv) = np.linalg.eigh(u), np.linalg.eigh(np.diag([1.0, 2.0]))
    >>> kl = fm.kl_eig(None, qu, lu, qv, lv, None, qu, lu, qv, lv, damping1=1e-2, noise2=0.5)
    >>> kl.shape
    (5,)
    >>> by_class = fm.KroneckerSumNormal.from_eig(None, qu, lu, qv, lv, damping=1e-2).kl(
    ...     fm.KroneckerSumNormal.from_eig(None, qu, lu, qv, lv, noise=0.5))
    >>> bool(np.array_equal(kl, by_class))
    True
    >>> fm.kl_eig(None, qu, lu, qv, lv, None, qu, lu, qv, -lv, errors="nan")   # λ_v2 < 0: not a matrix normal
    array([nan, nan, nan, nan, nan])
    """
    check_errors(errors)
    first, dtype1, batch1, failures1 = _eig_side(mean1, rowvecs1, rowvals1, colvecs1, colvals1, noise1, damping1, "1")
    second, dtype2, batch2, failures2 = _eig_side(mean2, rowvecs2, rowvals2, colvecs2, colvals2, noise2, damping2,
                                                  "2")
    if first.mean.shape[-2:] != second.mean.shape[-2:]:
        raise ValueError(f"mean1 has shape {first.mean.shape} and mean2 {second.mean.shape}: "
                         "the two distributions must be of one (n, p)")
    return _kl_checked(first, second, (dtype1, dtype2), (batch1, batch2), (failures1, failures2), out, errors)


def _eig_side(mean, rowvecs, rowvals, colvecs, colvals, noise, damping, suffix):
    """One side of :func:`kl_eig` as :func:`_eigen_form` returns it: a matrix normal (neither
    ``noise`` nor ``damping``) through :func:`~fastmvn.distributions.normal._eig_factors` and
    the form ``P = L``, ``λ = 0``; otherwise that of :meth:`KroneckerSumNormal.from_eig`."""
    names = tuple(f"{name}{suffix}" for name in ("mean", "rowvecs", "rowvals", "colvecs", "colvals"))
    if noise is not None and damping is not None:
        raise ValueError(f"give at most one of noise{suffix}= (covariance V⊗U + σ²I) and damping{suffix}= "
                         "(precision V⊗U + δI)")
    if noise is None and damping is None:
        mean, rowchol, colchol, dtype, batch_shape, failures = _eig_factors(
            mean, rowvecs, rowvals, colvecs, colvals, names)
        return _chol_form(mean, rowchol, colchol), dtype, batch_shape, failures
    power, scalar, name = (1, noise, "noise") if damping is None else (-1, damping, "damping")
    return _eigen_form(mean, (rowvecs, rowvals, colvecs, colvals), scalar, power, names + (f"{name}{suffix}",))


# The compiled kernels for small items ----------------------------------------------------------


def _slots(args, shape, dtype, batch_shape, variances=False):
    """The arguments as read-only ``(count, r, c)`` arrays of ``dtype`` over ``batch_shape``
    (views where the batch axes merge), for :func:`fastmvn.kernels.kron_sum_batch`: a means'
    ``(n, p)``, a noise variance ``σ²`` as ``σ² I`` (of the side its name says: ``n`` for a
    row noise, ``p`` for a column noise). For :func:`fastmvn._large.kron_sum_logpdf`, with
    ``variances`` a variance is the ``1×1`` matrix ``σ²``, and with no ``dtype`` each argument
    keeps its own (float32 or float64), which the semi-definiteness floors of the items
    computed again (:func:`_redo_failed`) go by."""
    count = math.prod(batch_shape)
    slots = []
    for arg in args:
        variance = variances and arg.kind == VAR
        own = np.float32 if arg.dtype == np.float32 else np.float64
        array = np.asarray(np.reshape(arg.array, (1, 1)) if variance else _noise_matrix(arg, *shape).array,
                           dtype=own if dtype is None else dtype)
        slot = np.reshape(np.broadcast_to(array, batch_shape + array.shape[-2:]), (count,) + array.shape[-2:]).view()
        slot.flags.writeable = False
        slots.append(slot)
    return slots


def _compiled(kl, slots, dtype, batch_shape):
    """The KL (``kl``) or log-density of every item of ``slots`` by the compiled kernels, over
    ``batch_shape``: NaN where an item fails."""
    from .. import kernels
    from .._batch import _padding, chunk_count

    count = math.prod(batch_shape)
    value = np.empty(count, dtype)
    if count:
        padding = [_padding(count, dtype)] * (10 - len(slots))
        first_bad = np.empty(chunk_count(slots, count, False), np.int64)  # one chunk of enough work: split
        arguments = (kl, *slots, *padding, value, first_bad, np.empty(0))
        if len(first_bad) == 1:  # one chunk: one thread computes it either way
            kernels.kron_sum_batch.serial(*arguments)
        else:
            with launching():
                kernels.kron_sum_batch(*arguments)
    return value.reshape(batch_shape)


def _large_plan(side, count):
    """Whether ``count`` log-densities of largest side ``side`` take one compiled LAPACK call per
    item (:func:`_large_items`) rather than the lanes (:data:`fastmvn._config.KRON_SUM_LAPACK_MIN_SIDE`)."""
    return _large.sized(side, count, _config.KRON_SUM_LAPACK_MIN_SIDE, _config.KRON_SUM_LAPACK_BATCH_SIDE,
                 _config.KRON_SUM_LAPACK_ALL_SIDE)


def _large_items(slots, batch_shape, epsilons):
    """The log-density of every item of ``slots`` (from :func:`_slots` with ``variances``) over
    ``batch_shape``, one compiled call of LAPACK per item
    (:func:`fastmvn._large.kron_sum_logpdf`; ``epsilons``, those of the row and column signals'
    data, set their semi-definiteness floors): NaN where an item fails."""
    value = np.empty(math.prod(batch_shape))
    _large.kron_sum_logpdf(slots, value, epsilons)
    return value.reshape(batch_shape)


def _redo_failed(value, args, shape, function, errors, batch_shape):
    """The items that :func:`_compiled` or :func:`_large_items` left NaN in ``value``, computed
    again by ``function`` (:func:`_logpdf_lapack` or :func:`_kl_lapack`) from the arguments
    ``args`` of items of ``shape`` (each in its own dtype, a noise variance as the scalar) with
    ``errors="nan"``, in place; with ``errors="raise"``, the first that fails there too raises
    its error, with its batch index where the failing argument has batch axes."""
    flat = value.reshape(-1)
    failed = np.flatnonzero(np.isnan(flat))
    if failed.size == 0:
        return
    slots = _slots(args, shape, None, batch_shape, variances=True)

    def items(index):  # a variance's slot is σ² (1×1) for every item
        return [float(slot[0, 0, 0]) if arg.kind == VAR else slot[index] for slot, arg in zip(slots, args)]

    again = function(*items(failed), errors="nan")
    with np.errstate(over="ignore"):  # beyond float32's range: infinite, and judged so where delivered
        flat[failed] = again
    if errors == "raise":
        for first in failed[np.isnan(again)][:1]:
            try:  # one item, each argument with its batch axes of length one
                function(*(with_batch_axes(item, arg) for item, arg in zip(items(first), args)))
            except (ValueError, LinAlgError, FloatingPointError) as error:
                raise relocated(error, batch_index(first, batch_shape)) from None
