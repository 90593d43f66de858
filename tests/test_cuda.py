"""fastmvn.cuda against the CPU kernels: every function, host and GPU arrays, broadcasting, errors.

Runs on a GPU, or on the CPU in Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``);
skipped where neither is there. The batches span several blocks and a partial last one.
"""

import importlib.util
import inspect
import os
import pathlib
import types

import numpy as np
import pytest

import fastmvn as fm

from conftest import factors, spd, upper_cholesky

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    import fastmvn.cuda as fc  # the simulator is always there: a failing import is a failure
else:
    fc = pytest.importorskip("fastmvn.cuda", exc_type=ImportError)

from numba import cuda  # noqa: E402
from numba.cuda.cudadrv.devicearray import is_cuda_ndarray  # noqa: E402

from fastmvn import _config, _cuda_kernels  # noqa: E402
from fastmvn.kernels import drivers, eigen, gradients, kronsum, lanes, values  # noqa: E402

pytestmark = pytest.mark.cuda

THREADS = 8
BATCH = 3 * THREADS + 5
N, P = 3, 2
TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(_config, "THREADS_PER_BLOCK", THREADS)


def chol(a):
    return np.linalg.cholesky(a)


def two_batches(rng, batch):
    """Two batches of matrix normals, the second's row covariance shared by the whole batch."""
    return [rng.standard_normal(batch + (N, P)), spd(rng, batch, N), spd(rng, batch, P),
            rng.standard_normal((N, P)), spd(rng, (), N), spd(rng, batch, P)]


def variances(rng, batch):
    return [rng.standard_normal(batch + (N, P)), rng.uniform(0.2, 3.0, batch + (N,)), rng.uniform(0.2, 3.0, (P,)),
            rng.standard_normal(batch + (N, P)), rng.uniform(0.2, 3.0, batch + (N,)),
            rng.uniform(0.2, 3.0, batch + (P,))]


def density(rng, batch):
    return [rng.standard_normal(batch + (N, P)), rng.standard_normal(batch + (N, P)), spd(rng, batch, N),
            spd(rng, (), P)]


# name: (function, arguments for a batch shape)
CASES = {
    "kl": ("kl", two_batches),
    "kl to MN(0, I, I)": ("kl", lambda rng, batch: two_batches(rng, batch)[:3]),
    "kl_chol": ("kl_chol", lambda rng, batch: factors(two_batches(rng, batch))),
    "kl_chol to MN(0, I, I)": ("kl_chol", lambda rng, batch: factors(two_batches(rng, batch)[:3])),
    "kl_diag": ("kl_diag", variances),
    "kl_diag to MN(0, I, I)": ("kl_diag", lambda rng, batch: variances(rng, batch)[:3]),
    "kl with mean2 omitted": ("kl", lambda rng, batch: two_batches(rng, batch)[:3] + [None]
                              + two_batches(rng, batch)[4:]),
    "logdet": ("logdet", lambda rng, batch: [spd(rng, batch, N)]),
    "trace_solve": ("trace_solve", lambda rng, batch: [spd(rng, batch, N), rng.standard_normal(batch + (N, N))]),
    "mahalanobis": ("mahalanobis", density),
    "logpdf": ("logpdf", lambda rng, batch: density(rng, batch)[:1] + [None] + density(rng, batch)[2:]),
    "logpdf_chol": ("logpdf_chol", lambda rng, batch: [a if i < 2 else chol(a)
                                                       for i, a in enumerate(density(rng, batch))]),
    "mahalanobis_chol": ("mahalanobis_chol", lambda rng, batch: [a if i < 2 else chol(a)
                                                                 for i, a in enumerate(density(rng, batch))]),
    "logpdf_diag": ("logpdf_diag", lambda rng, batch: [a if i < 2 else np.diagonal(a, axis1=-2, axis2=-1).copy()
                                                       for i, a in enumerate(density(rng, batch))]),
    "logpdf_diag with mean omitted": ("logpdf_diag", lambda rng, batch: variances(rng, batch)[3:4] + [None]
                                      + variances(rng, batch)[1:3]),
}


