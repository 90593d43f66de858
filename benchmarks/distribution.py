"""Densities and entropies of batches of matrix normals."""

import numpy as np

import fastmvn

from .common import QUICK, Suite


class MahalanobisChol(Suite):
    """``mahalanobis_chol`` of a batch of ``n×p`` points, from Cholesky factors."""

    function = "mahalanobis_chol"


class Logpdf(Suite):
    """``logpdf`` of a batch of ``n×p`` points under a batch of matrix normals."""

    function = "logpdf"


class LogpdfChol(Suite):
    """``logpdf_chol``: the same from Cholesky factors."""

    function = "logpdf_chol"


class LogpdfDiag(Suite):
    """``logpdf_diag``: the same with diagonal covariances, ``O(np)`` per item."""

    function = "logpdf_diag"


class Pdf(Suite):
    """``pdf``: ``exp`` of the log-density, with its overflow check."""

    function = "pdf"


class Entropy(Suite):
    """``entropy`` of a batch of matrix normals."""

    function = "entropy"


class EntropyChol(Suite):
    """``entropy_chol``: the same from Cholesky factors."""

    function = "entropy_chol"


class LogpdfKronSum:
    """``logpdf_kron_sum`` of one ``n×p`` point under ``V⊗U + σ²I`` (isotropic noise), against
    the NumPy route by hand (:func:`fastmvn._bench.eigh_logpdf_kron_sum`: ``eigh`` of both
    factors) and, at 40×30, the dense ``np×np`` Cholesky route (:func:`fastmvn.reference.logpdf_kron_sum`)."""

    params = ["40x30", "400x300"]
    param_names = ["size"]

    def setup(self, size):
        from fastmvn import _bench

        n, p = map(int, size.split("x"))
        rng = np.random.default_rng(0)
        self.args = (rng.standard_normal((n, p)), rng.standard_normal((n, p)), _bench.random_spd(rng, (), n),
                     _bench.random_spd(rng, (), p), 0.3)
        fastmvn.logpdf_kron_sum(*self.args)

    def time_call(self, size):
        fastmvn.logpdf_kron_sum(*self.args)

    def _over(self, route):
        """Time over that of ``route``, each timed in a block of its own: NumPy's and SciPy's
        BLAS each keep a pool of threads, and after one of NumPy's multi-threaded calls its
        threads wait busy for a while, which took a 40×30 log-density from 0.24 to 0.59 ms."""
        from fastmvn import _bench

        return _bench.median_time(lambda: fastmvn.logpdf_kron_sum(*self.args), 9) / _bench.median_time(route, 9)

    def track_time_over_eigh_route(self, size):
        """Time of ``logpdf_kron_sum`` over that of the NumPy eigh route, in one run (below 1 is faster)."""
        from fastmvn import _bench

        return self._over(lambda: _bench.eigh_logpdf_kron_sum(*self.args))

    def track_time_over_dense_route(self, size):
        """Time over that of the dense Cholesky route (40×30 only: at 400×300 the ``np×np`` matrix
        is 115 GB)."""
        from fastmvn import reference

        if size != "40x30":
            from asv_runner.benchmarks.mark import SkipNotImplemented

            raise SkipNotImplemented("the dense route needs an np×np matrix")
        return self._over(lambda: reference.logpdf_kron_sum(*self.args))

    track_time_over_eigh_route.unit = track_time_over_dense_route.unit = "ratio"


class LogpdfDiagLarge:
    """``logpdf_diag`` of one large item, against one read of its inputs
    (:func:`fastmvn._bench.read_pass`) and the NumPy one-liner with the same terms."""

    params = [[(64, 64)] if QUICK else [(256, 256), (784, 150), (1024, 1024)]]
    param_names = ["size"]

    def setup(self, size):
        n, p = size
        rng = np.random.default_rng(0)
        self.args = (rng.standard_normal((n, p)), rng.standard_normal((n, p)), rng.uniform(0.5, 2.0, n),
                     rng.uniform(0.5, 2.0, p))
        fastmvn.logpdf_diag(*self.args)

    def time_call(self, size):
        fastmvn.logpdf_diag(*self.args)

    def track_time_over_read(self, size):
        """Time of ``logpdf_diag`` over one read of its inputs (1 is the floor of its memory traffic)."""
        from fastmvn import _bench

        times = _bench.median_times({"logpdf_diag": lambda: fastmvn.logpdf_diag(*self.args),
                                     "read": lambda: _bench.read_pass(self.args)}, repeat=7)
        return times["logpdf_diag"] / times["read"]

    def track_time_over_numpy(self, size):
        """Time over that of NumPy's ``−½(np log 2π + p Σ log a + n Σ log b + Σ ((X − M)² / b) / a)``."""
        from fastmvn import _bench

        x, mean, a, b = self.args
        n, p = x.shape

        def numpy():
            return -0.5 * (n * p * np.log(2 * np.pi) + p * np.log(a).sum() + n * np.log(b).sum()
                           + (((x - mean) ** 2 / b).sum(axis=1) / a).sum())

        times = _bench.median_times({"logpdf_diag": lambda: fastmvn.logpdf_diag(*self.args), "numpy": numpy},
                                    repeat=7)
        return times["logpdf_diag"] / times["numpy"]

    track_time_over_read.unit = track_time_over_numpy.unit = "ratio"
