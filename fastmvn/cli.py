"""The ``fastmvn`` command line: ``bench``, ``kl`` and ``info``."""

import argparse
import os
import platform
import sys

import numpy as np

from ._bench import CASES

DEFAULT_SIZES = [(4, 4, 1_000_000), (16, 16, 100_000), (32, 32, 20_000)]

#: ``(n, batch)`` of the throughput plot, for ``n×n`` matrices.
PLOT_SIZES = [(2, 1_000_000), (4, 1_000_000), (8, 200_000), (16, 100_000), (32, 20_000)]

#: What the plot draws, from the figures of :func:`fastmvn._bench.compare`, and how.
PLOT_LINES = [("fastmvn", "fastmvn", "o-"), ("reference", "NumPy reference", "s-"),
              ("torch", "PyTorch (CPU)", "^-"), ("read", "one read of the inputs (ceiling)", "k--")]


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
             title=f"fastmvn.{case} throughput, {dtype}, {_threads()} threads")
    axes.minorticks_off()
    axes.grid(True, which="major", alpha=0.3)
    axes.legend()
    figure.savefig(path, dpi=120)


def bench(args):
    from ._bench import compare

    if args.plot:
        if args.n or args.p:
            raise SystemExit("fastmvn bench --plot draws n = p = 2 to 32; leave out --n and --p")
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
    print(f"{what}, median of {args.repeat} runs, {_threads()} threads")
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

    data = np.load(args.input)
    names = set(data.files)
    for stem, func in (("cov", _api.kl), ("chol", _api.kl_chol), ("var", _api.kl_diag)):
        first = {"mean1", f"row{stem}1", f"col{stem}1"}
        if first <= names:
            second = [data[k] if k in names else None for k in ("mean2", f"row{stem}2", f"col{stem}2")]
            result = func(data["mean1"], data[f"row{stem}1"], data[f"col{stem}1"], *second, errors=args.errors)
            np.save(args.output, result)
            print(f"{args.output}: {np.shape(result)} {np.asarray(result).dtype}")
            return
    raise SystemExit(f"{args.input} holds {sorted(names)}; expected mean1 with rowcov1/colcov1, "
                     "rowchol1/colchol1 or rowvar1/colvar1 (and optionally the same with 2)")


def _threads():
    import numba

    from . import _jit

    _jit.threading_layer()
    return numba.get_num_threads()


def info(args):
    import numba
    import scipy

    from . import __version__, _jit

    print(f"fastmvn {__version__}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"numba {numba.__version__}")
    print(f"threads: {_threads()} (NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS}), "
          f"threading layer {_jit.threading_layer()}")
    cache_dir = numba.config.CACHE_DIR or os.path.join(os.path.dirname(__file__), "__pycache__")
    print(f"kernel cache: {cache_dir if _jit.CACHE else 'off (FASTMVN_CACHE=0)'}")
    print(f"cuda: {_cuda_status()}")


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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastmvn", description="Batched matrix-normal kernels.")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("bench", help="time batched KL against the NumPy reference, PyTorch and a read pass")
    p.add_argument("--n", type=int, help="rows of each matrix (default: 4, 16 and 32)")
    p.add_argument("--p", type=int, help="columns of each matrix (default: n)")
    p.add_argument("--batch", type=int, help="pairs per batch (default: 1,000,000 at 4×4, fewer when larger)")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--repeat", type=int, default=5, help="timed runs; the median is reported")
    p.add_argument("--case", choices=CASES, default="kl",
                   help="the function timed (default kl; kl_standard is kl against MN(0, I, I))")
    p.add_argument("--plot", metavar="FILE.png",
                   help="also draw KL per second against n = p = 2 to 32 for each backend (needs matplotlib)")
    p.set_defaults(func=bench)
    p = commands.add_parser("kl", help="batched KL for arrays saved in an .npz under the argument names")
    p.add_argument("input", help=".npz with mean1, rowcov1, colcov1 [, mean2, rowcov2, colcov2] "
                                 "(or rowchol*/colchol*, rowvar*/colvar*)")
    p.add_argument("-o", "--output", required=True, help="output .npy")
    p.add_argument("--errors", choices=["raise", "nan"], default="raise")
    p.set_defaults(func=kl)
    p = commands.add_parser("info", help="versions, threads, kernel cache, CUDA")
    p.set_defaults(func=info)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
