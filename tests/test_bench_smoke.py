"""The benchmark scripts run end to end on tiny inputs and write complete results."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    r = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--device",
            "cpu",
            "--image-size",
            "8",
            "--threads",
            "1",
            "--out-prefix",
            str(prefix),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
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
    grid = {
        "name": "t",
        "base": {"epochs": 2, "warmup_epochs": 1},
        "seeds": [0, 1],
        "methods": methods,
        "settings": [
            {"noise": "symmetric", "noise_rate": 0.4},
            {"noise": "pair", "noise_rate": 0.3, "label": "pair 30%"},
        ],
        "cleanlab_folds": 2,
        "method_seeds": {"l2b": [1]},
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    cmd = [sys.executable, str(ROOT / "benchmarks" / "accuracy.py"), str(path), "--results", str(tmp_path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(x) for x in (tmp_path / "accuracy-t.jsonl").read_text().splitlines()]
    assert len(rows) == 4 * len(methods) - 2
    assert {(x["setting"], x["method"], x["seed"]) for x in rows} == {
        (s, m, seed)
        for s in ("symmetric 40%", "pair 30%")
        for m in methods
        for seed in (0, 1)
        if m != "l2b" or seed == 1
    }
    for x in rows:
        assert 0 <= x["test_accuracy_at_best_meta"] <= 1 and 0.25 < x["realised_noise_rate"] < 0.45
        assert x["seconds"] > 0 and x["trainings"] == (3 if x["method"] == "cleanlab" else 1)
    md = (tmp_path / "accuracy-t.md").read_text()
    assert "| ce |" in md and "pair 30%" in md and (tmp_path / "accuracy-t.png").stat().st_size > 1000
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "runs to do" not in r.stdout  # nothing left: resumed, not rerun
    assert len((tmp_path / "accuracy-t.jsonl").read_text().splitlines()) == len(rows)


def test_accuracy_grid_continues_a_run_that_was_stopped_part_way(tmp_path, monkeypatch):
    """A run stopped in its third epoch (Ctrl-C in a worker, or a session's end) leaves its
    checkpoint in the cell's run directory; the next attempt continues from there and gives the
    uninterrupted run's row, its earlier epochs' seconds counted, and removes the directory."""
    import signal
    import tempfile

    import l2b.training.setup as setup_mod  # where a run builds its method

    accuracy = _bench_module("accuracy")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    grid = {"name": "t", "base": {"epochs": 4, "warmup_epochs": 1}, "seeds": [0], "methods": ["l2b"]}
    grid["settings"] = [{"noise": "symmetric", "noise_rate": 0.4}]
    (cell,) = accuracy.cells(grid)
    whole = accuracy.run_cell(grid, cell)
    assert "resumed_after_epochs" not in whole and not list((tmp_path / "l2b-grid-runs").iterdir())

    real_create, calls = setup_mod.create_method, {"n": 0}

    def interrupting_create(name, **opts):  # Ctrl-C in the method's 30th step: inside epoch 3
        method = real_create(name, **opts)
        real_step = method.step

        def step(*a, **kw):
            calls["n"] += 1
            if calls["n"] == 30:
                os.kill(os.getpid(), signal.SIGINT)
            return real_step(*a, **kw)

        method.step = step
        return method

    monkeypatch.setattr(setup_mod, "create_method", interrupting_create)
    with pytest.raises(KeyboardInterrupt):
        accuracy.run_cell(grid, cell)
    (left,) = (tmp_path / "l2b-grid-runs").iterdir()
    assert (left / "checkpoint.pt").exists()
    monkeypatch.setattr(setup_mod, "create_method", real_create)
    again = accuracy.run_cell(grid, cell)
    assert again["resumed_after_epochs"] == 2 and not left.exists()
    for k in ("test_accuracy", "test_accuracy_at_best_meta", "best_meta_epoch", "curves"):
        assert again[k] == whole[k], k
    assert again["seconds"] >= again["train_seconds"]  # all four epochs' cost, not the last attempt's
    # A directory without a checkpoint: cleared when nobody owns it, refused while a live run does.
    from l2b.rundir import RunDirectoryLocked, lock_run_dir

    (left / "sub").mkdir(parents=True)
    (left / "metrics.jsonl").write_text("{}\n")
    with lock_run_dir(left), pytest.raises(RunDirectoryLocked):
        accuracy.epochs_done(left)
    assert accuracy.epochs_done(left) is None and not list(left.iterdir())


def _bench_module(name: str, folder: str = "benchmarks"):
    """Import <folder>/<name>.py: a runner in benchmarks/ or a study in benchmarks/studies/ (neither
    folder is a package)."""
    sys.path.insert(0, str(ROOT / folder))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


SCRIPTS = sorted([*(ROOT / "benchmarks").glob("*.py"), *(ROOT / "benchmarks" / "studies").glob("*.py")])


def test_every_benchmark_script_starts_and_prints_its_help():
    """Each runner and study imports (the shared module included, from either folder) and parses
    its command line; the processes run side by side."""
    scripts = [p for p in SCRIPTS if p.name != "common.py"]
    assert {"accuracy.py", "step_cost.py", "engine_fidelity.py", "weight_separation.py"} <= {p.name for p in scripts}
    procs = {
        p: subprocess.Popen(
            [sys.executable, str(p), "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
        )
        for p in scripts
    }
    for path, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and "usage:" in out, f"{path.relative_to(ROOT)}: {err[-2000:]}"


def test_the_shared_module_records_the_machine_the_command_rows_and_tables(tmp_path):
    common = _bench_module("common")
    env = common.environment()
    assert {"date", "l2b", "git_commit", "python", "torch", "numpy", "platform", "cpu_count"} <= set(env)
    assert env["torch_num_threads"] >= 1 and "Machine: " in common.machine_line(env)
    assert common.machine_line({"cpu_count": 2, "torch": "2.0", "date": "today"})  # older records lack keys
    script = ROOT / "benchmarks" / "studies" / "x.py"
    assert (
        common.command(script, ["--only", "setting=sym 40%"])
        == "python benchmarks/studies/x.py --only 'setting=sym 40%'"
    )
    assert common.table(["a", "b"], [[1, ""], ["x", 2.5]]) == ["| a | b |", "|---|---|", "| 1 |  |", "| x | 2.5 |"]
    rows = tmp_path / "rows.jsonl"
    assert common.read_rows(rows) == []
    common.append_row(rows, {"seed": 0})
    common.append_row(rows, {"seed": 1})
    assert common.read_rows(rows) == [{"seed": 0}, {"seed": 1}]
    with common.figure(tmp_path / "f.png", dpi=50, figsize=(2, 2)) as (fig, ax):
        ax.plot([0, 1])
    assert (tmp_path / "f.png").stat().st_size > 0


def test_accuracy_grid_order_and_seed_counts(tmp_path):
    """Cells run seed-major with reduced-seed methods last in their round; the table marks a
    cell with fewer seeds than planned, and a grid file whose method_seeds names an unknown
    method is refused when loaded."""
    import yaml

    accuracy = _bench_module("accuracy")
    grid = {
        "name": "t",
        "base": {},
        "seeds": [0, 1],
        "methods": ["ce", "cleanlab", "l2b"],
        "settings": [{"noise_rate": 0.2}, {"noise_rate": 0.4}],
        "method_seeds": {"cleanlab": [0]},
    }
    order = [(c["seed"], c["method"], c["setting"]) for c in accuracy.cells(grid)]
    assert order == [
        (0, "ce", "symmetric 20%"),
        (0, "l2b", "symmetric 20%"),
        (0, "ce", "symmetric 40%"),
        (0, "l2b", "symmetric 40%"),
        (0, "cleanlab", "symmetric 20%"),
        (0, "cleanlab", "symmetric 40%"),
        (1, "ce", "symmetric 20%"),
        (1, "l2b", "symmetric 20%"),
        (1, "ce", "symmetric 40%"),
        (1, "l2b", "symmetric 40%"),
    ]
    row = {
        "test_accuracy": 0.5,
        "test_accuracy_at_best_meta": 0.5,
        "realised_noise_rate": 0.2,
        "precision": None,
        "recall": None,
        "seconds": 1.0,
        "trainings": 1,
    }
    rows = [{**row, "setting": s, "method": m, "seed": seed} for seed, m, s in order if (m, seed) != ("l2b", 1)]
    rows[0]["test_accuracy_at_best_meta"] = 0.7  # ce, seed 0, 20 %: mean 60.0, std 14.1 over 2 seeds
    accuracy.render(grid, rows, tmp_path / "accuracy-t", "cmd")
    md = (tmp_path / "accuracy-t.md").read_text()
    assert "| ce | **60.0 ± 14.1** | **50.0 ± 0.0** |" in md  # bold: the first best mean
    assert "| cleanlab | 50.0 | 50.0 |" in md  # one seed planned, one run: no mark
    assert "| l2b | 50.0 (n=1) | 50.0 (n=1) |" in md
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**grid, "method_seeds": {"bootstrap-hard": [0]}}))
    with pytest.raises(SystemExit, match="method_seeds names methods not in the grid: \\['bootstrap-hard'\\]"):
        accuracy.load_grid(bad)
    # --only keeps the cells that match every filter; another field, or a value that names no
    # cell of the grid, is refused
    import argparse

    parser, all_cells = argparse.ArgumentParser(), accuracy.cells(grid)

    def kept(*only):
        filters = accuracy.parse_only(list(only), all_cells, parser)
        return [(c["seed"], c["method"], c["setting"]) for c in all_cells if accuracy.selected(c, filters)]

    assert kept("method=l2b,cleanlab", "setting=symmetric 40%") == [
        (0, "l2b", "symmetric 40%"),
        (0, "cleanlab", "symmetric 40%"),
        (1, "l2b", "symmetric 40%"),
    ]
    assert [seed for seed, _, _ in kept("seed=1")] == [1] * 4
    assert kept("method=ce,l2b", "method=l2b") == [(0, "l2b", "symmetric 20%"), (0, "l2b", "symmetric 40%")] + [
        (1, "l2b", "symmetric 20%"),
        (1, "l2b", "symmetric 40%"),
    ]
    for bad in ("lr=0.1", "method=l2bb", "seed=7", "setting=sym 40%"):
        with pytest.raises(SystemExit):
            kept(bad)


def test_accuracy_grid_worker_ends_with_its_parent():
    """A worker whose grid process is gone ends (its run keeps its checkpoint) rather than
    training on as an orphan that holds its run directory."""
    import threading

    accuracy = _bench_module("accuracy")
    gone, alive = threading.Event(), threading.Event()
    accuracy.follow_parent(os.getppid(), poll=0.01, on_orphan=alive.set)  # the parent is there
    accuracy.follow_parent(os.getpid(), poll=0.01, on_orphan=gone.set)  # not this process's parent
    assert gone.wait(5) and not alive.wait(0.2)


def test_accuracy_grid_seeds_per_setting(tmp_path):
    """A setting's own method_seeds (a second seed where a margin is small) adds that setting's
    cells only, is not a config key of its runs, marks that setting's cells planned with more
    seeds, and one naming an unknown method is refused."""
    import yaml

    accuracy = _bench_module("accuracy")
    grid = {
        "name": "t",
        "base": {},
        "seeds": [0, 1],
        "methods": ["ce", "cleanlab"],
        "settings": [{"noise_rate": 0.2}, {"noise_rate": 0.4, "method_seeds": {"cleanlab": [0, 1]}}],
        "method_seeds": {"cleanlab": [0]},
    }
    got = [(c["seed"], c["method"], c["setting"]) for c in accuracy.cells(grid) if c["method"] == "cleanlab"]
    assert got == [(0, "cleanlab", "symmetric 20%"), (0, "cleanlab", "symmetric 40%"), (1, "cleanlab", "symmetric 40%")]
    assert all("method_seeds" not in c["overrides"] for c in accuracy.cells(grid))
    assert accuracy.method_seeds(grid, "cleanlab", "symmetric 40%") == [0, 1]
    assert accuracy.method_seeds(grid, "cleanlab") == [0]
    row = {
        "test_accuracy": 0.5,
        "test_accuracy_at_best_meta": 0.5,
        "realised_noise_rate": 0.2,
        "seconds": 1.0,
        "trainings": 1,
    }
    rows = [
        {**row, "setting": s, "method": m, "seed": 0}
        for m in ("ce", "cleanlab")
        for s in ("symmetric 20%", "symmetric 40%")
    ]
    accuracy.render(grid, rows, tmp_path / "accuracy-t", "cmd")
    md = (tmp_path / "accuracy-t.md").read_text()
    assert "| cleanlab | 50.0 | 50.0 (n=1) |" in md and "cleanlab at symmetric 40%: seeds [0, 1]" in md
    bad = tmp_path / "bad.yaml"
    grid["settings"][1]["method_seeds"] = {"l2b": [0, 1]}
    bad.write_text(yaml.safe_dump(grid))
    with pytest.raises(SystemExit, match="setting 'symmetric 40%': method_seeds names methods not in the grid"):
        accuracy.load_grid(bad)


def test_accuracy_grid_names_a_missing_label_file_before_any_run(tmp_path):
    import yaml

    accuracy = _bench_module("accuracy")
    path = tmp_path / "g.yaml"
    grid = {
        "name": "t",
        "base": {"data": "digits", "epochs": 1},
        "settings": [{"noise": "file", "noise_file": str(tmp_path / "gone.pt"), "label": "file"}],
        "methods": ["ce"],
        "seeds": [0],
    }
    path.write_text(yaml.safe_dump(grid))
    with pytest.raises(SystemExit, match="setting 'file', method 'ce': noise_file '.*gone.pt' does not exist"):
        accuracy.main([str(path), "--results", str(tmp_path)])
    assert not (tmp_path / "accuracy-t.jsonl").exists()


def test_weight_separation_table(tmp_path):
    """The weight-separation table has one row per part, weights that average 1 per example, and
    refuses a run without weights by name."""

    def train(method: str) -> Path:
        out = tmp_path / method
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "l2b",
                "train",
                "--method",
                method,
                "--epochs",
                "3",
                "--warmup-epochs",
                "1",
                "--quiet",
                "--threads",
                "1",
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr[-2000:]
        return out

    weight_separation = _bench_module("weight_separation", "benchmarks/studies")
    run = train("l2b")
    rows = weight_separation.separation(run)
    assert [r["part"] for r in rows] == ["clean", "mislabelled"]
    n = sum(r["examples"] for r in rows)
    assert abs(sum(r["examples"] * (r["alpha"] + r["beta"]) for r in rows) / n - 1) < 0.05
    assert abs(sum(r["weight_share"] for r in rows) - 1) < 1e-9
    for r in rows:
        assert 0 <= r["no_weight"] <= r["alpha_zero"] <= 1 and 0 <= r["pseudo_correct"] <= 1
        assert 0 <= r["true_class_share"] <= 1
        assert (
            0 < r["ap_alpha"] <= 1
            and 0 < r["ap_alpha_mean"] <= 1
            and 0 < r["ap_model"] <= 1
            and abs(r["noise_rate"] - 0.4) < 0.01
        )
    curve = weight_separation.signal_curve(run)
    assert [r["epoch"] for r in curve] == [2, 3]  # the warm-up epoch has no weights
    for r in curve:
        assert 0 <= r["weight_on_noisy"] <= 1 and 0 <= r["relabelled_share"] <= r["true_class_share"] <= 1
        assert 0 <= r["wrong_label_share"] <= r["weight_on_noisy"]
        assert r["true_class_share"] + r["wrong_label_share"] <= 1 + 1e-9
    with pytest.raises(SystemExit, match=r"no weights recorded at epoch\(s\) \[1\]"):
        weight_separation.signal_curve(run, [1])
    out = tmp_path / "sep.md"
    assert weight_separation.main([str(run), "--out", str(out)]) == 0
    assert f"| {run}: mislabelled |" in out.read_text() and f"| {run} | 3 |" in out.read_text()
    ce = train("ce")
    with pytest.raises(SystemExit, match=f"{ce}: no per-example weights"):
        weight_separation.main([str(ce)])


def test_meta_batch_study_quick_scores_every_combination(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    prefix = tmp_path / "mb"
    script = ROOT / "benchmarks" / "studies" / "meta_batch_study.py"
    r = subprocess.run(
        [sys.executable, str(script), "--quick", "--out-prefix", str(prefix)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(prefix.with_suffix(".json").read_text())
    res = data["result"]
    assert [c["epoch"] for c in res["checkpoints"]] == [1, 3]
    for ck in res["checkpoints"]:
        combos = {(row["meta_set"], row["meta_batch"]) for row in ck["rows"]}
        assert {m for m, _ in combos} == {100, 200}  # half of the meta set, and all of it
        for row in ck["rows"]:
            assert row["meta_batch"] <= row["meta_set"]  # a meta batch never exceeds its pool
            assert 0 < row["ap_alpha"] <= 1 and 0 < row["ap_raw"] <= 1 and row["seconds_per_call"] > 0
    assert "| meta set | meta batch | AP α |" in prefix.with_suffix(".md").read_text()


def test_gpu_script_phase1_checks_the_weights_and_fits_the_epochs_to_the_budget():
    """benchmarks/gpu_cifar10.py's first phase on the CPU at a tiny size (its grid needs CIFAR-10)."""
    import torch
    import yaml

    mod = _bench_module("gpu_cifar10")
    small = {"width": 4, "batch_size": 16, "meta_batch_size": 16, "lr": 0.15, "momentum": 0.9}
    r = mod.speed_settings(torch.device("cpu"), small, reps=1)
    # Each setting starts from the same state (own copies of the momentum buffers too): float32
    # twice gives the same weights on the CPU, and bf16 autocast leaves the weights in float32.
    assert r["fidelity"]["fp32 again"]["deviation"] == 0.0 and r["fidelity"]["bf16"]["deviation"] == 0.0
    assert r["fidelity"]["bf16"]["exact"] and r["fp32_spread"] == 0.0
    assert len(r["times"]) == 8 and all(t > 0 for t in r["times"].values())
    assert mod.choose(r) in mod.SETTINGS and r["fidelity"][mod.choose(r)]["exact"]
    grid = yaml.safe_load(mod.GRID.read_text())
    assert "train_subset" not in grid["base"] and grid["base"]["num_meta"] == 1000  # full CIFAR-10: 49k / 1k
    epochs, wall = mod.fit_epochs(grid, r, "fp32", 1e12, workers=6)
    assert epochs == grid["base"]["epochs"]  # an ample budget keeps the grid's epochs
    fewer, shorter = mod.fit_epochs(grid, r, "fp32", 1.0, workers=6)
    assert fewer == 10 and shorter < wall  # the floor: never fewer than 10 epochs


def test_cleanlab_trainings_use_the_configs_augmentation_and_precision(monkeypatch):
    """The cleanlab pipeline's CE trainings get the config's augmentation and autocast, as the
    other methods' runs do (they once ran without CIFAR's crop + flip)."""
    import numpy as np
    import torch

    import l2b.training
    from l2b import TrainConfig, prepare_data

    mod = _bench_module("accuracy")
    seen = []
    real = l2b.training.build_trainer

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(l2b.training, "build_trainer", spy)
    cfg = TrainConfig(epochs=1, warmup_epochs=0, feature_noise=0.3, precision="bf16", num_meta=50)
    data = prepare_data(cfg)
    mod.train_ce(cfg, data, np.arange(200), seed=3)
    (kwargs,) = seen
    assert kwargs["augment"] is not None and kwargs["autocast_dtype"] == torch.bfloat16
    plain = cfg.replace(feature_noise=None, precision="fp32")
    mod.train_ce(plain, prepare_data(plain), np.arange(200), seed=3)
    assert seen[1]["augment"] is None and seen[1]["autocast_dtype"] is None


def test_gpu_combinations_script_fits_the_budget_and_runs_c2d_l2b_on_the_cpu(tmp_path):
    """benchmarks/gpu_combinations.py at --tiny size: the epochs fitted to the budget, and one
    short c2d-l2b run (pre-training, then DivideMix + L2B from its weights) written out."""
    mod = _bench_module("gpu_combinations")
    rates = {"warmup_s_per_image": 0.001, "method_s_per_image": 0.004, "pretrain_s_per_image": 0.002}
    plan = mod.fit(rates, 1000, 21.0, c2d=True)  # warm-up 1 s, method epochs 4 s, pre-training 2 s
    assert plan["pretrain_epochs"] == 5 and plan["method_epochs"] == 2 and plan["predicted_s"] == pytest.approx(19.0)
    assert mod.fit(rates, 1000, 1.0, c2d=False)["method_epochs"] == 1  # never fewer than one
    assert mod.main(["--tiny", "--methods", "c2d-l2b", "--budget-s", "4", "--results", str(tmp_path)]) == 0
    row = json.loads((tmp_path / "gpu_combinations.json").read_text())["rows"][0]
    assert row["method"] == "c2d-l2b" and row["plan"]["pretrain_epochs"] >= 1 and row["pretrain_seconds"] > 0
    assert 0 <= row["test_accuracy_at_best_meta"] <= 1 and row["method_epoch_s"] > 0
    assert "| c2d-l2b |" in (tmp_path / "gpu_combinations.md").read_text()


def test_frontier_names_the_cheapest_configuration_within_a_point_of_exact_l2b(tmp_path):
    """benchmarks/frontier.py on hand-made results: the verdicts and the cheapest that keeps up."""
    mod = _bench_module("frontier")

    def row(method, setting, seed, acc, seconds):
        return {"method": method, "setting": setting, "seed": seed, "test_accuracy_at_best_meta": acc,
                "memorised": 0.2, "seconds": seconds}  # fmt: skip

    rows = [row("ce", s, k, 0.40, 100.0) for s in ("sym 40%", "10N worse") for k in (0, 1)]
    rows += [row("l2b", s, k, a, 300.0) for s in ("sym 40%", "10N worse") for k, a in ((0, 0.50), (1, 0.52))]
    rows += [row("l2b-every2", s, k, a, 200.0) for s in ("sym 40%", "10N worse") for k, a in ((0, 0.495), (1, 0.51))]
    rows += [row("l2b-head", s, 0, 0.45, 140.0) for s in ("sym 40%", "10N worse")]
    rows += [row("l2b-tail2", "sym 40%", 0, 0.51, 150.0)]  # one cell only: cannot keep up "everywhere"
    (tmp_path / "accuracy-cifar10-memorise.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    def cost(model, meta, ratios):
        return {"config": {"model": model, "batch": 128, "meta_batch": meta},
                "variants": {"ce": {"median_s": 1.0}, **{v: {"median_s": r} for v, r in ratios.items()}}}  # fmt: skip

    step = {"fast_cnn:16": {"l2b-forward": 3.0, "l2b-every2": 2.0, "l2b-head": 1.4, "l2b-tail2": 1.5}}
    results = [cost(m, 128, r) for m, r in step.items()] + [cost("fast_cnn:16", 32, {"l2b-forward": 2.2})]
    (tmp_path / "step_cost-cpu-frontier.json").write_text(json.dumps({"results": results}))
    assert mod.main(["--results", str(tmp_path)]) == 0
    out = json.loads((tmp_path / "frontier.json").read_text())
    v = out["verdicts"]["cifar10-memorise"]
    assert v["l2b-every2"]["keeps_up"] and v["l2b-every2"]["worst_gap"] == pytest.approx(-0.75)
    assert not v["l2b-head"]["keeps_up"] and not v["l2b-tail2"]["complete"]
    # paired by seed: head's one run (seed 0) against exact L2B's seed 0, not against its two-seed mean
    assert v["l2b-head"]["worst_gap"] == pytest.approx(-5.0) and v["l2b-head"]["seeds"] == 1
    assert out["cheapest_text"].startswith("**l2b-every2**: 2.00x a CE step")
    assert "Run on one seed in some cell, worst paired gap: l2b-head (-5.0)" in out["cheapest_text"]
    md = (tmp_path / "frontier.md").read_text()
    assert "| l2b-mb32 | 2.20 | — |" in md and (tmp_path / "frontier.png").stat().st_size > 0


def test_segmentation_noise_benchmark_runs_and_records_the_regime(tmp_path):
    """benchmarks/segmentation_noise.py --quick: rows with the regime curves, the test Dice at the
    meta-selected checkpoint and both rankings' average precision, then the tables."""
    mod = _bench_module("segmentation_noise")
    argv = ["--quick", "--seeds", "0", "--noises", "boundary", "--methods", "ce", "l2b", "--results", str(tmp_path)]
    assert mod.main(argv) == 0
    rows = [json.loads(line) for line in (tmp_path / "segmentation_noise.jsonl").read_text().splitlines()]
    assert [r["method"] for r in rows] == ["ce", "l2b"]
    for r in rows:
        assert len(r["curves"]["fit_noisy"]) == len(r["curves"]["test_dice"]) == 3
        assert 0 <= r["test_dice_at_best_meta"] <= 1 and r["realised_dice"] < 1 and r["seconds"] > 0
        # each run's own peak (reset per run), the second run of the process included
        assert r["peak_rss_growth_mib"] is None or r["peak_rss_growth_mib"] > 0
    assert rows[1]["peak_rss_growth_mib"] is None or rows[1]["peak_rss_growth_mib"] != rows[0]["peak_rss_growth_mib"]
    assert mod.main(argv) == 0  # a rerun skips the runs already recorded
    assert len((tmp_path / "segmentation_noise.jsonl").read_text().splitlines()) == 2
    assert "| l2b |" in (tmp_path / "segmentation_noise.md").read_text()


def test_gpu_promise12_splits_whole_cases_as_published():
    """benchmarks/gpu_promise12.py keeps each 3-D case in one of train / meta / test, 37 / 3 / 10
    of PROMISE12's 50 cases (its --tiny run, minutes on a CPU, is the check of the rest)."""
    import numpy as np

    mod = _bench_module("gpu_promise12")
    cases = np.repeat([f"Case{i:02d}" for i in range(50)], 3)
    train, meta, test = mod.split_cases(cases, mod.PAPER["cases"], seed=0)
    assert (train ^ meta ^ test).all() and not (train & meta).any()
    assert [len(set(cases[m])) for m in (train, meta, test)] == [37, 3, 10]
    again = mod.split_cases(cases, mod.PAPER["cases"], seed=0)
    assert all(np.array_equal(a, b) for a, b in zip((train, meta, test), again))


def test_epoch_cost_keeps_clean_epochs_and_projects_the_grid_schedule(tmp_path):
    """benchmarks/epoch_cost.py: a phase's cost leaves out the run's set-up epoch (unless it has no
    other), the projection follows the grid's schedule, and --quick measures every method of a
    tiny grid (C2D's pre-training included) into a table."""
    mod = _bench_module("epoch_cost")
    samples = [{"warmup": [9.0, 2.0], "method": [3.0, 5.0]}, {"warmup": [8.0, 2.5], "method": [2.8, 1.0]}]
    assert mod.phase_seconds(samples) == {"warmup": 2.0, "method": 1.0}  # each run's first epoch left out
    assert mod.phase_seconds([{"warmup": [9.0], "method": [4.0]}]) == {"warmup": 9.0, "method": 4.0}
    rates = {"pretrain": 1.5, "warmup": 2.0, "method": 3.0}
    assert (
        mod.projected({"epochs": 10, "warmup_epochs": 4}, {"pretrain": {"epochs": 2}}, rates) == 2 * 1.5 + 4 * 2 + 6 * 3
    )
    assert mod.projected({"epochs": 10, "warmup_epochs": 4}, {}, rates) == 4 * 2 + 6 * 3

    folder = _bench_module("gpu_combinations")._tiny_folder(tmp_path / "images")
    for c in range(3):  # 300 images: 240 training images after the 20 % test split, 200 used
        for i in range(50, 100):
            (tmp_path / "images" / f"c{c}" / f"{i}.png").write_bytes(
                (tmp_path / "images" / f"c{c}" / "0.png").read_bytes()
            )
    grid = {
        "name": "tiny",
        "base": {
            "data": "imagefolder",
            "data_root": folder,
            "model": "small_cnn",
            "width": 8,
            "image_size": 16,
            "noise": "symmetric",
            "augment": True,
            "noise_rate": 0.4,
            "epochs": 12,
            "warmup_epochs": 2,
            "batch_size": 16,
            "meta_batch_size": 16,
        },
        "settings": [{"label": "sym 40%"}],
        "methods": ["ce", "l2b", "dividemix", "c2d"],
        "seeds": [0],
        "method_config": {"c2d": {"method": "dividemix", "warmup_epochs": 1, "pretrain": {"epochs": 5}}},
    }
    (tmp_path / "tiny.yaml").write_text(json.dumps(grid))
    assert mod.main([str(tmp_path / "tiny.yaml"), "--quick", "--results", str(tmp_path / "out")]) == 0
    doc = json.loads((tmp_path / "out" / "epoch_cost-tiny.json").read_text())
    rows = {r["method"]: r for r in doc["rows"]}
    assert set(rows) == {"ce", "l2b", "dividemix", "c2d"}
    c2d = rows["c2d"]["seconds_per_epoch"]
    assert set(c2d) == {"pretrain", "warmup", "method"} and min(c2d.values()) > 0
    assert rows["c2d"]["projected_seconds"] == pytest.approx(
        5 * c2d["pretrain"] + 1 * c2d["warmup"] + 11 * c2d["method"]
    )
    assert "pretrain" not in rows["l2b"]["seconds_per_epoch"]
    table = (tmp_path / "out" / "epoch_cost-tiny.md").read_text()
    assert "| c2d |" in table and "× dividemix" in table and "QUICK" in table
