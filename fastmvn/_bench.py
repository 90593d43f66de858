"""Random batches and timings shared by ``fastmvn bench``, the asv suite and pytest-benchmark."""

import functools
import math
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from . import _api, _gradients, _jit, reference, testing
from ._table import CHOL, FUNCTIONS, VAR
from .testing import random_spd


def random_pair(batch, n, p, dtype=np.float64, seed=0):
    """:func:`fastmvn.testing.random_pair` of ``batch`` items from the generator of ``seed``, as
    a tuple of ``dtype`` arrays: ``(mean1, rowcov1, colcov1, mean2, rowcov2, colcov2)``."""
    arrays = testing.random_pair(np.random.default_rng(seed), (batch,), n, p)
    return tuple(a.astype(dtype, copy=False) for a in arrays)


#: The cases :func:`random_inputs` builds: the functions of the table and the KL to ``MN(0, I, I)``.
CASES = ("kl", "kl_standard") + tuple(name for name in FUNCTIONS if name != "kl")

# Which array of :func:`random_pair` each argument of the table is drawn from, by name (a row or
# column argument by its first three letters and its last, "1", "2" or none).
_DRAWN = {"x": 3, "mean": 0, "mean1": 0, "mean2": 3, "a": 1, "b": 4, "row": 1, "col": 2, "row1": 1, "col1": 2,
          "row2": 4, "col2": 5}


def random_inputs(case, batch, n, p, dtype=np.float64, seed=0):
    """Random arguments for one batched call of a public function, drawn from :func:`random_pair`.

    Each argument of the function's entry in the table (:data:`fastmvn._table.FUNCTIONS`) is
    drawn by its name and kind: points from the second mean, means, covariances, their
    Cholesky factors or their diagonals (variances).

    Parameters
    ----------
    case : str
        One of :data:`CASES`: a public function's name, or ``"kl_standard"`` for the first
        three arguments of ``kl`` (the KL to ``MN(0, I, I)``).
    batch, n, p : int
        Items, rows and columns; ``logdet`` and ``trace_solve`` take ``n×n`` matrices.
    dtype : numpy dtype, optional
        Dtype of every argument.
    seed : int, optional
        Seed of the random generator.

    Returns
    -------
    args : tuple of ndarray
        The positional arguments, each with ``batch`` as its leading axis.
    """
    if case not in CASES:
        raise ValueError(f"case must be one of {', '.join(CASES)}; got {case!r}")
    pair = random_pair(batch, n, p, dtype, seed)
    params = FUNCTIONS["kl" if case == "kl_standard" else case].params
    args = []
    for param in params[:3] if case == "kl_standard" else params:
        name = param.name
        array = pair[_DRAWN[name if name in _DRAWN else name[:3] + name[len(name.rstrip("12")):]]]
        if param.kind == CHOL:
            array = np.linalg.cholesky(array)
        elif param.kind == VAR:
            array = _diagonal(array)
        args.append(array)
    return tuple(args)


def _diagonal(a):
    """The diagonals of a stack of square matrices, as a new contiguous array."""
    return np.diagonal(a, axis1=-2, axis2=-1).copy()


def median_times(runs, repeat=5):
    """Median wall time of each callable of ``runs`` (a dict) over ``repeat`` rounds, after one
    warm-up round. Each round runs every callable once, in turn, so that load from elsewhere
    on a shared machine, which drifts over seconds, slows them alike and their ratios hold."""
    times = {name: [] for name in runs}
    for round_ in range(repeat + 1):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            if round_:
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in times.items()}


def median_time(func, repeat=5):
    """Median wall time of ``func()`` over ``repeat`` runs, after one warm-up run."""
    return median_times({"func": func}, repeat)["func"]


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
    """The KL by the same Cholesky and triangular-solve algorithm in PyTorch, on the tensors' device,
    differentiable by autograd (through ``torch.linalg.cholesky``, whose gradient with respect to a
    covariance is the symmetric one of :func:`fastmvn.kl_value_and_grad`); of tensors that do not
    require a gradient it builds no graph."""
    import torch

    factors = [torch.linalg.cholesky(a) for a in (rowcov1, colcov1, rowcov2, colcov2)]
    return torch_kl_chol_tensors(mean1, factors[0], factors[1], mean2, factors[2], factors[3])


