"""PyTorch autograd functions for the batched KL: ``kl``, ``kl_chol`` and ``kl_diag`` on tensors.

Install with ``pip install 'fastmvn[torch]'``. Each function takes the arguments of its
namesake in :mod:`fastmvn` as tensors (any layout, broadcasting over leading axes, ``None``
for a standard second distribution) and returns the KL as a tensor that autograd can
differentiate:

* CPU tensors are handed to the compiled CPU kernels without a copy (their NumPy views);
  when any input requires a gradient, the forward pass computes the value and the
  closed-form gradient (``docs/gradients.md``) in one fused pass per item and keeps the
  per-item gradients for the backward pass, which only weights and sums them. Only the
  gradients of tensors that require one are stored: a fixed prior's are never written.
* CUDA tensors go to :mod:`fastmvn.cuda` (``pip install 'fastmvn[cuda]'`` and a GPU),
  imported on first use, which reads them in place (``__cuda_array_interface__``) and
  computes the value, and the gradients when they are needed, in the same fused pass on
  the GPU; the backward pass stays on the GPU.

Second derivatives are not implemented: a backward pass with ``create_graph=True``
through these functions raises (rather than treating the gradient as a constant, as
``torch.autograd.function.once_differentiable`` does where the incoming gradient needs
none). The gradient with respect to a covariance is symmetric, as that of
``torch.linalg.cholesky`` (see :func:`fastmvn.kl_value_and_grad`); that with respect to a
Cholesky factor is lower triangular (upper for an upper factor, ``lower=False``).
"""

import numpy as np
import torch

from . import _api, _pool

__all__ = ["kl", "kl_chol", "kl_diag"]

# Each parameterisation's value function, and its name in fastmvn and fastmvn.cuda.
_VALUE = {_api.COV: _api.kl, _api.CHOL: _api.kl_chol, _api.VAR: _api.kl_diag}
_NAME = {_api.COV: "kl", _api.CHOL: "kl_chol", _api.VAR: "kl_diag"}


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


class _KL(torch.autograd.Function):
    """``KL(MN(mean1, ·1, ·1) ‖ MN(mean2, ·2, ·2))`` of one parameterisation on tensors: on the
    GPU when any tensor is a CUDA tensor, else on the CPU."""

    @staticmethod
    def forward(ctx, kind, errors, need_grad, *tensors):
        ctx.shapes = [None if t is None else t.shape for t in tensors]
        ctx.dtypes = [None if t is None else t.dtype for t in tensors]
        device = next((t.device for t in tensors if t is not None and t.is_cuda), None)
        if device is None:
            arrays = [None if t is None else _numpy(t) for t in tensors]
            value_of, value_and_grad, wrap = _VALUE[kind], _api._value_and_grad, torch.from_numpy
        else:
            cuda = _cuda_module()
            arrays = [None if t is None else t.detach() if t.is_cuda else _numpy(t) for t in tensors]
            value_of = getattr(cuda, _NAME[kind])
            value_and_grad = cuda._value_and_grad
            wrap = lambda array: torch.as_tensor(array, device=device)  # noqa: E731 - reads it in place
        if not need_grad:
            return wrap(np.asarray(value_of(*arrays, errors=errors)) if device is None
                        else value_of(*arrays, errors=errors))
        wrt = [name for name, t in zip(_api._argument_names(kind), tensors) if t is not None and t.requires_grad]
        value, grads = value_and_grad(kind, arrays, errors, reduce=False, wrt=wrt)
        # Saved, so that autograd lets them go after the backward pass (unless it retains the graph).
        ctx.save_for_backward(*(None if g is None else wrap(g) for g in grads))
        return wrap(np.asarray(value) if device is None else value)

    @staticmethod
    def backward(ctx, grad_output):
        if torch.is_grad_enabled():
            raise RuntimeError("fastmvn.torch: second derivatives of the KL are not implemented; a backward "
                               "pass with create_graph=True cannot go through kl, kl_chol or kl_diag")
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


def _kl(kind, tensors, errors, lower=True):
    present = [t for t in tensors if t is not None]
    for name, t in zip(_api._argument_names(kind), tensors):
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"fastmvn.torch.{_NAME[kind]} takes tensors (or None); got {type(t).__name__}")
        if t.is_complex():  # before a conversion to float64 drops the imaginary part
            raise _api._complex_error(name, t.dtype)
    need_grad = torch.is_grad_enabled() and any(t.requires_grad for t in present)
    if kind == _api.CHOL:  # upper factors as their transposes: views, through which autograd transposes gradients
        mean1, row1, col1, mean2, row2, col2 = tensors
        row1, col1, row2, col2 = _api._lower_factors(lower, row1, col1, row2, col2)
        tensors = mean1, row1, col1, mean2, row2, col2
    return _KL.apply(kind, errors, need_grad, *tensors)


