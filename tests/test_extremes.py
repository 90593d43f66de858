"""Inputs at the edges: infinity on a diagonal, finite inputs at extreme scales, numerically
singular covariances, and the sign of a KL."""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from numpy.linalg import LinAlgError

import fastmvn as fm
from fastmvn import reference

from conftest import conditioned_spd, factors, lapack_for_all, pair, spd

# Each function the reference specifies, with its arguments in order, each a kind and the
# letters of its core shape: "m" a mean or a plain matrix, "c" a covariance, "f" a lower
# Cholesky factor, "v" the variances of a diagonal covariance.
KL = "m:np c:nn c:pp m:np c:nn c:pp"
DENSITY = "m:np m:np c:nn c:pp"
FUNCTIONS = {
    "kl": KL, "kl_chol": KL.replace("c", "f"), "kl_diag": KL.replace("c:nn", "v:n").replace("c:pp", "v:p"),
    "logdet": "c:nn", "trace_solve": "c:nn m:nn",
    "mahalanobis": DENSITY, "mahalanobis_chol": DENSITY.replace("c", "f"),
    "logpdf": DENSITY, "logpdf_chol": DENSITY.replace("c", "f"),
    "logpdf_diag": DENSITY.replace("c:nn", "v:n").replace("c:pp", "v:p"),
    "pdf": DENSITY, "pdf_chol": DENSITY.replace("c", "f"),
    "entropy": "c:nn c:pp", "entropy_chol": "f:nn f:pp", "kl_full": "m:np c:qq m:np c:qq",
}
#: ``q`` above is ``n·p``.


def arguments(rng, name, n=3, p=2):
    """Random well-conditioned arguments of function ``name`` for ``n×p`` matrices."""
    sizes = {"n": n, "p": p, "q": n * p}
    made = []
    for spec in FUNCTIONS[name].split():
        kind, letters = spec.split(":")
        shape = tuple(sizes[letter] for letter in letters)
        if kind == "m":
            made.append(rng.standard_normal(shape))
        elif kind == "v":
            made.append(rng.uniform(0.5, 2.0, shape))
        else:
            cov = spd(rng, (), shape[0])
            made.append(cov if kind == "c" else np.linalg.cholesky(cov))
    return made


def test_arguments_fit_every_function(rng):
    for name in FUNCTIONS:
        args = arguments(rng, name)
        expected = getattr(reference, name)(*args)
        np.testing.assert_allclose(getattr(fm, name)(*args), expected, rtol=1e-10)


# Infinity on a diagonal ---------------------------------------------------------------------
# 1/∞ is 0, so an infinite pivot or factor diagonal would drop out of a result without a trace.

