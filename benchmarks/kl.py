"""KL divergence between batches of matrix normals in each parameterisation."""

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
