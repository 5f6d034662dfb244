"""The fit to the given labels per epoch: training accuracy, and with known noise the share of
mislabelled examples memorised (predicted as their wrong label) or predicted correctly."""

import json

import numpy as np
import pytest
import torch
import yaml

import l2b
from l2b.cli.main import main
from l2b.training import TrainConfig, build_model, prepare_data
from l2b.training.progress import format_epoch


def test_records_summary_and_progress_line_carry_the_fit(tmp_path, capsys):
    assert main(["train", "--epochs", "3", "--warmup-epochs", "1", "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for r in records:
        assert r["fit_measured"] == "steps"  # no mixup: read off each step's own forward
        assert 0 <= r["memorised"] <= 1 and 0 <= r["noisy_correct"] <= 1 and 0 <= r["train_accuracy"] <= 1
        assert r["memorised"] + r["noisy_correct"] <= 1 + 1e-12  # a wrong label is never the true class
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["memorised"] == records[-1]["memorised"]
    assert summary["peak_test_accuracy"] == max(r["test_accuracy"] for r in records)
    assert "memorised" in format_epoch(records[-1], 3) and "train acc" in format_epoch(records[-1], 3)
    assert "memorised" in out.err + out.out


def _data(n=300, rate=0.4, seed=0):
    cfg = TrainConfig(noise_rate=rate, seed=seed, device="cpu", num_meta=50, hidden=(64,))
    data = prepare_data(cfg)
    rows = np.arange(n)
    return cfg, data, rows


def test_from_the_steps_it_equals_a_direct_count_of_the_steps_predictions():
    """With mixup off, the figures are those of the predictions each step reported."""
    cfg, data, rows = _data()
    model = build_model(cfg, num_classes=10, in_shape=data.example_shape)
    x, given, clean = data.train_inputs[rows], data.given[rows], data.clean[rows]
    result = l2b.fit(model, (x, given), method="ce", epochs=2, warmup_epochs=0, batch_size=32, clean_labels=clean)
    trainer_pred = result.per_example.pred  # the last epoch's step predictions
    assert (trainer_pred >= 0).all()
    noisy = given != clean
    last = result.history[-1]
    assert last["train_accuracy"] == float(np.mean(trainer_pred == given))
    assert last["memorised"] == float(np.mean(trainer_pred[noisy] == given[noisy]))
    assert last["noisy_correct"] == float(np.mean(trainer_pred[noisy] == clean[noisy]))


def test_under_mixup_one_eval_pass_measures_it():
    cfg, data, rows = _data()
    model = build_model(cfg, num_classes=10, in_shape=data.example_shape)
    x, given, clean = data.train_inputs[rows], data.given[rows], data.clean[rows]
    result = l2b.fit(
        model, (x, given), method="ce", epochs=1, warmup_epochs=0, batch_size=32, clean_labels=clean, mixup=True
    )
    last = result.history[-1]
    assert last["fit_measured"] == "eval pass"
    with torch.no_grad():
        pred = model.eval()(torch.as_tensor(x)).argmax(1).numpy()  # the only (so the selected) epoch
    assert last["train_accuracy"] == float(np.mean(pred == given))


def test_cross_entropy_memorises_the_noise_of_a_small_set_it_trains_long_on():
    cfg, data, rows = _data(n=200, rate=0.4)
    model = build_model(cfg, num_classes=10, in_shape=data.example_shape)
    x, given, clean = data.train_inputs[rows], data.given[rows], data.clean[rows]
    result = l2b.fit(
        model, (x, given), method="ce", epochs=60, warmup_epochs=0, batch_size=32, clean_labels=clean, weight_decay=0.0
    )
    first, last = result.history[0], result.history[-1]
    assert first["memorised"] < 0.3 and last["memorised"] > 0.8 and last["train_accuracy"] > 0.9


def test_test_every_thins_the_test_passes_but_keeps_the_last_and_each_new_best(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--epochs", "7", "--warmup-epochs", "1", "--test-every", "3", "--out", str(out)]
    assert main(args) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    best, improving = (-1.0, 0.0), set()
    for r in records:
        key = (r["meta_accuracy"], -r["meta_eval_loss"])
        if key > best:
            best, _ = key, improving.add(r["epoch"])
    expected = {3, 6, 7} | improving
    assert {r["epoch"] for r in records if "test_accuracy" in r} == expected
    assert len(expected) < 7  # something was skipped, or the test shows nothing
    summary = json.loads((out / "summary.json").read_text())
    at_best = next(r for r in records if r["epoch"] == summary["best_meta_epoch"])
    assert summary["test_accuracy_at_best_meta"] == at_best["test_accuracy"]
    assert summary["peak_test_accuracy"] == max(r["test_accuracy"] for r in records if "test_accuracy" in r)
    assert yaml.safe_load((out / "config.yaml").read_text())["config"]["test_every"] == 3


def test_training_signal_by_hand():
    """Where the weight went, on 4 examples whose true class is 0: two clean, two mislabelled
    (the last unseen, NaN)."""
    from l2b.reports import training_signal

    alpha, beta = np.array([1.0, 0.5, 0.2, np.nan]), np.array([0.0, 0.5, 0.8, 1.0])
    pseudo, noisy, clean = np.array([0, 1, 0, 2]), np.array([False, False, True, True]), np.zeros(4, int)
    got = training_signal(alpha, beta, pseudo, noisy, clean)
    total = 1.0 + 0.5 + 0.5 + 0.2 + 0.8
    assert got["weight_on_noisy"] == (0.2 + 0.8) / total
    assert got["true_class_share"] == (1.0 + 0.5 + 0.8) / total  # alpha on clean + beta on right pseudo-labels
    assert got["relabelled_share"] == 0.8 / total
    assert got["wrong_label_share"] == 0.2 / total  # alpha on the mislabelled example's given label
    # By target, the weight is the true class's, the wrong given labels' or the wrong pseudo-labels'.
    assert got["true_class_share"] + got["wrong_label_share"] + 0.5 / total == pytest.approx(1.0)
    # Uniform weights on the given label alone (cross-entropy) move nothing: the shares are the noise's.
    rng = np.random.default_rng(0)
    noisy = rng.random(1000) < 0.4
    ce = training_signal(np.ones(1000), np.zeros(1000), np.full(1000, -1), noisy, np.zeros(1000, int))
    assert ce["weight_on_noisy"] == noisy.mean() and abs(ce["true_class_share"] - (1 - noisy.mean())) < 1e-12
    assert ce["relabelled_share"] == 0.0 and ce["wrong_label_share"] == noisy.mean()
    assert training_signal(np.full(2, np.nan), np.full(2, np.nan), pseudo[:2], noisy[:2], clean[:2]) == {}


def test_l2b_records_where_its_weight_went_and_it_matches_the_last_epochs_weights():
    cfg, data, rows = _data()
    model = build_model(cfg, num_classes=10, in_shape=data.example_shape)
    x, given, clean = data.train_inputs[rows], data.given[rows], data.clean[rows]
    meta = (data.train.inputs[data.meta_idx], data.meta_labels)
    result = l2b.fit(
        model, (x, given), meta=meta, method="l2b", epochs=3, warmup_epochs=1, batch_size=32, clean_labels=clean
    )
    pe, last = result.per_example, result.history[-1]
    noisy = given != clean
    w = pe.alpha + pe.beta
    assert last["weight_on_noisy"] == pytest.approx(w[noisy].sum() / w.sum())
    right = np.where(noisy, 0.0, pe.alpha) + np.where(pe.pseudo == clean, pe.beta, 0.0)
    assert last["true_class_share"] == pytest.approx(right.sum() / w.sum())
    assert last["wrong_label_share"] == pytest.approx(pe.alpha[noisy].sum() / w.sum())
    assert "true_class_share" not in result.history[0]  # the CE warm-up has no weights
