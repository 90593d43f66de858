"""The command line: kl on an .npz, info, and a small bench."""

import importlib.metadata
import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import fastmvn as fm
from fastmvn import _bench, cli

from conftest import spd


def failure(argv):
    """The message with which ``fastmvn argv`` exits; Python prints it to stderr as it is and exits with status 1."""
    with pytest.raises(SystemExit) as exit:
        cli.main(argv)
    assert isinstance(exit.value.code, str), exit.value.code
    assert "\n" not in exit.value.code
    return exit.value.code


def usage_error(argv, capsys):
    """What argparse prints to stderr when it rejects ``fastmvn argv``, with exit status 2."""
    with pytest.raises(SystemExit) as exit:
        cli.main(argv)
    assert exit.value.code == 2
    return capsys.readouterr().err


@pytest.fixture
def fixed_figures(monkeypatch):
    """``fastmvn bench`` with fixed per-item seconds in place of timings: 0.1 µs for fastmvn,
    5 µs for the reference, 0.4 µs for PyTorch (kl only) and 0.05 µs for the read pass."""
    def compare(n, p, batch, dtype=np.float64, repeat=5, case="kl"):
        return {"fastmvn": 1e-7, "reference": 5e-6, "torch": 4e-7 if case == "kl" else None, "read": 5e-8}

    monkeypatch.setattr(_bench, "compare", compare)


def test_kl_command(tmp_path, rng, capsys):
    arrays = dict(mean1=rng.standard_normal((5, 3, 2)), rowchol1=np.linalg.cholesky(spd(rng, (5,), 3)),
                  colchol1=np.eye(2), mean2=np.zeros((3, 2)))
    np.savez(tmp_path / "in.npz", **arrays)
    cli.main(["kl", str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npy")])
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), fm.kl_chol(*arrays.values()))
    assert capsys.readouterr().out == f"{tmp_path / 'out.npy'}: (5,) float64\n"


def test_kl_command_writes_the_name_it_is_given(tmp_path, rng, capsys):
    arrays = dict(mean1=rng.standard_normal((4, 2, 3)), rowvar1=np.ones(2), colvar1=np.full(3, 2.0))
    np.savez(tmp_path / "in.npz", **arrays)
    cli.main(["kl", str(tmp_path / "in.npz"), "-o", str(tmp_path / "r2")])
    assert sorted(os.listdir(tmp_path)) == ["in.npz", "r2"]
    np.testing.assert_allclose(np.load(tmp_path / "r2"), fm.kl_diag(*arrays.values()))
    assert capsys.readouterr().out == f"{tmp_path / 'r2'}: (4,) float64\n"


def test_kl_command_reads_upper_factors(tmp_path, rng):
    import scipy.linalg

    u, v = spd(rng, (3,), 2), spd(rng, (), 3)
    mean = rng.standard_normal((3, 2, 3))
    np.savez(tmp_path / "in.npz", mean1=mean, rowchol1=np.linalg.cholesky(u), colchol1=np.linalg.cholesky(v))
    cli.main(["kl", str(tmp_path / "in.npz"), "-o", str(tmp_path / "lower.npy")])
    upper = [scipy.linalg.cholesky(a) for a in u]
    np.savez(tmp_path / "up.npz", mean1=mean, rowchol1=np.stack(upper), colchol1=scipy.linalg.cholesky(v))
    cli.main(["kl", str(tmp_path / "up.npz"), "-o", str(tmp_path / "upper.npy"), "--upper"])
    np.testing.assert_allclose(np.load(tmp_path / "upper.npy"), np.load(tmp_path / "lower.npy"), rtol=1e-12)
    np.testing.assert_allclose(np.load(tmp_path / "upper.npy"), fm.kl(mean, u, v), rtol=1e-12)
    np.savez(tmp_path / "cov.npz", mean1=mean, rowcov1=u, colcov1=v)
    assert re.search(r"--upper reads Cholesky factors as upper triangular; .*cov\.npz holds cov arrays",
                     failure(["kl", str(tmp_path / "cov.npz"), "-o", str(tmp_path / "x.npy"), "--upper"]))


