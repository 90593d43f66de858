"""MatrixGaussian, kl_full, kl_gaussian, expect_quadratic, nearest_kronecker and project against
the dense multivariate normal on column-major vec, against MatrixNormal where the covariance
is V⊗U, and by Monte Carlo."""

import numpy as np
import pytest
from numpy.linalg import LinAlgError
from scipy.stats import multivariate_normal

import fastmvn as fm
from fastmvn import reference

from conftest import normalised, random_mn, spd, vec


def kron(colcov, rowcov):
    """V⊗U for stacks."""
    n, p = rowcov.shape[-1], colcov.shape[-1]
    return np.einsum("...jl,...ik->...jilk", colcov, rowcov).reshape(np.broadcast_shapes(
        colcov.shape[:-2], rowcov.shape[:-2]) + (n * p, n * p))


def mvn_kl(mean1, cov1, mean2, cov2):
    """KL(N(mean1, cov1) ‖ N(mean2, cov2)) for one pair of vectors, densely."""
    d = mean2 - mean1
    return 0.5 * (np.trace(np.linalg.solve(cov2, cov1)) + d @ np.linalg.solve(cov2, d) - len(d)
                  + np.linalg.slogdet(cov2)[1] - np.linalg.slogdet(cov1)[1])


def random_mg(rng, batch, n, p):
    return rng.standard_normal(batch + (n, p)), spd(rng, batch, n * p)


def random_normal(rng, batch, n, p):
    return fm.MatrixNormal(*random_mn(rng, batch, n, p))


# Layouts ----------------------------------------------------------------------------------


def test_three_layouts_convert_exactly(rng):
    n, p = 2, 3
    mean, cov = random_mg(rng, (2,), n, p)
    g = fm.MatrixGaussian(mean, cov)
    tensor, layout = g.cov_tensor, g.kron_layout
    assert tensor.shape == (2, n, p, n, p) and layout.shape == (2, n * n, p * p)
    for i, j, k, l in np.ndindex(n, p, n, p):
        assert tensor[1, i, j, k, l] == cov[1, i + n * j, k + n * l] == layout[1, i * n + k, j * p + l]
    for i, j in np.ndindex(n, p):  # block (i, j) of E[(X−M)⊗(X−M)] is C[i, j]; its vec is column i + n·j of Σ
        block = layout[1, i * n:(i + 1) * n, j * p:(j + 1) * p]
        np.testing.assert_array_equal(block, tensor[1, i, j])
        np.testing.assert_array_equal(vec(block), cov[1, :, i + n * j])
    np.testing.assert_array_equal(fm.MatrixGaussian.from_tensor(mean, tensor).cov, g.cov)
    np.testing.assert_array_equal(fm.MatrixGaussian.from_kron_layout(mean, layout).cov, g.cov)
    for view in (g.mean, g.cov, g.chol, g.cov_tensor, g.kron_layout):
        assert not view.flags.writeable
    # a matrix normal's Kronecker layout is the rank-one vec'(U) vec'(V)ᵀ
    u, v = spd(rng, (), n), spd(rng, (), p)
    np.testing.assert_allclose(fm.MatrixGaussian(mean[0], np.kron(v, u)).kron_layout, np.outer(u, v), rtol=1e-14)


def test_attributes_broadcasting_indexing_and_float32(rng):
    mean, cov = rng.standard_normal((4, 1, 2, 2)), spd(rng, (3,), 4)
    g = fm.MatrixGaussian(mean, cov)
    assert g.shape == (2, 2) and g.batch_shape == (4, 3) and g.dtype == np.float64
    assert repr(g) == "MatrixGaussian(shape=(2, 2), batch_shape=(4, 3), dtype=float64)"
    assert g.mean.shape == (4, 3, 2, 2) and g.cov.shape == g.chol.shape == (4, 3, 4, 4)
    np.testing.assert_allclose(g.chol @ np.swapaxes(g.chol, -1, -2), np.broadcast_to(cov, (4, 3, 4, 4)), rtol=1e-12)
    assert np.array_equal(np.triu(g.chol[0, 0], 1), np.zeros((4, 4)))
    item = g[2, 1]
    assert item.batch_shape == () and np.array_equal(item.cov, cov[1]) and np.array_equal(item.mean, mean[2, 0])
    assert g[1:3].batch_shape == (2, 3)
    with pytest.raises(IndexError):
        item[0]
    upper = cov.copy()
    upper[:, 0, 1:] = 7.0  # only the lower triangle is read
    np.testing.assert_array_equal(fm.MatrixGaussian(mean, upper).cov, fm.MatrixGaussian(mean, cov).cov)
    low = fm.MatrixGaussian(mean.astype(np.float32), cov.astype(np.float32))
    x = rng.standard_normal((4, 3, 2, 2))
    assert low.dtype == low.logpdf(x.astype(np.float32)).dtype == low.entropy().dtype == np.float32
    assert low.rvs(random_state=0).dtype == low.kl(low).dtype == np.float32
    np.testing.assert_allclose(low.logpdf(x.astype(np.float32)), g.logpdf(x), rtol=1e-5)
    np.testing.assert_allclose(low.rvs(2, random_state=0), g.rvs(2, random_state=0), rtol=1e-5, atol=1e-5)
    empty = fm.MatrixGaussian(np.zeros((0, 2, 2)), np.eye(4))
    assert empty.rvs(3).shape == (3, 0, 2, 2) and empty.entropy().shape == (0,) and empty.kl(empty).shape == (0,)


