"""JAX functions over fastmvn's CPU kernels: every batched function of the table on JAX arrays.

Install with ``pip install 'fastmvn[jax]'``. Each function takes the arguments of its namesake
in :mod:`fastmvn` as JAX arrays (or anything :func:`jax.numpy.asarray` reads; ``None`` for a
standard part, as :func:`fastmvn.kl` takes it), broadcasts over leading axes, and composes
with :func:`jax.jit`, :func:`jax.vmap` and, where the table has a fused gradient,
:func:`jax.grad`:

* **Under** :func:`jax.jit` **on the CPU, XLA calls compiled code** on its own buffers: an XLA
  FFI handler per kernel (``fastmvn._xla``, a Numba ``cfunc`` compiled and registered on
  first use) that runs the batch driver :func:`fastmvn.kl` runs, with no copy of the arguments
  or the result. It serves the value of every entry with a kernel (the KLs, ``logdet``,
  ``trace_solve``, the Mahalanobis distances and log-densities) where the arguments have the
  result's dtype, each has the whole batch or a batch of ones, no standard argument is made
  up (all three second arguments of a KL given or all None), factors are lower and the items
  are not large enough for LAPACK (``fastmvn._large``).
* **Everything else runs on the host through a callback**, :func:`jax.pure_callback`'s
  lowering without its copy of the arguments into CPU :class:`jax.Array` s: gradients, the
  entries composed of others, the layouts above, other backends. Under a transformation
  the arguments are checked when the function is traced (shapes, dtypes, ``errors=`` and
  ``lower=``, with the CPU function's messages); the callback then runs the CPU function on
  the NumPy arrays XLA hands it, without a copy of its own. Called on concrete arrays outside any
  transformation, the function calls the CPU function at once, so its errors come out as
  they are. Which of the two runs is decided when the call is lowered, from its shapes.
* **vmap** goes through ``vmap_method="expand_dims"``: the callback (or the handler, where
  the layout is one it reads) gets the mapped axis in front of every argument, of size 1 where
  an argument is not mapped, and the kernels' own broadcasting does the rest, one call for
  the whole mapped batch. For that to line up,
  every argument is given the same number of batch axes (leading axes of size 1, a free
  reshape) before the callback. ``"broadcast_all"`` would work too, but copies an unmapped
  argument (a shared prior) once per mapped item.
* **dtypes** follow fastmvn's one dtype rule: float32 when every given array
  is float32, float64 otherwise, which JAX makes float32 unless ``jax_enable_x64`` is on.
  The inputs are cast to that dtype before the callback (in JAX, so that the cast's own
  gradient rule applies); the result equals the CPU function's on the cast inputs bit for bit.
* **Gradients.** Every function is a :func:`jax.custom_vjp`. Where the table's entry has a
  fused gradient (``gradient=True``: the KLs and the log-densities) the forward
  pass gets the value and the per-item gradients of the differentiated arguments in one
  callback (``fastmvn._gradients.value_and_grad`` with ``reduce=False``; the others
  are neither computed nor stored); the backward pass weights them by the cotangent and
  sums over the axes an argument was broadcast along, in JAX. An entry without one raises
  a ``NotImplementedError`` naming the function under :func:`jax.grad`. The gradients follow
  :func:`fastmvn.kl_value_and_grad`'s conventions (symmetric for a covariance, triangular for a
  factor). Forward mode (:func:`jax.jvp`) and second derivatives are not implemented: JAX
  raises for them.
* **Errors.** A bad item raises as in :mod:`fastmvn`, naming the argument and the batch index
  (the index in the broadcast batch, mapped axes in front). Inside :func:`jax.jit` the error
  is raised while XLA runs the callback, or made by the handler (which asks Python for the
  report of the first failing item only, as :mod:`fastmvn` does), and JAX reports it as a
  :class:`jax.errors.JaxRuntimeError` whose message holds the original error's type and
  message. ``errors="nan"`` is a static keyword: the failing items are NaN.

On a GPU backend the same functions work through a host round trip: XLA copies the
arguments to the host, the CPU kernels run, and the result is copied back, synchronising
the stream at every call. That is right for checking and small batches, but it costs the
copies and the wait; the way to keep the data on the GPU is an XLA FFI custom call into
:mod:`fastmvn.cuda`'s kernels on JAX's stream, which is not written yet (``docs/jax.md``).
"""

import functools
import inspect
from types import ModuleType
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

import fastmvn

from . import _docs, _gradients, _jit, _large, _table
from ._arguments import bind, check, check_errors
from ._batch import _streamed, chunk_count, working_dtype

_xla: ModuleType | None
try:
    from . import _xla
    if not all(hasattr(jax.ffi, name) for name in ("register_ffi_target", "pycapsule", "ffi_lowering")):
        raise ImportError
