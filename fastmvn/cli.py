"""The ``fastmvn`` command line: ``bench``, ``kl`` and ``info``."""

import argparse
import platform
import sys
import zipfile
from typing import NamedTuple

import numpy as np

from . import _jit
from ._bench import CASES, SCIPY_ITEMS, SIZE_CASES
from ._table import CHOL, COV, FUNCTIONS, VAR

DEFAULT_SIZES = [(4, 4, 1_000_000), (16, 16, 100_000), (32, 32, 20_000)]

#: ``(n, batch)`` of the throughput plot, for ``n×n`` matrices.
PLOT_SIZES = [(2, 1_000_000), (4, 1_000_000), (8, 200_000), (16, 100_000), (32, 20_000)]

#: What the plot draws, from the figures of :func:`fastmvn._bench.compare`, and how.
PLOT_LINES = [("fastmvn", "fastmvn", "o-"), ("reference", "NumPy reference", "s-"),
              ("torch", "PyTorch (CPU)", "^-"), ("read", "one read of the inputs (ceiling)", "k--")]


class SizeReport(NamedTuple):
    """What ``fastmvn bench --sizes`` prints and draws for one case, from the figures of
    :func:`fastmvn._bench.compare_sizes`: ratio columns after the time per call (heading,
    numerator and denominator figures), the lines that say what they mean, and the lines of
    the plot (figure, label, marker)."""
    columns: tuple
    legend: tuple
    lines: tuple


#: The report of each case of :data:`fastmvn._bench.SIZE_CASES`.
SIZE_REPORTS = {
    "kl": SizeReport(
        (("× NumPy", "numpy", "fastmvn"), ("× torch", "torch", "fastmvn")),
        ("× NumPy, × torch: how many times faster fastmvn is than the same algorithm in NumPy and PyTorch",),
        (("fastmvn", "fastmvn", "o"), ("numpy", "NumPy", "s"), ("torch", "PyTorch (CPU)", "^"))),
    "logpdf": SizeReport(
        (("× NumPy", "numpy", "fastmvn"), ("× SciPy", "scipy", "fastmvn")),
        ("× NumPy, × SciPy: how many times faster fastmvn is than the NumPy reference and a Python loop over "
         "scipy.stats.matrix_normal.logpdf;",
         f"SciPy's time per call is that of its first {SCIPY_ITEMS} items (or fewer) scaled to the whole batch"),
        (("fastmvn", "fastmvn", "o"), ("numpy", "NumPy reference", "s"),
         ("scipy", "SciPy loop (scaled)", "v"))),
    "kl_value_and_grad": SizeReport(
        (("× torch", "torch", "fastmvn"), ("v+g / value", "fastmvn", "value")),
        ("× torch: how many times faster fastmvn's value and six gradients are than PyTorch autograd of the same "
         "algorithm (forward and backward of sum(kl));",
         "v+g / value: their time over fastmvn.kl's value alone on the same batch, the two timed in alternation "
         "(the goal is at most 3)"),
        (("fastmvn", "fastmvn, value and gradients", "o"), ("torch", "PyTorch autograd (CPU)", "^"),
         ("value", "fastmvn.kl, value alone", "D"))),
}

_HOLDS = {COV: "covariances", CHOL: "Cholesky factors", VAR: "variances"}

#: The parameterisations ``fastmvn kl`` reads, one per KL of the table: the stem of the row and
#: column arguments' names (``rowcov1``, …), what they hold, and the function it calls (a name in
#: :mod:`fastmvn`).
KL_PARAMETERISATIONS = {f.params[1].name[3:-1]: (_HOLDS[f.params[1].kind], f.name)
                        for f in FUNCTIONS.values() if f.name.startswith("kl")}

#: Every array name ``fastmvn kl`` reads, mapped to its parameterisation's stem (None for the means).
KL_ARRAYS = {"mean1": None, "mean2": None} | {name: stem for stem, (_, function) in KL_PARAMETERISATIONS.items()
                                               for name in FUNCTIONS[function].names if not name.startswith("mean")}

EPILOG = ("exit status: 0 on success, 2 for a usage error (argparse prints the usage), 1 for any other error "
          "(unreadable or invalid input, a file that cannot be written), named on one line on stderr")


def _error(command, problem):
    """The exception that ends ``fastmvn command`` with ``problem`` on one line of stderr and exit status 1."""
    return SystemExit(f"fastmvn {command}: error: {' '.join(str(problem).split())}")


