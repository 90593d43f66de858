"""Per-item kernels (one small matrix problem each, in lanes) and the CPU batch drivers.

Every per-item function works on ``m`` items of a batch at once, side by side in *lanes*:
each of its arrays has a trailing lane axis (a factor is ``L[i, j, l]``, a per-item scalar
``t[l]``), and every loop over the lanes is innermost. The CPU driver runs
:func:`~fastmvn.kernels.drivers.lane_count` items per call, so the independent items fill the
vector units and hide the latency of the square roots and divisions that one small Cholesky
factor is made of; the CUDA kernel runs one item per thread (``m = 1``) through the same source.

The inputs are first copied into lane scratch (:func:`~fastmvn.kernels.values.gather_slots`,
only the lower triangle of a covariance or a Cholesky factor); the kernels then work in place
on the copies, with preallocated scratch (:mod:`fastmvn.kernels.scratch`), no allocation and
no exceptions. A failure (a matrix that is not positive definite, a non-positive variance)
makes that lane's result NaN; non-finite inputs propagate to a non-finite result. The batch
driver records the first such item per chunk and the Python layer (``fastmvn._api``) turns it
into an exception that names the argument and the batch index.

The arithmetic is done in the dtype of the scratch, which the batch drivers take from an
argument ``work``: float32 for float32 data of small matrices (half the bytes through the
caches, twice the lanes per vector), float64 otherwise (see
``fastmvn._batch.working_dtype``). The CUDA kernels compute in float64. Sums over a matrix
(traces, quadratic forms) and the products behind the log-determinants are accumulated in
float64 either way. Logs are the one operation the CPU cannot vectorise (there is no vector
math library), so a KL takes two: ``log(|U2|/|U1|)`` and ``log(|V2|/|V1|)``, each of one
product of ratios of diagonal entries (:func:`~fastmvn.kernels.lanes.log_diagonal`); for
square means (``n == p``) only one, of both products together
(:func:`~fastmvn.kernels.lanes.log_diagonals`).

The modules, each importing only those below it:

* :mod:`~fastmvn.kernels.scratch`: the layout of the lane scratch, named rows and slots;
* :mod:`~fastmvn.kernels.lanes`: the lane linear algebra;
* :mod:`~fastmvn.kernels.values`: gathering the slots, and the value of every mode;
* :mod:`~fastmvn.kernels.gradients`: the KL's value and gradient in one pass;
* :mod:`~fastmvn.kernels.eigen`: the lane eigensolver (cyclic Jacobi);
* :mod:`~fastmvn.kernels.kronsum`: the log-density and KL of Kronecker-sum normals;
* :mod:`~fastmvn.kernels.drivers`: the CPU batch drivers: the lanes', and one over items of
  diagonal covariances, each read where it lies.

The per-item functions are compiled with :func:`fastmvn._jit.item`, which records each of
them; their plain Python sources (``func.py_func``) are what other targets compile as well
(:func:`fastmvn._cuda_kernels.retarget`). Importing this package compiles nothing.
"""

from .drivers import diagonal_batch, diagonal_grad_batch, evaluate_batch, kron_sum_batch, value_and_grad_batch
from .eigen import jacobi
from .lanes import cholesky

__all__ = ["cholesky", "diagonal_batch", "diagonal_grad_batch", "evaluate_batch", "jacobi", "kron_sum_batch", "value_and_grad_batch"]
