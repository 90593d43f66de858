"""Doctests: the CUDA modules are collected only where fastmvn.cuda imports (a GPU, or
NUMBA_ENABLE_CUDASIM=1), and fastmvn.torch only where PyTorch is installed."""

import importlib.util

collect_ignore = []
try:
    import fastmvn.cuda  # noqa: F401
except ImportError:
    collect_ignore += ["fastmvn/cuda.py", "fastmvn/_cuda_kernels.py"]
if importlib.util.find_spec("torch") is None:
    collect_ignore += ["fastmvn/torch.py"]
