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

import mmap
import warnings

import numpy as np
from numpy.linalg import LinAlgError

try:
    import dask.array as da
    from dask.layers import ArraySliceDep
except ImportError as error:
    raise ImportError('fastmvn.dask needs Dask: install it with  pip install "fastmvn[dask]"') from error

from . import _api
from .distributions import functions

__all__ = ["kl", "kl_chol", "kl_diag", "logpdf", "entropy", "RechunkWarning"]

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


class _Input:
    """One given argument: its name, core axes ("np", "nn", "n", …) and array (a Dask array or
    one that Dask can slice)."""

    def __init__(self, position, name, axes, value):
        self.position, self.name, self.axes = position, name, axes
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
    def batch_ndim(self):
        return len(self.array.shape) - len(self.axes)

    @property
    def batch_shape(self):
        return self.array.shape[: self.batch_ndim]

    @property
    def core_shape(self):
        return self.array.shape[self.batch_ndim:]


def _check_shapes(inputs):
    """Check core sizes against one another; return the broadcast batch shape."""
    sizes, origin = {}, {}
    for arg in inputs:
        for letter, size in zip(arg.axes, arg.core_shape):
            if size == 0:
                raise ValueError(f"{arg.name} has shape {arg.array.shape}: matrices must be at least 1×1")
            if sizes.setdefault(letter, size) != size:
                expected = ", ".join(str(sizes.get(a, a)) for a in arg.axes)
                known = ", ".join(f"{a}={sizes[a]} from {origin[a]}" for a in sizes)
                raise ValueError(f"{arg.name} has shape {arg.array.shape}; expected (..., {expected}) ({known})")
            origin.setdefault(letter, arg.name)
    try:
        return np.broadcast_shapes(*(arg.batch_shape for arg in inputs))
    except ValueError:
        listed = ", ".join(f"{arg.name} {arg.batch_shape}" for arg in inputs)
        raise ValueError(f"batch shapes do not broadcast: {listed}") from None


def _result_dtype(function, count, inputs, keywords):
    """The dtype of the result by fastmvn's rule (:func:`fastmvn._api.result_dtype`), once the
    in-memory function has checked one placeholder item (raising its TypeError, naming the
    argument, for complex or non-numeric input, or for a bad keyword)."""
    args = [None] * count
    for arg in inputs:
        args[arg.position] = np.zeros(arg.core_shape, arg.array.dtype)
    function(*args, errors="nan", **keywords)
    return _api.result_dtype(*(arg.array for arg in inputs))


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


def _at(index):
    """The in-memory functions' words for a batch index."""
    return f" at batch index {index[0] if len(index) == 1 else index}" if index else ""


def _item(array, core_ndim, index):
    """The item of a block at batch ``index`` of the block's broadcast batch shape."""
    batch_shape = array.shape[: array.ndim - core_ndim]
    own = index[len(index) - len(batch_shape):]
    return array[tuple(0 if size == 1 else i for size, i in zip(batch_shape, own))]


def _block(*blocks, function, count, positions, core_ndims, errors, keywords):
    """One block: the in-memory ``function`` (with ``keywords``) on the blocks of the given
    arguments; a failing item is reported at its global batch index (the block's slices give
    the offsets)."""
    *arrays, location = blocks
    args = [None] * count
    for position, array in zip(positions, arrays):
        args[position] = array
    if errors == "nan":
        return _call(function, args, "nan", keywords)
    try:
        return _call(function, args, "raise", keywords)
    except _ITEM_ERRORS as error:
        failed = _call(function, args, "nan", keywords)
        if not np.isnan(failed).any():
            raise
        first = error
    local = tuple(int(i) for i in np.unravel_index(np.argmax(np.isnan(failed)), failed.shape))
    where = _at(tuple(s.start + i for s, i in zip(location, local)))
    item = list(args)
    for position, core_ndim in zip(positions, core_ndims):
        item[position] = _item(args[position], core_ndim, local)
    try:
        _call(function, item, "raise", keywords)
    except _ITEM_ERRORS as error:
        raise type(error)(f"{error}{where}") from None
    raise first