def jax_kl(mean1, rowcov1, colcov1, mean2, rowcov2, colcov2):
    """The KL by the same Cholesky and triangular-solve algorithm in ``jax.numpy``, which
    :func:`jax.jit` compiles and :func:`jax.grad` differentiates (through ``jnp.linalg.cholesky``,
    whose gradient with respect to a covariance is the symmetric one of fastmvn)."""
    import jax.numpy as jnp
    from jax.scipy.linalg import solve_triangular

    n, p = mean1.shape[-2:]
    rowchol1, colchol1, rowchol2, colchol2 = (jnp.linalg.cholesky(a) for a in (rowcov1, colcov1, rowcov2, colcov2))
    trace_u = jnp.square(solve_triangular(rowchol2, rowchol1, lower=True)).sum((-2, -1))
    trace_v = jnp.square(solve_triangular(colchol2, colchol1, lower=True)).sum((-2, -1))
    y = solve_triangular(rowchol2, mean2 - mean1, lower=True)
    quad = jnp.square(solve_triangular(colchol2, jnp.swapaxes(y, -2, -1), lower=True)).sum((-2, -1))

    def logdet(chol):
        return 2 * jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)).sum(-1)

    return 0.5 * (trace_u * trace_v + quad - n * p + p * (logdet(rowchol2) - logdet(rowchol1))
                  + n * (logdet(colchol2) - logdet(colchol1)))


def torch_kl(args):
    """The KL of NumPy arrays ``args`` by :func:`torch_kl_tensors` on the CPU, as a function
    to time, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    tensors = [torch.from_numpy(a) for a in args]
    return lambda: torch_kl_tensors(*tensors)


def torch_backward(arrays, kl=torch_kl_tensors):
    """Forward and backward of ``sum(kl(*tensors))`` by PyTorch autograd on CPU tensors that share
    the memory of the NumPy ``arrays``, every gradient taken anew each call, as a function to
    time, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    tensors = [torch.from_numpy(a).requires_grad_() for a in arrays]

    def run():
        for t in tensors:
            t.grad = None
        kl(*tensors).sum().backward()

    return run


def scipy_logpdf(args):
    """A Python loop over ``scipy.stats.matrix_normal.logpdf``, one call per item of the NumPy
    arrays ``args`` = ``(x, mean, rowcov, colcov)``, as a function to time."""
    from scipy.stats import matrix_normal

    return lambda: [matrix_normal.logpdf(*item) for item in zip(*args)]


def kron_sum_inputs(batch, n, p, dtype=np.float64, seed=0):
    """Random arguments of :func:`fastmvn.kl_kron_sum` for ``batch`` pairs of ``n×p``
    Kronecker-sum normals with full noise, from the generator of ``seed``: ``(mean1, rowcov1,
    colcov1, noise_rowcov1, noise_colcov1, mean2, …, noise_colcov2)``, each ``(batch, …)``."""
    rng = np.random.default_rng(seed)
    arrays = []
    for _ in range(2):
        arrays += [rng.standard_normal((batch, n, p)), random_spd(rng, (batch,), n), random_spd(rng, (batch,), p),
                   random_spd(rng, (batch,), n), random_spd(rng, (batch,), p)]
    return tuple(a.astype(dtype, copy=False) for a in arrays)


def eigh_logpdf_kron_sum(x, mean, rowcov, colcov, variance):
    """The log-density of ``vec X ~ N(vec M, V⊗U + σ²I)`` by hand in NumPy, the route a user
    would write: ``eigh`` of ``U`` and ``V``, the residual in their eigenbasis and one sum over
    the ``np`` eigenvalues ``λ_u,i λ_v,j + σ²``."""
    lu, qu = np.linalg.eigh(rowcov)
    lv, qv = np.linalg.eigh(colcov)
    scales = np.outer(lu, lv) + variance
    w = qu.T @ (x - mean) @ qv
    n, p = x.shape
    return -0.5 * (n * p * np.log(2 * np.pi) + np.log(scales).sum() + (w * w / scales).sum())


