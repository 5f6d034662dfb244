"""Segmentation data in the formats users have: image and mask folders, CSV lists of pairs, and
3-D volumes (NIfTI, MetaImage) sliced to 2-D with their case kept.

Every reader returns a :class:`SegmentationData`: images (N, C, H, W) float32 in [0, 1] (before
the run's normalisation), masks (N, H, W) int64 class indices, the file each came from, the case
(volume) each slice belongs to, and, where the user has them, a second set of masks (the given,
noisy ones beside checked ones). Masks are read as index images (PNG "P" or "L" mode holding
0..K-1) or as 0/255 binaries (0 background, 255 foreground); any other value is refused with
the file, the values found and what was expected. Resizing, when asked, is bilinear for images
and nearest-neighbour for masks.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "SegmentationData",
    "image_size_of",
    "read_image",
    "read_mask",
    "read_mask_csv",
    "read_mask_folder",
    "read_volume",
    "read_volumes",
    "volume_slices",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".mhd")


@dataclass
class SegmentationData:
    """Images and masks, with where each came from.

    Attributes
    ----------
    images : np.ndarray, shape (N, C, H, W) float32 in [0, 1]
    masks : np.ndarray, shape (N, H, W) int64 class indices
    paths : list of str, length N
        The image file (or volume file and slice, ``case.nii.gz#12``) of each example.
    mask_paths : list of str, length N
    cases : np.ndarray, shape (N,) of str
        The case (3-D volume, or the image itself for 2-D data) of each example; data splits keep
        a case whole.
    other_masks : np.ndarray or None, shape (N, H, W)
        A second mask per image where the user gave one (e.g. the noisy annotation beside a
        checked one).
    num_classes : int
        K: one more than the largest class index of any mask read.
    sizes : np.ndarray or None, shape (N, 2) int
        Each image's (height, width) as stored, before any resizing: predicted masks are written
        back at it.
    """

    images: np.ndarray
    masks: np.ndarray
    paths: list[str]
    mask_paths: list[str]
    cases: np.ndarray
    other_masks: np.ndarray | None = None
    num_classes: int = field(default=2)
    sizes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.masks)


def _pil():
    from PIL import Image

    return Image


def _mask_values(values: np.ndarray, path: str, max_classes: int) -> np.ndarray:
    """Class indices from a mask's pixel values: 0/255 binaries become 0/1; index masks stay."""
    found = np.unique(values)
    if set(found.tolist()) <= {0, 255} and 255 in found:
        return (values == 255).astype(np.int64)
    if found.max() < max_classes:
        return values.astype(np.int64)
    shown = ", ".join(str(int(v)) for v in found[:8]) + (" ..." if len(found) > 8 else "")
    raise ValueError(
        f"mask {path}: values {{{shown}}} are neither class indices 0..{max_classes - 1} nor a 0/255 binary "
        "mask (an anti-aliased or JPEG-compressed mask has in-between values: save masks as PNG without smoothing)"
    )


def read_mask(path: str | os.PathLike, *, size: tuple[int, int] | None = None, max_classes: int = 32) -> np.ndarray:
    """One mask file as class indices (H, W) int64: an index image ("P" palette indices, or
    "L" / 16-bit values) below `max_classes`, a 0/255 binary, or a grey RGB rendering of
    either. `size` (H, W): resized by nearest neighbour (after the values are checked)."""
    image = _pil()
    with image.open(path) as im:
        if im.mode in ("RGB", "RGBA", "LA"):
            rgb = np.asarray(im.convert("RGB"))
            if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
                raise ValueError(
                    f"mask {path}: a colour image (mode {im.mode}); masks are one channel of class indices "
                    "(an index or greyscale PNG) or 0/255 binaries"
                )
            values = rgb[..., 0]
        elif im.mode == "1":
            values = np.asarray(im.convert("L"))
        else:
            values = np.asarray(im)
    return _resize_mask(_mask_values(values, str(path), max_classes), None if size is None else tuple(size))


def image_size_of(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of an image file, from its header."""
    with _pil().open(path) as im:
        return (im.height, im.width)


def read_image(path: str, size: tuple[int, int] | None, channels: int) -> np.ndarray:
    """An image file as (channels, H, W) float32 in [0, 1] (grey for 1 channel, RGB for 3),
    resized (bilinear) to `size` (H, W) when given."""
    image = _pil()
    with image.open(path) as im:
        im = im.convert("L" if channels == 1 else "RGB")
        if size is not None and (im.height, im.width) != tuple(size):
            im = im.resize((size[1], size[0]), image.BILINEAR)
        a = np.asarray(im, dtype=np.float32) / 255.0
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _size(value: int | Sequence[int] | None) -> tuple[int, int] | None:
    if value is None:
        return None
    return (int(value), int(value)) if isinstance(value, (int, np.integer)) else (int(value[0]), int(value[1]))


def _load_pairs(
    pairs: list[tuple[str, str, str | None, str]], *, image_size, channels: int, what: str
) -> SegmentationData:
    """Read (image, mask, other mask or None, case) files; check every mask fits its image."""
    if not pairs:
        raise ValueError(f"{what}: no image / mask pairs found")
    size = _size(image_size)
    images, masks, others, sizes = [], [], [], []
    for image_path, mask_path, other_path, _ in pairs:
        mask = read_mask(mask_path)
        native = image_size_of(image_path)
        sizes.append(native)
        if mask.shape != native:
            raise ValueError(
                f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image {image_path} is "
                f"{native[1]}x{native[0]} (width x height): a mask labels its image's pixels"
            )
        if size is not None:
            mask = read_mask(mask_path, size=size)
        images.append(read_image(image_path, size, channels))
        masks.append(mask)
        if other_path is not None:
            other = read_mask(other_path)
            if other.shape != native:
                raise ValueError(f"mask {other_path} is not the size of its image {image_path}")
            others.append(read_mask(other_path, size=size) if size is not None else other)
    shapes = {m.shape for m in masks}
    if len(shapes) > 1:
        raise ValueError(
            f"{what}: images of different sizes ({', '.join(f'{w}x{h}' for h, w in sorted(shapes)[:4])}); "
            "give image_size to resize them all"
        )
    stacked = np.stack(masks)
    other_stack = np.stack(others) if others else None
    largest = max(int(stacked.max()), int(other_stack.max()) if other_stack is not None else 0)
    return SegmentationData(
        images=np.stack(images),
        masks=stacked,
        paths=[p[0] for p in pairs],
        mask_paths=[p[1] for p in pairs],
        cases=np.array([p[3] for p in pairs]),
        other_masks=other_stack,
        num_classes=max(2, largest + 1),
        sizes=np.asarray(sizes, np.int64).reshape(-1, 2),
    )


def read_mask_folder(
    images: str | os.PathLike,
    masks: str | os.PathLike,
    *,
    other_masks: str | os.PathLike | None = None,
    image_size: int | Sequence[int] | None = None,
    channels: int = 3,
) -> SegmentationData:
    """An image folder and a mask folder matched by file stem (``a.jpg`` with ``a.png``); with
    `other_masks`, a third folder of the same stems (e.g. given noisy masks beside checked
    ones). An image without a mask, or a mask without an image, is refused by name."""
    img_dir, mask_dir = Path(images), Path(masks)
    for d, what in ((img_dir, "image folder"), (mask_dir, "mask folder")):
        if not d.is_dir():
            raise ValueError(f"{what} {d} does not exist or is not a folder")

    def by_stem(d: Path) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for p in sorted(d.iterdir()):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                if p.stem in out:
                    raise ValueError(f"{d}: two files with the stem {p.stem!r} ({out[p.stem].name}, {p.name})")
                out[p.stem] = p
        return out

    imgs, msks = by_stem(img_dir), by_stem(mask_dir)
    others = by_stem(Path(other_masks)) if other_masks is not None else None
    missing = sorted(set(imgs) - set(msks))
    if missing:
        raise ValueError(
            f"{mask_dir}: no mask for image(s) {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        )
    orphans = sorted(set(msks) - set(imgs))
    if orphans:
        raise ValueError(
            f"{img_dir}: no image for mask(s) {', '.join(orphans[:5])}{' ...' if len(orphans) > 5 else ''}"
        )
    if others is not None and sorted(others) != sorted(imgs):
        gap = sorted(set(imgs) ^ set(others))
        raise ValueError(f"{other_masks}: the stems differ from the images' ({', '.join(gap[:5])})")
    pairs = [(str(imgs[s]), str(msks[s]), None if others is None else str(others[s]), s) for s in sorted(imgs)]
    return _load_pairs(pairs, image_size=image_size, channels=channels, what=f"{img_dir} with {mask_dir}")


def read_mask_csv(
    path: str | os.PathLike, *, image_size: int | Sequence[int] | None = None, channels: int = 3
) -> SegmentationData:
    """A CSV of pairs with a header: columns ``image`` and ``mask``, optionally ``case`` (slices
    of one volume: kept together by splits) and ``other_mask``. Relative paths are relative to the
    CSV's folder."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"mask list {path} does not exist")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        for need in ("image", "mask"):
            if need not in columns:
                raise ValueError(f"{path}: no column {need!r} (columns: {', '.join(columns) or 'none'})")
        rows = list(reader)
    base = path.parent

    def resolve(p: str, line: int, column: str) -> str:
        if not p:
            raise ValueError(f"{path}, line {line}: empty {column}")
        full = Path(p) if Path(p).is_absolute() else base / p
        if not full.is_file():
            raise ValueError(f"{path}, line {line}: {column} {p} does not exist")
        return str(full)

    pairs = []
    for line, row in enumerate(rows, start=2):
        image = resolve(row["image"], line, "image")
        other = resolve(row["other_mask"], line, "other_mask") if row.get("other_mask") else None
        pairs.append((image, resolve(row["mask"], line, "mask"), other, row.get("case") or Path(image).stem))
    return _load_pairs(pairs, image_size=image_size, channels=channels, what=str(path))


def _volume_reader():
    """nibabel and SimpleITK read the 3-D formats; they are the optional extra l2b[medical]."""
    try:
        import SimpleITK  # noqa: F401
    except ImportError:
        SimpleITK = None  # noqa: N806
    try:
        import nibabel  # noqa: F401
    except ImportError:
        nibabel = None
    return nibabel, SimpleITK


def read_volume(path: Path) -> np.ndarray:
    """A volume as (slices, H, W), slices along its last axis (NIfTI) or first (MetaImage)."""
    nibabel, sitk = _volume_reader()
    name = path.name.lower()
    if name.endswith(".mhd"):
        if sitk is None:
            raise ValueError(f"{path}: reading MetaImage volumes needs SimpleITK: pip install 'l2b[medical]'")
        return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))  # (slices, H, W)
    if nibabel is None and sitk is None:
        raise ValueError(f"{path}: reading NIfTI volumes needs nibabel: pip install 'l2b[medical]'")
    if nibabel is not None:
        data = np.asarray(nibabel.load(str(path)).dataobj)
        return np.moveaxis(data, -1, 0) if data.ndim == 3 else data[None]
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def read_volumes(
    images: str | os.PathLike, masks: str | os.PathLike, *, image_size: int | Sequence[int] | None = None
) -> SegmentationData:
    """3-D volumes sliced to 2-D: an image folder and a mask folder of NIfTI (``.nii``,
    ``.nii.gz``) or MetaImage (``.mhd`` + ``.raw``, PROMISE12's own format) files matched by
    name (a mask may end in ``_segmentation``, PROMISE12's convention; then both may share one
    folder, as PROMISE12's do). Each slice keeps its
    volume as its case. Image intensities are scaled to [0, 1] per volume (1st to 99th
    percentile)."""
    img_dir, mask_dir = Path(images), Path(masks)

    def stem(p: Path) -> str:
        n = p.name
        for suffix in VOLUME_SUFFIXES:
            if n.lower().endswith(suffix):
                n = n[: -len(suffix)]
        return n.removesuffix("_segmentation")

    def volumes(d: Path, masks: bool) -> dict[str, Path]:
        files = [p for p in sorted(d.iterdir()) if p.name.lower().endswith(VOLUME_SUFFIXES)]
        if img_dir.resolve() == mask_dir.resolve():  # one folder (PROMISE12's): masks end in _segmentation
            files = [p for p in files if ("_segmentation." in p.name.lower()) == masks]
        return {stem(p): p for p in files}

    vols, labs = volumes(img_dir, False), volumes(mask_dir, True)
    if not vols:
        raise ValueError(f"{img_dir}: no volumes (.nii, .nii.gz, .mhd)")
    missing = sorted(set(vols) - set(labs))
    if missing:
        raise ValueError(f"{mask_dir}: no mask volume for {', '.join(missing[:5])}")
    size = _size(image_size)
    xs, ys, paths, mpaths, cases, sizes = [], [], [], [], [], []
    for case in sorted(vols):
        vol, lab = read_volume(vols[case]).astype(np.float32), read_volume(labs[case])
        if vol.shape != lab.shape:
            raise ValueError(f"mask volume {labs[case]} has shape {lab.shape} but {vols[case]} has {vol.shape}")
        xs.append(volume_slices(vol, size))
        for i in range(vol.shape[0]):
            ys.append(_resize_mask(_mask_values(np.asarray(lab[i]), f"{labs[case]}#{i}", 32), size))
            paths.append(f"{vols[case]}#{i}")
            mpaths.append(f"{labs[case]}#{i}")
            cases.append(case)
            sizes.append(vol.shape[1:])
    masks_arr = np.stack(ys)
    return SegmentationData(
        images=np.concatenate(xs),
        masks=masks_arr,
        paths=paths,
        mask_paths=mpaths,
        cases=np.array(cases),
        num_classes=max(2, int(masks_arr.max()) + 1),
        sizes=np.asarray(sizes, np.int64).reshape(-1, 2),
    )


def volume_slices(vol: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """A volume (S, H, W) as model inputs (S, 1, H', W') float32: intensities scaled to [0, 1]
    per volume (1st to 99th percentile), each slice resized (bilinear) to `size` when given."""
    image = _pil()
    vol = np.asarray(vol, np.float32)
    lo, hi = np.percentile(vol, [1, 99])
    # float32 throughout: PIL reads the buffer as 32-bit floats ("F"), and NumPy's float64
    # percentiles would otherwise promote the volume
    vol = np.clip((vol - np.float32(lo)) / np.float32(max(hi - lo, 1e-6)), 0, 1).astype(np.float32)
    out = []
    for img in vol:
        if size is not None and img.shape != size:
            img = np.asarray(image.fromarray(img).resize((size[1], size[0]), image.BILINEAR))
        out.append(img[None].astype(np.float32))
    return np.stack(out)


def _resize_mask(mask: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or mask.shape == size:
        return mask
    image = _pil()
    return np.asarray(
        image.fromarray(mask.astype(np.int32), mode="I").resize((size[1], size[0]), image.NEAREST)
    ).astype(np.int64)
