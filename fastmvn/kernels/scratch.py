"""The layout of the kernels' lane scratch: the named rows of the per-lane scalars ``v``, the
bits that name the six slots, and the one table of scratch arrays that the CPU drivers
(:mod:`fastmvn.kernels.drivers`) and the CUDA kernels (:mod:`fastmvn._cuda_kernels`) allocate.

Plain constants, no Numba: the kernels read them as globals, which Numba folds into the
compiled code as it compiles.
"""

# Rows of the per-lane scalar scratch ``v`` (float64, ``(SCALARS, lanes)``), each true in
# every mode that uses it.

#: ``log(|U2|/|U1|)`` and ``log(|V2|/|V1|)``, a KL's log-determinant term being
#: ``p·v[LOG_RATIO_U] + n·v[LOG_RATIO_V]`` (``|U2| = |V2| = 1`` against MN(0, I, I)). Where
#: ``n == p`` and the ratios come from factors, ``LOG_RATIO_U`` holds the log of both ratios
#: together and ``LOG_RATIO_V`` zero (:func:`~fastmvn.kernels.lanes.log_diagonals`).
LOG_RATIO_U = 0
LOG_RATIO_V = 1
#: A density's ``log|U|`` and ``log|V|``, both in ``LOGDET_U`` where ``n == p``, as above.
LOGDET_U = 2
LOGDET_V = 3
#: A KL's traces ``t_u = tr(U2⁻¹ U1)`` and ``t_v = tr(V2⁻¹ V1)`` (``‖A‖²``, ``‖B‖²`` in the
#: gradients' notation; ``tr(U1)``, ``tr(V1)`` against MN(0, I, I)).
TRACE_U = 4
TRACE_V = 5
#: The quadratic form: a KL's ``‖P2⁻¹ (M2 − M1) Q2⁻ᵀ‖²`` (``‖M1‖²`` against MN(0, I, I)),
#: a density's ``‖P⁻¹ (X − M) Q⁻ᵀ‖²``.
QUAD = 6
#: The running product of a fold (:func:`~fastmvn.kernels.lanes.fold`).
FOLD = 7
#: Ones, the factor of a gradient term that has no per-item one.
ONES = 8
#: Rows of ``v``.
SCALARS = 9

# The six slots S0..S5 hold the arguments a0..a5 of a mode (``fastmvn._modes`` says which).

#: Bit ``k`` of a mask over the slots names slot ``k``: in a slot layout
#: (:func:`~fastmvn.kernels.values.slot_layout`), a covariance or a factor of which only the
#: lower triangle is read; in the gradient drivers' ``wanted``, a gradient to store.
SLOT0 = 1
SLOT1 = 2
SLOT2 = 4
SLOT3 = 8
SLOT4 = 16
SLOT5 = 32
#: Bit of a slot layout: slot 3 receives ``a3 − a0`` (the difference of the means) and slot 0
#: is not gathered.
MEANS_DIFFERENCE = 64
#: Bit of a slot layout: slot 0 receives ``a0 − a1`` (``X − M``) and slot 1 is not gathered.
X_DIFFERENCE = 128
#: Bit of a slot layout: slot 0 is not gathered; its squared norm is summed from the input.
SQUARED_NORM = 256

# Shape rules of the scratch arrays: the extents of one item (the lane axis follows), for
# ``n×p`` means. The CUDA kernels, whose scratch is fixed in size, give every extent but
# SCALARS the largest side they compile for.

#: An item of slot ``k`` (``AS_SLOT0 + k``): ``(rows, cols)`` of ``a_k``.
AS_SLOT0, AS_SLOT1, AS_SLOT2, AS_SLOT3, AS_SLOT4, AS_SLOT5 = range(6)
#: ``(n, p)``, ``(n, n)`` and ``(p, p)``.
MEAN_SHAPE = 6
ROW_SQUARE = 7
COL_SQUARE = 8
#: ``(n,)`` and ``(p,)``: a reciprocal diagonal.
ROW_VECTOR = 9
COL_VECTOR = 10
#: ``(SCALARS,)``, float64: ``v``.
SCALAR_ROWS = 11
#: ``()``, float64: ``res``, the result.
RESULT = 12
#: ``(max(n, p), max(n, p))``.
SIDE_SQUARE = 13
#: ``(KRON_SCALARS + JACOBI_ROWS,)``, float64: ``v`` of the Kronecker-sum kernels
#: (:mod:`fastmvn.kernels.kronsum`), their scalars and the eigensolver's below them.
KRON_SCALAR_ROWS = 14