INFINITE_DIAGONAL = [
    ("trace_solve", lambda: (np.diag([np.inf, 1.0]), np.eye(2)), "a"),
    ("logdet", lambda: (np.diag([1.0, np.inf]),), "a"),
    ("mahalanobis", lambda: (np.ones((2, 2)), None, np.diag([np.inf, 1.0]), np.eye(2)), "rowcov"),
    ("mahalanobis", lambda: (np.ones((2, 2)), None, np.eye(2), np.diag([1.0, np.inf])), "colcov"),
    ("mahalanobis_chol", lambda: (np.ones((2, 2)), None, np.diag([np.inf, 1.0]), np.eye(2)), "rowchol"),
    ("mahalanobis_chol", lambda: (np.ones((2, 2)), None, np.eye(2), np.diag([1.0, np.inf])), "colchol"),
    ("logpdf_chol", lambda: (np.ones((2, 2)), None, np.eye(2), np.diag([np.inf, 1.0])), "colchol"),
    ("kl_chol", lambda: (np.ones((2, 2)), np.eye(2), np.eye(2), None, np.diag([np.inf, 1.0]), None), "rowchol2"),
    ("kl", lambda: (np.ones((2, 2)), np.eye(2), np.eye(2), None, None, np.diag([1.0, np.inf])), "colcov2"),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name, make, argument", INFINITE_DIAGONAL)
def test_infinity_on_a_diagonal_is_an_error(name, make, argument, dtype):
    args = [None if a is None else a.astype(dtype) for a in make()]
    batched = [None if a is None else np.stack([np.eye(a.shape[-2], a.shape[-1]), a]).astype(dtype) for a in args]
    batched = [None if a is None else (a if k != 0 or name in ("trace_solve", "logdet") else np.ones((2, 2, 2), dtype))
               for k, a in enumerate(batched)]
    function = getattr(fm, name)
    with pytest.raises(ValueError, match=rf"^{argument} contains NaN or infinity at batch index 1$"):
        function(*batched)
    result = function(*batched, errors="nan")
    assert np.isnan(result[1]) and np.isfinite(result[0])
    with pytest.raises(ValueError, match=rf"^{argument} contains NaN or infinity$"):
        function(*args)


def test_infinity_on_a_diagonal_through_dask():
    da = pytest.importorskip("dask.array")
    import fastmvn.dask as fmd

    a = da.from_array(np.stack([np.eye(2), np.diag([np.inf, 1.0])]), chunks=(1, 2, 2))
    with pytest.raises(ValueError, match=r"^a contains NaN or infinity at batch index 1$"):
        fmd.trace_solve(a, np.eye(2)).compute()
    rowcov = da.from_array(np.stack([np.eye(2), np.diag([1.0, np.inf])]), chunks=(1, 2, 2))
    with pytest.raises(ValueError, match=r"^rowcov contains NaN or infinity at batch index 1$"):
        fmd.mahalanobis(np.ones((2, 2)), None, rowcov, np.eye(2)).compute()


# Finite inputs at extreme scales ------------------------------------------------------------


def test_extreme_scales_of_the_examples():
    cases = [
        (fm.kl_diag, reference.kl_diag, (np.zeros((4, 4)), 1e200 * np.ones(4), np.ones(4))),
        (fm.kl_diag, reference.kl_diag, (np.zeros((4, 4)), 1e-250 * np.ones(4), np.ones(4), None, 1e250 * np.ones(4))),
        (fm.logpdf_chol, reference.logpdf_chol, (np.zeros((4, 4)), None, 1e-200 * np.eye(4), np.eye(4))),
        (fm.kl, reference.kl, (np.zeros((4, 4)), 1e-200 * np.eye(4), np.eye(4), None, 1e200 * np.eye(4), None)),
        (fm.logdet, reference.logdet, (1e300 * np.eye(9),)),
        (fm.logdet, reference.logdet, (1e-300 * np.eye(9),)),
        (fm.kl_chol, reference.kl_chol, (np.zeros((4, 4)), 1e-200 * np.eye(4), np.eye(4), None, 1e200 * np.eye(4))),
        (fm.kl_diag, reference.kl_diag, (np.zeros((2, 1)), np.array([1e-310, 1.0]), np.ones(1))),
    ]
    for function, specification, args in cases:
        expected = specification(*args)
        assert np.isfinite(expected)
        assert function(*args) == pytest.approx(expected, rel=1e-12)


def scaled(args, exponents):
    """``args``, each multiplied by ``10**e`` for its own ``e``."""
    return [a * 10.0 ** e for a, e in zip(args, exponents)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(FUNCTIONS)), seed=st.integers(0, 2**32 - 1),
       exponents=st.lists(st.integers(-250, 250), min_size=6, max_size=6))
def test_extreme_scales_against_the_reference(name, seed, exponents):
    # Every finite input whose reference result is finite gets that result, however far the
    # inputs are from 1 and from one another (factors too: a KL of factors 1e-200 and 1e200).
    args = scaled(arguments(np.random.default_rng(seed), name), exponents)
    with np.errstate(all="ignore"):
        expected = getattr(reference, name)(*args)
    # Within a few orders of the float range a term of the result (D/(a·b) of a diagonal KL, say) may
    # overflow where the result does not: the README's limit is 1e300. Below the normal range
    # (2.2e-308) a result has fewer significant bits than rtol asks for: one unit in the last
    # place of 1.8e-313 (a Mahalanobis distance of factors 1e250 apart) is 2.7e-11 of it.
    assume(np.isfinite(expected) and abs(expected) >= np.finfo(np.float64).tiny and abs(expected) < 1e300)
    np.testing.assert_allclose(getattr(fm, name)(*args), expected, rtol=1e-11)


