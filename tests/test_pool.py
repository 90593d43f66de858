"""The pool of gradient buffers: reuse only of memory no array uses, the same numbers, limits."""

import os
import re
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastmvn as fm
from fastmvn import _config, _gradients, _pool
from fastmvn._table import FUNCTIONS

from conftest import factors, pair


@pytest.fixture
def pooled(monkeypatch):
    """Every gradient array from the pool, small ones too, in a pool of its own."""
    monkeypatch.setattr(_config, "MIN_BYTES", 0)
    monkeypatch.setattr(_pool, "_POOL", _pool._Pool(1 << 30))
    return _pool._POOL


def addresses(arrays):
    return sorted(a.ctypes.data for a in arrays if a is not None)


def leased(array):
    """Whether ``array``'s memory is a pooled buffer's (a lease down its chain of bases)."""
    while array is not None and not isinstance(array, _pool._Lease):
        array = getattr(array, "base", None)
    return array is not None


def pooled_bytes(arrays):
    return sum(a.nbytes + _pool.ALIGN for a in arrays)


def unpooled(func, *args, **kwargs):
    previous = fm.set_buffer_pool(0)
    try:
        return func(*args, **kwargs)
    finally:
        fm.set_buffer_pool(previous)


@pytest.mark.parametrize("func, chol", [(fm.kl_value_and_grad, False), (fm.kl_chol_value_and_grad, True)])
def test_dropped_gradients_are_reused_with_the_same_numbers(rng, pooled, func, chol):
    first, second = pair(rng, (7,), 3, 2), pair(rng, (7,), 3, 2)
    if chol:
        first, second = factors(first), factors(second)
    _, grads = func(*first)
    before = addresses(grads)
    assert all(leased(g) and g.ctypes.data % _pool.ALIGN == 0 and g.flags.c_contiguous and g.flags.writeable
               for g in grads)
    del grads
    assert pooled.held == pooled_bytes(first)
    value, grads = func(*second)
    assert addresses(grads) == before and pooled.held == 0
    expected_value, expected = unpooled(func, *second)
    np.testing.assert_array_equal(value, expected_value)
    for grad, want in zip(grads, expected):
        np.testing.assert_array_equal(grad, want)
        assert not leased(want)


def test_memory_a_view_still_uses_is_not_handed_out(rng, pooled):
    args = pair(rng, (7,), 3, 2)
    _, grads = fm.kl_value_and_grad(*args)
    view = grads[1][2:5, 1]                       # a slice of one gradient outlives the others
    kept = view.copy()
    del grads
    _, fresh = fm.kl_value_and_grad(*pair(rng, (7,), 3, 2))
    assert not any(np.shares_memory(view, g) for g in fresh)
    np.testing.assert_array_equal(view, kept)
    del view
    assert pooled.held == pooled_bytes([args[1]])  # its buffer came back with the last view


def test_wrt_and_broadcast_priors_through_the_pool(rng, pooled):
    args = pair(rng, (7,), 3, 2)
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
    args = pair(rng, (7,), 2, 2)                    # six gradients of one size
    one = pooled_bytes(args[:1])
    assert fm.set_buffer_pool(2 * one) == 1 << 30
    _, grads = fm.kl_value_and_grad(*args)
    six = addresses(grads)
    del grads                                      # six buffers come back, the last two stay
    assert pooled.held == 2 * one
    idle = sorted(raw.ctypes.data - raw.ctypes.data % -_pool.ALIGN for raw in pooled.idle.values())
    assert set(idle) <= set(six)
    _, grads = fm.kl_value_and_grad(*args, wrt=("mean1", "rowcov1"))
    assert addresses(grads) == idle
    del grads
    assert fm.set_buffer_pool(0) == 2 * one
    assert pooled.held == 0
    _, grads = fm.kl_value_and_grad(*args)
    assert not any(leased(g) for g in grads)
    del grads
    assert pooled.held == 0


def test_sizes_not_asked_for_again_make_room(rng, pooled):
    fm.set_buffer_pool(6 * pooled_bytes(pair(rng, (7,), 2, 2)[:1]))
    for n in (2, 3, 2, 4):                         # each call's six buffers push out the last's
        args = pair(rng, (7,), n, n)
        _, grads = fm.kl_value_and_grad(*args)
        del grads
        assert pooled.held <= _pool._POOL.limit
        assert sorted(raw.nbytes for raw in pooled.idle.values())[-1] == args[0].nbytes + _pool.ALIGN


