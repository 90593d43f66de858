"""fastmvn.dask: lazy blocks against the in-memory functions, shared priors, global error
indices, rechunking, threads and a two-process dask.distributed cluster."""

import pathlib
import pickle
import re

import numpy as np
import pytest
from numpy.linalg import LinAlgError

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")

import fastmvn as fm  # noqa: E402
import fastmvn.dask as fmd  # noqa: E402

from conftest import run_python, spd  # noqa: E402


def kl_args(rng, batch, n=3, p=2, dtype=np.float64):
    """Arguments of a KL between two batches of distributions."""
    arrays = [rng.standard_normal(batch + (n, p)), spd(rng, batch, n), spd(rng, batch, p),
              rng.standard_normal(batch + (n, p)), spd(rng, batch, n), spd(rng, batch, p)]
    return [a.astype(dtype) for a in arrays]


def chunked(arrays, chunks):
    """Dask arrays split along the leading axis in blocks of ``chunks`` items, matrices whole."""
    return [da.from_array(a, chunks=(chunks,) + a.shape[1:]) for a in arrays]


def diag_args(rng, batch, n=3, p=2):
    """Arguments of a KL between two batches of distributions with diagonal covariances."""
    return [rng.standard_normal(batch + (n, p)), rng.uniform(0.5, 2.0, batch + (n,)), rng.uniform(0.5, 2.0, batch + (p,)),
            rng.standard_normal(batch + (n, p)), rng.uniform(0.5, 2.0, batch + (n,)), rng.uniform(0.5, 2.0, batch + (p,))]


def case_args(case, rng, batch):
    """Arguments for the function ``case``, in float64."""
    args = kl_args(rng, batch)
    if case == "kl_chol":
        return [a if i % 3 == 0 else np.linalg.cholesky(a) for i, a in enumerate(args)]
    if case == "kl_diag":
        return diag_args(rng, batch)
    if case == "logpdf_diag":
        return [rng.standard_normal(batch + (3, 2))] + diag_args(rng, batch)[:3]
    chol = [np.linalg.cholesky(a) for a in args[1:3]]
    if case in ("logpdf", "mahalanobis", "pdf"):
        return [args[0], args[3], args[1], args[2]]
    if case in ("logpdf_chol", "mahalanobis_chol", "pdf_chol"):
        return [args[0], args[3]] + chol
    if case == "entropy":
        return args[1:3]
    if case == "entropy_chol":
        return chol
    if case == "logdet":
        return args[1:2]
    if case == "trace_solve":
        return [args[1], args[4]]
    return args


CASES = ["kl", "kl_chol", "kl_diag", "logpdf", "logpdf_diag", "entropy", "logpdf_chol", "mahalanobis", "mahalanobis_chol",
         "entropy_chol", "logdet", "trace_solve", "pdf", "pdf_chol"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES)
def test_blocks_agree_with_in_memory_function(rng, case, dtype):
    lazy, direct = getattr(fmd, case), getattr(fm, case)
    args = [a.astype(dtype) for a in case_args(case, rng, (50,))]
    result = lazy(*chunked(args, 16))
    assert isinstance(result, da.Array) and result.chunks == ((16, 16, 16, 2),) and result.dtype == dtype
    expected = direct(*args)
    computed = result.compute()
    assert computed.dtype == expected.dtype
    np.testing.assert_array_equal(computed, expected)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", ["kl", "kl_chol", "kl_diag"])
def test_gradients_agree_with_in_memory_function(rng, case, dtype):
    """One pass per block gives the value and per-item gradients; a prior shared by every item
    (no batch axes, or size-1 ones) gets its gradient summed across blocks."""
    args = [a.astype(dtype) for a in case_args(case, rng, (50,))]
    prior = [args[3][0], args[4][:1], args[5][0]]                   # (n, p), (1, n, n) or (1, n), (p, p) or (p,)
    lazy, grads = getattr(fmd, f"{case}_value_and_grad")(*chunked(args[:3], 16), *prior)
    assert lazy.chunks == ((16, 16, 16, 2),) and lazy.dtype == dtype
    assert [g.shape for g in grads] == [a.shape for a in args[:3] + prior]
    value, grads = dask.compute(lazy, grads)
    expected_value, expected = getattr(fm, f"{case}_value_and_grad")(*args[:3], *prior)
    np.testing.assert_array_equal(value, expected_value)
    for k, (grad, want) in enumerate(zip(grads, expected)):
        assert grad.dtype == want.dtype == dtype
        if k < 3:                                                   # per item, as in memory
            np.testing.assert_array_equal(grad, want)
        else:                                                       # summed over blocks, then items
            rtol = 1e-5 if dtype == np.float32 else 1e-12
            np.testing.assert_allclose(grad, want, rtol=rtol, atol=rtol * np.abs(want).max())


