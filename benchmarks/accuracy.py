"""Accuracy grid: data set x noise x method x seed, from one grid file; resumable.

    python benchmarks/accuracy.py benchmarks/grids/digits.yaml --workers 2   # run (or continue) a grid
    python benchmarks/accuracy.py benchmarks/grids/digits.yaml --render      # only redraw table and plot

A grid file (YAML) holds ``name``, ``base`` (TrainConfig keys shared by every run), ``settings``
(a list of TrainConfig overrides, one per noise setting, each with an optional ``label``),
``methods`` and ``seeds``, and optionally ``method_seeds`` (method -> its own, usually shorter,
seed list, for costly methods), ``method_config`` (method -> config keys for that method only, e.g.
DivideMix's ``feature_noise`` on digits; a setting may carry its own ``method_config`` and
``method_seeds`` too, e.g. a second seed for the methods whose margin is small in that setting; a
``method`` key there makes the name a label for that method with those options, e.g.
``l2b-head: {method: l2b, engine: head}``; a ``pretrain`` key there, a mapping of ``l2b pretrain``
options, starts the method from SimCLR weights pre-trained on the run's training images, e.g.
``c2d: {method: dividemix, pretrain: {epochs: 100}}``) and ``cleanlab_folds``. Methods are registered l2b
methods, ``l2b-mixup`` (l2b with mixup) and ``cleanlab``: out-of-fold probabilities from
``cleanlab_folds``-fold cross-validation
(stratified on the noisy labels) of the same network trained with cross-entropy for the same
epochs, ``cleanlab.filter.find_label_issues`` (its defaults) on them, then the same network
retrained with cross-entropy on the examples it keeps: ``cleanlab_folds`` + 1 trainings.

Every run uses the data, noise and meta split ``l2b train`` would make for its config and seed
(methods without a meta-gradient use the clean meta set only to select the checkpoint). Each
finished run appends one row to ``benchmarks/results/accuracy-<name>.jsonl``; a rerun skips the
rows already there, so an interrupted grid continues where it stopped, and a run that was
stopped part-way continues from its last epoch's checkpoint (each run's directory is
``<tmp>/l2b-grid-runs/<hash of its config>``, removed once its row is written; the row's seconds
add the earlier attempts' epoch seconds). Per row: final test
accuracy, test accuracy of the checkpoint selected on the clean meta set, the realised noise
rate, label-issue precision / recall (l2b's rule on the run's model; cleanlab's own flags), wall
and training seconds, and the number of trainings. Test accuracy is read once per run, at the
end; nothing is selected on it.

After the runs: ``accuracy-<name>.md`` (mean +- std over seeds per setting and method) and
``accuracy-<name>.png``. Needs cleanlab only for the ``cleanlab`` method
(``pip install cleanlab pandas``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import common
import numpy as np
import yaml

from l2b.configs import load_yaml

ALIASES = {"l2b-mixup": {"method": "l2b", "mixup": True}}
# Per-epoch curves kept in each row (None where a method has no such figure): the regime (does the
# run fit the noise?) and, for the meta-gradient methods, where their loss weight went.
CURVES = (
    "test_accuracy",
    "memorised",
    "train_accuracy",
    "true_class_share",
    "weight_on_noisy",
    "relabelled_share",
    "wrong_label_share",
)


def load_grid(path: Path, sets: list[str] = ()) -> dict[str, Any]:
    """The grid file at `path`, checked, with the ``--set KEY=VALUE`` overrides `sets` (YAML
    values) applied to its base config."""
    try:
        grid = load_yaml(path.read_text(), source=str(path))
    except ValueError as err:
        raise SystemExit(str(err)) from None
    for key in ("name", "base", "settings", "methods", "seeds"):
        if key not in grid:
            raise SystemExit(f"{path}: missing key {key!r}")
    for where, part in [("", grid)] + [(f"setting {setting_label(x)!r}: ", x) for x in grid["settings"]]:
        for key in ("method_seeds", "method_config"):
            unknown = set(part.get(key, {})) - set(grid["methods"])
            if unknown:  # checked before hours of runs, not when rendering after them
                raise SystemExit(f"{path}: {where}{key} names methods not in the grid: {sorted(unknown)}")
    for item in sets:
        k, _, v = item.partition("=")
        grid["base"][k] = yaml.safe_load(v)
    return grid


def setting_label(setting: dict[str, Any]) -> str:
    if "label" in setting:
        return str(setting["label"])
    return f"{setting.get('noise', 'symmetric')} {setting.get('noise_rate', 0.4):.0%}"


def method_seeds(grid: dict[str, Any], method: str, setting: str | None = None) -> list[int]:
    """The seeds ``method`` runs with (in the setting labelled `setting`): the setting's own
    ``method_seeds`` entry, else the grid's, else ``seeds``."""
    seeds = grid.get("method_seeds", {}).get(method, grid["seeds"])
    for x in grid["settings"]:
        if setting is not None and setting_label(x) == setting:
            seeds = x.get("method_seeds", {}).get(method, seeds)
    return [int(x) for x in seeds]


