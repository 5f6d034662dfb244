"""`l2b predict`, `evaluate` and `relabel` for a run whose labels are masks (data.json's task is
``segmentation``): the same commands, with masks written as files and scored by Dice."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any


def is_mask_run(run_dir: Path) -> bool:
    """Whether the run in `run_dir` trained on masks."""
    from ..rundir import read_data_info

    info = read_data_info(run_dir)
    return info is not None and info.get("task") == "segmentation"


def _model(args: argparse.Namespace):
    """(model, config, data.json) of the run."""
    from ..rundir import read_data_info
    from ..training import resolve_device
    from ..training.inference import load_trained_model

    info = read_data_info(args.run_dir)
    model, config = load_trained_model(
        args.run_dir,
        device=resolve_device(args.device),
        num_classes=int(info["num_classes"]),
        in_shape=tuple(info["example_shape"]),
    )
    return model, config, info


def _inputs(args: argparse.Namespace, config, info: dict[str, Any], *, need_masks: bool):
    """The images to predict on: --data (any mask layout, or images alone), else the run's own
    checked test set (trusted_test, or the whole cases its split held out)."""
    import numpy as np

    from ..segmentation.inference import MaskInputs, read_mask_inputs
    from ..training.prepare import load_run_data

    size, channels = config.data_options.get("image_size"), int(info["example_shape"][0])
    if args.data is not None:
        data = read_mask_inputs(args.data, image_size=size, channels=channels)
    elif config.trusted_test is not None:
        data = read_mask_inputs(config.trusted_test, image_size=size, channels=channels)
    elif config.test_checked and config.test_fraction > 0:
        _, test = load_run_data(config)  # the same whole cases the run held out
        data = MaskInputs(test.inputs, test.paths, test.sizes, test.cases, test.labels, "the run's test cases")
    else:
        raise ValueError(
            f"the run in {args.run_dir} has no checked test set (its masks are unchecked and no trusted_test was "
            "given): pass --data with images (and, to score them, their checked masks)"
        )
    if need_masks and data.masks is None:
        raise ValueError(
            f"{data.source} has no masks to score against: give images/ with masks/, or an image,mask list"
        )
    if data.images.shape[1:] != tuple(info["example_shape"]):
        raise ValueError(
            f"{data.source}: images of shape {data.images.shape[1:]}, the run's model takes "
            f"{tuple(info['example_shape'])}"
        )
    if data.masks is not None and int(np.max(data.masks, initial=0)) >= int(info["num_classes"]):
        raise ValueError(
            f"{data.source}: a mask holds class {int(data.masks.max())}; the run has {info['num_classes']}"
        )
    return data


def predict(args: argparse.Namespace) -> int:
    """Predicted masks as index PNGs (and NIfTI volumes for volume input) at each image's own
    size in --out (a folder), with predictions.csv; Dice where the input has masks."""
    from ..segmentation.inference import mask_scores, predict_masks, write_masks
    from .outputs import refuse_run_file

    out = Path(args.out)
    if out.suffix.lower() == ".csv" or (out.exists() and not out.is_dir()):
        raise ValueError(f"--out {out}: a mask run writes a folder of mask files; give a folder (new or empty)")
    if out.is_dir() and any(out.iterdir()):
        raise FileExistsError(f"--out {out} is not empty; give a new folder")
    refuse_run_file(out, args.run_dir, option="--out")
    model, config, info = _model(args)
    data = _inputs(args, config, info, need_masks=False)
    probs = predict_masks(model, data.images)
    names = [str(n) for n in info["class_names"]]
    rows = write_masks(probs, data.paths, data.sizes, out / "masks", class_names=names)
    with (out / "predictions.csv").open("w", newline="") as f:
        fields = list(dict.fromkeys(k for row in rows for k in row))
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    report: dict[str, Any] = {"out": str(out), "data": data.source, "images": len(data)}
    if data.masks is not None:
        report.update(mask_scores(probs, data.masks, data.cases))
    print(json.dumps(report, indent=2))
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """Dice, IoU, Dice per case and pixel accuracy of the run's model against checked masks."""
    from ..segmentation.inference import mask_scores, predict_masks

    model, config, info = _model(args)
    data = _inputs(args, config, info, need_masks=True)
    scores = mask_scores(predict_masks(model, data.images), data.masks, data.cases)
    print(json.dumps({"data": data.source, **scores}, indent=2))
    return 0


def relabel(args: argparse.Namespace) -> int:
    """Corrected masks: every flagged mask (Dice against the prediction below --threshold) as the
    selected model's prediction, at its image's size, in --out (a folder: masks/ and
    relabelled.csv); the others are listed unchanged."""
    import numpy as np

    from ..reports import load_per_example
    from ..rundir import read_files
    from ..segmentation.inference import at_size
    from ..segmentation.metrics import dice_per_image
    from ..segmentation.outputs import mask_stem, save_mask
    from ..tasks import get_task

    threshold = get_task("segmentation").issue_threshold if args.threshold is None else args.threshold
    if args.copy_to is not None:
        raise ValueError("--copy-to sorts images into class folders; a mask run writes corrected masks to --out")
    out = args.out if args.out is not None else args.run_dir / "relabelled"
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"--out {out} exists and is not an empty folder; give a new folder")
    pe = load_per_example(args.run_dir)
    files = read_files(args.run_dir) or {}
    masks = read_files(args.run_dir, column="given_label") or {}
    prob = np.asarray(pe["pred_prob"], np.float32)
    given = np.asarray(pe["given_label"], np.int64)
    quality, _, _ = get_task("segmentation").label_quality(prob, given)  # Dice against the prediction
    flagged = quality < threshold
    (out / "masks").mkdir(parents=True, exist_ok=True)
    with (out / "relabelled.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "path", "given_mask", "mask", "quality", "changed"])
        for j, i in enumerate(np.asarray(pe["index"]).tolist()):
            path = files.get(int(i), str(i))
            mask = masks.get(int(i), "")
            if flagged[j]:
                target = out / "masks" / f"{mask_stem(path)}.png"
                save_mask(at_size(prob[j], pe["image_size"][j]), target)
                mask = str(target)
            w.writerow([int(i), path, masks.get(int(i), ""), mask, f"{quality[j]:.6g}", bool(flagged[j])])
    print(
        f"changed {int(flagged.sum())} of {len(flagged)} masks (Dice against the prediction below {threshold:g}); "
        f"wrote {out / 'relabelled.csv'} and the corrected masks in {out / 'masks'}"
    )
    clean = np.asarray(pe["clean_label"], np.int64)
    if clean.shape == given.shape and (clean >= 0).all():  # the truth is known (simulated noise): score it
        fixed = np.where(flagged[:, None, None], prob.argmax(1), given)
        before = dice_per_image(given, clean, prob.shape[1]).mean(1).mean()
        after = dice_per_image(fixed, clean, prob.shape[1]).mean(1).mean()
        print(f"true masks known: mean Dice of the masks against them {float(before):.3f} -> {float(after):.3f}")
    return 0
