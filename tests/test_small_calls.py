"""Batches of one chunk run on the calling thread (the serial compilation of the drivers):
the same bits as the multi-threaded drivers, values and gradients."""

import numpy as np
import pytest

import fastmvn as fm
from fastmvn import _bench, _config

CASES = [case for case in _bench.CASES if not case.startswith(("pdf", "entropy"))]


def function(case):
    return getattr(fm, "kl" if case == "kl_standard" else case)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES)
def test_one_chunk_gives_the_bits_of_many(case, dtype, monkeypatch):
    for n, p in ((4, 4), (5, 3), (2, 2)):
        args = _bench.random_inputs(case, 150, n, p, dtype)
        serial = function(case)(*args)                         # 150 items: one chunk
        monkeypatch.setattr(_config, "CHUNK", 16)               # 10 chunks, on the thread pool
        parallel = function(case)(*args)
        monkeypatch.undo()
        np.testing.assert_array_equal(serial, parallel)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", ["kl", "kl_chol", "kl_diag", "kl_standard"])
def test_one_chunk_gives_the_gradient_bits_of_many(case, dtype, monkeypatch):
    name = "kl" if case == "kl_standard" else case
    args = _bench.random_inputs(case, 150, 4, 3, dtype)
    serial = getattr(fm, f"{name}_value_and_grad")(*args)
    monkeypatch.setattr(_config, "CHUNK", 16)
    parallel = getattr(fm, f"{name}_value_and_grad")(*args)
    np.testing.assert_array_equal(serial[0], parallel[0])
    for a, b in zip(serial[1], parallel[1], strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a, b)


def test_failures_in_one_chunk_are_reported_as_in_many(monkeypatch):
    args = list(_bench.random_inputs("kl", 40, 3, 2))
    args[4][17] = -np.eye(3)
    with pytest.raises(np.linalg.LinAlgError, match=r"^rowcov2 is not positive definite \(Cholesky failed\) "
                                                    r"at batch index 17$"):
        fm.kl(*args)
    result = fm.kl(*args, errors="nan")
    monkeypatch.setattr(_config, "CHUNK", 8)
    np.testing.assert_array_equal(result, fm.kl(*args, errors="nan"))
