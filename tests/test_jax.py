"""fastmvn.jax: values against the CPU functions, dtypes, jit and vmap, gradients (against finite
differences, JAX's own differentiation of the formula and fastmvn.torch) and errors."""

import numpy as np
import pytest
from numpy.linalg import LinAlgError

jax = pytest.importorskip("jax")

import jax.numpy as jnp  # noqa: E402
from jax.test_util import check_grads  # noqa: E402

import fastmvn as fm  # noqa: E402
import fastmvn.jax as fmj  # noqa: E402
from fastmvn import _bench, _gradients  # noqa: E402
from fastmvn._bench import jax_kl  # noqa: E402
from fastmvn._table import FUNCTIONS  # noqa: E402

from conftest import factors, pair, spd  # noqa: E402


@pytest.fixture
def x64():
    """64-bit JAX arrays inside the test, restored after it."""
    with jax.enable_x64(True):
        yield


def host(arrays):
    return [None if a is None else np.asarray(a) for a in arrays]


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_values_equal_the_cpu_functions_bit_for_bit(name):
    # The callback runs the CPU function on the same arrays: the same numbers, eagerly, under
    # jit and with a broadcast argument (given fewer batch axes, padded before the callback).
    for dtype, enable in ((np.float32, False), (np.float64, True)):
        with jax.enable_x64(enable):
            args = list(_bench.random_inputs(name, 4, 3, 2, dtype=dtype))
            if len(args) > 1:
                args[-1] = args[-1][0]
            expected = getattr(fm, name)(*args)
            for function in (getattr(fmj, name), jax.jit(getattr(fmj, name))):
                value = function(*(jnp.asarray(a) for a in args))
                assert value.dtype == dtype and value.shape == (4,)
                np.testing.assert_array_equal(value, expected)


def test_dtypes_follow_fastmvn_rule():
    ints = (np.zeros((2, 2), int), np.eye(2, dtype=int), np.eye(2, dtype=int))
    assert fmj.kl(*ints).dtype == jnp.float32                     # float64 by the rule, float32 without x64
    with jax.enable_x64(True):
        assert fmj.kl(*ints).dtype == jnp.float64
        mixed = fmj.kl(jnp.zeros((2, 2), jnp.float32), jnp.eye(2, dtype=jnp.float64), jnp.eye(2, dtype=jnp.float32))
        assert mixed.dtype == jnp.float64
        assert jax.jit(fmj.kl)(*(jnp.asarray(a, jnp.float32) for a in ints)).dtype == jnp.float32
    assert jax.config.jax_enable_x64 is False


def test_vmap_batches_through_the_kernels_broadcasting(rng):
    arrays = pair(rng, (3,), 2, 4)
    mapped = rng.standard_normal((5, 3, 2, 4))                    # an extra axis on mean1
    prior = np.stack([np.eye(2) * (1 + k) for k in range(5)])     # and on rowcov2, without its batch axis
    function = jax.vmap(fmj.kl, in_axes=(0, None, None, None, 0, None))
    value = jax.jit(function)(mapped, *arrays[1:4], prior, arrays[5])
    expected = np.stack([fm.kl(mapped[k], *arrays[1:4], prior[k], arrays[5]) for k in range(5)])
    assert value.shape == (5, 3)
    np.testing.assert_allclose(value, expected, rtol=1e-6)
    nested = jax.vmap(jax.vmap(fmj.kl_diag, in_axes=(0, None, None)), in_axes=(None, 0, None))
    means, rowvars = rng.standard_normal((6, 2, 3)), rng.uniform(0.5, 2, (4, 2))
    value = nested(means, rowvars, np.ones(3))
    np.testing.assert_allclose(value, fm.kl_diag(means, rowvars[:, None], np.ones(3)), rtol=1e-6)
    assert value.shape == (4, 6)