def cells(grid: dict[str, Any]) -> list[dict[str, Any]]:
    """Every run of the grid, seed-major (all settings at a method's first seed, then its second...),
    methods with a reduced ``method_seeds`` list after the others of the same round, so that a grid
    stopped early holds whole rounds of the main methods first."""
    out = []
    extra = set(grid.get("method_seeds", {}))
    for i, setting in enumerate(grid["settings"]):
        for j, method in enumerate(grid["methods"]):
            for r, seed in enumerate(method_seeds(grid, method, setting_label(setting))):
                out.append(
                    {
                        "setting": setting_label(setting),
                        "method": method,
                        "seed": seed,
                        "overrides": {
                            k: v for k, v in setting.items() if k not in ("label", "method_config", "method_seeds")
                        },
                        "method_config": {
                            **grid.get("method_config", {}).get(method, {}),
                            **setting.get("method_config", {}).get(method, {}),
                        },
                        "order": (r, method in extra, i, j),
                    }
                )
    return sorted(out, key=lambda c: c["order"])


ONLY_FIELDS = ("setting", "method", "seed")


def parse_only(only: list[str], grid_cells: list[dict[str, Any]], parser: argparse.ArgumentParser) -> dict[str, set]:
    """The ``--only FIELD=A,B`` filters as FIELD -> allowed values (repeated fields intersect).
    A field other than setting, method or seed, or a value that names no cell of the grid, is
    refused by name, so a typo cannot silently select nothing."""
    filters: dict[str, set] = {}
    for item in only:
        field, sep, values = item.partition("=")
        if not sep or field not in ONLY_FIELDS:
            parser.error(f"--only {item!r}: expected setting=..., method=... or seed=... (comma-separated values)")
        wanted = {v.strip() for v in values.split(",")}
        known = {str(c[field]) for c in grid_cells}
        if wanted - known:
            parser.error(f"--only {item!r}: no {field} {sorted(wanted - known)} in the grid (it has {sorted(known)})")
        filters[field] = filters.get(field, wanted) & wanted
    return filters


def selected(cell: dict[str, Any], filters: dict[str, set]) -> bool:
    """Whether ``cell`` passes every filter of :func:`parse_only`."""
    return all(str(cell[field]) in values for field, values in filters.items())


def follow_parent(parent: int, poll: float = 5.0, on_orphan: Callable[[], None] | None = None) -> None:
    """In a worker: end this process (its run keeps its last epoch's checkpoint) once the grid
    process `parent` is gone, instead of running on as an orphan that holds its run directory
    (a killed grid's workers otherwise train to the end of their runs, and a restarted grid
    finds the directories locked)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        (on_orphan or (lambda: os._exit(143)))()

    threading.Thread(target=watch, daemon=True, name="follow-parent").start()


def key(row: dict[str, Any]) -> tuple[str, str, int]:
    return row["setting"], row["method"], int(row["seed"])


def run_values(grid: dict[str, Any], cell: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A cell's config keys: (the grid's base with the setting's overrides, seed and device; the
    method's own keys: its name, alias and ``method_config``, with a ``pretrain`` mapping for a
    method that starts from self-supervised weights)."""
    values = {**grid["base"], **cell["overrides"], "seed": cell["seed"], "device": grid.get("device", "cpu")}
    method = {**ALIASES.get(cell["method"], {"method": cell["method"]}), **cell.get("method_config", {})}
    return values, method


