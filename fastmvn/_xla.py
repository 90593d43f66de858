"""XLA FFI handlers on the CPU: compiled Numba functions that XLA calls on its own buffers, for
:mod:`fastmvn.jax` under :func:`jax.jit`.

One handler per table function, kernel mode, dtype, arithmetic dtype, serial or parallel driver,
``errors=`` and driver (the lanes', or the stream of diagonal covariances'): a Numba ``@cfunc``
with XLA's handler signature,
``XLA_FFI_Error* handler(XLA_FFI_CallFrame*)``, registered with :func:`jax.ffi.register_ffi_target`
on the first call that needs it (compiling it takes seconds; it is not cached on disk, as its
code holds addresses of this process: the launch lock's and the error reporter's). A handler

* answers XLA's metadata query (a call frame whose extension is ``XLA_FFI_Metadata_Extension``)
  with the FFI version of the headers it was written for and no traits, as the C++ helpers of
  ``xla/ffi/api/api.h`` do;
* otherwise reads the buffers of its arguments (each of ``(*batch, r, c)`` or, for variances,
  ``(*batch, n)``, where ``batch`` is the result's batch shape or all ones), makes them the
  slot views :mod:`fastmvn._batch` gives the batch driver (a shared argument with a batch
  stride of zero), and runs the same compiled driver as :func:`fastmvn.kl` and its kin, into
  the result buffer and a second result, the first failing item of each chunk of the batch;
* under ``errors="raise"`` with a failed item, asks Python (a ctypes callback, which takes the
  GIL) for the error :func:`fastmvn._reports.diagnose` gives that item, read from XLA's
  buffers, and returns it as an ``XLA_FFI_Error``: JAX raises a ``JaxRuntimeError`` holding its
  type and message.

The struct offsets are those of ``xla/ffi/api/c_api.h`` (API 0.x), computed once from ctypes
mirrors of its structs. A parallel driver takes :data:`fastmvn._jit._LAUNCH` where launches
must take turns (Numba's workqueue layer); where that lock has no address (no POSIX threads)
such a call is not served here.
"""

import ctypes
import functools
import threading
import traceback

import numpy as np

from . import _jit, _table
from ._arguments import Arg
from ._batch import batch_driver
from ._reports import batch_index, diagnose

__all__ = ["target"]


class _Buffer(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("extension_start", ctypes.c_void_p), ("dtype", ctypes.c_int),
                ("data", ctypes.c_void_p), ("rank", ctypes.c_int64), ("dims", ctypes.POINTER(ctypes.c_int64))]


class _List(ctypes.Structure):  # XLA_FFI_Args and XLA_FFI_Rets
    _fields_ = [("struct_size", ctypes.c_size_t), ("extension_start", ctypes.c_void_p), ("size", ctypes.c_int64),
                ("types", ctypes.c_void_p), ("items", ctypes.POINTER(ctypes.POINTER(_Buffer)))]


class _CallFrame(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("extension_start", ctypes.c_void_p), ("api", ctypes.c_void_p),
                ("ctx", ctypes.c_void_p), ("stage", ctypes.c_int), ("args", _List), ("rets", _List)]


class _ExtensionBase(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("type", ctypes.c_int), ("next", ctypes.c_void_p)]


class _MetadataExtension(ctypes.Structure):
    _fields_ = [("extension_base", _ExtensionBase), ("metadata", ctypes.c_void_p)]


class _ApiVersion(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("extension_start", ctypes.c_void_p),
                ("major_version", ctypes.c_int), ("minor_version", ctypes.c_int)]


class _Metadata(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("api_version", _ApiVersion), ("traits", ctypes.c_uint32)]


class _Api(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("extension_start", ctypes.c_void_p),
                ("api_version", _ApiVersion), ("internal_api", ctypes.c_void_p), ("error_create", ctypes.c_void_p)]


class _ErrorCreateArgs(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("extension_start", ctypes.c_void_p),
                ("message", ctypes.c_void_p), ("errc", ctypes.c_int)]


_API_VERSION = (0, 3)                 # XLA_FFI_API_MAJOR, XLA_FFI_API_MINOR of the headers followed here
_EXTENSION_METADATA = 1               # XLA_FFI_Extension_Metadata
_INTERNAL = 13                        # XLA_FFI_Error_Code_INTERNAL, as JAX reports a callback's error
_MESSAGE_BYTES = 2048                 # room for an error's message, NUL included


def _word(struct, *path):
    """The offset of the field at ``path`` in ``struct``, in 8-byte words."""
    offset = 0
    for name in path:
        field = getattr(struct, name)
        offset += field.offset
        struct = dict(struct._fields_)[name]
    assert offset % 8 == 0
    return offset // 8