except (ImportError, AttributeError):  # a JAX without the FFI
    _xla = None

_FUSED = ", ".join(name for name, entry in _table.FUNCTIONS.items() if entry.gradient)


class _Traced:
    """How :func:`fastmvn._arguments.bind` reads JAX arrays and tracers: described to the checks
    by shape and dtype, which is all they read (a factor's transpose has its shape)."""

    @staticmethod
    def array(value):
        return None if value is None else jnp.asarray(value)

    @staticmethod
    def transposed(array):
        return array


def _host(function, present, errors, lower, grad, *arrays):
    """The CPU function of the table's ``function`` on the host ``arrays`` (those of the
    arguments marked in ``present``, the others None): its value, or with ``grad`` (the names of
    the arguments to differentiate) the value and those arguments' per-item gradients."""
    arrays = iter(arrays)
    values = [np.asarray(next(arrays)) if given else None for given in present]
    keywords = {"lower": lower} if function.lower else {}
    if not grad:
        return np.asarray(getattr(fastmvn, function.name)(*values, errors=errors, **keywords))
    value, grads = _gradients.value_and_grad(function, values, errors, reduce=False, wrt=grad, **keywords)
    return np.asarray(value), tuple(g for g, p in zip(grads, function.params) if p.name in grad)


# The callback. jax.pure_callback hands its function CPU jax.Arrays: it puts each NumPy array
# that XLA's callback handler gives it (a copy of XLA's buffer) on the CPU device first,
# another copy into new memory unless the array is 64-byte aligned, which NumPy's large
# arrays are not. For a million 4x4 float32 pairs that copy took longer than the KL itself.
# _callback_p is pure_callback_p without it, lowered the same way (JAX's
# emit_python_callback, not a public API); where this JAX lacks it, jax.pure_callback is used.
try:
    from jax._src import callback as _jax_callback
    from jax.extend.core import Primitive
    from jax.interpreters import batching, mlir

    _emit, _op_sharding = _jax_callback.emit_python_callback, _jax_callback._callback_op_sharding
    if not {"has_side_effect", "returns_token", "sharding"} <= set(inspect.signature(_emit).parameters):
        raise ImportError
except (ImportError, AttributeError):  # another JAX
    _callback_p = None
else:
    _callback_p = Primitive("fastmvn_callback")
    _callback_p.multiple_results = True
    _callback_p.def_impl(lambda *arrays, host, result_avals, kernel:
                         [jnp.asarray(r) for r in host(*map(np.asarray, arrays))])
    _callback_p.def_abstract_eval(lambda *avals, host, result_avals, kernel: result_avals)

    def _lower(ctx, *operands, host, result_avals, kernel):
        target = _ffi_target(ctx, kernel)
        if target is not None:
            name, chunks = target
            ffi = ctx.replace(avals_out=[*ctx.avals_out, jax.core.ShapedArray((chunks,), np.int64)])
            return jax.ffi.ffi_lowering(name)(ffi, *operands)[:1]
        sharding = _op_sharding(ctx.module_context.axis_context, None, ctx.avals_out)
        results, _, _ = _emit(ctx, host, None, list(operands), ctx.avals_in, ctx.avals_out,
                              has_side_effect=False, returns_token=False, sharding=sharding)
        return results

    def _batch(arrays, axes, *, host, result_avals, kernel):
        """vmap_method="expand_dims": the mapped axis in front, of size 1 where not mapped."""
        size = next(a.shape[d] for a, d in zip(arrays, axes) if d is not None)
        arrays = [a[None] if d is None else jnp.moveaxis(a, d, 0) for a, d in zip(arrays, axes)]
        avals = tuple(aval.update(shape=(size,) + aval.shape) for aval in result_avals)
        return _callback_p.bind(*arrays, host=host, result_avals=avals, kernel=kernel), (0,) * len(avals)

    mlir.register_lowering(_callback_p, _lower, cacheable=False)
    batching.primitive_batchers[_callback_p] = _batch


