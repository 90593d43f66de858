"""Gradients of the Kronecker-sum log-density and KL (logpdf_kron_sum_value_and_grad,
kl_kron_sum_value_and_grad) against PyTorch autograd through the dense np×np covariance
V⊗U + B⊗A, and against central differences of fastmvn.reference."""

import math

import numpy as np
import pytest
from numpy.linalg import LinAlgError

import fastmvn as fm
from fastmvn import reference
from fastmvn._gradients import reduce_to
from fastmvn.distributions import kron_grad

from conftest import spd
from test_kron import low_rank, signal_and_noise

torch = pytest.importorskip("torch")

SHAPES = [(1, 1), (3, 2), (2, 4), (34, 2)]  # the last above the compiled kernels' side of the values
LOGPDF_NAMES = ["x", "mean", "rowcov", "colcov", "noise_rowcov", "noise_colcov"]
KL_NAMES = [f"{name}{k}" for k in "12" for name in LOGPDF_NAMES[1:]]


def assert_close(actual, expected, rtol=1e-8):
    """Entry-wise relative agreement, with an absolute floor of ``rtol`` times the largest entry."""
    expected = np.asarray(expected)
    assert np.shape(actual) == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * max(np.abs(expected).max(), 1e-300))


# The dense route in PyTorch ---------------------------------------------------------------------


def torch_vec(x):
    return x.T.reshape(-1)


def torch_noise(value, size):
    """A noise argument as its matrix: None the identity, a scalar σ² as σ² I."""
    eye = torch.eye(size, dtype=torch.float64)
    if value is None:
        return eye
    return value * eye if value.dim() == 0 else value


def torch_cov(rowcov, colcov, noise_rowcov, noise_colcov):
    n, p = rowcov.shape[-1], colcov.shape[-1]
    return torch.kron(colcov, rowcov) + torch.kron(torch_noise(noise_colcov, p), torch_noise(noise_rowcov, n))


def torch_logpdf(x, mean, rowcov, colcov, noise_rowcov, noise_colcov):
    cov = torch_cov(rowcov, colcov, noise_rowcov, noise_colcov)
    r = torch_vec(x if mean is None else x - mean)
    return -0.5 * (r.numel() * math.log(2 * math.pi) + torch.logdet(cov) + r @ torch.linalg.solve(cov, r))


def torch_kl(mean1, rowcov1, colcov1, noise_rowcov1, noise_colcov1, mean2, rowcov2, colcov2, noise_rowcov2,
             noise_colcov2):
    cov1 = torch_cov(rowcov1, colcov1, noise_rowcov1, noise_colcov1)
    cov2 = torch_cov(rowcov2, colcov2, noise_rowcov2, noise_colcov2)
    zero = torch.zeros(rowcov1.shape[-1], colcov1.shape[-1], dtype=torch.float64)
    r = torch_vec((zero if mean1 is None else mean1) - (zero if mean2 is None else mean2))
    return 0.5 * (torch.trace(torch.linalg.solve(cov2, cov1)) + r @ torch.linalg.solve(cov2, r) - r.numel()
                  + torch.logdet(cov2) - torch.logdet(cov1))


def autograd(function, values):
    """The values of ``function`` (one item at a time over the broadcast batch shape) and the
    gradients of their sum with respect to each value not None, by PyTorch autograd: an
    argument broadcast over the batch gets the sum over its items, as fastmvn's."""
    leaves = [None if v is None else torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=True)
              for v in values]
    cores = [None if v is None else v.shape[-2:] if v.dim() >= 2 else () for v in leaves]
    batch = np.broadcast_shapes(*(tuple(v.shape[:v.dim() - len(core)]) for v, core in zip(leaves, cores)
                                  if v is not None))
    items = []
    for index in np.ndindex(*batch):
        items.append(function(*(None if v is None else torch.broadcast_to(v, batch + tuple(core))[index]
                                for v, core in zip(leaves, cores))))
    torch.stack(items).sum().backward()
    return (np.array([item.item() for item in items]).reshape(batch),
            [None if v is None else v.grad.numpy() for v in leaves])


