"""Lazy Dask versions of fastmvn's batched functions: batches chunked along their batch axes,
larger than memory, streamed from disk or spread over a cluster.

Each function takes :class:`dask.array.Array` inputs and returns a lazy ``dask.array`` whose
every block is one call of the in-memory function of the same name on the matching blocks of
the inputs. Other arrays are wrapped, without copying: NumPy arrays are sliced in place, and
memory-mapped ``.npy`` files (``np.load(path, mmap_mode="r")``), Zarr and HDF5 arrays are
read block by block when the blocks run; other array_likes go through :func:`numpy.asarray`.
(Pass a memory-mapped array as it is: :func:`dask.array.from_array` copies NumPy arrays, and
so reads a whole memory-mapped file into memory.) On a ``dask.distributed`` cluster a file
mapped read-only is mapped again by each worker; one mapped copy-on-write
(``mmap_mode="c"``) or writeable (``"r+"``, ``"w+"``) may hold changes its file lacks, so it
travels as its data in memory (map it read-only to stream it from disk): the result never
depends on the scheduler. The compiled kernels release
the GIL, so Dask's default threaded scheduler runs blocks in parallel; ``dask.distributed``
works as well.

* **Chunks.** Only batch axes may be split. An input split along its matrix axes (the last
  two, or the last one for variances) is rechunked to whole matrices with a
  :class:`RechunkWarning`. Inputs split differently along a batch axis are aligned as
  :func:`dask.array.blockwise` aligns them. NumPy inputs are wrapped in chunks that match
  the Dask inputs, or of about 128 MiB of inputs per block (Dask's ``array.chunk-size``)
  when every input is NumPy.
* **Broadcasting.** Leading axes broadcast as in NumPy. An input with fewer batch axes or
  with size-1 batch axes (a shared prior) is handed whole to every block and broadcast inside
  the kernel call: it is never copied to the batch size.
* **Kronecker sums.** ``logpdf_kron_sum``, ``kl_kron_sum``, ``kl_eig`` and
  ``logpdf_kron_prec`` (the precision form), each with its ``*_value_and_grad``, are served
  alike (they are not entries of the table: ``fastmvn.distributions.kron_grad._SERVED``
  describes them). A scalar noise or damping given as a Python number is a constant handed
  to every block, which decides no dtype; one per item is an input chunked with the batch.
* **Errors.** Shapes, dtypes and ``errors`` are checked when the graph is built, with the
  messages of the in-memory functions. Failing items raise when the result is computed,
  with the in-memory function's exception and message, naming the argument and the *global*
  batch index: ``rowcov2 is not positive definite (Cholesky failed) at batch index (1, 2)``.
  When several blocks fail, which one is reported first depends on the scheduler.
  ``errors="nan"`` makes failing items NaN.
* **Output.** There is no ``out=``: store the result with :func:`dask.array.store`,
  :func:`dask.array.to_zarr` or :func:`dask.array.to_npy_stack`.

Importing this module needs Dask (``pip install "fastmvn[dask]"``); ``import fastmvn``
does not.
"""

import inspect
import mmap
import warnings
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
from numpy.linalg import LinAlgError

try:
    import dask.array as da
    from dask.layers import ArraySliceDep
except ImportError as error:
    raise ImportError('fastmvn.dask needs Dask: install it with  pip install "fastmvn[dask]"') from error

from . import _api, _docs, _gradients, _table
from ._arguments import check_errors, check_shapes, result_dtype
from ._reports import item_of, relocated
from .distributions import functions, kron_grad

__all__ = ["RechunkWarning"]

# The exceptions by which the in-memory functions report a failing item.
_ITEM_ERRORS = (LinAlgError, ValueError, FloatingPointError)


class RechunkWarning(UserWarning):
    """An input was split along its matrix axes and has been rechunked to whole matrices.

    Rechunking moves data between blocks; chunk the input along its batch axes only
    (``chunks=(size, -1, -1)``) to avoid it.
    """


def _sliceable(value):
    """Whether ``value`` is an array that Dask can read block by block (NumPy, memory-mapped,
    Zarr, HDF5 …)."""
    return (hasattr(value, "shape") and hasattr(value, "__getitem__")
            and isinstance(getattr(value, "dtype", None), np.dtype))


