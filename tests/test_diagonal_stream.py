"""The values of diagonal covariances computed one item at a time where each lies
(``fastmvn.kernels.drivers.diagonal_batch``): against the lanes and the reference on both sides
of the thresholds, with the same errors, float32, ``out=``, broadcasting and chunks."""

import numpy as np
import pytest
from numpy.linalg import LinAlgError

import fastmvn as fm
from fastmvn import _batch, _config, _modes, reference
from fastmvn._bench import random_inputs


def inputs(case, batch, n, p, dtype=np.float64):
    args = [np.ascontiguousarray(a) for a in random_inputs("kl_diag" if case == "kl_standard" else case, batch, n, p,
                                                           dtype)]
    return args[:3] if case == "kl_standard" else args


def function(case):
    return fm.logpdf_diag if case == "logpdf_diag" else fm.kl_diag


def expected(case, args):
    return (reference.logpdf_diag if case == "logpdf_diag" else reference.kl_diag)(*args)


@pytest.fixture
def lanes_only(monkeypatch):
    """Every batch in lanes, but what the plan for large items would take."""
    monkeypatch.setattr(_config, "DIAGONAL_KL_STREAM_MIN_SIDE", 10 ** 9)
    monkeypatch.setattr(_config, "DIAGONAL_LOGPDF_STREAM_MIN_SIDE", 10 ** 9)


@pytest.mark.parametrize("case, side, streamed", [
    ("kl_diag", _config.DIAGONAL_KL_STREAM_MIN_SIDE - 1, False), ("kl_diag", _config.DIAGONAL_KL_STREAM_MIN_SIDE, True),
    ("logpdf_diag", _config.DIAGONAL_LOGPDF_STREAM_MIN_SIDE - 1, False),
    ("logpdf_diag", _config.DIAGONAL_LOGPDF_STREAM_MIN_SIDE, True), ("kl_standard", 16, False)])
