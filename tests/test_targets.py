"""The same results, to the last bit, wherever an item falls in its batch, on every instruction
set the kernels may be compiled for.

Numba compiles for the host's processor; ``NUMBA_CPU_NAME`` and ``NUMBA_CPU_FEATURES`` make it
compile for another. Each target runs in a fresh interpreter with an on-disk cache of its own,
so that no process loads kernels compiled for another target. A target is run where the host
can execute its instructions (the baseline always is, on x86-64). The host's own instruction
set (the most of the targets it can execute) is checked in this process, on the kernels the
other tests compile for the host, rather than compiled again for its generic processor.
"""

import os
import platform
import subprocess
import sys

import numpy as np
import pytest

# name: (NUMBA_CPU_NAME, NUMBA_CPU_FEATURES, the host features it needs)
TARGETS = {
    "x86-64 baseline (SSE2)": ("x86-64", "", ()),
    "AVX and FMA without AVX2": ("x86-64", "+sse3,+ssse3,+sse4.1,+sse4.2,+popcnt,+avx,+fma,-avx2", ("avx", "fma")),
    "AVX2 and FMA": ("x86-64-v3", "", ("avx2", "fma", "bmi2")),
    "AVX-512": ("x86-64-v4", "", ("avx512f", "avx512vl", "avx512bw", "avx512dq")),
}


def check_positions():
    """Items land in the vector body or the scalar remainder of a loop over lanes depending on
    the batch around them (here: one by one, whole, and sliced); the results must be the same."""
    import fastmvn as fm
    from fastmvn.testing import cholesky_factors, random_pair

    rng = np.random.default_rng(7)
    count = 300

    def gradients(*args):
        return np.concatenate([np.reshape(g, (len(args[0]) if args[0].ndim == 3 else 1, -1))
                               for g in fm.kl_value_and_grad(*args)[1]], axis=1)

    for n, p in [(4, 4), (5, 3)]:
        for dtype in (np.float32, np.float64):
            args = [a.astype(dtype) for a in random_pair(rng, (count,), n, p)]
            chol = cholesky_factors(args)
            var = [a if k % 3 == 0 else np.diagonal(a, axis1=-2, axis2=-1) for k, a in enumerate(args)]
            calls = {"kl": (fm.kl, args), "kl_standard": (fm.kl, args[:3]), "kl_chol": (fm.kl_chol, chol),
                     "kl_diag": (fm.kl_diag, var), "logpdf": (fm.logpdf, [args[0], args[3], args[1], args[2]])}
            if dtype == np.float32:  # the gradients have a driver of their own
                calls["kl_value_and_grad"] = (gradients, args)
            for name, (call, inputs) in calls.items():
                whole = call(*inputs)
                single = np.concatenate([np.reshape(call(*(a[i] for a in inputs)), (1, -1)) for i in range(count)])
                sliced = call(*(a[7:50] for a in inputs))
                assert np.isfinite(whole).all(), name
                for label, part, expected in [("one by one", single, whole), ("sliced", sliced, whole[7:50])]:
                    rows = (len(part), -1)
                    differ = np.flatnonzero((np.reshape(part, rows) != np.reshape(expected, rows)).any(axis=1))
                    assert differ.size == 0, f"{name} {n}x{p} {np.dtype(dtype)} {label}: {differ.size} items differ"


SCRIPT = f"""
import sys
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
from numba.core.registry import cpu_target
import test_targets

print(cpu_target.target_context.codegen()._get_host_cpu_name())
test_targets.check_positions()
print("same")
"""


def _host_features():
    from llvmlite import binding

    return {name for name, on in binding.get_host_cpu_features().items() if on}


def _hosts_own(host):
    """The target of the instruction set of the host (its features ``host``): the last of
    :data:`TARGETS` whose features it has (never the baseline, which is always compiled for);
    none where ``NUMBA_CPU_NAME`` makes this process compile for another processor."""
    if os.environ.get("NUMBA_CPU_NAME"):
        return []
    return [name for name, (_, _, needs) in TARGETS.items() if set(needs) <= host and needs][-1:]


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 targets")
def test_results_do_not_depend_on_position_on_any_instruction_set(tmp_path):
    host = _host_features()
    own = _hosts_own(host)
    runs = {}
    for name, (cpu, features, needs) in TARGETS.items():
        if not set(needs) <= host or name in own:
            continue
        env = {key: value for key, value in os.environ.items() if not key.startswith("NUMBA_CPU_")}
        env["NUMBA_CACHE_DIR"] = str(tmp_path / name.replace(" ", "_"))
        env["NUMBA_CPU_NAME"], env["NUMBA_CPU_FEATURES"] = cpu, features
        runs[name] = subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert "x86-64 baseline (SSE2)" in runs
    for name, run in runs.items():
        out, err = run.communicate(timeout=900)
        assert run.returncode == 0, f"{name}: {err}"
        compiled_for, verdict = out.split()
        assert verdict == "same"
        assert compiled_for == TARGETS[name][0], name


def test_results_do_not_depend_on_position_on_the_hosts_instruction_set():
    check_positions()  # the kernels of this process, compiled for the host
