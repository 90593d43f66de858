"""Shared test helpers: random inputs and the dense V⊗U route."""

import numpy as np
import pytest


def spd(rng, shape, size, jitter=0.1):
    """Random symmetric positive definite matrices of shape ``shape + (size, size)``."""
    a = rng.standard_normal(tuple(shape) + (size, size + 2))
    return a @ np.swapaxes(a, -1, -2) / (size + 2) + jitter * np.eye(size)


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