def _lazy(function, specs, values, errors, **keywords):
    """``function`` (an in-memory batched function, called with ``keywords``) over Dask blocks
    of ``values``, named and shaped by ``specs``: a list of ``(name, core axes)``; ``None``
    values stay omitted."""
    if errors not in ("raise", "nan"):
        raise ValueError(f"errors must be 'raise' or 'nan', not {errors!r}")
    inputs = [_Input(position, name, axes, value)
              for position, ((name, axes), value) in enumerate(zip(specs, values)) if value is not None]
    batch_shape = _check_shapes(inputs)
    dtype = _result_dtype(function, len(specs), inputs, keywords)
    ndim = len(batch_shape)
    batch_chunks = _batch_chunks(inputs, batch_shape, dtype)
    out_index = tuple(range(ndim))
    pairs = []
    for arg in inputs:
        core_index = tuple(range(ndim + 2 * arg.position, ndim + 2 * arg.position + len(arg.axes)))
        pairs += [_as_dask(arg, batch_chunks), out_index[ndim - arg.batch_ndim:] + core_index]
    chunkss, arrays = da.unify_chunks(*pairs)
    out_chunks = tuple(chunkss[axis] for axis in out_index)
    aligned = [x for pair in zip(arrays, pairs[1::2]) for x in pair]
    return da.blockwise(_block, out_index, *aligned, ArraySliceDep(out_chunks), out_index,
                        token=function.__name__, dtype=dtype, meta=np.empty((0,) * ndim, dtype),
                        concatenate=True, align_arrays=False, function=function, count=len(specs),
                        positions=tuple(arg.position for arg in inputs),
                        core_ndims=tuple(len(arg.axes) for arg in inputs), errors=errors, keywords=keywords)


def _kl_specs(row, col, row_axes, col_axes):
    return [("mean1", "np"), (f"{row}1", row_axes), (f"{col}1", col_axes),
            ("mean2", "np"), (f"{row}2", row_axes), (f"{col}2", col_axes)]


def kl(mean1, rowcov1, colcov1, mean2=None, rowcov2=None, colcov2=None, *, errors="raise"):
    """KL divergence ``KL(MN(mean1, rowcov1, colcov1) ‖ MN(mean2, rowcov2, colcov2))``, lazily
    over Dask blocks.

    Each block is :func:`fastmvn.kl` on the matching blocks of the inputs; see there for the
    formula and conventions, and the module's notes for chunks, broadcasting and errors.

    Parameters
    ----------
    mean1 : (..., n, p) dask.array.Array or array_like
        Mean of the first distribution.
    rowcov1 : (..., n, n) dask.array.Array or array_like
        Row covariance ``U1`` (symmetric positive definite; lower triangle read).
    colcov1 : (..., p, p) dask.array.Array or array_like
        Column covariance ``V1``.
    mean2 : (..., n, p) dask.array.Array or array_like, optional
        Mean of the second distribution; ``None`` means zero.
    rowcov2 : (..., n, n) dask.array.Array or array_like, optional
        Row covariance ``U2``; ``None`` means the identity.
    colcov2 : (..., p, p) dask.array.Array or array_like, optional
        Column covariance ``V2``; ``None`` means the identity. With all three second
        arguments omitted, the KL to ``MN(0, I, I)`` runs the faster path of :func:`fastmvn.kl`.
    errors : {"raise", "nan"}
        ``"raise"`` (default) raises, at compute time, on a failing item; ``"nan"`` makes each
        failing item NaN.

    Returns
    -------
    kl : (...) dask.array.Array
        The divergences over the broadcast batch shape, chunked as the inputs' batch axes:
        float32 when every input is float32, float64 otherwise.

    Raises
    ------
    numpy.linalg.LinAlgError
        At compute time: a covariance is not positive definite; names the argument and the
        global batch index.
    ValueError
        At compute time: NaN or infinity in an input (names the argument and the global batch
        index). When called: shapes that do not fit or batch shapes that do not broadcast.
    TypeError
        When called: complex or non-numeric input.

    Warns
    -----
    RechunkWarning
        An input is split along its matrix axes and is rechunked.

    See Also
    --------
    fastmvn.kl : the in-memory function each block runs.

    Examples
    --------
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
    """
    return _lazy(_api.kl, _kl_specs("rowcov", "colcov", "nn", "pp"),
                 (mean1, rowcov1, colcov1, mean2, rowcov2, colcov2), errors)