def _reason(error):
    """What went wrong in ``error``, without the file name an :class:`OSError` repeats."""
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _positive_int(text):
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}")
    return value


def _progress(items):
    try:
        from tqdm import tqdm
    except ImportError:
        def tqdm(items, **_):
            for i, item in enumerate(items):
                print(f"  [{i + 1}/{len(items)}] {item[0]}×{item[1]} …", file=sys.stderr, flush=True)
                yield item
    return tqdm(items, desc="fastmvn bench", file=sys.stderr)


def _figure_class():
    """matplotlib's Figure, or exit with how to install matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise SystemExit("fastmvn bench --plot needs matplotlib: python3 -m pip install 'fastmvn[plot]'") from None
    return Figure


def plot(path, rows, dtype, case="kl"):
    """Draw items per second against ``n`` (``n = p``) for each backend and the read pass into ``path``."""
    figure = _figure_class()(figsize=(6.4, 4.2), layout="constrained")
    axes = figure.add_subplot()
    sizes = [n for n, _, _, _ in rows]
    for key, label, style in PLOT_LINES:
        points = [(n, 1.0 / f[key]) for n, _, _, f in rows if f[key] is not None]
        if points:
            axes.plot(*zip(*points), style, label=label)
    axes.set(xscale="log", yscale="log", xticks=sizes, xticklabels=[str(n) for n in sizes],
             xlabel="n (n×n row and column covariances)", ylabel="items per second",
             title=f"fastmvn.{case} throughput, {dtype}, {_jit.threads()} threads")
    axes.minorticks_off()
    axes.grid(True, which="major", alpha=0.3)
    axes.legend()
    try:
        figure.savefig(path, dpi=120)
    except OSError as error:
        raise _error("bench", f"cannot write {path}: {_reason(error)}") from None


def plot_sizes(path, rows, case="kl"):
    """Draw seconds per item against ``n`` (square sizes, log-log) of fastmvn and what it is
    compared with in ``case`` (:data:`SIZE_REPORTS`), at one item and at the largest batch of
    each size, into ``path``."""
    figure = _figure_class()(figsize=(6.4, 4.2), layout="constrained")
    axes = figure.add_subplot()
    square = [(n, batch, f) for n, p, batch, f in rows if n == p]
    for color, (key, label, style) in enumerate(SIZE_REPORTS[case].lines):
        for single, line in ((True, "-"), (False, "--")):
            points = [(n, f[key] / batch) for n, batch, f in square if f[key] is not None and (batch == 1) == single]
            if points:
                axes.plot(*zip(*points), style + line, color=f"C{color}",
                          label=f"{label}, {'one item' if single else 'a batch'}")
    sizes = sorted({n for n, _, _ in square})
    axes.set(xscale="log", yscale="log", xticks=sizes, xticklabels=[str(n) for n in sizes],
             xlabel="n (n×n means and covariances)", ylabel="seconds per item",
             title=f"fastmvn.{case}, float64, {_jit.threads()} threads")
    axes.minorticks_off()
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(fontsize="small")
    try:
        figure.savefig(path, dpi=120)
    except OSError as error:
        raise _error("bench", f"cannot write {path}: {_reason(error)}") from None


def _ratio(figures, numerator, denominator):
    """``figures[numerator] / figures[denominator]`` to two decimals, or ``"-"`` where either is None."""
    if figures[numerator] is None or figures[denominator] is None:
        return "-"
    return f"{figures[numerator] / figures[denominator]:.2f}"


def bench_sizes(args):
    from . import _bench

    if args.plot:
        _figure_class()
    points = (_bench.size_points(_bench.FULL_SIZE_GRID, _bench.FULL_BUDGET, args.case) if args.full
              else _bench.size_points(_bench.SIZE_GRID, case=args.case))
    rows = _bench.compare_sizes(_progress(points), args.repeat, args.case)
    report = SIZE_REPORTS[args.case]
    widths = [max(8, len(heading)) for heading, _, _ in report.columns]
    print(f"fastmvn.{args.case} by size, float64, median of {args.repeat} calls, {_jit.threads()} threads")
    print(f"{'n×p':>9} {'batch':>6} {'ms per call':>12} "
          + " ".join(f"{heading:>{width}}" for (heading, _, _), width in zip(report.columns, widths)))
    for n, p, batch, f in rows:
        print(f"{f'{n}×{p}':>9} {batch:>6} {f['fastmvn'] * 1e3:>12.3f} "
              + " ".join(f"{_ratio(f, *column[1:]):>{width}}" for column, width in zip(report.columns, widths)))
    for line in report.legend:
        print(line)
    if args.plot:
        plot_sizes(args.plot, rows, args.case)
        print(f"size plot: {args.plot}")


def bench(args):
    from ._bench import compare

    if args.sizes:
        return bench_sizes(args)

    if args.plot:
        _figure_class()
        sizes = [(n, n, args.batch or batch) for n, batch in PLOT_SIZES]
    elif args.n or args.p:
        n = args.n or args.p
        sizes = [(n, args.p or n, args.batch or 1_000_000)]
    else:
        sizes = [(n, p, args.batch or batch) for n, p, batch in DEFAULT_SIZES]
    rows = []
    for n, p, batch in _progress(sizes):
        rows.append((n, p, batch, compare(n, p, batch, np.dtype(args.dtype), args.repeat, case=args.case)))
    header = f"{'n×p':>7} {'batch':>9} {'dtype':>7} {'M/s':>8} {'× reference':>12} {'× torch':>8} {'÷ read':>7}"
    what = "fastmvn.kl against MN(0, I, I)" if args.case == "kl_standard" else f"fastmvn.{args.case}"
    print(f"{what}, median of {args.repeat} runs, {_jit.threads()} threads")
    print(header)
    for n, p, batch, f in rows:
        torch = "-" if f["torch"] is None else f"{f['torch'] / f['fastmvn']:.1f}"
        print(f"{f'{n}×{p}':>7} {batch:>9} {args.dtype:>7} {1e-6 / f['fastmvn']:>8.2f} "
              f"{f['reference'] / f['fastmvn']:>12.1f} {torch:>8} {f['fastmvn'] / f['read']:>7.2f}")
    print("× reference, × torch: how many times faster fastmvn is; ÷ read: time over one plain read of the inputs")
    if args.plot:
        plot(args.plot, rows, args.dtype, args.case)
        print(f"throughput plot: {args.plot}")


def kl(args):
    from . import _api

    with _open_npz(args.input) as data:
        stem = _kl_parameterisation(args.input, data.files)
        function = KL_PARAMETERISATIONS[stem][1]
        arrays = [_read_array(args.input, data, name) if name in data.files else None
                  for name in FUNCTIONS[function].names]
    func = getattr(_api, function)
    if args.upper and stem != "chol":
        raise _error("kl", f"--upper reads Cholesky factors as upper triangular; {args.input} holds {stem} arrays")
    keywords = {"lower": False} if args.upper else {}
    try:
        result = func(*arrays, errors=args.errors, **keywords)
    except (ValueError, TypeError, ArithmeticError) as error:  # fastmvn's errors for invalid arguments
        raise _error("kl", error) from None
    try:
        with open(args.output, "wb") as file:  # np.save(name) would add .npy to another suffix
            np.save(file, result)
    except OSError as error:
        raise _error("kl", f"cannot write {args.output}: {_reason(error)}") from None
    print(f"{args.output}: {np.shape(result)} {np.asarray(result).dtype}")


def _open_npz(path):
    """The :class:`numpy.lib.npyio.NpzFile` at ``path``, read without pickle."""
    try:
        data = np.load(path)
    except OSError as error:
        raise _error("kl", f"cannot read {path}: {_reason(error)}") from None
    except (ValueError, EOFError, zipfile.BadZipFile):  # neither .npy nor .npz: np.load says "pickled data"
        raise _error("kl", f"cannot read {path}: it is not an .npz file as np.savez writes") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise _error("kl", f"{path} holds one array (a .npy file); expected an .npz of named arrays, "
                           "as np.savez writes")
    return data


def _read_array(path, data, name):
    """Array ``name`` of the open ``.npz`` ``data``, read from ``path``."""
    try:
        return data[name]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise _error("kl", f"cannot read {name} from {path}: {_reason(error)}") from None


def _kl_parameterisation(path, names):
    """The stem (``"cov"``, ``"chol"`` or ``"var"``) of the arrays ``names`` of the ``.npz`` at
    ``path``; exit naming the arrays if any is unknown, missing or of another parameterisation."""
    unknown = sorted(set(names) - set(KL_ARRAYS))
    if unknown:
        raise _error("kl", f"{path} holds arrays fastmvn kl does not know: {', '.join(unknown)}; "
                           f"the names it reads are {', '.join(KL_ARRAYS)}")
    given = {}
    for name in sorted(names):
        if KL_ARRAYS[name] is not None:
            given.setdefault(KL_ARRAYS[name], []).append(name)
    if len(given) > 1:
        listed = "; ".join(f"{what}: {', '.join(given[stem])}"
                           for stem, (what, _) in KL_PARAMETERISATIONS.items() if stem in given)
        raise _error("kl", f"{path} mixes parameterisations ({listed}); give every row and column argument in one")
    held = ", ".join(sorted(names)) or "no arrays"
    if not given:
        raise _error("kl", f"{path} holds {held}; expected mean1 with rowcov1/colcov1, rowchol1/colchol1 or "
                           "rowvar1/colvar1 (and optionally the same with 2)")
    stem, = given
    missing = [name for name in ("mean1", f"row{stem}1", f"col{stem}1") if name not in names]
    if missing:
        raise _error("kl", f"{path} lacks {', '.join(missing)} (it holds {held}); expected mean1, row{stem}1 and "
                           f"col{stem}1, and optionally mean2, row{stem}2 and col{stem}2")
    return stem


#: The optional packages ``fastmvn info`` reports: distribution name and module name.
OPTIONAL = (("torch", "torch"), ("dask", "dask"), ("jax", "jax"), ("numba-cuda", "numba_cuda"))


def info(args):
    import numba
    import scipy

    from . import __version__

    print(f"fastmvn {__version__}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"numba {numba.__version__}, llvmlite {_installed('llvmlite')}")
    print("optional: " + ", ".join(f"{name} {_installed(name, module)}" for name, module in OPTIONAL))
    print(f"threads: {_jit.threads()} (NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS}), "
          f"threading layer {_jit.threading_layer()}")
    print(f"blas: {_blas()}")
    name, features = _cpu()
    print(f"cpu: {name}")
    print(f"cpu features: {features}")
    print(f"kernel cache: {_cache_directory() if _jit.CACHE else 'off (FASTMVN_CACHE=0)'}")
    print(f"gpu: {_gpu_usable()}")
    print(f"cuda: {_cuda_status()}")


def _blas():
    """The BLAS libraries loaded by NumPy and SciPy, with version and threads (threadpoolctl):
    the large-item plan uses SciPy's."""
    import scipy.linalg  # noqa: F401  (loads SciPy's BLAS)
    from threadpoolctl import threadpool_info

    return "; ".join(f"{lib['internal_api']} {lib['version']} ({lib['prefix']}), {lib['num_threads']} threads"
                     for lib in threadpool_info() if lib["user_api"] == "blas") or "none found"


