"""fastmvn.torch.logpdf_kron_sum, kl_kron_sum and logpdf_kron_prec: gradcheck, agreement with
autograd through the dense np×np covariance V⊗U + B⊗A (or precision V⊗U + δI), weighted backward
passes, which gradients are computed, errors and dtypes."""

import numpy as np
import pytest
from numpy.linalg import LinAlgError

torch = pytest.importorskip("torch")

import fastmvn as fm  # noqa: E402
import fastmvn.torch as fmt  # noqa: E402
from fastmvn.distributions import kron_grad  # noqa: E402

from conftest import spd  # noqa: E402
from test_kron import low_rank  # noqa: E402
from test_kron_grad import assert_close, precision_values, torch_kl, torch_logpdf, torch_logpdf_prec  # noqa: E402

N, P = 3, 2


def leaves(values, requires=None):
    """Tensors of the arrays in ``values`` (float64, each a new leaf; Python numbers and None as
    they are), requiring a gradient where ``requires`` says (by default every tensor)."""
    requires = [True] * len(values) if requires is None else requires
    return [torch.tensor(v, dtype=torch.float64, requires_grad=r) if isinstance(v, np.ndarray) else v
            for v, r in zip(values, requires)]


def symmetric(x):
    return None if x is None or not isinstance(x, torch.Tensor) or x.dim() < 2 else 0.5 * (x + x.mT)


def symmetrised(function, covariances):
    """``function`` with the arguments at the positions ``covariances`` read through ``(X + Xᵀ)/2``:
    gradcheck perturbs one entry at a time, and a covariance's gradient is the symmetric one."""
    def wrapped(*args):
        return function(*(symmetric(a) if k in covariances and symmetric(a) is not None else a
                          for k, a in enumerate(args)))
    return wrapped


def per_item(dense, values):
    """``dense`` (one item of the test_kron_grad dense routes) of every item over the broadcast
    batch shape, stacked; autograd reaches each leaf through the broadcasts, so that a weighted
    sum of the result weights each item's gradient by its own weight."""
    values = [torch.tensor(v, dtype=torch.float64) if isinstance(v, float) else v for v in values]
    cores = [None if v is None else v.shape[-2:] if v.dim() >= 2 else () for v in values]
    batch = torch.broadcast_shapes(*(v.shape[:v.dim() - len(core)] for v, core in zip(values, cores)
                                     if v is not None))
    items = [dense(*(None if v is None else torch.broadcast_to(v, batch + core)[index]
                     for v, core in zip(values, cores))) for index in np.ndindex(*batch)]
    return torch.stack(items).reshape(batch)


def logpdf_values(rng, batch=(2,)):
    """``(x, mean, rowcov, colcov, noise_rowcov, noise_colcov)`` with a column covariance and a
    column noise shared by the items (broadcast)."""
    mean = rng.standard_normal(batch + (N, P))
    return [mean + rng.standard_normal(batch + (N, P)), mean, spd(rng, batch, N), spd(rng, (), P),
            spd(rng, batch, N), spd(rng, (), P)]


def kl_values(rng, batch=(2,)):
    """A batch of posteriors, with an isotropic noise σ², against one shared prior (broadcast)."""
    posterior = [rng.standard_normal(batch + (N, P)), spd(rng, batch, N), spd(rng, batch, P), np.array(0.4), None]
    prior = [rng.standard_normal((N, P)), spd(rng, (), N), spd(rng, (), P), spd(rng, (), N), spd(rng, (), P)]
    return posterior + prior


LOGPDF_COVARIANCES = {2, 3, 4, 5}
KL_COVARIANCES = {1, 2, 3, 4, 6, 7, 8, 9}


# gradcheck ---------------------------------------------------------------------------------------


def test_gradcheck_logpdf(rng):
    values = leaves(logpdf_values(rng))
    assert torch.autograd.gradcheck(symmetrised(fmt.logpdf_kron_sum, LOGPDF_COVARIANCES), values)
    # scalar noises: a 0-d tensor that requires a gradient, a fixed Python number; a zero mean
    scalar = values[:1] + [None] + values[2:4] + leaves([np.array(0.3)]) + [1.7]
    assert torch.autograd.gradcheck(symmetrised(fmt.logpdf_kron_sum, LOGPDF_COVARIANCES), scalar)


