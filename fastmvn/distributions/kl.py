"""KL divergences of matrix Gaussians: :func:`kl_full`, between matrix Gaussians given by their
parameters, and :func:`kl_gaussian`, between frozen distributions of any family
(:class:`~fastmvn.MatrixGaussian`, :class:`~fastmvn.MatrixNormal` or
:class:`~fastmvn.KroneckerSumNormal`, in any combination).

This module joins the two families: importing both, it sets the links of
:class:`fastmvn.distributions._base._Links` through which :meth:`MatrixNormal.to_matrix_gaussian`,
:meth:`MatrixNormal.kl` and :meth:`MatrixGaussian.kl` reach the other family.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import _modes
from .._api import kl_chol, mahalanobis_chol
from .._arguments import COV, MEAN, Arg, check, check_errors, result_dtype
from .._batch import compute
from ._base import _compared, _divergence, _full, _Links
from .gaussian import _ONE, MatrixGaussian, _check_size, _logdet, _vec
from .kron import KroneckerSumNormal, _kl_between
from .normal import MatrixNormal

if TYPE_CHECKING:
    from .._typing import ArrayLike, Errors, FloatArray, Result

__all__ = ["kl_full", "kl_gaussian"]


# From parameters --------------------------------------------------------------------------


def kl_full(mean1: ArrayLike, cov1: ArrayLike, mean2: ArrayLike | None = None, cov2: ArrayLike | None = None, *,
            out: FloatArray | None = None, errors: Errors = "raise") -> Result:
    r"""KL divergence between matrix Gaussians ``N(vec mean1, cov1) ‖ N(vec mean2, cov2)``, batched.

    .. math::

        \tfrac12\big[\lVert L_2^{-1}L_1\rVert_F^2 + \lVert L_2^{-1}\operatorname{vec}(M_2 - M_1)\rVert^2
        - np + \log|\Sigma_2| - \log|\Sigma_1|\big],\quad \Sigma = L L^\top,

    the multivariate-normal KL on column-major ``vec``: the two Cholesky factorisations
    (the kernels' per-item Cholesky), the triangular trace and the whitened mean difference
    in one fused pass per item, the items split across threads. A failing item is reported
    by argument and batch index as in :func:`fastmvn.kl`. Only the lower triangles of the
    covariances are read. Against the standard normal (``mean2`` and ``cov2`` omitted) it
    is the matrix-normal kernel of :func:`fastmvn.kl` on ``np×1`` matrices, with row
    covariance ``Σ`` and column covariance ``[[1]]``. :func:`kl_gaussian` is the same for
    distribution objects.

    Parameters
    ----------
    mean1 : (..., n, p) array_like
        Mean of the first distribution.
    cov1 : (..., np, np) array_like
        Covariance of column-major ``vec X`` under the first distribution (SPD).
    mean2 : (..., n, p) array_like, optional
        Mean of the second distribution; ``None`` means zero.
    cov2 : (..., np, np) array_like, optional
        Covariance of the second distribution; ``None`` means the identity. With both
        ``mean2`` and ``cov2`` omitted, the KL to the standard normal runs a faster path.
    out : ndarray, optional
        Array of the broadcast batch shape and the result dtype to write into.
    errors : {"raise", "nan"}
        As in :func:`fastmvn.kl`.

    Returns
    -------
    kl : (...) ndarray or scalar
        The divergences over the broadcast batch shape; float32 when every input is float32.

    Raises
    ------
    numpy.linalg.LinAlgError
        A covariance is not positive definite; names the argument and batch index.
    ValueError
        NaN or infinity (names the argument and batch index); a covariance not of size
        ``np``; shapes that do not broadcast.

    See Also
    --------
    fastmvn.reference.kl_full : the NumPy specification.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> rng = np.random.default_rng(0)
    >>> a = rng.standard_normal((1000, 6, 6))
    >>> mean, cov = rng.standard_normal((1000, 2, 3)), a @ np.swapaxes(a, -1, -2) + 6 * np.eye(6)
    >>> kl = fm.kl_full(mean, cov, np.zeros((2, 3)), np.eye(6))   # each against N(0, I)
    >>> kl.shape, bool(np.allclose(kl, fm.kl_full(mean, cov)))
    ((1000,), True)
    >>> cov[7] = -np.eye(6)
    >>> fm.kl_full(mean, cov)
    Traceback (most recent call last):
    ...
    numpy.linalg.LinAlgError: cov1 is not positive definite (Cholesky failed) at batch index 7
    """
    check_errors(errors)
    first = [Arg("mean1", MEAN, mean1, "np"), Arg("cov1", COV, cov1, "kk")]
    if mean2 is None and cov2 is None:
        check(first)
        _check_size(*first)
        standard = [Arg("mean1", MEAN, _vec(first[0].array), "ko"), first[1],
                    Arg("unit colcov", COV, _ONE, "oo", default=True)]
        return compute(_modes.KL_STD_COV, standard, out, errors)
    n, p = first[0].array.shape[-2:]
    args = first + [Arg("mean2", MEAN, np.zeros((n, p)) if mean2 is None else mean2, "np", default=mean2 is None),
                    Arg("cov2", COV, np.eye(n * p) if cov2 is None else cov2, "kk", default=cov2 is None)]
    check(args)
    _check_size(args[0], args[1])
    _check_size(args[2], args[3])
    vec1, vec2 = (Arg(arg.name, MEAN, _vec(arg.array), "ko", default=arg.default) for arg in (args[0], args[2]))
    unit = Arg("unit colcov", COV, _ONE, "oo", default=True)
    return compute(_modes.KL_COV, [vec1, args[1], unit, vec2, args[3], unit], out, errors)


# Between distributions ------------------------------------------------------------------


def _inverse(chol):
    """``(L Lᵀ)⁻¹`` from lower factors ``L`` (float64), batched."""
    inverse = np.linalg.inv(np.asarray(chol, dtype=np.float64))
    return np.swapaxes(inverse, -1, -2) @ inverse


def _kl_to_normal(g, q):
    """``KL(g ‖ q)`` for a :class:`MatrixGaussian` ``g`` and a :class:`MatrixNormal` ``q``, in
    float64, through the Kronecker structure of ``q``'s covariance ``V⊗U``::

        tr((V⊗U)⁻¹ Σ) = Σ_jl (V⁻¹)_jl tr(U⁻¹ Σ^(j,l)),   log|V⊗U| = n log|V| + p log|U|,

    with ``Σ^(j,l)`` the ``n×n`` block ``(j, l)`` of ``Σ``: no ``np×np`` inverse.
    """
    n, p = g.shape
    g_mean, g_cov, g_chol, _ = g._exact
    q_mean, _, _, rowchol, colchol = q._exact
    blocks = g_cov.reshape(g_cov.shape[:-2] + (p, n, p, n))  # [j, a, l, b]
    traces = np.einsum("...ba,...jalb->...jl", _inverse(rowchol), blocks)  # tr(U⁻¹ Σ^(j,l))
    trace = (_inverse(colchol) * traces).sum(axis=(-2, -1))
    quad = mahalanobis_chol(g_mean, q_mean, rowchol, colchol)
    return _divergence(0.5 * (trace + quad - n * p + n * _logdet(colchol) + p * _logdet(rowchol) - _logdet(g_chol)))


def kl_gaussian(p: MatrixGaussian | MatrixNormal | KroneckerSumNormal,
                q: MatrixGaussian | MatrixNormal | KroneckerSumNormal) -> Result:
    """``KL(p ‖ q)`` between matrix Gaussians and matrix normals, in any combination, batched.

    * two :class:`MatrixGaussian`: the multivariate-normal KL on ``vec`` by the compiled
      matrix-normal kernel on ``np×1`` matrices, from the stored factors (as :func:`kl_full`);
    * a :class:`MatrixGaussian` ``p`` and a :class:`~fastmvn.MatrixNormal` ``q = MN(M, U, V)``:
      through the Kronecker structure, ``tr((V⊗U)⁻¹Σ) = Σ_jl (V⁻¹)_jl tr(U⁻¹ Σ^(j,l))``
      over the ``n×n`` blocks ``Σ^(j,l)`` of ``Σ`` and ``log|V⊗U| = n log|V| + p log|U|``,
      with no ``np×np`` solve on the matrix normal's side;
    * a :class:`~fastmvn.MatrixNormal` ``p`` and a :class:`MatrixGaussian` ``q``: ``p`` as
      the matrix Gaussian with factor ``L_V⊗L_U`` (:meth:`MatrixGaussian.from_normal`);
    * two :class:`~fastmvn.MatrixNormal`: :meth:`fastmvn.MatrixNormal.kl`;
    * a :class:`~fastmvn.KroneckerSumNormal` and a :class:`~fastmvn.KroneckerSumNormal` or
      :class:`~fastmvn.MatrixNormal`, either way round: :meth:`fastmvn.KroneckerSumNormal.kl`,
      on the eigenbasis forms; and a :class:`MatrixGaussian`: the Kronecker-sum normal as the
      matrix Gaussian of its dense covariance (small ``n·p``).

    Parameters
    ----------
    p, q : MatrixGaussian, MatrixNormal or KroneckerSumNormal
        Of the same shape ``(n, p)``; the batch shapes broadcast.

    Returns
    -------
    kl : (...) ndarray or scalar
        Over the broadcast batch shape; float32 when both are float32.

    Raises
    ------
    TypeError
        ``p`` or ``q`` is not a :class:`MatrixGaussian`, :class:`~fastmvn.MatrixNormal` or
        :class:`~fastmvn.KroneckerSumNormal`.
    ValueError
        The two are of different shapes, or their batch shapes do not broadcast.

    See Also
    --------
    fastmvn.reference.kl_full : the NumPy specification, from ``p.mean``, ``p.cov``, ``q.mean``, ``q.cov``.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> u, v = np.array([[2.0, 0.5], [0.5, 1.0]]), np.array([[1.0, 0.3], [0.3, 1.0]])
    >>> normal = fm.MatrixNormal(np.zeros((2, 2)), u, v)
    >>> gaussian = fm.MatrixGaussian(np.ones((2, 2)), np.kron(v, u) + 0.1 * np.eye(4))
    >>> forward, backward = fm.kl_gaussian(gaussian, normal), fm.kl_gaussian(normal, gaussian)
    >>> bool(forward > 0 and backward > 0 and forward != backward)
    True
    >>> abs(float(fm.kl_gaussian(normal, fm.MatrixGaussian.from_normal(normal)))) < 1e-12
    True
    """
    for name, value in (("p", p), ("q", q)):
        if not isinstance(value, (MatrixGaussian, MatrixNormal, KroneckerSumNormal)):
            raise TypeError(f"{name} must be a MatrixGaussian, a MatrixNormal or a KroneckerSumNormal, "
                            f"not {type(value).__name__}")
    batch_shape = _compared(p, q)
    if isinstance(p, KroneckerSumNormal) or isinstance(q, KroneckerSumNormal):
        if not (isinstance(p, MatrixGaussian) or isinstance(q, MatrixGaussian)):
            return _kl_between(p, q)
        p, q = (MatrixGaussian(d.mean, d.cov) if isinstance(d, KroneckerSumNormal) else d for d in (p, q))
    if isinstance(p, MatrixNormal) and isinstance(q, MatrixNormal):
        return p.kl(q)
    if isinstance(p, MatrixNormal):
        p = MatrixGaussian.from_normal(p)
    if isinstance(q, MatrixGaussian):
        _, _, chol1, vec_mean1 = p._parts_for(q._mean)
        _, _, chol2, vec_mean2 = q._parts_for(p._mean)
        return kl_chol(vec_mean1, chol1, _ONE, vec_mean2, chol2, _ONE)
    dtype = result_dtype(p._mean, q._mean)
    return _full(np.asarray(_kl_to_normal(p, q), dtype=dtype), batch_shape)


_Links.to_gaussian = MatrixGaussian.from_normal
_Links.kl = kl_gaussian
