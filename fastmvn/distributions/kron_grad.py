"""The gradients of the Kronecker-sum log-density and KL, :func:`logpdf_kron_sum_value_and_grad`
and :func:`kl_kron_sum_value_and_grad`, of the log-density of the precision form,
:func:`logpdf_kron_prec_value_and_grad`, and of the KL from eigendecompositions,
:func:`kl_eig_value_and_grad`: closed forms on the eigenbasis form of
:mod:`fastmvn.distributions.kron` (derived in ``docs/kronecker_sums.md``, section 8).

With ``Σ = V⊗U + B⊗A = (P_v⊗P_u) diag(vec d) (P_v⊗P_u)ᵀ``, ``R = P⁻¹`` and a covariance
gradient ``∂f/∂Σ`` that is a sum of Kronecker products in the eigenbasis, the gradient with
respect to ``U`` is ``R_uᵀ K R_u`` with ``K`` an ``n×n`` matrix of sums over the columns
(``dΣ = V⊗dU`` contracts the column index with ``R_v V R_vᵀ = Λ_v``), and likewise for ``A``
(with ``R_v B R_vᵀ = I``), ``V`` and ``B``. Every gradient costs ``O(n³ + p³ + n²p + np²)``,
the order of the value; the ``np×np`` covariance is never formed. NumPy and LAPACK on whole
stacks, float64, over the broadcast batch shape. The KL from eigendecompositions is the same
computation in the orthonormal bases ``Q_v⊗Q_u`` of its factors, where each side's covariance
is diagonal; there the eigenvectors' gradients of a damped side against a noisy one cost
``O(n³p + np³)`` (:func:`_spread`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from .._arguments import MEAN, VAR, Arg, check, check_errors, result_dtype
from .._docs import shared
from .._gradients import _grad_out, computed, reduce_to
from ._base import _nonfinite, _report, _symmetric
from .kron import (_arguments, _checked, _eig_side, _kl, _logpdf, _parts, _precision, _products, _swap, kl_eig,
                   kl_kron_sum, logpdf_kron_sum)

if TYPE_CHECKING:
    from .._typing import ArrayLike, Errors, GradOut, ValueAndGrad, Wrt

__all__ = ["logpdf_kron_sum_value_and_grad", "logpdf_kron_prec_value_and_grad", "kl_kron_sum_value_and_grad",
           "kl_eig_value_and_grad"]

_SIDE_NAMES = ("mean", "rowcov", "colcov", "noise_rowcov", "noise_colcov")
_SIDE_AXES = ("np", "nn", "pp", "nn", "pp")


class _Names(NamedTuple):
    """The arguments of a function: their names, as :func:`fastmvn._gradients.computed` reads
    them, and the core axes of each, one letter per axis as in :class:`fastmvn._table.Param`
    (``""``: a number per item; a noise argument of a matrix's axes may be a number too)."""

    names: tuple[str, ...]
    axes: tuple[str, ...]


_LOGPDF = _Names(("x",) + _SIDE_NAMES, ("np",) + _SIDE_AXES)
_KL = _Names(tuple(f"{name}{suffix}" for suffix in "12" for name in _SIDE_NAMES), _SIDE_AXES * 2)


class _Side(NamedTuple):
    """One side of a covariance form, with its own index first in the ``n×p`` matrices (the
    rows, or the columns of the transposes)."""

    whiten: np.ndarray  # R (..., m, m)
    other: np.ndarray  # the other side's eigenvalues (..., k)
    inverse: np.ndarray  # 1/d (..., m, k)
    variance: float | None  # σ² of a scalar noise σ² I, whose gradient is a trace; None for a matrix


def _sides(form, noises):
    """The row and column :class:`_Side` of a covariance form whose noise arguments are ``noises``."""
    inverse = 1.0 / _products(form)
    variances = [float(arg.array) if not arg.axes else None for arg in noises]
    return (_Side(form.rowwhiten, form.colvals, inverse, variances[0]),
            _Side(form.colwhiten, form.rowvals, _swap(inverse), variances[1]))


def _diagonal(values):
    """``diag(values)`` over the batch."""
    return values[..., :, None] * np.eye(values.shape[-1])


def _symmetrised(product):
    """``½(G + Gᵀ)``: exactly symmetric, so that a step along a gradient keeps a covariance symmetric."""
    return 0.5 * (product + _swap(product))


def _pulled_back(side, core, noise):
    """``Rᵀ K R`` for a symmetric ``K``: the gradient with respect to this side's signal or
    noise; for a scalar noise ``σ² I`` its trace, ``d/dσ² = tr(K R Rᵀ) = tr(K)/σ²`` (``R Rᵀ =
    Qᵀ A⁻¹ Q = I/σ²``), ``O(m)``."""
    if noise and side.variance is not None:
        return np.trace(core, axis1=-2, axis2=-1) / side.variance
    return _symmetrised(_swap(side.whiten) @ core @ side.whiten)


def _diagonal_pulled_back(whiten, weights, traced):
    """``Rᵀ diag(w) R``, or with ``traced`` its trace ``Σ_i w_i ‖R_i,:‖²``."""
    if traced:
        return (weights * np.square(whiten).sum(-1)).sum(-1)
    return _symmetrised(_swap(whiten) @ (weights[..., :, None] * whiten))


def _weights(side, noise):
    """The weights of the other index: its eigenvalues ``λ`` for the signal, ones for the noise."""
    return np.ones_like(side.other) if noise else side.other


def _density_core(side, scaled, noise):
    """``W̃ diag(w) W̃ᵀ − diag(Σ_k w_k/d_ik)`` with ``W̃ = W/d`` (this side's index first):
    ``2 Rᵀ (·) R`` is the gradient of ``−(Mahalanobis + log|Σ|)`` with respect to this side's
    signal (``w = λ`` of the other side) or noise (``w = 1``)."""
    weights = _weights(side, noise)
    return (scaled * weights[..., None, :]) @ _swap(scaled) - _diagonal((side.inverse * weights[..., None, :]).sum(-1))


def _scaled_residual(form, residual):
    """``W̃ = R_u (X − M) R_vᵀ / d``, whose ``R_uᵀ W̃ R_v`` is ``Σ⁻¹ vec(X − M)`` as a matrix."""
    return form.rowwhiten @ residual @ _swap(form.colwhiten) / _products(form)


def _logpdf_grads(form, noises, x, wanted):
    """The per-item gradients of ``log p`` for ``(x, mean, rowcov, colcov, noise_rowcov,
    noise_colcov)`` where ``wanted``, over their broadcast batch shapes (``noises`` the two
    noise arguments: a scalar's gradient is a scalar)."""
    grads = [None] * 6
    scaled = _scaled_residual(form, x - form.mean)
    if wanted[0] or wanted[1]:
        solved = _swap(form.rowwhiten) @ scaled @ form.colwhiten  # Σ⁻¹ vec(X − M)
        grads[0], grads[1] = -solved, solved
    for k, side, own in zip((2, 3), _sides(form, noises), (scaled, _swap(scaled))):
        for noise in (False, True):
            if wanted[k + 2 * noise]:
                grads[k + 2 * noise] = 0.5 * _pulled_back(side, _density_core(side, own, noise), noise)
    return grads


def _kl_grads(first, second, noises, wanted):
    """The per-item gradients of ``KL(first ‖ second)`` for the ten arguments (``mean1``, …,
    ``noise_colcov2``) where ``wanted``, over their broadcast batch shapes (``noises`` the
    four noise arguments, the first's two then the second's)."""
    grads = [None] * 10
    scaled = _scaled_residual(second, first.mean - second.mean)
    if wanted[0] or wanted[5]:
        solved = _swap(second.rowwhiten) @ scaled @ second.colwhiten
        grads[0], grads[5] = solved, -solved
    if not any(wanted[1:5] + wanted[6:10]):
        return grads
    # The first side's covariances in the second's whitened basis: Ũ, Ã (rows), C, F (columns).
    crossed = []
    for basis, vals, whiten in ((first.rowbasis, first.rowvals, second.rowwhiten),
                                (first.colbasis, first.colvals, second.colwhiten)):
        gain = whiten @ basis
        crossed.append(((gain * vals[..., None, :]) @ _swap(gain), gain @ _swap(gain)))
    sides1, sides2 = _sides(first, noises[:2]), _sides(second, noises[2:])
    for k, side1, side2, own, other, residual in ((1, sides1[0], sides2[0], crossed[0], crossed[1], scaled),
                                                   (2, sides1[1], sides2[1], crossed[1], crossed[0], _swap(scaled))):
        diagonals = [np.diagonal(matrix, axis1=-2, axis2=-1) for matrix in other]  # c, f (or a, e)
        for noise in (False, True):
            if wanted[k + 2 * noise]:  # ½[∂tr(Σ₂⁻¹Σ₁) − ∂log|Σ₁|]
                gain = (side2.inverse * diagonals[noise][..., None, :]).sum(-1)
                loss = (side1.inverse * _weights(side1, noise)[..., None, :]).sum(-1)
                traced = noise and side1.variance is not None
                grads[k + 2 * noise] = 0.5 * (_diagonal_pulled_back(side2.whiten, gain, traced)
                                              - _diagonal_pulled_back(side1.whiten, loss, traced))
            if wanted[k + 5 + 2 * noise]:  # −½ Rᵀ (K + W̃ w W̃ᵀ − diag(Σ w/d)) R
                weights, inverse = _weights(side2, noise), side2.inverse
                # K = Ũ ∘ (E diag(w c) Eᵀ) + Ã ∘ (E diag(w f) Eᵀ), E = 1/d₂: the trace's part
                spread = [(inverse * (weights * diagonal)[..., None, :]) @ _swap(inverse) for diagonal in diagonals]
                core = own[0] * spread[0] + own[1] * spread[1] + _density_core(side2, residual, noise)
                grads[k + 5 + 2 * noise] = -0.5 * _pulled_back(side2, core, noise)
    return grads


def _delivered(value, grads, args, wanted, dtype, batch_shape, failing, outputs, reduce, errors):
    """The result ``(value, grads)``: the value over ``batch_shape``, each wanted gradient
    summed over the axes its argument was broadcast along (with ``reduce``; else one per item,
    over ``batch_shape`` in front of its argument's core shape), NaN for the ``failing``
    items, in ``dtype``; written into ``outputs`` (from :func:`fastmvn._gradients._grad_out`)
    where given. A value beyond the range of ``dtype`` fails its item as ``errors`` says
    ("the result overflowed")."""
    value_out, grads_out = outputs
    value = np.array(np.broadcast_to(value, batch_shape))
    with np.errstate(over="ignore", invalid="ignore"):
        overflow = ~np.isfinite(value.astype(dtype)) & ~failing
    if overflow.any():
        if errors == "raise":
            _report([(overflow, FloatingPointError, "the result overflowed")], batch_shape)
        failing = failing | overflow
    value[failing] = np.nan
    result = []
    for arg, grad, wants, target in zip(args, grads, wanted, grads_out):
        if not wants:
            result.append(None)
            continue
        core = arg.core_shape
        grad = np.broadcast_to(grad, batch_shape + core)
        if failing.any():
            grad = np.where(failing.reshape(batch_shape + (1,) * len(core)), np.nan, grad)
        grad = np.array(reduce_to(grad, arg.shape) if reduce else grad, dtype=dtype)
        if target is not None:
            target[...] = grad
            grad = target
        result.append(grad)
    if value_out is not None:
        value_out[...] = value
        return value_out, tuple(result)
    value = value.astype(dtype)
    return (value if value.ndim else value[()]), tuple(result)


def _given(mean, noise_colcov):
    """Which of ``(mean, rowcov, colcov, noise_rowcov, noise_colcov)`` were passed, not None."""
    return [mean is not None, True, True, True, noise_colcov is not None]


@shared
def logpdf_kron_sum_value_and_grad(x: ArrayLike, mean: ArrayLike | None, rowcov: ArrayLike, colcov: ArrayLike,
                                   noise_rowcov: ArrayLike | float, noise_colcov: ArrayLike | float | None = None, *,
                                   errors: Errors = "raise", out: GradOut | None = None,
                                   wrt: Wrt = None) -> ValueAndGrad:
    r"""The log-density of :func:`logpdf_kron_sum` and its gradient with respect to each argument, batched.

    With ``Σ = V⊗U + B⊗A`` in the eigenbasis form of :class:`KroneckerSumNormal`
    (``R_u = P_u⁻¹``, ``d_ij = λ_u,i λ_v,j + 1``), ``W̃ = R_u (X − M) R_vᵀ / d`` (entrywise)
    and ``G = R_uᵀ W̃ R_v`` (so ``vec G = Σ⁻¹ vec(X − M)``), by the closed forms derived in
    ``docs/kronecker_sums.md``:

    .. math::

        \frac{\partial \log p}{\partial M} = -\frac{\partial \log p}{\partial X} = G,\quad
        \frac{\partial \log p}{\partial U} = \tfrac12\big(G V G^\top - R_u^\top \operatorname{diag}_i
        \big(\textstyle\sum_j \lambda_{v,j}/d_{ij}\big) R_u\big),\quad
        \frac{\partial \log p}{\partial A} = \tfrac12\big(G B G^\top - R_u^\top \operatorname{diag}_i
        \big(\textstyle\sum_j 1/d_{ij}\big) R_u\big),

    and the same for ``V`` and ``B`` with ``Gᵀ``, ``U``, ``A`` and sums over ``i``. A covariance's
    gradient is the symmetric matrix of :func:`kl_value_and_grad` (``d log p = Σᵢⱼ Gᵢⱼ dUᵢⱼ``
    for every symmetric ``dU``); a scalar noise ``σ²`` gets ``d log p/dσ²``, the trace of its
    matrix's gradient. The signal may be of low rank, as in the value. ``O(n³ + p³ + n²p + np²)``
    per item, NumPy and LAPACK on the whole stack (the value's factorisation, then matrix products).

    Parameters
    ----------
    %(kron_sum)s
    errors : {"raise", "nan"}
        ``"raise"`` (default) raises on the first failing item, naming the argument and the
        batch index; ``"nan"`` makes the value and every gradient of a failing item NaN (and so
        any gradient summed over it).
    out : tuple (value, grads), optional
        Arrays to write the results into, in the structure they are returned in (a previous
        result of the same call will do): ``value`` an array of the batch shape or None,
        ``grads`` six arrays of the arguments' shapes, or None for an argument passed as None,
        left out of ``wrt`` or whose gradient is to be allocated; no two may share memory.
        Returned instead of new arrays.
    wrt : str or sequence of str, optional
        The names of the arguments whose gradients to compute (``"x"``, ``"mean"``,
        ``"rowcov"``, ``"colcov"``, ``"noise_rowcov"``, ``"noise_colcov"``); by default every
        argument not passed as None. The others are None and are not computed.

    Returns
    -------
    logpdf : (...) ndarray or scalar
        The log-densities over the broadcast batch shape, as :func:`logpdf_kron_sum` returns
        them (to rounding).
    grads : tuple of six ndarray or None
        ``∂ sum(logpdf) / ∂ argument`` for ``(x, mean, rowcov, colcov, noise_rowcov,
        noise_colcov)`` in that order, each of its argument's shape as passed (summed over the
        batch axes it was broadcast along; a 0-d array for a scalar noise) and of the result
        dtype; ``None`` for an argument passed as None or left out of ``wrt``.

    Raises
    ------
    numpy.linalg.LinAlgError
        A noise covariance is not positive definite or a signal covariance not positive
        semi-definite (names the argument and batch index).
    ValueError
        NaN or infinity (names the argument and batch index); shapes that do not fit; a bad
        ``wrt`` or ``out``.

    See Also
    --------
    logpdf_kron_sum, kl_kron_sum_value_and_grad, logpdf_value_and_grad

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> x, u, v = np.ones((5, 2, 3)), np.diag([1.0, 3.0]), np.eye(3)
    >>> value, grads = fm.logpdf_kron_sum_value_and_grad(x, None, u, v, 1.0)   # Σ = diag(2, 4) per column
    >>> value.shape, grads[1], grads[5]
    ((5,), None, None)
    >>> grads[0][0]                                 # −Σ⁻¹ vec X
    array([[-0.5 , -0.5 , -0.5 ],
           [-0.25, -0.25, -0.25]])
    >>> float(grads[4])                             # d/dσ²: ½ Σ_ij (x_ij²/s_i² − 1/s_i), s = (2, 4), 5 items
    -3.28125
    """
    return _logpdf_value_and_grad((x, mean, rowcov, colcov, noise_rowcov, noise_colcov), errors, out=out, wrt=wrt)


def _logpdf_value_and_grad(values, errors, reduce=True, out=None, wrt=None):
    """:func:`logpdf_kron_sum_value_and_grad` of the six ``values``; with ``reduce=False`` each
    gradient has the broadcast batch shape in front of its argument's core shape (one per item,
    as a caller that weights the items needs: a scalar noise gets one derivative per item) and
    ``out`` is not taken, as in :func:`fastmvn._gradients.value_and_grad`."""
    x, mean, rowcov, colcov, noise_rowcov, noise_colcov = values
    check_errors(errors)
    args = [Arg("x", MEAN, x, "np"), *_arguments(mean, rowcov, colcov, noise_rowcov, noise_colcov)]
    dtype, batch_shape = check(args)
    given = [True, *_given(mean, noise_colcov)]
    wanted = computed(_LOGPDF, given, wrt)
    outputs = _grad_out(out, args, given, wanted, dtype, batch_shape)
    form, _, _, failures = _parts(args[1:])
    failing = _checked([([(_nonfinite(args[0]), ValueError, "x contains NaN or infinity")], []), failures],
                       batch_shape, errors)
    x = np.asarray(args[0].array, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        value, grads = _logpdf(form, x), _logpdf_grads(form, args[4:], x, wanted)
        return _delivered(value, grads, args, wanted, dtype, batch_shape, failing, outputs, reduce, errors)


# The precision form -------------------------------------------------------------------------

_LOGPDF_PREC = _Names(("x", "mean", "rowprec", "colprec", "damping"), ("np", "np", "nn", "pp", ""))


@shared
def logpdf_kron_prec_value_and_grad(x: ArrayLike, mean: ArrayLike | None, rowprec: ArrayLike, colprec: ArrayLike,
                                    damping: ArrayLike | float, *, errors: Errors = "raise",
                                    out: GradOut | None = None, wrt: Wrt = None) -> ValueAndGrad:
    r"""The log-density of ``vec X ~ N(vec M, (V⊗U + δI)⁻¹)`` and its gradient with respect to each argument, batched.

    The Gaussian of :meth:`KroneckerSumNormal.from_precision` (a Laplace approximation, damped
    K-FAC), whose precision is ``Λ = V⊗U + δI``: with ``D = X − M``, the eigenvalues
    ``λ_u``, ``λ_v`` and eigenvectors ``Q_u``, ``Q_v`` of ``U`` and ``V``, and
    ``e_ij = λ_u,i λ_v,j + δ``,

    .. math::

        \log p = -\tfrac12\big[np\log 2\pi - \textstyle\sum_{ij}\log e_{ij}
        + \operatorname{tr}(D^\top U D V) + \delta\lVert D\rVert_F^2\big],\qquad
        \frac{\partial \log p}{\partial M} = -\frac{\partial \log p}{\partial X} = U D V + \delta D,

    .. math::

        \frac{\partial \log p}{\partial U} = \tfrac12\big(Q_u \operatorname{diag}_i
        \big(\textstyle\sum_j \lambda_{v,j}/e_{ij}\big) Q_u^\top - D V D^\top\big),\qquad
        \frac{\partial \log p}{\partial \delta} = \tfrac12\big(\textstyle\sum_{ij} 1/e_{ij}
        - \lVert D\rVert_F^2\big),

    and the same for ``V`` with ``λ_u``, sums over ``i`` and ``Dᵀ U D``. Nothing is inverted
    and the ``np×np`` precision is never formed: one ``eigh`` of ``U`` and of ``V`` (as the
    distribution's), then matrix products, ``O(n³ + p³ + n²p + np²)`` per item, NumPy and
    LAPACK on the whole stack. A factor's gradient is the symmetric matrix of
    :func:`kl_value_and_grad`; ``U`` and ``V`` may be singular (positive semi-definite).

    Parameters
    ----------
    x : (..., n, p) array_like
        Points ``X``.
    %(kron_prec)s
    errors : {"raise", "nan"}
        ``"raise"`` (default) raises on the first failing item, naming the argument and the
        batch index; ``"nan"`` makes the value and every gradient of a failing item NaN.
    out : tuple (value, grads), optional
        Arrays to write the results into, as :func:`logpdf_kron_sum_value_and_grad` takes them
        (five gradients).
    wrt : str or sequence of str, optional
        The names of the arguments whose gradients to compute (``"x"``, ``"mean"``,
        ``"rowprec"``, ``"colprec"``, ``"damping"``); by default every argument not passed as
        None.

    Returns
    -------
    logpdf : (...) ndarray or scalar
        The log-densities over the broadcast batch shape, as
        ``KroneckerSumNormal.from_precision(mean, rowprec, colprec, damping).logpdf(x)``
        returns them (to rounding).
    grads : tuple of five ndarray or None
        ``∂ sum(logpdf) / ∂ argument`` for ``(x, mean, rowprec, colprec, damping)`` in that
        order, each of its argument's shape as passed (summed over the batch axes it was
        broadcast along; a 0-d array for a scalar damping) and of the result dtype; ``None``
        for an argument passed as None or left out of ``wrt``.

    Raises
    ------
    numpy.linalg.LinAlgError
        ``rowprec`` or ``colprec`` has a negative eigenvalue beyond rounding (names it and the
        batch index).
    ValueError
        NaN or infinity, or ``damping`` not positive (names the argument and batch index);
        shapes that do not fit; a bad ``wrt`` or ``out``.

    See Also
    --------
    KroneckerSumNormal.from_precision, logpdf_kron_sum_value_and_grad, kl_eig_value_and_grad

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> x, u, v = np.ones((2, 3)), np.diag([1.0, 3.0]), np.eye(3)
    >>> value, grads = fm.logpdf_kron_prec_value_and_grad(x, None, u, v, 1.0)   # Λ = diag(2, 4) per column
    >>> grads[0]                                    # −Λ vec X
    array([[-2., -2., -2.],
           [-4., -4., -4.]])
    >>> float(grads[4])                             # d/dδ: ½ Σ_ij (1/e_ij − x_ij²), e = (2, 4)
    -1.875
    """
    return _logpdf_prec_value_and_grad((x, mean, rowprec, colprec, damping), errors, out=out, wrt=wrt)


def _logpdf_prec_value_and_grad(values, errors, reduce=True, out=None, wrt=None):
    """:func:`logpdf_kron_prec_value_and_grad` of the five ``values``, per item with
    ``reduce=False`` as in :func:`_logpdf_value_and_grad`."""
    x, mean, rowprec, colprec, damping = values
    check_errors(errors)
    form, dtype, _, failures, args, eigen = _precision(mean, rowprec, colprec, damping)
    x_arg = Arg("x", MEAN, x, "np")
    args = [x_arg, *args]
    _, batch_shape = check(args)
    dtype = result_dtype(np.empty(0, dtype), x_arg.array)
    given = [True, mean is not None, True, True, True]
    wanted = computed(_LOGPDF_PREC, given, wrt)
    outputs = _grad_out(out, args, given, wanted, dtype, batch_shape)
    failing = _checked([([(_nonfinite(x_arg), ValueError, "x contains NaN or infinity")], []), *failures],
                       batch_shape, errors)
    x = np.asarray(x_arg.array, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        value, grads = _logpdf(form, x), _logpdf_prec_grads(form, args, eigen, x, wanted)
        return _delivered(value, grads, args, wanted, dtype, batch_shape, failing, outputs, reduce, errors)


def _logpdf_prec_grads(form, args, eigen, x, wanted):
    """The per-item gradients of ``log p`` of the precision form for ``(x, mean, rowprec,
    colprec, damping)`` where ``wanted``, over their broadcast batch shapes."""
    rowvecs, rowvals, colvecs, colvals = eigen
    rowprec, colprec = (_symmetric(arg.array, np.float64) for arg in args[2:4])
    damping = np.asarray(args[4].array, dtype=np.float64)
    residual = x - form.mean
    reciprocal = 1.0 / (rowvals[..., :, None] * colvals[..., None, :] + damping[..., None, None])
    grads = [None] * 5
    if wanted[0] or wanted[1]:
        solved = rowprec @ residual @ colprec + damping[..., None, None] * residual    # Λ vec(X − M)
        grads[0], grads[1] = -solved, solved
    if wanted[2]:
        grads[2] = 0.5 * _symmetrised((rowvecs * (reciprocal * colvals[..., None, :]).sum(-1)[..., None, :])
                                      @ _swap(rowvecs) - residual @ colprec @ _swap(residual))
    if wanted[3]:
        grads[3] = 0.5 * _symmetrised((colvecs * (reciprocal * rowvals[..., :, None]).sum(-2)[..., None, :])
                                      @ _swap(colvecs) - _swap(residual) @ rowprec @ residual)
    if wanted[4]:
        grads[4] = 0.5 * (reciprocal.sum(axis=(-2, -1)) - np.square(residual).sum(axis=(-2, -1)))
    return grads


@shared
def kl_kron_sum_value_and_grad(mean1: ArrayLike | None, rowcov1: ArrayLike, colcov1: ArrayLike,
                               noise_rowcov1: ArrayLike | float, noise_colcov1: ArrayLike | float | None,
                               mean2: ArrayLike | None, rowcov2: ArrayLike, colcov2: ArrayLike,
                               noise_rowcov2: ArrayLike | float, noise_colcov2: ArrayLike | float | None, *,
                               errors: Errors = "raise", out: GradOut | None = None,
                               wrt: Wrt = None) -> ValueAndGrad:
    r"""The KL of :func:`kl_kron_sum` and its gradient with respect to each argument, batched.

    ``KL = ½[tr(Σ₂⁻¹Σ₁) + vec(M₁ − M₂)ᵀ Σ₂⁻¹ vec(M₁ − M₂) − np + log|Σ₂| − log|Σ₁|]`` with
    ``Σ = V⊗U + B⊗A``, each in the eigenbasis form of :class:`KroneckerSumNormal`. By the
    closed forms derived in ``docs/kronecker_sums.md``, with ``G = R_u2ᵀ W̃ R_v2``,
    ``W̃ = R_u2 (M₁ − M₂) R_v2ᵀ / d₂``, ``c = diag(R_v2 V₁ R_v2ᵀ)``:

    .. math::

        \frac{\partial KL}{\partial M_1} = -\frac{\partial KL}{\partial M_2} = G,\quad
        \frac{\partial KL}{\partial U_1} = \tfrac12\big(R_{u2}^\top \operatorname{diag}_i
        \big(\textstyle\sum_j c_j/d_{2,ij}\big) R_{u2} - R_{u1}^\top \operatorname{diag}_i
        \big(\textstyle\sum_j \lambda_{v1,j}/d_{1,ij}\big) R_{u1}\big),

    .. math::

        \frac{\partial KL}{\partial U_2} = \tfrac12\big(R_{u2}^\top \operatorname{diag}_i
        \big(\textstyle\sum_j \lambda_{v2,j}/d_{2,ij}\big) R_{u2} - R_{u2}^\top K R_{u2}
        - G V_2 G^\top\big),\quad
        K_{ii'} = \sum_j \lambda_{v2,j} \frac{C_{jj} \tilde U_{ii'} + F_{jj} \tilde A_{ii'}}{d_{2,ij} d_{2,i'j}},

    with ``Ũ = R_u2 U₁ R_u2ᵀ``, ``Ã = R_u2 A₁ R_u2ᵀ``, ``C = R_v2 V₁ R_v2ᵀ``,
    ``F = R_v2 B₁ R_v2ᵀ``; the noises' with the weight ``1`` in place of ``λ``, the columns'
    alike. Covariance gradients are symmetric as in :func:`kl_value_and_grad`; a scalar noise
    gets its derivative ``d KL/dσ²``. ``O(n³ + p³ + n²p + np²)`` per pair, NumPy and LAPACK on
    the whole stack.

    Parameters
    ----------
    %(kron_sum_pair)s
    errors : {"raise", "nan"}
        As in :func:`logpdf_kron_sum_value_and_grad`.
    out : tuple (value, grads), optional
        As in :func:`logpdf_kron_sum_value_and_grad`, with ten gradients.
    wrt : str or sequence of str, optional
        The names of the arguments whose gradients to compute (``"mean1"``, ``"rowcov1"``, …,
        ``"noise_colcov2"``); by default every argument not passed as None. Against a fixed
        prior, ``wrt=("mean1", "rowcov1", "colcov1", "noise_rowcov1")`` computes no gradient of
        the second side.

    Returns
    -------
    kl : (...) ndarray or scalar
        The divergences over the broadcast batch shape, as :func:`kl_kron_sum` returns them (to
        rounding).
    grads : tuple of ten ndarray or None
        ``∂ sum(kl) / ∂ argument`` for ``(mean1, rowcov1, colcov1, noise_rowcov1, noise_colcov1,
        mean2, rowcov2, colcov2, noise_rowcov2, noise_colcov2)``, as in
        :func:`logpdf_kron_sum_value_and_grad`.

    Raises
    ------
    numpy.linalg.LinAlgError, ValueError
        As in :func:`kl_kron_sum`, naming the argument and the batch index; a bad ``wrt`` or ``out``.

    See Also
    --------
    kl_kron_sum, logpdf_kron_sum_value_and_grad, kl_value_and_grad

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> rng = np.random.default_rng(0)
    >>> u = rng.standard_normal((100, 4, 2)); u = u @ np.swapaxes(u, -1, -2)   # rank 2
    >>> value, grads = fm.kl_kron_sum_value_and_grad(None, u, np.eye(3), 0.1, None, None, np.eye(4), np.eye(3),
    ...                                              1.0, None, wrt=("rowcov1", "noise_rowcov1", "noise_rowcov2"))
    >>> value.shape, grads[1].shape, grads[3].shape, grads[8].shape   # the prior's σ² summed over the 100 items
    ((100,), (100, 4, 4), (), ())
    >>> _, same = fm.kl_kron_sum_value_and_grad(None, u, np.eye(3), 0.1, None, None, u, np.eye(3), 0.1, None)
    >>> float(abs(same[1]).max()) < 1e-10                   # zero where the two are equal
    True
    """
    return _kl_value_and_grad((mean1, rowcov1, colcov1, noise_rowcov1, noise_colcov1, mean2, rowcov2, colcov2,
                               noise_rowcov2, noise_colcov2), errors, out=out, wrt=wrt)


def _kl_value_and_grad(values, errors, reduce=True, out=None, wrt=None):
    """:func:`kl_kron_sum_value_and_grad` of the ten ``values``, per item with ``reduce=False``
    as in :func:`_logpdf_value_and_grad`."""
    mean1, rowcov1, colcov1, noise_rowcov1, noise_colcov1 = values[:5]
    mean2, rowcov2, colcov2, noise_rowcov2, noise_colcov2 = values[5:]
    check_errors(errors)
    args1 = _arguments(mean1, rowcov1, colcov1, noise_rowcov1, noise_colcov1, "1")
    args2 = _arguments(mean2, rowcov2, colcov2, noise_rowcov2, noise_colcov2, "2")
    first, dtype1, batch1, failures1 = _parts(args1)
    second, dtype2, batch2, failures2 = _parts(args2)
    if first.mean.shape[-2:] != second.mean.shape[-2:]:
        raise ValueError(f"mean1 has shape {first.mean.shape} and mean2 {second.mean.shape}: "
                         "the two distributions must be of one (n, p)")
    args = args1 + args2
    batch_shape = np.broadcast_shapes(batch1, batch2)
    dtype = np.dtype(np.float32 if dtype1 == dtype2 == np.float32 else np.float64)
    given = _given(mean1, noise_colcov1) + _given(mean2, noise_colcov2)
    wanted = computed(_KL, given, wrt)
    outputs = _grad_out(out, args, given, wanted, dtype, batch_shape)
    failing = _checked([failures1, failures2], batch_shape, errors)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        value, grads = _kl(first, second), _kl_grads(first, second, args[3:5] + args[8:10], wanted)
        return _delivered(value, grads, args, wanted, dtype, batch_shape, failing, outputs, reduce, errors)


# The KL from eigendecompositions ---------------------------------------------------------------

_EIG_NAMES = ("mean", "rowvecs", "rowvals", "colvecs", "colvals")
_KL_EIG = _Names(tuple(f"{name}{suffix}" for suffix in "12" for name in _EIG_NAMES)
                 + ("noise1", "damping1", "noise2", "damping2"), ("np", "nn", "n", "pp", "p") * 2 + ("",) * 4)


class _Spectrum(NamedTuple):
    """One side of :func:`kl_eig_value_and_grad` in the orthonormal basis ``Q_v ⊗ Q_u`` of its
    factors, where ``Σ = (Q_v⊗Q_u) diag(vec s) (Q_v⊗Q_u)ᵀ``, float64, over its own batch shape:
    ``s = λ_u λ_vᵀ`` (a matrix normal), ``λ_u λ_vᵀ + σ²`` (noise) or ``1/(λ_u λ_vᵀ + δ)``
    (damping). ``factors`` are pairs ``(a, b)`` with ``s = Σ a bᵀ`` (of rank one or two), None
    where ``s`` has no such form; ``inverse_factors`` the same for ``1/s``."""

    rowvecs: np.ndarray  # Q_u (..., n, n)
    rowvals: np.ndarray  # λ_u (..., n)
    colvecs: np.ndarray  # Q_v (..., p, p)
    colvals: np.ndarray  # λ_v (..., p)
    kind: str  # "normal", "noise" or "damping"
    scales: np.ndarray  # s (..., n, p)
    inverse: np.ndarray  # 1/s (..., n, p)
    factors: list | None
    inverse_factors: list | None

    @property
    def power(self):
        """``κ``: ``+1`` where the factors and the scalar make up ``Σ``, ``−1`` where they make up ``Σ⁻¹``."""
        return -1 if self.kind == "damping" else 1


def _spectrum(args, scalar, kind):
    """The :class:`_Spectrum` of one side from its arguments ``(rowvecs, rowvals, colvecs,
    colvals)`` and its noise or damping argument ``scalar`` (None for a matrix normal)."""
    rowvecs, rowvals, colvecs, colvals = (np.asarray(arg.array, dtype=np.float64) for arg in args)
    product = rowvals[..., :, None] * colvals[..., None, :]
    signal = [(rowvals, colvals)]
    if kind == "normal":
        return _Spectrum(rowvecs, rowvals, colvecs, colvals, kind, product, 1.0 / product, signal,
                         [(1.0 / rowvals, 1.0 / colvals)])
    shift = np.asarray(scalar.array, dtype=np.float64)
    shifted = product + shift[..., None, None]
    factors = signal + [(shift[..., None] * np.ones(rowvals.shape[-1]), np.ones(colvals.shape[-1]))]
    if kind == "noise":
        return _Spectrum(rowvecs, rowvals, colvecs, colvals, kind, shifted, 1.0 / shifted, factors, None)
    return _Spectrum(rowvecs, rowvals, colvecs, colvals, kind, 1.0 / shifted, shifted, None, factors)


def _transposed(side):
    """The side with its rows and columns exchanged (``Σ`` of ``Xᵀ``), for the columns' gradients."""
    def flip(factors):
        return None if factors is None else [(b, a) for a, b in factors]

    return side._replace(rowvecs=side.colvecs, rowvals=side.colvals, colvecs=side.rowvecs, colvals=side.rowvals,
                         scales=_swap(side.scales), inverse=_swap(side.inverse), factors=flip(side.factors),
                         inverse_factors=flip(side.inverse_factors))


def _matvec(matrix, vector):
    """``matrix @ vector`` over the batch."""
    return (matrix @ vector[..., None])[..., 0]


def _spread(basis, weight, weight_factors, gain, gain_factors, other):
    """``S_ab = Σ_j w_j f_aj f_bj (B diag(g_:j) Bᵀ)_ab`` (``B = basis``, ``f = weight``,
    ``g = gain``, ``w = other``): the weighted diagonal blocks of a matrix ``F (B⊗B') diag(·)
    (B⊗B')ᵀ F`` in an eigenbasis. With ``g = Σ_r a_r b_rᵀ`` it is
    ``Σ_r (B diag(a_r) Bᵀ) ∘ (f diag(w∘b_r) fᵀ)``; with ``f = Σ_r α_r β_rᵀ``,
    ``Σ_rr' diag(α_r) B diag(g (w∘β_r∘β_r')) Bᵀ diag(α_r')``: ``O(n³ + n²p)`` either way.
    Without either form it is the sum over ``j`` itself, ``O(n³p)``."""
    if gain_factors is not None:
        return sum(((basis * a[..., None, :]) @ _swap(basis)) * ((weight * (other * b)[..., None, :]) @ _swap(weight))
                   for a, b in gain_factors)
    if weight_factors is not None:
        return sum(alpha[..., :, None] * ((basis * _matvec(gain, other * beta * beta2)[..., None, :]) @ _swap(basis))
                   * alpha2[..., None, :] for alpha, beta in weight_factors for alpha2, beta2 in weight_factors)
    return sum((weight[..., :, j, None] * weight[..., None, :, j]) * other[..., j, None, None]
               * ((basis * gain[..., None, :, j]) @ _swap(basis)) for j in range(gain.shape[-1]))


def _eigen_cores(first, second, residual):
    """``K₁`` and ``K₂`` of the rows, ``∂KL/∂U_k = Q_u,k K_k Q_u,kᵀ`` for the row factor ``U_k``
    of either side (a covariance's factor, or a precision's with damping), with ``residual``
    ``W = Q_u2ᵀ (M₁ − M₂) Q_v2``; the columns' are those of the transposed sides
    (``docs/kronecker_sums.md``, section 8)."""
    crossed = _swap(second.rowvecs) @ first.rowvecs  # H_u = Q_u2ᵀ Q_u1
    col_gain = np.square(_swap(second.colvecs) @ first.colvecs)  # G_v = (Q_v2ᵀ Q_v1)∘²
    n, p = first.scales.shape[-2:]
    ones = [(np.ones(n), np.ones(p))]
    # K₂ = −½κ₂ [S(H_u, e, s₁ G_vᵀ, λ_v2) + (e∘W) Λ_v2 (e∘W)ᵀ − diag(s₂^−κ₂ λ_v2)], e = 1/s₂ or 1
    power = second.power
    weight = second.inverse if power > 0 else np.ones((n, p))
    gain_factors = None if first.factors is None else [(a, _matvec(col_gain, b)) for a, b in first.factors]
    spread = _spread(crossed, weight, second.inverse_factors if power > 0 else ones,
                     first.scales @ _swap(col_gain), gain_factors, second.colvals)
    scaled = weight * residual
    own = (second.inverse if power > 0 else second.scales) * second.colvals[..., None, :]
    second_core = -0.5 * power * (spread + (scaled * second.colvals[..., None, :]) @ _swap(scaled)
                                  - _diagonal(own.sum(-1)))
    # K₁ = ½κ₁ [S(H_uᵀ, f, E G_v, λ_v1) − diag(s₁^−κ₁ λ_v1)], f = 1 or s₁, E = 1/s₂
    power = first.power
    gain_factors = (None if second.inverse_factors is None
                    else [(a, _matvec(_swap(col_gain), b)) for a, b in second.inverse_factors])
    spread = _spread(_swap(crossed), first.scales if power < 0 else np.ones((n, p)),
                     ones if power > 0 else first.factors, second.inverse @ col_gain, gain_factors, first.colvals)
    own = (first.inverse if power > 0 else first.scales) * first.colvals[..., None, :]
    first_core = 0.5 * power * (spread - _diagonal(own.sum(-1)))
    return first_core, second_core


def _kl_eig_grads(first, second, means, wanted):
    """The per-item gradients of ``KL(first ‖ second)`` (two :class:`_Spectrum`) for the
    fourteen arguments of :func:`kl_eig_value_and_grad` where ``wanted``, over their broadcast
    batch shapes; ``means`` the two means, float64."""
    grads = [None] * 14
    residual = _swap(second.rowvecs) @ (means[0] - means[1]) @ second.colvecs  # W
    if wanted[0] or wanted[5]:
        solved = second.rowvecs @ (residual * second.inverse) @ _swap(second.colvecs)  # Σ₂⁻¹ vec(M₁ − M₂)
        grads[0], grads[5] = solved, -solved
    # the positions of noise1, damping1, noise2, damping2; a matrix normal side has neither
    scalars = [None if side.kind == "normal" else 10 + 2 * k + (side.kind == "damping")
               for k, side in enumerate((first, second))]
    if any(wanted[k] for k in (2, 4, 7, 9)) or any(k is not None and wanted[k] for k in scalars):
        # τ = diag of ∂KL/∂X in each side's basis (X = V⊗U + cI): ∂/∂λ_u = τ λ_v, ∂/∂c = Σ τ
        row_gain = np.square(_swap(second.rowvecs) @ first.rowvecs)
        col_gain = np.square(_swap(second.colvecs) @ first.colvecs)
        weight = second.inverse if second.power > 0 else 1.0
        diagonals = [0.5 * first.power * ((1.0 if first.power > 0 else np.square(first.scales))
                                          * (_swap(row_gain) @ second.inverse @ col_gain)
                                          - (first.inverse if first.power > 0 else first.scales)),
                     -0.5 * second.power * (np.square(weight) * (row_gain @ first.scales @ _swap(col_gain)
                                                                 + np.square(residual))
                                            - (second.inverse if second.power > 0 else second.scales))]
        for k, side, diagonal in zip((0, 5), (first, second), diagonals):
            if wanted[k + 2]:
                grads[k + 2] = _matvec(diagonal, side.colvals)
            if wanted[k + 4]:
                grads[k + 4] = _matvec(_swap(diagonal), side.rowvals)
            scalar = scalars[k // 5]
            if scalar is not None and wanted[scalar]:
                grads[scalar] = diagonal.sum(axis=(-2, -1))
    for axis in (0, 1):  # ∂/∂Q_u = 2 Q_u K Λ_u, the columns' from the transposed sides
        if wanted[1 + 2 * axis] or wanted[6 + 2 * axis]:
            sides = (first, second) if axis == 0 else (_transposed(first), _transposed(second))
            cores = _eigen_cores(*sides, residual if axis == 0 else _swap(residual))
            for k, side, core in zip((1 + 2 * axis, 6 + 2 * axis), sides, cores):
                if wanted[k]:
                    grads[k] = 2.0 * (side.rowvecs @ core) * side.rowvals[..., None, :]
    return grads


@shared
def kl_eig_value_and_grad(mean1: ArrayLike | None, rowvecs1: ArrayLike, rowvals1: ArrayLike, colvecs1: ArrayLike,
                          colvals1: ArrayLike, mean2: ArrayLike | None, rowvecs2: ArrayLike, rowvals2: ArrayLike,
                          colvecs2: ArrayLike, colvals2: ArrayLike, *, noise1: ArrayLike | float | None = None,
                          damping1: ArrayLike | float | None = None, noise2: ArrayLike | float | None = None,
                          damping2: ArrayLike | float | None = None, errors: Errors = "raise",
                          out: GradOut | None = None, wrt: Wrt = None) -> ValueAndGrad:
    r"""The KL of :func:`kl_eig` and its gradient with respect to each argument, batched.

    Each side is given by the eigendecompositions ``U = Q_u diag(λ_u) Q_uᵀ``,
    ``V = Q_v diag(λ_v) Q_vᵀ`` and is the matrix normal ``V⊗U``, the covariance ``V⊗U + σ²I``
    (``noise=σ²``) or the precision ``V⊗U + δI`` (``damping=δ``), as in :func:`kl_eig`: a
    Laplace approximation or a noisy or damped K-FAC posterior whose prior precision, noise,
    eigenvalues or mean are to be learnt. In the basis ``Q_v⊗Q_u`` of a side its covariance is
    the diagonal ``s_ij = (λ_u,i λ_v,j + c)^κ`` (``c = 0``, ``σ²`` or ``δ``; ``κ = −1`` for a
    precision), and with ``τ = ∂KL/∂x`` the derivative with respect to the eigenvalues
    ``x_ij = λ_u,i λ_v,j + c`` of ``V⊗U + cI`` (``docs/kronecker_sums.md``, section 8):

    .. math::

        \frac{\partial KL}{\partial M_1} = -\frac{\partial KL}{\partial M_2} = \Sigma_2^{-1} (M_1 - M_2),\quad
        \frac{\partial KL}{\partial \lambda_{u,i}} = \sum_j \tau_{ij} \lambda_{v,j},\quad
        \frac{\partial KL}{\partial c} = \sum_{ij} \tau_{ij},\quad
        \frac{\partial KL}{\partial Q_u} = 2\, Q_u K \operatorname{diag}(\lambda_u),

    with ``∂KL/∂U = Q_u K Q_uᵀ`` (``K`` the weighted diagonal blocks of ``∂KL/∂(V⊗U)`` in the
    side's basis; its diagonal is ``τ λ_v``), and the same for ``λ_v`` and ``Q_v``. The
    gradient with respect to an eigenvector matrix is that of ``Q`` taken as an unconstrained
    matrix, the Euclidean gradient of the KL with ``U = Q diag(λ) Qᵀ`` written out; a caller
    that keeps ``Q`` orthonormal projects it onto the tangent space, ``G − Q sym(QᵀG)``
    (``sym(A) = (A + Aᵀ)/2``), or takes a step on the orthogonal group. ``O(n³ + p³ + n²p + np²)``
    per pair, NumPy and LAPACK on the whole stack, the ``np×np`` matrix never formed, except
    for the eigenvectors' gradients of a damped first side against a noisy second one: there
    ``Σ₁`` and ``Σ₂⁻¹`` are both inverses of Kronecker sums in two different bases, and those
    take ``O(n³p + np³)`` (leave the eigenvectors out of ``wrt`` to skip them).

    Parameters
    ----------
    %(eig_pair)s
    %(grad_errors)s
    out : tuple (value, grads), optional
        As in :func:`logpdf_kron_sum_value_and_grad`, with fourteen gradients.
    wrt : str or sequence of str, optional
        The names of the arguments whose gradients to compute (``"mean1"``, ``"rowvecs1"``, …,
        ``"colvals2"``, ``"noise1"``, ``"damping1"``, ``"noise2"``, ``"damping2"``); by default
        every argument not passed as None. To learn a prior's damping alone,
        ``wrt="damping2"``.

    Returns
    -------
    kl : (...) ndarray or scalar
        ``KL(first ‖ second)`` over the broadcast batch shape, as :func:`kl_eig` returns it.
    grads : tuple of fourteen ndarray or None
        ``∂ sum(kl) / ∂ argument`` for ``(mean1, rowvecs1, rowvals1, colvecs1, colvals1, mean2,
        rowvecs2, rowvals2, colvecs2, colvals2, noise1, damping1, noise2, damping2)`` in that
        order, each of its argument's shape as passed (summed over the batch axes it was
        broadcast along; a 0-d array for a Python number) and of the result dtype; ``None`` for
        an argument passed as None or left out of ``wrt``.

    Raises
    ------
    numpy.linalg.LinAlgError, ValueError
        As in :func:`kl_eig`, naming the argument and the batch index; a bad ``wrt`` or ``out``.

    See Also
    --------
    kl_eig, kl_kron_sum_value_and_grad

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> rng = np.random.default_rng(0)
    >>> g = rng.standard_normal((5, 3, 3)); u = g @ np.swapaxes(g, -1, -2)   # five row factors
    >>> (lu, qu), (lv, qv) = np.linalg.eigh(u), np.linalg.eigh(np.diag([1.0, 2.0]))
    >>> prior = (None, np.eye(3), np.ones(3), np.eye(2), np.ones(2))        # MN(0, I, I)
    >>> kl, grads = fm.kl_eig_value_and_grad(None, qu, lu, qv, lv, *prior, damping1=1e-2,
    ...                                      wrt=("rowvals1", "rowvecs1", "damping1"))
    >>> bool(np.array_equal(kl, fm.kl_eig(None, qu, lu, qv, lv, *prior, damping1=1e-2)))
    True
    >>> grads[1].shape, grads[2].shape, grads[11].shape   # δ a Python float: summed over the five items
    ((5, 3, 3), (5, 3), ())
    >>> grads[0] is None and grads[3] is None
    True
    """
    return _kl_eig_value_and_grad((mean1, rowvecs1, rowvals1, colvecs1, colvals1, mean2, rowvecs2, rowvals2, colvecs2,
                                   colvals2, noise1, damping1, noise2, damping2), errors, out=out, wrt=wrt)


def _kl_eig_value_and_grad(values, errors, reduce=True, out=None, wrt=None):
    """:func:`kl_eig_value_and_grad` of the fourteen ``values``, per item with ``reduce=False``
    as in :func:`_logpdf_value_and_grad`."""
    check_errors(errors)
    sides, args, kinds = [], [], []
    for k, suffix in enumerate("12"):
        mean, rowvecs, rowvals, colvecs, colvals = values[5 * k:5 * k + 5]
        noise, damping = values[10 + 2 * k:12 + 2 * k]
        sides.append(_eig_side(mean, rowvecs, rowvals, colvecs, colvals, noise, damping, suffix))
        names = [f"{name}{suffix}" for name in _EIG_NAMES]
        side_args = [Arg(names[1], MEAN, rowvecs, "nn"), Arg(names[2], VAR, rowvals, "n"),
                     Arg(names[3], MEAN, colvecs, "pp"), Arg(names[4], VAR, colvals, "p")]
        n, p = side_args[0].shape[-1], side_args[2].shape[-1]
        args += [Arg(names[0], MEAN, np.zeros((n, p)) if mean is None else mean, "np", default=mean is None),
                 *side_args]
        kinds.append("normal" if noise is None and damping is None else "noise" if damping is None else "damping")
    for k, suffix in enumerate("12"):
        args += [Arg(f"{name}{suffix}", VAR, 1.0 if scalar is None else scalar, "",
                     default=scalar is None or isinstance(scalar, (int, float)))
                 for name, scalar in zip(("noise", "damping"), values[10 + 2 * k:12 + 2 * k])]
    (first, dtype1, batch1, failures1), (second, dtype2, batch2, failures2) = sides
    if first.mean.shape[-2:] != second.mean.shape[-2:]:
        raise ValueError(f"mean1 has shape {first.mean.shape} and mean2 {second.mean.shape}: "
                         "the two distributions must be of one (n, p)")
    batch_shape = np.broadcast_shapes(batch1, batch2)
    dtype = np.dtype(np.float32 if dtype1 == dtype2 == np.float32 else np.float64)
    given = [value is not None for value in values]
    given[1:5] = given[6:10] = [True] * 4
    wanted = computed(_KL_EIG, given, wrt)
    outputs = _grad_out(out, args, given, wanted, dtype, batch_shape)
    failing = _checked([failures1, failures2], batch_shape, errors)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        spectra = [_spectrum(args[5 * k + 1:5 * k + 5], args[10 + 2 * k + (kind == "damping")], kind)
                   for k, kind in enumerate(kinds)]
        value = _kl(first, second)
        grads = _kl_eig_grads(*spectra, (first.mean, second.mean), wanted)
        return _delivered(value, grads, args, wanted, dtype, batch_shape, failing, outputs, reduce, errors)


# The functions as fastmvn.torch and fastmvn.dask serve them ----------------------------------------


class _Served(NamedTuple):
    """A Kronecker-sum function as :mod:`fastmvn.torch` and :mod:`fastmvn.dask` serve it: its
    ``name``, its ``arguments`` (:class:`_Names`), its value ``value(*values, errors=)`` and its
    value with the gradients of the arguments ``wrt``, ``value_and_grad(values, errors,
    reduce=, wrt=)`` (per item with ``reduce=False``), each taking every argument in order."""

    name: str
    arguments: _Names
    value: Callable
    value_and_grad: Callable

    @property
    def names(self):
        return self.arguments.names

    @property
    def axes(self):
        return self.arguments.axes

    @property
    def scalars(self):
        """The names of the noise and damping arguments, each of which may be a number (a Python
        number is a constant: it does not decide the result dtype)."""
        return tuple(name for name in self.names if name.startswith(("noise", "damping")))

    @property
    def gradient_name(self):
        return f"{self.name}_value_and_grad"


def _logpdf_prec(*values, errors="raise"):
    """The log-density of :func:`logpdf_kron_prec_value_and_grad` alone: its computation with no
    gradient asked for."""
    return _logpdf_prec_value_and_grad(values, errors, wrt=())[0]


def _kl_eig(*values, errors="raise"):
    """:func:`kl_eig` of its fourteen arguments in order, the scalars last."""
    return kl_eig(*values[:10], **dict(zip(_KL_EIG.names[10:], values[10:])), errors=errors)


_SERVED = {served.name: served for served in (
    _Served("logpdf_kron_sum", _LOGPDF, logpdf_kron_sum, _logpdf_value_and_grad),
    _Served("kl_kron_sum", _KL, kl_kron_sum, _kl_value_and_grad),
    _Served("logpdf_kron_prec", _LOGPDF_PREC, _logpdf_prec, _logpdf_prec_value_and_grad),
    _Served("kl_eig", _KL_EIG, _kl_eig, _kl_eig_value_and_grad),
)}
