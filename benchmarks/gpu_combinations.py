"""The published combinations at paper scale on one GPU, each a short run of under 10 minutes.

    python ../shared/data/cifar10/prepare.py /tmp/cifar                 # once: cifar-10-batches-py
    python benchmarks/gpu_combinations.py --data-root /tmp/cifar --methods unicon-l2b   # one, < 10 min
    python benchmarks/gpu_combinations.py --data-root /tmp/cifar        # all six, one after the other

Run from the repository root with l2b installed or ``PYTHONPATH=src``. Per method, its shipped
paper config (``cifar10-sym50-<method>-paper``: full CIFAR-10, 50 % symmetric noise, 1,000 clean
meta images, PreAct ResNet-18, batch 64, lr 0.02; c2d and c2d-l2b also pre-train with
``l2b pretrain`` on the same 50,000 images first):

1. **Probe.** The same config on a class-balanced 2,000-image subset: one warm-up epoch and one
   epoch of the method (and one pre-training epoch for c2d), each epoch's wall time from the
   run's own epoch lines (the division pass and the meta evaluation included).
2. **The short run.** Full data; one warm-up epoch, and as many epochs of the method (and, for
   c2d, of pre-training: half the budget at most) as the probe predicts will fit ``--budget-s``
   (at least one). Records test accuracy at the checkpoint chosen on the clean meta set and at
   the last epoch, seconds per epoch of each phase, peak GPU memory, predicted and measured wall
   time, and what the published schedule (its warm-up and epochs, C2D's pre-training excluded)
   would take on this GPU at the measured rates.

A short run says what a method costs at paper scale and that it trains there; its accuracy after
a handful of epochs is not the published one. Writes ``gpu_combinations.json`` / ``.md`` into
``--results`` (default ``benchmarks/results``). ``--tiny`` checks the script on a CPU at a tiny
size (small_cnn width 8, 120 images of a synthetic 16 x 16 image folder, no CIFAR-10 needed) into
a temporary folder unless ``--results`` is given.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common
import numpy as np
import torch
import yaml
from accuracy import pretrain_config

from l2b.configs import config_path
from l2b.pretrain.loop import ENCODER, pretrain
from l2b.training import TrainConfig, run_experiment

METHODS = ("dividemix", "dividemix-l2b", "unicon", "unicon-l2b", "c2d", "c2d-l2b")
PROBE_IMAGES = 2000
TINY = {"model": "small_cnn", "width": 8, "train_subset": 120, "num_meta": 24, "batch_size": 16, "meta_batch_size": 16}


def paper_config(method: str, data_root: str, tiny: bool) -> dict[str, Any]:
    """The method's shipped paper config as flat keys, for `data_root`; ``--tiny`` swaps in a
    synthetic image folder of the same layout's size and a small network."""
    values = yaml.safe_load(config_path(f"cifar10-sym50-{method}-paper").read_text())
    values["data_root"] = data_root
    if tiny:
        values.update(data="imagefolder", noise="symmetric", image_size=16, **TINY)
    return values


def _pretrain(values: dict[str, Any], out: Path, epochs: int, device: str) -> tuple[str, float, int]:
    """``l2b pretrain`` of the config's model on its training images (as the accuracy grids build
    it: ``accuracy.pretrain_config``), for `epochs`: encoder path, seconds, images pre-trained on."""
    config = pretrain_config(
        TrainConfig.from_dict(values), {"epochs": epochs}, seed=values.get("seed", 0), device=device
    )
    started = time.perf_counter()
    summary = pretrain(config, out, progress=False, log=None)
    return str(out / ENCODER), time.perf_counter() - started, int(summary["images"])


def _train(values: dict[str, Any], out: Path) -> tuple[dict[str, Any], list[float], float]:
    clock = common.EpochClock()
    summary = run_experiment(TrainConfig.from_dict(values), out_dir=out, progress=False, log=clock)
    return summary, clock.epochs(), time.perf_counter() - clock.start