def arguments(rng, case, batch=(BATCH,), dtype=np.float64):
    name, build = CASES[case]
    return name, [None if a is None else a.astype(dtype) for a in build(rng, batch)]


def to_device(args):
    return [None if a is None else cuda.to_device(a) for a in args]


def assert_matches(result, expected, dtype=np.float64):
    assert result.dtype == dtype and result.shape == expected.shape
    tolerance = TOLERANCE[dtype]
    np.testing.assert_allclose(result, expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES)
def test_host_arrays_match_cpu(rng, case, dtype):
    name, args = arguments(rng, case, dtype=dtype)
    result = getattr(fc, name)(*args)
    assert isinstance(result, np.ndarray)
    assert_matches(result, getattr(fm, name)(*args), dtype)


@pytest.mark.parametrize("case", ["kl", "kl_diag", "kl_chol to MN(0, I, I)", "logpdf"])
def test_gpu_arrays_give_gpu_results(rng, case):
    name, args = arguments(rng, case)
    expected = getattr(fm, name)(*args)
    result = getattr(fc, name)(*to_device(args))
    assert is_cuda_ndarray(result)
    assert_matches(result.copy_to_host(), expected)

    out = cuda.to_device(np.full(BATCH, np.nan))
    stream = cuda.stream()
    assert getattr(fc, name)(*to_device(args), out=out, stream=stream) is out
    stream.synchronize()
    assert_matches(out.copy_to_host(), expected)


def test_host_and_gpu_arrays_mixed_and_strided_gpu_arrays(rng):
    args = two_batches(rng, (BATCH,))
    expected = fm.kl(*args)
    doubled = np.zeros((2 * BATCH, N, P))
    doubled[::2] = args[0]
    strided = cuda.to_device(doubled)[::2]  # every other item of a GPU array
    result = fc.kl(strided, cuda.to_device(args[1]), args[2], *args[3:])
    assert_matches(result.copy_to_host(), expected)


@pytest.mark.parametrize("device", [False, True], ids=["host", "gpu"])
def test_broadcasting_over_several_batch_axes(rng, device):
    mean1 = rng.standard_normal((5, 1, N, P))
    rowcov1 = spd(rng, (1, 4), N)  # with mean1: axes that cannot be walked as one
    colcov1 = spd(rng, (4,), P)
    mean2, rowcov2, colcov2 = rng.standard_normal((N, P)), spd(rng, (), N), spd(rng, (5, 4), P)
    args = [mean1, rowcov1, colcov1, mean2, rowcov2, colcov2]
    expected = fm.kl(*args)
    result = fc.kl(*(to_device(args) if device else args))
    assert_matches(result.copy_to_host() if device else result, expected)
    assert_matches(fc.kl(*args[:3]), fm.kl(*args[:3]))


def test_scalar_empty_and_out(rng):
    a = spd(rng, (), N)
    assert fc.logdet(a) == pytest.approx(fm.logdet(a), rel=1e-12)
    assert type(fc.logdet(a)) is type(fm.logdet(a))
    assert fc.logdet(np.zeros((0, 2, N, N))).shape == (0, 2)
    name, args = arguments(rng, "kl")
    out = np.full(2 * BATCH, np.nan)[::2]
    assert fc.kl(*args, out=out) is out
    assert_matches(out, fm.kl(*args))


def same_error(cpu_call, gpu_call):
    with pytest.raises(Exception) as cpu:
        cpu_call()
    with pytest.raises(Exception) as gpu:
        gpu_call()
    assert type(gpu.value) is type(cpu.value) and str(gpu.value) == str(cpu.value)
    return gpu.value


def spoil(args, slot, kind, index):
    """``args`` with the item ``index`` of ``args[slot]`` made bad in the way ``kind`` says."""
    args = [np.array(np.broadcast_to(a, args[0].shape[:1] + a.shape[-2:]), order="C") if i == slot else a
            for i, a in enumerate(args)]
    if kind == "not positive definite":
        args[slot][index] = -np.eye(args[slot].shape[-1])
    else:
        args[slot][index, -1, 0] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}[kind]  # in the lower triangle
    return args


