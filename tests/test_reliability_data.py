"""Reliability, round three (data side): nothing the user owns is overwritten, a run stays tied to
its files, and images and labels are read as the user sees them.

Each test builds its own tiny files (10x10 images decoded at 8x8) and runs the command line
in-process (`l2b.cli.main.main`) or, where the working directory matters, as a subprocess.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l2b.cli.main import main
from l2b.data import load_csv, load_imagefolder
from l2b.data.files import open_rgb
from l2b.training import TrainConfig, run_experiment
from l2b.training.inference import read_image_source

Image = pytest.importorskip("PIL.Image")
TINY = ("--image-size", "8", "--batch-size", "4", "--threads", "1", "--quiet")


def save_image(path: Path, cls: int, seed: int, size: tuple[int, int] = (10, 10)) -> None:
    """An RGB image whose channel cls % 3 is bright (learnable classes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 80, (size[1], size[0], 3), dtype=np.uint8)
    arr[..., cls % 3] += 170
    Image.fromarray(arr).save(path)


def make_folder(root: Path, classes=("cat", "dog"), per_class: int = 8, seed: int = 0) -> Path:
    for c, name in enumerate(classes):
        for i in range(per_class):
            save_image(root / name / f"{name}{i}.png", c, seed + 100 * c + i)
    return root