@pytest.mark.parametrize("exponent", [-250, -150, -50, 50, 150, 250])
def test_common_scale_leaves_the_kl_unchanged(rng, exponent):
    # Means scaled by s and row covariances by s² (s a power of two, near 10^(exponent/2)),
    # in both distributions: the KL is the same number, the log-determinants move by 2n·log s.
    args = pair(rng, (50,), 4, 3)
    s = 2.0 ** round(exponent / 2 * np.log2(10))
    moved = [a * {0: s, 1: s * s, 2: 1.0}[k % 3] for k, a in enumerate(args)]
    np.testing.assert_allclose(fm.kl(*moved), fm.kl(*args), rtol=1e-12)
    np.testing.assert_allclose(fm.kl_chol(*factors(moved)), fm.kl(*args), rtol=1e-12)
    np.testing.assert_allclose(fm.logdet(moved[1]), fm.logdet(args[1]) + 8 * np.log(s), rtol=1e-12)


def test_a_result_beyond_the_float_range_is_reported():
    with pytest.raises(FloatingPointError, match="the result overflowed"):
        fm.mahalanobis(1e200 * np.ones((2, 2)), None, 1e-200 * np.eye(2), np.eye(2))
    assert np.isnan(fm.mahalanobis(1e200 * np.ones((2, 2)), None, 1e-200 * np.eye(2), np.eye(2), errors="nan"))


@pytest.mark.parametrize("path", ["float32 lanes", "float64 lanes", "large items"])
def test_a_float32_result_beyond_float32s_range_is_reported(monkeypatch, path):
    """A float32 result is judged as stored: a KL or log-density beyond float32's range (about
    3.4e38) fails its item with the error of one beyond float64's, though float64 arithmetic
    (above 16×16, or on the large-item path) computes it finite; a result just inside is
    returned. Its gradients are NaN with ``errors="nan"``, and the ufuncs return NaN."""
    if path == "large items":
        lapack_for_all(monkeypatch)
    n = 4 if path == "float32 lanes" else 20
    biggest = float(np.finfo(np.float32).max)
    scale = np.sqrt(2 * biggest / (n * n))                          # ½‖M‖² at the edge of float32's range
    means = np.stack([np.zeros((n, n)), 0.9 * scale * np.ones((n, n)), 1.1 * scale * np.ones((n, n))])
    means = means.astype(np.float32)
    ones, eye = np.ones(n, np.float32), np.eye(n, dtype=np.float32)
    calls = {"kl": lambda **kw: fm.kl(means, eye, eye, **kw),
             "kl_diag": lambda **kw: fm.kl_diag(means, ones, ones, **kw),
             "logpdf": lambda **kw: fm.logpdf(means, None, eye, eye, **kw)}
    for name, call in calls.items():
        with pytest.raises(FloatingPointError, match="^the result overflowed at batch index 2$"):
            call()
        result = call(errors="nan")
        assert result.dtype == np.float32 and np.isnan(result[2]), name
        expected = reference.kl(means[1], eye, eye) if name != "logpdf" else reference.logpdf(means[1], None, eye, eye)
        np.testing.assert_allclose(result[:2], [0.0 if name != "logpdf" else result[0], expected], rtol=1e-5)
    value, grads = fm.kl_value_and_grad(means, eye, eye, errors="nan")
    assert np.isnan(value[2]) and np.isnan(grads[0][2]).all() and np.isfinite(grads[0][:2]).all()
    value, grads = fm.kl_diag_value_and_grad(means, ones, ones, errors="nan")
    assert np.isnan(value[2]) and np.isnan(grads[0][2]).all() and np.isfinite(grads[0][:2]).all()
    if path != "large items":                                       # the ufuncs have no large-item path
        import fastmvn.ufuncs as fmu

        with np.errstate(over="ignore", invalid="ignore"):               # NumPy's flags, as for its own ufuncs
            result = fmu.kl(means, eye, eye, np.zeros_like(means[0]), eye, eye)
        assert result.dtype == np.float32 and np.isnan(result[2]) and np.isfinite(result[:2]).all()


