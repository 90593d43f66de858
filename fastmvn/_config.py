"""The tunables of fastmvn in one place, each with the reason for its value.

Python code reads each value here at its use site (``_config.CHUNK``), so that a change
made at run time (a test's ``monkeypatch.setattr(fastmvn._config, "CHUNK", 4)``) takes
effect. :data:`LANES` and :data:`SMALL_LANES` are the exception: the compiled CPU kernels
import them, and Numba folds a global into the machine code when it compiles, so they are
compile-time constants that a change here after compilation does not reach. This module
imports nothing, so that ``import fastmvn`` stays free of Numba.
"""

#: Items per chunk of the CPU batch drivers (``fastmvn._api``): one chunk is one task of the
#: parallel loop, allocates its lane scratch once and records its first failing item. 256 items
#: fill whole groups of lanes (2 of :data:`SMALL_LANES`, 8 of :data:`LANES` in float64) while a
#: batch of a few thousand items already splits into a chunk for every thread.
CHUNK = 256

#: float32 data of matrices up to this side is computed in float32 arithmetic, whose rounding
#: error grows with the size and the condition number κ: up to here it stays within
#: (κ + 1)·1.5e-7 of max(|result|, 1) (measured to κ = 1e3). Larger ones are computed in float64
#: (``fastmvn._batch.working_dtype``).
FLOAT32_ARITHMETIC_MAX_SIDE = 16

#: Items computed side by side by one call of a per-item kernel in the CPU drivers ...
#: (a compile-time constant of ``fastmvn.kernels.drivers``, see above)
LANES = 32
#: ... and for matrices up to 4×4, whose loops over the lanes are the only long ones: 128 amortise
#: the setup of each short loop over more items (64 were 10% slower, 256 no faster). A
#: compile-time constant as :data:`LANES`.
SMALL_LANES = 128

#: Items of largest side ``s`` (``n``, ``p`` or the side of a square argument) are computed one
#: at a time through LAPACK and BLAS (``fastmvn._large``), not in lanes, when ``s`` is at least
#: :data:`LAPACK_MIN_SIDE` and the batch has at most ``(s / LAPACK_BATCH_SIDE)²`` items, or ``s``
#: is at least :data:`LAPACK_ALL_SIDE`: LAPACK's blocked factorisations win on few large items,
#: the lanes' parallel loop over items on many small ones. Measured 2026-12-07 on 2 cores (AMD
#: EPYC Zen 5, TBB threading layer, both plans splitting their items over threads by
#: :data:`THREADS_MIN_WORK`, a call's large items one compiled call), KLs in one process, lanes'
#: time over LAPACK's, two runs (details in ``docs/performance.md``): 22×22 × 1 0.99–1.13, × 2
#: 1.02–1.05, × 4 0.67–0.68; 24×24 × 2 1.26–1.34, × 4 0.89–0.90; 32×32 × 4 1.40–1.41, × 8
#: 1.53–1.58, × 16 0.97–1.17, × 1,000 1.01; 40×40 × 16 1.32–1.34, × 64 1.11–1.22, × 1,000
#: 1.09–1.12; 48×48 × 1,000 1.38–1.39.
LAPACK_BATCH_SIDE = 12
#: ... (see above) at any batch size from this side on
LAPACK_ALL_SIDE = 40
#: ... and for values with gradients, which gain more from LAPACK's BLAS-3 (lanes over LAPACK,
#: the same day: one 12×12 0.80–0.87, one 14×14 1.12, 2 of 14×14 0.96–0.97, 2 of 16×16
#: 1.19–1.23, 4 of 16×16 0.87, 4 of 20×20 1.14–1.17, 8 of 20×20 0.70–0.73, 8 of 24×24
#: 1.58–1.69, 16 of 24×24 1.01–1.03, 64 of 24×24 0.89–0.90, 16 of 32×32 1.40, 1,000 of 32×32
#: 1.16–1.18), these three (float32 items up to :data:`FLOAT32_ARITHMETIC_MAX_SIDE` stay in the
#: lanes, in float32, whether gradients are asked for or not)
LAPACK_GRADIENT_MIN_SIDE = 14
LAPACK_GRADIENT_BATCH_SIDE = 8
LAPACK_GRADIENT_ALL_SIDE = 32
#: ... and no smaller side: below it the lanes take less time for a whole item than LAPACK's
#: calls (``fastmvn._large_items``). One KL, lanes' time over LAPACK's: 20×20 0.83–0.95,
#: 22×22 0.99–1.13, 24×24 1.19–1.37 (2026-12-07; a log-density and a KL's value and gradient
#: cross at about the same side or below, float32 data up to :data:`FLOAT32_ARITHMETIC_MAX_SIDE`
#: computed in float32 in lanes).
LAPACK_MIN_SIDE = 22