def kl_chol(mean1, rowchol1, colchol1, mean2=None, rowchol2=None, colchol2=None, *, errors="raise", lower=True):
    """KL divergence between matrix normals given by Cholesky factors, lazily over Dask blocks.

    Each block is :func:`fastmvn.kl_chol` on the matching blocks of the inputs.

    Parameters
    ----------
    mean1 : (..., n, p) dask.array.Array or array_like
        Mean of the first distribution.
    rowchol1 : (..., n, n) dask.array.Array or array_like
        Cholesky factor of the row covariance ``U1`` (positive diagonal).
    colchol1 : (..., p, p) dask.array.Array or array_like
        Cholesky factor of the column covariance ``V1``.
    mean2 : (..., n, p) dask.array.Array or array_like, optional
        Mean of the second distribution; ``None`` means zero.
    rowchol2 : (..., n, n) dask.array.Array or array_like, optional
        Cholesky factor of ``U2``; ``None`` means the identity.
    colchol2 : (..., p, p) dask.array.Array or array_like, optional
        Cholesky factor of ``V2``; ``None`` means the identity.
    errors : {"raise", "nan"}
        As in :func:`kl`.
    lower : bool, optional
        Lower factors ``U = L Lᵀ`` (default) or, with ``False``, upper ones ``U = Rᵀ R``
        (upper triangles read), as in :func:`fastmvn.kl_chol`.

    Returns
    -------
    kl : (...) dask.array.Array
        The divergences over the broadcast batch shape.

    Raises
    ------
    numpy.linalg.LinAlgError
        At compute time: a factor's diagonal is not positive; names the argument and the
        global batch index.
    ValueError, TypeError
        As in :func:`kl`.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastmvn as fm, fastmvn.dask as fmd
    >>> rowchol = da.from_array(np.tril(np.ones((6, 3, 3))), chunks=(2, 3, 3))
    >>> result = fmd.kl_chol(np.ones((3, 2)), rowchol, np.eye(2))
    >>> result.shape, result.numblocks
    ((6,), (3,))
    >>> np.allclose(result.compute(), fm.kl_chol(np.ones((3, 2)), np.tril(np.ones((6, 3, 3))), np.eye(2)))
    True
    """
    return _lazy(_api.kl_chol, _kl_specs("rowchol", "colchol", "nn", "pp"),
                 (mean1, rowchol1, colchol1, mean2, rowchol2, colchol2), errors, lower=lower)


