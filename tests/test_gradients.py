"""Gradients of the KL and of the log-density against central finite differences, the dense
``V⊗U`` route, PyTorch autograd and float64."""

import numpy as np
import pytest
from numpy.linalg import LinAlgError

import fastmvn as fm
from fastmvn import reference
from fastmvn._table import FUNCTIONS

from conftest import factors, lanes_for_all, pair, spd

SHAPES = [(1, 1), (1, 3), (3, 1), (2, 2), (2, 3), (4, 4), (5, 2)]
COV_NAMES = ["mean1", "rowcov1", "colcov1", "mean2", "rowcov2", "colcov2"]
CHOL_NAMES = ["mean1", "rowchol1", "colchol1", "mean2", "rowchol2", "colchol2"]


def variances(rng, batch, n, p):
    return [rng.standard_normal(batch + (n, p)), rng.uniform(0.3, 3.0, batch + (n,)),
            rng.uniform(0.3, 3.0, batch + (p,)), rng.standard_normal(batch + (n, p)),
            rng.uniform(0.3, 3.0, batch + (n,)), rng.uniform(0.3, 3.0, batch + (p,))]


def sum_to(x, batch):
    """``x`` (the broadcast batch shape) summed over the axes along which ``batch`` was broadcast."""
    x = np.asarray(x).sum(axis=tuple(range(np.ndim(x) - len(batch))))
    axes = tuple(i for i, size in enumerate(batch) if size == 1 and x.shape[i] != 1)
    return x.sum(axis=axes, keepdims=True)


def finite_differences(func, args, k, core, symmetric=False, h=1e-6):
    """Central differences of ``sum(func(*args))`` in each of the ``core`` trailing axes'
    entries of ``args[k]``.

    Each entry moves in every batch item at once: item ``b``'s KL depends on item ``b``'s
    arguments only, so the quotients are per-item derivatives, then summed over the axes
    the argument was broadcast along. With ``symmetric``, entries ``(i, j)`` and ``(j, i)``
    move together, so the quotient is ``2 G_ij`` off the diagonal for a symmetric gradient ``G``.
    """
    arg = np.asarray(args[k], dtype=np.float64)
    batch, core_shape = arg.shape[:arg.ndim - core], arg.shape[arg.ndim - core:]
    result = np.zeros(arg.shape)
    for index in np.ndindex(*core_shape):
        step = np.zeros(core_shape)
        step[index] = h
        if symmetric:
            step[index[::-1]] = h
        plus, minus = list(args), list(args)
        plus[k], minus[k] = arg + step, arg - step
        result[(...,) + index] = sum_to((func(*plus) - func(*minus)) / (2 * h), batch)
    return result


def assert_close(actual, expected, rtol=1e-6):
    """Entry-wise relative agreement, with an absolute floor of ``rtol`` times the largest entry."""
    expected = np.asarray(expected)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * max(np.abs(expected).max(), 1e-12))


def check_gradient(grad, func, args, k, core=2, symmetric=False):
    """``grad`` agrees with the finite differences of ``func`` in ``args[k]``; for a symmetric
    argument, in symmetric pairs, whose quotient is ``2 G_ij`` off the diagonal."""
    expected = finite_differences(func, args, k, core, symmetric=symmetric)
    assert grad.shape == np.shape(args[k])
    if symmetric:
        np.testing.assert_allclose(grad, np.swapaxes(grad, -1, -2), rtol=1e-12, atol=1e-14)
        assert_close(np.tril(grad * (2.0 - np.eye(grad.shape[-1]))), np.tril(expected))
    else:
        assert_close(grad, expected)


@pytest.mark.parametrize("n, p", SHAPES)
def test_chol_gradients_match_finite_differences(rng, n, p):
    args = factors(pair(rng, (3,), n, p))
    value, grads = fm.kl_chol_value_and_grad(*args)
    np.testing.assert_allclose(value, reference.kl_chol(*args), rtol=1e-12)
    for k in range(6):
        check_gradient(grads[k], reference.kl_chol, args, k)
        if k % 3:
            assert (np.triu(grads[k], 1) == 0).all()


@pytest.mark.parametrize("n, p", SHAPES)
def test_cov_gradients_match_finite_differences(rng, n, p):
    args = pair(rng, (3,), n, p)
    value, grads = fm.kl_value_and_grad(*args)
    np.testing.assert_allclose(value, reference.kl(*args), rtol=1e-12)
    for k in range(6):
        check_gradient(grads[k], reference.kl, args, k, symmetric=k % 3 != 0)


def test_cov_gradient_along_symmetric_directions(rng):
    args = pair(rng, (4,), 3, 2)
    _, grads = fm.kl_value_and_grad(*args)
    h = 1e-6
    for k in (1, 2, 4, 5):
        e = rng.standard_normal(args[k].shape)
        e = e + np.swapaxes(e, -1, -2)
        plus, minus = list(args), list(args)
        plus[k], minus[k] = args[k] + h * e, args[k] - h * e
        quotient = (reference.kl(*plus) - reference.kl(*minus)) / (2 * h)
        np.testing.assert_allclose((grads[k] * e).sum((-2, -1)), quotient, rtol=1e-6)