def test_the_plan_by_mode_and_side(case, side, streamed):
    mode = {"kl_diag": _modes.KL_DIAG, "logpdf_diag": _modes.LOGPDF_DIAG, "kl_standard": _modes.KL_STD_DIAG}[case]
    slots = [np.zeros((1000, side, side)), np.zeros((1000, side, 1))]
    assert _batch._streamed(mode, slots, 1000) is streamed
    assert _batch._streamed(mode, [s[:1] for s in slots], 1) is streamed      # one item as any other
    float32 = [s.astype(np.float32) for s in slots]
    assert _batch._streamed(mode, float32, 1000) is (streamed and side > _config.FLOAT32_ARITHMETIC_MAX_SIDE)
    assert not _batch._streamed(_modes.KL_COV, slots, 1000)
    assert _batch._streamed(mode, [np.zeros((2, 300, 300)), np.zeros((2, 300, 1))], 2)   # large items


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", ["kl_diag", "kl_standard", "logpdf_diag"])
@pytest.mark.parametrize("n, p", [(7, 5), (8, 8), (12, 16), (16, 16), (24, 9)])
def test_the_stream_agrees_with_the_lanes_and_the_reference(case, n, p, dtype, monkeypatch):
    args = inputs(case, 300, n, p, dtype)
    streamed = function(case)(*args)
    with monkeypatch.context() as m:
        m.setattr(_config, "DIAGONAL_KL_STREAM_MIN_SIDE", 10 ** 9)
        m.setattr(_config, "DIAGONAL_LOGPDF_STREAM_MIN_SIDE", 10 ** 9)
        lanes = function(case)(*args)
    assert streamed.dtype == lanes.dtype == dtype and streamed.shape == (300,)
    tolerance = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(streamed, lanes, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(streamed, expected(case, args), rtol=tolerance, atol=tolerance)
    one = function(case)(*(a[7] for a in args))
    if case == "kl_standard":  # one large item takes the plan for large items, which streams; 300 the lanes
        np.testing.assert_allclose(one, streamed[7], rtol=tolerance, atol=tolerance)
    else:  # decided by the shape alone: the bits it has in the batch
        np.testing.assert_array_equal(one, streamed[7])


@pytest.mark.parametrize("case", ["kl_diag", "logpdf_diag"])
def test_the_stream_names_the_failing_argument_and_item(case):
    args = inputs(case, 50, 20, 10)
    rows = 2 if case == "logpdf_diag" else 1                       # the row variances' position
    args[rows][31, 4] = -1.0
    args[rows][44, 0] = 0.0
    name = "rowvar" if case == "logpdf_diag" else "rowvar1"
    with pytest.raises(LinAlgError, match=rf"^{name} must be positive at batch index 31$"):
        function(case)(*args)
    values = function(case)(*args, errors="nan")
    assert np.isnan(values[[31, 44]]).all() and np.isfinite(np.delete(values, [31, 44])).all()
    np.testing.assert_allclose(np.delete(values, [31, 44]), np.delete(expected(case, inputs(case, 50, 20, 10)),
                                                                       [31, 44]), rtol=1e-12)
    args[0][9, 3, 2] = np.nan
    first = "x" if case == "logpdf_diag" else "mean1"
    with pytest.raises(ValueError, match=rf"^{first} contains NaN or infinity at batch index 9$"):
        function(case)(*args)


def test_a_float32_result_beyond_float32s_range_fails_its_item():
    x = np.zeros((3, 20, 20), np.float32)
    x[1] = 1e19                                             # Σ x² ≈ 4e40: finite in float64, not in float32
    ones = np.ones(20, np.float32)
    with pytest.raises(FloatingPointError, match=r"^the result overflowed at batch index 1$"):
        fm.logpdf_diag(x, None, ones, ones)
    values = fm.kl_diag(x, ones, ones, errors="nan")
    assert values.dtype == np.float32 and np.isnan(values[1]) and np.isfinite(values[[0, 2]]).all()


def test_out_broadcasting_and_layouts_that_do_not_merge():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 1, 12, 10))
    mean = rng.standard_normal((3, 12, 10))                         # along the last batch axis only
    rowvar, colvar = rng.uniform(0.5, 2.0, (4, 3, 12)), rng.uniform(0.5, 2.0, 10)
    want = reference.logpdf_diag(x, mean, rowvar, colvar)
    out = np.full((4, 3), np.nan)
    assert fm.logpdf_diag(x, mean, rowvar, colvar, out=out) is out
    np.testing.assert_allclose(out, want, rtol=1e-12)
    prior = rng.standard_normal((3, 12, 10))                        # a prior per component: rows of blocks
    means = rng.standard_normal((5, 3, 12, 10))
    np.testing.assert_allclose(fm.kl_diag(means, np.ones(12), np.ones(10), prior, rowvar[0], colvar),
                               reference.kl_diag(means, np.ones(12), np.ones(10), prior, rowvar[0], colvar),
                               rtol=1e-12)
    middle = rng.uniform(0.5, 2.0, (5, 1, 12))                      # repeats along the middle axis only: looped
    np.testing.assert_allclose(fm.kl_diag(means, middle, colvar, prior, rowvar[0], colvar),
                               reference.kl_diag(means, middle, colvar, prior, rowvar[0], colvar), rtol=1e-12)


def test_large_items_split_into_chunks_report_the_first_failure(monkeypatch):
    monkeypatch.setattr(_config, "DIAGONAL_CHUNK_ENTRIES", 40 * 30 * 4)        # four items a chunk
    args = inputs("kl_diag", 20, 40, 30)
    padding, first_bad, work = _batch._driver_arguments([np.empty((20, 40, 30))], 20, np.float64, streamed=True)
    assert len(first_bad) == 5 and work.dtype == np.float64
    np.testing.assert_allclose(fm.kl_diag(*args), reference.kl_diag(*args), rtol=1e-12)
    args[5][17, 3] = -1.0
    args[2][13, 0] = np.inf
    with pytest.raises(ValueError, match=r"^colvar1 contains NaN or infinity at batch index 13$"):
        fm.kl_diag(*args)
    values = fm.kl_diag(*args, errors="nan")
    assert np.isnan(values[[13, 17]]).all() and np.isfinite(np.delete(values, [13, 17])).all()
