"""Docstrings from shared fragments, as ``scipy.stats``' ``doccer`` fills its templates.

A CPU function's docstring holds the line ``%(parameters)s`` where its Parameters section
goes; :func:`filled` writes there each argument's line of the table
(:data:`fastmvn._table.FUNCTIONS`) and the keywords' shared lines (:data:`KEYWORDS`), and
in a line of its own each shared entry the docstring names (:data:`ENTRIES`: the Raises
section's ``%(raises_cov)s``, ``%(raises_input)s`` …). A backend's docstring is derived
from the CPU one (:func:`backend`): the same summary and parameters, with the backend's
array types, keywords and results.
"""

from collections.abc import Callable
from typing import Any, TypeVar

from ._table import FUNCTIONS

# A decorated function: the decorators below change its docstring alone, and so keep its type.
_Function = TypeVar("_Function", bound=Callable[..., Any])

__all__ = ["KEYWORDS", "parameters", "filled", "backend"]

MARKER = "%(parameters)s"

#: Each keyword argument's numpydoc entry, shared by every function that takes it.
KEYWORDS = {
    "out": ("out : ndarray, optional",
            "Array of the broadcast batch shape and the result dtype to write into."),
    "errors": ('errors : {"raise", "nan"}',
               '``"raise"`` (default) raises on the first failing item; ``"nan"`` makes each failing item '
               "NaN and leaves every other item right."),
    "lower": ("lower : bool, optional",
              "Whether each factor is lower triangular, ``U = L Lᵀ`` (default; its lower triangle is read), "
              "or, with ``False``, upper triangular, ``U = Rᵀ R`` (its upper triangle is read): the ``lower`` "
              "of ``scipy.linalg.cho_solve``. ``scipy.linalg.cholesky`` returns the upper factor by default, "
              "``numpy.linalg.cholesky`` the lower."),
    "grad_errors": ('errors : {"raise", "nan"}',
                    '``"raise"`` (default) raises on the first failing item; ``"nan"`` makes the value and every '
                    "gradient of a failing item NaN (and so any gradient summed over it)."),
    "grad_out": ("out : tuple (value, grads), optional",
                 "Arrays to write the results into, in the structure they are returned in (a previous result of "
                 "the same call will do): ``value`` an array of the batch shape or None, ``grads`` one array per "
                 "argument of that argument's shape, or None for an argument passed as None or a gradient to "
                 "allocate; no two of them may share memory (an output may overlap an input). Returned instead "
                 "of new arrays. Without it, large gradient arrays come from a pool that reuses the memory of "
                 "gradients already dropped (:func:`fastmvn.set_buffer_pool`): a training loop whose gradients "
                 "fit in the pool pays for new memory once either way."),
    "wrt": ("wrt : str or sequence of str, optional",
            "The names of the arguments whose gradients to compute (``\"mean1\"``, ``\"rowcov1\"``, …); by "
            "default every argument not passed as None. The other gradients are None and cost neither memory "
            "nor stores: against a fixed prior, ``wrt=(\"mean1\", \"rowcov1\", \"colcov1\")`` writes half "
            "the bytes."),
    "grad_lower": ("lower : bool, optional",
                   "Lower factors ``U = L Lᵀ`` (default) or, with ``False``, upper ones ``U = Rᵀ R``, as in "
                   ":func:`fastmvn.kl_chol`; the gradient with respect to an upper factor is upper triangular "
                   "(a transposed view of the lower factor's)."),
}


