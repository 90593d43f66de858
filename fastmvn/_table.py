"""The one description of each batched function of fastmvn.

Every frontend is built from :data:`FUNCTIONS` or iterates it: the CPU functions
(``fastmvn._api``, ``fastmvn._gradients``, ``fastmvn.distributions.functions``) bind their
arguments through it (:func:`fastmvn._arguments.bind`) and take their parameter docs from it
(``fastmvn._docs``); :mod:`fastmvn.cuda`, :mod:`fastmvn.dask`, :mod:`fastmvn.torch` and
:mod:`fastmvn.jax` define one function per entry they serve (the last two differentiate
through the entries' fused gradients); the command line reads the KL entries' argument
names; the benchmarks draw inputs by argument kind. ``tests/test_table.py`` checks that
every entry is served by every backend or is listed in :data:`NOT_SERVED` with the reason.

This module imports only the standard library and :mod:`fastmvn._modes`, so that
``import fastmvn`` stays free of Numba.
"""

import inspect
from dataclasses import dataclass

from . import _modes

# How each kind of argument is read: the kernels read the lower triangle of a covariance or of a
# Cholesky factor, every entry of a mean or a matrix, and variances as vectors.
MEAN, COV, CHOL, VAR, MATRIX = "mean", "cov", "chol", "var", "matrix"


@dataclass(frozen=True)
class Param:
    """One array argument of a batched function.

    ``axes`` names its core axes, one letter each (``"np"``, ``"nn"``, ``"n"``): arguments
    that share a letter must agree on its size. ``standard`` marks an argument that may be
    None, meaning the standard matrix normal's part (a zero mean, an identity covariance,
    unit variances); ``optional`` whether the signature gives it the default None (else it is
    positional and None must be passed). ``doc`` is its line in the Parameters section.
    """

    name: str
    kind: str
    axes: str
    doc: str
    standard: bool = False
    optional: bool = False


@dataclass(frozen=True)
class Function:
    """One batched function: its ``name`` in :mod:`fastmvn`, the kernel ``mode`` that computes
    it (:mod:`fastmvn._modes`; None for a function composed from other kernels), its ``params``
    in order, the faster ``standard_mode`` run when every standard argument is None (or None),
    whether it has a fused gradient (``<name>_value_and_grad``) and whether it takes
    ``lower=`` (its factors may be upper triangular)."""

    name: str
    mode: int | None
    params: tuple
    summary: str
    standard_mode: int | None = None
    gradient: bool = False
    lower: bool = False

    @property
    def names(self):
        return tuple(param.name for param in self.params)

    @property
    def axes(self):
        return tuple(param.axes for param in self.params)

    @property
    def gradient_name(self):
        return f"{self.name}_value_and_grad" if self.gradient else None


def _kl_params(kind, row, col, axes):
    """The six arguments of a KL whose covariances are given as ``kind`` (``row``, ``col``: the
    stems ``"rowcov"``, ``"colcov"`` …; ``axes``: the core axes of a row and a column argument)."""
    first, second = _KL_DOCS[kind]
    return (Param("mean1", MEAN, "np", "Mean of the first distribution."),
            Param(f"{row}1", kind, axes[0], first[0]),
            Param(f"{col}1", kind, axes[1], first[1]),
            Param("mean2", MEAN, "np", "Mean of the second distribution; ``None`` means zero.", True, True),
            Param(f"{row}2", kind, axes[0], second[0], True, True),
            Param(f"{col}2", kind, axes[1], second[1] + " With all three second arguments omitted, the KL is to "
                  "``MN(0, I, I)``, which fastmvn computes by a faster path that needs no solve.", True, True))


_KL_DOCS = {
    COV: (("Row covariance ``U1`` (symmetric positive definite).",
           "Column covariance ``V1`` (symmetric positive definite)."),
          ("Row covariance ``U2``; ``None`` means the identity.",
           "Column covariance ``V2``; ``None`` means the identity.")),
    CHOL: (("Cholesky factor of the row covariance ``U1`` (positive diagonal).",
            "Cholesky factor of the column covariance ``V1`` (positive diagonal)."),
           ("Cholesky factor of ``U2``; ``None`` means the identity.",
            "Cholesky factor of ``V2``; ``None`` means the identity.")),
    VAR: (("Row variances (positive).", "Column variances (positive)."),
          ("Row variances of the second distribution; ``None`` means ones.",
           "Column variances of the second distribution; ``None`` means ones.")),
}


def _density_params(kind):
    """``x``, ``mean`` and the two covariances (``kind`` COV), factors (CHOL) or variances (VAR) of a density."""
    stem, axes = {COV: ("cov", ("nn", "pp")), CHOL: ("chol", ("nn", "pp")), VAR: ("var", ("n", "p"))}[kind]
    row, col = {COV: ("Row covariances ``U`` (symmetric positive definite).",
                      "Column covariances ``V`` (symmetric positive definite)."),
                CHOL: ("Cholesky factors of the row covariances (positive diagonal).",
                       "Cholesky factors of the column covariances (positive diagonal)."),
                VAR: ("Row variances ``a`` (positive).",
                      "Column variances ``b`` (positive).")}[kind]
    return (Param("x", MEAN, "np", "Points."),
            Param("mean", MEAN, "np", "Means ``M``; ``None`` means zero.", True),
            Param(f"row{stem}", kind, axes[0], row),
            Param(f"col{stem}", kind, axes[1], col))


def _entropy_params(kind):
    stem, what = ("cov", "Row covariances ``U``") if kind == COV else ("chol", "Cholesky factors of the row covariances")
    col = "Column covariances ``V``" if kind == COV else "Cholesky factors of the column covariances"
    return (Param(f"row{stem}", kind, "nn", f"{what}."), Param(f"col{stem}", kind, "pp", f"{col}."))


