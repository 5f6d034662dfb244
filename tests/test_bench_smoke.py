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