def _ffi_target(ctx, kernel):
    """The FFI target (``fastmvn._xla``) that runs ``kernel`` (the table function's name,
    the kernel mode, ``errors``) for the lowering context ``ctx``, and the number of chunks of
    its batch; None where the callback runs it instead: not on the CPU, an argument of another
    dtype than the result's or broadcast along some batch axes only, no items, large items
    (``fastmvn._large``; not those of diagonal covariances, which the handler streams as
    :mod:`fastmvn._batch` does), a parallel launch that compiled code cannot take turns on, or
    a handler that could not be compiled or registered."""
    if kernel is None or tuple(ctx.module_context.platforms) != ("cpu",):
        return None
    name, mode, errors = kernel
    value, = ctx.avals_out
    batch_shape, dtype = value.shape, np.dtype(value.dtype)
    count = int(np.prod(batch_shape, dtype=np.int64))
    if dtype not in (np.float32, np.float64) or count == 0:
        return None
    slots = []
    for aval in ctx.avals_in:
        core = aval.shape[len(batch_shape):]
        if (aval.dtype != dtype or len(core) not in (1, 2)
                or aval.shape[:len(batch_shape)] not in (batch_shape, (1,) * len(batch_shape))):
            return None
        slots.append(np.broadcast_to(np.empty((), dtype), (core + (1,))[:2]))
    streamed = _streamed(mode, slots, count)
    if not streamed and _large.chosen(slots, count):
        return None
    chunks = chunk_count(slots, count, streamed)
    if chunks > 1 and _jit.threading_layer() == "workqueue" and _jit._LAUNCH.address is None:
        return None
    target = _xla.target((name, mode, dtype.char, working_dtype(slots).char, chunks > 1, errors, streamed))
    return None if target is None else (target, chunks)


def _callback(host, result, arrays, kernel=None):
    """``host`` (returning NumPy arrays of the structure and ``jax.ShapeDtypeStruct`` s of
    ``result``) of the JAX ``arrays`` inside the computation, on the NumPy arrays XLA hands it;
    or, where :func:`_ffi_target` serves ``kernel`` at the shapes lowered, the FFI handler."""
    if _callback_p is None:
        return jax.pure_callback(host, result, *arrays, vmap_method="expand_dims")
    leaves, tree = jax.tree_util.tree_flatten(result)

    def flat(*values):
        return tuple(np.asarray(r) for r in jax.tree_util.tree_leaves(host(*values)))

    avals = tuple(jax.core.ShapedArray(leaf.shape, leaf.dtype) for leaf in leaves)
    return jax.tree_util.tree_unflatten(tree, _callback_p.bind(*arrays, host=flat, result_avals=avals, kernel=kernel))


@functools.lru_cache(maxsize=256)
def _differentiable(function, present, errors, lower, shapes, cores, dtype, kernel):
    """The table's ``function`` as a :func:`jax.custom_vjp` of the arrays of the arguments marked
    in ``present`` (of ``shapes``, whose last axes are ``cores``, all of ``dtype``): one host
    callback for the value, or for the value and the gradients (:func:`_host`); the value
    through the FFI handler of ``kernel`` where :func:`_ffi_target` serves it."""
    names = [p.name for p, given in zip(function.params, present) if given]
    batch_shape = np.broadcast_shapes(*(shape[:len(shape) - len(core)] for shape, core in zip(shapes, cores)))

    def callback(arrays, grad):
        value = jax.ShapeDtypeStruct(batch_shape, dtype)
        result = value if not grad else (value, tuple(jax.ShapeDtypeStruct(batch_shape + cores[names.index(n)], dtype)
                                                      for n in grad))
        host = functools.partial(_host, function, present, errors, lower, grad)
        return _callback(host, result, arrays, None if grad else kernel)

    @jax.custom_vjp
    def evaluate(*arrays):
        return callback(arrays, ())

    def forward(*primals):
        if not function.gradient and any(primal.perturbed for primal in primals):
            raise NotImplementedError(f"fastmvn.jax.{function.name} has no gradient: fastmvn has fused gradients "
                                      f"for {_FUSED} only")
        grad = tuple(name for name, primal in zip(names, primals) if primal.perturbed)
        arrays = [primal.value for primal in primals]
        if not grad:
            return callback(arrays, ()), (None,) * len(names)
        value, grads = callback(arrays, grad)
        grads = dict(zip(grad, grads))
        return value, tuple(grads.get(name) for name in names)

    def backward(per_item, cotangent):
        if isinstance(cotangent, jax.custom_derivatives.SymbolicZero):
            return (None,) * len(names)
        result = []
        for grad, shape, core in zip(per_item, shapes, cores):
            if grad is None:
                result.append(None)
                continue
            weighted = grad * cotangent.reshape(cotangent.shape + (1,) * len(core))
            axes = tuple(k for k, size in enumerate(shape) if size == 1 and weighted.shape[k] != 1)
            result.append(weighted.sum(axis=axes, keepdims=True) if axes else weighted)
        return tuple(result)

    evaluate.defvjp(forward, backward, symbolic_zeros=True)
    return evaluate