@pytest.mark.parametrize("n, p", SHAPES)
def test_diag_gradients_match_finite_differences(rng, n, p):
    args = variances(rng, (3,), n, p)
    value, grads = fm.kl_diag_value_and_grad(*args)
    np.testing.assert_allclose(value, reference.kl_diag(*args), rtol=1e-12)
    for k in range(6):
        check_gradient(grads[k], reference.kl_diag, args, k, 2 if k % 3 == 0 else 1)


@pytest.mark.parametrize("func, make, reference_func", [
    (fm.kl_chol_value_and_grad, lambda rng, b, n, p: factors(pair(rng, b, n, p)), reference.kl_chol),
    (fm.kl_value_and_grad, pair, reference.kl),
    (fm.kl_diag_value_and_grad, variances, reference.kl_diag),
])
@pytest.mark.parametrize("n, p", [(1, 1), (2, 3), (4, 4)])
def test_standard_prior_and_omitted_arguments(rng, func, make, reference_func, n, p):
    args = make(rng, (4,), n, p)
    value, grads = func(*args[:3])
    assert grads[3:] == (None, None, None)
    identity = [np.zeros((n, p))] + [np.eye(a.shape[-1]) if a.ndim == 3 else np.ones(a.shape[-1]) for a in args[1:3]]
    full_value, full_grads = func(*args[:3], *identity)
    np.testing.assert_allclose(value, full_value, rtol=1e-12, atol=1e-12)
    for g, f in zip(grads[:3], full_grads[:3]):
        np.testing.assert_allclose(g, f, rtol=1e-10, atol=1e-12)
    symmetric = func is fm.kl_value_and_grad
    for k in range(3):
        check_gradient(grads[k], reference_func, args[:3], k, 2 if k == 0 else args[k].ndim - 1, symmetric and k > 0)
    value, grads = func(args[0], args[1], args[2], None, args[4], None)  # only the row covariance given
    assert grads[3] is None and grads[5] is None
    partial = [args[0], args[1], args[2], None, args[4], None]
    np.testing.assert_allclose(value, reference_func(*partial), rtol=1e-12)
    check_gradient(grads[4], reference_func, partial, 4, args[4].ndim - 1, symmetric)


def test_gradient_vanishes_at_the_minimum(rng):
    # KL(P ‖ P) = 0 is the minimum over the first distribution: its gradient is zero there
    args = factors(pair(rng, (5,), 3, 4))
    same = args[:3] + args[:3]
    value, grads = fm.kl_chol_value_and_grad(*same)
    assert np.abs(value).max() < 1e-12
    for g in grads[:3]:
        assert np.abs(g).max() < 1e-12


def test_broadcast_prior_gradient_is_summed(rng):
    args = factors(pair(rng, (6,), 3, 2))
    prior = [a[0] for a in args[3:]]
    value, grads = fm.kl_chol_value_and_grad(*args[:3], *prior)
    tiled = [np.broadcast_to(a, args[0].shape[:1] + a.shape).copy() for a in prior]
    tiled_value, tiled_grads = fm.kl_chol_value_and_grad(*args[:3], *tiled)
    np.testing.assert_allclose(value, tiled_value, rtol=1e-14)
    for k in range(3):
        np.testing.assert_allclose(grads[k], tiled_grads[k], rtol=1e-14)
        np.testing.assert_allclose(grads[3 + k], tiled_grads[3 + k].sum(0), rtol=1e-12)
        check_gradient(grads[3 + k], reference.kl_chol, args[:3] + prior, 3 + k)


def test_broadcast_grid_and_unmergeable_layout(rng):
    m1 = rng.standard_normal((2, 1, 3, 2))
    u1 = spd(rng, (1, 3), 3)        # (1, 3) against (2, 1): a grid
    v1 = spd(rng, (2, 1), 2)
    m2 = rng.standard_normal((1, 3, 2))
    args = [m1, u1, v1, m2, np.eye(3), np.eye(2)]
    value, grads = fm.kl_value_and_grad(*args)
    assert value.shape == (2, 3)
    for k in range(6):
        check_gradient(grads[k], reference.kl, args, k, symmetric=k % 3 != 0)
    u = spd(rng, (4, 1, 5), 2)      # (4, 1, 5) against (4, 6, 1): batch axes that merge nowhere
    m = rng.standard_normal((4, 6, 1, 2, 2))
    value, grads = fm.kl_value_and_grad(m, u, np.eye(2))
    np.testing.assert_allclose(value, reference.kl(m, u, np.eye(2)), rtol=1e-12)
    assert grads[2].shape == (2, 2)
    check_gradient(grads[1], reference.kl, [m, u, np.eye(2)], 1, symmetric=True)


def test_unbatched_and_empty(rng):
    args = [a[0] for a in factors(pair(rng, (1,), 2, 3))]
    value, grads = fm.kl_chol_value_and_grad(*args)
    assert np.ndim(value) == 0 and [g.shape for g in grads] == [a.shape for a in args]
    value, grads = fm.kl_chol_value_and_grad(np.zeros((0, 2, 3)), np.eye(2), np.eye(3), None, np.eye(2))
    assert value.shape == (0,) and grads[0].shape == (0, 2, 3)
    assert grads[1].shape == (2, 2) and (grads[1] == 0).all() and (grads[4] == 0).all()


