"""fastmvn.torch: values, gradients through autograd, gradcheck, errors and the training example."""

import importlib.util
import pathlib
import sys

import numpy as np
import pytest
from numpy.linalg import LinAlgError

torch = pytest.importorskip("torch")

import fastmvn as fm  # noqa: E402
import fastmvn.torch as fmt  # noqa: E402
from fastmvn._bench import torch_kl_chol_tensors  # noqa: E402

from conftest import factors, pair, spd, upper_cholesky  # noqa: E402

EXAMPLE = pathlib.Path(__file__).parent.parent / "examples" / "train_latent.py"


def tensors(arrays, requires_grad=True):
    return [None if a is None else torch.tensor(a, requires_grad=requires_grad) for a in arrays]


def chol_pair(rng, batch, n, p):
    return factors(pair(rng, batch, n, p))


def symmetric(x):
    return 0.5 * (x + x.transpose(-1, -2))


@pytest.mark.parametrize("n, p", [(1, 1), (2, 3), (3, 2)])
def test_gradcheck_kl_chol(rng, n, p):
    args = tensors(chol_pair(rng, (3,), n, p))
    assert torch.autograd.gradcheck(fmt.kl_chol, args)
    prior = [args[0], args[1], args[2], args[3][0], args[4][0], None]   # shared prior, identity colchol2
    assert torch.autograd.gradcheck(fmt.kl_chol, prior)
    assert torch.autograd.gradcheck(fmt.kl_chol, args[:3])


def upper_factors(arrays):
    """The arguments of :func:`chol_pair` with each lower factor ``L`` replaced by SciPy's upper
    factor ``R`` of the same covariance (``L Lᵀ = Rᵀ R``)."""
    return [a if k % 3 == 0 else upper_cholesky(a @ np.swapaxes(a, -1, -2)) for k, a in enumerate(arrays)]


def test_kl_chol_of_upper_factors(rng):
    arrays = chol_pair(rng, (4,), 3, 2)
    arrays[4] = arrays[4][0]                                    # a shared prior: its gradient is summed
    low, up = tensors(arrays), tensors(upper_factors(arrays))
    weights = torch.arange(1.0, 5.0, dtype=torch.float64)
    expected = fmt.kl_chol(*low)
    (expected * weights).sum().backward()
    value = fmt.kl_chol(*up, lower=False)
    torch.testing.assert_close(value, expected.detach(), rtol=1e-12, atol=1e-12)
    (value * weights).sum().backward()
    for k, (lower_arg, upper_arg) in enumerate(zip(low, up)):
        want = lower_arg.grad if k % 3 == 0 else lower_arg.grad.transpose(-1, -2)   # ∂/∂R = (∂/∂L)ᵀ
        torch.testing.assert_close(upper_arg.grad, want, rtol=1e-12, atol=1e-12)
    small = tensors(upper_factors(chol_pair(rng, (2,), 2, 3)))
    small[2] = (small[2].detach() + torch.tril(torch.ones(3, 3, dtype=torch.float64), -1)).requires_grad_()
    assert torch.autograd.gradcheck(lambda *args: fmt.kl_chol(*args, lower=False), small)   # lower part unread
    with pytest.raises(TypeError, match=r"^lower must be True or False"):
        fmt.kl_chol(*up, lower="upper")


@pytest.mark.parametrize("n, p", [(1, 1), (2, 3)])
def test_gradcheck_kl_symmetrised(rng, n, p):
    # A covariance's gradient is symmetric: gradcheck perturbs single entries, so it
    # differentiates through (X + Xᵀ)/2, whose gradient is exactly that symmetric one.
    m1, u1, v1, m2, u2, v2 = tensors([rng.standard_normal((2, n, p)), spd(rng, (2,), n), spd(rng, (2,), p),
                                      rng.standard_normal((n, p)), spd(rng, (), n), spd(rng, (2,), p)])

    def func(m1, u1, v1, m2, u2, v2):
        return fmt.kl(m1, symmetric(u1), symmetric(v1), m2, symmetric(u2), symmetric(v2))

    assert torch.autograd.gradcheck(func, (m1, u1, v1, m2, u2, v2))
    assert torch.autograd.gradcheck(lambda m, u, v: fmt.kl(m, symmetric(u), symmetric(v)), (m1, u1, v1))


