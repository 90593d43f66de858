"""The per-item gradient kernels compile for CUDA from their CPU source, to PTX.

No GPU runs them yet; this keeps their source within what CUDA device functions
take (no allocation, no exceptions, scratch passed in). Needs numba-cuda's NVVM
(``numba-cuda[cu12]`` or ``[cu13]``), no GPU; skipped where it is missing or the
simulator is on.
"""

import math
import os
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.cuda

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("the CUDA simulator compiles nothing", allow_module_level=True)
pytest.importorskip("numba_cuda")

import numba.cuda.dispatcher  # noqa: E402
from numba import cuda, float32, float64, types, void  # noqa: E402
from numba.cuda.cudadrv import nvvm  # noqa: E402

from fastmvn import _cuda_kernels, _modes  # noqa: E402

if not nvvm.is_available():
    pytest.skip("NVVM is not installed (numba-cuda[cu12] or numba-cuda[cu13] brings it)", allow_module_level=True)

TARGET = (9, 0)
SIZE = 4


@pytest.fixture(autouse=True)
def compute_capability(monkeypatch):
    if not cuda.is_available():
        device = SimpleNamespace(compute_capability=TARGET)
        monkeypatch.setattr(numba.cuda.dispatcher, "get_current_device", lambda: device)


def gradient_kernel(mode):
    """One thread per item: the value and the six gradients, with the CPU driver's scratch."""
    value_and_grad = _cuda_kernels.DEVICE["value_and_grad"]
    store = _cuda_kernels.DEVICE["store"]

    def kernel(a0, a1, a2, a3, a4, a5, out, g0, g1, g2, g3, g4, g5):
        n = a0.shape[1]
        p = a0.shape[2]
        W = cuda.local.array((SIZE, SIZE), float64)
        G1 = cuda.local.array((SIZE, SIZE), float64)
        H1 = cuda.local.array((SIZE, SIZE), float64)
        G2 = cuda.local.array((SIZE, SIZE), float64)
        H2 = cuda.local.array((SIZE, SIZE), float64)
        P1 = cuda.local.array((SIZE, SIZE), float64)
        Q1 = cuda.local.array((SIZE, SIZE), float64)
        P2 = cuda.local.array((SIZE, SIZE), float64)
        Q2 = cuda.local.array((SIZE, SIZE), float64)
        A = cuda.local.array((SIZE, SIZE), float64)
        B = cuda.local.array((SIZE, SIZE), float64)
        rp1 = cuda.local.array(SIZE, float64)
        rq1 = cuda.local.array(SIZE, float64)
        rp2 = cuda.local.array(SIZE, float64)
        rq2 = cuda.local.array(SIZE, float64)
        for b in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
            value = value_and_grad(mode, a0[b], a1[b], a2[b], a3[b], a4[b], a5[b], W, G1, H1, G2, H2,
                                   P1, Q1, P2, Q2, A, B, rp1, rq1, rp2, rq2, n, p)
            valid = math.isfinite(value)
            out[b] = value
            store(g0[b], W, -1.0, valid)
            store(g1[b], G1, 1.0, valid)
            store(g2[b], H1, 1.0, valid)
            store(g3[b], W, 1.0, valid)
            store(g4[b], G2, 1.0, valid)
            store(g5[b], H2, 1.0, valid)

    return kernel


@pytest.mark.parametrize("mode", ["KL_CHOL", "KL_COV", "KL_DIAG", "KL_STD_CHOL", "KL_STD_COV", "KL_STD_DIAG"])
def test_value_and_grad_compiles_to_ptx(mode):
    dtype = float32  # float32 slots: reads that convert to the float64 arithmetic
    slots = (types.Array(dtype, 3, "A"),) * 6
    grads = (types.Array(dtype, 3, "C"),) * 6
    signature = void(*slots, types.Array(dtype, 1, "C"), *grads)
    code, _ = cuda.compile_ptx(gradient_kernel(getattr(_modes, mode)), signature, cc=TARGET)
    assert ".entry" in code
