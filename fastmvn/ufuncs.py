"""Generalized NumPy ufuncs of fastmvn's kernels: ``kl``, ``kl_chol``, ``kl_diag``, ``logdet``,
``trace_solve``, ``mahalanobis``, ``mahalanobis_chol``, ``logpdf``, ``logpdf_chol`` and ``logpdf_diag``.

Each is a generalized ufunc with a core signature (a Numba ``GUFunc``, called as a NumPy
ufunc, whose ``.ufunc`` is the ``numpy.ufunc``), built with Numba's ``guvectorize`` from the
per-item kernels that the batch functions of :mod:`fastmvn` run (one item in one lane, as the
CUDA kernels run them): ``kl`` has the signature ``(n,p),(n,n),(p,p),(n,p),(n,n),(p,p)->()``,
``kl_diag`` ``(n,p),(n),(p),(n,p),(n),(p)->()``. Everything a gufunc does works: broadcasting
over the leading axes, ``out=``, ``axes=``, ``dask.array.apply_gufunc`` and
``xarray.apply_ufunc``, and calls from a user's ``numba.njit`` function (there Numba wants
the output passed as the last argument: ``kl(m1, u1, v1, m2, u2, v2, out)``).

They differ from the functions of :mod:`fastmvn` in these ways:

* every argument is required: where :func:`fastmvn.kl` takes None for a standard second
  distribution, pass zeros and identities (the ufunc computes the full KL);
* a failing item (a covariance that is not positive definite, a non-positive variance) gives
  NaN, as ``errors="nan"`` does; nothing is raised, and no argument is checked beyond its
  core shape. A failure may set the floating-point "invalid" flag (a square root of a
  negative pivot), on which NumPy warns (``RuntimeWarning: invalid value encountered``) as
  for ``np.sqrt(-1.0)``: ``np.errstate(invalid="ignore")`` silences it;
* factors are lower triangular (their upper triangle is not read): for upper factors pass
  their transposes, ``np.swapaxes(r, -1, -2)``;
* the loops are float64 and float32 (NumPy casts other inputs by its ufunc rules):
  float32 inputs give float32 results, computed as :mod:`fastmvn` computes float32 data,
  in float32 arithmetic for matrices up to 16×16 and in float64 for larger ones;
* each item is one inner call, on one thread: the batch functions of :mod:`fastmvn`
  compute many items side by side in vector registers, on every core, and are about ten
  times faster on a million 4×4 items (``docs/ufuncs.md``). Use the ufuncs where a ufunc is
  what the caller takes, or inside Numba code.

Importing this module imports neither Numba nor any kernel; each ufunc is compiled (or loaded
from fastmvn's on-disk kernel cache) when it is first used, for both dtypes.

Examples
--------
>>> import numpy as np, fastmvn.ufuncs as fmu
>>> mean = np.zeros((3, 2, 2))
>>> fmu.kl(mean, np.eye(2), np.eye(2), mean + 1, np.eye(2), np.eye(2))   # ½‖M2 − M1‖² = 2
array([2., 2., 2.])
>>> with np.errstate(invalid="ignore"):
...     print(fmu.logdet(np.array([np.eye(2), -np.eye(2)])))               # the second fails
[ 0. nan]
"""

import functools
from typing import Any

from . import _docs, _table

#: The ufuncs: one per function of the table with a kernel of its own.
__all__ = [name for name, entry in _table.FUNCTIONS.items() if entry.mode is not None]

