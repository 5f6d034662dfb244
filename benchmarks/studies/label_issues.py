"""Label-issue detection on digits: an L2B run's flags against cleanlab on cross-validated CE.

    python benchmarks/studies/label_issues.py         # 40 % symmetric noise, seeds 0 1 2, 5 folds

cleanlab is an optional dependency of this script only (the l2b package never imports it); it
needs pandas, which l2b does not depend on:

    pip install --no-deps cleanlab && pip install pandas termcolor

Protocol, per seed: the data, noise and meta split of ``l2b train --method l2b --seed S`` (digits,
fixed 80/20 split, 100 clean meta examples, the other 1,338 training examples with 40 % symmetric
noise; 2-layer MLP with BatchNorm, SGD lr 0.1, cosine, batch 64, 40 epochs, 5 warm-up epochs).
The truth is the noise mask (given label != true label). Four detectors:

- ``l2b``: one L2B run (one training, 2 extra forward/backward passes per step for the weights);
  flags = l2b's rule (probability of the given label under the meta-selected checkpoint < 0.5 and
  another class predicted), i.e. what `l2b relabel` changes;
- ``ce``: the same rule on one plain CE run (one training, in-sample probabilities);
- ``cleanlab-cv``: ``cleanlab.filter.find_label_issues`` (its defaults) given out-of-fold
  probabilities from K-fold cross-validation (stratified on the noisy labels) of the same MLP
  trained with method ce by l2b's Trainer, each fold 40 epochs with the checkpoint chosen on the
  same clean meta set: K trainings on (K-1)/K of the data;
- ``cleanlab-on-l2b``: ``find_label_issues`` given the L2B run's own (in-sample) probabilities: no
  extra training.

Average precision ranks by 1 - P(given label) for l2b's rule and by cleanlab's
``get_label_quality_scores`` (self-confidence, its default) for cleanlab.

Writes benchmarks/results/label_issues.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import l2b
from l2b.reports import detection_scores, load_per_example
from l2b.training import TrainConfig, run_experiment

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common.py, accuracy.py
import common  # noqa: E402
from accuracy import cross_validated_probs  # noqa: E402  - one CV implementation, the grid's

PIP = "pip install --no-deps cleanlab && pip install pandas termcolor"


def scores(flag: np.ndarray, noisy: np.ndarray, quality: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score

    tp = int((flag & noisy).sum())
    p = tp / flag.sum() if flag.sum() else float("nan")
    r = tp / noisy.sum()
    return {
        "flagged": int(flag.sum()),
        "precision": p,
        "recall": r,
        "f1": 2 * p * r / (p + r) if p + r > 0 else float("nan"),
        "average_precision": float(average_precision_score(noisy, 1.0 - quality)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--noise", default="symmetric")
    p.add_argument("--noise-rate", type=float, default=0.4)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    p.add_argument(
        "--out-prefix",
        type=Path,
        default=common.RESULTS / "label_issues",
        help="result files are <prefix>.json and <prefix>.md",
    )
    args = p.parse_args(argv)
    try:
        import cleanlab
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
    except ImportError as err:
        print(f"this benchmark needs cleanlab ({err}); install it with:\n    {PIP}", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    env = {**common.environment(), "cleanlab": cleanlab.__version__}

    rows = []
    for seed in args.seeds:
        base = dict(seed=seed, noise=args.noise, noise_rate=args.noise_rate, epochs=args.epochs, device="cpu")
        row: dict = {"seed": seed}
        per = {}
        for method in ("l2b", "ce"):
            with tempfile.TemporaryDirectory() as tmp:
                s = run_experiment(
                    TrainConfig(method=method, **base), out_dir=Path(tmp) / "run", progress=False, log=None
                )
                per[method] = load_per_example(Path(tmp) / "run")
            d = detection_scores(per[method], threshold=args.threshold)
            row[method] = {k: d[k] for k in ("flagged", "precision", "recall", "f1", "average_precision")}
            row[method].update(
                trainings=1, seconds=s["seconds"], test_accuracy_at_best_meta=s["test_accuracy_at_best_meta"]
            )
        cfg = TrainConfig(method="ce", **base)
        data = l2b.prepare_data(cfg)  # the run's own noise and meta split (checked just below)
        train_idx, given, clean = data.train_idx, data.given, data.clean
        pe = per["l2b"]
        assert np.array_equal(pe["index"], train_idx) and np.array_equal(pe["given_label"], given), (
            "the benchmark's noisy set differs from the run's"
        )
        noisy = given != clean
        oof, cv_seconds = cross_validated_probs(cfg, data, args.folds)
        flag = find_label_issues(labels=given, pred_probs=oof)
        row["cleanlab-cv"] = scores(flag, noisy, get_label_quality_scores(given, oof))
        row["cleanlab-cv"].update(
            trainings=args.folds,
            seconds=round(cv_seconds, 3),
            out_of_fold_accuracy_vs_true=float((oof.argmax(1) == clean).mean()),
        )
        probs = pe["pred_prob"].astype(np.float64)
        probs /= probs.sum(1, keepdims=True)
        flag = find_label_issues(labels=given, pred_probs=probs)
        row["cleanlab-on-l2b"] = scores(flag, noisy, get_label_quality_scores(given, probs))
        row["cleanlab-on-l2b"].update(trainings=0, seconds=0.0)
        row["noisy"] = int(noisy.sum())
        row["examples"] = int(len(noisy))
        rows.append(row)
        print(
            f"seed {seed}: "
            + "  ".join(f"{k} P {row[k]['precision']:.3f} R {row[k]['recall']:.3f}" for k in DETECTORS),
            flush=True,
        )

    table = []
    for k in DETECTORS:
        entry = {"detector": k}
        for m in ("precision", "recall", "f1", "average_precision", "seconds"):
            v = np.array([r[k][m] for r in rows], dtype=float)
            entry[m] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
        entry["trainings"] = rows[0][k]["trainings"]
        table.append(entry)

    cmd = common.command(__file__, sys.argv[1:] if argv is None else argv)
    env["load_average_1_5_15min_at_end"] = common.loadavg()
    out = args.out_prefix
    common.write_json(
        out.with_suffix(".json"),
        {
            "command": cmd,
            "environment": env,
            "noise": args.noise,
            "noise_rate": args.noise_rate,
            "epochs": args.epochs,
            "folds": args.folds,
            "threshold": args.threshold,
            "seeds": args.seeds,
            "table": table,
            "per_seed": rows,
        },
    )
    compute = {
        "l2b": "1 L2B training (all N examples)",
        "ce": "1 CE training (all N examples)",
        "cleanlab-cv": f"{args.folds} CE trainings, each on {args.folds - 1}/{args.folds} of N",
        "cleanlab-on-l2b": "none beyond the L2B run",
    }
    what = {
        "l2b": "l2b rule on the L2B run",
        "ce": "l2b rule on a CE run",
        "cleanlab-cv": f"cleanlab find_label_issues, {args.folds}-fold CV CE probabilities",
        "cleanlab-on-l2b": "cleanlab find_label_issues on the L2B run's probabilities",
    }
    pm = lambda e, m: f"{e[m]['mean']:.3f} ± {e[m]['std']:.3f}"  # noqa: E731
    lines = [
        f"Label-issue detection on digits, {args.noise} noise {args.noise_rate:.0%} "
        f"({rows[0]['noisy']} of {rows[0]['examples']} training labels wrong for seed {rows[0]['seed']}), "
        f"{args.epochs} epochs, seeds {args.seeds} (mean ± std), cleanlab {cleanlab.__version__}; "
        f"command: `{cmd}`",
        "",
        *common.table(
            ["detector", "precision", "recall", "F1", "average precision", "compute", "seconds (1 thread)"],
            (
                [what[e["detector"]], *(pm(e, m) for m in ("precision", "recall", "f1", "average_precision"))]
                + [compute[e["detector"]], f"{e['seconds']['mean']:.1f}"]
                for e in table
            ),
        ),
        "",
        common.machine_line(env),
        "",
        "Precision: share of flagged examples whose given label is truly wrong; recall: share of the truly "
        "wrong labels flagged. Seconds are wall time on a machine shared with other jobs "
        f"({env['cpu_count']} CPUs, load average {env['load_average_1_5_15min_at_end'][1]} over the last 5 "
        "minutes at the end; compare them with each other, not across runs of this script); the L2B and "
        "CE runs include per-epoch evaluation and writing their run directory.",
    ]
    common.write_lines(out.with_suffix(".md"), lines)
    print("\n".join(lines))
    return 0


DETECTORS = ("l2b", "ce", "cleanlab-cv", "cleanlab-on-l2b")

if __name__ == "__main__":
    sys.exit(main())
