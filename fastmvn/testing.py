"""Random matrix normals and covariances for tests and benchmarks of code that uses fastmvn.

Every function takes a NumPy ``Generator`` and draws from it in a fixed order, so one seed
gives the same arrays on every platform; shapes follow fastmvn's convention of leading batch
axes ``shape`` before the matrix axes. Importing this module needs NumPy alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ._docs import shared

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._typing import FloatArray, Shape

__all__ = ["random_spd", "random_matrix_normal", "random_pair", "cholesky_factors", "conditioned_spd"]


@shared
def random_spd(rng: np.random.Generator, shape: Shape, size: int, jitter: float = 0.1) -> FloatArray:
    """Random symmetric positive definite matrices: ``A Aᵀ / (size + 2) + jitter·I`` for ``A``
    of independent standard normal entries, ``size × (size + 2)``.

    Parameters
    ----------
    %(rng)s
    %(shape)s
    size : int
        The side of each matrix.
    jitter : float, optional
        Added to the diagonal; it bounds the smallest eigenvalue from below.

    Returns
    -------
    spd : ``(*shape, size, size)`` ndarray
        float64 matrices with eigenvalues of order 1, all of them at least ``jitter``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmvn.testing import random_spd
    >>> u = random_spd(np.random.default_rng(0), (5,), 3)
    >>> u.shape
    (5, 3, 3)
    >>> bool(np.allclose(u, np.swapaxes(u, -1, -2)) and (np.linalg.eigvalsh(u) >= 0.1).all())
    True
    """
    a = rng.standard_normal(tuple(shape) + (size, size + 2))
    return a @ np.swapaxes(a, -1, -2) / (size + 2) + jitter * np.eye(size)


@shared
def random_matrix_normal(rng: np.random.Generator, shape: Shape, n: int, p: int) -> list[FloatArray]:
    """Random parameters of ``n×p`` matrix normals: standard normal means, and row and column
    covariances from :func:`random_spd`.

    Parameters
    ----------
    %(rng)s
    %(shape)s
    %(n, p)s

    Returns
    -------
    params : list of ndarray
        ``[mean, rowcov, colcov]`` of shapes ``(*shape, n, p)``, ``(*shape, n, n)`` and
        ``(*shape, p, p)``, float64, drawn in that order.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> from fastmvn.testing import random_matrix_normal
    >>> mean, rowcov, colcov = random_matrix_normal(np.random.default_rng(0), (10,), 4, 3)
    >>> mean.shape, rowcov.shape, colcov.shape
    ((10, 4, 3), (10, 4, 4), (10, 3, 3))
    >>> fm.logpdf(mean, mean, rowcov, colcov).shape
    (10,)
    """
    shape = tuple(shape)
    return [rng.standard_normal(shape + (n, p)), random_spd(rng, shape, n), random_spd(rng, shape, p)]


@shared
def random_pair(rng: np.random.Generator, shape: Shape, n: int, p: int) -> list[FloatArray]:
    """Two batches of random ``n×p`` matrix normals, the arguments of :func:`fastmvn.kl`: two
    draws of :func:`random_matrix_normal` in turn.

    Parameters
    ----------
    %(rng)s
    %(shape)s
    %(n, p)s

    Returns
    -------
    args : list of ndarray
        ``[mean1, rowcov1, colcov1, mean2, rowcov2, colcov2]``: means ``(*shape, n, p)``, row
        covariances ``(*shape, n, n)``, column covariances ``(*shape, p, p)``, float64.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> from fastmvn.testing import random_pair
    >>> args = random_pair(np.random.default_rng(0), (1000,), 4, 3)
    >>> [a.shape for a in args[:3]]
    [(1000, 4, 3), (1000, 4, 4), (1000, 3, 3)]
    >>> kl = fm.kl(*args)
    >>> kl.shape, bool((kl > 0).all())
    ((1000,), True)
    """
    return random_matrix_normal(rng, shape, n, p) + random_matrix_normal(rng, shape, n, p)


def cholesky_factors(args: Sequence[FloatArray]) -> list[FloatArray]:
    """The arguments of :func:`random_pair` (or the first three of them) with each covariance
    replaced by its lower Cholesky factor, the arguments of :func:`fastmvn.kl_chol`.

    Parameters
    ----------
    args : sequence of ndarray
        ``[mean1, rowcov1, colcov1, mean2, rowcov2, colcov2]`` or a prefix of it.

    Returns
    -------
    factors : list of ndarray
        ``[mean1, rowchol1, colchol1, …]``, the means as given, each factor of the shape of
        its covariance.

    Examples
    --------
    >>> import numpy as np, fastmvn as fm
    >>> from fastmvn.testing import cholesky_factors, random_pair
    >>> args = random_pair(np.random.default_rng(0), (100,), 3, 2)
    >>> bool(np.allclose(fm.kl_chol(*cholesky_factors(args)), fm.kl(*args)))
    True
    """
    return [a if k % 3 == 0 else np.linalg.cholesky(a) for k, a in enumerate(args)]


@shared
def conditioned_spd(rng: np.random.Generator, shape: Shape, size: int, condition: float) -> FloatArray:
    """Random symmetric positive definite matrices of a given condition number: ``Q Λ Qᵀ`` for
    a random orthogonal ``Q`` and eigenvalues ``Λ`` from 1 to ``condition``, both ends
    included, the others log-uniform between them.

    Parameters
    ----------
    %(rng)s
    %(shape)s
    size : int
        The side of each matrix, at least 2.
    condition : float
        The condition number, the largest eigenvalue over the smallest; at least 1.

    Returns
    -------
    spd : ``(*shape, size, size)`` ndarray
        float64 matrices, smallest eigenvalue 1 and largest ``condition`` (to rounding).

    Raises
    ------
    ValueError
        ``size`` below 2 or ``condition`` below 1.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmvn.testing import conditioned_spd
    >>> a = conditioned_spd(np.random.default_rng(0), (5,), 4, 1e3)
    >>> a.shape
    (5, 4, 4)
    >>> bool(np.allclose(np.linalg.cond(a), 1e3))
    True
    """
    if size < 2:
        raise ValueError(f"size must be at least 2 (a 1×1 matrix has condition number 1); got {size}")
    if not condition >= 1:
        raise ValueError(f"condition must be at least 1; got {condition}")
    shape = tuple(shape)
    q, _ = np.linalg.qr(rng.standard_normal(shape + (size, size)))
    eigenvalues = np.exp(rng.uniform(0.0, np.log(condition), shape + (size,)))
    eigenvalues[..., 0], eigenvalues[..., -1] = 1.0, condition
    return (q * eigenvalues[..., None, :]) @ np.swapaxes(q, -1, -2)