def kl_diag(mean1, rowvar1, colvar1, mean2=None, rowvar2=None, colvar2=None, *, errors="raise"):
    """KL divergence between matrix normals with diagonal covariances, lazily over Dask blocks.

    Each block is :func:`fastmvn.kl_diag` on the matching blocks of the inputs.

    Parameters
    ----------
    mean1 : (..., n, p) dask.array.Array or array_like
        Mean of the first distribution.
    rowvar1 : (..., n) dask.array.Array or array_like
        Row variances (positive).
    colvar1 : (..., p) dask.array.Array or array_like
        Column variances (positive).
    mean2 : (..., n, p) dask.array.Array or array_like, optional
        Mean of the second distribution; ``None`` means zero.
    rowvar2 : (..., n) dask.array.Array or array_like, optional
        Row variances of the second distribution; ``None`` means ones.
    colvar2 : (..., p) dask.array.Array or array_like, optional
        Column variances of the second distribution; ``None`` means ones.
    errors : {"raise", "nan"}
        As in :func:`kl`.

    Returns
    -------
    kl : (...) dask.array.Array
        The divergences over the broadcast batch shape.

    Raises
    ------
    numpy.linalg.LinAlgError
        At compute time: a variance is not positive; names the argument and the global
        batch index.
    ValueError, TypeError
        As in :func:`kl`.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastmvn.dask as fmd
    >>> rowvar = da.ones((2, 3, 4), chunks=(1, 3, 4)) * 2.0      # batch (2, 3) of 4 variances
    >>> fmd.kl_diag(np.zeros((4, 1)), rowvar, [1.0]).compute().round(4)
    array([[0.6137, 0.6137, 0.6137],
           [0.6137, 0.6137, 0.6137]])
    """
    return _lazy(_api.kl_diag, _kl_specs("rowvar", "colvar", "n", "p"),
                 (mean1, rowvar1, colvar1, mean2, rowvar2, colvar2), errors)


def logpdf(x, mean, rowcov, colcov, *, errors="raise"):
    """Log-density of the matrix normal ``MN(mean, rowcov, colcov)`` at ``x``, lazily over Dask blocks.

    Each block is :func:`fastmvn.logpdf` on the matching blocks of the inputs.

    Parameters
    ----------
    x : (..., n, p) dask.array.Array or array_like
        Points.
    mean : (..., n, p) dask.array.Array or array_like or None
        Means ``M``; ``None`` means zero.
    rowcov : (..., n, n) dask.array.Array or array_like
        Row covariances ``U`` (symmetric positive definite; lower triangle read).
    colcov : (..., p, p) dask.array.Array or array_like
        Column covariances ``V``.
    errors : {"raise", "nan"}
        As in :func:`kl`.

    Returns
    -------
    logpdf : (...) dask.array.Array
        The log-densities over the broadcast batch shape.

    Raises
    ------
    numpy.linalg.LinAlgError, ValueError, TypeError
        As in :func:`kl`.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastmvn as fm, fastmvn.dask as fmd
    >>> x = da.random.default_rng(0).standard_normal((10_000, 2, 3), chunks=(2_500, 2, 3))
    >>> u, v = 2 * np.eye(2), np.eye(3) + 0.5
    >>> np.allclose(fmd.logpdf(x, None, u, v).compute(), fm.logpdf(x.compute(), None, u, v))
    True
    """
    return _lazy(_api.logpdf, [("x", "np"), ("mean", "np"), ("rowcov", "nn"), ("colcov", "pp")],
                 (x, mean, rowcov, colcov), errors)


def entropy(rowcov, colcov, *, errors="raise"):
    """Differential entropy of the matrix normal ``MN(M, rowcov, colcov)``, lazily over Dask blocks.

    Each block is :func:`fastmvn.entropy` on the matching blocks of the inputs.

    Parameters
    ----------
    rowcov : (..., n, n) dask.array.Array or array_like
        Row covariances ``U`` (symmetric positive definite; lower triangle read).
    colcov : (..., p, p) dask.array.Array or array_like
        Column covariances ``V``.
    errors : {"raise", "nan"}
        As in :func:`kl`.

    Returns
    -------
    entropy : (...) dask.array.Array
        The entropies (in nats) over the broadcast batch shape of ``rowcov`` and ``colcov``.

    Raises
    ------
    numpy.linalg.LinAlgError, ValueError, TypeError
        As in :func:`kl`.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastmvn as fm, fastmvn.dask as fmd
    >>> rowcov = da.from_array(np.eye(2) * np.arange(1.0, 7.0)[:, None, None], chunks=(3, 2, 2))
    >>> np.allclose(fmd.entropy(rowcov, np.eye(3)).compute(), fm.entropy(rowcov.compute(), np.eye(3)))
    True
    """
    return _lazy(functions.entropy, [("rowcov", "nn"), ("colcov", "pp")], (rowcov, colcov), errors)