def eigh_kl_kron_sum(lib, mean1, rowcov1, colcov1, noise_rowcov1, noise_colcov1, mean2, rowcov2, colcov2,
                     noise_rowcov2, noise_colcov2):
    """The KL of :func:`fastmvn.kl_kron_sum` (full noise) by the batched eigh route of
    ``docs/kronecker_sums.md`` in ``lib``, :mod:`numpy` or :mod:`torch` (on the tensors'
    device), each step one call on the whole stack: Cholesky factors of the noises, their
    inverses by ``solve``, ``eigh`` of the second distribution's whitened signals and
    ``eigvalsh`` of the first's (whose eigenvectors the KL does not need), and the rank-two
    form of the trace."""
    n, p = mean1.shape[-2:]

    def side(signal, noise, vectors):
        chol = lib.linalg.cholesky(noise)
        eye = lib.eye(chol.shape[-1], dtype=chol.dtype)
        inverse = lib.linalg.solve(chol, eye + 0 * chol)
        whitened = inverse @ signal @ inverse.mT
        logdet = 2 * lib.log((chol * eye).sum(-1)).sum(-1)
        if not vectors:
            values = lib.linalg.eigvalsh(whitened)
            return values * (values > 0), logdet, None
        values, q = lib.linalg.eigh(whitened)
        return values * (values > 0), logdet, q.mT @ inverse

    values_u1, logdet_a1, _ = side(rowcov1, noise_rowcov1, False)
    values_v1, logdet_b1, _ = side(colcov1, noise_colcov1, False)
    values_u2, logdet_a2, whiten_u = side(rowcov2, noise_rowcov2, True)
    values_v2, logdet_b2, whiten_v = side(colcov2, noise_colcov2, True)

    def diagonal(whiten, a):  # diag(R a Rᵀ)
        return ((whiten @ a) * whiten).sum(-1)

    scales = values_u2[..., :, None] * values_v2[..., None, :] + 1
    a, e = diagonal(whiten_u, rowcov1), diagonal(whiten_u, noise_rowcov1)
    c, f = diagonal(whiten_v, colcov1), diagonal(whiten_v, noise_colcov1)
    trace = ((a[..., :, None] * c[..., None, :] + e[..., :, None] * f[..., None, :]) / scales).sum((-2, -1))
    w = whiten_u @ (mean1 - mean2) @ whiten_v.mT
    quad = (w * w / scales).sum((-2, -1))
    logdets = (p * (logdet_a2 - logdet_a1) + n * (logdet_b2 - logdet_b1)
               + lib.log1p(values_u2[..., :, None] * values_v2[..., None, :]).sum((-2, -1))
               - lib.log1p(values_u1[..., :, None] * values_v1[..., None, :]).sum((-2, -1)))
    return 0.5 * (trace + quad - n * p + logdets)


