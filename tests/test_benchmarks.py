"""Every benchmark script runs in --quick mode, prints its table with the machine, and
writes JSON whose numbers are real measurements (positive, finite, consistent)."""

import json
import math
import os
import subprocess
import sys

import pytest
from conftest import REPO

sys.path.insert(0, f"{REPO}/benchmarks")


def _run(script, tmp_path, *extra):
    out = tmp_path / f"{script}.json"
    r = subprocess.run([sys.executable, f"{REPO}/benchmarks/{script}", "--quick", "--json",
                        str(out), *extra], capture_output=True, text=True, timeout=400,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "machine: cpu=" in r.stdout and "jax=" in r.stdout and "|---" in r.stdout
    d = json.loads(out.read_text())
    assert d["quick"] is True and d["rows"] and d["machine"]["cores"] >= 1
    return d


def _positive(*values):
    return all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values)


def test_bench_train_quick(tmp_path):
    d = _run("bench_train.py", tmp_path)
    impls = {r["impl"] for r in d["rows"]}
    assert {"fnmlp autodiff (scan)", "fnmlp manual (scan)", "JAX tutorial loop",
            "NumPy by hand"} <= impls
    for r in d["rows"]:
        assert _positive(r["examples_per_s"], r["gflops"], r["epoch_s"])
        # the rates agree: examples/s x FLOPs per example = GFLOP/s
        from bench_train import train_flops_per_example

        flops = train_flops_per_example(r["sizes"])
        assert r["gflops"] == pytest.approx(r["examples_per_s"] * flops / 1e9)
    assert _positive(d["jnp_peak_gflops"])


def test_bench_peak_quick(tmp_path):
    d = _run("bench_peak.py", tmp_path)
    assert all(_positive(r["jnp_gflops"], r["numpy_gflops"]) for r in d["rows"])
    assert d["jnp_peak_gflops"] == max(r["jnp_gflops"] for r in d["rows"])
    best = max(max(r["jnp_gflops"], r["numpy_gflops"]) for r in d["rows"])
    assert d["best_gflops"] == best  # the epoch's limit: its 24.5 GFLOP at the best rate
    assert d["mnist_epoch_limit_s"] == pytest.approx(24.51e9 / (best * 1e9), rel=1e-3)


def test_epoch_flops_is_the_products_counted_by_hand():
    from _common import epoch_flops

    # 784-128-10 at B=128: forward 2B(784*128 + 128*10), dW the same, dX of layer 1 2B*128*10
    per_step = 2 * 128 * (784 * 128 + 128 * 10) * 2 + 2 * 128 * 128 * 10
    assert epoch_flops([784, 128, 10], 128, 468) == per_step * 468 == pytest.approx(24.51e9,
                                                                                      rel=1e-3)
    assert epoch_flops([5, 3], 2, 1) == 2 * 2 * 5 * 3 * 2  # one layer: no input gradient


def test_bench_grads_quick(tmp_path):
    d = _run("bench_grads.py", tmp_path)
    for r in d["rows"]:
        assert _positive(r["manual_us"], r["autodiff_us"], r["per_example_us"])