def logpdf_chol(x, mean, rowchol, colchol, *, errors="raise", lower=True):
    """:func:`logpdf` from Cholesky factors ``rowchol`` (``(..., n, n)``) and ``colchol``
    (``(..., p, p)``), lazily over Dask blocks of :func:`fastmvn.logpdf_chol`.

    Parameters
    ----------
    x, mean : (..., n, p) dask.array.Array or array_like
        Points and means (``mean`` may be ``None``: zero).
    rowchol, colchol : (..., n, n), (..., p, p) dask.array.Array or array_like
        Cholesky factors of ``U`` and ``V`` (positive diagonals; lower triangles read).
    errors : {"raise", "nan"}
        As in :func:`kl`.
    lower : bool, optional
        Lower factors ``U = L Lᵀ`` (default) or, with ``False``, upper ones ``U = Rᵀ R``
        (upper triangles read), as in :func:`fastmvn.kl_chol`.

    Returns
    -------
    logpdf : (...) dask.array.Array
        The log-densities over the broadcast batch shape.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastmvn as fm, fastmvn.dask as fmd
    >>> x = da.ones((6, 2, 3), chunks=(4, 2, 3))
    >>> L = np.array([[1.0, 0.0], [0.5, 2.0]])
    >>> np.allclose(fmd.logpdf_chol(x, None, L, np.eye(3)).compute(),
    ...             fm.logpdf(np.ones((6, 2, 3)), None, L @ L.T, np.eye(3)))
    True
    """
    return _lazy(_api.logpdf_chol, [("x", "np"), ("mean", "np"), ("rowchol", "nn"), ("colchol", "pp")],
                 (x, mean, rowchol, colchol), errors, lower=lower)


def mahalanobis(x, mean, rowcov, colcov, *, errors="raise"):
    """``tr(V⁻¹ (X − M)ᵀ U⁻¹ (X − M))`` for ``x, mean`` (``(..., n, p)``; ``mean`` may be
    ``None``), ``rowcov`` ``U`` (``(..., n, n)``) and ``colcov`` ``V`` (``(..., p, p)``), lazily
    over Dask blocks of :func:`fastmvn.mahalanobis`.

    Parameters
    ----------
    x, mean, rowcov, colcov : dask.array.Array or array_like
        As in :func:`logpdf`.
    errors : {"raise", "nan"}
        As in :func:`kl`.

    Returns
    -------
    mahalanobis : (...) dask.array.Array
        The squared Mahalanobis distances over the broadcast batch shape.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastmvn.dask as fmd
    >>> fmd.mahalanobis(da.ones((5, 2, 3), chunks=(2, 2, 3)), None, 2 * np.eye(2), np.eye(3)).compute()
    array([3., 3., 3., 3., 3.])
    """
    return _lazy(_api.mahalanobis, [("x", "np"), ("mean", "np"), ("rowcov", "nn"), ("colcov", "pp")],
                 (x, mean, rowcov, colcov), errors)


def mahalanobis_chol(x, mean, rowchol, colchol, *, errors="raise", lower=True):
    """:func:`mahalanobis` from Cholesky factors ``rowchol`` (``(..., n, n)``) and
    ``colchol`` (``(..., p, p)``), lazily over Dask blocks of :func:`fastmvn.mahalanobis_chol`.

    Parameters
    ----------
    x, mean, rowchol, colchol : dask.array.Array or array_like
        As in :func:`logpdf_chol`.
    errors : {"raise", "nan"}
        As in :func:`kl`.
    lower : bool, optional
        Lower factors ``U = L Lᵀ`` (default) or, with ``False``, upper ones ``U = Rᵀ R``
        (upper triangles read), as in :func:`fastmvn.kl_chol`.

    Returns
    -------
    mahalanobis : (...) dask.array.Array
        The squared Mahalanobis distances over the broadcast batch shape.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastmvn.dask as fmd
    >>> fmd.mahalanobis_chol(da.ones((5, 2, 3), chunks=(2, 2, 3)), None, 2 * np.eye(2), np.eye(3)).compute()
    array([1.5, 1.5, 1.5, 1.5, 1.5])
    """
    return _lazy(_api.mahalanobis_chol, [("x", "np"), ("mean", "np"), ("rowchol", "nn"), ("colchol", "pp")],
                 (x, mean, rowchol, colchol), errors, lower=lower)


