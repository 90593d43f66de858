"""Matrix-normal distributions: pdf, entropy, rvs, fit and MatrixNormal against SciPy and
the dense multivariate normal on column-major vec."""

import numpy as np
import pytest
from numpy.linalg import LinAlgError
from scipy.stats import matrix_normal, multivariate_normal

import fastmvn as fm
from fastmvn import reference

from conftest import normalised, random_mn, spd, vec


def vec_index(rows, cols, n):
    """Positions in column-major vec of the entries X[rows][:, cols], in vec order of the sub-matrix."""
    return np.array([i + n * j for j in cols for i in rows])


# pdf and entropy --------------------------------------------------------------------------


@pytest.mark.parametrize("n, p", [(1, 1), (3, 2), (2, 4)])
def test_pdf_and_entropy_against_scipy_and_dense(rng, n, p):
    mean, u, v = random_mn(rng, (4,), n, p)
    x = mean + 0.5 * rng.standard_normal((4, n, p))
    density, h = fm.pdf(x, mean, u, v), fm.entropy(u, v)
    chol_u, chol_v = np.linalg.cholesky(u), np.linalg.cholesky(v)
    np.testing.assert_allclose(fm.pdf_chol(x, mean, chol_u, chol_v), density, rtol=1e-12)
    np.testing.assert_allclose(fm.entropy_chol(chol_u, chol_v), h, rtol=1e-12)
    for b in range(4):
        scipy_mn = matrix_normal(mean[b], u[b], v[b])
        dense = multivariate_normal(vec(mean[b]), np.kron(v[b], u[b]))
        assert density[b] == pytest.approx(scipy_mn.pdf(x[b]), rel=1e-10)
        assert density[b] == pytest.approx(dense.pdf(vec(x[b])), rel=1e-9)
        assert h[b] == pytest.approx(scipy_mn.entropy(), rel=1e-11)
        assert h[b] == pytest.approx(dense.entropy(), rel=1e-10)
    np.testing.assert_allclose(density, reference.pdf(x, mean, u, v), rtol=1e-12)
    np.testing.assert_allclose(h, reference.entropy(u, v), rtol=1e-12)
    np.testing.assert_allclose(h, reference.entropy_chol(chol_u, chol_v), rtol=1e-12)
    assert fm.pdf_chol(x, mean, chol_u, chol_v).shape == (4,)


def test_pdf_entropy_broadcasting_out_float32_and_overflow(rng):
    u, v = spd(rng, (3, 1), 2), spd(rng, (4,), 3)
    h = fm.entropy(u, v)
    assert h.shape == (3, 4)
    assert h[2, 1] == pytest.approx(matrix_normal(None, u[2, 0], v[1]).entropy(), rel=1e-11)
    out = np.full((3, 4), np.nan)
    assert fm.entropy(u, v, out=out) is out and np.array_equal(out, h)
    low = fm.entropy_chol(np.linalg.cholesky(u).astype(np.float32), np.linalg.cholesky(v).astype(np.float32))
    assert low.dtype == np.float32
    np.testing.assert_allclose(low, h, rtol=1e-6)
    assert np.ndim(fm.entropy(u[0, 0], v[0])) == 0

    x = rng.standard_normal((3, 4, 2, 3))
    strided = np.full((4, 3), np.nan).T
    assert fm.pdf(x, None, u, v, out=strided) is strided
    np.testing.assert_allclose(strided, np.exp(fm.logpdf(x, None, u, v)), rtol=1e-12)
    assert fm.pdf(x.astype(np.float32), None, u.astype(np.float32), v.astype(np.float32)).dtype == np.float32

    tiny = np.stack([np.eye(2), 1e-200 * np.eye(2)])  # a density of about 10^400 at the mean
    with pytest.raises(FloatingPointError, match="the density overflowed at batch index 1$"):
        fm.pdf(np.zeros((2, 2)), None, tiny, np.eye(2))
    result = fm.pdf(np.zeros((2, 2)), None, tiny, np.eye(2), errors="nan")
    assert np.isfinite(result[0]) and np.isnan(result[1])


