"""Meta-set sources: a clean split, a user's file, or none at all (confident selection)."""

import json

import numpy as np
import pytest

from l2b.training import TrainConfig, run_experiment
from l2b.training.meta_sources import confident_meta_set, read_meta_file
from l2b.training.validation import IncompleteMetaSetWarning


def test_confident_meta_set_takes_the_most_confident_agreeing_examples_per_class():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7], [0.95, 0.05], [0.45, 0.55]])
    given = np.array([0, 0, 1, 1, 1, 0])  # example 4 disagrees (predicted 0, given 1); 5 disagrees
    idx = confident_meta_set(probs, given, num_meta=4, num_classes=2)
    assert idx.tolist() == [0, 1, 2, 3]
    idx = confident_meta_set(probs, given, num_meta=2, num_classes=2)
    assert idx.tolist() == [0, 2]  # the most confident of each class
    # A class with too few agreeing candidates contributes what it has; never a disagreeing one.
    idx = confident_meta_set(probs, given, num_meta=8, num_classes=2)
    assert idx.tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="num_meta=1 is smaller than the number of classes"):
        confident_meta_set(probs, given, num_meta=1, num_classes=2)
    with pytest.raises(ValueError, match="probs must have shape"):
        confident_meta_set(probs[:3], given, num_meta=2, num_classes=2)


def test_read_meta_file_formats_and_errors(tmp_path):
    f = tmp_path / "meta.csv"
    f.write_text("index,label\n3,1\n0,2\n")
    idx, lab = read_meta_file(str(f), num_examples=5, num_classes=3)
    assert idx.tolist() == [3, 0] and lab.tolist() == [1, 2]
    f.write_text("4\n1\n")
    idx, lab = read_meta_file(str(f), num_examples=5, num_classes=3)
    assert idx.tolist() == [4, 1] and lab is None
    for text, message in [
        ("7\n", "line 1: index 7 is outside the training set"),
        ("1,9\n", "line 1: label 9 is outside"),
        ("1\n1\n", "listed more than once"),
        ("a,b\n1,2\n", "header must be"),
        ("1,x\n", "is not 'index\\[,label\\]'"),
        ("", "no meta examples"),
    ]:
        f.write_text(text)
        with pytest.raises(ValueError, match=message):
            read_meta_file(str(f), num_examples=5, num_classes=3)


def test_meta_file_source_takes_the_listed_examples_out_of_training(tmp_path):
    listed = [5, 17, 40, 3, 99, 123, 200, 301, 450, 600, 777, 900]
    (tmp_path / "meta.txt").write_text("\n".join(map(str, listed)) + "\n")
    cfg = TrainConfig(
        meta_source="file",
        meta_file=str(tmp_path / "meta.txt"),
        epochs=2,
        warmup_epochs=1,
        device="cpu",
        allow_incomplete_meta=True,
    )
    with pytest.warns(IncompleteMetaSetWarning, match=r"meta\.txt: .*no example of class 1 \('1'\), 4 \('4'\), 7"):
        run_experiment(cfg, out_dir=tmp_path / "run", progress=False, log=None)  # the 12 listed lack 3 classes
    per = np.load(tmp_path / "run" / "per_example.npz")
    assert per["meta_index"].tolist() == sorted(listed)
    assert not set(listed) & set(per["index"].tolist())
    with pytest.raises(ValueError, match="meta_file.*must be set exactly when meta_source is 'file'"):
        TrainConfig(meta_source="file")


def test_confident_source_needs_no_clean_data_and_reports_purity(tmp_path):
    cfg = TrainConfig(meta_source="confident", epochs=8, warmup_epochs=3, device="cpu", seed=1)
    summary = run_experiment(cfg, out_dir=tmp_path / "run", progress=False, log=None)
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("meta_size" not in r for r in records[:3])  # warm-up: no meta set yet
    assert all(r["meta_size"] == 100 and 0.8 <= r["meta_purity"] <= 1.0 for r in records[3:])
    assert summary["meta_purity"] == pytest.approx(np.mean([r["meta_purity"] for r in records[3:]]))
    assert summary["best_meta_epoch"] == 8  # nothing clean to select on: the last epoch
    per = np.load(tmp_path / "run" / "per_example.npz")
    assert len(per["index"]) == 1438 and len(per["meta_index"]) == 0  # nothing taken out of training
    assert summary["test_accuracy"] > 0.75
    with pytest.raises(ValueError, match="warmup_epochs=0 must be at least 1 with meta_source 'confident'"):
        TrainConfig(meta_source="confident", warmup_epochs=0)
