"""What a segmentation user gets back: suspect masks by file, corrected masks, and overlays.

- :func:`mask_issues`: each given mask's quality (its Dice against the selected model's
  prediction), the share of its pixels the model labels otherwise, and whether it is flagged,
  most suspect first, named by file;
- :func:`write_mask_issues`: the same as ``mask_issues.csv``;
- :func:`save_masks`: masks as index PNGs (predicted masks, or the corrected ones of the flagged
  images), one file per image named after its source;
- :func:`overlay_figure`: image, given mask, prediction and per-pixel weight map for the
  worst-scored images, one row each.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..tasks import Segmentation
from .metrics import dice_per_image

__all__ = ["mask_issues", "mask_stem", "overlay_figure", "save_mask", "save_masks", "write_mask_issues"]

PALETTE = [0, 0, 0, 230, 25, 75, 60, 180, 75, 255, 225, 25, 0, 130, 200, 245, 130, 48, 145, 30, 180, 70, 240, 240]


def mask_issues(
    probs: np.ndarray,
    given: np.ndarray,
    paths: Sequence[str],
    *,
    threshold: float | None = None,
    class_names: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """One row per image, most suspect first: ``path``, ``quality`` (the given mask's Dice against
    the predicted one, mean over foreground classes), ``wrong_share`` (the share of pixels whose
    predicted class differs from the given one), ``worst_class`` (the foreground class of lowest
    Dice, by name when `class_names` are given) and ``is_issue`` (quality below `threshold`, by
    default :attr:`l2b.tasks.Segmentation.issue_threshold`).

    probs : (N, K, H, W) the selected model's class probabilities; given : (N, H, W) the masks
    trained on; paths : N file names.
    """
    probs, given = np.asarray(probs), np.asarray(given)
    if probs.ndim != 4 or given.shape != (probs.shape[0], *probs.shape[2:]):
        raise ValueError(
            f"probabilities (N, K, H, W) and masks (N, H, W) expected, got {probs.shape} and {given.shape}"
        )
    if len(paths) != len(given):
        raise ValueError(f"{len(paths)} paths for {len(given)} masks")
    k = probs.shape[1]
    if threshold is None:
        threshold = Segmentation.issue_threshold
    predicted = probs.argmax(axis=1)
    dice = dice_per_image(given, predicted, k).numpy()  # (N, K - 1)
    quality = dice.mean(axis=1)
    wrong = (predicted != given).reshape(len(given), -1).mean(axis=1)
    rows = []
    for i in np.argsort(quality, kind="stable"):
        worst = int(np.argmin(dice[i])) + 1
        rows.append(
            {
                "path": str(paths[i]),
                "index": int(i),
                "quality": float(quality[i]),
                "wrong_share": float(wrong[i]),
                "worst_class": class_names[worst] if class_names is not None else worst,
                "is_issue": bool(quality[i] < threshold),
            }
        )
    return rows


def write_mask_issues(rows: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """:func:`mask_issues`'s rows as a CSV file (``mask_issues.csv``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        fields = ["path", "index", "quality", "wrong_share", "worst_class", "is_issue"]
        fields += [k for k in (rows[0] if rows else {}) if k not in fields]  # e.g. a run's mask_path
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def save_masks(masks: np.ndarray, names: Sequence[str], out_dir: str | os.PathLike) -> list[Path]:
    """Masks (N, H, W) of class indices as index PNGs (a palette for viewing, the pixel values
    the classes) in `out_dir`, one per image, named after `names` (a source path's stem; a
    volume slice ``case.nii.gz#12`` becomes ``case_012.png``). Returns the files written."""
    masks = np.asarray(masks)
    if masks.ndim != 3 or len(names) != len(masks):
        raise ValueError(f"masks (N, H, W) and N names expected, got {masks.shape} and {len(names)} names")
    if masks.size and (masks.min() < 0 or masks.max() > 255):
        raise ValueError("masks must hold class indices 0..255 to be written as PNG")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written, seen = [], set()
    for mask, name in zip(masks, names):
        stem = mask_stem(str(name))
        if stem in seen:
            raise ValueError(f"two masks would be written to {stem}.png")
        seen.add(stem)
        written.append(save_mask(mask, out / f"{stem}.png"))
    return written


def save_mask(mask: np.ndarray, path: str | os.PathLike) -> Path:
    """One mask (H, W) of class indices 0..255 as an index PNG: the pixel values are the classes,
    a palette colours them for viewing."""
    from PIL import Image

    im = Image.fromarray(np.asarray(mask).astype(np.uint8), mode="P")
    im.putpalette(PALETTE + [0] * (768 - len(PALETTE)))
    im.save(path)
    return Path(path)


def mask_stem(name: str) -> str:
    """The file stem a mask of image `name` is written under: the image's stem, and for a volume
    slice ``case.nii.gz#12`` the case and the slice (``case_012``)."""
    base, _, slice_id = name.partition("#")
    stem = Path(base).name
    for suffix in (".nii.gz", ".nii", ".mhd", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return f"{stem}_{int(slice_id):03d}" if slice_id else stem


def overlay_figure(
    images: np.ndarray,
    given: np.ndarray,
    predicted: np.ndarray,
    path: str | os.PathLike,
    *,
    weights: Mapping[str, np.ndarray] | None = None,
    titles: Sequence[str] | None = None,
) -> Path:
    """One row per image: the image, its given mask over it, the prediction over it and, for each
    of `weights` (a panel's title -> maps (N, H, W), say the per-pixel L2B weight of the given
    mask and of the pseudo-mask), the weight map, all maps on one colour scale from 0 (black) to
    the 99th percentile of the shown maps, NaN (not weighed) blank. images (N, C, H, W) in
    [0, 1]; given, predicted (N, H, W)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, weights = len(given), dict(weights or {})
    maps = [np.asarray(w, dtype=np.float32) for w in weights.values()]
    shown_values = np.concatenate([m[np.isfinite(m)] for m in maps]) if maps else np.zeros(0)
    top = float(np.percentile(shown_values, 99)) if shown_values.size else 1.0
    cols = 3 + len(weights)
    fig, axes = plt.subplots(n, cols, figsize=(2.2 * cols, 2.2 * n), squeeze=False)
    try:
        for i in range(n):
            img = np.asarray(images[i])
            shown = img[0] if img.shape[0] == 1 else np.moveaxis(img[:3], 0, -1)
            panels = [(shown, None, "image"), (shown, given[i], "given"), (shown, predicted[i], "predicted")]
            for ax, (base, mask, label) in zip(axes[i], panels):
                ax.imshow(base, cmap="gray" if base.ndim == 2 else None)
                if mask is not None:
                    ax.imshow(np.ma.masked_equal(mask, 0), cmap="autumn", alpha=0.45, vmin=0, vmax=max(1, mask.max()))
                ax.set_title(label if titles is None else f"{label}: {titles[i]}", fontsize=7)
                ax.axis("off")
            for ax, (label, m) in zip(axes[i][3:], zip(weights, maps)):
                drawn = ax.imshow(m[i], cmap="magma", vmin=0.0, vmax=max(top, 1e-6))
                ax.set_title(label, fontsize=7)
                ax.axis("off")
                fig.colorbar(drawn, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path