class _Sliced:
    """A NumPy array handed to :func:`dask.array.from_array` to be sliced in place.

    ``from_array`` copies NumPy arrays, and a copy of a memory-mapped array reads the whole
    file into memory; through this wrapper each block is a view, read when its kernel runs.
    Pickled for a cluster, a memory-mapped ``.npy`` file opened read-only (``mode="r"``)
    travels as its name and offset and is mapped again by the worker; any other array
    travels whole. That includes a file mapped copy-on-write (``"c"``) or writeable
    (``"r+"``, ``"w+"``): its memory may differ from the file (changes never written, or
    not flushed), and the result must not depend on the scheduler.
    """

    def __init__(self, array):
        self.array = array
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def __getitem__(self, index):
        return self.array[index]

    def __reduce__(self):
        array = self.array
        if (isinstance(array, np.memmap) and isinstance(array.base, mmap.mmap) and array.filename
                and array.mode == "r"):
            order = "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"
            return _map_file, (array.filename, array.dtype, array.offset, array.shape, order)
        return _Sliced, (np.asarray(array),)


def _map_file(filename, dtype, offset, shape, order):
    return _Sliced(np.memmap(filename, dtype=dtype, mode="r", offset=offset, shape=shape, order=order))


def _number(value):
    """Whether ``value`` is a Python number (not a bool): a constant that decides no dtype."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Input:
    """One given argument: its name, core axes ("np", "nn", "n", …) and array (a Dask array or
    one that Dask can slice); or, ``constant``, a Python number (a scalar noise or damping), of
    shape ``()``, handed to every block as it is."""

    def __init__(self, position, name, axes, value):
        self.position, self.name, self.axes = position, name, axes
        self.constant = _number(value)
        self.value = value
        array = value if isinstance(value, da.Array) or _sliceable(value) else np.asarray(value)
        if len(array.shape) < len(axes):
            letters = ", ".join(axes)
            raise ValueError(f"{name} must have at least {len(axes)} dimensions (..., {letters}); "
                             f"got shape {array.shape}")
        if any(np.isnan(size) for size in array.shape):
            raise ValueError(f"{name} has unknown chunk sizes (shape {array.shape}); "
                             "call its compute_chunk_sizes() first")
        self.array = array

    @property
    def shape(self):
        return self.array.shape

    @property
    def batch_ndim(self):
        return len(self.array.shape) - len(self.axes)

    @property
    def batch_shape(self):
        return self.array.shape[: self.batch_ndim]

    @property
    def core_shape(self):
        return self.array.shape[self.batch_ndim:]


def _result_dtype(function, fixed, inputs, keywords):
    """The dtype of the result by fastmvn's rule (:func:`fastmvn._arguments.result_dtype`), once the
    in-memory function has checked one placeholder item (raising its TypeError, naming the
    argument, for complex or non-numeric input, or for a bad keyword); ``fixed`` the arguments
    with the constants in place."""
    args = list(fixed)
    for arg in inputs:
        if not arg.constant:
            args[arg.position] = np.zeros(arg.core_shape, arg.array.dtype)
    function(*args, errors="nan", **keywords)
    return result_dtype(*(arg.array for arg in inputs if not arg.constant))


def _batch_chunks(inputs, batch_shape, dtype):
    """Chunks of the broadcast batch: those of the Dask inputs where they split an axis,
    else Dask's automatic size for all inputs of one block together."""
    ndim = len(batch_shape)
    chunks = ["auto"] * ndim
    for arg in inputs:
        if isinstance(arg.array, da.Array):
            for axis, (size, axis_chunks) in enumerate(zip(arg.batch_shape, arg.array.chunks), ndim - arg.batch_ndim):
                if size > 1 and chunks[axis] == "auto":
                    chunks[axis] = axis_chunks
    item = sum(int(np.prod(arg.core_shape)) for arg in inputs)
    normal = da.core.normalize_chunks(tuple(chunks) + (-1,), batch_shape + (item,), dtype=dtype)
    return normal[:ndim]


def _as_dask(arg, batch_chunks):
    """The argument as a Dask array with whole matrices in each block."""
    array = arg.array
    core_axes = range(arg.batch_ndim, len(array.shape))
    if isinstance(array, da.Array):
        if any(len(array.chunks[axis]) > 1 for axis in core_axes):
            warnings.warn(f"{arg.name} is split along its matrix axes (chunks {array.chunks}); rechunking "
                          f"to whole matrices. Chunk it along its batch axes only to avoid this.",
                          RechunkWarning, stacklevel=4)
            array = array.rechunk({axis: -1 for axis in core_axes})
        return array
    own = batch_chunks[len(batch_chunks) - arg.batch_ndim:]
    chunks = tuple(1 if size == 1 else axis_chunks for size, axis_chunks in zip(arg.batch_shape, own))
    if isinstance(array, np.ndarray):
        array = _Sliced(array)
    return da.from_array(array, chunks=chunks + arg.core_shape, name=False,
                         meta=np.empty((0,) * len(array.shape), array.dtype))


