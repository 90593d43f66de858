"""Doctests: the CUDA modules are collected only where fastmvn.cuda imports (a GPU, or NUMBA_ENABLE_CUDASIM=1)."""

try:
    import fastmvn.cuda  # noqa: F401
except ImportError:
    collect_ignore = ["fastmvn/cuda.py", "fastmvn/_cuda_kernels.py"]
