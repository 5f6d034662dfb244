"""`l2b evaluate` and `l2b predict` on a short digits run: through the real command line in a
subprocess where it matters (and is affordable: each start imports torch), else through the same
entry point in-process."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from l2b.cli.main import main
from l2b.data import load_digits
from l2b.training import TensorData, evaluate
from l2b.training.inference import load_trained_model


def l2b(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "l2b", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def l2b_inprocess(*args, capsys):
    """(exit code, stdout, stderr) of the same `main` the console script runs."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("inference")
    r = l2b("train", "--epochs", 3, "--warmup-epochs", 1, "--threads", 1, "--quiet", "--out", "run", cwd=root)
    assert r.returncode == 0, r.stderr
    _, test = load_digits()  # the run's split: default test_fraction and split_seed
    np.savez(root / "test.npz", inputs=test.inputs, labels=test.labels)
    np.savez(root / "unlabelled.npz", inputs=test.inputs[:7])
    np.savez(root / "flat.npz", inputs=test.inputs.reshape(len(test), -1))
    return root, json.loads((root / "run" / "summary.json").read_text())


def test_evaluate_defaults_to_the_runs_test_split(run, capsys):
    root, summary = run
    r = l2b("evaluate", "run", cwd=root)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["data"] == "digits" and out["split"] == "test" and out["examples"] == 359
    assert out["accuracy"] == pytest.approx(summary["test_accuracy_at_best_meta"], abs=1e-6)
    assert 0 < out["loss"] < 5
    code, stdout, err = l2b_inprocess(
        "evaluate", root / "run", "--data", root / "test.npz", "--preprocessed", capsys=capsys
    )
    assert code == 0, err  # the same examples from a file (already standardised: raw pixels are the default)
    assert json.loads(stdout)["accuracy"] == pytest.approx(out["accuracy"], abs=1e-6)
    code, stdout, err = l2b_inprocess("evaluate", root / "run", "--data", "digits", "--split", "train", capsys=capsys)
    assert code == 0, err
    assert json.loads(stdout)["examples"] == 1438 and json.loads(stdout)["split"] == "train"