def _call(function, args, errors, keywords):
    """``function(*args, errors=errors, **keywords)`` as an array (the kernels serialise their
    own launches where Numba's threading layer needs it)."""
    return np.asarray(function(*args, errors=errors, **keywords))


def _block(*blocks, function, fixed, positions, core_ndims, errors, keywords, packed):
    """One block: the in-memory ``function`` (with ``keywords``) on the blocks of the given
    arguments (into ``fixed``, the arguments with the constants in place); a failing item is
    reported at its global batch index (the block's slices give the offsets). A ``packed``
    result has the value of each item first along a last axis."""
    *arrays, location = blocks
    args = list(fixed)
    for position, array in zip(positions, arrays):
        args[position] = array
    if errors == "nan":
        return _call(function, args, "nan", keywords)
    try:
        return _call(function, args, "raise", keywords)
    except _ITEM_ERRORS as error:
        failed = _call(function, args, "nan", keywords)
        failed = failed[..., 0] if packed else failed
        if not np.isnan(failed).any():
            raise
        first = error
    local = tuple(int(i) for i in np.unravel_index(np.argmax(np.isnan(failed)), failed.shape))
    item = list(args)
    for position, core_ndim in zip(positions, core_ndims):
        item[position] = item_of(args[position], args[position].ndim - core_ndim, local)
    try:
        _call(function, item, "raise", keywords)
    except _ITEM_ERRORS as error:
        raise relocated(error, tuple(s.start + i for s, i in zip(location, local))) from None
    raise first


def _in_memory(name):
    """The in-memory function ``name`` of :mod:`fastmvn`, looked up at each call."""
    return getattr(_api, name, None) or getattr(functions, name)


def _routines(entry):
    """The in-memory ``(value, value_and_grad)`` of ``entry`` (a table entry or a Kronecker-sum
    function of ``kron_grad._SERVED``), called as ``kron_grad._Served`` describes, a table
    entry's with its keywords (``lower=``) too."""
    if isinstance(entry, kron_grad._Served):
        return entry.value, entry.value_and_grad
    return _in_memory(entry.name), partial(_gradients.value_and_grad, entry)


def _inputs(entry, values):
    """The given ``values`` (not None) of ``entry`` as :class:`_Input`: a noise or damping of a
    Kronecker-sum function given as a number (a Python number or an array of no dimensions)
    has no core axes."""
    scalars = entry.scalars if isinstance(entry, kron_grad._Served) else ()
    return [_Input(position, name, "" if name in scalars and np.ndim(value) == 0 else axes, value)
            for position, (name, axes, value) in enumerate(zip(entry.names, entry.axes, values)) if value is not None]


def _blocks(entry, function, inputs, errors, keywords, packed=0):
    """``function`` (an in-memory routine of ``entry``, called with ``keywords``) over Dask blocks
    of the given arguments ``inputs`` (the constants handed to every block); a result ``packed``
    with that many numbers per item along a last axis. Returns the lazy result and its dtype."""
    batch_shape = check_shapes(inputs)
    fixed = [None] * len(entry.names)
    for arg in inputs:
        if arg.constant:
            fixed[arg.position] = arg.value
    dtype = _result_dtype(function, fixed, inputs, keywords)
    ndim = len(batch_shape)
    blocked = [arg for arg in inputs if not arg.constant]
    batch_chunks = _batch_chunks(blocked, batch_shape, dtype)
    out_index = tuple(range(ndim))
    pairs = []
    for arg in blocked:
        core_index = tuple(range(ndim + 1 + 2 * arg.position, ndim + 1 + 2 * arg.position + len(arg.axes)))
        pairs += [_as_dask(arg, batch_chunks), out_index[ndim - arg.batch_ndim:] + core_index]
    chunkss, arrays = da.unify_chunks(*pairs)
    out_chunks = tuple(chunkss[axis] for axis in out_index)
    aligned = [x for pair in zip(arrays, pairs[1::2]) for x in pair]
    extra = {"new_axes": {ndim: packed}} if packed else {}
    result = da.blockwise(_block, out_index + ((ndim,) if packed else ()), *aligned, ArraySliceDep(out_chunks),
                          out_index, token=entry.gradient_name if packed else entry.name, dtype=dtype,
                          meta=np.empty((0,) * (ndim + bool(packed)), dtype), concatenate=True, align_arrays=False,
                          function=function, fixed=tuple(fixed), positions=tuple(arg.position for arg in blocked),
                          core_ndims=tuple(len(arg.axes) for arg in blocked), errors=errors, keywords=keywords,
                          packed=bool(packed), **extra)
    return result, dtype


