"""Value and gradient of the KL and of the log-density together, against the value alone."""

import functools

from fastmvn import _bench

from .common import BATCHES, DTYPES, SIZES, backend, prepare


@functools.lru_cache(maxsize=1)
def _prepare(function, size, batch, dtype, backend_name):
    """The calls of ``function`` (from :func:`prepare`) and ``function_value_and_grad`` on the
    same random inputs, and a result of the second (whose arrays serve as ``out=``); each
    called once, so that compilation stays out of the timings."""
    value, args = prepare(function, function, size, batch, dtype, backend_name)
    grad = functools.partial(getattr(backend(backend_name), f"{function}_value_and_grad"), *args)
    return value, grad, grad()


class ValueAndGrad:
    """``kl_value_and_grad``, ``kl_chol_value_and_grad`` and ``kl_diag_value_and_grad``: the
    KL and its gradient with respect to all six arguments, in one pass per item;
    ``logpdf_value_and_grad``, ``logpdf_chol_value_and_grad`` and ``logpdf_diag_value_and_grad``:
    the log-density and its gradient with respect to all four."""

    params = [["kl", "kl_chol", "kl_diag", "logpdf", "logpdf_chol", "logpdf_diag"], SIZES, BATCHES, DTYPES,
              ["cpu", "cuda"]]
    param_names = ["function", "size", "batch", "dtype", "backend"]
    timeout = 300

    def setup(self, function, size, batch, dtype, backend_name):
        self.value, self.grad, self.result = _prepare(function, size, batch, dtype, backend_name)
        self.backend = backend_name

    def time_value_and_grad(self, *params):
        """Value and gradients into the arrays the call allocates (gradients of 4 MiB and more
        come from the buffer pool, which reuses the memory of the last call's)."""
        self.grad()

    def time_value_and_grad_into_out(self, *params):
        """Value and gradients into the arrays of a previous result (``out=``), as a training
        loop can pass them: no new memory."""
        if self.backend != "cpu":
            from asv_runner.benchmarks.mark import SkipNotImplemented

            raise SkipNotImplemented("out= is a CPU option")
        self.grad(out=self.result)

    def peakmem_value_and_grad(self, *params):
        """Peak memory of the process through one call."""
        self.grad()

    def track_time_over_value(self, *params):
        """Time of value and gradients (into arrays the call allocates) over that of the
        value alone, the two timed in alternation; the goal at 4×4 float64 is at most 3."""
        times = _bench.median_times({"grad": self.grad, "value": self.value}, repeat=3)
        return times["grad"] / times["value"]

    track_time_over_value.unit = "ratio"
