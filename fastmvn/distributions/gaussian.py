"""The general matrix Gaussian ``vec X ~ N(vec M, Σ)`` with a full ``np×np`` covariance: the
frozen, possibly batched :class:`MatrixGaussian` and expectations of quadratic forms
(:func:`expect_quadratic`). The KL divergences (:func:`fastmvn.kl_full`, from parameters, and
:func:`fastmvn.kl_gaussian`, between the distributions of either family) are
:mod:`fastmvn.distributions.kl`; the projection onto matrix normals is
:mod:`fastmvn.distributions.fitting`.

A matrix Gaussian on ``n×p`` matrices is a matrix normal on ``np×1`` matrices: mean
``vec M`` (a column), row covariance ``Σ`` and column covariance ``[[1]]``. Densities,
Mahalanobis distances and the KL between two stored distributions therefore run the
compiled matrix-normal kernels of :mod:`fastmvn._api` unchanged, on ``vec`` and the stored
factors, and :func:`kl_full` is the matrix-normal KL from covariances on the same ``np×1``
matrices. The rest (conditioning, affine maps, the Kronecker structure of a matrix normal) is NumPy
on whole batches.

Conventions: ``vec`` stacks columns, so ``Σ[i + n·j, k + n·l] = Cov(X_ij, X_kl)``; only the
lower triangle of ``Σ`` is read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.linalg import LinAlgError

from .._arguments import COV, MATRIX, MEAN, Arg, check
from .._docs import shared
from ._base import (_ENTROPY_PER_ENTRY, _factor, _Frozen, _full, _in_range, _Links, _nonfinite, _not_pd, _report,
                    _sample_shape, _symmetric)
from .normal import MatrixNormal

if TYPE_CHECKING:
    from .._typing import ArrayLike, FloatArray, NDArray, Result, Seed, Size
    from .kron import KroneckerSumNormal

__all__ = ["MatrixGaussian", "expect_quadratic"]

# The column covariance (and its factor) of vec X read as an np×1 matrix normal. float32, so
# that it never widens the result dtype of a kernel.
_ONE = np.ones((1, 1), np.float32)


# Layouts of the covariance ---------------------------------------------------------------


def _vec(x):
    """Column-major ``vec`` of each matrix as a column: ``(..., n, p)`` to ``(..., n·p, 1)``."""
    return np.swapaxes(x, -1, -2).reshape(x.shape[:-2] + (x.shape[-2] * x.shape[-1], 1))


def _unvec(v, n, p):
    """The ``n×p`` matrices whose column-major ``vec`` is ``v``: ``(..., n·p)`` to ``(..., n, p)``."""
    return np.swapaxes(v.reshape(v.shape[:-1] + (p, n)), -1, -2)


def _tensor(cov, n, p):
    """``C[..., i, j, k, l] = Σ[..., i + n·j, k + n·l]``, a view of ``cov``."""
    blocks = cov.reshape(cov.shape[:-2] + (p, n, p, n))  # blocks[j, i, l, k]
    return np.swapaxes(np.swapaxes(blocks, -4, -3), -2, -1)


def _cov_from_tensor(tensor):
    """``Σ`` from ``C`` (the inverse of :func:`_tensor`)."""
    n, p = tensor.shape[-4:-2]
    return np.swapaxes(np.swapaxes(tensor, -4, -3), -2, -1).reshape(tensor.shape[:-4] + (n * p, n * p))


def _kron_layout(cov, n, p):
    """The ``(n·n)×(p·p)`` matrix ``E[(X−M)⊗(X−M)]``: entry ``[i·n + k, j·p + l]`` is ``C[i, j, k, l]``."""
    tensor = np.swapaxes(_tensor(cov, n, p), -3, -2)  # [i, k, j, l]
    return tensor.reshape(tensor.shape[:-4] + (n * n, p * p))


def _cov_from_kron_layout(layout, n, p):
    """``Σ`` from the Kronecker layout (the inverse of :func:`_kron_layout`)."""
    tensor = np.swapaxes(layout.reshape(layout.shape[:-2] + (n, n, p, p)), -3, -2)
    return _cov_from_tensor(tensor)


# Checks and factorisation ----------------------------------------------------------------


def _check_size(mean_arg, cov_arg):
    """``cov_arg`` must be ``(..., n·p, n·p)`` for the ``n×p`` matrices of ``mean_arg``."""
    n, p = mean_arg.array.shape[-2:]
    if cov_arg.array.shape[-2:] != (n * p, n * p):
        raise ValueError(f"{cov_arg.name} has shape {cov_arg.array.shape}; expected (..., {n * p}, {n * p}): "
                         f"n·p = {n}·{p} from {mean_arg.name} of shape {mean_arg.array.shape}")


def _parts(mean, cov, names=("mean", "cov")):
    """The checked parts ``(mean, cov, chol, dtype, batch_shape)`` of a :class:`MatrixGaussian`,
    in new float64 arrays; failures raise naming the argument (by ``names``) and the batch index."""
    mean_name, cov_name = names
    mean_arg, cov_arg = Arg(mean_name, MEAN, mean, "np"), Arg(cov_name, COV, cov, "kk")
    dtype, batch_shape = check([mean_arg, cov_arg])
    _check_size(mean_arg, cov_arg)
    chol, failed = _factor(cov_arg)
    _report([(_nonfinite(mean_arg), ValueError, f"{mean_name} contains NaN or infinity"),
             (_nonfinite(cov_arg), ValueError, f"{cov_name} contains NaN or infinity"),
             (failed, LinAlgError, _not_pd(cov_name))], batch_shape)
    return np.array(mean_arg.array, dtype=np.float64), _symmetric(cov_arg.array, np.float64), chol, dtype, batch_shape


def _mask(mask: ArrayLike, name: str, shape: tuple[int, int]) -> NDArray[np.bool_]:
    """``mask`` checked to be a boolean array of ``shape`` that selects something."""
    array = np.asarray(mask)
    if array.dtype != bool:
        raise TypeError(f"{name} must be a boolean array of shape {shape}; got dtype {array.dtype}")
    if array.shape != shape:
        raise ValueError(f"{name} must be a boolean array of shape {shape}; got shape {array.shape}")
    if not array.any():
        raise ValueError(f"{name} selects nothing")
    return array


def _block_shape(mask):
    """``(rows, cols)`` when the True entries of ``mask`` are all pairs of some rows and
    some columns (a sub-matrix, not necessarily contiguous), else None."""
    rows, cols = mask.any(axis=1), mask.any(axis=0)
    if np.array_equal(mask, np.outer(rows, cols)):
        return int(rows.sum()), int(cols.sum())
    return None


def _vec_positions(mask):
    """Positions in column-major ``vec`` of the True entries of ``mask``, in that order."""
    return np.flatnonzero(mask.ravel(order="F"))


def _logdet(chol):
    """``log|L Lᵀ|`` from the diagonal of lower factors ``L``."""
    return 2.0 * np.log(np.diagonal(np.asarray(chol, dtype=np.float64), axis1=-2, axis2=-1)).sum(axis=-1)


# The frozen distribution -----------------------------------------------------------------


class MatrixGaussian(_Frozen):
    """A frozen matrix Gaussian ``vec X ~ N(vec mean, cov)`` on ``n×p`` matrices, possibly batched.

    The general Gaussian on a random matrix: any symmetric positive definite covariance
    ``Σ`` (``np×np``) of column-major ``vec X``, of which the matrix normal's ``V⊗U`` is the
    special case. The arguments broadcast over leading axes; a batched distribution is a
    stack of independent distributions of shape :attr:`batch_shape`. The inputs are copied,
    checked and factorised once, here (the ``np×np`` Cholesky factors are computed by the
    compiled kernels, in parallel over the batch), each failure naming the argument and
    the batch index. Only the lower triangle of ``cov`` is read; the stored covariance is
    symmetric.

    The covariance has three equivalent layouts, converted exactly (by permuting entries)
    by the attributes and constructors:

    * :attr:`cov`, ``Σ = Cov(vec X)``, ``(np, np)``, with ``Σ[i + n·j, k + n·l] = Cov(X_ij, X_kl)``;
    * :attr:`cov_tensor`, ``C[i, j, k, l] = Cov(X_ij, X_kl)``, ``(n, p, n, p)``;
    * :attr:`kron_layout`, the ``(n·n)×(p·p)`` matrix ``E[(X−M)⊗(X−M)]``, whose block
      ``(i, j)`` (an ``n×p`` matrix) is ``C[i, j, :, :]``: entry ``[i·n + k, j·p + l]`` is
      ``C[i, j, k, l]``. For a matrix normal it is the rank-one ``vec'(U) vec'(V)ᵀ`` (``vec'``
      stacking rows), which is why :func:`nearest_kronecker` takes its leading singular pair.

    Parameters
    ----------
    mean : (..., n, p) array_like
        Mean ``M``.
    cov : (..., np, np) array_like
        Covariance ``Σ`` of column-major ``vec X`` (symmetric positive definite).

    Raises
    ------
    numpy.linalg.LinAlgError
        ``cov`` is not positive definite (names the batch index).
    ValueError
        NaN or infinity (names the argument and batch index); ``cov`` not of size ``np``,
        or shapes that do not broadcast.

    See Also
    --------
    MatrixGaussian.from_tensor, MatrixGaussian.from_kron_layout : other layouts of ``cov``.
    MatrixGaussian.from_normal : the matrix Gaussian of a :class:`~fastmvn.MatrixNormal`.
    project : the matrix normal closest to a matrix Gaussian.

    Notes
    -----
    Arithmetic is in float64; the distribution stores and returns float32 when every
    input is float32 (``fastmvn.kl`` states the rule). A float32 distribution keeps its
    parameters and factor as computed, in float64, as well: a method given a float64
    argument computes its float64 result from those. A multivariate normal over ``k``
    scalars is a matrix Gaussian of shape ``(k, 1)``: :meth:`marginal` and
    :meth:`condition` return one when the entries they leave do not form a sub-matrix.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> u, v = np.array([[2.0, 0.5], [0.5, 1.0]]), np.array([[1.0, 0.3, 0.0], [0.3, 1.0, 0.3], [0.0, 0.3, 1.0]])
    >>> g = fm.MatrixGaussian(np.zeros((4, 2, 3)), np.kron(v, u) + 0.1 * np.eye(6))
    >>> g
    MatrixGaussian(shape=(2, 3), batch_shape=(4,), dtype=float64)
    >>> x = g.rvs(size=10, random_state=0)
    >>> x.shape, g.logpdf(x).shape, g.entropy().shape, g.cov_tensor.shape, g.kron_layout.shape
    ((10, 4, 2, 3), (10, 4), (4,), (4, 2, 3, 2, 3), (4, 4, 9))
    >>> float(g.cov_tensor[0, 1, 2, 0, 1]) == float(g.cov[0, 1 + 2 * 2, 0 + 2 * 1])
    True
    >>> g.marginal(entries=np.array([[True, False, False], [False, True, True]])).shape   # not a sub-matrix
    (3, 1)
    """

    _PARTS = ("_mean", "_cov", "_chol")
    _DERIVED = ("_vec_mean",)
    _cov: FloatArray
    _chol: FloatArray
    _vec_mean: FloatArray

    def __init__(self, mean: ArrayLike, cov: ArrayLike) -> None:
        self._init(*_parts(mean, cov))

    @staticmethod
    def from_tensor(mean: ArrayLike, cov_tensor: ArrayLike) -> MatrixGaussian:
        """The matrix Gaussian with ``Cov(X_ij, X_kl) = cov_tensor[..., i, j, k, l]``.

        Parameters
        ----------
        mean : (..., n, p) array_like
            Mean ``M``.
        cov_tensor : (..., n, p, n, p) array_like
            The covariances of the entries; the entries with ``k + n·l ≤ i + n·j`` are read
            (the lower triangle of ``Σ``).

        Returns
        -------
        MatrixGaussian

        Raises
        ------
        numpy.linalg.LinAlgError, ValueError
            As the constructor, naming ``cov_tensor``.

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> c = np.einsum("ik,jl->ijkl", np.eye(2), [[2.0, 1.0], [1.0, 2.0]])   # U = I, V
        >>> fm.MatrixGaussian.from_tensor(np.zeros((2, 2)), c).cov[:2, 2:]
        array([[1., 0.],
               [0., 1.]])
        """
        mean_arg, tensor_arg = Arg("mean", MEAN, mean, "np"), Arg("cov_tensor", MATRIX, cov_tensor, "npnp")
        check([mean_arg, tensor_arg])
        cov = _cov_from_tensor(tensor_arg.array)
        return MatrixGaussian._assemble(*_parts(mean, cov, names=("mean", "cov_tensor")))

    @staticmethod
    def from_kron_layout(mean: ArrayLike, kron_layout: ArrayLike) -> MatrixGaussian:
        """The matrix Gaussian whose :attr:`kron_layout` is ``kron_layout``.

        Parameters
        ----------
        mean : (..., n, p) array_like
            Mean ``M``.
        kron_layout : (..., n·n, p·p) array_like
            ``E[(X−M)⊗(X−M)]``: entry ``[i·n + k, j·p + l]`` is ``Cov(X_ij, X_kl)``; the
            entries of the lower triangle of ``Σ`` are read.

        Returns
        -------
        MatrixGaussian

        Raises
        ------
        numpy.linalg.LinAlgError, ValueError
            As the constructor, naming ``kron_layout``.

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> u, v = np.array([[2.0, 0.5], [0.5, 1.0]]), np.array([[1.0, 0.3], [0.3, 1.0]])
        >>> g = fm.MatrixGaussian.from_kron_layout(np.zeros((2, 2)), np.outer(u, v))   # vec'(U) vec'(V)ᵀ
        >>> bool(np.allclose(g.cov, np.kron(v, u)))
        True
        """
        mean_arg, layout_arg = Arg("mean", MEAN, mean, "np"), Arg("kron_layout", MATRIX, kron_layout, "ab")
        check([mean_arg, layout_arg])
        n, p = mean_arg.array.shape[-2:]
        if layout_arg.array.shape[-2:] != (n * n, p * p):
            raise ValueError(f"kron_layout has shape {layout_arg.array.shape}; expected (..., {n * n}, {p * p}) "
                             f"for the {n}×{p} matrices of mean")
        cov = _cov_from_kron_layout(layout_arg.array, n, p)
        return MatrixGaussian._assemble(*_parts(mean, cov, names=("mean", "kron_layout")))

    @staticmethod
    def from_normal(normal: MatrixNormal) -> MatrixGaussian:
        """The matrix Gaussian ``N(vec M, V⊗U)`` of a matrix normal ``MN(M, U, V)``.

        Its Cholesky factor is ``L_V⊗L_U`` (lower triangular), built from the matrix
        normal's factors: nothing is factorised.

        Parameters
        ----------
        normal : MatrixNormal

        Returns
        -------
        MatrixGaussian
            Of the same shape, batch shape and dtype.

        Raises
        ------
        FloatingPointError
            ``V⊗U`` is too large (or its diagonal too small) for the dtype, naming the batch index.

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> d = fm.MatrixNormal(np.ones((2, 3)), 2 * np.eye(2), np.eye(3))
        >>> g = fm.MatrixGaussian.from_normal(d)
        >>> bool(np.isclose(g.logpdf(np.zeros((2, 3))), d.logpdf(np.zeros((2, 3)))))
        True
        """
        if not isinstance(normal, MatrixNormal):
            raise TypeError(f"normal must be a MatrixNormal, not {type(normal).__name__}")
        n, p = normal.shape

        def kron(col, row):
            with np.errstate(over="ignore", under="ignore"):
                product = np.einsum("...jl,...ik->...jilk", col, row)
            return product.reshape(product.shape[:-4] + (n * p, n * p))

        mean, rowcov, colcov, rowchol, colchol = normal._exact
        cov = _in_range(kron(colcov, rowcov), normal.dtype, "the covariance V⊗U of normal", normal.batch_shape)
        return MatrixGaussian._assemble(mean, cov, kron(colchol, rowchol), normal.dtype, normal.batch_shape)

    def _derive(self, mean, cov, chol):
        return (_vec(mean),)

    # Attributes

    @property
    def cov(self) -> FloatArray:
        """``(..., np, np)`` covariance ``Σ`` of column-major ``vec X`` (read-only)."""
        return self._view(self._cov)

    @property
    def chol(self) -> FloatArray:
        """``(..., np, np)`` lower Cholesky factor of ``Σ`` (read-only)."""
        return self._view(self._chol)

    @property
    def cov_tensor(self) -> FloatArray:
        """``(..., n, p, n, p)`` covariances ``C[..., i, j, k, l] = Cov(X_ij, X_kl)`` (a read-only view of ``Σ``)."""
        return _tensor(self.cov, *self.shape)

    @property
    def kron_layout(self) -> FloatArray:
        """``(..., n·n, p·p)`` the matrix ``E[(X−M)⊗(X−M)]``: entry ``[i·n + k, j·p + l]`` is
        ``Cov(X_ij, X_kl)``, block ``(i, j)`` is ``C[i, j, :, :]`` (read-only)."""
        return self._view(_kron_layout(self._cov, *self.shape))

    # Densities, entropy, sampling

    def _points(self, x):
        """``vec x`` as ``(..., np, 1)`` after checking ``x`` against the shape."""
        return _vec(self._checked_points(x).array)

    def _kernel_args(self, x):
        x = self._points(x)
        _, _, chol, vec_mean = self._parts_for(x)
        return x, vec_mean, chol, _ONE

    def entropy(self) -> Result:
        """Differential entropy ``½ log|2πe Σ| = ½[np(1 + log 2π) + log|Σ|]`` from the stored factor.

        Returns
        -------
        entropy : (...) ndarray or scalar
            Over :attr:`batch_shape`.

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> from scipy.stats import multivariate_normal
        >>> cov = np.eye(6) + 0.2
        >>> g = fm.MatrixGaussian(np.zeros((3, 2)), cov)
        >>> bool(np.isclose(g.entropy(), multivariate_normal(None, cov).entropy()))
        True
        """
        n, p = self.shape
        value = 0.5 * (n * p * _ENTROPY_PER_ENTRY + _logdet(self._exact[2]))
        return _full(np.asarray(value, dtype=self._dtype), self._batch_shape)

    @shared
    def rvs(self, size: Size = None, random_state: Seed = None) -> FloatArray:
        """Random draws ``X`` with ``vec X = vec M + L z`` for the stored factor ``L`` and standard normal ``z``.

        Parameters
        ----------
        %(size)s
        random_state : numpy.random.Generator, int or None
            A generator (which is advanced), a seed, or ``None`` for fresh entropy. ``z`` is
            drawn in float64, so one seed gives the same draws for float32 and float64.

        Returns
        -------
        samples : ``(*size, ..., n, p)`` ndarray

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> fm.MatrixGaussian(np.zeros((2, 3)), np.eye(6)).rvs(size=(5, 4), random_state=0).shape
        (5, 4, 2, 3)
        """
        n, p = self.shape
        rng = np.random.default_rng(random_state)
        z = rng.standard_normal(_sample_shape(size) + self._batch_shape + (n * p, 1))
        _, _, chol, vec_mean = self._exact
        draws = vec_mean + chol @ z
        return _unvec(draws[..., 0], n, p).astype(self._dtype)

    def kl(self, other: MatrixGaussian | MatrixNormal | KroneckerSumNormal) -> Result:
        """``KL(self ‖ other)`` for a :class:`MatrixGaussian`, :class:`~fastmvn.MatrixNormal` or
        :class:`~fastmvn.KroneckerSumNormal`: :func:`kl_gaussian`.

        Parameters
        ----------
        other : MatrixGaussian, MatrixNormal or KroneckerSumNormal
            Of the same :attr:`shape`; the batch shapes broadcast.

        Returns
        -------
        kl : (...) ndarray or scalar
            Over the broadcast batch shape.

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> g = fm.MatrixGaussian(np.zeros((2, 2)), np.eye(4) + 0.5)
        >>> abs(float(g.kl(g))) < 1e-12
        True
        """
        return _Links.kl(self, other)

    # New distributions

    def _select(self, positions, shape, names):
        """The matrix Gaussian of the entries at ``positions`` of ``vec X``, as matrices of ``shape``
        (column-major)."""
        mean = _unvec(self._vec_mean[..., positions, 0], *shape)
        return self._assemble(*_parts(mean, self._cov[..., positions[:, None], positions], names=names))

    def marginal(self, rows: Any = None, cols: Any = None, *, entries: ArrayLike | None = None) -> MatrixGaussian:
        """The distribution of some entries of ``X``: the matching sub-mean and sub-covariance.

        Either a sub-matrix, ``X[rows][:, cols]``, or any set of entries, ``entries``
        (a boolean mask). Where the entries of the mask form a sub-matrix (all pairs of some
        rows and some columns), the result has that sub-matrix's shape; otherwise it is the
        multivariate normal of the selected entries, as a matrix Gaussian of shape
        ``(k, 1)`` whose column lists them in column-major order (``.mean[..., 0]`` and
        ``.cov`` are its vector mean and covariance).

        Parameters
        ----------
        rows, cols : int, sequence of ints, slice or boolean mask, optional
            The rows and columns kept, in the order given (no repeats); ``None`` keeps all.
        entries : (n, p) bool array_like, optional
            The entries kept; not together with ``rows`` or ``cols``.

        Returns
        -------
        MatrixGaussian
            Of shape ``(len(rows), len(cols))``, the shape of the sub-matrix ``entries``
            selects, or ``(k, 1)`` for ``k`` selected entries that are not a sub-matrix.

        Raises
        ------
        ValueError, TypeError
            A mask of the wrong shape or dtype, a selection that is empty or repeats.

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> g = fm.MatrixGaussian(np.arange(6.0).reshape(2, 3), np.eye(6))
        >>> g.marginal(rows=[1], cols=[2, 0]).mean
        array([[5., 3.]])
        >>> g.marginal(entries=np.array([[True, False, True], [False, True, False]])).mean[:, 0]   # column-major
        array([0., 4., 2.])
        """
        n, p = self.shape
        if entries is not None:
            if rows is not None or cols is not None:
                raise ValueError("give rows= and cols=, or entries=, not both")
            mask = _mask(entries, "entries", (n, p))
            return self._select(_vec_positions(mask), _block_shape(mask) or (int(mask.sum()), 1),
                                names=("the marginal mean", "the marginal cov"))
        r, c = self._selection(rows, cols)
        return self._select((r[None, :] + n * c[:, None]).ravel(), (len(r), len(c)),
                            names=("the marginal mean", "the marginal cov"))

    def condition(self, mask: ArrayLike, values: ArrayLike) -> MatrixGaussian:
        """The distribution of the unobserved entries given the observed ones (``mask`` True).

        With ``o`` the observed and ``u`` the unobserved positions of ``vec X``, the
        Gaussian ``N(m_u + Σ_uo Σ_oo⁻¹ (x_o − m_o), Σ_uu − Σ_uo Σ_oo⁻¹ Σ_ou)`` (the Schur
        complement). When the unobserved entries form a sub-matrix (in particular when
        whole rows or whole columns are observed), the result has that sub-matrix's shape;
        otherwise it is the multivariate normal of the unobserved entries, as a matrix
        Gaussian of shape ``(k, 1)`` listing them in column-major order.

        Parameters
        ----------
        mask : (n, p) bool array_like
            The observed entries: at least one, not all.
        values : (..., n, p) array_like
            The observed values, at the entries of ``mask`` (the others are not read); leading
            axes broadcast with :attr:`batch_shape`.

        Returns
        -------
        MatrixGaussian
            Over the unobserved entries.

        Raises
        ------
        ValueError, TypeError
            ``mask`` of the wrong shape or dtype, observing nothing or everything; ``values``
            of the wrong shape or with NaN or infinity at an observed entry (names the batch index).

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> g = fm.MatrixGaussian(np.zeros((1, 2)), [[1.0, 0.5], [0.5, 1.0]])
        >>> given = g.condition(np.array([[False, True]]), np.array([[np.nan, 2.0]]))
        >>> given.mean, given.cov
        (array([[1.]]), array([[0.75]]))
        """
        n, p = self.shape
        mask = _mask(mask, "mask", (n, p))
        if mask.all():
            raise ValueError("mask observes every entry: nothing is left to condition")
        observed, free = _vec_positions(mask), _vec_positions(~mask)
        mean_arg, values_arg = Arg("mean", MEAN, self.mean, "np"), Arg("values", MEAN, values, "np")
        dtype, batch_shape = check([mean_arg, values_arg])
        x = _vec(np.asarray(values_arg.array, dtype=np.float64))[..., observed, 0]
        _report([(~np.isfinite(x).all(axis=-1), ValueError, "values contains NaN or infinity at an observed entry")],
                batch_shape)
        _, sigma, _, vec_mean = (np.asarray(a, dtype=np.float64) for a in self._parts_for(values_arg.array))
        cross = sigma[..., observed[:, None], free]
        gain = np.linalg.solve(sigma[..., observed[:, None], observed], cross)  # Σ_oo⁻¹ Σ_ou
        cov = sigma[..., free[:, None], free] - np.swapaxes(cross, -1, -2) @ gain
        m = vec_mean[..., 0]
        mean = m[..., free] + ((x - m[..., observed])[..., None, :] @ gain)[..., 0, :]
        mean = _unvec(mean, *(_block_shape(~mask) or (len(free), 1)))
        return self._assemble(*_parts(mean.astype(dtype), cov.astype(dtype),
                                 names=("the conditional mean", "the conditional cov")))

    @shared
    def affine(self, A: ArrayLike | None = None, B: ArrayLike | None = None,
               C: ArrayLike | None = None) -> MatrixGaussian:
        """The distribution of ``A X B + C``: mean ``A M B + C``, covariance ``(Bᵀ⊗A) Σ (Bᵀ⊗A)ᵀ``.

        Parameters
        ----------
        %(affine)s

        Returns
        -------
        MatrixGaussian
            Of shape ``(m, q)``; leading axes broadcast with :attr:`batch_shape`.

        Raises
        ------
        numpy.linalg.LinAlgError
            The new covariance is not positive definite (``A`` or ``B`` is rank deficient),
            naming the batch index.
        ValueError
            NaN or infinity in ``A``, ``B`` or ``C``; shapes that do not fit.

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> g = fm.MatrixGaussian(np.ones((2, 2)), np.eye(4))
        >>> total = g.affine(A=np.ones((1, 2)), B=np.ones((2, 1)))   # the sum of all four entries
        >>> total.mean, total.cov
        (array([[4.]]), array([[4.]]))
        """
        args, dtype, _ = self._affine_args(self.mean, A, B, C)
        n, p = self.shape
        own_mean, own_cov = (np.asarray(a, dtype=np.float64)
                             for a in self._parts_for(*(arg.array for arg in args[1:]))[:2])
        A = np.eye(n) if A is None else np.asarray(A, dtype=np.float64)
        B = np.eye(p) if B is None else np.asarray(B, dtype=np.float64)
        mean = A @ own_mean @ B
        if C is not None:
            mean = mean + np.asarray(C, dtype=np.float64)
        m, q = mean.shape[-2:]
        transform = np.einsum("...jb,...ai->...baji", B, A)  # Bᵀ⊗A: [a + m·b, i + n·j] = B[j, b] A[a, i]
        transform = transform.reshape(transform.shape[:-4] + (m * q, n * p))
        cov = transform @ own_cov @ np.swapaxes(transform, -1, -2)
        return self._assemble(*_parts(mean.astype(dtype), cov.astype(dtype),
                                 names=("A mean B + C", "(Bᵀ⊗A) cov (Bᵀ⊗A)ᵀ")))

    # Expectations

    def _expect_quadratic(self, A, transpose):
        """``E[Xᵀ A X]``, or with ``transpose`` ``E[X A Xᵀ]`` (that of ``Xᵀ``)."""
        a_arg = Arg("A", MATRIX, A, "pp" if transpose else "nn")
        mean, cov = self._parts_for(a_arg.array)[:2]
        mean, tensor = self._view(mean), self._view(_tensor(cov, *self.shape), core=4)
        if transpose:
            mean, tensor = np.swapaxes(mean, -1, -2), np.swapaxes(np.swapaxes(tensor, -4, -3), -2, -1)
        axes = "pn" if transpose else "np"
        mean_arg = Arg("mean", MEAN, mean, axes)
        return _expectation(a_arg, mean_arg, mean_arg,
                            Arg("cov_tensor", MATRIX, tensor, axes * 2))


# Expectations of quadratic forms ---------------------------------------------------------


def _expectation(a_arg, x_arg, y_arg, cross_arg):
    """``E[Xᵀ A Y] = M_Xᵀ A M_Y + Σ_ab A_ab cross[a, :, b, :]`` from checked arguments."""
    dtype, batch_shape = check([x_arg, y_arg, cross_arg, a_arg])
    a, mean_x, mean_y, cross = (np.asarray(arg.array, dtype=np.float64) for arg in (a_arg, x_arg, y_arg, cross_arg))
    value = np.swapaxes(mean_x, -1, -2) @ a @ mean_y + np.einsum("...ab,...aibj->...ij", a, cross)
    return _full(value.astype(dtype), batch_shape + value.shape[-2:])


def expect_quadratic(A: ArrayLike, mean_x: ArrayLike, mean_y: ArrayLike, cross_cov: ArrayLike) -> FloatArray:
    """``E[Xᵀ A Y]`` for random matrices ``X`` and ``Y`` with given means and cross-covariance, batched.

    ``E[Xᵀ A Y]_ij = (M_Xᵀ A M_Y)_ij + tr(A · Cov(y_j, x_i))`` with ``x_i`` column ``i`` of ``X``
    and ``y_j`` column ``j`` of ``Y``; entry by entry, ``tr(A · Cov(y_j, x_i)) =
    Σ_ab A_ab · cross_cov[a, i, b, j]``. Only the first two moments matter: ``X`` and ``Y``
    need not be Gaussian.

    Parameters
    ----------
    A : (..., n, n) array_like
        Any square matrices.
    mean_x : (..., n, p) array_like
        ``E[X]``.
    mean_y : (..., n, q) array_like
        ``E[Y]``.
    cross_cov : (..., n, p, n, q) array_like
        ``cross_cov[..., a, i, b, j] = Cov(X_ai, Y_bj)``: with ``Y = X`` this is
        :attr:`MatrixGaussian.cov_tensor`.

    Returns
    -------
    expectation : (..., p, q) ndarray
        Over the broadcast batch shape; float32 when every input is float32.

    Raises
    ------
    ValueError
        Shapes that do not fit (names the argument).

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> g = fm.MatrixGaussian(np.ones((2, 2)), np.eye(4))
    >>> fm.expect_quadratic(np.eye(2), g.mean, g.mean, g.cov_tensor)   # E[XᵀX] = MᵀM + 2 I
    array([[4., 2.],
           [2., 4.]])
    """
    return _expectation(Arg("A", MATRIX, A, "nn"), Arg("mean_x", MEAN, mean_x, "np"),
                        Arg("mean_y", MEAN, mean_y, "nq"), Arg("cross_cov", MATRIX, cross_cov, "npnq"))


# Matrix normals close to a matrix Gaussian -----------------------------------------------