def _lazy(entry, values, errors="raise", **keywords):
    """The function ``entry`` (of the table or ``kron_grad._SERVED``) over Dask blocks of
    ``values``: each block one call of the in-memory function (with ``keywords``); ``None``
    values stay omitted."""
    check_errors(errors)
    return _blocks(entry, _routines(entry)[0], _inputs(entry, values), errors, keywords)[0]


class _Packed:
    """The in-memory value and gradients of ``entry`` as one array: the value of each item, then
    its gradients with respect to the arguments at the positions ``wanted``, flattened."""

    def __init__(self, entry, wanted):
        self.entry, self.wanted, self.__name__ = entry, tuple(wanted), entry.gradient_name
        self.value_and_grad = _routines(entry)[1]

    def __call__(self, *args, errors, **keywords):
        wrt = [name for name, wants, arg in zip(self.entry.names, self.wanted, args) if wants and arg is not None]
        value, grads = self.value_and_grad(args, errors, reduce=False, wrt=wrt, **keywords)
        value = np.asarray(value)
        return np.concatenate([value[..., None]] + [g.reshape(value.shape + (-1,)) for g in grads if g is not None],
                              axis=-1)


def _summed(grad, shape, dtype):
    """The lazy ``grad`` (``(*batch, *core)``) summed, in float64, over the batch axes along which
    an argument of ``shape`` was broadcast, so that it has ``shape``."""
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, size in enumerate(shape) if size == 1 and grad.shape[lead + i] != 1)
    if not axes:
        return grad
    return grad.astype(np.float64).sum(axis=axes, keepdims=True).reshape(shape).astype(dtype)


def _lazy_value_and_grad(entry, values, errors="raise", wrt=None, **keywords):
    """The function ``entry`` (of the table or ``kron_grad._SERVED``) and its gradients over Dask
    blocks of ``values``: one pass of the in-memory value-and-gradient function per block, whose
    per-item gradients are then summed over the axes each argument was broadcast along (all of
    them for a constant)."""
    check_errors(errors)
    wanted = _gradients.computed(entry, [value is not None for value in values], wrt)
    inputs = _inputs(entry, values)
    sizes = {arg.position: int(np.prod(arg.core_shape)) for arg in inputs if wanted[arg.position]}
    packed, dtype = _blocks(entry, _Packed(entry, wanted), inputs, errors, keywords, 1 + sum(sizes.values()))
    batch_ndim = packed.ndim - 1
    grads, offset = [None] * len(values), 1
    for arg in inputs:
        if wanted[arg.position]:
            size = sizes[arg.position]
            grad = packed[..., offset:offset + size].reshape(packed.shape[:batch_ndim] + arg.core_shape)
            grads[arg.position] = _summed(grad, arg.array.shape, dtype)
            offset += size
    return packed[..., 0], tuple(grads)


# The public functions: one per entry of the table, each taking the in-memory function's
# arguments (less ``out``).

_ARRAY = "dask.array.Array or array_like"
_ERRORS = ('errors : {"raise", "nan"}', '``"raise"`` (default) raises, at compute time, on a failing item; '
           '``"nan"`` makes each failing item NaN.')
_RAISES = (("numpy.linalg.LinAlgError", "At compute time: a covariance is not positive definite, or a factor's "
            "diagonal or a variance not positive; names the argument and the global batch index."),
           ("ValueError", "At compute time: NaN or infinity in an input (names the argument and the global batch "
            "index). When called: shapes that do not fit or batch shapes that do not broadcast."),
           ("TypeError", "When called: complex or non-numeric input."))
