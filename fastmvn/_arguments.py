"""The argument model of every frontend: one checked argument (:class:`Arg`), the binding of a
table entry's arguments (:func:`bind`), the checks of shapes, dtypes, ``out=`` and ``errors=``,
and the one dtype rule (:func:`result_dtype`).

Nothing here runs a kernel; :mod:`fastmvn._batch` does, on the CPU, and :mod:`fastmvn.cuda` on
the GPU, which describes its arrays to :class:`Arg` by shape and dtype.
"""

import numpy as np

from ._table import CHOL, COV, MATRIX, MEAN, VAR  # noqa: F401 - the kinds, imported from here by the frontends

__all__ = ["Arg", "argument", "bind", "check", "check_shapes", "result_dtype", "lower_factors", "check_errors",
           "check_out", "complex_error",
           "where", "identity", "MEAN", "COV", "CHOL", "VAR", "MATRIX"]


def complex_error(name, dtype):
    """The error for the complex argument ``name`` of ``dtype`` (NumPy's or PyTorch's)."""
    return TypeError(f"{name} is complex ({dtype}); fastmvn works with real matrices")


class Arg:
    """One argument: its name, kind (:mod:`fastmvn._table`'s MEAN, COV, …), array and core
    axes (``"np"``, ``"nn"``, ``"p"``, …); ``default`` marks a zero mean or identity made up
    for an argument passed as None.

    ``value`` is read as a NumPy array, unless ``on_device``: then it is a GPU array, kept as
    it is and described by its ``shape`` and ``dtype``, which are all the checks read.
    """

    def __init__(self, name, kind, value, axes, default=False, on_device=False):
        self.name, self.kind, self.axes, self.default, self.on_device = name, kind, axes, default, on_device
        if value is None:
            raise TypeError(f"{name} is None; expected an array of real numbers")
        array = value if on_device else np.asarray(value)
        dtype = np.dtype(array.dtype)
        if dtype.kind == "c":
            raise complex_error(name, dtype)
        if dtype.kind not in "biuf":
            raise TypeError(f"{name} has dtype {dtype}; expected real numbers")
        self.array, self.shape, self.dtype = array, tuple(array.shape), dtype
        if len(self.shape) < len(axes):
            letters = ", ".join(axes)
            raise ValueError(f"{name} must have at least {len(axes)} dimensions (..., {letters}); "
                             f"got shape {self.shape}")

    @property
    def batch_shape(self):
        return self.shape[: len(self.shape) - len(self.axes)]

    @property
    def core_shape(self):
        return self.shape[len(self.shape) - len(self.axes):]


def argument(name, kind, value, axes, device=None):
    """``Arg(name, kind, value, axes)``, of ``value``'s GPU array where ``device`` (a GPU
    backend's adapter, as :func:`bind` takes it) reads ``value`` as one."""
    array = None if device is None else device.array(value)
    return Arg(name, kind, value if array is None else array, axes, on_device=array is not None)


def lower_factors(lower, *factors):
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


def identity(kind, size):
    """The standard distribution's covariance of ``kind`` and ``size``: ones for variances."""
    return np.ones(size) if kind == VAR else np.eye(size)


def bind(function, values, *, lower=True, device=None):
    """The checked arguments of ``function`` (an entry of :data:`fastmvn._table.FUNCTIONS`) for
    ``values`` (one per parameter, in order), and the kernel mode to run.

    When every standard argument is None and the function has a faster standard mode, those
    arguments are left out and that mode is returned; otherwise each None becomes a zero mean
    or an identity (marked ``default``, so that it does not decide the result dtype). With
    ``lower=False`` the factor arguments are upper triangular and read through their
    transposes (:func:`lower_factors`). ``device``, a GPU backend's adapter, turns a value
    into its GPU array (``device.array(value)``, None for host data) and transposes one
    (``device.transposed(array)``).
    """
    if function.lower:
        lower_factors(lower, None)  # checks ``lower``
    missing = [param.standard and value is None for param, value in zip(function.params, values)]
    args = []
    for param, value, left_out in zip(function.params, values, missing):
        if left_out:
            continue
        on_device = device is not None and (array := device.array(value)) is not None
        if on_device:
            value = array if lower or param.kind != CHOL else device.transposed(array)
        elif param.kind == CHOL and not lower:
            value, = lower_factors(lower, value)
        args.append(Arg(param.name, param.kind, value, param.axes, on_device=on_device))
    if not any(missing):
        return args, function.mode
    if function.standard_mode is not None and missing == [param.standard for param in function.params]:
        return args, function.standard_mode
    sizes = {}
    for arg in args:
        for letter, size in zip(arg.axes, arg.core_shape):
            sizes.setdefault(letter, size)
    made = iter(args)
    args = []
    for param, left_out in zip(function.params, missing):
        if not left_out:
            args.append(next(made))
            continue
        shape = tuple(sizes[letter] for letter in param.axes)
        default = np.zeros(shape) if param.kind == MEAN else identity(param.kind, shape[0])
        args.append(Arg(param.name, param.kind, default, param.axes, default=True))
    return args, function.mode


def check_shapes(args):
    """Check core sizes against one another; return the broadcast batch shape. ``args`` need
    only a ``name``, ``shape``, ``axes``, ``core_shape`` and ``batch_shape`` (a Dask input will do)."""
    sizes = {}
    origin = {}
    for arg in args:
        for letter, size in zip(arg.axes, arg.core_shape):
            if size == 0:
                raise ValueError(f"{arg.name} has shape {arg.shape}: matrices must be at least 1×1")
            if sizes.setdefault(letter, size) != size:
                expected = ", ".join(str(sizes.get(a, a)) for a in arg.axes)
                known = ", ".join(f"{a}={sizes[a]} from {origin[a]}" for a in sizes)
                raise ValueError(f"{arg.name} has shape {arg.shape}; expected (..., {expected}) ({known})")
            origin.setdefault(letter, arg.name)
    shapes = {arg.batch_shape for arg in args}
    if len(shapes) == 1:  # nothing to broadcast: the common case, and a quick one
        return shapes.pop()
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        listed = ", ".join(f"{arg.name} {arg.batch_shape}" for arg in args)
        raise ValueError(f"batch shapes do not broadcast: {listed}") from None


def check(args):
    """Check core sizes against one another; return the dtype and the broadcast batch shape."""
    batch_shape = check_shapes(args)
    return result_dtype(*(arg for arg in args if not arg.default)), batch_shape


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


def check_errors(errors):
    if errors not in ("raise", "nan"):
        raise ValueError(f"errors must be 'raise' or 'nan', not {errors!r}")


def check_out(out, dtype, shape, name="out"):
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


def where(index):
    """The words that place an item: ``" at batch index 3"``, ``" at batch index (1, 2)"``."""
    if len(index) == 0:
        return ""
    return f" at batch index {index[0] if len(index) == 1 else index}"
