"""One dtype rule for every public function and method: float32 in (every given array float32)
gives float32 out; float64, float16, integers or a mix give float64, computed in float64 from
the inputs as given."""

import numpy as np
import pytest

import fastmvn as fm
from fastmvn._arguments import result_dtype

torch = pytest.importorskip("torch")
da = pytest.importorskip("dask.array")
fmt = pytest.importorskip("fastmvn.torch")
fmd = pytest.importorskip("fastmvn.dask")

N, P, BATCH = 2, 3, (2,)


def integer_inputs():
    """Small integers, exact in every dtype, shaped for each kind of argument."""
    rng = np.random.default_rng(7)

    def spd(size, batch=BATCH):
        a = rng.integers(-1, 2, batch + (size, size))
        return a @ np.swapaxes(a, -1, -2) + size * np.eye(size, dtype=np.int64)

    def chol(size):
        return np.tril(rng.integers(-2, 3, BATCH + (size, size)), -1) + np.diag(rng.integers(1, 4, size))

    def mean(*shape):
        return rng.integers(-3, 4, BATCH + (shape or (N, P)))

    return spd, chol, mean, rng


def cov_tensor(cov):
    """``C[..., i, j, k, l] = cov[..., i + N·j, k + N·l]``."""
    return np.swapaxes(np.swapaxes(cov.reshape(cov.shape[:-2] + (P, N, P, N)), -4, -3), -2, -1)


def kron_layout(cov):
    tensor = np.swapaxes(cov_tensor(cov), -3, -2)
    return tensor.reshape(tensor.shape[:-4] + (N * N, P * P))


