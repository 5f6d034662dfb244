"""A trained mask run's model on images: read them as the run read its own, predict masks, score
them against given masks, and write the masks back at each image's own size.

``l2b predict``, ``l2b evaluate`` and ``l2b relabel`` call these for runs whose task is
``segmentation`` (data.json). Images come from any layout :func:`read_mask_inputs` takes, with or
without masks; predictions are made at the run's image size and resized back (the class
probabilities, bilinear, then the arg-max) to each image's stored size, so a written mask lies
on its image.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .data import (
    IMAGE_SUFFIXES,
    VOLUME_SUFFIXES,
    image_size_of,
    read_image,
    read_volume,
    volume_slices,
)
from .dataset import read_mask_source
from .metrics import case_dice, dice_per_image, iou_per_image
from .outputs import mask_stem, save_mask

__all__ = ["MaskInputs", "mask_scores", "predict_masks", "read_mask_inputs", "write_masks"]


@dataclass(frozen=True)
class MaskInputs:
    """Images for a mask model. images (N, C, H, W) float32 in [0, 1] at the model's size;
    paths (N,) (``vol.nii.gz#12`` for a slice); sizes (N, 2) each image's stored (H, W);
    cases (N,); masks (N, H, W) at the model's size where the source has them, else None."""

    images: np.ndarray
    paths: tuple[str, ...]
    sizes: np.ndarray
    cases: np.ndarray
    masks: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return len(self.images)


def _has_masks(root: Path) -> bool:
    """Whether `root` is a layout with masks (:data:`l2b.segmentation.dataset.LAYOUTS`)."""
    if root.is_file():
        if root.suffix.lower() != ".csv":
            return False
        with root.open(newline="") as f:
            return "mask" in (csv.DictReader(f).fieldnames or [])
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return True
    return root.is_dir() and any("_segmentation." in p.name.lower() for p in root.iterdir())


def read_mask_inputs(source: str | os.PathLike, *, image_size: int | None, channels: int) -> MaskInputs:
    """Images (and their masks, where `source` has them) as a run with `image_size` and
    `channels` read its own: a mask layout (:func:`l2b.segmentation.dataset.read_mask_source`),
    or images alone: one image or volume file, a folder of them (or its ``images/``), or a CSV
    with an ``image`` column."""
    root = Path(source)
    if not root.exists():
        raise ValueError(f"{root} does not exist")
    size = None if image_size is None else (int(image_size), int(image_size))
    if _has_masks(root):
        data = read_mask_source(root, image_size=image_size)
        if data.images.shape[1] != channels:  # 2-D files are read as RGB; a 1-channel run sees grey
            data.images = data.images.mean(axis=1, keepdims=True) if channels == 1 else data.images
        return MaskInputs(
            data.images,
            tuple(data.paths),
            data.sizes,
            np.asarray(data.cases),
            data.masks,
            str(root),
        )
    files = _image_files(root)
    volumes = [f for f in files if f.lower().endswith(VOLUME_SUFFIXES)]
    if volumes and len(volumes) != len(files):
        raise ValueError(f"{root} mixes volumes and 2-D images; give one kind")
    if volumes:
        xs, paths, sizes, cases = [], [], [], []
        for f in volumes:
            vol = read_volume(Path(f))
            xs.append(volume_slices(vol, size))
            name = Path(f).name
            paths += [f"{f}#{i}" for i in range(vol.shape[0])]
            sizes += [vol.shape[1:]] * vol.shape[0]
            cases += [name] * vol.shape[0]
        images = np.concatenate(xs)
    else:
        images = np.stack([read_image(f, size, channels) for f in files])
        paths, sizes, cases = files, [image_size_of(f) for f in files], [Path(f).stem for f in files]
        if size is None and len(set(sizes)) > 1:
            raise ValueError(f"{root}: images of different sizes; the run resizes them only when it has image_size")
    return MaskInputs(
        images, tuple(paths), np.asarray(sizes, np.int64).reshape(-1, 2), np.asarray(cases), None, str(root)
    )


def _image_files(root: Path) -> list[str]:
    if root.is_file() and root.suffix.lower() == ".csv":
        with root.open(newline="") as f:
            reader = csv.DictReader(f)
            if "image" not in (reader.fieldnames or []):
                raise ValueError(f"{root}: no column 'image' (columns: {', '.join(reader.fieldnames or [])})")
            rows = [r["image"] for r in reader]
        files = [str(p if Path(p).is_absolute() else root.parent / p) for p in rows]
        missing = [f for f in files if not Path(f).is_file()]
        if missing:
            raise ValueError(f"{root}: image {missing[0]} does not exist")
        return files
    if root.is_file():
        return [str(root)]
    folder = root / "images" if (root / "images").is_dir() else root
    suffixes = IMAGE_SUFFIXES + VOLUME_SUFFIXES
    files = [str(p) for p in sorted(folder.iterdir()) if p.name.lower().endswith(suffixes)]
    if not files:
        raise ValueError(f"{folder}: no images ({', '.join(suffixes)})")
    return files


@torch.no_grad()
def predict_masks(model: torch.nn.Module, images: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
    """Class probabilities (N, K, H, W) float32 of `model` (eval mode) on images (N, C, H, W)."""
    first = next(model.parameters())
    was = model.training
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.as_tensor(images[i : i + batch_size], dtype=first.dtype, device=first.device)
        out.append(torch.softmax(model(x).float(), dim=1).cpu())
    model.train(was)
    return torch.cat(out).numpy() if out else np.zeros((0, 0, *images.shape[2:]), np.float32)


def at_size(probs: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """One image's class probabilities (K, H, W) as a mask (h, w) at `size`: the probabilities
    resized (bilinear), then the arg-max."""
    p: Tensor = torch.as_tensor(probs, dtype=torch.float32)[None]
    if tuple(p.shape[2:]) != tuple(size):
        p = torch.nn.functional.interpolate(p, size=tuple(int(s) for s in size), mode="bilinear", align_corners=False)
    return p[0].argmax(0).numpy().astype(np.int64)


def mask_scores(probs: np.ndarray, masks: np.ndarray, cases: np.ndarray) -> dict[str, float]:
    """Dice and IoU of the predicted masks against `masks` (N, H, W) at the model's size: per
    image (mean over foreground classes) averaged over the images, and Dice per case (3-D:
    over all of a case's slices at once) averaged over the cases."""
    k = probs.shape[1]
    pred = probs.argmax(1)
    per_case = case_dice(pred, masks, cases, k)
    return {
        "dice": float(dice_per_image(pred, masks, k).mean()),
        "iou": float(iou_per_image(pred, masks, k).mean()),
        "case_dice": float(np.mean(list(per_case.values()))),
        "pixel_accuracy": float((pred == masks).mean()),
        "images": int(len(masks)),
        "cases": len(per_case),
    }


def write_masks(
    probs: np.ndarray,
    paths: Sequence[str],
    sizes: np.ndarray,
    out_dir: str | os.PathLike,
    *,
    class_names: Sequence[str],
) -> list[dict[str, object]]:
    """Each predicted mask as an index PNG at its image's stored size in `out_dir` (named after
    the image; a volume slice ``case.nii.gz#12`` as ``case_012.png``), and for volume input one
    NIfTI mask volume per case (``<case>_mask.nii.gz``, needs nibabel). Returns a row per image:
    image, mask file, size, and the share of its pixels per class."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, seen, volumes = [], set(), {}
    for prob, path, size in zip(probs, paths, sizes):
        mask = at_size(prob, size)
        stem = mask_stem(str(path))
        if stem in seen:
            raise ValueError(f"two images would write the mask {out / stem}.png ({path})")
        seen.add(stem)
        save_mask(mask, out / f"{stem}.png")
        base, _, part = str(path).partition("#")
        if part:
            volumes.setdefault(base, {})[int(part)] = mask
        share = np.bincount(mask.reshape(-1), minlength=len(class_names)) / mask.size
        rows.append(
            {
                "path": str(path),
                "mask": str(out / f"{stem}.png"),
                "height": int(size[0]),
                "width": int(size[1]),
                **{f"share_{n}": f"{s:.6g}" for n, s in zip(class_names, share)},
            }
        )
    if volumes:
        _write_volumes(volumes, out, rows)
    return rows


def _write_volumes(volumes: dict[str, dict[int, np.ndarray]], out: Path, rows: list[dict[str, object]]) -> None:
    """One mask volume per input volume, slices along the last axis (NIfTI's), with the input's
    affine; needs nibabel (the PNG slices are written either way)."""
    try:
        import nibabel
    except ImportError:
        raise ValueError(
            "writing NIfTI mask volumes needs nibabel: pip install 'l2b[medical]' (the PNG slices are written)"
        ) from None
    for base, slices in volumes.items():
        stack = np.stack([slices[i] for i in sorted(slices)], axis=-1).astype(np.uint8)  # (H, W, S)
        affine = np.eye(4)
        if base.lower().endswith((".nii", ".nii.gz")):
            affine = nibabel.load(base).affine
        target = out / f"{mask_stem(base)}_mask.nii.gz"
        nibabel.save(nibabel.Nifti1Image(stack, affine), str(target))
        for row in rows:
            if str(row["path"]).partition("#")[0] == base:
                row["volume_mask"] = str(target)
