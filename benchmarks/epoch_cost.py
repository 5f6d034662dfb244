"""What a full run of each method of an accuracy grid costs, measured side by side in one process.

    python benchmarks/epoch_cost.py benchmarks/grids/cifar10-memorise.yaml --set data_root=/tmp/cifar \\
        --setting "sym 40%" --methods ce l2b dividemix dividemix-l2b unicon unicon-l2b c2d c2d-l2b

A grid's runs take hours, several at a time under whatever else the machine runs, so their
minutes are only a rough cost. Here each method runs its grid config (base, setting and
``method_config``, as ``accuracy.py`` builds it) for a short schedule on one torch thread, the
methods one after the other, ``--repeats`` times in turn: 2 warm-up epochs and 3 of the method;
a method with a ``pretrain`` mapping (C2D) also pre-trains 2 epochs. Each epoch's wall seconds
come from the run's epoch lines, so they hold everything an epoch does (the division pass of the
two-network methods, the meta-set evaluation, the memorisation pass). A phase's cost is the
fastest of its epochs over the repeats, each less its test-set pass (the record's
``test_seconds``: the test set is for the record only, evaluated at each new best on the meta
set, which early epochs nearly all are), leaving out the run's first epoch (it holds the
set-up). The full run's cost is then
projected from the grid's schedule::

    pre-training epochs x P + warm-up epochs x W + (epochs - warm-up epochs) x M

with each method's ratio to ``l2b`` and to ``dividemix`` (when measured). Writes
``epoch_cost-<grid name>.json`` / ``.md`` into ``--results`` (default ``benchmarks/results``),
with the machine, torch version and load average. ``--quick`` checks the script at a tiny size
(1 warm-up and 2 method epochs on 200 images, one repeat) into a temporary folder unless
``--results`` is given.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import common
import torch
from accuracy import cells, load_grid, pretrain_config, run_values

from l2b.pretrain.loop import ENCODER, pretrain
from l2b.training import TrainConfig, run_experiment

WARMUP, METHOD = 2, 3  # epochs of each phase of a measuring run
QUICK = {"train_subset": 200, "num_meta": 40}


def measure(values: dict[str, Any], method: dict[str, Any], tmp: Path, quick: bool) -> dict[str, list[float]]:
    """One short run of a cell: per phase (pre-training when the method has one, warm-up, the
    method), each epoch's seconds without its test-set pass (the records' ``test_seconds``)."""
    values = {**values, **method}
    pretrain_options = values.pop("pretrain", None)
    warm, main = (1, 2) if quick else (WARMUP, METHOD)
    values.update(warmup_epochs=warm, epochs=warm + main, test_every=10**6)
    if quick:
        values.update(QUICK)
    out: dict[str, list[float]] = {}
    if pretrain_options is not None:
        config = pretrain_config(
            TrainConfig.from_dict(values),
            {**pretrain_options, "epochs": 1 if quick else 2},
            seed=values["seed"],
            device="cpu",
        )
        pre = tmp / "pretrain"
        pretrain(config, pre, progress=False, log=None)
        out["pretrain"] = [r["seconds"] for r in _records(pre)]
        values["init_weights"] = str(pre / ENCODER)
    clock = common.EpochClock()
    run_experiment(TrainConfig.from_dict(values), out_dir=tmp / "run", progress=False, log=clock)
    epochs = [wall - r.get("test_seconds", 0.0) for wall, r in zip(clock.epochs(), _records(tmp / "run"))]
    out["warmup"], out["method"] = epochs[:warm], epochs[warm:]
    return out


def _records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def phase_seconds(samples: list[dict[str, list[float]]]) -> dict[str, float]:
    """Seconds per epoch of each phase: its fastest epoch over the repeats, leaving out each
    run's first epoch (it holds the set-up) where the phase has another."""
    out: dict[str, float] = {}
    for phase in ("pretrain", "warmup", "method"):
        if phase not in samples[0]:
            continue
        kept = [x for s in samples for x in (s[phase][1:] if phase == "warmup" and len(s[phase]) > 1 else s[phase])]
        out[phase] = min(kept)
    return out