#: The values of diagonal covariances are computed one item at a time where each lies
#: (``fastmvn.kernels.drivers.diagonal_batch``), not in lanes, for items of largest side from
#: :data:`DIAGONAL_KL_STREAM_MIN_SIDE` (``kl_diag`` between two distributions) and
#: :data:`DIAGONAL_LOGPDF_STREAM_MIN_SIDE` (``logpdf_diag``), and wherever the plan for large
#: items would take them (the KL to ``MN(0, I, I)`` only there: its lanes sum ``‖M1‖²`` from the
#: input, as fast as a stream, and many items side by side take their logarithms faster). The
#: lanes gather the differences of the means into scratch and read them again; one pass over
#: each item where it lies takes, over the lanes' time (2026-12-07, 2-core Zen 5, float64,
#: batches of 1,000 and of 3 MB of means): ``kl_diag`` 4×4 1.35 and 1.64, 8×8 1.26 and 1.34,
#: 12×12 1.23 and 1.11, 16×16 1.05 and 0.42, 24×24 0.56 and 0.62, 64×64 0.45 and 0.28;
#: ``logpdf_diag`` 4×4 1.02 and 1.06, 8×8 0.93 and 0.44, 16×16 0.47 and 0.36, 64×64 0.26 and
#: 0.25; the standard prior 16×16 1.55 and 1.06, 32×32 1.57 and 0.90. One item is decided by
#: its shape as any other, for the bits it has in a batch (one 4×4 item took 6.9 µs in the
#: stream against 8.1 in lanes).
DIAGONAL_KL_STREAM_MIN_SIDE = 16
#: ... (see above; ``logpdf_diag_value_and_grad`` from here too, through
#: ``fastmvn.kernels.drivers.diagonal_grad_batch``, whose one pass over each item's entries
#: is vector code, over the lanes' time: 6×6 1.04 and 1.10, 8×8 0.98 and 0.98, 12×12 0.90 and
#: 0.80, 16×16 0.59 and 0.54)
DIAGONAL_LOGPDF_STREAM_MIN_SIDE = 8
#: ... and the values and gradients of ``kl_diag`` and of its standard prior
#: (``kl_diag_value_and_grad``, through ``diagonal_grad_batch``) from this side, and wherever
#: the plan for large items would take them. The stream over the lanes (2026-12-07, 2-core
#: Zen 5, float64, batches of 1,000 and of 3 MB of means): ``kl_diag`` 6×6 1.24 and 1.34, 8×8
#: 1.26 and 1.20, 12×12 1.03 and 1.07, 16×16 0.75 and 0.67, 24×24 0.57 and 0.56; the standard
#: prior 8×8 1.26 and 1.47, 12×12 1.13 and 1.16, 16×16 0.85 and 0.84, 24×24 0.62 and 0.65.
DIAGONAL_KL_GRAD_STREAM_MIN_SIDE = 16
#: ... in chunks of at least this many entries of the means (8 MB in float64; a chunk is one
#: thread's task): one thread nearly saturates the memory of a 2-core machine, and waking the
#: thread pool costs more than a second thread saves below this. 8 items of 256×256 (half of
#: it) took 94 µs on the calling thread against 238 µs in 8 chunks on two threads; 4 of
#: 1,024×1,024 1.3 ms in 4 chunks against 1.8 ms on one thread (2026-12-07, 2-core Zen 5).
DIAGONAL_CHUNK_ENTRIES = 1 << 20

