"""fastmvn on a CUDA GPU: the batched functions run by one GPU thread per item.

The functions take the arguments of their CPU namesakes in :mod:`fastmvn` and give the
same results, broadcasting, dtypes and errors, computed by the CPU's own per-item kernels
compiled for CUDA (``fastmvn._cuda_kernels``). Matrices may be up to
:data:`MAX_SIZE` × :data:`MAX_SIZE`.

Where the data lives decides where the result lives:

* host arrays (anything NumPy reads) are copied to the GPU (each argument at its own
  size: a shared prior is copied once, never repeated over the batch) and the result
  comes back as a NumPy array;
* GPU arrays (numba device arrays, or anything exposing ``__cuda_array_interface__``
  or CUDA DLPack: CuPy, PyTorch CUDA tensors, …) are read in place, without a copy,
  and the result is a numba device array (wrap it with ``cupy.asarray`` or
  ``torch.as_tensor(…, device="cuda")``, or pass your own array as ``out``). The
  work is queued on ``stream``; only ``errors="raise"`` waits for it, to learn
  whether an item failed.

Importing this module raises :class:`ImportError`, saying what is missing, where
numba-cuda is not installed or no CUDA GPU and driver are found.
``NUMBA_ENABLE_CUDASIM=1`` runs everything on the CPU in Numba's CUDA simulator
(slow: for tests).
"""

import importlib.util
import math
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
from numpy.linalg import LinAlgError

from . import _batch, _docs, _table
from ._arguments import CHOL, MEAN, VAR, argument, bind, check, check_errors, where
from ._gradients import computed, reduce_to
from ._reports import batch_index, diagnose, relocated, with_batch_axes

if importlib.util.find_spec("numba_cuda") is None:
    raise ImportError("fastmvn.cuda needs numba-cuda, which is not installed: "
                      "pip install 'fastmvn[cuda]' (with numba-cuda[cu12] or numba-cuda[cu13] to match the driver)")
try:
    from numba import cuda
except ImportError as error:
    raise ImportError(f"fastmvn.cuda cannot load numba-cuda: {error}") from error
if not cuda.is_available():
    _reason = " ".join(str(cuda.cuda_error() or "no device found").split())
    raise ImportError(f"fastmvn.cuda found no CUDA GPU or driver ({_reason}); "
                      "NUMBA_ENABLE_CUDASIM=1 runs it on the CPU in Numba's CUDA simulator (slow; for tests)")

from numba.cuda.cudadrv.devicearray import is_cuda_ndarray  # noqa: E402 - only once CUDA is known to load

from . import _config, _cuda_kernels  # noqa: E402
from .distributions import kron as _kron  # noqa: E402


#: The largest ``n`` and ``p`` taken: each GPU thread keeps its scratch in fixed-size local arrays
#: (``fastmvn._config.MAX_SIZE``).
MAX_SIZE = _config.MAX_SIZE

# DLPack device types whose memory a kernel reads: kDLCUDA, kDLCUDAManaged.
_DLPACK_CUDA = (2, 13)


def _device_array(value, stream):
    """``value`` as a numba device array over the same memory, or None when it is host data."""
    if is_cuda_ndarray(value):
        return value
    if hasattr(value, "__cuda_array_interface__"):
        return cuda.as_cuda_array(value)
    dlpack_device = getattr(value, "__dlpack_device__", None)
    if dlpack_device is not None and dlpack_device()[0] in _DLPACK_CUDA:
        from cuda.core.utils import StridedMemoryView

        view = StridedMemoryView.from_dlpack(value, stream_ptr=int(stream) if stream else 1)
        itemsize = view.dtype.itemsize
        strides = None if view.strides is None else tuple(s * itemsize for s in view.strides)
        interface = dict(shape=tuple(view.shape), strides=strides, typestr=view.dtype.str,
                         data=(view.ptr, view.readonly), version=3)
        return cuda.from_cuda_array_interface(interface, owner=view, sync=False)
    return None