def run_cell(grid: dict[str, Any], cell: dict[str, Any]) -> dict[str, Any]:
    """One run in this (worker) process: on one torch thread, or on the grid's ``device``
    (``--device cuda``: the workers share the GPU)."""
    import torch

    from l2b.reports import detection_scores, load_per_example
    from l2b.training import TrainConfig, run_experiment

    device = grid.get("device", "cpu")
    if device == "cpu":
        torch.set_num_threads(1)
    values, method = run_values(grid, cell)
    started = time.perf_counter()
    row: dict[str, Any] = {"setting": cell["setting"], "method": cell["method"], "seed": cell["seed"]}
    if cell["method"] == "cleanlab":
        cfg = TrainConfig.from_dict({**values, "method": "ce"})
        row.update(cleanlab_pipeline(cfg, int(grid.get("cleanlab_folds", 5))))
    else:
        pretrain_options = method.pop("pretrain", None)
        if pretrain_options is not None:  # C2D: start from SimCLR weights learnt on the run's images
            encoder, row["pretrain_seconds"], row["pretrain_config"] = pretrained(
                TrainConfig.from_dict({**values, **method}), pretrain_options, seed=cell["seed"], device=device
            )
            method["init_weights"] = encoder
            # the run's cost: its own, plus its pre-training's (paid here or by another run of the grid)
            started = time.perf_counter() - row["pretrain_seconds"]
        cfg = TrainConfig.from_dict({**values, **method})
        run_dir = work_dir("runs", cfg)
        before = epochs_done(run_dir)  # a run a stopped worker left: continued, not restarted
        s = run_experiment(cfg, out_dir=run_dir, progress=False, log=None, resume=before is not None)
        d = detection_scores(load_per_example(run_dir)) or {}
        metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        if before is not None:  # the earlier attempts' share of the cost: their epochs' own seconds
            started -= sum(m.get("train_seconds", 0.0) for m in metrics[: before[0]])
            row["resumed_after_epochs"] = before[0]
        shutil.rmtree(run_dir, ignore_errors=True)
        # The regime: does the run fit the noise? Per-epoch curves, so the tables can be recomputed.
        row.update(
            peak_test_accuracy=s["peak_test_accuracy"],
            memorised=s.get("memorised"),
            train_accuracy=s.get("train_accuracy"),
            noisy_correct=s.get("noisy_correct"),
            curves={k: [m.get(k) for m in metrics] for k in CURVES},
        )
        row.update(
            test_accuracy=s["test_accuracy"],
            test_accuracy_at_best_meta=s["test_accuracy_at_best_meta"],
            best_meta_epoch=s["best_meta_epoch"],
            realised_noise_rate=s["realised_noise_rate"],
            precision=d.get("precision"),
            recall=d.get("recall"),
            train_seconds=s["train_seconds"],
            trainings=1,
        )
    row["seconds"] = round(time.perf_counter() - started, 2)
    row["config"] = cfg.to_dict()
    return row


