"""What an epoch of `l2b pretrain` costs, beside an epoch of plain training on the same images.

Runs, one after the other in this process on one machine: `l2b pretrain` (SimCLR: two strong
views per image) and `l2b train --method ce` (one weak view), each for --epochs epochs on the
same image folder, model and batch size; records seconds per epoch (the mean over the epochs
after the first) and their ratio in benchmarks/results/pretrain_cost.{json,md}.

    python benchmarks/pretrain_cost.py --folder /tmp/od_full20/photos --epochs 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import common
import torch

from l2b.pretrain import PretrainConfig
from l2b.pretrain.loop import pretrain
from l2b.training import TrainConfig, run_experiment


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", type=Path, required=True, help="an image folder (class sub-folders)")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--model", default="small_cnn")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="result prefix (default: benchmarks/results/pretrain_cost)")
    p.add_argument("--quick", action="store_true", help="a smoke run: results go to the temporary folder")
    p.add_argument("--about", default="", help="what the folder holds, for the record")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    env = common.environment("cpu")
    log = common.elapsed_log()
    with tempfile.TemporaryDirectory() as tmp:
        config = PretrainConfig.from_flat(
            {
                "data": "imagefolder",
                "data_root": str(args.folder),
                "image_size": args.image_size,
                "model": args.model,
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "device": "cpu",
            }
        )
        pre = pretrain(config, Path(tmp) / "pre", log=log)
        pre_epochs = [json.loads(line)["seconds"] for line in (Path(tmp) / "pre" / "metrics.jsonl").open()]
        train = TrainConfig(
            data="imagefolder",
            data_root=str(args.folder),
            image_size=args.image_size,
            model=args.model,
            method="ce",
            augment=True,
            epochs=args.epochs,
            warmup_epochs=0,
            batch_size=args.batch_size,
            device="cpu",
        )
        run_experiment(train, out_dir=Path(tmp) / "ce", progress=False, log=log)
        ce_epochs = [json.loads(line)["train_seconds"] for line in (Path(tmp) / "ce" / "metrics.jsonl").open()]
    later = slice(1, None) if args.epochs > 1 else slice(None)
    pre_s = sum(pre_epochs[later]) / len(pre_epochs[later])
    ce_s = sum(ce_epochs[later]) / len(ce_epochs[later])
    result = {
        "command": common.command(__file__, argv if argv is not None else sys.argv[1:]),
        "environment": env,
        "images": pre["images"],
        "model": args.model,
        "batch_size": args.batch_size,
        "pretrain_seconds_per_epoch": pre_epochs,
        "ce_seconds_per_epoch": ce_epochs,
        "pretrain_over_ce": pre_s / ce_s,
        "about": args.about,
    }
    prefix = common.out_prefix(args.out, "pretrain_cost", args.quick)
    common.write_json(prefix.with_suffix(".json"), result)
    prefix.with_suffix(".md").write_text(
        "# Cost of an epoch of `l2b pretrain`\n\n"
        f"{common.machine_line(env)}\n\n"
        f"Command: `{result['command']}`. {pre['images']} training images, {args.model}, batch {args.batch_size}, "
        f"{args.threads} torch threads; seconds per epoch (mean after the first). {args.about}\n\n"
        "| run | s / epoch | x CE |\n|---|---|---|\n"
        f"| `l2b train --method ce --augment` | {ce_s:.2f} | 1.00 |\n"
        f"| `l2b pretrain` (SimCLR, two strong views) | {pre_s:.2f} | {pre_s / ce_s:.2f} |\n\n"
        "An epoch of pre-training runs the model on two strong views of every image (forward and backward), "
        "plus the AutoAugment policy on the CPU; plain training runs one crop-and-flip view.\n"
    )
    print(prefix.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
