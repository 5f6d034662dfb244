"""Image files: decoding with Pillow, the lazily decoding :class:`FileListDataset` for image sets
too large for memory, and :func:`make_loader`, a seeded torch DataLoader with worker processes.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import (
    DataLoader,
    Dataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
    TensorDataset,
    default_collate,
    get_worker_info,
)

from .transforms import ToTensor

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")


class BadImageError(ValueError):
    """An image file that is missing, corrupt or in a format Pillow cannot decode; the message
    starts with the file's path."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason

    def __reduce__(self):  # picklable, so it can travel back from a DataLoader worker
        return (type(self), (self.path, self.reason))


def _pil():
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow is installed with the package's image extras
        raise ImportError("decoding image files needs Pillow: pip install pillow") from exc
    return Image


# Background that transparent pixels are composited on (white, as an image viewer shows them):
# the colour stored under a transparent pixel is arbitrary and must not reach the model.
ALPHA_BACKGROUND = (255, 255, 255)
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def to_rgb(im, path: str):
    """An opened PIL image as an 8-bit RGB image, whatever its mode (the one conversion every
    decoded image goes through).

    - 16-bit grey (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``) and 32-bit integer ``I`` holding
      values 0..65535 (how Pillow opens 16-bit greyscale): divided by 257 and rounded, so
      65535 -> 255 (Pillow's own conversion clips at 255 instead: almost white). ``I`` values
      outside 0..65535 are refused.
    - 32-bit float ``F``: values in [0, 1] are multiplied by 255 and rounded; anything else (other
      ranges, NaN) is refused, as its scale is unknown.
    - Alpha (``LA``, ``RGBA``, ``PA``, premultiplied ``La`` / ``RGBa``) and palette or colour-key
      transparency: composited on :data:`ALPHA_BACKGROUND` (white).
    - ``1``, ``L``, ``P``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, ``RGBX``: Pillow's conversion.

    Raises BadImageError naming the file for a mode or value range that cannot be converted."""
    Image = _pil()
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im.convert("RGB")  # a loaded copy: the file can be closed
    if mode in SIXTEEN_BIT_MODES or mode == "I":
        values = np.asarray(im)
        lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise BadImageError(
                path,
                f"32-bit integer image (mode 'I') with values {lo}..{hi}, outside the 16-bit range "
                "0..65535 that is scaled to 8 bits; convert it to an 8-bit or 16-bit image",
            )
        grey = ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode == "F":
        values = np.asarray(im)
        if values.size and not (np.isfinite(values).all() and values.min() >= 0.0 and values.max() <= 1.0):
            lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
            raise BadImageError(
                path,
                f"32-bit float image (mode 'F') with values {lo:.4g}..{hi:.4g} (or NaN); only values in "
                "[0, 1] have a known scale: convert it to an 8-bit or 16-bit image",
            )
        return Image.fromarray(np.round(values * 255.0).astype(np.uint8)).convert("RGB")
    if mode in ("La", "RGBa"):  # premultiplied alpha: un-premultiply first
        im = im.convert("LA" if mode == "La" else "RGBA")
        mode = im.mode
    palette_alpha = mode == "P" and getattr(getattr(im, "palette", None), "mode", "").endswith("A")
    if mode in ("LA", "RGBA", "PA") or "transparency" in im.info or palette_alpha:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return im.convert("RGB")
    except ValueError as exc:
        raise BadImageError(path, f"image mode {mode!r} cannot be converted to RGB ({exc})") from None


_SWAPS_SIDES = (5, 6, 7, 8)  # EXIF orientations that turn the image by 90 degrees


def _upright(im, orientation: int):
    """`im` transposed as EXIF orientation (tag 0x0112) says, as a viewer shows it (a phone
    records the turn instead of turning the pixels); 1 and unknown values need nothing."""
    t = _pil().Transpose
    method = {
        2: t.FLIP_LEFT_RIGHT,
        3: t.ROTATE_180,
        4: t.FLIP_TOP_BOTTOM,
        5: t.TRANSPOSE,
        6: t.ROTATE_270,
        7: t.TRANSVERSE,
        8: t.ROTATE_90,
    }.get(orientation)
    return im if method is None else im.transpose(method)


def _orientation(im) -> int:
    """The image's EXIF orientation, 1 (as stored) when it has none or its EXIF is unreadable."""
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block must not make a decodable image fail
        return 1


