"""Log-density of the matrix normal: SciPy, the dense vec route, the reference, bad input."""

import numpy as np
import pytest
from numpy.linalg import LinAlgError
from scipy.stats import matrix_normal, multivariate_normal

import fastmvn as fm
from fastmvn import reference

from conftest import spd


@pytest.mark.parametrize("n, p", [(1, 1), (2, 2), (3, 2), (2, 5), (4, 4), (7, 3)])
def test_logpdf_against_scipy_and_dense(rng, n, p):
    x, mean = rng.standard_normal((2, 5, n, p))
    u, v = spd(rng, (5,), n), spd(rng, (5,), p)
    result = fm.logpdf(x, mean, u, v)
    assert result.shape == (5,)
    for b in range(5):
        assert result[b] == pytest.approx(matrix_normal(mean[b], u[b], v[b]).logpdf(x[b]), rel=1e-11)
        dense = multivariate_normal(mean[b].ravel(order="F"), np.kron(v[b], u[b]))
        assert result[b] == pytest.approx(dense.logpdf(x[b].ravel(order="F")), rel=1e-10)
    np.testing.assert_allclose(result, reference.logpdf(x, mean, u, v), rtol=1e-12)
    chol_u, chol_v = np.linalg.cholesky(u), np.linalg.cholesky(v)
    np.testing.assert_allclose(fm.logpdf_chol(x, mean, chol_u, chol_v), result, rtol=1e-12)
    np.testing.assert_allclose(reference.logpdf_chol(x, mean, chol_u, chol_v), result, rtol=1e-12)
    distance = fm.mahalanobis(x, mean, u, v)
    np.testing.assert_allclose(fm.mahalanobis_chol(x, mean, chol_u, chol_v), distance, rtol=1e-12)
    np.testing.assert_allclose(reference.mahalanobis_chol(x, mean, chol_u, chol_v), distance, rtol=1e-12)


def test_logpdf_broadcasting_float32_and_none_mean(rng):
    x = rng.standard_normal((3, 4, 2, 3))
    u, v = spd(rng, (4,), 2), spd(rng, (), 3)
    result = fm.logpdf(x, None, u, v)
    assert result.shape == (3, 4)
    np.testing.assert_allclose(result, reference.logpdf(x, None, u, v), rtol=1e-12)
    single = fm.logpdf(x[0, 0], np.zeros((2, 3)), u[0], v)
    assert np.ndim(single) == 0 and single == pytest.approx(result[0, 0], rel=1e-12)
    low = fm.logpdf(x.astype(np.float32), None, u.astype(np.float32), v.astype(np.float32))
    assert low.dtype == np.float32
    np.testing.assert_allclose(low, result, rtol=1e-5)


def test_logpdf_bad_input_names_argument_and_index(rng):
    x = rng.standard_normal((4, 3, 2))
    u, v = spd(rng, (4,), 3), spd(rng, (4,), 2)
    u[2] = -np.eye(3)
    with pytest.raises(LinAlgError, match=r"rowcov is not positive definite .* at batch index 2$"):
        fm.logpdf(x, None, u, v)
    assert np.isnan(fm.logpdf(x, None, u, v, errors="nan")[2])
    chol = np.linalg.cholesky(spd(rng, (4,), 2))
    chol[3, 1, 1] = 0.0
    with pytest.raises(LinAlgError, match=r"colchol is not a Cholesky factor.* at batch index 3$"):
        fm.logpdf_chol(x, None, np.eye(3), chol)
    with pytest.raises(LinAlgError, match=r"colchol is not a Cholesky factor.* at batch index 3$"):
        fm.mahalanobis_chol(x, None, np.eye(3), chol)
    x[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"x contains NaN or infinity at batch index 1$"):
        fm.logpdf(x, None, np.eye(3), np.eye(2))
    with pytest.raises(ValueError, match=r"colcov has shape \(3, 3\); expected \(\.\.\., 2, 2\)"):
        fm.logpdf(x, None, np.eye(3), np.eye(3))
