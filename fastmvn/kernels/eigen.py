"""The lane eigensolver: cyclic Jacobi for symmetric matrices, ``m`` items side by side in lanes
(see :mod:`fastmvn.kernels`), one source for the CPU drivers and the CUDA target.

Each rotation zeroes one off-diagonal entry ``a_pq`` of every lane at once, in Rutishauser's
form (Golub and Van Loan §8.5): with ``h = a_qq − a_pp``, ``g = 2 a_pq sign h``,
``r = √(h² + g²)``, ``k = |h| + r``, the tangent ``t = g/k`` (the smaller root, an angle of at
most π/4), ``s = g/√(2rk)`` (the sine; ``t = 2rs/√(2rk)``) and ``τ = s/(1 + c) = g/(√(2rk) + k)``,

    a_pp ← a_pp − t a_pq,   a_qq ← a_qq + t a_pq,   a_pq ← 0,
    a_rp ← a_rp − s (a_rq + τ a_rp),   a_rq ← a_rq + s (a_rp − τ a_rq)   (r ≠ p, q),

and the same update of columns ``p``, ``q`` of the eigenvectors: two square roots and two
divisions per rotation, and no cosine, whose rounding near 1 would let the eigenvectors drift
from orthonormal over many sweeps. The rotation is computed per lane without a branch, and
every loop over the lanes is innermost. A sweep rotates each pair ``p < q`` once, in row order.
Only the lower triangle is read and written (``a_rp`` is stored as ``A[max(r, p), min(r, p)]``):
one store per updated entry, where keeping both triangles would make two.

Each lane is first scaled by its largest entry (its eigenvalues scaled back at the end), so
that ``h² + g²`` cannot overflow; a pivot with ``r`` below ``2⁻⁵⁰⁰`` of that is left alone (its
square would be subnormal, the rotation not orthogonal). So is a pivot with
``a_pq² ≤ ε² ‖A‖_F²`` (``ε`` of the arithmetic): an entry at the level of the rounding. Without
that threshold, matrices with equal eigenvalues (``U`` a multiple of the noise ``A`` whitens to
a multiple of ``I`` plus rounding) keep rotating their rounding errors between the equal
diagonal entries, and converge no further than about ``5 ε ‖A‖_F`` in 25 sweeps.

Convergence is tested per lane before each sweep, and the lanes stop together: sweeps go on
while some lane has ``off(A) > n ε ‖A‖_F`` (``off`` the Frobenius norm of the strictly lower
triangle), up to :data:`MAX_SWEEPS`. Once no pivot of a lane exceeds the threshold above, its
test holds, so the test is reached, not merely approached. A lane that has converged gains
nothing from further sweeps but loses nothing either (its pivots are below the threshold, or
rotate by angles of their size). A lane of NaN counts as converged. Once the test holds, each
eigenvalue is within ``√2 n ε ‖A‖_F`` of a diagonal entry (Weyl), and the eigenvectors are
orthonormal to rounding, being products of rotations. Cyclic Jacobi converges quadratically
once the off-diagonal entries are smaller than the gaps between distinct eigenvalues
(Henrici; Hari for multiple ones). Measured in float64 over 256 lanes of each kind (random
SPD, rank 1, rank ``n − 1``, three repeated eigenvalues, ``2I`` plus ``10⁻⁹`` of a random SPD
matrix), the lanes converge together in at most 5 sweeps at 4×4, 8 at 8×8, 10 at 16×16 and
12 at 32×32; :data:`MAX_SWEEPS` is 30.
"""

import math

from .._jit import item
from .lanes import epsilon, fill, like

#: The most sweeps :func:`jacobi` makes: more than twice as many as the tests need at 32×32 (see above).
MAX_SWEEPS = 30

# Rows of the per-lane scratch ``w`` of :func:`jacobi`.
_TAU = 0
_SINE = 1
_OFF = 2
_DIAGONAL = 3
_SCALE = 4
_THRESHOLD = 5
#: Rows of ``w``.
JACOBI_ROWS = 6

# Below this the pivot's entries (scaled to at most 1) are negligible and left unrotated: their
# squares would be subnormal, and a rotation made of them not orthogonal.
_TINY = 2.0 ** -500


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
    """Whether ``off(A)² ≤ (n ε)² ‖A‖_F²`` in every lane (NaN counts as converged); sets each
    lane's threshold of a pivot, ``w[_THRESHOLD] = ε² ‖A‖_F²``, for the sweep to come."""
    tolerance = (n * epsilon(A)) ** 2
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
        norm2 = w[_DIAGONAL, l] + 2.0 * off
        pending += 1 if off > tolerance * norm2 else 0
        w[_THRESHOLD, l] = epsilon(A) * epsilon(A) * norm2
    return pending == 0


