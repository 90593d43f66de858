"""The types that fastmvn's public signatures are annotated with.

Every annotated module starts with ``from __future__ import annotations`` and imports these
names under ``typing.TYPE_CHECKING`` only, so that an annotation is a string that nothing
evaluates at run time and ``import fastmvn`` imports no more than before.
"""

from collections.abc import Sequence
from typing import Any, Literal, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

__all__ = ["ArrayLike", "DTypeLike", "NDArray", "Errors", "FloatArray", "Result", "Gradients", "ValueAndGrad",
           "GradOut", "Wrt", "Size", "Seed", "Shape"]

#: ``errors=``: raise on the first failing item, or make each failing item NaN.
Errors: TypeAlias = Literal["raise", "nan"]

#: A float32 or float64 array.
FloatArray: TypeAlias = NDArray[np.floating[Any]]

#: A batched function's result: an array of the broadcast batch shape, or a NumPy scalar
#: where that shape is ``()``.
Result: TypeAlias = FloatArray | np.floating[Any]

#: One gradient per argument, None for an argument passed as None or left out of ``wrt``.
Gradients: TypeAlias = tuple[FloatArray | None, ...]

#: What a ``*_value_and_grad`` function returns: the value and the gradients.
ValueAndGrad: TypeAlias = tuple[Result, Gradients]

#: The ``out=`` of a ``*_value_and_grad`` function: arrays in the structure of its result.
GradOut: TypeAlias = tuple[FloatArray | None, Sequence[FloatArray | None] | None]

#: ``wrt=``: the names of the arguments whose gradients to compute.
Wrt: TypeAlias = str | Sequence[str] | None

#: A shape given as one int or a tuple of ints (``size=`` of the samplers).
Size: TypeAlias = int | tuple[int, ...] | None

#: A batch shape.
Shape: TypeAlias = tuple[int, ...]

#: ``random_state=``: what ``numpy.random.default_rng`` takes (a generator, a seed, or None for
#: fresh entropy).
Seed: TypeAlias = np.random.Generator | np.random.BitGenerator | np.random.SeedSequence | int | Sequence[int] | None