_EXAMPLES = {
    "kl_value_and_grad": """
>>> import dask, numpy as np, dask.array as da, fastmvn as fm, fastmvn.dask as fmd
>>> rng = np.random.default_rng(0)
>>> mean1 = da.from_array(rng.standard_normal((1000, 4, 3)), chunks=(250, 4, 3))
>>> prior_rowcov = 2 * np.eye(4)                             # shared by every item
>>> lazy = fmd.kl_value_and_grad(mean1, np.eye(4), np.eye(3), None, prior_rowcov, None)
>>> value, grads = dask.compute(*lazy)                       # one pass over the blocks
>>> grads[4].shape                                          # summed over the 1000 items
(4, 4)
>>> expected = fm.kl_value_and_grad(mean1.compute(), np.eye(4), np.eye(3), None, prior_rowcov, None)[1][4]
>>> bool(np.allclose(grads[4], expected))
True
""",
    "kl": """
>>> import numpy as np, dask.array as da, fastmvn as fm, fastmvn.dask as fmd
>>> rng = np.random.default_rng(0)
>>> mean1 = da.from_array(rng.standard_normal((1000, 4, 3)), chunks=(250, 4, 3))
>>> rowcov1 = np.eye(4) * rng.uniform(0.5, 2.0, (1000, 1, 1))
>>> prior = np.zeros((4, 3)), 2 * np.eye(4), np.eye(3)    # shared: never copied per item
>>> result = fmd.kl(mean1, rowcov1, np.eye(3), *prior)
>>> result
dask.array<kl, shape=(1000,), dtype=float64, chunksize=(250,), chunktype=numpy.ndarray>
>>> np.allclose(result.compute(), fm.kl(mean1.compute(), rowcov1, np.eye(3), *prior))
True
>>> rowcov1[700] = -np.eye(4)
>>> fmd.kl(mean1, rowcov1, np.eye(3), *prior).compute()
Traceback (most recent call last):
    ...
numpy.linalg.LinAlgError: rowcov1 is not positive definite (Cholesky failed) at batch index 700
>>> int(np.isnan(fmd.kl(mean1, rowcov1, np.eye(3), *prior, errors="nan").compute()).sum())
1
""",
    "kl_chol": """
>>> import numpy as np, dask.array as da, fastmvn as fm, fastmvn.dask as fmd
>>> rowchol = da.from_array(np.tril(np.ones((6, 3, 3))), chunks=(2, 3, 3))
>>> result = fmd.kl_chol(np.ones((3, 2)), rowchol, np.eye(2))
>>> result.shape, result.numblocks
((6,), (3,))
>>> np.allclose(result.compute(), fm.kl_chol(np.ones((3, 2)), np.tril(np.ones((6, 3, 3))), np.eye(2)))
True
""",
    "kl_diag": """
>>> import numpy as np, dask.array as da, fastmvn.dask as fmd
>>> rowvar = da.ones((2, 3, 4), chunks=(1, 3, 4)) * 2.0      # batch (2, 3) of 4 variances
>>> fmd.kl_diag(np.zeros((4, 1)), rowvar, [1.0]).compute().round(4)
array([[0.6137, 0.6137, 0.6137],
       [0.6137, 0.6137, 0.6137]])
""",
    "logdet": """
>>> import numpy as np, dask.array as da, fastmvn.dask as fmd
>>> a = da.from_array(np.eye(2) * np.arange(1.0, 5.0)[:, None, None], chunks=(2, 2, 2))
>>> np.allclose(fmd.logdet(a).compute(), 2 * np.log(np.arange(1.0, 5.0)))
True
""",
    "trace_solve": """
>>> import numpy as np, dask.array as da, fastmvn.dask as fmd
>>> fmd.trace_solve(da.from_array(2 * np.ones((4, 1, 1)), chunks=(2, 1, 1)), np.ones((1, 1))).compute()
array([0.5, 0.5, 0.5, 0.5])
""",
    "mahalanobis": """
>>> import numpy as np, dask.array as da, fastmvn.dask as fmd
>>> fmd.mahalanobis(da.ones((5, 2, 3), chunks=(2, 2, 3)), None, 2 * np.eye(2), np.eye(3)).compute()
array([3., 3., 3., 3., 3.])
""",
    "mahalanobis_chol": """
>>> import numpy as np, dask.array as da, fastmvn.dask as fmd
>>> fmd.mahalanobis_chol(da.ones((5, 2, 3), chunks=(2, 2, 3)), None, 2 * np.eye(2), np.eye(3)).compute()
array([1.5, 1.5, 1.5, 1.5, 1.5])
""",
    "logpdf": """
>>> import numpy as np, dask.array as da, fastmvn as fm, fastmvn.dask as fmd
>>> x = da.random.default_rng(0).standard_normal((10_000, 2, 3), chunks=(2_500, 2, 3))
>>> u, v = 2 * np.eye(2), np.eye(3) + 0.5
>>> np.allclose(fmd.logpdf(x, None, u, v).compute(), fm.logpdf(x.compute(), None, u, v))
True
""",
    "logpdf_chol": """
>>> import numpy as np, dask.array as da, fastmvn as fm, fastmvn.dask as fmd
>>> x = da.ones((6, 2, 3), chunks=(4, 2, 3))
>>> L = np.array([[1.0, 0.0], [0.5, 2.0]])
>>> np.allclose(fmd.logpdf_chol(x, None, L, np.eye(3)).compute(),
...             fm.logpdf(np.ones((6, 2, 3)), None, L @ L.T, np.eye(3)))
True
""",
    "logpdf_diag": """
>>> import numpy as np, dask.array as da, fastmvn as fm, fastmvn.dask as fmd
>>> x = da.random.default_rng(0).standard_normal((1_000, 4, 3), chunks=(250, 4, 3))
>>> a, b = np.arange(1.0, 5.0), np.full(3, 0.5)
>>> np.allclose(fmd.logpdf_diag(x, None, a, b).compute(), fm.logpdf(x.compute(), None, np.diag(a), np.diag(b)))
True
""",
    "entropy": """
>>> import numpy as np, dask.array as da, fastmvn as fm, fastmvn.dask as fmd
>>> rowcov = da.from_array(np.eye(2) * np.arange(1.0, 7.0)[:, None, None], chunks=(3, 2, 2))
>>> np.allclose(fmd.entropy(rowcov, np.eye(3)).compute(), fm.entropy(rowcov.compute(), np.eye(3)))
True
""",
    "entropy_chol": """
>>> import numpy as np, dask.array as da, fastmvn as fm, fastmvn.dask as fmd
>>> rowchol = da.from_array(np.eye(2) * np.arange(1.0, 7.0)[:, None, None], chunks=(3, 2, 2))
>>> np.allclose(fmd.entropy_chol(rowchol, np.eye(3)).compute(),
...             fm.entropy(rowchol.compute() ** 2, np.eye(3)))
True
""",
}