def torch_kl_kron_sum(args):
    """:func:`eigh_kl_kron_sum` in PyTorch of NumPy arrays ``args`` on the CPU, as a function
    to time, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    tensors = [torch.from_numpy(a) for a in args]

    def run():
        with torch.no_grad():
            return eigh_kl_kron_sum(torch, *tensors)

    return run


def compare(n, p, batch, dtype=np.float64, repeat=5, reference_batch=100_000, case="kl"):
    """Per-item seconds of a fastmvn function, the NumPy reference, PyTorch (or None) and a read pass.

    ``case`` is one of :data:`CASES` (``"kl_standard"`` is ``kl`` against ``MN(0, I, I)``);
    PyTorch runs the same algorithm for ``"kl"`` only. The reference and PyTorch run on at
    most ``reference_batch`` items (they are slow); every figure is per item, so the ratios
    compare like with like. fastmvn and the read pass are timed in alternation
    (:func:`median_times`), so that their ratio holds on a loaded machine.
    """
    import fastmvn

    args = random_inputs(case, batch, n, p, dtype)
    name = "kl" if case == "kl_standard" else case
    func, baseline = getattr(fastmvn, name), getattr(reference, name)
    small = tuple(a[:reference_batch] for a in args)
    out = np.empty(batch, dtype)
    runs = {"fastmvn": lambda: func(*args, out=out), "read": lambda: read_pass(args)}
    figures = {key: t / batch for key, t in median_times(runs, repeat).items()}
    figures["reference"] = median_time(lambda: baseline(*small), max(1, repeat // 2)) / len(small[0])
    run = torch_kl(small) if case == "kl" else None
    figures["torch"] = None if run is None else median_time(run, max(1, repeat // 2)) / len(small[0])
    return figures


#: The points of ``fastmvn bench --sizes``: ``(n, p, batch)``, square sizes at one item and at
#: many, and a 784×150 layer; :func:`size_points` caps each batch to a memory budget.
SIZE_GRID = [(n, n, batch) for n in (4, 16, 64, 256, 1024) for batch in (1, 1_000)] + [(784, 150, 1)]

#: The points of ``fastmvn bench --sizes --full``: every power of two from 1 to 2048 (square),
#: 784×150, 4096×512 and 2×1024, at one item, 8, 1,000 and as many as fit (a batch of None),
#: with the budget of :data:`FULL_BUDGET`. It takes tens of minutes.
FULL_SIZE_GRID = [(n, p, batch) for n, p in [(2 ** k, 2 ** k) for k in range(12)] + [(784, 150), (4096, 512), (2, 1024)]
                  for batch in (1, 8, 1_000, None)]
#: Bytes a point of :data:`FULL_SIZE_GRID` may hold (float64): its inputs, and for a value and
#: gradient its gradients too (:func:`size_points`).
FULL_BUDGET = 2 << 30

#: Items of a point on which ``--sizes --case logpdf`` runs its SciPy loop, at most; its time is
#: scaled to the whole batch.
SCIPY_ITEMS = 4


class Route(NamedTuple):
    """One library's call at a point of ``fastmvn bench --sizes``: ``make(args)`` gives the
    function to time (None where the library is not installed); with ``items`` it is made of
    the first ``items`` items only and its time is scaled to the whole batch."""
    make: Callable
    items: int | None = None


def _calls(func):
    """The :class:`Route` that calls ``func`` on the whole batch."""
    return Route(lambda args: lambda: func(*args))


def random_logpdf_inputs(batch, n, p, seed=0):
    """The arguments of :func:`fastmvn.logpdf` for ``batch`` random ``n×p`` matrix normals,
    ``(x, mean, rowcov, colcov)``, float64: standard normal points, then
    :func:`fastmvn.testing.random_matrix_normal`, from the generator of ``seed``."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, n, p)), *testing.random_matrix_normal(rng, (batch,), n, p))


class SizeCase(NamedTuple):
    """A function that ``fastmvn bench --sizes`` times, and what against.

    ``inputs(batch, n, p)`` draws its arguments, those of the table's entry ``arguments``
    (:data:`fastmvn._table.FUNCTIONS`); with ``gradients`` a call holds an array of each
    argument's shape more. ``blocks`` holds one dict per library, of figure names and their
    :class:`Route`; :func:`compare_sizes` times each block's routes in alternation and the
    blocks one after another. The figure ``"fastmvn"`` is the function's own.
    """
    arguments: str
    inputs: Callable
    gradients: bool
    blocks: tuple


#: The cases of ``fastmvn bench --sizes --case``: ``kl`` against the same algorithm in NumPy
#: (:func:`fastmvn.reference.kl`) and PyTorch (:func:`torch_kl`); ``logpdf`` against the NumPy
#: reference and a loop over SciPy (:func:`scipy_logpdf`, on :data:`SCIPY_ITEMS` items); and
#: ``kl_value_and_grad`` (all six gradients) against PyTorch autograd of the same algorithm
#: (:func:`torch_backward`) and against ``fastmvn.kl``'s value alone (``"value"``), the two
#: fastmvn calls in alternation.
SIZE_CASES = {
    "kl": SizeCase("kl", random_pair, False,
                   ({"fastmvn": _calls(_api.kl)}, {"numpy": _calls(reference.kl)}, {"torch": Route(torch_kl)})),
    "logpdf": SizeCase("logpdf", random_logpdf_inputs, False,
                       ({"fastmvn": _calls(_api.logpdf)}, {"numpy": _calls(reference.logpdf)},
                        {"scipy": Route(scipy_logpdf, SCIPY_ITEMS)})),
    "kl_value_and_grad": SizeCase("kl", random_pair, True,
                                  ({"fastmvn": _calls(_gradients.kl_value_and_grad), "value": _calls(_api.kl)},
                                   {"torch": Route(torch_backward)})),
}