#: A batch's items are split over Numba's threads (at most one thread per item) where their work,
#: ``count·s³`` for ``count`` items of largest side ``s``, reaches :data:`THREADS_MIN_WORK` for
#: values, or :data:`THREADS_MIN_GRADIENT_WORK` for values with gradients (a KL's are about 3.5
#: times its value's multiply-adds); else one thread computes them all, which is quicker than
#: handing half of a fraction of a millisecond to another thread. This holds for the lanes (one
#: chunk of :data:`CHUNK` items or fewer is split into a chunk per thread) and for the plan for
#: large items (split into runs of items, one BLAS thread each, up to
#: :data:`ITEM_THREADS_MAX_SIDE`). Measured 2026-12-07 on 2 cores (AMD EPYC Zen 5, TBB threading
#: layer), the time of one thread over that of two: KLs in lanes, 8×8 × 256 items (work 131k)
#: 0.90–1.25, 16×16 × 64 (262k) 0.90–1.30, 12×12 × 256 (442k) 1.48–1.53, 16×16 × 128 1.47–1.55,
#: 32×32 × 64 1.73; their values and gradients 8×8 × 64 (33k) 0.95, 12×12 × 64 (110k) 1.42,
#: 16×16 × 32 (131k) 1.52, 8×8 × 256 1.58; KLs of large items 32×32 × 4 (131k) 0.74, 40×40 × 4
#: (256k) 0.97, 32×32 × 8 (262k) 1.09, 48×48 × 4 (442k) 1.12, 64×64 × 4 1.35, 24×24 × 64 (885k)
#: 1.16; their values and gradients 32×32 × 2 (65k) 0.86, 24×24 × 8 (110k) 1.25, 40×40 × 2
#: (128k) 1.11, 32×32 × 4 (131k) 1.14. Later that day, KLs in lanes, three processes: 32×32 × 8
#: (262k) 0.86–0.92 (a chunk of 4 items fills 4 lanes, not 8), 16×16 × 64 (262k) 1.03–1.27,
#: 24×24 × 24 (331k) 0.86–1.20, 12×12 × 256 (442k) 1.25–1.64: hence 400k, not 250k.
THREADS_MIN_WORK = 400_000
#: ... (see above) for values with gradients
THREADS_MIN_GRADIENT_WORK = 80_000
#: Items of this side and larger are never split over threads in the plan for large items: they
#: gain more from BLAS-3's own threads.
ITEM_THREADS_MAX_SIDE = 512
#: Other items (one to a call, or outside those sides) use the BLAS library's threads from this
#: side up, one item after another, and one BLAS thread below it: waking a thread pool and
#: waiting for it costs a small item more than the split saves, and far more with other
#: processes busy on the cores, whose spinning threads then take turns with them: a value and
#: gradient of 128×128 KLs took 100× as long on two BLAS threads as on one
#: (``docs/performance.md``).
BLAS_THREADS_MIN_SIDE = 256

#: The large-item plan solves ``L2⁻¹ L1`` (two lower triangular factors, for ``tr(U2⁻¹ U1)``) in up
#: to this many blocks of columns, each with the trailing block of ``L2`` its nonzero rows meet:
#: the work of ``k`` blocks is ``(1/3 + 1/(2k) + 1/(6k²))·n³`` multiply-adds, against ``n³`` for one
#: solve with the whole matrix (0.43·n³ for 6). Blocks stay at least 64 columns wide, below which
#: BLAS-3 loses its speed.
TRIANGULAR_BLOCKS = 6

#: The largest ``n`` and ``p`` the CUDA kernels take (``fastmvn.cuda.MAX_SIZE``): each GPU thread
#: keeps its scratch in local arrays of a size fixed when the kernel compiles.
MAX_SIZE = 32

