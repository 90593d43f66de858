"""The CPU glue between checked arguments and the compiled batch drivers
(:mod:`fastmvn.kernels.drivers`): the arguments as ``(*batch, r, c)`` slots, the working dtype,
one launch over a batch (its axes merged where the layout allows) and the report of the
first failing item."""

import functools

import numpy as np

from . import _config, _large, _modes, _pool
from ._arguments import bind, check, check_errors, check_out
from ._jit import launching
from ._reports import batch_index, diagnose

__all__ = ["call", "planned", "compute", "slot", "working_dtype", "evaluate", "evaluate_grad", "direct", "report"]


def _kernels():
    """The compiled kernels, imported on first use so that ``import fastmvn`` compiles nothing."""
    from . import kernels

    return kernels


def slot(arg, dtype, batch_shape):
    """The argument as a read-only ``(*batch_shape, r, c)`` view (variances as ``(…, n, 1)``)."""
    array = np.asarray(arg.array, dtype=dtype)
    if len(arg.axes) == 1:
        array = array[..., None]
    if array.shape[:-2] == batch_shape:  # a plain read-only view is quicker than broadcast_to
        array = array.view()
        array.flags.writeable = False
        return array
    return np.broadcast_to(array, batch_shape + array.shape[-2:])


def working_dtype(slots):
    """The dtype the CPU kernels compute ``slots`` (``(…, r, c)`` arrays of one dtype) in."""
    small = max(max(s.shape[-2:]) for s in slots) <= _config.FLOAT32_ARITHMETIC_MAX_SIDE
    return np.dtype(np.float32 if slots[0].dtype == np.float32 and small else np.float64)


def report(args, slots, flat, batch_shape):
    """The exception for the failing item at the flat index ``flat`` of ``slots``."""
    index = batch_index(flat, batch_shape)
    return diagnose(args, [s[index] for s in slots], index, working_dtype(slots))


@functools.lru_cache(maxsize=64)
def _padding(count, dtype):
    """A read-only ``(count, 1, 1)`` array of zeros that takes no memory, for an unused slot."""
    return np.broadcast_to(np.zeros((1, 1, 1), dtype), (count, 1, 1))


def _driver_arguments(flat, count, dtype, streamed=False, gradients=False):
    """What a batch driver takes besides the slots ``flat`` and the results: ``(1, 1, 1)``
    padding for the slots a mode does not use, ``first_bad`` (one entry per chunk) and
    ``work``, an empty array of the :func:`working_dtype` (float64 for the items of diagonal
    covariances that :func:`_streamed` sends to ``diagonal_batch`` or ``diagonal_grad_batch``,
    which it never sends float32 items computed in float32); :func:`chunk_count` chunks."""
    padding = [_padding(count, dtype)] * (6 - len(flat))
    return (padding, np.empty(chunk_count(flat, count, streamed, gradients), np.int64),
            np.empty(0, working_dtype(flat)))


