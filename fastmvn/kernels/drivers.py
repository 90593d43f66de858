"""The CPU batch drivers: :func:`evaluate_batch` and :func:`value_and_grad_batch` run the
per-item kernels over a batch in parallel chunks, :func:`lane_count` items at a time, with
lane scratch allocated by the table of :mod:`fastmvn.kernels.scratch`."""

import math

import numpy as np
from numba import boolean, float32, float64, int64, njit, prange, types, void

from .._config import LANES, SMALL_LANES  # compile-time constants: Numba folds them into the kernels
from .._jit import ITEM_OPTIONS, OPTIONS, _cached, batch, item
from .._modes import KL_STD_DIAG, LOGPDF_DIAG
from .eigen import JACOBI_ROWS
from .gradients import store_wanted, value_and_grad
from .kronsum import KRON_SCALARS, kron_sum_kl, kron_sum_logpdf
from .scratch import (AS_SLOT0, AS_SLOT1, AS_SLOT2, AS_SLOT3, AS_SLOT4, AS_SLOT5, GRADIENT_MATRICES,
                      GRADIENT_VECTORS, MEAN_SHAPE, QUAD, ROW_SQUARE, ROW_VECTOR, SCALARS, SLOT0, SLOT1, SLOT2, SLOT3,
                      SLOT4, SLOT5, VALUE_MATRICES, VALUE_VECTORS)
from .values import _LOG_2PI, evaluate, finish, gather, gather_slots, slot_layout