def _wrap(text, indent, width=88):
    """``text`` as lines of at most ``width`` characters, each indented by ``indent`` spaces."""
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(indent * " " + line + " " + word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return [indent * " " + line for line in lines]


def _entry(head, text, indent):
    return [indent * " " + head, *_wrap(text, indent + 4)]


def _axes(param):
    return "(..., " + ", ".join(param.axes) + ")"


def parameters(name, array="array_like", keywords=None, indent=4, extra=(), required=False):
    """The Parameters section of the table's function ``name``: each argument as ``array``
    (``"array_like"``, ``"Tensor"`` …) of its core axes, then the ``keywords`` (by default
    those of :data:`KEYWORDS` that the CPU function takes), then ``extra`` pairs of a head
    and a text. Lines are indented by ``indent`` spaces. With ``required``, no argument may be
    None: each is written without what None would mean (the table writes that after
    ``"; ``None``"``)."""
    function = FUNCTIONS[name]
    if keywords is None:
        keywords = ["out", "errors"] + (["lower"] if function.lower else [])
    lines = [indent * " " + "Parameters", indent * " " + "----------"]
    for param in function.params:
        if required:
            text = param.doc.split("; ``None``")[0].rstrip(".") + "."
            lines += _entry(f"{param.name} : {_axes(param)} {array}", text, indent)
            continue
        kind = f"{array} or None" if param.standard and not param.optional else array
        lines += _entry(f"{param.name} : {_axes(param)} {kind}{', optional' if param.optional else ''}",
                        param.doc, indent)
    for keyword in keywords:
        lines += _entry(*KEYWORDS[keyword], indent)
    for head, text in extra:
        lines += _entry(head, text, indent)
    return "\n".join(lines)


_SINGULAR = "or numerically singular (a Cholesky pivot at or below ``n·ε`` times its diagonal entry)"

#: The Raises entries of the batched functions on the CPU, by the failure they describe: a
#: docstring's Raises section names those its function raises, each in a line of its own
#: (``%(raises_chol)s``), as it names shared parameters. A list holds several entries.
RAISES = {
    "raises_cov": ("numpy.linalg.LinAlgError",
                   f"A covariance is not positive definite, {_SINGULAR}; names the argument and batch index."),
    "raises_spd": ("numpy.linalg.LinAlgError",
                   f"``a`` is not positive definite, {_SINGULAR}; names the batch index."),
    "raises_chol": ("numpy.linalg.LinAlgError",
                    "A factor has a diagonal entry that is not positive; names the argument and batch index."),
    "raises_var": ("numpy.linalg.LinAlgError", "A variance is not positive; names the argument and batch index."),
    "raises_kron_sum": ("numpy.linalg.LinAlgError",
                        "A noise covariance (or ``σ²``) is not positive definite or a signal covariance not "
                        "positive semi-definite; names the argument and batch index."),
    "raises_input": [("ValueError",
                      "NaN or infinity in an input (names the argument and batch index); shapes that do not fit "
                      "together or batch shapes that do not broadcast (names the shapes); ``out`` of another "
                      "shape, or read-only."),
                     ("TypeError", "Complex or non-numeric input; ``out`` of another dtype than the result's.")],
    "raises_overflow": ("FloatingPointError",
                        "A result beyond the float range (finite inputs of any scale whose result is finite give "
                        "that result); names the batch index."),
    "raises_density": ("FloatingPointError",
                       "The density, or the log-density it is the exponential of, is beyond the float range; "
                       "names the batch index."),
    "raises_grad_out": ("ValueError",
                        "``out`` not of the structure the function returns, or two of its arrays sharing memory "
                        "(names both); ``wrt`` naming something other than an argument."),
}

_DENSITY_AT = [("x : (..., n, p) array_like", "Points."),
               ("mean : (..., n, p) array_like or None", "Means ``M``; ``None`` means zero.")]

#: Entries shared by functions and methods, by the name a docstring gives them in a line of
#: its own (``%(rng)s``): :func:`shared` writes them there, and :func:`filled` beside the
#: table's parameters. Parameters, then :data:`RAISES`.
ENTRIES = KEYWORDS | RAISES | {
    "rng": ("rng : numpy.random.Generator", "The source of randomness."),
    "shape": ("shape : tuple of int", "The batch shape."),
    "n, p": ("n, p : int", "Rows and columns of each matrix."),
    "points": ("x : (..., n, p) array_like", "Points; their leading axes broadcast with :attr:`batch_shape`."),
    "size": ("size : int or tuple of ints, optional", "Sample axes put in front of :attr:`batch_shape`; ``None`` "
             "adds none."),
    "affine": [("A : (..., m, n) array_like, optional",
                "Left factor, of full row rank (``m ≤ n``); ``None`` means the identity."),
               ("B : (..., p, q) array_like, optional",
                "Right factor, of full column rank (``q ≤ p``); ``None`` means the identity."),
               ("C : (..., m, q) array_like, optional", "Shift; ``None`` means zero.")],
    # The points and means of a density, and the variances of diagonal covariances
    "density_at": _DENSITY_AT,
    "diag_variances": [("rowvar : (..., n) array_like", "Row variances ``a`` (positive)."),
                       ("colvar : (..., p) array_like", "Column variances ``b`` (positive).")],
    # The arguments of the Kronecker-sum functions (fastmvn.distributions.kron, kron_grad)
    "kron_sum": [*_DENSITY_AT,
                 ("rowcov : (..., n, n) array_like", "Row covariances ``U`` of the signal (positive semi-definite)."),
                 ("colcov : (..., p, p) array_like",
                  "Column covariances ``V`` of the signal (positive semi-definite)."),
                 ("noise_rowcov : (..., n, n) array_like or float",
                  "Row covariances ``A`` of the noise (positive definite), or a scalar ``σ²`` for ``σ²·I`` "
                  "(one for every item; a variance per item is ``σ²[..., None, None]`` times the identity)."),
                 ("noise_colcov : (..., p, p) array_like or float, optional",
                  "Column covariances ``B`` of the noise; ``None`` means the identity.")],
    "eig_pair": [("mean1, mean2 : (..., n, p) array_like or None", "Means; ``None`` means zero."),
                 ("rowvecs1, rowvecs2 : (..., n, n) array_like",
                  "Orthonormal eigenvectors ``Q_u`` of the row factors, in columns (as ``numpy.linalg.eigh`` "
                  "returns them)."),
                 ("rowvals1, rowvals2 : (..., n) array_like",
                  "Eigenvalues ``λ_u`` of the row factors: ``≥ 0``, or ``> 0`` for a matrix normal side."),
                 ("colvecs1, colvecs2 : (..., p, p) array_like", "Orthonormal eigenvectors ``Q_v`` of the column factors."),
                 ("colvals1, colvals2 : (..., p) array_like", "Eigenvalues ``λ_v`` of the column factors."),
                 ("noise1, noise2 : (...) array_like or float, optional",
                  "Noise variances ``σ² > 0``: the covariance ``V⊗U + σ²I``."),
                 ("damping1, damping2 : (...) array_like or float, optional",
                  "Dampings ``δ > 0``: the precision ``V⊗U + δI``. At most one of ``noise`` and ``damping`` per side.")],
    "kron_prec": [("mean : (..., n, p) array_like or None", "Mean ``M``; ``None`` means zero."),
                  ("rowprec : (..., n, n) array_like",
                   "Row factor ``U`` of the precision (symmetric positive semi-definite; lower triangle read)."),
                  ("colprec : (..., p, p) array_like", "Column factor ``V`` of the precision."),
                  ("damping : (...) array_like or float", "``δ > 0``.")],
    "kron_sum_pair": [("mean1, mean2 : (..., n, p) array_like or None", "Means; ``None`` means zero."),
                      ("rowcov1, rowcov2 : (..., n, n) array_like",
                       "Row covariances of the signals (positive semi-definite)."),
                      ("colcov1, colcov2 : (..., p, p) array_like",
                       "Column covariances of the signals (positive semi-definite)."),
                      ("noise_rowcov1, noise_rowcov2 : (..., n, n) array_like or float",
                       "Row covariances of the noise (positive definite), or scalars ``σ²`` for ``σ²·I`` (one "
                       "for every item; a variance per item is ``σ²[..., None, None]`` times the identity)."),
                      ("noise_colcov1, noise_colcov2 : (..., p, p) array_like, float or None",
                       "Column covariances of the noise; ``None`` means the identity.")],
}


def _fill(function, replace):
    """``function`` with each line ``%(key)s`` of its docstring replaced by ``replace(key,
    indent)``, the lines to write there."""
    lines = []
    for line in function.__doc__.split("\n"):
        stripped = line.strip()
        if stripped.startswith("%(") and stripped.endswith(")s"):
            lines.append(replace(stripped[2:-2], len(line) - len(line.lstrip())))
        else:
            lines.append(line)
    function.__doc__ = "\n".join(lines)
    return function


def shared(function: _Function, entries: dict[str, Any] | None = None, array: str = "array_like") -> _Function:
    """A decorator that writes the :data:`ENTRIES` a docstring names in lines of their own
    (``%(rng)s``, ``%(errors)s``, …); a backend adds its own ``entries`` (a pair of a head and
    a text, or a list of them, by name), and its arrays are written as its ``array``
    (``functools.partial(shared, array="Tensor")``) where the entries say ``array_like``."""
    table = ENTRIES | (entries or {})
    return _fill(function, lambda key, indent: _entries(table[key], indent, array))


def _entries(entry, indent, array="array_like"):
    """The lines of ``entry`` (a pair of a head and a text, or a list of them), indented by
    ``indent`` spaces, with ``array_like`` in the heads written as ``array``."""
    pairs = entry if isinstance(entry, list) else [entry]
    return "\n".join(line for head, text in pairs for line in _entry(head.replace("array_like", array), text, indent))


def filled(name: str, **options: Any) -> Callable[[_Function], _Function]:
    """A decorator that writes the Parameters section of the table's function ``name``
    (:func:`parameters` with ``options``) where the docstring holds ``%(parameters)s``, and
    each of :data:`ENTRIES` that it names in a line of its own (its Raises entries)."""

    def fill(function):
        if function.__doc__.count(MARKER) != 1:
            raise ValueError(f"the docstring of {function.__name__} must hold {MARKER} once")
        return _fill(function, lambda key, indent: (parameters(name, indent=indent, **options) if key == "parameters"
                                                     else _entries(ENTRIES[key], indent)))

    return fill


def backend(name, where, array, keywords, returns, raises=(), examples="", required=False):
    """The docstring of a backend's function for the table's ``name``: the table's summary
    followed by ``where`` (a pair: the end of the summary line and a paragraph on what differs
    on that backend), the parameters as ``array`` with the backend's ``keywords`` (pairs of a
    head and a text; every argument ``required`` if so), then the ``returns`` (a pair, or a
    list of pairs for several results), the ``raises`` pairs and the ``examples``."""
    return layout(FUNCTIONS[name].summary, where, parameters(name, array, (), 0, tuple(keywords), required),
                  returns, raises, examples)


def layout(summary, where, parameters_section, returns, raises=(), examples=""):
    """A backend's docstring: ``summary`` followed by ``where`` (a pair: the end of the summary
    line and a paragraph), the ``parameters_section`` (its lines, heading included), then the
    ``returns`` (a pair, or a list of pairs for several results), the ``raises`` pairs and
    the ``examples``; :func:`backend` for the table's functions."""
    lines = [f"{summary}, {where[0]}", "", *_wrap(where[1], 0), "", parameters_section, "",
             "Returns", "-------", _entries(returns, 0)]
    if raises:
        lines += ["", "Raises", "------"] + [line for pair in raises for line in _entry(*pair, 0)]
    text = "\n".join(lines)
    if examples:
        text += "\n\nExamples\n--------\n" + examples.strip("\n")
    return text
