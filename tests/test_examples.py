"""Every script in examples/ runs to its end, in quick mode (``FASTMVN_EXAMPLES_QUICK=1``: a few
steps on small sizes), in a new interpreter, and prints what it should."""

import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parent.parent

#: Each example: the module it needs beyond fastmvn's dependencies (or None), and a pattern its
#: output must match in quick mode.
EXAMPLES = {
    "train_latent.py": ("torch", r"(?m)^step   19  loss .*\nloss per observation: \d+\.\d+ at the first step, "
                                 r"\d+\.\d+ at the last$"),
}


def test_every_example_is_listed():
    assert sorted(path.name for path in (ROOT / "examples").glob("*.py")) == sorted(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs_quickly(name):
    needs, expected = EXAMPLES[name]
    if needs is not None and importlib.util.find_spec(needs) is None:
        pytest.skip(f"{name} needs {needs}")
    path = os.pathsep.join([str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    done = subprocess.run([sys.executable, str(ROOT / "examples" / name)], capture_output=True, text=True,
                          env=dict(os.environ, FASTMVN_EXAMPLES_QUICK="1", PYTHONPATH=path), timeout=600)
    assert done.returncode == 0, done.stderr
    assert re.search(expected, done.stdout), done.stdout
