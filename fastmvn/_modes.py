"""What the batch driver computes, by number; the slots a0..a5 hold, in order:"""

KL_COV = 0  # mean1, rowcov1, colcov1, mean2, rowcov2, colcov2
KL_CHOL = 1  # mean1, rowchol1, colchol1, mean2, rowchol2, colchol2
KL_DIAG = 2  # mean1, rowvar1, colvar1, mean2, rowvar2, colvar2 (variances as (n, 1))
KL_STD_COV = 3  # mean1, rowcov1, colcov1 against MN(0, I, I)
KL_STD_CHOL = 4  # mean1, rowchol1, colchol1 against MN(0, I, I)
KL_STD_DIAG = 5  # mean1, rowvar1, colvar1 against MN(0, I, I)
LOGDET = 6  # a
TRACE_SOLVE = 7  # a, b
MAHALANOBIS = 8  # x, mean, rowcov, colcov
LOGPDF = 9  # x, mean, rowcov, colcov
LOGPDF_CHOL = 10  # x, mean, rowchol, colchol
MAHALANOBIS_CHOL = 11  # x, mean, rowchol, colchol
LOGPDF_DIAG = 12  # x, mean, rowvar, colvar (variances as (n, 1))
