"""Every CUDA batch kernel, value and value-and-gradient, compiles for a real GPU target, to PTX.

The simulator runs the per-item kernels as Python, so it cannot tell whether they still
compile for CUDA; this does, with numba-cuda's NVVM (``numba-cuda[cu12]`` or ``[cu13]``)
and no GPU needed. Skipped where NVVM is missing or the simulator is on.
"""

import os
from types import SimpleNamespace

import numpy as np
import pytest

pytestmark = pytest.mark.cuda

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("the CUDA simulator compiles nothing", allow_module_level=True)
pytest.importorskip("numba_cuda")

import numba.cuda.dispatcher  # noqa: E402
from numba import cuda  # noqa: E402
from numba.cuda.cudadrv import nvvm  # noqa: E402

from fastmvn import _config, _cuda_kernels, _modes  # noqa: E402

if not nvvm.is_available():
    pytest.skip("NVVM is not installed (numba-cuda[cu12] or numba-cuda[cu13] brings it)", allow_module_level=True)

TARGET = (9, 0)
MODES = {name: value for name, value in vars(_modes).items() if name.isupper()}


@pytest.fixture(autouse=True)
def compute_capability(monkeypatch):
    """Device functions compile for the current GPU; where there is none, name a target."""
    if not cuda.is_available():
        device = SimpleNamespace(compute_capability=TARGET)
        monkeypatch.setattr(numba.cuda.dispatcher, "get_current_device", lambda: device)


def ptx(mode, size, dtype):
    kernel = _cuda_kernels.batch_kernel(mode, size)
    code, _ = cuda.compile_ptx(kernel, _cuda_kernels.signature((dtype,) * 6, dtype), cc=TARGET)
    return code


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_compiles_to_ptx(mode):
    assert ".entry" in ptx(MODES[mode], 4, np.float32)


def test_largest_scratch_and_float64_compile():
    assert ".entry" in ptx(_modes.KL_COV, _config.MAX_SIZE, np.float64)


def test_gradient_kernel_compiles():
    kernel = _cuda_kernels.grad_kernel(_modes.KL_COV, 4)
    code, _ = cuda.compile_ptx(kernel, _cuda_kernels.grad_signature((np.float32,) * 6, np.float32), cc=TARGET)
    assert ".entry" in code


def test_jacobi_compiles():
    """The lane eigensolver (``kernels.eigen.jacobi``), retargeted, in a kernel of one 32×32
    matrix per thread."""
    from numba import float64, int64

    from fastmvn.kernels.eigen import JACOBI_ROWS

    jacobi = _cuda_kernels.DEVICE["jacobi"]

    def kernel(a, sweeps):
        A = cuda.local.array((32, 32, 1), float64)
        Q = cuda.local.array((32, 32, 1), float64)
        w = cuda.local.array((JACOBI_ROWS, 1), float64)
        b = cuda.grid(1)
        for i in range(32):
            for j in range(i + 1):
                A[i, j, 0] = a[b, i, j]
        sweeps[b] = jacobi(A, Q, w, 1, 32)

    code, _ = cuda.compile_ptx(kernel, (float64[:, :, :], int64[:]), cc=TARGET)
    assert ".entry" in code


@pytest.mark.parametrize("kl, dtype, size", [(True, np.float64, 4), (True, np.float32, _config.MAX_SIZE),
                                             (False, np.float32, 4), (False, np.float64, _config.MAX_SIZE)],
                         ids=["kl-float64", "kl-float32-largest", "logpdf-float32", "logpdf-float64-largest"])
def test_kron_sum_kernel_compiles(kl, dtype, size):
    """The Kronecker-sum kernel (``kernels.kronsum``: lane Cholesky, ``jacobi`` and, for the first
    distribution of a KL, ``jacobi_values``), retargeted, with its ten slots."""
    kernel = _cuda_kernels.kron_sum_kernel(kl, size)
    code, _ = cuda.compile_ptx(kernel, _cuda_kernels.signature((dtype,) * 10, dtype), cc=TARGET)
    assert ".entry" in code


@pytest.mark.parametrize("kind", ["batch", "gradient", "kron sum"])
def test_kernels_over_split_slots_compile(kind):
    """The kernels whose slots are ``(outer, inner, r, c)``, a batch in two parts (a prior per
    mixture component), one launch for a layout whose batch axes do not merge."""
    if kind == "batch":
        kernel = _cuda_kernels.batch_kernel(_modes.KL_COV, 4, split=True)
        signature = _cuda_kernels.signature((np.float32,) * 6, np.float32, split=True)
    elif kind == "gradient":
        kernel = _cuda_kernels.grad_kernel(_modes.KL_COV, 4, split=True)
        signature = _cuda_kernels.grad_signature((np.float64,) * 6, np.float64, split=True)
    else:
        kernel = _cuda_kernels.kron_sum_kernel(True, 4, split=True)
        signature = _cuda_kernels.signature((np.float64,) * 10, np.float64, split=True)
    code, _ = cuda.compile_ptx(kernel, signature, cc=TARGET)
    assert ".entry" in code