@pytest.mark.parametrize("case", ["logpdf", "logpdf_chol", "logpdf_diag"])
def test_log_density_gradients_agree_with_in_memory_function(rng, case):
    """The log-density's gradients over blocks; a column covariance shared by every item gets
    its gradient summed across blocks, a zero mean none."""
    x, _, row, col = case_args(case, rng, (50,))
    lazy, grads = getattr(fmd, f"{case}_value_and_grad")(*chunked([x], 16), None, *chunked([row], 16), col[0])
    assert grads[1] is None and grads[3].shape == col[0].shape
    value, grads = dask.compute(lazy, grads)
    expected_value, expected = getattr(fm, f"{case}_value_and_grad")(x, None, row, col[0])
    np.testing.assert_array_equal(value, expected_value)
    np.testing.assert_array_equal(grads[0], expected[0])
    np.testing.assert_array_equal(grads[2], expected[2])
    np.testing.assert_allclose(grads[3], expected[3], rtol=1e-12, atol=1e-12 * np.abs(expected[3]).max())


def test_gradients_wrt_upper_factors_and_errors(rng):
    import scipy.linalg

    args = case_args("kl_chol", rng, (50,))
    upper = [np.array([scipy.linalg.cholesky(item @ item.T) for item in a]) if k % 3 else a
             for k, a in enumerate(args)]
    value, grads = fmd.kl_chol_value_and_grad(*chunked(upper, 16), lower=False, wrt=("rowchol1", "mean2"))
    assert [g is None for g in grads] == [True, False, True, False, True, True]
    value, grads = dask.compute(value, grads)
    expected = fm.kl_chol_value_and_grad(*upper, lower=False, wrt=("rowchol1", "mean2"))
    np.testing.assert_array_equal(value, expected[0])
    np.testing.assert_array_equal(grads[1], expected[1][1])
    assert np.all(np.tril(grads[1], -1) == 0)                       # upper triangular
    np.testing.assert_array_equal(grads[3], expected[1][3])
    args = case_args("kl", rng, (50,))
    args[4][37] = -np.eye(3)
    lazy = fmd.kl_value_and_grad(*chunked(args, 16))
    with pytest.raises(LinAlgError, match=r"^rowcov2 is not positive definite \(Cholesky failed\) at batch index 37$"):
        dask.compute(lazy)
    value, grads = dask.compute(*fmd.kl_value_and_grad(*chunked(args, 16), errors="nan"))
    assert np.isnan(value[37]) and np.isnan(grads[0][37]).all() and np.isfinite(np.delete(value, 37)).all()
    with pytest.raises(ValueError, match=r"^wrt names 'rowchol1'; the arguments are mean1, rowcov1"):
        fmd.kl_value_and_grad(*args, wrt="rowchol1")


@pytest.mark.parametrize("case, factors", [("kl_chol", (1, 2, 4, 5)), ("logpdf_chol", (2, 3)),
                                           ("mahalanobis_chol", (2, 3)), ("entropy_chol", (0, 1))])
