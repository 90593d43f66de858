"""The conveniences of the matrix normal: default and scalar covariances, entry-wise moments,
the precision parameterisation (:func:`fastmvn.logpdf_prec`, :meth:`MatrixNormal.from_precision`),
diagonal covariances (:func:`fastmvn.logpdf_diag`, :func:`fastmvn.entropy_diag`,
:func:`fastmvn.rvs_diag`) and sampling into ``out=``."""

import numpy as np
import pytest
from numpy.linalg import LinAlgError
from scipy.stats import matrix_normal, multivariate_normal

import fastmvn as fm
from fastmvn import reference


def spd(rng, shape, size):
    a = rng.standard_normal(shape + (size, size))
    return a @ np.swapaxes(a, -1, -2) + size * np.eye(size)


def vec(x):
    return np.swapaxes(x, -1, -2).reshape(x.shape[:-2] + (-1,))


# Default and scalar covariances --------------------------------------------------------


def test_defaults_and_scalars_as_scipy(rng):
    mean, x = rng.standard_normal((2, 3, 2))
    u = spd(rng, (), 3)
    cases = [((mean,), (mean, 1, 1)), ((mean, 2.0), (mean, 2.0, 1)), ((mean, u, 0.5), (mean, u, 0.5)),
             ((None, u, np.eye(2)), (None, u, np.eye(2)))]
    for args, scipy_args in cases:
        d = fm.MatrixNormal(*args)
        expected = matrix_normal(*scipy_args)
        assert d.shape == (3, 2)
        np.testing.assert_allclose(d.logpdf(x), expected.logpdf(x), rtol=1e-12)
        np.testing.assert_allclose(d.rowcov, expected.rowcov, rtol=1e-15)
        np.testing.assert_allclose(d.colcov, expected.colcov, rtol=1e-15)
    d = fm.MatrixNormal(rowcov=u, colcov=np.eye(2))
    assert d.shape == (3, 2) and not d.mean.any()
    np.testing.assert_array_equal(fm.MatrixNormal(np.zeros((4, 3, 2)), 3).rowcov, np.broadcast_to(3 * np.eye(3),
                                                                                                     (4, 3, 3)))


def test_scalar_covariance_dtype(rng):
    mean = rng.standard_normal((3, 2)).astype(np.float32)
    assert fm.MatrixNormal(mean).dtype == np.float32                        # made identities do not decide
    assert fm.MatrixNormal(mean, 2.0, 1).dtype == np.float32                # nor Python numbers
    assert fm.MatrixNormal(mean, np.float32(2.0)).dtype == np.float32
    assert fm.MatrixNormal(mean, np.float64(2.0)).dtype == np.float64       # a NumPy float64 does
    assert fm.MatrixNormal(mean.astype(np.float64), 2.0).dtype == np.float64


@pytest.mark.parametrize("value", [0.0, -1.0, np.float32(-2.0)])
def test_non_positive_scalar_covariance_is_a_clear_error(value):
    with pytest.raises(LinAlgError, match="colcov is not positive definite: a number c stands for c·I"):
        fm.MatrixNormal(np.zeros((3, 2)), None, value)


def test_scalar_covariance_errors():
    with pytest.raises(ValueError, match="rowcov contains NaN or infinity"):
        fm.MatrixNormal(np.zeros((3, 2)), np.nan)
    with pytest.raises(ValueError, match="rowcov is None and mean is None: the number of rows is unknown"):
        fm.MatrixNormal()
    with pytest.raises(ValueError, match="colcov is a number and mean is None: the number of columns is unknown"):
        fm.MatrixNormal(None, np.eye(3), 2.0)
    with pytest.raises(TypeError, match="rowcov is complex"):
        fm.MatrixNormal(np.zeros((3, 2)), 1j)
    with pytest.raises(ValueError, match="rowcov must have at least 2 dimensions"):
        fm.MatrixNormal(np.zeros((3, 2)), np.ones(3))