@pytest.mark.parametrize("n, p", [(1, 1), (2, 3), (3, 2)])
def test_gradcheck_logpdf(rng, n, p):
    x, mean = rng.standard_normal((3, n, p)), rng.standard_normal((3, n, p))
    rowcov, colcov = spd(rng, (3,), n), spd(rng, (), p)           # a column covariance shared by the batch
    args = tensors([x, mean, rowcov, colcov])
    assert torch.autograd.gradcheck(lambda x, m, u, v: fmt.logpdf(x, m, symmetric(u), symmetric(v)), args)
    assert torch.autograd.gradcheck(lambda x, u, v: fmt.logpdf(x, None, symmetric(u), symmetric(v)),
                                    [args[0], args[2], args[3]])
    chol = tensors([x, mean[0], np.linalg.cholesky(rowcov), np.linalg.cholesky(colcov)])   # a shared mean
    assert torch.autograd.gradcheck(fmt.logpdf_chol, chol)
    upper = tensors([x, mean, upper_cholesky(rowcov), upper_cholesky(colcov[None])[0]])
    assert torch.autograd.gradcheck(lambda *args: fmt.logpdf_chol(*args, lower=False), upper)


def test_logpdf_backward_matches_the_fused_gradient(rng):
    """The backward pass weights each item's gradient: that of a mean shared by the batch is
    ``Σ_b w_b ∂logpdf_b/∂mean = −Σ_b w_b ∂logpdf_b/∂x_b``."""
    arrays = [rng.standard_normal((4, 3, 2)), rng.standard_normal((3, 2)), spd(rng, (4,), 3), spd(rng, (4,), 2)]
    weights = torch.tensor(rng.standard_normal(4))
    ours = tensors(arrays)
    (weights * fmt.logpdf(*ours)).sum().backward()
    _, grads = fm.logpdf_value_and_grad(*arrays)
    np.testing.assert_allclose(ours[1].grad.numpy(), -(weights.numpy()[:, None, None] * grads[0]).sum(0), rtol=1e-12)
    np.testing.assert_allclose(ours[0].grad.numpy(), weights.numpy()[:, None, None] * grads[0], rtol=1e-12)
    assert torch.equal(ours[2].grad, ours[2].grad.transpose(-1, -2))
    fixed = tensors(arrays[:1], False) + tensors(arrays[1:])                 # x fixed: its gradient never written
    fmt.logpdf(*fixed).sum().backward()
    assert fixed[0].grad is None
    np.testing.assert_allclose(fixed[1].grad.numpy(), grads[1], rtol=1e-12)


def test_gradcheck_kl_diag(rng):
    arrays = [rng.standard_normal((3, 2, 4)), rng.uniform(0.5, 2, (3, 2)), rng.uniform(0.5, 2, (4,)),
              rng.standard_normal((3, 2, 4)), rng.uniform(0.5, 2, (1, 2)), rng.uniform(0.5, 2, (3, 4))]
    assert torch.autograd.gradcheck(fmt.kl_diag, tensors(arrays))
    assert torch.autograd.gradcheck(fmt.kl_diag, tensors(arrays[:3]))


def test_weighted_backward_matches_autograd_of_the_formula(rng):
    arrays = chol_pair(rng, (5,), 3, 4)
    arrays[4] = arrays[4][0]                   # a prior factor shared by the batch
    weights = torch.tensor(rng.standard_normal(5))
    ours = tensors(arrays)
    (weights * fmt.kl_chol(*ours)).sum().backward()
    theirs = tensors(arrays)
    inputs = [t if k % 3 == 0 else torch.tril(t) for k, t in enumerate(theirs)]
    (weights * torch_kl_chol_tensors(*inputs)).sum().backward()
    for a, b in zip(ours, theirs):
        assert a.grad.shape == b.shape
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)
    cov = [a if k % 3 == 0 else a @ np.swapaxes(a, -1, -2) for k, a in enumerate(arrays)]
    ours, theirs = tensors(cov), tensors(cov)
    (weights * fmt.kl(*ours)).sum().backward()
    inputs = [t if k % 3 == 0 else torch.linalg.cholesky(t) for k, t in enumerate(theirs)]
    (weights * torch_kl_chol_tensors(*inputs)).sum().backward()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-11)


