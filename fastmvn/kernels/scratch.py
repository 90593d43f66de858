"""The layout of the kernels' lane scratch.

Plain constants, no Numba: the kernels read them as globals, which Numba folds into the
compiled code as it compiles.
"""

#: Rows of the per-lane scalar scratch ``v`` (log-determinants, traces, …).
SCALARS = 9
