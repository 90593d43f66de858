"""Upper Cholesky factors (``lower=False``): every function that takes factors reads the upper
triangles of ``R`` with ``U = Rᵀ R`` (as ``scipy.linalg.cholesky`` returns them) and gives what
the default gives for the lower factors ``L = Rᵀ`` (as ``numpy.linalg.cholesky`` returns them)."""

import numpy as np
import pytest
from numpy.linalg import LinAlgError

import fastmvn as fm
from fastmvn import reference

from conftest import pair, spd, upper_cholesky

TOLERANCE = dict(rtol=1e-12, atol=1e-12)


def both(cov):
    """The lower factor of ``cov`` by NumPy and the upper one by SciPy."""
    return np.linalg.cholesky(cov), upper_cholesky(cov)


def scrambled(upper, rng):
    """``upper`` with noise below its diagonal, which ``lower=False`` never reads."""
    return upper + np.tril(rng.standard_normal(upper.shape), -1)


def kl_cases(rng):
    """``(name, covariance arguments)`` of KLs: batched, broadcast over a shared prior, and with
    second arguments omitted (None)."""
    full = pair(rng, (6,), 3, 2)
    grid = [rng.standard_normal((4, 1, 3, 2)), spd(rng, (1, 5), 3), spd(rng, (5,), 2),
            rng.standard_normal((3, 2)), spd(rng, (), 3), spd(rng, (4, 5), 2)]
    return [("batched", full), ("broadcast", grid), ("standard prior", full[:3]),
            ("rowchol2 omitted", full[:4] + [None] + full[5:])]


def factor_arguments(args, rng, scramble=False):
    """``args`` with each covariance replaced by its lower factor, and by its upper one."""
    lower, upper = [], []
    for k, a in enumerate(args):
        if a is None or k % 3 == 0:
            lower.append(a)
            upper.append(a)
            continue
        low, up = both(a)
        lower.append(low)
        upper.append(scrambled(up, rng) if scramble else up)
    return lower, upper


@pytest.mark.parametrize("case", range(4), ids=["batched", "broadcast", "standard prior", "rowchol2 omitted"])
def test_kl_chol_of_upper_factors(rng, case):
    _, args = kl_cases(rng)[case]
    lower, upper = factor_arguments(args, rng, scramble=True)
    expected = fm.kl_chol(*lower)
    np.testing.assert_allclose(fm.kl_chol(*upper, lower=False), expected, **TOLERANCE)
    np.testing.assert_allclose(reference.kl_chol(*upper, lower=False), expected, **TOLERANCE)
    np.testing.assert_allclose(fm.kl(*args), expected, **TOLERANCE)
    # The kernels read the transposes: exactly what they read of the lower factors Rᵀ.
    transposed = [a if a is None or k % 3 == 0 else np.tril(np.swapaxes(a, -1, -2)).copy()
                  for k, a in enumerate(upper)]
    np.testing.assert_array_equal(fm.kl_chol(*upper, lower=False), fm.kl_chol(*transposed))
    assert not np.allclose(fm.kl_chol(*upper), expected)          # read as lower factors: wrong


@pytest.mark.parametrize("name", ["logpdf_chol", "pdf_chol", "mahalanobis_chol"])
def test_densities_of_upper_factors(rng, name):
    x, mean = rng.standard_normal((2, 4, 5, 3, 2))
    rowcov, colcov = spd(rng, (5,), 3), spd(rng, (), 2)                 # colchol shared by the batch
    (rowchol, rowupper), (colchol, colupper) = both(rowcov), both(colcov)
    rowupper = scrambled(rowupper, rng)
    expected = getattr(fm, name)(x, mean, rowchol, colchol)
    np.testing.assert_allclose(getattr(fm, name)(x, mean, rowupper, colupper, lower=False), expected, **TOLERANCE)
    np.testing.assert_allclose(getattr(reference, name)(x, mean, rowupper, colupper, lower=False), expected,
                               **TOLERANCE)
    out = np.full((4, 5), np.nan)
    assert getattr(fm, name)(x, None, rowupper, colupper, out=out, lower=False) is out
    np.testing.assert_allclose(out, getattr(fm, name)(x, None, rowchol, colchol), **TOLERANCE)


