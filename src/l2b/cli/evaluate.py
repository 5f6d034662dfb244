"""`l2b evaluate`: accuracy and mean cross-entropy of a finished run's model on some data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="accuracy and loss of a trained run's model",
        description="Rebuild a finished run's model from RUN_DIR/config.yaml, load RUN_DIR/model.pt (the epoch "
        "selected on the clean meta set) and print its accuracy and mean cross-entropy as JSON. "
        "Default data: the run's own test set (for image files, exactly the files it recorded in files.csv; "
        "for registered data sets, split as in the run). A run on masks prints Dice, IoU, Dice per case and pixel "
        "accuracy against checked masks (--data: images/ with masks/, a volume folder or an image,mask list).",
    )
    add_data_arguments(p, required=False)


def add_data_arguments(p: argparse.ArgumentParser, *, required: bool) -> None:
    """RUN_DIR, --data, --preprocessed, --split, --device: shared by evaluate and predict."""
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="directory of a finished `l2b train` run")
    p.add_argument(
        "--data",
        default=None,
        required=required,
        metavar="NAME|PATH",
        help="image files: an image, a folder of images, a folder of class sub-folders (labels by folder name), "
        "or a list file (.csv/.txt/.tsv: path lines, or path,label with class names), decoded as the run's images "
        "were; or a registered data set (e.g. digits), or an .npz file holding raw 'inputs' (N, *example_shape) "
        "(8-bit pixels 0..255; digits: 0..16) and optionally integer 'labels' (N,), or an .npy file of raw "
        "inputs; a file's inputs get the run's preprocessing (see --preprocessed)"
        + ("" if required else " (default: the run's checked test set)"),
    )
    p.add_argument(
        "--preprocessed",
        action="store_true",
        help="the file's inputs are already preprocessed (standardised) as the run's data were: use them as they are",
    )
    p.add_argument(
        "--split",
        choices=["test", "train"],
        default=None,
        help="split of a registered data set, made with the run's test_fraction and split_seed (default: test)",
    )
    p.add_argument("--device", default="cpu", help="'cpu', 'cuda', 'auto', ... (default: cpu)")


def load(args: argparse.Namespace):
    """(model, config, InputData, class names) for the parsed arguments."""
    import os

    import numpy as np

    from ..rundir import FILES, read_data_info, read_test_files
    from ..training import resolve_device
    from ..training.config import read_run_config
    from ..training.inference import (
        example_shape,
        image_inputs,
        is_image_source,
        load_inputs,
        load_trained_model,
        read_image_source,
    )
    from ..training.prepare import load_run_data

    config = read_run_config(args.run_dir)
    info = read_data_info(args.run_dir)
    recorded = read_test_files(args.run_dir) if args.data is None and args.split is None else None
    if recorded is not None and info is not None:  # the run's own test files, never a new split
        names = [str(n) for n in info["class_names"]]
        paths, classes = recorded
        gone = [p for p in paths if not os.path.isfile(p)]
        if gone:
            raise FileNotFoundError(
                f"{len(gone)} test image(s) of the run in {args.run_dir} are gone (e.g. {gone[0]}; listed in "
                f"{Path(args.run_dir) / FILES}); put them back, or pass --data with checked images"
            )
        labels = np.asarray([names.index(c) for c in classes], np.int64)
        model, config = load_trained_model(
            args.run_dir,
            device=resolve_device(args.device),
            num_classes=int(info["num_classes"]),
            in_shape=tuple(info["example_shape"]),
        )
        source = f"the run's test set ({Path(args.run_dir) / FILES})"
        return model, config, image_inputs(paths, labels, info, workers=config.workers, source=source), names
    source = args.data
    if source is None and config.trusted_test is not None:
        source = config.trusted_test  # the run's own checked test set
    elif source is None and not config.test_checked:
        raise ValueError(
            f"the run in {args.run_dir} has no checked test set (its data's labels are unchecked and no "
            "trusted_test was given): pass --data with checked images (a folder of class sub-folders, or a "
            "path,label list)"
        )
    if is_image_source(source) and args.split is None and not args.preprocessed:
        if info is None:
            raise ValueError(
                f"{args.run_dir} predates data.json, which image inputs need (the run's classes and decoding); "
                "give an .npz of raw inputs instead"
            )
        names = [str(n) for n in info["class_names"]]
        paths, labels, _ = read_image_source(source, names)
        if labels is not None:  # a score will be made
            _warn_training_files(args.run_dir, paths, source)
        model, config = load_trained_model(
            args.run_dir,
            device=resolve_device(args.device),
            num_classes=int(info["num_classes"]),
            in_shape=tuple(info["example_shape"]),
        )
        data = image_inputs(paths, labels, info, workers=config.workers, source=str(source))
        return model, config, data, names
    text = None if source is None else str(source)
    if info is not None and text is not None and Path(text).suffix in (".npz", ".npy") and args.split is None:
        return _load_file(args, Path(text), config, info)  # the run recorded all it needs: no data set loaded
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
        preprocessed=args.preprocessed,
    )
    names = getattr(train, "class_names", None)
    return model, config, data, [str(n) for n in names] if names is not None else None


def run(args: argparse.Namespace) -> int:
    import torch

    from ..training import TensorData, evaluate
    from ..training.inference import as_model_inputs
    from ..training.streams import StreamData
    from .masks import evaluate as evaluate_masks
    from .masks import is_mask_run

    if is_mask_run(args.run_dir):
        return evaluate_masks(args)
    model, config, data, _ = load(args)
    if data.labels is None:
        what = "is an .npy file of inputs only" if data.source.endswith(".npy") else "has no 'labels' array"
        raise ValueError(
            f"{data.source} {what}: evaluate needs labels (an .npz file with 'inputs' and 'labels'; "
            f"`l2b predict {args.run_dir} --data {data.source} --out FILE.csv` needs none)"
        )
    dev = next(model.parameters()).device
    inputs = as_model_inputs(data.inputs, dev)
    acc, loss = evaluate(
        model,
        inputs if isinstance(inputs, StreamData) else TensorData(inputs, torch.as_tensor(data.labels, device=dev)),
    )
    report = {
        "run_dir": str(args.run_dir),
        "method": config.method,
        "model": config.model,
        "data": data.source,
        "split": data.split,
        "examples": len(data),
        "accuracy": acc,
        "loss": loss,
    }
    if data.preprocessing is not None:
        report["preprocessing"] = data.preprocessing
    print(json.dumps(report, indent=2))
    return 0


def _warn_training_files(run_dir: Path, paths: list[str], source) -> None:
    """A word on stderr when images given to score are the run's own training files (by path or
    bytes): their labels were trained on, so a score on them measures the fit to those labels."""
    import sys

    from ..data.trusted import match_files
    from ..rundir import read_files

    train = read_files(run_dir, roles=("train",))
    if not train or not paths:
        return
    found = int((match_files(list(train.values()), paths) >= 0).sum())
    if found:
        print(
            f"warning: {found} of the {len(paths)} images of {source} are training files of the run in {run_dir}: "
            "their labels were trained on, so a score on them measures how closely the model fits those labels, "
            "not how often it is right; score checked images it never saw",
            file=sys.stderr,
        )


def _load_file(args: argparse.Namespace, path: Path, config, info: dict):
    """(model, config, InputData, class names) for an .npz / .npy file of inputs, from what the
    run recorded in data.json (classes, input shape, preprocessing): the run's data set is not
    loaded."""
    import numpy as np

    from ..data.preprocessing import Preprocessing
    from ..training import resolve_device
    from ..training.inference import InputData, load_input_file, load_trained_model

    names = [str(n) for n in info["class_names"]]
    shape = tuple(int(d) for d in info["example_shape"])
    model, config = load_trained_model(
        args.run_dir, device=resolve_device(args.device), num_classes=len(names), in_shape=shape
    )
    owner = f"the model of {args.run_dir}"
    raw, labels = load_input_file(path, example_shape=shape, num_classes=len(names), owner=owner)
    if args.preprocessed:
        return (
            model,
            config,
            InputData(raw.astype(np.float32, copy=False), labels, str(path), None, "none (--preprocessed)"),
            names,
        )
    recorded = info.get("preprocessing")
    if recorded is None:
        raise ValueError(
            f"the run in {args.run_dir} records no input preprocessing, so raw inputs cannot be prepared as its data "
            "were: give inputs already preprocessed as the run's were and pass --preprocessed"
        )
    prep = Preprocessing(
        float(recorded["scale"]),
        tuple(recorded["mean"]),
        tuple(recorded["std"]),
        recorded.get("raw", "8-bit pixel values"),
    )
    prep.check_raw(raw, str(path))
    data = InputData(prep.apply(raw), labels, str(path), None, f"the run's: {prep.describe()}")
    return model, config, data, names