# Entry-wise moments --------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_var_std_mode_against_dense_covariance(rng, dtype):
    mean = rng.standard_normal((4, 3, 2)).astype(dtype)
    d = fm.MatrixNormal(mean, spd(rng, (4,), 3).astype(dtype), spd(rng, (), 2).astype(dtype))
    dense_var = np.diagonal(d.cov, axis1=-2, axis2=-1).reshape(4, 2, 3).swapaxes(-1, -2)   # vec is column-major
    tolerance = 1e-6 if dtype == np.float32 else 1e-14
    for got, want in ((d.var(), dense_var), (d.std(), np.sqrt(dense_var))):
        assert got.shape == (4, 3, 2) and got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=tolerance)
    np.testing.assert_array_equal(d.mode(), mean)
    assert d.mode().dtype == dtype
    samples = d.rvs(size=20_000, random_state=0)
    np.testing.assert_allclose(samples.var(axis=0), d.var(), rtol=0.06)


# Precisions -----------------------------------------------------------------------------


def test_logpdf_prec_against_reference_dense_and_scipy(rng):
    x, mean = rng.standard_normal((2, 5, 3, 2))
    rowprec, colprec = spd(rng, (5,), 3), spd(rng, (5,), 2)
    got = fm.logpdf_prec(x, mean, rowprec, colprec)
    np.testing.assert_allclose(got, reference.logpdf_prec(x, mean, rowprec, colprec), rtol=1e-12)
    np.testing.assert_allclose(got, fm.logpdf(x, mean, np.linalg.inv(rowprec), np.linalg.inv(colprec)), rtol=1e-10)
    for i in range(5):
        cov = np.kron(np.linalg.inv(colprec[i]), np.linalg.inv(rowprec[i]))
        np.testing.assert_allclose(got[i], multivariate_normal(vec(mean[i]), cov).logpdf(vec(x[i])), rtol=1e-10)


def test_logpdf_prec_broadcasting_out_lower_triangle_and_float32(rng):
    x = rng.standard_normal((4, 1, 3, 2))
    rowprec, colprec = spd(rng, (5,), 3), spd(rng, (), 2)
    expected = reference.logpdf_prec(x, None, rowprec, colprec)
    assert expected.shape == (4, 5)
    garbage = rowprec + np.triu(rng.standard_normal((5, 3, 3)), 1)                # the upper triangle is not read
    out = np.full((4, 5), np.nan)
    assert fm.logpdf_prec(x, None, garbage, colprec, out=out) is out
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    single = fm.logpdf_prec(*(a.astype(np.float32) for a in (x, np.zeros((3, 2)), rowprec, colprec)))
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, expected, rtol=1e-5)
    assert fm.logpdf_prec(x[0, 0], None, rowprec[0], colprec).shape == ()


def test_logpdf_prec_errors_name_argument_and_batch_index(rng):
    x = rng.standard_normal((4, 3, 2))
    rowprec, colprec = spd(rng, (4,), 3), spd(rng, (), 2)
    bad = rowprec.copy()
    bad[2] = -np.eye(3)
    with pytest.raises(LinAlgError, match="rowprec is not positive definite .* at batch index 2"):
        fm.logpdf_prec(x, None, bad, colprec)
    values = fm.logpdf_prec(x, None, bad, colprec, errors="nan")
    assert np.isnan(values[2]) and np.isfinite(values[[0, 1, 3]]).all()
    np.testing.assert_allclose(values[[0, 1, 3]], reference.logpdf_prec(x, None, rowprec, colprec)[[0, 1, 3]])
    nan_x = x.copy()
    nan_x[3, 0, 0] = np.nan
    with pytest.raises(LinAlgError, match="rowprec is not positive definite .* at batch index 2"):
        fm.logpdf_prec(nan_x, None, bad, colprec)        # item 2 fails first, for its precision
    with pytest.raises(ValueError, match="x contains NaN or infinity at batch index 3"):
        fm.logpdf_prec(nan_x, None, rowprec, colprec)
    with pytest.raises(ValueError, match="colprec has shape"):
        fm.logpdf_prec(x, None, rowprec, np.eye(3))
    with pytest.raises(ValueError, match="errors must be"):
        fm.logpdf_prec(x, None, rowprec, colprec, errors="ignore")
    with pytest.raises(TypeError, match="out has dtype float32"):
        fm.logpdf_prec(x, None, rowprec, colprec, out=np.empty(4, np.float32))


