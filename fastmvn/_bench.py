"""Random batches and timings shared by ``fastmvn bench``, the asv suite and pytest-benchmark."""

import time

import numpy as np

from . import _api, reference


def random_spd(rng, shape, size, jitter=0.1):
    """Random symmetric positive definite matrices of shape ``shape + (size, size)``."""
    a = rng.standard_normal(tuple(shape) + (size, size + 2))
    return a @ np.swapaxes(a, -1, -2) / (size + 2) + jitter * np.eye(size)


def random_pair(batch, n, p, dtype=np.float64, seed=0):
    """Two random batches of matrix normals: ``(mean1, rowcov1, colcov1, mean2, rowcov2, colcov2)``."""
    rng = np.random.default_rng(seed)
    shape = (batch,)
    arrays = (rng.standard_normal(shape + (n, p)), random_spd(rng, shape, n), random_spd(rng, shape, p),
              rng.standard_normal(shape + (n, p)), random_spd(rng, shape, n), random_spd(rng, shape, p))
    return tuple(a.astype(dtype, copy=False) for a in arrays)


def median_time(func, repeat=5):
    """Median wall time of ``func()`` over ``repeat`` runs, after one warm-up run."""
    func()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def read_pass(arrays):
    """One plain read of every input (a sum over each): the memory-bandwidth floor."""
    return [a.sum() for a in arrays]


def torch_kl_chol_tensors(mean1, rowchol1, colchol1, mean2, rowchol2, colchol2):
    """The KL from lower Cholesky factors by the triangular-solve algorithm in PyTorch, on the
    tensors' device, differentiable by autograd.

    The solves read only the lower triangles, but autograd's gradient is not masked above
    the diagonal: pass ``torch.tril(factor)`` for the gradient with respect to the lower
    triangle alone (the one :func:`fastmvn.kl_chol_value_and_grad` returns).
    """
    import torch

    n, p = mean1.shape[-2:]
    solve = torch.linalg.solve_triangular
    trace_u = solve(rowchol2, rowchol1, upper=False).square().sum((-2, -1))
    trace_v = solve(colchol2, colchol1, upper=False).square().sum((-2, -1))
    y = solve(rowchol2, mean2 - mean1, upper=False)
    quad = solve(colchol2, y.transpose(-2, -1), upper=False).square().sum((-2, -1))

    def logdet(chol):
        return 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)

    return 0.5 * (trace_u * trace_v + quad - n * p + p * (logdet(rowchol2) - logdet(rowchol1))
                  + n * (logdet(colchol2) - logdet(colchol1)))


def torch_kl_tensors(mean1, rowcov1, colcov1, mean2, rowcov2, colcov2):
    """The KL by the same Cholesky and triangular-solve algorithm in PyTorch, on the tensors' device."""
    import torch

    with torch.no_grad():
        factors = [torch.linalg.cholesky(a) for a in (rowcov1, colcov1, rowcov2, colcov2)]
        return torch_kl_chol_tensors(mean1, factors[0], factors[1], mean2, factors[2], factors[3])


