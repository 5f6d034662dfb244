"""The real command line, run as a user would."""

import json
import subprocess
import sys


def l2b(*args, cwd):
    return subprocess.run([sys.executable, "-m", "l2b", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_default_train_run_completes_and_writes_its_files(tmp_path):
    r = l2b("train", "--out", "run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "run"
    assert {"config.yaml", "metrics.jsonl", "summary.json", "per_example.npz", "model.pt"} <= {
        p.name for p in run.iterdir()
    }
    summary = json.loads((run / "summary.json").read_text())
    assert summary["method"] == "l2b" and summary["epochs"] == 40 and summary["noise_rate"] == 0.4
    assert summary["test_accuracy"] > 0.85
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 40
    assert "epoch  40/40 [l2b]" in r.stdout and '"test_accuracy"' in r.stdout


def test_help_documents_the_options(tmp_path):
    r = l2b("train", "--help", cwd=tmp_path)
    assert r.returncode == 0
    for opt in ("--method", "--noise", "--noise-rate", "--epochs", "--seed", "--num-meta", "--out", "--device"):
        assert opt in r.stdout


def test_bad_values_give_a_clear_error_not_a_traceback(tmp_path):
    r = l2b("train", "--noise-rate", "1.5", "--out", "x", cwd=tmp_path)
    assert r.returncode == 2 and "noise_rate=1.5" in r.stderr and "Traceback" not in r.stderr
    r = l2b("train", "--num-meta", "5", "--epochs", "1", "--warmup-epochs", "0", "--out", "y", cwd=tmp_path)
    assert r.returncode == 2 and "num_meta=5" in r.stderr and "Traceback" not in r.stderr
    r = l2b("train", "--method", "nope", cwd=tmp_path)
    assert r.returncode == 2 and "invalid choice" in r.stderr