@pytest.mark.parametrize("func, make", [(fm.kl_value_and_grad, pair), (fm.kl_chol_value_and_grad,
                                        lambda rng, b, n, p: factors(pair(rng, b, n, p))),
                                        (fm.kl_diag_value_and_grad, variances)])
def test_out_receives_value_and_gradients(rng, func, make):
    args = make(rng, (7,), 3, 2)
    args[4] = args[4][0]                         # a shared prior: its gradient is a sum
    expected_value, expected = func(*args)
    out = (np.full(7, np.nan), [np.full(np.shape(a), np.nan) for a in args])
    shape = np.shape(args[2])
    out[1][2] = np.full(shape[:-1] + (2 * shape[-1],), np.nan)[..., ::2]   # strided: written through a copy
    out[1][5] = None                             # allocated
    value, grads = func(*args, out=out)
    assert value is out[0] and all(g is o for g, o in zip(grads[:5], out[1][:5]))
    np.testing.assert_array_equal(value, expected_value)
    for k in range(6):
        np.testing.assert_array_equal(grads[k], expected[k])
    again = func(*[a * 1.1 for a in args], out=(value, grads))     # a previous result as out
    fresh = func(*[a * 1.1 for a in args])
    assert again[0] is value and again[1][5] is grads[5]
    for k in range(6):
        np.testing.assert_array_equal(again[1][k], fresh[1][k])


def test_out_checks_and_overlap(rng):
    args = pair(rng, (4,), 2, 2)
    value, grads = fm.kl_value_and_grad(*args)
    with pytest.raises(ValueError, match=r"out must be a pair \(value, grads\)"):
        fm.kl_value_and_grad(*args, out=value)
    with pytest.raises(ValueError, match="6 gradients"):
        fm.kl_value_and_grad(*args, out=(value, grads[:3]))
    with pytest.raises(ValueError, match=r"out\[1\]\[4\] \(the gradient of rowcov2\) must be an array of shape "
                                         r"\(4, 2, 2\); got \(2, 2\)"):
        fm.kl_value_and_grad(*args, out=(value, grads[:4] + (grads[4][0],) + grads[5:]))
    with pytest.raises(TypeError, match=r"out\[0\] \(the value\) has dtype float32"):
        fm.kl_value_and_grad(*args, out=(value.astype(np.float32), grads))
    with pytest.raises(ValueError, match=r"out\[1\]\[3\] must be None"):
        fm.kl_value_and_grad(*args[:3], out=(value, grads))
    zero_d = np.empty(())                        # unbatched: the 0-d array is returned, not a scalar
    value0, grads0 = fm.kl_value_and_grad(*[a[0] for a in args], out=(zero_d, (None,) * 6))
    assert value0 is zero_d and zero_d == value[0] and grads0[1].shape == (2, 2)
    # a gradient written over one of the inputs: the inputs are read before it is written
    expected = fm.kl_value_and_grad(*args)
    mean1 = args[0].copy()
    value, grads = fm.kl_value_and_grad(mean1, *args[1:], out=(None, (mean1,) + (None,) * 5))
    assert grads[0] is mean1
    np.testing.assert_array_equal(value, expected[0])
    np.testing.assert_array_equal(mean1, expected[1][0])


def test_outputs_that_share_memory_are_rejected(rng):
    """Two results written into one memory would lose one of them (the same array for the
    gradients of mean1 and mean2 gave mean1's the sign of mean2's); outputs apart, even
    interleaved in one array, are written."""
    args = pair(rng, (4,), 2, 3)
    expected_value, expected = fm.kl_value_and_grad(*args)
    mean_grad, rowcov_grad = np.empty((4, 2, 3)), np.empty((4, 2, 2))
    buffer = np.empty((5, 2, 3))
    means = r"out\[1\]\[0\] \(the gradient of mean1\) and out\[1\]\[3\] \(the gradient of mean2\) share memory"
    for message, out in [
            (means, (None, (mean_grad, None, None, mean_grad, None, None))),        # one array
            (means, (None, (buffer[:4], None, None, buffer[1:], None, None))),      # overlapping views
            (r"out\[0\] \(the value\) and out\[1\]\[1\] \(the gradient of rowcov1\) share memory",
             (rowcov_grad[:, 1, 0], (None, rowcov_grad, None, None, None, None)))]:
        with pytest.raises(ValueError, match=message):
            fm.kl_value_and_grad(*args, out=out)
    interleaved = np.full((4, 2, 3, 2), np.nan)  # both mean gradients in one array, no element shared
    value, grads = fm.kl_value_and_grad(*args, out=(None, (interleaved[..., 0], None, None, interleaved[..., 1],
                                                           None, None)))
    np.testing.assert_array_equal(value, expected_value)
    np.testing.assert_array_equal(interleaved[..., 0], expected[0])
    np.testing.assert_array_equal(interleaved[..., 1], expected[3])
    np.testing.assert_array_equal(interleaved[..., 0], -interleaved[..., 1])
    variances_args = variances(rng, (4,), 2, 3)
    rowvar_grad = np.empty((4, 2))
    with pytest.raises(ValueError, match=r"out\[1\]\[1\] \(the gradient of rowvar1\) and out\[1\]\[4\] "
                                         r"\(the gradient of rowvar2\) share memory"):
        fm.kl_diag_value_and_grad(*variances_args, out=(None, (None, rowvar_grad, None, None, rowvar_grad, None)))