def _installed(name, module=None):
    """The installed version of the distribution ``name`` (whose import name is ``module``, by
    default the same), or ``"not installed"``; nothing is imported."""
    import importlib.metadata
    import importlib.util

    try:
        if importlib.util.find_spec(module or name) is None:
            return "not installed"
        return importlib.metadata.version(name)
    except (ImportError, ValueError):  # a broken parent package, a module without metadata
        return "not installed"


def _cpu():
    """The CPU name and the features Numba compiles for: ``NUMBA_CPU_NAME`` and
    ``NUMBA_CPU_FEATURES`` where set (as for a cache shared between machines), else the host's
    as LLVM detects them (the enabled ones), each with where it comes from."""
    import llvmlite.binding as llvm
    import numba
    from numba.core import codegen

    if numba.config.CPU_NAME is not None:
        name = f"{numba.config.CPU_NAME} (NUMBA_CPU_NAME)"
    else:
        name = f"{llvm.get_host_cpu_name()} (the host's)"
    if numba.config.CPU_FEATURES is not None:
        return name, f"{numba.config.CPU_FEATURES} (NUMBA_CPU_FEATURES)"
    enabled = [feature[1:] for feature in codegen.get_host_cpu_features().split(",") if feature.startswith("+")]
    return name, f"{' '.join(sorted(enabled)) or 'none detected'} (the host's)"