# The simulator runs the kernels on NumPy scalars, which warn on arithmetic with infinities.
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("slot, kind", [(0, "nan"), (1, "not positive definite"), (2, "inf"), (3, "-inf"),
                                        (4, "not positive definite"), (5, "nan"), (2, "not positive definite")])
def test_bad_items_raise_as_on_cpu(rng, slot, kind):
    args = spoil(two_batches(rng, (BATCH,)), slot, kind, [THREADS + 1, 2 * THREADS + 3])
    error = same_error(lambda: fm.kl(*args), lambda: fc.kl(*args))
    assert str(error).endswith(f"at batch index {THREADS + 1}")
    same_error(lambda: fm.kl(*args), lambda: fc.kl(*to_device(args)).copy_to_host())
    result = fc.kl(*args, errors="nan")
    assert np.isnan(result[[THREADS + 1, 2 * THREADS + 3]]).all()
    assert_matches(result, fm.kl(*args, errors="nan"))
    assert_matches(fc.kl(*to_device(args), errors="nan").copy_to_host(), fm.kl(*args, errors="nan"))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_every_kind_of_bad_item_raises_as_on_cpu(rng):
    m = rng.standard_normal((4, 2, 3, 2))
    factor = np.tile(np.eye(2), (4, 2, 1, 1))
    factor[3, 1, 1, 1] = 0.0
    positive = np.ones((4, 2, 2))
    positive[2, 0, 1] = -1.0
    calls = [
        ("kl_chol", (m, np.eye(3), factor, m, np.eye(3), np.eye(2))),
        ("kl_chol", (m, np.eye(3), np.eye(2), m, np.eye(3), factor)),
        ("kl_chol", (m, np.eye(3), factor)),
        ("kl_diag", (m, np.ones(3), positive, m, np.ones(3), np.ones(2))),
        ("kl_diag", (m, np.ones(3), np.ones(2), None, None, positive)),
        ("kl_diag", (m, np.ones(3), positive)),
        ("logpdf_diag", (m, None, np.ones(3), positive)),
        ("logpdf_diag", (m, np.full((3, 2), np.inf), np.ones(3), np.ones(2))),
        ("logdet", (-np.eye(3),)),
        ("trace_solve", (np.eye(2), [np.eye(2), np.full((2, 2), np.nan)])),
        ("mahalanobis", (np.ones((2, 2)), None, np.eye(2), np.zeros((2, 2)))),
        ("logpdf_chol", (m, None, np.eye(3), factor)),
        ("logpdf", (m, m, np.eye(3), np.full((2, 2), np.inf))),
        ("trace_solve", (np.diag([np.inf, 1.0]), np.eye(2))),
        ("mahalanobis_chol", (np.ones((2, 2)), None, np.diag([np.inf, 1.0]), np.eye(2))),
        ("logpdf", (np.zeros((2, 2)), None, np.eye(2), np.array([[2.0, 1.0], [1.0, 0.5]]))),  # rank 1
        ("kl", (np.zeros((2, 2)), np.array([[2.0, 1.0], [1.0, 0.5]]), np.eye(2))),
    ]
    for name, args in calls:
        same_error(lambda: getattr(fm, name)(*args), lambda: getattr(fc, name)(*args))


def test_extreme_scales_as_on_cpu():
    calls = [
        ("kl_diag", (np.zeros((4, 4)), 1e200 * np.ones(4), np.ones(4))),
        ("kl_diag", (np.zeros((4, 4)), 1e-250 * np.ones(4), np.ones(4), None, 1e250 * np.ones(4))),
        ("logpdf_chol", (np.zeros((4, 4)), None, 1e-200 * np.eye(4), np.eye(4))),
        ("kl", (np.zeros((4, 4)), 1e-200 * np.eye(4), np.eye(4), None, 1e200 * np.eye(4), None)),
        ("kl", (np.ones((2, 2)), 2 * np.eye(2), np.eye(2), np.ones((2, 2)), 2 * np.eye(2), np.eye(2))),
    ]
    for name, args in calls:
        expected = getattr(fm, name)(*args)
        assert np.isfinite(expected) and expected >= 0.0 or name == "logpdf_chol"
        np.testing.assert_allclose(getattr(fc, name)(*args), expected, rtol=1e-12)