@pytest.mark.parametrize("func, make, names", [
    (fm.kl_value_and_grad, pair, COV_NAMES),
    (fm.kl_chol_value_and_grad, lambda *a: factors(pair(*a)), CHOL_NAMES),
    (fm.kl_diag_value_and_grad, variances, ["mean1", "rowvar1", "colvar1", "mean2", "rowvar2", "colvar2"])])
def test_wrt_computes_only_those_gradients(rng, func, make, names):
    args = make(rng, (7,), 3, 2)
    args[4] = args[4][0]                                       # a shared prior: its gradient is summed
    value, grads = func(*args)
    for wrt in (names[:3], [names[4]], names[5]):
        some_value, some = func(*args, wrt=wrt)
        np.testing.assert_array_equal(some_value, value)
        for name, grad, full in zip(names, some, grads):
            if name in wrt:
                np.testing.assert_array_equal(grad, full)
            else:
                assert grad is None
    reused = func(*args, wrt=names[:3])
    again = func(*args, wrt=names[:3], out=reused)
    assert all(a is b for a, b in zip(again[1], reused[1]))


def test_wrt_errors(rng):
    args = pair(rng, (2,), 2, 3)
    with pytest.raises(ValueError, match=r"wrt names 'rowchol1'; the arguments are mean1, rowcov1, colcov1, "
                                         r"mean2, rowcov2, colcov2"):
        fm.kl_value_and_grad(*args, wrt=["mean1", "rowchol1"])
    with pytest.raises(ValueError, match="wrt names mean2, which was passed as None and has no gradient"):
        fm.kl_value_and_grad(*args[:3], wrt="mean2")
    value, grads = fm.kl_value_and_grad(*args)
    with pytest.raises(ValueError, match=r"out\[1\]\[1\] must be None: the gradient of rowcov1 is not asked for"):
        fm.kl_value_and_grad(*args, wrt=["mean1"], out=(value, grads))


def test_only_lower_triangles_are_read(rng):
    args = pair(rng, (3,), 3, 3)
    value, grads = fm.kl_value_and_grad(*args)
    upper = np.triu_indices(3, 1)
    poisoned = [a.copy() for a in args]
    for k in (1, 2, 4, 5):
        poisoned[k][:, upper[0], upper[1]] = np.nan
    same_value, same_grads = fm.kl_value_and_grad(*poisoned)
    np.testing.assert_array_equal(value, same_value)
    for g, s in zip(grads, same_grads):
        np.testing.assert_array_equal(g, s)
    chol = factors(args)
    for k in (1, 2, 4, 5):
        chol[k][:, upper[0], upper[1]] = 7.0
    _, chol_grads = fm.kl_chol_value_and_grad(*chol)
    _, clean = fm.kl_chol_value_and_grad(*factors(args))
    for g, c in zip(chol_grads, clean):
        np.testing.assert_array_equal(g, c)


@pytest.mark.parametrize("func, make", [
    (fm.kl_chol_value_and_grad, lambda rng, b, n, p: factors(pair(rng, b, n, p))),
    (fm.kl_value_and_grad, pair),
    (fm.kl_diag_value_and_grad, variances),
])
def test_float32_close_to_float64(rng, func, make):
    args = [a.astype(np.float32) for a in make(rng, (200,), 4, 3)]
    value, grads = func(*args)
    assert value.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    exact_value, exact = func(*(a.astype(np.float64) for a in args))
    np.testing.assert_allclose(value, exact_value, rtol=1e-5, atol=1e-5 * np.abs(exact_value).max())
    for g, e in zip(grads, exact):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5 * np.abs(e).max())


def test_gradients_agree_with_torch_autograd(rng):
    torch = pytest.importorskip("torch")
    from fastmvn._bench import torch_kl_chol_tensors

    for n, p in [(1, 1), (3, 2), (4, 4)]:
        cov = pair(rng, (5,), n, p)
        for func, arrays in ((fm.kl_chol_value_and_grad, factors(cov)), (fm.kl_value_and_grad, cov)):
            tensors = [torch.from_numpy(a).requires_grad_() for a in arrays]
            factor = torch.linalg.cholesky if func is fm.kl_value_and_grad else torch.tril
            inputs = [t if k % 3 == 0 else factor(t) for k, t in enumerate(tensors)]
            expected = torch_kl_chol_tensors(*inputs)
            expected.sum().backward()
            value, grads = func(*arrays)
            np.testing.assert_allclose(value, expected.detach().numpy(), rtol=1e-12)
            for g, t in zip(grads, tensors):
                np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-9, atol=1e-11)
        diag = [torch.from_numpy(a).requires_grad_() for a in variances(rng, (5,), n, p)]
        m1, a1, b1, m2, a2, b2 = diag
        d = m2 - m1
        expected = 0.5 * ((a1 / a2).sum(-1) * (b1 / b2).sum(-1) + (d * d / a2[..., :, None] / b2[..., None, :]).sum((-2, -1))
                          - n * p + p * (a2.log() - a1.log()).sum(-1) + n * (b2.log() - b1.log()).sum(-1))
        expected.sum().backward()
        value, grads = fm.kl_diag_value_and_grad(*(t.detach().numpy() for t in diag))
        np.testing.assert_allclose(value, expected.detach().numpy(), rtol=1e-12)
        for g, t in zip(grads, diag):
            np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("slot", [1, 2, 4, 5])