@item(inline=True)
def rotate(A, Q, w, p, q, m, n, vectors):
    """The rotation in the plane ``(p, q)``, ``p < q``, that zeroes ``A[q, p]`` in every lane,
    applied to both sides of the symmetric ``A`` (its lower triangle, the only one read or
    written) and, if ``vectors``, to the columns of ``Q`` (see the module's docstring)."""
    one = like(1.0, A)
    two = like(2.0, A)
    zero = like(0.0, A)
    for l in range(m):
        apq = A[q, p, l]
        h = A[q, q, l] - A[p, p, l]
        g = two * apq if h >= zero else -two * apq
        radius = math.sqrt(h * h + g * g)
        k = abs(h) + radius
        rotated = (radius > _TINY) & (apq * apq > w[_THRESHOLD, l])  # else no rotation: s = t = τ = 0
        root = math.sqrt(two * radius * k) if rotated else one
        u = one / root
        s = g * u if rotated else zero
        w[_SINE, l] = s
        w[_TAU, l] = g / (root + k) if rotated else zero
        t = s * (two * radius * u)  # g/k
        A[p, p, l] -= t * apq
        A[q, q, l] += t * apq
        A[q, p, l] = apq if not rotated else zero
    for r in range(n):
        if r != p and r != q:
            rp, pr = max(r, p), min(r, p)  # a_rp where the lower triangle holds it, likewise a_rq
            rq, qr = max(r, q), min(r, q)
            for l in range(m):
                s = w[_SINE, l]
                tau = w[_TAU, l]
                arp = A[rp, pr, l]
                arq = A[rq, qr, l]
                A[rp, pr, l] = arp - s * (arq + tau * arp)
                A[rq, qr, l] = arq + s * (arp - tau * arq)
    if vectors:
        for r in range(n):
            for l in range(m):
                s = w[_SINE, l]
                tau = w[_TAU, l]
                qrp = Q[r, p, l]
                qrq = Q[r, q, l]
                Q[r, p, l] = qrp - s * (qrq + tau * qrp)
                Q[r, q, l] = qrq + s * (qrp - tau * qrq)


@item
def scale(A, w, m, n):
    """``A ← A / a`` in every lane, ``a = max|A_ij|`` (1 for a zero matrix), and ``w[_SCALE] = a``."""
    one = like(1.0, A)
    zero = like(0.0, A)
    fill(w[_SCALE], 0.0, m)
    for i in range(n):
        for j in range(i + 1):
            for l in range(m):
                w[_SCALE, l] = max(w[_SCALE, l], abs(A[i, j, l]))
    for l in range(m):
        a = w[_SCALE, l]
        w[_SCALE, l] = one if a == zero else a
        w[_TAU, l] = one / w[_SCALE, l]
    for i in range(n):
        for j in range(i + 1):
            for l in range(m):
                A[i, j, l] *= w[_TAU, l]


@item(inline=True)
def rotate_all(A, Q, w, m, n, vectors):
    """One sweep: :func:`rotate` in every plane ``(p, q)``, ``p < q``, in row order."""
    for p in range(n - 1):
        for q in range(p + 1, n):
            rotate(A, Q, w, p, q, m, n, vectors)


@item
def diagonalise(A, Q, w, m, n, vectors):
    """:func:`jacobi`, the eigenvectors accumulated in ``Q`` only if ``vectors`` (else ``Q``
    is neither read nor written)."""
    scale(A, w, m, n)
    if vectors:
        identity(Q, m, n)
    sweeps = MAX_SWEEPS
    for sweep in range(MAX_SWEEPS):
        if converged(A, w, m, n):
            sweeps = sweep
            break
        if n == 4:  # the commonest side, in loops of fixed length that unroll
            rotate_all(A, Q, w, m, 4, vectors)
        else:
            rotate_all(A, Q, w, m, n, vectors)
    for i in range(n):
        for l in range(m):
            A[i, i, l] *= w[_SCALE, l]
    return sweeps


@item
def jacobi(A, Q, w, m, n):
    """Eigendecomposition ``A = Q diag(λ) Qᵀ`` of the symmetric matrix whose lower triangle
    ``A`` holds, by cyclic Jacobi: in place in that triangle (the strictly upper one is neither
    read nor written), ``λ`` on the diagonal of ``A`` (unsorted), the orthonormal eigenvectors
    in the columns of ``Q``; ``w`` (``(JACOBI_ROWS, lanes)``) is scratch.

    Returns the number of sweeps made (at most :data:`MAX_SWEEPS`); see the module's
    docstring for the convergence test and the accuracy.
    """
    return diagonalise(A, Q, w, m, n, True)


@item
def jacobi_values(A, w, m, n):
    """The eigenvalues alone of the symmetric matrix whose lower triangle ``A`` holds, on
    its diagonal, as :func:`jacobi` computes them (the same rotations, bit for bit) without
    accumulating the eigenvectors (at 4×4, a third fewer loads and stores per rotation and
    about 8% less time). Returns the number of sweeps made."""
    return diagonalise(A, A, w, m, n, False)
