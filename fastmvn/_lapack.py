"""The BLAS and LAPACK routines of the large-item plan (:mod:`fastmvn._large`), called through
ctypes at the addresses SciPy exports (``scipy.linalg.cython_blas``, ``cython_lapack``).

They are SciPy's own routines with the calling conventions of ``scipy.linalg.blas`` and
``scipy.linalg.lapack`` for the arguments used here (Fortran-ordered float64 arrays in, new
arrays out unless a result is written over an argument), with one difference that matters: a
ctypes call releases the interpreter lock for as long as the routine runs, and SciPy's
wrappers of the BLAS do not. Items computed on several Python threads (one BLAS thread each)
therefore run their factorisations and solves at once.
"""

import ctypes
import functools

import numpy as np

__all__ = ["ddot", "dgemm", "dpotrf", "dpotri", "dsyrk", "dtrmm", "dtrsm"]

_P = ctypes.c_void_p


@functools.cache
def _routine(module_name, name, result=None):
    """The routine ``name`` of SciPy's ``module_name`` (``cython_blas``, ``cython_lapack``) as a
    ctypes function of pointer arguments returning ``result``."""
    import importlib

    capsule = importlib.import_module(f"scipy.linalg.{module_name}").__pyx_capi__[name]
    get_name, get_pointer = ctypes.pythonapi.PyCapsule_GetName, ctypes.pythonapi.PyCapsule_GetPointer
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    address = get_pointer(capsule, get_name(capsule))
    return ctypes.CFUNCTYPE(result)(address)


def _blas(name, *args, result=None):
    return _routine("cython_blas", name, result)(*args)


def _lapack(name, *args):
    return _routine("cython_lapack", name)(*args)


def _char(flag, yes, no):
    return ctypes.c_char_p(yes if flag else no)


def _int(value):
    return ctypes.byref(ctypes.c_int(int(value)))


def _double(value):
    return ctypes.byref(ctypes.c_double(float(value)))


def _fortran(a, copy):
    """``a`` as a Fortran-ordered float64 array: a new one if ``copy``, else ``a`` where it is one."""
    return np.array(a, dtype=np.float64, order="F", copy=True if copy else None)


def _data(a):
    return _P(a.ctypes.data)


def dpotrf(a, lower=0, clean=1):
    """The Cholesky factor of ``a`` in the triangle ``lower`` chooses (the other zero where
    ``clean``) and LAPACK's ``info``, as ``scipy.linalg.lapack.dpotrf``."""
    c = _fortran(a, copy=True)
    n, info = c.shape[0], ctypes.c_int(0)
    _lapack("dpotrf", _char(lower, b"L", b"U"), _int(n), _data(c), _int(max(n, 1)), ctypes.byref(info))
    if clean:  # in place, so that the factor stays Fortran-ordered
        _clean_triangle()(c, bool(lower))
    return c, info.value


@functools.cache
def _clean_triangle():
    """A compiled ``clean(c, lower)`` that zeroes the strict upper triangle of ``c`` (``lower``)
    or its strict lower one, in place: one pass in column order, where NumPy took one call per
    column (a tenth of a millisecond for four 32×32 factors, more than LAPACK's work)."""
    import numba

    from ._jit import OPTIONS, _cached

    def clean(c, lower):
        n = c.shape[0]
        for j in range(n):
            for i in range(j) if lower else range(j + 1, n):
                c[i, j] = 0.0

    return _cached(numba.njit(**OPTIONS)(clean))


def dpotri(c, lower=0):
    """The inverse of ``C Cᵀ``/``Cᵀ C`` from its Cholesky factor ``c``, in the same triangle (the
    other as ``c`` had it), and ``info``, as ``scipy.linalg.lapack.dpotri``."""
    inv = _fortran(c, copy=True)
    n, info = inv.shape[0], ctypes.c_int(0)
    _lapack("dpotri", _char(lower, b"L", b"U"), _int(n), _data(inv), _int(max(n, 1)), ctypes.byref(info))
    return inv, info.value


def _triangular(name, alpha, a, b, side, lower, trans_a):
    a, b = _fortran(a, copy=False), _fortran(b, copy=True)
    m, n = b.shape
    _blas(name, _char(side, b"R", b"L"), _char(lower, b"L", b"U"), _char(trans_a, b"T", b"N"), ctypes.c_char_p(b"N"),
          _int(m), _int(n), _double(alpha), _data(a), _int(max(a.shape[0], 1)), _data(b), _int(max(m, 1)))
    return b


def dtrsm(alpha, a, b, side=0, lower=0, trans_a=0):
    """``alpha·op(a)⁻¹ b`` (``side=0``) or ``alpha·b op(a)⁻¹`` (``side=1``) for triangular ``a``,
    as ``scipy.linalg.blas.dtrsm``."""
    return _triangular("dtrsm", alpha, a, b, side, lower, trans_a)


def dtrmm(alpha, a, b, side=0, lower=0, trans_a=0):
    """``alpha·op(a) b`` (``side=0``) or ``alpha·b op(a)`` (``side=1``) for triangular ``a``, as
    ``scipy.linalg.blas.dtrmm``."""
    return _triangular("dtrmm", alpha, a, b, side, lower, trans_a)


def dsyrk(alpha, a, beta=0.0, c=None, trans=0, lower=0, overwrite_c=0):
    """``alpha·a aᵀ + beta·c`` (``aᵀ a`` where ``trans``) in one triangle, as
    ``scipy.linalg.blas.dsyrk``."""
    a = _fortran(a, copy=False)
    n, k = (a.shape[1], a.shape[0]) if trans else a.shape
    c = np.zeros((n, n), order="F") if c is None else _fortran(c, copy=not overwrite_c)
    _blas("dsyrk", _char(lower, b"L", b"U"), _char(trans, b"T", b"N"), _int(n), _int(k), _double(alpha), _data(a),
          _int(max(a.shape[0], 1)), _double(beta), _data(c), _int(max(n, 1)))
    return c


def dgemm(alpha, a, b, trans_a=0):
    """``alpha·op(a) b``, as ``scipy.linalg.blas.dgemm``."""
    a, b = _fortran(a, copy=False), _fortran(b, copy=False)
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    n = b.shape[1]
    c = np.zeros((m, n), order="F")
    _blas("dgemm", _char(trans_a, b"T", b"N"), ctypes.c_char_p(b"N"), _int(m), _int(n), _int(k), _double(alpha),
          _data(a), _int(max(a.shape[0], 1)), _data(b), _int(max(b.shape[0], 1)), _double(0.0), _data(c),
          _int(max(m, 1)))
    return c


def ddot(x, y):
    """``Σ xᵢ yᵢ`` of two contiguous float64 vectors, as ``scipy.linalg.blas.ddot``."""
    x, y = np.ascontiguousarray(x, dtype=np.float64), np.ascontiguousarray(y, dtype=np.float64)
    return _blas("ddot", _int(x.size), _data(x), _int(1), _data(y), _int(1), result=ctypes.c_double)