def test_entropy_bad_input_names_argument_and_broadcast_index(rng):
    u, v = spd(rng, (3, 1), 2), spd(rng, (4,), 3)
    v[2] = -np.eye(3)
    with pytest.raises(LinAlgError, match=r"colcov is not positive definite \(Cholesky failed\) at batch index \(0, 2\)$"):
        fm.entropy(u, v)
    u[1, 0, 1, 0] = np.inf
    result = fm.entropy(u, v, errors="nan")
    assert np.isnan(result[:, 2]).all() and np.isnan(result[1]).all()
    assert np.isfinite(np.delete(np.delete(result, 2, axis=1), 1, axis=0)).all()
    v[0, 0, 0], u[0, 0, 1, 0] = -1.0, np.nan
    with pytest.raises(ValueError, match=r"rowcov contains NaN or infinity at batch index \(0, 0\)$"):
        fm.entropy(u, v)  # non-finite input is reported before a failed factorisation of the same item
    factor = np.tile(np.eye(3), (2, 1, 1))
    factor[1, 1, 1] = -1.0
    with pytest.raises(LinAlgError, match="colchol is not a Cholesky factor: its diagonal must be positive at batch index 1$"):
        fm.entropy_chol(np.eye(2), factor)
    factor[1, 1, 1], factor[0, 2, 0] = 1.0, np.nan
    with pytest.raises(ValueError, match="colchol contains NaN or infinity at batch index 0$"):
        fm.entropy_chol(np.eye(2), factor)
    factor[0, 2, 0], factor[0, 0, 2] = 0.0, np.nan  # the upper triangle is not read
    assert np.isfinite(fm.entropy_chol(np.eye(2), factor)).all()
    with pytest.raises(ValueError, match=r"colcov has shape \(3, 2\); expected \(\.\.\., 3, 3\)"):
        fm.entropy(np.eye(2), np.ones((3, 2)))
    with pytest.raises(ValueError, match="errors must be 'raise' or 'nan'"):
        fm.entropy(np.eye(2), np.eye(2), errors="ignore")


# rvs --------------------------------------------------------------------------------------


def test_rvs_mean_and_covariance():
    """The sample mean and covariance of vec X match vec M and V⊗U within 5 standard errors
    per entry: for N draws, se(mean_a) = √(Σ_aa/N), se(cov_ab) = √((Σ_aa Σ_bb + Σ_ab²)/N)."""
    n, p, count = 3, 2, 100_000
    mean = np.arange(6.0).reshape(n, p)
    u = np.array([[2.0, 0.6, 0.2], [0.6, 1.0, -0.3], [0.2, -0.3, 0.5]])
    v = np.array([[1.0, -0.7], [-0.7, 1.5]])
    x = vec(fm.rvs(mean, u, v, size=count, random_state=7))
    sigma = np.kron(v, u)
    variance = np.diag(sigma)
    assert np.all(np.abs(x.mean(axis=0) - vec(mean)) <= 5 * np.sqrt(variance / count))
    standard_error = np.sqrt((np.outer(variance, variance) + sigma**2) / count)
    assert np.all(np.abs(np.cov(x, rowvar=False) - sigma) <= 5 * standard_error)


def test_rvs_shapes_broadcasting_and_reproducibility(rng):
    mean, u, v = random_mn(rng, (4, 1), 2, 3)
    v = v[0, 0]
    x = fm.rvs(mean, u, v, size=(5, 2), random_state=3)
    assert x.shape == (5, 2, 4, 1, 2, 3) and x.dtype == np.float64
    assert fm.rvs(mean[0, 0], u[0, 0], v).shape == (2, 3)
    assert fm.rvs(mean[0, 0], u[0, 0], v, size=1).shape == (1, 2, 3)
    np.testing.assert_array_equal(x, fm.rvs(mean, u, v, (5, 2), np.random.default_rng(3)))
    assert not np.array_equal(x, fm.rvs(mean, u, v, (5, 2), 4))
    low = fm.rvs(*(a.astype(np.float32) for a in (mean, u, v)), size=(5, 2), random_state=3)
    assert low.dtype == np.float32
    np.testing.assert_allclose(low, x, rtol=1e-5, atol=1e-5)
    # the draws are M + A Z Bᵀ for the standard normal Z that the generator gives
    z = np.random.default_rng(3).standard_normal((5, 2, 4, 1, 2, 3))
    np.testing.assert_allclose(x, mean + np.linalg.cholesky(u) @ z @ np.linalg.cholesky(v).T, rtol=1e-12)
    d = fm.MatrixNormal(mean, u, v)
    np.testing.assert_array_equal(d.rvs((5, 2), random_state=3), x)
    generator = np.random.default_rng(0)
    first, second = fm.rvs(mean, u, v, random_state=generator), fm.rvs(mean, u, v, random_state=generator)
    assert not np.array_equal(first, second)