# The key of a handler: the table function's name, the kernel mode, the data and arithmetic
# dtypes' characters, parallel or not, errors=, and whether it runs the items of diagonal
# covariances one at a time where they lie (``diagonal_batch``, as fastmvn._batch._streamed
# decides) rather than the lanes' ``evaluate_batch``. Python's reporter finds a key by its position.
_KEYS: list = []
_HANDLERS: dict = {}
_LOCK = threading.Lock()


def _report(frame, key, flat, into, size):
    """The reporter that a handler calls for its first failing item ``flat``: writes the
    message of the error :func:`~fastmvn._reports.diagnose` gives (its type and message) into
    ``size`` bytes at ``into``. Returns 0, or 1 where the report itself failed."""
    try:
        name, mode, dtype, work = _KEYS[key][:4]
        function = _table.FUNCTIONS[name]
        params = [p for p in function.params if mode == function.mode or not p.standard]
        call = _CallFrame.from_address(frame)
        result = call.rets.items[0].contents
        batch_shape = tuple(result.dims[k] for k in range(result.rank))
        args, items = [], []
        index = batch_index(flat, batch_shape)
        for k, param in enumerate(params):
            buffer = call.args.items[k].contents
            shape = tuple(buffer.dims[j] for j in range(buffer.rank))
            array = np.ctypeslib.as_array(ctypes.cast(buffer.data, ctypes.POINTER(np.ctypeslib.as_ctypes_type(dtype))),
                                          shape=shape)
            item = array[tuple(0 if array.shape[j] == 1 else i for j, i in enumerate(index))]
            # Padded to the batch rank, an argument without batch axes of its own is not told apart.
            args.append(Arg(param.name, param.kind, np.broadcast_to(np.zeros(()), shape), param.axes))
            items.append(item[:, None] if len(param.axes) == 1 else item)
        error = diagnose(args, items, index, np.dtype(work))
        message = "".join(traceback.format_exception_only(type(error), error)).strip()
        code = 0
    except Exception as exc:  # a report must not raise through XLA
        message, code = f"fastmvn: an item failed at flat index {flat} ({exc!r} while reporting it)", 1
    data = message.encode()[:size - 1] + b"\0"
    ctypes.memmove(into, data, len(data))
    return code


_REPORTER = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                             ctypes.c_int64)(_report)