def test_from_precision_against_inverse_and_scipy(rng):
    mean, x = rng.standard_normal((2, 4, 3, 2))
    rowprec, colprec = spd(rng, (4,), 3), spd(rng, (), 2)
    d = fm.MatrixNormal.from_precision(mean, rowprec, colprec)
    rowcov, colcov = np.linalg.inv(rowprec), np.linalg.inv(colprec)
    np.testing.assert_allclose(d.rowcov, rowcov, rtol=1e-12)
    np.testing.assert_allclose(d.colcov, np.broadcast_to(colcov, (4, 2, 2)), rtol=1e-12)
    np.testing.assert_allclose(d.rowchol, np.linalg.cholesky(rowcov), rtol=1e-12, atol=1e-15)
    assert (np.triu(d.rowchol, 1) == 0).all() and (np.diagonal(d.rowchol, axis1=-2, axis2=-1) > 0).all()
    np.testing.assert_allclose(d.logpdf(x), fm.logpdf_prec(x, mean, rowprec, colprec), rtol=1e-12)
    np.testing.assert_allclose(d.logpdf(x), fm.MatrixNormal(mean, rowcov, colcov).logpdf(x), rtol=1e-12)
    for i in range(4):
        expected = multivariate_normal(vec(mean[i]), np.kron(colcov, rowcov[i])).logpdf(vec(x[i]))
        np.testing.assert_allclose(d.logpdf(x[i])[i], expected, rtol=1e-10)
    assert fm.MatrixNormal.from_precision(None, rowprec, colprec).shape == (3, 2)
    single = fm.MatrixNormal.from_precision(*(a.astype(np.float32) for a in (mean, rowprec, colprec)))
    assert single.dtype == np.float32
    np.testing.assert_allclose(single.rowcov, rowcov, rtol=1e-5)


def test_from_precision_errors(rng):
    rowprec = spd(rng, (3,), 3)
    rowprec[1, 0, 0] = -1.0
    with pytest.raises(LinAlgError, match="rowprec is not positive definite .* at batch index 1"):
        fm.MatrixNormal.from_precision(None, rowprec, np.eye(2))
    rowprec[1] = np.eye(3)
    rowprec[2, 2, 1] = np.inf
    with pytest.raises(ValueError, match="rowprec contains NaN or infinity at batch index 2"):
        fm.MatrixNormal.from_precision(None, rowprec, np.eye(2))
    upper = spd(rng, (), 3) + np.triu(np.full((3, 3), np.inf), 1)             # the upper triangle is not read
    assert fm.MatrixNormal.from_precision(None, upper, np.eye(2)).shape == (3, 2)
    with pytest.raises(FloatingPointError, match="the covariance colprec⁻¹ underflows float32"):
        fm.MatrixNormal.from_precision(None, np.eye(3, dtype=np.float32),
                                       np.float32(1e38) * np.eye(2, dtype=np.float32))


# Diagonal covariances -------------------------------------------------------------------


def test_diagonal_functions_against_reference_dense_and_covariance_versions(rng):
    x, mean = rng.standard_normal((2, 5, 3, 2))
    rowvar, colvar = rng.uniform(0.5, 2.0, (5, 3)), rng.uniform(0.5, 2.0, 2)
    rowcov, colcov = rowvar[..., None] * np.eye(3), np.diag(colvar)
    got = fm.logpdf_diag(x, mean, rowvar, colvar)
    np.testing.assert_allclose(got, reference.logpdf_diag(x, mean, rowvar, colvar), rtol=1e-13)
    np.testing.assert_allclose(got, fm.logpdf(x, mean, rowcov, colcov), rtol=1e-12)
    for i in range(5):
        expected = multivariate_normal(vec(mean[i]), np.kron(colcov, rowcov[i])).logpdf(vec(x[i]))
        np.testing.assert_allclose(got[i], expected, rtol=1e-12)
    entropy = fm.entropy_diag(rowvar, colvar)
    np.testing.assert_allclose(entropy, reference.entropy_diag(rowvar, colvar), rtol=1e-13)
    np.testing.assert_allclose(entropy, fm.entropy(rowcov, colcov), rtol=1e-12)
    samples = fm.rvs_diag(mean, rowvar, colvar, size=(7,), random_state=3)
    np.testing.assert_array_equal(samples, fm.rvs(mean, rowcov, colcov, size=(7,), random_state=3))