def test_a_kronecker_sum_result_beyond_its_dtypes_range_is_reported():
    """The Kronecker-sum functions, their values with gradients and
    :class:`fastmvn.KroneckerSumNormal` judge a result as delivered, as the matrix normal's
    functions do: beyond float32's range for float32 items (here computed by the compiled
    kernels, then again through LAPACK), beyond float64's for float64 ones."""
    n = 20
    eye = np.eye(n, dtype=np.float32)
    far = np.zeros((3, n, n), np.float32)
    far[2] = 4e18                                                    # ½‖X‖² about 3e39
    prior = fm.KroneckerSumNormal(np.zeros((n, n), np.float32), eye, eye, 0.5)
    calls = {"logpdf_kron_sum": lambda **kw: fm.logpdf_kron_sum(far, None, eye, eye, 0.5, **kw),
             "kl_kron_sum": lambda **kw: fm.kl_kron_sum(far, eye, eye, eye, None, None, eye, eye, eye, None, **kw),
             "KroneckerSumNormal.logpdf": lambda **kw: prior.logpdf(far, **kw)}
    gradients = {"logpdf_kron_sum_value_and_grad": lambda **kw: fm.logpdf_kron_sum_value_and_grad(
                     far, None, eye, eye, 0.5, **kw),
                 "kl_kron_sum_value_and_grad": lambda **kw: fm.kl_kron_sum_value_and_grad(
                     far, eye, eye, eye, None, None, eye, eye, eye, None, **kw),
                 "logpdf_kron_prec_value_and_grad": lambda **kw: fm.logpdf_kron_prec_value_and_grad(
                     far, None, eye, eye, 0.5, **kw)}
    for name, call in {**calls, **gradients}.items():
        with pytest.raises(FloatingPointError, match=r"^the result overflowed at batch index 2$"):
            call()
        values = call(errors="nan")
        if name in gradients:
            values, (grad, *_) = values                             # and the first argument's gradient
            assert np.isnan(grad[2]).all() and np.isfinite(grad[:2]).all(), name
        assert values.dtype == np.float32 and np.isnan(values[2]) and np.isfinite(values[:2]).all(), name
    far64 = np.zeros((2, 3, 2))
    far64[1] = 1e200
    with pytest.raises(FloatingPointError, match=r"^the result overflowed at batch index 1$"):
        fm.KroneckerSumNormal(np.zeros((3, 2)), np.eye(3), np.eye(2), 0.5).logpdf(far64)


# Numerically singular covariances -----------------------------------------------------------

RANK_ONE = np.array([[2.0, 1.0], [1.0, 0.5]])


