"""Do a run's meta-gradient weights tell its clean examples from its mislabelled ones?

    python benchmarks/studies/weight_separation.py RUN_DIR [RUN_DIR ...] [--out FILE.md] [--epochs 10,50,100]

For each finished l2b / l2rw run whose data has known true labels (synthetic noise, CIFAR-N), a
Markdown table of the last epoch's weights, split by whether the given label is right: mean
alpha (weight on the given label) and beta (weight on the pseudo-label), both scaled so that
alpha + beta averages 1 over a batch; the share of examples with no weight at all and with
alpha = 0; how often the pseudo-label is the true label; the part's share of all the weight
(alpha + beta; cross-entropy gives it the part's share of the examples) and the share of the part's
weight whose target is the true class (alpha where the given label is right, beta where the
pseudo-label is: l2b.reports.training_signal), which tells selection from relabelling; and, for
the whole run, the average precision (AP) of ranking examples as mislabelled (chance = the noise rate): by alpha, lowest
first, of the last epoch and averaged over the meta epochs (what the weights say), and by
1 - label quality, the selected model's probability of the given label (what the network says).

A second table follows each run's training from its metrics.jsonl: near the first epoch with
weights, the quartiles and the last (the nearest epochs with a test figure; or ``--epochs``), the
test accuracy, the memorised share, and where the
epoch's weight went (on the true class, on mislabelled examples, on their right pseudo-labels, on
their wrong given labels), beside cross-entropy's shares (1 - noise rate, the noise rate).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score

from l2b.reports import detection_scores, load_per_example, noise_mask, training_signal
from l2b.reports.plots import load_run

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common.py
import common  # noqa: E402


def separation(run_dir: Path) -> list[dict[str, float | str]]:
    """Rows ``part`` in (clean, mislabelled) with the statistics above for one run."""
    pe = load_per_example(run_dir)
    alpha, beta = np.asarray(pe["alpha"], float), np.asarray(pe["beta"], float)
    if np.all(np.isnan(alpha)):
        raise SystemExit(f"{run_dir}: no per-example weights (not a meta-gradient run)")
    noisy = noise_mask(pe)
    if noisy is None:
        raise SystemExit(f"{run_dir}: true labels unknown, so clean and mislabelled cannot be told apart")
    clean = np.asarray(pe["clean_label"])
    ap = detection_scores(pe)["average_precision"]

    def ap_by(score: np.ndarray) -> float:  # ranking mislabelled examples by low score
        return float(average_precision_score(noisy, -score)) if 0 < noisy.sum() < len(noisy) else float("nan")

    ap_alpha, ap_alpha_mean = ap_by(alpha), ap_by(np.asarray(pe["alpha_mean"], float))
    pseudo = np.asarray(pe["pseudo_label"])
    seen = ~(np.isnan(alpha) | np.isnan(beta))
    total = float(np.sum(alpha[seen] + beta[seen]))
    rows = []
    for part, mask in (("clean", ~noisy), ("mislabelled", noisy)):
        if not mask.any():
            continue
        w = alpha[mask] + beta[mask]
        signal = training_signal(alpha[mask], beta[mask], pseudo[mask], noisy[mask], clean[mask])
        rows.append(
            {
                "part": part,
                "examples": int(mask.sum()),
                "alpha": float(alpha[mask].mean()),
                "beta": float(beta[mask].mean()),
                "no_weight": float(np.mean(w == 0)),
                "alpha_zero": float(np.mean(alpha[mask] == 0)),
                "pseudo_correct": float(np.mean(pseudo[mask] == clean[mask])),
                "weight_share": float(np.nansum(w) / total) if total > 0 else float("nan"),
                "true_class_share": signal.get("true_class_share", float("nan")),
                "noise_rate": float(noisy.mean()),
                "ap_alpha": ap_alpha,
                "ap_alpha_mean": ap_alpha_mean,
                "ap_model": float(ap),
            }
        )
    return rows


def table(runs: dict[str, list[dict]]) -> str:
    header = ["run", "examples", "mean α", "mean β", "no weight", "α = 0", "pseudo-label right", "share of the weight"]
    header += ["its share on the true class", "AP by α: last epoch / mean", "AP by the model", "chance"]

    def run_figures(r: dict) -> list[str]:  # the whole run's figures, once: on its clean part's line
        if r["part"] != "clean":
            return ["", "", ""]
        return [f"{r['ap_alpha']:.2f} / {r['ap_alpha_mean']:.2f}", f"{r['ap_model']:.2f}", f"{r['noise_rate']:.2f}"]

    rows = [
        [f"{name}: {r['part']}", r["examples"], f"{r['alpha']:.2f}", f"{r['beta']:.2f}"]
        + [f"{100 * r[k]:.0f} %" for k in ("no_weight", "alpha_zero", "pseudo_correct", "weight_share")]
        + [f"{100 * r['true_class_share']:.0f} %", *run_figures(r)]
        for name, parts in runs.items()
        for r in parts
    ]
    return "\n".join(common.table(header, rows)) + "\n"


def signal_curve(run_dir: Path, epochs: list[int] | None = None) -> list[dict]:
    """Per chosen epoch: test accuracy (None where not evaluated), memorised share and the
    training-signal shares of that epoch's weights (l2b.reports.training_signal)."""
    run = load_run(run_dir)
    with_weights = [m for m in run.metrics if "true_class_share" in m]
    if not with_weights:
        raise SystemExit(f"{run_dir}: metrics.jsonl has no weight shares (not a meta-gradient run with known noise)")
    if epochs is None:  # first, quartiles, last; each moved to the nearest epoch with a test figure
        first, last = with_weights[0]["epoch"], with_weights[-1]["epoch"]
        tested = [m["epoch"] for m in with_weights if m.get("test_accuracy") is not None] or [first]
        targets = (first, *(first + (last - first) * q // 4 for q in (1, 2, 3)), last)
        epochs = sorted({min(tested, key=lambda e: (abs(e - t), e)) for t in targets})
    by_epoch = {m["epoch"]: m for m in with_weights}
    missing = [e for e in epochs if e not in by_epoch]
    if missing:
        raise SystemExit(f"{run_dir}: no weights recorded at epoch(s) {missing}")
    rate = run.summary.get("realised_noise_rate")
    return [
        {
            "epoch": e,
            "test_accuracy": by_epoch[e].get("test_accuracy"),
            "memorised": by_epoch[e].get("memorised"),
            "true_class_share": by_epoch[e]["true_class_share"],
            "weight_on_noisy": by_epoch[e]["weight_on_noisy"],
            "relabelled_share": by_epoch[e]["relabelled_share"],
            "wrong_label_share": by_epoch[e].get("wrong_label_share"),  # absent in runs before it existed
            "noise_rate": rate,
        }
        for e in epochs
    ]


def curve_table(curves: dict[str, list[dict]]) -> str:
    pct = lambda x: "–" if x is None else f"{100 * x:.1f}"  # noqa: E731
    header = ["run", "epoch", "test acc. %", "memorised %", "weight on the true class % (CE)"]
    header += ["on mislabelled examples % (CE)", "on their right pseudo-labels %", "on their wrong given labels % (CE)"]
    rows = []
    for name, parts in curves.items():
        for r in parts:
            rate = r["noise_rate"]
            rows.append(
                [name, r["epoch"], pct(r["test_accuracy"]), pct(r["memorised"])]
                + [f"{pct(r['true_class_share'])} ({pct(None if rate is None else 1 - rate)})"]
                + [f"{pct(r['weight_on_noisy'])} ({pct(rate)})", pct(r["relabelled_share"])]
                + [f"{pct(r['wrong_label_share'])} ({pct(rate)})"]
            )
    return "\n".join(common.table(header, rows)) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    p.add_argument("--out", type=Path, help="also write the tables (with the command) to this file")
    p.add_argument("--epochs", help="comma-separated epochs for the per-epoch table (default: first, quartiles, last)")
    args = p.parse_args(argv)
    epochs = None if args.epochs is None else [int(e) for e in args.epochs.split(",")]
    try:
        runs = {str(r): separation(r) for r in args.runs}
        curves = {str(r): signal_curve(r, epochs) for r in args.runs}
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(str(err)) from None
    text = table(runs) + "\n" + curve_table(curves)
    print(text, end="")
    if args.out:
        cmd = common.command(__file__, sys.argv[1:] if argv is None else argv)
        args.out.write_text(f"Command: `{cmd}`\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