def test_threshold(rng, monkeypatch):
    monkeypatch.setattr(_pool, "_POOL", _pool._Pool(1 << 30))
    small = pair(rng, (1000,), 4, 4)     # 128 kB gradients: NumPy's own
    _, grads = fm.kl_value_and_grad(*small)
    assert not any(leased(g) for g in grads)
    large = [a[:1].repeat(_config.MIN_BYTES // 128, axis=0) for a in small]  # 4 MiB each
    _, grads = fm.kl_value_and_grad(*large)
    assert all(leased(g) for g in grads)
    del grads
    assert _pool._POOL.held == pooled_bytes(large)
    assert _pool.empty((0, 4), np.float64).shape == (0, 4)
    with pytest.raises(TypeError, match="cannot be copied"):
        import copy
        copy.copy(_pool._Lease(_pool._POOL, np.empty(128, np.uint8), 64))


@pytest.mark.parametrize("limit", [-1, 1.5, True, "1GB", None])
def test_bad_limits_are_refused(limit):
    with pytest.raises(ValueError, match="limit must be a whole number of bytes"):
        fm.set_buffer_pool(limit)


def import_with_limit(text):
    env = {k: v for k, v in os.environ.items() if k != "FASTMVN_POOL_BYTES"}
    if text is not None:
        env["FASTMVN_POOL_BYTES"] = text
    code = "import fastmvn; print(fastmvn.set_buffer_pool(0))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


@pytest.mark.parametrize("text, limit", [
    ("12345", 12345), (None, 1 << 30), ("", 1 << 30), (" ", 1 << 30), ("0", 0), ("1e9", 10**9), ("1.5e3", 1500),
    ("1_000", 1000), ("100B", 100), ("1k", 1024), ("1K", 1024), ("1KiB", 1024), ("1kB", 1000), ("512M", 512 << 20),
    ("1G", 1 << 30), ("1GiB", 1 << 30), ("1gib", 1 << 30), ("1 GB", 10**9), ("100MB", 10**8), ("1.5G", 3 << 29),
    ("1.1G", int(1.1 * (1 << 30))), ("2T", 2 << 40), ("2TB", 2 * 10**12)])
def test_environment_variable_sets_the_limit(monkeypatch, text, limit):
    """Plain and exponent-form numbers of bytes, and sizes with a unit as in GNU coreutils
    (a bare letter or iB: powers of 1024; B after a letter: powers of 1000); empty is the default."""
    if text is None:
        monkeypatch.delenv("FASTMVN_POOL_BYTES", raising=False)
    else:
        monkeypatch.setenv("FASTMVN_POOL_BYTES", text)
    assert _pool._default_limit() == limit


@pytest.mark.parametrize("text", ["lots", "-5", "1.5", "1.5B", "1e", "inf", "nan", "1GiBs", "1 G B", "0x10", "1e400",
                                  "1PB"])
def test_a_malformed_environment_variable_warns_and_keeps_the_default(monkeypatch, text):
    monkeypatch.setenv("FASTMVN_POOL_BYTES", text)
    with pytest.warns(RuntimeWarning, match=rf"FASTMVN_POOL_BYTES={re.escape(repr(text))} is not a size in bytes"):
        assert _pool._default_limit() == 1 << 30


@pytest.mark.parametrize("text, limit", [("1GiB", 1 << 30), ("512M", 512 << 20), ("lots", 1 << 30), ("", 1 << 30)])
def test_import_reads_the_environment_variable_and_never_fails_on_it(text, limit):
    run = import_with_limit(text)
    assert run.returncode == 0 and int(run.stdout) == limit
    assert ("RuntimeWarning: FASTMVN_POOL_BYTES='lots'" in run.stderr) == (text == "lots")


def test_threads_never_share_a_buffer(rng, pooled):
    inputs = [pair(rng, (40,), 3, 2) for _ in range(4)]
    expected = [unpooled(fm.kl_value_and_grad, *args) for args in inputs]
    failures, live = [], [None] * 4
    barrier = threading.Barrier(4)

    def work(k):
        try:
            for _ in range(15):
                live[k] = None                         # this thread's last gradients go back
                value, grads = fm.kl_value_and_grad(*inputs[k])
                live[k] = grads
                barrier.wait()                         # every thread's gradients alive at once
                for j in range(4):
                    if j != k:
                        assert not any(np.shares_memory(g, h) for g in grads for h in live[j])
                np.testing.assert_array_equal(value, expected[k][0])
                for grad, want in zip(grads, expected[k][1]):
                    np.testing.assert_array_equal(grad, want)
                barrier.wait()
        except Exception as error:  # noqa: BLE001 - reported below, in the main thread
            failures.append(error)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[0]


def test_torch_backward_through_pooled_memory(rng, pooled):
    torch = pytest.importorskip("torch")
    import fastmvn.torch as fmt

    arrays = pair(rng, (7,), 3, 2)
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    weights = torch.tensor(rng.uniform(0.5, 2.0, 7))
    loss = (fmt.kl(*tensors) * weights).sum()
    loss.backward(retain_graph=True)               # twice through one graph: its stored
    once = [t.grad.clone() for t in tensors]       # gradients must survive the first
    for t in tensors:
        t.grad = None
    loss.backward()
    assert pooled.held > 0                         # the stored gradients went back with the graph's end
    _, per_item = unpooled(_gradients.value_and_grad, FUNCTIONS["kl"], arrays, "raise", reduce=False)
    for t, first, grad in zip(tensors, once, per_item):
        torch.testing.assert_close(t.grad, first, rtol=0, atol=0)
        expected = weights.numpy().reshape((7,) + (1,) * (grad.ndim - 1)) * grad
        np.testing.assert_allclose(t.grad.numpy(), expected, rtol=1e-14, atol=0)
    kept = tensors[1].grad
    saved = kept.clone()
    for step in range(3):                          # a kept .grad is never handed out again
        for t in tensors:
            t.grad = None
        (fmt.kl(*tensors) * (weights + step)).sum().backward()
        assert not any(np.shares_memory(kept.numpy(), t.grad.numpy()) for t in tensors)
    torch.testing.assert_close(kept, saved, rtol=0, atol=0)