def test_rank_one_covariance_is_rejected_everywhere():
    # Rounding leaves a pivot of 1e-16 instead of 0: a density of 1e14, draws of rank one.
    zero = np.zeros((2, 2))
    calls = [
        lambda **kw: fm.logpdf(zero, None, np.eye(2), RANK_ONE, **kw),
        lambda **kw: fm.mahalanobis(zero, None, np.eye(2), RANK_ONE, **kw),
        lambda **kw: fm.logdet(RANK_ONE, **kw),
        lambda **kw: fm.trace_solve(RANK_ONE, np.eye(2), **kw),
        lambda **kw: fm.kl(zero, np.eye(2), RANK_ONE, **kw),
        lambda **kw: fm.kl(zero, np.eye(2), np.eye(2), None, None, RANK_ONE, **kw),
        lambda **kw: fm.kl_value_and_grad(zero, np.eye(2), RANK_ONE, **kw)[0],
        lambda **kw: fm.entropy(np.eye(2), RANK_ONE, **kw),
        lambda **kw: fm.pdf(zero, None, np.eye(2), RANK_ONE, **kw),
        lambda **kw: fm.rvs(zero, np.eye(2), RANK_ONE, size=3, random_state=0, **kw),
    ]
    for call in calls:
        with pytest.raises(LinAlgError, match="is not positive definite"):
            call()
        assert np.isnan(call(errors="nan")).all()
    with pytest.raises(LinAlgError, match="colcov is not positive definite"):
        fm.MatrixNormal(zero, np.eye(2), RANK_ONE)
    with pytest.raises(LinAlgError):
        reference.logpdf(zero, None, np.eye(2), RANK_ONE)
    assert reference.singular_pivots(np.linalg.cholesky(RANK_ONE), RANK_ONE)


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan])
def test_the_reference_refuses_a_factor_or_variance_that_the_kernels_refuse(bad):
    """The reference raises where the kernels raise for a factor's diagonal or a variance that
    is not positive (NaN too), instead of a NaN with a warning or a "Singular matrix"."""
    x, factor = np.zeros((2, 2)), np.array([[bad, 0.0], [0.5, 1.0]])
    eye, ones = np.eye(2), np.ones(2)
    calls = [lambda: reference.mahalanobis_chol(x, None, factor, eye),
             lambda: reference.logpdf_chol(x, None, eye, factor),
             lambda: reference.pdf_chol(x, None, factor, eye),
             lambda: reference.entropy_chol(factor, eye),
             lambda: reference.kl_chol(x, eye, eye, x, factor, eye),
             lambda: reference.kl_chol(x, factor.T, eye, lower=False)]
    for call in calls:
        with pytest.raises(LinAlgError, match="^a Cholesky factor's diagonal must be positive$"):
            call()
    with pytest.raises(LinAlgError, match="^variances must be positive$"):
        reference.kl_diag(x, ones, np.array([1.0, bad]))
    with pytest.raises(ValueError):  # as the kernels do (LinAlgError is a ValueError; NaN is named as such)
        fm.kl_chol(x, eye, eye, x, factor, eye)


def test_conditioned_spd_refuses_what_it_cannot_make(rng):
    with pytest.raises(ValueError, match="^size must be at least 2"):
        conditioned_spd(rng, (), 1, 1e3)
    with pytest.raises(ValueError, match="^condition must be at least 1; got 0.5$"):
        conditioned_spd(rng, (), 3, 0.5)


@pytest.mark.parametrize("size", [2, 4, 7])
def test_condition_number_1e10_is_accepted_and_accurate(rng, size):
    a = conditioned_spd(rng, (), size, 1e10) / 1e10  # eigenvalues from 1e-10 to 1
    b = conditioned_spd(rng, (), size, 1e3) / 1e3
    x = rng.standard_normal((size, size))
    # Errors of any Cholesky-based method grow with the condition number: ε·κ = 2e-6 here
    # (a relative perturbation ε of a moves log|a| by up to n·κ·ε).
    bound = size * 1e10 * np.finfo(float).eps
    assert fm.logdet(a) == pytest.approx(np.linalg.slogdet(a)[1], abs=bound)
    assert fm.trace_solve(a, b) == pytest.approx(reference.trace_solve(a, b), rel=1e-5)
    assert fm.logpdf(x, None, a, b) == pytest.approx(reference.logpdf(x, None, a, b), rel=1e-5)
    assert fm.kl(x, a, b, None, b, a) == pytest.approx(reference.kl(x, a, b, None, b, a), rel=1e-5)
    assert np.isfinite(fm.MatrixNormal(x, a, b).entropy())


def test_float32_arithmetic_has_its_own_epsilon():
    # float32 small matrices are factorised in float32: a pivot at float32's rounding level is
    # singular there, and the same matrix in float64 is not.
    a = np.array([[1.0, 1.0], [1.0, 1.0 + 1e-9]])
    assert np.isfinite(fm.logdet(a))
    with pytest.raises(LinAlgError, match="a is not positive definite"):
        fm.logdet(a.astype(np.float32))