def test_backward_retained_and_repeated(rng):
    # Through a graph kept for a second and third pass the stored gradients stay intact, and
    # .grad accumulates; no gradient handed out shares memory with what the graph keeps.
    arrays = chol_pair(rng, (6,), 2, 3)
    arrays[5] = arrays[5][0]                   # summed over the batch: the weighted path
    ours = tensors(arrays)
    loss = fmt.kl_chol(*ours).sum()
    loss.backward(retain_graph=True)
    once = [t.grad.clone() for t in ours]
    loss.backward(retain_graph=True)
    loss.backward()
    theirs = tensors(arrays)
    (2 * fmt.kl_chol(*theirs)).mean().backward()   # the weighted path, another weight
    for t, first, other in zip(ours, once, theirs):
        torch.testing.assert_close(t.grad, 3 * first, rtol=1e-14, atol=0)
        torch.testing.assert_close(other.grad, first / 3, rtol=1e-14, atol=0)


def test_gradients_handed_out_are_the_callers_own(rng):
    arrays = chol_pair(rng, (5,), 3, 2)
    ours = tensors(arrays)
    loss = fmt.kl_chol(*ours).sum()
    first = torch.autograd.grad(loss, ours, retain_graph=True)
    expected = [g.clone() for g in first]
    second = torch.autograd.grad(loss, ours, retain_graph=True)
    for g in second:
        g.zero_()                                  # the caller's to change
    third = torch.autograd.grad(loss, ours)
    for a, b, want in zip(first, third, expected):
        torch.testing.assert_close(a, want, rtol=0, atol=0)
        torch.testing.assert_close(b, want, rtol=0, atol=0)
    leaf = torch.tensor(arrays[0], requires_grad=True)   # a view of a leaf as the input
    loss = fmt.kl_chol(leaf.view(5, 3, 2), *tensors(arrays[1:], requires_grad=False)).sum()
    loss.backward(retain_graph=True)
    leaf.grad.mul_(0.5)
    loss.backward()
    torch.testing.assert_close(leaf.grad, 1.5 * expected[0], rtol=1e-14, atol=0)


def test_tensors_that_need_no_gradient_get_none(rng):
    arrays = chol_pair(rng, (4,), 3, 2)
    everything = tensors(arrays)
    fmt.kl_chol(*everything).sum().backward()
    posterior = tensors(arrays[:3]) + tensors(arrays[3:], requires_grad=False)  # a fixed prior
    fmt.kl_chol(*posterior).sum().backward()
    for k, (t, full) in enumerate(zip(posterior, everything)):
        if k < 3:
            torch.testing.assert_close(t.grad, full.grad, rtol=0, atol=0)
        else:
            assert t.grad is None


def test_values_layouts_and_dtypes(rng):
    arrays = chol_pair(rng, (6,), 3, 2)
    expected = torch.from_numpy(fm.kl_chol(*arrays))
    torch.testing.assert_close(fmt.kl_chol(*tensors(arrays, requires_grad=False)), expected)
    strided = [torch.from_numpy(np.ascontiguousarray(np.swapaxes(a, -1, -2))).transpose(-1, -2)[::2]
               for a in arrays]
    assert not strided[1].is_contiguous()
    torch.testing.assert_close(fmt.kl_chol(*strided), expected[::2])
    single = [torch.tensor(a, dtype=torch.float32, requires_grad=True) for a in arrays]
    value = fmt.kl_chol(*single)
    value.sum().backward()
    assert value.dtype == torch.float32 and all(t.grad.dtype == torch.float32 for t in single)
    _, grads = fm.kl_chol_value_and_grad(*arrays)
    for t, g in zip(single, grads):
        np.testing.assert_allclose(t.grad.numpy(), g, rtol=1e-4, atol=1e-5 * np.abs(g).max())
    assert fmt.kl_chol(*tensors(arrays[:3], requires_grad=False)).grad_fn is None
    with torch.no_grad():
        assert fmt.kl_chol(*tensors(arrays)).grad_fn is None


def test_cpu_tensors_are_read_without_a_copy():
    from fastmvn.torch import _numpy

    t = torch.arange(24.0, dtype=torch.float64).reshape(2, 3, 4).transpose(-1, -2)
    assert np.shares_memory(_numpy(t), t.detach().numpy())


