"""The gradients of the Kronecker-sum log-density and KL, :func:`logpdf_kron_sum_value_and_grad`
and :func:`kl_kron_sum_value_and_grad`: closed forms on the eigenbasis form of
:mod:`fastmvn.distributions.kron` (derived in ``docs/kronecker_sums.md``, section 8).

With ``Σ = V⊗U + B⊗A = (P_v⊗P_u) diag(vec d) (P_v⊗P_u)ᵀ``, ``R = P⁻¹`` and a covariance
gradient ``∂f/∂Σ`` that is a sum of Kronecker products in the eigenbasis, the gradient with
respect to ``U`` is ``R_uᵀ K R_u`` with ``K`` an ``n×n`` matrix of sums over the columns
(``dΣ = V⊗dU`` contracts the column index with ``R_v V R_vᵀ = Λ_v``), and likewise for ``A``
(with ``R_v B R_vᵀ = I``), ``V`` and ``B``. Every gradient costs ``O(n³ + p³ + n²p + np²)``,
the order of the value; the ``np×np`` covariance is never formed. NumPy and LAPACK on whole
stacks, float64, over the broadcast batch shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from .._arguments import MEAN, Arg, check, check_errors
from .._docs import shared
from .._gradients import _grad_out, computed, reduce_to
from ._base import _nonfinite
from .kron import _arguments, _checked, _kl, _logpdf, _parts, _products, _swap

if TYPE_CHECKING:
    from .._typing import ArrayLike, Errors, GradOut, ValueAndGrad, Wrt

__all__ = ["logpdf_kron_sum_value_and_grad", "kl_kron_sum_value_and_grad"]

_SIDE_NAMES = ("mean", "rowcov", "colcov", "noise_rowcov", "noise_colcov")


class _Names(NamedTuple):
    """The argument names of a function, as :func:`fastmvn._gradients.computed` reads them."""

    names: tuple[str, ...]


_LOGPDF = _Names(("x",) + _SIDE_NAMES)
_KL = _Names(tuple(f"{name}{suffix}" for suffix in "12" for name in _SIDE_NAMES))


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


def _delivered(value, grads, args, wanted, dtype, batch_shape, failing, outputs, reduce):
    """The result ``(value, grads)``: the value over ``batch_shape``, each wanted gradient
    summed over the axes its argument was broadcast along (with ``reduce``; else one per item,
    over ``batch_shape`` in front of its argument's core shape), NaN for the ``failing``
    items, in ``dtype``; written into ``outputs`` (from :func:`fastmvn._gradients._grad_out`)
    where given."""
    value_out, grads_out = outputs
    value = np.array(np.broadcast_to(value, batch_shape))
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
        return _delivered(value, grads, args, wanted, dtype, batch_shape, failing, outputs, reduce)


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
        return _delivered(value, grads, args, wanted, dtype, batch_shape, failing, outputs, reduce)
