"""The lane eigensolver (cyclic Jacobi, fastmvn.kernels.eigen) against numpy.linalg.eigh: the
eigenvalues to 1e-12 of the norm, orthonormal eigenvectors, the reconstruction, and the
number of sweeps, for SPD, low-rank, degenerate and general symmetric matrices up to 32×32."""

import numpy as np
import pytest

from fastmvn.kernels import eigen

SIDES = [1, 2, 3, 4, 5, 8, 16, 32]


def in_lanes(a):
    """``(m, n, n)`` matrices as ``(n, n, m)`` lanes."""
    return np.ascontiguousarray(np.moveaxis(a, 0, -1))


def solve(a):
    """``(λ, Q, sweeps)`` of the stack ``a`` by :func:`fastmvn.kernels.eigen.jacobi`, only
    the lower triangle of ``a`` given (NaN above it)."""
    m, n = a.shape[0], a.shape[-1]
    lanes = in_lanes(np.where(np.tri(n, dtype=bool), a, np.nan))
    vectors = np.empty_like(lanes)
    sweeps = eigen.jacobi(lanes, vectors, np.empty((eigen.JACOBI_ROWS, m)), m, n)
    return np.einsum("iil->li", lanes), np.moveaxis(vectors, -1, 0), sweeps


def assert_eigh(a, values, vectors):
    n = a.shape[-1]
    largest = np.abs(a).max(axis=(-2, -1), keepdims=True)
    norm = (largest * np.linalg.norm(a / np.where(largest > 0, largest, 1.0), axis=(-2, -1), keepdims=True))[..., 0]
    assert (np.abs(np.sort(values, axis=-1) - np.linalg.eigvalsh(a)) <= 1e-12 * norm).all()
    gram = np.swapaxes(vectors, -1, -2) @ vectors
    np.testing.assert_allclose(gram, np.broadcast_to(np.eye(n), gram.shape), rtol=0, atol=1e-13)
    rebuilt = (vectors * values[..., None, :]) @ np.swapaxes(vectors, -1, -2)
    assert (np.abs(rebuilt - a) <= 1e-12 * norm[..., None]).all()


def low_rank(rng, m, n, rank):
    g = rng.standard_normal((m, n, rank))
    return g @ np.swapaxes(g, -1, -2)


def repeated(rng, m, n):
    """``Q diag(λ) Qᵀ`` with eigenvalues in clusters of equal values (and zeros)."""
    q, _ = np.linalg.qr(rng.standard_normal((m, n, n)))
    values = rng.choice([0.0, 1.0, 3.0], size=(m, n))
    return (q * values[:, None, :]) @ np.swapaxes(q, -1, -2)


@pytest.mark.parametrize("n", SIDES)
@pytest.mark.parametrize("kind", ["spd", "low rank", "repeated", "symmetric", "scaled"])
def test_jacobi_against_eigh(rng, n, kind):
    m = 37  # not a multiple of a vector's width
    if kind == "spd":
        a = low_rank(rng, m, n, n) + 1e-3 * np.eye(n)
    elif kind == "low rank":
        a = low_rank(rng, m, n, max(n // 3, 1))
    elif kind == "repeated":
        a = repeated(rng, m, n)
    elif kind == "symmetric":
        g = rng.standard_normal((m, n, n))
        a = g + np.swapaxes(g, -1, -2)
    else:  # entries whose squares overflow or underflow float64, and a zero matrix
        a = low_rank(rng, m, n, n) * np.logspace(-200, 200, m)[:, None, None]
        a[0] = 0.0
    values, vectors, sweeps = solve(a)
    assert_eigh(a, values, vectors)
    assert sweeps <= 12


def test_identity_diagonal_and_one_by_one(rng):
    for a in (np.eye(6)[None] * np.array([1.0, 2.0, 0.0])[:, None, None],  # diagonal: no sweep
              np.diag(np.arange(5.0))[None]):
        values, vectors, sweeps = solve(a)
        assert sweeps == 0
        np.testing.assert_array_equal(values, np.diagonal(a, axis1=-2, axis2=-1))
        np.testing.assert_array_equal(vectors, np.broadcast_to(np.eye(a.shape[-1]), a.shape))
    values, vectors, sweeps = solve(np.array([[[3.0]], [[-2.0]]]))
    np.testing.assert_array_equal(values, [[3.0], [-2.0]])
    np.testing.assert_array_equal(vectors, np.ones((2, 1, 1)))


@pytest.mark.parametrize("n", [4, 32])
def test_sweeps_of_many_lanes(rng, n):
    """Many lanes of every kind, which stop together, converge in at most 12 sweeps (the
    cap, MAX_SWEEPS, is more than twice that)."""
    m = 128
    a = np.concatenate([low_rank(rng, m, n, n), low_rank(rng, m, n, 1), low_rank(rng, m, n, n - 1),
                        repeated(rng, m, n), 2.0 * np.eye(n) + 1e-9 * low_rank(rng, m, n, n)])
    values, vectors, sweeps = solve(a)
    assert_eigh(a, values, vectors)
    assert sweeps <= 12 and 2 * sweeps < eigen.MAX_SWEEPS


def test_a_lane_of_nan_leaves_the_others_right(rng):
    a = low_rank(rng, 5, 4, 4)
    a[2, 1, 0] = np.nan
    values, vectors, _ = solve(a)
    assert np.isnan(values[2]).all()
    keep = [0, 1, 3, 4]
    assert_eigh(a[keep], values[keep], vectors[keep])


@pytest.mark.parametrize("n", [3, 4, 8])
def test_values_alone_are_those_of_jacobi(rng, n):
    """``jacobi_values`` makes the rotations of ``jacobi`` without the eigenvectors: the same
    eigenvalues bit for bit and the same number of sweeps, the strictly upper triangle unread."""
    m = 37
    a = np.concatenate([low_rank(rng, m, n, n), low_rank(rng, m, n, 1), repeated(rng, m, n)])
    values, _, sweeps = solve(a)
    lanes = in_lanes(np.where(np.tri(n, dtype=bool), a, np.nan))
    alone = eigen.jacobi_values(lanes, np.empty((eigen.JACOBI_ROWS, lanes.shape[-1])), lanes.shape[-1], n)
    np.testing.assert_array_equal(np.einsum("iil->li", lanes), values)
    assert alone == sweeps