def check_against_autograd(ours, function, values):
    value, grads = ours(*values)
    expected_value, expected = autograd(function, values)
    assert_close(value, expected_value)
    assert len(grads) == len(values)
    for grad, want, given in zip(grads, expected, values):
        if given is None:
            assert grad is None
        else:
            assert_close(grad, want)
    return value, grads


def side(rng, n, p, kind, shape=()):
    """``(mean, rowcov, colcov, noise_rowcov, noise_colcov)`` of a kind of ``test_kron``."""
    return [rng.standard_normal(shape + (n, p)), *signal_and_noise(rng, n, p, kind, shape)]


# Against autograd -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["full", "isotropic", "low rank", "no signal"])
@pytest.mark.parametrize("n, p", SHAPES)
def test_logpdf_gradients_against_autograd(rng, n, p, kind):
    values = side(rng, n, p, kind, (2,))
    x = values[0] + rng.standard_normal((2, n, p))
    value, grads = check_against_autograd(fm.logpdf_kron_sum_value_and_grad, torch_logpdf, [x] + values)
    assert_close(value, fm.logpdf_kron_sum(x, *values), rtol=1e-12)
    assert np.ndim(grads[4]) == np.ndim(values[3])  # a scalar σ² gets a scalar derivative
    for grad in grads[2:]:
        if grad is not None and grad.ndim > 1:
            np.testing.assert_array_equal(grad, np.swapaxes(grad, -1, -2))


@pytest.mark.parametrize("kinds", [("full", "full"), ("low rank", "isotropic"), ("isotropic", "low rank"),
                                   ("no signal", "full")])
@pytest.mark.parametrize("n, p", SHAPES)
def test_kl_gradients_against_autograd(rng, n, p, kinds):
    values = side(rng, n, p, kinds[0], (2,)) + side(rng, n, p, kinds[1], (2,))
    value, _ = check_against_autograd(fm.kl_kron_sum_value_and_grad, torch_kl, values)
    assert_close(value, fm.kl_kron_sum(*values), rtol=1e-12)


def test_scalar_noises_on_both_sides_and_omitted_means(rng):
    n, p = 3, 2
    row, col = spd(rng, (), n), low_rank(rng, (), p, 1)
    check_against_autograd(fm.logpdf_kron_sum_value_and_grad, torch_logpdf,
                           [rng.standard_normal((4, n, p)), None, row, col, 0.4, 2.5])
    check_against_autograd(fm.kl_kron_sum_value_and_grad, torch_kl,
                           [None, row, col, 0.4, 2.5, rng.standard_normal((n, p)), spd(rng, (), n), spd(rng, (), p),
                            1.5, None])


def test_gradients_of_broadcast_arguments_are_summed(rng):
    n, p = 3, 2
    # one point set against a distribution shared by its items, and a batch of (2, 3) items
    x = rng.standard_normal((2, 3, n, p))
    values = [x, rng.standard_normal((3, n, p)), spd(rng, (2, 1), n), spd(rng, (), p), 0.3, spd(rng, (1, 1), p)]
    _, grads = check_against_autograd(fm.logpdf_kron_sum_value_and_grad, torch_logpdf, values)
    assert [np.shape(g) for g in grads] == [np.shape(v) for v in values]
    # a batch of posteriors against one shared prior
    prior = [np.zeros((n, p)), np.eye(n), np.eye(p), 1.0, None]
    values = side(rng, n, p, "low rank", (4,)) + prior
    _, grads = check_against_autograd(fm.kl_kron_sum_value_and_grad, torch_kl, values)
    assert [np.shape(g) for g in grads[5:9]] == [(n, p), (n, n), (p, p), ()]


