"""Parameters, backends and the suite shared by every benchmark.

``FASTMVN_BENCH_QUICK=1`` narrows the parameters to one small size, batch and dtype
(float64), for a fast check that the suite runs.
"""

import abc
import functools
import importlib
import os

import numpy as np

import fastmvn
from fastmvn import _bench, reference

QUICK = os.environ.get("FASTMVN_BENCH_QUICK", "0").lower() not in ("", "0", "false", "no", "off")

#: ``(n, p)`` of the matrix-normal benchmarks; the square-only functions take ``n`` of :data:`SQUARE`.
SIZES = [(8, 3)] if QUICK else [(4, 4), (16, 16), (32, 32), (8, 3)]
SQUARE = [4] if QUICK else [4, 16, 32]
BATCHES = [1_000] if QUICK else [1_000, 10_000]
DTYPES = ["float64"] if QUICK else ["float64", "float32"]
BACKENDS = ["cpu", "reference", "cuda"]

#: The NumPy reference is slow: it is timed on batches of at most this many items.
REFERENCE_BATCH = 1_000


def backend(name):
    """The module holding the public functions of backend ``name``.

    ``"cpu"`` is :mod:`fastmvn`, ``"reference"`` is :mod:`fastmvn.reference` and
    ``"cuda"`` is ``fastmvn.cuda``, which is expected to offer the same functions.

    Raises
    ------
    NotImplementedError
        The backend cannot run here (asv then skips the benchmark).
    """
    if name == "cpu":
        return fastmvn
    if name == "reference":
        return reference
    try:
        module = importlib.import_module(f"fastmvn.{name}")
    except ImportError as error:
        raise NotImplementedError(f"fastmvn.{name} cannot be imported: {error}") from None
    from numba import cuda

    if not cuda.is_available():
        raise NotImplementedError("no usable GPU")
    return module


@functools.lru_cache(maxsize=1)
def prepare(function, case, size, batch, dtype, backend_name):
    """The call of ``function`` on random inputs of ``case``, and those inputs.

    The call is made once here, so that compilation stays out of the timings. The
    result is kept because asv runs ``setup`` again before every timed sample.
    """
    if backend_name == "reference" and batch > REFERENCE_BATCH:
        raise NotImplementedError(f"the reference is timed on at most {REFERENCE_BATCH} items")
    func = getattr(backend(backend_name), function)
    n, p = size if isinstance(size, tuple) else (size, size)
    args = _bench.random_inputs(case, batch, n, p, np.dtype(dtype))
    call = functools.partial(func, *args)
    call()
    return call, args


class Suite(abc.ABC):
    """Time, peak memory and speed against the reference of one public function.

    A subclass names the ``function`` (the same in every backend) and may name the
    ``case`` of :func:`fastmvn._bench.random_inputs` that builds its arguments (by
    default the function's name) and narrow ``params``.
    """

    params = [SIZES, BATCHES, DTYPES, BACKENDS]
    param_names = ["size", "batch", "dtype", "backend"]
    case = None
    timeout = 300

    @property
    @abc.abstractmethod
    def function(self):
        """Name of the benchmarked function."""

    def setup(self, size, batch, dtype, backend_name):
        self.call, self.args = prepare(self.function, self.case or self.function, size, batch, dtype,
                                       backend_name)

    def time_call(self, *params):
        """One batched call."""
        self.call()

    def peakmem_call(self, *params):
        """Peak memory of the process through one batched call."""
        self.call()

    def track_time_over_reference(self, size, batch, dtype, backend_name):
        """Time per item of this backend over that of the NumPy reference (below 1 is faster).

        Both are timed here, one after the other, so that the ratio holds on a noisy machine.
        The reference runs on the first :data:`REFERENCE_BATCH` items.
        """
        if backend_name == "reference":
            from asv_runner.benchmarks.mark import SkipNotImplemented

            raise SkipNotImplemented("the reference is the baseline")
        small = [a[:REFERENCE_BATCH] for a in self.args]
        baseline = getattr(reference, self.function)
        mine = _bench.median_time(self.call, repeat=3) / batch
        theirs = _bench.median_time(lambda: baseline(*small), repeat=3) / len(small[0])
        return mine / theirs

    track_time_over_reference.unit = "ratio"
