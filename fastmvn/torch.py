"""PyTorch autograd functions for the batched KL and log-density: ``kl``, ``kl_chol``,
``kl_diag``, ``logpdf``, ``logpdf_chol`` and ``logpdf_diag`` on tensors, the Kronecker-sum
``logpdf_kron_sum`` and ``kl_kron_sum``, and ``logpdf_kron_prec`` of the precision form.

Install with ``pip install 'fastmvn[torch]'``. Each function takes the arguments of its
namesake in :mod:`fastmvn` as tensors (any layout, broadcasting over leading axes, ``None``
for a standard second distribution or a zero mean) and returns the KL or the log-density
as a tensor that autograd can differentiate:

* CPU tensors are handed to the compiled CPU kernels without a copy (their NumPy views);
  when any input requires a gradient, the forward pass computes the value and the
  closed-form gradient (``docs/gradients.md``) in one fused pass per item and keeps the
  per-item gradients for the backward pass, which only weights and sums them. Only the
  gradients of tensors that require one are stored: a fixed prior's are never written.
* CUDA tensors go to :mod:`fastmvn.cuda` (``pip install 'fastmvn[cuda]'`` and a GPU),
  imported on first use, which reads them in place (``__cuda_array_interface__``) and
  computes the value, and the gradients when they are needed, in the same fused pass on
  the GPU; the backward pass stays on the GPU. The Kronecker-sum functions run on the CPU
  alone: CUDA tensors raise.

Second derivatives are not implemented: a backward pass with ``create_graph=True``
through these functions raises (rather than treating the gradient as a constant, as
``torch.autograd.function.once_differentiable`` does where the incoming gradient needs
none). The gradient with respect to a covariance is symmetric, as that of
``torch.linalg.cholesky`` (see :func:`fastmvn.kl_value_and_grad`); that with respect to a
Cholesky factor is lower triangular (upper for an upper factor, ``lower=False``).
"""

from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import torch

from . import _api, _docs, _gradients, _pool, _table
from ._arguments import CHOL, complex_error, lower_factors
from .distributions import kron_grad


def _cuda_module():
    """:mod:`fastmvn.cuda`, imported on first use; a clear error where it cannot load."""
    try:
        from . import cuda
    except ImportError as error:
        raise RuntimeError("CUDA tensors need fastmvn[cuda] and a GPU (pip install 'fastmvn[cuda]'); "
                           f"fastmvn.cuda could not be imported: {error}") from error
    return cuda


def _numpy(tensor):
    """A CPU tensor's data as a NumPy array, without a copy for float32 and float64."""
    tensor = tensor.detach()
    if tensor.dtype not in (torch.float32, torch.float64):
        tensor = tensor.to(torch.float64)
    return tensor.resolve_conj().resolve_neg().numpy()


def _routines(function, device):
    """``(value, value_and_grad)`` of ``function`` (a table entry or a Kronecker-sum function of
    ``fastmvn.distributions.kron_grad._SERVED``) for arrays on ``device`` (None for the CPU),
    called as ``kron_grad._Served`` describes."""
    if isinstance(function, kron_grad._Served):
        return function.value, function.value_and_grad
    if device is None:
        return getattr(_api, function.name), partial(_gradients.value_and_grad, function)
    cuda = _cuda_module()
    return getattr(cuda, function.name), partial(cuda.value_and_grad, function)