def test_not_positive_definite_names_argument_and_index(rng, slot):
    args = pair(rng, (6,), 3, 2)
    args[slot][4] = -np.eye(args[slot].shape[-1])
    with pytest.raises(LinAlgError, match=rf"{COV_NAMES[slot]} is not positive definite .* at batch index 4$"):
        fm.kl_value_and_grad(*args)
    chol = factors(pair(rng, (6,), 3, 2))
    chol[slot][2, 0, 0] = 0.0
    with pytest.raises(LinAlgError, match=rf"{CHOL_NAMES[slot]} is not a Cholesky factor.* at batch index 2$"):
        fm.kl_chol_value_and_grad(*chol)
    value, grads = fm.kl_chol_value_and_grad(*chol, errors="nan")
    assert np.isnan(value[2]) and np.isfinite(np.delete(value, 2)).all()
    good = [a[[0, 1, 3, 4, 5]] for a in chol]
    good_value, good_grads = fm.kl_chol_value_and_grad(*good)
    np.testing.assert_allclose(np.delete(value, 2), good_value, rtol=1e-14)
    for g, e in zip(grads, good_grads):
        assert np.isnan(g[2]).all()
        np.testing.assert_allclose(np.delete(g, 2, axis=0), e, rtol=1e-14)


def test_other_errors_name_argument_and_index(rng):
    args = variances(rng, (4,), 2, 3)
    args[5][3, 1] = -1.0
    with pytest.raises(LinAlgError, match="colvar2 must be positive at batch index 3$"):
        fm.kl_diag_value_and_grad(*args)
    args = variances(rng, (4,), 2, 3)
    with pytest.raises(LinAlgError, match="rowvar1 must be positive at batch index 1$"):
        fm.kl_diag_value_and_grad(args[0], np.where(np.arange(4)[:, None] == 1, 0.0, args[1]), args[2])
    args = factors(pair(rng, (2, 3), 2, 2))
    args[3][1, 2, 0, 1] = np.nan
    with pytest.raises(ValueError, match=r"mean2 contains NaN or infinity at batch index \(1, 2\)$"):
        fm.kl_chol_value_and_grad(*args)
    with pytest.raises(LinAlgError, match="rowcov1 is not positive definite"):
        fm.kl_value_and_grad(np.zeros((2, 2)), -np.eye(2), np.eye(2))
    with pytest.raises(ValueError, match="errors must be 'raise' or 'nan'"):
        fm.kl_value_and_grad(np.zeros((2, 2)), np.eye(2), np.eye(2), errors="ignore")
    with pytest.raises(ValueError, match=r"rowcov1 has shape \(2, 2\); expected \(\.\.\., 3, 3\)"):
        fm.kl_value_and_grad(np.zeros((3, 2)), np.eye(2), np.eye(2))


def test_gradient_benchmark_runs():
    from fastmvn._bench import compare_gradients

    figures = compare_gradients(2, 3, 500, repeat=1)
    assert all(v is None or v > 0 for v in figures.values())
    assert figures["kl_chol"] > 0 and figures["kl_value_and_grad"] > 0


# The log-density: logpdf_value_and_grad and logpdf_chol_value_and_grad.

DENSITY_NAMES = ["x", "mean", "rowcov", "colcov"]


def densities(rng, batch, n, p):
    """Points, means and the two covariances of a batch of matrix normals."""
    return [rng.standard_normal(batch + (n, p)), rng.standard_normal(batch + (n, p)), spd(rng, batch, n),
            spd(rng, batch, p)]


def density_factors(args):
    return [a if k < 2 else np.linalg.cholesky(a) for k, a in enumerate(args)]


@pytest.mark.parametrize("n, p", SHAPES)
def test_logpdf_gradients_match_finite_differences(rng, n, p):
    args = densities(rng, (3,), n, p)
    value, grads = fm.logpdf_value_and_grad(*args)
    np.testing.assert_allclose(value, reference.logpdf(*args), rtol=1e-12)
    for k in range(4):
        check_gradient(grads[k], reference.logpdf, args, k, symmetric=k >= 2)
    chol = density_factors(args)
    value, grads = fm.logpdf_chol_value_and_grad(*chol)
    np.testing.assert_allclose(value, reference.logpdf(*args), rtol=1e-12)
    for k in range(4):
        check_gradient(grads[k], reference.logpdf_chol, chol, k)
        if k >= 2:
            assert (np.triu(grads[k], 1) == 0).all()