def test_gradcheck_logpdf_low_rank_signal(rng):
    # U = G Gᵀ of rank 1 and V = H Hᵀ of rank 1, as a model would parametrise them: every
    # perturbation stays positive semi-definite
    x, mean, _, _, noise_row, _ = logpdf_values(rng)
    row_factor, col_factor = leaves([rng.standard_normal((2, N, 1)), rng.standard_normal((P, 1))])

    def function(x, mean, row_factor, col_factor, noise_row, noise):
        return fmt.logpdf_kron_sum(x, mean, row_factor @ row_factor.mT, col_factor @ col_factor.mT,
                                   symmetric(noise_row), noise)

    assert torch.autograd.gradcheck(function, leaves([x, mean]) + [row_factor, col_factor]
                                    + leaves([noise_row, np.array(0.6)]))


def test_gradcheck_kl(rng):
    values = leaves(kl_values(rng))
    assert torch.autograd.gradcheck(symmetrised(fmt.kl_kron_sum, KL_COVARIANCES), values)
    fixed_prior = values[:5] + leaves(kl_values(rng)[5:], [False] * 5)
    assert torch.autograd.gradcheck(symmetrised(fmt.kl_kron_sum, KL_COVARIANCES), fixed_prior)


def test_gradcheck_kl_low_rank_signals(rng):
    mean1, _, colcov1, _, _, mean2, _, colcov2, noise_row2, _ = kl_values(rng)
    factor1, factor2 = leaves([rng.standard_normal((2, N, 1)), rng.standard_normal((N, 2))])
    noises = leaves([np.array(0.5), np.array(1.3)])

    def function(mean1, factor1, colcov1, noise1, mean2, factor2, colcov2, noise_row2, noise_col2):
        return fmt.kl_kron_sum(mean1, factor1 @ factor1.mT, symmetric(colcov1), noise1, None,
                               mean2, factor2 @ factor2.mT, symmetric(colcov2), symmetric(noise_row2), noise_col2)

    assert torch.autograd.gradcheck(function, [*leaves([mean1]), factor1, *leaves([colcov1]), noises[0],
                                               *leaves([mean2]), factor2, *leaves([colcov2, noise_row2]), noises[1]])


# Against autograd through the dense covariance, with weighted items ------------------------------


def against_dense(ours, dense, values, requires=None, weights=None):
    """``ours`` against ``dense`` item by item: the values, and the gradients of
    ``(value * weights).sum()`` at 1e-8; tensors that require no gradient get none."""
    mine, theirs = leaves(values, requires), leaves(values, requires)
    value, expected = ours(*mine), per_item(dense, theirs)
    assert value.shape == expected.shape and value.dtype == torch.float64
    assert_close(value.detach().numpy(), expected.detach().numpy())
    weights = torch.linspace(-1.0, 2.0, value.numel(), dtype=torch.float64).reshape(value.shape) \
        if weights is None else weights
    (value * weights).sum().backward()
    (expected * weights).sum().backward()
    for k, (a, b) in enumerate(zip(mine, theirs)):
        if isinstance(a, torch.Tensor) and a.requires_grad:
            assert a.grad.shape == a.shape, k
            assert_close(a.grad.numpy(), b.grad.numpy())
        elif isinstance(a, torch.Tensor):
            assert a.grad is None, k
    return mine


def test_logpdf_against_the_dense_route(rng):
    against_dense(fmt.logpdf_kron_sum, torch_logpdf, logpdf_values(rng, (2, 2)))
    x, mean, rowcov, colcov, _, _ = logpdf_values(rng, (4,))
    # points against one shared distribution with a low-rank signal and a scalar noise
    against_dense(fmt.logpdf_kron_sum, torch_logpdf,
                  [x, mean[0], low_rank(rng, (), N, 1), colcov, np.array(0.3), 2.0])
    against_dense(fmt.logpdf_kron_sum, torch_logpdf, [x, None, rowcov, colcov, np.array(0.3), np.array(0.8)],
                  requires=[False, None, True, False, True, False])