_RECHUNK = "An input split along its matrix axes is rechunked, with a :class:`RechunkWarning`."
_WRT = ("wrt : str or sequence of str, optional", "The names of the arguments whose gradients to compute; by default "
        "every argument not passed as None. The others are None.")


def _value_doc(name, block, inputs="input", note=""):
    """The ``where`` and ``returns`` pairs of :func:`fastmvn._docs.layout` for the lazy value
    ``name``, each block ``block`` (a reference to the in-memory function), with ``note`` before
    the sentence on rechunking."""
    where = ("lazily over Dask blocks.", f"Each block is {block} on the matching blocks of the inputs; see there for "
             f"the formula and conventions, and the module's notes for chunks, broadcasting and errors. {note}"
             f"{_RECHUNK}")
    returns = (f"{name} : (...) dask.array.Array", "The results over the broadcast batch shape, chunked as the "
               f"inputs' batch axes: float32 when every {inputs} is float32, float64 otherwise.")
    return where, returns


def _gradient_doc(name, one_pass, broadcast, shapes="", note=""):
    """The ``where`` and ``returns`` pairs of :func:`fastmvn._docs.layout` for the lazy value
    and gradients ``name``: a block is ``one_pass`` of the in-memory function, an argument
    ``broadcast`` as the text says has its gradient summed, a gradient's shape is ``shapes``
    more, and ``note`` ends the paragraph."""
    where = ("with its gradient, lazily over Dask blocks.",
             f"Each block is {one_pass} of :func:`fastmvn.{name}` on the matching blocks of the inputs, giving the "
             f"value and the gradients of every item; the gradient of an argument broadcast over batch axes "
             f"({broadcast}) is then summed over them, across blocks, in float64. The value and the gradients share "
             f"that pass: compute them together, ``dask.compute(value, *grads)``.{note}")
    returns = [("value : (...) dask.array.Array",
                f"The lazy results over the broadcast batch shape, as :func:`fastmvn.{name}` returns them."),
               ("grads : tuple of dask.array.Array or None",
                f"One lazy gradient per argument, of that argument's shape{shapes}, or None for an argument passed as "
                "None or left out of ``wrt``.")]
    return where, returns


def _define(entry):
    lower = [_docs.KEYWORDS["lower"]] if entry.lower else []
    where, returns = _value_doc(entry.name, f":func:`fastmvn.{entry.name}`")
    doc = _docs.backend(entry.name, where, _ARRAY, [_ERRORS] + lower, returns, _RAISES, _EXAMPLES.get(entry.name, ""))
    yield _table.define(entry, _lazy, {"errors": "raise"} | ({"lower": True} if entry.lower else {}), doc, __name__)
    if entry.gradient:
        name = entry.gradient_name
        where, returns = _gradient_doc(name, "one fused pass", "a shared prior")
        doc = _docs.backend(entry.name, where, _ARRAY, [_ERRORS, _WRT] + lower, returns, _RAISES,
                            _EXAMPLES.get(name, ""))
        defaults = {"errors": "raise", "wrt": None} | ({"lower": True} if entry.lower else {})
        yield _table.define(entry, _lazy_value_and_grad, defaults, doc, __name__, name)