def work_dir(kind: str, config) -> Path:
    """``<tmp>/l2b-grid-<kind>/<hash of config.to_dict()>``: the directory a run or a
    pre-training of `config` works in, found again by any worker (or session) that is given the
    same config, so that what a stopped one left is continued."""
    import hashlib

    name = hashlib.sha1(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"l2b-grid-{kind}" / name


def epochs_done(run_dir: Path) -> tuple[int] | None:
    """(epochs recorded,) when `run_dir` holds a checkpoint to continue from, else None (and a
    half-made directory without one, that no live process owns, is cleared; one that a live
    process owns is refused by name: l2b.rundir.RunDirectoryLocked)."""
    from l2b.rundir import CHECKPOINT, LOCK, METRICS, lock_run_dir

    if (run_dir / CHECKPOINT).exists():
        lines = (run_dir / METRICS).read_text().splitlines() if (run_dir / METRICS).exists() else []
        return (len([ln for ln in lines if ln.strip()]),)
    if run_dir.is_dir():
        with lock_run_dir(run_dir):  # another worker's run that has not checkpointed yet is not wiped
            for child in run_dir.iterdir():
                if child.name != LOCK:
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
    return None


def pretrained(cfg, options: dict[str, Any], *, seed: int, device: str) -> tuple[str, float, dict[str, Any]]:
    """``l2b pretrain`` of `cfg`'s model on the images `cfg` trains on (its ``train_subset``,
    with its meta set; labels unread), with `options` and `seed`. Returns the encoder's path, the
    pre-training's own seconds (its epochs' sum) and its config. Runs once per config: kept in a
    directory under the system's temporary folder, shared by the grid's workers (a lock), and
    continued (``resume``) when a worker stopped during it, so the methods of a grid that start
    from the same weights (c2d, c2d-l2b) pre-train once but each count the cost."""
    import fcntl

    from l2b.pretrain.loop import ENCODER, pretrain

    config = pretrain_config(cfg, options, seed=seed, device=device)
    out = work_dir("pretrain", config)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one worker pre-trains; the others wait for its weights
        if not (out / ENCODER).exists():
            pretrain(config, out, resume=(out / "checkpoint.pt").exists(), progress=False, log=None)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return str(out / ENCODER), round(sum(r["seconds"] for r in records), 2), config.to_dict()


def pretrain_config(cfg, options: dict[str, Any], *, seed: int, device: str):
    """The ``l2b pretrain`` config (PretrainConfig) for `cfg`'s model on the images `cfg` trains
    on, with `options` (e.g. ``{"epochs": 100}``) and `seed`."""
    from l2b.pretrain import PretrainConfig

    return PretrainConfig(
        data=cfg.data,
        model=cfg.model,
        data_root=cfg.data_root,
        data_options=dict(cfg.data_options),
        model_options=dict(cfg.model_options),
        values={
            "train_subset": cfg.train_subset,
            "split_seed": cfg.split_seed,
            "seed": seed,
            "device": device,
            **options,
        },
    )


def train_ce(cfg, data, rows: np.ndarray, seed: int):
    """The config's network trained with cross-entropy on training rows `rows` (positions in
    ``data.train_idx``; `data` from ``l2b.prepare_data(cfg)``) with their given labels, the
    checkpoint selected on the clean meta set. Built as ``l2b train`` builds its run
    (``l2b.training.build_model`` / ``build_trainer``, with the config's augmentation and
    precision), with `seed` for the initialisation and the trainer's generator. Returns (model
    with the selected weights, FitResult, seconds)."""
    import torch

    from l2b.training import AUTOCAST_DTYPES, TensorData, build_augmentation, build_model, build_trainer

    started = time.perf_counter()
    train = data.train
    meta = TensorData(torch.as_tensor(train.inputs[data.meta_idx]), torch.as_tensor(data.meta_labels))
    model = build_model(cfg, num_classes=data.num_classes, in_shape=data.example_shape, seed=seed)
    # seed - 2: the trainer's generator is then seeded with `seed` itself, as when the recorded
    # cleanlab rows were made, so they regenerate exactly.
    trainer = build_trainer(
        model,
        method="ce",
        method_options={"clip_grad": cfg.method_options.get("clip_grad")},
        optim=cfg.optimization().replace(warmup_epochs=0),
        seed=seed - 2,
        num_examples=len(rows),
        num_classes=data.num_classes,
        augment=build_augmentation(cfg),
        autocast_dtype=AUTOCAST_DTYPES[cfg.precision],
        progress=False,
    )
    rows_idx = data.train_idx[rows]
    result = trainer.fit(
        TensorData(torch.as_tensor(train.inputs[rows_idx]), torch.as_tensor(data.given[rows])), meta, epochs=cfg.epochs
    )
    return model, result, time.perf_counter() - started


def cross_validated_probs(cfg, data, folds: int) -> tuple[np.ndarray, float]:
    """Out-of-fold class probabilities (N, K) float32 of the CE-trained network over the
    training rows (K-fold, stratified on the given labels; each fold's checkpoint selected on
    the clean meta set), and the seconds the K trainings took."""
    import torch
    from sklearn.model_selection import StratifiedKFold

    from l2b.training import predict_proba

    x = torch.as_tensor(data.train.inputs[data.train_idx])
    probs = np.zeros((len(data.given), data.train.num_classes), dtype=np.float32)
    seconds = 0.0
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=cfg.seed)
    for k, (fit_rows, held) in enumerate(cv.split(np.zeros(len(data.given)), data.given)):
        model, result, took = train_ce(cfg, data, fit_rows, cfg.seed * 1000 + k)
        model.load_state_dict(result.best_state)
        probs[held] = predict_proba(model, x[held]).numpy()
        seconds += took
    return probs, seconds


