"""The "own data" workflow: a user's folder of images whose labels nobody checked.

No noise is simulated by default, no figure needs the truth, meta methods need a trusted set
(a folder or a path,label list of checked images, taken out of training by file), a test set
is only scored when it was checked, and every output carries file paths and class names. Each
test writes its own tiny image tree (10x10 PNGs, decoded at 8x8) and runs the real command line
in-process (`l2b.cli.main.main`), or as a subprocess where a fresh working directory matters.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from l2b.cli.main import main
from l2b.data.lists import load_csv
from l2b.training.config import TrainConfig
from l2b.training.meta_sources import read_meta_file

Image = pytest.importorskip("PIL.Image")

CLASSES = ("cat", "dog")
PER_CLASS = 8
# Every training run: images decoded at 8x8, small batches, one CPU thread.
TINY = ("--image-size", "8", "--batch-size", "4", "--threads", "1")
# Figures of the per-epoch records that compare with the true labels.
TRUTH_RECORD_KEYS = ("alpha_clean", "alpha_noisy", "true_class_share", "memorised", "weight_on_noisy")


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def save_image(path: Path, cls: int, seed: int) -> None:
    """A 10x10 RGB image whose colour channel `cls` is bright, so that the classes are learnable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 80, (10, 10, 3), dtype=np.uint8)
    arr[..., cls] += 170
    Image.fromarray(arr).save(path)


def make_folder(root: Path, *, per_class: int = PER_CLASS, seed: int = 0) -> Path:
    """root/<class>/<class><i>.png for every class."""
    for c, name in enumerate(CLASSES):
        for i in range(per_class):
            save_image(root / name / f"{name}{i}.png", c, seed + 100 * c + i)
    return root


def make_checked(data: Path, checked: Path) -> Path:
    """A checked folder of four images in the training classes' layout:

    - cat/c0.png: a copy of data/cat/cat0.png (same class);
    - dog/d0.png: a copy of data/dog/dog0.png (same class);
    - cat/moved.png: a copy of data/dog/dog1.png, which the user checked to be a cat;
    - dog/new.png: an image that is no training file.
    """
    for name in CLASSES:
        (checked / name).mkdir(parents=True, exist_ok=True)
    shutil.copy(data / "cat" / "cat0.png", checked / "cat" / "c0.png")
    shutil.copy(data / "dog" / "dog0.png", checked / "dog" / "d0.png")
    shutil.copy(data / "dog" / "dog1.png", checked / "cat" / "moved.png")
    save_image(checked / "dog" / "new.png", 1, 999)
    return checked