_SQUARE = Param("a", COV, "nn", "Symmetric positive definite matrices.")

#: Every batched function of fastmvn, by name.
FUNCTIONS = {f.name: f for f in (
    Function("kl", _modes.KL_COV, _kl_params(COV, "rowcov", "colcov", ("nn", "pp")),
             "KL divergence ``KL(MN(mean1, rowcov1, colcov1) ‖ MN(mean2, rowcov2, colcov2))``",
             _modes.KL_STD_COV, gradient=True),
    Function("kl_chol", _modes.KL_CHOL, _kl_params(CHOL, "rowchol", "colchol", ("nn", "pp")),
             "KL divergence between matrix normals given by Cholesky factors",
             _modes.KL_STD_CHOL, gradient=True, lower=True),
    Function("kl_diag", _modes.KL_DIAG, _kl_params(VAR, "rowvar", "colvar", ("n", "p")),
             "KL divergence between matrix normals with diagonal covariances",
             _modes.KL_STD_DIAG, gradient=True),
    Function("logdet", _modes.LOGDET, (_SQUARE,), "Log-determinant of symmetric positive definite matrices"),
    Function("trace_solve", _modes.TRACE_SOLVE, (_SQUARE, Param("b", MATRIX, "nn", "Square matrices.")),
             "``tr(a⁻¹ b)`` for symmetric positive definite ``a`` and square ``b``"),
    Function("mahalanobis", _modes.MAHALANOBIS, _density_params(COV),
             "Squared Mahalanobis distance ``tr(V⁻¹ (X−M)ᵀ U⁻¹ (X−M))`` of a matrix normal"),
    Function("mahalanobis_chol", _modes.MAHALANOBIS_CHOL, _density_params(CHOL),
             "Squared Mahalanobis distance from Cholesky factors of ``U`` and ``V``", lower=True),
    Function("logpdf", _modes.LOGPDF, _density_params(COV),
             "Log-density of the matrix normal ``MN(mean, rowcov, colcov)`` at ``x``", gradient=True),
    Function("logpdf_chol", _modes.LOGPDF_CHOL, _density_params(CHOL),
             "Log-density of the matrix normal with Cholesky factors ``rowchol``, ``colchol``", gradient=True,
             lower=True),
    Function("logpdf_diag", _modes.LOGPDF_DIAG, _density_params(VAR),
             "Log-density of the matrix normal with diagonal covariances ``diag(rowvar)``, ``diag(colvar)``",
             gradient=True),
    Function("pdf", None, _density_params(COV), "Density of the matrix normal ``MN(mean, rowcov, colcov)`` at ``x``"),
    Function("pdf_chol", None, _density_params(CHOL), "Density of the matrix normal given by Cholesky factors",
             lower=True),
    Function("entropy", None, _entropy_params(COV),
             "Differential entropy of the matrix normal ``MN(M, rowcov, colcov)``"),
    Function("entropy_chol", None, _entropy_params(CHOL),
             "Differential entropy of the matrix normal given by Cholesky factors", lower=True),
)}

#: The entries a backend does not serve, with the reason; ``tests/test_table.py`` checks that
#: every other entry (and its ``_value_and_grad`` where it has one) is served.
NOT_SERVED = {
    "cuda": {name: "composed on the host from kernel results (an exponential or two log-determinants broadcast "
                   "separately); on the GPU, compose them from fastmvn.cuda.logpdf or fastmvn.cuda.logdet"
             for name in ("pdf", "pdf_chol", "entropy", "entropy_chol")},
    "torch": {name: "autograd needs a fused gradient, which only the KLs and the log-densities have so far"
              for name, f in FUNCTIONS.items() if not f.gradient},
}


def signature(function, keywords):
    """The signature of a frontend's function for the entry ``function``: its arguments, the
    optional ones defaulting to None, then the keyword-only ``keywords`` (names and defaults)."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [inspect.Parameter(p.name, kind, **({"default": None} if p.optional else {})) for p in function.params]
    params += [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in keywords.items()]
    return inspect.Signature(params)


def define(function, implementation, keywords, doc, module, name=None, bound_signature=None):
    """A backend's public function ``name`` (by default the entry's) for the entry ``function``,
    with its :func:`signature` (or ``bound_signature``, for a function outside the table with
    ``names`` of its own): a call binds its arguments as the CPU function does and runs
    ``implementation(function, values, **keywords)`` with the values in the entry's order."""
    bound_signature = bound_signature or signature(function, keywords)

    def public(*args, **kwargs):
        bound = bound_signature.bind(*args, **kwargs)
        bound.apply_defaults()
        given = bound.arguments
        return implementation(function, tuple(given[arg] for arg in function.names),
                              **{k: given[k] for k in keywords})

    public.__name__ = public.__qualname__ = name or function.name
    public.__module__, public.__doc__, public.__signature__ = module, doc, bound_signature
    return public


def publish(namespace, backend, make, entries=None):
    """Put into a backend module's ``namespace`` (its ``globals()``) the functions that
    ``make(entry)`` generates (an iterable of :func:`define`'s functions) for every entry the
    ``backend`` serves (not in :data:`NOT_SERVED`), or for each of ``entries`` (functions outside
    the table): each under its name, in ``__all__``, and its docstring in ``__test__``, where
    doctest finds the examples of functions defined elsewhere."""
    for entry in FUNCTIONS.values() if entries is None else entries:
        if entry.name in NOT_SERVED.get(backend, {}):
            continue
        for function in make(entry):
            namespace[function.__name__] = function
            namespace.setdefault("__all__", []).append(function.__name__)
            namespace.setdefault("__test__", {})[function.__name__] = function.__doc__
