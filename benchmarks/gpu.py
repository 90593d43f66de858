"""Batched KL on a GPU: fastmvn.cuda against PyTorch on the same GPU and the bandwidth floor.

    python benchmarks/gpu.py                        # 4×4, 8×8, 16×16 in float32 and float64
    python benchmarks/gpu.py --sizes 4 --dtypes float32 --pairs 1000000
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/gpu.py --simulate   # a few pairs on the CPU: times nothing

Each case gets fresh random inputs: every array's items are drawn at random from a pool
of random items made for that case, then copied to the GPU once; the timed call reads
them in place (GPU arrays in, GPU array out, as in a training loop). Before timing,
fastmvn's and PyTorch's results on a subset are checked against the CPU kernels. The
output is filled with NaN before every run, and no NaN may remain after it. Times are
CUDA-event times of the whole call (argument checks and launch included), the median of
``--repeat`` runs after a warm-up run (which also compiles the kernel).

A last line times a prior per mixture component (``mean`` of ``(rows, 8, 4, 4)`` against a
prior of ``(8, 4, 4)``: batch axes that cannot be merged) over the same call with the prior
copied out to every row.

PyTorch runs the same algorithm (``torch.linalg.cholesky`` and ``solve_triangular``, see
``fastmvn._bench.torch_kl_tensors``) on the same GPU arrays. The floor is the time to read
the inputs and write the result once at the GPU's measured device-to-device copy
bandwidth (a copy counted as its bytes read plus written).

This is a standalone script, not part of the asv suite: it does its work only when run.
"""

import argparse
import os
import sys

import numpy as np

# 10 million pairs at 4×4; larger sizes get as many bytes, so fewer pairs.
PAIRS_4X4 = 10_000_000
POOL = 65_536


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16], help="n = p of each matrix")
    parser.add_argument("--dtypes", nargs="+", choices=["float32", "float64"], default=["float32", "float64"])
    parser.add_argument("--pairs", type=int, help="pairs per batch (default: 10,000,000 at 4×4, the same "
                                                  "bytes at larger sizes, fewer if the GPU's memory is short)")
    parser.add_argument("--repeat", type=int, default=10, help="timed runs; the median is reported")
    parser.add_argument("--check", type=int, default=2000, help="pairs checked against the CPU kernels")
    parser.add_argument("--simulate", action="store_true",
                        help="a few pairs in Numba's CUDA simulator (sets NUMBA_ENABLE_CUDASIM=1): checks the "
                             "script, times nothing")
    args = parser.parse_args(argv)
    if args.simulate:
        args.sizes, args.pairs, args.repeat, args.check = [2, 4], 37, 1, 37
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.simulate:
        os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")  # read when numba.cuda is first imported
    try:
        import fastmvn.cuda as fc
    except ImportError as error:
        raise SystemExit(f"benchmarks/gpu.py: {error}") from None
    from numba import cuda

    import fastmvn

    torch = _torch()
    bandwidth = _copy_bandwidth(cuda, 2**20 if args.simulate else 2**30)
    device = cuda.get_current_device()
    name = getattr(device, "name", "Numba's CUDA simulator")
    name = name.decode() if isinstance(name, bytes) else name
    print(f"fastmvn.cuda.kl on {name}, median of {args.repeat} runs; device-to-device copy "
          + (f"{bandwidth / 1e9:.0f} GB/s" if bandwidth else "not timed"))
    print(f"{'n×p':>7} {'dtype':>7} {'pairs':>10} {'ms':>8} {'M KL/s':>8} {'× torch':>8} {'÷ floor':>8} "
          f"{'err':>8} {'torch err':>9}")
    for n in args.sizes:
        for dtype in map(np.dtype, args.dtypes):
            row = _case(fc, fastmvn, cuda, torch, n, dtype, args, bandwidth)
            print(" ".join(f"{value:>{width}}" for value, width in zip(row, (7, 7, 10, 8, 8, 8, 8, 8, 9))), flush=True)
    print("× torch: PyTorch's time over fastmvn's; ÷ floor: fastmvn's time over reading the inputs and writing "
          "the result once; err: largest relative difference from the CPU kernels")
    print(_component_prior(fc, fastmvn, cuda, args), flush=True)