def test_rvs_bad_input_names_argument_and_first_index(rng):
    mean, u, v = random_mn(rng, (6,), 2, 3)
    u[3] = np.diag([1.0, -1.0])
    v[4] = np.zeros((3, 3))
    with pytest.raises(LinAlgError, match=r"rowcov is not positive definite \(Cholesky failed\) at batch index 3$"):
        fm.rvs(mean, u, v, random_state=0)
    v[1] = -np.eye(3)
    with pytest.raises(LinAlgError, match="colcov is not positive definite .* at batch index 1$"):
        fm.rvs(mean, u, v, random_state=0)
    mean[2, 1, 1] = np.nan
    with pytest.raises(LinAlgError, match="at batch index 1$"):
        fm.rvs(mean, u, v, random_state=0)
    u[0, 1, 0] = np.inf
    with pytest.raises(ValueError, match="rowcov contains NaN or infinity at batch index 0$"):
        fm.rvs(mean, u, v, random_state=0)
    samples = fm.rvs(mean, u, v, size=3, random_state=0, errors="nan")
    assert samples.shape == (3, 6, 2, 3) and np.isnan(samples[:, :5]).all()
    mean[:5], u[:5], v[:5] = 0.0, np.eye(2), np.eye(3)  # the good item gets the draws it gets in a good batch
    np.testing.assert_array_equal(samples[:, 5], fm.rvs(mean, u, v, size=3, random_state=0)[:, 5])
    with pytest.raises(ValueError, match=r"rowcov has shape \(6, 3, 3\); expected \(\.\.\., 2, 2\)"):
        fm.rvs(mean, np.ones((6, 3, 3)), v)


# fit --------------------------------------------------------------------------------------


def sample_loglik(samples, d):
    return fm.logpdf(samples, d.mean, d.rowcov, d.colcov).sum(axis=-1)


def test_fit_recovers_parameters_from_large_samples(rng):
    mean, u, v = random_mn(rng, (), 3, 2)
    u, v = normalised(u, v)
    samples = fm.rvs(mean, u, v, size=20_000, random_state=1)
    d = fm.fit(samples)
    assert isinstance(d, fm.MatrixNormal) and d.shape == (3, 2) and d.batch_shape == ()
    assert bool(d.converged) and 2 <= d.n_iter < 100
    # one fit's attributes are Python scalars, as documented and as project's count is
    assert type(d.n_iter) is int and type(d.loglik) is float and type(d.converged) is bool
    assert np.trace(d.rowcov) == pytest.approx(3.0, rel=1e-12)
    np.testing.assert_allclose(d.mean, samples.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(d.mean, mean, atol=0.05)
    np.testing.assert_allclose(d.rowcov, u, atol=0.05)
    np.testing.assert_allclose(d.colcov, v, atol=0.05)
    assert d.loglik == pytest.approx(sample_loglik(samples, d), rel=1e-10)
    assert d.loglik == pytest.approx(-20_000 * d.entropy(), rel=1e-12)
    # maximum likelihood: every nearby parameter does worse
    for other in (fm.MatrixNormal(d.mean, 1.05 * d.rowcov, d.colcov), fm.MatrixNormal(d.mean + 0.01, d.rowcov, d.colcov),
                  fm.MatrixNormal(d.mean, d.rowcov, d.colcov + 0.01 * np.eye(2))):
        assert sample_loglik(samples, other) < d.loglik


def test_fit_loglik_never_decreases():
    rng = np.random.default_rng(5)
    u, v = spd(rng, (), 3, jitter=0.01), spd(rng, (), 4, jitter=0.01)
    samples = fm.rvs(np.zeros((3, 4)), u, v, size=4, random_state=2)
    history = []
    for max_iter in range(1, 9):
        with pytest.warns(RuntimeWarning, match=f"fit did not converge within max_iter={max_iter} iterations: "):
            d = fm.fit(samples, tol=0.0, max_iter=max_iter)
        assert d.n_iter == max_iter and not d.converged
        assert d.loglik == pytest.approx(sample_loglik(samples, d), rel=1e-10)
        history.append(float(d.loglik))
    steps = np.diff(history)
    assert np.all(steps >= -1e-9 * abs(history[-1])) and steps[0] > 0
    assert fm.fit(samples).loglik >= history[-1] - 1e-9 * abs(history[-1])


def test_fit_batched_matches_loop_and_float32(rng):
    samples = rng.standard_normal((2, 3, 6, 2, 3)) @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 1.0]])
    samples[1, 2] *= 1e-3  # a fit at another scale
    d = fm.fit(samples)
    assert d.batch_shape == (2, 3) and d.n_iter.shape == d.loglik.shape == d.converged.shape == (2, 3)
    assert repr(d).startswith("MatrixNormalFit(shape=(2, 3), batch_shape=(2, 3), dtype=float64, max_n_iter=")
    for i in np.ndindex(2, 3):
        single = fm.fit(samples[i])
        assert d.n_iter[i] == single.n_iter and d.loglik[i] == pytest.approx(single.loglik, rel=1e-12)
        for name in ("mean", "rowcov", "colcov"):
            np.testing.assert_allclose(getattr(d, name)[i], getattr(single, name), rtol=1e-10, atol=1e-14)
        assert type(d[i]) is fm.MatrixNormal
    low = fm.fit(samples.astype(np.float32))
    assert low.dtype == np.float32 and low.loglik.dtype == np.float64
    np.testing.assert_allclose(low.colcov, d.colcov, rtol=1e-4)