if TYPE_CHECKING:
    from typing import Any

    def __getattr__(name: str) -> Any:
        """The functions that ``_table.publish`` generates below, unseen by a type checker: each is Any to it."""
        raise AttributeError(name)


_table.publish(globals(), "dask", _define)


# The Kronecker-sum functions (``kron_grad._SERVED``): outside the table, each with the arguments
# of its in-memory value-and-gradient function (less ``out``) and the parameter entries of
# ``_docs.ENTRIES`` that the in-memory functions' docstrings share.

# name: (summary, the in-memory function a block is, the entries of the parameters)
_KRON = {
    "logpdf_kron_sum": ("Log-density of ``vec X ~ N(vec M, V⊗U + B⊗A)`` at ``x``", ":func:`fastmvn.logpdf_kron_sum`",
                        ["kron_sum"]),
    "kl_kron_sum": ("KL divergence between Kronecker-sum normals ``N(vec M₁, V₁⊗U₁ + B₁⊗A₁) ‖ N(vec M₂, "
                    "V₂⊗U₂ + B₂⊗A₂)``", ":func:`fastmvn.kl_kron_sum`", ["kron_sum_pair"]),
    "logpdf_kron_prec": ("Log-density of the precision form ``vec X ~ N(vec M, (V⊗U + δI)⁻¹)`` at ``x``",
                         "the log-density of :func:`fastmvn.logpdf_kron_prec_value_and_grad` (that of "
                         ":meth:`fastmvn.KroneckerSumNormal.from_precision`)", ["x", "kron_prec"]),
    "kl_eig": ("KL divergence between Gaussians given by the eigendecompositions of Kronecker factors",
               ":func:`fastmvn.kl_eig`", ["eig_pair"]),
}
_KRON_ENTRIES = {"x": ("x : (..., n, p) array_like", "Points ``X``."), "lazy_errors": _ERRORS, "lazy_wrt": _WRT}
_KRON_RAISES = (("numpy.linalg.LinAlgError", "At compute time: a noise covariance is not positive definite, a signal "
                 "covariance or a precision's factor not positive semi-definite, or an eigenvalue negative; names the "
                 "argument and the global batch index."),
                ("ValueError", "At compute time: NaN or infinity, a noise or damping not positive, eigenvectors not "
                 "orthonormal (names the argument and the global batch index). When called: shapes that do not fit, "
                 "batch shapes that do not broadcast, both a noise and a damping for one side, a bad ``wrt``."),
                ("TypeError", "When called: complex or non-numeric input."))