# Densities and divergences against the dense multivariate normal ---------------------------


@pytest.mark.parametrize("n, p", [(1, 1), (2, 3), (3, 2)])
def test_density_entropy_mahalanobis_against_scipy(rng, n, p):
    mean, cov = random_mg(rng, (3,), n, p)
    g = fm.MatrixGaussian(mean, cov)
    x = mean + rng.standard_normal((5, 3, n, p))
    logpdf, distance, h = g.logpdf(x), g.mahalanobis(x), g.entropy()
    assert logpdf.shape == distance.shape == (5, 3) and h.shape == (3,)
    np.testing.assert_allclose(g.pdf(x), np.exp(logpdf), rtol=1e-12)
    for b in range(3):
        dense = multivariate_normal(vec(mean[b]), cov[b])
        np.testing.assert_allclose(logpdf[:, b], dense.logpdf(vec(x[:, b])), rtol=1e-11)
        d = vec(x[:, b] - mean[b])
        np.testing.assert_allclose(distance[:, b], np.einsum("si,ij,sj->s", d, np.linalg.inv(cov[b]), d), rtol=1e-10)
        assert h[b] == pytest.approx(dense.entropy(), rel=1e-12)


def test_kl_full_against_reference_dense_and_objects(rng):
    n, p = 2, 3
    (mean1, cov1), (mean2, cov2) = random_mg(rng, (4, 1), n, p), random_mg(rng, (3,), n, p)
    kl = fm.kl_full(mean1, cov1, mean2, cov2)
    assert kl.shape == (4, 3)
    np.testing.assert_allclose(kl, reference.kl_full(mean1, cov1, mean2, cov2), rtol=1e-11)
    for i, j in np.ndindex(4, 3):
        assert kl[i, j] == pytest.approx(mvn_kl(vec(mean1[i, 0]), cov1[i, 0], vec(mean2[j]), cov2[j]), rel=1e-10)
    first, second = fm.MatrixGaussian(mean1, cov1), fm.MatrixGaussian(mean2, cov2)
    np.testing.assert_allclose(fm.kl_gaussian(first, second), kl, rtol=1e-12)
    np.testing.assert_allclose(first.kl(second), kl, rtol=1e-12)
    standard = fm.kl_full(mean1, cov1)
    np.testing.assert_allclose(standard, fm.kl_full(mean1, cov1, np.zeros((n, p)), np.eye(n * p)), rtol=1e-12)
    np.testing.assert_allclose(standard, reference.kl_full(mean1, cov1), rtol=1e-12)
    np.testing.assert_allclose(fm.kl_full(mean1, cov1, None, cov2), reference.kl_full(mean1, cov1, None, cov2),
                               rtol=1e-12)
    assert np.abs(fm.kl_full(mean1, cov1, mean1, cov1)).max() < 1e-12
    out = np.full((3, 4), np.nan).T
    assert fm.kl_full(mean1, cov1, mean2, cov2, out=out) is out and np.allclose(out, kl, rtol=1e-14)
    low = fm.kl_full(*(a.astype(np.float32) for a in (mean1, cov1, mean2, cov2)))
    assert low.dtype == np.float32 and np.allclose(low, kl, rtol=1e-4)
    assert fm.kl_full(mean1[0, 0], cov1[0, 0]).ndim == 0
    cov2[2] = -np.eye(n * p)  # a batch (4, 3) whose axes cannot be merged: the first is looped over
    with pytest.raises(LinAlgError, match=r"^cov2 is not positive definite .* at batch index \(0, 2\)$"):
        fm.kl_full(mean1, cov1, mean2, cov2)
    result = fm.kl_full(mean1, cov1, mean2, cov2, errors="nan")
    assert np.isnan(result[:, 2]).all() and np.allclose(result[:, :2], kl[:, :2], rtol=1e-14)


