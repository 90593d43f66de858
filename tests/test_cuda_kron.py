"""fastmvn.cuda's Kronecker-sum functions against the CPU's: broadcasting, noises, sizes, errors.

Runs on a GPU, or on the CPU in Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``);
skipped where neither is there. The simulator runs the kernels as Python, a few items a
second at 8×8, so the batches are a few items, over blocks of two threads.
"""

import os

import numpy as np
import pytest

import fastmvn as fm

from conftest import spd

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    import fastmvn.cuda as fc  # the simulator is always there: a failing import is a failure
else:
    fc = pytest.importorskip("fastmvn.cuda", exc_type=ImportError)

from numba import cuda  # noqa: E402
from numba.cuda.cudadrv.devicearray import is_cuda_ndarray  # noqa: E402

from fastmvn import _config  # noqa: E402

pytestmark = pytest.mark.cuda

THREADS = 2
TOLERANCE = {np.float64: 1e-12, np.float32: 1e-4}


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(_config, "THREADS_PER_BLOCK", THREADS)


def low_rank(rng, batch, size, rank):
    """``G Gᵀ`` of rank ``rank``, of small integers: exact in float32 too (rounding would make a
    low-rank matrix indefinite by float32's epsilon, which the CPU functions report)."""
    g = rng.integers(-3, 4, batch + (size, rank)).astype(np.float64)
    return g @ np.swapaxes(g, -1, -2)


def distribution(rng, batch, n, p, noise):
    """``(mean, rowcov, colcov, noise_rowcov, noise_colcov)`` over ``batch``: full noises, a scalar
    row noise and the default column one, or a scalar row noise with a rank-1 row signal."""
    mean, rowcov, colcov = rng.standard_normal(batch + (n, p)), spd(rng, batch, n), spd(rng, batch, p)
    if noise == "full":
        return [mean, rowcov, colcov, spd(rng, batch, n), spd(rng, batch, p)]
    if noise == "scalar":
        return [mean, rowcov, colcov, 0.3, None]
    return [mean, low_rank(rng, batch, n, 1), colcov, 0.5, spd(rng, batch, p)]  # "low rank"


# name: (batch of the first distribution (and x), batch of the second (or of the mean), n, p, noise)
CASES = {
    "3 items, shared prior, full noise": ((3,), (), 3, 2, "full"),
    "two batch axes, scalar noise": ((2, 1), (1, 2), 2, 3, "scalar"),
    "a prior per component": ((4, 3), (3,), 2, 2, "full"),
    "1×4, low-rank signal": ((3,), (3,), 1, 4, "low rank"),
    "4×4, shared prior": ((2,), (), 4, 4, "full"),
    "8×3": ((2,), (), 8, 3, "low rank"),
}


def kl_arguments(rng, case, dtype=np.float64):
    batch1, batch2, n, p, noise = CASES[case]
    args = distribution(rng, batch1, n, p, noise) + distribution(rng, batch2, n, p, "full")
    return [a.astype(dtype) if isinstance(a, np.ndarray) else a for a in args]


def logpdf_arguments(rng, case, dtype=np.float64):
    batch1, batch2, n, p, noise = CASES[case]
    mean, *covs = distribution(rng, batch1, n, p, noise)
    args = [rng.standard_normal(batch2 + (n, p)), mean, *covs]
    return [a.astype(dtype) if isinstance(a, np.ndarray) else a for a in args]


def assert_matches(result, expected, dtype=np.float64):
    assert result.dtype == dtype and result.shape == expected.shape
    tolerance = TOLERANCE[dtype]
    np.testing.assert_allclose(result, expected, rtol=tolerance, atol=tolerance)


def to_device(args):
    return [cuda.to_device(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a for a in args]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES)
def test_kl_kron_sum_matches_cpu(rng, case, dtype):
    args = kl_arguments(rng, case, dtype)
    result = fc.kl_kron_sum(*args)
    assert isinstance(result, np.ndarray)
    assert_matches(result, fm.kl_kron_sum(*args), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES)
