"""The value kernels: how the six slots are gathered into lane scratch, the quantity of each
mode (KL, log-determinant, trace, Mahalanobis form, log-density) and :func:`evaluate`."""

import math

from .._jit import item
from .._modes import (KL_CHOL, KL_COV, KL_DIAG, KL_STD_CHOL, KL_STD_COV, KL_STD_DIAG, LOGDET,
                      LOGPDF_CHOL, LOGPDF_DIAG, MAHALANOBIS, MAHALANOBIS_CHOL, TRACE_SOLVE)
from .lanes import (cholesky, diagonal_sum, fill, fold, fold_reciprocal, like, log_diagonal, log_diagonals, narrow,
                    log_of_fold, lower_norm2, reciprocal_diagonal, solve_rows, trace_tri, whitened_norm2)
from .scratch import (FOLD, LOG_RATIO_U, LOG_RATIO_V, LOGDET_U, LOGDET_V, MEANS_DIFFERENCE, QUAD, SLOT0, SLOT1,
                      SLOT2, SLOT3, SLOT4, SLOT5, SQUARED_NORM, TRACE_U, TRACE_V, X_DIFFERENCE)

_LOG_2PI = math.log(2.0 * math.pi)


@item
def slot_layout(mode, grad):
    """How :func:`gather_slots` fills the slots of ``mode`` (for its gradient too if ``grad``):
    bit ``SLOTk`` set, slot ``k`` is a covariance or a factor, of which only the lower
    triangle is read; :data:`MEANS_DIFFERENCE` or :data:`X_DIFFERENCE`, a difference is
    gathered in one pass; :data:`SQUARED_NORM`, only ``‖a0‖²`` is (the value of a KL to
    MN(0, I, I) needs no more of the mean, and summing it from the input takes a quarter
    less time than copying it)."""
    if mode == KL_COV or mode == KL_CHOL:
        return SLOT1 | SLOT2 | SLOT4 | SLOT5 | MEANS_DIFFERENCE
    if mode == KL_DIAG:
        return MEANS_DIFFERENCE
    standard = 0 if grad else SQUARED_NORM
    if mode == KL_STD_COV or mode == KL_STD_CHOL:
        return SLOT1 | SLOT2 | standard
    if mode == LOGDET or mode == TRACE_SOLVE:
        return SLOT0
    if mode == KL_STD_DIAG:
        return standard
    if mode == LOGPDF_DIAG:
        return X_DIFFERENCE  # the variances are (n, 1) columns, read whole
    return SLOT2 | SLOT3 | X_DIFFERENCE  # LOGPDF, LOGPDF_CHOL, MAHALANOBIS, MAHALANOBIS_CHOL


@item(inline=True)
def copy_items(a, b, start, S, lower, subtract, m, rows, cols):
    """``S[i, j, l] = a[start + l, i, j]`` (``− b[start + l, i, j]`` if ``subtract``) for
    ``l < m``, the lower triangle only if ``lower``."""
    for l in range(m):
        for i in range(rows):
            for j in range(i + 1 if lower else cols):
                x = float(a[start + l, i, j])
                if subtract:
                    x -= float(b[start + l, i, j])
                S[i, j, l] = x


@item
def gather(a, b, start, S, lower, subtract, m):
    """Items ``start … start + m − 1`` of ``a`` (minus those of ``b`` if ``subtract``) into
    the lanes of ``S``, the lower triangle only if ``lower``. 4×4 items, the commonest
    latent, and 2×2 items are copied by loops of fixed length, which unroll: a quarter less
    time than loops of a length read at run time at 4×4, a third at 2×2."""
    rows = a.shape[1]
    cols = a.shape[2]
    if rows == 4 and cols == 4:
        copy_items(a, b, start, S, lower, subtract, m, 4, 4)
    elif rows == 2 and cols == 2:
        copy_items(a, b, start, S, lower, subtract, m, 2, 2)
    else:
        copy_items(a, b, start, S, lower, subtract, m, rows, cols)


@item(inline=True)
def item_norms(a, start, acc, m, rows, cols):
    """``acc[l] = ‖a[start + l]‖_F²`` for ``l < m``, in float64: one sum per row, so that the
    rows' additions overlap."""
    for l in range(m):
        total = 0.0
        for i in range(rows):
            row = 0.0
            for j in range(cols):
                x = float(a[start + l, i, j])
                row += x * x
            total += row
        acc[l] = total