def test_kl_against_the_dense_route(rng):
    against_dense(fmt.kl_kron_sum, torch_kl, kl_values(rng, (3,)))
    mean1, _, colcov1, noise1, _, mean2, rowcov2, colcov2, noise_row2, noise_col2 = kl_values(rng, (3,))
    values = [mean1, low_rank(rng, (3,), N, 1), colcov1, noise1, np.array(1.5),
              mean2, rowcov2, low_rank(rng, (), P, 1), 0.7, None]
    against_dense(fmt.kl_kron_sum, torch_kl, values)
    against_dense(fmt.kl_kron_sum, torch_kl, values, requires=[True] * 5 + [False] * 5)


def test_weighted_backward_of_a_broadcast_argument(rng):
    """The gradient of an argument shared by the items is the sum of each item's gradient times
    that item's weight, not the sum of the gradients times a weight: the per-item gradients are
    kept until the backward pass."""
    values = kl_values(rng, (4,))
    weights = torch.tensor([3.0, -1.0, 0.0, 0.5], dtype=torch.float64)
    mine = against_dense(fmt.kl_kron_sum, torch_kl, values, weights=weights)
    _, summed = fm.kl_kron_sum_value_and_grad(*values)
    for k in (3, 5, 6, 7, 8, 9):                # σ²₁ and the prior, shared by the four items
        assert not np.allclose(mine[k].grad.numpy(), weights.mean().item() * summed[k], rtol=1e-3)
    _, per_item_grads = kron_grad._kl_value_and_grad(values, "raise", reduce=False)
    for k in (3, 6):
        assert per_item_grads[k].shape == (4,) + np.shape(values[k])
        np.testing.assert_allclose(mine[k].grad.numpy(), np.tensordot(weights.numpy(), per_item_grads[k], 1),
                                   rtol=1e-12)


# Which gradients, and when ----------------------------------------------------------------------


@pytest.fixture
def wanted(monkeypatch):
    """The flags of the gradients that each call of the closed forms was asked for."""
    calls = []
    for name in ("_logpdf_grads", "_kl_grads"):
        original = getattr(kron_grad, name)

        def recording(*args, original=original):
            calls.append(list(args[-1]))
            return original(*args)

        monkeypatch.setattr(kron_grad, name, recording)
    return calls


def test_only_the_gradients_asked_for_are_computed(rng, wanted):
    values = kl_values(rng)
    requires = [True, True, False, True, None, False, False, False, False, False]
    tensors = leaves(values, requires)
    fmt.kl_kron_sum(*tensors).sum().backward()
    assert wanted == [[True, True, False, True, False, False, False, False, False, False]]
    assert [t.grad is None for t in tensors if t is not None] == [False, False, True, False, True, True, True, True,
                                                                  True]
    x = leaves(logpdf_values(rng), [False, False, False, True, False, False])
    fmt.logpdf_kron_sum(*x).sum().backward()
    assert wanted[-1] == [False, False, False, True, False, False]
    fmt.logpdf_kron_sum(*leaves(logpdf_values(rng), [False] * 6))     # no gradient: the values alone
    with torch.no_grad():
        fmt.logpdf_kron_sum(*leaves(logpdf_values(rng)))
    assert len(wanted) == 2


def test_values_without_gradients_are_the_cpu_functions(rng):
    values = logpdf_values(rng)
    torch.testing.assert_close(fmt.logpdf_kron_sum(*leaves(values, [False] * 6)),
                               torch.from_numpy(fm.logpdf_kron_sum(*values)), rtol=0, atol=0)
    value = fmt.logpdf_kron_sum(*leaves(values))
    assert value.grad_fn is not None
    assert_close(value.detach().numpy(), fm.logpdf_kron_sum(*values), rtol=1e-12)
    pair = kl_values(rng)
    torch.testing.assert_close(fmt.kl_kron_sum(*leaves(pair, [False] * 10)),
                               torch.from_numpy(fm.kl_kron_sum(*pair)), rtol=0, atol=0)
    unbatched = fmt.kl_kron_sum(*leaves([v[0] if k < 3 else v for k, v in enumerate(pair)]))   # the batched three
    assert unbatched.shape == () and unbatched.grad_fn is not None