def scale_samples(rng):
    """Two fits' samples of 2×3 matrices."""
    u, v = spd(rng, (2,), 2), spd(rng, (2,), 3)
    return np.moveaxis(fm.rvs(rng.standard_normal((2, 2, 3)), u, v, size=30, random_state=4), 0, -3)


@pytest.mark.parametrize("scale", [1e-150, 1e-100, 1.0, 1e100, 1e150])
def test_fit_is_scale_equivariant(rng, scale):
    samples = scale_samples(rng)
    base, scaled = fm.fit(samples), fm.fit(samples * scale)  # and no warning (warnings are errors)
    assert scaled.converged.all() and np.array_equal(scaled.n_iter, base.n_iter)
    np.testing.assert_allclose(scaled.rowcov, base.rowcov, rtol=1e-12)
    np.testing.assert_allclose(scaled.colcov, base.colcov * scale**2, rtol=1e-12)
    np.testing.assert_allclose(scaled.mean, base.mean * scale, rtol=1e-12)
    np.testing.assert_allclose(scaled.loglik, base.loglik - 30 * 6 * np.log(scale), rtol=1e-12, atol=1e-9)
    # each fit of a batch is scaled on its own
    both = fm.fit(np.stack([samples[0], samples[1] * scale]))
    assert np.array_equal(both.n_iter, base.n_iter)
    np.testing.assert_allclose(both.colcov[1], base.colcov[1] * scale**2, rtol=1e-12)


@pytest.mark.parametrize("k", [-500, -300, 300, 500])
def test_fit_of_samples_scaled_by_a_power_of_two_is_bit_identical(rng, k):
    samples = scale_samples(rng)
    base, scaled = fm.fit(samples), fm.fit(np.ldexp(samples, k))
    assert np.array_equal(scaled.n_iter, base.n_iter) and np.array_equal(scaled.converged, base.converged)
    np.testing.assert_array_equal(scaled.rowcov, base.rowcov)
    np.testing.assert_array_equal(scaled.colcov, np.ldexp(base.colcov, 2 * k))
    np.testing.assert_array_equal(scaled.mean, np.ldexp(base.mean, k))


def test_fit_colcov_out_of_range_is_a_clear_error(rng):
    samples = scale_samples(rng)
    with pytest.raises(FloatingPointError, match=r"^the fitted colcov overflows float64 at batch index 1$"):
        fm.fit(np.stack([samples[0], samples[1] * 1e155]))
    with pytest.raises(FloatingPointError, match=r"^the fitted colcov underflows float64 at batch index 0$"):
        fm.fit(samples * 1e-165)
    with pytest.raises(FloatingPointError, match=r"^the fitted colcov overflows float32 at batch index 0$"):
        fm.fit((samples * 1e21).astype(np.float32))


def test_fit_bad_input(rng):
    with pytest.raises(ValueError, match=r"samples must have at least 3 dimensions \(\.\.\., N, n, p\); got shape \(5, 3\)"):
        fm.fit(np.ones((5, 3)))
    with pytest.raises(ValueError, match=r"too few samples: samples has shape \(2, 3, 2, 5\), N = 3 samples of 2×5 "
                                         r"matrices; .* \(N − 1\)·min\(n, p\) ≥ max\(n, p\), here N ≥ 4"):
        fm.fit(rng.standard_normal((2, 3, 2, 5)))
    with pytest.raises(ValueError, match="too few samples"):
        fm.fit(rng.standard_normal((1, 2, 2)))
    assert fm.fit(rng.standard_normal((4, 2, 5))).converged  # N = 4 is enough for 2×5
    with pytest.raises(TypeError, match=r"^max_iter must be an integer; got 2\.5$"):
        fm.fit(rng.standard_normal((4, 2, 5)), max_iter=2.5)
    with pytest.raises(ValueError, match=r"^need max_iter ≥ 1 and tol ≥ 0; got max_iter=100, tol=nan$"):
        fm.fit(rng.standard_normal((4, 2, 5)), tol=np.nan)
    samples = rng.standard_normal((3, 10, 2, 2))
    samples[2, 4, 0, 1] = np.nan
    with pytest.raises(ValueError, match="samples contains NaN or infinity at batch index 2$"):
        fm.fit(samples)
    samples[2, 4, 0, 1] = 0.0
    samples[1, :, 1] = samples[1, :, 0]  # the two rows are equal: U is singular
    with pytest.raises(LinAlgError, match="the samples are degenerate: the fitted rowcov is not positive definite at batch index 1$"):
        fm.fit(samples)
    with pytest.raises(ValueError, match="need max_iter ≥ 1 and tol ≥ 0"):
        fm.fit(samples[0], max_iter=0)
    with pytest.warns(RuntimeWarning, match=r"for 3 of 3 fits \(first at batch index 0\): the relative change in the last "
                                            r"iteration was inf > tol=1e-08"):
        fm.fit(rng.standard_normal((3, 10, 2, 2)), max_iter=1)


