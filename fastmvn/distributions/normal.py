"""The frozen, possibly batched matrix normal :class:`MatrixNormal`: its checked and factorised
parameters, densities, entropy, KL divergence, sampling, marginals, conditionals, affine maps
and expectations of quadratic forms.

NumPy around the compiled kernels of :mod:`fastmvn._api`: densities and divergences go
through the kernels on the stored Cholesky factors; the conditioning algebra uses
``numpy.linalg`` on the whole batch at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .._api import kl_chol
from numpy.linalg import LinAlgError

from .._arguments import CHOL, COV, MEAN, VAR, Arg, check, lower_factors, result_dtype
from .._docs import shared
from ._base import (_compared, _eigen, _factor, _failing, _Frozen, _full, _in_range, _indices, _inverse, _Links,
                    _nonfinite, _not_pd, _report, _symmetric)
from .functions import _checked, _sample, entropy_chol

if TYPE_CHECKING:
    from .._typing import ArrayLike, FloatArray, Result, Seed, Size
    from .gaussian import MatrixGaussian
    from .kron import KroneckerSumNormal

__all__ = ["MatrixNormal"]


class MatrixNormal(_Frozen):
    """A frozen matrix normal distribution ``MN(mean, rowcov, colcov)``, possibly batched.

    ``vec X ~ N(vec M, V⊗U)`` with column-major ``vec`` (the convention of
    ``scipy.stats.matrix_normal``). The arguments broadcast over leading axes like those of
    the core functions; a batched distribution is a stack of independent distributions of
    shape :attr:`batch_shape`. The inputs are copied, checked and factorised once, here:
    shapes, finiteness and positive definiteness (through the Cholesky factors that every
    method then reuses), each failure naming the argument and the batch index. Only the
    lower triangles of the covariances are read; the stored covariances are symmetric.

    Parameters
    ----------
    mean : (..., n, p) array_like or None, optional
        Mean ``M``; ``None`` (default) means zero, of the size the covariances give.
    rowcov : (..., n, n) array_like, float or None, optional
        Row covariance ``U`` (symmetric positive definite); a positive number ``c`` means
        ``c·I`` and ``None`` (default) the identity, as in ``scipy.stats.matrix_normal``,
        both of the size ``mean`` gives. A Python number does not decide the dtype.
    colcov : (..., p, p) array_like, float or None, optional
        Column covariance ``V``, likewise.

    Raises
    ------
    numpy.linalg.LinAlgError
        A covariance is not positive definite, or a scalar covariance not positive (names
        the argument and batch index).
    ValueError
        NaN or infinity (names the argument and batch index); shapes that do not fit; a
        scalar or ``None`` covariance with ``mean=None``, which leaves its size unknown.

    See Also
    --------
    MatrixNormal.from_chol : the same from lower Cholesky factors.
    MatrixNormal.from_precision : the same from precisions ``U⁻¹``, ``V⁻¹``.
    MatrixNormal.from_eig : the same from eigendecompositions.
    fit : maximum-likelihood fit to samples.

    Notes
    -----
    The arrays are stored with their own batch shapes (a covariance shared by the whole
    batch is stored once); the attributes return read-only views broadcast to
    :attr:`batch_shape`. Arithmetic is in float64; the distribution stores and returns
    float32 when every input is float32 (``fastmvn.kl`` states the rule). A float32
    distribution keeps its parameters and factors as computed, in float64, as well: a
    method given a float64 argument computes its float64 result from those, as a float64
    distribution of the same inputs would.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> d = fm.MatrixNormal(np.zeros((5, 3, 2)), np.eye(3), [[2.0, 0.5], [0.5, 1.0]])
    >>> d
    MatrixNormal(shape=(3, 2), batch_shape=(5,), dtype=float64)
    >>> x = d.rvs(size=100, random_state=1)
    >>> x.shape, d.logpdf(x).shape, d.entropy().shape, d[0].batch_shape
    ((100, 5, 3, 2), (100, 5), (5,), ())
    >>> d.marginal(rows=[0, 2], cols=[1]).shape
    (2, 1)
    >>> d.condition(cols=[1], values=np.ones((3, 1))).colcov[0]
    array([[1.75]])
    >>> fm.MatrixNormal(np.zeros((3, 2)), 2.0).rowcov       # colcov the identity
    array([[2., 0., 0.],
           [0., 2., 0.],
           [0., 0., 2.]])
    """

    _PARTS = ("_mean", "_rowcov", "_colcov", "_rowchol", "_colchol")
    _rowcov: FloatArray
    _colcov: FloatArray
    _rowchol: FloatArray
    _colchol: FloatArray

    def __init__(self, mean: ArrayLike | None = None, rowcov: ArrayLike | float | None = None,
                 colcov: ArrayLike | float | None = None) -> None:
        mean, rowcov, colcov, deciding = _standard(mean, rowcov, colcov)
        *parts, _, batch_shape = _parameters(mean, rowcov, colcov, COV)
        self._init(*parts, result_dtype(*deciding), batch_shape)

    @staticmethod
    def from_chol(mean: ArrayLike | None, rowchol: ArrayLike, colchol: ArrayLike, *, lower: bool = True) -> MatrixNormal:
        """The matrix normal with ``U = rowchol @ rowchol.T`` and ``V = colchol @ colchol.T``.

        Parameters
        ----------
        mean : (..., n, p) array_like or None
            Mean ``M``; ``None`` means zero.
        rowchol : (..., n, n) array_like
            Cholesky factor of the row covariance (lower triangle read, positive diagonal).
        colchol : (..., p, p) array_like
            Cholesky factor of the column covariance.
        lower : bool, optional
            Lower factors ``U = L Lᵀ`` (default) or, with ``False``, upper ones
            ``U = Rᵀ R`` (upper triangles read), as in :func:`fastmvn.kl_chol`. The
            distribution stores the lower factors either way (:attr:`rowchol`).

        Returns
        -------
        MatrixNormal

        Raises
        ------
        numpy.linalg.LinAlgError
            A diagonal entry is not positive (names the argument and batch index).
        ValueError
            NaN or infinity; shapes that do not fit.
        FloatingPointError
            A covariance ``L Lᵀ`` is too large for the dtype (names the argument and batch index).

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> L = np.array([[2.0, 0.0], [1.0, 1.0]])
        >>> fm.MatrixNormal.from_chol(None, L, np.eye(1)).rowcov
        array([[4., 2.],
               [2., 2.]])
        >>> fm.MatrixNormal.from_chol(None, L.T, np.eye(1), lower=False).rowcov   # U = Rᵀ R, R = Lᵀ
        array([[4., 2.],
               [2., 2.]])
        """
        rowchol, colchol = lower_factors(lower, rowchol, colchol)
        return MatrixNormal._assemble(*_parameters(mean, rowchol, colchol, CHOL))

    @staticmethod
    def from_precision(mean: ArrayLike | None, rowprec: ArrayLike, colprec: ArrayLike) -> MatrixNormal:
        """The matrix normal with row covariance ``U = rowprec⁻¹`` and column covariance ``V = colprec⁻¹``.

        The parameterisation of Stan's ``matrix_normal_prec`` and of precision-based models.
        Every method of a matrix normal runs on the lower Cholesky factors of ``U`` and ``V``,
        so those are made from the precisions without forming ``U`` or factorising it: with
        ``J`` the reversal of the rows, ``J Ω J = G Gᵀ`` (Cholesky) gives ``Ω = Ĝ Ĝᵀ`` with
        ``Ĝ = J G J`` upper triangular, so ``U = Ω⁻¹ = Ĝ⁻ᵀ Ĝ⁻¹`` and its lower Cholesky factor is
        ``Ĝ⁻ᵀ = J G⁻ᵀ J``: one Cholesky factorisation and one triangular inversion per side,
        ``O(n³)``, once. (``L⁻ᵀ`` for the ordinary factor ``Ω = L Lᵀ`` is upper triangular,
        not a Cholesky factor of ``U``.) The methods then run as for any matrix normal;
        :func:`fastmvn.logpdf_prec` evaluates the density from the precisions with no inverse.

        Parameters
        ----------
        mean : (..., n, p) array_like or None
            Mean ``M``; ``None`` means zero.
        rowprec : (..., n, n) array_like
            Row precision ``Ω_U = U⁻¹`` (symmetric positive definite; lower triangle read).
        colprec : (..., p, p) array_like
            Column precision ``Ω_V = V⁻¹``.

        Returns
        -------
        MatrixNormal

        Raises
        ------
        numpy.linalg.LinAlgError
            A precision is not positive definite (names the argument and batch index).
        ValueError
            NaN or infinity; shapes that do not fit.
        FloatingPointError
            A covariance ``Ω⁻¹`` is too large for the dtype (names the argument and batch index).

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> omega = np.array([[2.0, 0.5], [0.5, 1.0]])
        >>> d = fm.MatrixNormal.from_precision(None, omega, 4 * np.eye(3))
        >>> bool(np.allclose(d.rowcov, np.linalg.inv(omega))), d.colcov[0, 0]
        (True, np.float64(0.25))
        >>> bool(np.allclose(d.rowchol, np.linalg.cholesky(np.linalg.inv(omega))))
        True
        """
        row_arg, col_arg = Arg("rowprec", COV, rowprec, "nn"), Arg("colprec", COV, colprec, "pp")
        if mean is None:
            mean_arg = Arg("mean", MEAN, np.zeros(row_arg.core_shape[:1] + col_arg.core_shape[:1]), "np", default=True)
        else:
            mean_arg = Arg("mean", MEAN, mean, "np")
        args = [mean_arg, row_arg, col_arg]
        dtype, batch_shape = check(args)
        factors, failures = [], []
        for arg in (row_arg, col_arg):
            reversed_prec = _symmetric(arg.array, np.float64)[..., ::-1, ::-1]  # J Ω J
            chol, bad = _factor(Arg(arg.name, COV, reversed_prec, arg.axes))  # J Ω J = G Gᵀ
            factors.append(np.swapaxes(_inverse(chol), -1, -2)[..., ::-1, ::-1])  # J G⁻ᵀ J, lower
            failures.append((bad, LinAlgError, _not_pd(arg.name)))
        _report([(_nonfinite(arg), ValueError, f"{arg.name} contains NaN or infinity") for arg in args] + failures,
                batch_shape)
        with np.errstate(over="ignore", invalid="ignore"):
            covariances = [chol @ np.swapaxes(chol, -1, -2) for chol in factors]
        rowcov, colcov = (_in_range(cov, dtype, f"the covariance {arg.name}⁻¹", batch_shape)
                          for cov, arg in zip(covariances, (row_arg, col_arg)))
        mean = np.array(np.asarray(mean_arg.array, dtype=np.float64))
        return MatrixNormal._assemble(mean, rowcov, colcov, *(np.ascontiguousarray(f) for f in factors), dtype,
                                      batch_shape)

    @staticmethod
    def from_eig(mean: ArrayLike | None, rowvecs: ArrayLike, rowvals: ArrayLike, colvecs: ArrayLike,
                 colvals: ArrayLike) -> MatrixNormal:
        """The matrix normal with ``U = Q_u diag(λ_u) Q_uᵀ`` and ``V = Q_v diag(λ_v) Q_vᵀ``, given by
        their eigendecompositions.

        Every method of a matrix normal runs on lower Cholesky factors, so one is made per
        covariance, without forming ``U``: the triangular ``R`` of the QR factorisation of
        ``diag(√λ) Qᵀ`` gives ``U = Rᵀ R``, and ``L = Rᵀ`` (its columns' signs made to give a
        positive diagonal). That costs what a Cholesky factorisation costs, ``O(n³)``, and works
        with ``√λ``, so it loses no more accuracy than the eigendecomposition itself.

        Parameters
        ----------
        mean : (..., n, p) array_like or None
            Mean ``M``; ``None`` means zero.
        rowvecs : (..., n, n) array_like
            Orthonormal eigenvectors ``Q_u`` of ``U``, in columns (as ``numpy.linalg.eigh`` returns them).
        rowvals : (..., n) array_like
            Eigenvalues ``λ_u > 0`` of ``U``.
        colvecs : (..., p, p) array_like
            Orthonormal eigenvectors ``Q_v`` of ``V``.
        colvals : (..., p) array_like
            Eigenvalues ``λ_v > 0`` of ``V``.

        Returns
        -------
        MatrixNormal

        Raises
        ------
        ValueError
            NaN or infinity; eigenvectors that are not orthonormal (an entry of ``QᵀQ − I``
            beyond the square root of the dtype's epsilon); shapes that do not fit.
        numpy.linalg.LinAlgError
            An eigenvalue that is not positive. Each names the argument and batch index.

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> u = np.array([[2.0, 0.5], [0.5, 1.0]])
        >>> vals, vecs = np.linalg.eigh(u)
        >>> d = fm.MatrixNormal.from_eig(None, vecs, vals, np.eye(3), np.ones(3))
        >>> bool(np.allclose(d.rowchol, np.linalg.cholesky(u)))
        True
        """
        _, rowchol, colchol, dtype, batch_shape, (nonfinite, other) = _eig_factors(
            mean, rowvecs, rowvals, colvecs, colvals, ("mean", "rowvecs", "rowvals", "colvecs", "colvals"))
        _report([*nonfinite, *other], batch_shape)
        *parts, _, batch_shape = _parameters(mean, rowchol, colchol, CHOL)
        return MatrixNormal._assemble(*parts, dtype, batch_shape)

    # Attributes

    @property
    def rowcov(self) -> FloatArray:
        """``(..., n, n)`` row covariance ``U`` (read-only)."""
        return self._view(self._rowcov)

    @property
    def colcov(self) -> FloatArray:
        """``(..., p, p)`` column covariance ``V`` (read-only)."""
        return self._view(self._colcov)

    @property
    def rowchol(self) -> FloatArray:
        """``(..., n, n)`` lower Cholesky factor of ``U`` (read-only)."""
        return self._view(self._rowchol)

    @property
    def colchol(self) -> FloatArray:
        """``(..., p, p)`` lower Cholesky factor of ``V`` (read-only)."""
        return self._view(self._colchol)

    def var(self) -> FloatArray:
        """Entry-wise variances ``Var(X_ij) = U_ii V_jj``: the matrix ``diag(U) diag(V)ᵀ``.

        Returns
        -------
        var : (..., n, p) ndarray
            Over :attr:`batch_shape`, in :attr:`dtype`.

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> fm.MatrixNormal(np.zeros((2, 3)), [[1.0, 0.5], [0.5, 2.0]], np.diag([1.0, 2.0, 4.0])).var()
        array([[1., 2., 4.],
               [2., 4., 8.]])
        """
        return self._entrywise(lambda diagonal: diagonal)

    def std(self) -> FloatArray:
        """Entry-wise standard deviations ``√(U_ii V_jj)``, the square roots of :meth:`var`.

        Returns
        -------
        std : (..., n, p) ndarray
            Over :attr:`batch_shape`, in :attr:`dtype`.

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> fm.MatrixNormal(np.zeros((2, 2)), np.diag([1.0, 4.0]), 9.0).std()
        array([[3., 3.],
               [6., 6.]])
        """
        return self._entrywise(np.sqrt)

    def _entrywise(self, function):
        """``function(diag U)[:, None] · function(diag V)[None, :]`` over the batch, in the dtype."""
        rowvar, colvar = (np.diagonal(cov, axis1=-2, axis2=-1) for cov in self._exact[1:3])
        value = function(rowvar)[..., :, None] * function(colvar)[..., None, :]
        return _full(value.astype(self._dtype), self._batch_shape + self.shape)

    def mode(self) -> FloatArray:
        """The mode, which is the mean ``M`` (read-only, as :attr:`mean`).

        Returns
        -------
        mode : (..., n, p) ndarray

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> d = fm.MatrixNormal(np.arange(6.0).reshape(2, 3))
        >>> bool(np.array_equal(d.mode(), d.mean))
        True
        """
        return self.mean

    @property
    def cov(self) -> FloatArray:
        """``(..., np, np)`` dense covariance ``V⊗U`` of column-major ``vec X`` (read-only).

        Entry ``[i + n·j, k + n·l]`` is ``Cov(X_ij, X_kl) = V_jl U_ik``. It holds ``(np)²``
        numbers per item: meant for small sizes and checks.
        """
        n, p = self.shape
        dense = np.einsum("...jl,...ik->...jilk", self._colcov, self._rowcov)
        return np.broadcast_to(dense.reshape(dense.shape[:-4] + (n * p, n * p)),
                               self._batch_shape + (n * p, n * p))

    # Densities, entropy, divergence

    def _kernel_args(self, x):
        x = self._checked_points(x).array
        mean, _, _, rowchol, colchol = self._parts_for(x)
        return x, mean, rowchol, colchol

    def entropy(self) -> Result:
        """Differential entropy ``½[np(1 + log 2π) + n log|V| + p log|U|]`` from the stored factors.

        Returns
        -------
        entropy : (...) ndarray or scalar
            Over :attr:`batch_shape`.
        """
        return _full(entropy_chol(self._rowchol, self._colchol), self._batch_shape)

    def to_matrix_gaussian(self) -> MatrixGaussian:
        """This distribution as a :class:`~fastmvn.MatrixGaussian`, ``N(vec M, V⊗U)``.

        The same as :meth:`MatrixGaussian.from_normal`: the ``np×np`` covariance is formed
        (from the stored factors, nothing is factorised), so it is for small ``n·p``.

        Returns
        -------
        MatrixGaussian
            Of the same shape ``(n, p)``, batch shape and dtype.

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> d = fm.MatrixNormal(np.zeros((2, 3)), 2 * np.eye(2), np.eye(3))
        >>> g = d.to_matrix_gaussian()
        >>> g.cov.shape, bool(np.allclose(g.cov, d.cov))
        ((6, 6), True)
        """
        return _Links.to_gaussian(self)

    def kl(self, other: MatrixNormal | MatrixGaussian | KroneckerSumNormal) -> Result:
        """``KL(self ‖ other)``, by :func:`fastmvn.kl_chol` on the stored factors.

        Parameters
        ----------
        other : MatrixNormal, MatrixGaussian or KroneckerSumNormal
            Of the same :attr:`shape`; the batch shapes broadcast. A
            :class:`~fastmvn.MatrixGaussian` or :class:`~fastmvn.KroneckerSumNormal` goes to
            :func:`fastmvn.kl_gaussian`.

        Returns
        -------
        kl : (...) ndarray or scalar
            Over the broadcast batch shape.

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> p = fm.MatrixNormal(np.zeros((2, 2)), 2 * np.eye(2), np.eye(2))
        >>> q = fm.MatrixNormal(np.zeros((2, 2)), np.eye(2), 2 * np.eye(2))   # the same distribution
        >>> abs(float(p.kl(q))) < 1e-12
        True
        """
        if not isinstance(other, MatrixNormal):
            if isinstance(other, _Frozen):  # a MatrixGaussian or a KroneckerSumNormal
                return _Links.kl(self, other)
            raise TypeError(f"other must be a MatrixNormal, a MatrixGaussian or a KroneckerSumNormal, "
                            f"not {type(other).__name__}")
        _compared(self, other)
        mean1, _, _, rowchol1, colchol1 = self._parts_for(other._mean)
        mean2, _, _, rowchol2, colchol2 = other._parts_for(self._mean)
        return kl_chol(mean1, rowchol1, colchol1, mean2, rowchol2, colchol2)

    @shared
    def rvs(self, size: Size = None, random_state: Seed = None, *, out: FloatArray | None = None) -> FloatArray:
        """Random draws ``M + A Z Bᵀ`` from the stored factors ``A``, ``B``.

        Parameters
        ----------
        %(size)s
        random_state : numpy.random.Generator, int or None
            As in :func:`rvs`; the same seed gives the same draws as :func:`rvs` (bit for
            bit: both draw from the float64 factors).
        out : ``(*size, ..., n, p)`` ndarray, optional
            Array of the samples' shape and :attr:`dtype` to write the draws into; it is
            returned. Another shape (or a read-only array) is a ValueError, another dtype a
            TypeError.

        Returns
        -------
        samples : ``(*size, ..., n, p)`` ndarray

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> d = fm.MatrixNormal(np.zeros((4, 3, 2)))
        >>> buffer = np.empty((10, 4, 3, 2))
        >>> d.rvs(10, random_state=0, out=buffer) is buffer
        True
        """
        mean, _, _, rowchol, colchol = self._exact
        return _sample(mean, rowchol, colchol, size, random_state, self._dtype, self._batch_shape, out)

    # New distributions

    def marginal(self, rows: Any = None, cols: Any = None) -> MatrixNormal:
        """The distribution of the sub-matrix ``X[rows][:, cols]``: ``MN(M[r, c], U[r, r], V[c, c])``.

        Parameters
        ----------
        rows, cols : int, sequence of ints, slice or boolean mask, optional
            The rows and columns kept, in the order given (no repeats); ``None`` keeps all.

        Returns
        -------
        MatrixNormal
            Of shape ``(len(rows), len(cols))`` and the same batch shape.
        """
        r, c = self._selection(rows, cols)
        return MatrixNormal(self._mean[..., r[:, None], c], self._rowcov[..., r[:, None], r],
                            self._colcov[..., c[:, None], c])

    def condition(self, *, rows: Any = None, cols: Any = None, values: ArrayLike) -> MatrixNormal:
        """The distribution of the other rows (or columns) given observed ones.

        Split by columns, ``X = [X1 X2]`` with ``X2 = X[:, cols]`` observed:
        ``X1 | X2 ~ MN(M1 + (X2 − M2) V22⁻¹ V21, U, V11 − V12 V22⁻¹ V21)``; by rows, likewise
        with ``U``: ``MN(M1 + U12 U22⁻¹ (X2 − M2), U11 − U12 U22⁻¹ U21, V)`` (the Schur
        complement of the dense covariance on ``vec``).

        Parameters
        ----------
        rows, cols : int, sequence of ints, slice or boolean mask
            The observed rows, or the observed columns: exactly one of the two, leaving
            at least one row (column) unobserved.
        values : (..., k, p) or (..., n, k) array_like
            The observed rows (``k = len(rows)``) or columns (``k = len(cols)``), in the
            order of ``rows`` or ``cols``; leading axes broadcast with :attr:`batch_shape`.

        Returns
        -------
        MatrixNormal
            Over the unobserved rows (or columns), in their original order.
        """
        if (rows is None) == (cols is None):
            raise ValueError("give exactly one of rows= and cols=")
        by_rows = rows is not None
        value_axes = "kp" if by_rows else "nk"
        values_arg = Arg("values", MEAN, values, value_axes)
        dtype = result_dtype(self._mean, values_arg.array)
        mean, rowcov, colcov = (np.asarray(a, dtype=np.float64) for a in self._parts_for(values_arg.array)[:3])
        if by_rows:  # conditioning on rows of X is conditioning on columns of Xᵀ ~ MN(Mᵀ, V, U)
            mean, rowcov, colcov = np.swapaxes(mean, -1, -2), colcov, rowcov
        name = "rows" if by_rows else "cols"
        size = colcov.shape[-1]
        observed = _indices(rows if by_rows else cols, size, name)
        free = np.setdiff1d(np.arange(size), observed)
        if free.size == 0:
            raise ValueError(f"{name} observes every {'row' if by_rows else 'column'}: nothing is left to condition")
        observed_mean = mean[..., observed]
        # n and p come from the distribution, k from the selection
        _, batch_shape = check([Arg("mean", MEAN, self.mean, "np"), Arg(name, MEAN, observed, "k"), values_arg])
        _report([(_nonfinite(values_arg), ValueError, "values contains NaN or infinity")], batch_shape)
        values = np.asarray(values_arg.array, dtype=np.float64)
        if by_rows:
            values = np.swapaxes(values, -1, -2)
        gain = np.linalg.solve(colcov[..., observed[:, None], observed], colcov[..., observed[:, None], free])
        new_mean = mean[..., free] + (values - observed_mean) @ gain
        new_colcov = colcov[..., free[:, None], free] - np.swapaxes(colcov[..., observed[:, None], free], -1, -2) @ gain
        if by_rows:
            return MatrixNormal(np.swapaxes(new_mean, -1, -2).astype(dtype), new_colcov.astype(dtype),
                                rowcov.astype(dtype))
        return MatrixNormal(new_mean.astype(dtype), rowcov.astype(dtype), new_colcov.astype(dtype))

    @shared
    def affine(self, A: ArrayLike | None = None, B: ArrayLike | None = None,
               C: ArrayLike | None = None) -> MatrixNormal:
        """The distribution of ``A X B + C``: ``MN(A M B + C, A U Aᵀ, Bᵀ V B)``.

        Parameters
        ----------
        %(affine)s

        Returns
        -------
        MatrixNormal
            Of shape ``(m, q)``; leading axes broadcast with :attr:`batch_shape`.

        Raises
        ------
        numpy.linalg.LinAlgError
            ``A U Aᵀ`` or ``Bᵀ V B`` is not positive definite (``A`` or ``B`` is rank
            deficient), naming the batch index.
        ValueError
            NaN or infinity in ``A``, ``B`` or ``C``; shapes that do not fit.
        """
        args, dtype, _ = self._affine_args(self._mean, A, B, C)
        mean, rowcov, colcov = (np.asarray(a, dtype=np.float64)
                                for a in self._parts_for(*(arg.array for arg in args[1:]))[:3])
        if A is not None:
            A = np.asarray(A, dtype=np.float64)
            mean, rowcov = A @ mean, A @ rowcov @ np.swapaxes(A, -1, -2)
        if B is not None:
            B = np.asarray(B, dtype=np.float64)
            mean, colcov = mean @ B, np.swapaxes(B, -1, -2) @ colcov @ B
        if C is not None:
            mean = mean + np.asarray(C, dtype=np.float64)
        mean, rowcov, colcov = (a.astype(dtype) for a in (mean, rowcov, colcov))
        return self._assemble(*_parameters(mean, rowcov, colcov, COV,
                                           names=("A mean B + C", "A rowcov Aᵀ", "Bᵀ colcov B")))

    # Expectations

    def _expect_quadratic(self, A, transpose):
        """``E[Xᵀ A X]``, or with ``transpose`` ``E[X A Xᵀ]``: that of ``Xᵀ ~ MN(Mᵀ, V, U)``."""
        mean_arg, a_arg = Arg("mean", MEAN, self.mean, "np"), Arg("A", MEAN, A, "pp" if transpose else "nn")
        dtype, batch_shape = check([mean_arg, a_arg])
        mean, rowcov, colcov = self._parts_for(a_arg.array)[:3]
        mean, a, rowcov, colcov = (np.asarray(x, dtype=np.float64) for x in (mean, a_arg.array, rowcov, colcov))
        if transpose:
            mean, rowcov, colcov = np.swapaxes(mean, -1, -2), colcov, rowcov
        value = (np.swapaxes(mean, -1, -2) @ a @ mean
                 + np.trace(a @ rowcov, axis1=-2, axis2=-1)[..., None, None] * colcov)
        return _full(value.astype(dtype), batch_shape + value.shape[-2:])


def _standard(mean, rowcov, colcov):
    """The arguments of ``MatrixNormal(mean, rowcov, colcov)`` with a covariance given as None
    or as a positive number ``c`` made the identity or ``c·I`` of the size ``mean`` gives, and
    the inputs that decide the dtype (not a made identity, nor a Python number)."""
    deciding, sizes = [], (None, None)
    if mean is not None:
        mean_arg = Arg("mean", MEAN, mean, "np")
        deciding.append(mean_arg.array)
        sizes = mean_arg.core_shape
    covariances = []
    for name, value, size, what in (("rowcov", rowcov, sizes[0], "rows"), ("colcov", colcov, sizes[1], "columns")):
        if value is not None and np.ndim(value) > 0:
            covariances.append(value)
            deciding.append(value)
            continue
        if value is None:
            scale = 1.0
        else:
            scale = float(Arg(name, VAR, value, "").array)
            if not np.isfinite(scale):
                raise ValueError(f"{name} contains NaN or infinity")
            if scale <= 0:
                raise LinAlgError(f"{name} is not positive definite: a number c stands for c·I and must be "
                                  f"positive, not {scale!r}")
            if isinstance(value, np.generic) or not isinstance(value, (int, float)):  # np.float64 is a float
                deciding.append(value)
        if size is None:
            given = "None" if value is None else "a number"
            raise ValueError(f"{name} is {given} and mean is None: the number of {what} is unknown; give mean, "
                             f"or {name} as a matrix")
        covariances.append(scale * np.eye(size))
    return mean, *covariances, deciding


def _covariance(chol, name, dtype, batch_shape):
    """``L Lᵀ`` for the lower factors ``chol`` (float64) of argument ``name``; a covariance
    too large for ``dtype`` raises, naming the argument and the batch index."""
    with np.errstate(over="ignore", invalid="ignore"):
        cov = chol @ np.swapaxes(chol, -1, -2)
    return _in_range(cov, dtype, f"the covariance {name} @ {name}ᵀ", batch_shape)


def _eig_factors(mean, rowvecs, rowvals, colvecs, colvals, names):
    """The lower Cholesky factors of ``U = Q_u diag(λ_u) Q_uᵀ`` and ``V = Q_v diag(λ_v) Q_vᵀ``
    from their eigendecompositions, without forming ``U``: ``L = Rᵀ`` for the triangular ``R``
    of the QR factorisation of ``diag(√λ) Qᵀ`` (``U = Rᵀ R``), its columns' signs made to give a
    positive diagonal. The arguments are named by ``names`` (mean, rowvecs, rowvals, colvecs,
    colvals).

    Returns the mean, ``rowchol`` and ``colchol`` (float64, over their own batch shapes), the
    dtype, the batch shape and the failures for :func:`_report` as two lists, the non-finite
    ones first (``mean`` among them), then the others (:func:`_eigen` with positive
    eigenvalues). A failing item's factor is the identity, for a caller that makes it NaN.
    """
    mean_name, rowvecs_name, rowvals_name, colvecs_name, colvals_name = names
    args = [Arg(rowvecs_name, MEAN, rowvecs, "nn"), Arg(rowvals_name, VAR, rowvals, "n"),
            Arg(colvecs_name, MEAN, colvecs, "pp"), Arg(colvals_name, VAR, colvals, "p")]
    n, p = args[0].shape[-1], args[2].shape[-1]
    mean_arg = Arg(mean_name, MEAN, np.zeros((n, p)) if mean is None else mean, "np", default=mean is None)
    dtype, batch_shape = check([*args, mean_arg])
    nonfinite, other, factors = [(_nonfinite(mean_arg), ValueError, f"{mean_name} contains NaN or infinity")], [], []
    for vecs_arg, vals_arg in ((args[0], args[1]), (args[2], args[3])):
        side_nonfinite, side_other = _eigen(vecs_arg, vals_arg, True)
        nonfinite += side_nonfinite
        other += side_other
        bad = _failing([mask for mask, _, _ in side_nonfinite + side_other],
                       np.broadcast_shapes(vecs_arg.batch_shape, vals_arg.batch_shape))
        size = vecs_arg.shape[-1]
        vecs = np.where(bad[..., None, None], np.eye(size), np.asarray(vecs_arg.array, dtype=np.float64))
        vals = np.where(bad[..., None], 1.0, np.asarray(vals_arg.array, dtype=np.float64))
        upper = np.linalg.qr(np.sqrt(vals)[..., :, None] * np.swapaxes(vecs, -1, -2), mode="r")
        signs = np.sign(np.diagonal(upper, axis1=-2, axis2=-1))
        factors.append(np.swapaxes(upper, -1, -2) * signs[..., None, :])
    return np.array(mean_arg.array, dtype=np.float64), *factors, dtype, batch_shape, (nonfinite, other)


def _parameters(mean, row, col, kind, names=None):
    """The parts ``(mean, rowcov, colcov, rowchol, colchol, dtype, batch_shape)`` of a
    :class:`MatrixNormal`, checked as by :func:`_checked`, in new float64 arrays."""
    (mean_arg, row_arg, col_arg), rowchol, colchol, dtype, batch_shape, _ = _checked(mean, row, col, kind, names=names)
    if kind == COV:
        rowcov, colcov = (_symmetric(arg.array, np.float64) for arg in (row_arg, col_arg))
    else:
        rowcov, colcov = (_covariance(chol, arg.name, dtype, batch_shape)
                          for chol, arg in ((rowchol, row_arg), (colchol, col_arg)))
    return np.array(mean_arg.array, dtype=np.float64), rowcov, colcov, rowchol, colchol, dtype, batch_shape

