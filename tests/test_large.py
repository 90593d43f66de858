"""The plan for large items (``fastmvn._large``): LAPACK one item at a time, against the lane
kernels and the reference on both sides of the threshold, with the same errors."""

import functools
import os
import sys

import numpy as np
import pytest
from conftest import lanes_for_all, lapack_for_all, run_python
from numpy.linalg import LinAlgError

import fastmvn as fm
from fastmvn import _config, _jit, _large, _modes, reference
from fastmvn._bench import CASES, random_inputs
from fastmvn._table import FUNCTIONS

#: The cases with a kernel mode (pdf and entropy are composed from them).
KERNEL_CASES = [case for case in CASES if not case.startswith(("pdf", "entropy"))]


def _arena(size=0):
    """An arena (``fastmvn._lapack.matrix``) with a buffer of ``size`` numbers."""
    from fastmvn import _lapack

    return _lapack.arena(np.empty(size))


def function(case):
    return getattr(fm, "kl" if case == "kl_standard" else case)


def test_the_plan_by_side_and_batch():
    """Few large items take LAPACK, many small ones the lanes; from a larger side any batch takes
    LAPACK, and values with gradients take it at smaller sides and larger batches than values."""
    def chosen(side, count, gradients=False):
        return _large.chosen([np.empty((side, side))], count, gradients)

    assert not chosen(_config.LAPACK_MIN_SIDE - 1, 1) and chosen(_config.LAPACK_MIN_SIDE, 1)
    assert chosen(16, 1, gradients=True) and not chosen(_config.LAPACK_GRADIENT_MIN_SIDE - 1, 1, gradients=True)
    assert chosen(32, 7) and not chosen(32, 8) and chosen(24, 9, gradients=True) and not chosen(24, 10, True)
    assert not chosen(36, 1000) and chosen(36, 1000, gradients=True)
    assert chosen(_config.LAPACK_GRADIENT_ALL_SIDE, 10 ** 6, True)
    assert not chosen(_config.LAPACK_GRADIENT_ALL_SIDE - 1, 10 ** 6, True)
    assert chosen(_config.LAPACK_ALL_SIDE, 10 ** 6) and not chosen(_config.LAPACK_ALL_SIDE - 1, 10 ** 6)


@pytest.fixture
def large(monkeypatch):
    lapack_for_all(monkeypatch)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES)
