"""fastmvn: fast batched kernels for matrix-variate normal distributions.

A matrix normal ``MN(M, U, V)`` is the Gaussian ``vec X ~ N(vec M, V ⊗ U)`` on ``n×p``
matrices (column-major ``vec``, the convention of ``scipy.stats.matrix_normal``).
Every function takes stacks of matrices with NumPy broadcasting over the leading axes.
The plain NumPy specification of each function is :mod:`fastmvn.reference`.
"""

from ._api import (kl, kl_chol, kl_diag, logdet, logpdf, logpdf_chol, logpdf_diag, mahalanobis, mahalanobis_chol,
                   trace_solve)
from ._gradients import (kl_chol_value_and_grad, kl_diag_value_and_grad, kl_value_and_grad, logpdf_chol_value_and_grad,
                         logpdf_diag_value_and_grad, logpdf_value_and_grad)
from .distributions import (KroneckerSumNormal, MatrixGaussian, MatrixNormal, MatrixNormalFit, entropy, entropy_chol,
                            entropy_diag, expect_quadratic, fit, kl_eig, kl_eig_value_and_grad, kl_full, kl_gaussian,
                            kl_kron_sum, kl_kron_sum_value_and_grad, logpdf_kron_prec_value_and_grad,
                            logpdf_kron_sum, logpdf_kron_sum_value_and_grad, logpdf_prec, nearest_kronecker, pdf, pdf_chol, project, rvs,
                            rvs_diag)
from ._pool import set_buffer_pool

__version__ = "0.1.0"

__all__ = ["kl", "kl_chol", "kl_diag", "logdet", "logpdf", "logpdf_chol", "mahalanobis", "mahalanobis_chol",
           "trace_solve", "pdf", "pdf_chol", "entropy", "entropy_chol", "rvs", "fit", "MatrixNormal", "MatrixNormalFit",
           "MatrixGaussian", "kl_full", "kl_gaussian", "expect_quadratic", "nearest_kronecker", "project",
           "kl_value_and_grad", "kl_chol_value_and_grad", "kl_diag_value_and_grad", "logpdf_value_and_grad",
           "logpdf_chol_value_and_grad", "logpdf_diag_value_and_grad", "set_buffer_pool", "KroneckerSumNormal",
           "logpdf_kron_sum", "kl_kron_sum",
           "kl_eig", "logpdf_kron_sum_value_and_grad", "logpdf_kron_prec_value_and_grad", "kl_kron_sum_value_and_grad",
           "kl_eig_value_and_grad",
           "logpdf_diag", "logpdf_prec", "entropy_diag", "rvs_diag", "__version__"]
