"""The command line: kl on an .npz, info, and a small bench."""

import sys

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


@pytest.mark.parametrize("case", ["kl_chol", "kl_standard", "logpdf", "entropy_chol"])
def test_bench_times_other_functions(capsys, case):
    cli.main(["bench", "--n", "3", "--batch", "300", "--repeat", "1", "--case", case])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("fastmvn.kl against MN(0, I, I)" if case == "kl_standard" else f"fastmvn.{case},")
    row = lines[2].split()
    assert row[:3] == ["3×3", "300", "float64"] and row[5] == "-"   # PyTorch runs only for kl
    assert float(row[4]) > 0 and float(row[6]) > 0


def test_bench_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "bench.png"
    cli.main(["bench", "--batch", "50", "--repeat", "1", "--plot", str(path)])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[2:7]] == ["2×2", "4×4", "8×8", "16×16", "32×32"]
    assert lines[-1] == f"throughput plot: {path}"
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_bench_plot_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(SystemExit, match=r"needs matplotlib: python3 -m pip install 'fastmvn\[plot\]'"):
        cli.main(["bench", "--batch", "50", "--plot", str(tmp_path / "bench.png")])
    assert not (tmp_path / "bench.png").exists()


def test_bench_plot_rejects_a_size(tmp_path):
    with pytest.raises(SystemExit, match="leave out --n and --p"):
        cli.main(["bench", "--n", "3", "--plot", str(tmp_path / "bench.png")])