class _Fused(torch.autograd.Function):
    """A function with a fused gradient (a KL or a log-density) on tensors: on the GPU when
    any tensor is a CUDA tensor, else on the CPU. An argument that is not a tensor (None, or a
    Python number for a scalar noise) is passed as it is and gets no gradient."""

    @staticmethod
    def forward(ctx, function, errors, need_grad, *tensors):
        ctx.name = function.name
        ctx.shapes = [t.shape if isinstance(t, torch.Tensor) else None for t in tensors]
        ctx.dtypes = [t.dtype if isinstance(t, torch.Tensor) else None for t in tensors]
        device = next((t.device for t in tensors if isinstance(t, torch.Tensor) and t.is_cuda), None)
        value_of, value_and_grad = _routines(function, device)
        if device is None:
            arrays = [_numpy(t) if isinstance(t, torch.Tensor) else t for t in tensors]
            wrap = torch.from_numpy
        else:
            arrays = [(t.detach() if t.is_cuda else _numpy(t)) if isinstance(t, torch.Tensor) else t for t in tensors]
            wrap = lambda array: torch.as_tensor(array, device=device)  # noqa: E731 - reads it in place
        if not need_grad:
            return wrap(np.asarray(value_of(*arrays, errors=errors)) if device is None
                        else value_of(*arrays, errors=errors))
        wrt = [name for name, t in zip(function.names, tensors) if isinstance(t, torch.Tensor) and t.requires_grad]
        value, grads = value_and_grad(arrays, errors, reduce=False, wrt=wrt)
        # Saved, so that autograd lets them go after the backward pass (unless it retains the graph).
        ctx.save_for_backward(*(None if g is None else wrap(g) for g in grads))
        return wrap(np.asarray(value) if device is None else value)

    @staticmethod
    def backward(ctx, grad_output):
        if torch.is_grad_enabled():
            raise RuntimeError(f"fastmvn.torch: second derivatives are not implemented; a backward pass with "
                               f"create_graph=True cannot go through {ctx.name}")
        result = []
        grads = ctx.saved_tensors or (None,) * len(ctx.shapes)
        for grad, shape, dtype in zip(grads, ctx.shapes, ctx.dtypes):
            if grad is None:
                result.append(None)
                continue
            weight = grad_output.reshape(grad_output.shape + (1,) * (grad.ndim - grad_output.ndim))
            weighted = None
            if not grad.is_cuda and weight.dtype == grad.dtype:  # into reused memory, as the gradients
                weighted = torch.from_numpy(_pool.empty(tuple(grad.shape), grad.numpy().dtype))
            result.append(torch.mul(weight, grad, out=weighted).sum_to_size(shape).to(dtype))
        return (None, None, None, *result)


def _need_grad(function, tensors, numbers=()):
    """Whether autograd needs the gradients of ``tensors``, the arguments of ``function``, each
    a tensor or None (or a Python number where its name is in ``numbers``), checked."""
    for name, t in zip(function.names, tensors):
        if t is None or name in numbers and isinstance(t, (int, float)) and not isinstance(t, bool):
            continue
        if not isinstance(t, torch.Tensor):
            numbers_too = ", or a Python number for a scalar noise or damping" if numbers else ""
            raise TypeError(f"fastmvn.torch.{function.name} takes tensors (or None{numbers_too}); {name} is a "
                            f"{type(t).__name__}")
        if t.is_complex():  # before a conversion to float64 drops the imaginary part
            raise complex_error(name, t.dtype)
    return torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors)


def _apply(function, tensors, errors="raise", lower=True):
    """The table's ``function`` of ``tensors`` through :class:`_Fused`."""
    need_grad = _need_grad(function, tensors)
    if function.lower:  # upper factors as their transposes: views, through which autograd transposes gradients
        factors = lower_factors(lower, *(t for t, p in zip(tensors, function.params) if p.kind == CHOL))
        factors = iter(factors)
        tensors = [next(factors) if p.kind == CHOL else t for t, p in zip(tensors, function.params)]
    return _Fused.apply(function, errors, need_grad, *tensors)


# The public functions: one per entry of the table with a gradient.

_RAISES = (("numpy.linalg.LinAlgError, ValueError, TypeError",
            "As in :func:`fastmvn.{name}`, naming the argument and the batch index."),
           ("RuntimeError", "CUDA tensors without :mod:`fastmvn.cuda` (``fastmvn[cuda]`` and a GPU)."))