@pytest.mark.parametrize("call", [
    lambda f: f.kl(np.zeros(3), np.eye(3), np.eye(1)),
    lambda f: f.kl(np.zeros((3, 2)), np.eye(2), np.eye(2)),
    lambda f: f.kl_diag(np.zeros((3, 2)), np.ones(2), np.ones(2)),
    lambda f: f.kl(np.zeros((4, 3, 2)), np.zeros((5, 3, 3)) + np.eye(3), np.eye(2)),
    lambda f: f.kl(np.zeros((2, 2)), np.eye(2), np.eye(2), errors="ignore"),
    lambda f: f.kl(np.zeros((2, 2)), np.eye(2), np.eye(2) + 0j),
    lambda f: f.logdet(np.eye(2), out=np.zeros(1)),
    lambda f: f.logdet(np.eye(2)[None], out=np.zeros(1, np.float32)),
], ids=["ndim", "core shape", "variance shape", "batch shapes", "errors", "complex", "out shape", "out dtype"])
def test_argument_errors_as_on_cpu(call):
    same_error(lambda: call(fm), lambda: call(fc))


def test_errors_of_the_gpu_path():
    with pytest.raises(ValueError, match=r"^a has shape \(2, 33, 33\): fastmvn.cuda takes matrices up to 32×32"):
        fc.logdet(np.zeros((2, 33, 33)))
    with pytest.raises(ValueError, match=r"^mean1 has shape \(2, 40\): fastmvn.cuda takes matrices up to 32×32"):
        fc.kl_diag(np.zeros((2, 40)), np.ones(2), np.ones(40))
    on_gpu = cuda.to_device(np.eye(2)[None])
    with pytest.raises(TypeError, match="^out is a host ndarray; the inputs are on the GPU, so out must be too"):
        fc.logdet(on_gpu, out=np.zeros(1))
    with pytest.raises(ValueError, match="^out on the GPU must be C-contiguous"):
        fc.logdet(cuda.to_device(np.tile(np.eye(2), (2, 1, 1))), out=cuda.to_device(np.zeros(4))[::2])
    with pytest.raises(TypeError, match="^a is a GPU array of int64; fastmvn.cuda reads float32 or float64"):
        fc.logdet(cuda.to_device(np.eye(2, dtype=np.int64)))


def test_float32_gpu_arrays_with_float64_host_arrays(rng):
    name, args = arguments(rng, "kl")
    gpu = to_device([a.astype(np.float32) for a in args[:3]]) + args[3:]
    expected = fm.kl(*[a.astype(np.float32) for a in args[:3]], *args[3:])
    assert_matches(fc.kl(*gpu).copy_to_host(), expected)


def test_every_per_item_function_is_retargeted_from_its_own_source():
    items = {name: value for module in (lanes, values, gradients, eigen, kronsum, drivers)
             for name, value in vars(module).items()
             if hasattr(value, "py_func") and value.py_func.__module__ == module.__name__}
    assert "evaluate" in items and "cholesky" in items
    for name, value in items.items():
        assert _cuda_kernels.DEVICE[name].py_func.__code__ is value.py_func.__code__


def test_retarget_binds_the_copies_to_one_another():
    module = types.ModuleType("items")
    exec("from numba import njit\n"
         "@njit\ndef inner(x):\n    return 2 * x\n"
         "@njit\ndef outer(x):\n    return inner(x) + 1\n", module.__dict__)
    namespace = _cuda_kernels.retarget([module.inner, module.outer], lambda func: func)  # the plain Python copies
    assert namespace["outer"].__globals__["inner"] is namespace["inner"]
    assert namespace["outer"](3) == 7 and namespace["outer"] is not module.outer.py_func