def test_backward_retained_and_double_backward(rng):
    tensors = leaves(kl_values(rng))
    loss = fmt.kl_kron_sum(*tensors).sum()
    loss.backward(retain_graph=True)
    once = [None if t is None else t.grad.clone() for t in tensors]
    loss.backward()
    for t, first in zip(tensors, once):
        if t is not None:
            torch.testing.assert_close(t.grad, 2 * first, rtol=1e-14, atol=0)
    tensors = leaves(logpdf_values(rng))
    loss = fmt.logpdf_kron_sum(*tensors).square().sum()
    with pytest.raises(RuntimeError, match="second derivatives are not implemented; .* through logpdf_kron_sum$"):
        torch.autograd.grad(loss, tensors[2], create_graph=True)


# Errors and dtypes ------------------------------------------------------------------------------


@pytest.mark.parametrize("requires_grad", [False, True])
def test_errors_name_argument_and_index(rng, requires_grad):
    values = logpdf_values(rng, (3,))
    values[4][1] = -np.eye(N)
    tensors = leaves(values, [requires_grad] * 6)
    with pytest.raises(LinAlgError, match=r"^noise_rowcov is not positive definite \(Cholesky failed\) at batch "
                                          r"index 1$"):
        fmt.logpdf_kron_sum(*tensors)
    value = fmt.logpdf_kron_sum(*tensors, errors="nan")
    assert torch.isnan(value[1]) and torch.isfinite(value[[0, 2]]).all()
    if requires_grad:
        value.sum().backward()
        assert torch.isnan(tensors[0].grad[1]).all() and torch.isfinite(tensors[0].grad[[0, 2]]).all()
        assert torch.isnan(tensors[3].grad).all()       # shared by the items: summed over the failing one
    pair = kl_values(rng, (2,))
    pair[1][1, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"^rowcov1 contains NaN or infinity at batch index 1$"):
        fmt.kl_kron_sum(*leaves(pair, [requires_grad] * 10))


def test_bad_arguments_raise_naming_them(rng):
    values = leaves(logpdf_values(rng))
    with pytest.raises(TypeError, match=r"logpdf_kron_sum takes tensors .*; mean is a ndarray"):
        fmt.logpdf_kron_sum(values[0], values[1].detach().numpy(), *values[2:])
    with pytest.raises(TypeError, match=r"rowcov is a float"):
        fmt.logpdf_kron_sum(values[0], values[1], 1.0, *values[3:])
    with pytest.raises(TypeError, match=r"rowcov2 is complex \(torch.complex128\)"):
        pair = leaves(kl_values(rng))
        pair[6] = pair[6] + 1j
        fmt.kl_kron_sum(*pair)
    with pytest.raises(RuntimeError, match=r"kl_kron_sum runs on the CPU; colcov1 is on meta"):
        pair = leaves(kl_values(rng))
        pair[2] = pair[2].to("meta")
        fmt.kl_kron_sum(*pair)
    with pytest.raises(ValueError, match="errors"):
        fmt.logpdf_kron_sum(*values, errors="ignore")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="PyTorch has no CUDA device here")
def test_cuda_tensors_raise():
    eye = torch.eye(2, device="cuda")
    with pytest.raises(RuntimeError, match=r"runs on the CPU; rowcov is on cuda"):
        fmt.logpdf_kron_sum(torch.zeros(2, 2), None, eye, torch.eye(2), 1.0)