def test_kl_command_names_missing_arrays(tmp_path):
    np.savez(tmp_path / "in.npz", mean1=np.zeros((2, 2)))
    assert re.search(r"in\.npz holds mean1; expected mean1 with rowcov1/colcov1",
                     failure(["kl", str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npy")]))
    np.savez(tmp_path / "in.npz", mean1=np.zeros((2, 2)), rowcov1=np.eye(2), mean2=np.ones((2, 2)))
    assert re.search(r"in\.npz lacks colcov1 \(it holds mean1, mean2, rowcov1\)",
                     failure(["kl", str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npy")]))
    assert not (tmp_path / "out.npy").exists()


@pytest.mark.parametrize("name", ["rowCov2", "mean", "arr_0"])
def test_kl_command_rejects_unknown_arrays(tmp_path, name):
    np.savez(tmp_path / "in.npz", mean1=np.zeros((2, 2)), rowcov1=np.eye(2), colcov1=np.eye(2), **{name: 3 * np.eye(2)})
    message = failure(["kl", str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npy")])
    assert f"in.npz holds arrays fastmvn kl does not know: {name}; the names it reads are mean1, mean2, " in message
    assert all(f"{side}{stem}{k}" in message for side in ("row", "col") for stem in ("cov", "chol", "var")
               for k in "12")
    assert not (tmp_path / "out.npy").exists()


def test_kl_command_rejects_mixed_parameterisations(tmp_path):
    np.savez(tmp_path / "in.npz", mean1=np.zeros((2, 2)), rowcov1=np.eye(2), colcov1=np.eye(2),
             rowchol2=3 * np.eye(2), colvar2=np.ones(2))
    message = failure(["kl", str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npy")])
    assert message.endswith("in.npz mixes parameterisations (covariances: colcov1, rowcov1; Cholesky factors: "
                            "rowchol2; variances: colvar2); give every row and column argument in one")
    assert not (tmp_path / "out.npy").exists()


def _not_positive_definite(tmp_path):
    rowcov1 = np.stack([np.eye(2), [[1.0, 2.0], [2.0, 1.0]]])
    np.savez(tmp_path / "in.npz", mean1=np.zeros((2, 2, 3)), rowcov1=rowcov1, colcov1=np.eye(3))
    return "in.npz", "rowcov1 is not positive definite (Cholesky failed) at batch index 1"


def _shape_mismatch(tmp_path):
    np.savez(tmp_path / "in.npz", mean1=np.zeros((2, 3)), rowcov1=np.eye(2), colcov1=np.eye(2))
    return "in.npz", "colcov1 has shape (2, 2); expected (..., 3, 3)"


def _missing_file(tmp_path):
    return "absent.npz", "cannot read {input}: No such file or directory"


def _npy_file(tmp_path):
    np.save(tmp_path / "in.npy", np.eye(2))
    return "in.npy", "{input} holds one array (a .npy file); expected an .npz of named arrays, as np.savez writes"


def _object_array(tmp_path):
    np.savez(tmp_path / "in.npz", mean1=np.zeros((2, 2)), rowcov1=np.array([np.eye(2), None], dtype=object),
             colcov1=np.eye(2))
    return "in.npz", "cannot read rowcov1 from {input}: Object arrays cannot be loaded when allow_pickle=False"


def _not_numpy(tmp_path):
    (tmp_path / "in.npz").write_text("mean1 = 0\n")
    return "in.npz", "cannot read {input}: it is not an .npz file as np.savez writes"


@pytest.mark.parametrize("make", [_not_positive_definite, _shape_mismatch, _missing_file, _npy_file, _object_array,
                                  _not_numpy])
def test_kl_command_errors_are_one_line(tmp_path, make):
    name, expected = make(tmp_path)
    input = str(tmp_path / name)
    message = failure(["kl", input, "-o", str(tmp_path / "out.npy")])
    assert message.startswith("fastmvn kl: error: ") and expected.format(input=input) in message
    assert not (tmp_path / "out.npy").exists()


def test_kl_command_cannot_write(tmp_path):
    np.savez(tmp_path / "in.npz", mean1=np.zeros((2, 2)), rowvar1=np.ones(2), colvar1=np.ones(2))
    output = str(tmp_path / "absent" / "out.npy")
    assert failure(["kl", str(tmp_path / "in.npz"), "-o", output]) == (
        f"fastmvn kl: error: cannot write {output}: No such file or directory")


def test_kl_command_error_in_a_process(tmp_path):
    """Run as a program, an error is one line on stderr and exit status 1, without a traceback."""
    _not_positive_definite(tmp_path)
    root = pathlib.Path(cli.__file__).parent.parent
    done = subprocess.run([sys.executable, "-m", "fastmvn.cli", "kl", str(tmp_path / "in.npz"), "-o",
                           str(tmp_path / "out.npy")], env=dict(os.environ, PYTHONPATH=str(root)),
                          capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == ("fastmvn kl: error: rowcov1 is not positive definite (Cholesky failed) "
                           "at batch index 1\n")


def test_help_gives_the_exit_statuses(capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["--help"])
    assert exit.value.code == 0
    assert re.search(r"exit status: 0 on success, 2 for a\s+usage error", capsys.readouterr().out)


def info_lines(capsys):
    """What ``fastmvn info`` prints, by the head of each line (``"cpu"``, ``"threads"`` …)."""
    cli.main(["info"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"fastmvn {fm.__version__}"
    return {line.split(":")[0] if ":" in line else "versions": line.partition(": ")[2] or line for line in lines[1:]}


def test_info(capsys, monkeypatch):
    import llvmlite.binding
    import numba
    import numba.core.codegen
    import scipy

    monkeypatch.setattr(numba.config, "CPU_NAME", None)
    monkeypatch.setattr(numba.config, "CPU_FEATURES", None)
    lines = info_lines(capsys)
    assert list(lines) == ["versions", "optional", "threads", "blas", "cpu", "cpu features", "kernel cache", "gpu",
                          "cuda"]
    for name, module in (("python", sys), ("numpy", np), ("scipy", scipy), ("numba", numba), ("llvmlite", llvmlite)):
        version = sys.version.split()[0] if module is sys else module.__version__
        assert f"{name} {version}" in lines["versions"]
    for name, module in cli.OPTIONAL:
        expected = importlib.metadata.version(name) if importlib.util.find_spec(module) else "not installed"
        assert f"{name} {expected}" in lines["optional"]
    assert re.fullmatch(rf"{numba.get_num_threads()} \(NUMBA_NUM_THREADS=\d+\), threading layer "
                        rf"{numba.threading_layer()}", lines["threads"])
    from threadpoolctl import threadpool_info

    blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
    assert blas and lines["blas"] == "; ".join(f"{lib['internal_api']} {lib['version']} ({lib['prefix']}), "
                                               f"{lib['num_threads']} threads" for lib in blas)
    assert lines["cpu"] == f"{llvmlite.binding.get_host_cpu_name()} (the host's)"
    features = lines["cpu features"].removesuffix(" (the host's)").split()
    assert features and all(f"+{feature}" in numba.core.codegen.get_host_cpu_features().split(",")
                            for feature in features)
    assert lines["kernel cache"] == "off (FASTMVN_CACHE=0)" or os.path.isabs(lines["kernel cache"])
    assert lines["gpu"] == "usable" or lines["gpu"].startswith("none ")


def test_info_reports_the_cpu_numba_is_told_to_compile_for(capsys, monkeypatch):
    import numba

    monkeypatch.setattr(numba.config, "CPU_NAME", "generic")
    monkeypatch.setattr(numba.config, "CPU_FEATURES", "+sse2,-avx")
    lines = info_lines(capsys)
    assert lines["cpu"] == "generic (NUMBA_CPU_NAME)"
    assert lines["cpu features"] == "+sse2,-avx (NUMBA_CPU_FEATURES)"


def test_info_reports_a_broken_cuda_stack_without_failing(capsys, monkeypatch):
    import numba

    class Broken:
        @staticmethod
        def is_available():
            raise OSError("libcuda.so: cannot open\nshared object file")

    monkeypatch.setattr(numba.config, "ENABLE_CUDASIM", 0, raising=False)
    monkeypatch.setitem(sys.modules, "numba.cuda", Broken)
    monkeypatch.setattr(numba, "cuda", Broken, raising=False)
    assert cli._gpu_usable() == "none usable (OSError: libcuda.so: cannot open shared object file)"


def test_the_version_is_the_installed_distributions():
    """``fastmvn.__version__`` is the one place the version is written: setuptools reads it."""
    try:
        installed = importlib.metadata.version("fastmvn")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("fastmvn is not installed here")
    assert installed == fm.__version__


def test_bench_prints_a_table(capsys):
    cli.main(["bench", "--n", "2", "--p", "3", "--batch", "500", "--repeat", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert "× reference" in lines[1]
    assert lines[2].split()[:3] == ["2×3", "500", "float64"]


def test_bench_prints_the_figures(capsys, fixed_figures):
    cli.main(["bench", "--repeat", "3"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("fastmvn.kl, median of 3 runs, ")
    assert [line.split() for line in lines[2:5]] == [[f"{n}×{n}", batch, "float64", "10.00", "50.0", "4.0", "2.00"]
                                                    for n, batch in (("4", "1000000"), ("16", "100000"),
                                                                     ("32", "20000"))]


NUMBER = re.compile(r"\d+\.\d+")


@pytest.mark.parametrize("case", ["kl_chol", "kl_standard", "logpdf", "entropy_chol"])
def test_bench_times_other_functions(capsys, case):
    """Every case runs and fills its row; the figures are timings, so only their form is checked."""
    cli.main(["bench", "--n", "3", "--batch", "300", "--repeat", "1", "--case", case])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("fastmvn.kl against MN(0, I, I)" if case == "kl_standard" else f"fastmvn.{case},")
    row = lines[2].split()
    assert row[:3] == ["3×3", "300", "float64"] and row[5] == "-"   # PyTorch runs only for kl
    assert len(row) == 7 and all(NUMBER.fullmatch(row[k]) for k in (3, 4, 6))


@pytest.mark.parametrize("option", ["--n", "--p", "--batch", "--repeat"])
@pytest.mark.parametrize("value", ["0", "-2", "1.5"])
def test_bench_counts_must_be_positive(capsys, fixed_figures, option, value):
    err = usage_error(["bench", option, value], capsys)
    assert err.splitlines()[-1] == f"fastmvn bench: error: argument {option}: must be a positive integer; got '{value}'"


def test_bench_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "bench.png"
    cli.main(["bench", "--batch", "50", "--repeat", "1", "--plot", str(path)])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[2:7]] == ["2×2", "4×4", "8×8", "16×16", "32×32"]
    assert lines[-1] == f"throughput plot: {path}"
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_bench_plot_cannot_write(tmp_path, fixed_figures):
    pytest.importorskip("matplotlib")
    path = str(tmp_path / "absent" / "bench.png")
    assert failure(["bench", "--plot", path]) == f"fastmvn bench: error: cannot write {path}: No such file or directory"


def test_bench_plot_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(SystemExit, match=r"needs matplotlib: python3 -m pip install 'fastmvn\[plot\]'"):
        cli.main(["bench", "--batch", "50", "--plot", str(tmp_path / "bench.png")])
    assert not (tmp_path / "bench.png").exists()


def test_bench_plot_rejects_a_size(tmp_path, capsys):
    err = usage_error(["bench", "--n", "3", "--plot", str(tmp_path / "bench.png")], capsys)
    assert err.splitlines()[-1] == "fastmvn bench: error: --plot draws n = p = 2 to 32; leave out --n and --p"


@pytest.fixture(autouse=True)
def no_pause_between_libraries(monkeypatch):
    """The size grid's figures are not checked here: no need to wait for thread pools to idle."""
    monkeypatch.setattr(_bench, "BLOCK_PAUSE", 0.0)


def test_bench_sizes_prints_the_grid_and_plots(tmp_path, capsys, monkeypatch):
    """The grid's form, at small sizes (the real grid goes to 1024×1024); the figures are
    timings, so only their form is checked."""
    monkeypatch.setattr(_bench, "SIZE_GRID", [(4, 4, 1), (4, 4, 50), (20, 20, 1), (20, 6, 1)])
    path = tmp_path / "sizes.png"
    plot = ["--plot", str(path)] if importlib.util.find_spec("matplotlib") else []
    cli.main(["bench", "--sizes", "--repeat", "1", *plot])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("fastmvn.kl by size, float64, median of 1 calls, ")
    rows = [line.split() for line in lines[2:6]]
    assert [row[:2] for row in rows] == [["4×4", "1"], ["4×4", "50"], ["20×20", "1"], ["20×6", "1"]]
    assert all(len(row) == 5 and all(NUMBER.fullmatch(x) or x == "-" for x in row[2:]) for row in rows)
    if plot:
        assert lines[-1] == f"size plot: {path}" and path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_bench_sizes_caps_batches_to_the_budget():
    assert _bench.size_points([(1024, 1024, 1000), (4, 4, 1000)], budget=1 << 29) == [(1024, 1024, 10),
                                                                                        (4, 4, 1000)]
    # None: as many as fit; a point that the cut makes a repeat is dropped
    assert _bench.size_points([(2048, 2048, 8), (2048, 2048, 1000), (2048, 2048, None), (1, 1, None)],
                              budget=_bench.FULL_BUDGET) == [(2048, 2048, 8), (2048, 2048, 10), (1, 1, 44739242)]


def test_bench_sizes_full_grid(capsys, monkeypatch):
    """``--full`` runs the full grid (here cut to two points), and only with ``--sizes``."""
    monkeypatch.setattr(_bench, "FULL_SIZE_GRID", [(2, 2, 8), (2, 2, 8), (3, 3, 1)])
    cli.main(["bench", "--sizes", "--full", "--repeat", "1"])
    rows = [line.split()[:2] for line in capsys.readouterr().out.splitlines()[2:4]]
    assert rows == [["2×2", "8"], ["3×3", "1"]]
    err = usage_error(["bench", "--full"], capsys)
    assert err.splitlines()[-1] == "fastmvn bench: error: --full is a grid of --sizes; give both"


@pytest.mark.parametrize("option", [["--n", "4"], ["--batch", "9"], ["--dtype", "float32"]])
def test_bench_sizes_takes_its_own_grid(capsys, option):
    err = usage_error(["bench", "--sizes", *option], capsys)
    assert err.splitlines()[-1] == ("fastmvn bench: error: --sizes times float64 on its own grid; leave out --n, --p, "
                                    "--batch and --dtype")


@pytest.mark.parametrize("case", ["entropy", "kl_standard", "logpdf_chol"])
def test_bench_sizes_refuses_other_cases(capsys, case):
    err = usage_error(["bench", "--sizes", "--case", case], capsys)
    assert err.splitlines()[-1] == (f"fastmvn bench: error: --sizes times kl, logpdf or kl_value_and_grad; "
                                    f"got --case {case}")


def test_bench_value_and_grad_only_with_sizes(capsys):
    err = usage_error(["bench", "--case", "kl_value_and_grad"], capsys)
    assert err.splitlines()[-1] == "fastmvn bench: error: --case kl_value_and_grad is timed by --sizes only; give both"


#: What ``fastmvn bench --sizes --case`` prints after the time per call, and the plot's lines.
SIZE_COLUMNS = {"kl": ["× NumPy", "× torch"], "logpdf": ["× NumPy", "× SciPy"],
                "kl_value_and_grad": ["× torch", "v+g / value"]}
SIZE_LINES = {"kl": ["fastmvn", "NumPy", "PyTorch (CPU)"],
              "logpdf": ["fastmvn", "NumPy reference", "SciPy loop (scaled)"],
              "kl_value_and_grad": ["fastmvn, value and gradients", "PyTorch autograd (CPU)",
                                    "fastmvn.kl, value alone"]}


def test_bench_sizes_reports_every_case():
    assert set(cli.SIZE_REPORTS) == set(_bench.SIZE_CASES) == set(SIZE_COLUMNS)


@pytest.mark.parametrize("case", ["logpdf", "kl_value_and_grad"])
def test_bench_sizes_cases_print_their_grid_and_plot(tmp_path, capsys, monkeypatch, case):
    """Each case's header, columns and plot, at small sizes; the figures are timings, so only
    their form is checked."""
    monkeypatch.setattr(_bench, "SIZE_GRID", [(4, 4, 1), (4, 4, 50), (40, 40, 1), (20, 6, 1)])
    path = tmp_path / "sizes.png"
    plot = ["--plot", str(path)] if importlib.util.find_spec("matplotlib") else []
    figures = []
    if plot:
        figure_class = cli._figure_class()
        monkeypatch.setattr(cli, "_figure_class", lambda: lambda **options: figures.append(figure_class(**options))
                            or figures[-1])
    cli.main(["bench", "--sizes", "--repeat", "1", "--case", case, *plot])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"fastmvn.{case} by size, float64, median of 1 calls, ")
    assert re.fullmatch(r" +n×p +batch +ms per call +" + " +".join(map(re.escape, SIZE_COLUMNS[case])), lines[1])
    rows = [line.split() for line in lines[2:6]]
    assert [row[:2] for row in rows] == [["4×4", "1"], ["4×4", "50"], ["40×40", "1"], ["20×6", "1"]]
    assert all(len(row) == 5 and NUMBER.fullmatch(row[2]) and NUMBER.fullmatch(row[4]) for row in rows)
    assert all(NUMBER.fullmatch(row[3]) or (row[3] == "-" and case == "kl_value_and_grad") for row in rows)
    assert lines[6].startswith(SIZE_COLUMNS[case][0])
    if case == "logpdf":
        assert f"first {_bench.SCIPY_ITEMS} items (or fewer) scaled to the whole batch" in lines[7]
    else:
        assert lines[7].startswith("v+g / value: their time over fastmvn.kl's value alone")
    if plot:
        assert lines[-1] == f"size plot: {path}" and path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        axes, = figures[0].axes
        assert axes.get_title().startswith(f"fastmvn.{case}, float64, ")
        drawn = {label.rsplit(", ", 1)[0] for label in axes.get_legend_handles_labels()[1]}
        assert drawn <= set(SIZE_LINES[case]) and SIZE_LINES[case][0] in drawn and len(drawn) >= 2


@pytest.mark.parametrize("case", ["logpdf", "kl_value_and_grad"])
def test_bench_sizes_times_fastmvn_in_lanes_and_through_lapack(capsys, monkeypatch, case):
    """The fastmvn figure of each case is a real call, at a 4×4 point (lanes) and a 40×40 one
    (the LAPACK plan): its results, recorded, are the reference's; for value and gradient the
    PyTorch route's gradients are fastmvn's too."""
    from fastmvn import _large, reference

    monkeypatch.setattr(_bench, "SIZE_GRID", [(4, 4, 1), (40, 40, 1)])
    size_case = _bench.SIZE_CASES[case]
    func = getattr(fm, case)
    results = []

    def recorded(args):
        return lambda: results.append((args, func(*args)))

    blocks = ({**size_case.blocks[0], "fastmvn": _bench.Route(recorded)},) + size_case.blocks[1:]
    monkeypatch.setitem(_bench.SIZE_CASES, case, size_case._replace(blocks=blocks))
    cli.main(["bench", "--sizes", "--repeat", "1", "--case", case])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:4]]
    assert [row[:2] for row in rows] == [["4×4", "1"], ["40×40", "1"]] and all(float(row[2]) > 0 for row in rows)
    assert [args[0].shape for args, _ in results] == [(1, 4, 4)] * 2 + [(1, 40, 40)] * 2  # warm-up and one run
    assert [_large.chosen(args, 1) for args, _ in results[::2]] == [False, True]
    for args, result in results:
        if case == "logpdf":
            np.testing.assert_allclose(result, reference.logpdf(*args), rtol=1e-9)
            continue
        value, grads = result
        np.testing.assert_allclose(value, reference.kl(*args), rtol=1e-9)
        assert [grad.shape for grad in grads] == [a.shape for a in args]
        mean1, rowcov1, colcov1, mean2, rowcov2, colcov2 = args
        expected = np.linalg.solve(rowcov2, mean2 - mean1) @ np.linalg.inv(colcov2)   # U2⁻¹ (M2 − M1) V2⁻¹
        np.testing.assert_allclose(grads[3], expected, rtol=1e-8, atol=1e-12)
        np.testing.assert_array_equal(grads[0], -grads[3])
        if importlib.util.find_spec("torch"):
            import torch

            tensors = [torch.from_numpy(a).requires_grad_() for a in args]
            _bench.torch_kl_tensors(*tensors).sum().backward()
            for grad, tensor in zip(grads, tensors):
                np.testing.assert_allclose(grad, tensor.grad.numpy(), rtol=1e-7, atol=1e-10)


def test_bench_sizes_value_and_grad_without_torch(capsys, monkeypatch):
    monkeypatch.setattr(_bench, "SIZE_GRID", [(3, 2, 4)])
    monkeypatch.setitem(sys.modules, "torch", None)
    cli.main(["bench", "--sizes", "--repeat", "1", "--case", "kl_value_and_grad"])
    row = capsys.readouterr().out.splitlines()[2].split()
    assert row[:2] == ["3×2", "4"] and row[3] == "-" and NUMBER.fullmatch(row[2]) and NUMBER.fullmatch(row[4])


@pytest.mark.parametrize("case, arrays", [("kl", 6), ("logpdf", 4), ("kl_value_and_grad", 12)])
def test_bench_sizes_budget_counts_the_arrays_of_the_case(case, arrays):
    """The budget counts what a call holds: the inputs it draws, and the gradients of a value
    and gradient (arrays of the inputs' shapes)."""
    args = _bench.SIZE_CASES[case].inputs(1, 5, 3)
    held = sum(a.size for a in args)
    if case == "kl_value_and_grad":
        held += sum(grad.size for grad in fm.kl_value_and_grad(*args)[1])
    assert len(args) + 6 * (case == "kl_value_and_grad") == arrays
    assert _bench.size_numbers(case, 5, 3) == held
    item = 8 * held
    assert _bench.size_points([(5, 3, None), (5, 3, 2), (5, 3, 1000)], budget=7 * item + 1, case=case) == [
        (5, 3, 7), (5, 3, 2)]
    # the six inputs of 1024×1024 kl at 10 per 512 MB: 16 for logpdf, 5 for value and gradient
    assert _bench.size_points([(1024, 1024, 1000)], budget=1 << 29, case=case) == [
        (1024, 1024, {"kl": 10, "logpdf": 16, "kl_value_and_grad": 5}[case])]


@pytest.mark.parametrize("case, batch", [("kl", 10), ("logpdf", 15), ("kl_value_and_grad", 5)])
def test_bench_sizes_full_grid_fits_the_case_in_its_budget(capsys, monkeypatch, case, batch):
    """A 4×4 item holds 96 float64 numbers for kl, 64 for logpdf, 192 for value and gradient."""
    monkeypatch.setattr(_bench, "FULL_SIZE_GRID", [(4, 4, None)])
    monkeypatch.setattr(_bench, "FULL_BUDGET", 8 * 96 * 10)
    cli.main(["bench", "--sizes", "--full", "--repeat", "1", "--case", case])
    assert capsys.readouterr().out.splitlines()[2].split()[:2] == ["4×4", str(batch)]
