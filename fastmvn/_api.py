"""The public batched functions: argument checks, broadcasting and error reports around the kernels."""

import numpy as np
from numpy.linalg import LinAlgError

from . import _config, _modes, _pool
from ._jit import launching

__all__ = ["kl", "kl_chol", "kl_diag", "logdet", "trace_solve", "mahalanobis", "mahalanobis_chol", "logpdf", "logpdf_chol"]

# How each kind of argument is read, for checks and error reports.
MEAN, COV, CHOL, VAR, MATRIX = "mean", "cov", "chol", "var", "matrix"


def _kernels():
    """The compiled kernels, imported on first use so that ``import fastmvn`` compiles nothing."""
    from . import kernels

    return kernels


def _complex_error(name, dtype):
    """The error for the complex argument ``name`` of ``dtype`` (NumPy's or PyTorch's)."""
    return TypeError(f"{name} is complex ({dtype}); fastmvn works with real matrices")


class _Arg:
    """One argument: its name, kind, array and the core axes it must have ("np", "nn", "p", …)."""

    def __init__(self, name, kind, value, axes, default=False):
        self.name, self.kind, self.axes, self.default = name, kind, axes, default
        array = np.asarray(value)
        if array.dtype.kind == "c":
            raise _complex_error(name, array.dtype)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"{name} has dtype {array.dtype}; expected real numbers")
        if array.ndim < len(axes):
            letters = ", ".join(axes)
            raise ValueError(f"{name} must have at least {len(axes)} dimensions (..., {letters}); "
                             f"got shape {array.shape}")
        self.array = array

    @property
    def batch_shape(self):
        return self.array.shape[: self.array.ndim - len(self.axes)]


def _lower_factors(lower, *factors):
    """The Cholesky-factor arguments ``factors`` as the kernels read them, lower triangular:
    as given (``lower=True``), or, for upper factors ``R`` of ``U = RᵀR`` (``lower=False``),
    their transposes ``Rᵀ``, views of the last two axes that copy nothing (of a tensor, the
    tensor's own transpose). None, and an argument of fewer than two axes (for the checks to
    report), stay as they are."""
    if not isinstance(lower, (bool, np.bool_)):
        raise TypeError(f"lower must be True or False, not {lower!r}")
    if lower:
        return factors
    return tuple(f if f is None or np.ndim(f) < 2 else np.swapaxes(f, -1, -2) for f in factors)


def _check(args):
    """Check core sizes against one another; return the dtype and the broadcast batch shape."""
    sizes = {}
    origin = {}
    for arg in args:
        core = arg.array.shape[arg.array.ndim - len(arg.axes):]
        for letter, size in zip(arg.axes, core):
            if size == 0:
                raise ValueError(f"{arg.name} has shape {arg.array.shape}: matrices must be at least 1×1")
            if sizes.setdefault(letter, size) != size:
                expected = ", ".join(str(sizes.get(a, a)) for a in arg.axes)
                known = ", ".join(f"{a}={sizes[a]} from {origin[a]}" for a in sizes)
                raise ValueError(f"{arg.name} has shape {arg.array.shape}; expected (..., {expected}) ({known})")
            origin.setdefault(letter, arg.name)
    try:
        batch_shape = np.broadcast_shapes(*(arg.batch_shape for arg in args))
    except ValueError:
        listed = ", ".join(f"{arg.name} {arg.batch_shape}" for arg in args)
        raise ValueError(f"batch shapes do not broadcast: {listed}") from None
    return result_dtype(*(arg.array for arg in args if not arg.default)), batch_shape


def result_dtype(*arrays):
    """The dtype of fastmvn's results from the inputs ``arrays`` (arrays, array_likes or
    anything with a NumPy ``dtype``): float32 when every one is float32, float64 otherwise
    (float64, float16, integers, bools or a mix). Complex or non-numeric input is a TypeError.

    This is the one rule of every function, method and distribution of fastmvn; a float64
    result is computed in float64 from the inputs as given, never from float32 roundings."""
    dtypes = [a.dtype if isinstance(getattr(a, "dtype", None), np.dtype) else np.asarray(a).dtype for a in arrays]
    for dtype in dtypes:
        if dtype.kind not in "biuf":
            raise TypeError(f"an input has dtype {dtype}; fastmvn works with real numbers")
    single = bool(dtypes) and all(dtype == np.float32 for dtype in dtypes)
    return np.dtype(np.float32 if single else np.float64)


def _slot(arg, dtype, batch_shape):
    """The argument as a read-only ``(*batch_shape, r, c)`` view (variances as ``(…, n, 1)``)."""
    array = np.asarray(arg.array, dtype=dtype)
    if len(arg.axes) == 1:
        array = array[..., None]
    return np.broadcast_to(array, batch_shape + array.shape[-2:])


def working_dtype(slots):
    """The dtype the CPU kernels compute ``slots`` (``(…, r, c)`` arrays of one dtype) in."""
    small = max(max(slot.shape[-2:]) for slot in slots) <= _config.FLOAT32_ARITHMETIC_MAX_SIDE
    return np.dtype(np.float32 if slots[0].dtype == np.float32 and small else np.float64)


