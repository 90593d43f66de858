"""Densities and entropies of batches of matrix normals."""

from .common import Suite


class MahalanobisChol(Suite):
    """``mahalanobis_chol`` of a batch of ``n×p`` points, from Cholesky factors."""

    function = "mahalanobis_chol"


class Logpdf(Suite):
    """``logpdf`` of a batch of ``n×p`` points under a batch of matrix normals."""

    function = "logpdf"


class LogpdfChol(Suite):
    """``logpdf_chol``: the same from Cholesky factors."""

    function = "logpdf_chol"


class Pdf(Suite):
    """``pdf``: ``exp`` of the log-density, with its overflow check."""

    function = "pdf"


class Entropy(Suite):
    """``entropy`` of a batch of matrix normals."""

    function = "entropy"


class EntropyChol(Suite):
    """``entropy_chol``: the same from Cholesky factors."""

    function = "entropy_chol"