def cases():
    """``name: (function of the input arrays, input arrays)`` for every public function and method."""
    spd, chol, mean, rng = integer_inputs()
    mn = lambda: [mean(), spd(N), spd(P)]  # noqa: E731
    mg = lambda: [mean(), spd(N * P)]  # noqa: E731
    ks = lambda: [mean(), spd(N), spd(P), spd(N), spd(P)]  # noqa: E731
    # eigendecompositions exact in every dtype: signed permutations and small integers
    eig = lambda: [mean(), np.array([[0, 1], [-1, 0]]), rng.integers(0, 4, BATCH + (N,)),  # noqa: E731
                   np.array([[0, 0, -1], [1, 0, 0], [0, 1, 0]]), rng.integers(1, 4, BATCH + (P,))]
    MN, MG, KS = fm.MatrixNormal, fm.MatrixGaussian, fm.KroneckerSumNormal
    A, B, C = np.array([[1, 1]]), np.array([[1, 0], [0, 1], [1, 1]]), np.array([[2, -1]])
    mask = np.array([[True, False, True], [False, False, True]])
    table = {
        "kl": (fm.kl, mn() + mn()),
        "kl_chol": (fm.kl_chol, [mean(), chol(N), chol(P), mean(), chol(N), chol(P)]),
        "kl_diag": (fm.kl_diag, [mean(), mean(N)** 2 + 1, mean(P)** 2 + 1, mean(),
                                 mean(N)** 2 + 2, mean(P)** 2 + 2]),
        "kl_value_and_grad": (fm.kl_value_and_grad, mn() + mn()),
        "kl_chol_value_and_grad": (fm.kl_chol_value_and_grad, [mean(), chol(N), chol(P), mean(), chol(N), chol(P)]),
        "kl_diag_value_and_grad": (fm.kl_diag_value_and_grad, [mean(), mean(N)** 2 + 1,
                                                               mean(P)** 2 + 1]),
        "logdet": (fm.logdet, [spd(N)]),
        "trace_solve": (fm.trace_solve, [spd(N), mean(N, N)]),
        "mahalanobis": (fm.mahalanobis, [mean()] + mn()),
        "mahalanobis_chol": (fm.mahalanobis_chol, [mean(), mean(), chol(N), chol(P)]),
        "logpdf": (fm.logpdf, [mean()] + mn()),
        "logpdf_chol": (fm.logpdf_chol, [mean(), mean(), chol(N), chol(P)]),
        "logpdf_value_and_grad": (fm.logpdf_value_and_grad, [mean()] + mn()),
        "logpdf_chol_value_and_grad": (fm.logpdf_chol_value_and_grad, [mean(), mean(), chol(N), chol(P)]),
        "logpdf_diag_value_and_grad": (fm.logpdf_diag_value_and_grad, [mean(), mean(), mean(N)** 2 + 1,
                                                                       mean(P)** 2 + 1]),
        "pdf": (fm.pdf, [mean()] + mn()),
        "pdf_chol": (fm.pdf_chol, [mean(), mean(), chol(N), chol(P)]),
        "entropy": (fm.entropy, [spd(N), spd(P)]),
        "entropy_chol": (fm.entropy_chol, [chol(N), chol(P)]),
        "rvs": (lambda *a: fm.rvs(*a, size=3, random_state=0), mn()),
        "logpdf_diag": (fm.logpdf_diag, [mean(), mean(), mean(N)** 2 + 1, mean(P)** 2 + 1]),
        "logpdf_prec": (fm.logpdf_prec, [mean()] + mn()),
        "entropy_diag": (fm.entropy_diag, [mean(N)** 2 + 1, mean(P)** 2 + 1]),
        "rvs_diag": (lambda *a: fm.rvs_diag(*a, size=3, random_state=0), [mean(), mean(N)** 2 + 1, mean(P)** 2 + 1]),
        "fit": (fm.fit, [rng.integers(-3, 4, (20, N, P))]),
        "MatrixNormal": (MN, mn()),
        "MatrixNormal.from_chol": (MN.from_chol, [mean(), chol(N), chol(P)]),
        "MatrixNormal.from_eig": (MN.from_eig, [mean(), np.array([[0, 1], [-1, 0]]), rng.integers(1, 4, BATCH + (N,)),
                                                np.eye(P), rng.integers(1, 4, BATCH + (P,))]),
        "MatrixNormal.from_precision": (MN.from_precision, mn()),
        "MatrixNormal.var": (lambda *a: MN(*a).var(), mn()),
        "MatrixNormal.std": (lambda *a: MN(*a).std(), mn()),
        "MatrixNormal.mode": (lambda *a: MN(*a).mode(), mn()),
        "MatrixNormal.logpdf": (lambda m, u, v, x: MN(m, u, v).logpdf(x), mn() + [mean()]),
        "MatrixNormal.pdf": (lambda m, u, v, x: MN(m, u, v).pdf(x), mn() + [mean()]),
        "MatrixNormal.mahalanobis": (lambda m, u, v, x: MN(m, u, v).mahalanobis(x), mn() + [mean()]),
        "MatrixNormal.entropy": (lambda *a: MN(*a).entropy(), mn()),
        "MatrixNormal.rvs": (lambda *a: MN(*a).rvs(size=3, random_state=0), mn()),
        "MatrixNormal.kl": (lambda *a: MN(*a[:3]).kl(MN(*a[3:])), mn() + mn()),
        "MatrixNormal.to_matrix_gaussian": (lambda *a: MN(*a).to_matrix_gaussian(), mn()),
        "MatrixNormal.marginal": (lambda *a: MN(*a).marginal(rows=[1], cols=[2, 0]), mn()),
        "MatrixNormal.condition": (lambda m, u, v, x: MN(m, u, v).condition(cols=[1], values=x),
                                   mn() + [mean(N, 1)]),
        "MatrixNormal.affine": (lambda m, u, v, a, b, c: MN(m, u, v).affine(a, b, c), mn() + [A, B, C]),
        "MatrixNormal.expect_xtax": (lambda m, u, v, a: MN(m, u, v).expect_xtax(a), mn() + [mean(N, N)]),
        "MatrixNormal.expect_xaxt": (lambda m, u, v, a: MN(m, u, v).expect_xaxt(a), mn() + [mean(P, P)]),
        "MatrixGaussian": (MG, mg()),
        "MatrixGaussian.from_tensor": (lambda m, c: MG.from_tensor(m, cov_tensor(c)), mg()),
        "MatrixGaussian.from_kron_layout": (lambda m, c: MG.from_kron_layout(m, kron_layout(c)), mg()),
        "MatrixGaussian.from_normal": (lambda *a: MG.from_normal(MN(*a)), mn()),
        "MatrixGaussian.logpdf": (lambda m, c, x: MG(m, c).logpdf(x), mg() + [mean()]),
        "MatrixGaussian.pdf": (lambda m, c, x: MG(m, c).pdf(x), mg() + [mean()]),
        "MatrixGaussian.mahalanobis": (lambda m, c, x: MG(m, c).mahalanobis(x), mg() + [mean()]),
        "MatrixGaussian.entropy": (lambda *a: MG(*a).entropy(), mg()),
        "MatrixGaussian.rvs": (lambda *a: MG(*a).rvs(size=3, random_state=0), mg()),
        "MatrixGaussian.kl": (lambda *a: MG(*a[:2]).kl(MN(*a[2:])), mg() + mn()),
        "MatrixGaussian.marginal": (lambda *a: MG(*a).marginal(entries=mask), mg()),
        "MatrixGaussian.condition": (lambda m, c, x: MG(m, c).condition(mask, x), mg() + [mean()]),
        "MatrixGaussian.affine": (lambda m, c, a, b, d: MG(m, c).affine(a, b, d), mg() + [A, B, C]),
        "MatrixGaussian.expect_xtax": (lambda m, c, a: MG(m, c).expect_xtax(a), mg() + [mean(N, N)]),
        "MatrixGaussian.expect_xaxt": (lambda m, c, a: MG(m, c).expect_xaxt(a), mg() + [mean(P, P)]),
        "KroneckerSumNormal": (KS, ks()),
        "KroneckerSumNormal.from_eig": (lambda *a: KS.from_eig(*a[:5], noise=a[5]), eig() + [rng.integers(1, 4, BATCH)]),
        "KroneckerSumNormal.from_precision": (KS.from_precision, [mean(), spd(N), spd(P), rng.integers(1, 4, BATCH)]),
        "KroneckerSumNormal.logpdf": (lambda *a: KS(*a[:5]).logpdf(a[5]), ks() + [mean()]),
        "KroneckerSumNormal.pdf": (lambda *a: KS(*a[:5]).pdf(a[5]), ks() + [mean()]),
        "KroneckerSumNormal.mahalanobis": (lambda *a: KS(*a[:5]).mahalanobis(a[5]), ks() + [mean()]),
        "KroneckerSumNormal.logdet": (lambda *a: KS(*a).logdet(), ks()),
        "KroneckerSumNormal.entropy": (lambda *a: KS(*a).entropy(), ks()),
        "KroneckerSumNormal.rvs": (lambda *a: KS(*a).rvs(size=3, random_state=0), ks()),
        "KroneckerSumNormal.kl": (lambda *a: KS(*a[:5]).kl(MN(*a[5:])), ks() + mn()),
        "KroneckerSumNormal.marginal": (lambda *a: KS(*a).marginal(rows=[1], cols=[2, 0]), ks()),
        "KroneckerSumNormal.expect_xtax": (lambda *a: KS(*a[:5]).expect_xtax(a[5]), ks() + [mean(N, N)]),
        "KroneckerSumNormal.expect_xaxt": (lambda *a: KS(*a[:5]).expect_xaxt(a[5]), ks() + [mean(P, P)]),
        "logpdf_kron_sum": (fm.logpdf_kron_sum, [mean()] + ks()),
        "kl_kron_sum": (fm.kl_kron_sum, ks() + ks()),
        "logpdf_kron_sum_value_and_grad": (fm.logpdf_kron_sum_value_and_grad, [mean()] + ks()),
        "kl_kron_sum_value_and_grad": (fm.kl_kron_sum_value_and_grad, ks() + ks()),
        "logpdf_kron_prec_value_and_grad": (fm.logpdf_kron_prec_value_and_grad,
                                            [mean(), mean(), spd(N), spd(P), rng.integers(1, 4, BATCH)]),
        "kl_eig": (lambda *a: fm.kl_eig(*a[:10], damping1=a[10]),  # the second a matrix normal: positive λ
                   eig() + [mean(), np.array([[0, 1], [-1, 0]]), rng.integers(1, 4, BATCH + (N,)), np.eye(P),
                            rng.integers(1, 4, BATCH + (P,)), rng.integers(1, 4, BATCH)]),
        "kl_eig_value_and_grad": (lambda *a: fm.kl_eig_value_and_grad(*a[:10], damping1=a[10]),
                                  eig() + [mean(), np.array([[0, 1], [-1, 0]]), rng.integers(1, 4, BATCH + (N,)),
                                           np.eye(P), rng.integers(1, 4, BATCH + (P,)), rng.integers(1, 4, BATCH)]),
        "kl_full": (fm.kl_full, mg() + mg()),
        "kl_gaussian": (lambda *a: fm.kl_gaussian(MN(*a[:3]), MG(*a[3:])), mn() + mg()),
        "expect_quadratic": (fm.expect_quadratic, [mean(N, N), mean(), mean(N, 2), mean(N, P, N, 2)]),
        "nearest_kronecker": (lambda c: fm.nearest_kronecker(c, N, P), [spd(N * P)]),
        "project": (lambda *a: fm.project(MG(*a)), mg()),
        "torch.kl": (lambda *a: fmt.kl(*map(torch.from_numpy, a)), mn() + mn()),
        "torch.kl_chol": (lambda *a: fmt.kl_chol(*map(torch.from_numpy, a)),
                          [mean(), chol(N), chol(P), mean(), chol(N), chol(P)]),
        "torch.kl_diag": (lambda *a: fmt.kl_diag(*map(torch.from_numpy, a)),
                          [mean(), mean(N)** 2 + 1, mean(P)** 2 + 1]),
        "torch.logpdf": (lambda *a: fmt.logpdf(*map(torch.from_numpy, a)), [mean()] + mn()),
        "torch.logpdf_chol": (lambda *a: fmt.logpdf_chol(*map(torch.from_numpy, a)),
                              [mean(), mean(), chol(N), chol(P)]),
        "torch.logpdf_diag": (lambda *a: fmt.logpdf_diag(*map(torch.from_numpy, a)),
                              [mean(), mean(), mean(N)** 2 + 1, mean(P)** 2 + 1]),
        "torch.logpdf_kron_sum": (lambda *a: fmt.logpdf_kron_sum(*map(torch.from_numpy, a)), [mean()] + ks()),
        "torch.kl_kron_sum": (lambda *a: fmt.kl_kron_sum(*map(torch.from_numpy, a)), ks() + ks()),
        "torch.logpdf_kron_prec": (lambda *a: fmt.logpdf_kron_prec(*map(torch.from_numpy, a)),
                                   [mean(), mean(), spd(N), spd(P), rng.integers(1, 4, BATCH)]),
        "dask.kl": (fmd.kl, mn() + mn()),
        "dask.kl_chol": (fmd.kl_chol, [mean(), chol(N), chol(P)]),
        "dask.kl_diag": (fmd.kl_diag, [mean(), mean(N)** 2 + 1, mean(P)** 2 + 1]),
        "dask.logdet": (fmd.logdet, [spd(N)]),
        "dask.trace_solve": (fmd.trace_solve, [spd(N), mean(N, N)]),
        "dask.mahalanobis": (fmd.mahalanobis, [mean()] + mn()),
        "dask.mahalanobis_chol": (fmd.mahalanobis_chol, [mean(), mean(), chol(N), chol(P)]),
        "dask.logpdf": (fmd.logpdf, [mean()] + mn()),
        "dask.logpdf_chol": (fmd.logpdf_chol, [mean(), mean(), chol(N), chol(P)]),
        "dask.logpdf_diag": (fmd.logpdf_diag, [mean(), mean(), mean(N)** 2 + 1, mean(P)** 2 + 1]),
        "dask.pdf": (fmd.pdf, [mean()] + mn()),
        "dask.kl_value_and_grad": (fmd.kl_value_and_grad, mn() + mn()),
        "dask.kl_chol_value_and_grad": (fmd.kl_chol_value_and_grad, [mean(), chol(N), chol(P)]),
        "dask.kl_diag_value_and_grad": (fmd.kl_diag_value_and_grad, [mean(), mean(N)** 2 + 1, mean(P)** 2 + 1]),
        "dask.pdf_chol": (fmd.pdf_chol, [mean(), mean(), chol(N), chol(P)]),
        "dask.logpdf_value_and_grad": (fmd.logpdf_value_and_grad, [mean()] + mn()),
        "dask.logpdf_chol_value_and_grad": (fmd.logpdf_chol_value_and_grad, [mean(), mean(), chol(N), chol(P)]),
        "dask.logpdf_diag_value_and_grad": (fmd.logpdf_diag_value_and_grad, [mean(), mean(), mean(N)** 2 + 1,
                                                                             mean(P)** 2 + 1]),
        "dask.entropy": (fmd.entropy, [spd(N), spd(P)]),
        "dask.entropy_chol": (fmd.entropy_chol, [chol(N), chol(P)]),
        "dask.logpdf_kron_sum": (fmd.logpdf_kron_sum, [mean()] + ks()),
        "dask.logpdf_kron_sum_value_and_grad": (fmd.logpdf_kron_sum_value_and_grad, [mean()] + ks()),
        "dask.kl_kron_sum": (fmd.kl_kron_sum, ks() + ks()),
        "dask.kl_kron_sum_value_and_grad": (fmd.kl_kron_sum_value_and_grad, ks() + ks()),
        "dask.logpdf_kron_prec": (fmd.logpdf_kron_prec, [mean(), mean(), spd(N), spd(P), rng.integers(1, 4, BATCH)]),
        "dask.logpdf_kron_prec_value_and_grad": (fmd.logpdf_kron_prec_value_and_grad,
                                                 [mean(), mean(), spd(N), spd(P), rng.integers(1, 4, BATCH)]),
        "dask.kl_eig": (lambda *a: fmd.kl_eig(*a[:10], damping1=a[10]),
                        eig() + [mean(), np.array([[0, 1], [-1, 0]]), rng.integers(1, 4, BATCH + (N,)), np.eye(P),
                                 rng.integers(1, 4, BATCH + (P,)), rng.integers(1, 4, BATCH)]),
        "dask.kl_eig_value_and_grad": (lambda *a: fmd.kl_eig_value_and_grad(*a[:10], damping1=a[10]),
                                       eig() + [mean(), np.array([[0, 1], [-1, 0]]), rng.integers(1, 4, BATCH + (N,)),
                                                np.eye(P), rng.integers(1, 4, BATCH + (P,)),
                                                rng.integers(1, 4, BATCH)]),
    }
    return table


