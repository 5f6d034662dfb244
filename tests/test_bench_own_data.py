"""benchmarks/own_data.py runs the guide's commands end to end on a tiny folder of photos and records
what it moved truthfully."""

import csv
import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "own_data.py"
CIFAR = ROOT.parent / "shared" / "data" / "cifar10" / "cifar10-jpeg.tar.gz"
COLOURS = {"red": (200, 30, 30), "blue": (30, 30, 200)}  # the fake source's classes


def fake_source(root: Path) -> Path:
    """An ImageFolder tree {train,test}/<class>/*.jpg of noisy solid-colour 32x32 JPEGs."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("test", 12)):
        for cls, rgb in COLOURS.items():
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                px = np.clip(np.array(rgb) + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(px).save(root / split / cls / f"{i:04d}.jpg")
    return root


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_tiny_run_scores_both_methods_and_records_the_moves(tmp_path):
    if CIFAR.exists():
        source, classes = CIFAR, ["cat", "airplane"]
    else:
        source, classes = fake_source(tmp_path / "source"), list(COLOURS)
    work, res = tmp_path / "work", tmp_path / "results"
    r = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *["--source", str(source), "--classes", *classes, "--per-class", "30", "--checked-per-class", "2"],
            *["--new-per-class", "10", "--epochs", "2", "--seeds", "0", "--work", str(work), "--results", str(res)],
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]

    data = json.loads((res / "own_data.json").read_text())
    assert (res / "own_data.md").read_text().startswith("# Own data")
    assert data["environment"]["torch"] and data["environment"]["cpu_count"] and data["date"]
    assert data["data"]["moved"] == 2 * 9 and data["data"]["photos"] == 60
    train_cmds = [c for c in data["l2b_commands"] if c.startswith("l2b train")]
    assert train_cmds == [
        "l2b train --data imagefolder --data-root photos --trusted checked --model small_cnn --method ce "
        "--out runs/s0/ce --epochs 2 --quiet --seed 0",
        "l2b train --data imagefolder --data-root photos --trusted checked --model small_cnn "
        "--out runs/s0/l2b --epochs 2 --quiet --seed 0",
    ]
    # train, relabel and evaluate worked and their outputs passed the script's checks (paths, no truth figures)
    assert not [p for p in data["l2b_problems"] if not p["command"].startswith("l2b report")]
    assert {run["method"] for run in data["runs"]} == {"ce", "l2b"}
    checked_moved = data["data"]["checked_that_were_moved"]
    for run in data["runs"]:
        assert run["training_rows"] == 60 - 4 and run["moved_in_training"] == 18 - checked_moved
        for k in ("precision", "recall", "f1"):
            assert math.isnan(run[k]) or 0 <= run[k] <= 1
        assert 0 < run["average_precision"] <= 1 and run["train_wall_seconds"] > 0
        assert 0 <= run["new_photos_accuracy"] <= 1 and run["new_photos"] == 20
        rl = run["relabel"]
        assert 0 <= rl["right"] <= rl["changed"] <= 56 and rl["wrong_labels_before"] == run["moved_in_training"]
    for method in ("ce", "l2b"):
        assert set(data["table"][method]) >= {"precision", "recall", "average_precision", "new_photos_accuracy"}
        assert data["table"][method]["relabel_right_share"]["std"] == 0.0  # one seed

    # the record of moves is what is on disk
    photos = rows(work / "photos.csv")
    moved = rows(work / "moved.csv")
    assert [p for p in photos if p["moved"] == "True"] == moved and len(moved) == 18
    on_disk = sorted(str(p) for p in (work / "photos").rglob("*.jpg"))
    assert sorted(p["path"] for p in photos) == on_disk
    for p in photos:
        path = Path(p["path"])
        assert path.parent.name == p["folder_class"] and p["source"].split("/")[1] == p["true_class"]
        assert (p["folder_class"] != p["true_class"]) == (p["moved"] == "True")
        assert hashlib.sha256(path.read_bytes()).hexdigest() == p["sha256"]
        if source != CIFAR:  # the pixels show the true class
            from PIL import Image

            mean = np.asarray(Image.open(path)).reshape(-1, 3).mean(0)
            assert min(COLOURS, key=lambda c: np.abs(mean - COLOURS[c]).sum()) == p["true_class"]
    for c in classes:
        assert sum(p["true_class"] == c for p in moved) == 9
        assert len(list((work / "new-photos" / c).glob("*.jpg"))) == 10
        checked = [p for p in photos if p["checked"] == "True" and p["true_class"] == c]
        assert len(checked) == 2
        for p in checked:
            assert (work / "checked" / c / Path(p["path"]).name).read_bytes() == Path(p["path"]).read_bytes()

    # variants: the same data again, one method with extra train options; then the first runs rescored, not retrained
    def script(*extra):
        common = ["--source", str(source), "--classes", *classes, "--per-class", "30", "--checked-per-class", "2"]
        common += ["--new-per-class", "10", "--seeds", "0", "--work", str(work), "--results", str(res)]
        r = subprocess.run([sys.executable, str(SCRIPT), *common, *extra], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        return r

    before = {p: Path(p).read_bytes() for p in map(str, (work / "photos").rglob("*.jpg"))}
    script(*"--reuse-data --epochs 1 --methods l2b --runs runs/v --name v".split(), "--train-args", "--lr 0.05")
    script("--reuse-data", "--epochs", "2", "--reuse-runs", "--name", "again", "--thresholds", "0.5", "0.1")
    assert {p: Path(p).read_bytes() for p in map(str, (work / "photos").rglob("*.jpg"))} == before
    variant = json.loads((res / "own_data-v.json").read_text())
    assert [c for c in variant["l2b_commands"] if c.startswith("l2b train")] == [
        "l2b train --data imagefolder --data-root photos --trusted checked --model small_cnn "
        "--out runs/v/s0/l2b --epochs 1 --quiet --seed 0 --lr 0.05"
    ]
    assert (work / "runs" / "v" / "s0" / "l2b" / "summary.json").exists() and variant["train_args"] == "--lr 0.05"
    again = json.loads((res / "own_data-again.json").read_text())
    assert [r["reused"] for r in again["runs"]] == [True, True]
    same = lambda a, b: json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # noqa: E731 (NaN == NaN)
    for old, new in zip(data["runs"], again["runs"]):  # same run folders, same scores, time found in own_data.json
        assert old["average_precision"] == new["average_precision"] and same(old["relabel"], new["relabel"])
    assert [r["train_wall_seconds"] for r in again["runs"]] == [r["train_wall_seconds"] for r in data["runs"]]
    for run in again["runs"]:
        at = {x["threshold"]: x for x in run["relabel_thresholds"]}
        assert set(at) == {0.5, 0.1} and same({k: v for k, v in at[0.5].items() if k != "threshold"}, run["relabel"])
        assert at[0.1]["changed"] <= at[0.5]["changed"]
        assert (work / "relabel" / f"runs-s0-{run['method']}-t0.1.csv").exists()

    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--variants", str(res / "own_data-again.json"), "--results", str(res)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((res / "own_data-variants.json").read_text())
    assert [(x["variant"], x["method"]) for x in summary["runs"]] == [("again", "ce"), ("again", "l2b")]
    assert (
        len(summary["relabel_thresholds"]) == 4 and "| again | l2b | 0 |" in (res / "own_data-variants.md").read_text()
    )