def _cache_directory():
    """The directory where fastmvn's kernels are cached: where Numba's locator for the kernels'
    sources puts them (beside them, or under ``NUMBA_CACHE_DIR`` or the user's cache)."""
    from .kernels import drivers  # noqa: F401  (defines the batch drivers)

    try:
        cache = _jit._cache_class()[0](_jit._BATCHES[0].py_func)
        return cache._impl.locator.get_cache_path()
    except RuntimeError as error:  # no directory Numba can write to
        return f"unavailable: {error}"


def _gpu_usable():
    """Whether Numba finds a usable CUDA GPU (``numba.cuda.is_available()``); never raises."""
    import numba

    if getattr(numba.config, "ENABLE_CUDASIM", 0):
        return "none used: Numba's CUDA simulator runs CUDA kernels on the CPU (NUMBA_ENABLE_CUDASIM=1)"
    try:
        from numba import cuda as numba_cuda

        usable = numba_cuda.is_available()
    except Exception as error:  # a missing or broken CUDA stack is an answer here, not a failure
        return f"none usable ({type(error).__name__}: {' '.join(str(error).split())})"
    return "usable" if usable else "none usable (numba.cuda.is_available() is False)"


def _cuda_status():
    """Where ``fastmvn.cuda`` runs here, or why it cannot be imported."""
    from importlib.metadata import version

    try:
        from . import cuda  # noqa: F401
    except ImportError as error:
        return f"unavailable: {error}"
    from numba import cuda as numba_cuda

    device = numba_cuda.get_current_device()
    name = getattr(device, "name", "Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1)")
    name = name.decode() if isinstance(name, bytes) else name
    major, minor = device.compute_capability
    return f"{name}, compute capability {major}.{minor}, numba-cuda {version('numba-cuda')}"