def test_entropy_chol_of_upper_factors(rng):
    (rowchol, rowupper), (colchol, colupper) = both(spd(rng, (3, 1), 4)), both(spd(rng, (2,), 3))
    expected = fm.entropy_chol(rowchol, colchol)
    assert expected.shape == (3, 2)
    np.testing.assert_allclose(fm.entropy_chol(scrambled(rowupper, rng), colupper, lower=False), expected, **TOLERANCE)
    np.testing.assert_allclose(reference.entropy_chol(rowupper, colupper, lower=False), expected, **TOLERANCE)
    bad = rowupper.copy()
    bad[1, 0, 0, 3] = np.nan                                                   # above the diagonal: read
    with pytest.raises(ValueError, match=r"^rowchol contains NaN or infinity at batch index \(1, 0\)$"):
        fm.entropy_chol(bad, colupper, lower=False)
    bad = rowupper.copy()
    bad[1, 0, 3, 0] = np.nan                                                   # below it: not read
    np.testing.assert_allclose(fm.entropy_chol(bad, colupper, lower=False), expected, **TOLERANCE)


def test_matrix_normal_from_upper_factors(rng):
    mean = rng.standard_normal((4, 3, 2))
    (rowchol, rowupper), (colchol, colupper) = both(spd(rng, (4,), 3)), both(spd(rng, (), 2))
    expected = fm.MatrixNormal.from_chol(mean, rowchol, colchol)
    made = fm.MatrixNormal.from_chol(mean, scrambled(rowupper, rng), colupper, lower=False)
    for attribute in ("rowcov", "colcov", "rowchol", "colchol"):                  # the lower factors stored
        np.testing.assert_allclose(getattr(made, attribute), getattr(expected, attribute), **TOLERANCE)
    x = rng.standard_normal((4, 3, 2))
    np.testing.assert_allclose(made.logpdf(x), expected.logpdf(x), **TOLERANCE)
    np.testing.assert_allclose(made.kl(expected), 0.0, atol=1e-12)
    single = fm.MatrixNormal.from_chol(None, rowupper[0], colupper, lower=False)
    assert single.batch_shape == () and single.shape == (3, 2)


@pytest.mark.parametrize("case", range(4), ids=["batched", "broadcast", "standard prior", "rowchol2 omitted"])
def test_value_and_grad_of_upper_factors(rng, case):
    _, args = kl_cases(rng)[case]
    lower, upper = factor_arguments(args, rng, scramble=True)
    value, grads = fm.kl_chol_value_and_grad(*lower)
    upper_value, upper_grads = fm.kl_chol_value_and_grad(*upper, lower=False)
    np.testing.assert_allclose(upper_value, value, **TOLERANCE)
    for k, (grad, upper_grad) in enumerate(zip(grads, upper_grads)):
        if grad is None:
            assert upper_grad is None
        elif k % 3 == 0:
            np.testing.assert_allclose(upper_grad, grad, **TOLERANCE)
        else:                                     # with respect to R = Lᵀ: the transpose, upper triangular
            assert upper_grad.shape == np.shape(upper[k])
            np.testing.assert_allclose(upper_grad, np.swapaxes(grad, -1, -2), **TOLERANCE)
            assert (np.tril(upper_grad, -1) == 0).all()


def test_gradient_of_an_upper_factor_by_finite_differences(rng):
    mean1, rowcov1, colcov1, mean2, rowcov2, colcov2 = pair(rng, (), 2, 3)
    upper = [mean1, both(rowcov1)[1], both(colcov1)[1], mean2, both(rowcov2)[1], both(colcov2)[1]]
    _, grads = fm.kl_chol_value_and_grad(*upper, lower=False)
    h = 1e-6
    for k in (1, 2, 4, 5):
        expected = np.zeros(upper[k].shape)
        for index in np.ndindex(*upper[k].shape):
            plus, minus = list(upper), list(upper)
            plus[k], minus[k] = upper[k].copy(), upper[k].copy()
            plus[k][index] += h
            minus[k][index] -= h
            expected[index] = (fm.kl_chol(*plus, lower=False) - fm.kl_chol(*minus, lower=False)) / (2 * h)
        np.testing.assert_allclose(grads[k], expected, rtol=1e-6, atol=1e-8)