def dense_logpdf_grads(x, mean, rowcov, colcov):
    """The log-density of ``N(vec M, V⊗U)`` at ``vec X`` (one item) and its gradients through the
    ``np×np`` covariance: ``∂/∂vec X = −Σ⁻¹ r`` and ``G = ∂/∂Σ = ½(Σ⁻¹ r rᵀ Σ⁻¹ − Σ⁻¹)``, carried to
    ``U`` and ``V`` by ``dΣ = V ⊗ dU + dV ⊗ U``: ``∂/∂U = Σ_cd V_cd G_(c,d)`` and
    ``∂/∂V_cd = tr(G_(c,d)ᵀ U)``, with ``G_(c,d)`` the ``n×n`` block ``(c, d)`` of ``G``."""
    from scipy.stats import multivariate_normal

    n, p = x.shape
    sigma = np.kron(colcov, rowcov)
    r = (x - mean).ravel(order="F")
    value = multivariate_normal(mean.ravel(order="F"), sigma).logpdf(x.ravel(order="F"))
    inverse = np.linalg.inv(sigma)
    s = inverse @ r
    g = 0.5 * (np.outer(s, s) - inverse)
    blocks = g.reshape(p, n, p, n).transpose(0, 2, 1, 3)            # blocks[c, d] = G_(c,d)
    grad_x = -s.reshape(p, n).T
    grad_u = np.einsum("cd,cdij->ij", colcov, blocks)
    grad_v = np.einsum("cdij,ij->cd", blocks, rowcov)
    return value, [grad_x, -grad_x, grad_u, grad_v]


@pytest.mark.parametrize("n, p", [(1, 1), (2, 3), (4, 2)])
def test_logpdf_gradients_match_the_dense_route(rng, n, p):
    args = densities(rng, (4,), n, p)
    value, grads = fm.logpdf_value_and_grad(*args, wrt=None)
    _, per_item = fm.logpdf_value_and_grad(*args)                # no argument broadcast: per-item gradients
    chol = density_factors(args)
    _, chol_grads = fm.logpdf_chol_value_and_grad(*chol)
    for b in range(4):
        dense_value, dense = dense_logpdf_grads(*(a[b] for a in args))
        np.testing.assert_allclose(value[b], dense_value, rtol=1e-12)
        for k in range(4):
            assert_close(per_item[k][b], dense[k], rtol=1e-9)
        for k in (2, 3):                                         # ∂/∂P = tril(2 ∂/∂U · P), as docs/gradients.md
            assert_close(chol_grads[k][b], np.tril(2 * dense[k] @ chol[k][b]), rtol=1e-9)


def test_logpdf_zero_mean_and_broadcast_covariance(rng):
    x, mean, rowcov, colcov = densities(rng, (6,), 3, 2)
    shared = [x, None, rowcov[0], colcov]
    value, grads = fm.logpdf_value_and_grad(*shared)
    assert grads[1] is None and grads[2].shape == (3, 3)
    tiled_value, tiled = fm.logpdf_value_and_grad(x, np.zeros_like(x), np.broadcast_to(rowcov[0], rowcov.shape), colcov)
    np.testing.assert_allclose(value, tiled_value, rtol=1e-14)
    np.testing.assert_allclose(grads[0], tiled[0], rtol=1e-14)
    np.testing.assert_allclose(grads[2], tiled[2].sum(0), rtol=1e-12)
    np.testing.assert_array_equal(grads[3], tiled[3])
    check_gradient(grads[2], reference.logpdf, shared, 2, symmetric=True)
    chol = [x, mean[0], np.linalg.cholesky(rowcov), np.linalg.cholesky(colcov[0])]   # shared mean and colchol
    value, grads = fm.logpdf_chol_value_and_grad(*chol)
    assert grads[1].shape == (3, 2) and grads[3].shape == (2, 2)
    np.testing.assert_allclose(grads[1], -grads[0].sum(0), rtol=1e-12)
    check_gradient(grads[1], reference.logpdf_chol, chol, 1)
    check_gradient(grads[3], reference.logpdf_chol, chol, 3)
    with pytest.raises(ValueError, match="wrt names mean, which was passed as None and has no gradient"):
        fm.logpdf_value_and_grad(*shared, wrt="mean")


@pytest.mark.parametrize("func, make, names", [
    (fm.logpdf_value_and_grad, densities, DENSITY_NAMES),
    (fm.logpdf_chol_value_and_grad, lambda *a: density_factors(densities(*a)), ["x", "mean", "rowchol", "colchol"]),
    (fm.logpdf_diag_value_and_grad, lambda *a: diagonal_densities(*a), ["x", "mean", "rowvar", "colvar"])])