_RETURNS = {
    _table.COV: "Its gradient with respect to a covariance is symmetric (:func:`fastmvn.kl_value_and_grad` says "
                "exactly which).",
    _table.CHOL: "Its gradient with respect to a factor is lower triangular (the entries above the diagonal are "
                 "not read), or upper triangular for an upper factor.",
    _table.VAR: "",
}
_EXAMPLES = {
    "kl": """
>>> import torch, fastmvn.torch as fmt
>>> rowcov = (2 * torch.eye(2, dtype=torch.float64)).requires_grad_()
>>> value = fmt.kl(torch.zeros(3, 2, 2, dtype=torch.float64), rowcov, torch.eye(2, dtype=torch.float64))
>>> value.sum().backward()
>>> rowcov.grad                  # ½(tr(V) I − p U⁻¹) = ½ I per item, over 3 items
tensor([[1.5000, 0.0000],
        [0.0000, 1.5000]], dtype=torch.float64)
""",
    "kl_chol": """
>>> import torch, fastmvn.torch as fmt
>>> l = torch.tensor([[2.0]], dtype=torch.float64, requires_grad=True)
>>> fmt.kl_chol(torch.zeros(1, 1, dtype=torch.float64), l, torch.ones(1, 1, dtype=torch.float64)).backward()
>>> l.grad                       # d/dl ½(l² − 1 − 2 log l) = l − 1/l
tensor([[1.5000]], dtype=torch.float64)
""",
    "logpdf": """
>>> import torch, fastmvn.torch as fmt
>>> mean = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
>>> x = 2 * torch.ones(4, 2, 3, dtype=torch.float64)
>>> fmt.logpdf(x, mean, 4 * torch.eye(2, dtype=torch.float64), torch.eye(3, dtype=torch.float64)).sum().backward()
>>> mean.grad                    # U⁻¹ (X − M) V⁻¹ = ½ per entry and item, over 4 items
tensor([[2., 2., 2.],
        [2., 2., 2.]], dtype=torch.float64)
""",
    "logpdf_chol": """
>>> import torch, fastmvn.torch as fmt
>>> l = torch.tensor([[2.0]], dtype=torch.float64, requires_grad=True)
>>> fmt.logpdf_chol(torch.ones(1, 1, dtype=torch.float64), None, l, torch.ones(1, 1, dtype=torch.float64)).backward()
>>> l.grad                       # d/dl −(log l + 1/(2l²)) = 1/l³ − 1/l
tensor([[-0.3750]], dtype=torch.float64)
""",
    "kl_diag": """
>>> import torch, fastmvn.torch as fmt
>>> a = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
>>> fmt.kl_diag(torch.zeros(1, 1, dtype=torch.float64), a, torch.ones(1, dtype=torch.float64)).backward()
>>> a.grad                       # ½(1 − 1/a)
tensor([0.2500], dtype=torch.float64)
""",
    "logpdf_diag": """
>>> import torch, fastmvn.torch as fmt
>>> a = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
>>> fmt.logpdf_diag(torch.ones(1, 1, dtype=torch.float64), None, a, torch.ones(1, dtype=torch.float64)).backward()
>>> a.grad                       # d/da −½(log a + 1/a) = ½(1/a² − 1/a)
tensor([-0.1250], dtype=torch.float64)
""",
}


def _define(function):
    keywords = [_docs.KEYWORDS["errors"]] + ([_docs.KEYWORDS["lower"]] if function.lower else [])
    kind = next(p.kind for p in function.params if p.kind in _RETURNS)  # of the covariances
    where = ("for tensors, differentiable with respect to every tensor argument.",
             f"The same as :func:`fastmvn.{function.name}` on tensors, on the CPU or, for CUDA tensors, through "
             ":mod:`fastmvn.cuda`.")
    returns = (f"{function.name} : (...) Tensor",
               "The results over the broadcast batch shape, on the inputs' device: float32 when every input is "
               f"float32, float64 otherwise. {_RETURNS[kind]}".strip())
    raises = [(head, text.format(name=function.name)) for head, text in _RAISES]
    doc = _docs.backend(function.name, where, "Tensor", keywords, returns, raises, _EXAMPLES[function.name])
    defaults = {"errors": "raise"} | ({"lower": True} if function.lower else {})
    return _table.define(function, _apply, defaults, doc, __name__)


if TYPE_CHECKING:
    from typing import Any

    def __getattr__(name: str) -> Any:
        """The functions that ``_table.publish`` generates below, unseen by a type checker: each is Any to it."""
        raise AttributeError(name)


__all__ = []
_table.publish(globals(), "torch", lambda entry: [_define(entry)])


# The Kronecker-sum functions: outside the table, on the CPU alone.


def _apply_kron_sum(function, tensors, errors):
    """``function`` (of ``kron_grad._SERVED``) of ``tensors`` through :class:`_Fused`, after the checks."""
    need_grad = _need_grad(function, tensors, numbers=function.scalars)
    for name, t in zip(function.names, tensors):
        if isinstance(t, torch.Tensor) and t.device.type != "cpu":
            raise RuntimeError(f"fastmvn.torch.{function.name} runs on the CPU; {name} is on {t.device} (move the "
                               "tensors with .cpu(), and the result back with .to(device))")
    return _Fused.apply(function, errors, need_grad, *tensors)