def torch_kl(args):
    """The KL of NumPy arrays ``args`` by :func:`torch_kl_tensors` on the CPU, as a function
    to time, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    tensors = [torch.from_numpy(a) for a in args]
    return lambda: torch_kl_tensors(*tensors)


def compare(n, p, batch, dtype=np.float64, repeat=5, reference_batch=100_000):
    """Per-item seconds of fastmvn.kl, the NumPy reference, PyTorch (or None) and a read pass.

    The reference and PyTorch run on at most ``reference_batch`` items (they are slow);
    every figure is per item, so the ratios compare like with like.
    """
    args = random_pair(batch, n, p, dtype)
    small = tuple(a[:reference_batch] for a in args)
    out = np.empty(batch, dtype)
    figures = {
        "fastmvn": median_time(lambda: _api.kl(*args, out=out), repeat) / batch,
        "read": median_time(lambda: read_pass(args), repeat) / batch,
        "reference": median_time(lambda: reference.kl(*small), max(1, repeat // 2)) / len(small[0]),
    }
    run = torch_kl(small)
    figures["torch"] = None if run is None else median_time(run, max(1, repeat // 2)) / len(small[0])
    return figures


def compare_logpdf(n=4, p=4, batch=1_000_000, dtype=np.float64, repeat=5, reference_batch=100_000, scipy_batch=2_000):
    """Per-item seconds of the matrix-normal log-density: ``fastmvn.logpdf``,
    ``MatrixNormal.logpdf`` (stored factors), the NumPy reference and a Python loop over
    ``scipy.stats.matrix_normal.logpdf``.

    The reference runs on at most ``reference_batch`` items and the SciPy loop on
    ``scipy_batch`` items (medians of ``repeat // 2`` runs); every figure is per item.
    """
    from scipy.stats import matrix_normal

    from ._distribution import MatrixNormal

    rng = np.random.default_rng(0)
    x, mean = rng.standard_normal((2, batch, n, p)).astype(dtype, copy=False)
    rowcov = random_spd(rng, (batch,), n).astype(dtype, copy=False)
    colcov = random_spd(rng, (batch,), p).astype(dtype, copy=False)
    distribution = MatrixNormal(mean, rowcov, colcov)
    small = tuple(a[:reference_batch] for a in (x, mean, rowcov, colcov))
    few = tuple(a[:scipy_batch] for a in (x, mean, rowcov, colcov))
    out = np.empty(batch, dtype)

    def scipy_loop():
        return [matrix_normal.logpdf(*item) for item in zip(*few)]

    slow = max(1, repeat // 2)
    return {
        "fastmvn": median_time(lambda: _api.logpdf(x, mean, rowcov, colcov, out=out), repeat) / batch,
        "distribution": median_time(lambda: distribution.logpdf(x, out=out), repeat) / batch,
        "reference": median_time(lambda: reference.logpdf(*small), slow) / len(small[0]),
        "scipy": median_time(scipy_loop, slow) / len(few[0]),
    }


def compare_gradients(n=4, p=4, batch=1_000_000, dtype=np.float64, repeat=5, torch_batch=None):
    """Per-item seconds of the KL's value alone and of its value and gradient together.

    ``kl_chol`` and ``kl_chol_value_and_grad`` from Cholesky factors, ``kl`` and
    ``kl_value_and_grad`` from covariances, all on ``batch`` items, and PyTorch autograd
    (forward and backward of ``sum(kl)``, CPU) through :func:`torch_kl_chol_tensors` from
    factors and through ``torch.linalg.cholesky`` and it from covariances, on the first
    ``torch_batch`` items (all by default); None without torch. Every figure is the median
    of ``repeat`` runs, per item.
    """
    from . import _api

    args = random_pair(batch, n, p, dtype)
    chol = tuple(a if i % 3 == 0 else np.linalg.cholesky(a) for i, a in enumerate(args))  # means stay
    out = np.empty(batch, dtype)
    figures = {
        "kl_chol": median_time(lambda: _api.kl_chol(*chol, out=out), repeat) / batch,
        "kl_chol_value_and_grad": median_time(lambda: _api.kl_chol_value_and_grad(*chol), repeat) / batch,
        "kl": median_time(lambda: _api.kl(*args, out=out), repeat) / batch,
        "kl_value_and_grad": median_time(lambda: _api.kl_value_and_grad(*args), repeat) / batch,
        "torch_chol": None,
        "torch_cov": None,
    }
    try:
        import torch
    except ImportError:
        return figures

    def autograd(tensors, cov):
        def run():
            for t in tensors:
                t.grad = None
            inputs = tensors
            if cov:
                inputs = [t if i % 3 == 0 else torch.linalg.cholesky(t) for i, t in enumerate(tensors)]
            torch_kl_chol_tensors(*inputs).sum().backward()

        return run

    for name, arrays, cov in (("torch_chol", chol, False), ("torch_cov", args, True)):
        tensors = [torch.from_numpy(a[:torch_batch].copy()).requires_grad_() for a in arrays]
        figures[name] = median_time(autograd(tensors, cov), repeat) / len(tensors[0])
    return figures