def test_per_item_gradients_sum_to_the_public_ones(rng):
    """The private ``reduce=False`` path (for callers that weight the items, as fastmvn.torch)
    gives one gradient per item over the broadcast batch shape, a scalar σ² one derivative per
    item, whose sums over the broadcast axes are the public gradients."""
    n, p = 3, 2
    values = [rng.standard_normal((2, 3, n, p)), None, spd(rng, (2, 1), n), spd(rng, (), p), 0.3, spd(rng, (3,), p)]
    value, grads = fm.logpdf_kron_sum_value_and_grad(*values)
    per_value, per_item = kron_grad._logpdf_value_and_grad(values, "raise", reduce=False)
    np.testing.assert_array_equal(per_value, value)
    assert [None if g is None else g.shape for g in per_item] == [(2, 3, n, p), None, (2, 3, n, n), (2, 3, p, p),
                                                                  (2, 3), (2, 3, p, p)]
    for grad, item, given in zip(grads, per_item, values):
        if given is not None:
            assert_close(reduce_to(item, np.shape(given)), grad, rtol=1e-14)
    prior = [np.zeros((n, p)), np.eye(n), np.eye(p), 1.0, None]
    values = side(rng, n, p, "isotropic", (4,)) + prior
    _, grads = fm.kl_kron_sum_value_and_grad(*values, wrt=("rowcov1", "noise_rowcov1", "noise_rowcov2"))
    _, per_item = kron_grad._kl_value_and_grad(values, "raise", reduce=False,
                                               wrt=("rowcov1", "noise_rowcov1", "noise_rowcov2"))
    assert [None if g is None else g.shape for g in per_item] == [None, (4, n, n), None, (4,), None,
                                                                  None, None, None, (4,), None]
    for k in (1, 3, 8):
        assert_close(reduce_to(per_item[k], np.shape(values[k])), grads[k], rtol=1e-14)
    values[1][2] = -np.eye(n)
    _, per_item = kron_grad._kl_value_and_grad(values, "nan", reduce=False)
    assert np.isnan(per_item[8][2]) and np.isfinite(per_item[8][[0, 1, 3]]).all()


# Properties and finite differences --------------------------------------------------------------


def test_kl_gradients_vanish_between_equal_distributions(rng):
    values = side(rng, 3, 4, "low rank", (3,))
    value, grads = fm.kl_kron_sum_value_and_grad(*values, *values)
    np.testing.assert_allclose(value, 0.0, atol=1e-12)
    for grad in grads:
        np.testing.assert_allclose(grad, 0.0, atol=1e-10)


def symmetric_direction(rng, shape):
    e = rng.standard_normal(shape)
    return e + np.swapaxes(e, -1, -2) if len(shape) >= 2 and shape[-1] == shape[-2] else e


@pytest.mark.parametrize("function, dense, make", [
    (fm.logpdf_kron_sum_value_and_grad, reference.logpdf_kron_sum,
     lambda rng: [rng.standard_normal((2, 3, 2))] + side(rng, 3, 2, "low rank", (2,))),
    (fm.kl_kron_sum_value_and_grad, reference.kl_kron_sum,
     lambda rng: side(rng, 3, 2, "isotropic", (2,)) + side(rng, 3, 2, "full", (2,))),
])
def test_gradients_match_central_differences(rng, function, dense, make):
    """Each gradient against the central difference of the dense reference along a random
    direction (symmetric for a covariance, whose gradient is the symmetric ``G`` with
    ``df = Σ G ∘ dU``)."""
    values = make(rng)
    _, grads = function(*values)
    h = 1e-6
    for k, (value, grad) in enumerate(zip(values, grads)):
        if value is None:
            assert grad is None
            continue
        e = symmetric_direction(rng, np.shape(value))
        plus, minus = list(values), list(values)
        plus[k], minus[k] = value + h * e, value - h * e
        quotient = (dense(*plus).sum() - dense(*minus).sum()) / (2 * h)
        assert (grad * e).sum() == pytest.approx(quotient, rel=1e-6, abs=1e-8)