@item
def squared_norms(a, start, acc, m):
    """``acc[l] = ‖a[start + l]‖_F²`` for ``l < m``, read from the input itself; 4×4 and 2×2
    items by loops of fixed length, as in :func:`gather`."""
    if a.shape[1] == 4 and a.shape[2] == 4:
        item_norms(a, start, acc, m, 4, 4)
    elif a.shape[1] == 2 and a.shape[2] == 2:
        item_norms(a, start, acc, m, 2, 2)
    else:
        item_norms(a, start, acc, m, a.shape[1], a.shape[2])


@item
def gather_slots(a0, a1, a2, a3, a4, a5, start, S0, S1, S2, S3, S4, S5, layout, quad, m):
    """Items ``start … start + m − 1`` of the six slots into their lane scratch, as the
    ``layout`` of :func:`slot_layout` says (``quad[l] = ‖a0[start + l]‖²`` for
    :data:`SQUARED_NORM`)."""
    if layout & X_DIFFERENCE:
        gather(a0, a1, start, S0, False, True, m)
    else:
        if layout & SQUARED_NORM:
            squared_norms(a0, start, quad, m)
        elif not layout & MEANS_DIFFERENCE:
            gather(a0, a0, start, S0, layout & SLOT0, False, m)
        gather(a1, a1, start, S1, layout & SLOT1, False, m)
    gather(a2, a2, start, S2, layout & SLOT2, False, m)
    gather(a3, a0, start, S3, layout & SLOT3, layout & MEANS_DIFFERENCE, m)
    gather(a4, a4, start, S4, layout & SLOT4, False, m)
    gather(a5, a5, start, S5, layout & SLOT5, False, m)


@item
def finish(res, out, start, m, none):
    """``out[start + l] = res[l]`` (NaN where not finite, in ``res`` too, so that its
    gradients are NaN); returns the first index whose result is not finite, or ``none``. A
    result is judged as stored: one computed in float64 beyond float32's range is infinite in
    a float32 ``out``, and fails as it would beyond float64's."""
    bad = none
    for l in range(m):
        out[start + l] = res[l]
        if not math.isfinite(out[start + l]):
            out[start + l] = math.nan
            res[l] = math.nan
            bad = min(bad, start + l)
    return bad


@item
def kl_value(res, trace_u, trace_v, quad, log_ratio_u, log_ratio_v, m, n, p):
    """``res = ½(t_u t_v + quad − np + p·log(|U2|/|U1|) + n·log(|V2|/|V1|))``, never negative:
    a KL is not, and rounding below zero (of two equal distributions, say) gives 0."""
    for l in range(m):
        # Halved term by term, which is exact: a KL near the float range does not overflow in its sum.
        kl = (0.5 * trace_u[l]) * trace_v[l] + 0.5 * quad[l] - 0.5 * n * p + (0.5 * p) * log_ratio_u[l] \
            + (0.5 * n) * log_ratio_v[l]
        res[l] = 0.0 if (kl < 0.0 and kl > -math.inf) else kl  # -inf is a failure, kept


@item
def logpdf_value(res, quad, logdet_u, logdet_v, m, n, p):
    """``res = −½(np log 2π + p log|U| + n log|V| + quad)``."""
    for l in range(m):
        res[l] = -0.5 * (n * p * _LOG_2PI + p * logdet_u[l] + n * logdet_v[l] + quad[l])


@item
def diagonal_terms(var1, var2, r2, trace, logratio, t, m, n):
    """``trace = Σ var1/var2``, ``logratio = log Π var2/var1`` and ``r2 = 1/var2`` for
    variances held as ``(n, 1)`` columns; NaN where a variance is not positive. ``var2`` and
    ``1/var1`` are folded in one by one: their ratio could overflow where its log does not."""
    one = like(1.0, var2)
    nan = like(math.nan, var2)
    fill(t, 1.0, m)
    fill(trace, 0.0, m)
    fill(logratio, 0.0, m)
    for i in range(n):
        for l in range(m):
            x1 = var1[i, 0, l]
            x2 = var2[i, 0, l]
            x2 = x2 if (x1 > 0.0 and x2 > 0.0) else nan
            ri = one / x2
            r2[i, l] = ri
            trace[l] += x1 * ri
            fold(t, logratio, l, x2, narrow(var2))
            fold_reciprocal(t, logratio, l, x1, narrow(var1))
    log_of_fold(t, logratio, 1.0, m)