def float32_against_numpy(function, value_and_grad, values):
    """``function`` of float32 tensors of the arrays of ``values`` (its numbers kept): a float32
    value and float32 gradients, those of ``value_and_grad`` of ``values`` to float32's
    precision. Returns the tensors and the gradients of ``value_and_grad``."""
    single = [torch.tensor(v, dtype=torch.float32, requires_grad=True) if isinstance(v, np.ndarray) else v
              for v in values]
    value = function(*single)
    value.sum().backward()
    assert value.dtype == torch.float32
    assert all(t.grad.dtype == torch.float32 for t in single if isinstance(t, torch.Tensor))
    expected, grads = value_and_grad(*values)
    np.testing.assert_allclose(value.detach().numpy(), expected, rtol=1e-4)
    for t, g in zip(single, grads):
        if isinstance(t, torch.Tensor):
            np.testing.assert_allclose(t.grad.numpy(), g, rtol=1e-3, atol=1e-4 * np.abs(g).max())
    return single, grads


def test_float32(rng):
    values = kl_values(rng)
    values[3] = 0.4                          # a Python number does not decide the dtype
    single, _ = float32_against_numpy(fmt.kl_kron_sum, fm.kl_kron_sum_value_and_grad, values)
    noise = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)   # a float64 tensor does
    mixed = fmt.kl_kron_sum(*single[:3], noise, *single[4:])
    mixed.sum().backward()
    assert mixed.dtype == torch.float64 and noise.grad.dtype == torch.float64 and noise.grad.shape == ()


# The precision form V⊗U + δI ---------------------------------------------------------------------

PREC_FACTORS = {2, 3}


def test_gradcheck_logpdf_prec(rng):
    values = leaves(precision_values(rng, N, P))
    assert torch.autograd.gradcheck(symmetrised(fmt.logpdf_kron_prec, PREC_FACTORS), values)
    # a shared column factor, a 0-d damping that requires a gradient, then a fixed Python number
    x, _, rowprec, colprec, _ = precision_values(rng, N, P)
    shared = leaves([x, None, rowprec, colprec[0], np.array(0.4)])
    assert torch.autograd.gradcheck(symmetrised(fmt.logpdf_kron_prec, PREC_FACTORS), shared)
    assert torch.autograd.gradcheck(symmetrised(fmt.logpdf_kron_prec, PREC_FACTORS), shared[:4] + [0.4])


def test_logpdf_prec_against_the_dense_route(rng):
    against_dense(fmt.logpdf_kron_prec, torch_logpdf_prec, precision_values(rng, N, P, (3,)))
    # points against one distribution with a singular row factor and a scalar damping, shared
    x, mean, rowprec, colprec, _ = precision_values(rng, N, P, (4,), rank=1)
    against_dense(fmt.logpdf_kron_prec, torch_logpdf_prec, [x, mean[0], rowprec[0], colprec[0], np.array(0.3)])
    against_dense(fmt.logpdf_kron_prec, torch_logpdf_prec, [x, None, rowprec, colprec[0], 0.3],
                  requires=[False, None, True, True, None])


def test_logpdf_prec_is_the_closed_forms(rng):
    """The value is fastmvn's (``KroneckerSumNormal.from_precision``'s log-density) and the
    gradients, weighted by ones, are ``logpdf_kron_prec_value_and_grad``'s, a shared argument's
    summed over the items."""
    x, mean, rowprec, colprec, damping = precision_values(rng, N, P, (3,))
    values = [x, mean, rowprec, colprec[0], np.array(damping[0])]
    expected = fm.KroneckerSumNormal.from_precision(*values[1:]).logpdf(x)
    torch.testing.assert_close(fmt.logpdf_kron_prec(*leaves(values, [False] * 5)), torch.from_numpy(expected),
                               rtol=1e-13, atol=0)
    tensors = leaves(values)
    value = fmt.logpdf_kron_prec(*tensors)
    value.sum().backward()
    closed_value, closed = fm.logpdf_kron_prec_value_and_grad(*values)
    assert_close(value.detach().numpy(), closed_value, rtol=1e-13)
    for tensor, grad in zip(tensors, closed):
        assert tensor.grad.shape == tensor.shape
        assert_close(tensor.grad.numpy(), grad, rtol=1e-12)