def projected(values: dict[str, Any], method: dict[str, Any], rates: dict[str, float]) -> float:
    """Seconds of the grid's full schedule for this cell at the measured rates."""
    config = {**values, **method}
    epochs, warm = int(config["epochs"]), int(config.get("warmup_epochs", 0))
    pre = int(config.get("pretrain", {}).get("epochs", 0))
    return pre * rates.get("pretrain", 0.0) + warm * rates["warmup"] + (epochs - warm) * rates["method"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("grid", type=Path)
    p.add_argument("--setting", help="the grid setting's label (default: its first)")
    p.add_argument("--methods", nargs="+", help="methods of the grid (default: all but cleanlab)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a base config key")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--results", type=Path, help="output folder (default: benchmarks/results)")
    p.add_argument("--quick", action="store_true", help="tiny size, one repeat: checks the script")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats {args.repeats}: must be at least 1")
    grid = load_grid(args.grid, args.set)
    grid_cells = cells(grid)
    labels = list(dict.fromkeys(c["setting"] for c in grid_cells))
    setting = args.setting or labels[0]
    if setting not in labels:
        p.error(f"--setting {setting!r}: the grid's settings are {labels}")
    methods = args.methods or [m for m in grid["methods"] if m != "cleanlab"]
    unknown = sorted(set(methods) - set(grid["methods"]) | ({"cleanlab"} & set(methods)))
    if unknown:
        p.error(f"--methods {unknown}: not a trained method of {args.grid} (it has {grid['methods']})")
    configs = {}  # method -> run_values of its first cell in the setting (the seed is the run's only)
    for c in grid_cells:
        if c["setting"] == setting and c["method"] in methods and c["method"] not in configs:
            configs[c["method"]] = run_values(grid, c)
    repeats = 1 if args.quick else args.repeats
    torch.set_num_threads(1)
    env = common.environment()
    samples: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    log = common.elapsed_log()
    with tempfile.TemporaryDirectory(prefix="l2b-epoch-cost-") as tmp:
        for r in range(repeats):
            for m in methods:  # interleaved: a slow spell of the machine falls on every method alike
                samples[m].append(measure(*configs[m], Path(tmp) / f"{m}-{r}", args.quick))
                seconds = {k: [round(x, 1) for x in v] for k, v in samples[m][-1].items()}
                log(f"repeat {r + 1}/{repeats} {m}: {json.dumps(seconds)}")
    rows = []
    for m in methods:
        rates = phase_seconds(samples[m])
        rows.append(
            {
                "method": m,
                "seconds_per_epoch": rates,
                "projected_seconds": projected(*configs[m], rates),
                "samples": samples[m],
            }
        )
    by = {r["method"]: r["projected_seconds"] for r in rows}
    doc = {
        "command": common.command(__file__, argv),
        "environment": env,
        "loadavg_after": common.loadavg(),
        "grid": grid["name"],
        "setting": setting,
        "repeats": repeats,
        "quick": args.quick,
        "rows": rows,
    }
    name = f"epoch_cost-{grid['name']}"
    out = common.out_prefix(args.results / name if args.results else None, name, args.quick)
    common.write_json(out.with_suffix(".json"), doc)

    def ratio(m: str, ref: str) -> str:
        return f"{by[m] / by[ref]:.2f}" if ref in by else "—"

    def cell(row: dict[str, Any], phase: str) -> str:
        rates = row["seconds_per_epoch"]
        if phase not in rates:
            return "—"
        return f"{rates[phase]:.1f}"

    lines = [
        f"# Cost of a full run per method: {grid['name']}, {setting}",
        "",
        f"Command: `{doc['command']}`  ",
        common.machine_line(env),
        f"Load average after: {doc['loadavg_after']}. One torch thread; each method's grid config for a short "
        f"schedule, the methods one after the other, {repeats} time(s) in turn; seconds per epoch of each phase "
        "the fastest over the repeats (wall time between the run's epoch lines, so the division pass and the "
        "meta-set and memorisation evaluations are in it, less its test-set pass, for the record only; not the "
        "run's first epoch, which holds the set-up; "
        "pre-training: its epochs' own seconds); the full run projected from the grid's "
        "schedule (pre-training epochs × P + warm-up epochs × W + method epochs × M)."
        + (" QUICK: tiny size, not a measurement." if args.quick else ""),
        "",
        *common.table(
            ["method", "pre-training s/epoch", "warm-up s/epoch", "method s/epoch"]
            + ["full run (min)", "× l2b", "× dividemix"],
            (
                [
                    r["method"],
                    cell(r, "pretrain"),
                    cell(r, "warmup"),
                    cell(r, "method"),
                    f"{r['projected_seconds'] / 60:.1f}",
                    ratio(r["method"], "l2b"),
                    ratio(r["method"], "dividemix"),
                ]
                for r in rows
            ),
        ),
    ]
    common.write_lines(out.with_suffix(".md"), lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
