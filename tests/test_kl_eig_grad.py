"""Gradients of the KL between Gaussians given by eigendecompositions (kl_eig_value_and_grad)
against PyTorch autograd through the dense np×np covariance or precision built from them, and
against central differences, for each pair of side kinds (matrix normal, noise, damping)."""

import numpy as np
import pytest
from numpy.linalg import LinAlgError
from scipy.linalg import expm

import fastmvn as fm
from fastmvn import reference
from fastmvn._gradients import reduce_to
from fastmvn.distributions import kron_grad

from test_kron import EIG_KINDS, eig_side
from test_kron_grad import assert_close

torch = pytest.importorskip("torch")

NAMES = [f"{name}{k}" for k in "12" for name in ("mean", "rowvecs", "rowvals", "colvecs", "colvals")] + [
    "noise1", "damping1", "noise2", "damping2"]
CORE_DIMS = [2, 2, 1, 2, 1] * 2 + [0] * 4


def arguments(side1, side2):
    """The fourteen arguments of ``kl_eig_value_and_grad`` from two sides of ``test_kron.eig_side``."""
    scalars = [side[5].get(key) for side in (side1, side2) for key in ("noise", "damping")]
    return list(side1[:5]) + list(side2[:5]) + scalars


def call(function, values, **kwargs):
    """``function`` (``fm.kl_eig`` or ``fm.kl_eig_value_and_grad``) of the fourteen ``values``."""
    scalars = dict(zip(NAMES[10:], values[10:]))
    return function(*values[:10], **scalars, **kwargs)


# The dense route in PyTorch ---------------------------------------------------------------------


def torch_cov(vecs_u, vals_u, vecs_v, vals_v, noise, damping):
    """The dense covariance of one side: ``V⊗U`` (a matrix normal), ``V⊗U + σ²I`` or
    ``(V⊗U + δI)⁻¹``, with ``U = Q_u diag(λ_u) Q_uᵀ`` written out."""
    u = vecs_u @ torch.diag(vals_u) @ vecs_u.T
    v = vecs_v @ torch.diag(vals_v) @ vecs_v.T
    signal = torch.kron(v, u)
    eye = torch.eye(signal.shape[0], dtype=torch.float64)
    if noise is not None:
        return signal + noise * eye
    if damping is not None:
        return torch.linalg.inv(signal + damping * eye)
    return signal


def torch_kl(mean1, rowvecs1, rowvals1, colvecs1, colvals1, mean2, rowvecs2, rowvals2, colvecs2, colvals2, noise1,
             damping1, noise2, damping2):
    cov1 = torch_cov(rowvecs1, rowvals1, colvecs1, colvals1, noise1, damping1)
    cov2 = torch_cov(rowvecs2, rowvals2, colvecs2, colvals2, noise2, damping2)
    r = (mean1 - mean2).T.reshape(-1)
    return 0.5 * (torch.trace(torch.linalg.solve(cov2, cov1)) + r @ torch.linalg.solve(cov2, r) - r.numel()
                  + torch.logdet(cov2) - torch.logdet(cov1))


def autograd(values):
    """The KLs of the fourteen ``values`` (item by item over the broadcast batch shape, a mean
    None being zero) and the gradients of their sum by PyTorch autograd, summed over the
    axes along which an argument is broadcast, as fastmvn's."""
    leaves = [None if v is None else torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=True)
              for v in values]
    n, p = leaves[2].shape[-1], leaves[4].shape[-1]
    batch = np.broadcast_shapes(*(tuple(v.shape[:v.dim() - dims]) for v, dims in zip(leaves, CORE_DIMS)
                                  if v is not None))
    zero = torch.zeros(n, p, dtype=torch.float64)
    items = []
    for index in np.ndindex(*batch):
        item = [None if v is None else torch.broadcast_to(v, batch + tuple(v.shape[v.dim() - dims:]))[index]
                for v, dims in zip(leaves, CORE_DIMS)]
        item[0], item[5] = (zero if item[0] is None else item[0]), (zero if item[5] is None else item[5])
        items.append(torch_kl(*item))
    torch.stack(items).sum().backward()
    return (np.array([item.item() for item in items]).reshape(batch),
            [None if v is None else v.grad.numpy() for v in leaves])


