"""A user's own noisy photos: the guide's commands on CIFAR-10 JPEGs sorted into the wrong folders.

    python benchmarks/own_data.py      # airplane cat dog, 1000 photos each, 30 % moved, seeds 0 1, 30 epochs

Regime: real use. A folder of photos in class sub-folders, some in the wrong folder, a few photos a
person has checked, and a folder of checked new photos; l2b is given nothing else (no simulated noise,
so it computes no figure against a truth). This script keeps its own record of the files it moved and
scores l2b's outputs against it.

Protocol:

1. Data (seeded by --data-seed): from an ImageFolder tree ``{train,test}/<class>/*.jpg`` (default: the
   CIFAR-10 JPEG archive in ../shared, only the needed members read), N training photos per class go
   to ``photos/<class>/`` under neutral names (IMG_NNNNN.jpg); an exact share of each class is moved
   into another class's folder chosen at random (every move recorded in ``moved.csv``: path after the
   move, true class, folder class); C photos per true class, drawn from the whole photos folder (moved
   ones included, as a person re-checking would find them), are copied into ``checked/<true class>/``;
   M photos per class of the test split go to ``new-photos/<class>/``.
2. For each seed, the guide's commands, run through the ``l2b`` command line in the work folder with
   ``--epochs E --seed S --quiet`` added: ``train`` for CE and L2B, ``relabel`` and ``evaluate --data
   new-photos`` on both runs (the guide shows them on the L2B run), ``report`` on the pair.
3. Scored here against the record (by file path): precision, recall and F1 of ``is_label_issue`` in
   label_issues.csv, average precision of the ranking by 1 - label_quality, how many relabel changes
   give the true class; accuracy on the new photos is l2b's own (their labels are checked). Also the
   share of moved files the selected model predicts as their folder class (the baseline fitting the
   noise) and the wall time of each ``train`` command.

Writes <results>/own_data.json and <results>/own_data.md (default benchmarks/results).

Variants (each option off by default; without them the run is the one above):

    --methods l2b --train-args "--selection-fraction 0.3"   # extra train options, the same for each method
    --work W --reuse-data --runs runs/sel03 --name sel03     # the data already in W (made by this script)
    --reuse-runs                                              # score run folders that exist, don't retrain
    --thresholds 0.5 0.3 0.1                                  # also `l2b relabel --threshold T --out ...`
    --variants own_data-a.json own_data-b.json --name variants   # one table of several result files

``--name N`` writes own_data-N.json/.md instead of own_data.json/.md; ``--runs R`` puts the runs in
``R/s<seed>/<method>`` of the work folder (default ``runs``). A reused run's train time is the one an
earlier result file in --results recorded for it, else l2b's own summary.json seconds (e.g. a run
stopped and finished with ``l2b train --resume``). ``--train-args`` takes one quoted string, so an
option must come with its value ("--lr 0.05") or as --train-args=--nesterov.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import common
import numpy as np
from sklearn.metrics import average_precision_score

ROOT = Path(__file__).resolve().parents[1]


def _cpus(env: dict) -> int:
    """The CPU count of a result's environment (``cpus`` in results written before common.environment)."""
    return env.get("cpu_count", env.get("cpus"))


RESULTS = ROOT / "benchmarks" / "results"
CIFAR = ROOT.parent / "shared" / "data" / "cifar10" / "cifar10-jpeg.tar.gz"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
METHODS = ("ce", "l2b")
# Summary figures that need the truth: on a user's folder without simulated noise they must be absent.
TRUTH_FIGURES = ("noise_rate", "realised_noise_rate", "test_accuracy", "test_accuracy_at_best_meta")


