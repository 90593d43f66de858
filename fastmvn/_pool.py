"""A pool of large buffers: the outputs of the value-and-gradient functions, and the scratch of
large items (``fastmvn._large._arena``).

A training loop asks for gradients of the same shapes at every step and drops them before
the next. Each of them is new memory to NumPy, and at these sizes new memory is new pages
from the operating system, which zeroes every one before the kernel writes it: for the
gradients of a million 4×4 pairs (768 MB) that costs about as much as the KL itself. The
pool keeps the buffers of dropped gradients and hands them out again, so a loop pays for
new pages once.

An array from :func:`empty` is a writeable NumPy array (a view: it does not own its memory)
over a buffer held by a :class:`_Lease`, which its chain of ``base`` arrays keeps alive. The
buffer returns to the pool only when the lease dies, when no array made from it (a view, a
slice, a tensor sharing its memory) is left. The pool keeps at most :func:`set_buffer_pool`
bytes (``FASTMVN_POOL_BYTES``, 1 GiB by default) of buffers nobody uses, the most recently
returned: the oldest go first. Arrays under ``fastmvn._config.MIN_BYTES`` come from NumPy as usual.
"""

import collections
import decimal
import math
import os
import re
import threading
import warnings

import numpy as np

from . import _config

#: The alignment of a pooled array's first byte: a 4×4 float64 item fills two whole cache lines.
ALIGN = 64


#: The default of :func:`set_buffer_pool`'s limit.
DEFAULT_LIMIT = 1 << 30

# Units as in GNU coreutils (dd, sort -S): a bare letter and an ``iB`` are powers of 1024, a
# ``B`` after a letter powers of 1000; case is ignored.
_UNITS = {"": 1, "b": 1} | {letter + suffix: base ** power for power, letter in enumerate("kmgt", 1)
                            for suffix, base in (("", 1024), ("ib", 1024), ("b", 1000))}
_SIZE = re.compile(r"\s*([0-9._eE+-]+)\s*([a-zA-Z]*)\s*")


def _parse_bytes(text):
    """The bytes that ``text`` states (``"1073741824"``, ``"1e9"``, ``"512M"``, ``"1 GiB"``,
    ``"100MB"``), or None where it states no size below 2⁶³: a number of bytes without a unit
    must be whole; one with a unit is rounded down to whole bytes."""
    match = _SIZE.fullmatch(text)
    unit = None if match is None else _UNITS.get(match[2].lower())
    if unit is None:
        return None
    try:
        number = decimal.Decimal(match[1])
    except decimal.InvalidOperation:
        return None
    if not (number.is_finite() and 0 <= number < 1 << 63) or (unit == 1 and number != number.to_integral_value()):
        return None
    size = number * unit
    return int(size) if size < 1 << 63 else None


def _default_limit():
    """The pool's limit at import: ``FASTMVN_POOL_BYTES`` (empty: the default), or with a
    warning the default where that states no size, so that a typo never stops an import."""
    text = os.environ.get("FASTMVN_POOL_BYTES", "")
    if not text.strip():
        return DEFAULT_LIMIT
    limit = _parse_bytes(text)
    if limit is None:
        warnings.warn(f"FASTMVN_POOL_BYTES={text!r} is not a size in bytes ≥ 0 (such as 1073741824, 1e9, "
                      "512M, 1GiB or 100MB); the pool keeps the default, 1 GiB", RuntimeWarning, stacklevel=2)
        return DEFAULT_LIMIT
    return limit


class _Pool:
    """Idle buffers, oldest first, ``held`` bytes of them (``ALIGN`` more than their arrays
    each). A lease gives its buffer back from whatever thread drops the last array, possibly
    inside a garbage collection that runs while this thread is in the pool already: hence a
    reentrant lock."""

    def __init__(self, limit):
        self.limit = limit
        self.idle = collections.OrderedDict()  # id(raw) -> raw, in the order they came back
        self.held = 0
        self.lock = threading.RLock()

    def take(self, nbytes):
        """The most recently returned idle buffer of ``nbytes + ALIGN`` bytes, or a new one."""
        size = nbytes + ALIGN
        with self.lock:
            for key in reversed(self.idle):
                if self.idle[key].nbytes == size:
                    self.held -= size
                    return self.idle.pop(key)
        return np.empty(size, np.uint8)

    def give_back(self, raw):
        with self.lock:
            if raw.nbytes <= self.limit:
                self.idle[id(raw)] = raw
                self.held += raw.nbytes
            return self.trim()

    def trim(self):
        """Drop the oldest idle buffers until at most :attr:`limit` bytes are idle; returns
        them, to be freed after the lock is let go."""
        dropped = []
        with self.lock:
            while self.held > self.limit and self.idle:
                _, raw = self.idle.popitem(last=False)
                self.held -= raw.nbytes
                dropped.append(raw)
        return dropped


