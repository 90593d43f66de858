"""Shared test helpers: random inputs and the dense V⊗U route."""

import os
import subprocess
import sys

import numpy as np
import pytest

from fastmvn._bench import random_spd as spd  # noqa: F401 - shared with the tests


def pair(rng, batch, n, p):
    """Two batches of ``n×p`` matrix normals (means, row and column covariances), as a list."""
    return [rng.standard_normal(batch + (n, p)), spd(rng, batch, n), spd(rng, batch, p),
            rng.standard_normal(batch + (n, p)), spd(rng, batch, n), spd(rng, batch, p)]


def factors(args):
    """The arguments of :func:`pair` with the covariances replaced by their Cholesky factors."""
    return [a if k % 3 == 0 else np.linalg.cholesky(a) for k, a in enumerate(args)]


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