def _view(array, shape, strides):
    """A view of the device array ``array``, from its first element, with any ``shape`` and
    byte ``strides`` (0 repeats an element along an axis)."""
    if hasattr(array, "__cuda_array_interface__"):
        interface = dict(array.__cuda_array_interface__, shape=tuple(shape), strides=tuple(strides), stream=None)
        return cuda.from_cuda_array_interface(interface, owner=array, sync=False)
    # The simulator's device arrays hold a NumPy array and take NumPy's views.
    return type(array)(np.lib.stride_tricks.as_strided(np.asarray(array), shape, strides))


def _transposed(array):
    """The device array ``array`` with its last two axes swapped: a view."""
    shape, strides = tuple(array.shape), tuple(array.strides)
    return _view(array, shape[:-2] + shape[:-3:-1], strides[:-2] + strides[:-3:-1])


def _merged_stride(shape, strides):
    """The one stride that walks axes ``shape`` (with ``strides``) in C order, or None if none does."""
    axes = [(size, stride) for size, stride in zip(shape, strides) if size != 1]
    for (_, outer), (size, inner) in zip(axes, axes[1:]):
        if outer != inner * size:
            return None
    return axes[-1][1] if axes else 0


class _Device:
    """How :func:`fastmvn._arguments.bind` reads GPU arrays on ``stream``: as numba device arrays
    over the same memory, described to the checks by shape and dtype."""

    def __init__(self, stream):
        self.stream = stream

    def array(self, value):
        return None if value is None else _device_array(value, self.stream)

    @staticmethod
    def transposed(array):
        return _transposed(array)


def _slot(arg, dtype, batch_shape, stream):
    """``arg`` on the GPU as a ``(*batch_shape, r, c)`` view (variances as ``(…, n, 1)``),
    stride 0 along broadcast axes: host data is copied at its own size, GPU data not at all."""
    array = arg.array
    if not arg.on_device:
        host = _batch.slot(arg, dtype, arg.batch_shape)
        host = host[tuple(slice(0, 1) if stride == 0 else slice(None) for stride in host.strides)]
        array = cuda.to_device(np.ascontiguousarray(host), stream=stream)
        shape, strides = array.shape, array.strides
    elif array.dtype not in (np.float32, np.float64):
        raise TypeError(f"{arg.name} is a GPU array of {array.dtype}; fastmvn.cuda reads float32 or float64 "
                        "from the GPU (host arrays of any real dtype are converted)")
    else:
        shape, strides = tuple(array.shape), tuple(array.strides)
        if len(arg.axes) == 1:
            shape, strides = shape + (1,), strides + (array.dtype.itemsize,)
    full = batch_shape + shape[-2:]
    lead = len(full) - len(shape)
    strides = (0,) * lead + tuple(0 if size == 1 else stride for size, stride in zip(shape, strides))
    return _view(array, full, strides)


def _split(layouts):
    """Where one launch splits the batch: the first axis before which the batch axes of every
    layout (``(batch shape, strides)`` of a slot) merge into one stride and from which they do:
    0 where they all merge (always for contiguous or broadcast-prior layouts), 1 for a prior per
    mixture component (``(items, components)`` against ``(components,)``); None where no axis
    splits them so."""
    for split in range(max(len(layouts[0][0]), 1)):
        if all(_merged_stride(shape[:split], strides[:split]) is not None
               and _merged_stride(shape[split:], strides[split:]) is not None for shape, strides in layouts):
            return split
    return None


def _walked(slot, split):
    """The ``(*batch, r, c)`` view ``slot`` as a launch walks it (:func:`_split`): ``(count, r, c)``,
    or split, ``(outer, inner, r, c)``."""
    shape, strides = tuple(slot.shape), tuple(slot.strides)
    parts = [(shape[:split], strides[:split])] if split else []
    parts.append((shape[split:-2], strides[split:-2]))
    return _view(slot, tuple(math.prod(sizes) for sizes, _ in parts) + shape[-2:],
                 tuple(_merged_stride(*part) for part in parts) + strides[-2:])