# MatrixNormal -----------------------------------------------------------------------------


def test_matrix_normal_methods_match_functions_and_loops(rng):
    mean, u, v = random_mn(rng, (3,), 2, 3)
    v = v[0]
    d = fm.MatrixNormal(mean, u, v)
    x = rng.standard_normal((5, 3, 2, 3))
    assert d.shape == (2, 3) and d.batch_shape == (3,) and d.dtype == np.float64
    assert repr(d) == "MatrixNormal(shape=(2, 3), batch_shape=(3,), dtype=float64)"
    assert d.colcov.shape == (3, 3, 3) and not d.colcov.flags.writeable
    np.testing.assert_allclose(d.rowchol @ np.swapaxes(d.rowchol, -1, -2), u, rtol=1e-12)
    np.testing.assert_allclose(d.logpdf(x), fm.logpdf(x, mean, u, v), rtol=1e-12)
    np.testing.assert_allclose(d.pdf(x), fm.pdf(x, mean, u, v), rtol=1e-12)
    np.testing.assert_allclose(d.mahalanobis(x), fm.mahalanobis(x, mean, u, v), rtol=1e-12)
    np.testing.assert_allclose(d.entropy(), fm.entropy(u, v), rtol=1e-12)
    other = fm.MatrixNormal.from_chol(None, np.linalg.cholesky(u[0]), np.linalg.cholesky(v) * 2)
    np.testing.assert_allclose(d.kl(other), fm.kl(mean, u, v, np.zeros((2, 3)), u[0], 4 * v), rtol=1e-12)
    for b in range(3):
        item = d[b]
        assert item.batch_shape == () and item.shape == (2, 3)
        scipy_mn = matrix_normal(mean[b], u[b], v)
        assert item.logpdf(x[0, b]) == pytest.approx(scipy_mn.logpdf(x[0, b]), rel=1e-11)
        assert item.entropy() == pytest.approx(scipy_mn.entropy(), rel=1e-11)
        np.testing.assert_allclose(item.cov, np.kron(v, u[b]), rtol=1e-15)
    np.testing.assert_allclose(d.cov[1], np.kron(v, u[1]), rtol=1e-15)
    assert d[1:].batch_shape == (2,)
    np.testing.assert_array_equal(d[[2, 0]].mean, mean[[2, 0]])
    np.testing.assert_array_equal(d[..., 1].rowcov, u[1])
    grid = fm.MatrixNormal(rng.standard_normal((2, 4, 1, 1)), np.ones((4, 1, 1)), [[2.0]])
    assert grid.batch_shape == (2, 4) and grid[:, 1].batch_shape == (2,) and grid[1, ::2].batch_shape == (2,)
    with pytest.raises(IndexError):
        grid[0, 0, 0]
    with pytest.raises(IndexError, match="cannot be indexed"):
        d[0][0]
    low = fm.MatrixNormal(*(a.astype(np.float32) for a in (mean, u, v)))
    assert low.dtype == np.float32 and low.logpdf(x.astype(np.float32)).dtype == np.float32 and low.entropy().dtype == np.float32
    assert low.rvs(2, random_state=0).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matrix_normal_rvs_draws_what_rvs_draws(rng, dtype):
    mean, u, v = (a.astype(dtype) for a in random_mn(rng, (4,), 3, 2))
    d = fm.MatrixNormal(mean, u, v)
    np.testing.assert_array_equal(d.rvs(size=(50, 2), random_state=5), fm.rvs(mean, u, v, (50, 2), 5))
    np.testing.assert_array_equal(d[1:3].rvs(size=50, random_state=6), fm.rvs(mean[1:3], u[1:3], v[1:3], 50, 6))