def cli(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def l2b(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "l2b", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600
    )


# -- files the user owns are not overwritten ---------------------------------------------------


def test_train_out_into_a_folder_of_the_users_own_files_is_refused(tmp_path):
    data = make_folder(tmp_path / "photos")
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.yaml").write_text("method: ce\nepochs: 2\n")  # the user's own config ...
    (work / "model.pt").write_bytes(b"the user's own weights")  # ... and weights
    before = {p.name: p.read_bytes() for p in work.iterdir()}
    code, _, err = cli("train", "--config", work / "config.yaml", "--data", "imagefolder", "--data-root", data,
                       "--out", work, *TINY)  # fmt: skip
    assert code == 2 and "Traceback" not in err
    assert "config.yaml" in err and "model.pt" in err and "choose another --out" in err
    assert {p.name: p.read_bytes() for p in work.iterdir()} == before


def test_out_naming_a_folder_for_a_file_output_is_refused(tmp_path):
    data = make_folder(tmp_path / "photos")
    assert cli("train", "--data", "imagefolder", "--data-root", data, "--method", "ce", "--epochs", "1",
               "--out", tmp_path / "run", *TINY)[0] == 0  # fmt: skip
    for command in (("relabel", tmp_path / "run"), ("predict", tmp_path / "run", "--data", data)):
        code, _, err = cli(*command, "--out", tmp_path)
        assert code == 2 and "is a directory" in err and "Traceback" not in err


# -- a run stays tied to its files -------------------------------------------------------------


class _StopAtEpoch2:
    """A log that interrupts the run when epoch 2's line arrives (epoch 1's checkpoint written)."""

    def __call__(self, line: str) -> None:
        if line.startswith("epoch   2/"):
            raise KeyboardInterrupt


def _config(data_root: str, **kw) -> TrainConfig:
    base = dict(
        data="imagefolder", data_root=data_root, noise="symmetric", noise_rate=0.25, image_size=8, model="mlp",
        epochs=3, warmup_epochs=1, batch_size=4, meta_batch_size=4, num_meta=4, seed=3,
    )  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_resume_from_another_directory_with_a_decoy_folder_uses_the_runs_own_files(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    make_folder(a / "photos", seed=0)
    make_folder(b / "photos", classes=("cat", "dog"), seed=500)  # same relative name, other images
    monkeypatch.chdir(a)
    config = _config("photos")  # relative: recorded absolute
    assert config.data_root == str(a / "photos")
    run_experiment(config, out_dir=a / "full", progress=False, log=None)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, out_dir=a / "cut", progress=False, log=_StopAtEpoch2())
    assert (a / "cut" / "checkpoint.pt").exists()
    r = l2b("train", "--resume", a / "cut", "--quiet", cwd=b)  # the decoy folder is b/photos
    assert r.returncode == 0, r.stderr
    full = [json.loads(x) for x in (a / "full" / "metrics.jsonl").read_text().splitlines()]
    cut = [json.loads(x) for x in (a / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [m["train_loss"] for m in full] == [m["train_loss"] for m in cut]


def test_resume_after_the_files_changed_is_refused(tmp_path):
    data = make_folder(tmp_path / "photos")
    config = _config(str(data))
    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, out_dir=tmp_path / "cut", progress=False, log=_StopAtEpoch2())
    save_image(data / "cat" / "added.png", 0, 77)
    code, _, err = cli("train", "--resume", tmp_path / "cut", "--quiet")
    assert code == 2 and "changed since the run started" in err and "added.png" in err
    # the same paths, one file rewritten (another size): named too
    (data / "cat" / "added.png").unlink()
    victim = sorted((data / "dog").iterdir())[0]
    victim.write_bytes(victim.read_bytes() + b"\0" * 16)
    code, _, err = cli("train", "--resume", tmp_path / "cut", "--quiet")
    assert code == 2 and f"1 file(s) rewritten since the run began (e.g. {victim.resolve()})" in err, err


def test_evaluate_after_files_were_added_uses_the_runs_own_test_set(tmp_path):
    data = make_folder(tmp_path / "photos", per_class=10)
    summary = run_experiment(_config(str(data), epochs=2), out_dir=tmp_path / "run", progress=False, log=None)
    for i in range(6):  # new images would re-cut a split made now
        save_image(data / "dog" / f"new{i}.png", 1, 900 + i)
    code, out, err = cli("evaluate", tmp_path / "run")
    assert code == 0, err
    report = json.loads(out)
    info = json.loads((tmp_path / "run" / "data.json").read_text())
    assert report["examples"] == info["num_test"]
    assert report["accuracy"] == pytest.approx(summary["test_accuracy_at_best_meta"], abs=1e-6)
    os.remove(next(p for p in (data / "cat").iterdir() if "new" not in p.name and p.name.startswith("cat")))
    code, _, err = cli("evaluate", tmp_path / "run")  # a recorded test image may be gone: said, not re-cut
    assert code in (0, 2)
    if code == 2:
        assert "gone" in err


# -- images and labels read as the user sees them ----------------------------------------------


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :5] = 255  # a white band on the left of a landscape image
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    im.save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    upright = open_rgb(tmp_path / "phone.jpg")
    assert upright.size == (10, 20)  # portrait, as a viewer shows it
    top = np.asarray(upright)[:5].mean()
    assert top > 200  # the white band is now at the top


def test_numeric_class_folders_keep_their_numbers(tmp_path):
    names = [str(k) for k in range(12)]
    root = make_folder(tmp_path / "digits", classes=names, per_class=2)
    train, _ = load_imagefolder(root=root, image_size=8, test_fraction=0)
    assert train.class_names == tuple(names)  # 10 is class 10, not 2
    for path, label in zip(train.paths, train.labels):
        assert Path(path).parent.name == str(label)


def test_csv_labels_written_as_floats_are_indices_and_mixed_columns_are_refused(tmp_path):
    make_folder(tmp_path / "img", classes=("a", "b", "c"), per_class=2)
    files = sorted((tmp_path / "img").rglob("*.png"))
    rows = [f"{p.relative_to(tmp_path)},{'abc'.index(p.parent.name)}.0" for p in files]
    (tmp_path / "train.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    train, _ = load_csv(root=tmp_path, image_size=8, test_fraction=0)
    assert train.num_classes == 3 and list(np.bincount(train.labels)) == [2, 2, 2]
    (tmp_path / "train.csv").write_text("path,label\n" + "\n".join(rows[:-1] + [f"{rows[-1].split(',')[0]},c"]))
    with pytest.raises(ValueError, match="mixes class names and numbers"):
        load_csv(root=tmp_path, image_size=8, test_fraction=0)


def test_one_based_labels_name_their_classes(tmp_path):
    make_folder(tmp_path / "img", classes=("a", "b", "c"), per_class=3)
    files = sorted((tmp_path / "img").rglob("*.png"))
    rows = [f"{p.relative_to(tmp_path)},{'abc'.index(p.parent.name) + 1}" for p in files]  # 1..3
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    train, _ = load_csv(root=tmp_path, image_size=8, test_fraction=0)
    assert train.class_names == ("1", "2", "3")
    for path, label in zip(train.paths, train.labels):
        assert train.class_names[label] == str("abc".index(Path(path).parent.name) + 1)


def test_a_single_class_is_refused(tmp_path):
    data = make_folder(tmp_path / "photos", classes=("cat",))
    for extra in ((), ("--noise", "symmetric")):
        code, _, err = cli("train", "--data", "imagefolder", "--data-root", data, "--method", "ce",
                           *extra, "--out", tmp_path / "r", *TINY)  # fmt: skip
        assert code == 2 and "single class ('cat')" in err and "rate" not in err
        assert not (tmp_path / "r").exists()


def test_noise_none_records_no_rate(tmp_path):
    config = TrainConfig(noise="none")
    assert config.noise_rate is None
    data = make_folder(tmp_path / "photos")
    assert cli("train", "--data", "imagefolder", "--data-root", data, "--method", "ce", "--epochs", "1",
               "--out", tmp_path / "r", *TINY)[0] == 0  # fmt: skip
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["noise_rate"] is None and "noise_rate: null" in (tmp_path / "r" / "config.yaml").read_text()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    # All whole numbers (ordered numerically) or all words: a list that mixes the two is refused
    # (test_csv_labels_written_as_floats_are_indices_and_mixed_columns_are_refused).
    names=st.one_of(
        st.lists(st.integers(0, 40).map(str), min_size=2, max_size=5, unique=True),
        st.lists(st.text("abcdefgXYZ_-", min_size=1, max_size=6), min_size=2, max_size=5, unique=True),
    ),
    seed=st.integers(0, 10_000),
)
def test_any_class_names_map_the_same_way_in_folders_lists_and_at_prediction(tmp_path_factory, names, seed):
    """Whatever the names and whatever order the files or rows come in, a class name means the
    same label for the folder loader, the list loader (rows shuffled) and the image reader that
    predict / evaluate / relabel use with the run's recorded names."""
    root = tmp_path_factory.mktemp("names")
    rng = np.random.default_rng(seed)
    make_folder(root / "tree", classes=tuple(names), per_class=2, seed=seed)
    folder, _ = load_imagefolder(root=root / "tree", image_size=8, test_fraction=0)
    by_folder = {Path(p).name: folder.class_names[y] for p, y in zip(folder.paths, folder.labels)}
    assert all(Path(p).parent.name == folder.class_names[y] for p, y in zip(folder.paths, folder.labels))
    rows = [f"{p},{Path(p).parent.name}" for p in folder.paths]
    rng.shuffle(rows)
    (root / "list.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    listed, _ = load_csv(train_list=root / "list.csv", image_size=8, test_fraction=0)
    assert set(listed.class_names) == set(folder.class_names)
    assert {Path(p).name: listed.class_names[y] for p, y in zip(listed.paths, listed.labels)} == by_folder
    paths, labels, _ = read_image_source(root / "tree", list(folder.class_names))  # predict / evaluate
    assert {Path(p).name: folder.class_names[y] for p, y in zip(paths, labels)} == by_folder


def test_a_run_maps_class_names_back_at_predict_and_relabel(tmp_path):
    names = ("10", "2", "7")  # strings would sort 10 < 2 < 7; numbers 2 < 7 < 10
    data = make_folder(tmp_path / "photos", classes=names, per_class=6)
    assert cli("train", "--data", "imagefolder", "--data-root", data, "--method", "ce", "--epochs", "2",
               "--out", tmp_path / "r", *TINY)[0] == 0  # fmt: skip
    info = json.loads((tmp_path / "r" / "data.json").read_text())
    assert info["class_names"] == ["2", "7", "10"]
    code, out, err = cli("predict", tmp_path / "r", "--data", data, "--out", tmp_path / "p.csv")
    assert code == 0, err
    header = (tmp_path / "p.csv").read_text().splitlines()[0]
    assert header.endswith("probability_2,probability_7,probability_10")
    assert cli("relabel", tmp_path / "r")[0] == 0
    for line in (tmp_path / "r" / "relabelled.csv").read_text().splitlines()[1:]:
        _, path, given, *_ = line.split(",")
        assert Path(path).parent.name == given  # the folder's name comes back as its class


# -- messages instead of tracebacks --------------------------------------------------------------


def test_a_meta_set_of_one_image_is_refused_before_batchnorm_sees_it(tmp_path):
    data = make_folder(tmp_path / "photos")
    (tmp_path / "checked" / "cat").mkdir(parents=True)
    shutil.copy(data / "cat" / "cat0.png", tmp_path / "checked" / "cat" / "c.png")
    code, _, err = cli("train", "--data", "imagefolder", "--data-root", data, "--trusted", tmp_path / "checked",
                       "--allow-incomplete-meta", "--out", tmp_path / "r", *TINY)  # fmt: skip
    assert code == 2 and "single example" in err and "Expected more than 1 value" not in err
    assert not (tmp_path / "r").exists()


def test_a_lost_torchrun_peer_is_said_with_the_resume_command(tmp_path, monkeypatch):
    import l2b.distributed as distributed
    import l2b.training as training

    class Ctx:
        is_main, world_size, backend, device = True, 2, "gloo", None

    def broken(*args, **kwargs):
        raise RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer")

    monkeypatch.setattr(distributed, "setup_from_env", lambda device: Ctx())
    monkeypatch.setattr(distributed, "broadcast_object", lambda obj: obj)
    monkeypatch.setattr(distributed, "shutdown", lambda: None)
    monkeypatch.setattr(training, "run_experiment", broken)
    code, _, err = cli("train", "--out", tmp_path / "r", "--quiet")
    assert code == 1 and "Traceback" not in err
    assert "another process of this torchrun job stopped" in err and "--resume" in err


def test_report_on_runs_of_different_data_sets_says_so(tmp_path):
    data = make_folder(tmp_path / "photos")
    assert cli("train", "--data", "imagefolder", "--data-root", data, "--method", "ce", "--epochs", "1",
               "--out", tmp_path / "img", *TINY)[0] == 0  # fmt: skip
    assert cli("train", "--method", "ce", "--epochs", "1", "--out", tmp_path / "dig", "--quiet")[0] == 0
    code, _, err = cli("report", tmp_path / "img", tmp_path / "dig", "--out", tmp_path / "rep")
    assert code == 0, err
    assert "different data sets (digits, imagefolder)" in (tmp_path / "rep" / "report.md").read_text()
