"""The command line: kl on an .npz, info, and a small bench."""

import numpy as np
import pytest

import fastmvn as fm
from fastmvn import cli

from conftest import spd


def test_kl_command(tmp_path, rng, capsys):
    arrays = dict(mean1=rng.standard_normal((5, 3, 2)), rowchol1=np.linalg.cholesky(spd(rng, (5,), 3)),
                  colchol1=np.eye(2), mean2=np.zeros((3, 2)))
    np.savez(tmp_path / "in.npz", **arrays)
    cli.main(["kl", str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npy")])
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), fm.kl_chol(*arrays.values()))
    assert "(5,) float64" in capsys.readouterr().out


def test_kl_command_names_missing_arrays(tmp_path):
    np.savez(tmp_path / "in.npz", mean=np.zeros((2, 2)))
    with pytest.raises(SystemExit, match=r"holds \['mean'\]; expected mean1"):
        cli.main(["kl", str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npy")])


def test_info(capsys):
    cli.main(["info"])
    out = capsys.readouterr().out
    assert out.startswith(f"fastmvn {fm.__version__}") and "threads:" in out and "cuda:" in out


def test_bench_prints_a_table(capsys):
    cli.main(["bench", "--n", "2", "--p", "3", "--batch", "500", "--repeat", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert "× reference" in lines[1]
    assert lines[2].split()[:3] == ["2×3", "500", "float64"]