def _apply(function, values, errors="raise", lower=True):
    """The table's ``function`` of ``values`` (JAX arrays, array_likes or None) through
    :func:`_differentiable`, or at once on the CPU where no value is traced."""
    check_errors(errors)
    args, mode = bind(function, values, lower=lower, device=_Traced)
    dtype, batch_shape = check(args)
    dtype = jax.dtypes.canonicalize_dtype(dtype)
    present = tuple(value is not None for value in values)
    given = [arg for arg in args if not arg.default]
    arrays = [jnp.asarray(arg.array, dtype) for arg in given]
    if not any(isinstance(a, jax.core.Tracer) for a in arrays):
        return jnp.asarray(_host(function, present, errors, lower, (), *arrays))
    arrays = [a.reshape((1,) * (len(batch_shape) - len(arg.batch_shape)) + a.shape) for a, arg in zip(arrays, given)]
    shapes, cores = tuple(a.shape for a in arrays), tuple(arg.core_shape for arg in given)
    served = _xla is not None and function.mode is not None and lower is True and not any(a.default for a in args)
    kernel = (function.name, mode, errors) if served else None
    return _differentiable(function, present, errors, lower, shapes, cores, dtype, kernel)(*arrays)


# The public functions: one per entry of the table.

_RETURNS = {
    _table.COV: " Its gradient with respect to a covariance is symmetric (:func:`fastmvn.kl_value_and_grad` says "
                "exactly which).",
    _table.CHOL: " Its gradient with respect to a factor is lower triangular (the entries above the diagonal are "
                 "not read), or upper triangular for an upper factor.",
    _table.VAR: "",
}


def _example(function):
    """A doctest for the table's ``function`` that runs: under :func:`jax.jit`, equal to the CPU
    function's result (and, with a gradient, under :func:`jax.grad`)."""
    lines = [">>> import jax, jax.numpy as jnp, numpy as np, fastmvn as fm, fastmvn.jax as fmj",
             ">>> from fastmvn import _bench",
             f">>> args = [jnp.asarray(a, jnp.float32) for a in _bench.random_inputs({function.name!r}, 3, 3, 2)]",
             f">>> value = jax.jit(fmj.{function.name})(*args)",
             ">>> value.dtype, value.shape",
             "(dtype('float32'), (3,))",
             f">>> bool(np.all(value == fm.{function.name}(*(np.asarray(a) for a in args))))   # bit for bit",
             "True"]
    if function.gradient:
        first = function.params[1].name
        lines += [f">>> g = jax.grad(lambda *a: fmj.{function.name}(*a).sum(), argnums=1)(*args)",
                  f">>> _, grads = fm.{function.gradient_name}(*(np.asarray(a) for a in args), wrt={first!r})",
                  ">>> bool(np.allclose(g, grads[1], rtol=1e-5))",
                  "True"]
    else:
        lines += [f">>> jax.grad(lambda *a: fmj.{function.name}(*a).sum())(*args)  # doctest: +ELLIPSIS",
                  "Traceback (most recent call last):",
                  "    ...",
                  f"NotImplementedError: fastmvn.jax.{function.name} has no gradient: ..."]
    return "\n".join(lines)


def _define(function):
    keywords = [_docs.KEYWORDS["errors"]] + ([_docs.KEYWORDS["lower"]] if function.lower else [])
    differentiable = (f"differentiable with respect to every array argument (:func:`jax.grad`: one callback "
                      f"computes the value and the gradients, :func:`fastmvn.{function.gradient_name}`)"
                      if function.gradient else "not differentiable (no fused gradient yet)")
    where = ("for JAX arrays.",
             f"The same as :func:`fastmvn.{function.name}` on JAX arrays, computed on the host by the CPU kernels "
             f"(under :func:`jax.jit` on the CPU, an XLA FFI call into them where the layout allows; else a host "
             f"callback, as :func:`jax.pure_callback`): composes with :func:`jax.jit` and "
             f":func:`jax.vmap`, and is "
             f"{differentiable}. ``errors`` and ``lower`` are static: under :func:`jax.jit` name them in "
             "``static_argnames`` or fix them in a closure.")
    kind = function.params[1].kind if function.gradient else None
    returns = (f"{function.name} : (...) Array",
               "The results over the broadcast batch shape: float32 when every input is float32, float64 "
               f"otherwise (float32 unless ``jax_enable_x64`` is on).{_RETURNS.get(kind, '')}")
    raises = [("numpy.linalg.LinAlgError, ValueError, TypeError",
               f"As in :func:`fastmvn.{function.name}`, naming the argument and the batch index; inside "
               ":func:`jax.jit` a bad item's error comes as a ``jax.errors.JaxRuntimeError`` holding that message.")]
    if not function.gradient:
        raises.append(("NotImplementedError", ":func:`jax.grad` (or any reverse-mode derivative) through it."))
    doc = _docs.backend(function.name, where, "Array", keywords, returns, raises, _example(function))
    defaults = {"errors": "raise"} | ({"lower": True} if function.lower else {})
    return _table.define(function, _apply, defaults, doc, __name__)


if TYPE_CHECKING:
    from typing import Any

    def __getattr__(name: str) -> Any:
        """The functions that ``_table.publish`` generates below, unseen by a type checker: each is Any to it."""
        raise AttributeError(name)


__all__ = []
_table.publish(globals(), "jax", lambda entry: [_define(entry)])
