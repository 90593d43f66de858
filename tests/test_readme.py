"""The README: its Python example runs and its two computations of one KL agree, its relative
links lead to files of the repository, and it stays a short front page."""

import importlib.util
import pathlib
import re

import numpy as np

ROOT = pathlib.Path(__file__).parent.parent
README = ROOT / "README.md"


def test_readme_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks
    namespace = {}
    for block in blocks:
        if "import torch" in block and importlib.util.find_spec("torch") is None:
            continue  # a PyTorch example needs the torch extra
        exec(compile(block, str(README), "exec"), namespace)
    np.testing.assert_allclose(namespace["same"], namespace["kl"], rtol=1e-10)
    assert namespace["kl"].shape == (100_000,)


def test_readme_links_lead_to_files():
    targets = re.findall(r"\]\(([^)\s]+)\)", README.read_text())
    relative = [target.split("#")[0] for target in targets if not re.match(r"[a-z]+:", target)]
    assert "docs/bench.png" in relative and "docs/sizes.png" in relative and "CITATION.cff" in relative
    missing = [target for target in relative if not (ROOT / target).is_file()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_readme_is_a_short_front_page():
    assert len(README.read_text()) <= 12_000
