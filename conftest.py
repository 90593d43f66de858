"""Collection for the whole checkout: modules whose optional dependencies are missing (or,
for the CUDA modules, that have no GPU and no simulator to run on) are not collected."""

import importlib.util

collect_ignore = [] if importlib.util.find_spec("dask") else ["fastmvn/dask.py"]
try:
    import fastmvn.cuda  # noqa: F401
except ImportError:
    collect_ignore += ["fastmvn/cuda.py", "fastmvn/_cuda_kernels.py"]
if importlib.util.find_spec("torch") is None:
    collect_ignore += ["fastmvn/torch.py"]
if importlib.util.find_spec("jax") is None:
    collect_ignore += ["fastmvn/jax.py"]
