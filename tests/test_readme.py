"""The README's Python example runs and its two computations of one KL agree."""

import importlib.util
import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).parent.parent / "README.md"


def test_readme_example_runs():
    sections = re.split(r"^## ", README.read_text(), flags=re.M)
    text = "".join(section for section in sections if not section.startswith("Beyond memory: Dask"))
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)  # the Dask one: tests/test_dask.py
    assert blocks
    namespace = {}
    for block in blocks:
        if "import torch" in block and importlib.util.find_spec("torch") is None:
            continue  # the PyTorch example needs the torch extra
        exec(compile(block, str(README), "exec"), namespace)
    np.testing.assert_allclose(namespace["same"], namespace["kl"], rtol=1e-10)
    assert namespace["kl"].shape == (100_000,)
