"""`l2b predict`: class probabilities of a finished run's model, written as CSV."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from ..training.inference import as_model_inputs
from ..training.trainer import predict_proba
from .evaluate import add_data_arguments, load


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="predict with a trained run's model, to CSV",
        description="Rebuild a finished run's model (config.yaml, model.pt) and write one CSV row per example: "
        "index, predicted_label, probability_0 .. probability_{K-1}.",
    )
    add_data_arguments(p, required=True)
    p.add_argument("--out", type=Path, required=True, metavar="FILE.csv", help="CSV file to write")


def run(args: argparse.Namespace) -> int:
    model, _, data = load(args)
    dev = next(model.parameters()).device
    probs = predict_proba(model, as_model_inputs(data.inputs, dev)).cpu().numpy()
    pred = probs.argmax(axis=1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "predicted_label", *(f"probability_{k}" for k in range(probs.shape[1]))])
        for i, (label, row) in enumerate(zip(pred, probs)):
            w.writerow([i, int(label), *(f"{p:.6g}" for p in row)])
    report = {"out": str(args.out), "data": data.source, "split": data.split, "examples": len(data)}
    if data.preprocessing is not None:
        report["preprocessing"] = data.preprocessing
    if data.labels is not None:
        report["accuracy"] = float(np.mean(pred == data.labels))
    print(json.dumps(report, indent=2))
    return 0