def cleanlab_pipeline(cfg, folds: int) -> dict[str, Any]:
    """K-fold CV probabilities -> find_label_issues -> CE retrained on the kept examples."""
    import torch
    from cleanlab.filter import find_label_issues

    from l2b import prepare_data
    from l2b.training import TensorData, evaluate

    data = prepare_data(cfg)
    oof, seconds = cross_validated_probs(cfg, data, folds)
    oof = oof.astype(np.float64)
    oof /= oof.sum(1, keepdims=True)
    flag = find_label_issues(labels=data.given, pred_probs=oof, n_jobs=1)  # its process pool fails in a worker
    noisy_mask = data.given != data.clean
    kept = np.flatnonzero(~flag)
    model, result, took = train_ce(cfg, data, kept, cfg.seed * 1000 + folds)
    test_t = TensorData(torch.as_tensor(data.test.inputs), torch.as_tensor(data.test.labels))
    final = evaluate(model, test_t)[0]  # the last epoch's weights
    model.load_state_dict(result.best_state)
    tp = int((flag & noisy_mask).sum())
    return {
        "test_accuracy": final,
        "test_accuracy_at_best_meta": evaluate(model, test_t)[0],
        "best_meta_epoch": result.best_epoch,
        "realised_noise_rate": float(noisy_mask.mean()),
        "precision": tp / flag.sum() if flag.sum() else None,
        "recall": tp / noisy_mask.sum(),
        "kept": int(len(kept)),
        "train_seconds": round(seconds + took, 2),
        "trainings": folds + 1,
    }


