"""The batched functions of fastmvn on the CPU: each binds its arguments through the table
(:data:`fastmvn._table.FUNCTIONS`) and runs its kernel over the broadcast batch
(:func:`fastmvn._batch.call`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._batch import call
from ._docs import filled
from ._table import FUNCTIONS

if TYPE_CHECKING:
    from ._typing import ArrayLike, Errors, FloatArray, Result

__all__ = ["kl", "kl_chol", "kl_diag", "logdet", "trace_solve", "mahalanobis", "mahalanobis_chol", "logpdf",
           "logpdf_chol", "logpdf_diag"]


@filled("kl")
def kl(mean1: ArrayLike, rowcov1: ArrayLike, colcov1: ArrayLike, mean2: ArrayLike | None = None,
       rowcov2: ArrayLike | None = None, colcov2: ArrayLike | None = None, *, out: FloatArray | None = None,
       errors: Errors = "raise") -> Result:
    r"""KL divergence ``KL(MN(mean1, rowcov1, colcov1) ‖ MN(mean2, rowcov2, colcov2))``, batched.

    .. math::

        \tfrac12\big[\operatorname{tr}(U_2^{-1}U_1)\operatorname{tr}(V_2^{-1}V_1)
        + \operatorname{tr}(V_2^{-1}D^\top U_2^{-1}D) - np
        + p\log\tfrac{|U_2|}{|U_1|} + n\log\tfrac{|V_2|}{|V_1|}\big],\quad D = M_2 - M_1,

    evaluated through Cholesky factors and triangular solves, one fused pass per item,
    never forming the ``np×np`` covariance ``V⊗U``. Only the lower triangle (diagonal
    included) of each covariance is read, as in LAPACK.

    %(parameters)s

    Returns
    -------
    kl : (...) ndarray or scalar
        The divergences over the broadcast batch shape of all arguments' leading axes:
        float32 when every input is float32, float64 otherwise. float32 data of matrices up
        to 16×16 is computed in float32 arithmetic, larger ones in float64.

    Raises
    ------
    %(raises_cov)s
    %(raises_input)s
    %(raises_overflow)s

    See Also
    --------
    kl_chol : the same from Cholesky factors.
    kl_diag : the same for diagonal covariances.
    fastmvn.reference.kl : the NumPy specification of this function.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> rng = np.random.default_rng(0)
    >>> mean = rng.standard_normal((1000, 4, 3))
    >>> rowcov = np.eye(4) * rng.uniform(0.5, 2.0, (1000, 1, 1))
    >>> fm.kl(mean, rowcov, np.eye(3)).shape       # each against MN(0, I, I)
    (1000,)
    >>> abs(fm.kl(np.zeros((2, 2)), 2 * np.eye(2), np.eye(2),   # (2U, V) is (U, 2V)
    ...            np.zeros((2, 2)), np.eye(2), 2 * np.eye(2))) < 1e-12
    np.True_
    """
    return call(FUNCTIONS["kl"], (mean1, rowcov1, colcov1, mean2, rowcov2, colcov2), out, errors)


@filled("kl_chol")
def kl_chol(mean1: ArrayLike, rowchol1: ArrayLike, colchol1: ArrayLike, mean2: ArrayLike | None = None,
            rowchol2: ArrayLike | None = None, colchol2: ArrayLike | None = None, *, out: FloatArray | None = None,
            errors: Errors = "raise", lower: bool = True) -> Result:
    """KL divergence between matrix normals given by Cholesky factors, batched.

    The same divergence as :func:`kl` with ``U = rowchol @ rowchol.T`` and
    ``V = colchol @ colchol.T``: the natural output of an encoder. Only the lower triangle
    (diagonal included) of each factor is read, or the upper one of an upper factor
    ``R`` (``U = Rᵀ R``) with ``lower=False``; its diagonal must be positive.

    %(parameters)s

    Returns
    -------
    kl : (...) ndarray or scalar
        The divergences over the broadcast batch shape.

    Raises
    ------
    %(raises_chol)s
    %(raises_input)s
    %(raises_overflow)s

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> L = np.array([[1.0, 0.0], [0.5, 2.0]])
    >>> bool(np.isclose(fm.kl_chol(np.ones((2, 2)), L, np.eye(2)),
    ...                 fm.kl(np.ones((2, 2)), L @ L.T, np.eye(2))))
    True
    >>> bool(np.isclose(fm.kl_chol(np.ones((2, 2)), L.T, np.eye(2), lower=False),  # U = Rᵀ R, R = Lᵀ
    ...                 fm.kl_chol(np.ones((2, 2)), L, np.eye(2))))
    True
    """
    return call(FUNCTIONS["kl_chol"], (mean1, rowchol1, colchol1, mean2, rowchol2, colchol2), out, errors, lower)


@filled("kl_diag")
def kl_diag(mean1: ArrayLike, rowvar1: ArrayLike, colvar1: ArrayLike, mean2: ArrayLike | None = None,
            rowvar2: ArrayLike | None = None, colvar2: ArrayLike | None = None, *, out: FloatArray | None = None,
            errors: Errors = "raise") -> Result:
    """KL divergence between matrix normals with diagonal covariances, batched.

    The same divergence as :func:`kl` with ``U = diag(rowvar)`` and ``V = diag(colvar)``;
    every term reduces to sums over the diagonals.

    %(parameters)s

    Returns
    -------
    kl : (...) ndarray or scalar
        The divergences over the broadcast batch shape.

    Raises
    ------
    %(raises_var)s
    %(raises_input)s
    %(raises_overflow)s

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> round(float(fm.kl_diag(np.zeros((1, 1)), [2.0], [1.0])), 12)   # ½(2 − 1 − log 2)
    0.15342640972
    """
    return call(FUNCTIONS["kl_diag"], (mean1, rowvar1, colvar1, mean2, rowvar2, colvar2), out, errors)


@filled("logdet")
def logdet(a: ArrayLike, *, out: FloatArray | None = None, errors: Errors = "raise") -> Result:
    """Log-determinant of symmetric positive definite matrices, batched.

    Computed from the Cholesky factor, reading only the lower triangle of ``a``.

    %(parameters)s

    Returns
    -------
    logdet : (...) ndarray or scalar
        ``log|a|``.

    Raises
    ------
    %(raises_spd)s
    %(raises_input)s

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> fm.logdet(np.stack([np.eye(3), 2 * np.eye(3)])) / np.log(2)
    array([0., 3.])
    """
    return call(FUNCTIONS["logdet"], (a,), out, errors)


@filled("trace_solve")
def trace_solve(a: ArrayLike, b: ArrayLike, *, out: FloatArray | None = None, errors: Errors = "raise") -> Result:
    """``tr(a⁻¹ b)`` for symmetric positive definite ``a`` and square ``b``, batched.

    Uses the Cholesky factor ``L`` of ``a`` (only its lower triangle is read): small items
    take two triangular solves, ``tr(L⁻ᵀ (L⁻¹ b))``; large ones (the plan for large items)
    ``Σᵢⱼ (a⁻¹)ᵢⱼ bᵢⱼ`` with ``a⁻¹`` formed from ``L``, a third of the work, as accurate. Every
    entry of ``b`` is read.

    %(parameters)s

    Returns
    -------
    trace : (...) ndarray or scalar
        ``tr(a⁻¹ b)``.

    Raises
    ------
    %(raises_spd)s
    %(raises_input)s
    %(raises_overflow)s

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> round(float(fm.trace_solve(2 * np.eye(3), np.ones((3, 3)))), 12)
    1.5
    """
    return call(FUNCTIONS["trace_solve"], (a, b), out, errors)


@filled("mahalanobis")
def mahalanobis(x: ArrayLike, mean: ArrayLike | None, rowcov: ArrayLike, colcov: ArrayLike, *,
                out: FloatArray | None = None, errors: Errors = "raise") -> Result:
    """Squared Mahalanobis distance ``tr(V⁻¹ (X−M)ᵀ U⁻¹ (X−M))`` of a matrix normal, batched.

    Equal to ``vec(X−M)ᵀ (V⊗U)⁻¹ vec(X−M)``, computed as ``‖L_U⁻¹ (X−M) L_V⁻ᵀ‖_F²``
    through Cholesky factors (only the lower triangles of ``rowcov`` and ``colcov`` are read).

    %(parameters)s

    Returns
    -------
    distance : (...) ndarray or scalar
        The squared distances.

    Raises
    ------
    %(raises_cov)s
    %(raises_input)s
    %(raises_overflow)s

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> round(float(fm.mahalanobis(np.ones((2, 3)), None, 2 * np.eye(2), np.eye(3))), 12)
    3.0
    """
    return call(FUNCTIONS["mahalanobis"], (x, mean, rowcov, colcov), out, errors)


@filled("mahalanobis_chol")
def mahalanobis_chol(x: ArrayLike, mean: ArrayLike | None, rowchol: ArrayLike, colchol: ArrayLike, *,
                     out: FloatArray | None = None, errors: Errors = "raise", lower: bool = True) -> Result:
    """Squared Mahalanobis distance from Cholesky factors of ``U`` and ``V``, batched.

    The same as :func:`mahalanobis` with ``U = rowchol @ rowchol.T`` and
    ``V = colchol @ colchol.T``: ``‖L_U⁻¹ (X−M) L_V⁻ᵀ‖_F²``, two triangular solves and no
    factorisation. Only the lower triangles are read (the upper ones with ``lower=False``);
    the diagonals must be positive.

    %(parameters)s

    Returns
    -------
    distance : (...) ndarray or scalar
        The squared distances.

    Raises
    ------
    %(raises_chol)s
    %(raises_input)s
    %(raises_overflow)s

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> round(float(fm.mahalanobis_chol(np.ones((2, 3)), None, np.sqrt(2) * np.eye(2), np.eye(3))), 12)
    3.0
    """
    return call(FUNCTIONS["mahalanobis_chol"], (x, mean, rowchol, colchol), out, errors, lower)


@filled("logpdf")
def logpdf(x: ArrayLike, mean: ArrayLike | None, rowcov: ArrayLike, colcov: ArrayLike, *,
           out: FloatArray | None = None, errors: Errors = "raise") -> Result:
    r"""Log-density of the matrix normal ``MN(mean, rowcov, colcov)`` at ``x``, batched.

    .. math::

        -\tfrac12\big[np\log 2\pi + p\log|U| + n\log|V|
        + \operatorname{tr}(V^{-1}(X-M)^\top U^{-1}(X-M))\big],

    the density of ``vec X ~ N(vec M, V⊗U)`` (as ``scipy.stats.matrix_normal``), in one
    fused pass per item through Cholesky factors (only the lower triangles of ``rowcov``
    and ``colcov`` are read).

    %(parameters)s

    Returns
    -------
    logpdf : (...) ndarray or scalar
        The log-densities over the broadcast batch shape.

    Raises
    ------
    %(raises_cov)s
    %(raises_input)s
    %(raises_overflow)s

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> from scipy.stats import matrix_normal
    >>> x, u, v = np.ones((2, 3)), 2 * np.eye(2), np.eye(3)
    >>> bool(np.isclose(fm.logpdf(x, None, u, v), matrix_normal(None, u, v).logpdf(x)))
    True
    """
    return call(FUNCTIONS["logpdf"], (x, mean, rowcov, colcov), out, errors)


@filled("logpdf_chol")
def logpdf_chol(x: ArrayLike, mean: ArrayLike | None, rowchol: ArrayLike, colchol: ArrayLike, *,
                out: FloatArray | None = None, errors: Errors = "raise", lower: bool = True) -> Result:
    """Log-density of the matrix normal with Cholesky factors ``rowchol``, ``colchol``, batched.

    The same as :func:`logpdf` with ``U = rowchol @ rowchol.T`` and ``V = colchol @ colchol.T``;
    no factorisation is needed. Only the lower triangles are read (the upper ones with
    ``lower=False``); the diagonals must be positive.

    %(parameters)s

    Returns
    -------
    logpdf : (...) ndarray or scalar
        The log-densities over the broadcast batch shape.

    Raises
    ------
    %(raises_chol)s
    %(raises_input)s
    %(raises_overflow)s

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> L = np.array([[1.0, 0.0], [0.5, 2.0]])
    >>> bool(np.isclose(fm.logpdf_chol(np.ones((2, 2)), None, L, np.eye(2)),
    ...                 fm.logpdf(np.ones((2, 2)), None, L @ L.T, np.eye(2))))
    True
    """
    return call(FUNCTIONS["logpdf_chol"], (x, mean, rowchol, colchol), out, errors, lower)


@filled("logpdf_diag")
def logpdf_diag(x: ArrayLike, mean: ArrayLike | None, rowvar: ArrayLike, colvar: ArrayLike, *,
                out: FloatArray | None = None, errors: Errors = "raise") -> Result:
    r"""Log-density of the matrix normal with diagonal covariances ``diag(rowvar)``, ``diag(colvar)``, batched.

    .. math::

        -\tfrac12\Big[np\log 2\pi + p\sum_i \log a_i + n\sum_j \log b_j
        + \sum_{ij} \frac{(X-M)_{ij}^2}{a_i b_j}\Big],

    :func:`logpdf` with ``U = diag(a)``, ``V = diag(b)``: ``O(np)`` work per item, no matrix
    formed. Small items run side by side in lanes as the other functions' do; a large item
    is one compiled read of ``x`` and ``mean``.

    %(parameters)s

    Returns
    -------
    logpdf : (...) ndarray or scalar
        The log-densities over the broadcast batch shape.

    Raises
    ------
    %(raises_var)s
    %(raises_input)s
    %(raises_overflow)s

    See Also
    --------
    fastmvn.entropy_diag, fastmvn.rvs_diag : the other functions of diagonal covariances.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> x, a, b = np.ones((2, 3)), np.array([1.0, 2.0]), np.array([0.5, 1.0, 4.0])
    >>> bool(np.isclose(fm.logpdf_diag(x, None, a, b), fm.logpdf(x, None, np.diag(a), np.diag(b))))
    True
    >>> fm.logpdf_diag(np.zeros((10, 2, 3)), None, a, b).shape
    (10,)
    """
    return call(FUNCTIONS["logpdf_diag"], (x, mean, rowvar, colvar), out, errors)
