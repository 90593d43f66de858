"""The skeleton shared by the frozen distributions, :class:`~fastmvn.MatrixNormal` and
:class:`~fastmvn.MatrixGaussian`: the base class :class:`_Frozen` (parameters stored once in
float64 and in the result dtype, batch shape, indexing ``d[i]``, the densities' plumbing, the
checks of an affine map) and the helpers both families use to check and factorise their
arguments with failures located by argument and batch index.

Neither family's module imports the other's: :mod:`fastmvn.distributions.kl`, which imports
both, sets the two functions that join them in :class:`_Links`.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from numpy.linalg import LinAlgError
from scipy.linalg import solve_triangular

from .._api import logdet, logpdf_chol, mahalanobis_chol
from .._arguments import CHOL, COV, MEAN, Arg, check, result_dtype, where
from .._docs import shared
from ..reference import singular_pivots

if TYPE_CHECKING:
    from typing_extensions import Self

    from .._typing import ArrayLike, Errors, FloatArray, Result, Shape

# np·(1 + log 2π) is the constant of the entropy per entry.
_ENTROPY_PER_ENTRY = 1.0 + math.log(2.0 * math.pi)


def _first(mask):
    """The multi-index (a tuple of ints) of the first True entry of ``mask``."""
    return tuple(int(i) for i in np.unravel_index(np.argmax(mask), mask.shape))


def _full(value, batch_shape):
    """``value`` broadcast to ``batch_shape`` as a new array (a scalar when 0-d)."""
    value = np.array(np.broadcast_to(value, batch_shape))
    return value if value.ndim else value[()]


def _divergence(value):
    """A KL divergence as fastmvn returns it, as the kernels do: a value that rounding left
    below zero (the KL of two equal distributions can) is 0; NaN and −∞, failures, stay."""
    value = np.asarray(value)
    return np.where((value < 0) & (value > -np.inf), value.dtype.type(0), value)


def _exp(logdensity, errors):
    """``exp`` of a log-density result, in place where it is an array; an overflow to
    infinity fails the item as a non-finite kernel result does."""
    with np.errstate(over="ignore"):
        if isinstance(logdensity, np.ndarray):
            density = np.exp(logdensity, out=logdensity)
        else:
            density = np.exp(logdensity)
    overflow = np.isinf(density)
    if not overflow.any():
        return density
    if errors == "raise":
        raise FloatingPointError(f"the density overflowed{where(_first(overflow))}")
    if isinstance(density, np.ndarray):
        density[overflow] = np.nan
        return density
    return type(density)(np.nan)


# Factorisation with located failures ----------------------------------------------------


def _cholesky(stack):
    """LAPACK's lower Cholesky factors of a stack ``(k, m, m)`` and the mask of the items
    where the factorisation fails (their factor is the identity).

    One call when every item succeeds; otherwise the stack is halved until each failing
    item is alone, so ``f`` failures cost ``O(f log k)`` calls on ever smaller stacks.
    """
    try:
        return np.linalg.cholesky(stack), np.zeros(len(stack), dtype=bool)
    except LinAlgError:
        if len(stack) == 1:
            return np.eye(stack.shape[-1])[None], np.ones(1, dtype=bool)
    half = len(stack) // 2
    (low, low_failed), (high, high_failed) = _cholesky(stack[:half]), _cholesky(stack[half:])
    return np.concatenate([low, high]), np.concatenate([low_failed, high_failed])


def _factor(arg):
    """Lower Cholesky factors (by LAPACK) of covariance argument ``arg`` over its own batch
    shape, and the mask of the items that fail: not positive definite, numerically singular
    (:func:`fastmvn.reference.singular_pivots`, the rule of the kernels' own Cholesky), or not
    finite (which LAPACK either rejects or carries into the factor). A failed item's factor is the identity.

    When LAPACK rejects the stack, the kernels' own Cholesky marks the failing items in one
    pass; the halving of :func:`_cholesky` is left for any item it accepts and LAPACK does not.
    """
    a = np.asarray(arg.array, dtype=np.float64)
    size = a.shape[-1]
    stack = a.reshape((-1, size, size))
    failed = np.zeros(len(stack), dtype=bool)
    try:
        chol = np.linalg.cholesky(stack)
    except LinAlgError:
        failed = np.isnan(logdet(stack, errors="nan"))
        chol, rejected = _cholesky(np.where(failed[:, None, None], np.eye(size), stack))
        failed |= rejected
    failed |= ~np.isfinite(chol).all(axis=(-2, -1)) | singular_pivots(chol, stack)
    chol[failed] = np.eye(size)
    return chol.reshape(a.shape), failed.reshape(a.shape[:-2])


def _inverse(chol):
    """``L⁻¹`` for a stack of lower-triangular ``L``: by LAPACK's triangular solve for one
    matrix; for a stack by ``numpy.linalg.solve``, one LAPACK call for the whole stack
    (SciPy's ``solve_triangular`` loops over a stack in Python, 100 times slower for 4×4)."""
    size = chol.shape[-1]
    if chol.size == size * size:
        inverse = solve_triangular(chol.reshape(size, size), np.eye(size), lower=True, check_finite=False)
        return inverse.reshape(chol.shape)
    return np.linalg.solve(chol, np.broadcast_to(np.eye(size), chol.shape))


def _nonfinite(arg):
    """Mask of the items of ``arg`` with a non-finite entry among those read (over its core
    axes: two for a matrix, one for variances)."""
    core = tuple(range(-len(arg.axes), 0))
    if arg.kind in (COV, CHOL) and np.isfinite(arg.array).all():  # the common case, without a copy
        return np.zeros(arg.batch_shape, bool)[()]
    return ~np.isfinite(np.tril(arg.array) if arg.kind in (COV, CHOL) else arg.array).all(axis=core)


def _failing(masks, batch_shape):
    """The union over ``batch_shape`` of masks given over their arguments' own batch shapes."""
    failing = np.zeros(batch_shape, dtype=bool)
    for mask in masks:
        failing |= mask
    return failing


def _report(failures, batch_shape):
    """Raise for the first failing item over ``batch_shape``, if any.

    ``failures`` holds ``(mask over an argument's own batch shape, exception type, message)``
    in the order they are tried for one item: every non-finite check before any
    positive-definiteness check, as in the core functions. The message names the batch index
    of the item, unless the failing argument has no batch axes (its mask none): a scalar
    damping of 0 fails as itself, not at an item.
    """
    failing = _failing([mask for mask, _, _ in failures], batch_shape)
    if failing.any():
        index = _first(failing)
        for mask, error, message in failures:
            if np.broadcast_to(mask, batch_shape)[index]:
                raise error(f"{message}{where(index if np.ndim(mask) else ())}")


def _not_pd(name):
    return f"{name} is not positive definite (Cholesky failed)"


def _eigen(vecs_arg, vals_arg, positive):
    """An eigendecomposition ``Q diag(λ) Qᵀ`` given as arguments ``vecs`` (``(..., n, n)``,
    orthonormal columns) and ``vals`` (``(..., n)``): the two in float64 and their failures
    for :func:`_report`, as two lists, the non-finite ones first, then the others: ``vecs`` not
    orthonormal (an entry of ``QᵀQ − I`` beyond the square root of its dtype's epsilon), an
    eigenvalue negative, or with ``positive`` not positive."""
    vecs, vals = np.asarray(vecs_arg.array, dtype=np.float64), np.asarray(vals_arg.array, dtype=np.float64)
    nonfinite = [(~np.isfinite(vecs).all(axis=(-2, -1)), ValueError, f"{vecs_arg.name} contains NaN or infinity"),
                 (~np.isfinite(vals).all(axis=-1), ValueError, f"{vals_arg.name} contains NaN or infinity")]
    tolerance = np.sqrt(np.finfo(np.float32 if vecs_arg.dtype == np.float32 else np.float64).eps)
    with np.errstate(invalid="ignore", over="ignore"):
        skew = np.abs(np.swapaxes(vecs, -1, -2) @ vecs - np.eye(vecs.shape[-1]))
        skewed = ~(skew <= tolerance).all(axis=(-2, -1))
        low = ~((vals > 0) if positive else (vals >= 0)).all(axis=-1)
    sign = "positive" if positive else "non-negative"
    return nonfinite, [(skewed, ValueError, f"{vecs_arg.name} is not orthonormal (QᵀQ differs from I)"),
                       (low, LinAlgError, f"{vals_arg.name} has an eigenvalue that is not {sign}")]


# Parts of a distribution ----------------------------------------------------------------


def _compared(first, second):
    """The broadcast batch shape of two distributions a divergence compares, after checking
    that they are of one shape and that their batch shapes broadcast."""
    if first.shape != second.shape:
        raise ValueError(f"cannot compare distributions of shapes {first.shape} and {second.shape}")
    try:
        return np.broadcast_shapes(first.batch_shape, second.batch_shape)
    except ValueError:
        raise ValueError(f"cannot compare distributions of batch shapes {first.batch_shape} and "
                         f"{second.batch_shape}") from None


def _sample_shape(size):
    """The sample axes of ``size`` (``None``, an int or a tuple of ints) as a tuple."""
    if size is None:
        return ()
    if np.ndim(size) == 0:
        return (operator.index(size),)
    return tuple(operator.index(s) for s in size)


def _symmetric(a, dtype):
    """A copy of ``a`` as ``dtype``, made symmetric from its lower triangle where it is not."""
    a = np.array(a, dtype=dtype)
    if not (a == np.swapaxes(a, -1, -2)).all():
        a = np.tril(a) + np.swapaxes(np.tril(a, -1), -1, -2)
    return a


def _indices(selection, size, name):
    """Positions along an axis of length ``size`` chosen by ``selection`` (anything that
    indexes a 1-D array: ints, a slice, a boolean mask), as a 1-D int array."""
    index = np.atleast_1d(np.arange(size)[selection])
    if index.size == 0:
        raise ValueError(f"{name} selects nothing")
    if np.unique(index).size != index.size:
        raise ValueError(f"{name} repeats an index: {index.tolist()}")
    return index


def _read_only(array, dtype):
    """``array`` as ``dtype``, read-only; the parts of a distribution are never a caller's arrays."""
    array = np.asarray(array, dtype=dtype)
    array.flags.writeable = False
    return array


def _in_range(value, dtype, name, batch_shape):
    """``value`` (float64 covariances over their own batch shape, as computed), after checking
    that ``dtype`` holds it: the first item with an entry too large for ``dtype``, or a
    diagonal entry too small for its normal numbers, raises FloatingPointError saying that
    ``name`` overflows (underflows) and naming the index in ``batch_shape``."""
    limits = np.finfo(dtype)
    with np.errstate(invalid="ignore"):
        large = ~(np.abs(value) <= limits.max).all(axis=(-2, -1))
        small = ~(np.diagonal(value, axis1=-2, axis2=-1) >= limits.tiny).all(axis=-1)
    _report([(large, FloatingPointError, f"{name} overflows {dtype}"),
             (small, FloatingPointError, f"{name} underflows {dtype}")], batch_shape)
    return value


# The frozen distribution ----------------------------------------------------------------


class _Links:
    """The functions that join the two families, set by :mod:`fastmvn.distributions.kl`.

    ``to_gaussian(normal)`` is :meth:`fastmvn.MatrixGaussian.from_normal` and ``kl(p, q)`` is
    :func:`fastmvn.kl_gaussian`; through them a family's methods reach the other family
    without its module importing the other's.
    """

    to_gaussian: ClassVar[Callable[..., Any]]
    kl: ClassVar[Callable[..., Any]]


class _Frozen:
    """A frozen, possibly batched distribution on ``n×p`` matrices: the part common to the families.

    A family names the arrays it is built from in ``_PARTS`` (the mean first, each with its
    own batch shape), and those it derives from them (:meth:`_derive`) in ``_DERIVED``. They
    are stored read-only twice: as computed, in float64 (``_exact``), and in the dtype of the
    distribution (``_stored``, the same arrays for float64), each also under its name. A
    family gives :meth:`_kernel_args`, which feeds :meth:`logpdf` and :meth:`mahalanobis`.
    """

    _PARTS: tuple[str, ...] = ()
    _DERIVED: tuple[str, ...] = ()
    #: The number of core axes of each part that is not a matrix, by name: 1 for a vector of
    #: eigenvalues, 0 for a number per item. Every other part has two.
    _CORES: dict[str, int] = {}
    _dtype: np.dtype
    _batch_shape: Shape
    _exact: tuple[FloatArray, ...]
    _stored: tuple[FloatArray, ...]
    _mean: FloatArray

    @classmethod
    def _family(cls):
        """The family's class, the subclass of :class:`_Frozen` that ``cls`` is or derives from."""
        return cls.__mro__[cls.__mro__.index(_Frozen) - 1]

    @classmethod
    def _assemble(cls, *parts):
        """A distribution of the family (a plain one: a fitted matrix normal gives a
        :class:`~fastmvn.MatrixNormal`) from checked parts: the arrays of ``_PARTS``, the
        dtype and the batch shape."""
        distribution = object.__new__(cls._family())
        distribution._init(*parts)
        return distribution

    def _init(self, *parts):
        *given, dtype, batch_shape = parts
        self._dtype = np.dtype(dtype)
        self._batch_shape = tuple(batch_shape)
        exact = tuple(_read_only(a, np.float64) for a in given)
        self._exact = exact + tuple(_read_only(a, np.float64) for a in self._derive(*exact))
        self._stored = (self._exact if self._dtype == np.float64
                        else tuple(_read_only(a, dtype) for a in self._exact))
        for name, array in zip(self._PARTS + self._DERIVED, self._stored):
            setattr(self, name, array)

    def _derive(self, *given):
        """The arrays of ``_DERIVED``, from the float64 arrays of ``_PARTS``."""
        return ()

    def _parts_for(self, *arrays):
        """The parts (those of ``_PARTS``, then ``_DERIVED``) in the dtype of a result from this
        distribution and ``arrays``: as stored, or the float64 parts as computed."""
        if result_dtype(self._mean, *arrays) == self._dtype:
            return self._stored
        return self._exact

    # Attributes

    @property
    def shape(self) -> tuple[int, int]:
        """``(n, p)``: the shape of one random matrix."""
        return self._mean.shape[-2:]

    @property
    def batch_shape(self) -> Shape:
        """The shape of the stack of distributions; ``()`` for a single one."""
        return self._batch_shape

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the stored parameters and of the results."""
        return self._dtype

    def _view(self, array, core=2):
        return np.broadcast_to(array, self._batch_shape + array.shape[array.ndim - core:])

    @property
    def mean(self) -> FloatArray:
        """``(..., n, p)`` mean ``M`` (read-only)."""
        return self._view(self._mean)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(shape={self.shape}, batch_shape={self._batch_shape}, "
                f"dtype={self._dtype}{self._repr_extra()})")

    def _repr_extra(self):
        return ""

    def __getitem__(self, index: Any) -> Self:
        """The sub-batch ``index`` selects (NumPy indexing on the batch axes only); a
        distribution of the family with the selected parameters and factors."""
        if not self._batch_shape:
            raise IndexError(f"a single (unbatched) {self._family().__name__} cannot be indexed")
        positions = np.arange(math.prod(self._batch_shape)).reshape(self._batch_shape)[index]
        where = np.unravel_index(positions, self._batch_shape)
        parts = [self._view(a, self._CORES.get(name, 2))[where] for name, a in zip(self._PARTS, self._exact)]
        return self._assemble(*parts, self._dtype, positions.shape)

    # Densities

    def _checked_points(self, x):
        """The argument ``x``, checked against the distribution: its core shape against
        :attr:`shape` and its batch axes against :attr:`batch_shape`, a mismatch naming ``x``."""
        x_arg = Arg("x", MEAN, x, "np")
        check([Arg("mean", MEAN, self.mean, "np"), x_arg])
        return x_arg

    def _kernel_args(self, x):
        """``(x, mean, rowchol, colchol)`` for the compiled matrix-normal kernels at points ``x``,
        after checking ``x``, in the dtype of the result."""
        raise NotImplementedError

    @shared
    def logpdf(self, x: ArrayLike, *, out: FloatArray | None = None, errors: Errors = "raise") -> Result:
        """Log-density at ``x``, by :func:`fastmvn.logpdf_chol` on the stored factors.

        A :class:`~fastmvn.MatrixGaussian` runs the matrix-normal kernel on ``vec``: an
        ``np×1`` matrix with row factor ``chol`` and column factor ``[[1]]``, giving
        ``−½[np·log 2π + log|Σ| + vec(X−M)ᵀ Σ⁻¹ vec(X−M)]``.

        Parameters
        ----------
        %(points)s
        %(out)s
        errors : {"raise", "nan"}
            As in :func:`fastmvn.kl` (only ``x`` can fail).

        Returns
        -------
        logpdf : (...) ndarray or scalar

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> from scipy.stats import multivariate_normal
        >>> g = fm.MatrixGaussian(np.zeros((2, 2)), np.eye(4) + 0.5)
        >>> x = np.array([[1.0, 2.0], [3.0, 4.0]])
        >>> bool(np.isclose(g.logpdf(x), multivariate_normal(np.zeros(4), np.eye(4) + 0.5).logpdf([1, 3, 2, 4])))
        True
        """
        return logpdf_chol(*self._kernel_args(x), out=out, errors=errors)

    @shared
    def pdf(self, x: ArrayLike, *, out: FloatArray | None = None, errors: Errors = "raise") -> Result:
        """Density at ``x``: ``exp`` of :meth:`logpdf` (see :func:`fastmvn.pdf` for overflow).

        Parameters
        ----------
        %(points)s
        %(out)s
        errors : {"raise", "nan"}
            As in :func:`fastmvn.pdf`.

        Returns
        -------
        pdf : (...) ndarray or scalar

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> round(float(fm.MatrixGaussian(np.zeros((1, 1)), [[1.0]]).pdf([[0.0]])), 6)
        0.398942
        """
        return _exp(self.logpdf(x, out=out, errors=errors), errors)

    @shared
    def mahalanobis(self, x: ArrayLike, *, out: FloatArray | None = None, errors: Errors = "raise") -> Result:
        """Squared Mahalanobis distance from the stored factors, by :func:`fastmvn.mahalanobis_chol`.

        ``tr(V⁻¹ (X−M)ᵀ U⁻¹ (X−M))`` for a :class:`~fastmvn.MatrixNormal`;
        ``vec(X−M)ᵀ Σ⁻¹ vec(X−M) = ‖L⁻¹ vec(X−M)‖²`` for a :class:`~fastmvn.MatrixGaussian`.

        Parameters
        ----------
        %(points)s
        %(out)s
        errors : {"raise", "nan"}
            As in :func:`fastmvn.kl`.

        Returns
        -------
        distance : (...) ndarray or scalar

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> float(fm.MatrixGaussian(np.zeros((1, 2)), 4 * np.eye(2)).mahalanobis([[2.0, 2.0]]))
        2.0
        """
        return mahalanobis_chol(*self._kernel_args(x), out=out, errors=errors)

    # New distributions

    def _affine_args(self, mean, A, B, C):
        """The checked arguments ``[mean, A, B, C]`` (those given) of ``A X B + C`` for the
        mean ``mean`` of ``X``, their dtype and broadcast batch shape; NaN or infinity in ``A``,
        ``B`` or ``C`` raises, naming the argument and batch index."""
        args = [Arg("mean", MEAN, mean, "np")]
        shift_axes = ("n" if A is None else "m") + ("p" if B is None else "q")  # the shape of A X B
        args += [Arg(name, MEAN, value, axes)
                 for name, value, axes in (("A", A, "mn"), ("B", B, "pq"), ("C", C, shift_axes)) if value is not None]
        dtype, batch_shape = check(args)
        _report([(_nonfinite(arg), ValueError, f"{arg.name} contains NaN or infinity") for arg in args[1:]],
                batch_shape)
        return args, dtype, batch_shape

    def _selection(self, rows, cols):
        """The positions of the kept rows and columns of a marginal; ``None`` keeps all."""
        n, p = self.shape
        r = np.arange(n) if rows is None else _indices(rows, n, "rows")
        c = np.arange(p) if cols is None else _indices(cols, p, "cols")
        return r, c

    # Expectations

    def _expect_quadratic(self, A, transpose):
        """``E[Xᵀ A X]``, or with ``transpose`` ``E[X A Xᵀ]`` (that of ``Xᵀ``)."""
        raise NotImplementedError

    def expect_xtax(self, A: ArrayLike) -> FloatArray:
        """``E[Xᵀ A X]``: ``Mᵀ A M + tr(A U) V`` for a :class:`~fastmvn.MatrixNormal`; for a
        :class:`~fastmvn.MatrixGaussian`, ``(Mᵀ A M)_ij + Σ_ab A_ab Cov(X_ai, X_bj)``
        (:func:`fastmvn.expect_quadratic` with ``Y = X``).

        Parameters
        ----------
        A : (..., n, n) array_like
            Any square matrices; leading axes broadcast with :attr:`batch_shape`.

        Returns
        -------
        expectation : (..., p, p) ndarray

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> fm.MatrixNormal(np.zeros((2, 1)), [[1.0, 0.5], [0.5, 2.0]], [[3.0]]).expect_xtax(np.eye(2))
        array([[9.]])
        >>> fm.MatrixGaussian(np.zeros((2, 1)), [[1.0, 0.5], [0.5, 2.0]]).expect_xtax(np.eye(2))   # E[xᵀx] = tr Σ
        array([[3.]])
        """
        return self._expect_quadratic(A, transpose=False)

    def expect_xaxt(self, A: ArrayLike) -> FloatArray:
        """``E[X A Xᵀ]``: ``M A Mᵀ + tr(A V) U`` for a :class:`~fastmvn.MatrixNormal`; for a
        :class:`~fastmvn.MatrixGaussian`, ``(M A Mᵀ)_ij + Σ_ab A_ab Cov(X_ia, X_jb)``.

        Parameters
        ----------
        A : (..., p, p) array_like
            Any square matrices; leading axes broadcast with :attr:`batch_shape`.

        Returns
        -------
        expectation : (..., n, n) ndarray

        Examples
        --------
        >>> import numpy as np, fastmvn as fm
        >>> fm.MatrixNormal(np.zeros((2, 1)), [[1.0, 0.5], [0.5, 2.0]], [[3.0]]).expect_xaxt(np.eye(1))
        array([[3. , 1.5],
               [1.5, 6. ]])
        >>> fm.MatrixGaussian(np.zeros((2, 1)), [[1.0, 0.5], [0.5, 2.0]]).expect_xaxt(np.eye(1))   # E[x xᵀ] = Σ
        array([[1. , 0.5],
               [0.5, 2. ]])
        """
        return self._expect_quadratic(A, transpose=True)