def test_upper_factors_in_blocks(rng, case, factors):
    """``lower=False`` reaches the in-memory function of every block: upper factors (SciPy's)
    give what the lower factors (NumPy's) give by default."""
    import scipy.linalg

    lazy, direct = getattr(fmd, case), getattr(fm, case)
    args = case_args(case, rng, (50,))
    upper = [np.array([scipy.linalg.cholesky(item @ item.T) for item in a]) if k in factors else a
             for k, a in enumerate(args)]
    result = lazy(*chunked(upper, 16), lower=False)
    np.testing.assert_allclose(result.compute(), direct(*args), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(result.compute(), direct(*upper, lower=False))
    upper[-1][33, 0, 1] = np.nan                                  # above the diagonal: read
    name = "colchol2" if case == "kl_chol" else "colchol"
    with pytest.raises(ValueError, match=rf"^{name} contains NaN or infinity at batch index 33$"):
        lazy(*chunked(upper, 16), lower=False).compute()
    with pytest.raises(TypeError, match=r"^lower must be True or False, not 'upper'$"):
        lazy(*chunked(upper, 16), lower="upper")


def test_numpy_inputs_unbatched_and_empty(rng):
    args = kl_args(rng, (40,))
    result = fmd.kl(*args)
    assert isinstance(result, da.Array)
    np.testing.assert_array_equal(result.compute(), fm.kl(*args))
    single = fmd.kl(*(a[7] for a in args))
    assert single.shape == () and single.compute() == fm.kl(*(a[7] for a in args))
    empty = fmd.kl(*chunked([a[:0] for a in args], 4))
    assert empty.shape == (0,) and empty.compute().shape == (0,)
    np.testing.assert_array_equal(fmd.kl(*args[:3]).compute(), fm.kl(*args[:3]))


def test_numpy_and_memory_mapped_inputs_are_read_in_place_when_blocks_run(rng, tmp_path):
    args = kl_args(rng, (30,))
    np.save(tmp_path / "mean1.npy", args[0])
    mapped = np.load(tmp_path / "mean1.npy", mmap_mode="r")
    rowcov1 = args[1].copy()
    lazy = fmd.kl(mapped, rowcov1, *chunked(args[2:3], 7))
    assert lazy.chunks == ((7, 7, 7, 7, 2),)
    writer = np.load(tmp_path / "mean1.npy", mmap_mode="r+")
    writer[3] += 1.0                                # after the graph is built: read, not copied
    writer.flush()
    rowcov1[5] *= 2.0
    expected = fm.kl(args[0] + np.eye(30)[:, 3, None, None], args[1] * (1 + np.eye(30)[:, 5, None, None]), args[2])
    np.testing.assert_array_equal(lazy.compute(), expected)
    wrapped = pickle.dumps(fmd._Sliced(mapped))     # for a cluster: the file's name, not its contents
    assert len(wrapped) < 1000
    np.testing.assert_array_equal(pickle.loads(wrapped)[2:4], mapped[2:4])


@pytest.mark.parametrize("mode", ["c", "r+"])
def test_memory_mapped_files_changed_in_memory_give_the_same_result_on_every_scheduler(tmp_path, mode):
    """A file mapped copy-on-write or writeable may differ from its memory: it travels as its
    data, never as its name, so a cluster reads what the local scheduler and memory read."""
    distributed = pytest.importorskip("distributed")
    np.save(tmp_path / "x.npy", np.zeros((3, 1, 1)))
    mapped = np.load(tmp_path / "x.npy", mmap_mode=mode)
    mapped += 2.0                                   # in memory only (not flushed, or never written)
    expected = fm.mahalanobis(mapped, None, np.eye(1), np.eye(1))
    np.testing.assert_array_equal(expected, [4.0, 4.0, 4.0])
    lazy = fmd.mahalanobis(mapped, None, np.eye(1), np.eye(1))
    np.testing.assert_array_equal(lazy.compute(scheduler="sync"), expected)
    shipped = pickle.loads(pickle.dumps(fmd._Sliced(mapped)))
    assert not isinstance(shipped.array, np.memmap)  # its data, not the file mapped again
    np.testing.assert_array_equal(shipped[:], mapped)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0"):
        np.testing.assert_array_equal(lazy.compute(), expected)


def test_zarr_arrays_are_read_block_by_block(rng, tmp_path):
    zarr = pytest.importorskip("zarr")
    args = kl_args(rng, (30,))
    da.to_zarr(da.from_array(args[1], chunks=(8, 3, 3)), str(tmp_path / "rowcov1.zarr"))
    stored = zarr.open_array(str(tmp_path / "rowcov1.zarr"), mode="r")
    lazy = fmd.kl(args[0], stored, args[2])
    np.testing.assert_array_equal(lazy.compute(), fm.kl(*args[:3]))


def test_shared_prior_is_handed_whole_to_every_block(rng, monkeypatch):
    mean1, rowcov1, colcov1 = kl_args(rng, (6, 10))[:3]
    prior_mean = np.zeros((3, 2))                                    # no batch axes
    prior_rowcov = da.from_array(spd(rng, (1, 1), 3), chunks=-1)      # size-1 batch axes
    prior_colcov = spd(rng, (10,), 2)                                 # the last batch axis only
    seen = []
    original = fm._api.kl

    def recording(*args, **kwargs):
        seen.append(tuple(None if a is None else a.shape for a in args))
        return original(*args, **kwargs)

    monkeypatch.setattr(fm._api, "kl", recording)
    lazy = fmd.kl(*(da.from_array(a, chunks=(2, 5) + a.shape[2:]) for a in (mean1, rowcov1, colcov1)),
                  prior_mean, prior_rowcov, prior_colcov)
    result = lazy.compute(scheduler="sync")
    monkeypatch.undo()
    np.testing.assert_array_equal(result, fm.kl(mean1, rowcov1, colcov1, prior_mean, prior_rowcov.compute(), prior_colcov))
    blocks = [shapes for shapes in seen if shapes[0][0] == 2]      # the placeholder call has no batch
    assert len(blocks) == 6
    for shapes in blocks:
        assert shapes[:3] == ((2, 5, 3, 2), (2, 5, 3, 3), (2, 5, 2, 2))
        assert shapes[3:] == ((3, 2), (1, 1, 3, 3), (5, 2, 2))


@pytest.mark.parametrize("function", [fmd.kl, fmd.kl_value_and_grad])
def test_an_argument_without_batch_axes_fails_as_itself(function):
    """As in memory: one matrix that every item shares fails without a batch index, one with
    batch axes of its own (here one of length one) at the global index of an item it fails in."""
    means, eye3, eye2 = da.zeros((6, 3, 2), chunks=(2, 3, 2)), np.eye(3), np.eye(2)
    for bad in (-eye3, da.from_array(-eye3)):
        with pytest.raises(LinAlgError, match=r"^rowcov2 is not positive definite \(Cholesky failed\)$"):
            da.compute(function(means, eye3, eye2, means, bad, eye2), scheduler="sync")
    bad = np.broadcast_to(eye3, (2, 3, 1, 3, 3)).copy()
    bad[1, 2] = -eye3
    with pytest.raises(LinAlgError, match=r"^rowcov2 is not positive definite \(Cholesky failed\) "
                                          r"at batch index \(1, 2, [0-5]\)$"):
        da.compute(function(means, eye3, eye2, means, da.from_array(bad, chunks=(1, 2, 1, 3, 3)), eye2),
                   scheduler="sync")


@pytest.mark.parametrize("slot, name", [(1, "rowcov1"), (4, "rowcov2"), (5, "colcov2")])
def test_failure_names_argument_and_global_index(rng, slot, name):
    args = kl_args(rng, (4, 6))
    args[slot][3, 5] = -np.eye(args[slot].shape[-1])
    lazy = [da.from_array(a, chunks=(3, 4) + a.shape[2:]) for a in args]
    with pytest.raises(LinAlgError, match=rf"^{name} is not positive definite \(Cholesky failed\) at batch index \(3, 5\)$"):
        fmd.kl(*lazy).compute()
    good = args[slot][3, 4].copy()
    args[slot][3, 5], args[slot][1, 2] = good, -np.eye(args[slot].shape[-1])
    lazy = [da.from_array(a, chunks=(3, 4) + a.shape[2:]) for a in args]
    with pytest.raises(LinAlgError, match=rf"^{name} is not positive definite .* at batch index \(1, 2\)$"):
        fmd.kl(*lazy).compute(scheduler="sync")
    args[slot][3, 5] = -np.eye(args[slot].shape[-1])
    lazy = [da.from_array(a, chunks=(3, 4) + a.shape[2:]) for a in args]
    nan = fmd.kl(*lazy, errors="nan").compute()
    np.testing.assert_array_equal(nan, fm.kl(*args, errors="nan"))
    assert np.isnan(nan[1, 2]) and np.isnan(nan[3, 5]) and np.isfinite(nan).sum() == 22


def test_failure_without_batch_axes():
    with pytest.raises(LinAlgError, match=r"^rowcov1 is not positive definite \(Cholesky failed\)$"):
        fmd.kl(np.ones((2, 2)), -np.eye(2), np.eye(2)).compute()


def test_failures_of_every_function_at_global_index(rng):
    mean, rowcov, colcov = kl_args(rng, (30,))[:3]
    mean[17, 0, 1] = np.inf
    with pytest.raises(ValueError, match=r"^mean contains NaN or infinity at batch index 17$"):
        fmd.logpdf(rng.standard_normal((3, 2)), *chunked([mean, rowcov], 8), colcov[0]).compute()
    rowcov[21] = np.diag([1.0, -1.0, 1.0])
    with pytest.raises(LinAlgError, match=r"^rowcov is not positive definite \(Cholesky failed\) at batch index 21$"):
        fmd.entropy(*chunked([rowcov, colcov], 8)).compute()
    factor = np.tile(np.eye(2), (30, 1, 1))
    factor[9, 1, 1] = 0.0
    with pytest.raises(LinAlgError, match=r"^colchol2 is not a Cholesky factor: its diagonal must be positive at batch index 9$"):
        fmd.kl_chol(mean[0], np.eye(3), np.eye(2), None, None, da.from_array(factor, chunks=(4, 2, 2))).compute()
    variances = np.ones((30, 2))
    variances[29, 0] = -1.0
    with pytest.raises(LinAlgError, match=r"^colvar1 must be positive at batch index 29$"):
        fmd.kl_diag(mean[0], np.ones(3), da.from_array(variances, chunks=(7, 2))).compute()
    entropy = fmd.entropy(*chunked([rowcov, colcov], 8), errors="nan").compute()
    np.testing.assert_array_equal(entropy, fm.entropy(rowcov, colcov, errors="nan"))
    assert np.isnan(entropy[21]) and np.isfinite(np.delete(entropy, 21)).all()


def test_matrix_axes_split_are_rechunked_with_a_warning(rng):
    args = kl_args(rng, (20,), n=4, p=4)
    split = da.from_array(args[1], chunks=(5, 2, 4))
    with pytest.warns(fmd.RechunkWarning, match=r"rowcov1 is split along its matrix axes"):
        result = fmd.kl(args[0], split, *chunked(args[2:], 10))
    assert result.chunks == ((5, 5, 5, 5),)
    np.testing.assert_array_equal(result.compute(), fm.kl(*args))


@pytest.mark.parametrize("call, error, message", [
    (lambda: fmd.kl(da.zeros(3), np.eye(3), np.eye(1)), ValueError,
     r"mean1 must have at least 2 dimensions \(\.\.\., n, p\); got shape \(3,\)"),
    (lambda: fmd.kl(da.zeros((10, 3, 2)), np.eye(2), np.eye(2)), ValueError,
     r"rowcov1 has shape \(2, 2\); expected \(\.\.\., 3, 3\) \(n=3 from mean1, p=2 from mean1\)"),
    (lambda: fmd.kl_diag(da.zeros((10, 3, 2)), da.ones((10, 2)), np.ones(2)), ValueError,
     r"rowvar1 has shape \(10, 2\); expected \(\.\.\., 3\)"),
    (lambda: fmd.kl(da.zeros((4, 3, 2)), da.zeros((5, 3, 3)) + np.eye(3), np.eye(2)), ValueError,
     r"batch shapes do not broadcast: mean1 \(4,\), rowcov1 \(5,\), colcov1 \(\)"),
    (lambda: fmd.kl(da.zeros((2, 0, 2)), np.eye(0), np.eye(2)), ValueError, r"matrices must be at least 1×1"),
    (lambda: fmd.kl(np.zeros((2, 2)), np.eye(2), np.eye(2), errors="ignore"), ValueError,
     r"errors must be 'raise' or 'nan'"),
    (lambda: fmd.entropy(da.eye(2, dtype=complex), np.eye(2)), TypeError, r"rowcov is complex"),
    (lambda: fmd.logpdf(da.zeros((4, 3, 2))[da.ones(4, dtype=bool)], None, np.eye(3), np.eye(2)), ValueError,
     r"x has unknown chunk sizes"),
])
def test_argument_errors_raise_when_the_graph_is_built(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_threads_with_the_workqueue_threading_layer():
    """The workqueue layer aborts on concurrent launches; blocks then take turns."""
    script = ("import numpy as np, dask, dask.array as da, fastmvn as fm, fastmvn.dask as fmd\n"
              "x = da.random.default_rng(0).standard_normal((4000, 3, 2), chunks=(250, 3, 2))\n"
              "lazy = fmd.logpdf(x, None, np.eye(3), np.eye(2))\n"
              "result = lazy.compute(scheduler='threads', num_workers=4)\n"
              "assert np.array_equal(result, fm.logpdf(x.compute(), None, np.eye(3), np.eye(2)))\n"
              "import numba; print(numba.threading_layer())\n")
    assert run_python(script, timeout=120, NUMBA_THREADING_LAYER="workqueue") == "workqueue"


# distributed warns when making its workers' scratch directories takes over a second, as it
# can on a loaded machine; that is no failure of the test.
@pytest.mark.filterwarnings("ignore:Creating scratch directories is taking a surprisingly long time")
def test_distributed_cluster_streams_a_batch_larger_than_a_worker(tmp_path):
    """0.77 GB of inputs, generated inside the graph block by block or read from a
    memory-mapped .npy file, through two worker processes of 600 MB each; every block is
    checked against the in-memory function."""
    distributed = pytest.importorskip("distributed")
    batch, chunk, n, p = 1_000_000, 20_000, 4, 4
    kinds = ["mean", "cov", "cov"] * 2
    cores = [(n, p), (n, n), (p, p)] * 2

    def block(slot, block_id=None):
        """Block ``block_id`` of argument ``slot``, the same wherever and whenever it is made."""
        rng = np.random.default_rng([20261123, slot, *block_id])
        if kinds[slot] == "mean":
            return rng.standard_normal((chunk,) + cores[slot])
        return spd(rng, (chunk,), cores[slot][0])

    args = [da.map_blocks(block, slot, chunks=((chunk,) * (batch // chunk),) + tuple((k,) for k in cores[slot]),
                          dtype=np.float64) for slot in range(6)]
    stored = np.lib.format.open_memmap(tmp_path / "mean2.npy", "w+", np.float64, (batch, n, p))
    for i in range(batch // chunk):
        stored[i * chunk:(i + 1) * chunk] = block(3, (i, 0, 0))
    stored.flush()
    args[3] = np.load(tmp_path / "mean2.npy", mmap_mode="r")
    limit = 600e6
    assert sum(a.nbytes for a in args) > 1.2 * limit
    lazy = fmd.kl(*args)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  memory_limit=limit, dashboard_address=":0",
                                  local_directory=str(tmp_path / "workers")) as cluster, \
            distributed.Client(cluster) as client:
        workers = set(client.scheduler_info()["workers"])
        result = lazy.compute()
        assert set(client.scheduler_info()["workers"]) == workers      # none restarted for memory
    for i in range(batch // chunk):
        items = [block(slot, (i, 0, 0)) for slot in range(6)]
        np.testing.assert_array_equal(result[i * chunk:(i + 1) * chunk], fm.kl(*items))


def test_documented_example_at_a_small_size(tmp_path, monkeypatch):
    """The Dask example of the documentation (docs/dask.md) with 10,000 items instead of 200,000,000."""
    pytest.importorskip("zarr")
    page = (pathlib.Path(__file__).parent.parent / "docs" / "dask.md").read_text()
    code = re.search(r"```python\n(.*?)```", page, flags=re.S).group(1)
    code, count = re.subn(r"^B, n, p, chunk = .*$", "B, n, p, chunk = 10_000, 4, 4, 1_500", code, flags=re.M)
    assert count == 1
    monkeypatch.chdir(tmp_path)
    namespace = {}
    with dask.config.set({"array.chunk-size": "100KiB"}):        # many blocks of the .npy files
        exec(compile(code, "docs/dask.md", "exec"), namespace)
    assert namespace["kl"].numblocks[0] > 10
    expected = fm.kl(*(np.load(f"{name}.npy") for name in ("mean1", "rowcov1", "colcov1")), *namespace["prior"])
    assert expected.dtype == np.float32 and np.isfinite(expected).all()
    np.testing.assert_array_equal(da.from_zarr("kl.zarr").compute(), expected)
    da.to_npy_stack("kl", namespace["kl"])
    np.testing.assert_array_equal(da.from_npy_stack("kl").compute(), expected)


# The Kronecker-sum functions ---------------------------------------------------------------------

KRON_CASES = ["logpdf_kron_sum", "logpdf_kron_sum_noise_matrices", "kl_kron_sum", "logpdf_kron_prec", "kl_eig"]


def eig(matrices):
    """``(Q, λ)`` of ``numpy.linalg.eigh``, the eigenvectors first as the functions take them."""
    vals, vecs = np.linalg.eigh(matrices)
    return vecs, vals


def kron_args(case, rng, batch=(50,), n=3, p=2, rank_one=True):
    """``(name, args, keywords)`` of a Kronecker-sum function: items along ``batch`` with
    arguments shared by them (no batch axes), Python-number noises and dampings (constants)
    and ones per item; a signal (or a precision's factor) of rank one per item, or with
    ``rank_one=False`` of full rank (float32 roundings of a singular one may be indefinite)."""
    g = rng.standard_normal(batch + (n, 1))
    low_rank = g @ np.swapaxes(g, -1, -2) + (0.0 if rank_one else np.eye(n))
    if case == "logpdf_kron_sum":
        mean = rng.standard_normal(batch + (n, p))
        return case, [mean + rng.standard_normal(batch + (n, p)), mean, low_rank, spd(rng, (), p), 0.3,
                      spd(rng, batch, p)], {}
    if case == "logpdf_kron_sum_noise_matrices":
        return "logpdf_kron_sum", [rng.standard_normal(batch + (n, p)), None, spd(rng, batch, n), spd(rng, batch, p),
                                   spd(rng, batch, n), None], {}
    if case == "kl_kron_sum":
        return case, [rng.standard_normal(batch + (n, p)), low_rank, spd(rng, batch, p), np.array(0.4), None,
                      rng.standard_normal((n, p)), spd(rng, (), n), spd(rng, (), p), spd(rng, (), n), 1.5], {}
    if case == "logpdf_kron_prec":
        return case, [rng.standard_normal(batch + (n, p)), rng.standard_normal(batch + (n, p)), low_rank,
                      spd(rng, (), p), rng.uniform(0.1, 2.0, batch)], {}
    rowvecs, rowvals = eig(spd(rng, batch, n))
    colvecs, colvals = eig(spd(rng, (), p))
    prior_rowvecs, prior_rowvals = eig(spd(rng, (), n))
    return "kl_eig", [rng.standard_normal(batch + (n, p)), rowvecs, rowvals, colvecs, colvals,
                      None, prior_rowvecs, prior_rowvals, np.eye(p), np.ones(p)], \
        {"damping1": rng.uniform(0.1, 2.0, batch), "noise2": 0.5}


def kron_in_memory(name, args, keywords, **options):
    """The in-memory value of the Kronecker-sum function ``name``: that of
    ``logpdf_kron_prec_value_and_grad`` for the precision form."""
    if name == "logpdf_kron_prec":
        return fm.logpdf_kron_prec_value_and_grad(*args, **keywords, **options, wrt=())[0]
    return getattr(fm, name)(*args, **keywords, **options)


def lazy_kron(args, keywords, chunks):
    """The arguments with those of more than one item as Dask arrays of ``chunks`` items a block."""
    def lazy(value):
        if isinstance(value, np.ndarray) and value.ndim and value.shape[0] == 50:
            return da.from_array(value, chunks=(chunks,) + value.shape[1:])
        return value
    return [lazy(a) for a in args], {k: lazy(v) for k, v in keywords.items()}


def astype(value, dtype):
    return value.astype(dtype) if isinstance(value, np.ndarray) else value


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", KRON_CASES)
def test_kron_blocks_agree_with_in_memory_function(rng, case, dtype):
    """Every chunking gives the in-memory result, item for item; a Python number (a constant
    handed to every block) decides no dtype."""
    name, args, keywords = kron_args(case, rng, rank_one=dtype == np.float64)
    args, keywords = [astype(a, dtype) for a in args], {k: astype(v, dtype) for k, v in keywords.items()}
    expected = kron_in_memory(name, args, keywords)
    assert expected.dtype == dtype
    for chunks in (1, 7, 16, 50):
        result = getattr(fmd, name)(*lazy_kron(args, keywords, chunks)[0], **lazy_kron(args, keywords, chunks)[1])
        assert isinstance(result, da.Array) and result.dtype == dtype
        assert result.chunks == (tuple(np.diff(np.r_[0:50:chunks, 50])),)
        # the compiled kernels of small items compute them in groups of lanes, which follow the
        # block: an item at the end of a block may round otherwise than in the whole batch (by
        # less than an ulp), as the in-memory function's own result on that block does
        np.testing.assert_allclose(result.compute(), expected, rtol=4 * np.finfo(dtype).eps, atol=0)
    if name == "logpdf_kron_prec":
        by_class = fm.KroneckerSumNormal.from_precision(*args[1:]).logpdf(args[0])
        np.testing.assert_allclose(expected, by_class, rtol=1e-12 if dtype == np.float64 else 1e-5)


@pytest.mark.parametrize("case", KRON_CASES)
def test_kron_gradients_agree_with_in_memory_function(rng, case):
    """One pass per block gives the value and the per-item gradients; an argument shared by the
    items, a Python-number noise or damping included, gets the sum over every block."""
    name, args, keywords = kron_args(case, rng)
    expected_value, expected = getattr(fm, f"{name}_value_and_grad")(*args, **keywords)
    for chunks in (7, 16, 50):
        lazy_args, lazy_keywords = lazy_kron(args, keywords, chunks)
        lazy, grads = getattr(fmd, f"{name}_value_and_grad")(*lazy_args, **lazy_keywords)
        assert lazy.chunks == (tuple(np.diff(np.r_[0:50:chunks, 50])),)
        value, grads = dask.compute(lazy, grads)
        np.testing.assert_array_equal(value, expected_value)
        assert len(grads) == len(expected)
        for grad, want, given in zip(grads, expected, list(args) + [keywords.get(k) for k in
                                                                    ("noise1", "damping1", "noise2", "damping2")]
                                     [:len(expected)]):
            if want is None:
                assert grad is None
                continue
            assert grad.shape == want.shape == np.shape(given) and grad.dtype == want.dtype
            if np.shape(given)[:1] == (50,):                                    # per item, as in memory
                np.testing.assert_array_equal(grad, want)
            else:                                                               # summed over blocks, then items
                np.testing.assert_allclose(grad, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


def test_kron_gradients_wrt_and_float32(rng):
    name, args, keywords = kron_args("logpdf_kron_prec", rng, rank_one=False)
    single = [a.astype(np.float32) for a in args]
    lazy, grads = fmd.logpdf_kron_prec_value_and_grad(*lazy_kron(single, {}, 16)[0], wrt=("colprec", "damping"))
    assert [g is None for g in grads] == [True, True, True, False, False]
    value, grads = dask.compute(lazy, grads)
    expected_value, expected = fm.logpdf_kron_prec_value_and_grad(*single, wrt=("colprec", "damping"))
    assert value.dtype == grads[3].dtype == grads[4].dtype == np.float32
    np.testing.assert_array_equal(value, expected_value)
    np.testing.assert_array_equal(grads[4], expected[4])
    np.testing.assert_allclose(grads[3], expected[3], rtol=1e-5, atol=1e-5 * np.abs(expected[3]).max())
    with pytest.raises(ValueError, match=r"wrt names 'noise'; the arguments are x, mean, rowprec, colprec, damping"):
        fmd.logpdf_kron_prec_value_and_grad(*args, wrt="noise")
    with pytest.raises(ValueError, match=r"wrt names mean, which was passed as None"):
        fmd.logpdf_kron_sum_value_and_grad(args[0], None, args[2], np.eye(2), 1.0, wrt="mean")


def test_kron_shared_prior_over_two_batch_axes(rng):
    """Batch axes (6, 10) in blocks of (2, 5), a prior of size-1 batch axes (a Dask array, never
    copied per item) and one along the last axis alone; its gradients summed to its shape."""
    mean1, rowcov1, colcov1 = kl_args(rng, (6, 10))[:3]
    prior_rowcov = da.from_array(spd(rng, (1, 1), 3), chunks=-1)
    prior_colcov = spd(rng, (10,), 2)
    lazy = [da.from_array(a, chunks=(2, 5) + a.shape[2:]) for a in (mean1, rowcov1, colcov1)]
    arguments = (*lazy, 0.2, None, None, prior_rowcov, prior_colcov, 1.0, None)
    in_memory = (mean1, rowcov1, colcov1, 0.2, None, None, prior_rowcov.compute(), prior_colcov, 1.0, None)
    result = fmd.kl_kron_sum(*arguments)
    assert result.chunks == ((2, 2, 2), (5, 5))
    np.testing.assert_array_equal(result.compute(), fm.kl_kron_sum(*in_memory))
    lazy_value, lazy_grads = fmd.kl_kron_sum_value_and_grad(*arguments)
    value, grads = dask.compute(lazy_value, lazy_grads)
    expected_value, expected = fm.kl_kron_sum_value_and_grad(*in_memory)
    np.testing.assert_array_equal(value, expected_value)
    for k in (0, 1, 2):
        np.testing.assert_array_equal(grads[k], expected[k])
    for k in (3, 6, 7, 8):
        assert grads[k].shape == np.shape(in_memory[k])
        np.testing.assert_allclose(grads[k], expected[k], rtol=1e-12, atol=1e-12 * np.abs(expected[k]).max())


def test_kron_failures_name_argument_and_global_index(rng):
    name, args, keywords = kron_args("logpdf_kron_prec", rng)
    args[2] = args[2].copy()
    args[2][33] = -args[2][33]
    lazy = lazy_kron(args, keywords, 16)[0]
    with pytest.raises(LinAlgError, match=r"^rowprec is not positive semi-definite at batch index 33$"):
        fmd.logpdf_kron_prec(*lazy).compute()
    with pytest.raises(LinAlgError, match=r"^rowprec is not positive semi-definite at batch index 33$"):
        dask.compute(fmd.logpdf_kron_prec_value_and_grad(*lazy))
    nan = fmd.logpdf_kron_prec(*lazy, errors="nan").compute()
    np.testing.assert_array_equal(nan, kron_in_memory(name, args, keywords, errors="nan"))
    assert np.isnan(nan[33]) and np.isfinite(np.delete(nan, 33)).all()
    _, grads = dask.compute(*fmd.logpdf_kron_prec_value_and_grad(*lazy, errors="nan"))
    assert np.isnan(grads[2][33]).all() and np.isnan(grads[3]).all()      # the shared factor sums over it
    name, args, keywords = kron_args("kl_eig", rng)
    keywords["damping1"][41] = -1.0
    lazy, lazy_keywords = lazy_kron(args, keywords, 16)
    with pytest.raises(ValueError, match=r"^damping1 must be positive at batch index 41$"):
        fmd.kl_eig(*lazy, **lazy_keywords).compute()
    nan = fmd.kl_eig(*lazy, **lazy_keywords, errors="nan").compute()
    np.testing.assert_array_equal(nan, fm.kl_eig(*args, **keywords, errors="nan"))
    assert np.isnan(nan[41]) and np.isfinite(np.delete(nan, 41)).all()
    mean1, rowcov1, colcov1 = kl_args(rng, (4, 6))[:3]
    noise = np.tile(np.eye(3), (4, 6, 1, 1))
    noise[3, 5] = -np.eye(3)
    lazy = [da.from_array(a, chunks=(3, 4) + a.shape[2:]) for a in (mean1, rowcov1, colcov1, noise)]
    with pytest.raises(LinAlgError, match=r"^noise_rowcov is not positive definite .* at batch index \(3, 5\)$"):
        fmd.logpdf_kron_sum(lazy[0], None, *lazy[1:]).compute()


@pytest.mark.parametrize("call, error, message", [
    (lambda: fmd.kl_eig(np.zeros((3, 2)), np.eye(3), np.ones(3), np.eye(2), np.ones(2), None, np.eye(3),
                        np.ones(3), np.eye(2), np.ones(2), noise1=0.1, damping1=da.ones(4)), ValueError,
     r"give at most one of noise1= .* and damping1="),
    (lambda: fmd.logpdf_kron_sum(da.zeros((4, 3, 2)), None, np.eye(3), np.eye(3), 1.0), ValueError,
     r"colcov has shape \(3, 3\); expected \(\.\.\., 2, 2\)"),
    (lambda: fmd.logpdf_kron_prec(da.zeros((4, 3, 2)), None, np.eye(3), np.eye(2), da.ones(5)), ValueError,
     r"batch shapes do not broadcast: x \(4,\), rowprec \(\), colprec \(\), damping \(5,\)"),
    (lambda: fmd.kl_kron_sum(None, np.eye(2), np.eye(2), 1.0, None, None, da.eye(2, dtype=complex), np.eye(2),
                             1.0, None), TypeError, r"rowcov2 is complex"),
    (lambda: fmd.logpdf_kron_sum(np.zeros((3, 2)), None, np.eye(3), np.eye(2), 1.0, errors="ignore"), ValueError,
     r"errors must be 'raise' or 'nan'"),
])
def test_kron_argument_errors_raise_when_the_graph_is_built(call, error, message):
    with pytest.raises(error, match=message):
        call()
