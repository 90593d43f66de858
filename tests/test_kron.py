"""Kronecker-sum normals vec X ~ N(vec M, V⊗U + B⊗A): KroneckerSumNormal, its constructors and
function forms against the dense np×np route (fastmvn.reference and SciPy)."""

import numpy as np
import pytest
from numpy.linalg import LinAlgError
from scipy.stats import multivariate_normal

import fastmvn as fm
from fastmvn import reference

from conftest import spd, vec

SHAPES = [(1, 1), (3, 2), (2, 4)]


def low_rank(rng, shape, size, rank):
    """Positive semi-definite matrices of the given rank: ``G Gᵀ``, ``G`` of shape ``size × rank``."""
    g = rng.standard_normal(shape + (size, rank))
    return g @ np.swapaxes(g, -1, -2)


def signal_and_noise(rng, n, p, kind, shape=()):
    """``(rowcov, colcov, noise_rowcov, noise_colcov)`` of one of the kinds tested."""
    if kind == "full":
        return spd(rng, shape, n), spd(rng, shape, p), spd(rng, shape, n), spd(rng, shape, p)
    if kind == "isotropic":
        return spd(rng, shape, n), spd(rng, shape, p), 0.3, None
    if kind == "low rank":  # U of rank 1, V of rank p − 1 (zero when p = 1)
        return low_rank(rng, shape, n, 1), low_rank(rng, shape, p, p - 1), spd(rng, shape, n), 0.5
    if kind == "no signal":
        return np.zeros(shape + (n, n)), np.zeros(shape + (p, p)), spd(rng, shape, n), spd(rng, shape, p)
    raise AssertionError(kind)


KINDS = ["full", "isotropic", "low rank", "no signal"]


# Densities against SciPy on the dense covariance --------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n, p", SHAPES)
def test_logpdf_entropy_mahalanobis_against_scipy(rng, n, p, kind):
    rowcov, colcov, noise_row, noise_col = signal_and_noise(rng, n, p, kind)
    mean = rng.standard_normal((n, p))
    x = mean + rng.standard_normal((5, n, p))
    d = fm.KroneckerSumNormal(mean, rowcov, colcov, noise_row, noise_col)
    cov = reference.kron_sum_cov(rowcov, colcov, noise_row, noise_col)
    dense = multivariate_normal(vec(mean), cov)
    np.testing.assert_allclose(d.cov, cov, rtol=1e-12, atol=1e-13 * np.abs(cov).max())
    np.testing.assert_allclose(d.logpdf(x), dense.logpdf(vec(x)), rtol=1e-10)
    np.testing.assert_allclose(d.pdf(x), dense.pdf(vec(x)), rtol=1e-10)
    np.testing.assert_allclose(d.logpdf(x), reference.logpdf_kron_sum(x, mean, rowcov, colcov, noise_row, noise_col),
                               rtol=1e-10)
    assert d.entropy() == pytest.approx(dense.entropy(), rel=1e-10)
    assert d.logdet() == pytest.approx(np.linalg.slogdet(cov)[1], rel=1e-10, abs=1e-12)
    diff = vec(x - mean)
    np.testing.assert_allclose(d.mahalanobis(x), np.einsum("bi,bi->b", diff, np.linalg.solve(cov, diff.T).T),
                               rtol=1e-10)
    np.testing.assert_allclose(fm.logpdf_kron_sum(x, mean, rowcov, colcov, noise_row, noise_col), d.logpdf(x),
                               rtol=1e-14)