def test_low_rank_and_zero_signal_against_a_tiny_full_rank_one(rng):
    """A rank-deficient signal's gradient is the limit of those of full-rank signals."""
    n, p = 3, 2
    x, mean, row, col, noise_row, noise_col = [rng.standard_normal((n, p))] + side(rng, n, p, "low rank")
    _, grads = fm.logpdf_kron_sum_value_and_grad(x, mean, row, col, noise_row, noise_col)
    _, nearby = fm.logpdf_kron_sum_value_and_grad(x, mean, row + 1e-9 * np.eye(n), col, noise_row, noise_col)
    for grad, near in zip(grads, nearby):
        assert_close(grad, near, rtol=1e-6)


# wrt, out, dtypes and errors --------------------------------------------------------------------


def test_wrt_computes_only_what_is_asked(rng):
    values = side(rng, 3, 2, "full", (2,)) + side(rng, 3, 2, "isotropic", (2,))
    value, every = fm.kl_kron_sum_value_and_grad(*values)
    assert every[9] is None  # noise_colcov2 was passed as None
    asked = ("rowcov1", "noise_rowcov2", "mean2")
    again, some = fm.kl_kron_sum_value_and_grad(*values, wrt=asked)
    np.testing.assert_array_equal(again, value)
    for name, grad, full in zip(KL_NAMES, some, every):
        if name in asked:
            np.testing.assert_array_equal(grad, full)
        else:
            assert grad is None
    x = rng.standard_normal((2, 3, 2))
    _, only = fm.logpdf_kron_sum_value_and_grad(x, *values[:5], wrt="x")
    assert only[1:] == (None,) * 5
    _, full = fm.logpdf_kron_sum_value_and_grad(x, *values[:5])
    np.testing.assert_array_equal(only[0], full[0])
    with pytest.raises(ValueError, match="wrt names 'rowcov'; the arguments are mean1"):
        fm.kl_kron_sum_value_and_grad(*values, wrt="rowcov")
    with pytest.raises(ValueError, match="wrt names noise_colcov2, which was passed as None"):
        fm.kl_kron_sum_value_and_grad(*values, wrt=["noise_colcov2"])
    with pytest.raises(ValueError, match="wrt names mean, which was passed as None"):
        fm.logpdf_kron_sum_value_and_grad(x, None, *values[1:5], wrt="mean")


def test_out_receives_the_results(rng):
    values = [rng.standard_normal((4, 3, 2))] + side(rng, 3, 2, "isotropic", (4,))
    value, grads = fm.logpdf_kron_sum_value_and_grad(*values)
    out = (np.full(4, np.nan), [np.full(np.shape(g), np.nan) if g is not None else None for g in grads])
    out[1][1] = None  # allocated
    again = fm.logpdf_kron_sum_value_and_grad(*values, out=out)
    assert again[0] is out[0] and again[1][0] is out[1][0] and again[1][4] is out[1][4]
    np.testing.assert_array_equal(out[0], value)
    for got, want in zip(again[1], grads):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match=r"out\[1\]\[5\] must be None: that argument was passed as None"):
        fm.logpdf_kron_sum_value_and_grad(*values, out=(None, [None] * 5 + [np.zeros((2, 2))]))
    with pytest.raises(ValueError, match=r"out\[1\] must hold 10 gradients"):
        fm.kl_kron_sum_value_and_grad(*values[1:], *values[1:], out=(None, [None] * 6))


def test_float32(rng):
    values = [rng.standard_normal((3, 3, 2))] + side(rng, 3, 2, "full", (3,))
    value, grads = fm.logpdf_kron_sum_value_and_grad(*values)
    single, single_grads = fm.logpdf_kron_sum_value_and_grad(*(v.astype(np.float32) for v in values))
    assert single.dtype == np.float32 and all(g.dtype == np.float32 for g in single_grads)
    np.testing.assert_allclose(single, value, rtol=1e-4)
    for got, want in zip(single_grads, grads):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * np.abs(want).max())
    # a Python float σ² does not decide the dtype; its derivative is float32 as well
    _, grads = fm.kl_kron_sum_value_and_grad(*(v.astype(np.float32) for v in values[1:4]), 0.5, None,
                                             *(v.astype(np.float32) for v in values[1:6]))
    assert grads[3].dtype == np.float32 and grads[3].shape == ()