def test_logpdf_kron_sum_matches_cpu(rng, case, dtype):
    args = logpdf_arguments(rng, case, dtype)
    result = fc.logpdf_kron_sum(*args)
    assert isinstance(result, np.ndarray)
    assert_matches(result, fm.logpdf_kron_sum(*args), dtype)


def test_an_unbatched_item_gives_a_scalar_and_mean_none_zero(rng):
    x, _, *covs = logpdf_arguments(rng, "4×4, shared prior")
    args = [x, None] + [c[0] if isinstance(c, np.ndarray) else c for c in covs]
    result = fc.logpdf_kron_sum(*args)
    expected = fm.logpdf_kron_sum(*args)
    assert type(result) is type(expected)
    assert result == pytest.approx(expected, rel=1e-12)
    assert fc.kl_kron_sum(*args[1:], *args[1:]) == pytest.approx(fm.kl_kron_sum(*args[1:], *args[1:]), abs=1e-12)


def test_out_and_gpu_arrays(rng):
    args = kl_arguments(rng, "3 items, shared prior, full noise")
    expected = fm.kl_kron_sum(*args)
    out = np.full(6, np.nan)[::2]
    assert fc.kl_kron_sum(*args, out=out) is out
    assert_matches(out, expected)

    result = fc.kl_kron_sum(*to_device(args))
    assert is_cuda_ndarray(result)
    assert_matches(result.copy_to_host(), expected)
    out = cuda.to_device(np.full(3, np.nan))
    stream = cuda.stream()
    assert fc.kl_kron_sum(*to_device(args), out=out, stream=stream) is out
    stream.synchronize()
    assert_matches(out.copy_to_host(), expected)

    x, *rest = logpdf_arguments(rng, "two batch axes, scalar noise")  # x on the GPU, the rest on the host
    result = fc.logpdf_kron_sum(cuda.to_device(x), *rest)
    assert is_cuda_ndarray(result) and result.shape == (2, 2)
    assert_matches(result.copy_to_host(), fm.logpdf_kron_sum(x, *rest))


# The simulator runs the kernels on NumPy scalars, which warn on the NaN of a failed Cholesky.
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("device", [False, True], ids=["host", "gpu"])
def test_a_noise_not_positive_definite_as_on_cpu(rng, device):
    args = kl_arguments(rng, "3 items, shared prior, full noise")
    args[8] = np.array(np.broadcast_to(args[8], (3, 3, 3)))  # noise_rowcov2, shared until now
    args[8][1] = -np.eye(3)
    given = to_device(args) if device else args
    message = r"^noise_rowcov2 is not positive definite \(Cholesky failed\) at batch index 1$"
    with pytest.raises(np.linalg.LinAlgError, match=message):
        fm.kl_kron_sum(*args)
    with pytest.raises(np.linalg.LinAlgError, match=message):
        fc.kl_kron_sum(*given)
    result = fc.kl_kron_sum(*given, errors="nan")
    result = result.copy_to_host() if device else result
    assert np.isnan(result[1]) and np.isfinite(result[[0, 2]]).all()
    assert_matches(result, fm.kl_kron_sum(*args, errors="nan"))

    x, mean, rowcov, colcov, _, _ = logpdf_arguments(rng, "two batch axes, scalar noise")
    noise_colcov = np.array(np.broadcast_to(np.eye(3), (2, 2, 3, 3)))
    noise_colcov[1, 0, 2, 2] = 0.0
    for variance, message in ((-1.0, "noise_rowcov is not positive definite (Cholesky failed)"),  # a scalar: no index
                              (1.0, "noise_colcov is not positive definite (Cholesky failed) at batch index (1, 0)")):
        args = [x, mean, rowcov, colcov, variance, noise_colcov]
        for call in (lambda: fm.logpdf_kron_sum(*args),
                     lambda: fc.logpdf_kron_sum(*(to_device(args) if device else args))):
            with pytest.raises(np.linalg.LinAlgError) as error:
                call()
            assert str(error.value) == message
        result = fc.logpdf_kron_sum(*args, errors="nan")
        assert_matches(result, fm.logpdf_kron_sum(*args, errors="nan"))
    assert np.isnan(result[1, 0]) and np.isfinite(result).sum() == 3


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_nan_input_and_a_signal_not_positive_semidefinite_as_on_cpu(rng):
    x, mean, rowcov, colcov, noise_rowcov, noise_colcov = logpdf_arguments(rng, "3 items, shared prior, full noise")
    rowcov[2] = -rowcov[2]
    mean[1, 0, 0] = np.nan
    args = [x, mean, rowcov, colcov, noise_rowcov, noise_colcov]
    with pytest.raises(ValueError, match=r"^mean contains NaN or infinity at batch index 1$"):
        fc.logpdf_kron_sum(*args)
    mean[1, 0, 0] = 0.0
    with pytest.raises(np.linalg.LinAlgError, match=r"^rowcov is not positive semi-definite at batch index 2$"):
        fc.logpdf_kron_sum(*args)
    assert_matches(fc.logpdf_kron_sum(*args, errors="nan"), fm.logpdf_kron_sum(*args, errors="nan"))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_shared_argument_fails_as_itself_as_on_cpu(rng):
    """A second distribution without batch axes whose signal is not positive semi-definite
    fails without a batch index, as the CPU function reports it."""
    args = kl_arguments(rng, "3 items, shared prior, full noise")
    args[6] = -args[6]
    with pytest.raises(np.linalg.LinAlgError) as cpu:
        fm.kl_kron_sum(*args)
    assert str(cpu.value) == "rowcov2 is not positive semi-definite"
    with pytest.raises(np.linalg.LinAlgError, match=r"^rowcov2 is not positive semi-definite$"):
        fc.kl_kron_sum(*args)