def test_from_chol_covariance_out_of_range_names_the_argument(rng):
    with pytest.raises(FloatingPointError, match=r"^the covariance rowchol @ rowcholᵀ overflows float64$"):
        fm.MatrixNormal.from_chol(None, 1e200 * np.eye(2), np.eye(3))
    colchol = np.stack([np.eye(3), np.eye(3), 1e-170 * np.eye(3)])
    with pytest.raises(FloatingPointError, match=r"^the covariance colchol @ colcholᵀ underflows float64 "
                                                 r"at batch index 2$"):
        fm.MatrixNormal.from_chol(np.zeros((3, 2, 3)), np.eye(2), colchol)
    with pytest.raises(FloatingPointError, match=r"^the covariance colchol @ colcholᵀ overflows float32$"):
        fm.MatrixNormal.from_chol(None, np.eye(2, dtype=np.float32), 1e20 * np.eye(3, dtype=np.float32))
    assert fm.MatrixNormal.from_chol(None, 1e150 * np.eye(2), np.eye(3)).rowcov[0, 0] == pytest.approx(1e300, rel=1e-15)


def test_matrix_normal_copies_and_reads_lower_triangle(rng):
    mean, u, v = random_mn(rng, (), 2, 2)
    messy = np.tril(u) + np.triu(np.full((2, 2), np.nan), 1)
    d = fm.MatrixNormal(mean, messy, v)
    np.testing.assert_allclose(d.rowcov, u, rtol=1e-15)
    mean[0, 0] = 100.0
    assert d.mean[0, 0] != 100.0
    with pytest.raises(ValueError):
        d.mean[0, 0] = 1.0


@pytest.mark.parametrize("rows, cols", [(None, [2, 0]), ([1], None), ([0, 2], slice(1, 3)), ([True, False, True], [3])])
def test_marginal_against_dense(rng, rows, cols):
    mean, u, v = random_mn(rng, (2,), 3, 4)
    d = fm.MatrixNormal(mean, u, v)
    part = d.marginal(rows=rows, cols=cols)
    r = np.arange(3) if rows is None else np.arange(3)[rows]
    c = np.atleast_1d(np.arange(4)[cols]) if cols is not None else np.arange(4)
    assert part.shape == (len(r), len(c)) and part.batch_shape == (2,)
    index = vec_index(r, c, 3)
    for b in range(2):
        np.testing.assert_allclose(vec(part.mean[b]), vec(mean[b])[index], rtol=1e-15)
        np.testing.assert_allclose(part.cov[b], np.kron(v[b], u[b])[np.ix_(index, index)], rtol=1e-14)


def dense_conditional(mean, cov, observed, values):
    free = np.setdiff1d(np.arange(len(mean)), observed)
    gain = np.linalg.solve(cov[np.ix_(observed, observed)], cov[np.ix_(observed, free)])
    return mean[free] + (values - mean[observed]) @ gain, cov[np.ix_(free, free)] - cov[np.ix_(free, observed)] @ gain