class Source:
    """Images of an ImageFolder tree ``{train,test}/<class>/*``: a folder or a .tar.gz of one."""

    def __init__(self, path: Path):
        self.path = path
        self.tar = tarfile.open(path, "r:gz") if path.is_file() else None
        if self.tar is not None:
            names = [m.name for m in self.tar.getmembers() if m.isfile()]
        else:
            names = [p.relative_to(path).as_posix() for p in path.glob("*/*/*") if p.is_file()]
        self.names = sorted(n for n in names if Path(n).suffix.lower() in IMAGE_SUFFIXES)

    def files(self, split: str, cls: str) -> list[str]:
        return [n for n in self.names if n.startswith(f"{split}/{cls}/")]

    def read(self, names: list[str]) -> dict[str, bytes]:
        if self.tar is None:
            return {n: (self.path / n).read_bytes() for n in names}
        wanted = set(names)
        members = sorted((m for m in self.tar.getmembers() if m.name in wanted), key=lambda m: m.offset)
        return {m.name: self.tar.extractfile(m).read() for m in members}  # in archive order: one pass


def make_data(src: Source, work: Path, args: argparse.Namespace) -> dict:
    """Write photos/, checked/ and new-photos/ under ``work``; return the record of every photo."""
    rng = random.Random(args.data_seed)
    classes = args.classes
    for c in classes:
        if len(src.files("train", c)) < args.per_class or len(src.files("test", c)) < args.new_per_class:
            raise SystemExit(f"{src.path}: too few images of class {c!r} for the sizes asked")
    train = {c: rng.sample(src.files("train", c), args.per_class) for c in classes}
    test = {c: rng.sample(src.files("test", c), args.new_per_class) for c in classes}
    blobs = src.read([n for c in classes for n in train[c] + test[c]])

    photos = []
    ids = rng.sample(range(100000), len(classes) * args.per_class)
    n_move = round(args.move_fraction * args.per_class)
    for c in classes:
        moved = set(rng.sample(range(args.per_class), n_move))
        for i, name in enumerate(train[c]):
            folder = rng.choice([o for o in classes if o != c]) if i in moved else c
            path = work / "photos" / folder / f"IMG_{ids.pop():05d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(blobs[name])
            photos.append(
                {
                    "path": str(path),
                    "true_class": c,
                    "folder_class": folder,
                    "moved": folder != c,
                    "checked": False,
                    "source": name,
                    "sha256": hashlib.sha256(blobs[name]).hexdigest(),
                }
            )
    for c in classes:  # a person checks a few photos of each class, wherever they lie
        for p in rng.sample([p for p in photos if p["true_class"] == c], args.checked_per_class):
            dest = work / "checked" / c / Path(p["path"]).name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p["path"], dest)
            p["checked"] = True
    ids = rng.sample(range(100000), len(classes) * args.new_per_class)
    for c in classes:
        for name in test[c]:
            dest = work / "new-photos" / c / f"IMG_{ids.pop():05d}.jpg"
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(blobs[name])

    fields = list(photos[0])
    for fname, rows in (("photos.csv", photos), ("moved.csv", [p for p in photos if p["moved"]])):
        with open(work / fname, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
    return {p["path"]: p for p in photos}


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_data(work: Path, args: argparse.Namespace) -> dict:
    """The record of a work folder made earlier by make_data, checked against the data options given."""
    if not (work / "photos.csv").exists():
        raise SystemExit(f"--reuse-data: {work / 'photos.csv'} not found (a work folder of this script)")
    photos = read_csv(work / "photos.csv")
    for p in photos:
        p["moved"], p["checked"] = p["moved"] == "True", p["checked"] == "True"
    classes = args.classes
    n_move = round(args.move_fraction * args.per_class)
    for c in classes:
        of_c = [p for p in photos if p["true_class"] == c]
        got = (len(of_c), sum(p["moved"] for p in of_c), sum(p["checked"] for p in of_c))
        if got != (args.per_class, n_move, args.checked_per_class):
            raise SystemExit(
                f"--reuse-data: {work} has (photos, moved, checked) = {got} of class {c!r}, the options ask for "
                f"{(args.per_class, n_move, args.checked_per_class)}"
            )
    if {p["true_class"] for p in photos} != set(classes):
        raise SystemExit(f"--reuse-data: {work} holds other classes than {classes}")
    missing = [p["path"] for p in photos if not Path(p["path"]).exists()]
    if missing:
        raise SystemExit(f"--reuse-data: {len(missing)} photos of photos.csv are missing, e.g. {missing[:3]}")
    return {p["path"]: p for p in photos}


def l2b_cli(l2b: str, cmd: str, work: Path, problems: list) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``l2b ...`` (``cmd`` as a user types it) in ``work``; return the process and its wall time."""
    t0 = time.perf_counter()
    r = subprocess.run([l2b, *cmd.split()[1:]], cwd=work, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        problems.append({"command": cmd, "returncode": r.returncode, "stderr_tail": r.stderr[-2000:]})
        print(f"FAILED ({r.returncode}): {cmd}\n{r.stderr[-2000:]}", file=sys.stderr, flush=True)
    return r, seconds


def score_run(run: Path, record: dict, cmd: str, problems: list) -> dict:
    """Score one run directory's label_issues.csv and relabelled.csv against the record of moved files."""

    def problem(what: str) -> None:
        problems.append({"command": cmd, "problem": what})
        print(f"PROBLEM: {cmd}: {what}", file=sys.stderr, flush=True)

    summary = json.loads((run / "summary.json").read_text())
    for k in TRUTH_FIGURES:
        if summary.get(k) is not None:
            problem(f"summary.json has {k}={summary[k]} on data of unknown truth")
    rows = read_csv(run / "label_issues.csv")
    bad = [r["path"] for r in rows if not r["path"] or not os.path.isabs(r["path"])]
    if bad:
        problem(f"label_issues.csv has {len(bad)} rows without an absolute path, e.g. {bad[:3]}")
    paths = [str(Path(r["path"]).resolve()) for r in rows]
    unknown = [p for p in paths if p not in record]
    if unknown:
        problem(f"label_issues.csv has {len(unknown)} paths that are not photos, e.g. {unknown[:3]}")
    if len(set(paths)) != len(paths):
        problem("label_issues.csv lists a path twice")
    rec = [record[p] for p in paths]
    if any(p["checked"] for p in rec):
        problem("checked photos were left in training")
    if any(r["given_label"] != p["folder_class"] for r, p in zip(rows, rec)):
        problem("given_label differs from the photo's folder")
    moved = np.array([p["moved"] for p in rec])
    flag = np.array([r["is_label_issue"] == "True" for r in rows])
    quality = np.array([float(r["label_quality"]) for r in rows])
    fitted = np.array([r["predicted_label"] == p["folder_class"] for r, p in zip(rows, rec)])
    tp = int((flag & moved).sum())
    prec = tp / flag.sum() if flag.sum() else float("nan")
    rec_ = tp / moved.sum()
    out = {
        "training_rows": len(rows),
        "moved_in_training": int(moved.sum()),
        "flagged": int(flag.sum()),
        "true_positives": tp,
        "precision": prec,
        "recall": rec_,
        "f1": 2 * prec * rec_ / (prec + rec_) if prec + rec_ > 0 else float("nan"),
        "average_precision": float(average_precision_score(moved, 1.0 - quality)),
        "moved_predicted_as_folder_class": float(fitted[moved].mean()),
        "best_meta_epoch": summary.get("best_meta_epoch"),
        "train_accuracy_vs_folder_labels": summary.get("train_accuracy"),
        "l2b_seconds": summary.get("seconds"),
    }
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train_acc = [e["train_accuracy"] for e in epochs if e.get("train_accuracy") is not None]
    out.update(
        {
            "num_meta": summary.get("num_meta"),
            "num_selection": summary.get("num_selection"),
            "best_meta_accuracy": summary.get("best_meta_accuracy"),
            "best_selection_accuracy": summary.get("best_selection_accuracy"),
            "max_meta_accuracy": max((e["meta_accuracy"] for e in epochs if "meta_accuracy" in e), default=None),
            "max_train_accuracy_vs_folder_labels": max(train_acc, default=None),
            "last_train_loss": epochs[-1].get("train_loss") if epochs else None,
        }
    )
    if (run / "relabelled.csv").exists():
        out["relabel"] = score_relabel(run / "relabelled.csv", record)
    return out


def score_relabel(path: Path, record: dict) -> dict:
    """How many of a relabelled.csv's changes give the true class, and the wrong labels before and after."""
    rl = [r for r in read_csv(path) if r.get("checked") != "True"]  # the training examples; checked ones follow
    true = {str(Path(r["path"]).resolve()): record[str(Path(r["path"]).resolve())]["true_class"] for r in rl}
    changed = [r for r in rl if r["changed"] == "True"]
    right = sum(r["label"] == true[str(Path(r["path"]).resolve())] for r in changed)
    return {
        "changed": len(changed),
        "right": int(right),
        "right_share": right / len(changed) if changed else float("nan"),
        "wrong_labels_before": int(sum(r["given_label"] != true[str(Path(r["path"]).resolve())] for r in rl)),
        "wrong_labels_after": int(sum(r["label"] != true[str(Path(r["path"]).resolve())] for r in rl)),
    }


def earlier_wall_seconds(work: Path, out: str, seed: int, method: str, results: Path) -> float | None:
    """The train wall time an earlier run of this script recorded for the run folder ``work/out``."""
    for f in sorted(results.glob("own_data*.json")):
        try:
            res = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if res.get("data", {}).get("work") != str(work):
            continue
        for r in res.get("runs", []):
            if r.get("out", f"runs/s{r['seed']}/{r['method']}") == out and not r.get("reused"):
                return r.get("train_wall_seconds")
    return None


def mean_std(values: list) -> dict:
    v = np.array([np.nan if x is None else x for x in values], dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", type=Path, default=CIFAR, help="ImageFolder tree {train,test}/<class>/, or a .tar.gz")
    p.add_argument("--classes", nargs="+", default=["airplane", "cat", "dog"])
    p.add_argument("--per-class", type=int, default=1000, help="training photos per class")
    p.add_argument("--move-fraction", type=float, default=0.3, help="share of each class moved to a wrong folder")
    p.add_argument("--checked-per-class", type=int, default=10)
    p.add_argument("--new-per-class", type=int, default=300, help="checked new photos per class (test split)")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--work", type=Path, default=None, help="work folder, new or empty (default: a new one in /tmp)")
    p.add_argument("--results", type=Path, default=RESULTS, help="folder for own_data.json and own_data.md")
    p.add_argument("--name", default=None, help="write own_data-NAME.json/.md instead of own_data.json/.md")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--train-args", default="", help='extra options for every `l2b train`, e.g. "--lr 0.05"')
    p.add_argument("--runs", default="runs", help="folder of the run folders, in the work folder")
    p.add_argument("--reuse-data", action="store_true", help="use the data already in --work (made by this script)")
    p.add_argument("--reuse-runs", action="store_true", help="score run folders that hold a summary.json as they are")
    p.add_argument("--thresholds", nargs="+", type=float, default=[], help="also relabel at these thresholds")
    p.add_argument("--variants", nargs="+", type=Path, default=None, help="summarise these result files and stop")
    args = p.parse_args(argv)
    if args.variants:
        return summarise_variants(args.variants, args.results, args.name or "variants")
    if len(args.classes) < 2 or len(set(args.classes)) != len(args.classes):
        p.error("--classes: at least two different classes")
    l2b = Path(sys.executable).with_name("l2b")
    l2b = str(l2b) if l2b.exists() else shutil.which("l2b")
    if l2b is None:
        p.error("the l2b command line was not found next to this Python or on PATH")
    if args.reuse_data and args.work is None:
        p.error("--reuse-data needs --work")
    if args.work is None:
        work = Path(tempfile.mkdtemp(prefix="l2b-own-data-"))
    else:
        work = args.work
        if work.exists() and any(work.iterdir()) and not args.reuse_data:
            p.error(f"--work {work} is not empty")
        work.mkdir(parents=True, exist_ok=True)
    work = work.resolve()
    print(f"work folder: {work}", flush=True)

    record = read_data(work, args) if args.reuse_data else make_data(Source(args.source), work, args)
    problems: list = []
    runs, commands = [], []
    extra = f"--epochs {args.epochs} --quiet"
    methods = [m for m in METHODS if m in args.methods]
    for seed in args.seeds:
        d = f"{args.runs}/s{seed}"
        for method in methods:
            out = f"{d}/{method}"
            train = "l2b train --data imagefolder --data-root photos --trusted checked --model small_cnn"
            train += ("" if method == "l2b" else " --method ce") + f" --out {out} {extra} --seed {seed}"
            train += f" {args.train_args.strip()}" if args.train_args.strip() else ""
            relabel, evaluate = f"l2b relabel {out}", f"l2b evaluate {out} --data new-photos"
            commands += [train, relabel, evaluate]
            reused = args.reuse_runs and (work / out / "summary.json").exists()
            seconds_from = "this script"
            if reused:
                seconds = earlier_wall_seconds(work, out, seed, method, args.results)
                seconds_from = "an earlier result file of this script"
                if seconds is None:  # not recorded here (a run stopped and resumed, or trained by hand)
                    summary = json.loads((work / out / "summary.json").read_text())
                    seconds = summary.get("seconds")
                    seconds_from = f"l2b's summary.json (resumed {summary.get('resumed', 0)} times)"
                print(f"reusing {work / out} (not retrained)", flush=True)
            else:
                r, seconds = l2b_cli(l2b, train, work, problems)
                if r.returncode != 0:
                    raise SystemExit(f"l2b train failed: {train}")
            row = {"seed": seed, "method": method, "out": out, "reused": reused}
            row["train_wall_seconds"] = None if seconds is None else round(seconds, 2)
            row["train_wall_seconds_from"] = seconds_from
            issues = (work / out / "label_issues.csv").read_bytes()
            l2b_cli(l2b, relabel, work, problems)
            if (work / out / "label_issues.csv").read_bytes() != issues:
                problems.append({"command": relabel, "problem": "rewrote label_issues.csv with other contents"})
            r, _ = l2b_cli(l2b, evaluate, work, problems)
            try:
                ev = json.loads(r.stdout)
                row["new_photos_accuracy"], row["new_photos"] = ev["accuracy"], ev["examples"]
            except (json.JSONDecodeError, KeyError) as err:
                problems.append({"command": evaluate, "problem": f"stdout is not the JSON expected: {err}"})
                row["new_photos_accuracy"] = None
            row.update(score_run(work / out, record, train, problems))
            row["relabel_thresholds"] = []
            for t in args.thresholds:
                csv_out = f"relabel/{out.replace('/', '-')}-t{t:g}.csv"
                (work / "relabel").mkdir(exist_ok=True)
                cmd = f"l2b relabel {out} --threshold {t:g} --out {csv_out}"
                commands.append(cmd)
                r, _ = l2b_cli(l2b, cmd, work, problems)
                if r.returncode == 0:
                    row["relabel_thresholds"].append({"threshold": t, **score_relabel(work / csv_out, record)})
            runs.append(row)
            print(
                f"seed {seed} {method}: P {row['precision']:.3f} R {row['recall']:.3f} "
                f"AP {row['average_precision']:.3f} new-photos acc {row['new_photos_accuracy']} "
                + ("train (reused)" if seconds is None else f"train {seconds / 60:.1f} min"),
                flush=True,
            )
        if len(methods) == 2:
            report = f"l2b report {d}/ce {d}/l2b --out " + (f"report-s{seed}" if args.runs == "runs" else f"{d}/report")
            commands.append(report)
            l2b_cli(l2b, report, work, problems)

    metrics = ("precision", "recall", "f1", "average_precision", "new_photos_accuracy", "train_wall_seconds")
    metrics += ("moved_predicted_as_folder_class",)
    table = {}
    for m in methods:
        rs = [r for r in runs if r["method"] == m]
        table[m] = {k: mean_std([r[k] for r in rs]) for k in metrics}
        for k in ("right_share", "right", "changed", "wrong_labels_after"):
            table[m][f"relabel_{k}"] = mean_std([r["relabel"][k] if "relabel" in r else None for r in rs])

    cmd = "python benchmarks/own_data.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    n_moved = sum(p["moved"] for p in record.values())
    result = {
        "command": cmd.strip(),
        "date": common.now(),
        "environment": {
            **common.environment(),
            "load_average_1_5_15min_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "data": {
            "source": str(args.source),
            "classes": args.classes,
            "per_class": args.per_class,
            "move_fraction": args.move_fraction,
            "moved": n_moved,
            "photos": len(record),
            "checked_per_class": args.checked_per_class,
            "checked_that_were_moved": sum(p["checked"] and p["moved"] for p in record.values()),
            "new_per_class": args.new_per_class,
            "data_seed": args.data_seed,
            "work": str(work),
            "moved_record": str(work / "moved.csv"),
            "photos_record": str(work / "photos.csv"),
        },
        "epochs": args.epochs,
        "seeds": args.seeds,
        "train_args": args.train_args.strip(),
        "thresholds": args.thresholds,
        "l2b_commands": commands,
        "table": table,
        "runs": runs,
        "l2b_problems": problems,
    }
    stem = "own_data" if args.name is None else f"own_data-{args.name}"
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.results / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(res: dict) -> str:
    t, d = res["table"], res["data"]
    pm = lambda e, k, f=".3f": f"{e[k]['mean']:{f}} ± {e[k]['std']:{f}}"  # noqa: E731
    lines = [
        f"# Own data: {len(d['classes'])} classes of photos ({', '.join(d['classes'])}) from "
        f"{Path(d['source']).name}, {d['move_fraction']:.0%} in a wrong folder",
        "",
        f"Command: `{res['command']}` ({res['date']}; l2b {res['environment']['l2b']}, torch "
        f"{res['environment']['torch']}, {res['environment']['platform']}, {_cpus(res['environment'])} CPUs shared "
        f"with other jobs, load average {res['environment']['load_average_1_5_15min_at_end'][1]} at the end). "
        f"{res['epochs']} epochs, seeds {res['seeds']} (mean ± std over seeds).",
        "",
        "| method | precision | recall | AP | relabel changes right | accuracy on new photos | minutes |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, e in t.items():
        lines.append(
            f"| {m} | {pm(e, 'precision')} | {pm(e, 'recall')} | {pm(e, 'average_precision')} | "
            f"{pm(e, 'relabel_right_share')} ({e['relabel_right']['mean']:.0f} of {e['relabel_changed']['mean']:.0f}) "
            f"| {pm(e, 'new_photos_accuracy')} | {e['train_wall_seconds']['mean'] / 60:.1f} ± "
            f"{e['train_wall_seconds']['std'] / 60:.1f} |"
        )
    higher = ("precision", "recall", "average_precision", "relabel_right_share", "new_photos_accuracy")
    if "ce" in t and "l2b" in t:
        losses = [k for k in higher if t["l2b"][k]["mean"] < t["ce"][k]["mean"]]
        seed_losses = sorted(
            {
                f"{k} (seed {a['seed']})"
                for a in res["runs"]
                if a["method"] == "l2b"
                for b in res["runs"]
                if b["method"] == "ce" and b["seed"] == a["seed"]
                for k in ("precision", "recall", "average_precision", "new_photos_accuracy")
                if a[k] is not None and b[k] is not None and a[k] < b[k]
            }
        )
        ratio = t["l2b"]["train_wall_seconds"]["mean"] / t["ce"]["train_wall_seconds"]["mean"]
        lines += [
            "",
            "L2B loses to CE on the mean of: "
            + (", ".join(losses) if losses else "nothing")
            + "; in single seeds on: "
            + (", ".join(seed_losses) if seed_losses else "nothing")
            + f". L2B's train command takes {ratio:.1f}x CE's wall time.",
        ]
    lines += [
        "",
        "Regime: the model selected on the checked photos predicts this share of the moved training photos as "
        "their (wrong) folder class: "
        + ", ".join(f"{m.upper()} {pm(e, 'moved_predicted_as_folder_class', '.2f')}" for m, e in t.items())
        + ". Wrong labels left after `l2b relabel` (mean over seeds): "
        + ", ".join(f"{m.upper()} {e['relabel_wrong_labels_after']['mean']:.0f}" for m, e in t.items())
        + f", of {res['runs'][0]['relabel']['wrong_labels_before']} in the folders (training photos).",
        "",
        f"Protocol: {d['per_class']} training photos per class, {d['moved']} of {d['photos']} moved into another "
        f"class's folder (exact share per class, destination at random; data seed {d['data_seed']}); "
        f"{d['checked_per_class']} photos per true class copied into checked/ ({d['checked_that_were_moved']} of them "
        "had been moved), which l2b takes out of training and uses as the meta set; "
        f"{d['new_per_class']} photos per class of the source's test split in new-photos/. The guide's commands "
        "were run through the `l2b` command line as a user would (`--epochs`, `--seed`, `--quiet` added; "
        "relabel and evaluate also on the CE run). Precision/recall/F1 of `is_label_issue` and the average "
        "precision of the ranking by 1 - label_quality are computed here against the record of moved files, "
        "as is the share of `l2b relabel`'s changes that give the true class. Minutes: wall time of `l2b train` "
        "(with its start-up and per-epoch "
        "meta evaluation) on a shared machine: compare methods with each other only.",
        "",
        "l2b commands (in the work folder): " + "; ".join(f"`{c}`" for c in res["l2b_commands"][:3]) + " ...",
    ]
    if res.get("thresholds"):
        lines += ["", "`l2b relabel --threshold T`: changes (of them right) and wrong labels after (before):", ""]
        lines += threshold_table(res["runs"])
    if res["l2b_problems"]:
        lines += ["", "**l2b problems met** (see own_data.json):", ""]
        lines += [
            f"- `{q['command']}`: "
            + (q.get("problem") or f"exit {q['returncode']}: " + q["stderr_tail"].strip().splitlines()[-1])
            for q in res["l2b_problems"]
        ]
    return "\n".join(lines) + "\n"


def threshold_table(runs: list[dict], label: str = "") -> list[str]:
    """Markdown rows: for each run and threshold, changes, right ones, wrong labels after relabelling."""
    lines = [
        "| run | threshold | changed | right | right share | wrong labels before | wrong labels after |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        for x in r.get("relabel_thresholds", []):
            lines.append(
                f"| {label or ''}{r['method']} s{r['seed']} | {x['threshold']:g} | {x['changed']} | {x['right']} | "
                f"{x['right_share']:.2f} | {x['wrong_labels_before']} | {x['wrong_labels_after']} |"
            )
    return lines


VARIANT_COLUMNS = (
    "| variant | method | seed | checked | epochs | precision | recall | AP | relabel changes right | "
    "wrong labels before → after relabel | accuracy on new photos | moved predicted as folder | "
    "last train acc (folder labels) | best meta (selection) acc, epoch | minutes | fastest epoch, images/s |"
)


def fastest_epoch(run: Path) -> float | None:
    """Training images per second of a run's fastest epoch of its method (after warm-up), from metrics.jsonl:
    on a shared machine the least disturbed measure of an epoch's cost."""
    try:
        epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    except OSError:
        return None
    speeds = [e["images_per_second"] for e in epochs if e.get("phase") != "warmup" and "images_per_second" in e]
    return max(speeds, default=None)


def summarise_variants(files: list[Path], results: Path, name: str) -> int:
    """One table of the runs of several result files of this script (own_data*.json)."""
    rows, thresholds, sources = [], [], []
    for f in files:
        res = json.loads(f.read_text())
        variant = f.stem.removeprefix("own_data-").removeprefix("own_data")
        variant = variant or "default"
        sources.append(
            {
                "file": str(f),
                "variant": variant,
                "command": res["command"],
                "l2b_commands": res["l2b_commands"],
                "environment": res["environment"],
                "date": res["date"],
                "data": res["data"],
                "epochs": res["epochs"],
                "train_args": res.get("train_args", ""),
                "l2b_problems": res["l2b_problems"],
            }
        )
        for r in res["runs"]:
            row = {"variant": variant, "checked_per_class": res["data"]["checked_per_class"], "epochs": res["epochs"]}
            row["train_args"] = res.get("train_args", "")
            row.update({k: v for k, v in r.items() if k != "relabel_thresholds"})
            row["fastest_images_per_second"] = fastest_epoch(Path(res["data"]["work"]) / r.get("out", ""))
            rows.append(row)
            thresholds += [
                {"variant": variant, "method": r["method"], "seed": r["seed"], **x}
                for x in r.get("relabel_thresholds", [])
            ]
    out = {"sources": sources, "runs": rows, "relabel_thresholds": thresholds}
    results.mkdir(parents=True, exist_ok=True)
    stem = f"own_data-{name}"
    (results / f"{stem}.json").write_text(json.dumps(out, indent=2) + "\n")

    f3 = lambda x: "–" if x is None or x != x else f"{x:.3f}"  # noqa: E731
    lines = [VARIANT_COLUMNS, "|" + "---|" * (VARIANT_COLUMNS.count("|") - 1)]
    for r in rows:
        rl = r.get("relabel", {})
        sel = r.get("best_selection_accuracy")
        meta = f"{r['best_meta_accuracy']:.2f}" if r.get("best_meta_accuracy") is not None else "–"
        meta += f" ({sel:.2f})" if sel is not None else ""
        meta += f", {r['best_meta_epoch']}"
        minutes = "–" if r.get("train_wall_seconds") is None else f"{r['train_wall_seconds'] / 60:.1f}"
        lines.append(
            f"| {r['variant']} | {r['method']} | {r['seed']} | {r['checked_per_class']} | {r['epochs']} | "
            f"{f3(r['precision'])} | {f3(r['recall'])} | {f3(r['average_precision'])} | "
            f"{f3(rl.get('right_share'))} ({rl.get('right')} of {rl.get('changed')}) | "
            f"{rl.get('wrong_labels_before')} → {rl.get('wrong_labels_after')} | {f3(r['new_photos_accuracy'])} | "
            f"{r['moved_predicted_as_folder_class']:.2f} | {f3(r.get('train_accuracy_vs_folder_labels'))} | "
            f"{meta} | {minutes} | {r['fastest_images_per_second'] or '–'} |"
        )
    lines += ["", "## `l2b relabel --threshold T` (no retraining)", ""]
    runs = list(dict.fromkeys((x["variant"], x["method"], x["seed"]) for x in thresholds))
    if runs:
        cell = {(x["variant"], x["method"], x["seed"], x["threshold"]): x for x in thresholds}
        before = {k[:3]: v["wrong_labels_before"] for k, v in cell.items()}
        lines += [
            "Wrong labels among the training photos after relabelling (before: the folders' own):",
            "",
            "| threshold | " + " | ".join(f"{v} {m} s{sd}" for v, m, sd in runs) + " |",
            "|---|" + "---|" * len(runs),
            "| before | " + " | ".join(str(before[r]) for r in runs) + " |",
        ]
        for t in sorted({x["threshold"] for x in thresholds}, reverse=True):
            row = [cell.get((*r, t)) for r in runs]
            lines.append(
                f"| {t:g} | " + " | ".join("–" if x is None else str(x["wrong_labels_after"]) for x in row) + " |"
            )
        lines += ["", "Every run and threshold:", ""]
    lines += ["| variant | method | seed | threshold | changed | right | right share | wrong before | wrong after |"]
    lines += ["|---|---|---|---|---|---|---|---|---|"]
    for x in thresholds:
        lines.append(
            f"| {x['variant']} | {x['method']} | {x['seed']} | {x['threshold']:g} | {x['changed']} | {x['right']} | "
            f"{f3(x['right_share'])} | {x['wrong_labels_before']} | {x['wrong_labels_after']} |"
        )
    lines += ["", "## Commands", ""]
    for src in sources:
        env = src["environment"]
        lines += [
            f"- **{src['variant']}** (`{src['file']}`, {src['date']}; l2b {env['l2b']}, torch {env['torch']}, "
            f"{env['platform']}, {_cpus(env)} CPUs shared, load average {env['load_average_1_5_15min_at_end'][1]} "
            f"at the end; work folder {src['data']['work']}): `{src['command']}`",
            "  - l2b: " + "; ".join(f"`{c}`" for c in src["l2b_commands"] if not c.startswith("l2b relabel")),
        ]
        problems = src["l2b_problems"]
        if problems:
            lines.append(
                "  - l2b problems: "
                + "; ".join(
                    f"`{q['command']}`: "
                    + (q.get("problem") or f"exit {q['returncode']}: " + q["stderr_tail"].strip().splitlines()[-1])
                    for q in problems
                )
            )
    (results / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
