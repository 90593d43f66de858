"""The error reports of every frontend: which argument of a failing item is wrong, and why.

The kernels only say which item failed first (a flat batch index). :func:`diagnose` looks
at that one item again, on the host and in NumPy, and names the first argument that
contains NaN or infinity, fails its positive-definiteness condition (a Cholesky
factorisation by the kernels' own rule, in their own arithmetic), or else reports an overflow
of the result.
"""

import numpy as np
from numpy.linalg import LinAlgError

from . import _config
from ._arguments import CHOL, COV, VAR, where

__all__ = ["diagnose", "batch_index", "item_of", "with_batch_axes", "relocated"]


def batch_index(flat, batch_shape):
    """The batch index, a tuple of ints, of the item at ``flat`` in C order over ``batch_shape``."""
    return tuple(int(i) for i in np.unravel_index(flat, batch_shape))


def item_of(array, batch_ndim, index):
    """The item at ``index`` of a broadcast batch shape of ``array``, whose first ``batch_ndim``
    axes are its own batch axes, with those axes kept (each of length one). A call on the
    items of its arguments alone fails as the whole call fails at ``index``, naming the item
    ``(0, …)`` where the failing argument has batch axes, and no index where it has none
    (:func:`relocated` gives that error its index)."""
    own = index[len(index) - batch_ndim:] if batch_ndim else ()
    return array[tuple(slice(0, 1) if size == 1 else slice(i, i + 1) for size, i in zip(array.shape[:batch_ndim], own))]


def with_batch_axes(item, arg):
    """One item of ``arg`` (taken from a slot of the whole batch) with the argument's batch axes,
    each of length one, as :func:`item_of` gives it; a number as it is."""
    return item if np.ndim(item) == 0 else item[(None,) * len(arg.batch_shape)]


def relocated(error, index):
    """``error``, raised by a call on the items at the batch ``index`` alone (:func:`item_of`,
    :func:`with_batch_axes`), as the whole call raises it: naming ``index`` where it names the item ``(0, …)``."""
    message, at_item = str(error), where((0,) * len(index))
    if at_item and message.endswith(at_item):
        message = message[:len(message) - len(at_item)] + where(index)
    return type(error)(message)


def _read_part(kind, item):
    """The entries the kernels read: the lower triangle of a covariance or a factor."""
    return item[np.tril_indices(item.shape[0])] if kind in (COV, CHOL) else item


def diagnose(args, items, index, work):
    """The exception for the failing item at batch ``index``: ``items`` holds its value of each
    of ``args`` (an ``(r, c)`` array, variances as ``(n, 1)``), ``work`` is the dtype the
    kernels computed it in. Non-finite input first, then a failed positive-definiteness
    condition (:func:`_factorises`), else an overflow of the result.

    The message names the batch index, unless the failing argument has no batch axes of its
    own: one matrix that every item shares fails as itself (as the distribution classes report)."""
    items = [np.asarray(item, dtype=np.float64) for item in items]
    for arg, item in zip(args, items):
        if not np.isfinite(_read_part(arg.kind, item)).all():
            return ValueError(f"{arg.name} contains NaN or infinity{_at(arg, index)}")
    lapack = max(item.shape[0] for item in items) >= _config.LAPACK_MIN_SIDE
    for arg, item in zip(args, items):
        if arg.kind == COV and not _factorises(item, work, lapack):
            return LinAlgError(f"{arg.name} is not positive definite (Cholesky failed){_at(arg, index)}")
        if arg.kind == CHOL and not (np.diagonal(item) > 0).all():
            return LinAlgError(f"{arg.name} is not a Cholesky factor: its diagonal must be positive{_at(arg, index)}")
        if arg.kind == VAR and not (item > 0).all():
            return LinAlgError(f"{arg.name} must be positive{_at(arg, index)}")
    return FloatingPointError(f"the result overflowed{where(index)}")


def _at(arg, index):
    """The words that place the item at ``index`` where ``arg`` fails in it: none for an
    argument without batch axes."""
    return where(index if arg.batch_shape else ())


def _factorises(item, work, lapack):
    """Whether the covariance ``item`` passes the kernels' pivot rule in the arithmetic of each
    path that may have computed it: the lanes' compiled factorisation in ``work`` and, where
    the item may be large enough for LAPACK (``lapack``), LAPACK's (:mod:`fastmvn._lapack`).

    A pivot on the floor of the rule passes or fails by the last bits of its sums, so the
    factorisation is run again as the kernels ran it, never in another arithmetic: plain
    Python without the fused multiply-adds of compiled code passed about one singular matrix
    in seven that the kernels rejected."""
    from . import _lapack
    from .kernels import cholesky

    size = item.shape[0]
    factor, reciprocals = np.array(item[:, :, None], dtype=work, order="C"), np.empty((size, 1), work)
    cholesky(factor, reciprocals, 1, size)
    if np.isnan(reciprocals).any():
        return False
    return not lapack or _lapack.cholesky(np.ascontiguousarray(item), np.empty((size, size)))