# The sign of a KL ---------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 6), p=st.integers(1, 6),
       scale=st.floats(1e-3, 1e3))
def test_kl_of_a_distribution_to_itself_is_zero_or_more(seed, n, p, scale):
    # Rounding can leave -1e-13 where the divergence is 0; a KL is never negative.
    args = pair(np.random.default_rng(seed), (20,), n, p)[:3]
    args = [args[0], scale * args[1], args[2]]
    assert (fm.kl(*args, *args) >= 0.0).all()
    chol = [args[0], np.linalg.cholesky(args[1]), np.linalg.cholesky(args[2])]
    assert (fm.kl_chol(*chol, *chol) >= 0.0).all()
    variances = [args[0], np.diagonal(args[1], axis1=-2, axis2=-1), np.diagonal(args[2], axis1=-2, axis2=-1)]
    assert (fm.kl_diag(*variances, *variances) >= 0.0).all()
    assert (fm.kl_value_and_grad(*args, *args)[0] >= 0.0).all()
    np.testing.assert_allclose(fm.kl(*args, *args), 0.0, atol=1e-10)


def test_kl_of_a_distribution_to_itself_is_zero_or_more_on_the_class_routes():
    """The KLs that the distribution classes compute in NumPy (Kronecker sums beyond the
    kernels, the eigenbasis form, a full-covariance Gaussian against a matrix normal, the
    divergence :func:`fastmvn.project` leaves) return 0 where rounding leaves them below it, as
    the kernels do. These inputs gave -5e-15 to -4e-16."""
    rng = np.random.default_rng(0)
    mean, g = rng.standard_normal((200, 3, 2)), rng.standard_normal((200, 3, 1))
    low_rank, colcov, rowcov = g @ np.swapaxes(g, -1, -2), np.eye(2) + 0.3, np.eye(3) + 0.2
    kron = fm.KroneckerSumNormal(mean, low_rank, colcov, 0.5)
    normal = fm.MatrixNormal(mean, rowcov, colcov)
    (rowvals, rowvecs), (colvals, colvecs) = np.linalg.eigh(rowcov), np.linalg.eigh(colcov)
    eig = (mean, rowvecs, rowvals, colvecs, colvals)
    single = np.float32
    wide_mean, wide_g = rng.standard_normal((20, 34, 3)), rng.standard_normal((20, 34, 2))
    wide = (wide_mean, wide_g @ np.swapaxes(wide_g, -1, -2), 0.3 * np.eye(3), 0.3, None)
    gaussian = fm.MatrixGaussian(mean[0], np.kron(colcov, rowcov))
    values = {
        "KroneckerSumNormal.kl": kron.kl(kron),
        "KroneckerSumNormal.kl of a matrix normal": fm.KroneckerSumNormal(mean, rowcov, np.eye(2), 1e-3).kl(
            fm.MatrixNormal(mean, rowcov + 1e-3 * np.eye(3), np.eye(2))),
        "kl_gaussian": fm.kl_gaussian(normal.to_matrix_gaussian(), normal),
        "kl_eig": fm.kl_eig(*eig, *eig, noise1=0.1, noise2=0.1),
        "kl_eig_value_and_grad": fm.kl_eig_value_and_grad(*eig, *eig, noise1=0.1, noise2=0.1)[0],
        "kl_kron_sum float32": fm.kl_kron_sum(*(a.astype(single) for a in (mean, low_rank, colcov)), single(0.5),
                                              None, *(a.astype(single) for a in (mean, low_rank, colcov)),
                                              single(0.5), None),
        "kl_kron_sum 34x3": fm.kl_kron_sum(*wide, *wide),
        "kl_kron_sum_value_and_grad": fm.kl_kron_sum_value_and_grad(*wide, *wide)[0],
        "project": fm.project(gaussian)[1],
    }
    for name, value in values.items():
        assert (np.asarray(value) >= 0.0).all(), name
        np.testing.assert_allclose(value, 0.0, atol=1e-5 if "float32" in name else 1e-10, err_msg=name)