def test_argument_errors():
    with pytest.raises(ValueError, match=r"^rowcov has shape \(33, 33\): fastmvn.cuda takes matrices up to 32×32"):
        fc.logpdf_kron_sum(np.zeros((33, 2)), None, np.eye(33), np.eye(2), 1.0)
    with pytest.raises(ValueError, match=r"^x has shape \(3, 2\); expected \(\.\.\., 2, 2\)"):
        fc.logpdf_kron_sum(np.zeros((3, 2)), None, np.eye(2), np.eye(2), 1.0)
    with pytest.raises(ValueError, match="^errors must be 'raise' or 'nan'"):
        fc.kl_kron_sum(None, np.eye(2), np.eye(2), 1.0, None, None, np.eye(2), np.eye(2), 1.0, None, errors="ignore")
    with pytest.raises(TypeError, match="^out has dtype float64; these inputs give float32"):
        fc.logpdf_kron_sum(np.zeros((2, 2), np.float32), None, np.eye(2, dtype=np.float32),
                           np.eye(2, dtype=np.float32), 1.0, out=np.zeros(()))
    with pytest.raises(TypeError, match="^noise_rowcov must be a matrix or a scalar, not None"):
        fc.logpdf_kron_sum(np.zeros((2, 2)), None, np.eye(2), np.eye(2), None)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_an_item_the_cpu_computes_but_the_kernels_do_not(rng, monkeypatch):
    """The CPU function computes again by LAPACK an item its kernels leave NaN; where it does, the
    GPU's NaN is reported as such, not as the CPU's error (here a stand-in CPU function)."""
    from fastmvn.distributions import kron

    def logpdf_kron_sum(*args):
        return 0.0

    monkeypatch.setattr(kron, "logpdf_kron_sum", logpdf_kron_sum)
    x, mean, rowcov, colcov, noise_rowcov, noise_colcov = logpdf_arguments(rng, "3 items, shared prior, full noise")
    noise_rowcov[1] = -np.eye(3)
    with pytest.raises(FloatingPointError, match=r"^the result is not finite at batch index 1, though "
                                                 r"fastmvn.logpdf_kron_sum computes it on the CPU \(by LAPACK\)$"):
        fc.logpdf_kron_sum(x, mean, rowcov, colcov, noise_rowcov, noise_colcov)