_KRON_EXAMPLES = {
    "logpdf_kron_sum": """
>>> import numpy as np, dask.array as da, fastmvn as fm, fastmvn.dask as fmd
>>> rng = np.random.default_rng(0)
>>> x = da.from_array(rng.standard_normal((1000, 4, 3)), chunks=(250, 4, 3))
>>> g = rng.standard_normal((4, 2)); u = g @ g.T               # a rank-2 signal shared by every item
>>> result = fmd.logpdf_kron_sum(x, None, u, np.eye(3), 0.1)   # σ² = 0.1, a constant
>>> result
dask.array<logpdf_kron_sum, shape=(1000,), dtype=float64, chunksize=(250,), chunktype=numpy.ndarray>
>>> np.allclose(result.compute(), fm.logpdf_kron_sum(x.compute(), None, u, np.eye(3), 0.1))
True
""",
    "logpdf_kron_sum_value_and_grad": """
>>> import dask, numpy as np, dask.array as da, fastmvn as fm, fastmvn.dask as fmd
>>> x, u = da.ones((6, 2, 3), chunks=(4, 2, 3)), np.diag([1.0, 3.0])
>>> value, grads = dask.compute(*fmd.logpdf_kron_sum_value_and_grad(x, None, u, np.eye(3), 1.0))
>>> grads[0].shape, grads[1], float(grads[4])     # d/dσ² summed over the 6 items
((6, 2, 3), None, -3.9375)
""",
    "kl_kron_sum": """
>>> import numpy as np, dask.array as da, fastmvn as fm, fastmvn.dask as fmd
>>> rng = np.random.default_rng(0)
>>> g = rng.standard_normal((600, 4, 2)); u = g @ np.swapaxes(g, -1, -2)    # rank 2
>>> prior = (None, np.eye(4), np.eye(3), 1.0, None)                       # shared: never copied per item
>>> kl = fmd.kl_kron_sum(None, da.from_array(u, chunks=(200, 4, 4)), np.eye(3), 0.1, None, *prior)
>>> np.allclose(kl.compute(), fm.kl_kron_sum(None, u, np.eye(3), 0.1, None, *prior))
True
>>> u[450] = -np.eye(4)
>>> fmd.kl_kron_sum(None, da.from_array(u, chunks=(200, 4, 4)), np.eye(3), 0.1, None, *prior).compute()
Traceback (most recent call last):
    ...
numpy.linalg.LinAlgError: rowcov1 is not positive semi-definite at batch index 450
""",
    "logpdf_kron_prec": """
>>> import numpy as np, dask.array as da, fastmvn as fm, fastmvn.dask as fmd
>>> x, u, v = da.ones((6, 2, 3), chunks=(4, 2, 3)), np.diag([1.0, 3.0]), np.eye(3)
>>> damping = da.from_array(np.linspace(0.5, 2.0, 6), chunks=4)            # one δ per item
>>> expected = fm.KroneckerSumNormal.from_precision(None, u, v, damping.compute()).logpdf(np.ones((6, 2, 3)))
>>> np.allclose(fmd.logpdf_kron_prec(x, None, u, v, damping).compute(), expected)
True
""",
    "logpdf_kron_prec_value_and_grad": """
>>> import dask, numpy as np, dask.array as da, fastmvn as fm, fastmvn.dask as fmd
>>> x, u, v = da.ones((6, 2, 3), chunks=(4, 2, 3)), np.diag([1.0, 3.0]), np.eye(3)
>>> lazy = fmd.logpdf_kron_prec_value_and_grad(x, None, u, v, 1.0, wrt=("rowprec", "damping"))
>>> value, grads = dask.compute(*lazy)
>>> grads[2].shape, float(grads[4])                # summed over the 6 items
((2, 2), -11.25)
""",
    "kl_eig": """
>>> import numpy as np, dask.array as da, fastmvn as fm, fastmvn.dask as fmd
>>> rng = np.random.default_rng(0)
>>> g = rng.standard_normal((100, 3, 3)); lu, qu = np.linalg.eigh(g @ np.swapaxes(g, -1, -2))
>>> lv, qv = np.linalg.eigh(np.diag([1.0, 2.0]))
>>> prior = (None, np.eye(3), np.ones(3), np.eye(2), np.ones(2))           # MN(0, I, I)
>>> kl = fmd.kl_eig(None, da.from_array(qu, chunks=(25, 3, 3)), da.from_array(lu, chunks=(25, 3)), qv, lv,
...                 *prior, damping1=1e-2)
>>> kl.numblocks
(4,)
>>> np.allclose(kl.compute(), fm.kl_eig(None, qu, lu, qv, lv, *prior, damping1=1e-2))
True
""",
}


def _define_kron(served):
    """The lazy value and value-with-gradients of ``served`` (of ``kron_grad._SERVED``), with the
    signature of its in-memory value-and-gradient function less ``out`` (and ``wrt``)."""
    summary, block, entries = _KRON[served.name]
    in_memory = inspect.signature(getattr(kron_grad, served.gradient_name))
    scalars = ("A noise or damping given as a Python number is a constant handed to every block (it decides no "
               "dtype); one per item is chunked with the batch. ")
    value = (served.name, {"errors": "raise"}, _lazy, _value_doc(served.name, block, "input array", scalars))
    name = served.gradient_name
    gradient = (name, {"errors": "raise", "wrt": None}, _lazy_value_and_grad,
                _gradient_doc(name, "one pass", "a shared prior, a constant noise or damping",
                              " (``()`` for a Python number)", f" {scalars}{_RECHUNK}"))
    for name, keywords, implementation, (where, returns) in (value, gradient):
        signature = inspect.Signature([param.replace(annotation=inspect.Parameter.empty)
                                       for param in in_memory.parameters.values()
                                       if param.name in served.names or param.name in keywords])
        section = "\n".join(["Parameters", "----------"]
                             + [f"%({key})s" for key in entries + [f"lazy_{keyword}" for keyword in keywords]])
        doc = _docs.layout(summary, where, section, returns, _KRON_RAISES, _KRON_EXAMPLES.get(name, ""))
        public = _table.define(served, implementation, keywords, doc, __name__, name, signature)
        yield _docs.shared(public, _KRON_ENTRIES, array=_ARRAY)

_table.publish(globals(), "dask", _define_kron, kron_grad._SERVED.values())
