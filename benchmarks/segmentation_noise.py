"""Segmentation with noisy masks, in the regime where the noise hurts: per-pixel CE, bootstrap,
L2RW and L2B on the synthetic shapes (l2b.segmentation.make_shapes: textured objects that no
threshold finds), under the L2B paper's mask-noise recipe and under boundary shift; ``l2b-views``
is L2B with the segmentation variant's five-view pseudo-mask and extra meta step; ``cleanlab``
is cleanlab.segmentation's filter (``find_label_issues`` on 3-fold out-of-fold probabilities of
CE) followed by CE retrained on the images it leaves unflagged (4 trainings).

    python benchmarks/segmentation_noise.py                      # the recorded grid (CPU: hours)
    python benchmarks/segmentation_noise.py --methods ce --seeds 0   # the regime check alone
    python benchmarks/segmentation_noise.py --quick              # smoke test: seconds

Protocol: 400 training images with noisy masks, 40 clean meta images, 200 test images (three
disjoint seeds of the generator), 48 x 48, two classes; U-Net (width 8, depth 3); SGD lr 0.05,
momentum 0.9, weight decay 5e-4, cosine, batch 16, meta batch 16 (= batch), 60 epochs, the meta
methods after 5 warm-up epochs of CE. Each epoch records the test Dice and the training Dice
against the noisy masks and against the clean ones (does the network fit the noise?). The
checkpoint is chosen on the meta set's Dice. The mask-quality ranking of the selected model (each
given mask's Dice against the prediction, l2b's label quality) and cleanlab's
``segmentation.rank.get_label_quality_scores`` on the same predictions are scored by their
average precision for finding the corrupted masks (realised Dice against the clean mask below
0.8).

Writes ``segmentation_noise.{jsonl,md,png}`` into ``--results`` (one JSON line per finished run;
a rerun skips the runs already there).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common
import numpy as np
import torch

NOISES = {
    "paper": ("paper", {}),  # the published recipe, its pixel sizes scaled from 144 x 144 to 48 x 48
    "boundary": ("boundary", {"pixels": 2, "mode": "random"}),
}
METHODS = ("ce", "bootstrap-hard", "l2rw", "l2b", "l2b-views", "cleanlab")
# method name -> (l2b method, its options): the segmentation variant's five-view pseudo-mask and meta step
VARIANTS = {"l2b-views": ("l2b", {"pseudo_views": 5, "meta_step": True})}
CLEANLAB_FOLDS = 3
CORRUPTED_BELOW = 0.8  # a mask whose realised Dice against the clean one is below this is corrupted


def _data(args) -> dict[str, Any]:
    from l2b.segmentation import make_shapes

    n_train, n_meta, n_test = (48, 8, 24) if args.quick else (400, 40, 200)
    size = 32 if args.quick else 48
    return {
        "train": make_shapes(n_train, size=size, seed=100),
        "meta": make_shapes(n_meta, size=size, seed=200),
        "test": make_shapes(n_test, size=size, seed=300),
    }


def run_one(method: str, noise: str, seed: int, data: dict[str, Any], args) -> dict[str, Any]:
    import l2b
    from l2b.models import create_model
    from l2b.segmentation import dice_per_image, make_mask_noise
    from l2b.tasks import get_task
    from l2b.training.batches import TensorData
    from l2b.training.trainer import predict_proba

    torch.set_num_threads(args.threads)
    train, meta, test = data["train"], data["meta"], data["test"]
    name, options = NOISES[noise]
    noisy = make_mask_noise(name, train.masks, seed=seed, **options)
    x = torch.from_numpy(train.images)
    clean_t, noisy_t = torch.from_numpy(train.masks), torch.from_numpy(noisy.masks)
    curves: dict[str, list[float]] = {"fit_noisy": [], "fit_clean": [], "test_dice": []}
    model_box: dict[str, Any] = {}

    def on_epoch(record: dict[str, Any]) -> None:  # the regime: does the network fit the noisy masks?
        pred = predict_proba(model_box["model"], TensorData(x, noisy_t)).argmax(1)
        curves["fit_noisy"].append(float(dice_per_image(pred, noisy_t, 2).mean()))
        curves["fit_clean"].append(float(dice_per_image(pred, clean_t, 2).mean()))
        curves["test_dice"].append(record.get("test_dice"))

    width, depth = (4, 2) if args.quick else (8, 3)
    meta_set = (torch.from_numpy(meta.images), torch.from_numpy(meta.masks))
    test_set = (torch.from_numpy(test.images), torch.from_numpy(test.masks))

    def train(rows: np.ndarray, name: str, callbacks=(), model_seed: int = seed):
        torch.manual_seed(model_seed)
        model = create_model("unet", num_classes=2, in_shape=x.shape[1:], width=width, depth=depth)
        model_box["model"] = model
        base, options = VARIANTS.get(name, (name, {}))
        result = l2b.fit(
            model,
            (x[rows], noisy_t[rows]),
            meta_set,
            test=test_set,
            task="segmentation",
            method=base,
            epochs=args.epochs,
            warmup_epochs=0 if base in ("ce", "bootstrap-hard") else min(5, args.epochs - 1),
            batch_size=16,
            meta_batch_size=16,
            lr=0.05,
            seed=model_seed,
            callbacks=callbacks,
            **options,
        )
        return model, result

    # the peak of this run alone: earlier runs of the process set ru_maxrss's high-water mark
    measured = common.reset_peak_rss()
    rss_before = common.proc_status_mib("VmRSS")
    started = time.perf_counter()
    everything = np.arange(len(x))
    kept = None
    if method == "cleanlab":  # out-of-fold probabilities, cleanlab's filter, CE on what it keeps
        from cleanlab.segmentation.filter import find_label_issues

        oof = np.zeros((len(x), 2, *x.shape[-2:]), np.float32)
        folds = np.array_split(np.random.default_rng(seed).permutation(len(x)), CLEANLAB_FOLDS)
        for k, held in enumerate(folds):
            fold_model, _ = train(np.setdiff1d(everything, held), "ce", model_seed=seed * 100 + k)
            oof[held] = predict_proba(fold_model, TensorData(x[held], noisy_t[held])).numpy()
        issues = find_label_issues(noisy.masks, oof, verbose=False)
        kept = everything[~issues.reshape(len(x), -1).any(axis=1)]
        if len(kept) < 16:
            kept = everything[np.argsort(issues.reshape(len(x), -1).mean(axis=1))[:16]]
    model, out = train(everything if kept is None else kept, "ce" if method == "cleanlab" else method, (on_epoch,))
    seconds = time.perf_counter() - started
    history = out.history
    best = next(r for r in history if r["epoch"] == out.best_epoch)
    tests = [r.get("test_dice") for r in history if r.get("test_dice") is not None]
    corrupted = noisy.dice < CORRUPTED_BELOW
    # the selected model's predictions on every training image (cleanlab's retraining saw only some)
    probs = predict_proba(model, TensorData(x, noisy_t)).numpy()
    ours, _, _ = get_task("segmentation").label_quality(probs, noisy.masks)
    row: dict[str, Any] = {
        "method": method,
        "noise": noise,
        "seed": seed,
        "realised_dice": noisy.mean_dice,
        "realised_pixel_error": noisy.pixel_error,
        "corrupted_share": float(corrupted.mean()),
        "test_dice_at_best_meta": best.get("test_dice"),
        "best_meta_epoch": out.best_epoch,
        "peak_test_dice": max(tests),
        "last_test_dice": tests[-1],
        "fit_noisy_last": curves["fit_noisy"][-1],
        "fit_clean_last": curves["fit_clean"][-1],
        "curves": curves,
        "seconds": round(seconds, 1),
        "peak_rss_growth_mib": common.proc_status_mib("VmHWM") - rss_before if measured and rss_before else None,
        "ap_l2b_quality": _ap(corrupted, -ours),
        "kept_images": None if kept is None else len(kept),
    }
    try:
        from cleanlab.segmentation.rank import get_label_quality_scores

        scores, _ = get_label_quality_scores(noisy.masks, probs.astype(np.float32), verbose=False)
        row["ap_cleanlab_quality"] = _ap(corrupted, -scores)
    except ImportError:
        row["ap_cleanlab_quality"] = None
    return row


def _ap(positive: np.ndarray, score: np.ndarray) -> float | None:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(positive, score)) if 0 < positive.sum() < len(positive) else None


def render(rows: list[dict[str, Any]], out: Path, command: str, env: dict[str, Any]) -> None:
    def cell(noise: str, method: str, key: str, scale: float = 100.0) -> str:
        vals = [r[key] for r in rows if r["noise"] == noise and r["method"] == method and r.get(key) is not None]
        if not vals:
            return "—"
        mean = statistics.mean(vals) * scale
        sd = f" ± {statistics.stdev(vals) * scale:.1f}" if len(vals) > 1 else ""
        return f"{mean:.1f}{sd} (n={len(vals)})"

    noises = [n for n in NOISES if any(r["noise"] == n for r in rows)]
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    lines = [
        "# Segmentation with noisy masks: the synthetic shapes",
        "",
        f"Command: `{command}`  ",
        common.machine_line(env) + "  ",
        "Protocol: see the script's docstring. Cells: mean ± sd over seeds (n).",
        "",
        "## Test Dice (%) at the checkpoint chosen on the clean meta set",
        "",
        *common.table(
            ["method", *noises], ([m, *(cell(n, m, "test_dice_at_best_meta") for n in noises)] for m in methods)
        ),
        "",
        "## Regime: peak / last test Dice, and the last epoch's training Dice against the noisy and the clean masks",
        "",
        *common.table(
            ["method", *noises],
            (
                [
                    m,
                    *(
                        f"{cell(n, m, 'peak_test_dice')} / {cell(n, m, 'last_test_dice')} / "
                        f"{cell(n, m, 'fit_noisy_last')} / {cell(n, m, 'fit_clean_last')}"
                        for n in noises
                    ),
                ]
                for m in methods
            ),
        ),  # fmt: skip
        "",
        "## Finding the corrupted masks: average precision (%), l2b's quality vs cleanlab's, same predictions",
        "",
        *common.table(
            ["method", *noises],
            (
                [m, *(f"{cell(n, m, 'ap_l2b_quality')} vs {cell(n, m, 'ap_cleanlab_quality')}" for n in noises)]
                for m in methods
            ),
        ),
        "",
        "## Cost: seconds per run (one thread) and peak resident-memory growth (MiB)",
        "",
        "Seconds are wall time on a machine other jobs shared (rough). Memory: the run's peak resident size "
        "above the process's size at its start (the peak reset per run); rows recorded before that reset was "
        "made (2026-12-06, 15:45 UTC) measured ru_maxrss over the whole process and are left out (—). The "
        "first run of each process also carries one-off allocations (torch's thread pool and kernels), so "
        "compare methods' memory per step in step_cost-cpu-unet.md (same U-Net, fresh process per variant).",
        "",
        *common.table(
            ["method", *noises],
            (
                [m, *(f"{cell(n, m, 'seconds', 1.0)} / {cell(n, m, 'peak_rss_growth_mib', 1.0)}" for n in noises)]
                for m in methods
            ),
        ),
        "",
        "Realised noise (mean Dice of the noisy masks against the clean ones): "
        + ", ".join(f"{n} {cell(n, methods[0], 'realised_dice')}" for n in noises)
        + ".",
    ]
    common.write_lines(out.with_suffix(".md"), lines)
    with common.figure(out.with_suffix(".png"), dpi=110, figsize=(5 * len(noises), 4), ncols=len(noises)) as (fig, ax):
        axes = np.atleast_1d(ax)
        for a, n in zip(axes, noises):
            for m in methods:
                for r in (r for r in rows if r["noise"] == n and r["method"] == m and r["seed"] == 0):
                    a.plot(r["curves"]["test_dice"], label=f"{m} test")
                    if m == "ce":
                        a.plot(r["curves"]["fit_noisy"], "--", label="ce train vs noisy")
            a.set_title(f"{n} noise", fontsize=9)
            a.set_xlabel("epoch")
            a.set_ylabel("Dice")
            if a.get_legend_handles_labels()[0]:  # seed 0's curves are drawn: none before it has run
                a.legend(fontsize=7)
        fig.tight_layout()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--noises", nargs="+", default=list(NOISES), choices=list(NOISES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", type=Path, default=None, help="default: benchmarks/results (--quick: a temp folder)")
    p.add_argument("--quick", action="store_true", help="a tiny version, seconds (smoke test)")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs = min(args.epochs, 3)
    results = args.results or (Path(tempfile.mkdtemp()) if args.quick else common.RESULTS)
    results.mkdir(parents=True, exist_ok=True)
    out = results / "segmentation_noise"
    jsonl = out.with_suffix(".jsonl")
    done = {(r["method"], r["noise"], r["seed"]) for r in common.read_rows(jsonl)} if jsonl.exists() else set()
    data = _data(args)
    for seed in args.seeds:
        for noise in args.noises:
            for method in args.methods:
                if (method, noise, seed) in done:
                    continue
                row = run_one(method, noise, seed, data, args)
                common.append_row(jsonl, row)
                print(
                    f"{method:15s} {noise:9s} seed {seed}: test Dice {row['test_dice_at_best_meta']:.3f} "
                    f"(peak {row['peak_test_dice']:.3f}, last {row['last_test_dice']:.3f}), "
                    f"fit to noisy {row['fit_noisy_last']:.3f}, {row['seconds']:.0f} s",
                    flush=True,
                )
    env = common.environment(torch.device("cpu"))
    render(common.read_rows(jsonl), out, common.command(__file__, sys.argv[1:] if argv is None else argv), env)
    print(f"wrote {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