def kl(mean1, rowcov1, colcov1, mean2=None, rowcov2=None, colcov2=None, *, errors="raise"):
    """:func:`fastmvn.kl` for tensors, differentiable with respect to every tensor argument.

    Parameters
    ----------
    mean1 : (..., n, p) Tensor
        Mean of the first distribution.
    rowcov1 : (..., n, n) Tensor
        Row covariance ``U1`` (symmetric positive definite; lower triangle read).
    colcov1 : (..., p, p) Tensor
        Column covariance ``V1``.
    mean2 : (..., n, p) Tensor, optional
        Mean of the second distribution; ``None`` means zero.
    rowcov2 : (..., n, n) Tensor, optional
        Row covariance ``U2``; ``None`` means the identity.
    colcov2 : (..., p, p) Tensor, optional
        Column covariance ``V2``; ``None`` means the identity.
    errors : {"raise", "nan"}
        As in :func:`fastmvn.kl`.

    Returns
    -------
    kl : (...) Tensor
        The divergences over the broadcast batch shape, on the inputs' device: float32
        when every input is float32, float64 otherwise. Its gradient with respect to a
        covariance is symmetric (:func:`fastmvn.kl_value_and_grad` says exactly which).

    Raises
    ------
    numpy.linalg.LinAlgError, ValueError, TypeError
        As in :func:`fastmvn.kl`, naming the argument and the batch index.
    RuntimeError
        CUDA tensors without :mod:`fastmvn.cuda` (``fastmvn[cuda]`` and a GPU).

    Examples
    --------
    >>> import torch, fastmvn.torch as fmt
    >>> rowcov = (2 * torch.eye(2, dtype=torch.float64)).requires_grad_()
    >>> value = fmt.kl(torch.zeros(3, 2, 2, dtype=torch.float64), rowcov, torch.eye(2, dtype=torch.float64))
    >>> value.sum().backward()
    >>> rowcov.grad                  # ½(tr(V) I − p U⁻¹) = ½ I per item, over 3 items
    tensor([[1.5000, 0.0000],
            [0.0000, 1.5000]], dtype=torch.float64)
    """
    return _kl(_api.COV, (mean1, rowcov1, colcov1, mean2, rowcov2, colcov2), errors)


def kl_chol(mean1, rowchol1, colchol1, mean2=None, rowchol2=None, colchol2=None, *, errors="raise", lower=True):
    """:func:`fastmvn.kl_chol` for tensors, differentiable with respect to every tensor argument.

    Parameters
    ----------
    mean1 : (..., n, p) Tensor
        Mean of the first distribution.
    rowchol1 : (..., n, n) Tensor
        Cholesky factor of ``U1`` (positive diagonal; lower triangle read).
    colchol1 : (..., p, p) Tensor
        Cholesky factor of ``V1``.
    mean2 : (..., n, p) Tensor, optional
        Mean of the second distribution; ``None`` means zero.
    rowchol2 : (..., n, n) Tensor, optional
        Cholesky factor of ``U2``; ``None`` means the identity.
    colchol2 : (..., p, p) Tensor, optional
        Cholesky factor of ``V2``; ``None`` means the identity.
    errors : {"raise", "nan"}
        As in :func:`fastmvn.kl`.
    lower : bool, optional
        Lower factors ``U = L Lᵀ`` (default) or, with ``False``, upper ones ``U = Rᵀ R``
        (upper triangles read), as in :func:`fastmvn.kl_chol`.

    Returns
    -------
    kl : (...) Tensor
        The divergences over the broadcast batch shape. Its gradient with respect to a
        factor is lower triangular (the entries above the diagonal are not read), or upper
        triangular for an upper factor.

    Raises
    ------
    numpy.linalg.LinAlgError, ValueError, TypeError, RuntimeError
        As in :func:`kl`.

    Examples
    --------
    >>> import torch, fastmvn.torch as fmt
    >>> l = torch.tensor([[2.0]], dtype=torch.float64, requires_grad=True)
    >>> fmt.kl_chol(torch.zeros(1, 1, dtype=torch.float64), l, torch.ones(1, 1, dtype=torch.float64)).backward()
    >>> l.grad                       # d/dl ½(l² − 1 − 2 log l) = l − 1/l
    tensor([[1.5000]], dtype=torch.float64)
    """
    return _kl(_api.CHOL, (mean1, rowchol1, colchol1, mean2, rowchol2, colchol2), errors, lower)


def kl_diag(mean1, rowvar1, colvar1, mean2=None, rowvar2=None, colvar2=None, *, errors="raise"):
    """:func:`fastmvn.kl_diag` for tensors, differentiable with respect to every tensor argument.

    Parameters
    ----------
    mean1 : (..., n, p) Tensor
        Mean of the first distribution.
    rowvar1 : (..., n) Tensor
        Row variances (positive).
    colvar1 : (..., p) Tensor
        Column variances (positive).
    mean2 : (..., n, p) Tensor, optional
        Mean of the second distribution; ``None`` means zero.
    rowvar2 : (..., n) Tensor, optional
        Row variances of the second distribution; ``None`` means ones.
    colvar2 : (..., p) Tensor, optional
        Column variances of the second distribution; ``None`` means ones.
    errors : {"raise", "nan"}
        As in :func:`fastmvn.kl`.

    Returns
    -------
    kl : (...) Tensor
        The divergences over the broadcast batch shape.

    Raises
    ------
    numpy.linalg.LinAlgError, ValueError, TypeError, RuntimeError
        As in :func:`kl`.

    Examples
    --------
    >>> import torch, fastmvn.torch as fmt
    >>> a = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    >>> fmt.kl_diag(torch.zeros(1, 1, dtype=torch.float64), a, torch.ones(1, dtype=torch.float64)).backward()
    >>> a.grad                       # ½(1 − 1/a)
    tensor([0.2500], dtype=torch.float64)
    """
    return _kl(_api.VAR, (mean1, rowvar1, colvar1, mean2, rowvar2, colvar2), errors)
