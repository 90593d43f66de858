"""KL divergence between batches of matrix normals in each parameterisation."""

import numpy as np

import fastmvn
from fastmvn import reference

from .common import QUICK, Suite


class KL(Suite):
    """``kl`` between two batches given by covariances."""

    function = "kl"


class KLStandard(Suite):
    """``kl`` of a batch against ``MN(0, I, I)`` (the second distribution omitted)."""

    function = "kl"
    case = "kl_standard"


class KLChol(Suite):
    """``kl_chol`` between two batches given by Cholesky factors."""

    function = "kl_chol"


class KLDiag(Suite):
    """``kl_diag`` between two batches with diagonal covariances."""

    function = "kl_diag"


#: Few large items, the LAPACK plan: a 256×256 covariance, an MNIST layer (784×150) and a
#: 1,024×1,024 covariance, one item each (a quick run takes one 64×64 item).
LARGE_SIZES = [(64, 64)] if QUICK else [(256, 256), (784, 150), (1024, 1024)]


class KLLarge(Suite):
    """``kl`` of one large pair (the LAPACK plan), against the NumPy reference."""

    function = "kl"
    params = [LARGE_SIZES, [1], ["float64"], ["cpu", "reference"]]


class KLLargeValueAndGrad(Suite):
    """``kl_value_and_grad`` of one large pair (the LAPACK plan)."""

    function = "kl_value_and_grad"
    case = "kl"
    params = [LARGE_SIZES, [1], ["float64"], ["cpu"]]

    def track_time_over_reference(self, *params):
        from asv_runner.benchmarks.mark import SkipNotImplemented

        raise SkipNotImplemented("the reference has no gradient")

    def track_time_over_value(self, *params):
        """Time of the value and six gradients over that of ``kl``'s value alone, the two in
        alternation (the gradients' own cost: 3 would be three values' time)."""
        from fastmvn import _bench

        times = _bench.median_times({"both": self.call, "value": lambda: fastmvn.kl(*self.args)}, repeat=3)
        return times["both"] / times["value"]

    track_time_over_value.unit = "ratio"


#: Mid-sized items in batches, on both sides of the plans' thresholds: lanes in one chunk split
#: over threads (16×16 × 64 and × 256), LAPACK from 48×48 at any batch (LAPACK split over threads)
#: and 96×96 (a quick run: 24×24 × 8).
MID_SIZES, MID_BATCHES = ([(24, 24)], [8]) if QUICK else ([(16, 16), (48, 48), (96, 96)], [64, 256])


class KLMidBatch(Suite):
    """``kl`` of a batch of mid-sized pairs: the plan's choice between lanes and LAPACK, each split
    over threads by the work of the batch."""

    function = "kl"
    params = [MID_SIZES, MID_BATCHES, ["float64"], ["cpu", "reference"]]


class KLMidBatchValueAndGrad(KLLargeValueAndGrad):
    """``kl_value_and_grad`` of a batch of mid-sized pairs (lanes at 16×16, LAPACK from 32×32
    at any batch)."""

    params = [MID_SIZES, MID_BATCHES, ["float64"], ["cpu"]]


class KLSingleCall:
    """One call of ``kl`` (and of ``kl_value_and_grad``, also against the standard prior; both
    also into ``out=``) on a single 4×4 pair: the Python layer and the launch, against the
    NumPy reference's call."""

    def setup(self):
        import numpy as np

        from fastmvn import _bench

        self.args = [a[0] for a in _bench.random_pair(1, 4, 4, np.float64)]
        self.out = np.empty(())
        self.grad_out = (np.empty(()), tuple(np.empty_like(a) for a in self.args))
        fastmvn.kl(*self.args)
        fastmvn.kl(*self.args, out=self.out)
        fastmvn.kl_value_and_grad(*self.args)
        fastmvn.kl_value_and_grad(*self.args, out=self.grad_out)
        fastmvn.kl_value_and_grad(*self.args[:3])

    def time_call(self):
        fastmvn.kl(*self.args)

    def time_call_into_out(self):
        """Into ``out=`` (planned as the call without it)."""
        fastmvn.kl(*self.args, out=self.out)

    def track_time_over_reference(self):
        """Time of one call over that of :func:`fastmvn.reference.kl` (below 1 is faster)."""
        from fastmvn import _bench

        return (_bench.median_time(lambda: fastmvn.kl(*self.args), repeat=50)
                / _bench.median_time(lambda: reference.kl(*self.args), repeat=50))

    track_time_over_reference.unit = "ratio"

    def time_value_and_grad(self):
        fastmvn.kl_value_and_grad(*self.args)

    def time_value_and_grad_into_out(self):
        """Value and gradients into ``out=``'s arrays (planned as the call without it)."""
        fastmvn.kl_value_and_grad(*self.args, out=self.grad_out)

    def time_value_and_grad_to_standard(self):
        """Against MN(0, I, I), the second distribution's arguments None."""
        fastmvn.kl_value_and_grad(*self.args[:3])

    def track_value_and_grad_over_value(self):
        """Time of one ``kl_value_and_grad`` call over that of one ``kl`` call (both planned)."""
        from fastmvn import _bench

        times = _bench.median_times({"both": lambda: fastmvn.kl_value_and_grad(*self.args),
                                     "value": lambda: fastmvn.kl(*self.args)}, repeat=50)
        return times["both"] / times["value"]

    track_value_and_grad_over_value.unit = "ratio"


