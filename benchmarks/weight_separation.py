"""Do a run's meta-gradient weights tell its clean examples from its mislabelled ones?

    python benchmarks/weight_separation.py RUN_DIR [RUN_DIR ...] [--out FILE.md]

For each finished l2b / l2rw run whose data has known true labels (synthetic noise, CIFAR-N), a
Markdown table of the last epoch's weights, split by whether the given label is right: mean
alpha (weight on the given label) and beta (weight on the pseudo-label), both scaled so that
alpha + beta averages 1 over a batch; the share of examples with no weight at all and with
alpha = 0; how often the pseudo-label is the true label; and, for the whole run, the average
precision (AP) of ranking examples as mislabelled (chance = the noise rate): by alpha, lowest
first, of the last epoch and averaged over the meta epochs (what the weights say), and by
1 - label quality, the selected model's probability of the given label (what the network says).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score

from l2b.reports import detection_scores, load_per_example, noise_mask


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
    rows = []
    for part, mask in (("clean", ~noisy), ("mislabelled", noisy)):
        if not mask.any():
            continue
        w = alpha[mask] + beta[mask]
        rows.append(
            {
                "part": part,
                "examples": int(mask.sum()),
                "alpha": float(alpha[mask].mean()),
                "beta": float(beta[mask].mean()),
                "no_weight": float(np.mean(w == 0)),
                "alpha_zero": float(np.mean(alpha[mask] == 0)),
                "pseudo_correct": float(np.mean(pe["pseudo_label"][mask] == clean[mask])),
                "noise_rate": float(noisy.mean()),
                "ap_alpha": ap_alpha,
                "ap_alpha_mean": ap_alpha_mean,
                "ap_model": float(ap),
            }
        )
    return rows


def table(runs: dict[str, list[dict]]) -> str:
    lines = [
        "| run | examples | mean α | mean β | no weight | α = 0 | pseudo-label right | "
        "AP by α: last epoch / mean | AP by the model | chance |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in runs.items():
        for r in rows:
            ap = (
                f"{r['ap_alpha']:.2f} / {r['ap_alpha_mean']:.2f} | {r['ap_model']:.2f} | {r['noise_rate']:.2f}"
                if r["part"] == "clean"
                else " | | "
            )
            lines.append(
                f"| {name}: {r['part']} | {r['examples']} | {r['alpha']:.2f} | {r['beta']:.2f} | "
                f"{100 * r['no_weight']:.0f} % | {100 * r['alpha_zero']:.0f} % | "
                f"{100 * r['pseudo_correct']:.0f} % | {ap} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    p.add_argument("--out", type=Path, help="also write the table (with the command) to this file")
    args = p.parse_args(argv)
    try:
        runs = {str(r): separation(r) for r in args.runs}
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(str(err)) from None
    text = table(runs)
    print(text, end="")
    if args.out:
        cmd = "python benchmarks/weight_separation.py " + " ".join(map(str, args.runs))
        args.out.write_text(f"Command: `{cmd}`\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