#: The scratch sizes the CUDA kernels are compiled for: the smallest that fits is used, so a 4×4
#: problem does not reserve local memory for 32×32 in every thread.
CUDA_SCRATCH_SIZES = (4, 8, 16, MAX_SIZE)

#: Threads per block of the CUDA batch kernels (one item per thread): a multiple of the 32-thread
#: warp, so only the last block of a batch has idle threads.
THREADS_PER_BLOCK = 128

#: The largest side ``n``, ``p`` of the Kronecker-sum items whose log-density and KL the compiled
#: kernels compute (``fastmvn.logpdf_kron_sum``, ``fastmvn.kl_kron_sum``): their cyclic Jacobi
#: eigensolver (``fastmvn.kernels.eigen``) is tested to converge in float64 up to 32×32. Larger
#: KLs go through NumPy's ``eigh`` (LAPACK) and its other stacked routines, log-densities through
#: one compiled LAPACK call per item from a smaller side still (:data:`KRON_SUM_LAPACK_MIN_SIDE`).
KRON_SUM_MAX_SIDE = 32

#: A Kronecker-sum log-density (``fastmvn.logpdf_kron_sum``) is one compiled call of LAPACK per
#: item (``fastmvn._large_items.kron_sum_logpdf``: the larger side made tridiagonal, the smaller
#: diagonalised) instead of the lanes' Jacobi eigensolver from this largest side, for few items
#: (the rule of :data:`LAPACK_MIN_SIDE`, with :data:`KRON_SUM_LAPACK_BATCH_SIDE` and
#: :data:`KRON_SUM_LAPACK_ALL_SIDE`). Lanes against LAPACK (2026-12-06, 2 cores, float64): one
#: item of 8×8 0.18 against 0.19 ms, 12×12 0.26 against 0.18, 32×32 3.3 against 0.38; 1,000
#: items of 12×12 18 against 27 ms, 16×16 48 against 45, 20×20 92 against 55.
KRON_SUM_LAPACK_MIN_SIDE = 12
#: ... for at most ``(side / KRON_SUM_LAPACK_BATCH_SIDE)²`` items ...
KRON_SUM_LAPACK_BATCH_SIDE = 8
#: ... and for any number of items from this side.
KRON_SUM_LAPACK_ALL_SIDE = 20

#: Arrays smaller than this come from ``np.empty``, not from the buffer pool (``fastmvn._pool``):
#: their memory is cheap and cached by the C allocator already.
MIN_BYTES = 1 << 22

#: The scratch of one large item (``fastmvn._large._arena``; a call whose items are split over
#: threads takes one part of a buffer for each run) comes from the buffer pool from this size
#: per item on, smaller scratch from ``np.empty``. Scratch is the matrices the
#: call makes (factors, solves, inverses: ``7n²`` numbers for a KL at ``n = p``), which without
#: it were new pages at every call from 256×256 up: on a 2-core VM (2026-12-07) a 256×256 KL
#: spent 2.6 ms of its 4.5 ms on them, a 1,024×1,024 one 18 ms of 108.
ARENA_MIN_BYTES = 1 << 18
#: ... up to this size per item: larger scratch (a KL's value from about 2,200×2,200, its value and
#: gradients from about 1,400×1,400, where new pages cost a few per cent of the call) is new
#: memory, freed as the call goes, so that the pool does not keep it.
ARENA_MAX_BYTES = 1 << 28
#: How many computations and item shapes the arenas' sizes are remembered for.
ARENA_KEYS = 64

#: A batch whose layout cannot be merged because an argument repeats along the first batch axis
#: but not along the others (a prior per mixture component, ``(components, n, n)`` against
#: means of ``(rows, components, n, p)``) runs in blocks of rows, that argument copied once
#: into a block's worth of at most this many bytes (``fastmvn._batch._row_blocks``), where
#: that takes no more launches than one per entry of the shortest batch axis that lets the others
#: merge, where that axis is not the first (whose launches would read contiguous rows).
BROADCAST_BLOCK_BYTES = 1 << 23
