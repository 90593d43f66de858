"""fastmvn.ufuncs: the generalized ufuncs agree with the batch functions, broadcast, write into
``out``, give NaN for a failing item, and are called from Numba code, Dask and xarray."""

import importlib.util
import subprocess
import sys

import numba
import numpy as np
import pytest

import fastmvn as fm
import fastmvn.ufuncs as fmu
from fastmvn import _table
from fastmvn.testing import cholesky_factors, random_pair, random_spd


def arguments(name, rng, shape, n=3, p=2, dtype=np.float64):
    """Random arguments of the table's function ``name``, every one given."""
    kinds = [param.kind for param in _table.FUNCTIONS[name].params]
    if name.startswith("kl"):
        args = random_pair(rng, shape, n, p)
        if name == "kl_chol":
            args = cholesky_factors(args)
        elif name == "kl_diag":
            args = [a if kind == _table.MEAN else rng.uniform(0.5, 2.0, shape + (a.shape[-1],))
                    for a, kind in zip(args, kinds)]
    elif name in ("logdet", "trace_solve"):
        args = [random_spd(rng, shape, n), rng.standard_normal(shape + (n, n))][:len(kinds)]
    else:
        args = [rng.standard_normal(shape + (n, p)), rng.standard_normal(shape + (n, p)),
                random_spd(rng, shape, n), random_spd(rng, shape, p)]
        if name.endswith("_chol"):
            args[2:] = np.linalg.cholesky(args[2]), np.linalg.cholesky(args[3])
        elif name.endswith("_diag"):
            args[2:] = rng.uniform(0.5, 2.0, shape + (n,)), rng.uniform(0.5, 2.0, shape + (p,))
    return [np.asarray(a, dtype) for a in args]


def test_the_ufuncs_are_the_table_entries_with_a_kernel():
    assert fmu.__all__ == [name for name, entry in _table.FUNCTIONS.items() if entry.mode is not None]
    assert fmu.kl.ufunc.signature == "(n,p),(n,n),(p,p),(n,p),(n,n),(p,p)->()"
    assert fmu.kl_diag.ufunc.signature == "(n,p),(n),(p),(n,p),(n),(p)->()"
    assert set(fmu.kl.types) == {"dddddd->d", "ffffff->f"}
    with pytest.raises(AttributeError, match="no attribute 'kl_full'"):
        fmu.kl_full


def test_importing_compiles_nothing():
    script = "import sys, fastmvn.ufuncs; assert 'numba' not in sys.modules"
    subprocess.run([sys.executable, "-c", script], check=True)


@pytest.mark.parametrize("name", fmu.__all__)
def test_agrees_with_the_batch_function(name):
    args = arguments(name, np.random.default_rng(1), (5,))
    expected = getattr(fm, name)(*args)
    # The same kernels in one lane: equal to the batch functions' results up to rounding
    # (fused multiply-adds may be placed differently in scalar and vector code).
    np.testing.assert_allclose(getattr(fmu, name)(*args), expected, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("n, p", [(3, 2), (20, 3)])  # float32 arithmetic up to 16×16, float64 beyond
def test_float32_is_computed_as_the_batch_functions_compute_it(n, p):
    args = arguments("kl", np.random.default_rng(2), (6,), n, p, np.float32)
    result = fmu.kl(*args)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, fm.kl(*args), rtol=2e-6)


def test_broadcasting_out_and_axes():
    rng = np.random.default_rng(3)
    mean1, rowcov1, colcov1, mean2, rowcov2, colcov2 = arguments("kl", rng, (4, 1))
    prior = (np.zeros((3, 2)), np.eye(3), np.eye(2))                  # one item for the whole batch
    expected = fm.kl(mean1, rowcov1, colcov1, *prior)
    out = np.full((4, 1), np.nan)
    assert fmu.kl(mean1, rowcov1, colcov1, *prior, out=out) is out
    np.testing.assert_allclose(out, expected, rtol=1e-13)
    # A row-major caller's means, (p, n) with n last: axes= names the core axes.
    moved = fmu.kl(np.swapaxes(mean1, -1, -2), rowcov1, colcov1, *prior,
                   axes=[(-1, -2), (-2, -1), (-2, -1), (-2, -1), (-2, -1), (-2, -1), ()])
    np.testing.assert_allclose(moved, expected, rtol=1e-13)
    x, mean, rowcov, colcov = arguments("logpdf", rng, (2, 1, 3))
    np.testing.assert_allclose(fmu.logpdf(x, mean[0], rowcov, colcov[:, :1]),
                               fm.logpdf(x, mean[0], rowcov, colcov[:, :1]), rtol=1e-13)


def test_a_failing_item_is_nan_and_the_others_are_right():
    args = arguments("kl_diag", np.random.default_rng(4), (4,))
    args[4][2, 1] = -1.0                                              # a negative row variance
    with np.errstate(invalid="ignore"):
        result = fmu.kl_diag(*args)
    expected = fm.kl_diag(*args, errors="nan")
    assert np.isnan(result[2]) and np.isnan(expected[2])
    np.testing.assert_allclose(result, expected, rtol=1e-13)
    rowcov = np.array([np.eye(2), [[1.0, 2.0], [2.0, 1.0]], -np.eye(2)])  # the last two not positive definite
    with np.errstate(invalid="ignore"):                              # a failure may set the flag NumPy warns on
        result = fmu.logdet(rowcov)
    assert result[0] == 0.0 and np.isnan(result[1:]).all()


def test_called_from_numba_code():
    kl = fmu.kl

    @numba.njit
    def total(args):
        out = np.empty(args[0].shape[0])
        kl(*args, out)                                                 # Numba wants the output passed
        return out.sum()

    args = tuple(arguments("kl", np.random.default_rng(5), (7,)))
    np.testing.assert_allclose(total(args), fm.kl(*args).sum(), rtol=1e-13)


def test_dask_apply_gufunc():
    da = pytest.importorskip("dask.array")
    args = arguments("logpdf_chol", np.random.default_rng(6), (10,))
    lazy = [da.from_array(a, chunks=(3,) + a.shape[1:]) for a in args]
    signature = fmu.logpdf_chol.ufunc.signature
    result = da.apply_gufunc(fmu.logpdf_chol, signature, *lazy, output_dtypes=float).compute()
    np.testing.assert_allclose(result, fm.logpdf_chol(*args), rtol=1e-13)


@pytest.mark.skipif(importlib.util.find_spec("xarray") is None, reason="xarray is not installed")
def test_xarray_apply_ufunc():
    import xarray as xr

    a = random_spd(np.random.default_rng(7), (4,), 3)
    array = xr.DataArray(a, dims=("item", "row", "col"))
    result = xr.apply_ufunc(fmu.logdet, array, input_core_dims=[["row", "col"]])
    assert result.dims == ("item",)
    np.testing.assert_allclose(result.values, fm.logdet(a), rtol=1e-13)