def check_against_autograd(values, rtol=1e-8):
    value, grads = call(fm.kl_eig_value_and_grad, values)
    np.testing.assert_array_equal(value, call(fm.kl_eig, values))  # the same code as kl_eig
    expected_value, expected = autograd(values)
    assert_close(value, expected_value, rtol=1e-10)
    assert len(grads) == 14
    for name, grad, want, given in zip(NAMES, grads, expected, values):
        if given is None:
            assert grad is None, name
        else:
            assert np.shape(grad) == np.shape(given), name
            assert_close(grad, want, rtol=rtol)
    return value, grads


# Against autograd -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind2", EIG_KINDS)
@pytest.mark.parametrize("kind1", EIG_KINDS)
@pytest.mark.parametrize("n, p", [(1, 1), (3, 2), (2, 3)])
def test_gradients_against_autograd(rng, n, p, kind1, kind2):
    """A batch of two posteriors (noise or damping an array over the batch, the noise and
    damping sides of rank one in U) against one shared prior (a Python float)."""
    side1, _ = eig_side(rng, n, p, kind1, (2,))
    side1 = side1[:5] + ({key: np.array([0.2, 1.5]) for key in side1[5]},)
    side2, _ = eig_side(rng, n, p, kind2)
    _, grads = check_against_autograd(arguments(side1, side2))
    assert all(np.shape(grad) == () for grad in grads[12:] if grad is not None)  # a Python float: summed


@pytest.mark.parametrize("kinds", [("damping", "noise"), ("noise", "damping"), ("normal", "damping"), ("damping", "normal")])
def test_arguments_broadcast_within_a_side(rng, kinds):
    """Eigenvectors shared by a batch of eigenvalues, a mean over a further axis, a prior of
    full rank whose row factor has a repeated eigenvalue: each gradient of its argument's shape."""
    n, p = 3, 2
    side1, _ = eig_side(rng, n, p, kinds[0], (4, 1))
    side2, _ = eig_side(rng, n, p, kinds[1], (3,))
    values = arguments(side1, side2)
    values[0] = rng.standard_normal((3, n, p))  # mean1 over the prior's axis
    values[1] = values[1][0, 0]  # rowvecs1 shared by the (4, 1) eigenvalues
    values[7] = np.broadcast_to([0.5, 0.5, 2.0], (3, n))  # a repeated eigenvalue of U₂
    for key in side1[5]:  # a noise or damping over the batch of eigenvalues
        values[NAMES.index(f"{key}1")] = np.array([[0.1], [0.3], [1.0], [2.0]])
    _, grads = check_against_autograd(values)
    assert grads[1].shape == (n, n) and grads[0].shape == (3, n, p)


def test_means_passed_as_none(rng):
    side1, _ = eig_side(rng, 3, 2, "noise", (2,))
    side2, _ = eig_side(rng, 3, 2, "damping")
    values = arguments(side1, side2)
    values[0] = values[5] = None
    check_against_autograd(values)


def test_gradients_vanish_between_equal_distributions(rng):
    for kind in EIG_KINDS:
        side, _ = eig_side(rng, 3, 2, kind, (3,))
        value, grads = call(fm.kl_eig_value_and_grad, arguments(side, side))
        np.testing.assert_allclose(value, 0.0, atol=1e-12)
        for grad in grads:
            if grad is not None:
                np.testing.assert_allclose(grad, 0.0, atol=1e-10)


# Finite differences -----------------------------------------------------------------------------


def dense_kl(values):
    """The KL of the fourteen ``values`` by :func:`fastmvn.reference.kl_full` on the dense
    covariances, with ``U = Q diag(λ) Qᵀ`` for any ``Q`` (orthonormal or not)."""
    covs = []
    for k in range(2):
        qu, lu, qv, lv = values[5 * k + 1:5 * k + 5]
        noise, damping = values[10 + 2 * k:12 + 2 * k]
        signal = np.kron((qv * lv) @ qv.T, (qu * lu) @ qu.T)
        eye = np.eye(signal.shape[0])
        covs.append(signal + noise * eye if noise is not None else np.linalg.inv(signal + damping * eye)
                    if damping is not None else signal)
    return reference.kl_full(values[0], covs[0], values[5], covs[1])


