"""The building blocks (logdet, trace_solve, mahalanobis) and every kind of bad input."""

import re

import numpy as np
import pytest
from numpy.linalg import LinAlgError

import fastmvn as fm
from fastmvn import _config, reference

from conftest import run_python, spd


@pytest.mark.parametrize("n", [1, 2, 4, 9, 33, 64])
def test_logdet_and_trace_solve(rng, n):
    a = spd(rng, (5,), n)
    b = rng.standard_normal((5, n, n))
    np.testing.assert_allclose(fm.logdet(a), np.linalg.slogdet(a)[1], rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(fm.logdet(a), reference.logdet(a), rtol=1e-11, atol=1e-11)
    expected = np.trace(np.linalg.solve(a, b), axis1=-2, axis2=-1)
    np.testing.assert_allclose(fm.trace_solve(a, b), expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(reference.trace_solve(a, b), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("n, p", [(1, 1), (2, 5), (6, 3)])
def test_mahalanobis_against_dense(rng, n, p):
    x, mean = rng.standard_normal((2, 4, n, p))
    u, v = spd(rng, (4,), n), spd(rng, (), p)
    result = fm.mahalanobis(x, mean, u, v)
    for b in range(4):
        d = (x[b] - mean[b]).ravel(order="F")
        assert result[b] == pytest.approx(d @ np.linalg.solve(np.kron(v, u[b]), d), rel=1e-10)
    np.testing.assert_allclose(result, reference.mahalanobis(x, mean, u, v), rtol=1e-10)
    np.testing.assert_allclose(fm.mahalanobis(x, None, u, v), fm.mahalanobis(x, np.zeros((n, p)), u, v))


def bad_batch(rng):
    m1, m2 = rng.standard_normal((2, 6, 3, 2))
    return [m1, spd(rng, (6,), 3), spd(rng, (6,), 2), m2, spd(rng, (6,), 3), spd(rng, (6,), 2)]


NAMES = ["mean1", "rowcov1", "colcov1", "mean2", "rowcov2", "colcov2"]


@pytest.mark.parametrize("slot", [1, 2, 4, 5])
def test_not_positive_definite_names_argument_and_index(rng, slot):
    args = bad_batch(rng)
    args[slot][4] = -np.eye(args[slot].shape[-1])
    args[slot][5] = -np.eye(args[slot].shape[-1])
    copies = [a.copy() for a in args]
    with pytest.raises(LinAlgError, match=rf"{NAMES[slot]} is not positive definite .* at batch index 4$"):
        fm.kl(*args)
    result = fm.kl(*args, errors="nan")
    assert np.isnan(result[4:]).all()
    good = [a[:4] for a in args]
    np.testing.assert_allclose(result[:4], reference.kl(*good), rtol=1e-10)
    for a, c in zip(args, copies):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [4, 16, 24])
def test_a_singular_covariance_is_named_never_reported_as_an_overflow(dtype, n):
    """A covariance of rank ``n − 1`` passes the pivot rule within rounding or is named as not
    positive definite, with its batch index in a batch: never "the result overflowed". The
    report factorises again in another arithmetic than the kernel's (no fused multiply-adds,
    or not LAPACK's blocked order at 24×24), where a pivot on the rule's floor can pass; the
    first 4×4 here was reported as an overflow."""
    rng = np.random.default_rng(18)
    batch = np.empty((30, n, n), dtype)
    for k in range(len(batch)):
        g = rng.standard_normal((n, n - 1))
        batch[k] = g @ g.T
        for name, call in [("a", lambda: fm.logdet(batch[k])),
                           ("rowcov1", lambda: fm.kl(np.zeros((n, 2), dtype), batch[k], np.eye(2, dtype=dtype)))]:
            try:
                assert np.isfinite(call())
            except LinAlgError as error:
                assert str(error) == f"{name} is not positive definite (Cholesky failed)"
    failing = np.flatnonzero(np.isnan(fm.logdet(batch, errors="nan")))
    if failing.size:
        with pytest.raises(LinAlgError, match=rf"^a is not positive definite \(Cholesky failed\) at batch index "
                                              rf"{failing[0]}$"):
            fm.logdet(batch)


EYE3, EYE2, STACK2 = np.eye(3), np.eye(2), np.broadcast_to(np.eye(2), (6, 2, 2))


@pytest.mark.parametrize("call, message", [
    (lambda m, bad: fm.kl(m, EYE3, EYE2, m, bad, EYE2), "rowcov2 is not positive definite (Cholesky failed)"),
    (lambda m, bad: fm.kl(m, EYE3, EYE2, m, np.where(bad < 0, np.nan, bad), EYE2), "rowcov2 contains NaN or infinity"),
    (lambda m, bad: fm.kl_value_and_grad(m, bad, EYE2, m, EYE3, EYE2),
     "rowcov1 is not positive definite (Cholesky failed)"),
    (lambda m, bad: fm.kl_chol(m, EYE3, EYE2, m, bad, EYE2),
     "rowchol2 is not a Cholesky factor: its diagonal must be positive"),
    (lambda m, bad: fm.kl_diag(m, np.diagonal(bad, axis1=-2, axis2=-1), np.ones(2)), "rowvar1 must be positive"),
    (lambda m, bad: fm.logpdf(m, None, bad, EYE2), "rowcov is not positive definite (Cholesky failed)"),
    (lambda m, bad: fm.entropy(bad, STACK2), "rowcov is not positive definite (Cholesky failed)"),
])
def test_an_argument_without_batch_axes_fails_as_itself(call, message):
    """One matrix that every item shares fails as itself, without a batch index (as the
    distribution classes report it); with batch axes of its own, even of length one, it fails
    at the first item."""
    means = np.zeros((6, 3, 2))
    error = ValueError if "NaN" in message else LinAlgError
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        call(means, -EYE3)
    with pytest.raises(error, match=f"^{re.escape(message)} at batch index 0$"):
        call(means, -EYE3[None])


@pytest.mark.parametrize("slot", range(6))
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_names_argument_and_index(rng, slot, bad):
    args = bad_batch(rng)
    args[slot][2, -1, 0] = bad  # lower triangle of a covariance
    with pytest.raises(ValueError, match=rf"{NAMES[slot]} contains NaN or infinity at batch index 2$"):
        fm.kl(*args)
    result = fm.kl(*args, errors="nan")
    assert np.isnan(result[2]) and np.isfinite(np.delete(result, 2)).all()


def test_multi_dimensional_batch_index(rng):
    args = [a.reshape((2, 3) + a.shape[1:]) for a in bad_batch(rng)]
    args[4][1, 2] = np.diag([1.0, -1.0, 1.0])
    with pytest.raises(LinAlgError, match=r"rowcov2 is not positive definite .* at batch index \(1, 2\)"):
        fm.kl(*args)


def test_first_failure_of_the_batch_is_reported_across_chunks(rng, monkeypatch):
    monkeypatch.setattr(_config, "CHUNK", 2)  # the chunk size is read at each call: 3 chunks of 2 items
    args = bad_batch(rng)
    assert len(fm._batch._driver_arguments(args, 6, np.float64)[1]) == 3
    args[1][5] = -np.eye(3)
    args[4][3] = -np.eye(3)
    with pytest.raises(LinAlgError, match=r"rowcov2 is not positive definite .* at batch index 3$"):
        fm.kl(*args)
    result = fm.kl(*args, errors="nan")
    assert np.isnan(result[[3, 5]]).all() and np.isfinite(result[[0, 1, 2, 4]]).all()



def test_one_chunk_of_enough_work_is_split_over_threads(monkeypatch):
    """A batch of one chunk whose work (items × side³) reaches ``THREADS_MIN_WORK`` (or
    ``THREADS_MIN_GRADIENT_WORK`` with gradients) runs a chunk per thread, with the same bits
    as in one chunk, and its first failure is still the one reported."""
    from fastmvn import _batch, _jit
    from fastmvn._bench import random_pair

    monkeypatch.setattr(_jit, "threads", lambda: 3)
    assert _batch.chunk_count([np.empty((128, 16, 16))], 128, False) == 3      # 128·16³ = 524,288
    assert _batch.chunk_count([np.empty((64, 16, 16))], 64, False) == 1        # 262,144
    assert _batch.chunk_count([np.empty((32, 16, 16))], 32, False, gradients=True) == 3  # 131,072
    assert _batch.chunk_count([np.empty((1, 64, 64))], 1, False) == 1          # one item is not split
    args = list(random_pair(128, 16, 12))
    args[4] = args[4].copy()
    args[4][[100, 120]] = -np.eye(16)                                         # in the last of three chunks
    split = fm.kl(*args, errors="nan"), fm.kl_value_and_grad(*args, errors="nan")
    with pytest.raises(LinAlgError, match=r"rowcov2 is not positive definite .* at batch index 100$"):
        fm.kl(*args)
    monkeypatch.setattr(_config, "THREADS_MIN_WORK", 10 ** 9)
    monkeypatch.setattr(_config, "THREADS_MIN_GRADIENT_WORK", 10 ** 9)
    assert _batch.chunk_count([np.empty((128, 16, 16))], 128, False) == 1
    whole = fm.kl(*args, errors="nan"), fm.kl_value_and_grad(*args, errors="nan")
    np.testing.assert_array_equal(split[0], whole[0])
    assert np.isnan(split[0][[100, 120]]).all() and np.isfinite(np.delete(split[0], [100, 120])).all()
    np.testing.assert_array_equal(split[1][0], whole[1][0])
    for got, want in zip(split[1][1], whole[1][1], strict=True):
        np.testing.assert_array_equal(got, want)

def test_chol_and_diag_failures(rng):
    m = rng.standard_normal((3, 2, 2))
    factor = np.tile(np.eye(2), (3, 1, 1))
    factor[1, 1, 1] = 0.0
    with pytest.raises(LinAlgError, match="colchol2 is not a Cholesky factor: its diagonal must be positive at batch index 1"):
        fm.kl_chol(m, np.eye(2), np.eye(2), m, np.eye(2), factor)
    with pytest.raises(LinAlgError, match="rowchol1 is not a Cholesky factor.* at batch index 1"):
        fm.kl_chol(m, factor, np.eye(2))
    variances = np.ones((3, 2))
    variances[2, 0] = -1.0
    with pytest.raises(LinAlgError, match="rowvar2 must be positive at batch index 2"):
        fm.kl_diag(m, np.ones(2), np.ones(2), m, variances, np.ones(2))
    with pytest.raises(LinAlgError, match="colvar1 must be positive at batch index 2"):
        fm.kl_diag(m, np.ones(2), variances)
    assert np.isnan(fm.kl_diag(m, np.ones(2), variances, errors="nan")[2])
    with pytest.raises(LinAlgError, match="^a is not positive definite"):
        fm.logdet(-np.eye(3))
    with pytest.raises(ValueError, match="b contains NaN or infinity at batch index 1"):
        fm.trace_solve(np.eye(2), [np.eye(2), np.full((2, 2), np.nan)])
    with pytest.raises(LinAlgError, match="colcov is not positive definite"):
        fm.mahalanobis(np.ones((2, 2)), None, np.eye(2), np.zeros((2, 2)))


def test_nan_in_unread_upper_triangle_is_ignored():
    a = np.array([[2.0, np.nan], [0.5, 1.0]])
    assert fm.logdet(a) == pytest.approx(np.log(2.0 - 0.25))


@pytest.mark.parametrize("call, message", [
    (lambda: fm.kl(np.zeros(3), np.eye(3), np.eye(1)), r"mean1 must have at least 2 dimensions \(\.\.\., n, p\); got shape \(3,\)"),
    (lambda: fm.kl(np.zeros((3, 2)), np.eye(2), np.eye(2)), r"rowcov1 has shape \(2, 2\); expected \(\.\.\., 3, 3\)"),
    (lambda: fm.kl(np.zeros((3, 2)), np.eye(3), np.ones((2, 3))), r"colcov1 has shape \(2, 3\); expected \(\.\.\., 2, 2\)"),
    (lambda: fm.kl(np.zeros((3, 2)), np.eye(3), np.eye(2), np.zeros((2, 3))), r"mean2 has shape \(2, 3\)"),
    (lambda: fm.kl_diag(np.zeros((3, 2)), np.ones(2), np.ones(2)), r"rowvar1 has shape \(2,\); expected \(\.\.\., 3\)"),
    (lambda: fm.logdet(np.ones((2, 3))), r"a has shape \(2, 3\); expected \(\.\.\., 2, 2\)"),
    (lambda: fm.kl(np.zeros((4, 3, 2)), np.zeros((5, 3, 3)) + np.eye(3), np.eye(2)),
     r"batch shapes do not broadcast: mean1 \(4,\), rowcov1 \(5,\), colcov1 \(\)"),
    (lambda: fm.kl(np.zeros((0, 2)), np.eye(0), np.eye(2)), r"matrices must be at least 1×1"),
    (lambda: fm.kl(np.zeros((2, 2)), np.eye(2), np.eye(2), errors="ignore"), r"errors must be 'raise' or 'nan'"),
])
def test_shape_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_calls_from_many_threads_under_the_workqueue_threading_layer():
    """Numba's workqueue layer aborts the process on concurrent parallel launches; fastmvn's
    launches take turns under it, so calls from many threads give the right answers."""
    script = ("import threading, numpy as np, numba, fastmvn as fm\n"
              "from fastmvn._bench import random_pair\n"
              "args = random_pair(20_000, 3, 2)\n"
              "expected = fm.kl(*args)\n"
              "results = [None] * 8\n"
              "def run(i):\n"
              "    results[i] = fm.kl(*args)\n"
              "threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]\n"
              "[t.start() for t in threads]; [t.join() for t in threads]\n"
              "assert all(np.array_equal(r, expected) for r in results)\n"
              "print(numba.threading_layer())\n")
    assert run_python(script, NUMBA_THREADING_LAYER="workqueue") == "workqueue"


FORK_SCRIPT = """\
import multiprocessing, os, signal, threading, numba, numpy as np, fastmvn as fm
from fastmvn import _jit
from fastmvn._bench import random_pair
args = random_pair(20_000, 3, 2)                    # 79 chunks of the batch driver
expected = fm.kl(*args)
def compare(_=None):
    return bool(np.array_equal(fm.kl(*args), expected))
held, done = threading.Event(), threading.Event()
def hold():                                         # as a launch or a compilation in another thread holds them
    with _jit._LAUNCH, _jit._BATCHES[0]._lock, _jit._BATCHES[-1]._lock:
        held.set()
        done.wait()
holder = threading.Thread(target=hold)
holder.start()
held.wait()
pid = os.fork()
if pid == 0:
    signal.alarm(120)                               # a child that waits for a lock dies
    free = all(driver._lock.acquire(timeout=5) for driver in _jit._BATCHES)
    os._exit(0 if compare() and free else 3)
done.set()
holder.join()
assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0, "the forked child failed"
with multiprocessing.get_context("fork").Pool(2) as pool:
    assert pool.map(compare, range(2)) == [True, True]
assert compare()                                    # and the parent still computes
print(numba.threading_layer(), numba.get_num_threads())
"""


@pytest.mark.parametrize("threads", [None, "2"])
def test_a_child_forked_after_a_kernel_computes_the_same(threads):
    """GNU OpenMP kills a child forked after its first use; fastmvn loads a fork-safe
    threading layer, so a forked child (os.fork, multiprocessing's fork context) computes,
    even one forked while the parent held the launch lock or a driver's compilation lock."""
    environment = {} if threads is None else {"NUMBA_NUM_THREADS": threads}
    layer, count = run_python(FORK_SCRIPT, **environment).split()
    assert layer in ("tbb", "workqueue")
    if threads is not None:
        assert count == threads


@pytest.mark.parametrize("setting, environment", [
    ("", {"NUMBA_THREADING_LAYER": "omp"}),
    ("", {"NUMBA_THREADING_LAYER_PRIORITY": "omp tbb workqueue"}),
    ("numba.config.THREADING_LAYER = 'omp'\n", {})])
def test_a_threading_layer_the_user_chose_is_kept(setting, environment):
    script = ("import numpy as np, numba, fastmvn as fm\n" + setting +
              "fm.kl(np.zeros((1000, 2, 2)), np.eye(2), np.eye(2))\n"
              "print(numba.threading_layer())\n")
    assert run_python(script, **environment) == "omp"


def test_the_tbb_package_gives_the_tbb_threading_layer():
    """Numba looks for TBB's library by name only, which pip puts off the system's search path;
    fastmvn loads it from the installed ``tbb`` package, so that Numba's TBB layer is used."""
    from importlib import metadata

    try:
        metadata.distribution("tbb")
    except metadata.PackageNotFoundError:
        pytest.skip("the tbb package is not installed")
    script = ("import numpy as np, numba, fastmvn as fm\n"
              "fm.kl(np.zeros((1000, 2, 2)), np.eye(2), np.eye(2))\n"
              "print(numba.threading_layer())\n")
    assert run_python(script) == "tbb"


def test_without_the_tbb_package_nothing_is_loaded(monkeypatch):
    from importlib import metadata

    from fastmvn import _jit

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(_jit, "_TBB_NAMES", {_jit.sys.platform: "libfastmvn-absent.so.0"})
    monkeypatch.setattr(metadata, "distribution", missing)
    assert _jit._load_tbb() is None


def test_kernels_run_as_plain_python_with_numba_disable_jit():
    """``NUMBA_DISABLE_JIT=1`` runs the kernels' own source, the large items' too: the same
    values and the same errors."""
    script = ("import numpy as np, fastmvn as fm\n"
              "from fastmvn import reference\n"
              "from fastmvn._bench import random_pair\n"
              "args = list(random_pair(5, 3, 2))\n"
              "assert np.allclose(fm.kl(*args), reference.kl(*args), rtol=1e-12)\n"
              "large = random_pair(1, 40, 37)  # the plan for large items: LAPACK through ctypes\n"
              "assert np.allclose(fm.kl(*large), reference.kl(*large), rtol=1e-12)\n"
              "x, u, v, a = np.ones((14, 12)), np.eye(14), 2 * np.eye(12), np.diag(np.arange(1.0, 15.0))\n"
              "kron = fm.logpdf_kron_sum(x, None, u, v, a, 0.5)  # one LAPACK call per item, tridiagonal\n"
              "assert np.allclose(kron, reference.logpdf_kron_sum(x, None, u, v, a, 0.5), rtol=1e-12)\n"
              "value, grads = fm.kl_chol_value_and_grad(args[0], np.linalg.cholesky(args[1]), np.eye(2))\n"
              "assert grads[1].shape == (5, 3, 3)\n"
              "args[4] = args[4].copy(); args[4][2] = -np.eye(3)\n"
              "try:\n"
              "    fm.kl(*args)\n"
              "except np.linalg.LinAlgError as error:\n"
              "    print(error)\n")
    message = run_python(script, NUMBA_DISABLE_JIT="1")
    assert message == "rowcov2 is not positive definite (Cholesky failed) at batch index 2"


def with_launches(monkeypatch, call):
    """What ``call()`` returns and the shape of the results of each ``_batch.evaluate_grad``
    it made (the whole call's first, then each launch of a layout that cannot be merged)."""
    from fastmvn import _batch

    launches = []
    original = _batch.evaluate_grad

    def counting(mode, slots, out, *rest):
        launches.append(out.shape)
        return original(mode, slots, out, *rest)

    monkeypatch.setattr(_batch, "evaluate_grad", counting)
    try:
        return call(), launches
    finally:
        monkeypatch.setattr(_batch, "evaluate_grad", original)


@pytest.mark.parametrize("block_bytes, expected", [
    (None, [(300, 3)] * 2),                              # one block of every row, the prior copied out
    (100 * 3 * 16 * 8, [(300, 3)] + [(100, 3)] * 3),     # blocks of 100 rows
    (1000, [(300, 3)] + [(300,)] * 3),                   # 150 blocks would be more launches than 3 components
])
def test_prior_per_component_runs_in_blocks_of_rows_or_per_component(rng, monkeypatch, block_bytes, expected):
    """A prior per mixture component, ``(components, n, n)`` against means of shape
    ``(batch, components, n, p)``, cannot merge its batch axes: it runs in blocks of rows with
    the prior copied once into a block's worth, or, where that would take more launches, one
    launch per component; either way with the bits, gradients and first failure of the
    copied-out batch."""
    if block_bytes is not None:
        monkeypatch.setattr(_config, "BROADCAST_BLOCK_BYTES", block_bytes)
    mean = rng.standard_normal((300, 3, 4, 2))
    prior = spd(rng, (3,), 4)
    copied = np.broadcast_to(prior, (300, 3, 4, 4)).copy()
    eye4, eye2 = np.eye(4), np.eye(2)
    value, launches = with_launches(monkeypatch, lambda: fm.kl(mean, eye4, eye2, None, prior, None))
    assert launches == expected
    np.testing.assert_array_equal(value, fm.kl(mean, eye4, eye2, None, copied, None))
    value, grads = fm.kl_value_and_grad(mean, eye4, eye2, None, prior, None)
    expected_value, expected_grads = fm.kl_value_and_grad(mean, eye4, eye2, None, copied, None)
    np.testing.assert_array_equal(value, expected_value)
    np.testing.assert_array_equal(grads[0], expected_grads[0])
    np.testing.assert_allclose(grads[4], expected_grads[4].sum(axis=0), rtol=1e-12)
    late = mean.copy()
    late[250, 1, 0, 0] = np.nan                                     # flat 751, in the last block of 100 rows
    with pytest.raises(ValueError, match=r"^mean1 contains NaN or infinity at batch index \(250, 1\)$"):
        fm.kl(late, eye4, eye2, None, prior, None)
    broken = prior.copy()
    broken[2] = -eye4                                               # fails (i, 2) for every i
    mean[5, 0, 0, 0] = np.nan                                       # fails (5, 0), flat 15
    with pytest.raises(LinAlgError, match=r"^rowcov2 is not positive definite \(Cholesky failed\) "
                                          r"at batch index \(0, 2\)$"):   # flat 2, in the last launch per component
        fm.kl(mean, eye4, eye2, None, broken, None)
    mean[0, 1, 0, 0] = np.inf                                       # flat 1
    with pytest.raises(ValueError, match=r"^mean1 contains NaN or infinity at batch index \(0, 1\)$"):
        fm.kl_value_and_grad(mean, eye4, eye2, None, broken, None)
    value = fm.kl(mean, eye4, eye2, None, broken, None, errors="nan")
    np.testing.assert_array_equal(value, fm.kl(mean, eye4, eye2, None, np.broadcast_to(broken, copied.shape).copy(),
                                               None, errors="nan"))


def test_a_layout_that_loops_along_the_first_axis_copies_nothing(rng, monkeypatch):
    """Means of shape ``(3, batch, n, p)`` against a prior per item of the second axis,
    ``(batch, n, n)``: one launch per entry of the first axis reads contiguous rows, so the
    prior is not copied into blocks."""
    mean, prior, eye4 = rng.standard_normal((3, 50, 4, 4)), spd(rng, (50,), 4), np.eye(4)
    value, launches = with_launches(monkeypatch, lambda: fm.kl(mean, eye4, eye4, None, prior, None))
    assert launches == [(3, 50)] + [(50,)] * 3
    np.testing.assert_array_equal(value, fm.kl(mean, eye4, eye4, None, np.broadcast_to(prior, mean.shape).copy(), None))


@pytest.mark.parametrize("call, name", [
    (lambda: fm.kl(None, np.eye(2), np.eye(2)), "mean1"),
    (lambda: fm.kl(np.zeros((2, 2)), None, np.eye(2)), "rowcov1"),
    (lambda: fm.kl_chol(None, np.eye(2), np.eye(2)), "mean1"),
    (lambda: fm.entropy(None, np.eye(2)), "rowcov"),
    (lambda: fm.entropy(np.eye(2), None), "colcov"),
    (lambda: fm.logpdf(None, np.zeros((2, 2)), np.eye(2), np.eye(2)), "x"),
    (lambda: fm.logpdf(np.zeros((2, 2)), np.zeros((2, 2)), None, np.eye(2)), "rowcov"),
])
def test_a_required_argument_given_none_is_named_as_none(call, name):
    with pytest.raises(TypeError, match=rf"^{name} is None; expected an array of real numbers$"):
        call()


def test_arguments_that_may_be_none_still_accept_it():
    x, rowcov, colcov = np.array([[0.5, -1.0], [2.0, 0.0]]), np.eye(2) + 0.5, 2 * np.eye(2)
    assert fm.kl(x, rowcov, colcov, None, None, None) == pytest.approx(fm.kl(x, rowcov, colcov, np.zeros((2, 2)),
                                                                             np.eye(2), np.eye(2)))
    assert fm.logpdf(x, None, rowcov, colcov) == pytest.approx(fm.logpdf(x, np.zeros((2, 2)), rowcov, colcov))