@item
def diagonal_sum_log(var, trace, r, acc, t, scale, m, n):
    """``acc = scale · log Π var`` for variances held as ``(n, 1)`` columns, with ``trace = Σ var``
    and ``r = 1/var`` where they are not None; NaN where a variance is not positive."""
    fill(t, 1.0, m)
    if trace is not None:
        fill(trace, 0.0, m)
    fill(acc, 0.0, m)
    for i in range(n):
        for l in range(m):
            x = var[i, 0, l]
            x = x if x > 0.0 else like(math.nan, var)
            if trace is not None:
                trace[l] += x
            if r is not None:
                r[i, l] = like(1.0, var) / x
            fold(t, acc, l, x, narrow(var))
    log_of_fold(t, acc, scale, m)


@item
def scaled_quad(W, Y, ru, rv, quad, m, n, p):
    """``W = Y / (u vᵀ)`` (``W`` may be ``Y``) and ``quad = Σ Y² / (u vᵀ)`` for ``ru = 1/u``, ``rv = 1/v``."""
    fill(quad, 0.0, m)
    for i in range(n):
        for c in range(p):
            for l in range(m):
                y = Y[i, c, l]
                w = y * ru[i, l] * rv[c, l]
                W[i, c, l] = w
                quad[l] += y * w


@item
def both_factors(S1, S2, S4, S5, ru1, rv1, ru2, rv2, v, factor, m, n, p):
    """The row and column factors of both distributions: Cholesky factors of the covariances
    ``S1, S2, S4, S5`` in place if ``factor`` (else they are factors already), their reciprocal
    diagonals ``ru1 … rv2``, and ``v[LOG_RATIO_U] = log(|U2|/|U1|)``, ``v[LOG_RATIO_V] = log(|V2|/|V1|)``
    (as :func:`log_diagonals` combines them: ``p·v[LOG_RATIO_U] + n·v[LOG_RATIO_V]`` is what
    :func:`kl_value` takes)."""
    if factor:
        cholesky(S1, ru1, m, n)
        cholesky(S2, rv1, m, p)
        cholesky(S4, ru2, m, n)
        cholesky(S5, rv2, m, p)
    else:
        reciprocal_diagonal(S1, ru1, m, n)
        reciprocal_diagonal(S2, rv1, m, p)
        reciprocal_diagonal(S4, ru2, m, n)
        reciprocal_diagonal(S5, rv2, m, p)
    log_diagonals(S4, ru1, S5, rv1, 2.0, v[LOG_RATIO_U], v[LOG_RATIO_V], v[FOLD], m, n, p)


@item
def own_factors(S1, S2, ru1, rv1, v, factor, m, n, p):
    """:func:`both_factors` for one distribution against MN(0, I, I): ``v[LOG_RATIO_U] = −log|U1|``,
    ``v[LOG_RATIO_V] = −log|V1|``."""
    if factor:
        cholesky(S1, ru1, m, n)
        cholesky(S2, rv1, m, p)
    else:
        reciprocal_diagonal(S1, ru1, m, n)
        reciprocal_diagonal(S2, rv1, m, p)
    log_diagonals(S1, None, S2, None, -2.0, v[LOG_RATIO_U], v[LOG_RATIO_V], v[FOLD], m, n, p)


@item
def kl_factored(S1, S2, S3, S4, ru2, S5, rv2, v, res, m, n, p):
    """KL between two matrix normals given by the Cholesky factors ``S1, S2, S4, S5`` (with
    ``ru2, rv2`` the reciprocal diagonals of the second pair) and the difference of the
    means ``S3``, with ``v[0:2]`` from :func:`both_factors`; overwrites ``S1``, ``S2``, ``S3``."""
    trace_tri(S4, ru2, S1, v[TRACE_U], m, n)
    trace_tri(S5, rv2, S2, v[TRACE_V], m, p)
    whitened_norm2(S3, S4, ru2, S5, rv2, v[QUAD], m, n, p)
    kl_value(res, v[TRACE_U], v[TRACE_V], v[QUAD], v[LOG_RATIO_U], v[LOG_RATIO_V], m, n, p)