def cli(*args) -> SimpleNamespace:
    """Run `l2b ARGS` in this process: (rc, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in args])
    return SimpleNamespace(rc=rc, out=out.getvalue(), err=err.getvalue())


def train(data_root, out, *extra, data: str = "imagefolder", epochs: int = 2) -> SimpleNamespace:
    return cli("train", "--data", data, "--data-root", data_root, *TINY, "--epochs", epochs, *extra, "--out", out)


def summary_of(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def records_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def roles_by_name(run: Path) -> dict[str, list[tuple[str, str]]]:
    """files.csv as file name -> [(role, given_label), ...]."""
    out: dict[str, list[tuple[str, str]]] = {}
    for row in read_csv(run / "files.csv"):
        out.setdefault(Path(row["path"]).name, []).append((row["role"], row["given_label"]))
    return out


def same_file(a, b) -> bool:
    return Path(a).resolve() == Path(b).resolve()


@pytest.fixture(scope="module")
def trusted_run(tmp_path_factory):
    """One finished L2B run on a user folder with a checked folder (truth unknown), shared by
    the tests that only read it."""
    root = tmp_path_factory.mktemp("trusted-run")
    data = make_folder(root / "data")
    checked = make_checked(data, root / "checked")
    run = root / "run"
    r = train(data, run, "--trusted", checked, "--warmup-epochs", "1")
    assert r.rc == 0, r.err
    return SimpleNamespace(root=root, data=data, checked=checked, run=run, log=r.out)


# ----------------------------------------------------------------------------------------------
# 1. the default noise depends on the data
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", ["imagefolder", "csv"])
def test_default_noise_on_a_user_folder_is_none(data):
    config = TrainConfig(data=data)
    assert config.noise == "none" and config.noise_rate is None
    assert not config.truth_known and not config.test_checked
    assert config.test_fraction == 0.0 and config.meta_source == "none"
    # from a benchmark's config to the user's data: the data-chosen noise follows the data
    moved = TrainConfig().replace(data=data)
    assert moved.noise == "none" and moved.noise_rate is None
    # noise asked for on the user's data: simulated, and then its labels play the truth
    simulated = TrainConfig(data=data, noise="symmetric")
    assert simulated.noise_rate == 0.4 and simulated.truth_known and simulated.test_checked


def test_default_noise_on_digits_is_still_symmetric_40_percent():
    config = TrainConfig()
    assert config.data == "digits" and config.noise == "symmetric" and config.noise_rate == 0.4
    assert config.truth_known and config.test_checked and config.meta_source == "split"
    assert TrainConfig(data="imagefolder").replace(data="digits").noise == "symmetric"


@pytest.mark.parametrize(
    ("args", "noise", "rate"),
    [(("--data", "imagefolder"), "none", None), (("--data", "csv"), "none", None), ((), "symmetric", 0.4)],
)
def test_print_config_shows_the_default_noise_of_the_data(args, noise, rate):
    r = cli("train", *args, "--print-config")
    assert r.rc == 0, r.err
    printed = yaml.safe_load(r.out)
    assert printed["noise"] == noise and printed["noise_rate"] == rate


# ----------------------------------------------------------------------------------------------
# 2. figures that need the truth exist only when it is known
# ----------------------------------------------------------------------------------------------


def test_no_truth_figures_when_the_truth_is_unknown(trusted_run, tmp_path):
    run = trusted_run.run
    summary = summary_of(run)
    assert summary["truth_known"] is False and summary["noise"] == "none"
    assert summary["realised_noise_rate"] is None
    assert "memorised" not in summary and "noisy_correct" not in summary
    records = records_of(run)
    assert records and any(r["phase"] == "l2b" for r in records)  # the method ran, not only the warm-up
    for record in records:
        assert not set(TRUTH_RECORD_KEYS) & set(record), record
    with np.load(run / "per_example.npz") as pe:
        assert len(pe["clean_label"]) == len(pe["index"]) > 0
        assert (pe["clean_label"] == -1).all()
    assert json.loads((run / "data.json").read_text())["truth_known"] is False
    assert "true labels are unknown" in trusted_run.log
    r = cli("relabel", run, "--out", tmp_path / "relabelled.csv")
    assert r.rc == 0, r.err
    assert "true labels known" not in r.out


def test_truth_figures_when_noise_is_simulated_on_a_user_folder(tmp_path):
    data = make_folder(tmp_path / "data")
    checked = make_checked(data, tmp_path / "checked")
    run = tmp_path / "run"
    r = train(data, run, "--trusted", checked, "--noise", "symmetric", "--noise-rate", "0.4", "--warmup-epochs", "1")
    assert r.rc == 0, r.err
    summary = summary_of(run)
    assert summary["truth_known"] is True and summary["noise"] == "symmetric"
    assert summary["realised_noise_rate"] is not None and summary["realised_noise_rate"] > 0
    assert "memorised" in summary and "noisy_correct" in summary
    method_records = [r for r in records_of(run) if r["phase"] == "l2b"]
    assert method_records
    for key in TRUTH_RECORD_KEYS:
        assert key in method_records[-1], key
    with np.load(run / "per_example.npz") as pe:
        assert (pe["clean_label"] >= 0).all() and (pe["clean_label"] != pe["given_label"]).any()
    assert json.loads((run / "data.json").read_text())["truth_known"] is True
    r = cli("relabel", run, "--out", tmp_path / "relabelled.csv")
    assert r.rc == 0, r.err
    assert "true labels known" in r.out


# ----------------------------------------------------------------------------------------------
# 3. a meta method needs checked data
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["l2b", "l2rw"])
def test_meta_method_without_a_trusted_set_is_refused_before_a_run_directory(tmp_path, method):
    data = make_folder(tmp_path / "data", per_class=4)
    run = tmp_path / "run"
    r = train(data, run, "--method", method)
    assert r.rc == 2
    assert f"method {method!r}" in r.err
    assert "--trusted" in r.err and "--meta-source confident" in r.err
    assert "Traceback" not in r.err
    assert not run.exists()


def test_ce_without_a_trusted_set_runs(tmp_path):
    data = make_folder(tmp_path / "data", per_class=4)
    r = train(data, tmp_path / "run", "--method", "ce", epochs=1)
    assert r.rc == 0, r.err
    assert summary_of(tmp_path / "run")["meta_source"] == "none"


def test_the_confident_remedy_runs(tmp_path):
    data = make_folder(tmp_path / "data", per_class=4)
    r = train(data, tmp_path / "run", "--meta-source", "confident", "--warmup-epochs", "1")
    assert r.rc == 0, r.err
    assert summary_of(tmp_path / "run")["meta_source"] == "confident"


# ----------------------------------------------------------------------------------------------
# 4. checked images leave training, by file
# ----------------------------------------------------------------------------------------------


def test_trusted_folder_of_copies_is_taken_out_of_training(trusted_run):
    run, data, checked = trusted_run.run, trusted_run.data, trusted_run.checked
    rows = read_csv(run / "files.csv")
    assert len({r["index"] for r in rows}) == len(rows)  # one role per example
    roles = roles_by_name(run)
    # the training files that were checked (as copies) are meta examples, never trained on
    assert roles["cat0.png"] == [("meta", "cat")]
    assert roles["dog0.png"] == [("meta", "dog")]
    # the copy of a moved file: the training file is in the meta set with its checked class
    assert roles["dog1.png"] == [("meta", "cat")]
    assert not {"c0.png", "d0.png", "moved.png"} & set(roles)  # the copies stand for their training files
    # a checked image that is no training file is appended, as a meta example
    new = [r for r in rows if Path(r["path"]).name == "new.png"]
    assert len(new) == 1 and new[0]["role"] == "meta" and new[0]["given_label"] == "dog"
    assert same_file(new[0]["path"], checked / "dog" / "new.png")
    # every other training image is trained on with its folder's class
    train_rows = [r for r in rows if r["role"] == "train"]
    assert len(train_rows) == 2 * PER_CLASS - 3
    assert all(Path(r["path"]).parent.name == r["given_label"] for r in train_rows)
    assert all(same_file(Path(r["path"]).parent.parent, data) for r in train_rows)  # none from the checked folder
    meta_idx = {int(r["index"]) for r in rows if r["role"] != "train"}
    with np.load(run / "per_example.npz") as pe:
        trained = set(pe["index"].tolist())
        assert not trained & meta_idx  # nobody trains on a checked image
        assert set(pe["meta_index"].tolist()) == meta_idx
    issues = read_csv(run / "label_issues.csv")
    assert {int(r["index"]) for r in issues} == trained
    summary = summary_of(run)
    assert summary["meta_source"] == "trusted" and summary["num_meta"] == 4


def test_trusted_list_by_relative_path_and_class_name_is_taken_out_of_training(tmp_path):
    data = make_folder(tmp_path / "data")
    listed = tmp_path / "checked.csv"
    listed.write_text("path,label\ndata/cat/cat1.png,cat\ndata/dog/dog1.png,cat\ndata/dog/dog2.png,dog\n")
    run = tmp_path / "run"
    r = train(data, run, "--trusted", listed, "--warmup-epochs", "1")
    assert r.rc == 0, r.err
    roles = roles_by_name(run)
    assert roles["cat1.png"] == [("meta", "cat")]
    assert roles["dog1.png"] == [("meta", "cat")]  # moved by the list
    assert roles["dog2.png"] == [("meta", "dog")]
    rows = read_csv(run / "files.csv")
    assert len(rows) == 2 * PER_CLASS  # nothing appended: every listed image is a training file
    assert sum(r["role"] == "train" for r in rows) == 2 * PER_CLASS - 3
    assert "3 of the 3 checked images are also training files" in r.out
    assert "1 of them had another class" in r.out


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("data/dog/dog2.png,bird", r"checked\.csv line 3: unknown class 'bird'"),
        ("data/dog/nope.png,dog", r"checked\.csv line 3: unknown path 'data/dog/nope\.png'"),
    ],
)
def test_trusted_list_with_a_bad_line_is_refused_naming_the_file_and_line(tmp_path, line, message):
    data = make_folder(tmp_path / "data", per_class=4)
    listed = tmp_path / "checked.csv"
    listed.write_text(f"path,label\ndata/cat/cat1.png,cat\n{line}\n")
    run = tmp_path / "run"
    r = train(data, run, "--trusted", listed)
    assert r.rc == 2
    assert re.search(message, r.err), r.err
    assert not run.exists()


# ----------------------------------------------------------------------------------------------
# 5. test sets are scored only when checked
# ----------------------------------------------------------------------------------------------


def test_trusted_test_set_is_scored(tmp_path):
    data = make_folder(tmp_path / "data")
    testset = make_folder(tmp_path / "testset", per_class=3, seed=500)
    shutil.copy(data / "cat" / "cat7.png", testset / "cat" / "copy.png")  # a training file, checked for testing
    run = tmp_path / "run"
    r = train(data, run, "--method", "ce", "--trusted-test", testset)
    assert r.rc == 0, r.err
    summary = summary_of(run)
    assert isinstance(summary["test_accuracy"], float)
    assert "trusted_test" in summary["test_set"]
    info = json.loads((run / "data.json").read_text())
    assert info["num_test"] == 7
    # the training file that is also a checked test image left training (files.csv may list it as "test")
    rows = read_csv(run / "files.csv")
    assert all(r["role"] != "train" for r in rows if Path(r["path"]).name == "cat7.png")
    assert sum(r["role"] == "train" for r in rows) == 2 * PER_CLASS - 1
    with np.load(run / "per_example.npz") as pe:
        assert len(pe["index"]) == 2 * PER_CLASS - 1
    assert "1 of the 7 checked test images are also training files" in r.out
    # `l2b evaluate RUN` scores the run's own checked test set, with the selected weights
    r = cli("evaluate", run)
    assert r.rc == 0, r.err
    report = json.loads(r.out)
    assert report["examples"] == 7
    assert report["accuracy"] == pytest.approx(summary["test_accuracy_at_best_meta"])


def test_no_test_split_is_cut_from_a_user_folder(tmp_path):
    data = make_folder(tmp_path / "data")
    run = tmp_path / "run"
    r = train(data, run, "--method", "ce", epochs=1)
    assert r.rc == 0, r.err
    summary = summary_of(run)
    assert summary["test_accuracy"] is None and summary["test_set"] is None
    rows = read_csv(run / "files.csv")
    on_disk = sorted(str(p.resolve()) for p in data.rglob("*.png"))
    assert sorted(str(Path(r["path"]).resolve()) for r in rows) == on_disk
    assert {r["role"] for r in rows} == {"train"}
    r = cli("evaluate", run)
    assert r.rc == 2 and "no checked test set" in r.err


def test_a_test_tree_of_unchecked_labels_is_not_scored(tmp_path):
    root = tmp_path / "data"
    make_folder(root / "train")
    make_folder(root / "test", per_class=3, seed=700)
    run = tmp_path / "run"
    r = train(root, run, "--method", "ce", epochs=1)
    assert r.rc == 0, r.err
    summary = summary_of(run)
    assert summary["test_accuracy"] is None and summary["test_set"] is None
    assert "is not scored" in r.out and "--trusted-test" in r.out
    assert not any("/test/" in row["path"] for row in read_csv(run / "files.csv"))


def test_sets_that_would_score_against_unchecked_or_fitted_labels_are_refused(tmp_path):
    """On a user's folder: a meta set split off the unchecked labels, a test split cut from them,
    a checked test set that holds the checked meta images, or one that is the whole training
    folder: each refused by name before a run directory exists."""
    data = make_folder(tmp_path / "data")
    checked = make_checked(data, tmp_path / "checked")
    outside = make_folder(tmp_path / "outside", per_class=2, seed=900)
    for path in outside.rglob("*.png"):
        path.rename(path.with_name(f"o{path.name[-5]}.png"))  # names unlike the training files'
    outside_copy = tmp_path / "outside_copy"
    shutil.copytree(outside / "cat", outside_copy / "cat")
    (outside_copy / "dog").mkdir()
    shutil.copy(outside / "dog" / "o1.png", outside_copy / "dog" / "x.png")
    cases = [
        (("--meta-source", "split", "--num-meta", "4"), "meta_source='split' takes the meta set from the training"),
        (("--method", "ce", "--test-fraction", "0.2"), "test_fraction=0.2 cuts a test split from data 'imagefolder'"),
        (("--trusted", checked, "--trusted-test", checked), "is also a checked test image"),
        # checked images that are no training files, in both sets (the same file, or a copy of it)
        (("--trusted", outside, "--trusted-test", outside_copy), "outside/cat/o0.png is also a checked test image"),
        (("--method", "ce", "--trusted-test", outside, "--test-fraction", "0.2"), "that trusted_test (the checked"),
        (("--method", "ce", "--trusted-test", data), "every one of the 16 training files is a checked test image"),
        (("--trusted", checked, "--meta-source", "confident"), "is a meta set of checked examples"),
    ]
    for extra, message in cases:
        run = tmp_path / "run"
        r = train(data, run, *extra, epochs=1)
        assert r.rc == 2 and message in r.err, (extra, r.err)
        assert not run.exists()


def test_a_class_of_one_example_in_a_list_is_named_as_a_likely_typo(tmp_path):
    data = make_folder(tmp_path / "data", per_class=10)
    files = sorted(data.rglob("*.png"))
    lines = [f"{p},{'cta' if i == 0 else p.parent.name}" for i, p in enumerate(files)]
    (tmp_path / "list.csv").write_text("path,label\n" + "\n".join(lines) + "\n")
    r = train(tmp_path / "list.csv", tmp_path / "run", "--method", "ce", data="csv", epochs=1)
    assert r.rc == 0, r.err
    assert "class 'cta' has 1 training example(s), the typical class 9: a misspelt label?" in r.out


# ----------------------------------------------------------------------------------------------
# 6. outputs carry paths and class names
# ----------------------------------------------------------------------------------------------


def test_label_issues_carry_paths_and_class_names(trusted_run):
    rows = read_csv(trusted_run.run / "label_issues.csv")
    assert rows and list(rows[0])[:4] == ["index", "path", "given_label", "predicted_label"]
    for row in rows:
        assert os.path.isabs(row["path"]) and os.path.isfile(row["path"])
        assert row["given_label"] in CLASSES and row["predicted_label"] in CLASSES
        assert Path(row["path"]).parent.name == row["given_label"]  # the folder's class, by name


def test_relabelled_csv_carries_paths_and_class_names(trusted_run, tmp_path):
    out = tmp_path / "relabelled.csv"
    r = cli("relabel", trusted_run.run, "--out", out)
    assert r.rc == 0, r.err
    rows = read_csv(out)
    assert list(rows[0]) == ["index", "path", "given_label", "label", "changed", "checked"]
    # the training examples, then the four checked images with their checked class
    assert [r["checked"] for r in rows] == ["False"] * (2 * PER_CLASS - 3) + ["True"] * 4
    for row in rows:
        assert os.path.isabs(row["path"]) and os.path.isfile(row["path"])
        assert row["given_label"] in CLASSES and row["label"] in CLASSES
        assert row["changed"] == str(row["given_label"] != row["label"])
    checked = {Path(r["path"]).name: r["label"] for r in rows if r["checked"] == "True"}
    assert checked == {"cat0.png": "cat", "dog0.png": "dog", "dog1.png": "cat", "new.png": "dog"}


def test_relabelled_csv_is_a_valid_csv_training_list(trusted_run, tmp_path):
    out = tmp_path / "relabelled.csv"
    assert cli("relabel", trusted_run.run, "--out", out).rc == 0
    rows = read_csv(out)
    train_ds, test_ds = load_csv(train_list=out, test_fraction=0.0)
    assert test_ds is None and len(train_ds) == len(rows)
    assert [train_ds.class_names[k] for k in train_ds.labels] == [r["label"] for r in rows]
    folder = tmp_path / "csvdata"
    folder.mkdir()
    shutil.copy(out, folder / "train.csv")
    r = train(folder, tmp_path / "run", "--method", "ce", data="csv", epochs=1)
    assert r.rc == 0, r.err
    given = {Path(f["path"]).name: f["given_label"] for f in read_csv(tmp_path / "run" / "files.csv")}
    assert given == {Path(r["path"]).name: r["label"] for r in rows}
    r = train(out, tmp_path / "run2", "--method", "ce", data="csv", epochs=1)  # the list file itself as the root
    assert r.rc == 0, r.err
    assert read_csv(tmp_path / "run2" / "files.csv") == read_csv(tmp_path / "run" / "files.csv")


def test_relabel_copy_to_sorts_copies_by_class_and_keeps_the_originals(trusted_run, tmp_path):
    out, target = tmp_path / "relabelled.csv", tmp_path / "sorted"
    originals = sorted(trusted_run.data.rglob("*.png"))
    before = {p: p.read_bytes() for p in originals}
    r = cli("relabel", trusted_run.run, "--out", out, "--copy-to", target)
    assert r.rc == 0, r.err
    rows = read_csv(out)
    copies = sorted(target.rglob("*.png"))
    assert len(copies) == len(rows) == 2 * PER_CLASS + 1  # every photo, the checked ones included
    assert (target / "cat" / "dog1.png").is_file()  # the photo the user checked to be a cat
    assert "4 of them checked, under their checked class" in r.out
    assert {p.parent.name for p in copies} <= set(CLASSES)
    for row in rows:
        copy = target / row["label"] / Path(row["path"]).name
        assert copy.read_bytes() == Path(row["path"]).read_bytes()
    assert sorted(trusted_run.data.rglob("*.png")) == originals
    assert all(p.read_bytes() == b for p, b in before.items())


def test_relabel_copy_to_a_non_empty_folder_is_refused(trusted_run, tmp_path):
    target = tmp_path / "full"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    out = tmp_path / "relabelled.csv"
    r = cli("relabel", trusted_run.run, "--out", out, "--copy-to", target)
    assert r.rc == 2 and "not an empty folder" in r.err
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]
    assert (target / "keep.txt").read_text() == "mine"
    assert not out.exists()


# ----------------------------------------------------------------------------------------------
# 7. predict on image files
# ----------------------------------------------------------------------------------------------

PREDICT_HEAD = ["index", "path", "predicted_label", "confidence"] + [f"probability_{c}" for c in CLASSES]


def _check_predictions(rows: list[dict[str, str]], images: list[Path]) -> None:
    assert [int(r["index"]) for r in rows] == list(range(len(images)))
    assert [Path(r["path"]).resolve() for r in rows] == [p.resolve() for p in images]
    for row in rows:
        probs = [float(row[f"probability_{c}"]) for c in CLASSES]
        assert row["predicted_label"] == CLASSES[int(np.argmax(probs))]
        assert float(row["confidence"]) == pytest.approx(max(probs), rel=1e-5)
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)


def test_scoring_the_runs_own_training_files_is_said_to_measure_the_fit(trusted_run, tmp_path):
    r = cli("evaluate", trusted_run.run, "--data", trusted_run.data)
    assert r.rc == 0, r.err
    n_train = 2 * PER_CLASS - 3  # the folder's files less the three that went into the checked meta set
    assert f"warning: {n_train} of the {2 * PER_CLASS} images of {trusted_run.data} are training files" in r.err
    fresh = make_folder(tmp_path / "fresh", per_class=2, seed=4242)
    r = cli("evaluate", trusted_run.run, "--data", fresh)
    assert r.rc == 0 and "warning" not in r.err, r.err


def test_predict_on_a_folder_of_images(trusted_run, tmp_path):
    folder = tmp_path / "new"
    folder.mkdir()
    for i, src in enumerate(sorted(trusted_run.data.rglob("*.png"))[::3]):
        shutil.copy(src, folder / f"img{i}.png")
    images = sorted(folder.iterdir())
    out = tmp_path / "pred.csv"
    r = cli("predict", trusted_run.run, "--data", folder, "--out", out)
    assert r.rc == 0, r.err
    rows = read_csv(out)
    assert list(rows[0]) == PREDICT_HEAD
    _check_predictions(rows, images)
    report = json.loads(r.out)
    assert report["examples"] == len(images) and "accuracy" not in report


def test_out_never_writes_over_a_users_file_but_replaces_its_own_output(trusted_run, tmp_path):
    image = sorted(trusted_run.data.rglob("*.png"))[0]
    theirs = tmp_path / "theirs.csv"
    theirs.write_text("name,score\na,1\n")
    keep = {image: image.read_bytes(), theirs: theirs.read_bytes()}
    for target in (image, theirs):
        for command in (("predict", trusted_run.run, "--data", trusted_run.data), ("relabel", trusted_run.run)):
            r = cli(*command, "--out", target)
            assert r.rc == 2 and "is not a table that l2b wrote" in r.err, r.err
    assert all(path.read_bytes() == data for path, data in keep.items())
    out = tmp_path / "pred.csv"
    out.touch()  # an empty file (mktemp's, or a crashed write's) holds nothing to lose
    for _ in range(2):  # the command's own earlier output is replaced
        assert cli("predict", trusted_run.run, "--data", trusted_run.data, "--out", out).rc == 0


def test_predict_on_a_folder_of_class_folders_reports_accuracy(trusted_run, tmp_path):
    out = tmp_path / "pred.csv"
    r = cli("predict", trusted_run.run, "--data", trusted_run.checked, "--out", out)
    assert r.rc == 0, r.err
    rows = read_csv(out)
    assert list(rows[0]) == PREDICT_HEAD[:4] + ["given_label"] + PREDICT_HEAD[4:]
    assert len(rows) == 4
    assert all(Path(row["path"]).parent.name == row["given_label"] for row in rows)
    report = json.loads(r.out)
    right = np.mean([row["predicted_label"] == row["given_label"] for row in rows])
    assert report["accuracy"] == pytest.approx(right)


def test_predict_on_one_image(trusted_run, tmp_path):
    image = trusted_run.checked / "dog" / "new.png"
    out = tmp_path / "pred.csv"
    r = cli("predict", trusted_run.run, "--data", image, "--out", out)
    assert r.rc == 0, r.err
    rows = read_csv(out)
    assert list(rows[0]) == PREDICT_HEAD
    _check_predictions(rows, [image])


@pytest.mark.parametrize("header", ["", "path\n"])
def test_predict_on_a_list_of_paths(trusted_run, tmp_path, header):
    images = [trusted_run.data / "cat" / "cat3.png", trusted_run.checked / "dog" / "new.png"]
    listed = tmp_path / "images.txt"
    listed.write_text(header + f"{images[0]}\n{os.path.relpath(images[1], tmp_path)}\n")
    out = tmp_path / "pred.csv"
    r = cli("predict", trusted_run.run, "--data", listed, "--out", out)
    assert r.rc == 0, r.err
    rows = read_csv(out)
    assert list(rows[0]) == PREDICT_HEAD
    _check_predictions(rows, images)


# ----------------------------------------------------------------------------------------------
# 8. a run works from any directory
# ----------------------------------------------------------------------------------------------


def _l2b(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "l2b", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_a_run_is_evaluated_and_used_from_another_directory(tmp_path, monkeypatch):
    a, b = tmp_path / "A", tmp_path / "B"
    make_folder(a / "data")
    make_checked(a / "data", a / "checked")
    make_folder(a / "testset", per_class=2, seed=800)
    b.mkdir()
    monkeypatch.chdir(a)
    r = cli(
        "train", "--data", "imagefolder", "--data-root", "data", "--trusted", "checked", "--trusted-test", "testset",
        *TINY, "--epochs", "2", "--warmup-epochs", "1", "--out", "run",
    )  # fmt: skip
    assert r.rc == 0, r.err
    config = yaml.safe_load((a / "run" / "config.yaml").read_text())["config"]
    for key, folder in (("data_root", "data"), ("trusted", "checked"), ("trusted_test", "testset")):
        assert os.path.isabs(config[key]) and same_file(config[key], a / folder), key
    monkeypatch.chdir(b)
    run = a / "run"
    ev = _l2b("evaluate", run, "--data", a / "checked", cwd=b)
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["examples"] == 4
    pr = _l2b("predict", run, "--data", a / "checked", "--out", "pred.csv", cwd=b)
    assert pr.returncode == 0, pr.stderr
    assert len(read_csv(b / "pred.csv")) == 4
    r = cli("evaluate", run)  # the run's own checked test set, found through its recorded absolute path
    assert r.rc == 0, r.err
    assert json.loads(r.out)["examples"] == 4


def test_relative_paths_of_a_config_file_resolve_against_its_folder(tmp_path, monkeypatch):
    c, elsewhere = tmp_path / "C", tmp_path / "elsewhere"
    make_folder(c / "data", per_class=4)
    make_checked(c / "data", c / "checked")
    elsewhere.mkdir()
    (c / "run.yaml").write_text(
        "data: imagefolder\ndata_root: data\ntrusted: checked\nimage_size: 8\nbatch_size: 4\nepochs: 2\n"
        "warmup_epochs: 1\n"
    )
    monkeypatch.chdir(elsewhere)
    r = cli("train", "--config", c / "run.yaml", "--trusted-test", "mine", "--print-config")
    assert r.rc == 0, r.err
    printed = yaml.safe_load(r.out)
    assert same_file(printed["data_root"], c / "data") and same_file(printed["trusted"], c / "checked")
    assert same_file(printed["trusted_test"], elsewhere / "mine")  # the command line's: the working directory's
    r = cli("train", "--config", c / "run.yaml", "--threads", "1", "--out", "run")
    assert r.rc == 0, r.err
    assert (elsewhere / "run" / "summary.json").is_file()


# ----------------------------------------------------------------------------------------------
# 9. a meta batch larger than the trusted set
# ----------------------------------------------------------------------------------------------


def test_meta_batch_larger_than_the_trusted_set_is_clamped_with_a_word(trusted_run):
    assert "meta batch 100 is larger than the meta set (4 examples)" in trusted_run.log
    summary = summary_of(trusted_run.run)
    assert summary["meta_batch_size"] == 4 and summary["num_meta"] == 4
    info = json.loads((trusted_run.run / "data.json").read_text())
    assert info["meta_batch_size"] == 4 and info["num_meta"] == 4


# ----------------------------------------------------------------------------------------------
# 10. --out never replaces a run's own files
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "name"),
    [("relabel", "config.yaml"), ("relabel", "model.pt"), ("predict", "config.yaml"), ("predict", "model.pt")],
)
def test_out_pointing_at_the_runs_own_file_is_refused(trusted_run, command, name):
    run = trusted_run.run
    target = run / name
    before = target.read_bytes()
    extra = ("--data", trusted_run.checked) if command == "predict" else ()
    r = cli(command, run, *extra, "--out", run / "." / name)
    assert r.rc == 2 and f"the run's own {name}" in r.err
    assert target.read_bytes() == before


# ----------------------------------------------------------------------------------------------
# 11. model selection on held-out trusted examples
# ----------------------------------------------------------------------------------------------


def test_selection_fraction_holds_out_trusted_examples_for_choosing_the_checkpoint(tmp_path):
    data = make_folder(tmp_path / "data")
    checked = make_checked(data, tmp_path / "checked")
    run = tmp_path / "run"
    r = train(data, run, "--trusted", checked, "--selection-fraction", "0.4", "--warmup-epochs", "1", epochs=3)
    assert r.rc == 0, r.err
    summary = summary_of(run)
    assert summary["num_selection"] > 0
    assert summary["num_meta"] + summary["num_selection"] == 4
    rows = read_csv(run / "files.csv")
    selection = [r for r in rows if r["role"] == "selection"]
    assert len(selection) == summary["num_selection"]
    assert sum(r["role"] == "meta" for r in rows) == summary["num_meta"]
    checked_names = {"cat0.png", "dog0.png", "dog1.png", "new.png"}  # the checked images as the pool has them
    assert {Path(r["path"]).name for r in rows if r["role"] != "train"} == checked_names
    records = records_of(run)
    assert len(records) == 3 and all("selection_accuracy" in r for r in records)
    keys = [(r["selection_accuracy"], -r["selection_loss"]) for r in records]
    best = keys.index(max(keys)) + 1
    assert summary["best_meta_epoch"] == best
    assert summary["best_selection_accuracy"] == records[best - 1]["selection_accuracy"]


# ----------------------------------------------------------------------------------------------
# 12. meta-file errors name the file's own lines
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("index,label\n0,1\nx,1\n", r"line 3: 'x,1' is not 'index\[,label\]'"),
        ("index,label\n0,1\n5000,1\n", r"line 3: index 5000 is outside the training set"),
        ("index,label\n\n0,1\n4,11\n", r"line 4: label 11 is outside \[0, 10\)"),
        ("idx\n0\n", r"line 1: header must be 'index' or 'index,label'"),
    ],
)
def test_meta_file_errors_give_the_files_own_line_numbers(tmp_path, text, message):
    path = tmp_path / "meta.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as err:
        read_meta_file(str(path), num_examples=100, num_classes=10)
    assert "meta.csv" in str(err.value)


def test_meta_file_line_numbers_reach_the_command_line(tmp_path):
    path = tmp_path / "meta.csv"
    path.write_text("index,label\n0,1\nx,1\n")
    run = tmp_path / "run"
    r = cli("train", "--meta-source", "file", "--meta-file", path, "--epochs", "1", "--threads", "1", "--out", run)
    assert r.rc == 2
    assert "meta.csv: line 3:" in r.err
    assert not run.exists()
