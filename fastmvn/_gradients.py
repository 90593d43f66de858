"""The fused gradients on the CPU: ``<name>_value_and_grad`` for each function of the table
with a gradient (the KLs and the log-densities), and the plumbing they share with
:mod:`fastmvn.torch` and :mod:`fastmvn.cuda` (which gradients to compute, ``out=`` and the
sums over broadcast axes).

The kernels write one gradient per item; an argument broadcast over batch axes gets the sum
over those axes, taken afterwards in NumPy (:func:`reduce_to`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import _pool
from ._arguments import bind, check, check_errors, check_out
from ._batch import direct, evaluate_grad, planned, report, slot
from ._docs import KEYWORDS, filled
from ._table import CHOL, FUNCTIONS

if TYPE_CHECKING:
    from ._typing import ArrayLike, Errors, GradOut, ValueAndGrad, Wrt

__all__ = ["kl_value_and_grad", "kl_chol_value_and_grad", "kl_diag_value_and_grad", "logpdf_value_and_grad",
           "logpdf_chol_value_and_grad", "logpdf_diag_value_and_grad", "value_and_grad", "computed", "reduce_to"]


def reduce_to(grad, shape):
    """``grad`` (``(*batch, *core)``) summed over the axes along which an argument of
    ``shape`` was broadcast, so that it has ``shape``; summed in float64."""
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, size in enumerate(shape)
                                      if size == 1 and grad.shape[lead + i] != 1)
    if not axes:
        return grad
    return grad.sum(axis=axes, dtype=np.float64, keepdims=True).reshape(shape).astype(grad.dtype, copy=False)


def _grad_out(out, args, given, computed, dtype, batch_shape):
    """The arrays of ``out = (value, grads)`` checked against what the call returns (``args``
    padded with None to one per parameter of the function, of which those ``given`` were not
    None and those ``computed`` get a gradient): the value's array (or None) and one gradient
    array per parameter (None where ``grads`` has None)."""
    count = len(args)
    if out is None:
        return None, [None] * count
    try:
        value, grads = out
        grads = tuple(grads)
    except (TypeError, ValueError):
        raise ValueError(f"out must be a pair (value, grads) as the function returns it, grads a tuple of {count} "
                         "arrays or None") from None
    if len(grads) != count:
        raise ValueError(f"out[1] must hold {count} gradients (or None), one per argument; got {len(grads)}")
    outputs = [("out[0] (the value)", value)]
    check_out(value, dtype, batch_shape, outputs[0][0])
    for k, (grad, arg) in enumerate(zip(grads, args)):
        if grad is not None and not given[k]:
            raise ValueError(f"out[1][{k}] must be None: that argument was passed as None")
        if grad is not None and not computed[k]:
            raise ValueError(f"out[1][{k}] must be None: the gradient of {arg.name} is not asked for (wrt)")
        if grad is not None:
            outputs.append((f"out[1][{k}] (the gradient of {arg.name})", grad))
            check_out(grad, dtype, arg.shape, outputs[-1][0])
    _check_apart([(name, array) for name, array in outputs if array is not None])
    return value, list(grads)


def _check_apart(outputs):
    """No two of ``outputs`` (pairs of a name and an array) share memory: the kernels would
    write both results into it, and one would be lost. Exact (``np.shares_memory``), not by
    bounds: interleaved views that share no element, such as two columns of one array, are
    apart, and the arrays are few and of few dimensions."""
    for i, (name, array) in enumerate(outputs):
        for other_name, other in outputs[:i]:
            if np.shares_memory(array, other):
                raise ValueError(f"{other_name} and {name} share memory; each result needs an array of its own")


def computed(function, given, wrt):
    """Which gradients to compute, one flag per argument: those of the arguments ``given`` (not None), or
    only those that ``wrt`` names (a name or a sequence of names), each checked."""
    if wrt is None:
        return list(given)
    names = function.names
    wrt = [wrt] if isinstance(wrt, str) else list(wrt)
    for name in wrt:
        if name not in names:
            raise ValueError(f"wrt names {name!r}; the arguments are {', '.join(names)}")
        if not given[names.index(name)]:
            raise ValueError(f"wrt names {name}, which was passed as None and has no gradient")
    return [name in wrt for name in names]


def value_and_grad(function, values, errors, reduce=True, out=None, wrt=None, lower=True):
    """The value of ``function`` (a table entry with a gradient) and its gradient with respect
    to each given argument.

    With ``reduce=False`` each gradient has the broadcast batch shape in front of the core
    shape (one gradient per item, as a caller that weights the items needs); otherwise
    each has its argument's shape. ``out = (value, grads)``: arrays to write into (``reduce``
    only); the kernels write straight into those of the batch shape that :func:`fastmvn._batch.direct`
    allows. ``wrt`` names the arguments whose gradients to compute (all by default): the
    others are None, and neither allocated nor stored. With ``lower=False`` the factors are
    upper ones, read through :func:`fastmvn._arguments.lower_factors`; their gradients, and the arrays of
    ``out`` for them, are the transposes of the lower factors' (views, as the factors).

    A small call without ``lower=False`` runs the plan made by the first call of its shapes
    and gradients (:func:`fastmvn._batch.planned`), which broadcasts none of its arguments:
    every gradient has its argument's shape, reduced or not; into ``out``'s arrays where it
    can write into them as they are (:meth:`fastmvn._batch._Plan.outputs`).
    """
    given = [value is not None for value in values]
    wanted = computed(function, given, wrt)
    result = planned(function, values, out, errors, lower, gradients=tuple(wanted))
    if result is not None:
        return result
    check_errors(errors)
    args, mode = bind(function, values, lower=lower)
    dtype, batch_shape = check(args)
    padding = [None] * (len(function.params) - len(args))  # the arguments a standard mode leaves out
    value_out, given_out = _grad_out(out, args + padding, given, wanted, dtype, batch_shape)
    upper = [not lower and arg is not None and arg.kind == CHOL for arg in args + padding]
    grads_out = [np.swapaxes(g, -1, -2) if u and g is not None else g for g, u in zip(given_out, upper)]
    slots = [slot(arg, dtype, batch_shape) for arg in args]
    value = value_out if direct(value_out, args) else np.empty(batch_shape, dtype)
    placeholder = np.empty((1, 1, 1), dtype)
    grads, placed = [], []
    for arg, item, target, wants in zip(args + padding, slots + padding, grads_out, wanted):
        fits = target is not None and arg.batch_shape == batch_shape and direct(target, args)
        placed.append(fits)
        grads.append(target.reshape(item.shape) if fits else _pool.empty(item.shape, dtype) if wants else placeholder)
    unused = 6 - len(grads)  # the drivers take six slots' gradients
    bad = evaluate_grad(mode, slots, value, grads + [placeholder] * unused, wanted + [False] * unused)
    if value_out is not None and value is not value_out:
        value_out[...] = value
    if bad is not None and errors == "raise":
        raise report(args, slots, bad, batch_shape)
    result = []
    for arg, grad, wants, target, fits in zip(args + padding, grads, wanted, grads_out, placed):
        if not wants:
            result.append(None)
            continue
        if fits:
            result.append(target)
            continue
        if len(arg.axes) == 1:
            grad = grad[..., 0]
        grad = reduce_to(grad, arg.shape) if reduce else grad
        if target is not None:
            target[...] = grad
            grad = target
        result.append(grad)
    if not lower:  # the upper factors' gradients; out's own arrays, not the views written through
        result = [mine if mine is not None else np.swapaxes(grad, -1, -2) if u and grad is not None else grad
                  for grad, mine, u in zip(result, given_out, upper)]
    if value_out is not None:
        return value_out, tuple(result)
    return (value if value.ndim else value[()]), tuple(result)


@filled("kl", keywords=["grad_errors", "grad_out", "wrt"])
def kl_value_and_grad(mean1: ArrayLike, rowcov1: ArrayLike, colcov1: ArrayLike, mean2: ArrayLike | None = None,
                      rowcov2: ArrayLike | None = None, colcov2: ArrayLike | None = None, *, errors: Errors = "raise",
                      out: GradOut | None = None, wrt: Wrt = None) -> ValueAndGrad:
    r"""The KL of :func:`kl` and its gradient with respect to each argument, batched.

    Value and gradient come from one fused pass per item through Cholesky factors and
    triangular solves, by the closed forms derived in ``docs/gradients.md``. With
    ``t_u = tr(U2⁻¹U1)``, ``t_v = tr(V2⁻¹V1)`` and ``D = M2 − M1``:

    .. math::

        \frac{\partial KL}{\partial M_2} = -\frac{\partial KL}{\partial M_1} = U_2^{-1} D V_2^{-1},\quad
        \frac{\partial KL}{\partial U_1} = \tfrac12\big(t_v U_2^{-1} - p\,U_1^{-1}\big),\quad
        \frac{\partial KL}{\partial U_2} = \tfrac12\big(p\,U_2^{-1} - t_v U_2^{-1} U_1 U_2^{-1}
        - U_2^{-1} D V_2^{-1} D^\top U_2^{-1}\big),

    and the same for ``V`` with ``t_u``, ``n`` and ``Dᵀ``.

    The gradient with respect to a covariance is the symmetric matrix ``G`` for which
    ``dKL = Σᵢⱼ Gᵢⱼ dUᵢⱼ`` for every symmetric perturbation ``dU``: the gradient of the
    formula above with all ``n²`` entries taken as independent, which is symmetric at a
    symmetric ``U`` (``torch.linalg.cholesky`` under autograd gives the same). It is not
    the derivative with respect to the stored lower-triangle entries alone (the entries
    the kernels read), which is ``2 Gᵢⱼ`` below the diagonal and ``Gᵢᵢ`` on it.

    %(parameters)s

    Returns
    -------
    kl : (...) ndarray or scalar
        The divergences over the broadcast batch shape, as :func:`kl` returns them.
    grads : tuple of six ndarray or None
        ``∂ sum(kl) / ∂ argument`` for ``(mean1, rowcov1, colcov1, mean2, rowcov2, colcov2)``
        in that order, each of its argument's shape as passed (so the gradient of an
        argument broadcast over batch axes is summed over those axes) and of the result
        dtype; ``None`` for an argument passed as ``None`` or left out of ``wrt``.

    Raises
    ------
    numpy.linalg.LinAlgError, ValueError, TypeError, FloatingPointError
        As in :func:`kl`, naming the argument and the batch index.
    %(raises_grad_out)s

    Notes
    -----
    The kernels write one gradient per item; a gradient of an argument broadcast over
    batch axes is then summed over them in NumPy, which costs one temporary array of
    the broadcast batch shape times the argument's core shape (8 bytes a number in
    float64: 128 MB for one 4×4 prior shared by a million items).

    See Also
    --------
    kl_chol_value_and_grad, kl_diag_value_and_grad, fastmvn.torch.kl

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> mean, rowcov, colcov = np.ones((5, 2, 3)), 2 * np.eye(2), np.eye(3)
    >>> value, grads = fm.kl_value_and_grad(mean, rowcov, colcov)   # against MN(0, I, I)
    >>> value.shape, grads[0].shape, grads[3]
    ((5,), (5, 2, 3), None)
    >>> grads[1]           # ½(tr(V1) I − p U1⁻¹) = ¾ I per item, summed over the 5 items
    array([[3.75, 0.  ],
           [0.  , 3.75]])
    >>> again = fm.kl_value_and_grad(2 * mean, rowcov, colcov, out=(value, grads))  # same arrays
    >>> again[0] is value, again[1][0] is grads[0], float(grads[0][0, 0, 0])  # ∂/∂mean1 = mean1
    (True, True, 2.0)
    >>> _, first = fm.kl_value_and_grad(mean, rowcov, colcov, mean, rowcov, colcov, wrt=("mean1", "rowcov1"))
    >>> [grad is None for grad in first]        # the other four are neither computed nor stored
    [False, False, True, True, True, True]
    """
    return value_and_grad(FUNCTIONS["kl"], (mean1, rowcov1, colcov1, mean2, rowcov2, colcov2), errors, out=out, wrt=wrt)


@filled("kl_chol", keywords=["grad_errors", "grad_out", "wrt", "grad_lower"])
def kl_chol_value_and_grad(mean1: ArrayLike, rowchol1: ArrayLike, colchol1: ArrayLike,
                           mean2: ArrayLike | None = None, rowchol2: ArrayLike | None = None,
                           colchol2: ArrayLike | None = None, *, errors: Errors = "raise", out: GradOut | None = None,
                           wrt: Wrt = None, lower: bool = True) -> ValueAndGrad:
    r"""The KL of :func:`kl_chol` and its gradient with respect to each argument, batched.

    One fused pass per item, no factorisation, by the closed forms derived in
    ``docs/gradients.md``. With ``P = rowchol``, ``Q = colchol``, ``A = P2⁻¹P1``,
    ``B = Q2⁻¹Q1``, ``t_u = ‖A‖²``, ``t_v = ‖B‖²`` and ``Z = P2⁻¹ D Q2⁻ᵀ`` (``D = M2 − M1``):

    .. math::

        \frac{\partial KL}{\partial M_2} = -\frac{\partial KL}{\partial M_1} = P_2^{-\top} Z Q_2^{-1},\quad
        \frac{\partial KL}{\partial P_1} = \operatorname{tril}\big(t_v P_2^{-\top} A\big)
        - p\operatorname{diag}(1/P_{1,ii}),\quad
        \frac{\partial KL}{\partial P_2} = \operatorname{tril}\big(P_2^{-\top}(p I - t_v A A^\top - Z Z^\top)\big),

    and the same for ``Q`` with ``t_u``, ``n``, ``B`` and ``ZᵀZ``. The factor gradients
    are lower triangular: the entries above the diagonal are never read, so their
    gradient is zero. With ``lower=False`` the factors are the upper ones ``R = Pᵀ``, and
    their gradients the transposes of these: upper triangular.

    %(parameters)s

    Returns
    -------
    kl : (...) ndarray or scalar
        The divergences, as :func:`kl_chol` returns them.
    grads : tuple of six ndarray or None
        The gradients for ``(mean1, rowchol1, colchol1, mean2, rowchol2, colchol2)``, as in
        :func:`kl_value_and_grad`.

    Raises
    ------
    numpy.linalg.LinAlgError, ValueError, TypeError, FloatingPointError
        As in :func:`kl_chol`, naming the argument and the batch index.
    %(raises_grad_out)s

    Notes
    -----
    Broadcast arguments cost memory as in :func:`kl_value_and_grad`.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> value, grads = fm.kl_chol_value_and_grad(np.zeros((1, 1)), [[2.0]], [[1.0]])
    >>> round(float(value), 12)                  # ½(4 − 1 − 2 log 2)
    0.80685281944
    >>> grads[1], grads[2]                       # l q² − 1/l and l² q − 1/q at l = 2, q = 1
    (array([[1.5]]), array([[3.]]))
    """
    return value_and_grad(FUNCTIONS["kl_chol"], (mean1, rowchol1, colchol1, mean2, rowchol2, colchol2), errors, out=out, wrt=wrt,
                           lower=lower)


@filled("kl_diag", keywords=["grad_errors", "grad_out", "wrt"])
def kl_diag_value_and_grad(mean1: ArrayLike, rowvar1: ArrayLike, colvar1: ArrayLike, mean2: ArrayLike | None = None,
                           rowvar2: ArrayLike | None = None, colvar2: ArrayLike | None = None, *,
                           errors: Errors = "raise", out: GradOut | None = None, wrt: Wrt = None) -> ValueAndGrad:
    r"""The KL of :func:`kl_diag` and its gradient with respect to each argument, batched.

    With ``U = diag(a)``, ``V = diag(b)``, ``t_u = Σ a1/a2``, ``t_v = Σ b1/b2`` and
    ``D = M2 − M1`` (``docs/gradients.md``):

    .. math::

        \frac{\partial KL}{\partial M_2} = -\frac{\partial KL}{\partial M_1} = \frac{D_{ic}}{a_{2i} b_{2c}},\quad
        \frac{\partial KL}{\partial a_{1i}} = \tfrac12\Big(\frac{t_v}{a_{2i}} - \frac{p}{a_{1i}}\Big),\quad
        \frac{\partial KL}{\partial a_{2i}} = \frac{1}{2a_{2i}}\Big(p - t_v\frac{a_{1i}}{a_{2i}}
        - \sum_c \frac{D_{ic}^2}{a_{2i} b_{2c}}\Big),

    and the same for ``b`` with ``t_u``, ``n`` and sums over rows.

    %(parameters)s

    Returns
    -------
    kl : (...) ndarray or scalar
        The divergences, as :func:`kl_diag` returns them.
    grads : tuple of six ndarray or None
        The gradients for ``(mean1, rowvar1, colvar1, mean2, rowvar2, colvar2)``, as in
        :func:`kl_value_and_grad`.

    Raises
    ------
    numpy.linalg.LinAlgError, ValueError, TypeError, FloatingPointError
        As in :func:`kl_diag`, naming the argument and the batch index.
    %(raises_grad_out)s

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> value, grads = fm.kl_diag_value_and_grad(np.zeros((1, 1)), [2.0], [1.0])
    >>> grads[1], grads[2]                       # ½(b − 1/a) and ½(a − 1/b) at a = 2, b = 1
    (array([0.25]), array([0.5]))
    """
    return value_and_grad(FUNCTIONS["kl_diag"], (mean1, rowvar1, colvar1, mean2, rowvar2, colvar2), errors, out=out, wrt=wrt)



_DENSITY_WRT = (KEYWORDS["wrt"][0], "The names of the arguments whose gradients to compute (``\"x\"``, ``\"mean\"`` "
                "and the two covariances, factors or variances); by default every argument not passed as None. The other "
                "gradients are None and cost neither memory nor stores: a likelihood fitted in ``mean`` alone, "
                "``wrt=\"mean\"``, stores a quarter of the bytes or less.")


@filled("logpdf", keywords=["grad_errors", "grad_out"], extra=[_DENSITY_WRT])
def logpdf_value_and_grad(x: ArrayLike, mean: ArrayLike | None, rowcov: ArrayLike, colcov: ArrayLike, *,
                          errors: Errors = "raise", out: GradOut | None = None, wrt: Wrt = None) -> ValueAndGrad:
    r"""The log-density of :func:`logpdf` and its gradient with respect to each argument, batched.

    Value and gradient come from one fused pass per item through Cholesky factors and
    triangular solves, by the closed forms derived in ``docs/gradients.md``. With
    ``R = X − M`` and ``A = U⁻¹ R V⁻¹``:

    .. math::

        \frac{\partial \log p}{\partial M} = -\frac{\partial \log p}{\partial X} = A,\quad
        \frac{\partial \log p}{\partial U} = \tfrac12\big(A V A^\top - p\,U^{-1}\big),\quad
        \frac{\partial \log p}{\partial V} = \tfrac12\big(A^\top U A - n\,V^{-1}\big).

    The gradient with respect to a covariance is the symmetric matrix of
    :func:`kl_value_and_grad`: ``d log p = Σᵢⱼ Gᵢⱼ dUᵢⱼ`` for every symmetric ``dU``.

    %(parameters)s

    Returns
    -------
    logpdf : (...) ndarray or scalar
        The log-densities over the broadcast batch shape, as :func:`logpdf` returns them.
    grads : tuple of four ndarray or None
        ``∂ sum(logpdf) / ∂ argument`` for ``(x, mean, rowcov, colcov)`` in that order, each of
        its argument's shape as passed (summed over the batch axes it was broadcast along) and
        of the result dtype; ``None`` for ``mean`` passed as ``None`` and for an argument left
        out of ``wrt``.

    Raises
    ------
    numpy.linalg.LinAlgError, ValueError, TypeError, FloatingPointError
        As in :func:`logpdf`, naming the argument and the batch index.
    %(raises_grad_out)s

    Notes
    -----
    Broadcast arguments cost memory as in :func:`kl_value_and_grad`.

    See Also
    --------
    logpdf_chol_value_and_grad, kl_value_and_grad, fastmvn.torch.logpdf

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> x, rowcov, colcov = np.ones((5, 2, 3)), 2 * np.eye(2), np.eye(3)
    >>> value, grads = fm.logpdf_value_and_grad(x, None, rowcov, colcov)
    >>> value.shape, grads[0].shape, grads[1]
    ((5,), (5, 2, 3), None)
    >>> grads[0][0]        # −U⁻¹ X V⁻¹ = −½ X
    array([[-0.5, -0.5, -0.5],
           [-0.5, -0.5, -0.5]])
    >>> grads[2]           # ½(A V Aᵀ − p U⁻¹) = ½(¾ J − 3/2 I) per item, summed over the 5 items
    array([[-1.875,  1.875],
           [ 1.875, -1.875]])
    """
    return value_and_grad(FUNCTIONS["logpdf"], (x, mean, rowcov, colcov), errors, out=out, wrt=wrt)


@filled("logpdf_chol", keywords=["grad_errors", "grad_out"], extra=[_DENSITY_WRT, KEYWORDS["grad_lower"]])
def logpdf_chol_value_and_grad(x: ArrayLike, mean: ArrayLike | None, rowchol: ArrayLike, colchol: ArrayLike, *,
                               errors: Errors = "raise", out: GradOut | None = None, wrt: Wrt = None,
                               lower: bool = True) -> ValueAndGrad:
    r"""The log-density of :func:`logpdf_chol` and its gradient with respect to each argument, batched.

    One fused pass per item, no factorisation, by the closed forms derived in
    ``docs/gradients.md``. With ``P = rowchol``, ``Q = colchol`` and
    ``Z = P⁻¹ (X − M) Q⁻ᵀ``:

    .. math::

        \frac{\partial \log p}{\partial M} = -\frac{\partial \log p}{\partial X} = P^{-\top} Z Q^{-1},\quad
        \frac{\partial \log p}{\partial P} = \operatorname{tril}\big(P^{-\top}(Z Z^\top - p I)\big),\quad
        \frac{\partial \log p}{\partial Q} = \operatorname{tril}\big(Q^{-\top}(Z^\top Z - n I)\big).

    The factor gradients are lower triangular: the entries above the diagonal are never
    read, so their gradient is zero. With ``lower=False`` the factors are the upper ones
    ``R = Pᵀ``, and their gradients the transposes of these: upper triangular.

    %(parameters)s

    Returns
    -------
    logpdf : (...) ndarray or scalar
        The log-densities, as :func:`logpdf_chol` returns them.
    grads : tuple of four ndarray or None
        The gradients for ``(x, mean, rowchol, colchol)``, as in :func:`logpdf_value_and_grad`.

    Raises
    ------
    numpy.linalg.LinAlgError, ValueError, TypeError, FloatingPointError
        As in :func:`logpdf_chol`, naming the argument and the batch index.
    %(raises_grad_out)s

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> value, grads = fm.logpdf_chol_value_and_grad(np.ones((1, 1)), None, [[2.0]], [[1.0]])
    >>> grads[0], grads[2], grads[3]   # −x/(l²q²), x²/(l³q²) − 1/l, x²/(l²q³) − 1/q at x = 1, l = 2, q = 1
    (array([[-0.25]]), array([[-0.375]]), array([[-0.75]]))
    """
    return value_and_grad(FUNCTIONS["logpdf_chol"], (x, mean, rowchol, colchol), errors, out=out, wrt=wrt,
                          lower=lower)


@filled("logpdf_diag", keywords=["grad_errors", "grad_out"], extra=[_DENSITY_WRT])
def logpdf_diag_value_and_grad(x: ArrayLike, mean: ArrayLike | None, rowvar: ArrayLike, colvar: ArrayLike, *,
                               errors: Errors = "raise", out: GradOut | None = None, wrt: Wrt = None) -> ValueAndGrad:
    r"""The log-density of :func:`logpdf_diag` and its gradient with respect to each argument, batched.

    With ``D = X − M``, ``a = rowvar``, ``b = colvar`` and ``W = D / (a bᵀ)`` (entrywise):

    .. math::

        \frac{\partial \log p}{\partial M} = -\frac{\partial \log p}{\partial X} = W,\quad
        \frac{\partial \log p}{\partial a_i} = \frac{1}{2a_i}\Big(\sum_c D_{ic} W_{ic} - p\Big),\quad
        \frac{\partial \log p}{\partial b_c} = \frac{1}{2b_c}\Big(\sum_i D_{ic} W_{ic} - n\Big),

    ``O(np)`` per item, in one pass with the value.

    %(parameters)s

    Returns
    -------
    logpdf : (...) ndarray or scalar
        The log-densities, as :func:`logpdf_diag` returns them.
    grads : tuple of four ndarray or None
        ``∂ sum(logpdf) / ∂ argument`` for ``(x, mean, rowvar, colvar)``, as in
        :func:`logpdf_value_and_grad` (the variances' gradients are vectors, as they are).

    Raises
    ------
    numpy.linalg.LinAlgError, ValueError, TypeError, FloatingPointError
        As in :func:`logpdf_diag`, naming the argument and the batch index.
    %(raises_grad_out)s

    See Also
    --------
    logpdf_value_and_grad, fastmvn.torch.logpdf_diag

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> x, a, b = np.ones((2, 3)), np.array([1.0, 2.0]), np.array([0.5, 1.0, 4.0])
    >>> value, grads = fm.logpdf_diag_value_and_grad(x, None, a, b)
    >>> grads[0]                                  # −(X − M) / (a bᵀ)
    array([[-2.   , -1.   , -0.25 ],
           [-1.   , -0.5  , -0.125]])
    >>> grads[2]                                  # ½(Σ_c D W − p) / a
    array([ 0.125  , -0.34375])
    >>> bool(np.isclose(value, fm.logpdf_diag(x, None, a, b)))
    True
    """
    return value_and_grad(FUNCTIONS["logpdf_diag"], (x, mean, rowvar, colvar), errors, out=out, wrt=wrt)
