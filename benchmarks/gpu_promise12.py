"""The L2B segmentation variant on PROMISE12 (prostate MRI), a short run on one GPU (< 10 minutes).

    python benchmarks/gpu_promise12.py --data-root DIR     # DIR: PROMISE12's training cases (CaseNN.mhd,
                                                           # CaseNN_segmentation.mhd, with their .raw)
    python benchmarks/gpu_promise12.py --tiny              # the CPU check, on synthetic volumes

PROMISE12 is not on this machine: the script is ready for one that has it and a GPU. It needs the
medical extra (``pip install 'l2b[medical]'``) to read the volumes. Run from the repository root
with l2b installed or ``PYTHONPATH=src``.

The published setting (:data:`PAPER`, each value with its source in the L2B code,
github.com/yuyinzhou/L2B, L2B_segmentation): 2-D slices resized to 144 x 144; 37 noisy training
cases, 3 clean meta cases, 10 test cases; the paper's mask noise (``l2b.segmentation``, ``paper``);
UNet++ with 64 base filters; L2B per pixel with the five-view pseudo-mask and the extra step on
the meta batch; SGD lr 0.005, momentum 0.9, weight decay 5e-4, lr x 20 / (epoch + 20), 100
epochs, batch 1 image (x 5 views), meta batch 2, gradient clipping 0.2; Dice per 3-D case.

Here: the cases split 37 / 3 / 10 by a seeded shuffle (published: PROMISE12_data_split.mat); batch
2 images (x 5 views: l2b.fit refuses batches of one image with BatchNorm) and meta batch 2;
l2b's cosine schedule instead of 20 / (epoch + 20); Dice per case at 144 x 144 (published: at the
original resolution); CE and L2B side by side, each for as many epochs as fit half of
``--budget-s`` by a timed first epoch. Writes ``gpu_promise12.{json,md}`` into ``--results``.
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

PAPER: dict[str, Any] = {
    "image_size": 144,  # train.py --size
    "cases": (37, 3, 10),  # noisy training, clean meta, test (the paper; data_split/PROMISE12_data_split.mat)
    "noise": "paper",  # data_preprocess.py: rotation, erosion / dilation, bounding ellipse
    "model": ("unetpp", {"width": 64, "depth": 4}),  # Unetplpl_2D.py, 64 base filters
    "lr": 0.005,  # train.py --lr
    "momentum": 0.9,  # train.py optim.SGD
    "weight_decay": 5e-4,  # train.py --wd
    "epochs": 100,  # train.py --num_epochs
    "batch_size": 1,  # train.py --train_batch_size (x 5 views)
    "meta_batch_size": 2,  # train.py --meta_batch_size
    "clip_grad": 0.2,  # train.py --clipping_norm
    "l2b": {"pseudo_views": 5, "meta_step": True},  # get_aug_image / avg_pseudo_label; the meta-batch step
}


def split_cases(cases: np.ndarray, counts: tuple[int, int, int], seed: int) -> tuple[np.ndarray, ...]:
    """Slice masks (N,) of train / meta / test cases: the distinct cases shuffled by `seed` and cut
    into `counts` (scaled down proportionally when there are fewer cases)."""
    names = np.array(sorted(set(cases.tolist())))
    order = np.random.default_rng(seed).permutation(len(names))
    total = sum(counts)
    n_meta = max(1, round(len(names) * counts[1] / total))
    n_test = max(1, round(len(names) * counts[2] / total))
    meta, test = set(names[order[:n_meta]]), set(names[order[n_meta : n_meta + n_test]])
    return (
        np.array([c not in meta and c not in test for c in cases]),
        np.array([c in meta for c in cases]),
        np.array([c in test for c in cases]),
    )


def _synthetic_volumes(root: Path, cases: int) -> Path:
    """--tiny: MetaImage volumes of synthetic shapes, PROMISE12's layout in one folder."""
    import SimpleITK as sitk

    from l2b.segmentation import make_shapes

    root.mkdir(parents=True, exist_ok=True)
    for c in range(cases):
        d = make_shapes(4, size=32, seed=c)
        sitk.WriteImage(sitk.GetImageFromArray((d.images[:, 0] * 400).astype(np.int16)), str(root / f"Case{c:02d}.mhd"))
        sitk.WriteImage(sitk.GetImageFromArray(d.masks.astype(np.uint8)), str(root / f"Case{c:02d}_segmentation.mhd"))
    return root