_SLOTS = (("S0", AS_SLOT0), ("S1", AS_SLOT1), ("S2", AS_SLOT2), ("S3", AS_SLOT3), ("S4", AS_SLOT4),
          ("S5", AS_SLOT5))
_SCALARS = (("v", SCALAR_ROWS), ("res", RESULT))

#: The scratch of :func:`~fastmvn.kernels.values.evaluate`, ``(name, shape rule)`` in the order
#: it takes them: the slots, the reciprocal diagonals of the factors, ``v`` and the result.
VALUE_SCRATCH = _SLOTS + (("ru1", ROW_VECTOR), ("rv1", COL_VECTOR), ("ru2", ROW_VECTOR), ("rv2", COL_VECTOR)) + _SCALARS
#: The scratch of :func:`~fastmvn.kernels.gradients.value_and_grad`, as :data:`VALUE_SCRATCH`:
#: the slots, the gradients, two squares, the reciprocal diagonals, ``v`` and the result.
GRADIENT_SCRATCH = _SLOTS + (
    ("W", MEAN_SHAPE), ("G1", AS_SLOT1), ("H1", AS_SLOT2), ("G2", AS_SLOT4), ("H2", AS_SLOT5),
    ("A", ROW_SQUARE), ("B", COL_SQUARE),
    ("rp1", ROW_VECTOR), ("rq1", COL_VECTOR), ("rp2", ROW_VECTOR), ("rq2", COL_VECTOR)) + _SCALARS

#: The scratch of :func:`~fastmvn.kernels.kronsum.kron_sum_logpdf` (one distribution) and of
#: :func:`~fastmvn.kernels.kronsum.kron_sum_kl` (the second's after it), as
#: :func:`~fastmvn.kernels.drivers.kron_sum_batch` allocates it: the mean's difference, each
#: side's signal, noise and eigenvectors, a square of the larger side, the reciprocal diagonals,
#: the eigenvalues, ``v`` and the result; for a KL also the diagonals ``a``, ``e``, ``c``, ``f``.
KRON_SUM_LOGPDF_SCRATCH = (
    ("D", MEAN_SHAPE), ("U1", ROW_SQUARE), ("A1", ROW_SQUARE), ("Qu1", ROW_SQUARE), ("V1", COL_SQUARE),
    ("B1", COL_SQUARE), ("Qv1", COL_SQUARE), ("T", SIDE_SQUARE), ("ru1", ROW_VECTOR), ("rv1", COL_VECTOR),
    ("vals_u1", ROW_VECTOR), ("vals_v1", COL_VECTOR), ("v", KRON_SCALAR_ROWS), ("res", RESULT))
KRON_SUM_KL_SCRATCH = KRON_SUM_LOGPDF_SCRATCH + (
    ("U2", ROW_SQUARE), ("A2", ROW_SQUARE), ("Qu2", ROW_SQUARE), ("V2", COL_SQUARE), ("B2", COL_SQUARE),
    ("Qv2", COL_SQUARE), ("ru2", ROW_VECTOR), ("rv2", COL_VECTOR), ("vals_u2", ROW_VECTOR), ("vals_v2", COL_VECTOR),
    ("au", ROW_VECTOR), ("eu", ROW_VECTOR), ("cv", COL_VECTOR), ("fv", COL_VECTOR))


def matrices(table):
    """The shape rules of the ``(rows, cols, lanes)`` arrays of ``table``, in order."""
    return tuple(rule for _, rule in table if rule < ROW_VECTOR)


def vectors(table):
    """The shape rules of the ``(extent, lanes)`` arrays of ``table`` in the arithmetic's
    dtype (the reciprocal diagonals), in order."""
    return tuple(rule for _, rule in table if rule in (ROW_VECTOR, COL_VECTOR))


#: The rules of :data:`VALUE_SCRATCH` and :data:`GRADIENT_SCRATCH` by kind, as the CPU
#: drivers allocate them (``v`` and the result being float64 and the same in both).
VALUE_MATRICES = matrices(VALUE_SCRATCH)
VALUE_VECTORS = vectors(VALUE_SCRATCH)
GRADIENT_MATRICES = matrices(GRADIENT_SCRATCH)
GRADIENT_VECTORS = vectors(GRADIENT_SCRATCH)