def _driver_arguments(flat, count, dtype):
    """What a batch driver takes besides the slots ``flat`` and the results: ``(1, 1, 1)``
    padding for the slots a mode does not use, ``first_bad`` (one entry per chunk) and
    ``work``, an empty array of the :func:`working_dtype`."""
    padding = [np.broadcast_to(np.zeros((1, 1, 1), dtype), (count, 1, 1))] * (6 - len(flat))
    return padding, np.empty(-(-count // _config.CHUNK), np.int64), np.empty(0, working_dtype(flat))


def _evaluate(mode, slots, out):
    """Run the batch driver over ``slots`` into ``out``; return the flat index of the
    first item whose result is not finite, or None.

    ``out`` must be contiguous. Batch axes of the slots are merged into one without
    copying; where a layout cannot be merged (a broadcast axis between batch axes), the
    first axis is looped over.
    """
    count = out.size
    if count == 0:
        return None
    flat_out = out.reshape(count)
    try:
        flat = [np.reshape(s, (count,) + s.shape[-2:], copy=False) for s in slots]
    except ValueError:
        step = count // out.shape[0]
        first = None
        for i in range(out.shape[0]):
            bad = _evaluate(mode, [s[i] for s in slots], out[i])
            if bad is not None and first is None:
                first = i * step + bad
        return first
    padding, first_bad, work = _driver_arguments(flat, count, out.dtype)
    with launching():
        _kernels().evaluate_batch(mode, *flat, *padding, flat_out, first_bad, work)
    bad = int(first_bad.min())
    return bad if bad < count else None


def _where(index):
    if len(index) == 0:
        return ""
    return f" at batch index {index[0] if len(index) == 1 else index}"


def _read_part(kind, item):
    """The entries the kernels read: the lower triangle of a covariance or a factor."""
    return item[np.tril_indices(item.shape[0])] if kind in (COV, CHOL) else item


def _diagnose(args, slots, index, work=None):
    """The exception for the item at ``index``: non-finite input, then a failed
    positive-definiteness condition (a Cholesky factorisation in ``work``, by default the
    :func:`working_dtype` of ``slots``), else an overflow of the result."""
    work = working_dtype(slots) if work is None else work
    items = [np.asarray(slot[index], dtype=np.float64) for slot in slots]
    where = _where(index)
    for arg, item in zip(args, items):
        if not np.isfinite(_read_part(arg.kind, item)).all():
            return ValueError(f"{arg.name} contains NaN or infinity{where}")
    cholesky = _kernels().cholesky
    cholesky = getattr(cholesky, "py_func", cholesky)  # a plain function under NUMBA_DISABLE_JIT=1
    for arg, item in zip(args, items):
        size = item.shape[0]
        if arg.kind == COV:
            reciprocals = np.empty((size, 1), work)
            cholesky(item[:, :, None].astype(work), reciprocals, 1, size)
            if np.isnan(reciprocals).any():
                return LinAlgError(f"{arg.name} is not positive definite (Cholesky failed){where}")
        elif arg.kind == CHOL and not (np.diagonal(item) > 0).all():
            return LinAlgError(f"{arg.name} is not a Cholesky factor: its diagonal must be positive{where}")
        elif arg.kind == VAR and not (item > 0).all():
            return LinAlgError(f"{arg.name} must be positive{where}")
    return FloatingPointError(f"the result overflowed{where}")


def _check_errors(errors):
    if errors not in ("raise", "nan"):
        raise ValueError(f"errors must be 'raise' or 'nan', not {errors!r}")


def _check_out(out, dtype, shape, name="out"):
    """``out`` must be None or a writeable array of ``shape`` and the result dtype."""
    if out is None:
        return
    if not isinstance(out, np.ndarray) or out.shape != shape:
        got = out.shape if isinstance(out, np.ndarray) else type(out).__name__
        raise ValueError(f"{name} must be an array of shape {shape}; got {got}")
    if out.dtype != dtype:
        raise TypeError(f"{name} has dtype {out.dtype}; these inputs give {dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")


def _direct(out, args):
    """Whether the kernels can write into ``out`` itself: C-contiguous and apart from every
    input (else they write into a new array, copied into ``out`` afterwards, as NumPy does
    for overlapping ufunc arguments)."""
    return (out is not None and out.flags.c_contiguous
            and not any(np.may_share_memory(out, arg.array) for arg in args))


def _compute(mode, args, out, errors):
    """Check ``args``, run kernel ``mode`` over their broadcast batch, apply ``errors``."""
    _check_errors(errors)
    dtype, batch_shape = _check(args)
    _check_out(out, dtype, batch_shape)
    direct = _direct(out, args)
    result = out if direct else np.empty(batch_shape, dtype)
    slots = [_slot(arg, dtype, batch_shape) for arg in args]
    bad = _evaluate(mode, slots, result)
    if out is not None and not direct:
        out[...] = result
    if bad is not None and errors == "raise":
        raise _diagnose(args, slots, tuple(int(i) for i in np.unravel_index(bad, batch_shape)))
    if out is not None:
        return out
    return result if result.ndim else result[()]


# How each parameterisation of the KL names and shapes its covariance arguments.
_PARAMETERISATIONS = {
    COV: ("rowcov", "colcov", _modes.KL_COV, _modes.KL_STD_COV),
    CHOL: ("rowchol", "colchol", _modes.KL_CHOL, _modes.KL_STD_CHOL),
    VAR: ("rowvar", "colvar", _modes.KL_DIAG, _modes.KL_STD_DIAG),
}


def _identity(kind, size):
    return np.ones(size) if kind == VAR else np.eye(size)


def _kl(kind, mean1, row1, col1, mean2, row2, col2, out, errors):
    """KL between two matrix normals of one parameterisation; ``None`` gives MN(0, I, I)'s part."""
    args, mode, _ = _kl_arguments(kind, (mean1, row1, col1, mean2, row2, col2))
    return _compute(mode, args, out, errors)


def kl(mean1, rowcov1, colcov1, mean2=None, rowcov2=None, colcov2=None, *, out=None, errors="raise"):
    r"""KL divergence ``KL(MN(mean1, rowcov1, colcov1) ‖ MN(mean2, rowcov2, colcov2))``, batched.

    .. math::

        \tfrac12\big[\operatorname{tr}(U_2^{-1}U_1)\operatorname{tr}(V_2^{-1}V_1)
        + \operatorname{tr}(V_2^{-1}D^\top U_2^{-1}D) - np
        + p\log\tfrac{|U_2|}{|U_1|} + n\log\tfrac{|V_2|}{|V_1|}\big],\quad D = M_2 - M_1,

    evaluated through Cholesky factors and triangular solves, one fused pass per item,
    never forming the ``np×np`` covariance ``V⊗U``. Only the lower triangle (diagonal
    included) of each covariance is read, as in LAPACK.

    Parameters
    ----------
    mean1 : (..., n, p) array_like
        Mean of the first distribution.
    rowcov1 : (..., n, n) array_like
        Row covariance ``U1`` (symmetric positive definite).
    colcov1 : (..., p, p) array_like
        Column covariance ``V1`` (symmetric positive definite).
    mean2 : (..., n, p) array_like, optional
        Mean of the second distribution; ``None`` means zero.
    rowcov2 : (..., n, n) array_like, optional
        Row covariance ``U2``; ``None`` means the identity.
    colcov2 : (..., p, p) array_like, optional
        Column covariance ``V2``; ``None`` means the identity. With all three of
        ``mean2``, ``rowcov2``, ``colcov2`` omitted, the KL to ``MN(0, I, I)`` is
        computed by a faster path that needs no solve.
    out : ndarray, optional
        Array of the broadcast batch shape and the result dtype to write into.
    errors : {"raise", "nan"}
        ``"raise"`` (default) raises on the first failing item; ``"nan"`` makes each
        failing item NaN and leaves every other item right.

    Returns
    -------
    kl : (...) ndarray or scalar
        The divergences over the broadcast batch shape of all arguments' leading axes:
        float32 when every input is float32, float64 otherwise. float32 data of matrices up
        to 16×16 is computed in float32 arithmetic, larger ones in float64.

    Raises
    ------
    numpy.linalg.LinAlgError
        A covariance is not positive definite, or numerically singular (a Cholesky pivot at
        or below ``n·ε`` times its diagonal entry); names the argument and batch index.
    ValueError
        NaN or infinity in an input (names the argument and batch index); shapes that do
        not fit together or batch shapes that do not broadcast (names the shapes).
    TypeError
        Complex or non-numeric input.
    FloatingPointError
        A result beyond the float range (finite inputs of any scale whose result is finite
        give that result); names the batch index.

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
    return _kl(COV, mean1, rowcov1, colcov1, mean2, rowcov2, colcov2, out, errors)


def kl_chol(mean1, rowchol1, colchol1, mean2=None, rowchol2=None, colchol2=None, *, out=None, errors="raise",
            lower=True):
    """KL divergence between matrix normals given by Cholesky factors, batched.

    The same divergence as :func:`kl` with ``U = rowchol @ rowchol.T`` and
    ``V = colchol @ colchol.T``: the natural output of an encoder. Only the lower triangle
    (diagonal included) of each factor is read, or the upper one of an upper factor
    ``R`` (``U = Rᵀ R``) with ``lower=False``; its diagonal must be positive.

    Parameters
    ----------
    mean1 : (..., n, p) array_like
        Mean of the first distribution.
    rowchol1 : (..., n, n) array_like
        Cholesky factor of the row covariance ``U1``.
    colchol1 : (..., p, p) array_like
        Cholesky factor of the column covariance ``V1``.
    mean2 : (..., n, p) array_like, optional
        Mean of the second distribution; ``None`` means zero.
    rowchol2 : (..., n, n) array_like, optional
        Cholesky factor of ``U2``; ``None`` means the identity.
    colchol2 : (..., p, p) array_like, optional
        Cholesky factor of ``V2``; ``None`` means the identity. With all three
        second arguments omitted, the KL to ``MN(0, I, I)`` runs a faster path.
    out : ndarray, optional
        Array of the broadcast batch shape and the result dtype to write into.
    errors : {"raise", "nan"}
        As in :func:`kl`.
    lower : bool, optional
        Whether each factor is lower triangular, ``U = L Lᵀ`` (default; its lower triangle
        is read), or, with ``False``, upper triangular, ``U = Rᵀ R`` (its upper triangle is
        read): the ``lower`` of ``scipy.linalg.cho_solve``. ``scipy.linalg.cholesky``
        returns the upper factor by default, ``numpy.linalg.cholesky`` the lower.

    Returns
    -------
    kl : (...) ndarray or scalar
        The divergences over the broadcast batch shape.

    Raises
    ------
    numpy.linalg.LinAlgError
        A factor has a diagonal entry that is not positive; names the argument and batch index.
    ValueError, TypeError, FloatingPointError
        As in :func:`kl`.

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
    rowchol1, colchol1, rowchol2, colchol2 = _lower_factors(lower, rowchol1, colchol1, rowchol2, colchol2)
    return _kl(CHOL, mean1, rowchol1, colchol1, mean2, rowchol2, colchol2, out, errors)


def kl_diag(mean1, rowvar1, colvar1, mean2=None, rowvar2=None, colvar2=None, *, out=None, errors="raise"):
    """KL divergence between matrix normals with diagonal covariances, batched.

    The same divergence as :func:`kl` with ``U = diag(rowvar)`` and ``V = diag(colvar)``;
    every term reduces to sums over the diagonals.

    Parameters
    ----------
    mean1 : (..., n, p) array_like
        Mean of the first distribution.
    rowvar1 : (..., n) array_like
        Row variances (positive).
    colvar1 : (..., p) array_like
        Column variances (positive).
    mean2 : (..., n, p) array_like, optional
        Mean of the second distribution; ``None`` means zero.
    rowvar2 : (..., n) array_like, optional
        Row variances of the second distribution; ``None`` means ones.
    colvar2 : (..., p) array_like, optional
        Column variances of the second distribution; ``None`` means ones.
    out : ndarray, optional
        Array of the broadcast batch shape and the result dtype to write into.
    errors : {"raise", "nan"}
        As in :func:`kl`.

    Returns
    -------
    kl : (...) ndarray or scalar
        The divergences over the broadcast batch shape.

    Raises
    ------
    numpy.linalg.LinAlgError
        A variance is not positive; names the argument and batch index.
    ValueError, TypeError, FloatingPointError
        As in :func:`kl`.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> round(float(fm.kl_diag(np.zeros((1, 1)), [2.0], [1.0])), 12)   # ½(2 − 1 − log 2)
    0.15342640972
    """
    return _kl(VAR, mean1, rowvar1, colvar1, mean2, rowvar2, colvar2, out, errors)


def logdet(a, *, out=None, errors="raise"):
    """Log-determinant of symmetric positive definite matrices, batched.

    Computed from the Cholesky factor, reading only the lower triangle of ``a``.

    Parameters
    ----------
    a : (..., n, n) array_like
        Symmetric positive definite matrices.
    out : ndarray, optional
        Array of the batch shape and the result dtype to write into.
    errors : {"raise", "nan"}
        As in :func:`kl`.

    Returns
    -------
    logdet : (...) ndarray or scalar
        ``log|a|``.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> fm.logdet(np.stack([np.eye(3), 2 * np.eye(3)])) / np.log(2)
    array([0., 3.])
    """
    return _compute(_modes.LOGDET, [_Arg("a", COV, a, "nn")], out, errors)


def trace_solve(a, b, *, out=None, errors="raise"):
    """``tr(a⁻¹ b)`` for symmetric positive definite ``a`` and square ``b``, batched.

    Uses the Cholesky factor of ``a`` (only its lower triangle is read) and triangular
    solves; no inverse is formed. Every entry of ``b`` is read.

    Parameters
    ----------
    a : (..., n, n) array_like
        Symmetric positive definite matrices.
    b : (..., n, n) array_like
        Square matrices.
    out : ndarray, optional
        Array of the broadcast batch shape and the result dtype to write into.
    errors : {"raise", "nan"}
        As in :func:`kl`.

    Returns
    -------
    trace : (...) ndarray or scalar
        ``tr(a⁻¹ b)``.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> round(float(fm.trace_solve(2 * np.eye(3), np.ones((3, 3)))), 12)
    1.5
    """
    return _compute(_modes.TRACE_SOLVE, [_Arg("a", COV, a, "nn"), _Arg("b", MATRIX, b, "nn")], out, errors)


def mahalanobis(x, mean, rowcov, colcov, *, out=None, errors="raise"):
    """Squared Mahalanobis distance ``tr(V⁻¹ (X−M)ᵀ U⁻¹ (X−M))`` of a matrix normal, batched.

    Equal to ``vec(X−M)ᵀ (V⊗U)⁻¹ vec(X−M)``, computed as ``‖L_U⁻¹ (X−M) L_V⁻ᵀ‖_F²``
    through Cholesky factors (only the lower triangles of ``rowcov`` and ``colcov`` are read).

    Parameters
    ----------
    x : (..., n, p) array_like
        Points.
    mean : (..., n, p) array_like or None
        Means ``M``; ``None`` means zero.
    rowcov : (..., n, n) array_like
        Row covariances ``U``.
    colcov : (..., p, p) array_like
        Column covariances ``V``.
    out : ndarray, optional
        Array of the broadcast batch shape and the result dtype to write into.
    errors : {"raise", "nan"}
        As in :func:`kl`.

    Returns
    -------
    distance : (...) ndarray or scalar
        The squared distances.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> round(float(fm.mahalanobis(np.ones((2, 3)), None, 2 * np.eye(2), np.eye(3))), 12)
    3.0
    """
    return _compute(_modes.MAHALANOBIS, _density_args(x, mean, COV, rowcov, colcov), out, errors)


def mahalanobis_chol(x, mean, rowchol, colchol, *, out=None, errors="raise", lower=True):
    """Squared Mahalanobis distance from Cholesky factors of ``U`` and ``V``, batched.

    The same as :func:`mahalanobis` with ``U = rowchol @ rowchol.T`` and
    ``V = colchol @ colchol.T``: ``‖L_U⁻¹ (X−M) L_V⁻ᵀ‖_F²``, two triangular solves and no
    factorisation. Only the lower triangles are read (the upper ones with ``lower=False``);
    the diagonals must be positive.

    Parameters
    ----------
    x : (..., n, p) array_like
        Points.
    mean : (..., n, p) array_like or None
        Means ``M``; ``None`` means zero.
    rowchol : (..., n, n) array_like
        Cholesky factors of the row covariances.
    colchol : (..., p, p) array_like
        Cholesky factors of the column covariances.
    out : ndarray, optional
        Array of the broadcast batch shape and the result dtype to write into.
    errors : {"raise", "nan"}
        As in :func:`kl`.
    lower : bool, optional
        Lower factors ``U = L Lᵀ`` (default) or, with ``False``, upper ones ``U = Rᵀ R``,
        as in :func:`kl_chol`.

    Returns
    -------
    distance : (...) ndarray or scalar
        The squared distances.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> round(float(fm.mahalanobis_chol(np.ones((2, 3)), None, np.sqrt(2) * np.eye(2), np.eye(3))), 12)
    3.0
    """
    rowchol, colchol = _lower_factors(lower, rowchol, colchol)
    return _compute(_modes.MAHALANOBIS_CHOL, _density_args(x, mean, CHOL, rowchol, colchol), out, errors)


def _density_args(x, mean, kind, row, col):
    x_arg = _Arg("x", MEAN, x, "np")
    n, p = x_arg.array.shape[-2:]
    stem = "cov" if kind == COV else "chol"
    return [x_arg, _Arg("mean", MEAN, np.zeros((n, p)) if mean is None else mean, "np", default=mean is None),
            _Arg(f"row{stem}", kind, row, "nn"), _Arg(f"col{stem}", kind, col, "pp")]


def logpdf(x, mean, rowcov, colcov, *, out=None, errors="raise"):
    r"""Log-density of the matrix normal ``MN(mean, rowcov, colcov)`` at ``x``, batched.

    .. math::

        -\tfrac12\big[np\log 2\pi + p\log|U| + n\log|V|
        + \operatorname{tr}(V^{-1}(X-M)^\top U^{-1}(X-M))\big],

    the density of ``vec X ~ N(vec M, V⊗U)`` (as ``scipy.stats.matrix_normal``), in one
    fused pass per item through Cholesky factors (only the lower triangles of ``rowcov``
    and ``colcov`` are read).

    Parameters
    ----------
    x : (..., n, p) array_like
        Points.
    mean : (..., n, p) array_like or None
        Means ``M``; ``None`` means zero.
    rowcov : (..., n, n) array_like
        Row covariances ``U`` (symmetric positive definite).
    colcov : (..., p, p) array_like
        Column covariances ``V`` (symmetric positive definite).
    out : ndarray, optional
        Array of the broadcast batch shape and the result dtype to write into.
    errors : {"raise", "nan"}
        As in :func:`kl`.

    Returns
    -------
    logpdf : (...) ndarray or scalar
        The log-densities over the broadcast batch shape.

    Raises
    ------
    numpy.linalg.LinAlgError, ValueError, TypeError, FloatingPointError
        As in :func:`kl`.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> from scipy.stats import matrix_normal
    >>> x, u, v = np.ones((2, 3)), 2 * np.eye(2), np.eye(3)
    >>> bool(np.isclose(fm.logpdf(x, None, u, v), matrix_normal(None, u, v).logpdf(x)))
    True
    """
    return _compute(_modes.LOGPDF, _density_args(x, mean, COV, rowcov, colcov), out, errors)


def logpdf_chol(x, mean, rowchol, colchol, *, out=None, errors="raise", lower=True):
    """Log-density of the matrix normal with Cholesky factors ``rowchol``, ``colchol``, batched.

    The same as :func:`logpdf` with ``U = rowchol @ rowchol.T`` and ``V = colchol @ colchol.T``;
    no factorisation is needed. Only the lower triangles are read (the upper ones with
    ``lower=False``); the diagonals must be positive.

    Parameters
    ----------
    x : (..., n, p) array_like
        Points.
    mean : (..., n, p) array_like or None
        Means ``M``; ``None`` means zero.
    rowchol : (..., n, n) array_like
        Cholesky factors of the row covariances.
    colchol : (..., p, p) array_like
        Cholesky factors of the column covariances.
    out : ndarray, optional
        Array of the broadcast batch shape and the result dtype to write into.
    errors : {"raise", "nan"}
        As in :func:`kl`.
    lower : bool, optional
        Lower factors ``U = L Lᵀ`` (default) or, with ``False``, upper ones ``U = Rᵀ R``,
        as in :func:`kl_chol`.

    Returns
    -------
    logpdf : (...) ndarray or scalar
        The log-densities over the broadcast batch shape.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> L = np.array([[1.0, 0.0], [0.5, 2.0]])
    >>> bool(np.isclose(fm.logpdf_chol(np.ones((2, 2)), None, L, np.eye(2)),
    ...                 fm.logpdf(np.ones((2, 2)), None, L @ L.T, np.eye(2))))
    True
    """
    rowchol, colchol = _lower_factors(lower, rowchol, colchol)
    return _compute(_modes.LOGPDF_CHOL, _density_args(x, mean, CHOL, rowchol, colchol), out, errors)


# Gradients. The kernels write one gradient per item; an argument broadcast over batch
# axes gets the sum over those axes, taken afterwards in NumPy (see _reduce).

def _argument_names(kind):
    """The six arguments' names of the KL of one parameterisation, in order."""
    row, col = _PARAMETERISATIONS[kind][:2]
    return ("mean1", f"{row}1", f"{col}1", "mean2", f"{row}2", f"{col}2")


def _kl_arguments(kind, values):
    """The checked arguments of a KL of one parameterisation, the kernel mode and which of
    the six arguments were given (``None`` means zero mean or identity covariance)."""
    mode, standard_mode = _PARAMETERISATIONS[kind][2:]
    names = _argument_names(kind)
    row_axes, col_axes = ("n", "p") if kind == VAR else ("nn", "pp")
    mean1, row1, col1, mean2, row2, col2 = values
    args = [_Arg(names[0], MEAN, mean1, "np"), _Arg(names[1], kind, row1, row_axes),
            _Arg(names[2], kind, col1, col_axes)]
    given = [True, True, True, mean2 is not None, row2 is not None, col2 is not None]
    if not any(given[3:]):
        return args, standard_mode, given
    n, p = args[0].array.shape[-2:]
    args += [_Arg(names[3], MEAN, np.zeros((n, p)) if mean2 is None else mean2, "np", default=mean2 is None),
             _Arg(names[4], kind, _identity(kind, n) if row2 is None else row2, row_axes, default=row2 is None),
             _Arg(names[5], kind, _identity(kind, p) if col2 is None else col2, col_axes, default=col2 is None)]
    return args, mode, given


def _evaluate_grad(mode, slots, out, grads, wanted):
    """Run the value-and-gradient driver over ``slots`` into ``out`` and ``grads`` (contiguous
    ``(*batch, r, c)`` arrays, or ``(1, 1, 1)`` placeholders where not ``wanted``); return the
    flat index of the first failing item, or None. Batch axes are merged as in :func:`_evaluate`."""
    count = out.size
    if count == 0:
        return None
    try:
        flat = [np.reshape(s, (count,) + s.shape[-2:], copy=False) for s in slots]
    except ValueError:
        step = count // out.shape[0]
        first = None
        for i in range(out.shape[0]):
            bad = _evaluate_grad(mode, [s[i] for s in slots], out[i],
                                 [g[i] if w else g for g, w in zip(grads, wanted)], wanted)
            if bad is not None and first is None:
                first = i * step + bad
        return first
    flat_grads = [g.reshape((count,) + g.shape[-2:]) if w else g for g, w in zip(grads, wanted)]
    padding, first_bad, work = _driver_arguments(flat, count, out.dtype)
    mask = sum(1 << k for k, w in enumerate(wanted) if w)
    with launching():
        _kernels().value_and_grad_batch(mode, *flat, *padding, out.reshape(count), *flat_grads, mask, first_bad,
                                        work)
    bad = int(first_bad.min())
    return bad if bad < count else None


def _reduce(grad, shape):
    """``grad`` (``(*batch, *core)``) summed over the axes along which an argument of
    ``shape`` was broadcast, so that it has ``shape``; summed in float64."""
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, size in enumerate(shape)
                                      if size == 1 and grad.shape[lead + i] != 1)
    if not axes:
        return grad
    return grad.sum(axis=axes, dtype=np.float64, keepdims=True).reshape(shape).astype(grad.dtype, copy=False)


def _grad_out(out, args, given, computed, dtype, batch_shape):
    """The arrays of ``out = (kl, grads)`` checked against what the call returns (``args``
    padded with None to six, of which those ``given`` were not None and those ``computed``
    get a gradient): the value's array (or None) and six gradient arrays (None where
    ``grads`` has None)."""
    if out is None:
        return None, [None] * 6
    try:
        value, grads = out
        grads = tuple(grads)
    except (TypeError, ValueError):
        raise ValueError("out must be a pair (kl, grads) as the function returns it, grads a tuple of six "
                         "arrays or None") from None
    if len(grads) != 6:
        raise ValueError(f"out[1] must hold six gradients (or None), one per argument; got {len(grads)}")
    outputs = [("out[0] (the KL)", value)]
    _check_out(value, dtype, batch_shape, outputs[0][0])
    for k, (grad, arg) in enumerate(zip(grads, args)):
        if grad is not None and not given[k]:
            raise ValueError(f"out[1][{k}] must be None: that argument was passed as None")
        if grad is not None and not computed[k]:
            raise ValueError(f"out[1][{k}] must be None: the gradient of {arg.name} is not asked for (wrt)")
        if grad is not None:
            outputs.append((f"out[1][{k}] (the gradient of {arg.name})", grad))
            _check_out(grad, dtype, arg.array.shape, outputs[-1][0])
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


def _computed(kind, given, wrt):
    """Which of the six gradients to compute: those of the arguments ``given`` (not None), or
    only those that ``wrt`` names (a name or a sequence of names), each checked."""
    if wrt is None:
        return list(given)
    names = _argument_names(kind)
    wrt = [wrt] if isinstance(wrt, str) else list(wrt)
    for name in wrt:
        if name not in names:
            raise ValueError(f"wrt names {name!r}; the arguments are {', '.join(names)}")
        if not given[names.index(name)]:
            raise ValueError(f"wrt names {name}, which was passed as None and has no gradient")
    return [name in wrt for name in names]


def _value_and_grad(kind, values, errors, reduce=True, out=None, wrt=None, lower=True):
    """The KL of one parameterisation and its gradient with respect to each given argument.

    With ``reduce=False`` each gradient has the broadcast batch shape in front of the core
    shape (one gradient per item, as a caller that weights the items needs); otherwise
    each has its argument's shape. ``out = (kl, grads)``: arrays to write into (``reduce``
    only); the kernels write straight into those of the batch shape that :func:`_direct`
    allows. ``wrt`` names the arguments whose gradients to compute (all by default): the
    others are None, and neither allocated nor stored. With ``lower=False`` the factors are
    upper ones, read through :func:`_lower_factors`; their gradients, and the arrays of
    ``out`` for them, are the transposes of the lower factors' (views, as the factors).
    """
    _check_errors(errors)
    if kind == CHOL:
        mean1, row1, col1, mean2, row2, col2 = values
        row1, col1, row2, col2 = _lower_factors(lower, row1, col1, row2, col2)
        values = mean1, row1, col1, mean2, row2, col2
    args, mode, given = _kl_arguments(kind, values)
    dtype, batch_shape = _check(args)
    padding = [None] * (6 - len(args))
    computed = _computed(kind, given, wrt)
    value_out, given_out = _grad_out(out, args + padding, given, computed, dtype, batch_shape)
    upper = [not lower and arg is not None and arg.kind == CHOL for arg in args + padding]
    grads_out = [np.swapaxes(g, -1, -2) if u and g is not None else g for g, u in zip(given_out, upper)]
    slots = [_slot(arg, dtype, batch_shape) for arg in args]
    value = value_out if _direct(value_out, args) else np.empty(batch_shape, dtype)
    placeholder = np.empty((1, 1, 1), dtype)
    grads, direct = [], []
    for arg, slot, target, wanted in zip(args + padding, slots + padding, grads_out, computed):
        fits = target is not None and arg.batch_shape == batch_shape and _direct(target, args)
        direct.append(fits)
        grads.append(target.reshape(slot.shape) if fits else _pool.empty(slot.shape, dtype) if wanted else placeholder)
    bad = _evaluate_grad(mode, slots, value, grads, computed)
    if value_out is not None and value is not value_out:
        value_out[...] = value
    if bad is not None and errors == "raise":
        raise _diagnose(args, slots, tuple(int(i) for i in np.unravel_index(bad, batch_shape)))
    result = []
    for arg, grad, wanted, target, fits in zip(args + padding, grads, computed, grads_out, direct):
        if not wanted:
            result.append(None)
            continue
        if fits:
            result.append(target)
            continue
        if len(arg.axes) == 1:
            grad = grad[..., 0]
        grad = _reduce(grad, arg.array.shape) if reduce else grad
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


def kl_value_and_grad(mean1, rowcov1, colcov1, mean2=None, rowcov2=None, colcov2=None, *, errors="raise",
                      out=None, wrt=None):
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

    Parameters
    ----------
    mean1 : (..., n, p) array_like
        Mean of the first distribution.
    rowcov1 : (..., n, n) array_like
        Row covariance ``U1`` (symmetric positive definite; lower triangle read).
    colcov1 : (..., p, p) array_like
        Column covariance ``V1``.
    mean2 : (..., n, p) array_like, optional
        Mean of the second distribution; ``None`` means zero.
    rowcov2 : (..., n, n) array_like, optional
        Row covariance ``U2``; ``None`` means the identity.
    colcov2 : (..., p, p) array_like, optional
        Column covariance ``V2``; ``None`` means the identity. With all three second
        arguments omitted, the KL to ``MN(0, I, I)`` runs a faster path.
    errors : {"raise", "nan"}
        ``"raise"`` (default) raises on the first failing item; ``"nan"`` makes the value
        and every gradient of a failing item NaN (and so any gradient summed over it).
    out : tuple (kl, grads), optional
        Arrays to write the results into, in the structure they are returned in (a
        previous result of the same call will do): ``kl`` an array of the batch shape or
        None, ``grads`` six arrays of the arguments' shapes, or None for an argument passed
        as None or a gradient to allocate; no two of them may share memory (an output may
        overlap an input). Returned instead of new arrays. Without it, large gradient
        arrays come from a pool that reuses the memory of gradients already dropped
        (:func:`fastmvn.set_buffer_pool`): a training loop whose gradients fit in the pool
        pays for new memory once either way.
    wrt : str or sequence of str, optional
        The names of the arguments whose gradients to compute (``"mean1"``, ``"rowcov1"``,
        …); by default every argument not passed as None. The other gradients are None and
        cost neither memory nor stores: against a fixed prior,
        ``wrt=("mean1", "rowcov1", "colcov1")`` writes half the bytes.

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
    ValueError
        Two arrays of ``out`` share memory (names both).

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
    return _value_and_grad(COV, (mean1, rowcov1, colcov1, mean2, rowcov2, colcov2), errors, out=out, wrt=wrt)


def kl_chol_value_and_grad(mean1, rowchol1, colchol1, mean2=None, rowchol2=None, colchol2=None, *,
                           errors="raise", out=None, wrt=None, lower=True):
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

    Parameters
    ----------
    mean1 : (..., n, p) array_like
        Mean of the first distribution.
    rowchol1 : (..., n, n) array_like
        Cholesky factor of ``U1`` (positive diagonal).
    colchol1 : (..., p, p) array_like
        Cholesky factor of ``V1``.
    mean2 : (..., n, p) array_like, optional
        Mean of the second distribution; ``None`` means zero.
    rowchol2 : (..., n, n) array_like, optional
        Cholesky factor of ``U2``; ``None`` means the identity.
    colchol2 : (..., p, p) array_like, optional
        Cholesky factor of ``V2``; ``None`` means the identity.
    errors : {"raise", "nan"}
        As in :func:`kl_value_and_grad`.
    out : tuple (kl, grads), optional
        As in :func:`kl_value_and_grad`.
    wrt : str or sequence of str, optional
        As in :func:`kl_value_and_grad`: names such as ``"rowchol1"``.
    lower : bool, optional
        Lower factors ``U = L Lᵀ`` (default) or, with ``False``, upper ones ``U = Rᵀ R``,
        as in :func:`kl_chol`; the gradient with respect to an upper factor is upper
        triangular (a transposed view of the lower factor's).

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
    return _value_and_grad(CHOL, (mean1, rowchol1, colchol1, mean2, rowchol2, colchol2), errors, out=out, wrt=wrt,
                           lower=lower)


def kl_diag_value_and_grad(mean1, rowvar1, colvar1, mean2=None, rowvar2=None, colvar2=None, *, errors="raise",
                           out=None, wrt=None):
    r"""The KL of :func:`kl_diag` and its gradient with respect to each argument, batched.

    With ``U = diag(a)``, ``V = diag(b)``, ``t_u = Σ a1/a2``, ``t_v = Σ b1/b2`` and
    ``D = M2 − M1`` (``docs/gradients.md``):

    .. math::

        \frac{\partial KL}{\partial M_2} = -\frac{\partial KL}{\partial M_1} = \frac{D_{ic}}{a_{2i} b_{2c}},\quad
        \frac{\partial KL}{\partial a_{1i}} = \tfrac12\Big(\frac{t_v}{a_{2i}} - \frac{p}{a_{1i}}\Big),\quad
        \frac{\partial KL}{\partial a_{2i}} = \frac{1}{2a_{2i}}\Big(p - t_v\frac{a_{1i}}{a_{2i}}
        - \sum_c \frac{D_{ic}^2}{a_{2i} b_{2c}}\Big),

    and the same for ``b`` with ``t_u``, ``n`` and sums over rows.

    Parameters
    ----------
    mean1 : (..., n, p) array_like
        Mean of the first distribution.
    rowvar1 : (..., n) array_like
        Row variances (positive).
    colvar1 : (..., p) array_like
        Column variances (positive).
    mean2 : (..., n, p) array_like, optional
        Mean of the second distribution; ``None`` means zero.
    rowvar2 : (..., n) array_like, optional
        Row variances of the second distribution; ``None`` means ones.
    colvar2 : (..., p) array_like, optional
        Column variances of the second distribution; ``None`` means ones.
    errors : {"raise", "nan"}
        As in :func:`kl_value_and_grad`.
    out : tuple (kl, grads), optional
        As in :func:`kl_value_and_grad`.
    wrt : str or sequence of str, optional
        As in :func:`kl_value_and_grad`: names such as ``"rowvar1"``.

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

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> value, grads = fm.kl_diag_value_and_grad(np.zeros((1, 1)), [2.0], [1.0])
    >>> grads[1], grads[2]                       # ½(b − 1/a) and ½(a − 1/b) at a = 2, b = 1
    (array([0.25]), array([0.5]))
    """
    return _value_and_grad(VAR, (mean1, rowvar1, colvar1, mean2, rowvar2, colvar2), errors, out=out, wrt=wrt)


__all__ += ["kl_value_and_grad", "kl_chol_value_and_grad", "kl_diag_value_and_grad"]