def open_rgb(path: str | os.PathLike, *, draft_size: tuple[int, int] | None = None):
    """Decode an image file into an 8-bit RGB PIL image (fully loaded, file closed), converting
    every mode as :func:`to_rgb` says, and turned upright as its EXIF orientation says (phone
    photos store the pixels sideways and the turn in EXIF; viewers apply it, so the model must).

    ``draft_size`` (width, height) lets the JPEG decoder scale down by 1/2, 1/4 or 1/8 while
    staying at least that large: much faster when the image is far larger than needed.

    Raises
    ------
    BadImageError
        The file does not exist, cannot be identified as an image, is corrupt or truncated, or
        its mode or value range cannot be converted to 8-bit RGB.
    """
    Image = _pil()
    path = os.fspath(path)
    try:
        with Image.open(path) as im:
            orientation = _orientation(im)
            if draft_size is not None and im.format == "JPEG":
                if orientation in _SWAPS_SIDES:  # drafted before the turn: keep both sides large enough
                    draft_size = (max(draft_size),) * 2
                im.draft("RGB", draft_size)
            return _upright(to_rgb(im, path), orientation)
    except BadImageError:
        raise
    except FileNotFoundError:
        raise BadImageError(path, "file not found") from None
    except IsADirectoryError:
        raise BadImageError(path, "is a folder, not an image file") from None
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        # UnidentifiedImageError is an OSError; truncated data raises OSError while loading.
        raise BadImageError(path, f"cannot decode image ({type(exc).__name__}: {exc})") from None