def test_double_backward_raises(rng):
    args = tensors(chol_pair(rng, (2,), 2, 2))
    for loss in (fmt.kl_chol(*args).sum(), fmt.kl_chol(*args).square().sum()):
        with pytest.raises(RuntimeError, match="second derivatives are not implemented; .* through kl_chol$"):
            torch.autograd.grad(loss, args[1], create_graph=True)


def test_errors_name_argument_and_index(rng):
    arrays = chol_pair(rng, (4,), 2, 3)
    arrays[5][3, 2, 2] = -1.0
    with pytest.raises(LinAlgError, match="colchol2 is not a Cholesky factor: its diagonal must be positive at batch index 3"):
        fmt.kl_chol(*tensors(arrays))
    value = fmt.kl_chol(*tensors(arrays), errors="nan")
    assert torch.isnan(value[3]) and torch.isfinite(value[:3]).all()
    with pytest.raises(LinAlgError, match="rowcov1 is not positive definite"):
        fmt.kl(torch.zeros(2, 2), -torch.eye(2), torch.eye(2))
    with pytest.raises(TypeError, match="takes tensors"):
        fmt.kl(np.zeros((2, 2)), torch.eye(2), torch.eye(2))


@pytest.mark.parametrize("function, stem", [(fmt.kl, "cov"), (fmt.kl_chol, "chol"), (fmt.kl_diag, "var")])
@pytest.mark.parametrize("position, name", [(0, "mean1"), (1, "row{}1"), (5, "col{}2")])
@pytest.mark.parametrize("requires_grad", [False, True])
def test_complex_tensors_raise_naming_the_argument(function, stem, position, name, requires_grad):
    """A complex tensor is a TypeError, as a complex array is for fastmvn's functions, not the
    KL of its real part."""
    core = torch.ones(2, dtype=torch.float64) if stem == "var" else torch.eye(2, dtype=torch.float64)
    args = [torch.zeros(2, 2, 2, dtype=torch.float64), core, core, torch.ones(2, 2, dtype=torch.float64), core, core]
    args[position] = (args[position] + 1j).requires_grad_(requires_grad)
    with pytest.raises(TypeError, match=rf"{name.format(stem)} is complex \(torch.complex128\); fastmvn works "):
        function(*args)


def test_cuda_tensors_without_fastmvn_cuda(monkeypatch):
    from fastmvn.torch import _cuda_module

    monkeypatch.setitem(sys.modules, "fastmvn.cuda", None)
    with pytest.raises(RuntimeError, match=r"CUDA tensors need fastmvn\[cuda\] and a GPU"):
        _cuda_module()


def test_training_example_runs_and_its_loss_falls():
    spec = importlib.util.spec_from_file_location("train_latent", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    losses = example.main(steps=40, batch=64, verbose=False)
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])


def cuda_tensors(arrays, requires_grad=True):
    return [None if a is None else torch.tensor(a, device="cuda", requires_grad=requires_grad) for a in arrays]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="PyTorch has no CUDA device here")
def test_cuda_tensors_value_gradients_and_gradcheck(rng):
    pytest.importorskip("fastmvn.cuda", exc_type=ImportError)
    arrays = chol_pair(rng, (5,), 3, 2)
    arrays[3], arrays[4] = arrays[3][0], arrays[4][0]  # a shared prior: its gradient is summed over the batch
    on_gpu, on_cpu = cuda_tensors(arrays), tensors(arrays)
    value = fmt.kl_chol(*on_gpu)
    assert value.is_cuda and value.dtype == torch.float64
    (value * torch.arange(5.0, device="cuda", dtype=torch.float64)).sum().backward()
    (fmt.kl_chol(*on_cpu) * torch.arange(5.0, dtype=torch.float64)).sum().backward()
    for gpu, cpu in zip(on_gpu, on_cpu):
        assert gpu.grad.is_cuda
        torch.testing.assert_close(gpu.grad.cpu(), cpu.grad, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(fmt.kl_chol, cuda_tensors(chol_pair(rng, (3,), 2, 3)))
    with torch.no_grad():
        torch.testing.assert_close(fmt.kl_chol(*on_gpu).cpu(), fmt.kl_chol(*on_cpu))