def size_numbers(case, n, p):
    """Numbers per item that a call of ``case`` (a key of :data:`SIZE_CASES`) at ``n×p`` holds:
    its arguments, and their gradients for a value and gradient."""
    sides = {"n": n, "p": p}
    numbers = sum(math.prod(sides[axis] for axis in param.axes)
                  for param in FUNCTIONS[SIZE_CASES[case].arguments].params)
    return numbers * (2 if SIZE_CASES[case].gradients else 1)


def size_points(grid=SIZE_GRID, budget=1 << 29, case="kl"):
    """The points of ``grid`` with each batch cut so that the arrays of ``case`` fit in ``budget``
    bytes (float64, :func:`size_numbers`: six inputs for ``kl``, four for ``logpdf``, six inputs
    and their six gradients for ``kl_value_and_grad``), at least one item; a batch of None is
    as many as fit. Points that repeat after the cut are dropped."""
    points = []
    for n, p, batch in grid:
        fit = max(1, budget // (8 * size_numbers(case, n, p)))
        point = (n, p, fit if batch is None else min(batch, fit))
        if point not in points:
            points.append(point)
    return points


#: Seconds :func:`compare_sizes` waits before each library's block: a thread pool (OpenBLAS's,
#: PyTorch's OpenMP) waits busy for more work for a while after a call, and on a machine of
#: few cores those threads took a 784×150 KL of the next block from 10 to 23 ms.
BLOCK_PAUSE = 0.5


def compare_sizes(points, repeat=5, case="kl"):
    """Seconds per call of the function of ``case`` and of what it is compared with
    (:data:`SIZE_CASES`) at each ``(n, p, batch)`` of ``points``, float64, medians of ``repeat``.

    Returns a list of ``(n, p, batch, figures)``: ``figures`` maps each route's name to its
    seconds per call on the whole batch (a route run on fewer items, scaled to it), or to None
    where its library is not installed.

    Each library's runs follow one another rather than alternate: NumPy's and SciPy's wheels
    each bring an OpenBLAS with a thread pool of its own, and two pools taking turns on the
    same cores spin against each other, which would slow whichever runs after the other.
    Only the routes of one library's block, which share its pools, run in alternation.
    """
    rows = []
    for n, p, batch in points:
        args = SIZE_CASES[case].inputs(batch, n, p)
        figures = {}
        for block in SIZE_CASES[case].blocks:
            time.sleep(BLOCK_PAUSE)  # the previous block's threads stop waiting busy for work
            runs, scales = {}, {}
            for name, route in block.items():
                items = batch if route.items is None else min(batch, route.items)
                runs[name] = route.make(tuple(a[:items] for a in args) if items < batch else args)
                scales[name] = batch / items
            timed = median_times({name: run for name, run in runs.items() if run is not None}, repeat)
            figures.update({name: None if run is None else timed[name] * scales[name] for name, run in runs.items()})
        rows.append((n, p, batch, figures))
    return rows


def compare_logpdf(n=4, p=4, batch=1_000_000, dtype=np.float64, repeat=5, reference_batch=100_000, scipy_batch=2_000):
    """Per-item seconds of the matrix-normal log-density: ``fastmvn.logpdf``,
    ``MatrixNormal.logpdf`` (stored factors), the NumPy reference and a Python loop over
    ``scipy.stats.matrix_normal.logpdf``.

    The reference runs on at most ``reference_batch`` items and the SciPy loop on
    ``scipy_batch`` items (medians of ``repeat // 2`` runs); every figure is per item.
    """
    from .distributions import MatrixNormal

    rng = np.random.default_rng(0)
    x, mean = rng.standard_normal((2, batch, n, p)).astype(dtype, copy=False)
    rowcov = random_spd(rng, (batch,), n).astype(dtype, copy=False)
    colcov = random_spd(rng, (batch,), p).astype(dtype, copy=False)
    distribution = MatrixNormal(mean, rowcov, colcov)
    small = tuple(a[:reference_batch] for a in (x, mean, rowcov, colcov))
    few = tuple(a[:scipy_batch] for a in (x, mean, rowcov, colcov))
    out = np.empty(batch, dtype)
    slow = max(1, repeat // 2)
    runs = {"fastmvn": lambda: _api.logpdf(x, mean, rowcov, colcov, out=out),
            "distribution": lambda: distribution.logpdf(x, out=out)}
    figures = {name: t / batch for name, t in median_times(runs, repeat).items()}
    figures["reference"] = median_time(lambda: reference.logpdf(*small), slow) / len(small[0])
    figures["scipy"] = median_time(scipy_logpdf(few), slow) / len(few[0])
    return figures


def write_pass(arrays):
    """One write of every array of ``arrays`` (a list, filled with zeros) by all of Numba's
    threads: the cost of writing the gradients' bytes, and for new arrays of the operating
    system's handing over of new memory as well."""
    fill = _parallel_fill()
    for array in arrays:
        fill(array.reshape(-1), 0.0)


@functools.cache
def _parallel_fill():
    """``fill(a, x)``: ``a[:] = x`` for a flat array in parallel, compiled on first use."""
    import numba

    _jit.threading_layer()  # fastmvn's, not whichever Numba would load for this first

    def fill(a, x):
        for i in numba.prange(a.shape[0]):
            a[i] = x

    return numba.njit(parallel=True)(fill)


def _new(args):
    """New arrays of the shapes of ``args`` (of their gradients)."""
    return [np.empty_like(a) for a in args]


def compare_gradients(n=4, p=4, batch=1_000_000, dtype=np.float64, repeat=5):
    """Per-item seconds of the KL's value alone and of its value and gradient together, on the
    same ``batch`` pairs: ``kl_chol`` and ``kl_chol_value_and_grad`` from Cholesky factors,
    ``kl`` and ``kl_value_and_grad`` from covariances. Each value and gradient is timed as
    called plainly (its arrays from the buffer pool, :func:`fastmvn.set_buffer_pool`, which
    hands a repeated call the memory of the last), into the arrays of its previous result
    (``"…_out"``, as a training loop can pass them), and into new memory (``"…_new"``: new
    arrays passed as ``out=``, what every call would cost without the pool); and from
    covariances with the gradients of the first distribution only, ``"kl_value_and_grad_first"``
    (``wrt=``, as :mod:`fastmvn.torch` computes them against a fixed prior), and PyTorch autograd
    (forward and backward of ``sum(kl)``, CPU, :func:`torch_backward`) through
    :func:`torch_kl_chol_tensors` from the factors (``"torch_chol"``) and through
    :func:`torch_kl_tensors` from the covariances (``"torch_cov"``), and the same pass through
    :func:`fastmvn.torch.kl` (``"fastmvn_torch_cov"``, in fastmvn's rounds; the three None
    without torch).

    Two floors, timed in the same rounds: ``"write_new"`` allocates six new arrays of the
    gradients' shapes and writes them once (:func:`write_pass`), ``"write_reused"`` writes
    the same bytes into arrays written before. Their difference is what new memory costs
    any code on the machine, the gradients' arrays included.

    Medians of ``repeat`` rounds after a warm-up; each round runs every fastmvn case once,
    so that load from elsewhere on a shared machine slows them alike. PyTorch's cases run in
    rounds of their own afterwards: its autograd allocates and frees gigabytes per call, which
    slows the allocations of whatever runs next.
    """
    args = random_pair(batch, n, p, dtype)
    chol = tuple(a if i % 3 == 0 else np.linalg.cholesky(a) for i, a in enumerate(args))  # means stay
    out = np.empty(batch, dtype)
    reused_chol, reused = _gradients.kl_chol_value_and_grad(*chol), _gradients.kl_value_and_grad(*args)
    first = ("mean1", "rowcov1", "colcov1")
    written = [np.zeros_like(a) for a in args]
    runs = {
        "kl_chol": lambda: _api.kl_chol(*chol, out=out),
        "kl_chol_value_and_grad": lambda: _gradients.kl_chol_value_and_grad(*chol),
        "kl_chol_value_and_grad_out": lambda: _gradients.kl_chol_value_and_grad(*chol, out=reused_chol),
        "kl_chol_value_and_grad_new": lambda: _gradients.kl_chol_value_and_grad(*chol, out=(None, _new(chol))),
        "kl": lambda: _api.kl(*args, out=out),
        "kl_value_and_grad": lambda: _gradients.kl_value_and_grad(*args),
        "kl_value_and_grad_out": lambda: _gradients.kl_value_and_grad(*args, out=reused),
        "kl_value_and_grad_new": lambda: _gradients.kl_value_and_grad(*args, out=(None, _new(args))),
        "kl_value_and_grad_first": lambda: _gradients.kl_value_and_grad(*args, wrt=first),
        "write_new": lambda: write_pass(_new(args)),
        "write_reused": lambda: write_pass(written),
    }
    torch_runs = {"torch_chol": torch_backward(chol, torch_kl_chol_tensors), "torch_cov": torch_backward(args)}
    figures = {"torch_chol": None, "torch_cov": None, "fastmvn_torch_cov": None}
    if torch_runs["torch_cov"] is not None:
        from . import torch as fmt

        runs["fastmvn_torch_cov"] = torch_backward(args, fmt.kl)  # pooled memory: it alternates with the rest
    for group in (runs, torch_runs) if torch_runs["torch_cov"] is not None else (runs,):
        figures.update({name: t / batch for name, t in median_times(group, repeat).items()})
    return figures


def compare_kl_gaussian(n=4, p=4, batch=100_000, dtype=np.float64, repeat=5):
    """Per-item seconds of the KL between matrix Gaussians with full ``np×np`` covariances:
    ``fastmvn.kl_full`` from the covariances, ``MatrixGaussian.kl`` from factors stored at
    construction, and the NumPy reference ``fastmvn.reference.kl_full``, all on the same
    ``batch`` pairs. Medians of ``repeat`` rounds after a warm-up; each round runs the three
    once, so that all three see the same load on a shared machine."""
    from .distributions import MatrixGaussian, kl_full

    rng = np.random.default_rng(0)
    shape, size = (batch,), n * p
    mean1, mean2 = rng.standard_normal((2, batch, n, p)).astype(dtype, copy=False)
    cov1, cov2 = (random_spd(rng, shape, size).astype(dtype, copy=False) for _ in range(2))
    first, second = MatrixGaussian(mean1, cov1), MatrixGaussian(mean2, cov2)
    out = np.empty(batch, dtype)
    runs = {
        "fastmvn": lambda: kl_full(mean1, cov1, mean2, cov2, out=out),
        "distribution": lambda: first.kl(second),
        "reference": lambda: reference.kl_full(mean1, cov1, mean2, cov2),
    }
    return {name: t / batch for name, t in median_times(runs, repeat).items()}


def random_batch(batch, n, p, dtype=np.float64, seed=0, piece=500_000):
    """:func:`random_pair` made ``piece`` items at a time, so that large float32 batches never
    hold their float64 draft whole."""
    arrays = [np.empty((batch,) + shape, dtype) for shape in [(n, p), (n, n), (p, p)] * 2]
    for start in range(0, batch, piece):
        part = random_pair(min(piece, batch - start), n, p, dtype, seed=(seed, start))
        for array, values in zip(arrays, part):
            array[start:start + len(values)] = values
    return tuple(arrays)


def compare_dask(batch=4_000_000, n=4, p=4, dtype=np.float32, shared_prior=True, repeat=5):
    """Per-item seconds of ``fastmvn.kl`` and of ``fastmvn.dask.kl`` on the same in-memory
    arrays: the second in Dask's default blocks (``array.chunk-size``, 128 MiB of inputs) on
    Dask's threaded scheduler, graph building and the gathering of the result included.

    The two are timed in alternation, so that load from elsewhere on the machine slows both
    alike, and each figure is the median of ``repeat`` runs after a warm-up. With
    ``shared_prior`` the second distribution is one prior, shared by the whole batch;
    otherwise every item has its own. ``"ratio"`` is the Dask throughput over the direct one,
    ``"blocks"`` the number of blocks.
    """
    from . import dask as fmd

    args = random_batch(batch, n, p, dtype)
    if shared_prior:
        args = args[:3] + tuple(a[0] for a in args[3:])
    out = np.empty(batch, dtype)
    runs = {"fastmvn": lambda: _api.kl(*args, out=out), "dask": lambda: fmd.kl(*args).compute()}
    figures = {name: t / batch for name, t in median_times(runs, repeat).items()}
    figures["ratio"] = figures["fastmvn"] / figures["dask"]
    figures["blocks"] = fmd.kl(*args).numblocks[0]
    return figures
