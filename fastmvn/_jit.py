"""Compilation options for every Numba kernel in fastmvn, set in one place.

``FASTMVN_CACHE=0`` switches the on-disk cache off (it is on by default, so a new
process loads compiled kernels instead of compiling them).  ``NUMBA_DISABLE_JIT=1``
runs every kernel as plain Python, which tells a kernel bug from a compiler quirk.
"""

import contextlib
import os
import threading

import numba

CACHE = os.environ.get("FASTMVN_CACHE", "1").lower() not in ("0", "false", "no", "off")

# No ``nnan``/``ninf``: the kernels detect failures through NaN and infinity.
FASTMATH = {"contract", "reassoc", "nsz", "arcp"}

OPTIONS = dict(cache=CACHE, error_model="numpy", fastmath=FASTMATH, nogil=True)


def item(func=None, *, inline=False):
    """Compile a per-item kernel for the CPU, lazily.

    LLVM inlines small kernels into their callers by itself; ``inline=True`` inlines at
    Numba's level as well, for a kernel with so many array arguments that passing them
    costs more than a small item's arithmetic.
    """
    if func is None:
        return lambda func: item(func, inline=inline)
    return numba.njit(inline="always" if inline else "never", **OPTIONS)(func)


def batch(signatures):
    """Compile a batch driver for the CPU with explicit signatures, multi-threaded."""
    return numba.njit(signatures, parallel=True, **OPTIONS)


# Numba's workqueue threading layer (used where neither TBB nor OpenMP is available) aborts
# the process when two threads launch parallel kernels at once; until Numba has picked its
# layer, at the first launch, launches take turns as well.
_LAUNCH = threading.Lock()


def _launch_needs_lock():
    try:
        return numba.threading_layer() == "workqueue"
    except ValueError:
        return True


@contextlib.contextmanager
def launching():
    """Hold around every call of a parallel batch driver: safe from any number of threads."""
    if _launch_needs_lock():
        with _LAUNCH:
            yield
    else:
        yield