def test_value_and_grad_of_upper_factors_into_out_and_wrt(rng):
    args = pair(rng, (5,), 3, 2)
    lower, upper = factor_arguments(args, rng)
    value, grads = fm.kl_chol_value_and_grad(*upper, lower=False)
    again = fm.kl_chol_value_and_grad(*upper, lower=False, out=(value, grads))    # the results as out
    assert again[0] is value and all(a is g for a, g in zip(again[1], grads))
    _, expected = fm.kl_chol_value_and_grad(*lower)
    mine = [np.full(np.shape(a), np.nan) for a in upper]                          # fresh C-contiguous arrays
    _, written = fm.kl_chol_value_and_grad(*upper, lower=False, out=(None, mine))
    for k, (grad, array) in enumerate(zip(written, mine)):
        assert grad is array
        np.testing.assert_allclose(array, expected[k] if k % 3 == 0 else np.swapaxes(expected[k], -1, -2),
                                   **TOLERANCE)
    _, some = fm.kl_chol_value_and_grad(*upper, lower=False, wrt="colchol2")
    assert [g is None for g in some] == [True] * 5 + [False]
    np.testing.assert_allclose(some[5], np.swapaxes(expected[5], -1, -2), **TOLERANCE)


def test_float32_upper_factors(rng):
    args = pair(rng, (7,), 3, 3)
    lower, upper = factor_arguments(args, rng)
    lower32, upper32 = ([None if a is None else a.astype(np.float32) for a in x] for x in (lower, upper))
    result = fm.kl_chol(*upper32, lower=False)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, fm.kl_chol(*[a if k % 3 == 0 else np.swapaxes(a, -1, -2).copy()
                                                       for k, a in enumerate(upper32)]))
    np.testing.assert_allclose(result, fm.kl_chol(*lower), rtol=1e-4)


def test_errors_of_upper_factors(rng):
    mean = rng.standard_normal((4, 2, 2))
    upper = np.tile(np.array([[2.0, 1.0], [0.0, 1.0]]), (4, 1, 1))
    upper[2, 1, 1] = -1.0
    with pytest.raises(LinAlgError, match=r"^rowchol1 is not a Cholesky factor: its diagonal must be positive "
                                          r"at batch index 2$"):
        fm.kl_chol(mean, upper, np.eye(2), lower=False)
    upper[2, 1, 1] = 1.0
    upper[3, 0, 1] = np.inf
    with pytest.raises(ValueError, match=r"^rowchol1 contains NaN or infinity at batch index 3$"):
        fm.kl_chol_value_and_grad(mean, upper, np.eye(2), lower=False)
    with pytest.raises(ValueError, match=r"^rowchol contains NaN or infinity at batch index 3$"):
        fm.MatrixNormal.from_chol(mean, upper, np.eye(2), lower=False)
    upper[3, 0, 1], upper[3, 1, 0] = 1.0, np.inf                      # below the diagonal: not read
    assert np.isfinite(fm.logpdf_chol(mean, None, upper, np.eye(2), lower=False)).all()
    with pytest.raises(ValueError, match=r"^rowchol must have at least 2 dimensions .* got shape \(2,\)$"):
        fm.logpdf_chol(mean, None, np.ones(2), np.eye(2), lower=False)
    for call in (lambda: fm.kl_chol(mean, upper, np.eye(2), lower="upper"),
                 lambda: fm.kl_chol_value_and_grad(mean, upper, np.eye(2), lower=None),
                 lambda: fm.entropy_chol(upper, np.eye(2), lower=0),
                 lambda: fm.MatrixNormal.from_chol(None, upper, np.eye(2), lower="U")):
        with pytest.raises(TypeError, match=r"^lower must be True or False, not "):
            call()