@pytest.mark.parametrize("kinds", [("damping", "noise"), ("noise", "normal"), ("normal", "damping")])
def test_gradients_match_central_differences(rng, kinds):
    """Each gradient against the central difference of the dense reference along a random
    direction (the eigenvectors as unconstrained matrices); each eigenvector gradient projected
    onto the tangent space against a difference of ``kl_eig`` along a rotation ``Q expm(tA)``."""
    n, p = 3, 2
    side1, _ = eig_side(rng, n, p, kinds[0])
    side2, _ = eig_side(rng, n, p, kinds[1])
    values = arguments(side1, side2)
    kl, grads = call(fm.kl_eig_value_and_grad, values)
    h = 1e-5
    rounding = 1e-12 * kl / h  # of the dense KL (inverses of matrices of condition up to 10³), over h
    for k, (value, grad) in enumerate(zip(values, grads)):
        if value is None:
            assert grad is None
            continue
        e = rng.standard_normal(np.shape(value))
        plus, minus = list(values), list(values)
        plus[k], minus[k] = value + h * e, value - h * e
        quotient = (dense_kl(plus) - dense_kl(minus)) / (2 * h)
        assert (grad * e).sum() == pytest.approx(quotient, rel=1e-6, abs=rounding), NAMES[k]
    for k in (1, 3, 6, 8):
        q, size = values[k], values[k].shape[-1]
        skew = rng.standard_normal((size, size))
        skew -= skew.T
        plus, minus = list(values), list(values)
        plus[k], minus[k] = q @ expm(h * skew), q @ expm(-h * skew)
        quotient = (call(fm.kl_eig, plus) - call(fm.kl_eig, minus)) / (2 * h)
        tangent = grads[k] - q @ (0.5 * (q.T @ grads[k] + grads[k].T @ q))  # G − Q sym(QᵀG)
        assert (tangent * (q @ skew)).sum() == pytest.approx(quotient, rel=1e-6, abs=rounding), NAMES[k]


# wrt, out, per item, dtypes and errors ----------------------------------------------------------


def prior_batch(rng):
    """Three damped posteriors against a shared noisy prior."""
    side1, _ = eig_side(rng, 3, 2, "damping", (3,))
    side2, _ = eig_side(rng, 3, 2, "noise")
    return arguments(side1, side2)


def test_wrt_computes_only_what_is_asked(rng):
    values = prior_batch(rng)
    value, every = call(fm.kl_eig_value_and_grad, values)
    assert [grad is None for grad in every[10:]] == [True, False, False, True]
    for asked in (("damping1",), ("noise2", "rowvals2", "mean1"), ("rowvecs1", "colvecs2"), "colvals1"):
        again, some = call(fm.kl_eig_value_and_grad, values, wrt=asked)
        np.testing.assert_array_equal(again, value)
        asked = [asked] if isinstance(asked, str) else asked
        for name, grad, full in zip(NAMES, some, every):
            if name in asked:
                np.testing.assert_array_equal(grad, full)
            else:
                assert grad is None, name
    with pytest.raises(ValueError, match="wrt names 'rowcov1'; the arguments are mean1, rowvecs1"):
        call(fm.kl_eig_value_and_grad, values, wrt="rowcov1")
    with pytest.raises(ValueError, match="wrt names noise1, which was passed as None"):
        call(fm.kl_eig_value_and_grad, values, wrt=("damping1", "noise1"))


def test_out_receives_the_results(rng):
    values = prior_batch(rng)
    value, grads = call(fm.kl_eig_value_and_grad, values)
    out = (np.full(3, np.nan), [None if g is None else np.full(np.shape(g), np.nan) for g in grads])
    out[1][2] = None  # allocated
    again = call(fm.kl_eig_value_and_grad, values, out=out)
    assert again[0] is out[0] and all(again[1][k] is out[1][k] for k in (0, 1, 11, 12))
    np.testing.assert_array_equal(out[0], value)
    for got, want in zip(again[1], grads):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match=r"out\[1\]\[10\] must be None: that argument was passed as None"):
        call(fm.kl_eig_value_and_grad, values, out=(None, [None] * 10 + [np.zeros(3)] + [None] * 3))
    with pytest.raises(ValueError, match=r"out\[1\] must hold 14 gradients"):
        call(fm.kl_eig_value_and_grad, values, out=(None, [None] * 10))
    with pytest.raises(ValueError, match=r"out\[1\]\[11\] must be None: the gradient of damping1 is not asked"):
        call(fm.kl_eig_value_and_grad, values, wrt="mean1", out=(None, [None] * 11 + [np.zeros(3)] + [None] * 2))