class KLComponentPrior:
    """``kl`` and ``kl_value_and_grad`` against a prior per mixture component (batch axes that
    cannot be merged), against the same calls with the prior copied out to the whole batch."""

    timeout = 300

    def setup(self):
        import numpy as np

        from fastmvn.testing import random_spd

        rng = np.random.default_rng(0)
        batch = 100 if QUICK else 20_000
        self.mean = rng.standard_normal((batch, 8, 4, 4))
        self.prior = random_spd(rng, (8,), 4)
        self.copied = np.broadcast_to(self.prior, self.mean.shape).copy()
        self.eye = np.eye(4)
        fastmvn.kl(self.mean, self.eye, self.eye, None, self.prior, None)
        fastmvn.kl(self.mean, self.eye, self.eye, None, self.copied, None)

    def time_call(self):
        fastmvn.kl(self.mean, self.eye, self.eye, None, self.prior, None)

    def track_time_over_copied(self):
        """Time of the call over that with the prior copied out (1 would cost nothing)."""
        from fastmvn import _bench

        times = _bench.median_times({
            "prior": lambda: fastmvn.kl(self.mean, self.eye, self.eye, None, self.prior, None),
            "copied": lambda: fastmvn.kl(self.mean, self.eye, self.eye, None, self.copied, None)}, repeat=5)
        return times["prior"] / times["copied"]

    track_time_over_copied.unit = "ratio"

    def track_value_and_grad_over_copied(self):
        """``kl_value_and_grad``'s time over that with the prior copied out (1 would cost
        nothing; the prior's gradient is summed over the rows, the copy's is not)."""
        from fastmvn import _bench

        times = _bench.median_times({
            "prior": lambda: fastmvn.kl_value_and_grad(self.mean, self.eye, self.eye, None, self.prior, None),
            "copied": lambda: fastmvn.kl_value_and_grad(self.mean, self.eye, self.eye, None, self.copied, None)},
            repeat=5)
        return times["prior"] / times["copied"]

    track_value_and_grad_over_copied.unit = "ratio"


