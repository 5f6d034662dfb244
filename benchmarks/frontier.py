"""The cost / accuracy frontier of L2B's cost levers, from results already recorded.

    python benchmarks/frontier.py        # reads benchmarks/results, writes frontier.{json,md,png}

Reads, measures nothing:

- accuracy: the memorisation grids ``accuracy-cifar10-memorise.jsonl`` (sym 40 %, CIFAR-10N worse)
  and ``accuracy-fashion-mnist-memorise.jsonl`` (sym 40 %, sym 80 %, pair 40 %): the test accuracy
  of the checkpoint chosen on the clean meta set, per configuration and cell, mean and spread over
  the seeds run; the share of wrong labels memorised at the last epoch.
- cost: ``step_cost-cpu-frontier.json`` (one training step against CE's, measured side by side on
  the CIFAR grid's network, fast_cnn width 16, and on PreAct ResNet-18, batch 128: process CPU
  time against CE's in the same configuration), and each grid's
  own wall seconds per run against CE's (one thread per run; runs of a grid may have shared the
  machine, so these ratios are rougher).

A configuration *keeps up* when its mean is within 1 point of exact L2B's in every cell where
both ran; the cheapest configuration that keeps up is named (or, when none does, the closest).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import common

# grid method -> (step_cost variant, meta batch of the measurement: "B" = the batch, or a number)
CONFIGS: dict[str, tuple[str, str | int]] = {
    "l2b": ("l2b-forward", "B"),
    "l2b-mb32": ("l2b-forward", 32),
    "l2b-tail3": ("l2b-tail3", "B"),
    "l2b-tail2": ("l2b-tail2", "B"),
    "l2b-every2": ("l2b-every2", "B"),
    "l2b-every4": ("l2b-every4", "B"),
    "l2b-head": ("l2b-head", "B"),
}
GRIDS = {
    "cifar10-memorise": ("CIFAR-10 (fast_cnn w16, 2,000 noisy images)", ("sym 40%", "10N worse")),
    "fashion-mnist-memorise": ("Fashion-MNIST (MLP, 5,000 noisy images)", ("sym 40%", "sym 80%", "pair 40%")),
}
STEP_MODELS = {"fast_cnn:16": "fast_cnn w16", "preact_resnet18": "PreAct ResNet-18"}
TOLERANCE = 1.0  # points of test accuracy


def step_ratios(path: Path) -> dict[str, dict[str, float]]:
    """Grid method -> model label -> one step's process CPU seconds / CE's, measured side by side
    in the same configuration (same model, batch and meta batch; CE's step does not read the meta
    batch). CPU time, not wall time: the machine was shared while they ran, and a process's CPU
    time hardly moves with the load (wall medians where CPU time was not recorded)."""
    if not path.exists():
        return {}
    results = json.loads(path.read_text())["results"]
    out: dict[str, dict[str, float]] = {}
    for method, (variant, meta) in CONFIGS.items():
        for model, label in STEP_MODELS.items():
            want = next(
                (
                    r
                    for r in results
                    if r["config"]["model"] == model
                    and r["config"]["meta_batch"] == (r["config"]["batch"] if meta == "B" else meta)
                ),
                None,
            )
            if want is None or variant not in want["variants"]:
                continue
            mine, ce = want["variants"][variant], want["variants"]["ce"]
            key = "cpu_median_s" if "cpu_median_s" in mine and "cpu_median_s" in ce else "median_s"
            out.setdefault(method, {})[label] = mine[key] / ce[key]
    return out


def grid_cells(path: Path, settings: tuple[str, ...]) -> dict[str, dict[str, dict[str, Any]]]:
    """Method -> setting -> accuracy mean / sd / n (points), memorised share, seconds per run."""
    rows = common.read_rows(path) if path.exists() else []
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for method in ("ce", *CONFIGS):
        for setting in settings:
            rs = [r for r in rows if r["method"] == method and r["setting"] == setting]
            if not rs:
                continue
            acc = [100 * r["test_accuracy_at_best_meta"] for r in rs]
            out.setdefault(method, {})[setting] = {
                "by_seed": {int(r["seed"]): a for r, a in zip(rs, acc)},
                "mean": statistics.mean(acc),
                "sd": statistics.stdev(acc) if len(acc) > 1 else None,
                "n": len(acc),
                "memorised": statistics.mean(r["memorised"] for r in rs if r.get("memorised") is not None)
                if any(r.get("memorised") is not None for r in rs)
                else None,
                "seconds": statistics.mean(r["seconds"] for r in rs),
            }
    return out


def verdicts(cells: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per configuration: its largest shortfall against exact L2B over the cells both ran, paired
    by seed (the mean over the seeds both ran of the difference: a configuration run on one seed is
    compared with exact L2B's run on that seed, not with its mean over others), and whether it
    keeps up (within TOLERANCE everywhere both ran, in every cell L2B ran). ``seeds``: the fewest
    seeds paired in any cell."""
    exact = cells.get("l2b", {})
    out = {}
    for method in CONFIGS:
        mine = cells.get(method, {})
        shared = [s for s in exact if s in mine]
        pairs = {s: sorted(set(mine[s]["by_seed"]) & set(exact[s]["by_seed"])) for s in shared}
        shared = [s for s in shared if pairs[s]]
        if not shared:
            continue
        gaps = {s: statistics.mean(mine[s]["by_seed"][k] - exact[s]["by_seed"][k] for k in pairs[s]) for s in shared}
        out[method] = {
            "gaps": gaps,
            "worst_gap": min(gaps.values()),
            "seeds": min(len(pairs[s]) for s in shared),
            "complete": len(shared) == len(exact),
            "keeps_up": len(shared) == len(exact) and min(gaps.values()) >= -TOLERANCE,
        }
    return out