def run(method: str, data: dict[str, Any], args, device: str, budget_s: float) -> dict[str, Any]:
    import l2b
    from l2b.models import create_model
    from l2b.segmentation import case_dice
    from l2b.training.batches import TensorData
    from l2b.training.trainer import predict_proba

    name, options = PAPER["model"]
    if args.tiny:
        options = {"width": 4, "depth": 2}
    x, y = data["train"]
    shape = tuple(x.shape[1:])

    def fit(epochs: int):
        torch.manual_seed(args.seed)
        model = create_model(name, num_classes=2, in_shape=shape, **options)
        extra = PAPER["l2b"] if method == "l2b" else {}
        started = time.perf_counter()
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        out = l2b.fit(
            model,
            (x, y),
            data["meta"],
            test=data["test"][:2],
            task="segmentation",
            method=method,
            epochs=epochs,
            warmup_epochs=0,
            batch_size=2,
            meta_batch_size=PAPER["meta_batch_size"],
            lr=PAPER["lr"],
            momentum=PAPER["momentum"],
            weight_decay=PAPER["weight_decay"],
            clip_grad=PAPER["clip_grad"],
            device=device,
            seed=args.seed,
            **extra,
        )
        return model, out, time.perf_counter() - started

    _, _, first = fit(1)
    epochs = max(1, min(PAPER["epochs"], int(budget_s // max(first, 1e-6))))
    model, out, seconds = fit(epochs)
    tx, ty, tcases = data["test"]
    pred = predict_proba(model, TensorData(tx.to(device), ty.to(device))).argmax(1).cpu()
    per_case = case_dice(pred, ty, tcases, 2)
    return {
        "method": method,
        "epochs": epochs,
        "seconds_first_epoch": round(first, 1),
        "seconds": round(seconds, 1),
        "seconds_per_epoch": round(seconds / epochs, 2),
        "published_schedule_minutes": round(PAPER["epochs"] * seconds / epochs / 60, 1),
        "dice_per_case": per_case,
        "mean_case_dice": float(np.mean(list(per_case.values()))),
        "test_dice_at_best_meta": next(r for r in out.history if r["epoch"] == out.best_epoch).get("test_dice"),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", help="the folder of PROMISE12's training cases (.mhd + .raw)")
    p.add_argument("--budget-s", type=float, default=480.0, help="both runs' time, about (each gets half)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results", type=Path, default=None, help="default: benchmarks/results (--tiny: a temp folder)")
    p.add_argument("--tiny", action="store_true", help="CPU check on synthetic volumes")
    args = p.parse_args(argv)
    from l2b.segmentation import make_mask_noise, read_volumes

    device = "cpu" if args.tiny else "cuda"
    if not args.tiny and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run on a GPU machine, or pass --tiny for the CPU check")
    if not args.tiny and not args.data_root:
        p.error("--data-root is required (PROMISE12's training cases)")
    results = args.results or (Path(tempfile.mkdtemp(prefix="gpu_promise12-")) if args.tiny else common.RESULTS)
    with tempfile.TemporaryDirectory() as tmp:
        root = _synthetic_volumes(Path(tmp) / "cases", 10) if args.tiny else Path(args.data_root)
        vols = read_volumes(root, root, image_size=32 if args.tiny else PAPER["image_size"])
    train_rows, meta_rows, test_rows = split_cases(vols.cases, PAPER["cases"], args.seed)
    noisy = make_mask_noise(PAPER["noise"], vols.masks[train_rows], seed=args.seed)

    def tensors(rows, masks=None):
        return (
            torch.from_numpy(vols.images[rows]),
            torch.from_numpy(vols.masks[rows] if masks is None else masks),
        )

    data = {
        "train": tensors(train_rows, noisy.masks),
        "meta": tensors(meta_rows),
        "test": (*tensors(test_rows), vols.cases[test_rows]),
    }
    rows = [run(m, data, args, device, args.budget_s / 2) for m in ("ce", "l2b")]
    result = {
        "command": common.command(__file__, sys.argv[1:] if argv is None else argv),
        "environment": common.environment(torch.device(device)),
        "paper": {k: (list(v) if isinstance(v, tuple) else v) for k, v in PAPER.items()},
        "cases": {
            "train": len(set(vols.cases[train_rows])),
            "meta": len(set(vols.cases[meta_rows])),
            "test": len(set(vols.cases[test_rows])),
        },  # fmt: skip
        "realised_noise_dice": noisy.mean_dice,
        "rows": rows,
    }
    results.mkdir(parents=True, exist_ok=True)
    common.write_json(results / "gpu_promise12.json", result)
    lines = [
        "# The L2B segmentation variant on PROMISE12: a short run",
        "",
        f"Command: `{result['command']}`  ",
        common.machine_line(result["environment"]) + "  ",
        f"Cases: {result['cases']}; realised noise: mean Dice {noisy.mean_dice:.3f} of the noisy training masks.",
        "",
        *common.table(
            ["method", "epochs", "s / epoch", "published 100 epochs (min)", "mean Dice per test case", "peak GPU GiB"],
            (
                [
                    r["method"],
                    r["epochs"],
                    r["seconds_per_epoch"],
                    r["published_schedule_minutes"],
                    f"{100 * r['mean_case_dice']:.1f}",
                    r["peak_gpu_memory_gib"] or "—",
                ]  # fmt: skip
                for r in rows
            ),
        ),
    ]
    common.write_lines(results / "gpu_promise12.md", lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
