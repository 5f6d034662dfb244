"""MNIST and Fashion-MNIST from the idx files they are distributed as.

    <root>/train-images-idx3-ubyte[.gz]   <root>/train-labels-idx1-ubyte[.gz]
    <root>/t10k-images-idx3-ubyte[.gz]    <root>/t10k-labels-idx1-ubyte[.gz]

(``train-images.idx3-ubyte`` spellings and the ``<root>/raw`` sub-folder are also found.)

An idx file is a 4-byte magic number -- two zero bytes, a type code, the number of dimensions --
then one big-endian uint32 per dimension, then the values, big-endian, in C order.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ._common import ImageArrayDataset, make_image_datasets, require_root

IDX_TYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
MNIST_CLASSES = tuple(str(d) for d in range(10))
# Where Debian's dataset-fashion-mnist package puts the files; used when no root is given.
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as exc:
        raise ValueError(f"{path}: corrupt or truncated gzip stream ({exc})") from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (plain or gzip-compressed, told apart by content) into a native-endian array.

    Raises
    ------
    ValueError
        Naming the file and the problem: bad magic number, unknown type code, header shorter than
        its dimensions, data shorter (truncated) or longer than the header says, bad gzip stream.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: {len(data)} bytes, too short for an idx header (4-byte magic number)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise ValueError(f"{path}: bad magic number 0x{data[:4].hex()}: an idx file starts with two zero bytes")
    if code not in IDX_TYPES:
        raise ValueError(
            f"{path}: bad magic number 0x{data[:4].hex()}: unknown idx type code 0x{code:02x} "
            f"(known: {', '.join(f'0x{c:02x}' for c in IDX_TYPES)})"
        )
    if ndim == 0:
        raise ValueError(f"{path}: bad magic number 0x{data[:4].hex()}: zero dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated header: {ndim} dimensions need {header} bytes, file has {len(data)}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_TYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header
    if found < expected:
        raise ValueError(
            f"{path}: truncated: dimensions {dims} of {dtype.name} need {expected} bytes of data, found {found}"
        )
    if found > expected:
        raise ValueError(
            f"{path}: {found - expected} bytes after the {expected} bytes of data that dimensions "
            f"{dims} call for (wrong dimensions or concatenated files)"
        )
    arr = np.frombuffer(data, dtype=dtype, count=int(np.prod(dims, dtype=np.int64)), offset=header)
    return arr.reshape(dims).astype(dtype.newbyteorder("="), copy=True)


def _find(root: Path, stem: str, kind: str, data: str) -> Path:
    """``<stem>-<kind>-idxN-ubyte`` in any of its usual spellings under root or root/raw."""
    rank = "idx3" if kind == "images" else "idx1"
    names = [f"{stem}-{kind}-{rank}-ubyte", f"{stem}-{kind}.{rank}-ubyte"]
    for folder in (root, root / "raw"):
        for name in names:
            for suffix in ("", ".gz"):
                candidate = folder / (name + suffix)
                if candidate.is_file():
                    return candidate
    raise FileNotFoundError(
        f"data set {data!r}: {names[0]}[.gz] not found in {str(root)!r} "
        f"(also looked for {names[1]}[.gz] and in {str(root / 'raw')!r})"
    )


def read_idx_pair(
    images: str | os.PathLike, labels: str | os.PathLike, *, num_classes: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 1, H, W) uint8 and labels (n,) int64 from an idx3 / idx1 pair, checked against
    each other: image file 3-D uint8, label file 1-D uint8, equal counts, labels < num_classes."""
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3 or x.dtype != np.uint8:
        raise ValueError(
            f"{images}: expected uint8 images with 3 dimensions (n, rows, cols), "
            f"found {x.dtype} with dimensions {x.shape}"
        )
    if y.ndim != 1 or y.dtype != np.uint8:
        raise ValueError(
            f"{labels}: expected uint8 labels with 1 dimension (n,), found {y.dtype} with dimensions {y.shape}"
        )
    if len(x) != len(y):
        raise ValueError(f"{labels}: {len(y)} labels but {images} holds {len(x)} images")
    if len(y) and int(y.max()) >= num_classes:
        i = int(np.argmax(y >= num_classes))
        raise ValueError(f"{labels}: label {int(y[i])} at index {i} is outside [0, {num_classes})")
    return x[:, None], y.astype(np.int64)


def _load(
    data: str, root: str | os.PathLike | None, names: tuple[str, ...], normalize: bool
) -> tuple[ImageArrayDataset, ImageArrayDataset]:
    base = require_root(root, data, "the folder holding train-images-idx3-ubyte[.gz] and the three other idx files")
    train = read_idx_pair(_find(base, "train", "images", data), _find(base, "train", "labels", data))
    test = read_idx_pair(_find(base, "t10k", "images", data), _find(base, "t10k", "labels", data))
    if train[0].shape[2:] != test[0].shape[2:]:
        raise ValueError(
            f"data set {data!r}: train images are {train[0].shape[2:]} but test images {test[0].shape[2:]}"
        )
    return make_image_datasets(
        train[0], train[1], test[0], test[1], num_classes=10, name=data, class_names=names, normalize=normalize
    )


def load_mnist(
    *, root: str | os.PathLike | None = None, test_fraction: float = 0.2, split_seed: int = 0, normalize: bool = True
) -> tuple[ImageArrayDataset, ImageArrayDataset]:
    """MNIST as (train 60,000, test 10,000) images of shape (1, 28, 28), float32, scaled to [0, 1]
    and standardised with the training set's mean and standard deviation (``.mean`` / ``.std``).

    ``root``: the folder with the four idx files. The official t10k files are the test split:
    ``test_fraction`` and ``split_seed`` are accepted and ignored."""
    del test_fraction, split_seed  # official split
    return _load("mnist", root, MNIST_CLASSES, normalize)


def load_fashion_mnist(
    *, root: str | os.PathLike | None = None, test_fraction: float = 0.2, split_seed: int = 0, normalize: bool = True
) -> tuple[ImageArrayDataset, ImageArrayDataset]:
    """Fashion-MNIST, as :func:`load_mnist` (same file names and shapes). Without ``root``, reads
    /usr/share/datasets/fashion-mnist when present (``apt-get install dataset-fashion-mnist``).
    The official t10k files are the test split: ``test_fraction`` and ``split_seed`` are ignored."""
    del test_fraction, split_seed  # official split
    if root is None and SYSTEM_FASHION_MNIST.is_dir():
        root = SYSTEM_FASHION_MNIST
    return _load("fashion-mnist", root, FASHION_MNIST_CLASSES, normalize)
