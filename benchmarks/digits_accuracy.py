"""Accuracy of every method on digits with synthetic noise, over several seeds.

    python benchmarks/digits_accuracy.py                      # the README table (40 % symmetric, 3 seeds)
    python benchmarks/digits_accuracy.py --noise-rate 0.6 --seeds 0 1 2 3 4

Protocol: the fixed 80/20 stratified split of scikit-learn's digits (1,438 train / 359 test),
100 clean class-balanced meta examples taken out of the training split (the rest gets the
noise), a 2-layer MLP with BatchNorm (256 hidden), SGD lr 0.1, momentum 0.9, weight decay 5e-4,
cosine schedule, batch 64, 5 warm-up epochs of cross-entropy, 40 epochs. Every method sees the
same noisy training set and the same meta set (ce and bootstrap use it only to select the
checkpoint). Reported: final-epoch test accuracy (the headline) and the test accuracy of the
checkpoint chosen on the meta set. Test accuracy is never used to choose anything.

Writes benchmarks/results/digits_accuracy[-<non-default options>].{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

from l2b import __version__
from l2b.training import TrainConfig, run_experiment

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["ce", "bootstrap-soft", "bootstrap-hard", "l2rw", "l2b"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--noise", default="symmetric")
    p.add_argument("--noise-rate", type=float, default=0.4)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--warmup-epochs", type=int, default=TrainConfig.warmup_epochs)
    p.add_argument("--meta-source", default=TrainConfig.meta_source, choices=["split", "confident"])
    p.add_argument("--tag", default=None, help="suffix of the result files (default: from noise and rate)")
    args = p.parse_args(argv)

    rows = []
    for method in args.methods:
        for seed in args.seeds:
            cfg = TrainConfig(
                method=method,
                seed=seed,
                noise=args.noise,
                noise_rate=args.noise_rate,
                epochs=args.epochs,
                lr=args.lr,
                batch_size=args.batch_size,
                warmup_epochs=args.warmup_epochs,
                meta_source=args.meta_source,
                device="cpu",
            )
            s = run_experiment(cfg, out_dir=None, progress=False, log=None)
            rows.append(s)
            print(
                f"{method:15s} seed {seed}: test {s['test_accuracy']:.4f}  "
                f"at best meta {s['test_accuracy_at_best_meta']:.4f}  {s['train_seconds']:.1f}s"
                + (f"  meta purity {s['meta_purity']:.4f}" if "meta_purity" in s else ""),
                flush=True,
            )

    table = []
    for method in args.methods:
        r = [s for s in rows if s["method"] == method]
        final = np.array([s["test_accuracy"] for s in r])
        sel = np.array([s["test_accuracy_at_best_meta"] for s in r])
        secs = np.array([s["train_seconds"] for s in r])
        table.append(
            {
                "method": method,
                "test_mean": final.mean(),
                "test_std": final.std(ddof=1) if len(r) > 1 else 0.0,
                "best_meta_mean": sel.mean(),
                "best_meta_std": sel.std(ddof=1) if len(r) > 1 else 0.0,
                "train_seconds_mean": secs.mean(),
                "per_seed": final.tolist(),
                "meta_purity_mean": (
                    float(np.mean([s["meta_purity"] for s in r])) if all("meta_purity" in s for s in r) else None
                ),
            }
        )

    d = TrainConfig()
    parts = [f"{args.noise}{args.noise_rate:g}"] if (args.noise, args.noise_rate) != ("symmetric", 0.4) else []
    parts += [
        f"{k}{v:g}"
        for k, v, dv in (
            ("lr", args.lr, d.lr),
            ("bs", args.batch_size, d.batch_size),
            ("warmup", args.warmup_epochs, d.warmup_epochs),
        )
        if v != dv
    ]
    parts += [f"meta-{args.meta_source}"] if args.meta_source != d.meta_source else []
    tag = f"-{args.tag}" if args.tag else "".join(f"-{p}" for p in parts)
    cmd = "python benchmarks/digits_accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:])
    env = {
        "version": __version__,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "threads": torch.get_num_threads(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"digits_accuracy{tag}.json").write_text(
        json.dumps(
            {
                "command": cmd.strip(),
                "environment": env,
                "noise": args.noise,
                "noise_rate": args.noise_rate,
                "epochs": args.epochs,
                "seeds": args.seeds,
                "table": table,
                "runs": rows,
            },
            indent=2,
        )
        + "\n"
    )
    lines = [
        f"Digits, {args.noise} noise {args.noise_rate:.0%}, {args.epochs} epochs, seeds {args.seeds} "
        f"(mean ± std); command: `{cmd.strip()}`",
        "",
        "| method | test accuracy (final epoch) | test accuracy (checkpoint chosen on meta set) | train s/run "
        "| purity of the selected meta sets |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {t['method']} | {t['test_mean']:.4f} ± {t['test_std']:.4f} | "
        f"{t['best_meta_mean']:.4f} ± {t['best_meta_std']:.4f} | {t['train_seconds_mean']:.1f} | "
        f"{'n/a' if t['meta_purity_mean'] is None else format(t['meta_purity_mean'], '.4f')} |"
        for t in table
    ]
    (RESULTS / f"digits_accuracy{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
