"""The `l2b` command line. Parses arguments into a TrainConfig; the library never sees argparse."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..methods import list_methods
from ..models import list_models
from ..noise import NOISE_KINDS
from ..training import TrainConfig, run_experiment

_D = TrainConfig()


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a classifier on noisy labels",
        description="Train a classifier on noisy labels. With no options: L2B on scikit-learn's digits "
                    "with 40%% symmetric noise (labels flipped to a different class), 100 clean meta examples.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("data and noise")
    g.add_argument("--data", default=_D.data, choices=["digits"], help="data set")
    g.add_argument("--noise", default=_D.noise, choices=NOISE_KINDS,
                   help="synthetic noise: 'symmetric' flips to a different class (exact rate), "
                        "'symmetric-uniform' resamples over all classes (the paper's code), 'pair' c->c+1")
    g.add_argument("--noise-rate", type=float, default=_D.noise_rate, help="fraction of training labels corrupted")
    g.add_argument("--num-meta", type=int, default=_D.num_meta,
                   help="clean, class-balanced meta examples taken out of the training split")
    g.add_argument("--test-fraction", type=float, default=_D.test_fraction, help="held-out test fraction")
    g = p.add_argument_group("model and method")
    g.add_argument("--model", default=_D.model, choices=list_models(), help="network")
    g.add_argument("--hidden", type=int, nargs="+", default=list(_D.hidden), help="MLP hidden widths")
    g.add_argument("--method", default=_D.method, choices=list_methods(), help="training method")
    g.add_argument("--engine", default=_D.engine, choices=["fused", "forward", "reverse"],
                   help="meta-gradient engine, all give the same weights: 'fused' (forward mode sharing "
                        "the real step's forward, fastest), 'forward', 'reverse' (the published double backward)")
    g.add_argument("--normalize", default=_D.normalize, choices=["org", "softmax", "sigmoid"],
                   help="weight normalisation")
    g.add_argument("--temperature", type=float, default=_D.temperature, help="softmax temperature")
    g.add_argument("--bootstrap-beta", type=float, default=None,
                   help="weight of the observed label for bootstrap methods (default 0.95 soft, 0.8 hard)")
    g.add_argument("--mixup", action="store_true", help="mixup with Beta(a, a), one permutation per batch")
    g.add_argument("--mixup-alpha", type=float, default=_D.mixup_alpha, help="mixup Beta parameter")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=_D.epochs, help="training epochs (warm-up included)")
    g.add_argument("--warmup-epochs", type=int, default=_D.warmup_epochs,
                   help="epochs of plain cross-entropy before the method starts")
    g.add_argument("--batch-size", type=int, default=_D.batch_size, help="noisy batch size")
    g.add_argument("--meta-batch-size", type=int, default=_D.meta_batch_size, help="clean meta batch size")
    g.add_argument("--lr", type=float, default=_D.lr, help="SGD learning rate (cosine schedule)")
    g.add_argument("--momentum", type=float, default=_D.momentum, help="SGD momentum")
    g.add_argument("--weight-decay", type=float, default=_D.weight_decay, help="SGD weight decay")
    g.add_argument("--clip-grad", type=float, default=None, help="clip the gradient norm to this value")
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, default=_D.seed, help="seed for noise, meta split, init and sampling")
    g.add_argument("--device", default=_D.device, help="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    g.add_argument("--out", type=Path, default=None,
                   help="run directory (default: runs/<time>-<method>-<data>-<noise><rate>-s<seed>)")
    g.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice); 1 is often fastest for small "
                        "models or on a machine shared with other jobs")
    g.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")


def _config_from(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        data=args.data, noise=args.noise, noise_rate=args.noise_rate, num_meta=args.num_meta,
        test_fraction=args.test_fraction, model=args.model, hidden=tuple(args.hidden), method=args.method,
        engine=args.engine, normalize=args.normalize, temperature=args.temperature,
        bootstrap_beta=args.bootstrap_beta, mixup=args.mixup, mixup_alpha=args.mixup_alpha,
        epochs=args.epochs, warmup_epochs=args.warmup_epochs, batch_size=args.batch_size,
        meta_batch_size=args.meta_batch_size, lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, clip_grad=args.clip_grad, seed=args.seed, device=args.device)


def _train(args: argparse.Namespace) -> int:
    config = _config_from(args)
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads={args.threads} must be at least 1")
        torch.set_num_threads(args.threads)
    out = args.out or Path("runs") / (f"{time.strftime('%Y%m%d-%H%M%S')}-{config.method}-{config.data}-"
                                      f"{config.noise}{config.noise_rate:g}-s{config.seed}")
    log = None if args.quiet else tqdm.write  # keeps the progress bar below the epoch lines
    if log:
        log(f"l2b train: {config.method} on {config.data}, {config.noise} noise {config.noise_rate:g}, "
            f"{config.epochs} epochs, seed {config.seed} -> {out}")
    summary = run_experiment(config, out_dir=out, progress=not args.quiet, log=log)
    print(json.dumps(summary, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="l2b", description="Learning to Bootstrap: robust training on noisy labels.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"train": _train}[args.command](args)
    except (ValueError, FileExistsError) as err:
        # Validation errors name the key and value; a traceback would only hide that.
        print(f"l2b {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"l2b {args.command}: interrupted", file=sys.stderr)
        return 130
