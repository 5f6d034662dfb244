"""`l2b predict`: class probabilities of a finished run's model, written as CSV."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from .evaluate import add_data_arguments, load


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="predict with a trained run's model, to CSV",
        description="Rebuild a finished run's model (config.yaml, model.pt) and write one CSV row per example: "
        "index, path (image files), predicted_label (class name), label_quality-style confidence and one "
        "probability column per class (probability_<class name>). For a run on masks (--data masks), --out is "
        "a folder: the predicted masks as index PNGs at each image's own size (and NIfTI volumes for volume input) "
        "in OUT/masks, OUT/predictions.csv, and Dice where the input has masks.",
    )
    add_data_arguments(p, required=True)
    p.add_argument(
        "--out", type=Path, required=True, metavar="FILE.csv", help="CSV file to write (a mask run: a new folder)"
    )


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..training.inference import as_model_inputs
    from ..training.trainer import predict_proba
    from .masks import is_mask_run, predict
    from .outputs import refuse_foreign_file, refuse_run_file

    if is_mask_run(args.run_dir):
        return predict(args)
    if args.out.is_dir():
        raise ValueError(f"--out {args.out} is a directory; give the path of the CSV file to write")
    refuse_run_file(args.out, args.run_dir, option="--out")
    refuse_foreign_file(args.out, option="--out")
    model, _, data, names = load(args)
    dev = next(model.parameters()).device
    probs = predict_proba(model, as_model_inputs(data.inputs, dev)).cpu().numpy()
    pred = probs.argmax(axis=1)
    names = names if names is not None else [str(k) for k in range(probs.shape[1])]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.writer(f)
        given = data.labels is not None and data.paths is not None  # image files in class folders / a labelled list
        head = ["index", *(["path"] if data.paths is not None else []), "predicted_label", "confidence"]
        if given:
            head.append("given_label")
        w.writerow([*head, *(f"probability_{n}" for n in names)])
        for i, (label, row) in enumerate(zip(pred, probs)):
            cells = [i, *([data.paths[i]] if data.paths is not None else []), names[int(label)], f"{row[label]:.6g}"]
            if given:
                cells.append(names[int(data.labels[i])])
            w.writerow([*cells, *(f"{p:.6g}" for p in row)])
    report = {"out": str(args.out), "data": data.source, "split": data.split, "examples": len(data)}
    if data.preprocessing is not None:
        report["preprocessing"] = data.preprocessing
    if data.labels is not None:
        report["accuracy"] = float(np.mean(pred == data.labels))
    print(json.dumps(report, indent=2))
    return 0