@item
def lane_count(n, p, itemsize):
    """How many items the CPU drivers compute side by side for ``n×p`` means in arithmetic
    of ``itemsize`` bytes: twice as many in float32, in the same scratch as float64."""
    return (SMALL_LANES if max(n, p) <= 4 else LANES) * (8 // itemsize)


@item
def matrix_shape(rule, a0, a1, a2, a3, a4, a5, n, p):
    """The ``(rows, cols)`` of one item of a matrix of shape ``rule`` (see
    :mod:`fastmvn.kernels.scratch`) for the slots ``a0 … a5`` and ``n×p`` means."""
    if rule == AS_SLOT0:
        return a0.shape[1], a0.shape[2]
    if rule == AS_SLOT1:
        return a1.shape[1], a1.shape[2]
    if rule == AS_SLOT2:
        return a2.shape[1], a2.shape[2]
    if rule == AS_SLOT3:
        return a3.shape[1], a3.shape[2]
    if rule == AS_SLOT4:
        return a4.shape[1], a4.shape[2]
    if rule == AS_SLOT5:
        return a5.shape[1], a5.shape[2]
    if rule == MEAN_SHAPE:
        return n, p
    if rule == ROW_SQUARE:
        return n, n
    return p, p  # COL_SQUARE


@item
def lane_matrices(rules, a0, a1, a2, a3, a4, a5, n, p, lanes, dtype):
    """Scratch of ``dtype`` for ``lanes`` items, a ``(rows, cols, lanes)`` array for each
    shape rule of ``rules`` (:data:`~fastmvn.kernels.scratch.VALUE_MATRICES`, …), in order."""
    return [np.empty(matrix_shape(rule, a0, a1, a2, a3, a4, a5, n, p) + (lanes,), dtype) for rule in rules]


@item
def lane_vectors(rules, n, p, lanes, dtype):
    """Scratch of ``dtype`` for ``lanes`` items, an ``(n or p, lanes)`` array for each
    :data:`~fastmvn.kernels.scratch.ROW_VECTOR` or ``COL_VECTOR`` of ``rules``, in order."""
    return [np.empty((n if rule == ROW_VECTOR else p, lanes), dtype) for rule in rules]


@item
def lane_scalars(lanes):
    """The float64 scratch of every kernel for ``lanes`` items: ``v`` (``(SCALARS, lanes)``)
    and the result (``(lanes,)``)."""
    return np.empty((SCALARS, lanes)), np.empty(lanes)


#: The (data, arithmetic) dtypes the drivers are compiled for, each on first use.
_PRECISIONS = ((float64, float64), (float32, float32), (float32, float64))

_SIGNATURES = {(np.dtype(dtype.name), np.dtype(work.name)):
               void(int64, *(types.Array(dtype, 3, "A", readonly=True),) * 6, dtype[:], int64[:], work[:])
               for dtype, work in _PRECISIONS}


@batch(_SIGNATURES)
def evaluate_batch(mode, a0, a1, a2, a3, a4, a5, out, first_bad, work):
    """``out[b] = evaluate(mode, a0[b], …, a5[b])`` for every ``b``, in parallel chunks.

    The batch is split into ``len(first_bad)`` contiguous chunks, each computed
    :func:`lane_count` items at a time with scratch allocated once per chunk. An item whose
    result is not finite is stored as NaN, and ``first_bad[c]`` receives the first such
    index of chunk ``c`` (``len(out)`` if none). The arithmetic is done in the dtype of
    ``work``, an empty array.
    """
    count = out.shape[0]
    n = a0.shape[1]
    p = a0.shape[2]
    chunks = first_bad.shape[0]
    size = (count + chunks - 1) // chunks
    layout = slot_layout(mode, False)
    dtype = work.dtype
    lanes = min(lane_count(n, p, work.itemsize), max(size, 1))  # no more lanes than a chunk has items
    for c in prange(chunks):
        S0, S1, S2, S3, S4, S5 = lane_matrices(VALUE_MATRICES, a0, a1, a2, a3, a4, a5, n, p, lanes, dtype)
        ru1, rv1, ru2, rv2 = lane_vectors(VALUE_VECTORS, n, p, lanes, dtype)
        v, res = lane_scalars(lanes)
        bad = count
        stop = min(count, (c + 1) * size)
        for start in range(c * size, stop, lanes):
            m = min(lanes, stop - start)
            gather_slots(a0, a1, a2, a3, a4, a5, start, S0, S1, S2, S3, S4, S5, layout, v[QUAD], m)
            evaluate(mode, S0, S1, S2, S3, S4, S5, ru1, rv1, ru2, rv2, v, res, m, n, p)
            bad = min(bad, finish(res, out, start, m, count))
        first_bad[c] = bad


_GRAD_SIGNATURES = {(np.dtype(dtype.name), np.dtype(work.name)):
                    void(int64, *(types.Array(dtype, 3, "A", readonly=True),) * 6, dtype[:],
                         *(types.Array(dtype, 3, "C"),) * 6, int64, int64[:], work[:])
                    for dtype, work in _PRECISIONS}


@batch(_GRAD_SIGNATURES)
def value_and_grad_batch(mode, a0, a1, a2, a3, a4, a5, out, g0, g1, g2, g3, g4, g5, wanted, first_bad, work):
    """``out[b]`` and ``g0[b] … g5[b]`` = the value of item ``b`` (a KL or a log-density) and its gradient with respect to
    ``a0[b] … a5[b]``, for every ``b``, in parallel chunks as :func:`evaluate_batch`.

    Gradient ``k`` is stored only where bit ``k`` of ``wanted`` is set (the others may be
    ``(1, 1, 1)`` placeholders). An item whose value is not finite gets NaN for its value and
    its gradients, and counts in ``first_bad``.
    """
    count = out.shape[0]
    n = a0.shape[1]
    p = a0.shape[2]
    chunks = first_bad.shape[0]
    size = (count + chunks - 1) // chunks
    layout = slot_layout(mode, True)
    dtype = work.dtype
    lanes = min(lane_count(n, p, work.itemsize), max(size, 1))
    for c in prange(chunks):
        S0, S1, S2, S3, S4, S5, W, G1, H1, G2, H2, A, B = lane_matrices(GRADIENT_MATRICES, a0, a1, a2, a3, a4, a5,
                                                                         n, p, lanes, dtype)
        rp1, rq1, rp2, rq2 = lane_vectors(GRADIENT_VECTORS, n, p, lanes, dtype)
        v, res = lane_scalars(lanes)
        bad = count
        stop = min(count, (c + 1) * size)
        for start in range(c * size, stop, lanes):
            m = min(lanes, stop - start)
            gather_slots(a0, a1, a2, a3, a4, a5, start, S0, S1, S2, S3, S4, S5, layout, v[QUAD], m)
            value_and_grad(mode, S0, S1, S2, S3, S4, S5, W, G1, H1, G2, H2, A, B,
                           rp1, rq1, rp2, rq2, v, res, m, n, p)
            bad = min(bad, finish(res, out, start, m, count))
            store_wanted(mode, g0, g1, g2, g3, g4, g5, W, G1, H1, G2, H2, A, B, wanted, start, res, m)
        first_bad[c] = bad


def _variance_ratios(var1, var2, weights, standard):
    """``(ok, Σ var1/var2, Σ log var2 − Σ log var1)`` with ``weights = 1/var2``; ``ok`` is
    False where a variance is not positive. With ``standard``, ``var2`` is ones and not read
    (nor its logarithms taken). A logarithm per variance, which the compiler vectorises: the
    lanes' folded products (one logarithm) took longer here, a chain of dependent products."""
    ok = True
    ratio = log_ratio = 0.0
    for i in range(var1.shape[0]):
        a1 = np.float64(var1[i])
        if standard:
            ok &= a1 > 0.0
            ratio += a1
            log_ratio -= math.log(a1) if a1 > 0.0 else 0.0
            weights[i] = 1.0
        else:
            a2 = np.float64(var2[i])
            ok &= (a1 > 0.0) & (a2 > 0.0)
            ratio += a1 / a2
            log_ratio += math.log(a2) - math.log(a1) if a1 > 0.0 and a2 > 0.0 else 0.0
            weights[i] = 1.0 / a2
    return ok, ratio, log_ratio


_variance_ratios = njit(**OPTIONS)(_variance_ratios)  # inlined by LLVM into its callers


def _diagonal_kl(mean1, rowvar1, colvar1, mean2, rowvar2, colvar2, standard, row_weights, col_weights, columns):
    """The terms of the KL between matrix normals with diagonal covariances for one item, in
    float64: ``(ok, t_u, t_v, quad, log_ratio_u, log_ratio_v)`` with ``t_u = Σ a1/a2``,
    ``t_v = Σ b1/b2``, ``quad = Σᵢⱼ (M2 − M1)ᵢⱼ² / (a2ᵢ b2ⱼ)`` and the log-ratios
    ``Σ log a2 − Σ log a1``, ``Σ log b2 − Σ log b1`` (``a``, ``b`` the row and column
    variances); ``ok`` is False where a variance is not positive (or NaN). With ``standard``
    the second distribution is ``MN(0, I, I)``: ``mean2``, ``rowvar2`` and ``colvar2`` are not
    read, and ``quad = ‖M1‖²``. Scratch: ``row_weights`` (``n``), ``col_weights`` and
    ``columns`` (``p``).

    The quadratic form is one read of the means, a running sum per column over the rows, which
    the compiler vectorises along the row (no chain of dependent additions): at 784×150 it took
    half the time of NumPy's sums of the two means, where four sums per row side by side took
    1.25 times as long."""
    n, p = mean1.shape
    row_ok, t_u, log_u = _variance_ratios(rowvar1, rowvar2, row_weights, standard)
    col_ok, t_v, log_v = _variance_ratios(colvar1, colvar2, col_weights, standard)
    ok = row_ok and col_ok
    quad = 0.0
    columns[:] = 0.0
    if standard:
        for i in range(n):
            for j in range(p):
                m = np.float64(mean1[i, j])
                columns[j] += m * m
        for j in range(p):
            quad += columns[j]
    else:
        for i in range(n):
            weight = row_weights[i]
            for j in range(p):
                d = np.float64(mean2[i, j]) - np.float64(mean1[i, j])
                columns[j] += d * (d * weight)  # d² itself may overflow where d²/a does not
        for j in range(p):
            quad += columns[j] * col_weights[j]
    return ok, t_u, t_v, quad, log_u, log_v


_diagonal_kl = njit(inline="always", **OPTIONS)(_diagonal_kl)


def kl_of_terms(trace_u, trace_v, quad, log_ratio_u, log_ratio_v, n, p):
    """``½(t_u t_v + quad − np + p·log(|U2|/|U1|) + n·log(|V2|/|V1|))`` in the lane kernels'
    order (:func:`~fastmvn.kernels.values.kl_value`), halved term by term; never negative
    (rounding below zero gives 0, -inf stays a failure). The KL of every item computed one at
    a time: :func:`diagonal_batch` and the plan for large items (:mod:`fastmvn._large_items`)."""
    kl = (0.5 * trace_u) * trace_v + 0.5 * quad - 0.5 * n * p + (0.5 * p) * log_ratio_u + (0.5 * n) * log_ratio_v
    return 0.0 if -math.inf < kl < 0.0 else kl


kl_of_terms = _cached(njit(**OPTIONS)(kl_of_terms))  # called by fastmvn._large_items too


def _diagonal_logpdf(x, mean, rowvar, colvar, columns):
    """The log-density of ``x`` under ``MN(mean, diag(rowvar), diag(colvar))`` for one item, in
    float64, with ``columns`` (``p``) as scratch:
    ``−½(np log 2π + p Σ log a + n Σ log b + Σᵢⱼ (X − M)ᵢⱼ² / (aᵢ bⱼ))``; not finite where a
    variance is not positive or an input is not finite. One read of ``x`` and ``mean``, a
    running sum per column over the rows (as :func:`_diagonal_kl`)."""
    n, p = x.shape
    columns[:] = 0.0
    log_a = log_b = 0.0
    for i in range(n):
        a = np.float64(rowvar[i])
        log_a += math.log(a) if a > 0.0 else math.nan
        weight = 1.0 / a
        for j in range(p):
            d = np.float64(x[i, j]) - np.float64(mean[i, j])
            columns[j] += d * (d * weight)  # d² itself may overflow where d²/a does not
    quad = 0.0
    for j in range(p):
        b = np.float64(colvar[j])
        log_b += math.log(b) if b > 0.0 else math.nan
        quad += columns[j] / b
    return -0.5 * (n * p * _LOG_2PI + p * log_a + n * log_b + quad)


_diagonal_logpdf = njit(inline="always", **OPTIONS)(_diagonal_logpdf)



def _scratch(n, p, dtype):
    """The scratch of :func:`_whitened_pass` for items of ``n×p`` and gradients of ``dtype``, one
    per chunk: the row and column weights and sums (float64) and two rows for the gradients not
    wanted."""
    return np.empty(n), np.empty(p), np.empty(n), np.empty(p), np.empty((2, p), dtype)


_scratch = njit(inline="always", **OPTIONS)(_scratch)


def _whitened_pass(first, second, standard, sign, g_first, g_second, want_first, want_second, scratch):
    """One pass over an item's ``D = first − second`` (``−second`` where ``standard``; ``first``
    is then not read) with ``W = D·row_weights·col_weightsᵀ`` (``scratch``, :func:`_scratch`):
    ``g_first ← sign·W`` and ``g_second ← −sign·W`` where wanted (``standard``: ``g_first``
    never), ``row_sums ← Σ_c D W`` and ``col_sums ← Σ_i D W``; returns ``Σ D W``. The
    gradients of the diagonal modes' values are made from these.

    Inlined into :func:`diagonal_grad_batch`, which is compiled with ``reassoc``
    (:data:`fastmvn._jit.ITEM_OPTIONS`: its loops run over one item's entries), so that each
    row's sum runs in vector partial sums and the loop along a row is vector code: without it,
    the loop stayed scalar and the pass took 2.2–3.2 times as long at 256×256 and 784×150
    (1.2–2.9 at 1,024×1,024), whether its row sum ran in one chain or in four partial sums by
    hand."""
    n, p = second.shape
    row_weights, col_weights, row_sums, col_sums, unwanted = scratch
    col_sums[:] = 0.0
    quad = 0.0
    for i in range(n):
        weight = row_weights[i]
        # A gradient not wanted is written into a row of scratch: one loop, whatever is wanted,
        # and the same sums (loops specialised by the flags were vectorised differently, and
        # their sums differed in the last bit).
        into_first = g_first[i] if want_first else unwanted[0]
        into_second = g_second[i] if want_second else unwanted[1]
        row = 0.0
        for j in range(p):
            if standard:  # the first is zero and never wanted
                d = -np.float64(second[i, j])
            else:
                d = np.float64(first[i, j]) - np.float64(second[i, j])
            w = d * weight * col_weights[j]
            row += d * w
            col_sums[j] += d * w
            if not standard:
                into_first[j] = sign * w
            into_second[j] = -sign * w
        row_sums[i] = row
        quad += row
    return quad


_whitened_pass = njit(inline="always", **OPTIONS)(_whitened_pass)  # compiled with its driver's options


def _diagonal_logpdf_grad(x, mean, rowvar, colvar, gx, gm, ga, gb, wanted, scratch):
    """:func:`_diagonal_logpdf` of one item and its gradients, stored as ``wanted`` asks (bits
    ``SLOT0 … SLOT3``): ``gx = −W``, ``gm = W`` with ``W = D / (a bᵀ)``, ``ga[:, 0] =
    ½(Σ_c D W − p)/a`` and ``gb[:, 0] = ½(Σ_i D W − n)/b``, in one pass over ``x`` and ``mean``
    (:func:`_whitened_pass`, with its ``scratch``)."""
    n, p = x.shape
    row_weights, col_weights, row_sums, col_sums, _ = scratch
    log_a = log_b = 0.0
    for i in range(n):
        a = np.float64(rowvar[i])
        log_a += math.log(a) if a > 0.0 else math.nan
        row_weights[i] = 1.0 / a
    for j in range(p):
        b = np.float64(colvar[j])
        log_b += math.log(b) if b > 0.0 else math.nan
        col_weights[j] = 1.0 / b
    quad = _whitened_pass(x, mean, False, -1.0, gx, gm, (wanted & SLOT0) != 0, (wanted & SLOT1) != 0, scratch)
    if wanted & SLOT2:
        for i in range(n):
            ga[i, 0] = 0.5 * (row_sums[i] - p) * row_weights[i]
    if wanted & SLOT3:
        for j in range(p):
            gb[j, 0] = 0.5 * (col_sums[j] - n) * col_weights[j]
    return -0.5 * (n * p * _LOG_2PI + p * log_a + n * log_b + quad)


_diagonal_logpdf_grad = njit(inline="always", **OPTIONS)(_diagonal_logpdf_grad)


def _variance_grads(var1, weights, sums, trace, other, g1, g2, want1, want2):
    """The KL's gradients with respect to one side's variances ``a1`` and ``a2`` (the rows', or
    the columns'), from ``weights = 1/a2``, the pass's ``sums`` of ``D W`` along that side, the
    other side's ``trace`` ``t`` and size ``other`` ``m``: ``g1 ← ½(t/a2 − m/a1)`` and
    ``g2 ← ½(m − t·a1/a2 − sums)/a2``, each where wanted (as columns of one entry a row)."""
    for i in range(var1.shape[0]):
        a1 = np.float64(var1[i])
        if want1:
            g1[i, 0] = 0.5 * (trace * weights[i] - other / a1)
        if want2:
            g2[i, 0] = 0.5 * (other - trace * a1 * weights[i] - sums[i]) * weights[i]


_variance_grads = njit(inline="always", **OPTIONS)(_variance_grads)


def _diagonal_kl_grad(mean1, rowvar1, colvar1, mean2, rowvar2, colvar2, standard, g0, g1, g2, g3, g4, g5, wanted,
                      scratch):
    """The KL of one item of diagonal covariances (as :func:`_diagonal_kl`) and its gradients
    ``g0 … g5`` for ``(mean1, rowvar1, colvar1, mean2, rowvar2, colvar2)``, stored as
    ``wanted`` asks (``docs/gradients.md``; ``g4``, ``g5`` and ``g3`` not for the standard
    prior): ``∂/∂M2 = −∂/∂M1 = W = D/(a2 b2ᵀ)``, ``∂/∂a1 = ½(t_v/a2 − p/a1)``,
    ``∂/∂a2 = ½(p − t_v a1/a2 − Σ_c D W)/a2`` and the same for ``b`` with ``t_u``, ``n`` and
    sums over rows; in one pass over the means (:func:`_whitened_pass`, with its ``scratch``)."""
    n, p = mean1.shape
    row_weights, col_weights, row_sums, col_sums, _ = scratch
    row_ok, t_u, log_u = _variance_ratios(rowvar1, rowvar2, row_weights, standard)
    col_ok, t_v, log_v = _variance_ratios(colvar1, colvar2, col_weights, standard)
    quad = _whitened_pass(mean2, mean1, standard, 1.0, g3, g0, (wanted & SLOT3) != 0, (wanted & SLOT0) != 0, scratch)
    if not (row_ok and col_ok):
        return math.nan
    _variance_grads(rowvar1, row_weights, row_sums, t_v, p, g1, g4, (wanted & SLOT1) != 0, (wanted & SLOT4) != 0)
    _variance_grads(colvar1, col_weights, col_sums, t_u, n, g2, g5, (wanted & SLOT2) != 0, (wanted & SLOT5) != 0)
    return kl_of_terms(t_u, t_v, quad, log_u, log_v, n, p)


_diagonal_kl_grad = njit(inline="always", **OPTIONS)(_diagonal_kl_grad)


@batch(_GRAD_SIGNATURES, ITEM_OPTIONS)  # none of its floating-point loops runs over several items
def diagonal_grad_batch(mode, a0, a1, a2, a3, a4, a5, out, g0, g1, g2, g3, g4, g5, wanted, first_bad, work):
    """``out[b]`` and the gradients that ``wanted`` asks for of a mode of diagonal covariances
    (``KL_DIAG``, ``KL_STD_DIAG``, ``LOGPDF_DIAG``) for every ``b``, one item at a time where it
    lies, in float64, in chunks as :func:`diagonal_batch`; the drivers' arguments as
    :func:`value_and_grad_batch` (``(1, 1, 1)`` placeholders for the gradients not wanted). One
    pass over each item writes its value and gradients: about twice the value's memory traffic,
    where the lanes gather, compute and store in three."""
    count = out.shape[0]
    n = a0.shape[1]
    p = a0.shape[2]
    chunks = first_bad.shape[0]
    size = (count + chunks - 1) // chunks
    for c in prange(chunks):
        scratch = _scratch(n, p, g0.dtype)
        bad = count
        for b in range(c * size, min(count, (c + 1) * size)):
            h0, h1, h2 = g0[b if wanted & SLOT0 else 0], g1[b if wanted & SLOT1 else 0], g2[b if wanted & SLOT2 else 0]
            h3, h4, h5 = g3[b if wanted & SLOT3 else 0], g4[b if wanted & SLOT4 else 0], g5[b if wanted & SLOT5 else 0]
            if mode == LOGPDF_DIAG:
                value = _diagonal_logpdf_grad(np.ascontiguousarray(a0[b]), np.ascontiguousarray(a1[b]), a2[b, :, 0],
                                              a3[b, :, 0], h0, h1, h2, h3, wanted, scratch)
            else:  # KL_DIAG; KL_STD_DIAG reads neither a3, a4 nor a5
                value = _diagonal_kl_grad(np.ascontiguousarray(a0[b]), a1[b, :, 0], a2[b, :, 0],
                                          np.ascontiguousarray(a3[b]), a4[b, :, 0], a5[b, :, 0], mode == KL_STD_DIAG,
                                          h0, h1, h2, h3, h4, h5, wanted, scratch)
            out[b] = value
            if not math.isfinite(out[b]):  # as stored; its gradients are NaN, as the lanes leave them
                out[b] = math.nan
                bad = min(bad, b)
                if wanted & SLOT0:
                    g0[b] = math.nan
                if wanted & SLOT1:
                    g1[b] = math.nan
                if wanted & SLOT2:
                    g2[b] = math.nan
                if wanted & SLOT3:
                    g3[b] = math.nan
                if wanted & SLOT4:
                    g4[b] = math.nan
                if wanted & SLOT5:
                    g5[b] = math.nan
        first_bad[c] = bad



def _diagonal_value(mode, a0, a1, a2, a3, a4, a5, row_weights, col_weights, columns):
    """The value of one item of a mode of diagonal covariances from its slots' items (variances
    as ``(n, 1)`` columns), for :func:`diagonal_batch`."""
    if mode == LOGPDF_DIAG:
        return _diagonal_logpdf(a0, a1, a2[:, 0], a3[:, 0], columns)
    # KL_DIAG; KL_STD_DIAG reads neither a3, a4 nor a5
    ok, t_u, t_v, quad, log_u, log_v = _diagonal_kl(a0, a1[:, 0], a2[:, 0], a3, a4[:, 0], a5[:, 0],
                                                    mode == KL_STD_DIAG, row_weights, col_weights, columns)
    return kl_of_terms(t_u, t_v, quad, log_u, log_v, a0.shape[0], a0.shape[1]) if ok else math.nan


_diagonal_value = njit(inline="always", **OPTIONS)(_diagonal_value)

@batch(_SIGNATURES)
def diagonal_batch(mode, a0, a1, a2, a3, a4, a5, out, first_bad, work):
    """``out[b]`` for every ``b`` of a mode of diagonal covariances (``KL_DIAG``,
    ``KL_STD_DIAG``, ``LOGPDF_DIAG``; variances as ``(n, 1)`` columns, as the slots hold
    them), one item at a time in float64 (``work`` is float64), in parallel chunks with
    ``first_bad`` as :func:`evaluate_batch`.

    Their work is one read of the means or points: an item read where it lies, in one pass
    with a running sum per column, streams at memory speed, where the lanes gather items side
    by side into scratch first and read them again (``fastmvn._batch._streamed`` says which
    items take this driver; ``fastmvn._config.DIAGONAL_KL_STREAM_MIN_SIDE`` has the figures)."""
    count = out.shape[0]
    n = a0.shape[1]
    p = a0.shape[2]
    chunks = first_bad.shape[0]
    size = (count + chunks - 1) // chunks
    for c in prange(chunks):
        row_weights = np.empty(n)
        col_weights = np.empty(p)
        columns = np.empty(p)
        bad = count
        for b in range(c * size, min(count, (c + 1) * size)):
            # The items as C-ordered matrices (themselves where they are, as stacks of whole items
            # are; else copies), typed so that the loop along a row vectorises: typed as strided,
            # a large item took 1.45 times one read, not 0.8.
            value = _diagonal_value(mode, np.ascontiguousarray(a0[b]), np.ascontiguousarray(a1[b]), a2[b],
                                    np.ascontiguousarray(a3[b]), a4[b], a5[b], row_weights, col_weights, columns)
            out[b] = value
            if not math.isfinite(out[b]):  # as stored: beyond float32's range fails in a float32 out
                out[b] = math.nan
                bad = min(bad, b)
        first_bad[c] = bad


_KRON_SIGNATURES = {(np.dtype(dtype.name), np.dtype("float64")):
                    void(boolean, *(types.Array(dtype, 3, "A", readonly=True),) * 10, dtype[:], int64[:], float64[:])
                    for dtype in (float64, float32)}


@batch(_KRON_SIGNATURES)
def kron_sum_batch(kl, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, out, first_bad, work):
    """``out[b]``, the KL (``kl``) or the log-density of Kronecker-sum normals
    ``N(vec M, V⊗U + B⊗A)`` for item ``b``, in parallel chunks as :func:`evaluate_batch`,
    in float64 (``work``).

    A KL reads ``a0 … a4`` as ``M₁, U₁, V₁, A₁, B₁`` and ``a5 … a9`` as the second
    distribution's; a log-density ``a0`` as ``X`` and ``a1 … a5`` as ``M, U, V, A, B``
    (``a6 … a9`` unused). Only the lower triangles of the covariances are read.
    """
    count = out.shape[0]
    n = a0.shape[1]
    p = a0.shape[2]
    chunks = first_bad.shape[0]
    size = (count + chunks - 1) // chunks
    lanes = min(lane_count(n, p, 8), max(size, 1))
    side = max(n, p)
    for c in prange(chunks):
        D = np.empty((n, p, lanes))
        U1 = np.empty((n, n, lanes))
        A1 = np.empty((n, n, lanes))
        Qu1 = np.empty((n, n, lanes))
        V1 = np.empty((p, p, lanes))
        B1 = np.empty((p, p, lanes))
        Qv1 = np.empty((p, p, lanes))
        T = np.empty((side, side, lanes))
        ru1 = np.empty((n, lanes))
        rv1 = np.empty((p, lanes))
        vals_u1 = np.empty((n, lanes))
        vals_v1 = np.empty((p, lanes))
        v = np.empty((KRON_SCALARS + JACOBI_ROWS, lanes))
        res = np.empty(lanes)
        U2 = np.empty((n, n, lanes))
        A2 = np.empty((n, n, lanes))
        Qu2 = np.empty((n, n, lanes))
        V2 = np.empty((p, p, lanes))
        B2 = np.empty((p, p, lanes))
        Qv2 = np.empty((p, p, lanes))
        ru2 = np.empty((n, lanes))
        rv2 = np.empty((p, lanes))
        vals_u2 = np.empty((n, lanes))
        vals_v2 = np.empty((p, lanes))
        au = np.empty((n, lanes))  # a, e, c and f of kron_sum_kl
        eu = np.empty((n, lanes))
        cv = np.empty((p, lanes))
        fv = np.empty((p, lanes))
        bad = count
        stop = min(count, (c + 1) * size)
        for start in range(c * size, stop, lanes):
            m = min(lanes, stop - start)
            if kl:
                gather(a0, a5, start, D, False, True, m)
                gather(a1, a1, start, U1, True, False, m)
                gather(a2, a2, start, V1, True, False, m)
                gather(a3, a3, start, A1, True, False, m)
                gather(a4, a4, start, B1, True, False, m)
                gather(a6, a6, start, U2, True, False, m)
                gather(a7, a7, start, V2, True, False, m)
                gather(a8, a8, start, A2, True, False, m)
                gather(a9, a9, start, B2, True, False, m)
                kron_sum_kl(D, U1, V1, A1, B1, U2, V2, A2, B2, Qu1, Qv1, Qu2, Qv2, T, ru1, rv1, ru2, rv2,
                            vals_u1, vals_v1, vals_u2, vals_v2, au, cv, eu, fv, v, res, m, n, p)
            else:
                gather(a0, a1, start, D, False, True, m)
                gather(a2, a2, start, U1, True, False, m)
                gather(a3, a3, start, V1, True, False, m)
                gather(a4, a4, start, A1, True, False, m)
                gather(a5, a5, start, B1, True, False, m)
                kron_sum_logpdf(D, U1, V1, A1, B1, Qu1, Qv1, T, ru1, rv1, vals_u1, vals_v1, v, res, m, n, p)
            bad = min(bad, finish(res, out, start, m, count))
        first_bad[c] = bad