def test_per_item_gradients_sum_to_the_public_ones(rng):
    values = prior_batch(rng)
    value, grads = call(fm.kl_eig_value_and_grad, values)
    per_value, per_item = kron_grad._kl_eig_value_and_grad(values, "raise", reduce=False)
    np.testing.assert_array_equal(per_value, value)
    assert per_item[12].shape == (3,) and per_item[6].shape == (3, 3, 3)
    for grad, item, given in zip(grads, per_item, values):
        if given is not None:
            assert_close(reduce_to(item, np.shape(given)), grad, rtol=1e-14)


def test_float32(rng):
    values = prior_batch(rng)
    value, grads = call(fm.kl_eig_value_and_grad, values)
    single = [v if v is None or isinstance(v, float) else v.astype(np.float32) for v in values]
    assert isinstance(single[12], float)  # a Python float does not decide the dtype
    value32, grads32 = call(fm.kl_eig_value_and_grad, single)
    assert value32.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads32 if g is not None) and grads32[12].shape == ()
    np.testing.assert_allclose(value32, value, rtol=1e-4)
    for got, want in zip(grads32, grads):
        if want is not None:
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * np.abs(want).max())
    single[11] = np.asarray(single[11], np.float64)  # a float64 array decides
    assert call(fm.kl_eig_value_and_grad, single)[1][11].dtype == np.float64


def test_errors_nan_fails_only_the_failing_items(rng):
    values = prior_batch(rng)
    values[11] = np.array([0.1, -0.1, 0.2])  # damping1 of item 1 not positive
    value, grads = call(fm.kl_eig_value_and_grad, values, errors="nan")
    assert np.isnan(value[1]) and not np.isnan(value[[0, 2]]).any()
    for k in (0, 2):
        item = [v if v is None or np.ndim(v) == CORE_DIMS[j] else v[k] for j, v in enumerate(values)]
        want_value, want = call(fm.kl_eig_value_and_grad, item)
        assert value[k] == pytest.approx(want_value, rel=1e-12)
        for j in range(5):
            np.testing.assert_allclose(grads[j][k], want[j], rtol=1e-10, atol=1e-12 * np.abs(want[j]).max())
        assert grads[11][k] == pytest.approx(want[11], rel=1e-10)
    assert all(np.isnan(grad[1]).all() for grad in grads[:5] + (grads[11],))
    assert all(np.isnan(grad).all() for grad in grads[5:10] + (grads[12],))  # the shared prior's: summed over item 1


def test_errors_name_the_argument_and_batch_index(rng):
    values = prior_batch(rng)
    bad = list(values)
    bad[11] = np.array([0.1, 0.1, -0.1])
    with pytest.raises(ValueError, match="damping1 must be positive at batch index 2"):
        call(fm.kl_eig_value_and_grad, bad)
    bad = list(values)
    bad[2] = values[2].copy()
    bad[2][1, 0] = -1.0
    with pytest.raises(LinAlgError, match="rowvals1 has an eigenvalue that is not non-negative at batch index 1"):
        call(fm.kl_eig_value_and_grad, bad)
    bad = list(values)
    bad[3] = 2.0 * values[3]
    with pytest.raises(ValueError, match="colvecs1 is not orthonormal .* at batch index 0"):
        call(fm.kl_eig_value_and_grad, bad)
    side, _ = eig_side(rng, 3, 2, "normal", (3,))
    bad = values[:5] + list(side[:5]) + values[10:12] + [None, None]
    bad[7] = side[2].copy()
    bad[7][1, 2] = 0.0
    with pytest.raises(LinAlgError, match="rowvals2 has an eigenvalue that is not positive at batch index 1"):
        call(fm.kl_eig_value_and_grad, bad)
    with pytest.raises(ValueError, match="at most one of noise2= .* and damping2="):
        call(fm.kl_eig_value_and_grad, values[:13] + [1.0])
    with pytest.raises(ValueError, match="the two distributions must be of one"):
        other, _ = eig_side(rng, 2, 3, "noise")
        call(fm.kl_eig_value_and_grad, values[:5] + list(other[:5]) + [None, 0.1, 0.3, None])