@pytest.mark.parametrize("axis, observed", [("cols", [3, 1]), ("cols", [0]), ("rows", [2]), ("rows", [0, 1])])
def test_condition_against_dense_schur_complement(rng, axis, observed):
    n, p = 3, 4
    mean, u, v = random_mn(rng, (2,), n, p)
    d = fm.MatrixNormal(mean, u, v)
    x = rng.standard_normal((2, n, p))
    values = x[:, :, observed] if axis == "cols" else x[:, observed, :]
    given = d.condition(**{axis: observed}, values=values)
    free = np.setdiff1d(np.arange(n if axis == "rows" else p), observed)
    assert given.shape == ((n, len(free)) if axis == "cols" else (len(free), p))
    observed_index = vec_index(range(n), observed, n) if axis == "cols" else vec_index(observed, range(p), n)
    for b in range(2):
        expected_mean, expected_cov = dense_conditional(vec(mean[b]), np.kron(v[b], u[b]), observed_index,
                                                        vec(x[b])[observed_index])
        np.testing.assert_allclose(vec(given.mean[b]), expected_mean, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(given.cov[b], expected_cov, rtol=1e-10, atol=1e-12)
    batched_values = np.stack([values, 2 * values])  # (2, 2, ...): a batch of observations
    assert d.condition(**{axis: observed}, values=batched_values).batch_shape == (2, 2)


def test_affine_against_dense(rng):
    mean, u, v = random_mn(rng, (3,), 3, 4)
    d = fm.MatrixNormal(mean, u, v)
    a, b, c = rng.standard_normal((2, 3)), rng.standard_normal((3, 4, 2)), rng.standard_normal((2, 2))
    y = d.affine(a, b, c)
    assert y.shape == (2, 2) and y.batch_shape == (3,)
    for k in range(3):
        t = np.kron(b[k].T, a)
        np.testing.assert_allclose(vec(y.mean[k]), t @ vec(mean[k]) + vec(c), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(y.cov[k], t @ np.kron(v[k], u[k]) @ t.T, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(d.affine(C=np.ones((3, 4))).mean, mean + 1, rtol=1e-15)
    np.testing.assert_allclose(d.affine(B=b).colcov, np.swapaxes(b, -1, -2) @ v @ b, rtol=1e-12)
    np.testing.assert_allclose(d.affine(A=a, C=np.ones((2, 4))).rowcov, a @ u @ a.T, rtol=1e-12)


def test_matrix_normal_bad_input(rng):
    mean, u, v = random_mn(rng, (4,), 2, 3)
    u[2] = np.diag([1.0, 0.0])
    with pytest.raises(LinAlgError, match=r"^rowcov is not positive definite \(Cholesky failed\) at batch index 2$"):
        fm.MatrixNormal(mean, u, v)
    with pytest.raises(LinAlgError, match=r"^colcov is not positive definite \(Cholesky failed\) at batch index \(1, 0\)$"):
        fm.MatrixNormal(mean[:, :, :1], np.eye(2), np.stack([np.eye(1), -np.eye(1)])[:, None])
    u[1, 1, 0] = np.nan
    with pytest.raises(ValueError, match="^rowcov contains NaN or infinity at batch index 1$"):
        fm.MatrixNormal(mean, u, v)
    with pytest.raises(ValueError, match=r"colcov has shape \(4, 2, 2\); expected \(\.\.\., 3, 3\)"):
        fm.MatrixNormal(mean, np.eye(2), v[:, :2, :2])
    with pytest.raises(ValueError, match=r"batch shapes do not broadcast: mean \(4,\), rowcov \(3,\), colcov \(\)"):
        fm.MatrixNormal(mean, np.stack([np.eye(2)] * 3), np.eye(3))
    factor = np.tile(np.eye(2), (3, 1, 1))
    factor[2, 0, 0] = 0.0
    with pytest.raises(LinAlgError, match="^rowchol is not a Cholesky factor: its diagonal must be positive at batch index 2$"):
        fm.MatrixNormal.from_chol(None, factor, np.eye(3))
    with pytest.raises(TypeError, match="complex"):
        fm.MatrixNormal(None, np.eye(2) * 1j, np.eye(2))

    d = fm.MatrixNormal(mean, np.eye(2), v)
    with pytest.raises(ValueError, match="exactly one of rows= and cols="):
        d.condition(rows=[0], cols=[1], values=np.zeros((2, 1)))
    with pytest.raises(ValueError, match="cols observes every column: nothing is left to condition"):
        d.condition(cols=[0, 1, 2], values=np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"values has shape \(1, 3\); expected \(\.\.\., 2, 1\)"):
        d.condition(cols=[0], values=np.zeros((1, 3)))
    values = np.zeros((4, 1, 3))
    values[3, 0, 2] = np.inf
    with pytest.raises(ValueError, match="values contains NaN or infinity at batch index 3$"):
        d.condition(rows=[1], values=values)
    with pytest.raises(ValueError, match=r"rows repeats an index: \[1, 1\]"):
        d.marginal(rows=[1, 1])
    with pytest.raises(IndexError):
        d.marginal(cols=[3])
    with pytest.raises(LinAlgError, match=r"^A rowcov Aᵀ is not positive definite \(Cholesky failed\)$"):
        d.affine(A=[[1.0, 1.0], [0.0, 0.0]])  # rank one
    with pytest.raises(ValueError, match=r"A has shape \(2, 3\); expected \(\.\.\., 2, 2\)"):
        d.affine(A=np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"C has shape \(2, 2\); expected \(\.\.\., 2, 3\)"):
        d.affine(C=np.ones((2, 2)))
    with pytest.raises(ValueError, match="B contains NaN or infinity"):
        d.affine(B=np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match=r"cannot compare distributions of shapes \(2, 3\) and \(3, 2\)"):
        d.kl(fm.MatrixNormal(None, np.eye(3), np.eye(2)))
    with pytest.raises(TypeError, match="other must be a MatrixNormal"):
        d.kl(matrix_normal(None, np.eye(2), np.eye(3)))
    assert np.isnan(d.logpdf(np.full((2, 3), np.nan), errors="nan")).all()


@pytest.mark.parametrize("family", ["normal", "gaussian"])
def test_points_of_the_wrong_shape_name_x(family):
    d = fm.MatrixNormal(np.zeros((4, 2, 3)), np.eye(2), np.eye(3))
    if family == "gaussian":
        d = d.to_matrix_gaussian()
    for method in (d.logpdf, d.pdf, d.mahalanobis):
        with pytest.raises(ValueError, match=r"^x has shape \(4, 3, 2\); expected \(\.\.\., 2, 3\) "
                                             r"\(n=2 from mean, p=3 from mean\)$"):
            method(np.zeros((4, 3, 2)))
        with pytest.raises(ValueError, match=r"^batch shapes do not broadcast: mean \(4,\), x \(5,\)$"):
            method(np.zeros((5, 2, 3)))


def test_condition_names_where_each_size_of_values_comes_from():
    d = fm.MatrixNormal(np.zeros((2, 3)), np.stack([np.eye(2)] * 4), np.eye(3))
    with pytest.raises(ValueError, match=r"^values has shape \(3, 1\); expected \(\.\.\., 2, 1\) "
                                         r"\(n=2 from mean, p=3 from mean, k=1 from cols\)$"):
        d.condition(cols=[0], values=np.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"^values has shape \(2, 3\); expected \(\.\.\., 1, 3\) "
                                         r"\(n=2 from mean, p=3 from mean, k=1 from rows\)$"):
        d.condition(rows=[1], values=np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"^batch shapes do not broadcast: mean \(4,\), cols \(\), values \(5,\)$"):
        d.condition(cols=[0], values=np.zeros((5, 2, 1)))


@pytest.mark.parametrize("first", ["normal", "gaussian", "kron_sum"])
@pytest.mark.parametrize("second", ["normal", "gaussian", "kron_sum"])
def test_divergences_of_batches_that_do_not_broadcast_name_the_batch_shapes(first, second):
    def distribution(family, batch):
        mean = np.zeros((batch, 2, 3))
        if family == "kron_sum":
            return fm.KroneckerSumNormal(mean, np.eye(2), np.eye(3), 0.5)
        d = fm.MatrixNormal(mean, np.eye(2), np.eye(3))
        return d.to_matrix_gaussian() if family == "gaussian" else d

    p, q = distribution(first, 4), distribution(second, 3)
    message = r"^cannot compare distributions of batch shapes \(4,\) and \(3,\)$"
    with pytest.raises(ValueError, match=message):
        p.kl(q)
    with pytest.raises(ValueError, match=message):
        fm.kl_gaussian(p, q)


def test_empty_batches():
    d = fm.MatrixNormal(np.zeros((0, 2, 2)), np.eye(2), np.eye(2))
    assert d.rvs(3).shape == (3, 0, 2, 2) and d.entropy().shape == (0,) and d.logpdf(np.zeros((2, 2))).shape == (0,)
    assert fm.rvs(np.zeros((0, 2, 2)), np.eye(2), np.eye(2)).shape == (0, 2, 2)
    assert fm.fit(np.zeros((0, 5, 2, 2))).batch_shape == (0,)


def test_logpdf_benchmark_runs_on_a_small_batch():
    from fastmvn._bench import compare_logpdf

    figures = compare_logpdf(2, 2, batch=300, repeat=1, reference_batch=100, scipy_batch=10)
    assert set(figures) == {"fastmvn", "distribution", "reference", "scipy"} and all(t > 0 for t in figures.values())


def test_fit_of_large_samples_through_blas_matches_the_batched_path(monkeypatch):
    """Samples of at least ``LAPACK_MIN_SIDE`` on a side are scattered sample by sample through
    SciPy's BLAS; the batched NumPy products give the same fit to rounding."""
    from fastmvn import _config

    rng = np.random.default_rng(11)
    d = fm.MatrixNormal(rng.standard_normal((2, 20, 18)), fm.testing.random_spd(rng, (2,), 20),
                        fm.testing.random_spd(rng, (2,), 18))
    samples = np.moveaxis(d.rvs(size=30, random_state=rng), 0, -3)
    monkeypatch.setattr(_config, "LAPACK_MIN_SIDE", 18)             # these samples take the BLAS path
    blas = fm.fit(samples)
    monkeypatch.setattr(_config, "LAPACK_MIN_SIDE", 10 ** 6)
    batched = fm.fit(samples)
    np.testing.assert_array_equal(blas.n_iter, batched.n_iter)
    for a, b in ((blas.rowcov, batched.rowcov), (blas.colcov, batched.colcov), (blas.loglik, batched.loglik)):
        np.testing.assert_allclose(a, b, rtol=1e-10)
