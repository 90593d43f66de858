"""The blocks of the KL: log-determinants, trace terms and Mahalanobis forms."""

from .common import BACKENDS, BATCHES, DTYPES, SQUARE, Suite


class Logdet(Suite):
    """``logdet`` of a batch of ``n×n`` covariances."""

    function = "logdet"
    params = [SQUARE, BATCHES, DTYPES, BACKENDS]
    param_names = ["n", "batch", "dtype", "backend"]


class TraceSolve(Suite):
    """``trace_solve`` of two batches of ``n×n`` covariances."""

    function = "trace_solve"
    params = [SQUARE, BATCHES, DTYPES, BACKENDS]
    param_names = ["n", "batch", "dtype", "backend"]


class Mahalanobis(Suite):
    """``mahalanobis`` of a batch of ``n×p`` points under a batch of matrix normals."""

    function = "mahalanobis"