def probe(method: str, values: dict[str, Any], tmp: Path, device: str, tiny: bool) -> dict[str, Any]:
    """Seconds per training image of a warm-up epoch, of a method epoch (and of a pre-training
    epoch), from one of each on a subset."""
    n = TINY["train_subset"] if tiny else PROBE_IMAGES
    small = {**values, "train_subset": n, "epochs": 2, "warmup_epochs": 1}
    small["test_every"] = 10**6  # the test set only at the last epoch
    out: dict[str, Any] = {"images": n}
    if method.startswith("c2d"):
        _, seconds, images = _pretrain(small, tmp / f"probe-pretrain-{method}", 1, device)
        out["pretrain_s_per_image"] = seconds / images
        small["init_weights"] = str(tmp / f"probe-pretrain-{method}" / ENCODER)
    summary, epochs, wall = _train(small, tmp / f"probe-{method}")
    train_images = n - small["num_meta"]
    out["warmup_s_per_image"], out["method_s_per_image"] = epochs[0] / train_images, epochs[1] / train_images
    out["probe_wall_s"] = wall
    return out


def fit(rates: dict[str, Any], images: int, budget_s: float, c2d: bool) -> dict[str, int | float]:
    """Epochs of pre-training (c2d: up to half the budget) and of the method after one warm-up
    epoch that fit `budget_s` at the probe's rates; at least one of each."""
    warm = rates["warmup_s_per_image"] * images
    epoch = rates["method_s_per_image"] * images
    left = budget_s - warm
    pre = 0
    if c2d:
        pre_epoch = rates["pretrain_s_per_image"] * images
        pre = max(1, int(min(left / 2, left - epoch) // pre_epoch))
        left -= pre * pre_epoch
    method_epochs = max(1, int(left // epoch))
    predicted = warm + method_epochs * epoch + (pre * rates["pretrain_s_per_image"] * images if c2d else 0.0)
    return {"pretrain_epochs": pre, "method_epochs": method_epochs, "predicted_s": predicted}


def run_method(method: str, args, tmp: Path, device: str) -> dict[str, Any]:
    values = paper_config(method, args.data_root, args.tiny)
    values.update(device=device, seed=args.seed)
    published = {"warmup_epochs": values["warmup_epochs"], "epochs": values["epochs"]}
    rates = probe(method, values, tmp, device, args.tiny)
    images = (TINY["train_subset"] if args.tiny else 50_000) - values["num_meta"]
    plan = fit(rates, images, args.budget_s, method.startswith("c2d"))
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    row: dict[str, Any] = {"method": method, "config": f"cifar10-sym50-{method}-paper", "probe": rates, "plan": plan}
    if method.startswith("c2d"):
        encoder, seconds, _ = _pretrain(values, tmp / f"pretrain-{method}", int(plan["pretrain_epochs"]), device)
        values["init_weights"] = encoder
        row["pretrain_seconds"] = round(seconds, 1)
    values.update(warmup_epochs=1, epochs=1 + int(plan["method_epochs"]), test_every=10**6)
    summary, epochs, _ = _train(values, tmp / f"run-{method}")
    row.update(
        wall_s=round(time.perf_counter() - started, 1),
        warmup_epoch_s=round(epochs[0], 2),
        method_epoch_s=round(float(np.mean(epochs[1:])), 2),
        test_accuracy=summary["test_accuracy"],
        test_accuracy_at_best_meta=summary["test_accuracy_at_best_meta"],
        best_meta_epoch=summary["best_meta_epoch"],
        realised_noise_rate=summary["realised_noise_rate"],
        peak_gpu_memory_gib=(
            round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.startswith("cuda") else None
        ),
        published_schedule_hours=round(
            (
                published["warmup_epochs"] * epochs[0]
                + (published["epochs"] - published["warmup_epochs"]) * float(np.mean(epochs[1:]))
            )
            / 3600,
            2,
        ),
        published=published,
    )
    return row


def render(result: dict[str, Any]) -> list[str]:
    rows = result["rows"]
    return [
        "# The published combinations at paper scale: short runs on one GPU",
        "",
        f"Command: `{result['command']}`  ",
        common.machine_line(result["environment"]) + "  ",
        "Protocol: each method's shipped paper config (full CIFAR-10, 50 % symmetric noise, 1,000 clean meta "
        "images, PreAct ResNet-18, batch 64); one warm-up epoch, then as many epochs of the method (and of "
        "`l2b pretrain` for c2d) as fit the budget by a probe on 2,000 images. Accuracy after a few epochs is "
        "not the published one; the epoch times are what a full run costs.",
        "",
        *common.table(
            [
                "method",
                "pre-train epochs",
                "epochs (warm-up + method)",
                "s / warm-up epoch",
                "s / method epoch",
                "method epoch vs dividemix",
                "published schedule (h)",
                "peak GPU GiB",
                "test acc. at best meta",
                "wall s (predicted)",
            ],
            (
                [
                    r["method"],
                    r["plan"]["pretrain_epochs"] or "—",
                    f"1 + {r['plan']['method_epochs']}",
                    f"{r['warmup_epoch_s']:.1f}",
                    f"{r['method_epoch_s']:.1f}",
                    _ratio(r, rows),
                    f"{r['published_schedule_hours']:.2f}",
                    "—" if r["peak_gpu_memory_gib"] is None else f"{r['peak_gpu_memory_gib']:.2f}",
                    f"{100 * r['test_accuracy_at_best_meta']:.1f}",
                    f"{r['wall_s']:.0f} ({r['plan']['predicted_s']:.0f})",
                ]
                for r in rows
            ),
        ),
    ]


def _ratio(row: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    base = next((r for r in rows if r["method"] == "dividemix"), None)
    return "—" if base is None else f"{row['method_epoch_s'] / base['method_epoch_s']:.2f}x"


def _tiny_folder(root: Path) -> str:
    """A synthetic 3-class folder of 16 x 16 images (for --tiny)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(3):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        for i in range(50):  # 150 images: 120 training images after the 20 % test split
            a = rng.integers(0, 90, (16, 16, 3), dtype=np.uint8)
            a[..., c] += 150
            Image.fromarray(a).save(root / f"c{c}" / f"{i}.png")
    return str(root)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", help="folder holding cifar-10-batches-py (not needed with --tiny)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    p.add_argument("--budget-s", type=float, default=480.0, help="each method's short run, predicted, at most")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results", type=Path, default=None, help="default: benchmarks/results (--tiny: a temp folder)")
    p.add_argument("--tiny", action="store_true", help="CPU check of the script at a tiny size")
    args = p.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        p.error(f"--methods: unknown {', '.join(unknown)} (known: {', '.join(METHODS)})")
    device = "cpu" if args.tiny else "cuda"
    if not args.tiny and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run on a GPU machine, or pass --tiny for the CPU check")
    if not args.tiny and not args.data_root:
        p.error("--data-root is required (the folder holding cifar-10-batches-py)")
    results = args.results or (Path(tempfile.mkdtemp(prefix="gpu_combinations-")) if args.tiny else common.RESULTS)
    with tempfile.TemporaryDirectory() as tmp:
        if args.tiny:
            args.data_root = _tiny_folder(Path(tmp) / "images")
        rows = []
        for method in methods:
            rows.append(run_method(method, args, Path(tmp), device))
            print(f"{method}: {rows[-1]['wall_s']:.0f} s, test acc. {rows[-1]['test_accuracy_at_best_meta']:.3f}")
    result = {
        "environment": common.environment(torch.device(device)),
        "command": common.command(__file__, sys.argv[1:] if argv is None else argv),
        "budget_s": args.budget_s,
        "rows": rows,
    }
    results.mkdir(parents=True, exist_ok=True)
    common.write_json(results / "gpu_combinations.json", result)
    common.write_lines(results / "gpu_combinations.md", render(result))
    print(f"wrote {results / 'gpu_combinations.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
