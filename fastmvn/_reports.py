"""The error reports of every frontend: which argument of a failing item is wrong, and why.

The kernels only say which item failed first (a flat batch index). :func:`diagnose` looks
at that one item again, on the host and in NumPy, and names the first argument that
contains NaN or infinity, fails its positive-definiteness condition (a Cholesky
factorisation by the kernels' own rule), or else reports an overflow of the result.
"""

import numpy as np
from numpy.linalg import LinAlgError

from ._arguments import CHOL, COV, VAR, where

__all__ = ["diagnose", "batch_index"]


def batch_index(flat, batch_shape):
    """The batch index, a tuple of ints, of the item at ``flat`` in C order over ``batch_shape``."""
    return tuple(int(i) for i in np.unravel_index(flat, batch_shape))


def _read_part(kind, item):
    """The entries the kernels read: the lower triangle of a covariance or a factor."""
    return item[np.tril_indices(item.shape[0])] if kind in (COV, CHOL) else item


def diagnose(args, items, index, work):
    """The exception for the failing item at batch ``index``: ``items`` holds its value of each
    of ``args`` (an ``(r, c)`` array, variances as ``(n, 1)``), ``work`` is the dtype the
    kernels computed it in. Non-finite input first, then a failed positive-definiteness
    condition (a Cholesky factorisation in ``work``), else an overflow of the result."""
    from .kernels import cholesky

    items = [np.asarray(item, dtype=np.float64) for item in items]
    at = where(index)
    for arg, item in zip(args, items):
        if not np.isfinite(_read_part(arg.kind, item)).all():
            return ValueError(f"{arg.name} contains NaN or infinity{at}")
    cholesky = getattr(cholesky, "py_func", cholesky)  # a plain function under NUMBA_DISABLE_JIT=1
    for arg, item in zip(args, items):
        size = item.shape[0]
        if arg.kind == COV:
            reciprocals = np.empty((size, 1), work)
            cholesky(item[:, :, None].astype(work), reciprocals, 1, size)
            if np.isnan(reciprocals).any():
                return LinAlgError(f"{arg.name} is not positive definite (Cholesky failed){at}")
        elif arg.kind == CHOL and not (np.diagonal(item) > 0).all():
            return LinAlgError(f"{arg.name} is not a Cholesky factor: its diagonal must be positive{at}")
        elif arg.kind == VAR and not (item > 0).all():
            return LinAlgError(f"{arg.name} must be positive{at}")
    return FloatingPointError(f"the result overflowed{at}")