@item(inline=True)
def evaluate(mode, S0, S1, S2, S3, S4, S5, ru1, rv1, ru2, rv2, v, res, m, n, p):
    """``res[l]``: the quantity ``mode`` names for lane ``l`` of the slots ``S0..S5``
    (overwritten); ``ru1 … rv2`` (``(n or p, lanes)``) and ``v`` (``(SCALARS, lanes)``) are
    scratch. See :mod:`fastmvn._modes` for what each slot holds, and :func:`slot_layout` for
    the differences gathered in their place (``S3 = M2 − M1`` for a KL, ``S0 = X − M`` for a
    density) and for ``v[QUAD] = ‖M1‖²``, gathered in place of ``S0`` for a KL to MN(0, I, I)."""
    if mode == KL_COV:
        both_factors(S1, S2, S4, S5, ru1, rv1, ru2, rv2, v, True, m, n, p)
        kl_factored(S1, S2, S3, S4, ru2, S5, rv2, v, res, m, n, p)
    elif mode == KL_CHOL:
        both_factors(S1, S2, S4, S5, ru1, rv1, ru2, rv2, v, False, m, n, p)
        kl_factored(S1, S2, S3, S4, ru2, S5, rv2, v, res, m, n, p)
    elif mode == KL_DIAG:
        diagonal_terms(S1, S4, ru2, v[TRACE_U], v[LOG_RATIO_U], v[FOLD], m, n)
        diagonal_terms(S2, S5, rv2, v[TRACE_V], v[LOG_RATIO_V], v[FOLD], m, p)
        scaled_quad(S3, S3, ru2, rv2, v[QUAD], m, n, p)
        kl_value(res, v[TRACE_U], v[TRACE_V], v[QUAD], v[LOG_RATIO_U], v[LOG_RATIO_V], m, n, p)
    elif mode == KL_STD_COV:
        diagonal_sum(S1, v[TRACE_U], m, n)
        diagonal_sum(S2, v[TRACE_V], m, p)
        own_factors(S1, S2, ru1, rv1, v, True, m, n, p)
        kl_value(res, v[TRACE_U], v[TRACE_V], v[QUAD], v[LOG_RATIO_U], v[LOG_RATIO_V], m, n, p)
    elif mode == KL_STD_CHOL:
        own_factors(S1, S2, ru1, rv1, v, False, m, n, p)
        lower_norm2(S1, v[TRACE_U], m, n)
        lower_norm2(S2, v[TRACE_V], m, p)
        kl_value(res, v[TRACE_U], v[TRACE_V], v[QUAD], v[LOG_RATIO_U], v[LOG_RATIO_V], m, n, p)
    elif mode == KL_STD_DIAG:
        diagonal_sum_log(S1, v[TRACE_U], None, v[LOG_RATIO_U], v[FOLD], -1.0, m, n)
        diagonal_sum_log(S2, v[TRACE_V], None, v[LOG_RATIO_V], v[FOLD], -1.0, m, p)
        kl_value(res, v[TRACE_U], v[TRACE_V], v[QUAD], v[LOG_RATIO_U], v[LOG_RATIO_V], m, n, p)
    elif mode == LOGPDF_DIAG:
        diagonal_sum_log(S2, None, ru2, v[LOGDET_U], v[FOLD], 1.0, m, n)
        diagonal_sum_log(S3, None, rv2, v[LOGDET_V], v[FOLD], 1.0, m, p)
        scaled_quad(S0, S0, ru2, rv2, v[QUAD], m, n, p)
        logpdf_value(res, v[QUAD], v[LOGDET_U], v[LOGDET_V], m, n, p)
    elif mode == LOGDET:
        cholesky(S0, ru1, m, n)
        log_diagonal(S0, None, 2.0, res, v[FOLD], m, n)
    elif mode == TRACE_SOLVE:
        # tr(a⁻¹ b) = tr(L⁻ᵀ L⁻¹ b); a failed factor leaves NaN in ru1 and so in the result.
        cholesky(S0, ru1, m, n)
        solve_rows(S0, ru1, S1, m, n, n, False)
        solve_rows(S0, ru1, S1, m, n, n, True)
        diagonal_sum(S1, res, m, n)
    else:  # LOGPDF, LOGPDF_CHOL, MAHALANOBIS, MAHALANOBIS_CHOL
        if mode == LOGPDF_CHOL or mode == MAHALANOBIS_CHOL:
            reciprocal_diagonal(S2, ru2, m, n)
            reciprocal_diagonal(S3, rv2, m, p)
        else:
            cholesky(S2, ru2, m, n)
            cholesky(S3, rv2, m, p)
        if mode == MAHALANOBIS or mode == MAHALANOBIS_CHOL:
            whitened_norm2(S0, S2, ru2, S3, rv2, res, m, n, p)
        else:
            log_diagonals(S2, None, S3, None, 2.0, v[LOGDET_U], v[LOGDET_V], v[FOLD], m, n, p)
            whitened_norm2(S0, S2, ru2, S3, rv2, v[QUAD], m, n, p)
            logpdf_value(res, v[QUAD], v[LOGDET_U], v[LOGDET_V], m, n, p)