def test_covariance_parameters_are_rebuilt(rng):
    rowcov, colcov, noise_row, noise_col = signal_and_noise(rng, 3, 2, "full")
    d = fm.KroneckerSumNormal(None, rowcov, colcov, noise_row, noise_col)
    for got, want in ((d.rowcov, rowcov), (d.colcov, colcov), (d.noise_rowcov, noise_row),
                      (d.noise_colcov, noise_col)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    iso = fm.KroneckerSumNormal(None, rowcov, colcov, 0.3)
    np.testing.assert_allclose(iso.noise_rowcov, 0.3 * np.eye(3), atol=1e-15)
    np.testing.assert_allclose(iso.noise_colcov, np.eye(2), atol=1e-15)
    assert not d.is_precision
    assert not d.mean.flags.writeable and not d.rowcov.flags.writeable


def test_batches_broadcast_and_index(rng):
    n, p = 3, 2
    mean = rng.standard_normal((4, 1, n, p))
    rowcov, colcov = low_rank(rng, (3,), n, 2), spd(rng, (), p)
    noise_row, noise_col = spd(rng, (4, 1), n), spd(rng, (3,), p)
    d = fm.KroneckerSumNormal(mean, rowcov, colcov, noise_row, noise_col)
    assert d.batch_shape == (4, 3)
    x = rng.standard_normal((2, 1, 1, n, p))
    value = d.logpdf(x)
    assert value.shape == (2, 4, 3) and d.entropy().shape == (4, 3) and d.cov.shape == (4, 3, n * p, n * p)
    for i in range(4):
        for j in range(3):
            cov = reference.kron_sum_cov(rowcov[j], colcov, noise_row[i, 0], noise_col[j])
            dense = multivariate_normal(vec(mean[i, 0]), cov)
            np.testing.assert_allclose(value[:, i, j], dense.logpdf(vec(x[:, 0, 0])), rtol=1e-10)
            item = d[i, j]
            assert item.batch_shape == ()
            assert item.logpdf(x[0, 0, 0]) == pytest.approx(value[0, i, j], rel=1e-14)
    np.testing.assert_allclose(d[1:3].logpdf(x), value[:, 1:3], rtol=1e-14)
    np.testing.assert_allclose(reference.logpdf_kron_sum(x, mean, rowcov, colcov, noise_row, noise_col), value,
                               rtol=1e-10)


def test_float32(rng):
    rowcov, colcov, noise_row, _ = signal_and_noise(rng, 3, 2, "full")
    mean, x = rng.standard_normal((3, 2)), rng.standard_normal((5, 3, 2))
    single = [a.astype(np.float32) for a in (mean, rowcov, colcov, noise_row)]
    d32 = fm.KroneckerSumNormal(*single, 0.5)
    d64 = fm.KroneckerSumNormal(*single[:3], single[3].astype(np.float64), 0.5)
    assert d32.dtype == np.float32 and d64.dtype == np.float64
    assert d32.logpdf(x.astype(np.float32)).dtype == np.float32
    assert d32.logpdf(x).dtype == np.float64  # a float64 point gives float64
    np.testing.assert_allclose(d32.logpdf(x.astype(np.float32)), d64.logpdf(x.astype(np.float32)), rtol=1e-6)
    assert d32.entropy().dtype == np.float32 and d32.rvs(size=3, random_state=0).dtype == np.float32
    assert d32.kl(d32).dtype == np.float32
    assert fm.logpdf_kron_sum(x.astype(np.float32), *single, 0.5).dtype == np.float32


# KL divergence --------------------------------------------------------------------------------


def dense_kl(p, q):
    return reference.kl_full(p.mean, p.cov, q.mean, q.cov)


@pytest.mark.parametrize("kinds", [("full", "full"), ("low rank", "isotropic"), ("isotropic", "no signal"),
                                   ("no signal", "low rank")])
@pytest.mark.parametrize("n, p", SHAPES)
def test_kl_against_dense(rng, n, p, kinds):
    first = fm.KroneckerSumNormal(rng.standard_normal((n, p)), *signal_and_noise(rng, n, p, kinds[0]))
    second = fm.KroneckerSumNormal(rng.standard_normal((n, p)), *signal_and_noise(rng, n, p, kinds[1]))
    assert first.kl(second) == pytest.approx(dense_kl(first, second), rel=1e-10)
    assert second.kl(first) == pytest.approx(dense_kl(second, first), rel=1e-10)
    assert abs(first.kl(first)) < 1e-12 * n * p
    assert fm.kl_gaussian(first, second) == pytest.approx(first.kl(second), rel=1e-14)


@pytest.mark.parametrize("n, p", SHAPES)
def test_kl_with_matrix_normals_both_ways(rng, n, p):
    normal = fm.MatrixNormal(rng.standard_normal((n, p)), spd(rng, (), n), spd(rng, (), p))
    kron = fm.KroneckerSumNormal(rng.standard_normal((n, p)), *signal_and_noise(rng, n, p, "low rank"))
    gaussian = fm.MatrixGaussian(rng.standard_normal((n, p)), spd(rng, (), n * p))
    for first, second in ((kron, normal), (normal, kron), (kron, gaussian), (gaussian, kron)):
        assert first.kl(second) == pytest.approx(dense_kl(first, second), rel=1e-10)
        assert fm.kl_gaussian(first, second) == pytest.approx(dense_kl(first, second), rel=1e-10)
    # a matrix normal MN(M, U + A, V) is the Kronecker sum with signal V⊗U and noise V⊗A
    u, v, a = spd(rng, (), n), spd(rng, (), p), spd(rng, (), n)
    same = fm.KroneckerSumNormal(normal.mean, u, v, a, v), fm.MatrixNormal(normal.mean, u + a, v)
    assert abs(same[0].kl(same[1])) < 1e-12 and abs(same[1].kl(same[0])) < 1e-12


def test_kl_batches_broadcast(rng):
    n, p = 2, 3
    first = fm.KroneckerSumNormal(rng.standard_normal((4, 1, n, p)), spd(rng, (3,), n), low_rank(rng, (), p, 1), 0.7)
    second = fm.MatrixNormal(rng.standard_normal((3, n, p)), spd(rng, (3,), n), spd(rng, (), p))
    kl, back = first.kl(second), second.kl(first)
    assert kl.shape == back.shape == (4, 3)
    for i in range(4):
        for j in range(3):
            assert kl[i, j] == pytest.approx(dense_kl(first[i, j], second[j]), rel=1e-10)
            assert back[i, j] == pytest.approx(dense_kl(second[j], first[i, j]), rel=1e-10)


def test_kl_kron_sum_function_against_reference(rng):
    n, p = 3, 2
    args1 = (rng.standard_normal((5, n, p)), low_rank(rng, (5,), n, 1), spd(rng, (), p), spd(rng, (5,), n), None)
    args2 = (None, spd(rng, (5,), n), spd(rng, (5,), p), 0.4, spd(rng, (), p))
    kl = fm.kl_kron_sum(*args1, *args2)
    np.testing.assert_allclose(kl, reference.kl_kron_sum(*args1, *args2), rtol=1e-10)
    first, second = fm.KroneckerSumNormal(*args1), fm.KroneckerSumNormal(*args2)
    np.testing.assert_allclose(kl, first.kl(second), rtol=1e-14)
    out = np.full(5, np.nan)
    assert fm.kl_kron_sum(*args1, *args2, out=out) is out and np.array_equal(out, kl)
    with pytest.raises(ValueError, match="out must be an array of shape"):
        fm.kl_kron_sum(*args1, *args2, out=np.zeros(4))



def test_one_chunk_of_enough_work_is_split_over_threads(monkeypatch):
    """Kronecker-sum items in lanes split one chunk over threads by its work as the other kernels
    do (``THREADS_MIN_WORK``): the same bits as on one thread, and the first failure reported."""
    from fastmvn import _config, _jit
    from fastmvn._bench import kron_sum_inputs

    monkeypatch.setattr(_jit, "threads", lambda: 3)
    args = list(kron_sum_inputs(128, 16, 12))                                # 128·16³ = 524,288
    args[6] = args[6].copy()
    args[6][[100, 120]] = -np.eye(16)                                        # in the last of three chunks
    split = fm.kl_kron_sum(*args, errors="nan"), fm.logpdf_kron_sum(args[0], *args[:5], errors="nan")
    with pytest.raises(LinAlgError, match=r"rowcov2 is not positive semi-definite.* at batch index 100"):
        fm.kl_kron_sum(*args)
    monkeypatch.setattr(_config, "THREADS_MIN_WORK", 10 ** 9)
    whole = fm.kl_kron_sum(*args, errors="nan"), fm.logpdf_kron_sum(args[0], *args[:5], errors="nan")
    for got, want in zip(split, whole):
        np.testing.assert_array_equal(got, want)
    assert np.isnan(split[0][[100, 120]]).all() and np.isfinite(np.delete(split[0], [100, 120])).all()

# Constructors from eigendecompositions and precisions ----------------------------------------


def test_from_eig_agrees_with_the_direct_constructor(rng):
    n, p = 4, 3
    mean, u, v = rng.standard_normal((2, n, p)), low_rank(rng, (2,), n, 2), spd(rng, (), p)
    (lu, qu), (lv, qv) = np.linalg.eigh(u), np.linalg.eigh(v)
    lu = np.maximum(lu, 0.0)
    x = rng.standard_normal((2, n, p))
    noise = np.array([0.2, 1.5])
    direct = [fm.KroneckerSumNormal(mean[b], u[b], v, noise[b]) for b in range(2)]
    eig = fm.KroneckerSumNormal.from_eig(mean, qu, lu, qv, lv, noise=noise)
    assert eig.batch_shape == (2,)
    for b in range(2):
        assert eig[b].logpdf(x[b]) == pytest.approx(direct[b].logpdf(x[b]), rel=1e-12)
        assert abs(eig[b].kl(direct[b])) < 1e-12
        np.testing.assert_allclose(eig.cov[b], direct[b].cov, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(eig.rowcov[b], u[b], atol=1e-12)


def test_precision_form_against_the_dense_inverse(rng):
    n, p = 3, 2
    mean, u, v = rng.standard_normal((n, p)), spd(rng, (), n), low_rank(rng, (), p, 1)
    x = rng.standard_normal((4, n, p))
    damping = 0.05
    cov = np.linalg.inv(np.kron(v, u) + damping * np.eye(n * p))
    d = fm.KroneckerSumNormal.from_precision(mean, u, v, damping)
    assert d.is_precision and "precision" in repr(d)
    np.testing.assert_allclose(d.cov, cov, rtol=1e-10, atol=1e-12 * np.abs(cov).max())
    dense = multivariate_normal(vec(mean), cov)
    np.testing.assert_allclose(d.logpdf(x), dense.logpdf(vec(x)), rtol=1e-10)
    assert d.entropy() == pytest.approx(dense.entropy(), rel=1e-10)
    (lu, qu), (lv, qv) = np.linalg.eigh(u), np.linalg.eigh(v)
    eig = fm.KroneckerSumNormal.from_eig(mean, qu, lu, qv, np.maximum(lv, 0), damping=damping)
    np.testing.assert_allclose(eig.logpdf(x), d.logpdf(x), rtol=1e-12)
    other = fm.KroneckerSumNormal(rng.standard_normal((n, p)), *signal_and_noise(rng, n, p, "full"))
    normal = fm.MatrixNormal(None, spd(rng, (), n), spd(rng, (), p))
    for first, second in ((d, other), (other, d), (d, normal), (normal, d)):
        assert first.kl(second) == pytest.approx(dense_kl(first, second), rel=1e-10)
    assert abs(d.kl(d)) < 1e-12
    with pytest.raises(ValueError, match="precision"):
        d.rowcov
    with pytest.raises(ValueError, match="precision"):
        d.marginal(rows=[0])


def test_matrix_normal_from_eig(rng):
    u, v = spd(rng, (3,), 4), spd(rng, (), 2)
    (lu, qu), (lv, qv) = np.linalg.eigh(u), np.linalg.eigh(v)
    mean = rng.standard_normal((3, 4, 2))
    d, direct = fm.MatrixNormal.from_eig(mean, qu, lu, qv, lv), fm.MatrixNormal(mean, u, v)
    np.testing.assert_allclose(d.rowchol, direct.rowchol, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(d.colcov, direct.colcov, rtol=1e-12, atol=1e-13)
    x = rng.standard_normal((3, 4, 2))
    np.testing.assert_allclose(d.logpdf(x), direct.logpdf(x), rtol=1e-12)
    assert fm.MatrixNormal.from_eig(None, qu.astype(np.float32), lu.astype(np.float32), qv.astype(np.float32),
                                    lv.astype(np.float32)).dtype == np.float32
    with pytest.raises(LinAlgError, match=r"rowvals has an eigenvalue that is not positive at batch index 1"):
        fm.MatrixNormal.from_eig(mean, qu, lu * [[1.0], [-1.0], [1.0]], qv, lv)
    with pytest.raises(ValueError, match=r"colvecs is not orthonormal"):
        fm.MatrixNormal.from_eig(mean, qu, lu, 2 * qv, lv)


# The function form from eigendecompositions ---------------------------------------------------


def eig_side(rng, n, p, kind, shape=()):
    """``(mean, rowvecs, rowvals, colvecs, colvals, options)`` of one side of ``fm.kl_eig`` and the
    dense covariance of its ``vec X``: a matrix normal (``U``, ``V`` positive definite), the
    covariance ``V⊗U + σ²I`` or the precision ``V⊗U + δI`` (then ``U`` of rank one)."""
    mean = rng.standard_normal(shape + (n, p))
    u = spd(rng, shape, n) if kind == "normal" else low_rank(rng, shape, n, 1)
    v = spd(rng, shape, p)
    (lu, qu), (lv, qv) = np.linalg.eigh(u), np.linalg.eigh(v)
    if kind != "normal":
        lu = np.maximum(lu, 0.0)
    signal = np.einsum("...ij,...kl->...ikjl", v, u).reshape(shape + (n * p, n * p))  # V⊗U over the batch
    identity = np.eye(n * p)
    if kind == "normal":
        return (mean, qu, lu, qv, lv, {}), signal
    if kind == "noise":
        return (mean, qu, lu, qv, lv, {"noise": 0.3}), signal + 0.3 * identity
    return (mean, qu, lu, qv, lv, {"damping": 0.05}), np.linalg.inv(signal + 0.05 * identity)


def kl_eig_call(side1, side2, **kwargs):
    """``fm.kl_eig`` of two sides from :func:`eig_side`."""
    options = {f"{key}1": value for key, value in side1[5].items()} | {f"{key}2": value for key, value in side2[5].items()}
    return fm.kl_eig(*side1[:5], *side2[:5], **options, **kwargs)


def eig_distribution(side):
    """The distribution of one side, by the class's constructors."""
    if side[5]:
        return fm.KroneckerSumNormal.from_eig(*side[:5], **side[5])
    return fm.MatrixNormal.from_eig(*side[:5])


EIG_KINDS = ["normal", "noise", "damping"]


@pytest.mark.parametrize("kind2", EIG_KINDS)
@pytest.mark.parametrize("kind1", EIG_KINDS)
@pytest.mark.parametrize("n, p", SHAPES)
def test_kl_eig_against_dense(rng, n, p, kind1, kind2):
    side1, cov1 = eig_side(rng, n, p, kind1)
    side2, cov2 = eig_side(rng, n, p, kind2)
    kl = kl_eig_call(side1, side2)
    assert kl == pytest.approx(reference.kl_full(side1[0], cov1, side2[0], cov2), rel=1e-10)
    assert kl_eig_call(side2, side1) == pytest.approx(reference.kl_full(side2[0], cov2, side1[0], cov1), rel=1e-10)
    assert abs(kl_eig_call(side1, side1)) < 1e-12 * n * p
    # the function form of the class's divergence: the same code (two matrix normals compare by
    # fastmvn.kl's kernel there, by the eigenbasis form here)
    by_class = eig_distribution(side1).kl(eig_distribution(side2))
    if kind1 == kind2 == "normal":
        assert kl == pytest.approx(by_class, rel=1e-13)
    else:
        assert kl == by_class


def test_kl_eig_broadcasts_and_writes_out(rng):
    n, p = 3, 2
    side1, cov1 = eig_side(rng, n, p, "damping", (4, 1))
    side2, cov2 = eig_side(rng, n, p, "normal", (3,))
    side1 = side1[:5] + ({"damping": np.array([[0.01], [0.1], [1.0], [10.0]])},)
    cov1 = np.linalg.inv(np.linalg.inv(cov1) + (side1[5]["damping"][..., None, None] - 0.05) * np.eye(n * p))
    kl = kl_eig_call(side1, side2)
    assert kl.shape == (4, 3)
    np.testing.assert_allclose(kl, reference.kl_full(side1[0], cov1, side2[0], cov2), rtol=1e-10)
    # a side shared by the whole batch: no batch axes at all
    single = tuple(a[0] for a in side2[:5]) + ({"noise": 2.0},)
    np.testing.assert_allclose(kl_eig_call(side1, single)[:, 0], [kl_eig_call(
        tuple(a[i, 0] for a in side1[:5]) + ({"damping": side1[5]["damping"][i, 0]},), single) for i in range(4)],
        rtol=1e-14)
    out = np.full((4, 3), np.nan)
    assert kl_eig_call(side1, side2, out=out) is out and np.array_equal(out, kl)
    with pytest.raises(ValueError, match="out must be an array of shape"):
        kl_eig_call(side1, side2, out=np.zeros(3))
    with pytest.raises(ValueError, match="one \\(n, p\\)"):
        kl_eig_call(side1, eig_side(rng, 2, 3, "normal")[0])


def test_kl_eig_float32(rng):
    side1, _ = eig_side(rng, 3, 2, "noise")
    side2, _ = eig_side(rng, 3, 2, "normal")
    single1 = tuple(a.astype(np.float32) for a in side1[:5]) + (side1[5],)  # noise=0.3, a Python float
    single2 = tuple(a.astype(np.float32) for a in side2[:5]) + ({},)
    kl32 = kl_eig_call(single1, single2)
    assert kl32.dtype == np.float32
    # computed in float64 from the float32 inputs, as the class does, rounded at the end
    assert kl32 == eig_distribution(single1).kl(eig_distribution(single2))
    assert kl32 == pytest.approx(kl_eig_call(side1, side2), rel=1e-4)
    mixed = single1[:5] + ({"noise": np.array(0.3)},)  # a float64 array decides
    assert kl_eig_call(mixed, single2).dtype == np.float64


def test_kl_eig_errors_name_the_argument_and_batch_index(rng):
    n, p = 3, 2
    side1, _ = eig_side(rng, n, p, "noise", (4,))
    side2, _ = eig_side(rng, n, p, "normal", (4,))
    clean = kl_eig_call(side1, side2)
    mean1, rowvals2, colvecs1 = side1[0].copy(), side2[2].copy(), side1[3].copy()
    mean1[0, 1, 1] = np.nan
    rowvals2[1, 0] = 0.0  # not positive: not a matrix normal
    colvecs1[3] *= 2.0
    noise1 = np.array([0.3, 0.3, -0.3, 0.3])
    bad1 = (mean1, side1[1], side1[2], colvecs1, side1[4], {"noise": noise1})
    bad2 = side2[:2] + (rowvals2,) + side2[3:]
    value = kl_eig_call(bad1, bad2, errors="nan")
    assert np.isnan(value).all()
    value = kl_eig_call(side1[:5] + ({"noise": noise1},), bad2, errors="nan")
    assert np.isnan(value[[1, 2]]).all() and np.array_equal(value[[0, 3]], clean[[0, 3]])
    with pytest.raises(ValueError, match="mean1 contains NaN or infinity at batch index 0"):
        kl_eig_call(bad1, bad2)
    with pytest.raises(LinAlgError, match="rowvals2 has an eigenvalue that is not positive at batch index 1"):
        kl_eig_call(side1, bad2)
    with pytest.raises(ValueError, match="noise1 must be positive at batch index 2"):
        kl_eig_call(side1[:5] + ({"noise": noise1},), side2)
    with pytest.raises(ValueError, match="colvecs1 is not orthonormal .* at batch index 3"):
        kl_eig_call(side1[:3] + (colvecs1,) + side1[4:], side2)
    with pytest.raises(LinAlgError, match="rowvals1 has an eigenvalue that is not non-negative at batch index 2"):
        rowvals1 = side1[2].copy()
        rowvals1[2, 0] = -1.0
        kl_eig_call(side1[:2] + (rowvals1,) + side1[3:], side2)
    with pytest.raises(ValueError, match="at most one of noise2= .* and damping2="):
        kl_eig_call(side1, side2[:5] + ({"noise": 1.0, "damping": 1.0},))
    with pytest.raises(ValueError, match="errors must be"):
        kl_eig_call(side1, side2, errors="ignore")


# Sampling, marginals, expectations -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["low rank", "isotropic"])
def test_rvs_moments(rng, kind):
    n, p, draws = 3, 2, 200_000
    mean = rng.standard_normal((n, p))
    d = fm.KroneckerSumNormal(mean, *signal_and_noise(rng, n, p, kind))
    x = d.rvs(size=draws, random_state=7)
    assert x.shape == (draws, n, p)
    assert np.array_equal(x[:10], d.rvs(size=draws, random_state=7)[:10])
    samples, cov = vec(x), d.cov
    scale = np.sqrt(np.diagonal(cov))
    # the sample mean's error is about σ/√N per entry, the sample covariance's about σσ'·√(2/N): 6 of them
    assert (np.abs(samples.mean(axis=0) - vec(mean)) <= 6 * scale / np.sqrt(draws)).all()
    assert (np.abs(np.cov(samples.T) - cov) <= 6 * np.outer(scale, scale) * np.sqrt(2 / draws)).all()


def test_precision_rvs_moments(rng):
    n, p, draws = 2, 2, 200_000
    d = fm.KroneckerSumNormal.from_precision(None, spd(rng, (), n), spd(rng, (), p), 0.5)
    samples, cov = vec(d.rvs(size=draws, random_state=3)), d.cov
    scale = np.sqrt(np.diagonal(cov))
    assert (np.abs(np.cov(samples.T) - cov) <= 6 * np.outer(scale, scale) * np.sqrt(2 / draws)).all()


def test_marginal_and_expectations(rng):
    n, p = 4, 3
    mean = rng.standard_normal((2, n, p))
    d = fm.KroneckerSumNormal(mean, *signal_and_noise(rng, n, p, "low rank", (2,)))
    rows, cols = [3, 1], [0, 2]
    sub = d.marginal(rows=rows, cols=cols)
    positions = np.array([i + n * j for j in cols for i in rows])
    assert sub.shape == (2, 2) and sub.batch_shape == (2,)
    np.testing.assert_allclose(sub.cov, d.cov[:, positions[:, None], positions], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sub.mean, mean[:, rows][:, :, cols])
    a, b = spd(rng, (), n), spd(rng, (), p)
    cov = d.cov
    for item in range(2):
        tensor = cov[item].reshape(p, n, p, n)  # [j, i, l, k] = Cov(X_ij, X_kl)
        m = mean[item]
        want = m.T @ a @ m + np.einsum("ab,jalb->jl", a, tensor)
        np.testing.assert_allclose(d.expect_xtax(a)[item], want, rtol=1e-10)
        want = m @ b @ m.T + np.einsum("jl,jalb->ab", b, tensor)
        np.testing.assert_allclose(d.expect_xaxt(b)[item], want, rtol=1e-10)


# Errors --------------------------------------------------------------------------------------


def test_errors_name_the_argument_and_batch_index(rng):
    n, p = 3, 2
    u, v, a = spd(rng, (4,), n), spd(rng, (), p), spd(rng, (4,), n)
    bad_noise = a.copy()
    bad_noise[2] = -np.eye(n)
    with pytest.raises(LinAlgError, match="noise_rowcov is not positive definite .* at batch index 2"):
        fm.KroneckerSumNormal(None, u, v, bad_noise)
    with pytest.raises(LinAlgError, match="noise_rowcov is not positive definite"):
        fm.KroneckerSumNormal(None, u, v, -1.0)
    bad_signal = u.copy()
    bad_signal[3] = u[3] - 10 * np.eye(n)
    with pytest.raises(LinAlgError, match="rowcov is not positive semi-definite at batch index 3"):
        fm.KroneckerSumNormal(None, bad_signal, v, a)
    with pytest.raises(LinAlgError, match="colcov is not positive semi-definite"):
        fm.KroneckerSumNormal(None, u, -v, a)
    nan = u.copy()
    nan[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="rowcov contains NaN or infinity at batch index 1"):
        fm.KroneckerSumNormal(None, nan, v, bad_noise)  # before the noise of item 2
    # a signal of rank one passes: its negative eigenvalues are rounding
    fm.KroneckerSumNormal(None, low_rank(rng, (100,), n, 1), low_rank(rng, (), p, 1), 1e-3)
    with pytest.raises(ValueError, match="x contains NaN or infinity at batch index 1"):
        fm.KroneckerSumNormal(None, u, v, a).logpdf(np.where(np.arange(4)[:, None, None] == 1, np.nan, 0.0)
                                                    + np.zeros((4, n, p)))
    with pytest.raises(ValueError, match="x has shape"):
        fm.KroneckerSumNormal(None, u, v, a).logpdf(np.zeros((p, n)))
    with pytest.raises(ValueError, match="exactly one of noise= .* and damping="):
        fm.KroneckerSumNormal.from_eig(None, np.eye(n), np.ones(n), np.eye(p), np.ones(p))
    with pytest.raises(ValueError, match="damping must be positive"):
        fm.KroneckerSumNormal.from_precision(None, u, v, 0.0)
    with pytest.raises(LinAlgError, match="rowvals has an eigenvalue that is not non-negative at batch index 1"):
        fm.KroneckerSumNormal.from_eig(None, np.eye(n), [[1.0] * n, [-1.0] * n], np.eye(p), np.ones(p), noise=1.0)
    with pytest.raises(TypeError, match="KroneckerSumNormal"):
        fm.MatrixNormal(None, np.eye(n), np.eye(p)).kl(object())


def test_a_failing_scalar_is_named_without_a_batch_index(rng):
    n, p = 3, 2
    mean, u, v = np.zeros((4, n, p)), spd(rng, (4,), n), spd(rng, (), p)
    with pytest.raises(ValueError, match="^damping must be positive$"):
        fm.KroneckerSumNormal.from_precision(mean, u, v, 0.0)
    with pytest.raises(ValueError, match="^damping must be positive$"):
        fm.logpdf_kron_prec_value_and_grad(mean, None, u, v, np.float32(0.0))
    with pytest.raises(ValueError, match="^damping is NaN or infinity$"):
        fm.KroneckerSumNormal.from_eig(mean, np.eye(n), np.ones(n), np.eye(p), np.ones(p), damping=np.nan)
    with pytest.raises(ValueError, match="^damping must be positive at batch index 2$"):  # a batched scalar
        fm.KroneckerSumNormal.from_precision(mean, u, v, np.array([1.0, 1.0, 0.0, 1.0]))
    with pytest.raises(LinAlgError, match=r"^noise_rowcov is not positive definite \(Cholesky failed\)$"):
        fm.KroneckerSumNormal(mean, u, v, -1.0)
    with pytest.raises(ValueError, match="^noise_colcov contains NaN or infinity$"):
        fm.KroneckerSumNormal(mean, u, v, 1.0, np.inf)
    with pytest.raises(ValueError, match="^rowcov contains NaN or infinity at batch index 0$"):  # NaN first
        fm.KroneckerSumNormal(mean, np.where(np.arange(4)[:, None, None] == 0, np.nan, u), v, -1.0)


def test_errors_nan_in_the_function_forms(rng):
    n, p = 3, 2
    u, v, a = spd(rng, (4,), n), spd(rng, (), p), spd(rng, (4,), n)
    a[2] = -np.eye(n)
    x = rng.standard_normal((4, n, p))
    x[0, 1, 1] = np.inf
    value = fm.logpdf_kron_sum(x, None, u, v, a, errors="nan")
    assert np.isnan(value[[0, 2]]).all() and np.isfinite(value[[1, 3]]).all()
    np.testing.assert_allclose(value[[1, 3]], reference.logpdf_kron_sum(x[[1, 3]], None, u[[1, 3]], v, a[[1, 3]]),
                               rtol=1e-10)
    with pytest.raises(ValueError, match="x contains NaN or infinity at batch index 0"):
        fm.logpdf_kron_sum(x, None, u, v, a)
    with pytest.raises(LinAlgError, match="noise_rowcov is not positive definite .* at batch index 2"):
        fm.logpdf_kron_sum(np.nan_to_num(x, posinf=0.0), None, u, v, a)
    with pytest.raises(LinAlgError, match=r"^noise_rowcov is not positive definite \(Cholesky failed\)$"):  # as the class
        fm.logpdf_kron_sum(np.nan_to_num(x, posinf=0.0), None, u, v, -1.0)
    with pytest.raises(LinAlgError, match=r"^noise_rowcov2 is not positive definite \(Cholesky failed\)$"):
        fm.kl_kron_sum(None, u, v, a[[0, 1, 3, 3]], None, None, u, v, -np.eye(n), None)
    kl = fm.kl_kron_sum(None, u, v, a, None, None, u, v, 1.0, None, errors="nan")
    assert np.isnan(kl[2]) and np.isfinite(kl[[0, 1, 3]]).all()
    with pytest.raises(LinAlgError, match="noise_rowcov1 is not positive definite .* at batch index 2"):
        fm.kl_kron_sum(None, u, v, a, None, None, u, v, 1.0, None)
    with pytest.raises(LinAlgError, match="colcov2 is not positive semi-definite"):
        fm.kl_kron_sum(None, u, v, 1.0, None, None, u, -v, 1.0, None)
    with pytest.raises(ValueError, match="errors must be"):
        fm.logpdf_kron_sum(x, None, u, v, 1.0, errors="ignore")


# The compiled kernels of the function forms ----------------------------------------------------

from fastmvn.distributions import kron as kron_module  # noqa: E402

COMPILED_SHAPES = [(1, 1), (3, 2), (4, 4), (2, 5), (7, 3), (16, 16)]


@pytest.mark.parametrize("kinds", [("full", "full"), ("low rank", "isotropic"), ("no signal", "low rank"),
                                   ("isotropic", "no signal")])
@pytest.mark.parametrize("n, p", COMPILED_SHAPES)
def test_compiled_kernels_against_lapack_and_dense(rng, n, p, kinds):
    batch = 150  # more than one group of lanes, and a partial one
    args1 = (rng.standard_normal((batch, n, p)), *signal_and_noise(rng, n, p, kinds[0], (batch,)))
    args2 = (rng.standard_normal((batch, n, p)), *signal_and_noise(rng, n, p, kinds[1], (batch,)))
    x = rng.standard_normal((batch, n, p))
    kl = fm.kl_kron_sum(*args1, *args2)
    logpdf = fm.logpdf_kron_sum(x, *args1)
    np.testing.assert_allclose(kl, kron_module._kl_lapack(*args1, *args2), rtol=1e-10)
    np.testing.assert_allclose(logpdf, kron_module._logpdf_lapack(x, *args1), rtol=1e-10)
    few = [a[:3] if np.ndim(a) > 2 else a for a in (*args1, *args2)]
    np.testing.assert_allclose(kl[:3], reference.kl_kron_sum(*few), rtol=1e-10)
    np.testing.assert_allclose(logpdf[:3], reference.logpdf_kron_sum(x[:3], *few[:5]), rtol=1e-10)


def test_compiled_kernels_equal_signals_and_equal_distributions(rng):
    """A signal proportional to its noise whitens to a multiple of I (equal eigenvalues); a
    distribution against itself has KL 0, never below."""
    n, p, batch = 4, 3, 40
    a, b = spd(rng, (batch,), n), spd(rng, (batch,), p)
    mean = rng.standard_normal((batch, n, p))
    args = (mean, 2.0 * a, 3.0 * b, a, b)
    other = (mean + 0.1, spd(rng, (batch,), n), spd(rng, (batch,), p), a, b)
    np.testing.assert_allclose(fm.kl_kron_sum(*args, *other), kron_module._kl_lapack(*args, *other), rtol=1e-10)
    np.testing.assert_allclose(fm.kl_kron_sum(*other, *args), kron_module._kl_lapack(*other, *args), rtol=1e-10)
    same = fm.kl_kron_sum(*other, *other)
    assert (same >= 0).all() and (same < 1e-12 * n * p).all()
    x = rng.standard_normal((batch, n, p))
    np.testing.assert_allclose(fm.logpdf_kron_sum(x, *args), kron_module._logpdf_lapack(x, *args), rtol=1e-10)


def test_compiled_kernels_broadcast_and_float32(rng):
    n, p = 3, 2
    args1 = (rng.standard_normal((4, 1, n, p)), spd(rng, (3,), n), low_rank(rng, (), p, 1), 0.7, None)
    args2 = (None, spd(rng, (4, 3), n), spd(rng, (), p), spd(rng, (1, 3), n), 2.0)
    kl = fm.kl_kron_sum(*args1, *args2)
    assert kl.shape == (4, 3) and kl.dtype == np.float64
    np.testing.assert_allclose(kl, kron_module._kl_lapack(*args1, *args2), rtol=1e-10)
    x = rng.standard_normal((2, 4, 3, n, p))
    logpdf = fm.logpdf_kron_sum(x, *args1)
    assert logpdf.shape == (2, 4, 3)
    np.testing.assert_allclose(logpdf, kron_module._logpdf_lapack(x, *args1), rtol=1e-10)
    args1 = (args1[0], args1[1], spd(rng, (), p), *args1[3:])  # a float32 signal of low rank may round indefinite
    single = [a.astype(np.float32) if isinstance(a, np.ndarray) else a for a in (*args1, *args2)]
    kl32 = fm.kl_kron_sum(*single)
    assert kl32.dtype == np.float32
    np.testing.assert_allclose(kl32, kron_module._kl_lapack(*single), rtol=1e-6)
    assert fm.logpdf_kron_sum(x.astype(np.float32), *single[:5]).dtype == np.float32
    one = (np.zeros((n, p)), spd(rng, (), n), spd(rng, (), p), 0.5, None)
    assert isinstance(fm.kl_kron_sum(*one, *one[:3], 2.0, None), np.float64)


def test_items_larger_than_the_compiled_side_go_through_lapack(rng, monkeypatch):
    from fastmvn import _config

    n, p = 3, 2
    args1 = (rng.standard_normal((5, n, p)), spd(rng, (5,), n), spd(rng, (), p), spd(rng, (5,), n), None)
    args2 = (None, spd(rng, (5,), n), spd(rng, (5,), p), 0.4, spd(rng, (), p))
    compiled = fm.kl_kron_sum(*args1, *args2)

    def refuse(*args):
        raise AssertionError("the compiled kernels were called")

    monkeypatch.setattr(_config, "KRON_SUM_MAX_SIDE", 2)
    monkeypatch.setattr(kron_module, "_compiled", refuse)
    np.testing.assert_allclose(fm.kl_kron_sum(*args1, *args2), compiled, rtol=1e-10)
    x = rng.standard_normal((5, n, p))
    np.testing.assert_allclose(fm.logpdf_kron_sum(x, *args1), kron_module._logpdf_lapack(x, *args1), rtol=1e-14)


@pytest.fixture
def lapack_items(monkeypatch):
    """Every log-density through one compiled LAPACK call per item, the lanes refused."""
    from fastmvn import _config

    def refuse(*args):
        raise AssertionError("the lanes were called")

    monkeypatch.setattr(_config, "KRON_SUM_LAPACK_MIN_SIDE", 1)
    monkeypatch.setattr(_config, "KRON_SUM_LAPACK_ALL_SIDE", 1)
    monkeypatch.setattr(kron_module, "_compiled", refuse)


LAPACK_SHAPES = [(1, 1), (13, 9), (9, 13), (1, 14), (14, 1), (12, 12), (40, 33)]


@pytest.mark.parametrize("kind", ["full", "isotropic", "low rank", "no signal", "row noise", "column noise"])
@pytest.mark.parametrize("n, p", LAPACK_SHAPES)
def test_lapack_items_against_the_dense_route(rng, n, p, kind, lapack_items):
    """The larger side made tridiagonal, the smaller diagonalised (either side larger), for every
    kind of noise and signal, against the dense ``np×np`` route and the ``eigh`` route."""
    if kind in ("row noise", "column noise"):  # a noise matrix on one side and a variance on the other
        u, v, a, b = signal_and_noise(rng, n, p, "full", (3,))
        noises = (a, 2.5) if kind == "row noise" else (0.4, b)
        args = (rng.standard_normal((3, n, p)), u, v, *noises)
    else:
        args = (rng.standard_normal((3, n, p)), *signal_and_noise(rng, n, p, kind, (3,)))
    x = rng.standard_normal((3, n, p))
    logpdf = fm.logpdf_kron_sum(x, *args)
    np.testing.assert_allclose(logpdf, kron_module._logpdf_lapack(x, *args), rtol=1e-10)
    if n * p <= 200:
        np.testing.assert_allclose(logpdf, reference.logpdf_kron_sum(x, *args), rtol=1e-10)


def test_lapack_items_of_a_strong_signal(rng, lapack_items):
    """A signal far above its noise: the pivots of ``λ_v,j T + I`` reach 10¹¹ (10²⁷ for the smaller
    noise), and their products are taken in runs of rows short enough not to overflow."""
    from fastmvn import _lapack, _large_items

    n, p = 60, 20
    u, v = 1e5 * spd(rng, (), n), 1e5 * spd(rng, (), p)
    x = rng.standard_normal((n, p))
    for noise in (1.0, 1e-8):
        want = kron_module._logpdf_lapack(x, None, u, v, noise, None)
        defined, value = _large_items.kron_sum_logpdf(_lapack.arena(np.empty(0)), x, np.zeros((n, p)), u, v,
                                                      np.full((1, 1), noise), np.ones((1, 1)), np.finfo(float).eps,
                                                      np.finfo(float).eps)
        assert defined  # not left to the eigh route
        np.testing.assert_allclose(value, want, rtol=1e-10)
        np.testing.assert_allclose(fm.logpdf_kron_sum(x, None, u, v, noise), want, rtol=1e-10)


@pytest.mark.parametrize("n, p", [(13, 9), (9, 13)])
def test_lapack_items_take_their_scratch_from_an_arena(rng, n, p, lapack_items, monkeypatch):
    """The first call records the scratch its items asked for (the residual, the noises'
    factors, the whitened signals, the eigenvectors, the reflectors and LAPACK's workspaces);
    later calls take it from one buffer of the pool, with results equal bit for bit, and so do
    calls whose buffer has room for half of it only, beside an item that fails (NaN)."""
    from fastmvn import _config, _large, _pool

    u, v, a, b = signal_and_noise(rng, n, p, "full", (3,))
    u[1] -= 10 * np.eye(n)                                # item 1: not positive semi-definite
    x = rng.standard_normal((3, n, p))
    monkeypatch.setattr(_large, "_ASKED", {})
    first = fm.logpdf_kron_sum(x, None, u, v, a, b, errors="nan")
    assert np.isnan(first[1]) and np.isfinite(first[[0, 2]]).all()
    asked = dict(_large._ASKED)
    assert len(asked) == 1 and next(iter(asked.values())) > 3 * n * n + 3 * p * p + 2 * n * p
    taken, empty = [], _pool.empty
    monkeypatch.setattr(_pool, "empty", lambda shape, *rest, **options: taken.append(shape) or empty(shape, *rest,
                                                                                                   **options))
    monkeypatch.setattr(_config, "ARENA_MIN_BYTES", 0)
    for scale in (1, 0.5):
        monkeypatch.setattr(_large, "_ASKED", {key: int(size * scale) for key, size in asked.items()})
        np.testing.assert_array_equal(fm.logpdf_kron_sum(x, None, u, v, a, b, errors="nan"), first)
    assert taken == [(int(size * scale),) for scale in (1, 0.5) for size in asked.values()]


@pytest.mark.parametrize("n, p", [(9, 6), (6, 9)])
def test_lapack_items_errors_name_the_argument_and_batch_index(rng, n, p, lapack_items):
    """Each check on either side (the tridiagonal and the diagonalised one): the item left NaN by
    the compiled call is explained by the ``eigh`` route, with its batch index."""
    u, v, a = spd(rng, (2, 3), n), spd(rng, (), p), spd(rng, (2, 3), n)
    x = rng.standard_normal((2, 3, n, p))
    bad = u.copy()
    bad[1, 2] -= 10 * np.eye(n)
    with pytest.raises(LinAlgError, match=r"^rowcov is not positive semi-definite at batch index \(1, 2\)$"):
        fm.logpdf_kron_sum(x, None, bad, v, a)
    with pytest.raises(LinAlgError, match=r"^colcov is not positive semi-definite"):
        fm.logpdf_kron_sum(x, None, u, v - 10 * np.eye(p), a)
    bad_noise = a.copy()
    bad_noise[0, 1, 2, 2] = -1.0
    with pytest.raises(LinAlgError, match=r"^noise_rowcov is not positive definite .* at batch index \(0, 1\)$"):
        fm.logpdf_kron_sum(x, None, u, v, bad_noise)
    with pytest.raises(LinAlgError, match=r"^noise_rowcov is not positive definite"):
        fm.logpdf_kron_sum(x, None, u, v, -0.5)
    nan = x.copy()
    nan[1, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"^x contains NaN or infinity at batch index \(1, 0\)$"):
        fm.logpdf_kron_sum(nan, None, u, v, a)
    value = fm.logpdf_kron_sum(nan, None, bad, v, bad_noise, errors="nan")
    failed = np.zeros((2, 3), bool)
    failed[1, 0] = failed[1, 2] = failed[0, 1] = True
    assert np.isnan(value[failed]).all()
    np.testing.assert_allclose(value[~failed], kron_module._logpdf_lapack(x, None, u, v, a, None)[~failed], rtol=1e-10)


def test_lapack_items_out_broadcasting_and_float32(rng, lapack_items):
    n, p = 14, 5
    x = rng.standard_normal((2, 4, n, p))
    args = (rng.standard_normal((4, n, p)), spd(rng, (), n), spd(rng, (4,), p), spd(rng, (1, 4), n), 0.3)
    want = kron_module._logpdf_lapack(x, *args)
    out = np.empty((2, 4))
    assert fm.logpdf_kron_sum(x, *args, out=out) is out
    np.testing.assert_allclose(out, want, rtol=1e-10)
    single = [a.astype(np.float32) if isinstance(a, np.ndarray) else a for a in (x, *args)]
    got = fm.logpdf_kron_sum(*single)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, kron_module._logpdf_lapack(*single), rtol=1e-6)


@pytest.mark.parametrize("n, p", [(5, 4), (40, 30)])
def test_float32_signals_of_low_rank_are_semi_definite_at_their_precision(rng, n, p):
    """A rank-2 signal rounded to float32 has eigenvalues of about −10⁻⁸·‖U‖, far below float64's
    floor but within float32's: it is semi-definite (in the lanes, by LAPACK, and in the class and
    the precision form), and a clearly indefinite one is not."""
    g = rng.standard_normal((n, 2)).astype(np.float32)
    u, v = g @ g.T, spd(rng, (), p).astype(np.float32)
    u64, v64 = u.astype(np.float64), v.astype(np.float64)
    eigvals = np.linalg.eigvalsh(u64)
    assert eigvals[0] < -n * np.finfo(np.float64).eps * np.abs(eigvals).max()
    x = rng.standard_normal((n, p)).astype(np.float32)
    logpdf = fm.logpdf_kron_sum(x, None, u, v, np.float32(0.5))
    assert logpdf.dtype == np.float32
    np.testing.assert_allclose(logpdf, reference.logpdf_kron_sum(x.astype(np.float64), None, u64, v64, 0.5), rtol=1e-5)
    kl = fm.kl_kron_sum(None, u, v, np.float32(0.5), None, None, v[:1, :1] * np.eye(n, dtype=np.float32), v,
                        np.float32(1.0), None)
    np.testing.assert_allclose(kl, reference.kl_kron_sum(None, u64, v64, 0.5, None, None, v64[:1, :1] * np.eye(n),
                                                         v64, 1.0, None), rtol=1e-4)
    clipped = (eigvecs := np.linalg.eigh(u64)[1]) @ np.diag(np.maximum(eigvals, 0.0)) @ eigvecs.T
    np.testing.assert_allclose(fm.KroneckerSumNormal.from_precision(None, u, v, np.float32(0.5)).logpdf(x),
                               fm.KroneckerSumNormal.from_precision(None, clipped, v64, 0.5).logpdf(x), rtol=1e-5)
    with pytest.raises(LinAlgError, match="rowcov is not positive semi-definite"):
        fm.logpdf_kron_sum(x, None, u - np.float32(1e-3 * eigvals[-1]) * np.eye(n, dtype=np.float32), v, 0.5)
    noise = np.stack([np.eye(n)] * 3)
    noise[1] = -noise[1]  # its item is computed again, by the class's code, with the signal as float32 still
    with pytest.raises(LinAlgError, match=r"^noise_rowcov is not positive definite .* at batch index 1$"):
        fm.logpdf_kron_sum(x.astype(np.float64), None, u, v, noise)
    mixed = fm.logpdf_kron_sum(x.astype(np.float64), None, u, v, noise, errors="nan")
    assert np.isnan(mixed[1]) and np.isfinite(mixed[[0, 2]]).all()


def test_the_kron_sum_log_density_plan(rng, monkeypatch):
    """Few items from 12×12, any number from 20×20, take LAPACK; the others the lanes."""
    from fastmvn import _config

    assert (_config.KRON_SUM_LAPACK_MIN_SIDE, _config.KRON_SUM_LAPACK_BATCH_SIDE,
            _config.KRON_SUM_LAPACK_ALL_SIDE) == (12, 8, 20)
    assert [kron_module._large_plan(side, count) for side, count in
            [(11, 1), (12, 1), (12, 3), (16, 4), (16, 5), (19, 6), (20, 10 ** 6)]] == [
        False, True, False, True, False, False, True]
    routes = []
    monkeypatch.setattr(kron_module, "_compiled", lambda *args: routes.append("lanes") or np.zeros(args[-1]))
    monkeypatch.setattr(kron_module, "_large_items",
                        lambda slots, shape, epsilons: routes.append("lapack") or np.zeros(shape))
    for side, count in [(11, 1), (12, 1), (12, 3), (20, 50), (40, 1)]:
        fm.logpdf_kron_sum(np.zeros((count, side, 3)), None, np.eye(side), np.eye(3), 1.0)
    assert routes == ["lanes", "lapack", "lanes", "lapack", "lapack"]


def test_sturm_counts_and_extreme_eigenvalues_of_tridiagonal_matrices(rng):
    from fastmvn import _large_items

    for n in (1, 2, 9, 40):
        diagonal, off = rng.standard_normal(n), rng.standard_normal(n - 1)
        values = np.linalg.eigvalsh(np.diag(diagonal) + np.diag(off, 1) + np.diag(off, -1))
        for shift in (values[0] - 1e-3, *(values[:-1] + values[1:]) / 2, values[-1] + 1e-3):
            assert _large_items._below(diagonal, off, shift) == (values < shift).sum()
        assert values[-1] <= _large_items._extreme(diagonal, off, True) <= values[-1] + 0.01 * np.abs(values).max()
        assert values[0] - 0.01 * np.abs(values).max() <= _large_items._extreme(diagonal, off, False) <= values[0]
    zero = np.zeros(5)
    assert _large_items._below(zero, zero[:4], 0.0) == 0 and _large_items._extreme(zero, zero[:4], True) == 0.0


def test_compiled_kernels_errors_name_the_argument_and_batch_index(rng):
    n, p = 4, 4
    u, v, a = spd(rng, (2, 3), n), spd(rng, (), p), spd(rng, (2, 3), n)
    bad_signal = u.copy()
    bad_signal[1, 2] = u[1, 2] - 10 * np.eye(n)
    args2 = (None, np.eye(n), v, 1.0, None)
    with pytest.raises(LinAlgError, match=r"^rowcov1 is not positive semi-definite at batch index \(1, 2\)$"):
        fm.kl_kron_sum(None, bad_signal, v, a, None, *args2)
    bad_noise = a.copy()
    bad_noise[0, 1, 3, 3] = -1.0
    with pytest.raises(LinAlgError, match=r"^noise_rowcov2 is not positive definite .* at batch index \(0, 1\)$"):
        fm.kl_kron_sum(None, u, v, a, None, None, u, v, bad_noise, None)
    bad_colnoise = np.tile(np.eye(p), (2, 3, 1, 1))
    bad_colnoise[1, 0] = -np.eye(p)
    with pytest.raises(LinAlgError, match=r"^noise_colcov is not positive definite .* at batch index \(1, 0\)$"):
        fm.logpdf_kron_sum(np.zeros((n, p)), None, u, v, a, bad_colnoise)
    nan = u.copy()
    nan[0, 1, 2, 1] = np.nan
    with pytest.raises(ValueError, match=r"^rowcov contains NaN or infinity at batch index \(0, 1\)$"):
        fm.logpdf_kron_sum(np.zeros((n, p)), None, nan, v, bad_noise)  # before the noise of the same item
    other = spd(rng, (2, 3), n)
    other[0, 1, 2, 1] = np.nan
    value = fm.kl_kron_sum(None, bad_signal, v, a, None, None, other, v, bad_noise, None, errors="nan")
    failing = np.zeros((2, 3), bool)
    failing[1, 2] = failing[0, 1] = True
    assert np.isnan(value[failing]).all() and np.isfinite(value[~failing]).all()
    expected = kron_module._kl_lapack(None, bad_signal, v, a, None, None, other, v, bad_noise, None, errors="nan")
    np.testing.assert_array_equal(np.isnan(expected), failing)
    np.testing.assert_allclose(value[~failing], expected[~failing], rtol=1e-10)


@pytest.mark.parametrize("side", ["rowcov1", "colcov1"])
@pytest.mark.parametrize("n, p", [(4, 3), (3, 4), (5, 5)])
def test_compiled_kl_tests_both_first_signals_for_semi_definiteness(rng, n, p, side):
    """The compiled KL diagonalises the first distribution's smaller side and takes the other's
    determinants by shifted Cholesky factorisations (``kernels.kronsum.fold_shifted``): either
    way a signal of rank one passes and one with a clearly negative eigenvalue fails its item."""
    batch = 6
    args1 = [rng.standard_normal((batch, n, p)), low_rank(rng, (batch,), n, 1), low_rank(rng, (batch,), p, 1),
             spd(rng, (batch,), n), spd(rng, (batch,), p)]
    args2 = (None, spd(rng, (batch,), n), spd(rng, (batch,), p), 0.5, None)
    np.testing.assert_allclose(fm.kl_kron_sum(*args1, *args2), kron_module._kl_lapack(*args1, *args2), rtol=1e-10)
    assert_item_off_the_span_fails(rng, args1, args2, args1, 1 if side == "rowcov1" else 2, side)


def assert_item_off_the_span_fails(rng, args1, args2, args, k, side):
    """Item 4 of ``args[k]`` (``args`` one of the lists ``args1``, ``args2``), a signal of rank
    one, pushed off its span, has a clearly negative eigenvalue: ``kl_kron_sum`` names ``side``
    and the item, and with ``errors="nan"`` fails that item alone."""
    g = rng.standard_normal(args[k].shape[-1])
    args[k] = args[k].copy()
    args[k][4] -= 1e-3 * np.trace(args[k][4]) * np.outer(g, g) / (g @ g)  # off the span: a negative eigenvalue
    with pytest.raises(LinAlgError, match=rf"^{side} is not positive semi-definite at batch index 4$"):
        fm.kl_kron_sum(*args1, *args2)
    value = fm.kl_kron_sum(*args1, *args2, errors="nan")
    assert np.isnan(value[4]) and np.isfinite(np.delete(value, 4)).all()


@pytest.mark.parametrize("n, p", [(4, 3), (3, 4), (5, 5)])
def test_compiled_kl_tests_the_second_distributions_whitened_signal_for_semi_definiteness(rng, n, p):
    """The compiled KL diagonalises only the second distribution's smaller side and factorises
    the blocks ``λ_j W + I`` of its other side (``kernels.kronsum.block_terms``): a signal of
    rank one on that side passes, and one with a clearly negative eigenvalue fails its item
    (by the shifted factorisation of ``W``: the blocks themselves may well factorise)."""
    batch = 6
    side = "rowcov2" if p <= n else "colcov2"
    k = 1 if side == "rowcov2" else 2
    size = n if k == 1 else p
    args1 = (rng.standard_normal((batch, n, p)), spd(rng, (batch,), n), spd(rng, (batch,), p),
              spd(rng, (batch,), n), spd(rng, (batch,), p))
    args2 = [rng.standard_normal((batch, n, p)), spd(rng, (batch,), n), spd(rng, (batch,), p), 0.5, None]
    args2[k] = low_rank(rng, (batch,), size, 1)
    np.testing.assert_allclose(fm.kl_kron_sum(*args1, *args2), kron_module._kl_lapack(*args1, *args2), rtol=1e-10)
    assert_item_off_the_span_fails(rng, args1, args2, args2, k, side)


def test_benchmark_eigh_routes_agree(rng):
    """The NumPy and PyTorch routes that the benchmarks time compute the same KL."""
    from fastmvn import _bench

    args = _bench.kron_sum_inputs(50, 4, 3, seed=3)
    kl = fm.kl_kron_sum(*args)
    np.testing.assert_allclose(_bench.eigh_kl_kron_sum(np, *args), kl, rtol=1e-10)
    np.testing.assert_allclose(reference.kl_kron_sum(*args), kl, rtol=1e-10)
    torch_route = _bench.torch_kl_kron_sum(args)
    if torch_route is not None:
        np.testing.assert_allclose(torch_route().numpy(), kl, rtol=1e-10)