def test_vmap_of_gradients(rng, x64):
    arrays = pair(rng, (5, 3), 2, 3)
    function = jax.vmap(jax.grad(lambda m, u, v: fmj.kl(m, u, v).sum(), argnums=(0, 1)), in_axes=(0, 0, None))
    grads = function(arrays[0], arrays[1][:, 0], arrays[2][0, 0])  # rowcov1 (5, n, n) broadcast over 3 items
    for k in range(5):
        _, expected = fm.kl_value_and_grad(arrays[0][k], arrays[1][k, 0], arrays[2][0, 0], wrt=("mean1", "rowcov1"))
        np.testing.assert_allclose(grads[0][k], expected[0], rtol=1e-12)
        np.testing.assert_allclose(grads[1][k], expected[1], rtol=1e-12)


def test_jit_retraces_for_new_shapes(rng):
    function = jax.jit(fmj.kl_chol)
    for batch, n, p in [((3,), 2, 2), ((5,), 3, 4), ((2, 3), 1, 2), ((), 2, 3)]:
        arrays = [a.astype(np.float32) for a in factors(pair(rng, batch, n, p))]
        arrays[4] = arrays[4][(0,) * len(batch)] if batch else arrays[4]
        np.testing.assert_array_equal(function(*arrays), fm.kl_chol(*arrays))


def test_callback_reads_the_host_arrays_without_another_copy(rng, monkeypatch):
    # XLA hands the callback NumPy arrays; jax.pure_callback would copy each into a new CPU
    # jax.Array first (its device_put, the bulk of a large call's time).
    seen = []
    original = fmj._host

    def recording(function, present, errors, lower, grad, *arrays):
        seen.extend(type(a) for a in arrays)
        return original(function, present, errors, lower, grad, *arrays)

    monkeypatch.setattr(fmj, "_host", recording)
    arrays = [a.astype(np.float32) for a in pair(rng, (3,), 2, 5)]   # shapes no other test traces
    np.testing.assert_array_equal(jax.jit(fmj.kl)(*arrays), fm.kl(*arrays))
    jax.jit(jax.vmap(jax.grad(lambda *a: fmj.kl(*a).sum(), argnums=1)))(*arrays)
    assert seen and set(seen) == {np.ndarray}


@pytest.mark.parametrize("name", ["kl", "kl_chol", "kl_diag"])
def test_gradients_against_finite_differences(rng, x64, name):
    arrays = pair(rng, (3,), 2, 3)
    arrays[4] = arrays[4][0]                                      # a shared prior: its gradient is summed
    if name == "kl_chol":
        arrays = factors(arrays)
    if name == "kl_diag":
        arrays = [a if k % 3 == 0 else np.diagonal(a, axis1=-2, axis2=-1).copy() for k, a in enumerate(arrays)]
    weights = rng.standard_normal(3)
    symmetric = (lambda a: 0.5 * (a + jnp.swapaxes(a, -1, -2))) if name == "kl" else (lambda a: a)

    def loss(*args):   # a covariance's gradient is symmetric: differentiate through (X + Xᵀ)/2
        return (weights * getattr(fmj, name)(*(a if k % 3 == 0 else symmetric(a) for k, a in enumerate(args)))).sum()

    check_grads(loss, [jnp.asarray(a) for a in arrays], order=1, modes=["rev"])


def test_gradients_against_jax_differentiating_the_formula(rng, x64):
    arrays = pair(rng, (4,), 3, 2)
    arrays[3], arrays[4] = arrays[3][0], arrays[4][0]
    weights = rng.standard_normal(4)
    ours = jax.grad(lambda *a: (weights * fmj.kl(*a)).sum(), argnums=tuple(range(6)))(*arrays)
    theirs = jax.grad(lambda *a: (weights * jax_kl(*a)).sum(), argnums=tuple(range(6)))(*arrays)
    for k, (a, b) in enumerate(zip(ours, theirs)):
        assert a.shape == arrays[k].shape
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fmj.kl(*arrays), jax_kl(*arrays), rtol=1e-12)


