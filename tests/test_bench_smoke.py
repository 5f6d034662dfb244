"""The step-cost benchmark runs end to end in --quick mode and writes complete results."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "step_cost.py"
VARIANTS = {"ce", "l2rw-reverse", "l2b-reverse", "l2rw-fused", "l2b-forward", "l2b-fused"}
PARTS = ("meta_fwd_bwd", "dual_forward", "weights", "real_bwd_step")


def test_quick_benchmark_writes_every_variant_with_positive_timings(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    prefix = tmp_path / "step_cost-{device}"
    # 8x8 images (instead of 32x32) and one thread keep the smoke test well under 30 s even on a
    # busy 2-core machine (two threads competing with other processes stall on each other).
    r = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--device", "cpu", "--image-size", "8",
                        "--threads", "1", "--out-prefix", str(prefix)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    stem = tmp_path / "step_cost-cpu"
    data = json.loads(stem.with_suffix(".json").read_text())
    assert data["device_kind"] == "cpu" and data["environment"]["torch_num_threads"] == 1
    assert "--quick" in data["command"] and data["environment"]["torch"]
    (res,) = data["results"]
    assert res["config"] == {"model": "small_cnn", "classes": 10, "batch": 16, "meta_batch": 16, "image_size": 8}
    assert res["reps"] == 2 and res["warmup"] == 1
    assert set(res["variants"]) == VARIANTS
    for name, s in res["variants"].items():
        assert len(res["seconds"][name]) == 2 and all(t > 0 for t in res["seconds"][name])
        assert s["median_s"] > 0 and s["min_s"] > 0 and s["iqr_s"] >= 0 and s["ratio_to_ce"] > 0
        assert "memory" not in s  # --quick measures no memory unless asked
    assert res["variants"]["ce"]["ratio_to_ce"] == 1.0
    assert res["l2b_reverse_over_fused"] > 0
    bd = res["fused_breakdown"]
    assert all(bd[p] > 0 for p in PARTS) and bd["sum_of_part_medians_s"] > 0
    csv_rows = stem.with_suffix(".csv").read_text().strip().splitlines()
    assert len(csv_rows) == 1 + len(VARIANTS)
    assert stem.with_suffix(".png").stat().st_size > 10_000
    md = stem.with_suffix(".md").read_text()
    assert "l2b-reverse / l2b-fused" in md and all(f"| {v} |" in md for v in VARIANTS)
    # the recorded results were not touched
    assert str(ROOT / "benchmarks" / "results") not in r.stdout


def test_accuracy_grid_runs_resumes_and_renders(tmp_path):
    """A 2 x 2 x 2 grid on digits (2 epochs): one row per run, a rerun does nothing new, and the
    table and plot are written. The cleanlab method joins when cleanlab is installed."""
    import importlib.util

    import yaml

    methods = ["ce", "l2b"] + (["cleanlab"] if importlib.util.find_spec("cleanlab") else [])
    grid = {"name": "t", "base": {"epochs": 2, "warmup_epochs": 1}, "seeds": [0, 1], "methods": methods,
            "settings": [{"noise": "symmetric", "noise_rate": 0.4}, {"noise": "pair", "noise_rate": 0.3,
                                                                     "label": "pair 30%"}],
            "cleanlab_folds": 2}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    cmd = [sys.executable, str(ROOT / "benchmarks" / "accuracy.py"), str(path), "--results", str(tmp_path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(x) for x in (tmp_path / "accuracy-t.jsonl").read_text().splitlines()]
    assert len(rows) == 4 * len(methods)
    assert {(x["setting"], x["method"], x["seed"]) for x in rows} == {
        (s, m, seed) for s in ("symmetric 40%", "pair 30%") for m in methods for seed in (0, 1)}
    for x in rows:
        assert 0 <= x["test_accuracy_at_best_meta"] <= 1 and 0.25 < x["realised_noise_rate"] < 0.45
        assert x["seconds"] > 0 and x["trainings"] == (3 if x["method"] == "cleanlab" else 1)
    md = (tmp_path / "accuracy-t.md").read_text()
    assert "| ce |" in md and "pair 30%" in md and (tmp_path / "accuracy-t.png").stat().st_size > 1000
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "runs to do" not in r.stdout  # nothing left: resumed, not rerun
    assert len((tmp_path / "accuracy-t.jsonl").read_text().splitlines()) == len(rows)
