"""The pool of gradient buffers: reuse only of memory no array uses, the same numbers, limits."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastmvn as fm
from fastmvn import _api, _pool

from conftest import spd


@pytest.fixture
def pooled(monkeypatch):
    """Every gradient array from the pool, small ones too, in a pool of its own."""
    monkeypatch.setattr(_pool, "MIN_BYTES", 0)
    monkeypatch.setattr(_pool, "_POOL", _pool._Pool(1 << 30))
    return _pool._POOL


def pair(rng, batch=(7,), n=3, p=2):
    return [rng.standard_normal(batch + (n, p)), spd(rng, batch, n), spd(rng, batch, p),
            rng.standard_normal(batch + (n, p)), spd(rng, batch, n), spd(rng, batch, p)]


def addresses(arrays):
    return sorted(a.ctypes.data for a in arrays if a is not None)


def unpooled(func, *args, **kwargs):
    previous = fm.set_buffer_pool(0)
    try:
        return func(*args, **kwargs)
    finally:
        fm.set_buffer_pool(previous)


@pytest.mark.parametrize("func, chol", [(fm.kl_value_and_grad, False), (fm.kl_chol_value_and_grad, True)])
def test_dropped_gradients_are_reused_with_the_same_numbers(rng, pooled, func, chol):
    first, second = pair(rng), pair(rng)
    if chol:
        first, second = ([a if k % 3 == 0 else np.linalg.cholesky(a) for k, a in enumerate(args)]
                         for args in (first, second))
    _, grads = func(*first)
    before = addresses(grads)
    assert all(g.ctypes.data % _pool.ALIGN == 0 and g.flags.c_contiguous and g.flags.writeable for g in grads)
    del grads
    assert pooled.held == sum(a.nbytes for a in first)
    value, grads = func(*second)
    assert addresses(grads) == before and pooled.held == 0
    expected_value, expected = unpooled(func, *second)
    np.testing.assert_array_equal(value, expected_value)
    for grad, want in zip(grads, expected):
        np.testing.assert_array_equal(grad, want)
        assert not isinstance(want.base, _pool._Lease)


def test_memory_a_view_still_uses_is_not_handed_out(rng, pooled):
    args = pair(rng)
    _, grads = fm.kl_value_and_grad(*args)
    view = grads[1][2:5, 1]                       # a slice of one gradient outlives the others
    kept = view.copy()
    del grads
    _, fresh = fm.kl_value_and_grad(*pair(rng))
    assert not any(np.shares_memory(view, g) for g in fresh)
    np.testing.assert_array_equal(view, kept)
    del view
    assert pooled.held == args[1].nbytes          # its buffer came back with the last view


def test_wrt_and_broadcast_priors_through_the_pool(rng, pooled):
    args = pair(rng)
    args[4], args[5] = args[4][0], args[5][0]     # a shared prior: its gradient is summed
    for _ in range(3):
        value, grads = fm.kl_value_and_grad(*args, wrt=("mean1", "rowcov2"))
        expected_value, expected = unpooled(fm.kl_value_and_grad, *args, wrt=("mean1", "rowcov2"))
        np.testing.assert_array_equal(value, expected_value)
        for grad, want in zip(grads, expected):
            assert (grad is None) == (want is None)
            if grad is not None:
                np.testing.assert_array_equal(grad, want)


def test_limit_and_switching_off(rng, pooled):
    args = pair(rng, n=2, p=2)                    # six gradients of one size
    one = args[0].nbytes
    assert fm.set_buffer_pool(2 * one) == 1 << 30
    _, grads = fm.kl_value_and_grad(*args)
    del grads                                      # six buffers come back, two fit
    assert pooled.held == 2 * one
    assert fm.set_buffer_pool(0) == 2 * one
    assert pooled.held == 0
    _, grads = fm.kl_value_and_grad(*args)
    assert not any(isinstance(g.base, _pool._Lease) for g in grads)
    del grads
    assert pooled.held == 0


@pytest.mark.parametrize("limit", [-1, 1.5, True, "1GB", None])
def test_bad_limits_are_refused(limit):
    with pytest.raises(ValueError, match="limit must be a whole number of bytes"):
        fm.set_buffer_pool(limit)


@pytest.mark.parametrize("text, message", [("lots", "a whole number of bytes"), ("-5", "must not be negative")])
def test_bad_environment_variable_is_named(text, message):
    env = dict(os.environ, FASTMVN_POOL_BYTES=text)
    run = subprocess.run([sys.executable, "-c", "import fastmvn"], env=env, capture_output=True, text=True)
    assert run.returncode != 0 and "FASTMVN_POOL_BYTES" in run.stderr and message in run.stderr


def test_threads_never_share_a_buffer(rng, pooled):
    inputs = [pair(rng, batch=(40,)) for _ in range(4)]
    expected = [unpooled(fm.kl_value_and_grad, *args) for args in inputs]
    failures = []

    def work(k):
        try:
            for _ in range(15):
                value, grads = fm.kl_value_and_grad(*inputs[k])
                np.testing.assert_array_equal(value, expected[k][0])
                for grad, want in zip(grads, expected[k][1]):
                    np.testing.assert_array_equal(grad, want)
        except Exception as error:  # noqa: BLE001 - reported below, in the main thread
            failures.append(error)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[0]


def test_torch_backward_through_pooled_memory(rng, pooled):
    torch = pytest.importorskip("torch")
    import fastmvn.torch as fmt

    arrays = pair(rng)
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    weights = torch.tensor(rng.uniform(0.5, 2.0, 7))
    loss = (fmt.kl(*tensors) * weights).sum()
    loss.backward(retain_graph=True)               # twice through one graph: its stored
    once = [t.grad.clone() for t in tensors]       # gradients must survive the first
    for t in tensors:
        t.grad = None
    loss.backward()
    _, per_item = unpooled(_api._value_and_grad, _api.COV, arrays, "raise", reduce=False)
    for t, first, grad in zip(tensors, once, per_item):
        torch.testing.assert_close(t.grad, first, rtol=0, atol=0)
        expected = weights.numpy().reshape((7,) + (1,) * (grad.ndim - 1)) * grad
        np.testing.assert_allclose(t.grad.numpy(), expected, rtol=1e-14, atol=0)