def test_logpdf_wrt_and_out(rng, func, make, names):
    args = make(rng, (7,), 3, 2)
    args[3] = args[3][0]                                       # a shared column covariance: its gradient is summed
    value, grads = func(*args)
    for wrt in (["mean"], names[2:], names[3]):
        some_value, some = func(*args, wrt=wrt)
        np.testing.assert_array_equal(some_value, value)
        for name, grad, full in zip(names, some, grads):
            if name in wrt:
                np.testing.assert_array_equal(grad, full)
            else:
                assert grad is None
    out = (np.full(7, np.nan), [np.full(np.shape(a), np.nan) for a in args])
    out[1][2] = None                                           # allocated
    result, result_grads = func(*args, out=out)
    assert result is out[0] and all(g is o for k, (g, o) in enumerate(zip(result_grads, out[1])) if k != 2)
    np.testing.assert_array_equal(result, value)
    for g, e in zip(result_grads, grads):
        np.testing.assert_array_equal(g, e)
    with pytest.raises(ValueError, match="out\\[1\\] must hold 4 gradients"):
        func(*args, out=(value, grads + (None, None)))
    with pytest.raises(ValueError, match=r"out\[1\]\[2\] must be None: the gradient of " + names[2]):
        func(*args, wrt=["x", "mean"], out=(value, grads))


def test_logpdf_bad_item_gives_nan_or_raises(rng):
    args = densities(rng, (6,), 3, 2)
    args[3][4] = -np.eye(2)
    with pytest.raises(LinAlgError, match=r"colcov is not positive definite .* at batch index 4$"):
        fm.logpdf_value_and_grad(*args)
    value, grads = fm.logpdf_value_and_grad(*args, errors="nan")
    good_value, good = fm.logpdf_value_and_grad(*(np.delete(a, 4, axis=0) for a in args))
    assert np.isnan(value[4])
    np.testing.assert_allclose(np.delete(value, 4), good_value, rtol=1e-14)
    for g, e in zip(grads, good):
        assert np.isnan(g[4]).all()
        np.testing.assert_allclose(np.delete(g, 4, axis=0), e, rtol=1e-14)
    chol = density_factors(densities(rng, (6,), 3, 2))
    chol[2][1, 2, 2] = 0.0
    with pytest.raises(LinAlgError, match=r"rowchol is not a Cholesky factor.* at batch index 1$"):
        fm.logpdf_chol_value_and_grad(*chol)
    value, grads = fm.logpdf_chol_value_and_grad(*chol, errors="nan")
    assert np.isnan(value[1]) and all(np.isnan(g[1]).all() for g in grads)
    assert np.isfinite(np.delete(value, 1)).all() and all(np.isfinite(np.delete(g, 1, axis=0)).all() for g in grads)


@pytest.mark.parametrize("func, make", [
    (fm.logpdf_value_and_grad, densities),
    (fm.logpdf_chol_value_and_grad, lambda *a: density_factors(densities(*a)))])
def test_logpdf_float32_close_to_float64(rng, func, make):
    args = [a.astype(np.float32) for a in make(rng, (200,), 4, 3)]
    value, grads = func(*args)
    assert value.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    exact_value, exact = func(*(a.astype(np.float64) for a in args))
    np.testing.assert_allclose(value, exact_value, rtol=1e-5, atol=1e-5 * np.abs(exact_value).max())
    for g, e in zip(grads, exact):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5 * np.abs(e).max())


def test_logpdf_chol_of_upper_factors(rng):
    from conftest import upper_cholesky

    args = densities(rng, (5,), 3, 2)
    lower = density_factors(args)
    upper = args[:2] + [upper_cholesky(a) for a in args[2:]]
    upper[3] = upper[3] + np.tril(rng.standard_normal(upper[3].shape), -1)  # below the diagonal: not read
    value, grads = fm.logpdf_chol_value_and_grad(*upper, lower=False)
    expected_value, expected = fm.logpdf_chol_value_and_grad(*lower)
    np.testing.assert_allclose(value, expected_value, rtol=1e-12)
    for k in range(4):
        want = expected[k] if k < 2 else np.swapaxes(expected[k], -1, -2)
        np.testing.assert_allclose(grads[k], want, rtol=1e-10, atol=1e-12)
        if k >= 2:
            assert (np.tril(grads[k], -1) == 0).all()


def diagonal_densities(rng, batch, n, p):
    """Points, means and the two variance vectors of a batch of matrix normals."""
    return [rng.standard_normal(batch + (n, p)), rng.standard_normal(batch + (n, p)),
            rng.uniform(0.5, 2.0, batch + (n,)), rng.uniform(0.5, 2.0, batch + (p,))]


@pytest.mark.parametrize("n, p", SHAPES)
def test_diagonal_logpdf_gradients_match_finite_differences_and_the_full_covariances(rng, n, p):
    args = diagonal_densities(rng, (3,), n, p)
    value, grads = fm.logpdf_diag_value_and_grad(*args)
    np.testing.assert_allclose(value, reference.logpdf_diag(*args), rtol=1e-12)
    for k in range(4):
        check_gradient(grads[k], reference.logpdf_diag, args, k, core=2 if k < 2 else 1)
    full = args[:2] + [a[..., None] * np.eye(a.shape[-1]) for a in args[2:]]
    full_value, full_grads = fm.logpdf_value_and_grad(*full)       # the covariances' gradients' diagonals
    np.testing.assert_allclose(value, full_value, rtol=1e-12)
    for k, (grad, want) in enumerate(zip(grads, full_grads)):
        assert_close(grad, want if k < 2 else np.diagonal(want, axis1=-2, axis2=-1))