def test_large_path_agrees_with_lanes_and_reference(case, dtype, monkeypatch):
    args = random_inputs(case, 9, 5, 3, dtype)
    lanes = function(case)(*args)
    lapack_for_all(monkeypatch)
    result = function(case)(*args)
    assert result.dtype == lanes.dtype == dtype and result.shape == (9,)
    # float32 data of these sizes is computed in float32 in lanes, in float64 on this path
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(result, lanes, rtol=tolerance, atol=tolerance)
    expected = getattr(reference, "kl" if case == "kl_standard" else case)(*args)
    np.testing.assert_allclose(result, expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("case", ["kl", "kl_chol", "kl_diag", "logpdf", "logpdf_diag", "mahalanobis_chol",
                                  "trace_solve"])
def test_large_items_against_reference(case):
    """Two items of 40 rows: on the large path unpatched."""
    args = random_inputs(case, 2, 40, 7)
    assert _large.chosen([np.asarray(a) for a in args if np.ndim(a) == 3], 2)
    np.testing.assert_allclose(function(case)(*args), getattr(reference, case)(*args), rtol=1e-10)


def test_large_trace_solve_is_exact_to_rounding():
    """``tr(a⁻¹ b)`` of one 48×48 item (the plan for large items: from ``a⁻¹``) for
    ``a = L Lᵀ``, ``L = I + ½·(subdiagonal)``, whose inverse is exact in binary fractions, and a
    ``b`` that is not symmetric: against the exact trace in rational arithmetic."""
    from fractions import Fraction

    n = 48
    factor = np.eye(n) + 0.5 * np.eye(n, k=-1)
    a = factor @ factor.T
    b = np.random.default_rng(0).integers(-3, 4, (n, n)).astype(float)
    assert _large.chosen([a[None], b[None]], 1)
    factor_inverse = [[Fraction(-1, 2) ** (i - j) if i >= j else Fraction(0) for j in range(n)] for i in range(n)]
    exact = sum(factor_inverse[k][i] * factor_inverse[k][j] * int(b[j, i])
                for i in range(n) for j in range(n) for k in range(max(i, j), n))
    assert fm.trace_solve(a, b) == pytest.approx(float(exact), rel=1e-14)
    assert fm.trace_solve(a, b.T) == pytest.approx(float(exact), rel=1e-14)  # tr(a⁻¹ bᵀ) = tr(b a⁻¹)


def test_large_path_errors_name_argument_and_index(large):
    args = list(random_inputs("kl", 6, 4, 3))
    args[4][3] = -np.eye(4)
    args[1][5] = -np.eye(4)
    with pytest.raises(LinAlgError, match=r"^rowcov2 is not positive definite \(Cholesky failed\) at batch index 3$"):
        fm.kl(*args)
    result = fm.kl(*args, errors="nan")
    assert np.isnan(result[[3, 5]]).all() and np.isfinite(np.delete(result, [3, 5])).all()
    chol = list(random_inputs("kl_chol", 6, 4, 3))
    chol[2][2, 1, 1] = 0.0
    with pytest.raises(LinAlgError, match=r"^colchol1 is not a Cholesky factor: its diagonal must be positive "
                                          r"at batch index 2$"):
        fm.kl_chol(*chol)
    diag = list(random_inputs("kl_diag", 6, 4, 3))
    diag[5][4, 0] = -1.0
    with pytest.raises(LinAlgError, match=r"^colvar2 must be positive at batch index 4$"):
        fm.kl_diag(*diag)
    x = list(random_inputs("logpdf", 6, 4, 3))
    x[0][1, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"^x contains NaN or infinity at batch index 1$"):
        fm.logpdf(*x)


@pytest.mark.parametrize("n", [14, 16])
def test_float32_items_computed_in_float32_keep_to_it_with_gradients(n):
    """float32 items up to ``FLOAT32_ARITHMETIC_MAX_SIDE`` are computed in float32 in lanes, and
    asking for gradients does not move one to the plan for large items, which computes in
    float64: ``kl_value_and_grad``'s value is ``kl``'s to the bit, for one item and in a batch,
    and a covariance ``kl`` finds singular in float32 it finds singular too."""
    args = [a.astype(np.float32) for a in random_inputs("kl", 1, n, n)]
    value = fm.kl(*args)
    for batch in (1, 8):
        batched = [np.repeat(a, batch, axis=0) for a in args]
        np.testing.assert_array_equal(fm.kl_value_and_grad(*batched)[0], np.repeat(value, batch))
    rng = np.random.default_rng(0)
    mean, colcov = np.zeros((1, n, 2), np.float32), np.eye(2, dtype=np.float32)
    rejected = 0
    for _ in range(10):
        q = np.linalg.qr(rng.standard_normal((n, n)))[0]
        rowcov = ((q * np.logspace(0, 8, n)) @ q.T).astype(np.float32)[None]  # condition number 1e8
        if not np.isnan(fm.kl(mean, rowcov, colcov, errors="nan")).all():
            continue
        rejected += 1
        with pytest.raises(LinAlgError, match=r"^rowcov1 is not positive definite \(Cholesky failed\)"):
            fm.kl_value_and_grad(mean, rowcov, colcov)
        assert np.isnan(fm.logpdf_value_and_grad(mean, None, rowcov, colcov, errors="nan")[0]).all()
    assert rejected


def test_large_path_singular_pivot_and_unread_triangle(large):
    """The kernels' rules: a rank-one covariance is singular; the upper triangle is not read."""
    rank_one = np.array([[2.0, 1.0], [1.0, 0.5]])
    with pytest.raises(LinAlgError, match=r"^rowcov is not positive definite \(Cholesky failed\)$"):
        fm.logpdf(np.zeros((2, 2)), None, rank_one, np.eye(2))
    u = np.array([[2.0, np.nan], [0.5, 1.0]])                         # NaN above the diagonal: unread
    assert np.isfinite(fm.logdet(u))
    np.testing.assert_allclose(fm.logdet(u), np.log(2.0 - 0.25), rtol=1e-14)


def test_large_path_out_and_broadcasting(large, monkeypatch):
    """``out=`` and a prior broadcast over axes that cannot be merged, as in lanes."""
    mean = np.random.default_rng(0).standard_normal((4, 3, 5, 2))
    prior = random_inputs("kl", 3, 5, 2)[3:]                           # one prior per middle index
    prior = [a[None] for a in prior]                                   # (1, 3, …): (4, 3) batch
    out = np.empty((4, 3))
    result = fm.kl(mean, np.eye(5), np.eye(2), *prior, out=out)
    assert result is out
    monkeypatch.setattr(_config, "LAPACK_MIN_SIDE", 10_000)
    np.testing.assert_allclose(out, fm.kl(mean, np.eye(5), np.eye(2), *prior), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("standard", [False, True], ids=["pair", "standard"])
@pytest.mark.parametrize("case", ["kl", "kl_chol", "kl_diag"])
def test_large_gradients_agree_with_lanes(case, standard, dtype, monkeypatch):
    args = random_inputs(case, 7, 5, 3, dtype)
    args = args[:3] if standard else args[:3] + tuple(a[:1] for a in args[3:])   # a shared second distribution
    gradient = getattr(fm, f"{case}_value_and_grad")
    value, grads = gradient(*args)
    lapack_for_all(monkeypatch)
    large_value, large_grads = gradient(*args)
    tolerance = 1e-4 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(large_value, value, rtol=tolerance, atol=tolerance)
    for got, want in zip(large_grads, grads, strict=True):
        assert (got is None) == (want is None)
        if want is not None:
            assert got.dtype == want.dtype == dtype and got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance * np.abs(want).max())


def test_large_gradients_wrt_upper_and_failures(large):
    import scipy.linalg

    args = list(random_inputs("kl_chol", 5, 4, 3))
    upper = [a if k % 3 == 0 else np.array([scipy.linalg.cholesky(f @ f.T) for f in a]) for k, a in enumerate(args)]
    value, grads = fm.kl_chol_value_and_grad(*upper, lower=False, wrt=("rowchol2",))
    assert [g is None for g in grads] == [True, True, True, True, False, True]
    assert np.all(np.tril(grads[4], -1) == 0)
    upper[4][2] = -upper[4][2]
    with pytest.raises(LinAlgError, match=r"^rowchol2 is not a Cholesky factor: its diagonal must be positive "
                                          r"at batch index 2$"):
        fm.kl_chol_value_and_grad(*upper, lower=False)
    value, grads = fm.kl_chol_value_and_grad(*upper, lower=False, errors="nan")
    assert np.isnan(value[2]) and np.isnan(grads[0][2]).all() and np.isfinite(np.delete(grads[0], 2, axis=0)).all()


@pytest.mark.parametrize("case", ["kl_chol", "logpdf_chol", "kl", "logpdf"])
def test_large_gradients_in_several_blocks_agree_with_lanes(case, monkeypatch):
    """Items of 200×130 (three and two blocks of columns, ``_config.TRIANGULAR_BLOCKS``): the
    factor gradients made as lower triangles in blocks, and the others, against the lanes;
    each gradient alone (``wrt=``) the same bits as all of them."""
    args = [a[0] for a in random_inputs(case, 1, 200, 130)]
    assert _large.chosen([a if a.ndim == 2 else a[:, None] for a in args], 1, gradients=True)
    gradient = getattr(fm, f"{case}_value_and_grad")
    value, grads = gradient(*args)
    names = [p.name for p in FUNCTIONS[case].params]
    for k, name in enumerate(names):
        np.testing.assert_array_equal(gradient(*args, wrt=(name,))[1][k], grads[k])
    if case.endswith("_chol"):
        assert all(not np.triu(g, 1).any() for g, name in zip(grads, names) if "chol" in name)
    lanes_for_all(monkeypatch)
    lane_value, lane_grads = gradient(*args)
    np.testing.assert_allclose(value, lane_value, rtol=1e-11)
    for got, want in zip(grads, lane_grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11 * np.abs(want).max())


@pytest.mark.parametrize("case", ["kl", "kl_chol"])
def test_large_gradients_against_finite_differences(case):
    """Above the threshold, unpatched: the gradient of the mean and of a covariance (or factor)
    against central differences of the value."""
    args = [np.asarray(a, dtype=np.float64) for a in random_inputs(case, 1, 40, 3)]
    args = [a[0] for a in args]
    assert _large.chosen([a if a.ndim == 2 else a[:, None] for a in args], 1)
    value, grads = getattr(fm, f"{case}_value_and_grad")(*args)
    rng = np.random.default_rng(1)
    for k in (0, 4):
        direction = rng.standard_normal(args[k].shape)
        if k == 4:
            direction = np.tril(direction) if case == "kl_chol" else direction + direction.T
        step = 1e-6 * np.abs(args[k]).max()
        shifted = [list(args), list(args)]
        shifted[0][k], shifted[1][k] = args[k] + step * direction, args[k] - step * direction
        numeric = (function(case)(*shifted[0]) - function(case)(*shifted[1])) / (2 * step)
        analytic = np.sum(grads[k] * direction)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_large_diagonal_quadratic_form(dtype):
    """The quadratic form of diagonal covariances in one read of the means, for contiguous and
    transposed (non-contiguous) means."""
    args = [np.asarray(a[0]) for a in random_inputs("kl_diag", 1, 45, 38, dtype)]
    transposed = [np.ascontiguousarray(args[0].T).T, *args[1:3], np.ascontiguousarray(args[3].T).T, *args[4:]]
    assert _large.chosen([a if a.ndim == 2 else a[:, None] for a in args], 1)
    for given in (args, transposed):
        np.testing.assert_allclose(fm.kl_diag(*given), reference.kl_diag(*args),
                                   rtol=1e-12 if dtype == np.float64 else 1e-6)
    bad = list(args)
    bad[3] = args[3].copy()
    bad[3][7, 5] = np.nan
    with pytest.raises(ValueError, match="^mean2 contains NaN or infinity"):
        fm.kl_diag(*bad)
    assert np.isnan(fm.kl_diag(*bad, errors="nan"))


def test_an_arena_gives_out_its_buffer_then_new_memory():
    """Matrices come from the arena's buffer, each on a 64-byte line after the last, while they
    fit; then from new memory; the arena counts every number asked for."""
    from fastmvn import _lapack

    arena = _arena(20)
    first, second, third = (_lapack.matrix(arena, 2, 3) for _ in range(3))
    assert np.shares_memory(first, arena[0][:6]) and np.shares_memory(second, arena[0][8:14])
    assert not np.shares_memory(third, arena[0]) and third.shape == (2, 3) and third.flags.c_contiguous
    assert arena[1].tolist() == [16, 24]
    copy = _lapack.copied(_arena(), np.arange(6.0).reshape(3, 2))
    np.testing.assert_array_equal(copy, np.arange(6.0).reshape(3, 2))


@pytest.mark.parametrize("case", ["kl", "kl_chol", "logpdf", "logpdf_chol", "logdet", "trace_solve"])
def test_large_items_take_their_scratch_from_an_arena(case, large, monkeypatch):
    """The first call of a large item records the scratch it asked for (for a KL of
    covariances: its four factors, the whitened mean difference and ``L2⁻¹L1``, ``Q2⁻¹Q1``);
    later calls take it from one buffer of the pool, with results equal bit for bit, and so do
    calls whose buffer has room for part of it only; values and gradients alike, beside an item
    that fails part of the way through (NaN)."""
    from fastmvn import _pool

    n, p = 9, 6
    args = list(random_inputs(case, 3, n, p))
    cov = {"kl": 1, "kl_chol": 1, "logpdf": 2, "logpdf_chol": 2, "logdet": 0, "trace_solve": 0}[case]
    args[cov] = args[cov].copy()
    args[cov][1] = -args[cov][1]                         # item 1 fails at its first factor
    function = functools.partial(getattr(fm, case), errors="nan")
    gradient = getattr(fm, f"{case}_value_and_grad", None)
    gradient = gradient and functools.partial(gradient, errors="nan")
    monkeypatch.setattr(_large, "_ASKED", {})
    first = function(*args), gradient and gradient(*args)
    assert np.isnan(first[0][1]) and np.isfinite(first[0][[0, 2]]).all()
    asked = dict(_large._ASKED)
    assert len(asked) == (2 if gradient else 1) and all(size > 0 for size in asked.values())
    if case == "kl":
        pad = lambda size: size + -size % 8  # noqa: E731
        assert asked[(_modes.KL_COV, (n, p), (n, n), (p, p), (n, p), (n, n), (p, p))] == (
            3 * pad(n * n) + 3 * pad(p * p) + pad(n * p))
    taken, empty = [], _pool.empty

    def counted(shape, *rest, **options):
        if len(shape) == 1:  # an arena's buffer, not a gradient
            taken.append(shape)
        return empty(shape, *rest, **options)

    monkeypatch.setattr(_pool, "empty", counted)
    monkeypatch.setattr(_config, "ARENA_MIN_BYTES", 0)
    for scale in (1, 0.5):
        monkeypatch.setattr(_large, "_ASKED", {key: int(size * scale) for key, size in asked.items()})
        again = function(*args), gradient and gradient(*args)
        np.testing.assert_array_equal(again[0], first[0])
        if gradient:
            np.testing.assert_array_equal(again[1][0], first[1][0])
            for got, want in zip(again[1][1], first[1][1], strict=True):
                np.testing.assert_array_equal(got, want)
    assert sorted(taken) == sorted((int(size * scale),) for scale in (1, 0.5) for size in asked.values())


@pytest.mark.parametrize("case", ["kl", "kl_chol"])
def test_large_kl_of_equal_means(case, monkeypatch):
    """Equal means skip the whitening of their difference (zero): values as the reference's,
    values and gradients as the lanes' (which whiten it)."""
    args = list(random_inputs(case, 3, 7, 5))
    args[3] = args[0].copy()
    lanes = getattr(fm, case)(*args), getattr(fm, f"{case}_value_and_grad")(*args)
    lapack_for_all(monkeypatch)
    value, (value_too, grads) = getattr(fm, case)(*args), getattr(fm, f"{case}_value_and_grad")(*args)
    np.testing.assert_allclose(value, getattr(reference, case)(*args), rtol=1e-11)
    np.testing.assert_allclose(value, lanes[0], rtol=1e-11)
    np.testing.assert_allclose(value_too, value, rtol=1e-12)  # from the traces of U2⁻¹L1: other roundings
    for got, want in zip(grads, lanes[1][1], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)
    assert not grads[0].any() and not grads[3].any()


@pytest.mark.parametrize("n, blocks", [(63, 1), (130, 2), (200, 3), (451, 6), (7, 3)])
def test_blocked_triangular_solve(n, blocks):
    """``L2⁻¹ L1`` in blocks of columns is the whole solve's result (more blocks than rows'
    worth included: a block may be empty)."""
    import scipy.linalg

    from fastmvn import _lapack

    rng = np.random.default_rng(n)
    l1, l2 = (np.linalg.cholesky(fm.testing.random_spd(rng, (), n)) for _ in range(2))
    expected = scipy.linalg.solve_triangular(l2, l1, lower=True)
    got = _lapack.solve_lower(_arena(), l2, l1, blocks)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
    assert not np.triu(got, 1).any()


def test_large_kl_with_blocked_solves_against_reference():
    args = random_inputs("kl", 1, 200, 130)
    np.testing.assert_allclose(fm.kl(*args), reference.kl(*args), rtol=1e-11)


def _blas_threads_seen():
    from threadpoolctl import threadpool_info

    return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


def _recorded(monkeypatch):
    """The compiled calls of the large items from now on, each as ``(runs, parallel, BLAS threads
    seen at the call)``."""
    lapack, terms = _large._linalg()
    calls = []

    class Recorded:
        KRON_SUM = terms.KRON_SUM

        @staticmethod
        def items_serial(*arguments):
            calls.append((arguments[-4], False, _blas_threads_seen()))
            terms.items_serial(*arguments)

        @staticmethod
        def items_batch(*arguments):
            calls.append((arguments[-4], True, _blas_threads_seen()))
            terms.items_batch(*arguments)

    monkeypatch.setattr(_large, "_linalg", lambda: (lapack, Recorded))
    return calls


@pytest.mark.parametrize("side, count, one_thread, workers", [
    (40, 2, True, 1),                                     # little work: one item after another, one BLAS thread
    (_config.BLAS_THREADS_MIN_SIDE, 1, False, 1),         # one item: the BLAS library's threads
    (64, 3, True, 3),                                     # several mid-sized items: split, one BLAS thread each
    (_config.ITEM_THREADS_MAX_SIDE, 2, False, 1)])        # several large items: in turn, BLAS threads
def test_threads_serve_one_item_or_many(side, count, one_thread, workers, monkeypatch):
    """Items run split over threads or with the BLAS library's threads, never both, in one
    compiled call (parallel where split); the BLAS setting is restored after the call."""
    pytest.importorskip("threadpoolctl")
    from threadpoolctl import threadpool_limits

    monkeypatch.setattr(_jit, "threads", lambda: 4)
    assert _large._threads(count, side, False) == (workers, one_thread)
    calls = _recorded(monkeypatch)
    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads_seen()
        np.testing.assert_allclose(fm.logdet(np.eye(side)[None].repeat(count, axis=0) * 2),
                                   side * np.log(2), rtol=1e-12)
        assert _blas_threads_seen() == before
    assert calls == [(workers, workers > 1, {1} if one_thread else before)]


def test_the_diagonal_modes_leave_blas_threads_alone(monkeypatch):
    """The diagonal KL and log-density call neither BLAS nor LAPACK: their values and gradients
    are one compiled call over the items (``diagonal_batch``, ``diagonal_grad_batch``), never
    the plan for large items, which limits BLAS to one thread for items of their size (a limit
    set and restored took about 25 µs a call)."""
    entered = []

    class Recorded:
        def __enter__(self):
            entered.append(True)

        def __exit__(self, *exc):
            pass

    monkeypatch.setattr(_large, "_ONE_BLAS_THREAD", Recorded())
    calls = _recorded(monkeypatch)
    diagonal, full = random_inputs("kl_diag", 2, 40, 30), random_inputs("kl", 2, 40, 30)
    points = random_inputs("logpdf_diag", 2, 40, 30)
    assert _large._threads(2, 40, False) == (1, True)
    np.testing.assert_allclose(fm.kl_diag(*diagonal), reference.kl_diag(*diagonal), rtol=1e-12)
    fm.kl_diag(*diagonal[:3])
    np.testing.assert_allclose(fm.logpdf_diag(*points), reference.logpdf_diag(*points), rtol=1e-12)
    fm.kl_diag_value_and_grad(*diagonal)
    fm.kl_diag_value_and_grad(*diagonal[:3])
    fm.logpdf_diag_value_and_grad(*points)
    assert entered == [] and calls == []
    fm.kl(*full)
    assert entered == [True] and [call[:2] for call in calls] == [(1, False)]


def test_one_blas_thread_is_restored_after_overlapping_calls(monkeypatch):
    """Two threads inside the one-BLAS-thread context at once: the limit is set when the first
    enters and restored when the last leaves, whichever order they leave in."""
    import threading

    events = []

    class Library:
        def get_num_threads(self):
            return 4

        def set_num_threads(self, threads):
            events.append(("set", threads))

    context = _large._OneBlasThread()
    monkeypatch.setattr(context, "_libraries", [Library()])
    entered, leave_first = threading.Barrier(2), threading.Event()

    def first():
        with context:
            entered.wait()
        leave_first.set()

    def second():
        with context:
            entered.wait()
            leave_first.wait()
            events.append("second still inside")

    threads = [threading.Thread(target=f) for f in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert events == [("set", 1), "second still inside", ("set", 4)]


@pytest.mark.parametrize("case", ["kl", "logpdf", "logdet"])
def test_items_split_over_threads_equal_one_after_another(case, large, monkeypatch):
    """Items split over threads in contiguous runs (three runs here, whatever the machine's
    threads) give the results of one thread, bit for bit, values and gradients; the error
    names the first failing item even where a later run fails too."""
    args = list(random_inputs(case, 7, 5, 3))
    cov = {"kl": 1, "logpdf": 2, "logdet": 0}[case]                # a 5×5 row covariance
    args[cov] = args[cov].copy()
    args[cov][[4, 6]] = -args[cov][[4, 6]]                 # items 4 and 6 fail: in the second and third runs
    function = getattr(fm, case)
    gradient = getattr(fm, f"{case}_value_and_grad", None)
    one = function(*args, errors="nan"), gradient and gradient(*args, errors="nan")
    monkeypatch.setattr(_config, "THREADS_MIN_WORK", 1)
    monkeypatch.setattr(_config, "THREADS_MIN_GRADIENT_WORK", 1)
    monkeypatch.setattr(_jit, "threads", lambda: 3)
    assert _large._threads(7, 5, False) == _large._threads(7, 5, True) == (3, True)
    calls = _recorded(monkeypatch)
    split = function(*args, errors="nan"), gradient and gradient(*args, errors="nan")
    assert [call[:2] for call in calls] == [(3, True)] * (2 if gradient else 1)
    np.testing.assert_array_equal(split[0], one[0])
    assert np.isnan(split[0][[4, 6]]).all() and np.isfinite(np.delete(split[0], [4, 6])).all()
    if gradient:
        for got, want in zip(split[1][1], one[1][1], strict=True):
            np.testing.assert_array_equal(got, want)
    with pytest.raises(LinAlgError, match=r"at batch index 4$"):
        function(*args)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_split_items_after_a_fork():
    """Items split over Numba's threads (one parallel compiled call) compute in a child forked
    after such a call, under fastmvn's fork-safe threading layer."""
    script = ("import os, numpy as np, fastmvn as fm\n"
              "from fastmvn import _config, _large\n"
              "_config.THREADS_MIN_WORK = _config.LAPACK_MIN_SIDE = _config.LAPACK_ALL_SIDE = 1\n"
              "a, want = np.eye(5) * np.arange(1.0, 9.0)[:, None, None], 5 * np.log(np.arange(1.0, 9.0))\n"
              "assert _large._threads(8, 5, False) == (2, True) and np.allclose(fm.logdet(a), want)\n"
              "pid = os.fork()\n"
              "if pid == 0:\n"
              "    os._exit(0 if np.allclose(fm.logdet(a), want) else 1)\n"
              "print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n")
    assert run_python(script, timeout=120, NUMBA_NUM_THREADS="2") == "0"


@pytest.mark.parametrize("n, m", [(7, 5), (1, 3), (40, 1), (33, 18)])
def test_lapack_routines_against_scipy(n, m):
    """fastmvn._lapack calls SciPy's own routines from compiled code on C-ordered matrices: each
    helper against SciPy or NumPy, failures reported."""
    import scipy.linalg

    from fastmvn import _lapack

    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, n))
    spd, b, b2 = x @ x.T + n * np.eye(n), rng.standard_normal((n, m)), rng.standard_normal((m, n))
    chol = np.empty((n, n))
    assert _lapack.cholesky(spd, chol)
    close = dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(chol, np.linalg.cholesky(spd), **close)
    assert not np.triu(chol, 1).any()
    for transposed in (False, True):
        got = b.copy()
        _lapack.solve(chol, got, transposed)
        np.testing.assert_allclose(got, scipy.linalg.solve_triangular(chol, b, lower=True, trans=int(transposed)),
                                   **close)
        got = b2.copy()
        _lapack.solve_right(chol, got, transposed)
        np.testing.assert_allclose(got, b2 @ np.linalg.inv(chol.T if transposed else chol), **close)
    inverse, defined = _lapack.inverse(_arena(), chol)
    assert defined
    np.testing.assert_allclose(inverse, np.linalg.inv(spd), **close)
    lower_inverse = np.full((n, n), np.nan)
    assert _lapack.lower_inverse(lower_inverse, chol)
    np.testing.assert_array_equal(np.tril(lower_inverse), np.tril(inverse))
    assert not _lapack.lower_inverse(lower_inverse, chol - np.diag(np.diag(chol)))  # a singular factor
    np.testing.assert_allclose(_lapack.times_lower(_arena(), inverse, chol), inverse @ chol, **close)
    samples = rng.standard_normal((3, m, n))
    np.testing.assert_allclose(_lapack.scatter(samples, chol),
                               sum(sample @ np.linalg.inv(spd) @ sample.T for sample in samples), **close)
    assert _lapack.norm2(b) == pytest.approx((b * b).sum(), rel=1e-14)
    assert _lapack.logdet(chol) == pytest.approx(np.linalg.slogdet(spd)[1], rel=1e-12, abs=1e-12)
    assert _lapack.inner(b, 2 * b) == pytest.approx(2 * (b * b).sum(), rel=1e-14)
    assert not _lapack.cholesky(-spd, chol)
    for pivot in (0.0, np.finfo(np.float64).eps):  # LAPACK fails the first; the second is numerically singular
        assert not _lapack.cholesky(np.ones((n, n)) + np.diag(np.r_[0.0, np.full(n - 1, pivot)]), chol) or n == 1
    assert not _lapack.factor(-chol, np.empty((n, n)))
    for blocks in (1, 2, 3):  # the lower triangles of products and solves, in blocks of rows or columns
        for transposed, expected in ((False, 2 * b @ b.T), (True, 2 * b.T @ b)):
            got = np.full(expected.shape, np.nan)
            _lapack.lower_cross(got, b, 2 * b, transposed, blocks)
            np.testing.assert_allclose(np.tril(got), np.tril(expected), **close)
        got = x.copy()
        _lapack.lower_solve_t(chol, got, blocks)
        np.testing.assert_allclose(got, np.tril(np.linalg.solve(chol.T, x)), **close)
        got = np.tril(x)
        _lapack.add_lower_gram(got, -2.0, chol, blocks)
        np.testing.assert_allclose(np.tril(got), np.tril(x - 2.0 * chol @ chol.T), **close)
        got = np.full((n, n), np.nan)
        _lapack.gram(got, 0.5, spd, 3.0, chol, -1.0, b, False, blocks)
        np.testing.assert_allclose(got, 0.5 * spd + 3.0 * chol @ chol.T - b @ b.T, **close)
    upper_garbage = spd + np.triu(np.full((n, n), 7.0), 1)  # only the lower triangle of s is read
    np.testing.assert_allclose(_lapack.gram(np.empty((n, n)), 0.0, b, 0.5, b, -2.0, spd, False),
                               0.5 * b @ b.T - 2.0 * spd @ spd, **close)
    np.testing.assert_allclose(_lapack.gram(np.empty((n, n)), 3.0, upper_garbage, 1.5, b2.T.copy(), 0.0, b, False),
                               3.0 * spd + 1.5 * b2.T @ b2, **close)
    np.testing.assert_allclose(_lapack.gram(np.empty((n, n)), -1.0, upper_garbage, 0.5, b, 2.0, b2, True),
                               -spd + 0.5 * b @ b.T + 2.0 * b2.T @ b2, **close)
    lower = np.tril(rng.standard_normal((n, n)))
    symmetric = lower + np.tril(lower, -1).T
    _lapack.mirror_lower(lower)
    np.testing.assert_array_equal(lower, symmetric)