def _either(names):
    """``"a, b or c"``."""
    *most, last = names
    return f"{', '.join(most)} or {last}" if most else last


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastmvn", description="Batched matrix-normal kernels.", epilog=EPILOG)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("bench", help="time batched KL against the NumPy reference, PyTorch and a read pass")
    p.add_argument("--n", type=_positive_int, help="rows of each matrix (default: 4, 16 and 32)")
    p.add_argument("--p", type=_positive_int, help="columns of each matrix (default: n)")
    p.add_argument("--batch", type=_positive_int,
                   help="pairs per batch (default: 1,000,000 at 4×4, fewer when larger)")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--repeat", type=_positive_int, default=5, help="timed runs; the median is reported")
    p.add_argument("--case", choices=CASES + tuple(case for case in SIZE_CASES if case not in CASES), default="kl",
                   help="the function timed (default kl; kl_standard is kl against MN(0, I, I)); with --sizes "
                        f"{_either(SIZE_CASES)} (the KL's value and its six gradients, timed by --sizes only)")
    p.add_argument("--plot", metavar="FILE.png",
                   help="also draw KL per second against n = p = 2 to 32 for each backend, or with --sizes the "
                        "time per item against n (needs matplotlib)")
    p.add_argument("--sizes", action="store_true",
                   help="time --case from 4×4 to 1024×1024, one item and a batch: kl against NumPy and PyTorch, "
                        "logpdf against NumPy and SciPy, kl_value_and_grad against PyTorch autograd and kl's value")
    p.add_argument("--full", action="store_true",
                   help="with --sizes: every power of two from 1 to 2048, 784×150, 4096×512 and 2×1024, at 1, 8, "
                        "1,000 and as many items as fit in 2 GB (tens of minutes)")
    p.set_defaults(func=bench)
    bench_parser = p
    p = commands.add_parser("kl", help="batched KL for arrays saved in an .npz under the argument names")
    p.add_argument("input", help=".npz with mean1, rowcov1, colcov1 [, mean2, rowcov2, colcov2] "
                                 "(or rowchol*/colchol*, rowvar*/colvar*)")
    p.add_argument("-o", "--output", required=True, help="output .npy file, written under exactly this name")
    p.add_argument("--errors", choices=["raise", "nan"], default="raise")
    p.add_argument("--upper", action="store_true",
                   help="the rowchol*/colchol* arrays are upper factors R of U = RᵀR (scipy.linalg.cholesky's)")
    p.set_defaults(func=kl)
    p = commands.add_parser("info", help="versions, threads, CPU features, kernel cache, GPU")
    p.set_defaults(func=info)
    args = parser.parse_args(argv)
    if args.command == "bench" and args.plot and (args.n or args.p):
        bench_parser.error("--plot draws n = p = 2 to 32; leave out --n and --p")
    if args.command == "bench" and args.full and not args.sizes:
        bench_parser.error("--full is a grid of --sizes; give both")
    if args.command == "bench" and args.sizes and (args.n or args.p or args.batch or args.dtype != "float64"):
        bench_parser.error("--sizes times float64 on its own grid; leave out --n, --p, --batch and --dtype")
    if args.command == "bench" and args.sizes and args.case not in SIZE_CASES:
        bench_parser.error(f"--sizes times {_either(SIZE_CASES)}; got --case {args.case}")
    if args.command == "bench" and not args.sizes and args.case not in CASES:
        bench_parser.error(f"--case {args.case} is timed by --sizes only; give both")
    args.func(args)


if __name__ == "__main__":
    main()
