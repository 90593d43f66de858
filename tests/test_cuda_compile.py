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


def test_kron_sum_kl_compiles():
    """The Kronecker-sum KL (``kernels.kronsum.kron_sum_kl``: lane Cholesky, ``jacobi`` for the
    second distribution, ``jacobi_values`` for the first), retargeted, in a kernel of one 4×4
    pair per thread."""
    from numba import float64

    from fastmvn.kernels.eigen import JACOBI_ROWS
    from fastmvn.kernels.kronsum import KRON_SCALARS

    kl = _cuda_kernels.DEVICE["kron_sum_kl"]
    rows = KRON_SCALARS + JACOBI_ROWS

    def kernel(x, out):
        b = cuda.grid(1)
        D = cuda.local.array((4, 4, 1), float64)
        U1 = cuda.local.array((4, 4, 1), float64)
        V1 = cuda.local.array((4, 4, 1), float64)
        A1 = cuda.local.array((4, 4, 1), float64)
        B1 = cuda.local.array((4, 4, 1), float64)
        U2 = cuda.local.array((4, 4, 1), float64)
        V2 = cuda.local.array((4, 4, 1), float64)
        A2 = cuda.local.array((4, 4, 1), float64)
        B2 = cuda.local.array((4, 4, 1), float64)
        Qu1 = cuda.local.array((4, 4, 1), float64)
        Qv1 = cuda.local.array((4, 4, 1), float64)
        Qu2 = cuda.local.array((4, 4, 1), float64)
        Qv2 = cuda.local.array((4, 4, 1), float64)
        T = cuda.local.array((4, 4, 1), float64)
        vectors = cuda.local.array((12, 4, 1), float64)
        v = cuda.local.array((rows, 1), float64)
        res = cuda.local.array(1, float64)
        for i in range(4):
            for j in range(4):
                for M in (D, U1, V1, A1, B1, U2, V2, A2, B2):
                    M[i, j, 0] = x[b, i, j]
        kl(D, U1, V1, A1, B1, U2, V2, A2, B2, Qu1, Qv1, Qu2, Qv2, T, vectors[0], vectors[1], vectors[2], vectors[3],
           vectors[4], vectors[5], vectors[6], vectors[7], vectors[8], vectors[9], vectors[10], vectors[11], v, res,
           1, 4, 4)
        out[b] = res[0]

    code, _ = cuda.compile_ptx(kernel, (float64[:, :, :], float64[:]), cc=TARGET)
    assert ".entry" in code
