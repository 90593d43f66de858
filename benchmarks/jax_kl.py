"""``fastmvn.jax.kl`` under ``jax.jit``, against ``fastmvn.kl`` and JAX's own Cholesky and solves."""

import functools

import numpy as np

import fastmvn
from fastmvn import _bench

from .common import QUICK

#: A million 4×4 pairs (a thousand in a quick run), float32: JAX's dtype unless x64 is on.
BATCH = 1_000 if QUICK else 1_000_000


@functools.lru_cache(maxsize=1)
def _calls(route):
    """The value call and the value-and-gradient call (of ``sum(kl)``, all six arguments) of
    ``route`` on the same random pairs, each called once, so that compilation stays out."""
    try:
        import jax
        import fastmvn.jax as fmj
    except ImportError as error:
        raise NotImplementedError(f"fastmvn.jax cannot be imported: {error}") from None
    args = _bench.random_pair(BATCH, 4, 4, np.float32)
    if route == "fastmvn":
        calls = (functools.partial(fastmvn.kl, *args), functools.partial(fastmvn.kl_value_and_grad, *args))
    else:
        kl = fmj.kl if route == "fastmvn.jax" else _bench.jax_kl
        arrays = [jax.device_put(a) for a in args]
        value = jax.jit(kl)
        grad = jax.jit(jax.value_and_grad(lambda *a: kl(*a).sum(), argnums=tuple(range(6))))
        calls = (lambda: value(*arrays).block_until_ready(),
                 lambda: jax.block_until_ready(grad(*arrays)))
    for call in calls:
        call()
    return calls


class JaxKL:
    """``kl`` of a million 4×4 float32 pairs: ``fastmvn.kl`` itself, ``jax.jit(fastmvn.jax.kl)``
    (a host callback into the same kernels) and ``jax.jit`` of the same algorithm in
    ``jax.numpy``; and the value with the gradient of ``sum(kl)`` (``fastmvn.kl_value_and_grad``,
    ``jax.value_and_grad`` of the other two). Skipped where JAX is absent."""

    params = [["fastmvn", "fastmvn.jax", "jax.numpy"]]
    param_names = ["route"]
    timeout = 600

    def setup(self, route):
        self.value, self.grad = _calls(route)

    def time_value(self, route):
        self.value()

    def time_value_and_grad(self, route):
        self.grad()