def test_bench_scaling_quick(tmp_path):
    """--quick without --plot writes nothing into benchmarks/results/ (it used to write
    scaling-quick.png there unasked); the picture is drawn where --plot says."""
    results = os.path.join(REPO, "benchmarks", "results")
    before = {n: os.stat(os.path.join(results, n)).st_mtime_ns for n in os.listdir(results)}
    d = _run("bench_scaling.py", tmp_path)
    after = {n: os.stat(os.path.join(results, n)).st_mtime_ns for n in os.listdir(results)}
    assert after == before and d["plot"] is None
    assert {r["sweep"] for r in d["rows"]} == {"batch", "width", "depth"}
    assert all(r["bound"] in ("overhead", "matmul", "mixed") for r in d["rows"])
    from bench_scaling import _plot

    png = tmp_path / "scaling.png"
    _plot(d["rows"], str(png), d["machine"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_bench_population_quick(tmp_path):
    d = _run("bench_population.py", tmp_path)
    assert [r["members"] for r in d["rows"]] == [1, 2]
    for r in d["rows"]:
        assert _positive(r["population_epoch_s"], r["single_epoch_s"], r["speedup"])
        assert r["sequential_epoch_s"] == pytest.approx(r["members"] * r["single_epoch_s"])
        assert r["speedup"] == pytest.approx(r["sequential_epoch_s"] / r["population_epoch_s"])
        assert r["all_members_examples_per_s"] == pytest.approx(
            r["members"] * r["per_member_examples_per_s"])


def test_bench_mnist_quick(tmp_path):
    d = _run("bench_mnist.py", tmp_path)
    rows = {r["impl"]: r for r in d["rows"]}
    assert set(rows) == {"fnmlp", "numpy"}
    for r in rows.values():
        assert _positive(r["wall_s"], r["steady_epoch_s"], r["first_epoch_s"])
        assert 0 <= r["accuracy"] <= 1 and r["epochs"] == 2
        assert r["wall_s"] >= r["wall_s_in_process"] > r["steady_epoch_s"]
    assert rows["fnmlp"]["wall_vs_fnmlp"] == 1.0
    m = d["machine"]  # the GEMM limit, measured in the same run by the gemm child
    assert _positive(m["gemm_gflops"], m["epoch_limit_s"]) and len(m["gemm_runs"]) == 1
    for r in rows.values():
        assert r["x_limit"] == pytest.approx(r["steady_epoch_s"] / m["epoch_limit_s"])
    assert rows["numpy"]["wall_vs_fnmlp"] == pytest.approx(
        rows["numpy"]["wall_s"] / rows["fnmlp"]["wall_s"])


def test_profile_epoch_quick(tmp_path):
    """XLA's own profile of one epoch: the events sum per kind of op, the products are
    there, and the limit is the epoch's FLOPs at the measured GEMM rate."""
    d = _run("profile_epoch.py", tmp_path)
    kinds = {r["kind"]: r for r in d["rows"]}
    assert "dot" in kinds and "sort" in kinds and kinds["dot"]["ms"] > 0
    assert sum(r["share"] for r in d["rows"]) == pytest.approx(1)
    assert d["events_s"] == pytest.approx(sum(r["ms"] for r in d["rows"]) / 1e3)
    assert d["limit_s"] == pytest.approx(d["epoch_gflop"] / d["gemm_gflops"])
    assert d["x_limit"] == pytest.approx(d["epoch_s"] / d["limit_s"])


def test_bench_products_are_the_epochs_products_and_the_floor_adds_up(tmp_path):
    """The step's products are those epoch_flops counts; each row's ms an epoch is its
    FLOPs at jnp's best rate, and the floor is their sum against the GEMM limit."""
    from _common import epoch_flops
    from bench_products import products

    for sizes in ([784, 128, 10], [784, 1024, 1024, 10], [2, 3]):
        flops = sum(2 * p["m"] * p["k"] * p["n"] for p in products(sizes, 64))
        assert flops == epoch_flops(sizes, 64, 1)
    d = _run("bench_products.py", tmp_path)
    assert [r["shape"] for r in d["rows"]] == ["128x784x128", "784x128x128", "128x128x10",
                                               "128x128x10", "128x10x128"]
    for r in d["rows"]:
        best_jnp = max(r["jnp_1"], r.get("jnp_all", 0))
        assert _positive(r["jnp_1"], r["numpy_1"], best_jnp)
        assert r["jnp_ms_epoch"] == pytest.approx(r["mflop_step"] * 20 / best_jnp)
    assert d["products_s_jnp"] == pytest.approx(sum(r["jnp_ms_epoch"] for r in d["rows"]) / 1e3)
    gemm = d["gemm_gflops"][max(d["gemm_gflops"], key=int)]
    assert d["limit_s"] == pytest.approx(d["epoch_gflop"] / gemm)
    assert d["runs"]["1"][0]["cores"] == [min(os.sched_getaffinity(0))]


def test_profile_step_quick(tmp_path):
    d = _run("profile_step.py", tmp_path)
    assert set(d["hlo_ops"]) == {"manual", "autodiff"}
    assert d["hlo_ops"]["manual"].get("dot", 0) + d["hlo_ops"]["manual"].get("fusion", 0) > 0


@pytest.mark.parametrize("script", ["bench_train.py", "bench_peak.py", "bench_grads.py",
                                    "bench_scaling.py", "profile_step.py",
                                    "bench_population.py", "bench_mnist.py",
                                    "profile_epoch.py", "bench_products.py"])
def test_help(script):
    r = subprocess.run([sys.executable, f"{REPO}/benchmarks/{script}", "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--quick" in r.stdout and "--json" in r.stdout


def test_bench_xla_flags_quick(tmp_path):
    """One fresh process per XLA_FLAGS setting; the ratio is NumPy's time over fnmlp's,
    both measured in that process."""
    d = _run("bench_xla_flags.py", tmp_path)
    default = d["rows"][0]
    assert default["setting"] == "default" and "error" not in default
    for r in d["rows"]:
        if "error" in r:
            continue
        assert _positive(r["manual_us"], r["autodiff_us"], r["numpy_us"])
        assert r["manual_x_numpy"] == pytest.approx(r["numpy_us"] / r["manual_us"])



def test_bench_compile_quick(tmp_path):
    d = _run("bench_compile.py", tmp_path)
    assert [r["grad"] for r in d["rows"]] == ["manual", "autodiff"]
    for r in d["rows"]:
        assert _positive(r["lower_s"], r["compile_s"]) and r["hlo_lines"] > 50


OLD_API = "ebc6d33"  # the last commit before issue 27 (init_mlp, activation= by name)


def test_bench_before_after_runs_bench_train_on_a_tree_from_before_issue_27(tmp_path):
    """bench_before_after.py runs this checkout's bench_train.py on both trees (each
    tree's fnmlp first on PYTHONPATH), so bench_train.py must speak the old API too."""
    old = tmp_path / "old"
    old.mkdir()
    archive = subprocess.run(f"git -C {REPO} archive {OLD_API} fnmlp | tar -x -C {old}",
                             shell=True, capture_output=True, text=True)
    if archive.returncode != 0 or not (old / "fnmlp" / "__init__.py").exists():
        pytest.skip(f"no git history with {OLD_API}: {archive.stderr.strip()[-200:]}")
    out = tmp_path / "ba.json"
    r = subprocess.run([sys.executable, f"{REPO}/benchmarks/bench_before_after.py", "--old",
                        str(old), "--new", REPO, "--rounds", "1", "--reps", "1", "--models",
                        "S", "--batches", "256", "--json", str(out)], capture_output=True,
                       text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert {r["impl"] for r in rows} == {"fnmlp autodiff (scan)", "fnmlp manual (scan)"}
    for row in rows:
        assert _positive(row["old_examples_per_s"], row["new_examples_per_s"])
        assert row["new_over_old"] == pytest.approx(
            row["new_examples_per_s"] / row["old_examples_per_s"])


def test_bench_startup_quick(tmp_path):
    d = _run("bench_startup.py", tmp_path)
    got = {r["measure"]: r for r in d["rows"]}
    assert {"import jax", "init_params, no cache", "init_params, cache warm",
            "toy script, cache warm", "toy script, no cache"} <= set(got)
    for r in d["rows"]:
        assert _positive(r["seconds"], r["min_s"], r["max_s"])
        assert r["min_s"] <= r["seconds"] <= r["max_s"]
    assert got["import jax"]["ml_dtypes"]  # the release the import loaded is named


def test_bench_mnist_headline_names_the_fnmlp_run_it_divides():
    """A new user's find: --quick (no fnmlp_warm run) printed its headline as 'over
    fnmlp_warm's wall'; the ratio was of the plain fnmlp run."""
    from bench_mnist import round_ratios

    runs = {"fnmlp": [{"round": 0, "wall_s": 2.0}], "numpy": [{"round": 0, "wall_s": 3.0}],
            "numpy@1t": [{"round": 0, "wall_s": 4.0}]}
    assert round_ratios(runs) == {"ratios": [1.5], "numpy": ["numpy"], "fnmlp": "fnmlp"}
    runs["fnmlp_warm"] = [{"round": 0, "wall_s": 1.5}]
    assert round_ratios(runs) == {"ratios": [2.0], "numpy": ["numpy"], "fnmlp": "fnmlp_warm"}