def test_gradients_against_torch(rng, x64):
    torch = pytest.importorskip("torch")
    import fastmvn.torch as fmt

    arrays = factors(pair(rng, (4,), 2, 3))
    arrays[5] = arrays[5][0]
    weights = rng.standard_normal(4)
    for name, args in (("kl_chol", arrays), ("kl_chol", arrays[:3]),
                       ("kl_diag", [a if k % 3 == 0 else np.diagonal(a, axis1=-2, axis2=-1) ** 2
                                    for k, a in enumerate(arrays)])):
        tensors = [torch.tensor(a, requires_grad=True) for a in args]
        (torch.from_numpy(weights) * getattr(fmt, name)(*tensors)).sum().backward()
        grads = jax.grad(lambda *a: (weights * getattr(fmj, name)(*a)).sum(), argnums=tuple(range(len(args))))(*args)
        for grad, tensor in zip(grads, tensors):
            np.testing.assert_allclose(grad, tensor.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_gradient_of_upper_factors(rng, x64):
    arrays = factors(pair(rng, (3,), 2, 2))
    upper = [a if k % 3 == 0 else np.swapaxes(a, -1, -2) for k, a in enumerate(arrays)]
    lows = jax.grad(lambda *a: fmj.kl_chol(*a).sum(), argnums=(1, 5))(*arrays)
    ups = jax.grad(lambda *a: fmj.kl_chol(*a, lower=False).sum(), argnums=(1, 5))(*upper)
    for low, up in zip(lows, ups):
        np.testing.assert_allclose(up, np.swapaxes(low, -1, -2), rtol=1e-12)
        np.testing.assert_array_equal(np.tril(up, -1), 0)


def test_only_the_differentiated_arguments_get_gradients(rng, monkeypatch):
    asked = []
    original = _gradients.value_and_grad

    def recording(function, values, errors, **keywords):
        asked.append(keywords["wrt"])
        return original(function, values, errors, **keywords)

    monkeypatch.setattr(_gradients, "value_and_grad", recording)
    arrays = [a.astype(np.float32) for a in pair(rng, (2,), 2, 2)]
    jax.grad(lambda u: fmj.kl(arrays[0], u, *arrays[2:]).sum())(arrays[1])
    jax.jit(jax.grad(lambda m, v: fmj.kl(m, arrays[1], v).sum(), argnums=(0, 1)))(arrays[0], arrays[2])
    assert asked == [("rowcov1",), ("mean1", "colcov1")]


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_gradient_exactly_where_the_table_has_one(name):
    entry = FUNCTIONS[name]
    args = [jnp.asarray(a, jnp.float32) for a in _bench.random_inputs(name, 2, 2, 2)]
    loss = lambda *a: getattr(fmj, name)(*a).sum()  # noqa: E731
    if entry.gradient:
        assert all(np.all(np.isfinite(g)) for g in jax.grad(loss, argnums=tuple(range(len(args))))(*args))
    else:
        with pytest.raises(NotImplementedError, match=f"^fastmvn.jax.{name} has no gradient"):
            jax.grad(loss)(*args)
    # Differentiating something else, through which the arrays pass undifferentiated, is fine.
    assert jax.grad(lambda x: x * loss(*args))(1.0) == loss(*args)


def test_errors_name_argument_and_batch_index(rng):
    mean, colcov = np.zeros((5, 2, 3), np.float32), np.eye(3, dtype=np.float32)
    rowcov = np.stack([np.eye(2, dtype=np.float32)] * 5)
    rowcov[3] = -np.eye(2)
    message = r"rowcov1 is not positive definite \(Cholesky failed\) at batch index 3"
    with pytest.raises(jax.errors.JaxRuntimeError, match=f"LinAlgError: {message}"):
        jax.jit(fmj.kl)(mean, rowcov, colcov).block_until_ready()
    with pytest.raises(jax.errors.JaxRuntimeError, match=message):
        jax.jit(jax.grad(lambda u: fmj.kl(mean, u, colcov).sum()))(rowcov).block_until_ready()
    with pytest.raises(LinAlgError, match=f"^{message}$"):      # eagerly, the CPU function's own error
        fmj.kl(mean, rowcov, colcov)
    with pytest.raises(ValueError, match=r"^rowcov1 has shape \(5, 1, 2\)"):  # at trace time
        jax.jit(fmj.kl)(mean, rowcov[:, :1], colcov)
    with pytest.raises(ValueError, match="errors must be 'raise' or 'nan'"):
        fmj.kl(mean, rowcov, colcov, errors="ignore")
    with pytest.raises(TypeError, match="mean1 is complex"):
        fmj.kl(mean.astype(np.complex64), rowcov, colcov)


def test_errors_nan_is_a_static_keyword(rng):
    mean, colcov = np.zeros((5, 2, 3), np.float32), np.eye(3, dtype=np.float32)
    rowcov = np.stack([np.eye(2, dtype=np.float32) * 2] * 5)
    rowcov[3] = -np.eye(2)
    expected = fm.kl(mean, rowcov, colcov, errors="nan")
    value = jax.jit(fmj.kl, static_argnames="errors")(mean, rowcov, colcov, errors="nan")
    np.testing.assert_array_equal(value, expected)
    assert np.isnan(value[3]) and np.all(np.isfinite(np.delete(value, 3)))
    grad = jax.jit(jax.grad(lambda u: fmj.kl(mean, u, colcov, errors="nan")[np.array([0, 1, 2, 4])].sum()))(rowcov)
    assert np.all(np.isnan(grad[3])) and np.all(np.isfinite(np.delete(grad, 3, axis=0)))


# The FFI route: under jax.jit on the CPU, XLA calls a compiled handler (fastmvn._xla) that runs
# the batch driver on XLA's own buffers. Each test below makes the host callback fail, so that a
# value computed proves that the handler computed it.

@pytest.fixture
def no_callback(monkeypatch):
    """The host callback raises; the FFI handlers are the only way to a value."""
    def refuse(function, present, errors, lower, grad, *arrays):
        raise AssertionError(f"the host callback ran {function.name} (grad={grad})")

    monkeypatch.setattr(fmj, "_host", refuse)


def _ffi_cases(name, dtype):
    """Arguments of the KL ``name``: a shared batch, two batch axes with a prior broadcast along
    both, the standard second side, and one item."""
    args = list(_bench.random_inputs(name, 6, 3, 2, dtype=dtype, seed=1))
    grid = [a.reshape((2, 3) + a.shape[1:]) for a in args]
    grid[4] = grid[4][:1, :1]                                  # (1, 1, ...): one prior for all six
    grid[2] = grid[2][0, 0]                                    # no batch axes at all
    return [args, grid, args[:3], [a[0] for a in args]]


@pytest.mark.parametrize("name", ["kl", "kl_chol", "kl_diag"])
def test_ffi_values_equal_fastmvn_bit_for_bit(name, no_callback):
    for dtype, enable in ((np.float32, False), (np.float64, True)):
        with jax.enable_x64(enable):
            for args in _ffi_cases(name, dtype):
                expected = getattr(fm, name)(*args)
                value = jax.jit(lambda *a: getattr(fmj, name)(*a))(*(jnp.asarray(a) for a in args))
                assert value.dtype == dtype and value.shape == np.shape(expected)
                np.testing.assert_array_equal(value, expected)


@pytest.mark.parametrize("name", [name for name, entry in FUNCTIONS.items() if entry.mode is not None])
def test_ffi_serves_every_entry_with_a_kernel(name, no_callback):
    args = [jnp.asarray(a) for a in _bench.random_inputs(name, 4, 3, 2, dtype=np.float32, seed=3)]
    expected = getattr(fm, name)(*(np.asarray(a) for a in args))
    np.testing.assert_array_equal(jax.jit(lambda *a: getattr(fmj, name)(*a))(*args), expected)


@pytest.mark.parametrize("name, batch, n, p", [("logpdf_diag", 6, 20, 12), ("kl_diag", 6, 20, 12),
                                               ("logpdf_diag", 1, 300, 200), ("kl_diag", 2, 300, 200)])
def test_ffi_streams_diagonal_covariances_as_fastmvn_does(name, batch, n, p, monkeypatch, no_callback):
    """The values of diagonal covariances that fastmvn computes one item at a time where each lies
    (``diagonal_batch``: from a side in ``_config`` up, and large items) take the same driver
    through the handler, bit for bit, the standard prior too, on one thread and in chunks."""
    from fastmvn import _batch, _config, _modes

    for dtype, enable in ((np.float32, False), (np.float64, True)):
        args = list(_bench.random_inputs(name, batch, n, p, dtype=dtype, seed=2))
        mode = _modes.LOGPDF_DIAG if name == "logpdf_diag" else _modes.KL_DIAG
        assert _batch._streamed(mode, [a[..., None] if a.ndim == 2 else a for a in args], batch)
        with jax.enable_x64(enable):
            for given in (args, args[:3]) if name == "kl_diag" else (args,):
                for entries in (_config.DIAGONAL_CHUNK_ENTRIES, n * p // 2):    # one chunk; one an item
                    monkeypatch.setattr(_config, "DIAGONAL_CHUNK_ENTRIES", entries)
                    expected = getattr(fm, name)(*given)
                    value = jax.jit(lambda *a: getattr(fmj, name)(*a))(*(jnp.asarray(a) for a in given))
                    assert value.dtype == dtype
                    np.testing.assert_array_equal(value, expected)


def test_ffi_runs_the_parallel_driver(rng, monkeypatch, no_callback):
    # Chunks of 4 items: 13 chunks, the parallel driver, taking the launch lock where it must.
    from fastmvn import _config

    monkeypatch.setattr(_config, "CHUNK", 4)
    args = [a.astype(np.float32) for a in pair(rng, (50,), 3, 2)]
    args[5] = args[5][0]
    value = jax.jit(lambda *a: fmj.kl(*a))(*args)
    np.testing.assert_array_equal(value, fm.kl(*args))


def test_ffi_takes_turns_with_parallel_launches_from_python(monkeypatch):
    # Numba's workqueue layer aborts the process when two threads launch at once: a handler's
    # parallel launch takes the same lock as fm.kl's.
    import threading

    from fastmvn import _config

    monkeypatch.setattr(_config, "CHUNK", 8)
    args = [a.astype(np.float32) for a in _bench.random_inputs("kl", 400, 3, 2, seed=2)]
    expected = fm.kl(*args)
    function = jax.jit(lambda *a: fmj.kl(*a))
    function(*args).block_until_ready()
    stop, results = threading.Event(), []

    def launch():
        while not stop.is_set():
            results.append(np.array_equal(fm.kl(*args), expected))

    thread = threading.Thread(target=launch)
    thread.start()
    try:
        values = [function(*args) for _ in range(200)]
    finally:
        stop.set()
        thread.join()
    assert all(np.array_equal(v, expected) for v in values) and results and all(results)


def test_ffi_errors_name_argument_and_batch_index(rng, no_callback):
    mean, colcov = np.zeros((2, 3, 2, 3), np.float32), np.eye(3, dtype=np.float32)
    rowcov = np.broadcast_to(np.eye(2, dtype=np.float32), (2, 3, 2, 2)).copy()
    rowcov[1, 2] = -np.eye(2)
    function = jax.jit(lambda *a: fmj.kl(*a))
    message = r"rowcov1 is not positive definite \(Cholesky failed\) at batch index \(1, 2\)"
    with pytest.raises(jax.errors.JaxRuntimeError, match=f"LinAlgError: {message}"):
        function(mean, rowcov, colcov).block_until_ready()
    mean[0, 1, 1, 2] = np.nan
    with pytest.raises(jax.errors.JaxRuntimeError, match=r"ValueError: mean1 contains NaN or infinity at batch index "
                                                         r"\(0, 1\)"):
        function(mean, rowcov, colcov).block_until_ready()
    variances = np.ones((4, 2), np.float32)
    variances[2, 1] = 0
    with pytest.raises(jax.errors.JaxRuntimeError, match=r"LinAlgError: rowvar1 must be positive at batch index 2"):
        jax.jit(lambda *a: fmj.kl_diag(*a))(np.zeros((4, 2, 3), np.float32), variances,
                                            np.ones(3, np.float32)).block_until_ready()
    nan = jax.jit(lambda *a: fmj.kl(*a, errors="nan"))(mean, rowcov, colcov)
    np.testing.assert_array_equal(nan, fm.kl(mean, rowcov, colcov, errors="nan"))
    assert np.isnan(nan[0, 1]) and np.isnan(nan[1, 2]) and np.isfinite(nan).sum() == 4


def test_ffi_under_vmap(rng, no_callback):
    # vmap puts the mapped axis in front, of size 1 where an argument is not mapped: still a
    # layout the handler reads (a shared argument has a batch of ones).
    arrays = [a.astype(np.float32) for a in pair(rng, (5, 3), 2, 4)]
    second = [a[0, 0] for a in arrays[3:]]                      # one second distribution for all
    function = jax.jit(jax.vmap(lambda *a: fmj.kl(*a), in_axes=(0, 0, 0, None, None, None)))
    np.testing.assert_array_equal(function(*arrays[:3], *second), fm.kl(*arrays[:3], *second))
    single = jax.vmap(lambda *a: fmj.kl_diag(*a), in_axes=(0, None, None))
    means = rng.standard_normal((4, 2, 3)).astype(np.float32)
    value = jax.jit(single)(means, np.ones(2, np.float32), np.full(3, 2, np.float32))
    np.testing.assert_array_equal(value, fm.kl_diag(means, np.ones(2, np.float32), np.full(3, 2, np.float32)))


def test_ffi_with_changing_shapes(rng, no_callback):
    function = jax.jit(lambda *a: fmj.kl_chol(*a))
    for batch, n, p in [((3,), 2, 2), ((5,), 3, 4), ((2, 3), 1, 2), ((), 2, 3)]:
        arrays = [a.astype(np.float32) for a in factors(pair(rng, batch, n, p))]
        np.testing.assert_array_equal(function(*arrays), fm.kl_chol(*arrays))


def test_the_callback_serves_what_the_handlers_do_not(rng, monkeypatch):
    # A mean2 of None alone (made up as zeros), upper factors, a broadcast a handler cannot read,
    # gradients, and a JAX without the FFI all go through the callback, with the same numbers.
    calls = []
    original = fmj._host

    def recording(function, present, errors, lower, grad, *arrays):
        calls.append((function.name, grad))
        return original(function, present, errors, lower, grad, *arrays)

    monkeypatch.setattr(fmj, "_host", recording)
    arrays = [a.astype(np.float32) for a in factors(pair(rng, (4, 3), 2, 3))]
    upper = [a if k % 3 == 0 else np.swapaxes(a, -1, -2) for k, a in enumerate(arrays)]
    cases = [(fmj.kl_chol, fm.kl_chol, (arrays[0], arrays[1], arrays[2], None, arrays[4], arrays[5]), {}),
             (fmj.kl_chol, fm.kl_chol, upper, {"lower": False}),
             (fmj.kl_chol, fm.kl_chol, (arrays[0], arrays[1][:1], *arrays[2:]), {})]
    for ours, theirs, args, keywords in cases:
        value = jax.jit(lambda *a: ours(*a, **keywords))(*args)
        np.testing.assert_array_equal(value, theirs(*args, **keywords))
    assert calls == [("kl_chol", ())] * 3
    monkeypatch.setattr(fmj, "_xla", None)
    np.testing.assert_array_equal(jax.jit(lambda *a: fmj.kl_chol(*a))(*arrays), fm.kl_chol(*arrays))
    assert len(calls) == 4


def test_a_handler_that_cannot_be_made_leaves_the_callback(rng, monkeypatch):
    from fastmvn import _xla

    def fail(key):
        raise RuntimeError("no compiler")

    monkeypatch.setattr(_xla, "_HANDLERS", {})
    monkeypatch.setattr(_xla, "_compile", fail)
    arrays = [a.astype(np.float32) for a in pair(rng, (3,), 2, 2)]
    np.testing.assert_array_equal(jax.jit(lambda *a: fmj.kl(*a))(*arrays), fm.kl(*arrays))
    assert all(name is None for name, _ in _xla._HANDLERS.values())
