"""Batched KL against the NumPy reference, the dense V⊗U route and closed forms."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastmvn as fm
from fastmvn import reference

from conftest import conditioned_spd, dense_kl, factors, pair, spd

SHAPES = [(1, 1), (1, 7), (2, 2), (2, 3), (4, 4), (5, 2), (8, 16), (32, 32), (64, 3), (3, 64)]


@pytest.mark.parametrize("n, p", SHAPES)
def test_kl_matches_reference(rng, n, p):
    args = pair(rng, (6,), n, p)
    expected = reference.kl(*args)
    np.testing.assert_allclose(fm.kl(*args), expected, rtol=1e-10, atol=1e-10 * n * p)
    np.testing.assert_allclose(fm.kl_chol(*factors(args)), expected, rtol=1e-10, atol=1e-10 * n * p)
    np.testing.assert_allclose(fm.kl(*args[:3]), reference.kl(*args[:3]), rtol=1e-10, atol=1e-10 * n * p)
    chol = factors(args)
    np.testing.assert_allclose(fm.kl_chol(*chol[:3]), reference.kl_chol(*chol[:3]), rtol=1e-10, atol=1e-10 * n * p)


@pytest.mark.parametrize("n, p", [(1, 1), (1, 3), (2, 3), (3, 2), (4, 4), (5, 3)])
def test_kl_matches_dense_route(rng, n, p):
    args = pair(rng, (4,), n, p)
    result = fm.kl(*args)
    for b in range(4):
        expected = dense_kl(*(a[b] for a in args))
        assert result[b] == pytest.approx(expected, rel=1e-9, abs=1e-10)
    standard = fm.kl(*args[:3])
    for b in range(4):
        expected = dense_kl(args[0][b], args[1][b], args[2][b], np.zeros((n, p)), np.eye(n), np.eye(p))
        assert standard[b] == pytest.approx(expected, rel=1e-9, abs=1e-10)


@pytest.mark.parametrize("n, p", [(1, 1), (3, 5), (16, 4)])
def test_kl_diag_matches_kl_and_reference(rng, n, p):
    m1, m2 = rng.standard_normal((2, 5, n, p))
    a1, a2 = rng.uniform(0.2, 3.0, (2, 5, n))
    b1, b2 = rng.uniform(0.2, 3.0, (2, 5, p))
    dense = fm.kl(m1, a1[..., None] * np.eye(n), b1[..., None] * np.eye(p),
                  m2, a2[..., None] * np.eye(n), b2[..., None] * np.eye(p))
    np.testing.assert_allclose(fm.kl_diag(m1, a1, b1, m2, a2, b2), dense, rtol=1e-11)
    np.testing.assert_allclose(fm.kl_diag(m1, a1, b1, m2, a2, b2), reference.kl_diag(m1, a1, b1, m2, a2, b2),
                               rtol=1e-11)
    np.testing.assert_allclose(fm.kl_diag(m1, a1, b1), fm.kl(m1, a1[..., None] * np.eye(n),
                                                           b1[..., None] * np.eye(p)), rtol=1e-11)


def test_partial_second_distribution(rng):
    m1, u1, v1, m2, u2, v2 = pair(rng, (5,), 3, 2)
    np.testing.assert_allclose(fm.kl(m1, u1, v1, None, u2, None), fm.kl(m1, u1, v1, np.zeros((3, 2)), u2, np.eye(2)))
    np.testing.assert_allclose(fm.kl(m1, u1, v1, m2), fm.kl(m1, u1, v1, m2, np.eye(3), np.eye(2)))
    np.testing.assert_allclose(fm.kl(m1, u1, v1), fm.kl(m1, u1, v1, np.zeros((3, 2)), np.eye(3), np.eye(2)))
    a = rng.uniform(0.5, 2.0, (5, 3))
    np.testing.assert_allclose(fm.kl_diag(m1, a, [1.0, 2.0], m2, None, None),
                               fm.kl_diag(m1, a, [1.0, 2.0], m2, np.ones(3), np.ones(2)))


def test_closed_form_identity_covariances():
    mean = np.arange(6.0).reshape(2, 3)
    assert fm.kl(mean, np.eye(2), np.eye(3)) == pytest.approx(0.5 * (mean ** 2).sum())


@pytest.mark.parametrize("n, p", [(2, 3), (4, 4), (16, 16), (17, 4), (32, 32)])
def test_float32_arithmetic_near_equal_distributions(rng, n, p):
    # Close pairs (KL of order 0.1 to 1), where rounding in the traces and log-determinants
    # shows most: float32 data of matrices up to 16×16 is computed in float32 arithmetic,
    # within 1e-4 of max(KL, 1); larger matrices in float64 arithmetic, far closer.
    m1, u1, v1 = rng.standard_normal((50, n, p)) * 0.05, spd(rng, (50,), n), spd(rng, (50,), p)
    args = [a.astype(np.float32) for a in (m1, u1, v1, m1 + 0.02 * rng.standard_normal((50, n, p)),
                                           u1 + spd(rng, (50,), n) * 0.1 / n, v1 + spd(rng, (50,), p) * 0.1 / p)]
    exact = fm.kl(*(a.astype(np.float64) for a in args))
    error = np.abs(fm.kl(*args) - exact) / np.maximum(np.abs(exact), 1)
    float32_arithmetic = max(n, p) <= fm._config.FLOAT32_ARITHMETIC_MAX_SIDE
    assert error.max() < (1e-4 if float32_arithmetic else 1e-6)
    assert np.median(exact) < 3


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_result_does_not_depend_on_position_in_the_batch(rng, dtype):
    # Items land in the vector body or the remainder of a loop over lanes depending on the
    # batch around them; either way the result is the same to the last bit.
    args = [a.astype(dtype) for a in pair(rng, (300,), 4, 4)]
    whole = fm.kl(*args)
    np.testing.assert_array_equal(np.array([fm.kl(*(a[i] for a in args)) for i in range(300)]), whole)
    np.testing.assert_array_equal(fm.kl(*(a[7:50] for a in args)), whole[7:50])
    np.testing.assert_array_equal(fm.kl(*args[:3]), np.array([fm.kl(*(a[i] for a in args[:3])) for i in range(300)]))


def test_float32_in_float32_out(rng):
    args = pair(rng, (200,), 4, 4)
    exact = fm.kl(*args)
    single = fm.kl(*(a.astype(np.float32) for a in args))
    assert single.dtype == np.float32
    as32 = fm.kl(*(a.astype(np.float32).astype(np.float64) for a in args))  # same inputs, float64
    large = np.abs(as32) >= 1
    np.testing.assert_allclose(single[large], as32[large], rtol=1e-4)
    assert np.abs(exact - as32).max() < 1e-2 * np.abs(exact).max()  # float32 rounding of the inputs only
    chol = [np.asarray(a, np.float32) for a in factors(args)]
    assert fm.kl_chol(*chol).dtype == np.float32
    assert fm.kl_diag(np.zeros((2, 2), np.float32), np.ones(2, np.float32), np.ones(2, np.float32)).dtype == np.float32


@pytest.mark.parametrize("size", [2, 4, 8, 16])
@pytest.mark.parametrize("condition", [1.0, 1e3])
def test_float32_accuracy_bound(rng, size, condition):
    # The README's bound for float32 arithmetic: within (κ + 1)·1.5e-7 of max(|KL|, 1) from
    # covariances, 2e-6 from factors (κ ≤ 1e3), against float64 arithmetic on the same inputs.
    batch = 4000
    args = [rng.standard_normal((batch, size, size)), conditioned_spd(rng, (batch,), size, condition),
            conditioned_spd(rng, (batch,), size, condition), rng.standard_normal((batch, size, size)),
            conditioned_spd(rng, (batch,), size, condition), conditioned_spd(rng, (batch,), size, condition)]
    for function, inputs, bound in [(fm.kl, args, (condition + 1) * 1.5e-7), (fm.kl_chol, factors(args), 2e-6)]:
        single = [a.astype(np.float32) for a in inputs]
        exact = function(*(a.astype(np.float64) for a in single))
        error = np.abs(function(*single) - exact) / np.maximum(np.abs(exact), 1.0)
        assert error.max() <= bound


def test_dtype_rules(rng):
    assert fm.kl(np.zeros((2, 2), int), np.eye(2, dtype=int), np.eye(2, dtype=int)).dtype == np.float64
    assert fm.kl(np.zeros((2, 2), np.float32), np.eye(2), np.eye(2, dtype=np.float32)).dtype == np.float64
    # omitted second arguments do not promote float32
    assert fm.kl(np.zeros((2, 2), np.float32), np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32),
                 np.zeros((2, 2), np.float32)).dtype == np.float32
    with pytest.raises(TypeError, match="rowcov1 is complex"):
        fm.kl(np.zeros((2, 2)), np.eye(2) + 0j, np.eye(2))
    with pytest.raises(TypeError, match="mean1 has dtype"):
        fm.kl(np.array([["a", "b"], ["c", "d"]]), np.eye(2), np.eye(2))


def test_unbatched_gives_0d(rng):
    m1, u1, v1, m2, u2, v2 = (a[0] for a in pair(rng, (1,), 3, 2))
    result = fm.kl(m1, u1, v1, m2, u2, v2)
    assert np.ndim(result) == 0
    assert result == pytest.approx(dense_kl(m1, u1, v1, m2, u2, v2), rel=1e-10)


def test_broadcasting_shared_prior(rng):
    m1, u1, v1, m2, u2, v2 = pair(rng, (7,), 3, 4)
    result = fm.kl(m1, u1, v1, m2[0], u2[0], v2[0])
    expected = [dense_kl(m1[b], u1[b], v1[b], m2[0], u2[0], v2[0]) for b in range(7)]
    np.testing.assert_allclose(result, expected, rtol=1e-10)


def test_broadcasting_grid_and_unmergeable_layout(rng):
    # batch (2, 1) against (1, 3) -> (2, 3); and a broadcast axis between batch axes,
    # which cannot be merged into one without copying
    m1 = rng.standard_normal((2, 1, 3, 2))
    u1 = spd(rng, (1, 3), 3)
    v1 = spd(rng, (2, 1), 2)
    m2 = rng.standard_normal((3, 2))
    result = fm.kl(m1, u1, v1, m2, None, None)
    assert result.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            expected = dense_kl(m1[i, 0], u1[0, j], v1[i, 0], m2, np.eye(3), np.eye(2))
            assert result[i, j] == pytest.approx(expected, rel=1e-10)
    u = spd(rng, (4, 1, 5), 2)  # (4, 1, 5) against (4, 6, 1): merges nowhere
    m = rng.standard_normal((4, 6, 1, 2, 2))
    result = fm.kl(m, u, np.eye(2))
    np.testing.assert_allclose(result, reference.kl(m, u, np.eye(2)), rtol=1e-10)


def test_strided_and_transposed_inputs(rng):
    m1, u1, v1, m2, u2, v2 = pair(rng, (10,), 4, 3)
    expected = reference.kl(m1[::2], u1[::2], v1[::2], m2[::2], u2[::2], v2[::2])
    m1f = np.asfortranarray(m1.transpose(1, 2, 0)).transpose(2, 0, 1)  # batch axis last in memory
    u1t = np.swapaxes(u1, -1, -2)  # symmetric, so the transpose is the same matrix in another layout
    result = fm.kl(m1f[::2], u1t[::2], v1[::2], m2[::2], u2[::2], v2[::2].copy(order="F"))
    np.testing.assert_allclose(result, expected, rtol=1e-10)
    reversed_ = fm.kl(m1[::-1], u1, v1[::-1], m2[::-1], u2[:, ::-1, ::-1][::-1], v2[::-1])
    np.testing.assert_allclose(reversed_, reference.kl(m1[::-1], u1, v1[::-1], m2[::-1], u2[:, ::-1, ::-1][::-1], v2[::-1]), rtol=1e-10)


def test_out_is_written_and_returned(rng):
    args = pair(rng, (3, 5), 2, 3)
    out = np.full((3, 5), np.nan)
    returned = fm.kl(*args, out=out)
    assert returned is out
    np.testing.assert_allclose(out, reference.kl(*args), rtol=1e-10)
    strided = np.full((3, 10), np.nan)[:, ::2]
    fm.kl(*args, out=strided)
    np.testing.assert_allclose(strided, out)
    zero_d = np.full((), np.nan)
    assert fm.kl(np.zeros((2, 2)), np.eye(2), np.eye(2), out=zero_d) is zero_d and zero_d == 0
    with pytest.raises(ValueError, match=r"out must be an array of shape \(3, 5\)"):
        fm.kl(*args, out=np.empty(15))
    with pytest.raises(TypeError, match="out has dtype float32"):
        fm.kl(*args, out=np.empty((3, 5), np.float32))


def test_out_overlapping_an_input(rng):
    # out lies on the means of items 150-162: written straight, the results of the first
    # items would overwrite inputs not yet read
    args = pair(rng, (200,), 4, 4)
    expected = fm.kl(*args)
    mean1 = args[0].copy()
    out = mean1.reshape(-1)[16 * 150:16 * 150 + 200]
    fm.kl(mean1, *args[1:], out=out)
    np.testing.assert_array_equal(out, expected)


def test_empty_batch():
    result = fm.kl(np.zeros((0, 2, 3)), np.eye(2), np.eye(3))
    assert result.shape == (0,)


def test_only_lower_triangle_is_read(rng):
    m1, u1, v1, m2, u2, v2 = pair(rng, (4,), 3, 3)
    expected = fm.kl(m1, u1, v1, m2, u2, v2)
    upper = np.triu_indices(3, 1)
    for a in (u1, v1, u2, v2):
        a[:, upper[0], upper[1]] = np.nan
    np.testing.assert_allclose(fm.kl(m1, u1, v1, m2, u2, v2), expected, rtol=1e-14)
    symmetric = np.tril(u1) + np.tril(u1, -1).swapaxes(-1, -2)  # the covariance the kernels saw
    factor = np.linalg.cholesky(symmetric)
    factor[:, upper[0], upper[1]] = 7.0
    np.testing.assert_allclose(fm.kl_chol(m1, factor, np.eye(3)), fm.kl(m1, symmetric, np.eye(3)), rtol=1e-12)


def test_ill_conditioned_covariances(rng):
    # U = D C D with scales over five decades: cond(U) ~ 1e10. The KL is invariant under
    # X -> D X, so it must equal the KL of the well-conditioned (C, N) problem.
    n, p, batch = 6, 5, 20
    scales = 10.0 ** rng.uniform(-5, 0, (batch, n))
    d = scales[..., :, None] * np.eye(n)
    c1, c2 = spd(rng, (batch,), n), spd(rng, (batch,), n)
    v1, v2 = spd(rng, (batch,), p), spd(rng, (batch,), p)
    n1, n2 = rng.standard_normal((2, batch, n, p))
    u1, u2 = d @ c1 @ d, d @ c2 @ d
    assert np.linalg.cond(u1).max() > 1e9
    expected = fm.kl(n1, c1, v1, n2, c2, v2)
    np.testing.assert_allclose(fm.kl(d @ n1, u1, v1, d @ n2, u2, v2), expected, rtol=1e-8)
    # the same distribution twice: exactly zero through the factors
    assert np.abs(fm.kl(d @ n1, u1, v1, d @ n1, u1, v1)).max() < 1e-7


@pytest.mark.parametrize("n, p", [(64, 64), (64, 33)])
def test_determinants_beyond_the_float_range(n, p):
    # |aI| = 1e-8^n underflows float64 and |bI| = 1e8^p overflows it; their logs do not,
    # whether the row and column products are logged together (n == p) or apart.
    a, b = 1e-8, 1.5e8
    zeros, u, v = np.zeros((n, p)), a * np.eye(n), b * np.eye(p)
    to_standard = 0.5 * n * p * (a * b - 1.0 - np.log(a * b))
    from_standard = 0.5 * n * p * (1.0 / (a * b) - 1.0 + np.log(a * b))
    np.testing.assert_allclose(fm.kl(zeros, u, v), to_standard, rtol=1e-12)
    np.testing.assert_allclose(fm.kl_chol(zeros, np.sqrt(a) * np.eye(n), np.sqrt(b) * np.eye(p)), to_standard,
                               rtol=1e-12)
    np.testing.assert_allclose(fm.kl(zeros, np.eye(n), np.eye(p), zeros, u, v), from_standard, rtol=1e-12)
    np.testing.assert_allclose(fm.logpdf(zeros, None, u, v), -0.5 * n * p * (np.log(2 * np.pi) + np.log(a * b)),
                               rtol=1e-12)


small = st.integers(1, 5)


@settings(max_examples=60, deadline=None)
@given(n=small, p=small, seed=st.integers(0, 2**32 - 1), scale=st.floats(0.01, 100.0))
def test_properties(n, p, seed, scale):
    rng = np.random.default_rng(seed)
    m1, u1, v1, m2, u2, v2 = pair(rng, (3,), n, p)
    value = fm.kl(m1, u1, v1, m2, u2, v2)
    assert (value >= -1e-9).all()
    assert np.abs(fm.kl(m1, u1, v1, m1, u1, v1)).max() < 1e-9 * n * p
    np.testing.assert_allclose(fm.kl(m1, scale * u1, v1 / scale, m2, u2 / scale, scale * v2), value,
                               rtol=1e-8, atol=1e-9)
    for b in range(3):
        assert value[b] == pytest.approx(dense_kl(*(a[b] for a in (m1, u1, v1, m2, u2, v2))), rel=1e-8, abs=1e-9)