def test_kl_between_matrix_gaussians_and_matrix_normals(rng):
    n, p = 3, 2
    mean, cov = random_mg(rng, (4,), n, p)
    g, d = fm.MatrixGaussian(mean, cov), random_normal(rng, (1,), n, p)
    forward, backward = fm.kl_gaussian(g, d), fm.kl_gaussian(d, g)
    assert forward.shape == backward.shape == (4,)
    dense = fm.MatrixGaussian(d.mean, d.cov)
    np.testing.assert_allclose(forward, fm.kl_gaussian(g, dense), rtol=1e-10)
    np.testing.assert_allclose(backward, fm.kl_gaussian(dense, g), rtol=1e-10)
    for b in range(4):
        assert forward[b] == pytest.approx(mvn_kl(vec(mean[b]), cov[b], vec(d.mean[0]), d.cov[0]), rel=1e-10)
        assert backward[b] == pytest.approx(mvn_kl(vec(d.mean[0]), d.cov[0], vec(mean[b]), cov[b]), rel=1e-10)
    np.testing.assert_array_equal(g.kl(d), forward)
    np.testing.assert_array_equal(d.kl(g), backward)
    other = random_normal(rng, (), n, p)
    np.testing.assert_array_equal(fm.kl_gaussian(d, other), d.kl(other))
    low = fm.MatrixGaussian(mean.astype(np.float32), cov.astype(np.float32))
    assert fm.kl_gaussian(low, d).dtype == np.float64
    assert fm.kl_gaussian(g[0], d[0]).ndim == 0


# Agreement with MatrixNormal where Σ = V⊗U -------------------------------------------------


