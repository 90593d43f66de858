"""The matrix-variate distributions: the frozen :class:`MatrixNormal`, :class:`MatrixGaussian` and
:class:`KroneckerSumNormal`, the matrix normal's functions of its parameters, the KL divergences
between them, and fitting.

Modules, each importing only those above it:

* :mod:`._base`: the frozen distributions' shared skeleton and the checks and factorisation
  with failures located by argument and batch index;
* :mod:`.functions`: :func:`pdf`, :func:`pdf_chol`, :func:`entropy`, :func:`entropy_chol`, :func:`rvs`,
  :func:`entropy_diag`, :func:`rvs_diag`, :func:`logpdf_prec`;
* :mod:`.normal`: :class:`MatrixNormal`;
* :mod:`.gaussian`: :class:`MatrixGaussian` and :func:`expect_quadratic`;
* :mod:`.kron`: :class:`KroneckerSumNormal` (a Kronecker product plus noise), :func:`logpdf_kron_sum`,
  :func:`kl_kron_sum` and :func:`kl_eig`;
* :mod:`.kron_grad`: :func:`logpdf_kron_sum_value_and_grad`, :func:`logpdf_kron_prec_value_and_grad`,
  :func:`kl_kron_sum_value_and_grad` and :func:`kl_eig_value_and_grad`;
* :mod:`.kl`: :func:`kl_full` and :func:`kl_gaussian`, and the links between the two families;
* :mod:`.fitting`: :func:`fit` (:class:`MatrixNormalFit`), :func:`nearest_kronecker`, :func:`project`.
"""

from .fitting import MatrixNormalFit, fit, nearest_kronecker, project
from .functions import entropy, entropy_chol, entropy_diag, logpdf_prec, pdf, pdf_chol, rvs, rvs_diag
from .gaussian import MatrixGaussian, expect_quadratic
from .kl import kl_full, kl_gaussian
from .kron import KroneckerSumNormal, kl_eig, kl_kron_sum, logpdf_kron_sum
from .kron_grad import (kl_eig_value_and_grad, kl_kron_sum_value_and_grad, logpdf_kron_prec_value_and_grad,
                        logpdf_kron_sum_value_and_grad)
from .normal import MatrixNormal

__all__ = ["pdf", "pdf_chol", "entropy", "entropy_chol", "rvs", "fit", "MatrixNormal", "MatrixNormalFit",
           "MatrixGaussian", "kl_full", "kl_gaussian", "expect_quadratic", "nearest_kronecker", "project",
           "KroneckerSumNormal", "logpdf_kron_sum", "kl_kron_sum", "kl_eig",
           "logpdf_kron_sum_value_and_grad", "logpdf_kron_prec_value_and_grad", "kl_kron_sum_value_and_grad",
           "kl_eig_value_and_grad",
           "entropy_diag", "rvs_diag", "logpdf_prec"]