def test_logpdf_prec_computes_the_gradients_asked_for(rng, monkeypatch):
    calls = []
    original = kron_grad._logpdf_prec_grads

    def recording(*args):
        calls.append(list(args[-1]))
        return original(*args)

    monkeypatch.setattr(kron_grad, "_logpdf_prec_grads", recording)
    tensors = leaves(precision_values(rng, N, P), [False, False, True, False, True])
    fmt.logpdf_kron_prec(*tensors).sum().backward()
    assert calls == [[False, False, True, False, True]]
    assert [t.grad is None for t in tensors] == [True, True, False, True, False]
    fmt.logpdf_kron_prec(*leaves(precision_values(rng, N, P), [False] * 5))   # the value alone
    assert calls[1:] == [[False] * 5]


@pytest.mark.parametrize("requires_grad", [False, True])
def test_logpdf_prec_errors_name_argument_and_index(rng, requires_grad):
    values = precision_values(rng, N, P, (3,))
    values[3][1] = -values[3][1]
    tensors = leaves(values, [requires_grad] * 5)
    with pytest.raises(LinAlgError, match=r"^colprec is not positive semi-definite at batch index 1$"):
        fmt.logpdf_kron_prec(*tensors)
    value = fmt.logpdf_kron_prec(*tensors, errors="nan")
    assert torch.isnan(value[1]) and torch.isfinite(value[[0, 2]]).all()
    if requires_grad:
        value.sum().backward()
        assert torch.isnan(tensors[2].grad[1]).all() and torch.isfinite(tensors[2].grad[[0, 2]]).all()
    values = precision_values(rng, N, P, (3,))
    values[4][2] = 0.0
    with pytest.raises(ValueError, match=r"^damping must be positive at batch index 2$"):
        fmt.logpdf_kron_prec(*leaves(values, [requires_grad] * 5))
    with pytest.raises(ValueError, match=r"^damping must be positive"):          # every item
        fmt.logpdf_kron_prec(*leaves(values[:4], [requires_grad] * 4), -1.0)


def test_logpdf_prec_bad_arguments_raise_naming_them(rng):
    values = leaves(precision_values(rng, N, P))
    with pytest.raises(TypeError, match=r"logpdf_kron_prec takes tensors \(or None, or a Python number for a scalar "
                                        r"noise or damping\); damping is a ndarray"):
        fmt.logpdf_kron_prec(*values[:4], values[4].detach().numpy())
    with pytest.raises(TypeError, match=r"rowprec is a float"):
        fmt.logpdf_kron_prec(values[0], values[1], 1.0, *values[3:])
    with pytest.raises(TypeError, match=r"colprec is complex \(torch.complex128\)"):
        fmt.logpdf_kron_prec(*values[:3], values[3] + 1j, values[4])
    with pytest.raises(RuntimeError, match=r"logpdf_kron_prec runs on the CPU; rowprec is on meta"):
        fmt.logpdf_kron_prec(values[0], values[1], values[2].to("meta"), *values[3:])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="PyTorch has no CUDA device here")
def test_logpdf_prec_cuda_tensors_raise():
    with pytest.raises(RuntimeError, match=r"runs on the CPU; rowprec is on cuda"):
        fmt.logpdf_kron_prec(torch.zeros(2, 2), None, torch.eye(2, device="cuda"), torch.eye(2), 1.0)


def test_logpdf_prec_float32(rng):
    values = precision_values(rng, N, P)
    values[4] = 0.5                                 # a Python number does not decide the dtype
    single, grads = float32_against_numpy(fmt.logpdf_kron_prec, fm.logpdf_kron_prec_value_and_grad, values)
    damping = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)   # a float64 tensor does
    mixed = fmt.logpdf_kron_prec(*single[:4], damping)
    mixed.sum().backward()
    assert mixed.dtype == torch.float64 and damping.grad.dtype == torch.float64 and damping.grad.shape == ()
    np.testing.assert_allclose(damping.grad.item(), grads[4], rtol=1e-4)