def test_matrix_gaussian_of_kronecker_covariance_agrees_with_matrix_normal(rng):
    n, p = 3, 4
    d, e = random_normal(rng, (2,), n, p), random_normal(rng, (2,), n, p)
    g, h = fm.MatrixGaussian(d.mean, d.cov), fm.MatrixGaussian.from_normal(e)
    np.testing.assert_array_equal(e.to_matrix_gaussian().cov, h.cov)
    assert e.to_matrix_gaussian().batch_shape == (2,) and e[1].to_matrix_gaussian().batch_shape == ()
    np.testing.assert_allclose(h.cov, e.cov, rtol=1e-12)
    np.testing.assert_allclose(h.chol, np.linalg.cholesky(e.cov), rtol=1e-10, atol=1e-12)
    x = rng.standard_normal((5, 2, n, p))
    np.testing.assert_allclose(g.logpdf(x), d.logpdf(x), rtol=1e-11)
    np.testing.assert_allclose(g.mahalanobis(x), d.mahalanobis(x), rtol=1e-10)
    np.testing.assert_allclose(g.entropy(), d.entropy(), rtol=1e-12)
    np.testing.assert_allclose(g.kl(h), d.kl(e), rtol=1e-10)
    np.testing.assert_allclose(g.kl(e), d.kl(e), rtol=1e-10)
    np.testing.assert_allclose(d.kl(h), d.kl(e), rtol=1e-10)

    def same(gaussian, normal):
        assert gaussian.shape == normal.shape and gaussian.batch_shape == normal.batch_shape
        np.testing.assert_allclose(gaussian.mean, normal.mean, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(gaussian.cov, normal.cov, rtol=1e-10, atol=1e-12)

    same(g.marginal(rows=[2, 0], cols=slice(1, 3)), d.marginal(rows=[2, 0], cols=slice(1, 3)))
    block = np.zeros((n, p), bool)
    block[np.ix_([0, 2], [1, 3])] = True
    same(g.marginal(entries=block), d.marginal(rows=[0, 2], cols=[1, 3]))
    observed = np.zeros((n, p), bool)
    observed[:, [1, 3]] = True
    values = rng.standard_normal((2, n, p))
    same(g.condition(observed, values), d.condition(cols=[1, 3], values=values[..., [1, 3]]))
    column = np.zeros((n, p), bool)
    column[:, 1] = True
    same(g.condition(column, values), d.condition(cols=[1], values=values[..., [1]]))
    rows = np.zeros((n, p), bool)
    rows[1] = True
    same(g.condition(rows, values), d.condition(rows=[1], values=values[..., [1], :]))
    A, B, C = rng.standard_normal((2, n)), rng.standard_normal((p, 3)), rng.standard_normal((2, 3))
    same(g.affine(A, B, C), d.affine(A, B, C))
    same(g.affine(B=B), d.affine(B=B))
    An, Ap = rng.standard_normal((2, 1, n, n)), rng.standard_normal((p, p))
    np.testing.assert_allclose(g.expect_xtax(An), d.expect_xtax(An), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g.expect_xaxt(Ap), d.expect_xaxt(Ap), rtol=1e-10, atol=1e-12)
    assert d.expect_xtax(An).shape == (2, 2, p, p) and d.expect_xaxt(Ap).shape == (2, n, n)
    u, v, m = d.rowcov, d.colcov, d.mean  # the closed forms
    np.testing.assert_allclose(d.expect_xtax(An[0, 0]), np.swapaxes(m, -1, -2) @ An[0, 0] @ m
                               + np.trace(An[0, 0] @ u, axis1=-2, axis2=-1)[:, None, None] * v, rtol=1e-12)
    np.testing.assert_allclose(d.expect_xaxt(Ap), m @ Ap @ np.swapaxes(m, -1, -2)
                               + np.trace(Ap @ v, axis1=-2, axis2=-1)[:, None, None] * u, rtol=1e-12)


# Marginals, conditionals and affine maps against the dense route ---------------------------


def test_marginal_of_any_entries_against_dense(rng):
    n, p = 3, 3
    mean, cov = random_mg(rng, (2,), n, p)
    g = fm.MatrixGaussian(mean, cov)
    scattered = np.array([[True, False, False], [False, True, True], [True, False, False]])
    positions = np.flatnonzero(scattered.ravel(order="F"))  # column-major order
    m = g.marginal(entries=scattered)
    assert m.shape == (4, 1) and m.batch_shape == (2,)
    np.testing.assert_array_equal(m.mean[..., 0], vec(mean)[:, positions])
    np.testing.assert_array_equal(m.cov, cov[:, positions[:, None], positions])
    x = rng.standard_normal((2, n, p))
    np.testing.assert_allclose(m.logpdf(vec(x)[:, positions, None]),
                               [multivariate_normal(vec(mean[b])[positions], cov[b][np.ix_(positions, positions)])
                                .logpdf(vec(x[b])[positions]) for b in range(2)], rtol=1e-11)
    block = np.zeros((n, p), bool)
    block[np.ix_([0, 2], [0, 1, 2])] = True
    assert g.marginal(entries=block).shape == (2, 3)
    sub = g.marginal(rows=[2, 0], cols=[1])
    order = np.array([2 + n * 1, 0 + n * 1])
    np.testing.assert_array_equal(sub.cov, cov[:, order[:, None], order])
    assert g.marginal().shape == (3, 3)


def schur(mean, cov, observed, free, x_observed):
    gain = cov[np.ix_(free, observed)] @ np.linalg.inv(cov[np.ix_(observed, observed)])
    return (mean[free] + gain @ (x_observed - mean[observed]),
            cov[np.ix_(free, free)] - gain @ cov[np.ix_(observed, free)])


def test_condition_against_dense_schur_complement(rng):
    n, p = 3, 2
    mean, cov = random_mg(rng, (2,), n, p)
    g = fm.MatrixGaussian(mean, cov)
    values = rng.standard_normal((4, 1, n, p))
    mask = np.array([[True, False], [False, False], [False, True]])
    observed, free = np.flatnonzero(mask.ravel(order="F")), np.flatnonzero(~mask.ravel(order="F"))
    values[..., ~mask] = np.nan  # unobserved entries are not read
    given = g.condition(mask, values)
    assert given.shape == (4, 1) and given.batch_shape == (4, 2)
    for i, b in np.ndindex(4, 2):
        expected_mean, expected_cov = schur(vec(mean[b]), cov[b], observed, free, vec(values[i, 0])[observed])
        np.testing.assert_allclose(given.mean[i, b, :, 0], expected_mean, rtol=1e-10)
        np.testing.assert_allclose(given.cov[i, b], expected_cov, rtol=1e-10, atol=1e-14)
    # the unobserved entries form a sub-matrix (rows 0 and 2 of column 1): the result has its shape
    corner = ~np.array([[False, True], [False, False], [False, True]])
    assert g.condition(corner, np.zeros((n, p))).shape == (2, 1)
    rows = np.zeros((n, p), bool)
    rows[1] = True
    assert g.condition(rows, np.zeros((n, p))).shape == (2, 2)


def test_affine_against_dense(rng):
    n, p, m, q = 3, 2, 2, 1
    mean, cov = random_mg(rng, (2,), n, p)
    g = fm.MatrixGaussian(mean, cov)
    A, B, C = rng.standard_normal((2, m, n)), rng.standard_normal((p, q)), rng.standard_normal((m, q))
    y = g.affine(A, B, C)
    assert y.shape == (m, q) and y.batch_shape == (2,)
    for b in range(2):
        transform = np.kron(B.T, A[b])
        np.testing.assert_allclose(y.mean[b], A[b] @ mean[b] @ B + C, rtol=1e-12)
        np.testing.assert_allclose(y.cov[b], transform @ cov[b] @ transform.T, rtol=1e-12)
    shift = rng.standard_normal((n, p))
    shifted = g.affine(C=shift)
    np.testing.assert_allclose(shifted.mean, mean + shift, rtol=1e-14)
    np.testing.assert_allclose(shifted.cov, cov, rtol=1e-14)


# Monte Carlo ------------------------------------------------------------------------------


def test_samples_through_affine_map_have_predicted_mean_and_covariance():
    """Draws of X pushed through A X B + C: the sample mean and covariance of vec Y match the
    predicted ones within 5 standard errors per entry, se(mean_a) = √(Σ_aa/N) and
    se(cov_ab) = √((Σ_aa Σ_bb + Σ_ab²)/N)."""
    rng = np.random.default_rng(11)
    n, p, count = 3, 2, 100_000
    g = fm.MatrixGaussian(rng.standard_normal((n, p)), spd(rng, (), n * p))
    A, B, C = rng.standard_normal((2, n)), rng.standard_normal((p, 2)), rng.standard_normal((2, 2))
    x = g.rvs(size=count, random_state=3)
    assert x.shape == (count, n, p)
    predicted = g.affine(A, B, C)
    y = vec(A @ x @ B + C)
    sigma = predicted.cov
    variance = np.diag(sigma)
    assert np.all(np.abs(y.mean(axis=0) - vec(predicted.mean)) <= 5 * np.sqrt(variance / count))
    standard_error = np.sqrt((np.outer(variance, variance) + sigma**2) / count)
    assert np.all(np.abs(np.cov(y, rowvar=False) - sigma) <= 5 * standard_error)


def test_sample_average_of_quadratic_form_matches_expect_quadratic():
    """X (n×p) and Y (n×q) drawn jointly as Z = [X Y]; the average of Xᵀ A Y over N draws
    matches expect_quadratic within 5 standard errors (the sample standard deviation / √N)."""
    rng = np.random.default_rng(12)
    n, p, q, count = 3, 2, 2, 200_000
    z = fm.MatrixGaussian(rng.standard_normal((n, p + q)), spd(rng, (), n * (p + q)))
    cross = z.cov_tensor[:, :p, :, p:]  # Cov(X_ai, Y_bj)
    A = rng.standard_normal((n, n))
    expected = fm.expect_quadratic(A, z.mean[:, :p], z.mean[:, p:], cross)
    assert expected.shape == (p, q)
    draws = z.rvs(size=count, random_state=5)
    products = np.swapaxes(draws[..., :p], -1, -2) @ A @ draws[..., p:]
    standard_error = products.std(axis=0) / np.sqrt(count)
    assert np.all(np.abs(products.mean(axis=0) - expected) <= 5 * standard_error)
    xtax = np.swapaxes(draws, -1, -2) @ A @ draws
    assert np.all(np.abs(xtax.mean(axis=0) - z.expect_xtax(A)) <= 5 * xtax.std(axis=0) / np.sqrt(count))
    Ap = rng.standard_normal((p + q, p + q))
    xaxt = draws @ Ap @ np.swapaxes(draws, -1, -2)
    assert np.all(np.abs(xaxt.mean(axis=0) - z.expect_xaxt(Ap)) <= 5 * xaxt.std(axis=0) / np.sqrt(count))


def test_expect_quadratic_shapes_and_broadcasting(rng):
    n, p, q = 2, 3, 1
    A = rng.standard_normal((4, 1, n, n))
    mean_x, mean_y = rng.standard_normal((5, n, p)), rng.standard_normal((n, q))
    cross = rng.standard_normal((n, p, n, q))
    result = fm.expect_quadratic(A, mean_x, mean_y, cross)
    assert result.shape == (4, 5, p, q)
    i, j = 3, 2
    np.testing.assert_allclose(result[i, j], mean_x[j].T @ A[i, 0] @ mean_y
                               + np.einsum("ab,aibj->ij", A[i, 0], cross), rtol=1e-12)
    assert fm.expect_quadratic(*(np.asarray(a, np.float32) for a in (A, mean_x, mean_y, cross))).dtype == np.float32
    with pytest.raises(ValueError, match=r"cross_cov has shape \(2, 3, 2, 2\); expected \(\.\.\., 2, 3, 2, 1\)"):
        fm.expect_quadratic(A, mean_x, mean_y, np.ones((n, p, n, 2)))
    with pytest.raises(ValueError, match=r"A has shape \(3, 3\); expected \(\.\.\., 2, 2\)"):
        fm.expect_quadratic(np.eye(3), mean_x, mean_y, cross)


# nearest_kronecker and project ------------------------------------------------------------


def test_nearest_kronecker_exact_spd_and_nearest(rng):
    n, p = 3, 2
    u, v = spd(rng, (4,), n), spd(rng, (4,), p)
    rowcov, colcov = fm.nearest_kronecker(kron(v, u), n, p)
    expected_u, expected_v = normalised(u, v)
    np.testing.assert_allclose(rowcov, expected_u, rtol=1e-10)
    np.testing.assert_allclose(colcov, expected_v, rtol=1e-10)
    cov = spd(rng, (50,), n * p)
    rowcov, colcov = fm.nearest_kronecker(cov, n, p)
    assert rowcov.shape == (50, n, n) and colcov.shape == (50, p, p)
    np.testing.assert_allclose(np.trace(rowcov, axis1=-2, axis2=-1), n, rtol=1e-12)
    assert (np.linalg.eigvalsh(rowcov) > 0).all() and (np.linalg.eigvalsh(colcov) > 0).all()
    assert np.array_equal(rowcov, np.swapaxes(rowcov, -1, -2)) and np.array_equal(colcov, np.swapaxes(colcov, -1, -2))
    distance = np.linalg.norm(cov - kron(colcov, rowcov), axis=(-2, -1))
    for _ in range(5):  # no nearby Kronecker product is nearer
        nearby = kron(colcov + 1e-3 * rng.standard_normal(colcov.shape),
                      rowcov + 1e-3 * rng.standard_normal(rowcov.shape))
        assert (np.linalg.norm(cov - nearby, axis=(-2, -1)) > distance).all()
    assert fm.nearest_kronecker(cov.astype(np.float32), n, p)[0].dtype == np.float32


def test_project_exact_for_kronecker_covariance(rng):
    n, p = 2, 3
    u, v = spd(rng, (3,), n), spd(rng, (3,), p)
    mean = rng.standard_normal((3, n, p))
    normal, kl, n_iter = fm.project(fm.MatrixGaussian(mean, kron(v, u)), return_n_iter=True)
    assert isinstance(normal, fm.MatrixNormal) and normal.batch_shape == (3,)
    expected_u, expected_v = normalised(u, v)
    np.testing.assert_allclose(normal.rowcov, expected_u, rtol=1e-10)
    np.testing.assert_allclose(normal.colcov, expected_v, rtol=1e-10)
    np.testing.assert_array_equal(normal.mean, mean)
    assert np.abs(kl).max() < 1e-12 and (n_iter == 1).all()


def test_project_lowers_the_kl_of_the_nearest_kronecker_product_within_bounded_steps(rng):
    n, p = 3, 3
    mean, cov = random_mg(rng, (40,), n, p)
    g = fm.MatrixGaussian(mean, cov)
    normal, kl, n_iter = fm.project(g, return_n_iter=True)
    start = fm.kl_gaussian(g, fm.MatrixNormal(mean, *fm.nearest_kronecker(cov, n, p)))
    assert (kl >= 0).all() and (kl <= start + 1e-12).all() and (kl < start).any()
    assert n_iter.shape == (40,) and n_iter.max() <= 30  # 1e-8 in at most 30 steps here (typically 10 to 20)
    np.testing.assert_allclose(kl, [mvn_kl(vec(mean[b]), cov[b], vec(mean[b]), normal.cov[b]) for b in range(40)],
                               rtol=1e-9)
    # the fixed point: U = (1/p) Σ_jl (V⁻¹)_jl Σ^(j,l), V_jl = (1/n) tr(U⁻¹ Σ^(j,l))
    blocks = cov.reshape(40, p, n, p, n)
    u, v = normal.rowcov, normal.colcov
    np.testing.assert_allclose(np.einsum("bjl,bjalc->bac", np.linalg.inv(v), blocks) / p, u, rtol=1e-6)
    np.testing.assert_allclose(np.einsum("bac,bjcla->bjl", np.linalg.inv(u), blocks) / n, v, rtol=1e-6)
    # a minimum: nearby matrix normals are further away
    for scale in (1.02, 0.98):
        assert (fm.kl_gaussian(g, fm.MatrixNormal(mean, u * scale, v)) > kl).all()
    single, single_kl = fm.project(g[7])
    assert single_kl == pytest.approx(kl[7], rel=1e-12) and np.allclose(single.rowcov, u[7], rtol=1e-12)
    with pytest.warns(RuntimeWarning, match=r"project did not converge within max_iter=1 iterations for 40 of 40 items "
                                            r"\(first at batch index 0\)"):
        fm.project(g, max_iter=1, tol=0.0)


@pytest.mark.parametrize("scale", [1e-200, 1e-100, 1.0, 1e100, 1e200])
def test_project_is_scale_equivariant(rng, scale):
    mean, cov = random_mg(rng, (3,), 2, 3)
    base, base_kl, base_n_iter = fm.project(fm.MatrixGaussian(mean, cov), return_n_iter=True)
    normal, kl, n_iter = fm.project(fm.MatrixGaussian(mean, cov * scale), return_n_iter=True)  # and no warning
    assert np.array_equal(n_iter, base_n_iter)
    np.testing.assert_allclose(normal.rowcov, base.rowcov, rtol=1e-12)
    np.testing.assert_allclose(normal.colcov, base.colcov * scale, rtol=1e-12)
    np.testing.assert_allclose(kl, base_kl, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("k", [-600, -300, 300, 600])
def test_project_of_a_covariance_scaled_by_a_power_of_two_is_bit_identical(rng, k):
    mean, cov = random_mg(rng, (3,), 2, 3)
    base, _, base_n_iter = fm.project(fm.MatrixGaussian(mean, cov), return_n_iter=True)
    normal, _, n_iter = fm.project(fm.MatrixGaussian(mean, np.ldexp(cov, k)), return_n_iter=True)
    assert np.array_equal(n_iter, base_n_iter)
    np.testing.assert_array_equal(normal.rowcov, base.rowcov)
    np.testing.assert_array_equal(normal.colcov, np.ldexp(base.colcov, k))


def test_matrix_gaussian_of_a_matrix_normal_whose_covariance_overflows(rng):
    normal = fm.MatrixNormal(np.zeros((2, 2, 3)), 1e200 * np.eye(2), np.stack([np.eye(3), 1e200 * np.eye(3)]))
    for make in (fm.MatrixGaussian.from_normal, fm.MatrixNormal.to_matrix_gaussian):
        with pytest.raises(FloatingPointError, match=r"^the covariance V⊗U of normal overflows float64 "
                                                     r"at batch index 1$"):
            make(normal)


# Bad input --------------------------------------------------------------------------------


def test_bad_input_names_argument_and_batch_index(rng):
    n, p = 2, 3
    mean, cov = random_mg(rng, (5,), n, p)
    bad = cov.copy()
    bad[3] = np.diag([1.0, 1.0, -1.0, 1.0, 1.0, 1.0])
    with pytest.raises(LinAlgError, match=r"^cov is not positive definite \(Cholesky failed\) at batch index 3$"):
        fm.MatrixGaussian(mean, bad)
    with pytest.raises(LinAlgError, match=r"^cov_tensor is not positive definite .* at batch index 3$"):
        fm.MatrixGaussian.from_tensor(mean, np.transpose(bad.reshape(5, p, n, p, n), (0, 2, 1, 4, 3)))
    with pytest.raises(LinAlgError, match=r"^cov2 is not positive definite \(Cholesky failed\) at batch index 3$"):
        fm.kl_full(mean, cov, mean, bad)
    bad[1, 4, 2] = np.nan
    with pytest.raises(ValueError, match="^cov contains NaN or infinity at batch index 1$"):
        fm.MatrixGaussian(mean, bad)
    with pytest.raises(ValueError, match="^cov2 contains NaN or infinity at batch index 1$"):
        fm.kl_full(mean, cov, mean, bad)
    with pytest.raises(ValueError, match=r"cov has shape \(5, 5\); expected \(\.\.\., 6, 6\): n·p = 2·3 from mean"):
        fm.MatrixGaussian(mean, np.eye(5))
    with pytest.raises(ValueError, match=r"cov has shape \(6, 5\); expected \(\.\.\., 6, 6\)"):
        fm.MatrixGaussian(mean, np.ones((6, 5)))
    with pytest.raises(ValueError, match=r"cov_tensor has shape \(2, 3, 3, 2\); expected \(\.\.\., 2, 3, 2, 3\)"):
        fm.MatrixGaussian.from_tensor(mean, np.ones((2, 3, 3, 2)))
    with pytest.raises(ValueError, match=r"kron_layout has shape \(9, 4\); expected \(\.\.\., 4, 9\)"):
        fm.MatrixGaussian.from_kron_layout(mean, np.ones((9, 4)))
    result = fm.kl_full(mean, cov, mean, bad, errors="nan")
    assert np.isnan(result[[1, 3]]).all() and np.isfinite(result[[0, 2, 4]]).all()
    with pytest.raises(ValueError, match=r"cov1 has shape \(5, 5\); expected \(\.\.\., 6, 6\)"):
        fm.kl_full(mean, np.eye(5))
    with pytest.raises(ValueError, match="^mean1 contains NaN or infinity$"):  # one mean, shared by the batch
        fm.kl_full(np.full((n, p), np.inf), cov)

    g = fm.MatrixGaussian(mean, cov)
    with pytest.raises(ValueError, match=r"mask must be a boolean array of shape \(2, 3\); got shape \(3, 2\)"):
        g.condition(np.ones((3, 2), bool), np.zeros((n, p)))
    with pytest.raises(TypeError, match=r"mask must be a boolean array of shape \(2, 3\); got dtype int64"):
        g.condition(np.ones((2, 3), np.int64), np.zeros((n, p)))
    with pytest.raises(ValueError, match=r"entries must be a boolean array of shape \(2, 3\); got shape \(6,\)"):
        g.marginal(entries=np.ones(6, bool))
    with pytest.raises(ValueError, match="entries selects nothing"):
        g.marginal(entries=np.zeros((n, p), bool))
    with pytest.raises(ValueError, match="give rows= and cols=, or entries=, not both"):
        g.marginal(rows=[0], entries=np.ones((n, p), bool))
    with pytest.raises(ValueError, match="mask observes every entry"):
        g.condition(np.ones((n, p), bool), np.zeros((n, p)))
    with pytest.raises(ValueError, match="mask selects nothing"):
        g.condition(np.zeros((n, p), bool), np.zeros((n, p)))
    mask = np.zeros((n, p), bool)
    mask[0, 0] = True
    with pytest.raises(ValueError, match=r"values has shape \(3, 2\); expected \(\.\.\., 2, 3\)"):
        g.condition(mask, np.zeros((3, 2)))
    values = np.zeros((5, n, p))
    values[2, 0, 0] = np.nan
    with pytest.raises(ValueError, match="^values contains NaN or infinity at an observed entry at batch index 2$"):
        g.condition(mask, values)
    with pytest.raises(ValueError, match=r"x has shape \(3, 2\); expected \(\.\.\., 2, 3\)"):
        g.logpdf(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="^x contains NaN or infinity at batch index 4$"):
        g.logpdf(np.where(np.arange(5)[:, None, None] == 4, np.nan, np.zeros((n, p))))
    with pytest.raises(LinAlgError, match=r"^\(Bᵀ⊗A\) cov \(Bᵀ⊗A\)ᵀ is not positive definite"):
        g.affine(A=np.ones((2, 2)))
    with pytest.raises(ValueError, match="A contains NaN or infinity"):
        g.affine(A=np.full((1, 2), np.nan))
    with pytest.raises(TypeError, match="q must be a MatrixGaussian, a MatrixNormal or a KroneckerSumNormal, not ndarray"):
        fm.kl_gaussian(g, cov)
    with pytest.raises(ValueError, match=r"cannot compare distributions of shapes \(2, 3\) and \(3, 2\)"):
        g.kl(fm.MatrixNormal(None, np.eye(3), np.eye(2)))
    with pytest.raises(ValueError, match=r"cov has shape \(5, 6, 6\); expected \(\.\.\., 4, 4\) for n·p = 2·2"):
        fm.nearest_kronecker(cov, 2, 2)
    with pytest.raises(ValueError, match="^cov contains NaN or infinity at batch index 1$"):
        fm.nearest_kronecker(bad, n, p)
    with pytest.raises(TypeError, match="g must be a MatrixGaussian"):
        fm.project(fm.MatrixNormal(None, np.eye(2), np.eye(2)))


def test_benchmark_runs_on_a_small_batch():
    from fastmvn._bench import compare_kl_gaussian

    figures = compare_kl_gaussian(2, 2, batch=300, repeat=1)
    assert set(figures) == {"fastmvn", "distribution", "reference"} and all(t > 0 for t in figures.values())
