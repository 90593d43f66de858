"""fastmvn.dask: lazy blocks against the in-memory functions, shared priors, global error
indices, rechunking, threads and a two-process dask.distributed cluster."""

import os
import subprocess
import sys

import numpy as np
import pytest
from numpy.linalg import LinAlgError

da = pytest.importorskip("dask.array")

import fastmvn as fm  # noqa: E402
import fastmvn.dask as fmd  # noqa: E402

from conftest import spd  # noqa: E402


def kl_args(rng, batch, n=3, p=2, dtype=np.float64):
    """Arguments of a KL between two batches of distributions."""
    arrays = [rng.standard_normal(batch + (n, p)), spd(rng, batch, n), spd(rng, batch, p),
              rng.standard_normal(batch + (n, p)), spd(rng, batch, n), spd(rng, batch, p)]
    return [a.astype(dtype) for a in arrays]


def chunked(arrays, chunks):
    """Dask arrays split along the leading axis in blocks of ``chunks`` items, matrices whole."""
    return [da.from_array(a, chunks=(chunks,) + a.shape[1:]) for a in arrays]


def diag_args(rng, batch, n=3, p=2):
    return [rng.standard_normal(batch + (n, p)), rng.uniform(0.5, 2.0, batch + (n,)), rng.uniform(0.5, 2.0, batch + (p,)),
            rng.standard_normal(batch + (n, p)), rng.uniform(0.5, 2.0, batch + (n,)), rng.uniform(0.5, 2.0, batch + (p,))]


CASES = {
    "kl": (fmd.kl, fm.kl, kl_args),
    "kl_chol": (fmd.kl_chol, fm.kl_chol,
                lambda rng, batch, dtype=np.float64: [np.linalg.cholesky(a) if i % 3 else a
                                                      for i, a in enumerate(kl_args(rng, batch, dtype=dtype))]),
    "kl_diag": (fmd.kl_diag, fm.kl_diag, lambda rng, batch, dtype=np.float64: [a.astype(dtype) for a in diag_args(rng, batch)]),
    "logpdf": (fmd.logpdf, fm.logpdf,
               lambda rng, batch, dtype=np.float64: [kl_args(rng, batch, dtype=dtype)[i] for i in (0, 3, 1, 2)]),
    "entropy": (fmd.entropy, fm.entropy, lambda rng, batch, dtype=np.float64: kl_args(rng, batch, dtype=dtype)[1:3]),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES)
def test_blocks_agree_with_in_memory_function(rng, case, dtype):
    lazy, direct, make = CASES[case]
    args = make(rng, (50,), dtype=dtype)
    result = lazy(*chunked(args, 16))
    assert isinstance(result, da.Array) and result.chunks == ((16, 16, 16, 2),) and result.dtype == dtype
    expected = direct(*args)
    computed = result.compute()
    assert computed.dtype == expected.dtype
    np.testing.assert_array_equal(computed, expected)


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
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "workqueue"