def bad_batch(rng):
    """A batch of three KL pairs whose item 1 has a second row noise that is not positive definite."""
    values = side(rng, 3, 2, "full", (3,)) + side(rng, 3, 2, "full", (3,))
    values[8] = values[8].copy()
    values[8][1] = -np.eye(3)
    return values


def test_errors_nan_fails_only_the_failing_items(rng):
    values = bad_batch(rng)
    value, grads = fm.kl_kron_sum_value_and_grad(*values, errors="nan")
    assert np.isnan(value[1]) and not np.isnan(value[[0, 2]]).any()
    for k in (0, 2):
        item = [v[k] for v in values]
        want_value, want = fm.kl_kron_sum_value_and_grad(*item)
        assert value[k] == pytest.approx(want_value, rel=1e-12)
        for grad, expected in zip(grads, want):
            np.testing.assert_allclose(grad[k], expected, rtol=1e-10, atol=1e-12 * np.abs(expected).max())
    assert all(np.isnan(grad[1]).all() for grad in grads)
    # a shared argument's gradient sums over the failing item: NaN
    shared = values[:6] + [values[6][0]] + values[7:]
    _, grads = fm.kl_kron_sum_value_and_grad(*shared, errors="nan", wrt=("rowcov2", "mean1"))
    assert np.isnan(grads[6]).all() and not np.isnan(grads[0][[0, 2]]).any()
    x = np.full((3, 3, 2), 0.5)
    x[2, 0, 1] = np.nan
    value, grads = fm.logpdf_kron_sum_value_and_grad(x, *values[:5], errors="nan")
    assert np.isnan(value[2]) and np.isnan(grads[0][2]).all() and not np.isnan(grads[0][:2]).any()
    # a scalar noise that is not positive fails every item, and its derivative is NaN
    value, grads = fm.logpdf_kron_sum_value_and_grad(x, None, *values[1:3], 0.0, errors="nan")
    assert np.isnan(value).all() and np.isnan(grads[4]) and grads[4].shape == ()


def test_errors_name_the_argument_and_batch_index(rng):
    with pytest.raises(LinAlgError, match="noise_rowcov2 is not positive definite .* at batch index 1"):
        fm.kl_kron_sum_value_and_grad(*bad_batch(rng))
    values = side(rng, 3, 2, "full", (2, 2))
    values[2] = values[2].copy()
    values[2][1, 0] = -values[2][1, 0]
    with pytest.raises(LinAlgError, match=r"colcov is not positive semi-definite at batch index \(1, 0\)"):
        fm.logpdf_kron_sum_value_and_grad(np.zeros((3, 2)), *values)
    x = np.zeros((2, 2, 3, 2))
    x[0, 1, 2, 0] = np.inf
    with pytest.raises(ValueError, match=r"x contains NaN or infinity at batch index \(0, 1\)"):
        fm.logpdf_kron_sum_value_and_grad(x, *values)
    with pytest.raises(ValueError, match="noise_rowcov1 contains NaN or infinity"):
        fm.kl_kron_sum_value_and_grad(None, np.eye(2), np.eye(2), np.nan, None, None, np.eye(2), np.eye(2), 1.0,
                                      None)
    with pytest.raises(ValueError, match="the two distributions must be of one"):
        fm.kl_kron_sum_value_and_grad(None, np.eye(2), np.eye(2), 1.0, None, None, np.eye(3), np.eye(2), 1.0, None)


# The precision form ---------------------------------------------------------------------------

PREC_NAMES = ["x", "mean", "rowprec", "colprec", "damping"]