def render(grid: dict[str, Any], rows: list[dict[str, Any]], out: Path, command: str) -> None:
    settings = [setting_label(s) for s in grid["settings"]]
    methods = grid["methods"]
    by = {}
    for r in rows:
        by.setdefault((r["setting"], r["method"]), []).append(r)

    def stat(setting: str, method: str, field: str) -> tuple[float, float, int]:
        v = np.array([r[field] for r in by.get((setting, method), []) if r.get(field) is not None], dtype=float)
        if not len(v):
            return np.nan, np.nan, 0
        return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)

    def cell(setting, method, field, scale=100.0):
        m, s, n = stat(setting, method, field)
        if n == 0:
            return "—"
        text = f"{scale * m:.1f} ± {scale * s:.1f}" if n > 1 else f"{scale * m:.1f}"
        return text + (f" (n={n})" if n < len(method_seeds(grid, method, setting)) else "")

    base = grid["base"]
    lines = [
        f"# Accuracy grid: {grid['name']}",
        "",
        f"Command: `{command}`  ",
        f"Protocol: {grid.get('protocol', '')}  ",
        f"Base config: `{json.dumps(base)}`; seeds {grid['seeds']}"
        + "".join(f"; {m}: seeds {method_seeds(grid, m)}" for m in grid.get("method_seeds", {}))
        + "".join(
            f"; {m} at {setting_label(x)}: seeds {method_seeds(grid, m, setting_label(x))}"
            for x in grid["settings"]
            for m in x.get("method_seeds", {})
        )
        + f"; cleanlab pipeline: {grid.get('cleanlab_folds', 5)}-fold CV + 1 retraining.",
        "Cells: mean ± std (ddof 1) over the seeds run; a single value is one seed; n < seeds planned is marked (n=…).",
        "",
    ]
    for field, title in (
        ("test_accuracy_at_best_meta", "Test accuracy (%) of the checkpoint selected on the clean meta set"),
        ("test_accuracy", "Test accuracy (%) after the last epoch"),
    ):
        rows_ = []
        for m in methods:
            best = [
                m == max(methods, key=lambda k: stat(s, k, field)[0] if stat(s, k, field)[2] else -1) for s in settings
            ]
            cells_ = [cell(s, m, field) for s in settings]
            rows_.append([m, *(f"**{c}**" if b and c != "—" else c for c, b in zip(cells_, best))])
        lines += [f"## {title}", "", *common.table(["method", *settings], rows_), ""]
    if any(r.get("memorised") is not None for r in rows):
        # The regime: a benchmark where the baseline never fits the noise cannot show a repair.
        def regime(s: str, m: str) -> str:
            peak, last, mem = (stat(s, m, f)[0] for f in ("peak_test_accuracy", "test_accuracy", "memorised"))
            return "—" if np.isnan(peak) else f"{100 * peak:.1f} / {100 * (peak - last):.1f} / {100 * mem:.0f} %"

        lines += [
            "## Regime: does the run fit the noise?",
            "",
            "Peak: the best test accuracy of any evaluated epoch (for the record; nothing is selected on it). "
            "Drop: peak minus the last epoch's test accuracy, in points. Memorised: the share of "
            "mislabelled training examples predicted as their wrong given label at the last epoch.",
            "",
            *common.table(
                ["method", *(f"{s}: peak / drop / memorised" for s in settings)],
                ([m, *(regime(s, m) for s in settings)] for m in methods),
            ),
            "",
        ]

    def precision_recall(s: str, m: str) -> str:
        if not stat(s, m, "precision")[2]:
            return "—"
        return f"{100 * stat(s, m, 'precision')[0]:.0f} / {100 * stat(s, m, 'recall')[0]:.0f}"

    def seconds(s: str, m: str) -> str:
        return f"{stat(s, m, 'seconds')[0]:.1f}" if stat(s, m, "seconds")[2] else "—"

    lines += [
        "## Label-issue detection: precision / recall (%)",
        "",
        *common.table(["method", *settings], ([m, *(precision_recall(s, m) for s in settings)] for m in methods)),
        "",
        "## Cost: mean wall seconds per run (one CPU thread; trainings per run)",
        "",
        *(
            [
                "A method started from SimCLR weights counts its pre-training's seconds (`l2b pretrain` on the "
                "run's training images, its config in each row's `pretrain_config`).",
                "",
            ]
            if any("pretrain_seconds" in r for r in rows)
            else []
        ),
        *common.table(
            ["method", "trainings", *settings],
            (
                [m, next((r["trainings"] for r in rows if r["method"] == m), "—"), *(seconds(s, m) for s in settings)]
                for m in methods
            ),
        ),
    ]
    noise = [
        f"{s}: {100 * stat(s, methods[0], 'realised_noise_rate')[0]:.1f} %"
        for s in settings
        if stat(s, methods[0], "realised_noise_rate")[2]
    ]
    lines += ["", f"Realised noise rates: {', '.join(noise)}. Bold: best mean in the column. Runs: {len(rows)}."]
    common.write_lines(out.with_suffix(".md"), lines)

    with common.figure(out.with_suffix(".png"), dpi=110, figsize=(max(7, 1.6 * len(settings) + 2), 4.6)) as (fig, ax):
        width = 0.8 / len(methods)
        for j, m in enumerate(methods):
            stats = [stat(s, m, "test_accuracy_at_best_meta") for s in settings]
            ax.bar(
                np.arange(len(settings)) + (j - (len(methods) - 1) / 2) * width,
                [100 * v[0] for v in stats],
                width,
                yerr=[100 * v[1] for v in stats],
                label=m,
                capsize=2,
            )
        ax.set_xticks(np.arange(len(settings)), settings)
        ax.set_ylabel("test accuracy (%), checkpoint chosen on meta set")
        lo = min(
            (
                100 * stat(s, m, "test_accuracy_at_best_meta")[0]
                for s in settings
                for m in methods
                if stat(s, m, "test_accuracy_at_best_meta")[2]
            ),
            default=0,
        )
        ax.set_ylim(max(0, lo - 10), 100)
        ax.set_title(
            f"{grid['name']}: mean ± std over seeds {grid['seeds']}"
            + (" (fewer for some methods)" if grid.get("method_seeds") else "")
        )
        ax.legend(fontsize=8, ncol=len(methods), loc="upper center", bbox_to_anchor=(0.5, -0.08), frameon=False)
        fig.tight_layout()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("grid", type=Path)
    p.add_argument("--workers", type=int, default=1, help="runs in parallel, one torch thread each")
    p.add_argument("--render", action="store_true", help="only redraw the table and plot from the rows")
    p.add_argument("--device", default="cpu", help="cpu (default: one thread per worker) or cuda (workers share it)")
    p.add_argument("--results", type=Path, default=common.RESULTS)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a base config key (YAML value), e.g. --set data_root=/data/cifar",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="FIELD=A,B",
        help="run only the cells whose setting label, method or seed is one of the values (repeatable; "
        "the table still shows every row), e.g. --only method=l2b,ce --only 'setting=sym 40%%'",
    )
    args = p.parse_args(argv)
    grid = load_grid(args.grid, args.set)
    grid["device"] = args.device
    out = args.results / f"accuracy-{grid['name']}"
    rows_path = out.with_suffix(".jsonl")
    rows = common.read_rows(rows_path)
    done = {key(r) for r in rows}
    grid_cells = cells(grid)
    filters = parse_only(args.only, grid_cells, p)
    todo = [c for c in grid_cells if key(c) not in done and selected(c, filters)]
    # The grid, its overrides and the device: the same for every resumed part of one grid.
    command = common.command(
        __file__,
        [str(args.grid), *(a for x in args.set for a in ("--set", x))]
        + ([] if args.device == "cpu" else ["--device", args.device]),
    )
    if not args.render and todo:
        if any(c["method"] == "cleanlab" for c in todo):
            import cleanlab  # noqa: F401  - fail before hours of runs, not after
        for c in todo:  # a missing data folder or label file named now, not by a worker hours in
            values = {k: v for part in run_values(grid, c) for k, v in part.items()}
            for field in ("data_root", "noise_file"):
                if values.get(field) is not None and not Path(values[field]).expanduser().exists():
                    raise SystemExit(
                        f"{args.grid}: setting {c['setting']!r}, method {c['method']!r}: {field} "
                        f"{values[field]!r} does not exist (a relative path is read from {Path.cwd()})"
                    )
        print(f"{len(todo)} runs to do ({len(done)} already in {rows_path}), {args.workers} worker(s)", flush=True)
        args.results.mkdir(parents=True, exist_ok=True)
        env = common.environment()
        # The rows' own flat keys (the recorded rows have them), then the version and the commit.
        stamp = {"machine": env["platform"], "cpus": env["cpu_count"], "python": env["python"], "device": args.device}
        stamp.update({k: env[k] for k in ("torch", "l2b", "git_commit", "git_dirty")})
        context = get_context("spawn")
        with ProcessPoolExecutor(args.workers, context, initializer=follow_parent, initargs=(os.getpid(),)) as pool:
            futures = {pool.submit(run_cell, grid, c): c for c in todo}
            for n, fut in enumerate(as_completed(futures), 1):
                row = fut.result()
                row.update(stamp, date=time.strftime("%Y-%m-%d %H:%M"))
                common.append_row(rows_path, row)  # one line per finished run: the grid resumes from here
                rows.append(row)
                print(
                    f"[{n}/{len(todo)}] {row['setting']:>18} {row['method']:>15} seed {row['seed']}: "
                    f"best-meta {row['test_accuracy_at_best_meta']:.4f} final {row['test_accuracy']:.4f} "
                    f"({row['seconds']:.0f} s)",
                    flush=True,
                )
    render(grid, rows, out, command)
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