def test_torch_and_cupy_arrays_are_read_in_place(rng):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch has no CUDA device here")
    args = two_batches(rng, (BATCH,))
    expected = fm.kl(*args)
    tensors = [torch.from_numpy(a).cuda() for a in args]
    np.testing.assert_allclose(fc.kl(*tensors).copy_to_host(), expected, rtol=1e-10)
    out = torch.full((BATCH,), torch.nan, dtype=torch.float64, device="cuda")
    assert fc.kl(*tensors, out=out) is out
    np.testing.assert_allclose(out.cpu().numpy(), expected, rtol=1e-10)

    class DLPackOnly:
        def __init__(self, tensor):
            self.tensor = tensor

        def __dlpack__(self, **kwargs):
            return self.tensor.__dlpack__(**kwargs)

        def __dlpack_device__(self):
            return self.tensor.__dlpack_device__()

    result = fc.kl(*(DLPackOnly(t) for t in tensors))
    np.testing.assert_allclose(result.copy_to_host(), expected, rtol=1e-10)


def test_gpu_benchmark_script_runs(capsys):
    path = pathlib.Path(__file__).parent.parent / "benchmarks" / "gpu.py"
    spec = importlib.util.spec_from_file_location("gpu_benchmark", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)  # importing does no work
    assert capsys.readouterr().out == ""
    defaults = script.parse_args([])
    assert defaults.sizes == [4, 8, 16] and defaults.dtypes == ["float32", "float64"] and defaults.pairs is None
    script.main(["--simulate"])  # a few pairs: the simulator's size, or a quick run on a GPU
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:4] == ["n×p", "dtype", "pairs", "ms"]
    assert [line.split()[:3] for line in lines[2:6]] == [["2×2", "float32", "37"], ["2×2", "float64", "37"],
                                                          ["4×4", "float32", "37"], ["4×4", "float64", "37"]]
    assert lines[-1].startswith("a prior per component, 5×8 items of 4×4 float32: ")


GRADIENT_CASES = {case: CASES[case] for case in ("kl", "kl to MN(0, I, I)", "kl_chol", "kl_chol to MN(0, I, I)",
                                                 "kl_diag", "kl_diag to MN(0, I, I)", "kl with mean2 omitted",
                                                 "logpdf", "logpdf_chol", "logpdf_diag",
                                                 "logpdf_diag with mean omitted")}