def torch_logpdf_prec(x, mean, rowprec, colprec, damping):
    """The dense route: ``Λ = V⊗U + δI``, ``−½[np log 2π − log|Λ| + rᵀ Λ r]``."""
    size = rowprec.shape[-1] * colprec.shape[-1]
    precision = torch.kron(colprec, rowprec) + damping * torch.eye(size, dtype=torch.float64)
    r = torch_vec(x if mean is None else x - mean)
    return -0.5 * (size * math.log(2 * math.pi) - torch.logdet(precision) + r @ precision @ r)


def precision_values(rng, n, p, shape=(2,), rank=None):
    """``(x, mean, rowprec, colprec, damping)``: positive semi-definite factors (``U`` of rank
    ``rank``, full by default), a damping per item."""
    g = rng.standard_normal(shape + (n, n if rank is None else rank))
    rowprec = g @ np.swapaxes(g, -1, -2) / n
    return [rng.standard_normal(shape + (n, p)), rng.standard_normal(shape + (n, p)), rowprec,
            spd(rng, shape, p), rng.uniform(0.1, 2.0, shape)]


@pytest.mark.parametrize("rank", [None, 1])
@pytest.mark.parametrize("n, p", SHAPES)
def test_precision_logpdf_gradients_against_autograd(rng, n, p, rank):
    values = precision_values(rng, n, p, rank=None if rank is None else min(rank, n))
    value, grads = check_against_autograd(fm.logpdf_kron_prec_value_and_grad, torch_logpdf_prec, values)
    expected = fm.KroneckerSumNormal.from_precision(*values[1:]).logpdf(values[0])
    assert_close(value, expected, rtol=1e-12)
    for grad in grads[2:4]:
        np.testing.assert_array_equal(grad, np.swapaxes(grad, -1, -2))


def test_precision_logpdf_broadcasts_sums_and_takes_scalars(rng):
    """A shared factor and a scalar damping get the sums of the items' gradients; no mean is
    zero; ``wrt`` and ``reduce=False`` as for the other functions."""
    x, _, rowprec, colprec, _ = precision_values(rng, 3, 2, (4,))
    values = [x, None, rowprec[0], colprec, 0.5]
    value, grads = check_against_autograd(fm.logpdf_kron_prec_value_and_grad, torch_logpdf_prec, values)
    assert grads[1] is None and grads[2].shape == (3, 3) and np.ndim(grads[4]) == 0
    _, per_item = kron_grad._logpdf_prec_value_and_grad(values, "raise", reduce=False)
    assert per_item[2].shape == (4, 3, 3) and per_item[4].shape == (4,)
    assert_close(per_item[2].sum(axis=0), grads[2], rtol=1e-12)
    _, only = fm.logpdf_kron_prec_value_and_grad(*values, wrt="damping")
    assert [g is None for g in only] == [True, True, True, True, False]
    assert_close(only[4], grads[4], rtol=1e-14)


def test_precision_logpdf_errors(rng):
    values = precision_values(rng, 3, 2, (3,))
    values[3] = values[3].copy()
    values[3][1] = -values[3][1]
    with pytest.raises(LinAlgError, match=r"^colprec is not positive semi-definite at batch index 1$"):
        fm.logpdf_kron_prec_value_and_grad(*values)
    value, grads = fm.logpdf_kron_prec_value_and_grad(*values, errors="nan")
    assert np.isnan(value[1]) and np.isfinite(np.delete(value, 1)).all()
    assert np.isnan(grads[2][1]).all() and np.isfinite(np.delete(grads[2], 1, axis=0)).all()
    values = precision_values(rng, 3, 2, (3,))
    values[4] = np.array([1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match=r"^damping must be positive at batch index 1$"):
        fm.logpdf_kron_prec_value_and_grad(*values)
    values[4] = np.ones(3)
    values[0] = values[0].copy()
    values[0][2, 0, 1] = np.nan
    with pytest.raises(ValueError, match=r"^x contains NaN or infinity at batch index 2$"):
        fm.logpdf_kron_prec_value_and_grad(*values)