CASES = cases()

# The dtype of each input, by mode: a function of its position and the number of inputs.
MODES = {
    "float32": lambda k, count: np.float32,
    "float64": lambda k, count: np.float64,
    "float16": lambda k, count: np.float16,
    "int": lambda k, count: np.int64,
    "alternating float32 and float64": lambda k, count: (np.float32, np.float64)[k % 2],
    "float32 and a last float64": lambda k, count: np.float64 if k == count - 1 else np.float32,
}


def public_names():
    """Every public function, class and public method that computes something."""
    names = {name for name in fm.__all__ if callable(getattr(fm, name))} - {"set_buffer_pool", "MatrixNormalFit"}
    for cls in (fm.MatrixNormal, fm.MatrixGaussian, fm.KroneckerSumNormal):
        names |= {f"{cls.__name__}.{name}" for name in vars(cls) if not name.startswith("_")
                  and callable(getattr(cls, name))}
    names |= {f"torch.{name}" for name in fmt.__all__}
    names |= {f"dask.{name}" for name in fmd.__all__ if name != "RechunkWarning"}
    return names


def test_every_public_function_and_method_is_walked():
    assert public_names() <= set(CASES), sorted(public_names() - set(CASES))


def arrays(result, dtypes):
    """The arrays of a result, after checking the dtype that objects report (``dtypes``
    collects the reported dtypes)."""
    if result is None:
        return []
    if isinstance(result, (tuple, list)):
        return [a for part in result for a in arrays(part, dtypes)]
    if isinstance(result, fm.MatrixNormal):
        dtypes.append(result.dtype)
        return [result.mean, result.rowcov, result.colcov, result.rowchol, result.colchol]
    if isinstance(result, fm.MatrixGaussian):
        dtypes.append(result.dtype)
        return [result.mean, result.cov, result.chol]
    if isinstance(result, fm.KroneckerSumNormal):
        dtypes.append(result.dtype)
        return [result.mean, result.cov]
    if isinstance(result, torch.Tensor):
        return [result.detach().numpy()]
    if isinstance(result, da.Array):
        dtypes.append(result.dtype)
        return [result.compute()]
    return [np.asarray(result)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", CASES)
def test_one_dtype_rule(name, mode):
    function, inputs = CASES[name]
    dtypes = [MODES[mode](k, len(inputs)) for k in range(len(inputs))]
    expected = np.float32 if all(d == np.float32 for d in dtypes) else np.float64
    reported = []
    result = arrays(function(*(a.astype(d) for a, d in zip(inputs, dtypes))), reported)
    exact = arrays(function(*(a.astype(np.float64) for a in inputs)), [])
    got_dtypes = [a.dtype for a in result] + reported
    assert result and all(dtype == expected for dtype in got_dtypes), got_dtypes
    for got, want in zip(result, exact, strict=True):
        if expected == np.float32:
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
        else:  # the inputs are exact in every dtype: the float64 result is that of the float64 call
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13 * np.abs(want).max())


@pytest.mark.parametrize("bad", [np.complex128, np.complex64])
def test_complex_is_a_type_error_naming_the_argument(bad):
    with pytest.raises(TypeError, match="rowcov is complex"):
        fm.entropy(np.eye(2).astype(bad), np.eye(3))
    with pytest.raises(TypeError, match="x is complex"):
        fm.MatrixNormal(np.zeros((2, 3)), np.eye(2), np.eye(3)).logpdf(np.zeros((2, 3), bad))
    with pytest.raises(TypeError, match="an input has dtype complex"):
        result_dtype(np.zeros(2, bad))