def test_diagonal_functions_broadcasting_out_and_float32(rng):
    x = rng.standard_normal((4, 1, 3, 2))
    rowvar, colvar = rng.uniform(0.5, 2.0, (5, 3)), rng.uniform(0.5, 2.0, 2)
    expected = reference.logpdf_diag(x, None, rowvar, colvar)
    out = np.full((4, 5), np.nan)
    assert fm.logpdf_diag(x, None, rowvar, colvar, out=out) is out
    np.testing.assert_allclose(out, expected, rtol=1e-13)
    single = fm.logpdf_diag(*(a.astype(np.float32) for a in (x, np.zeros((3, 2)), rowvar, colvar)))
    assert single.dtype == np.float32 and single.shape == (4, 5)
    np.testing.assert_allclose(single, expected, rtol=1e-5)
    entropy = fm.entropy_diag(rowvar.astype(np.float32), colvar.astype(np.float32))
    assert entropy.dtype == np.float32 and entropy.shape == (5,)
    out = np.empty(5)
    assert fm.entropy_diag(rowvar, colvar, out=out) is out
    rowvar32, colvar32 = rowvar.astype(np.float32), colvar.astype(np.float32)
    samples = fm.rvs_diag(None, rowvar32, colvar32, size=2, random_state=0)
    assert samples.dtype == np.float32 and samples.shape == (2, 5, 3, 2)            # drawn in float64, rounded
    expected = fm.rvs_diag(None, rowvar32.astype(np.float64), colvar32.astype(np.float64), 2, 0)
    np.testing.assert_array_equal(samples, expected.astype(np.float32))


def test_diagonal_functions_errors_name_argument_and_batch_index(rng):
    x = rng.standard_normal((4, 3, 2))
    rowvar, colvar = rng.uniform(0.5, 2.0, (4, 3)), rng.uniform(0.5, 2.0, 2)
    bad = rowvar.copy()
    bad[1, 2] = 0.0
    for call in (lambda **k: fm.logpdf_diag(x, None, bad, colvar, **k), lambda **k: fm.entropy_diag(bad, colvar, **k)):
        with pytest.raises(LinAlgError, match="rowvar must be positive at batch index 1"):
            call()
        values = call(errors="nan")
        assert np.isnan(values[1]) and np.isfinite(values[[0, 2, 3]]).all()
    with pytest.raises(LinAlgError, match="rowvar must be positive at batch index 1"):
        fm.rvs_diag(x, bad, colvar)
    samples = fm.rvs_diag(x, bad, colvar, size=2, random_state=0, errors="nan")
    assert np.isnan(samples[:, 1]).all() and np.isfinite(samples[:, [0, 2, 3]]).all()
    nan_colvar = colvar.copy()
    nan_colvar[0] = np.nan
    with pytest.raises(ValueError, match="colvar contains NaN or infinity"):
        fm.logpdf_diag(x, None, rowvar, nan_colvar)
    with pytest.raises(ValueError, match="rowvar has shape"):
        fm.logpdf_diag(x, None, np.ones(2), colvar)
    large = np.zeros((2, 3, 2))
    large[1] = 1e300
    with pytest.raises(FloatingPointError, match="the result overflowed at batch index 1"):
        fm.logpdf_diag(large, None, np.full(3, 1e-300), colvar)
    assert np.isnan(fm.logpdf_diag(large, None, np.full(3, 1e-300), colvar, errors="nan")[1])