def entropy_chol(rowchol, colchol, *, errors="raise", lower=True):
    """:func:`entropy` from Cholesky factors ``rowchol`` (``(..., n, n)``) and ``colchol``
    (``(..., p, p)``), lazily over Dask blocks of :func:`fastmvn.entropy_chol`.

    Parameters
    ----------
    rowchol, colchol : dask.array.Array or array_like
        Cholesky factors of ``U`` and ``V`` (positive diagonals; lower triangles read).
    errors : {"raise", "nan"}
        As in :func:`kl`.
    lower : bool, optional
        Lower factors ``U = L Lᵀ`` (default) or, with ``False``, upper ones ``U = Rᵀ R``
        (upper triangles read), as in :func:`fastmvn.kl_chol`.

    Returns
    -------
    entropy : (...) dask.array.Array
        The entropies (in nats) over the broadcast batch shape.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastmvn as fm, fastmvn.dask as fmd
    >>> rowchol = da.from_array(np.eye(2) * np.arange(1.0, 7.0)[:, None, None], chunks=(3, 2, 2))
    >>> np.allclose(fmd.entropy_chol(rowchol, np.eye(3)).compute(),
    ...             fm.entropy(rowchol.compute() ** 2, np.eye(3)))
    True
    """
    return _lazy(functions.entropy_chol, [("rowchol", "nn"), ("colchol", "pp")], (rowchol, colchol), errors,
                 lower=lower)


def logdet(a, *, errors="raise"):
    """``log|a|`` of symmetric positive definite matrices ``a`` (``(..., n, n)``; lower
    triangle read), lazily over Dask blocks of :func:`fastmvn.logdet`.

    Parameters
    ----------
    a : (..., n, n) dask.array.Array or array_like
        The matrices.
    errors : {"raise", "nan"}
        As in :func:`kl`.

    Returns
    -------
    logdet : (...) dask.array.Array
        The log-determinants over the batch shape.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastmvn.dask as fmd
    >>> a = da.from_array(np.eye(2) * np.arange(1.0, 5.0)[:, None, None], chunks=(2, 2, 2))
    >>> np.allclose(fmd.logdet(a).compute(), 2 * np.log(np.arange(1.0, 5.0)))
    True
    """
    return _lazy(_api.logdet, [("a", "nn")], (a,), errors)


def trace_solve(a, b, *, errors="raise"):
    """``tr(a⁻¹ b)`` for symmetric positive definite ``a`` (``(..., n, n)``; lower triangle
    read) and square ``b`` (``(..., n, n)``), lazily over Dask blocks of :func:`fastmvn.trace_solve`.

    Parameters
    ----------
    a, b : (..., n, n) dask.array.Array or array_like
        The matrices.
    errors : {"raise", "nan"}
        As in :func:`kl`.

    Returns
    -------
    trace : (...) dask.array.Array
        The traces over the broadcast batch shape.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastmvn.dask as fmd
    >>> fmd.trace_solve(da.from_array(2 * np.ones((4, 1, 1)), chunks=(2, 1, 1)), np.ones((1, 1))).compute()
    array([0.5, 0.5, 0.5, 0.5])
    """
    return _lazy(_api.trace_solve, [("a", "nn"), ("b", "nn")], (a, b), errors)


__all__ += ["logpdf_chol", "mahalanobis", "mahalanobis_chol", "entropy_chol", "logdet", "trace_solve"]