def _torch():
    """PyTorch with a CUDA GPU, or None."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _median_event_seconds(cuda, run, repeat, before=lambda: None):
    """Median CUDA-event seconds of ``run()`` over ``repeat`` runs, ``before()`` untimed ahead
    of each; None where events do not time (the simulator)."""
    seconds = []
    for _ in range(repeat):
        before()
        start, stop = cuda.event(), cuda.event()
        start.record()
        run()
        stop.record()
        stop.synchronize()
        seconds.append(start.elapsed_time(stop) / 1e3)
    median = float(np.median(seconds))
    return median if median > 0 else None


def _copy_bandwidth(cuda, size):
    """Bytes moved per second (read plus written) by a device-to-device copy of ``size`` bytes."""
    source = cuda.to_device(np.ones(size, np.uint8))
    target = cuda.device_array(size, np.uint8)
    target.copy_to_device(source)
    seconds = _median_event_seconds(cuda, lambda: target.copy_to_device(source), 5)
    return None if seconds is None else 2 * size / seconds


def _pairs(n, dtype, args, cuda, torch):
    """Pairs for ``n×n``: as asked, else PAIRS_4X4 scaled by bytes, within the GPU's free memory."""
    pairs = args.pairs or PAIRS_4X4 * 16 // (n * n)
    free, _ = cuda.current_context().get_memory_info()
    per_pair = (6 + (10 if torch else 0)) * n * n * dtype.itemsize  # inputs, PyTorch's intermediates
    return max(1, min(pairs, int(min(0.7 * free, 2**62)) // per_pair))  # the simulator's free memory is infinite


def _inputs(n, pairs, dtype, seed):
    """Six host arrays of ``pairs`` random items each (mean1, rowcov1, colcov1, mean2, rowcov2, colcov2),
    every item drawn from a pool of random items."""
    from fastmvn._bench import random_pair

    pool = random_pair(min(POOL, pairs), n, n, dtype, seed)
    rng = np.random.default_rng(seed)
    return [array[rng.integers(0, len(array), pairs)] for array in pool]


def _relative_error(result, expected):
    return float(np.max(np.abs(result - expected) / np.maximum(np.abs(expected), 1.0)))


def _case(fc, fastmvn, cuda, torch, n, dtype, args, bandwidth):
    pairs = _pairs(n, dtype, args, cuda, torch)
    check = min(args.check, pairs)
    host = _inputs(n, pairs, dtype, seed=n * 10 + dtype.itemsize)
    expected = fastmvn.kl(*(a[:check] for a in host))
    gpu = [cuda.to_device(a) for a in host]
    nbytes = sum(a.nbytes for a in host) + pairs * dtype.itemsize
    del host
    out = cuda.device_array(pairs, dtype)
    poison = cuda.to_device(np.full(pairs, np.nan, dtype))

    def run():
        fc.kl(*gpu, out=out)

    out.copy_to_device(poison)
    run()
    result = out.copy_to_host()
    error = _relative_error(result[:check], expected)
    tolerance = 1e-10 if dtype == np.float64 else 1e-4
    if np.isnan(result).any() or error > tolerance:
        raise SystemExit(f"{n}×{n} {dtype}: fastmvn.cuda differs from the CPU kernels by {error:.1e}, "
                         f"{int(np.isnan(result).sum())} items unwritten")
    seconds = _median_event_seconds(cuda, run, args.repeat, before=lambda: out.copy_to_device(poison))
    if np.isnan(out.copy_to_host()).any():
        raise SystemExit(f"{n}×{n} {dtype}: items left unwritten")

    speedup, torch_error = "-", "-"
    if torch is not None:
        tensors = [torch.as_tensor(a, device="cuda") for a in gpu]  # the same GPU memory
        from fastmvn._bench import torch_kl_tensors

        torch_error = _relative_error(torch_kl_tensors(*tensors)[:check].cpu().numpy(), expected)
        torch_seconds = _median_event_seconds(cuda, lambda: torch_kl_tensors(*tensors), args.repeat)
        speedup = f"{torch_seconds / seconds:.1f}" if seconds and torch_seconds else "-"
        torch_error = f"{torch_error:.0e}"
    floor = f"{seconds / (nbytes / bandwidth):.2f}" if seconds and bandwidth else "-"
    return (f"{n}×{n}", dtype.name, f"{pairs:,}", f"{seconds * 1e3:.2f}" if seconds else "-",
            f"{pairs / seconds / 1e6:.0f}" if seconds else "-", speedup, floor, f"{error:.0e}", torch_error)


def _component_prior(fc, fastmvn, cuda, args):
    """A line on a prior per mixture component, ``kl(mean, I, I, None, prior, None)`` with
    ``mean`` of ``(rows, 8, 4, 4)`` and ``prior`` of ``(8, 4, 4)`` (batch axes that cannot be
    merged: one launch over the batch split in two), float32 on the GPU, against the same call
    with the prior copied out to every row."""
    from fastmvn.testing import random_spd

    rng = np.random.default_rng(8)
    rows = 5 if args.simulate else PAIRS_4X4 // 8
    mean, prior = rng.standard_normal((rows, 8, 4, 4)).astype(np.float32), random_spd(rng, (8,), 4).astype(np.float32)
    eye = cuda.to_device(np.eye(4, dtype=np.float32))
    gpu = {"prior": cuda.to_device(prior), "copied": cuda.to_device(np.broadcast_to(prior, mean.shape).copy())}
    means, out = cuda.to_device(mean), cuda.device_array((rows, 8), np.float32)
    expected = fastmvn.kl(mean[:2], np.eye(4, dtype=np.float32), np.eye(4, dtype=np.float32), None, prior, None)
    seconds = {}
    for name, second in gpu.items():
        def run():
            fc.kl(means, eye, eye, None, second, None, out=out)

        run()
        error = _relative_error(out.copy_to_host()[:2], expected)
        if error > 1e-4:
            raise SystemExit(f"a prior per component ({name}): fastmvn.cuda differs from the CPU kernels "
                             f"by {error:.1e}")
        seconds[name] = _median_event_seconds(cuda, run, args.repeat)
    ratio = f"{seconds['prior'] / seconds['copied']:.2f}" if seconds["prior"] and seconds["copied"] else "-"
    return (f"a prior per component, {rows:,}×8 items of 4×4 float32: {ratio} times the call with the prior "
            "copied out to every row")


if __name__ == "__main__":
    sys.exit(main())
