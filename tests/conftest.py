"""Shared test helpers: random inputs and the dense V⊗U route."""

import os
import subprocess
import sys

import numpy as np
import pytest

# The random inputs of the tests, under short names.
from fastmvn.testing import cholesky_factors as factors  # noqa: F401
from fastmvn.testing import conditioned_spd  # noqa: F401
from fastmvn.testing import random_matrix_normal as random_mn  # noqa: F401
from fastmvn.testing import random_pair as pair  # noqa: F401
from fastmvn.testing import random_spd as spd  # noqa: F401


def lapack_for_all(monkeypatch):
    """Every batch of items, however small, on the large-item path (values and gradients), float32
    data too (in float64, as that path computes it)."""
    from fastmvn import _config

    monkeypatch.setattr(_config, "FLOAT32_ARITHMETIC_MAX_SIDE", 0)
    monkeypatch.setattr(_config, "LAPACK_MIN_SIDE", 1)
    monkeypatch.setattr(_config, "LAPACK_BATCH_SIDE", 0)
    monkeypatch.setattr(_config, "LAPACK_GRADIENT_MIN_SIDE", 1)
    monkeypatch.setattr(_config, "LAPACK_GRADIENT_BATCH_SIDE", 0)


def lanes_for_all(monkeypatch):
    """Every batch of items in lanes, however large: the plan for large items chosen for none,
    and no plan of a small call made before kept (their keys hold the thresholds, not this)."""
    from fastmvn import _batch, _large

    def unreached(*args, **kwargs):
        raise AssertionError("the plan for large items ran where every batch should be in lanes")

    monkeypatch.setattr(_large, "chosen", lambda slots, count, gradients=False: False)
    monkeypatch.setattr(_batch, "_PLANS", {})
    for name in ("evaluate", "value_and_grad"):
        monkeypatch.setattr(_large, name, unreached)


def vec(x):
    """Column-major vec of each matrix of a stack."""
    return np.swapaxes(x, -1, -2).reshape(x.shape[:-2] + (-1,))


def upper_cholesky(cov):
    """SciPy's upper Cholesky factors ``R`` (``cov = Rᵀ R``) of a stack ``cov``, one item at a time."""
    import scipy.linalg

    size = cov.shape[-1]
    return np.array([scipy.linalg.cholesky(item) for item in cov.reshape(-1, size, size)]).reshape(cov.shape)


def normalised(u, v):
    """The representative of (cU, V/c) with tr(U) = n."""
    scale = np.trace(u, axis1=-2, axis2=-1)[..., None, None] / u.shape[-1]
    return u / scale, v * scale


def dense_kl(mean1, rowcov1, colcov1, mean2, rowcov2, colcov2):
    """KL of the multivariate normals on column-major ``vec``, covariance ``V⊗U`` (one item)."""
    s1, s2 = np.kron(colcov1, rowcov1), np.kron(colcov2, rowcov2)
    d = (mean2 - mean1).ravel(order="F")
    k = d.size
    return 0.5 * (np.trace(np.linalg.solve(s2, s1)) + d @ np.linalg.solve(s2, d) - k
                  + np.linalg.slogdet(s2)[1] - np.linalg.slogdet(s1)[1])


@pytest.fixture
def rng():
    return np.random.default_rng(20261123)


def run_python(script, timeout=300, **environment):
    """Run ``script`` in a new interpreter with ``environment`` added; assert it succeeded and
    return what it printed, stripped."""
    done = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, **environment),
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