def decode_resized(path: str | os.PathLike, size: int | tuple[int, int]) -> np.ndarray:
    """An image file as uint8 (3, H, W): RGB, resized (bilinear, antialiased) to ``size``
    (int: square; pair: (height, width)), aspect ratio not kept."""
    h, w = (size, size) if isinstance(size, int) else size
    img = open_rgb(path, draft_size=(w, h))
    if img.size != (w, h):
        img = img.resize((w, h), _pil().Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def decode_images(
    paths: Sequence[str], size: int | tuple[int, int], *, skip_bad_files: bool = False, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray, list[BadImageError]]:
    """Decode and resize many files in a thread pool (Pillow releases the GIL while decoding).

    Returns
    -------
    images : uint8 (n_ok, 3, H, W), in the order of ``paths`` with bad files left out
    ok : bool (len(paths),), False where a file was skipped
    bad : the BadImageError of every skipped file
    Raises the first BadImageError (in path order) unless ``skip_bad_files``.
    """
    h, w = (size, size) if isinstance(size, int) else size
    threads = threads or min(8, os.cpu_count() or 1)
    out = np.empty((len(paths), 3, h, w), dtype=np.uint8)
    ok = np.ones(len(paths), dtype=bool)
    bad: list[BadImageError] = []

    def one(i: int) -> BadImageError | None:
        try:
            out[i] = decode_resized(paths[i], (h, w))
        except BadImageError as exc:
            return exc
        return None

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for i, err in enumerate(pool.map(one, range(len(paths)))):
            if err is not None:
                if not skip_bad_files:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise err
                ok[i] = False
                bad.append(err)
    return out[ok], ok, bad


def find_bad_images(paths: Sequence[str], *, threads: int | None = None) -> list[BadImageError]:
    """Try to decode every file (JPEGs at reduced scale, which still reads all their data) and
    return the errors of those that fail."""
    threads = threads or min(8, os.cpu_count() or 1)

    def one(p: str) -> BadImageError | None:
        try:
            open_rgb(p, draft_size=(8, 8))
        except BadImageError as exc:
            return exc
        return None

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return [e for e in pool.map(one, paths) if e is not None]


def _accepts_generator(fn: Callable) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return (
        any(p.name == "generator" for p in params)
        or len(positional) >= 2
        or any(p.kind == p.VAR_POSITIONAL for p in params)
    )


class FileListDataset(Dataset):
    """Labelled image files decoded on demand: a ``torch.utils.data.Dataset`` for image sets too
    large to hold in memory (ISIC2019, Clothing1M, big ImageFolders).

    ``dataset[i]`` opens file i, converts it to RGB, applies ``transform`` (default: to a float
    tensor in [0, 1]) and returns ``(x, label)`` (``(x, label, i)`` with ``return_index=True``).
    ``dataset[(i, seed)]``, what :func:`make_loader` asks for, does the same with the transform's
    randomness drawn from a generator seeded with ``seed``.

    Paths are kept in one numpy bytes array (relative to ``root`` when given), not a list of
    Python strings, so forked DataLoader workers share them instead of copying them page by page.

    Attributes: ``labels`` (int64 (N,)), ``num_classes``, ``class_names``, ``name``, ``root``,
    ``transform``; ``path(i)`` is file i's full path and ``paths`` all of them; ``skipped`` (path ->
    decoder's reason, for the undecodable files a loader left out with ``skip_bad_files=True``), ``num_skipped``, and
    ``mean`` / ``std`` (the normalisation in the loader's transforms, or None).

    Raises
    ------
    BadImageError (a ValueError) from ``__getitem__``
        When a file cannot be decoded; the message names it.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        labels: Sequence[int] | np.ndarray,
        *,
        transform: Callable | None = None,
        root: str | os.PathLike | None = None,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        name: str = "files",
        return_index: bool = False,
    ):
        encoded = [os.fsencode(p) for p in paths]
        self._paths = np.array(encoded, dtype=bytes) if encoded else np.array([], dtype="S1")
        y = np.asarray(labels)
        if len(self._paths) == 0:
            raise ValueError(f"data set {name!r} is empty")
        if y.ndim != 1 or len(y) != len(self._paths) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(
                f"data set {name!r}: labels must be {len(self._paths)} integers, got {y.dtype} of shape {y.shape}"
            )
        if class_names is not None:
            class_names = tuple(str(c) for c in class_names)
            if num_classes is None:
                num_classes = len(class_names)
            elif num_classes != len(class_names):
                raise ValueError(f"data set {name!r}: {len(class_names)} class names for {num_classes} classes")
        self.root = None if root is None else os.fspath(root)
        num_classes = int(y.max()) + 1 if num_classes is None else int(num_classes)
        bad = np.flatnonzero((y < 0) | (y >= num_classes))
        if bad.size:
            raise ValueError(
                f"data set {name!r}: label {int(y[bad[0]])} of example {int(bad[0])} "
                f"({self.path(int(bad[0]))}) is outside [0, {num_classes})"
            )
        self.labels = y.astype(np.int64)
        self.num_classes, self.class_names, self.name = num_classes, class_names, name
        self.transform = ToTensor() if transform is None else transform
        self.return_index = return_index
        # Set by the loaders: files left out as undecodable, and the normalisation statistics.
        self.skipped: dict[str, str] = {}
        self.mean: tuple[float, ...] | None = None
        self.std: tuple[float, ...] | None = None
        self.image_size: int | None = None  # the side of the loader's crops, when a loader set it

    @property
    def transform(self) -> Callable:
        return self._transform

    @transform.setter
    def transform(self, fn: Callable) -> None:
        self._transform, self._pass_generator = fn, _accepts_generator(fn)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def inputs(self):
        raise AttributeError(
            f"data set {self.name!r} is a FileListDataset: its images are decoded lazily and it has "
            "no in-memory .inputs array; iterate it with l2b.data.make_loader, or load it with "
            "lazy=False (and a small image_size) for in-memory training"
        )

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def path(self, i: int) -> str:
        p = os.fsdecode(self._paths[i])
        return p if self.root is None else os.path.join(self.root, p)

    @property
    def paths(self) -> list[str]:
        return [self.path(i) for i in range(len(self))]

    def __getitem__(self, key):
        if isinstance(key, tuple):
            index, seed = key
            generator = torch.Generator()
            generator.manual_seed(int(seed))
        else:
            index, generator = key, None
        index = int(index)
        if index < 0:
            index += len(self)
        img = open_rgb(self.path(index))
        x = self._transform(img, generator) if self._pass_generator else self._transform(img)
        label = int(self.labels[index])
        return (x, label, index) if self.return_index else (x, label)

    def subset(
        self,
        index: np.ndarray,
        *,
        labels: np.ndarray | None = None,
        name: str | None = None,
        transform: Callable | None = None,
    ) -> FileListDataset:
        """The examples at ``index``, optionally with replacement labels and another transform."""
        index = np.asarray(index, dtype=np.int64)
        out = FileListDataset.__new__(FileListDataset)
        out._paths = self._paths[index]
        y = self.labels[index] if labels is None else np.asarray(labels, dtype=np.int64)
        if y.shape != (len(index),) or (y.size and (y.min() < 0 or y.max() >= self.num_classes)):
            raise ValueError(
                f"data set {name or self.name!r}: replacement labels must be {len(index)} integers "
                f"in [0, {self.num_classes})"
            )
        out.labels = y
        out.num_classes, out.class_names, out.name = self.num_classes, self.class_names, name or self.name
        out.root, out.return_index = self.root, self.return_index
        out.skipped, out.mean, out.std, out.image_size = {}, self.mean, self.std, self.image_size
        out.transform = self.transform if transform is None else transform
        return out

    def with_transform(self, transform: Callable) -> FileListDataset:
        return self.subset(np.arange(len(self)), transform=transform)

    def __repr__(self) -> str:
        return (
            f"FileListDataset(name={self.name!r}, n={len(self)}, num_classes={self.num_classes}, "
            f"root={self.root!r}, transform={self.transform!r})"
        )


class SeededSampler(Sampler):
    """Wraps a sampler so that it yields ``(index, seed)``: one fresh seed per example per epoch,
    drawn from ``generator``. With :class:`FileListDataset` this makes random augmentation
    depend only on the generator, not on which worker decodes which example."""

    def __init__(self, sampler: Sampler, generator: torch.Generator):
        self.sampler, self.generator = sampler, generator

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = list(self.sampler)
        seeds = torch.randint(0, 2**62, (len(order),), generator=self.generator).tolist()
        return iter(zip(order, seeds))

    def __len__(self) -> int:
        return len(self.sampler)


def collate_images(batch: list) -> list:
    """Collate ``(image tensor, label[, index])`` examples into ``[images (B, ...), labels (B,)[, indices]]``.

    Like torch's default collate, but the images are stacked with numpy, single-threaded: torch's
    multi-threaded ``stack`` of a few large CPU tensors is many times slower, worst when the cores
    are busy. In a worker process the batch is written straight into shared memory (as the default
    collate does), so passing it to the main process costs no copy. Anything else (non-tensor or
    ragged images, dtypes numpy lacks) goes to the default collate."""
    first = batch[0]
    if not (
        isinstance(first, (tuple, list))
        and isinstance(first[0], torch.Tensor)
        and first[0].device.type == "cpu"
        and not first[0].requires_grad
    ):
        return default_collate(batch)
    xs = [b[0] for b in batch]
    shape, dtype = xs[0].shape, xs[0].dtype
    if any(x.shape != shape or x.dtype != dtype or x.requires_grad for x in xs):
        return default_collate(batch)
    try:
        arrays = [x.numpy() for x in xs]
    except (TypeError, RuntimeError):
        return default_collate(batch)
    out = torch.empty((len(xs), *shape), dtype=dtype)
    if get_worker_info() is not None:
        out.share_memory_()
    np.stack(arrays, out=out.numpy())
    rest = [default_collate([b[k] for b in batch]) for k in range(1, len(first))]
    return [out, *rest]


def worker_init(worker_id: int) -> None:
    """DataLoader worker set-up: one torch thread per decoding process."""
    torch.set_num_threads(1)  # decoding is per process; torch's own thread pool would oversubscribe


def make_loader(
    dataset,
    *,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
    persistent_workers: bool | None = None,
    prefetch_factor: int | None = None,
) -> DataLoader:
    """A torch DataLoader over ``dataset`` whose order and augmentation are fixed by ``seed``.

    ``dataset``: a :class:`FileListDataset` (or any map-style torch Dataset), or an in-memory data
    set with ``.inputs`` / ``.labels`` arrays (an :class:`~l2b.data.ArrayDataset`), served as
    tensors. The shuffling order and, for a FileListDataset, the per-example augmentation seeds come
    from one ``torch.Generator`` seeded with ``seed``, so two loaders with the same seed give the
    same batches epoch after epoch, with any ``num_workers``. Workers (``num_workers > 0``) stay
    alive between epochs unless ``persistent_workers=False`` and run torch single-threaded.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be non-negative, got {num_workers}")
    if not isinstance(dataset, Dataset):
        if hasattr(dataset, "inputs") and hasattr(dataset, "labels"):
            dataset = TensorDataset(
                torch.as_tensor(np.asarray(dataset.inputs)), torch.as_tensor(np.asarray(dataset.labels))
            )
        else:
            raise TypeError(
                f"make_loader needs a torch Dataset or an object with .inputs and .labels, got {type(dataset).__name__}"
            )
    sample_gen = torch.Generator()
    sample_gen.manual_seed(seed)
    sampler: Sampler = RandomSampler(dataset, generator=sample_gen) if shuffle else SequentialSampler(dataset)
    collate = None
    if isinstance(dataset, FileListDataset):
        sampler = SeededSampler(sampler, sample_gen)
        collate = collate_images
    # A separate generator for the loader's own draws (worker base seeds), so that they do not
    # shift the sampler's stream: the batches are then the same with or without workers.
    loader_gen = torch.Generator()
    loader_gen.manual_seed(seed + 0x5EED)
    extra = {}
    if num_workers > 0:
        extra["persistent_workers"] = True if persistent_workers is None else persistent_workers
        extra["worker_init_fn"] = worker_init
        if prefetch_factor is not None:
            extra["prefetch_factor"] = prefetch_factor
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
        generator=loader_gen,
        collate_fn=collate,
        **extra,
    )


def list_image_files(folder: str | os.PathLike, *, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Files under ``folder`` (recursively, sorted, hidden files and folders left out) whose
    extension is one of ``extensions`` (case-insensitive).

    Symlinked folders are followed, but a folder whose real path was already walked (a symlink
    loop, or a second link to one folder) is walked once only."""
    exts = {e.lower() for e in extensions}
    found = []
    walked: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in walked:
            dirnames[:] = []
            continue
        walked.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not f.startswith(".") and os.path.splitext(f)[1].lower() in exts:
                found.append(Path(dirpath) / f)
    return found