_EXAMPLES = {
    "kl": """
>>> import numpy as np, fastmvn.ufuncs as fmu
>>> mean = np.zeros((3, 2, 2))
>>> fmu.kl(mean, np.eye(2), np.eye(2), mean + 1, np.eye(2), np.eye(2))   # ½‖M2 − M1‖² = 2
array([2., 2., 2.])
""",
    "kl_chol": """
>>> import numpy as np, fastmvn.ufuncs as fmu
>>> one = np.ones((1, 1))
>>> print(f"{fmu.kl_chol(0 * one, 2 * one, one, 0 * one, one, one):.6f}")  # ½(l² − 1 − 2 log l), l = 2
0.806853
""",
    "kl_diag": """
>>> import numpy as np, fastmvn.ufuncs as fmu
>>> zeros = np.zeros((2, 3))
>>> kl = fmu.kl_diag(zeros, np.ones(2), np.ones(3), zeros, 2 * np.ones(2), np.ones(3))
>>> print(f"{kl:.6f}")                                                    # ½(3 − 6 + 3 log 4)
0.579442
""",
    "logdet": """
>>> import numpy as np, fastmvn.ufuncs as fmu
>>> with np.errstate(invalid="ignore"):                                       # the last fails
...     print(fmu.logdet(np.array([2 * np.eye(2), np.diag([4.0, 1.0]), -np.eye(2)])))
[1.38629436 1.38629436        nan]
""",
    "trace_solve": """
>>> import numpy as np, fastmvn.ufuncs as fmu
>>> print(f"{fmu.trace_solve(2 * np.eye(2), np.array([[1.0, 2.0], [3.0, 4.0]])):.6f}")   # tr(b) / 2
2.500000
""",
    "mahalanobis": """
>>> import numpy as np, fastmvn.ufuncs as fmu
>>> fmu.mahalanobis(np.ones((4, 2, 3)), np.zeros((2, 3)), 2 * np.eye(2), np.eye(3))   # 6 / 2
array([3., 3., 3., 3.])
""",
    "mahalanobis_chol": """
>>> import numpy as np, fastmvn.ufuncs as fmu
>>> print(fmu.mahalanobis_chol(np.ones((2, 3)), np.zeros((2, 3)), 2 * np.eye(2), np.eye(3)))   # 6 / 4
1.5
""",
    "logpdf": """
>>> import numpy as np, fastmvn.ufuncs as fmu
>>> print(f"{fmu.logpdf(np.zeros((1, 1)), np.zeros((1, 1)), np.ones((1, 1)), np.ones((1, 1))):.6f}")  # −½ log 2π
-0.918939
""",
    "logpdf_chol": """
>>> import numpy as np, fastmvn.ufuncs as fmu
>>> x = np.zeros((2, 1, 1), np.float32)
>>> fmu.logpdf_chol(x, x, np.ones((1, 1), np.float32), np.ones((1, 1), np.float32))   # float32 in, float32 out
array([-0.9189385, -0.9189385], dtype=float32)
""",
    "logpdf_diag": """
>>> import numpy as np, fastmvn.ufuncs as fmu
>>> zeros = np.zeros((2, 3))
>>> print(f"{fmu.logpdf_diag(zeros, zeros, np.ones(2), np.ones(3)):.6f}")   # −3 log 2π
-5.513631
""",
}


def _doc(entry):
    """The docstring of the ufunc of the table's ``entry``."""
    factors = " Factors are lower triangular; their upper triangle is not read." if entry.lower else ""
    where = ("a generalized NumPy ufunc.",
             f"The same as :func:`fastmvn.{entry.name}` as a ufunc of the core signature ``{_layout(entry)}``: "
             "every argument is required and positional (a ufunc's inputs have no names), and a failing item "
             "gives NaN (see :mod:`fastmvn.ufuncs`)." + factors)
    keywords = [("out : ndarray, optional", "Array of the broadcast batch shape to write into, as for any ufunc."),
                ("**kwargs", "The other keywords of a generalized ufunc: ``axes``, ``casting``, ``dtype`` …")]
    returns = (f"{entry.name} : (...) ndarray",
               "The results over the broadcast batch shape (a NumPy scalar for a single item): float32 for "
               "float32 inputs, float64 otherwise; NaN for a failing item.")
    return _docs.backend(entry.name, where, "array_like", keywords, returns, (), _EXAMPLES[entry.name],
                         required=True)


def _layout(entry):
    """The core signature of the ufunc of ``entry``: ``"(n,p),(n,n),(p,p)->()"`` …"""
    return ",".join("(" + ",".join(param.axes) + ")" for param in entry.params) + "->()"


#: The ufuncs' docstrings, where doctest finds their examples without compiling them.
__test__ = {name: _doc(_table.FUNCTIONS[name]) for name in __all__}


@functools.cache
def _ufunc(name):
    """The ufunc ``name``, compiled (or loaded from the on-disk cache) on first use."""
    from . import _ufunc_kernels

    entry = _table.FUNCTIONS[name]
    return _ufunc_kernels.gufunc(name, __test__[name], entry.mode, _layout(entry))


def __getattr__(name: str) -> Any:
    """The ufunc ``name``, built on first access (PEP 562)."""
    if name in __all__:
        return _ufunc(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