class KLLargeFloors:
    """One large item against the floors of its work, as ratios measured in one run: ``kl``
    over the four Cholesky factorisations it needs (through the same LAPACK, SciPy's) and over
    those and the two triangular solves of its Mahalanobis term, ``kl_value_and_grad`` over
    ``kl``, and ``kl_diag`` over one read of its inputs and its value and gradients over it."""

    params = [LARGE_SIZES]
    param_names = ["size"]
    timeout = 300

    def setup(self, size):
        import numpy as np

        from fastmvn import _bench

        n, p = size
        self.pair = [a[0] for a in _bench.random_pair(1, n, p)]
        self.diagonal = [np.ascontiguousarray(a[0]) for a in _bench.random_inputs("kl_diag", 1, n, p)]
        self.factors = [np.ascontiguousarray(a[0]) for a in _bench.random_inputs("kl_chol", 1, n, p)]
        fastmvn.kl_value_and_grad(*self.pair)
        fastmvn.kl_chol_value_and_grad(*self.factors)
        fastmvn.kl_diag(*self.diagonal)
        fastmvn.kl_diag_value_and_grad(*self.diagonal)

    def track_kl_over_four_choleskys(self, size):
        """``kl`` over ``scipy.linalg.lapack.dpotrf`` of its four covariances."""
        from scipy.linalg import lapack

        from fastmvn import _bench

        covariances = [np.asfortranarray(self.pair[k]) for k in (1, 2, 4, 5)]
        times = _bench.median_times({
            "kl": lambda: fastmvn.kl(*self.pair),
            "choleskys": lambda: [lapack.dpotrf(a, lower=0, clean=0) for a in covariances]}, repeat=5)
        return times["kl"] / times["choleskys"]

    def track_kl_of_equal_means_over_four_choleskys(self, size):
        """``kl`` of two distributions with the same mean (whose difference needs no whitening)
        over ``scipy.linalg.lapack.dpotrf`` of its four covariances."""
        from scipy.linalg import lapack

        from fastmvn import _bench

        pair = list(self.pair)
        pair[3] = pair[0]
        covariances = [np.asfortranarray(pair[k]) for k in (1, 2, 4, 5)]
        times = _bench.median_times({
            "kl": lambda: fastmvn.kl(*pair),
            "choleskys": lambda: [lapack.dpotrf(a, lower=0, clean=0) for a in covariances]}, repeat=5)
        return times["kl"] / times["choleskys"]

    def track_kl_over_its_routines(self, size):
        """``kl`` over the routines that no way of computing it can leave out, timed alone through
        SciPy: ``dpotrf`` of its four covariances and the two ``dtrsm`` of
        ``L2⁻¹ (M2 − M1) Q2⁻ᵀ``."""
        from scipy.linalg import blas, lapack

        from fastmvn import _bench

        covariances = [np.asfortranarray(self.pair[k]) for k in (1, 2, 4, 5)]
        row2, col2 = (np.asfortranarray(np.linalg.cholesky(self.pair[k])) for k in (4, 5))
        difference = np.asfortranarray(self.pair[3] - self.pair[0])

        def routines():
            for a in covariances:
                lapack.dpotrf(a, lower=0, clean=0)
            blas.dtrsm(1.0, col2, blas.dtrsm(1.0, row2, difference, lower=1), side=1, lower=1, trans_a=1)

        times = _bench.median_times({"kl": lambda: fastmvn.kl(*self.pair), "routines": routines}, repeat=5)
        return times["kl"] / times["routines"]

    def track_value_and_grad_over_value(self, size):
        """``kl_value_and_grad`` (every gradient) over ``kl``."""
        from fastmvn import _bench

        times = _bench.median_times({"kl": lambda: fastmvn.kl(*self.pair),
                                     "value_and_grad": lambda: fastmvn.kl_value_and_grad(*self.pair)}, repeat=5)
        return times["value_and_grad"] / times["kl"]

    def track_kl_chol_value_and_grad_over_value(self, size):
        """``kl_chol_value_and_grad`` (every gradient, lower triangles for the factors) over
        ``kl_chol``."""
        from fastmvn import _bench

        times = _bench.median_times({"kl_chol": lambda: fastmvn.kl_chol(*self.factors),
                                     "value_and_grad": lambda: fastmvn.kl_chol_value_and_grad(*self.factors)},
                                    repeat=5)
        return times["value_and_grad"] / times["kl_chol"]

    def track_kl_diag_value_and_grad_over_value(self, size):
        """``kl_diag_value_and_grad`` (every gradient) over ``kl_diag``: at least 2 (its
        gradients of the means are written as the means are read), about 3 with the write's
        own read of each line of the result."""
        from fastmvn import _bench

        times = _bench.median_times({"kl_diag": lambda: fastmvn.kl_diag(*self.diagonal),
                                     "value_and_grad": lambda: fastmvn.kl_diag_value_and_grad(*self.diagonal)},
                                    repeat=7)
        return times["value_and_grad"] / times["kl_diag"]

    def track_kl_diag_over_read(self, size):
        """``kl_diag`` over one read of its inputs (:func:`fastmvn._bench.read_pass`)."""
        from fastmvn import _bench

        times = _bench.median_times({"kl_diag": lambda: fastmvn.kl_diag(*self.diagonal),
                                     "read": lambda: _bench.read_pass(self.diagonal)}, repeat=7)
        return times["kl_diag"] / times["read"]

    track_kl_over_four_choleskys.unit = track_kl_over_its_routines.unit = "ratio"
    track_kl_of_equal_means_over_four_choleskys.unit = "ratio"
    track_kl_diag_value_and_grad_over_value.unit = "ratio"
    track_value_and_grad_over_value.unit = track_kl_chol_value_and_grad_over_value.unit = "ratio"
    track_kl_diag_over_read.unit = "ratio"


class KLKronSum:
    """``kl_kron_sum`` of a million pairs of 4×4 Kronecker-sum normals with full noise (a quick
    run: 1,000), against the batched eigh route in NumPy and in PyTorch on the CPU
    (:func:`fastmvn._bench.eigh_kl_kron_sum`: one LAPACK call per step on the whole stack)."""

    timeout = 600

    def setup(self):
        from fastmvn import _bench

        self.args = _bench.kron_sum_inputs(1_000 if QUICK else 1_000_000, 4, 4)
        fastmvn.kl_kron_sum(*self.args)

    def time_call(self):
        fastmvn.kl_kron_sum(*self.args)

    def _over(self, name, route):
        from fastmvn import _bench

        if route is None:
            from asv_runner.benchmarks.mark import SkipNotImplemented

            raise SkipNotImplemented(f"{name} is not installed")
        times = _bench.median_times({"fastmvn": lambda: fastmvn.kl_kron_sum(*self.args), name: route}, repeat=3)
        return times["fastmvn"] / times[name]

    def track_time_over_numpy_eigh(self):
        """Time of ``kl_kron_sum`` over that of the NumPy eigh route, in one run (below 1 is faster)."""
        from fastmvn import _bench

        return self._over("numpy", lambda: _bench.eigh_kl_kron_sum(np, *self.args))

    def track_time_over_torch_eigh(self):
        """Time of ``kl_kron_sum`` over that of the PyTorch eigh route (``torch.linalg.eigh``), in one run."""
        from fastmvn import _bench

        return self._over("torch", _bench.torch_kl_kron_sum(self.args))

    track_time_over_numpy_eigh.unit = track_time_over_torch_eigh.unit = "ratio"
