"""`l2b evaluate`: accuracy and mean cross-entropy of a finished run's model on some data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..rundir import read_run_config
from ..training import TensorData, evaluate, resolve_device
from ..training.inference import as_model_inputs, example_shape, load_inputs, load_trained_model
from ..training.prepare import load_run_data
from ..training.streams import StreamData


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="accuracy and loss of a trained run's model",
        description="Rebuild a finished run's model from RUN_DIR/config.yaml, load RUN_DIR/model.pt (the epoch "
        "selected on the clean meta set) and print its accuracy and mean cross-entropy as JSON. "
        "Default data: the held-out test split of the run's own data set, split as in the run.",
    )
    add_data_arguments(p, required=False)


def add_data_arguments(p: argparse.ArgumentParser, *, required: bool) -> None:
    """RUN_DIR, --data, --split, --device: shared by evaluate and predict."""
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="directory of a finished `l2b train` run")
    p.add_argument(
        "--data",
        default=None,
        required=required,
        metavar="NAME|PATH.npz",
        help="a registered data set (e.g. digits), or an .npz file holding 'inputs' (N, *example_shape), "
        "preprocessed as the run's data were, and optionally integer 'labels' (N,)"
        + ("" if required else " (default: the run's own data set)"),
    )
    p.add_argument(
        "--split",
        choices=["test", "train"],
        default=None,
        help="split of a registered data set, made with the run's test_fraction and split_seed (default: test)",
    )
    p.add_argument("--device", default="cpu", help="'cpu', 'cuda', 'auto', ... (default: cpu)")


def load(args: argparse.Namespace):
    """(model, config, InputData) for the parsed arguments."""
    config = read_run_config(args.run_dir)
    train, test = load_run_data(config)
    shape = example_shape(train, test)
    model, config = load_trained_model(
        args.run_dir, device=resolve_device(args.device), num_classes=train.num_classes, in_shape=shape
    )
    data = load_inputs(
        args.data,
        config,
        example_shape=shape,
        num_classes=train.num_classes,
        split=args.split,
        owner=f"the model of {args.run_dir}",
        run_data=(train, test),
    )
    return model, config, data


def run(args: argparse.Namespace) -> int:
    model, config, data = load(args)
    if data.labels is None:
        raise ValueError(
            f"{data.source} has no 'labels' array: evaluate needs labels "
            f"(`l2b predict {args.run_dir} --data {data.source} --out FILE.csv` needs none)"
        )
    dev = next(model.parameters()).device
    inputs = as_model_inputs(data.inputs, dev)
    acc, loss = evaluate(
        model,
        inputs if isinstance(inputs, StreamData) else TensorData(inputs, torch.as_tensor(data.labels, device=dev)),
    )
    print(
        json.dumps(
            {
                "run_dir": str(args.run_dir),
                "method": config.method,
                "model": config.model,
                "data": data.source,
                "split": data.split,
                "examples": len(data),
                "accuracy": acc,
                "loss": loss,
            },
            indent=2,
        )
    )
    return 0