def chunk_count(slots, count, streamed, gradients=False):
    """The chunks (``prange`` tasks) of a driver's batch of ``count`` items of ``slots`` (their
    values, or with ``gradients`` their values and gradients): ``CHUNK`` items each, and at
    least one per thread that the work of the items in lanes is split over
    (:func:`fastmvn._large.workers`); for the items :func:`_streamed` takes, at least
    :data:`fastmvn._config.DIAGONAL_CHUNK_ENTRIES` entries of the means each where that makes
    more (a few large items)."""
    chunks = -(-count // _config.CHUNK)
    if streamed:
        entries = count * slots[0].shape[-2] * slots[0].shape[-1]
        return max(chunks, min(count, entries // _config.DIAGONAL_CHUNK_ENTRIES))
    return max(chunks, _large.workers(count, _large.largest_side(slots), gradients))


def batch_driver(streamed, gradients):
    """The batch driver of a call (``fastmvn.kernels.drivers``): the one that takes items one at
    a time where they lie, where :func:`_streamed` says so, else the lanes'; its value and
    gradients' form with ``gradients``."""
    kernels = _kernels()
    if streamed:
        return kernels.diagonal_grad_batch if gradients else kernels.diagonal_batch
    return kernels.value_and_grad_batch if gradients else kernels.evaluate_batch


_STREAMED_MODES = (_modes.KL_DIAG, _modes.KL_STD_DIAG, _modes.LOGPDF_DIAG)


def _streamed(mode, slots, count, gradients=False):
    """Whether the values of ``mode`` over ``count`` items of ``slots`` are computed one item
    at a time where each lies (``fastmvn.kernels.drivers.diagonal_batch``) rather than in lanes:
    a mode of diagonal covariances, items of largest side from
    :data:`fastmvn._config.DIAGONAL_KL_STREAM_MIN_SIDE` (``DIAGONAL_LOGPDF_STREAM_MIN_SIDE``),
    or items that the plan for large items would take (:func:`fastmvn._large.chosen`; these
    values never go there); not float32 items that the lanes compute in float32 (their
    gradients' lanes do too). Decided by the items' shape, not by where an item falls in its
    batch: small items take the lanes one at a time too, and give the bits they give in any
    batch. With ``gradients``, the same for the values and gradients
    (``diagonal_grad_batch``), from the sides in ``DIAGONAL_KL_GRAD_STREAM_MIN_SIDE`` and
    ``DIAGONAL_LOGPDF_STREAM_MIN_SIDE``."""
    if mode not in _STREAMED_MODES:
        return False
    side = max(slots[0].shape[-2:])
    if slots[0].dtype == np.float32 and side <= _config.FLOAT32_ARITHMETIC_MAX_SIDE:
        return False
    if gradients:
        least = (_config.DIAGONAL_LOGPDF_STREAM_MIN_SIDE if mode == _modes.LOGPDF_DIAG
                 else _config.DIAGONAL_KL_GRAD_STREAM_MIN_SIDE)
    else:
        least = {_modes.KL_DIAG: _config.DIAGONAL_KL_STREAM_MIN_SIDE,
                 _modes.LOGPDF_DIAG: _config.DIAGONAL_LOGPDF_STREAM_MIN_SIDE}.get(mode)
    return (least is not None and side >= least) or _large.chosen(slots, count, gradients)


def _merged(slots, count):
    """The slots with their batch axes merged into one, without copying, or None where a
    layout cannot be merged (a broadcast axis between batch axes)."""
    if all(s.ndim == 3 for s in slots):  # one batch axis already
        return slots
    try:
        return [s[None] if s.ndim == 2 else np.reshape(s, (count,) + s.shape[-2:], copy=False) for s in slots]
    except ValueError:
        return None


def _merges(array):
    """Whether the batch axes of ``array`` (``(…, r, c)``) merge into one without a copy."""
    return _merged([array], -1) is not None


def _loop_axis(slots, out):
    """The batch axis that :func:`_looped` runs along: the shortest whose removal leaves a
    layout that merges, else the first."""
    return next((k for k in sorted(range(out.ndim), key=lambda k: out.shape[k])
                 if _merged([np.moveaxis(s, k, 0)[0] for s in slots], out.size // out.shape[k]) is not None), 0)


def _row_blocks(slots, out, launches):
    """A plan for a layout that cannot be merged, in blocks of rows (the first batch axis), or
    None: the rows of a block and, for each slot, None where its blocks of rows merge, or a
    block's worth of it, copied, where it repeats along the rows (a prior per mixture
    component, the same in every block). None where a slot is neither, where a block's worth
    of one row of the copies exceeds ``_config.BROADCAST_BLOCK_BYTES``, or where blocks would
    take more than ``launches`` launches."""
    rows = out.shape[0]
    copied = []
    for s in slots:
        if _merges(s[:2]):
            copied.append(False)
        elif s.strides[0] == 0 and _merges(s[0]):
            copied.append(True)
        else:
            return None
    row_bytes = sum(s[0].size * s.itemsize for s, c in zip(slots, copied) if c)
    per_block = min(rows, _config.BROADCAST_BLOCK_BYTES // max(row_bytes, 1))
    if per_block < 1 or -(-rows // per_block) > launches:
        return None
    return per_block, [np.broadcast_to(s[0], (per_block,) + s.shape[1:]).copy() if c else None
                       for s, c in zip(slots, copied)]


def _blocked(mode, slots, out, grads, wanted, plan):
    """:func:`evaluate_grad` over a layout that cannot be merged, in the blocks of rows of
    ``plan`` (:func:`_row_blocks`): one launch per block, each of whose slots merges."""
    per_block, copies = plan
    rows, first = out.shape[0], None
    row_size = out.size // rows
    for start in range(0, rows, per_block):
        stop = min(rows, start + per_block)
        bad = evaluate_grad(mode, [s[start:stop] if c is None else c[:stop - start] for s, c in zip(slots, copies)],
                            out[start:stop], [g[start:stop] if w else g for g, w in zip(grads, wanted)], wanted)
        if bad is not None and first is None:
            first = start * row_size + bad
    return first


def evaluate(mode, slots, out):
    """Run the batch driver over ``slots`` into ``out``; return the flat index of the
    first item whose result is not finite, or None.

    ``out`` must be contiguous. Few large items go one at a time through LAPACK
    (:mod:`fastmvn._large`); other batches to the lane drivers, with the batch axes of the
    slots merged into one without copying. Where a layout cannot be merged (a broadcast axis
    between batch axes: a prior per mixture component), the batch runs in blocks of rows, an
    argument that repeats along the rows copied once into a block's worth (:func:`_row_blocks`),
    or else one batch axis is looped over, the shortest whose removal lets the others merge
    (:func:`_looped`).
    """
    return evaluate_grad(mode, slots, out, (), ())


def _looped(mode, slots, out, grads, wanted, axis):
    """:func:`evaluate_grad` over a layout that cannot be merged, one launch per entry of the
    batch ``axis`` (:func:`_loop_axis`); the results of a launch along another axis than the
    first go through a contiguous array."""
    moved = [np.moveaxis(s, axis, 0) for s in slots]
    targets = [np.moveaxis(a, axis, 0) for a in (out, *(g for g, w in zip(grads, wanted) if w))]
    first = None
    for i in range(out.shape[axis]):
        parts = [t[i] if axis == 0 else np.empty(t.shape[1:], t.dtype) for t in targets]
        part_grads = iter(parts[1:])
        bad = evaluate_grad(mode, [s[i] for s in moved], parts[0],
                            [next(part_grads) if w else g for g, w in zip(grads, wanted)], wanted)
        if axis:
            for target, part in zip(targets, parts):
                target[i] = part
        if bad is not None:
            index = np.unravel_index(bad, parts[0].shape)
            flat = int(np.ravel_multi_index(index[:axis] + (i,) + index[axis:], out.shape))
            first = flat if first is None else min(first, flat)
    return first


def evaluate_grad(mode, slots, out, grads, wanted):
    """Run the driver over ``slots`` into ``out`` and, for the value-and-gradient driver (``grads``
    not empty), into ``grads`` (contiguous ``(*batch, r, c)`` arrays, or ``(1, 1, 1)``
    placeholders where not ``wanted``); return the flat index of the first failing item, or
    None. The plan and the batch axes as in :func:`evaluate`."""
    count = out.size
    if count == 0:
        return None
    streamed = _streamed(mode, slots, count, bool(grads))
    if not streamed and _large.chosen(slots, count, gradients=bool(grads)):
        return _large.value_and_grad(mode, slots, out, grads, wanted) if grads else _large.evaluate(mode, slots, out)
    flat = _merged(slots, count)
    if flat is None:
        # Launches along the first axis read contiguous rows; along another, items far apart,
        # which blocks of rows avoid where they take no more launches.
        axis = _loop_axis(slots, out)
        plan = _row_blocks(slots, out, out.shape[axis]) if axis else None
        if plan is None:
            return _looped(mode, slots, out, grads, wanted, axis)
        return _blocked(mode, slots, out, grads, wanted, plan)
    padding, first_bad, work = _driver_arguments(flat, count, out.dtype, streamed, bool(grads))
    driver = batch_driver(streamed, bool(grads))
    if grads:
        flat_grads = [g.reshape((count,) + g.shape[-2:]) if w else g for g, w in zip(grads, wanted)]
        arguments = (mode, *flat, *padding, out.reshape(count), *flat_grads,
                     sum(1 << k for k, w in enumerate(wanted) if w), first_bad, work)
    else:
        arguments = (mode, *flat, *padding, out.reshape(count), first_bad, work)
    if len(first_bad) == 1:  # one chunk: one thread computes it either way
        driver.serial(*arguments)
    else:
        with launching():
            driver(*arguments)
    bad = int(first_bad.min())
    return bad if bad < count else None


def direct(out, args):
    """Whether the kernels can write into ``out`` itself: C-contiguous and apart from every
    input (else they write into a new array, copied into ``out`` afterwards, as NumPy does
    for overlapping ufunc arguments)."""
    return (out is not None and out.flags.c_contiguous
            and not any(np.may_share_memory(out, arg.array) for arg in args))


def compute(mode, args, out, errors):
    """Check ``args``, run kernel ``mode`` over their broadcast batch, apply ``errors``."""
    check_errors(errors)
    dtype, batch_shape = check(args)
    check_out(out, dtype, batch_shape)
    into = direct(out, args)
    result = out if into else np.empty(batch_shape, dtype)
    slots = [slot(arg, dtype, batch_shape) for arg in args]
    bad = evaluate(mode, slots, result)
    if out is not None and not into:
        out[...] = result
    if bad is not None and errors == "raise":
        raise report(args, slots, bad, batch_shape)
    if out is not None:
        return out
    return result if result.ndim else result[()]


def call(function, values, out, errors, lower=True):
    """The batched ``function`` (a table entry with a kernel mode) of ``values``.

    A small call (one chunk of items, :data:`fastmvn._config.CHUNK`) whose arguments are
    C-contiguous float arrays of one dtype, or None, runs the :class:`_Plan` made by the first
    call with its shapes: the binding, the checks of shapes and dtypes, the plan and the
    driver are decided once, and a call only makes its views and launches (the values are
    checked by the kernel, every call). Every other call, and one whose item fails under
    ``errors="raise"`` (to be explained), takes the general path."""
    result = planned(function, values, out, errors, lower)
    if result is not None:
        return result
    args, mode = bind(function, values, lower=lower)
    return compute(mode, args, out, errors)


def planned(function, values, out, errors, lower, gradients=None):
    """The result of a small call by its :class:`_Plan` (with ``gradients``, one flag per
    parameter of ``function``, the value and the gradients the flags ask for, None for the
    others, as :func:`fastmvn._gradients.value_and_grad` returns them), or None where the call
    takes the general path: it has no plan, or an item failed under ``errors="raise"``."""
    key = _plan_key(function, values, out, errors, lower)
    if key is None:
        return None
    key += (gradients,)
    plan = _PLANS.get(key, _UNKNOWN)
    if plan is _UNKNOWN and len(_PLANS) < _MAX_PLANS:
        plan = _PLANS[key] = _Plan.make(function, values, lower, gradients)
    if plan is None or plan is _UNKNOWN:
        return None
    result = plan.run(values, out)
    if result is None:  # out= to be checked, or written through a copy, on the general path
        return None
    result, failed = result
    return None if failed and errors != "nan" else result


#: The plans of small calls by :func:`_plan_key` (None for a key whose calls have none).
#: Bounded: a program that calls with ever new shapes stops adding plans.
_PLANS: dict[tuple, "_Plan | None"] = {}
_MAX_PLANS = 1024
_UNKNOWN = object()


def _plan_key(function, values, out, errors, lower):
    """What decides a small call's plan: the function, the thresholds between plans and each
    value's shape and dtype (None stays None); None where the call takes the general path
    (``lower=False``, ``errors`` to be checked, a value that is not a C-contiguous float32 or
    float64 array in the machine's byte order). ``out=`` does not change the plan: a run
    writes into the arrays it can (:meth:`_Plan.outputs`)."""
    if lower is not True or errors not in ("raise", "nan"):
        return None
    key = [function.name, _config.CHUNK, _config.LAPACK_MIN_SIDE, _config.LAPACK_BATCH_SIDE, _config.LAPACK_ALL_SIDE,
           _config.LAPACK_GRADIENT_MIN_SIDE, _config.LAPACK_GRADIENT_BATCH_SIDE, _config.LAPACK_GRADIENT_ALL_SIDE,
           _config.FLOAT32_ARITHMETIC_MAX_SIDE, _config.DIAGONAL_KL_STREAM_MIN_SIDE,
           _config.DIAGONAL_LOGPDF_STREAM_MIN_SIDE, _config.DIAGONAL_KL_GRAD_STREAM_MIN_SIDE,
           _config.DIAGONAL_CHUNK_ENTRIES, _config.THREADS_MIN_WORK,
           _config.THREADS_MIN_GRADIENT_WORK]  # a test may change them
    for value in values:
        if value is None:
            key.append(None)
        elif (type(value) is np.ndarray and value.dtype.char in "fd" and value.dtype.isnative
              and value.flags.c_contiguous):
            key.append((value.shape, value.dtype.char))
        else:
            return None
    return tuple(key)


class _Plan:
    """A small call decided once for the shapes and dtypes of its key (:func:`call`): the
    mode, the source of each slot (a value's position with the shape of its ``(count, r, c)``
    view and, where the view repeats the value's one item, its strides; or a made-up standard
    argument), the serial driver and what it takes besides the slots; with ``gradients``,
    the shape of each argument's gradient."""

    @classmethod
    def make(cls, function, values, lower, gradients=None):
        """The plan of a call, or None where it has none: more than one chunk of items, a
        dtype to convert, a value broadcast along some of the batch axes only (or along any,
        where its gradient is asked for: that would be a sum over them). The checks raise
        as on the general path. Large items keep the plan for large items
        (:mod:`fastmvn._large`), which a run calls directly. With ``gradients`` (a flag per
        parameter), those the flags ask for; an argument passed as None (a zero mean or an
        identity made up for it, or the standard prior's three) has none."""
        args, mode = bind(function, values, lower=lower)
        dtype, batch_shape = check(args)
        count = int(np.prod(batch_shape, dtype=np.int64))
        slots = [slot(arg, dtype, batch_shape) for arg in args]
        if not 0 < count <= _config.CHUNK:
            return None
        position = {param.name: k for k, param in enumerate(function.params)}
        plan = cls()
        plan.sources = []
        for arg, view in zip(args, slots):
            core = view.shape[-2:]
            if arg.default:
                plan.sources.append(np.broadcast_to(view[(0,) * (view.ndim - 2)], (count,) + core))
            elif arg.dtype != dtype or (arg.batch_shape != batch_shape
                                        and (gradients is not None and gradients[position[arg.name]]
                                             or np.prod(arg.batch_shape) != 1)):
                return None
            else:
                item = dtype.itemsize
                batch_stride = core[0] * core[1] * item if arg.batch_shape == batch_shape else 0
                strides = None if batch_stride or count == 1 else (batch_stride, core[1] * item, item)
                plan.sources.append((position[arg.name], (count,) + core, strides))
        plan.mode, plan.dtype, plan.batch_shape, plan.count = mode, dtype, batch_shape, count
        plan.gradients = ([(view.shape, len(arg.axes) == 1, gradients[position[arg.name]] and not arg.default)
                           for arg, view in zip(args, slots)] if gradients is not None else None)
        plan.missing = len(function.params) - len(args)  # the standard prior's arguments, absent from args
        if gradients is not None:  # which of the drivers' six gradients to store, as flags and as bits
            plan.wanted = [wants for _, _, wants in plan.gradients] + [False] * (6 - len(plan.gradients))
            plan.mask = sum(1 << k for k, wants in enumerate(plan.wanted) if wants)
            plan.placeholder = np.empty((1, 1, 1), dtype)  # never written: in place of a gradient not stored
        plan.streamed = _streamed(mode, slots, count, gradients is not None)
        plan.large = not plan.streamed and _large.chosen(slots, count, gradients is not None)
        if not plan.large:
            plan.padding, first_bad, plan.work = _driver_arguments(slots, count, dtype, plan.streamed,
                                                                   gradients is not None)
            if len(first_bad) > 1:  # items whose work is split over threads
                return None
            driver = batch_driver(plan.streamed, gradients is not None)
            plan.driver = driver.compiled((dtype, plan.work.dtype), parallel=False)
        return plan

    def run(self, values, out=None):
        """The call's result (of the batch shape, or a scalar; ``out``'s arrays where given)
        and whether an item failed; None where ``out`` takes the general path
        (:meth:`outputs`)."""
        given = given_grads = None
        if out is not None:
            out = self.outputs(values, out)
            if out is None:
                return None
            given, given_grads = (out, None) if self.gradients is None else out
        views = []
        for source in self.sources:
            if type(source) is tuple:
                position, shape, strides = source
                if strides is None:  # the value's own items (C-ordered): a reshaped view
                    view = values[position].reshape(shape)
                else:  # one item for every item of the batch
                    view = np.ndarray(shape, self.dtype, values[position], 0, strides)
                view.flags.writeable = False
                views.append(view)
            else:
                views.append(source)
        result = np.empty(self.count, self.dtype) if given is None else given.reshape(self.count)
        if self.gradients is not None:
            return self._run_gradients(views, result, given, given_grads)
        if self.large:
            failed = _large.evaluate(self.mode, views, result) is not None
        else:
            first_bad = np.empty(1, np.int64)
            self.driver(self.mode, *views, *self.padding, result, first_bad, self.work)
            failed = first_bad[0] < self.count
        if given is not None:
            return given, failed
        return (result.reshape(self.batch_shape) if self.batch_shape else result[0]), failed

    def _run_gradients(self, views, result, given, given_grads):
        """:meth:`run` of a plan with gradients: ``((value, grads), failed)``, each gradient
        asked for of its argument's own shape (no such argument is broadcast): the array of
        ``given_grads`` for it, else memory of the gradients' pool (:mod:`fastmvn._pool`) as on
        the general path; the value into ``result`` (``given``'s, where that is not None)."""
        full = [None if not wants else _pool.empty(shape, self.dtype) if given_grads is None or given_grads[k] is None
                else given_grads[k] for k, (shape, _, wants) in enumerate(self.gradients)]
        grads = [self.placeholder if grad is None else grad.reshape((self.count,) + shape[-2:])
                 for grad, (shape, _, _) in zip(full, self.gradients)]
        grads += [self.placeholder] * (6 - len(grads))  # the drivers take six slots' gradients
        if self.large:
            failed = _large.value_and_grad(self.mode, views, result, grads, self.wanted) is not None
        else:
            first_bad = np.empty(1, np.int64)
            self.driver(self.mode, *views, *self.padding, result, *grads, self.mask, first_bad, self.work)
            failed = first_bad[0] < self.count
        value = given if given is not None else result.reshape(self.batch_shape) if self.batch_shape else result[0]
        grads = tuple(None if grad is None else grad[..., 0] if vector and grad.ndim == len(shape) else grad
                      for grad, (shape, vector, _) in zip(full, self.gradients))
        return (value, grads + (None,) * self.missing), failed

    def outputs(self, values, out):
        """``out`` as :meth:`run` writes into it: the value's array (or None) for a plan without
        gradients; ``(value, grads)`` for one with, ``grads`` one array or None per parameter of
        the function. None where the call takes the general path instead, which checks ``out``
        (and raises its errors) or writes through a copy: any array that is not exactly an
        ``ndarray`` of the result's dtype and shape, C-contiguous and writeable, a gradient's
        array where it gets none, or two arrays of ``out`` that may share memory with each other
        or with a value (compared by their bounds where they have the same owner,
        :func:`_owner`)."""
        if self.gradients is None:
            value, grads = out, ()
        else:
            if type(out) is not tuple or len(out) != 2 or type(out[1]) not in (tuple, list) \
                    or len(out[1]) != len(self.gradients) + self.missing:
                return None
            value, grads = out
            for k, grad in enumerate(grads):
                if grad is None:
                    continue
                if k >= len(self.gradients) or not self.gradients[k][2]:
                    return None
                shape, vector, _ = self.gradients[k]
                if not _writes_into(grad, shape[:-1] if vector else shape, self.dtype):
                    return None
        if value is not None and not _writes_into(value, self.batch_shape, self.dtype):
            return None
        outputs = [a for a in (value, *grads) if a is not None]
        arrays = outputs + [a for a in values if a is not None]
        roots = [_owner(a) for a in arrays]
        for k, (a, root) in enumerate(zip(outputs, roots)):
            for j in range(k + 1, len(arrays)):  # every pair with an output in it, once
                if (root is None or roots[j] is None or root is roots[j]) and np.may_share_memory(a, arrays[j]):
                    return None
        return out if self.gradients is None else (value, grads)


def _owner(array):
    """The array that owns the memory of ``array`` (a view's base, followed): arrays of two
    different owners never share memory. None where no array owns it (memory of another
    object: a buffer, a memory map), which may be anyone's."""
    while not array.flags.owndata:
        array = array.base
        if not isinstance(array, np.ndarray):
            return None
    return array


def _writes_into(array, shape, dtype):
    """Whether a plan's driver writes into ``array`` as it is: an ``ndarray`` of ``shape`` and
    ``dtype``, C-contiguous and writeable."""
    return (type(array) is np.ndarray and array.shape == shape and array.dtype == dtype
            and array.flags.c_contiguous and array.flags.writeable)
