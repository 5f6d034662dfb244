"""Data splits, configs and the experiment runner on the embedded digits data."""

import json

import numpy as np
import pytest
import torch

from l2b.data import ArrayDataset, class_balanced_split, load_digits, stratified_holdout
from l2b.training import TrainConfig, run_experiment


def test_class_balanced_split_is_balanced_and_partitions():
    labels = np.repeat(np.arange(5), [30, 20, 25, 40, 11])
    sel, rest = class_balanced_split(labels, num_selected=23, num_classes=5, seed=0)
    counts = np.bincount(labels[sel], minlength=5)
    assert counts.sum() == 23 and counts.max() - counts.min() <= 1
    assert np.array_equal(np.sort(np.concatenate([sel, rest])), np.arange(len(labels)))
    sel2, _ = class_balanced_split(labels, num_selected=23, num_classes=5, seed=0)
    assert np.array_equal(sel, sel2)
    with pytest.raises(ValueError, match="num_meta=3 is smaller than the number of classes"):
        class_balanced_split(labels, num_selected=3, num_classes=5, seed=0)
    with pytest.raises(ValueError, match="class 4 has 11 examples"):
        class_balanced_split(labels, num_selected=60, num_classes=5, seed=0)


def test_stratified_holdout_partitions_each_class():
    labels = np.repeat(np.arange(3), 50)
    kept, held = stratified_holdout(labels, fraction=0.2, seed=1)
    assert np.array_equal(np.bincount(labels[held]), [10, 10, 10])
    assert len(np.intersect1d(kept, held)) == 0 and len(kept) + len(held) == 150


def test_digits_is_embedded_and_standardised():
    train, test = load_digits()
    assert (len(train), len(test)) == (1438, 359) and train.example_shape == (1, 8, 8)
    assert abs(float(train.inputs.mean())) < 1e-4 and abs(float(train.inputs.std()) - 1) < 1e-4
    assert set(np.unique(train.labels)) == set(range(10))


def test_array_dataset_names_bad_input():
    x = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="label 7 at index 2 is outside \\[0, 3\\)"):
        ArrayDataset(x, np.array([0, 1, 7, 2]), 3, "toy")
    with pytest.raises(ValueError, match="inputs has 4 examples but labels has 3"):
        ArrayDataset(x, np.array([0, 1, 2]), 3, "toy")
    x[1, 0] = np.nan
    with pytest.raises(ValueError, match="input 1 has NaN or Inf"):
        ArrayDataset(x, np.array([0, 1, 2, 0]), 3, "toy")


@pytest.mark.parametrize(
    "key,value",
    [("noise_rate", 1.5), ("epochs", 0), ("batch_size", 1), ("warmup_epochs", 50), ("lr", -0.1), ("clip_grad", 0.0)],
)
def test_config_rejects_out_of_range_values_by_name(key, value):
    with pytest.raises(ValueError, match=f"config {key}="):
        TrainConfig(**{key: value})


def test_run_writes_its_files_and_is_deterministic(tmp_path):
    cfg = TrainConfig(method="l2b", epochs=3, warmup_epochs=1, device="cpu", seed=4)
    rng = torch.random.get_rng_state()
    s1 = run_experiment(cfg, out_dir=tmp_path / "a", progress=False, log=None)
    assert torch.equal(rng, torch.random.get_rng_state())  # the caller's global RNG is restored
    s2 = run_experiment(cfg, out_dir=tmp_path / "b", progress=False, log=None)
    for key in ("method", "test_accuracy", "best_meta_accuracy", "epochs", "seed", "noise_rate", "seconds"):
        assert key in s1
    assert s1["test_accuracy"] == s2["test_accuracy"]
    records = [json.loads(line) for line in (tmp_path / "a/metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3] and records[0]["phase"] == "warmup"
    assert records == [
        json.loads(line)
        | {k: records[i][k] for k in ("train_seconds", "images_per_second", "test_seconds") if k in records[i]}
        for i, line in enumerate((tmp_path / "b/metrics.jsonl").read_text().splitlines())
    ]
    assert {"alpha_clean", "alpha_noisy", "beta_clean", "beta_noisy"} <= set(records[-1])
    assert json.loads((tmp_path / "a/summary.json").read_text()) == s1
    per = np.load(tmp_path / "a/per_example.npz")
    assert len(np.intersect1d(per["index"], per["meta_index"])) == 0 and len(per["meta_index"]) == 100
    assert np.mean(per["given_label"] != per["clean_label"]) == pytest.approx(s1["realised_noise_rate"])
    assert np.isfinite(per["alpha"]).all()
    with pytest.raises(FileExistsError, match="already holds a finished run"):
        run_experiment(cfg, out_dir=tmp_path / "a", progress=False, log=None)


def test_l2b_recovers_from_40_percent_noise_where_ce_does_not():
    """The headline claim in miniature (one seed; the README's table has three)."""
    acc = {
        m: run_experiment(TrainConfig(method=m, epochs=25, device="cpu", seed=0), progress=False, log=None)[
            "test_accuracy"
        ]
        for m in ("ce", "l2b")
    }
    assert acc["l2b"] >= 0.88 and acc["l2b"] - acc["ce"] >= 0.10, acc


def test_train_subset_is_class_balanced_and_keeps_the_noise_of_the_whole_split(tmp_path):
    full = run_experiment(TrainConfig(epochs=1, warmup_epochs=0, device="cpu", noise_rate=0.4), log=None)
    s = run_experiment(
        TrainConfig(epochs=1, warmup_epochs=0, device="cpu", noise_rate=0.4, train_subset=500, num_meta=50),
        out_dir=tmp_path / "r",
        log=None,
    )
    pe = np.load(tmp_path / "r" / "per_example.npz")
    assert len(pe["index"]) == 450 and np.bincount(pe["clean_label"], minlength=10).min() >= 40
    assert abs(s["realised_noise_rate"] - full["realised_noise_rate"]) < 0.06
    with pytest.raises(ValueError, match=r"train_subset=5000 is larger than the training split \(1438 examples\)"):
        run_experiment(TrainConfig(train_subset=5000), log=None)
    with pytest.raises(
        ValueError,
        match=r"width=16 does not apply to model 'mlp': it is for models small_cnn, fast_cnn, unet and unetpp only",
    ):
        TrainConfig(width=16)
