"""Optional dependencies: without Dask, fastmvn imports and fastmvn.dask says how to get it."""

import subprocess
import sys


def test_fastmvn_works_without_dask_and_fastmvn_dask_says_what_to_install():
    script = ("import sys\n"
              "sys.modules['dask'] = None  # as if Dask were not installed\n"
              "import numpy as np, fastmvn as fm\n"
              "assert fm.kl(np.ones((2, 2)), np.eye(2), np.eye(2)) > 0\n"
              "try:\n"
              "    import fastmvn.dask\n"
              "except ImportError as error:\n"
              "    print(error)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert 'pip install "fastmvn[dask]"' in done.stdout