@functools.cache
def _intrinsics():
    """Numba intrinsics: an integer as a pointer, and a call of ``XLA_FFI_Error_Create`` (or any
    ``void* f(void*)``) by its address."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def pointer(typingctx, address):
        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], cgutils.voidptr_t)
        return types.voidptr(types.int64), codegen

    @intrinsic
    def call(typingctx, function, argument):
        def codegen(context, builder, signature, args):
            kind = ir.FunctionType(cgutils.voidptr_t, [cgutils.voidptr_t])
            return builder.call(builder.inttoptr(args[0], kind.as_pointer()),
                                [builder.inttoptr(args[1], cgutils.voidptr_t)])
        return types.voidptr(types.int64, types.int64), codegen

    return pointer, call


def _compile(key):
    """The handler of ``key`` (a Numba ``cfunc``), compiled."""
    import numba
    from numba import carray, types

    name, mode, dtype, work, parallel, errors, streamed = key
    dtype, work = np.dtype(dtype), np.dtype(work)
    driver = batch_driver(streamed, False).compiled((dtype, work), parallel=parallel)
    locked = parallel and _jit._launch_needs_lock()
    lock, unlock, lock_address = _jit._LAUNCH.lock if locked else None, _jit._LAUNCH.unlock if locked else None, \
        _jit._LAUNCH.address or 0
    pointer, call = _intrinsics()
    scalar, work_scalar, report, index = dtype.type, work.type, _REPORTER, len(_KEYS)
    raises = errors == "raise"
    frame_words, buffer_words = ctypes.sizeof(_CallFrame) // 8, ctypes.sizeof(_Buffer) // 8
    extension, api = _word(_CallFrame, "extension_start"), _word(_CallFrame, "api")
    arg_count, arg_items = _word(_CallFrame, "args", "size"), _word(_CallFrame, "args", "items")
    ret_items = _word(_CallFrame, "rets", "items")
    data, rank, dims = _word(_Buffer, "data"), _word(_Buffer, "rank"), _word(_Buffer, "dims")
    extension_type = _ExtensionBase.type.offset // 4
    metadata = _word(_MetadataExtension, "metadata")
    version = _word(_Metadata, "api_version")
    version_start = version + _word(_ApiVersion, "extension_start")
    major = version * 2 + _ApiVersion.major_version.offset // 4
    minor = version * 2 + _ApiVersion.minor_version.offset // 4
    traits = _Metadata.traits.offset // 4
    api_major, api_minor = _API_VERSION
    metadata_words = -(-ctypes.sizeof(_Metadata) // 8)
    create = _word(_Api, "error_create")
    create_size, version_size = ctypes.sizeof(_ErrorCreateArgs), ctypes.sizeof(_ApiVersion)
    create_words = -(-create_size // 8)
    create_message, create_code = _word(_ErrorCreateArgs, "message"), _ErrorCreateArgs.errc.offset // 4

    @numba.njit(inline="always")
    def slot(arguments, k, count, batch_rank, fallback):
        """Argument ``k`` as a ``(count, r, c)`` view (``fallback`` of ``(count, 1, 1)`` for a
        slot the mode does not use)."""
        itemsize = fallback.itemsize
        if k >= arguments.shape[0]:
            return np.lib.stride_tricks.as_strided(fallback, (count, 1, 1), (0, 0, 0))
        buffer = carray(pointer(arguments[k]), buffer_words, np.int64)
        shape = carray(pointer(buffer[dims]), buffer[rank], np.int64)
        items = 1
        for d in range(batch_rank):
            items *= shape[d]
        rows = shape[batch_rank]
        cols = shape[batch_rank + 1] if buffer[rank] == batch_rank + 2 else 1
        values = carray(pointer(buffer[data]), items * rows * cols, scalar)
        stride = rows * cols * itemsize if items == count else 0
        return np.lib.stride_tricks.as_strided(values, (count, rows, cols), (stride, cols * itemsize, itemsize))

    def handler(address):
        frame = carray(pointer(address), frame_words, np.int64)
        if frame[extension] != 0:
            start = pointer(frame[extension])
            if carray(start, 4, np.int32)[extension_type] == _EXTENSION_METADATA:
                filled = pointer(carray(start, metadata + 1, np.int64)[metadata])
                words = carray(filled, metadata_words, np.int64)
                words[version] = version_size
                words[version_start] = 0
                halves = carray(filled, 2 * metadata_words, np.int32)
                halves[major], halves[minor], halves[traits] = api_major, api_minor, 0
                return pointer(0)
        arguments = carray(pointer(frame[arg_items]), frame[arg_count], np.int64)
        results = carray(pointer(frame[ret_items]), 2, np.int64)
        result = carray(pointer(results[0]), buffer_words, np.int64)
        batch_rank = result[rank]
        batch_shape = carray(pointer(result[dims]), batch_rank, np.int64)
        count = 1
        for d in range(batch_rank):
            count *= batch_shape[d]
        out = carray(pointer(result[data]), count, scalar)
        failures = carray(pointer(results[1]), buffer_words, np.int64)
        chunks = carray(pointer(failures[dims]), 1, np.int64)[0]
        first_bad = carray(pointer(failures[data]), chunks, np.int64)
        a0 = slot(arguments, 0, count, batch_rank, out)
        a1 = slot(arguments, 1, count, batch_rank, out)
        a2 = slot(arguments, 2, count, batch_rank, out)
        a3 = slot(arguments, 3, count, batch_rank, out)
        a4 = slot(arguments, 4, count, batch_rank, out)
        a5 = slot(arguments, 5, count, batch_rank, out)
        arithmetic = np.empty(0, work_scalar)
        if locked:
            lock(pointer(lock_address))
        driver(mode, a0, a1, a2, a3, a4, a5, out, first_bad, arithmetic)
        if locked:
            unlock(pointer(lock_address))
        if not raises:
            return pointer(0)
        bad = count
        for c in range(chunks):
            bad = min(bad, first_bad[c])
        if bad >= count:
            return pointer(0)
        message = np.zeros(_MESSAGE_BYTES, np.uint8)
        report(pointer(address), index, bad, message.ctypes.data, _MESSAGE_BYTES)
        return error(carray(pointer(frame[api]), create + 1, np.int64)[create], message)

    @numba.njit
    def error(create_function, message):
        """An ``XLA_FFI_Error`` of ``message`` (NUL-terminated bytes), made by the API's
        ``XLA_FFI_Error_Create``: a function of its own, so that ``message`` and the request
        live until the call returns."""
        request = np.zeros(create_words, np.int64)
        request[0] = create_size
        request[create_message] = message.ctypes.data
        carray(pointer(request.ctypes.data), 2 * create_words, np.int32)[create_code] = _INTERNAL
        return call_with(create_function, request)

    @numba.njit
    def call_with(function, request):
        return call(function, request.ctypes.data)

    compiled = numba.cfunc(types.voidptr(types.int64), **_jit.OPTIONS)(handler)
    _KEYS.append(key)
    return compiled


def target(key):
    """The name of the registered FFI target of ``key`` (see :data:`_KEYS`), compiled and
    registered on its first use; None where that failed (this JAX or Numba cannot), and the
    callback serves the call."""
    import jax

    with _LOCK:
        if key not in _HANDLERS:
            name = "fastmvn_" + "_".join(map(str, key))
            try:
                compiled = _compile(key)
                jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(compiled.ctypes), platform="cpu")
            except Exception:  # any failure here leaves the call to the callback, which always works
                name, compiled = None, None
            _HANDLERS[key] = name, compiled
        return _HANDLERS[key][0]
