"""KL divergence between batches of matrix normals in each parameterisation."""

from .common import Suite


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
