"""Collection for the whole checkout: modules whose optional dependencies are missing are not collected."""

import importlib.util

collect_ignore = [] if importlib.util.find_spec("dask") else ["fastmvn/dask.py"]