def assert_grads_match(grads, expected, dtype=np.float64, device=False):
    assert len(grads) == len(expected)
    for grad, want in zip(grads, expected):
        if want is None:
            assert grad is None
        else:
            assert is_cuda_ndarray(grad) == device
            assert_matches(grad.copy_to_host() if device else grad, want, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", GRADIENT_CASES)
def test_value_and_grad_match_cpu(rng, case, dtype):
    name, args = arguments(rng, case, dtype=dtype)
    value, grads = getattr(fc, f"{name}_value_and_grad")(*args)
    expected_value, expected = getattr(fm, f"{name}_value_and_grad")(*args)
    assert isinstance(value, np.ndarray)
    assert_matches(value, expected_value, dtype)
    assert_grads_match(grads, expected, dtype)


@pytest.mark.parametrize("case", ["kl", "kl_chol to MN(0, I, I)", "kl_diag", "logpdf_chol"])
def test_value_and_grad_of_gpu_arrays_stay_on_the_gpu(rng, case):
    """The shared prior's gradient (``two_batches`` shares rowcov2 and mean2, ``density`` colcov)
    is summed on the GPU."""
    name, args = arguments(rng, case)
    value, grads = getattr(fc, f"{name}_value_and_grad")(*to_device(args))
    expected_value, expected = getattr(fm, f"{name}_value_and_grad")(*args)
    assert is_cuda_ndarray(value)
    assert_matches(value.copy_to_host(), expected_value)
    assert_grads_match(grads, expected, device=True)


@pytest.mark.parametrize("device", [False, True], ids=["host", "gpu"])
def test_value_and_grad_wrt_some_arguments(rng, device):
    args = two_batches(rng, (BATCH,))
    wrt = ("mean1", "colcov1", "rowcov2")
    value, grads = fc.kl_value_and_grad(*(to_device(args) if device else args), wrt=wrt)
    expected_value, expected = fm.kl_value_and_grad(*args, wrt=wrt)
    assert [g is None for g in expected] == [False, True, False, True, False, True]
    assert_matches(value.copy_to_host() if device else value, expected_value)
    assert_grads_match(grads, expected, device=device)


@pytest.mark.parametrize("device", [False, True], ids=["host", "gpu"])
def test_value_and_grad_broadcast_over_several_batch_axes(rng, device):
    args = [rng.standard_normal((5, 1, N, P)), spd(rng, (1, 4), N), spd(rng, (4,), P),
            rng.standard_normal((N, P)), spd(rng, (5, 1), N), spd(rng, (5, 4), P)]
    value, grads = fc.kl_value_and_grad(*(to_device(args) if device else args))
    expected_value, expected = fm.kl_value_and_grad(*args)
    assert_matches(value.copy_to_host() if device else value, expected_value)
    assert_grads_match(grads, expected, device=device)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_an_argument_without_batch_axes_fails_as_itself_as_on_cpu():
    means, eye_n, eye_p = np.zeros((BATCH, N, P)), np.eye(N), np.eye(P)
    args = [means, eye_n, eye_p, means, -eye_n, eye_p]
    error = same_error(lambda: fm.kl(*args), lambda: fc.kl(*args))
    assert str(error) == "rowcov2 is not positive definite (Cholesky failed)"
    args[4] = -eye_n[None]
    error = same_error(lambda: fm.kl_value_and_grad(*args), lambda: fc.kl_value_and_grad(*args))
    assert str(error) == "rowcov2 is not positive definite (Cholesky failed) at batch index 0"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_value_and_grad_bad_items_as_on_cpu(rng):
    args = spoil(two_batches(rng, (BATCH,)), 4, "not positive definite", [THREADS + 1])
    error = same_error(lambda: fm.kl_value_and_grad(*args), lambda: fc.kl_value_and_grad(*args))
    assert str(error) == f"rowcov2 is not positive definite (Cholesky failed) at batch index {THREADS + 1}"
    value, grads = fc.kl_value_and_grad(*args, errors="nan")
    expected_value, expected = fm.kl_value_and_grad(*args, errors="nan")
    assert np.isnan(value[THREADS + 1]) and np.isnan(grads[1][THREADS + 1]).all()
    assert_matches(value, expected_value)
    assert_grads_match(grads, expected)
    args = spoil(density(rng, (BATCH,)), 2, "not positive definite", [THREADS + 2])
    error = same_error(lambda: fm.logpdf_value_and_grad(*args), lambda: fc.logpdf_value_and_grad(*args))
    assert str(error) == f"rowcov is not positive definite (Cholesky failed) at batch index {THREADS + 2}"
    value, grads = fc.logpdf_value_and_grad(*args, errors="nan")
    expected_value, expected = fm.logpdf_value_and_grad(*args, errors="nan")
    assert np.isnan(value[THREADS + 2]) and np.isnan(grads[0][THREADS + 2]).all()
    assert_matches(value, expected_value)
    assert_grads_match(grads, expected)


@pytest.mark.parametrize("device", [False, True], ids=["host", "gpu"])
def test_upper_factors(rng, device):
    """``lower=False`` on SciPy's upper factors gives what the CPU gives for NumPy's lower ones,
    with the gradients with respect to the upper factors: the transposes."""
    covs = two_batches(rng, (BATCH,))                     # rowcov2 shared by the batch: its gradient is summed
    lower = factors(covs)
    uppers = [a if k % 3 == 0 else upper_cholesky(a) for k, a in enumerate(covs)]
    uppers[2] = uppers[2] + np.tril(rng.standard_normal(uppers[2].shape), -1)   # below the diagonal: not read
    given = to_device(uppers) if device else uppers

    def host(array):
        return array.copy_to_host() if device else array

    assert_matches(host(fc.kl_chol(*given, lower=False)), fm.kl_chol(*lower))
    x = rng.standard_normal((BATCH, N, P))
    density = [to_device([x])[0] if device else x, None, given[1], given[2]]
    assert_matches(host(fc.logpdf_chol(*density, lower=False)), fm.logpdf_chol(x, None, lower[1], lower[2]))
    value, grads = fc.kl_chol_value_and_grad(*given, lower=False)
    expected_value, expected = fm.kl_chol_value_and_grad(*lower)
    assert_matches(host(value), expected_value)
    assert_grads_match(grads, [g if k % 3 == 0 else np.swapaxes(g, -1, -2) for k, g in enumerate(expected)],
                       device=device)
    value, grads = fc.logpdf_chol_value_and_grad(*density, lower=False)
    expected_value, expected = fm.logpdf_chol_value_and_grad(x, None, lower[1], lower[2])
    assert_matches(host(value), expected_value)
    assert_grads_match(grads, expected[:2] + tuple(np.swapaxes(g, -1, -2) for g in expected[2:]), device=device)
    with pytest.raises(TypeError, match=r"^lower must be True or False"):
        fc.kl_chol(*given, lower="upper")


def launches(monkeypatch):
    """The list that records, for each launch of a batch kernel from now on, whether its slots
    were split in two parts (``_cuda_kernels.items``)."""
    split = []
    original = _cuda_kernels.compiled
    monkeypatch.setattr(_cuda_kernels, "compiled", lambda *a, **k: split.append(k["split"]) or original(*a, **k))
    return split


@pytest.mark.parametrize("device", [False, True], ids=["host", "gpu"])
def test_prior_per_component_is_one_launch(rng, device, monkeypatch):
    """``(items, components)`` against a prior per component: one launch over the batch split
    in two parts, values and gradients in their places, a failure at its index."""
    mean, rowcov = rng.standard_normal((7, 3, N, P)), spd(rng, (7, 3), N)
    prior = spd(rng, (3,), N)
    args = [mean, rowcov, np.eye(P), None, prior, None]
    split = launches(monkeypatch)
    given = to_device(args) if device else args
    result = fc.kl(*given)
    assert split == [True]
    assert_matches(result.copy_to_host() if device else result, fm.kl(*args))
    value, grads = fc.kl_value_and_grad(*given)
    assert split == [True, True]
    expected_value, expected = fm.kl_value_and_grad(*args)
    assert_matches(value.copy_to_host() if device else value, expected_value)
    assert_grads_match(grads, expected, device=device)
    rowcov[4, 2] = -np.eye(N)
    rowcov[5, 0] = -np.eye(N)
    with pytest.raises(np.linalg.LinAlgError, match=r"^rowcov1 is not positive definite \(Cholesky failed\) "
                                                    r"at batch index \(4, 2\)$"):
        fc.kl(*(to_device(args) if device else args))
    values = fc.kl(*args, errors="nan")
    assert np.isnan(values[4, 2]) and np.isnan(values[5, 0]) and np.isfinite(values).sum() == 19


@pytest.mark.parametrize("device", [False, True], ids=["host", "gpu"])
def test_a_slot_broadcast_along_a_middle_axis_alone_is_looped_over(rng, device, monkeypatch):
    """A batch that no split in two parts walks (a covariance that repeats along the middle of
    three batch axes only): one launch per entry of the shortest axis, the middle one here,
    each split, their results interleaved; values, gradients and the first failure in their
    places."""
    mean, rowcov = rng.standard_normal((3, 2, 4, N, P)), spd(rng, (3, 1, 4), N)
    args = [mean, rowcov, np.eye(P), None, None, spd(rng, (2, 1), P)]
    split = launches(monkeypatch)
    given = to_device(args) if device else args
    result = fc.kl(*given)
    assert split == [True, True]
    assert_matches(result.copy_to_host() if device else result, fm.kl(*args))
    value, grads = fc.kl_value_and_grad(*given)
    expected_value, expected = fm.kl_value_and_grad(*args)
    assert_matches(value.copy_to_host() if device else value, expected_value)
    assert_grads_match(grads, expected, device=device)
    rowcov[2, 0, 3] = -np.eye(N)
    mean[1, 1, 2, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"^mean1 contains NaN or infinity at batch index \(1, 1, 2\)$"):
        fc.kl(*(to_device(args) if device else args))
    values = fc.kl(*args, errors="nan")
    assert np.isnan(values[2, :, 3]).all() and np.isnan(values[1, 1, 2]) and np.isfinite(values).sum() == 21


def jacobi_kernel(n):
    """A CUDA kernel of the lane eigensolver's source (``kernels.eigen.jacobi``), retargeted:
    one ``n×n`` matrix per thread, in one lane (``m = 1``)."""
    from numba import float64

    from fastmvn.kernels.eigen import JACOBI_ROWS

    jacobi = _cuda_kernels.DEVICE["jacobi"]

    @cuda.jit
    def kernel(a, values, vectors, sweeps):
        b = cuda.grid(1)
        if b < a.shape[0]:
            A = cuda.local.array((n, n, 1), float64)
            Q = cuda.local.array((n, n, 1), float64)
            w = cuda.local.array((JACOBI_ROWS, 1), float64)
            for i in range(n):
                for j in range(i + 1):
                    A[i, j, 0] = a[b, i, j]
            sweeps[b] = jacobi(A, Q, w, 1, n)
            for i in range(n):
                values[b, i] = A[i, i, 0]
                for j in range(n):
                    vectors[b, i, j] = Q[i, j, 0]

    return kernel


def test_jacobi_runs_on_the_cuda_target(rng):
    n, batch = 5, 2 * THREADS + 3
    g = rng.standard_normal((batch, n, n))
    a = g @ np.swapaxes(g, -1, -2)
    a[0] = np.diag([2.0, 2.0, 1.0, 0.0, 2.0])  # repeated eigenvalues, diagonal already
    kernel = jacobi_kernel(n)
    values, vectors, sweeps = np.empty((batch, n)), np.empty((batch, n, n)), np.empty(batch, np.int64)
    kernel[-(-batch // THREADS), THREADS](a, values, vectors, sweeps)
    np.testing.assert_allclose(np.sort(values, axis=-1), np.linalg.eigvalsh(a), rtol=0,
                               atol=1e-12 * np.abs(a).max())
    np.testing.assert_allclose(np.swapaxes(vectors, -1, -2) @ vectors, np.broadcast_to(np.eye(n), a.shape), atol=1e-13)
    np.testing.assert_allclose((vectors * values[:, None, :]) @ np.swapaxes(vectors, -1, -2), a, rtol=0,
                               atol=1e-12 * np.abs(a).max())
    assert sweeps[0] == 0 and (sweeps <= 12).all()


@pytest.mark.parametrize("name", [name for name in fc.__all__ if name.endswith("_value_and_grad")])
def test_value_and_grad_returns_are_documented_as_numpydoc(name):
    """Each ``_value_and_grad`` documents its value (batch shape) and its tuple of gradients
    (their arguments' shapes) as two results, speaks of ``lower`` only where it takes it, and
    says that it has no ``out=``."""
    function = getattr(fc, name)
    value, grads = pytest.importorskip("numpydoc.docscrape").FunctionDoc(function)["Returns"]
    assert value.type.startswith("(...) ") and grads.type.startswith("tuple of ")
    assert "argument's shape" in " ".join(grads.desc)
    assert ("lower" in function.__doc__) == ("lower" in inspect.signature(function).parameters)
    assert "out" not in inspect.signature(function).parameters and "no ``out=``" in function.__doc__
