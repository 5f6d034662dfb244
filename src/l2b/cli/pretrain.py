"""`l2b pretrain`: self-supervised pre-training (SimCLR) on a data set's own images.

The flags come from the declarations: :data:`l2b.pretrain.PRETRAIN_OPTIONS` and the data sets'
and models' options (read without importing torch, :mod:`l2b.cli.declared`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..pretrain import PRETRAIN_OPTIONS
from .declared import add_option_flag, component_options, dataset_names, model_names


def _flags():
    """(option, shown default) of every flag besides data, model, data root, out, resume."""
    own = [(o, o.default) for o in PRETRAIN_OPTIONS]
    return own + [(o, d) for o, d, package in component_options() if package in ("data", "models")]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain",
        help="self-supervised pre-training (SimCLR) on a data set's own images, labels ignored",
        description="Pre-train a model's body with SimCLR (two strong views of every training image: random "
        "crop, flip and AutoAugment's CIFAR-10 policy; a projection head; the NT-Xent loss) on the training "
        "images of a data set, ignoring their labels. Writes RUN_DIR/encoder.safetensors, which "
        "`l2b train --init-weights` takes, with config.yaml, metrics.jsonl and checkpoint.pt (Ctrl-C saves "
        "one at the step it stops at; --resume continues exactly).",
    )
    p.add_argument("--data", required=False, help=f"data set (registered: {', '.join(dataset_names())})")
    p.add_argument("--data-root", dest="data_root", help="folder holding the data set's files")
    p.add_argument("--model", default=argparse.SUPPRESS, choices=model_names(), help="network (default: small_cnn)")
    for option, default in _flags():
        add_option_flag(p, option, default)
    p.add_argument("--out", type=Path, default=Path("pretrain"), help="run directory (default: ./pretrain)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run in --out with its own config (options that would change it are refused)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch, not recorded in the run's config (default: 1 for the MLP, torch's choice "
        "for other models)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")


def run(args: argparse.Namespace) -> int:
    from ..pretrain import PretrainConfig
    from ..pretrain.loop import pretrain
    from ..rundir import CHECKPOINT
    from ..training.threads import check_threads, set_process_threads

    check_threads(args.threads)  # before any work
    keys = {"data", "data_root", "model"} | {o.config_key for o, _ in _flags()}
    given = {k: v for k, v in vars(args).items() if k in keys and v is not None}
    if "data_root" in given:  # recorded absolute
        given["data_root"] = os.path.abspath(os.path.expanduser(given["data_root"]))
    if args.resume:  # the run's own config; options that would change it are refused
        from ..rundir import read_run_doc

        config = PretrainConfig.from_recorded(read_run_doc(args.out)["config"])
        recorded = config.to_flat()
        conflicts = [
            f"{key} {value!r} (the run has {recorded.get(key)!r})"
            for key, value in given.items()
            if _plain(value) != _plain(recorded.get(key))
        ]
        if conflicts:
            raise ValueError(
                f"--resume {args.out}: {'; '.join(conflicts)}: a resumed pre-training keeps its config; drop these "
                "options, or start a new run with another --out"
            )
    else:
        config = PretrainConfig.from_flat(given)
    set_process_threads(config.model, args.threads)
    interactive = sys.stderr.isatty()
    log = None if args.quiet else (lambda line: print(line, flush=True))
    try:
        summary = pretrain(config, args.out, resume=args.resume, progress=interactive and not args.quiet, log=log)
    except KeyboardInterrupt:
        if (Path(args.out) / CHECKPOINT).exists():
            print(f"interrupted: resume with `l2b pretrain --resume --out {args.out}`", flush=True)
        raise
    print(json.dumps(summary, indent=2))
    return 0


def _plain(value):
    """Lists and tuples compare alike; a path compares as given."""
    return list(value) if isinstance(value, (list, tuple)) else value