def test_the_diagonal_log_density_of_large_items_and_their_failures(rng):
    """One compiled pass over each item: 300×200 items against the reference; a negative or an
    infinite variance, and a float32 result beyond float32's range, fail their items."""
    x, mean = rng.standard_normal((2, 2, 300, 200))
    rowvar, colvar = rng.uniform(0.5, 2.0, (2, 300)), rng.uniform(0.5, 2.0, 200)
    expected = reference.logpdf_diag(x, mean, rowvar, colvar)
    np.testing.assert_allclose(fm.logpdf_diag(x, mean, rowvar, colvar), expected, rtol=1e-13)
    np.testing.assert_allclose(fm.logpdf_diag(x[1], mean[1], rowvar[1], colvar), expected[1], rtol=1e-13)
    bad = rowvar.copy()
    bad[1, 7] = -1.0
    with pytest.raises(LinAlgError, match=r"^rowvar must be positive at batch index 1$"):
        fm.logpdf_diag(x, mean, bad, colvar)
    values = fm.logpdf_diag(x, mean, bad, colvar, errors="nan")
    assert np.isnan(values[1]) and values[0] == fm.logpdf_diag(x[0], mean[0], rowvar[0], colvar)
    infinite = colvar.copy()
    infinite[3] = np.inf
    with pytest.raises(ValueError, match=r"^colvar contains NaN or infinity$"):
        fm.logpdf_diag(x, mean, rowvar, infinite)
    far = x.astype(np.float32)
    far[1] = 1e19                                       # −½Σ x²/(ab) beyond float32's range, finite in float64
    with pytest.raises(FloatingPointError, match=r"^the result overflowed at batch index 1$"):
        fm.logpdf_diag(far, None, rowvar.astype(np.float32), colvar.astype(np.float32))
    values = fm.logpdf_diag(far, None, rowvar.astype(np.float32), colvar.astype(np.float32), errors="nan")
    assert values.dtype == np.float32 and np.isnan(values[1]) and np.isfinite(values[0])


# Sampling into out= ---------------------------------------------------------------------


def test_rvs_into_out(rng):
    mean, rowcov, colcov = rng.standard_normal((4, 3, 2)), spd(rng, (4,), 3), spd(rng, (), 2)
    expected = fm.rvs(mean, rowcov, colcov, size=5, random_state=1)
    out = np.full((5, 4, 3, 2), np.nan)
    assert fm.rvs(mean, rowcov, colcov, size=5, random_state=1, out=out) is out
    np.testing.assert_array_equal(out, expected)
    d = fm.MatrixNormal(mean, rowcov, colcov)
    out = np.full((5, 4, 3, 2), np.nan)
    assert d.rvs(5, random_state=1, out=out) is out
    np.testing.assert_array_equal(out, expected)
    single = fm.MatrixNormal(mean.astype(np.float32), rowcov.astype(np.float32), colcov.astype(np.float32))
    out32 = np.empty((5, 4, 3, 2), np.float32)
    assert single.rvs(5, random_state=1, out=out32) is out32
    np.testing.assert_array_equal(out32, single.rvs(5, random_state=1))
    out = np.empty((3, 4, 3, 2))
    out_diag = fm.rvs_diag(mean, np.ones(3), np.ones(2), 3, 2, out=out)
    assert out_diag is out


@pytest.mark.parametrize("sampler", ["function", "method"])
def test_rvs_out_is_checked(rng, sampler):
    mean, rowcov, colcov = rng.standard_normal((4, 3, 2)), spd(rng, (4,), 3), spd(rng, (), 2)
    if sampler == "function":
        def draw(out):
            return fm.rvs(mean, rowcov, colcov, size=5, random_state=1, out=out)
    else:
        def draw(out):
            return fm.MatrixNormal(mean, rowcov, colcov).rvs(5, random_state=1, out=out)
    with pytest.raises(ValueError, match=r"out must be an array of shape \(5, 4, 3, 2\); got \(4, 3, 2\)"):
        draw(np.empty((4, 3, 2)))
    with pytest.raises(ValueError, match="out must be an array of shape"):
        draw([[0.0]])
    with pytest.raises(TypeError, match="out has dtype float32; these inputs give float64"):
        draw(np.empty((5, 4, 3, 2), np.float32))
    read_only = np.empty((5, 4, 3, 2))
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        draw(read_only)
