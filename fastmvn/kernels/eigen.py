"""The lane eigensolver: cyclic Jacobi for symmetric matrices, ``m`` items side by side in lanes
(see :mod:`fastmvn.kernels`), one source for the CPU drivers and the CUDA target.

Each rotation zeroes one off-diagonal entry ``a_pq`` of every lane at once (Rutishauser's
form, as in Golub and Van Loan §8.5): with ``θ = (a_qq − a_pp) / (2 a_pq)``,
``t = sign θ / (|θ| + √(θ² + 1))``, ``c = 1/√(t² + 1)``, ``s = t c`` and ``τ = s/(1 + c)``,

    a_pp ← a_pp − t a_pq,   a_qq ← a_qq + t a_pq,   a_pq ← 0,
    a_rp ← a_rp − s (a_rq + τ a_rp),   a_rq ← a_rq + s (a_rp − τ a_rq)   (r ≠ p, q),

and the same update of columns ``p``, ``q`` of the eigenvectors. The rotation parameters are
computed per lane, without a branch (``a_pq = 0`` gives ``t = 0``; ``θ²`` overflowing gives
``t = 0``, dropping an ``a_pq`` below ``2⁻⁵¹¹ |a_qq − a_pp|``), and every loop over the lanes
is innermost. A sweep rotates each pair ``p < q`` once, in row order.

Convergence is tested per lane before each sweep, and the lanes stop together: sweeps go on
while some lane has ``off(A)² > ε² ‖A‖_F²`` (``off`` the Frobenius norm of the strictly lower
triangle, ``ε`` of the arithmetic), up to :data:`MAX_SWEEPS`. A lane that has converged gains
nothing from further sweeps but loses nothing either: its rotations are by angles of the
order of its off-diagonal entries. A lane of NaN counts as converged. Once the test holds,
each eigenvalue is within ``ε ‖A‖_F`` of a diagonal entry (Weyl), and the eigenvectors are
orthonormal to rounding, being products of rotations. Cyclic Jacobi converges quadratically
once the off-diagonal entries are smaller than the gaps between the eigenvalues (Henrici;
Wilkinson; for clusters of equal eigenvalues as well): the tests find at most 7 sweeps in
float64 for random symmetric matrices up to 32×32, low-rank and with repeated eigenvalues.
"""

import math

from .._jit import item
from .lanes import epsilon, fill, like

#: The most sweeps :func:`jacobi` makes: twice as many as the tests ever need (see above).
MAX_SWEEPS = 16

# Rows of the per-lane scratch ``w`` of :func:`jacobi`.
_SINE = 0
_TAU = 1
_OFF = 2
_DIAGONAL = 3
#: Rows of ``w``.
JACOBI_ROWS = 4


@item
def symmetrize(A, m, n):
    """``A[j, i] = A[i, j]`` for ``i > j``: the full symmetric matrix of the lower triangle."""
    for i in range(n):
        for j in range(i):
            for l in range(m):
                A[j, i, l] = A[i, j, l]


@item
def identity(Q, m, n):
    """``Q = I``."""
    one = like(1.0, Q)
    zero = like(0.0, Q)
    for i in range(n):
        for j in range(n):
            for l in range(m):
                Q[i, j, l] = one if i == j else zero


@item
def converged(A, w, m, n):
    """Whether ``off(A)² ≤ ε² ‖A‖_F²`` in every lane (NaN counts as converged)."""
    tolerance = epsilon(A) * epsilon(A)
    fill(w[_OFF], 0.0, m)
    fill(w[_DIAGONAL], 0.0, m)
    for i in range(n):
        for j in range(i):
            for l in range(m):
                w[_OFF, l] += A[i, j, l] * A[i, j, l]
        for l in range(m):
            w[_DIAGONAL, l] += A[i, i, l] * A[i, i, l]
    pending = 0
    for l in range(m):
        off = w[_OFF, l]
        pending += 1 if off > tolerance * (w[_DIAGONAL, l] + 2.0 * off) else 0
    return pending == 0


@item
def rotate(A, Q, w, p, q, m, n):
    """The rotation in the plane ``(p, q)`` that zeroes ``A[p, q]`` in every lane, applied to
    both sides of the symmetric ``A`` and to the columns of ``Q`` (see the module's docstring)."""
    one = like(1.0, A)
    two = like(2.0, A)
    zero = like(0.0, A)
    for l in range(m):
        apq = A[p, q, l]
        none = apq == zero
        theta = (A[q, q, l] - A[p, p, l]) / (two * (one if none else apq))
        t = one / (abs(theta) + math.sqrt(theta * theta + one))
        t = zero if none else (-t if theta < zero else t)
        c = one / math.sqrt(t * t + one)
        s = t * c
        w[_SINE, l] = s
        w[_TAU, l] = s / (one + c)
        A[p, p, l] -= t * apq
        A[q, q, l] += t * apq
        A[p, q, l] = zero
        A[q, p, l] = zero
    for r in range(n):
        if r != p and r != q:
            for l in range(m):
                s = w[_SINE, l]
                tau = w[_TAU, l]
                arp = A[r, p, l]
                arq = A[r, q, l]
                x = arp - s * (arq + tau * arp)
                y = arq + s * (arp - tau * arq)
                A[r, p, l] = x
                A[p, r, l] = x
                A[r, q, l] = y
                A[q, r, l] = y
    for r in range(n):
        for l in range(m):
            s = w[_SINE, l]
            tau = w[_TAU, l]
            qrp = Q[r, p, l]
            qrq = Q[r, q, l]
            Q[r, p, l] = qrp - s * (qrq + tau * qrp)
            Q[r, q, l] = qrq + s * (qrp - tau * qrq)


@item
def jacobi(A, Q, w, m, n):
    """Eigendecomposition ``A = Q diag(λ) Qᵀ`` of the symmetric matrix whose lower triangle
    ``A`` holds, by cyclic Jacobi: in place, ``λ`` on the diagonal of ``A`` (unsorted), the
    orthonormal eigenvectors in the columns of ``Q``; ``w`` (``(JACOBI_ROWS, lanes)``) is scratch.

    Returns the number of sweeps made (at most :data:`MAX_SWEEPS`); see the module's
    docstring for the convergence test and the accuracy.
    """
    symmetrize(A, m, n)
    identity(Q, m, n)
    for sweep in range(MAX_SWEEPS):
        if converged(A, w, m, n):
            return sweep
        for p in range(n - 1):
            for q in range(p + 1, n):
                rotate(A, Q, w, p, q, m, n)
    return MAX_SWEEPS
