"""Timings of the headline cases with pytest-benchmark.

Timing is off in the normal test run (``--benchmark-disable``): each case then runs once
and is checked against the NumPy reference on its first items. To time them::

    python -m pytest tests/test_benchmarks.py --benchmark-enable --benchmark-autosave
"""

import numpy as np
import pytest

import fastmvn as fm
from fastmvn import reference
from fastmvn._bench import random_inputs

#: Items checked against the reference in every case.
CHECKED = 200


def _run(benchmark, func, args):
    """Time ``func(*args)`` and record the batch size, for per-item figures."""
    benchmark.extra_info["items"] = len(args[0])
    return benchmark(func, *args)


def _check(result, baseline, args, dtype):
    expected = baseline(*(a[:CHECKED] for a in args))
    rtol = 1e-4 if dtype == np.float32 else 1e-9
    assert result.dtype == dtype
    np.testing.assert_allclose(result[:CHECKED], expected, rtol=rtol, atol=rtol)


@pytest.mark.benchmark(group="kl")
@pytest.mark.parametrize("case, function, batch, n, p, dtype", [
    pytest.param("kl", "kl", 200_000, 4, 4, np.float64, id="kl-4x4-float64"),
    pytest.param("kl", "kl", 200_000, 4, 4, np.float32, id="kl-4x4-float32"),
    pytest.param("kl", "kl", 20_000, 16, 16, np.float64, id="kl-16x16-float64"),
    pytest.param("kl_chol", "kl_chol", 200_000, 4, 4, np.float64, id="kl_chol-4x4-float64"),
    pytest.param("kl_standard", "kl", 200_000, 4, 4, np.float64, id="kl_standard-4x4-float64"),
])
def test_fastmvn(benchmark, case, function, batch, n, p, dtype):
    args = random_inputs(case, batch, n, p, dtype)
    result = _run(benchmark, getattr(fm, function), args)
    _check(result, getattr(reference, function), args, dtype)


@pytest.mark.benchmark(group="gradients")
@pytest.mark.parametrize("case", ["kl", "kl_chol"])
def test_value_and_grad(benchmark, case):
    args = random_inputs(case, 200_000, 4, 4)
    value, grads = _run(benchmark, getattr(fm, f"{case}_value_and_grad"), args)
    _check(value, getattr(reference, case), args, np.float64)
    mean1, _, _, mean2, row2, col2 = (a[:CHECKED] for a in args)
    if case == "kl_chol":
        row2, col2 = row2 @ np.swapaxes(row2, -1, -2), col2 @ np.swapaxes(col2, -1, -2)
    expected = np.swapaxes(np.linalg.solve(col2, np.swapaxes(np.linalg.solve(row2, mean2 - mean1), -1, -2)), -1, -2)
    np.testing.assert_allclose(grads[3][:CHECKED], expected, rtol=1e-9, atol=1e-12)   # U2⁻¹ (M2 − M1) V2⁻¹
    np.testing.assert_array_equal(grads[0], -grads[3])


@pytest.mark.benchmark(group="kl")
def test_reference(benchmark):
    """The NumPy reference on a tenth of the 4×4 batch, for comparison per item."""
    args = random_inputs("kl", 20_000, 4, 4)
    result = _run(benchmark, reference.kl, args)
    np.testing.assert_allclose(result[:CHECKED], fm.kl(*(a[:CHECKED] for a in args)), rtol=1e-9)