#: The diagonal modes' gradients in one pass per item (``diagonal_grad_batch``): the function,
#: its arguments, reference, mode, threshold in ``_config``, and the variances' argument to spoil.
DIAGONAL_STREAMS = {
    "logpdf_diag": (fm.logpdf_diag_value_and_grad, diagonal_densities, reference.logpdf_diag, "LOGPDF_DIAG",
                    "DIAGONAL_LOGPDF_STREAM_MIN_SIDE", 3, "colvar"),
    "kl_diag": (fm.kl_diag_value_and_grad, variances, reference.kl_diag, "KL_DIAG",
                "DIAGONAL_KL_GRAD_STREAM_MIN_SIDE", 5, "colvar2"),
    "kl_standard": (fm.kl_diag_value_and_grad, lambda *a: variances(*a)[:3], reference.kl_diag, "KL_STD_DIAG",
                    "DIAGONAL_KL_GRAD_STREAM_MIN_SIDE", 2, "colvar1"),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("count, n, p", [(3, 40, 37), (300, 9, 13), (200, 17, 16), (100, 3, 24), (400, 11, 5)])
@pytest.mark.parametrize("case", list(DIAGONAL_STREAMS))
def test_diagonal_gradients_streamed_match_the_lanes(rng, case, count, n, p, dtype, monkeypatch):
    """Items from each mode's threshold on (``_config``), and those the plan for large items
    would take, stream (``diagonal_grad_batch``: one pass over each item where it lies); the
    lanes give the same, float32 too, every gradient and each alone (``wrt=``); a failing item
    is NaN, value and gradients, or raises naming its argument and index."""
    from fastmvn import _batch, _config, _large, _modes

    func, make, reference_func, mode, threshold, spoiled, name = DIAGONAL_STREAMS[case]
    mode = getattr(_modes, mode)
    args = [a.astype(dtype) for a in make(rng, (count,), n, p)]
    slots = [np.zeros((count, n, p), dtype), np.zeros((count, n, 1), dtype)]
    in_float32_lanes = dtype == np.float32 and max(n, p) <= 16     # the lanes compute those in float32
    streamed = (max(n, p) >= getattr(_config, threshold) or _large.chosen(slots, count, True)) and not in_float32_lanes
    assert _batch._streamed(mode, slots, count, gradients=True) is streamed
    value, grads = func(*args)
    with monkeypatch.context() as m:
        m.setattr(_config, threshold, 10 ** 9)
        m.setattr(_large, "chosen", lambda slots, count, gradients=False: False)
        assert not _batch._streamed(mode, slots, count, gradients=True)
        lane_value, lane_grads = func(*args)
    tolerance = 1e-5 if dtype == np.float32 and not in_float32_lanes else 1e-12
    assert value.dtype == dtype and all(g.dtype == dtype for g in grads if g is not None)
    np.testing.assert_allclose(value, lane_value, rtol=tolerance)
    for g, e in zip(grads, lane_grads):
        assert (g is None) == (e is None)
        if g is not None:
            np.testing.assert_allclose(g, e, rtol=tolerance, atol=tolerance * np.abs(e).max())
    np.testing.assert_allclose(value, reference_func(*args), rtol=max(tolerance, 1e-6 if dtype == np.float32 else 0))
    names = [param.name for param in FUNCTIONS[func.__name__.removesuffix("_value_and_grad")].params]
    for k in range(len(args)):                                     # one gradient alone: the same numbers
        alone_value, alone = func(*args, wrt=[names[k]])
        np.testing.assert_array_equal(alone_value, value)
        np.testing.assert_array_equal(alone[k], grads[k])
        assert all(g is None for j, g in enumerate(alone) if j != k)
    args[spoiled] = args[spoiled].copy()
    args[spoiled][1, -1] = -1.0
    with pytest.raises(LinAlgError, match=rf"^{name} must be positive at batch index 1$"):
        func(*args)
    value, grads = func(*args, errors="nan")
    grads = [g for g in grads if g is not None]
    assert np.isnan(value[1]) and all(np.isnan(g[1]).all() for g in grads)
    assert np.isfinite(value[[0, 2]]).all() and all(np.isfinite(g[[0, 2]]).all() for g in grads)


def test_logpdf_large_items_through_lapack_match_the_lanes(rng, monkeypatch):
    """Few large items take the LAPACK plan (``fastmvn._large``); the lane kernels give the same."""
    from fastmvn import _large

    args = densities(rng, (1,), 40, 37)
    assert _large.chosen([a[0] for a in args], 1)
    lapack = fm.logpdf_value_and_grad(*args), fm.logpdf_chol_value_and_grad(*density_factors(args))
    lanes_for_all(monkeypatch)
    lanes = fm.logpdf_value_and_grad(*args), fm.logpdf_chol_value_and_grad(*density_factors(args))
    for (value, grads), (lane_value, lane_grads) in zip(lapack, lanes):
        np.testing.assert_allclose(value, lane_value, rtol=1e-12)
        for g, e in zip(grads, lane_grads):
            assert_close(g, e, rtol=1e-10)