def _launch(kernel, slots, out, first_bad, start, stream, grads=(), wanted=0):
    """Run ``kernel(split)`` (the kernel compiled for slots split or not, :func:`_split`) over
    ``slots`` (``(*batch, r, c)`` views) into the flat ``out`` (and, for the gradient kernel,
    into the flat ``(batch, r, c)`` ``grads`` that bit ``k`` of ``wanted`` marks; the others are
    placeholders): one launch where the slots can be walked in one or two parts; otherwise
    one batch axis is looped over, the shortest whose removal lets the others be walked
    (:func:`_looped`).
    """
    split = _split([(tuple(slot.shape[:-2]), tuple(slot.strides[:-2])) for slot in slots])
    if split is None:
        return _looped(kernel, slots, out, first_bad, start, stream, grads, wanted)
    views = [_walked(slot, split) for slot in slots]
    launch = kernel(split=split > 0)[-(-out.shape[0] // _config.THREADS_PER_BLOCK), _config.THREADS_PER_BLOCK, stream]
    if grads:
        launch(*views, out, *grads, wanted, first_bad, start)
    else:
        launch(*views, out, first_bad, start)


def _looped(kernel, slots, out, first_bad, start, stream, grads, wanted):
    """:func:`_launch` over slots whose batch axes cannot be walked in one or two parts (a slot
    broadcast along a middle axis alone): one launch per entry of the shortest batch axis
    whose removal leaves axes that can (else of the first).

    Along the first axis, each launch writes its own contiguous part of ``out``. Along another,
    the launches write into arrays with that axis moved to the front, which one kernel then
    interleaves into ``out`` and the gradients; the first failing item of each launch is mapped
    back to its place in the batch, and the first of those is the call's."""
    batch = tuple(slots[0].shape[:-2])

    def drop(values, axis):
        return values[:axis] + values[axis + 1:]

    axis = next((k for k in sorted(range(len(batch)), key=lambda k: batch[k])
                 if _split([(drop(tuple(s.shape[:-2]), k), drop(tuple(s.strides[:-2]), k)) for s in slots])
                 is not None), 0)
    size, count = batch[axis], out.shape[0]
    step = count // size
    moved = [_view(s, (size,) + drop(tuple(s.shape), axis), (s.strides[axis],) + drop(tuple(s.strides), axis))
             for s in slots]
    if axis == 0:
        for i in range(size):
            part = slice(i * step, (i + 1) * step)
            _launch(kernel, [s[i] for s in moved], out[part], first_bad, start + i * step, stream,
                    [g[part] if wanted >> k & 1 else g for k, g in enumerate(grads)], wanted)
        return
    targets = [out] + [g for k, g in enumerate(grads) if wanted >> k & 1]
    parts = [cuda.device_array(t.shape, t.dtype, stream=stream) for t in targets]
    bad = cuda.to_device(np.full(size, step, np.int64), stream=stream)  # one per launch: the first of each
    for i in range(size):
        part = slice(i * step, (i + 1) * step)
        placed = iter(parts[1:])
        _launch(kernel, [s[i] for s in moved], parts[0][part], bad[i:i + 1], 0, stream,
                [next(placed)[part] if wanted >> k & 1 else g for k, g in enumerate(grads)], wanted)
    before = math.prod(batch[:axis])
    after = step // before
    interleave = _cuda_kernels.interleave()
    for target, part in zip(targets, parts):
        inner = after * math.prod(target.shape[1:])
        blocks = -(-target.size // _config.THREADS_PER_BLOCK)
        interleave[blocks, _config.THREADS_PER_BLOCK, stream](part.reshape((size, before, inner)),
                                                              target.reshape((before, size, inner)))
    firsts = _wait(bad.copy_to_host(stream=stream), stream)
    places = [(outer * size + i) * after + inner for i, found in enumerate(firsts)
              if found < step for outer, inner in [divmod(int(found), after)]]
    if places:
        _cuda_kernels.lower_to()[1, 1, stream](first_bad, start + min(places))


def _output(out, on_device, dtype, batch_shape, stream):
    """Check ``out``; return the array the kernel writes (C-contiguous, on the GPU) and the
    result: that array, the GPU array ``out``, the host array ``out``, or None for a new
    host array."""
    array = None if out is None else _device_array(out, stream)
    if array is not None:
        shape, out_dtype = tuple(array.shape), array.dtype
    elif out is None:
        target = cuda.device_array(batch_shape, dtype, stream=stream)
        return target, target if on_device else None
    elif on_device:
        raise TypeError(f"out is a host {type(out).__name__}; the inputs are on the GPU, so out must be too")
    elif not isinstance(out, np.ndarray):
        raise ValueError(f"out must be an array of shape {batch_shape}; got {type(out).__name__}")
    elif not out.flags.writeable:
        raise ValueError("out is read-only")
    else:
        shape, out_dtype = out.shape, out.dtype
    if shape != batch_shape:
        raise ValueError(f"out must be an array of shape {batch_shape}; got {shape}")
    if out_dtype != dtype:
        raise TypeError(f"out has dtype {out_dtype}; these inputs give {dtype}")
    if array is None:
        return cuda.device_array(batch_shape, dtype, stream=stream), out
    if not array.is_c_contiguous():
        raise ValueError("out on the GPU must be C-contiguous")
    return array, out


def _prepare(args, stream, slots=6):
    """Check ``args``; return the dtype, the broadcast batch shape, the scratch size of the
    kernels and a function that places the kernel's ``slots`` slots on the GPU (the arguments',
    then zeros)."""
    dtype, batch_shape = check(args)
    largest = 1
    for arg in sorted(args, key=lambda arg: arg.default):  # an argument given is named before one made up for None
        core = arg.core_shape
        if max(core) > _config.MAX_SIZE:
            raise ValueError(f"{arg.name} has shape {arg.shape}: fastmvn.cuda takes matrices up to "
                             f"{_config.MAX_SIZE}×{_config.MAX_SIZE} (the CPU functions in fastmvn take any size)")
        largest = max(largest, *core)

    def place():
        placed = [_slot(arg, dtype, batch_shape, stream) for arg in args]
        zero = cuda.to_device(np.zeros((1, 1), dtype), stream=stream)
        return placed + [_view(zero, batch_shape + (1, 1), (0,) * (len(batch_shape) + 2))] * (slots - len(placed))

    return dtype, batch_shape, _cuda_kernels.scratch_size(largest), place


def _first_bad(first_bad, errors, stream):
    """The flat index of the first failing item (``errors="raise"``: waits for the GPU), or None."""
    return int(_wait(first_bad.copy_to_host(stream=stream), stream)[0]) if errors == "raise" else None


def _compute(function, values, *, out=None, errors="raise", stream=0, lower=True):
    """The table's ``function`` of ``values`` on the GPU: check, run its kernel over the
    broadcast batch, apply ``errors``."""
    args, mode = bind(function, values, lower=lower, device=_Device(stream))
    check_errors(errors)
    return _run(args, partial(_cuda_kernels.compiled, mode), 6, partial(_diagnose, args), out, errors, stream)


def _run(args, compiled, slots, report, out, errors, stream):
    """The kernel ``compiled(scratch size, slot dtypes, result dtype)``, which takes ``slots``
    slots, over the broadcast batch of the checked ``args``, into ``out`` as ``errors`` says;
    ``report(slots, index, stream)`` is the exception of the failing item at batch ``index``."""
    dtype, batch_shape, size, place = _prepare(args, stream, slots)
    target, result = _output(out, _on_device(args), dtype, batch_shape, stream)
    count = math.prod(batch_shape)
    bad = None
    if count:
        slots = place()
        kernel = partial(compiled, size, tuple(slot.dtype for slot in slots), dtype)
        first_bad = cuda.to_device(np.array([count], np.int64), stream=stream)
        _launch(kernel, slots, _view(target, (count,), (dtype.itemsize,)), first_bad, 0, stream)
        bad = _first_bad(first_bad, errors, stream)
    if result is None or isinstance(result, np.ndarray):
        host = _wait(target.copy_to_host(stream=stream), stream)
        if result is None:
            result = host if host.ndim else host[()]
        else:
            out[...] = host
    if bad is not None and bad < count:
        raise report(slots, batch_index(bad, batch_shape), stream)
    return result


def value_and_grad(function, values, errors="raise", stream=0, reduce=True, wrt=None, lower=True):
    """The table's ``function`` and its gradient on the GPU, as
    :func:`fastmvn._gradients.value_and_grad` (``wrt`` and ``lower`` too): host results for
    host inputs, device arrays otherwise."""
    check_errors(errors)
    args, mode = bind(function, values, lower=lower, device=_Device(stream))
    on_device = _on_device(args)
    dtype, batch_shape, size, place = _prepare(args, stream)
    count = math.prod(batch_shape)
    wanted = computed(function, [value is not None for value in values], wrt)
    value = cuda.device_array(batch_shape, dtype, stream=stream)
    placeholder = cuda.device_array((1, 1, 1), dtype, stream=stream)
    cores = [arg.core_shape + (1,) * (2 - len(arg.axes)) for arg in args]
    grads = [cuda.device_array((count,) + core, dtype, stream=stream) if w else placeholder
             for core, w in zip(cores + [None] * (len(wanted) - len(cores)), wanted)]
    grads += [placeholder] * (6 - len(grads))  # the kernel takes six slots' gradients
    bad = None
    if count:
        slots = place()
        kernel = partial(_cuda_kernels.compiled, mode, size, tuple(slot.dtype for slot in slots), dtype, grad=True)
        first_bad = cuda.to_device(np.array([count], np.int64), stream=stream)
        mask = sum(1 << k for k, w in enumerate(wanted) if w)
        _launch(kernel, slots, _view(value, (count,), (dtype.itemsize,)), first_bad, 0, stream, grads, mask)
        bad = _first_bad(first_bad, errors, stream)
        if bad is not None and bad < count:
            raise _diagnose(args, slots, batch_index(bad, batch_shape), stream)
    result = []
    for arg, grad, w in zip(args, grads, wanted):
        if not w:
            result.append(None)
            continue
        grad = grad.reshape(batch_shape + arg.core_shape)
        if not on_device:
            grad = _wait(grad.copy_to_host(stream=stream), stream)
            grad = reduce_to(grad, arg.shape) if reduce else grad
        else:
            grad = _reduce(grad, arg.shape, len(arg.axes), stream) if reduce else grad
        if not lower and arg.kind == CHOL:  # the upper factor's gradient: the transpose of the lower one's
            grad = _transposed(grad) if on_device else np.swapaxes(grad, -1, -2)
        result.append(grad)
    result += [None] * (len(wanted) - len(result))  # the arguments a standard mode leaves out
    if not on_device:
        value = _wait(value.copy_to_host(stream=stream), stream)
        value = value if value.ndim else value[()]
    return value, tuple(result)


def _reduce(grad, shape, core_ndim, stream):
    """The device array ``grad`` (``(*batch, *core)``) summed, in float64, over the batch
    axes along which an argument of ``shape`` was broadcast, so that it has ``shape``."""
    if tuple(grad.shape) == tuple(shape):
        return grad
    batch = tuple(grad.shape[:len(grad.shape) - core_ndim])
    own = tuple(shape[:len(shape) - core_ndim])
    own = (1,) * (len(batch) - len(own)) + own
    items = math.prod(grad.shape[len(batch):])
    # target[b]: the flat index, within the argument's own batch, of the item b was broadcast from
    target = np.broadcast_to(np.arange(math.prod(own)).reshape(own), batch).ravel()
    total = cuda.to_device(np.zeros((math.prod(own), items)), stream=stream)
    result = cuda.device_array((math.prod(own), items), grad.dtype, stream=stream)
    rows = grad.reshape((len(target), items))
    _cuda_kernels.sum_rows()[-(-len(target) // _config.THREADS_PER_BLOCK), _config.THREADS_PER_BLOCK, stream](
        rows, cuda.to_device(target, stream=stream), total)
    _cuda_kernels.cast()[-(-result.shape[0] // _config.THREADS_PER_BLOCK), _config.THREADS_PER_BLOCK, stream](total, result)
    return result.reshape(tuple(shape))


def _wait(host, stream):
    """``host`` once ``stream`` has finished (a copy queued on a stream returns at once)."""
    if stream:
        stream.synchronize()
    return host


def _on_device(args):
    return any(arg.on_device for arg in args)


def _diagnose(args, slots, index, stream):
    """The CPU's exception for the item at ``index``, from a host copy of that item alone
    (the CUDA kernels compute in float64)."""
    items = [_wait((slot[index] if index else slot).copy_to_host(stream=stream), stream) for slot in slots[:len(args)]]
    return diagnose(args, items, index, np.float64)


# The public functions: one per entry of the table that has a kernel, and one
# ``<name>_value_and_grad`` per entry with a gradient, each taking the CPU function's
# arguments plus ``stream``.

_WHERE = ("on the GPU.", "The same as :func:`fastmvn.{name}`, one GPU thread per item; see the module docstring "
          "for where the data and the result live.")
_ARRAY = "array_like or GPU array"
_KEYWORDS = (
    ("out : ndarray or GPU array, optional",
     "Array of the broadcast batch shape and the result dtype to write into: on the GPU (C-contiguous) when any "
     "input is."),
    ('errors : {"raise", "nan"}',
     '``"raise"`` (default) raises on the first failing item; ``"nan"`` makes each failing item NaN and, with '
     "GPU inputs, returns without waiting for the GPU."),
    ("stream : numba.cuda stream, optional",
     "The stream the copies and the kernel are queued on (default: the default stream)."),
)
_RETURNS = ("(...) ndarray, scalar or numba device array",
            "The results over the broadcast batch shape: float32 when every input is float32, float64 otherwise; "
            "a NumPy array (a scalar for unbatched input) when every input is on the host, else a device array "
            "(or ``out``).")
_RAISES = (("numpy.linalg.LinAlgError", "A covariance is not positive definite, or a factor's diagonal or a "
             "variance not positive; names the argument and batch index."),
           ("ValueError", "NaN or infinity in an input (names the argument and batch index); shapes that do not "
            "fit; ``n`` or ``p`` above :data:`MAX_SIZE`."),
           ("TypeError", "Complex or non-numeric input; a GPU array that is not float32 or float64."))
_GRAD_KEYWORDS = (
    _KEYWORDS[1], _KEYWORDS[2],
    ("wrt : str or sequence of str, optional",
     "The names of the arguments whose gradients to compute (by default all given); the others are None, "
     "neither allocated nor stored."),
)


def _grad_returns(function):
    """The Returns entries of ``function``'s ``_value_and_grad``: the value as the function
    returns it, then the tuple of gradients with their shapes and forms (an upper factor's
    only where the function takes ``lower``)."""
    kinds = {param.kind for param in function.params}
    forms = ["symmetric for a covariance"] if _table.COV in kinds else []
    if CHOL in kinds:
        forms.append("lower triangular for a factor"
                     + (" (upper, as a transposed view, with ``lower=False``)" if function.lower else ""))
    forms = f", {' and '.join(forms)}" if forms else ""
    return [(f"{function.name} : {_RETURNS[0]}",
             f"The values over the broadcast batch shape, as :func:`{function.name}` returns them."),
            ("grads : tuple of ndarray, numba device array or None",
             f"One per argument of ``({', '.join(function.names)})``, in that order: ``∂ sum({function.name}) / ∂ "
             "argument``, of its argument's shape as passed (summed over the batch axes it was broadcast along, on "
             f"the GPU by float64 atomic additions) and of the result dtype{forms}; None for an argument given as "
             "None or left out of ``wrt``. Host arrays when every input is on the host, device arrays otherwise.")]


_LOWER = (_docs.KEYWORDS["lower"][0], "Lower factors ``U = L Lᵀ`` (default) or, with ``False``, upper ones "
          "``U = Rᵀ R`` (upper triangles read), as in :func:`fastmvn.kl_chol`.")
_EXAMPLES = {
    "kl": """
>>> import numpy as np, fastmvn, fastmvn.cuda
>>> rng = np.random.default_rng(0)
>>> mean = rng.standard_normal((10, 4, 3))
>>> rowcov = np.eye(4) * rng.uniform(0.5, 2.0, (10, 1, 1))
>>> bool(np.allclose(fastmvn.cuda.kl(mean, rowcov, np.eye(3)), fastmvn.kl(mean, rowcov, np.eye(3))))
True
""",
    "kl_value_and_grad": """
>>> import numpy as np, fastmvn, fastmvn.cuda
>>> rng = np.random.default_rng(0)
>>> mean = rng.standard_normal((10, 4, 3))
>>> rowcov = np.eye(4) * rng.uniform(0.5, 2.0, (10, 1, 1))
>>> value, grads = fastmvn.cuda.kl_value_and_grad(mean, rowcov, np.eye(3))
>>> grads[2].shape                           # the shared colcov1: summed over the batch
(3, 3)
>>> bool(np.allclose(grads[2], fastmvn.kl_value_and_grad(mean, rowcov, np.eye(3))[1][2]))
True
""",
}


def _define(function):
    lower = (_LOWER,) if function.lower else ()
    defaults = {"out": None, "errors": "raise", "stream": 0} | ({"lower": True} if function.lower else {})
    doc = _docs.backend(function.name, (_WHERE[0], _WHERE[1].format(name=function.name)), _ARRAY,
                        _KEYWORDS + lower, (f"{function.name} : {_RETURNS[0]}", _RETURNS[1]), _RAISES,
                        examples=_EXAMPLES.get(function.name, ""))
    yield _table.define(function, _compute, defaults, doc, __name__)
    if function.gradient:
        name = function.gradient_name
        defaults = {"errors": "raise", "stream": 0, "wrt": None} | ({"lower": True} if function.lower else {})
        where = ("with its gradient, on the GPU.", _WHERE[1].format(name=name) + " It takes no ``out=``: the "
                 "results are arrays of their own.")
        doc = _docs.backend(function.name, where, _ARRAY,
                            _GRAD_KEYWORDS + lower, _grad_returns(function), _RAISES, examples=_EXAMPLES.get(name, ""))
        yield _table.define(function, value_and_grad, defaults, doc, __name__, name)


# The Kronecker-sum functions: not entries of the table (a scalar noise, ten arguments for a
# KL), run by their own kernel (``_cuda_kernels.kron_sum_kernel``) through the same slots,
# output and errors as the table's.

def _kron_sum(kl, args, out, errors, stream):
    """The Kronecker-sum KL (``kl``) or log-density on the GPU of ``args`` in the kernel's order
    (``mean, rowcov, colcov, noise_rowcov, noise_colcov``, then the second distribution's or
    ``x``): a noise variance becomes the matrix ``σ² I``, a failing item is reported by the CPU
    function (:func:`_rerun`)."""
    check(args)  # the sizes of the noise matrices are known once the shapes fit
    n, p = args[0].core_shape
    matrices = [_kron._noise_matrix(arg, n, p) for arg in args]
    return _run(matrices, partial(_cuda_kernels.compiled_kron_sum, kl), 10, partial(_rerun, kl, args), out,
                errors, stream)


def _rerun(kl, args, slots, index, stream):
    """The exception for the failing item at batch ``index``: the CPU function's (which computes
    again by LAPACK what its kernels leave NaN) for a host copy of that item alone, each
    argument with its batch axes of length one (``_reports.with_batch_axes``), placed at
    ``index`` (``_reports.relocated``); ``args`` and ``slots`` in :func:`_kron_sum`'s order."""
    items = [arg.array if arg.kind == VAR else
             with_batch_axes(_wait((slot[index] if index else slot).copy_to_host(stream=stream), stream), arg)
             for arg, slot in zip(args, slots)]
    function = _kron.kl_kron_sum if kl else _kron.logpdf_kron_sum
    try:
        function(*(items if kl else items[-1:] + items[:-1]))
    except (ValueError, LinAlgError) as error:
        return relocated(error, index)
    return FloatingPointError(f"the result is not finite{where(index)}, though fastmvn.{function.__name__} "
                              "computes it on the CPU (by LAPACK)")


def _kron_documented(function):
    """``function`` with the entries its docstring names written in: the CPU function's
    arguments (``%(kron_sum)s``, ``%(kron_sum_pair)s``) as host or GPU arrays, this module's
    keywords, results and errors."""
    raises = [("numpy.linalg.LinAlgError", "A noise covariance (or ``σ²``) is not positive definite or a signal "
               "covariance not positive semi-definite; names the argument and batch index."),
              *_RAISES[1:],
              ("FloatingPointError", "The kernels give an item no finite result although the CPU function, "
               "computing it again by LAPACK, does (a covariance at the edge of definiteness).")]
    return _docs.shared(function, {
        "keywords": list(_KEYWORDS), "raises": raises,
        "logpdf": (f"logpdf : {_RETURNS[0]}", _RETURNS[1]), "kl": (f"kl : {_RETURNS[0]}", _RETURNS[1])}, array=_ARRAY)


@_kron_documented
def logpdf_kron_sum(x, mean, rowcov, colcov, noise_rowcov, noise_colcov=None, *, out=None, errors="raise", stream=0):
    """Log-density of ``vec X ~ N(vec M, V⊗U + B⊗A)`` at ``x``, batched, on the GPU.

    The same as :func:`fastmvn.logpdf_kron_sum`, one GPU thread per item, by the CPU's own
    Kronecker-sum kernels (each side's noise whitened by its Cholesky factor, the whitened
    signal diagonalised by cyclic Jacobi), in float64; see the module docstring for where the
    data and the result live. A scalar noise ``σ²`` is copied to the GPU as ``σ² I``, once.
    The CPU function computes again by LAPACK an item its kernels leave NaN, which a
    covariance at the edge of definiteness can make them do; here such an item is NaN, and
    ``errors="raise"`` raises FloatingPointError for it.

    Parameters
    ----------
    %(kron_sum)s
    %(keywords)s

    Returns
    -------
    %(logpdf)s

    Raises
    ------
    %(raises)s

    Examples
    --------
    >>> import numpy as np, fastmvn, fastmvn.cuda
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((3, 2, 3))
    >>> u, v = 2 * np.eye(2), np.ones((3, 3))                   # shared by the batch; v of rank 1
    >>> logpdf = fastmvn.cuda.logpdf_kron_sum(x, None, u, v, 0.1)
    >>> bool(np.allclose(logpdf, fastmvn.logpdf_kron_sum(x, None, u, v, 0.1)))
    True
    """
    check_errors(errors)
    device = _Device(stream)
    args = _kron._arguments(mean, rowcov, colcov, noise_rowcov, noise_colcov, device=device)
    return _kron_sum(False, args + [argument("x", MEAN, x, "np", device)], out, errors, stream)


@_kron_documented
def kl_kron_sum(mean1, rowcov1, colcov1, noise_rowcov1, noise_colcov1, mean2, rowcov2, colcov2, noise_rowcov2,
                noise_colcov2, *, out=None, errors="raise", stream=0):
    """KL divergence between Kronecker-sum normals ``N(vec M₁, V₁⊗U₁ + B₁⊗A₁) ‖ N(vec M₂, V₂⊗U₂ + B₂⊗A₂)``, batched, on the GPU.

    The same as :func:`fastmvn.kl_kron_sum`, one GPU thread per item, by the CPU's own kernels
    as :func:`logpdf_kron_sum`.

    Parameters
    ----------
    %(kron_sum_pair)s
    %(keywords)s

    Returns
    -------
    %(kl)s

    Raises
    ------
    %(raises)s

    Examples
    --------
    >>> import numpy as np, fastmvn, fastmvn.cuda
    >>> rng = np.random.default_rng(0)
    >>> g = rng.standard_normal((3, 4, 2)); u = g @ np.swapaxes(g, -1, -2)   # rank 2
    >>> kl = fastmvn.cuda.kl_kron_sum(None, u, np.eye(2), 0.1, None, None, np.eye(4), np.eye(2), 1.0, None)
    >>> kl.shape
    (3,)
    >>> bool(np.allclose(kl, fastmvn.kl_kron_sum(None, u, np.eye(2), 0.1, None, None, np.eye(4), np.eye(2), 1.0, None)))
    True
    """
    check_errors(errors)
    device = _Device(stream)
    args = (_kron._arguments(mean1, rowcov1, colcov1, noise_rowcov1, noise_colcov1, "1", device)
            + _kron._arguments(mean2, rowcov2, colcov2, noise_rowcov2, noise_colcov2, "2", device))
    return _kron_sum(True, args, out, errors, stream)


if TYPE_CHECKING:
    from typing import Any

    def __getattr__(name: str) -> Any:
        """The functions that ``_table.publish`` generates below, unseen by a type checker: each is Any to it."""
        raise AttributeError(name)


__all__ = ["MAX_SIZE", "logpdf_kron_sum", "kl_kron_sum"]
_table.publish(globals(), "cuda", _define)