_POOL = _Pool(_default_limit())


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    # As the logging module does: no thread holds the lock across a fork, and a child starts
    # with a lock of its own.
    os.register_at_fork(before=lambda: _POOL.lock.acquire(), after_in_parent=lambda: _POOL.lock.release(),
                        after_in_child=lambda: setattr(_POOL, "lock", threading.RLock()))


class _Lease:
    """``nbytes`` of a pooled buffer, aligned, exposed through ``__array_interface__``; gives
    the buffer back to the pool when it dies. Not copyable: a copy would give it back twice."""

    __slots__ = ("_pool", "_raw", "__array_interface__")

    def __init__(self, pool, raw, nbytes):
        self._pool = pool
        self._raw = raw
        address = raw.ctypes.data
        self.__array_interface__ = {"shape": (nbytes,), "typestr": "|u1", "version": 3,
                                    "data": (address - address % -ALIGN, False)}

    def __del__(self):
        try:
            self._pool.give_back(self._raw)
        except Exception:  # noqa: BLE001 - at interpreter exit the pool's module may be gone already
            pass

    def __reduce__(self):
        raise TypeError("a pooled buffer's lease cannot be copied or pickled (the arrays over it can)")


def empty(shape, dtype, least=None):
    """An uninitialised writeable array of ``shape`` and ``dtype``, C-contiguous, from the
    pool when it is large (its memory reused once an earlier such array is gone).

    Parameters
    ----------
    shape : tuple of int
    dtype : numpy dtype
    least : int, optional
        Bytes from which the array comes from the pool; ``fastmvn._config.MIN_BYTES`` by default.

    Returns
    -------
    ndarray of ``shape``

    Examples
    --------
    >>> a = empty((1024, 1024), np.float64)
    >>> address = a.ctypes.data
    >>> del a
    >>> empty((1024, 1024), np.float64).ctypes.data == address   # the same memory, no new pages
    True
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    pool = _POOL
    if nbytes < (_config.MIN_BYTES if least is None else least) or nbytes + ALIGN > pool.limit:
        return np.empty(shape, dtype)
    return np.asarray(_Lease(pool, pool.take(nbytes), nbytes)).view(dtype).reshape(shape)


def set_buffer_pool(limit: int) -> int:
    """Set how many bytes of idle buffers fastmvn keeps for reuse; returns the old limit.

    The value-and-gradient functions (and :mod:`fastmvn.torch`) take their gradient arrays
    of 4 MiB and more from a pool: once such an array is gone (and every view of it), its
    memory serves the next call, which then writes memory the process already has instead
    of new pages that the operating system must first zero. Large matrices (a KL from about
    70×70) take the scratch of each call from the same pool: their factors, solves and
    inverses, 7 times an ``n×n`` input for a KL's value and 10 times for its value and
    gradients (which are made in the arrays returned), up to 256 MiB a call. At most ``limit`` bytes of
    buffers that no array uses are kept, the most recently freed; ``0`` keeps none (and
    lets the held ones go). The default, 1 GiB, holds the gradients of a million 4×4 float64
    pairs; a process keeps that much after such a call until it sets a lower limit.

    The environment variable ``FASTMVN_POOL_BYTES``, read at import, sets the limit before
    any call: a number of bytes (``1073741824``, ``1e9``) or a size with a unit, case
    ignored and a space allowed, as in GNU coreutils: ``K``, ``M``, ``G``, ``T`` and
    ``KiB`` … ``TiB`` are powers of 1024, ``KB`` … ``TB`` powers of 1000 (``512M``,
    ``1.5 GiB``, ``100MB``). Empty means the default; anything else warns
    (``RuntimeWarning``) and keeps the default.

    Parameters
    ----------
    limit : int
        Bytes, ``≥ 0``.

    Returns
    -------
    int
        The previous limit.

    Raises
    ------
    ValueError
        ``limit`` is negative, or not an integer (a float, a bool, a string such as ``"1G"``).

    Examples
    --------
    >>> import fastmvn as fm
    >>> previous = fm.set_buffer_pool(0)      # no reuse: every gradient array is new memory
    >>> fm.set_buffer_pool(previous)
    0
    """
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 0:
        raise ValueError(f"limit must be a whole number of bytes ≥ 0; got {limit!r}")
    with _POOL.lock:
        previous, _POOL.limit = _POOL.limit, int(limit)
        dropped = _POOL.trim()
    del dropped  # freed here, outside the lock
    return previous