def test_predict_writes_index_label_and_probabilities(run, capsys):
    root, summary = run
    r = l2b("predict", "run", "--data", "digits", "--out", "pred/test.csv", cwd=root)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["accuracy"] == pytest.approx(summary["test_accuracy_at_best_meta"], abs=1e-6)
    with open(root / "pred" / "test.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["index", "predicted_label", "confidence"] + [f"probability_{k}" for k in range(10)]
    body = np.array(rows[1:], dtype=float)
    assert body.shape == (359, 13) and np.array_equal(body[:, 0], np.arange(359))
    assert np.allclose(body[:, 3:].sum(1), 1, atol=1e-4)
    assert np.array_equal(body[:, 1], body[:, 3:].argmax(1))  # class names of digits are "0".."9"
    assert np.allclose(body[:, 2], body[:, 3:].max(1), atol=1e-5)  # confidence: the predicted class's
    code, stdout, err = l2b_inprocess(
        "predict",
        root / "run",
        "--data",
        root / "unlabelled.npz",
        "--preprocessed",
        "--out",
        root / "u.csv",
        capsys=capsys,
    )
    assert code == 0, err
    assert "accuracy" not in json.loads(stdout) and json.loads(stdout)["examples"] == 7
    with open(root / "u.csv", newline="") as f:
        unlabelled = np.array(list(csv.reader(f))[1:], dtype=float)
    assert np.allclose(unlabelled, body[:7], atol=1e-5)


def test_shape_mismatch_and_other_errors_are_clear(run, capsys):
    root, _ = run
    r = l2b("predict", "run", "--data", "flat.npz", "--out", "x.csv", cwd=root)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "flat.npz" in r.stderr and "(359, 64)" in r.stderr and "(1, 8, 8)" in r.stderr, r.stderr
    assert not (root / "x.csv").exists()
    code, _, err = l2b_inprocess(
        "evaluate", root / "run", "--data", root / "unlabelled.npz", "--preprocessed", capsys=capsys
    )
    assert code == 2 and "no 'labels' array" in err, err
    code, _, err = l2b_inprocess("evaluate", root / "nowhere", capsys=capsys)
    assert code == 2 and "not an l2b run directory" in err, err
    np.savez(root / "nokey.npz", x=np.zeros((2, 1, 8, 8)))
    code, _, err = l2b_inprocess(
        "predict", root / "run", "--data", root / "nokey.npz", "--out", root / "y.csv", capsys=capsys
    )
    assert code == 2 and "nokey.npz has no 'inputs' array (it holds: x)" in err, err
    code, _, err = l2b_inprocess(
        "evaluate", root / "run", "--data", root / "test.npz", "--split", "train", capsys=capsys
    )
    assert code == 2 and "applies to registered data sets" in err, err


def test_load_trained_model_rebuilds_the_selected_model(run):
    root, summary = run
    torch.manual_seed(0)
    state = torch.random.get_rng_state()
    model, config = load_trained_model(root / "run")
    assert torch.equal(torch.random.get_rng_state(), state)
    assert config.method == "l2b" and config.epochs == 3 and not model.training
    _, test = load_digits()
    acc, _ = evaluate(model, TensorData(torch.as_tensor(test.inputs), torch.as_tensor(test.labels)))
    assert acc == pytest.approx(summary["test_accuracy_at_best_meta"], abs=1e-6)
    with pytest.raises(FileNotFoundError, match="model.pt not found"):
        (root / "run" / "model.pt").rename(root / "model.bak")
        try:
            load_trained_model(root / "run")
        finally:
            (root / "model.bak").rename(root / "run" / "model.pt")


def test_a_file_of_inputs_is_evaluated_without_loading_the_runs_data_set(run, capsys, monkeypatch):
    """The run directory records what a model needs (data.json: classes, input shape and
    preprocessing), so an .npz of inputs is prepared without loading the training data."""
    import l2b.cli.evaluate as cli_evaluate
    import l2b.training.inference as inference
    import l2b.training.prepare as prepare

    root, summary = run
    reference = l2b_inprocess("evaluate", root / "run", "--data", root / "test.npz", "--preprocessed", capsys=capsys)

    def refuse(*args, **kwargs):
        raise AssertionError("the run's data set was loaded")

    monkeypatch.setattr(prepare, "load_run_data", refuse)
    monkeypatch.setattr(inference, "load_run_data", refuse)
    monkeypatch.setattr(cli_evaluate, "load_run_data", refuse, raising=False)
    code, out, err = l2b_inprocess(
        "evaluate", root / "run", "--data", root / "test.npz", "--preprocessed", capsys=capsys
    )
    assert code == 0, err
    assert json.loads(out)["accuracy"] == json.loads(reference[1])["accuracy"]
    assert json.loads(out)["accuracy"] == pytest.approx(summary["test_accuracy_at_best_meta"], abs=1e-6)
    _, test = load_digits()
    mean, std = 0.3055, 0.3761  # digits' training statistics, in units of raw / 16 (as the run recorded)
    info = json.loads((root / "run" / "data.json").read_text())
    assert info["preprocessing"]["scale"] == 16.0 and info["preprocessing"]["mean"][0] == pytest.approx(mean, abs=1e-4)
    raw = np.round((test.inputs * std + mean) * 16).clip(0, 16).astype(np.uint8)
    np.save(root / "raw.npy", raw)
    code, out, err = l2b_inprocess(
        "predict", root / "run", "--data", root / "raw.npy", "--out", root / "r.csv", capsys=capsys
    )
    assert code == 0, err
    assert json.loads(out)["preprocessing"].startswith("the run's: (x / 16 - 0.3055) / 0.3761")