@pytest.mark.parametrize("n, m", [(7, 5), (1, 3), (40, 1), (2, 6)])
def test_lapack_eigen_routines_against_numpy(n, m):
    """The symmetric eigensolver, the reduction to tridiagonal form and its reflectors, the
    congruence with a Cholesky factor and the product with eigenvector rows, each reading the
    lower triangle alone, against NumPy; their matrices and LAPACK's workspaces from an arena
    whose buffer holds some of them."""
    from fastmvn import _lapack

    rng = np.random.default_rng(n + m)
    arena = _arena(64)
    x = rng.standard_normal((n, n))
    sym, b = x + x.T, rng.standard_normal((n, m))
    upper_garbage = sym + np.triu(np.full((n, n), 7.0), 1)  # only the lower triangle is read
    close = dict(rtol=1e-12, atol=1e-12)
    values, rows, converged = _lapack.eigh(arena, upper_garbage)
    assert converged
    np.testing.assert_allclose(values, np.linalg.eigvalsh(sym), **close)
    np.testing.assert_allclose(rows.T @ np.diag(values) @ rows, sym, **close)
    np.testing.assert_allclose(rows @ rows.T, np.eye(n), **close)
    np.testing.assert_allclose(_lapack.times_rows(arena, b.T.copy(), rows), b.T @ rows.T, **close)
    reflectors, tau, diagonal, off = _lapack.tridiagonal(arena, upper_garbage)
    t = np.diag(diagonal) + np.diag(off, 1) + np.diag(off, -1)
    q_t = np.eye(n)
    _lapack.reflect(arena, reflectors, tau, q_t)               # Qᵀ
    np.testing.assert_allclose(q_t.T @ t @ q_t, sym, **close)
    np.testing.assert_allclose(q_t @ q_t.T, np.eye(n), **close)
    got = b.copy()
    _lapack.reflect(arena, reflectors, tau, got)
    np.testing.assert_allclose(got, q_t @ b, **close)
    chol = np.linalg.cholesky(x @ x.T + n * np.eye(n))
    whitened = _lapack.whitened(arena, chol, upper_garbage)
    inverse = np.linalg.inv(chol)
    np.testing.assert_allclose(np.tril(whitened), np.tril(inverse @ sym @ inverse.T), **close)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_large_diagonal_terms_of_the_standard_prior(dtype):
    """The KL of diagonal covariances to ``MN(0, I, I)`` on the plan for large items (its terms
    in one compiled call), against the reference and against the same KL with the prior given."""
    mean, rowvar, colvar = [np.asarray(a[0]) for a in random_inputs("kl_diag", 1, 140, 37, dtype)[:3]]
    assert _large.chosen([mean, rowvar[:, None], colvar[:, None]], 1)
    expected = reference.kl_diag(mean, rowvar, colvar)
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(fm.kl_diag(mean, rowvar, colvar), expected, rtol=rtol)
    given = (np.zeros_like(mean), np.ones_like(rowvar), np.ones_like(colvar))
    np.testing.assert_allclose(fm.kl_diag(mean, rowvar, colvar, *given), expected, rtol=rtol)
    for bad in (0.0, -1.0, np.nan):
        colvar_bad = colvar.copy()
        colvar_bad[5] = bad
        assert np.isnan(fm.kl_diag(mean, rowvar, colvar_bad, errors="nan"))
        with pytest.raises(ValueError, match="^colvar1 "):
            fm.kl_diag(mean, rowvar, colvar_bad)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak memory of Linux's /proc/self")
def test_memory_of_one_large_item():
    """One 800×800 KL needs about 1.2 times its inputs in extra memory (four factors, the
    whitened difference and two triangular solves: ``7n²`` numbers against ``6n²``), its value
    and six gradients about 1.7 times (``10n²`` numbers of scratch; the gradients, as large as
    the inputs themselves, are made where they are returned): the peak resident memory of a fresh
    interpreter through the call, reset before it (``/proc/self/clear_refs``), over the
    resident memory before it; the first calls compile and fill the gradients' pool."""
    script = """if True:
        import numpy as np, fastmvn as fm
        from fastmvn import _bench

        def status(key):
            return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key))

        args = [np.ascontiguousarray(a[0]) for a in _bench.random_pair(1, 800, 800)]
        for function in (fm.kl, fm.kl_value_and_grad):
            function(*args)
            before = status("VmRSS")
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")
            function(*args)
            print((status("VmHWM") - before) / sum(a.nbytes for a in args))
    """
    value, gradients = map(float, run_python(script).split())
    assert 0.0 <= value < 2.0 and 0.0 <= gradients < 2.2, (value, gradients)