def render(result: dict[str, Any], out: Path) -> None:
    lines = [
        "# Cost / accuracy frontier of L2B's cost levers",
        "",
        f"Command: `{result['command']}` (reads recorded results; measures nothing)  ",
        "Accuracy: test accuracy (%) of the checkpoint chosen on the clean meta set, mean ± sd over the seeds "
        "run (n); the memorisation grids' protocols are in their own result files. Cost: one training step's "
        "median CPU seconds against CE's, measured side by side (`step_cost-cpu-frontier.md`), and each grid's wall "
        f"seconds per run against CE's. Keeps up: within {TOLERANCE:g} point of exact L2B in every cell.",
        "",
    ]
    steps = result["step_ratios"]
    lines += ["## Step cost against CE (batch 128; meta batch = batch, except l2b-mb32: 32)", ""]
    lines += common.table(
        ["config", *STEP_MODELS.values()],
        (
            [method, *(f"{steps[method][m]:.2f}" if m in steps.get(method, {}) else "—" for m in STEP_MODELS.values())]
            for method in CONFIGS
            if method in steps
        ),
    )
    lines.append("")
    for grid, (title, settings) in GRIDS.items():
        cells, verdict = result["cells"][grid], result["verdicts"][grid]
        if not cells:
            continue
        lines += [f"## {title}", ""]
        header = ["config", "× CE run (grid)", *settings, "worst gap to l2b", "keeps up"]
        table = []
        for method in ("ce", *CONFIGS):
            if method not in cells:
                continue
            mine = cells[method]
            ce_s = {s: cells.get("ce", {}).get(s, {}).get("seconds") for s in settings}
            run_ratio = [mine[s]["seconds"] / ce_s[s] for s in settings if s in mine and ce_s[s]]
            v = verdict.get(method)
            table.append(
                [
                    method,
                    f"{statistics.mean(run_ratio):.2f}" if run_ratio else "—",
                    *(_cell(mine.get(s)) for s in settings),
                    "—"
                    if v is None
                    else f"{v['worst_gap']:+.1f}"
                    + ("" if v["complete"] else " (cells missing)")
                    + (" (1 seed)" if v["seeds"] == 1 and method != "l2b" else ""),
                    "—" if v is None else ("yes" if v["keeps_up"] else "no"),
                ]
            )
        lines += [*common.table(header, table), ""]
    lines += ["## The cheapest configuration that keeps up", "", result["cheapest_text"], ""]
    common.write_lines(out.with_suffix(".md"), lines)

    with common.figure(out.with_suffix(".png"), dpi=110, figsize=(11, 4.4), ncols=2) as (fig, axes):
        for ax, (grid, (title, settings)) in zip(axes, GRIDS.items()):
            cells = result["cells"][grid]
            model = "fast_cnn w16"
            for s, marker in zip(settings, "osD^"):
                xs, ys, es, names = [], [], [], []
                for method in ("ce", *CONFIGS):
                    cell = cells.get(method, {}).get(s)
                    if cell is None:
                        continue
                    if grid == "cifar10-memorise":
                        x = 1.0 if method == "ce" else steps.get(method, {}).get(model)
                    else:
                        ce = cells.get("ce", {}).get(s)
                        x = cell["seconds"] / ce["seconds"] if ce else None
                    if x is None:
                        continue
                    xs.append(x), ys.append(cell["mean"]), es.append(cell["sd"] or 0.0), names.append(method)
                ax.errorbar(xs, ys, yerr=es, fmt=marker, capsize=3, label=s)
                for x, y, name in zip(xs, ys, names):
                    ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
            ax.set_xlabel("× CE step (fast_cnn w16)" if grid == "cifar10-memorise" else "× CE run time (grid)")
            ax.set_ylabel("test accuracy at the meta-selected checkpoint (%)")
            ax.set_title(title, fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()


def _cell(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "—"
    sd = "" if cell["sd"] is None else f" ± {cell['sd']:.1f}"
    mem = "" if cell["memorised"] is None else f", mem. {100 * cell['memorised']:.0f} %"
    return f"{cell['mean']:.1f}{sd} (n={cell['n']}{mem})"


def cheapest(result: dict[str, Any]) -> str:
    """The configuration with the lowest step cost (fast_cnn w16) that keeps up in every cell of
    every grid where exact L2B ran; a configuration missing from some cell cannot be named (it
    is listed as not run there)."""
    steps = result["step_ratios"]
    grids = [g for g in GRIDS if result["cells"][g].get("l2b")]
    if not grids:
        return "Exact L2B has not run in any grid yet: nothing to compare with."
    candidates, missing, thin = [], [], []
    for method in CONFIGS:
        if method == "l2b":
            continue
        vs = [result["verdicts"][g].get(method) for g in grids]
        if any(v is None or not v["complete"] for v in vs):
            missing.append(method)
            continue
        cost = steps.get(method, {}).get("fast_cnn w16")
        seeds = min(v["seeds"] for v in vs)
        if seeds < 2:  # one seed cannot name a preset: said beside the verdict
            thin.append(f"{method} ({min(v['worst_gap'] for v in vs):+.1f})")
            continue
        candidates.append((method, cost, all(v["keeps_up"] for v in vs), min(v["worst_gap"] for v in vs)))
    unrun = f" Not yet run in every cell: {', '.join(missing)}." if missing else ""
    if thin:
        unrun += f" Run on one seed in some cell, worst paired gap: {', '.join(thin)}."
    keeping = sorted((c for c in candidates if c[2] and c[1] is not None), key=lambda c: c[1])
    exact = steps.get("l2b", {}).get("fast_cnn w16")
    if keeping:
        m, cost, _, gap = keeping[0]
        return (
            f"**{m}**: {cost:.2f}x a CE step on fast_cnn w16 (exact L2B: {exact:.2f}x), worst gap to exact L2B "
            f"{gap:+.1f} points over every cell.{unrun}"
        )
    if not candidates:
        return f"No configuration has run beside exact L2B in every cell yet.{unrun}"
    m, cost, _, gap = max(candidates, key=lambda c: c[3])
    shown = "cost not measured" if cost is None else f"{cost:.2f}x a CE step"
    return f"None keeps up in every cell. Closest: **{m}** ({shown}), worst gap to exact L2B {gap:+.1f} points.{unrun}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=common.RESULTS)
    args = p.parse_args(argv)
    result: dict[str, Any] = {
        "command": common.command(__file__, sys.argv[1:] if argv is None else argv),
        "step_ratios": step_ratios(args.results / "step_cost-cpu-frontier.json"),
        "cells": {},
        "verdicts": {},
    }
    for grid, (_, settings) in GRIDS.items():
        cells = grid_cells(args.results / f"accuracy-{grid}.jsonl", settings)
        result["cells"][grid], result["verdicts"][grid] = cells, verdicts(cells)
    result["cheapest_text"] = cheapest(result)
    common.write_json(args.results / "frontier.json", result)
    render(result, args.results / "frontier")
    print(result["cheapest_text"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