_kron_doc = partial(_docs.shared, array="Tensor")


@_kron_doc
def logpdf_kron_sum(x: torch.Tensor, mean: torch.Tensor | None, rowcov: torch.Tensor, colcov: torch.Tensor,
                    noise_rowcov: torch.Tensor | float, noise_colcov: torch.Tensor | float | None = None, *,
                    errors: str = "raise") -> torch.Tensor:
    """Log-density of ``vec X ~ N(vec M, V⊗U + B⊗A)`` at ``x``, batched, for tensors,
    differentiable with respect to every tensor argument.

    :func:`fastmvn.logpdf_kron_sum` on CPU tensors (read in place). When a tensor requires a
    gradient, the forward pass computes the value and the per-item gradients of
    :func:`fastmvn.logpdf_kron_sum_value_and_grad` (closed forms, ``O(n³ + p³ + n²p + np²)``
    per item; the ``np×np`` covariance is never formed) for the tensors that require one
    alone, and the backward pass weights and sums them. A scalar noise ``σ²`` is a Python
    number (a constant) or a 0-d tensor, which may require a gradient. CUDA tensors raise a
    RuntimeError: this function runs on the CPU alone. Second derivatives raise.

    Parameters
    ----------
    %(kron_sum)s
    %(errors)s

    Returns
    -------
    logpdf_kron_sum : (...) Tensor
        Over the broadcast batch shape: float32 when every tensor is float32, float64
        otherwise. Its gradient with respect to a covariance is symmetric (as in
        :func:`fastmvn.kl_value_and_grad`), with respect to a scalar noise a 0-d tensor.

    Raises
    ------
    numpy.linalg.LinAlgError, ValueError, TypeError
        As in :func:`fastmvn.logpdf_kron_sum`, naming the argument and the batch index.
    RuntimeError
        A CUDA tensor (or any tensor not on the CPU).

    Examples
    --------
    >>> import torch, fastmvn.torch as fmt
    >>> x, u = torch.ones(5, 2, 3, dtype=torch.float64), torch.diag(torch.tensor([1.0, 3.0], dtype=torch.float64))
    >>> noise = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)      # σ² I, learnt
    >>> fmt.logpdf_kron_sum(x, None, u, torch.eye(3, dtype=torch.float64), noise).sum().backward()
    >>> noise.grad                   # ½ Σ_ij (x_ij²/s_i² − 1/s_i), s = (2, 4), over 5 items
    tensor(-3.2812, dtype=torch.float64)
    """
    return _apply_kron_sum(kron_grad._SERVED["logpdf_kron_sum"], (x, mean, rowcov, colcov, noise_rowcov, noise_colcov),
                           errors)


@_kron_doc
def kl_kron_sum(mean1: torch.Tensor | None, rowcov1: torch.Tensor, colcov1: torch.Tensor,
                noise_rowcov1: torch.Tensor | float, noise_colcov1: torch.Tensor | float | None,
                mean2: torch.Tensor | None, rowcov2: torch.Tensor, colcov2: torch.Tensor,
                noise_rowcov2: torch.Tensor | float, noise_colcov2: torch.Tensor | float | None, *,
                errors: str = "raise") -> torch.Tensor:
    """KL divergence between Kronecker-sum normals ``N(vec M₁, V₁⊗U₁ + B₁⊗A₁) ‖ N(vec M₂,
    V₂⊗U₂ + B₂⊗A₂)``, batched, for tensors, differentiable with respect to every tensor argument.

    :func:`fastmvn.kl_kron_sum` on CPU tensors, with the per-item gradients of
    :func:`fastmvn.kl_kron_sum_value_and_grad` computed in the forward pass for the tensors
    that require one alone (against a fixed prior, none of the second side's), as in
    :func:`logpdf_kron_sum`; scalar noises likewise a Python number or a 0-d tensor. CUDA
    tensors raise a RuntimeError: this function runs on the CPU alone. Second derivatives raise.

    Parameters
    ----------
    %(kron_sum_pair)s
    %(errors)s

    Returns
    -------
    kl_kron_sum : (...) Tensor
        Over the broadcast batch shape: float32 when every tensor is float32, float64
        otherwise. Gradients as in :func:`logpdf_kron_sum`.

    Raises
    ------
    numpy.linalg.LinAlgError, ValueError, TypeError
        As in :func:`fastmvn.kl_kron_sum`, naming the argument and the batch index.
    RuntimeError
        A CUDA tensor (or any tensor not on the CPU).

    Examples
    --------
    >>> import torch, fastmvn.torch as fmt
    >>> factor = torch.randn(8, 4, 1, dtype=torch.float64, requires_grad=True)  # a rank-1 signal per item
    >>> noise = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    >>> eye4, eye3 = torch.eye(4, dtype=torch.float64), torch.eye(3, dtype=torch.float64)
    >>> kl = fmt.kl_kron_sum(None, factor @ factor.mT, eye3, noise, None, None, eye4, eye3, 1.0, None)
    >>> kl.shape
    torch.Size([8])
    >>> kl.sum().backward()                         # against a fixed prior N(0, I⊗I + I⊗I)
    >>> factor.grad.shape, noise.grad.shape
    (torch.Size([8, 4, 1]), torch.Size([]))
    """
    return _apply_kron_sum(kron_grad._SERVED["kl_kron_sum"], (mean1, rowcov1, colcov1, noise_rowcov1, noise_colcov1,
                                                             mean2, rowcov2, colcov2, noise_rowcov2, noise_colcov2),
                           errors)


@_kron_doc
def logpdf_kron_prec(x: torch.Tensor, mean: torch.Tensor | None, rowprec: torch.Tensor, colprec: torch.Tensor,
                     damping: torch.Tensor | float, *, errors: str = "raise") -> torch.Tensor:
    """Log-density of ``vec X ~ N(vec M, (V⊗U + δI)⁻¹)`` at ``x``, batched, for tensors,
    differentiable with respect to every tensor argument.

    The Gaussian of :meth:`fastmvn.KroneckerSumNormal.from_precision` (a Laplace approximation,
    damped K-FAC) on CPU tensors (read in place), with the per-item gradients of
    :func:`fastmvn.logpdf_kron_prec_value_and_grad` (closed forms through one ``eigh`` per
    factor; the ``np×np`` precision is never formed) computed in the forward pass for the
    tensors that require one alone, as in :func:`logpdf_kron_sum`. A scalar damping ``δ`` is a
    Python number (a constant) or a 0-d tensor, which may require a gradient. CUDA tensors
    raise a RuntimeError: this function runs on the CPU alone. Second derivatives raise.

    Parameters
    ----------
    x : (..., n, p) Tensor
        Points ``X``.
    %(kron_prec)s
    %(errors)s

    Returns
    -------
    logpdf_kron_prec : (...) Tensor
        Over the broadcast batch shape: float32 when every tensor is float32, float64
        otherwise. Its gradient with respect to a factor is symmetric (as in
        :func:`fastmvn.kl_value_and_grad`), with respect to a scalar damping a 0-d tensor.

    Raises
    ------
    numpy.linalg.LinAlgError, ValueError, TypeError
        As in :func:`fastmvn.logpdf_kron_prec_value_and_grad`, naming the argument and the
        batch index.
    RuntimeError
        A CUDA tensor (or any tensor not on the CPU).

    Examples
    --------
    >>> import torch, fastmvn.torch as fmt
    >>> x, u = torch.ones(5, 2, 3, dtype=torch.float64), torch.diag(torch.tensor([1.0, 3.0], dtype=torch.float64))
    >>> damping = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)    # δ, learnt
    >>> fmt.logpdf_kron_prec(x, None, u, torch.eye(3, dtype=torch.float64), damping).sum().backward()
    >>> damping.grad                 # ½ Σ_ij (1/e_ij − x_ij²), e = (2, 4), over 5 items
    tensor(-9.3750, dtype=torch.float64)
    """
    return _apply_kron_sum(kron_grad._SERVED["logpdf_kron_prec"], (x, mean, rowprec, colprec, damping), errors)


__all__ += ["logpdf_kron_sum", "kl_kron_sum", "logpdf_kron_prec"]
