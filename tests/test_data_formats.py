"""On-disk data formats: CIFAR pickles (and the restricted unpickler), idx files, ImageFolder
trees, path/label lists, ISIC2019's one-hot CSV and Clothing1M's key/label files. Every test
writes its own tiny files."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from l2b.data import DATASETS, FileListDataset, ImageArrayDataset, load_dataset
from l2b.data.cifar import load_cifar10, load_cifar100
from l2b.data.files import BadImageError
from l2b.data.idx import load_mnist, read_idx
from l2b.data.imagefolder import load_imagefolder
from l2b.data.lists import load_clothing1m, load_clothing1m_split, load_csv, load_isic2019
from l2b.data.safe_pickle import load_pickle

Image = pytest.importorskip("PIL.Image")


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def _write_pickle(path: Path, obj, protocol: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def _cifar_batch(n: int, num_classes: int, seed: int, label_key: str = "labels", **extra) -> dict:
    rng = np.random.default_rng(seed)
    batch = {
        "batch_label": "test",
        "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        label_key: [int(v) for v in np.arange(n) % num_classes],
        "filenames": [f"{i}.png" for i in range(n)],
    }
    batch.update(extra)
    return batch


def _write_cifar10(root: Path, n: int = 6, protocol: int = 2) -> Path:
    folder = root / "cifar-10-batches-py"
    for k in range(1, 6):
        _write_pickle(folder / f"data_batch_{k}", _cifar_batch(n, 10, k), protocol)
    _write_pickle(folder / "test_batch", _cifar_batch(n, 10, 9), protocol)
    _write_pickle(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)], "num_vis": 3072}, protocol)
    return folder


def _save_image(path: Path, seed: int, size=(12, 10), fmt: str | None = None, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).convert(mode).save(path, format=fmt)


def _idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    return struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def _write_mnist(root: Path, *, gz: bool, n_train: int = 20, n_test: int = 10) -> None:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        files = {
            f"{stem}-images-idx3-ubyte": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
            f"{stem}-labels-idx1-ubyte": (np.arange(n) % 10).astype(np.uint8),
        }
        for name, arr in files.items():
            data = _idx_bytes(arr)
            if gz:
                (root / (name + ".gz")).write_bytes(gzip.compress(data))
            else:
                (root / name).write_bytes(data)


# ----------------------------------------------------------------------------------------------
# CIFAR and the restricted unpickler
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_batches(tmp_path, protocol):
    folder = _write_cifar10(tmp_path, protocol=protocol)
    train, test = load_cifar10(root=tmp_path, test_fraction=0.5, split_seed=3)
    assert isinstance(train, ImageArrayDataset)
    assert (len(train), len(test)) == (30, 6)
    assert train.inputs.shape == (30, 3, 32, 32) and train.inputs.dtype == np.float32
    assert train.class_names == tuple(f"c{i}" for i in range(10)) and train.num_classes == 10
    # per-channel standardisation with the training statistics, exposed on both splits
    np.testing.assert_allclose(train.inputs.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(train.inputs.std(axis=(0, 2, 3)), 1.0, atol=1e-4)
    assert test.mean == train.mean and len(train.std) == 3
    # the pixels keep CIFAR's channel-major layout: first test image, red channel, first pixel
    raw = load_pickle(folder / "test_batch")["data"][0]
    for ch in range(3):
        expect = (raw[1024 * ch] / 255.0 - train.mean[ch]) / train.std[ch]
        assert test.inputs[0, ch, 0, 0] == pytest.approx(expect, abs=1e-5)
    # the batches folder itself is accepted as root, and the loader is registered
    again, _ = load_dataset("cifar10", root=str(folder), test_fraction=0.2, split_seed=0)
    np.testing.assert_array_equal(again.labels, train.labels)


def test_cifar100_fine_and_coarse(tmp_path):
    folder = tmp_path / "cifar-100-python"
    for split, n in (("train", 8), ("test", 4)):
        batch = _cifar_batch(n, 100, n, label_key="fine_labels")
        batch["coarse_labels"] = [int(v) % 20 for v in batch["fine_labels"]]
        _write_pickle(folder / split, batch)
    _write_pickle(
        folder / "meta",
        {"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": [f"g{i}" for i in range(20)]},
    )
    train, test = load_cifar100(root=tmp_path)
    assert (len(train), len(test), train.num_classes) == (8, 4, 100) and train.class_names[3] == "f3"
    coarse, _ = load_cifar100(root=tmp_path, label_type="coarse")
    assert coarse.num_classes == 20 and coarse.class_names[0] == "g0"
    assert "cifar100" in DATASETS


def test_cifar_validation_errors(tmp_path):
    folder = _write_cifar10(tmp_path)
    bad = _cifar_batch(6, 10, 1)
    bad["data"] = bad["data"][:, :3000]
    _write_pickle(folder / "data_batch_2", bad)
    with pytest.raises(ValueError, match=r"data_batch_2.*'data'.*\(n, 3072\)"):
        load_cifar10(root=tmp_path)
    bad = _cifar_batch(6, 10, 1)
    bad["labels"] = bad["labels"][:-1]
    _write_pickle(folder / "data_batch_2", bad)
    with pytest.raises(ValueError, match=r"data_batch_2.*'labels' has 5 labels.*6 images"):
        load_cifar10(root=tmp_path)
    bad = _cifar_batch(6, 10, 1)
    bad["labels"][2] = 10
    _write_pickle(folder / "data_batch_2", bad)
    with pytest.raises(ValueError, match=r"data_batch_2.*label 10 at index 2"):
        load_cifar10(root=tmp_path)
    bad = _cifar_batch(6, 10, 1)
    del bad["labels"]
    _write_pickle(folder / "data_batch_2", bad)
    with pytest.raises(ValueError, match=r"data_batch_2.*missing field 'labels'"):
        load_cifar10(root=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        load_cifar10(root=tmp_path / "empty")
    with pytest.raises(ValueError, match="root="):
        load_cifar10()


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_forbidden_global_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    folder = _write_cifar10(tmp_path)
    batch = _cifar_batch(6, 10, 1)
    batch["filenames"] = _Exploit(marker)
    _write_pickle(folder / "data_batch_3", batch)
    with pytest.raises(ValueError, match=r"data_batch_3.*refusing to load global (posix|os|nt)\.system"):
        load_cifar10(root=tmp_path)
    assert not marker.exists()
    # other callables are refused too, even harmless-looking builtins
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"x": eval}, protocol=2))
    with pytest.raises(ValueError, match=r"evil.pkl.*(builtins|__builtin__)\.eval"):
        load_pickle(tmp_path / "evil.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match="junk.pkl"):
        load_pickle(tmp_path / "junk.pkl")


# ----------------------------------------------------------------------------------------------
# idx (MNIST / Fashion-MNIST)
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx(tmp_path, gz):
    _write_mnist(tmp_path, gz=gz)
    train, test = load_mnist(root=tmp_path)
    assert train.inputs.shape == (20, 1, 28, 28) and len(test) == 10
    np.testing.assert_array_equal(train.labels, np.arange(20) % 10)
    assert train.mean and train.std and train.class_names[0] == "0"
    fashion, _ = load_dataset("fashion-mnist", root=tmp_path, test_fraction=0.3, split_seed=1)
    assert fashion.class_names[0] == "T-shirt/top"


def test_read_idx_types(tmp_path):
    arr = np.arange(12, dtype=">i4").reshape(3, 4)
    (tmp_path / "a").write_bytes(_idx_bytes(arr, code=0x0C))
    out = read_idx(tmp_path / "a")
    np.testing.assert_array_equal(out, np.arange(12).reshape(3, 4))
    assert out.dtype == np.int32 and out.dtype.byteorder in ("=", "<", "|")


def test_malformed_idx(tmp_path):
    good = _idx_bytes(np.zeros((4, 28, 28), np.uint8))
    cases = {
        "badmagic": (b"\x08\x03" + good[2:], "bad magic number"),
        "badtype": (good[:2] + b"\x07" + good[3:], "unknown idx type code 0x07"),
        "truncated": (good[:-5], "truncated"),
        "shortheader": (good[:9], "truncated header"),
        "trailing": (good + b"xx", "2 bytes after"),
        "tiny": (b"\x00\x00", "too short"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=rf"{name}.*{message}"):
            read_idx(tmp_path / name)
    (tmp_path / "cut.gz").write_bytes(gzip.compress(good)[:-12])
    with pytest.raises(ValueError, match=r"cut.gz.*gzip"):
        read_idx(tmp_path / "cut.gz")
    # a loader names the file whose counts disagree
    _write_mnist(tmp_path / "m", gz=False)
    (tmp_path / "m" / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(7, np.uint8)))
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte: 7 labels but .* 10 images"):
        load_mnist(root=tmp_path / "m")


# ----------------------------------------------------------------------------------------------
# ImageFolder
# ----------------------------------------------------------------------------------------------


def _image_tree(root: Path, per_class: int = 5, classes=("cat", "dog", "eel")) -> None:
    for c, name in enumerate(classes):
        for i in range(per_class):
            fmt = ["JPEG", "PNG"][i % 2]
            _save_image(root / name / f"{i}.{fmt.lower()}", seed=10 * c + i, mode="L" if i == 1 else "RGB")


def test_imagefolder_split_and_sizes(tmp_path):
    _image_tree(tmp_path)
    (tmp_path / "cat" / "notes.txt").write_text("not an image, ignored")
    train, test = load_imagefolder(root=tmp_path, test_fraction=0.2, split_seed=0, image_size=16)
    assert train.class_names == ("cat", "dog", "eel")
    assert (len(train), len(test)) == (12, 3) and train.inputs.shape[1:] == (3, 16, 16)
    np.testing.assert_array_equal(np.bincount(test.labels), [1, 1, 1])
    again, _ = load_imagefolder(root=tmp_path, test_fraction=0.2, split_seed=0, image_size=16)
    np.testing.assert_array_equal(again.inputs, train.inputs)
    other, _ = load_imagefolder(root=tmp_path, test_fraction=0.2, split_seed=1, image_size=16)
    assert not np.array_equal(other.inputs, train.inputs)


def test_imagefolder_train_test_trees_and_lazy(tmp_path):
    _image_tree(tmp_path / "train", per_class=3)
    _image_tree(tmp_path / "test", per_class=2, classes=("cat", "eel"))
    train, test = load_imagefolder(root=tmp_path)
    assert (len(train), len(test)) == (9, 4) and train.inputs.shape[1:] == (3, 32, 32)
    assert set(test.labels.tolist()) == {0, 2}
    lazy_train, lazy_test = load_imagefolder(root=tmp_path, lazy=True, image_size=8)
    assert isinstance(lazy_train, FileListDataset) and len(lazy_test) == 4
    x, y = lazy_test[0]
    assert x.shape == (3, 8, 8) and y == 0
    _image_tree(tmp_path / "test", per_class=1, classes=("fox",))
    with pytest.raises(ValueError, match="'fox'.*not among the training classes"):
        load_imagefolder(root=tmp_path)


def test_imagefolder_corrupt_image(tmp_path):
    _image_tree(tmp_path, per_class=4)
    (tmp_path / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    full = tmp_path / "eel" / "0.jpeg"
    full.write_bytes(full.read_bytes()[:200])  # truncated
    with pytest.raises(BadImageError, match=r"(broken\.jpg|0\.jpeg): cannot decode image"):
        load_imagefolder(root=tmp_path, test_fraction=0.25)
    train, test = load_imagefolder(root=tmp_path, test_fraction=0.25, skip_bad_files=True)
    assert train.num_skipped + test.num_skipped == 2
    skipped = {**train.skipped, **test.skipped}  # path -> the decoder's reason
    assert {Path(p).name for p in skipped} == {"broken.jpg", "0.jpeg"}
    assert all("cannot decode image" in reason for reason in skipped.values())
    assert len(train) + len(test) == 11  # 13 files, 2 bad
    lazy_train, lazy_test = load_imagefolder(root=tmp_path, test_fraction=0.25, skip_bad_files=True, lazy=True)
    assert lazy_train.num_skipped + lazy_test.num_skipped == 2 and len(lazy_train) + len(lazy_test) == 11
    unchecked, _ = load_imagefolder(root=tmp_path, test_fraction=0.25, lazy=True)
    with pytest.raises(BadImageError):
        for i in range(len(unchecked)):
            unchecked[i]


# ----------------------------------------------------------------------------------------------
# path,label lists
# ----------------------------------------------------------------------------------------------


def test_csv_lists(tmp_path):
    for i in range(6):
        _save_image(tmp_path / "img" / f"{i}.png", seed=i, fmt="PNG")
    (tmp_path / "train.csv").write_text("path,label\n" + "".join(f"img/{i}.png,{i % 2}\n" for i in range(4)))
    (tmp_path / "test.txt").write_text("img/4.png 0\nimg/5.png 1\n")  # whitespace list, no header
    train, test = load_csv(root=tmp_path, image_size=8)
    assert (len(train), len(test), train.num_classes) == (4, 2, 2)
    np.testing.assert_array_equal(train.labels, [0, 1, 0, 1])
    # class names, lists elsewhere (paths relative to the list file's folder), no test list -> split
    sub = tmp_path / "lists"
    sub.mkdir()
    (sub / "all.csv").write_text("".join(f"../img/{i}.png,{'ab'[i % 2]}\n" for i in range(6)))
    train, test = load_dataset("csv", train_list=str(sub / "all.csv"), test_fraction=0.34, split_seed=0, image_size=8)
    assert train.class_names == ("a", "b") and (len(train), len(test)) == (4, 2)


@pytest.mark.parametrize(
    "content, message",
    [
        ("path,label\nimg/0.png,1\nimg/1.png\n", r"train.csv line 3: expected at least 2 columns"),
        ("path,label\nimg/0.png,1\nimg/9.png,0\n", r"train.csv line 3: unknown path 'img/9.png'"),
        (
            "path,label\nimg/0.png,1\nimg/1.png,cat\n",
            r"train.csv: the label column mixes class names and numbers \(line 3: 'cat', line 2: '1'\)",
        ),
        ("path,label\nimg/0.png,1\nimg/1.png,-1\n", r"train.csv line 3: bad label '-1'"),
        ("file,klass\nimg/0.png,1\n", None),
    ],
)
def test_csv_list_errors(tmp_path, content, message):
    for i in range(2):
        _save_image(tmp_path / "img" / f"{i}.png", seed=i, fmt="PNG")
    (tmp_path / "train.csv").write_text(content)
    (tmp_path / "test.csv").write_text("img/0.png,0\nimg/1.png,1\n")
    if message is None:  # a named column that the header lacks
        with pytest.raises(ValueError, match=r"train.csv line 1: header has no column 'label'"):
            load_csv(root=tmp_path, label_column="label")
        return
    with pytest.raises(ValueError, match=message):
        load_csv(root=tmp_path)


def test_csv_test_list_checked_against_training_classes(tmp_path):
    for i in range(3):
        _save_image(tmp_path / f"{i}.png", seed=i, fmt="PNG")
    (tmp_path / "train.csv").write_text("0.png,0\n1.png,2\n")
    (tmp_path / "test.csv").write_text("2.png,3\n")
    # 0 and 2 are not 0..K-1: the numbers name the classes, and the test list may not add one
    with pytest.raises(ValueError, match=r"test.csv line 1: unknown class '3' \(known: 0, 2\)"):
        load_csv(root=tmp_path)
    (tmp_path / "train.csv").write_text("0.png,0\n1.png,1\n")
    with pytest.raises(ValueError, match=r"test.csv line 1: bad label '3'.*\[0, 2\)"):
        load_csv(root=tmp_path)
    (tmp_path / "train.csv").write_text("0.png,cat\n1.png,dog\n")
    (tmp_path / "test.csv").write_text("2.png,cow\n")
    with pytest.raises(ValueError, match=r"test.csv line 1: unknown class 'cow'"):
        load_csv(root=tmp_path)


# ----------------------------------------------------------------------------------------------
# ISIC 2019
# ----------------------------------------------------------------------------------------------

ISIC_HEADER = "image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK"


def _isic(root: Path, n: int = 16) -> list[str]:
    ids = [f"ISIC_{i:07d}" for i in range(n)]
    rows = []
    for i, name in enumerate(ids):
        onehot = ["0.0"] * 9
        onehot[i % 8] = "1.0"
        rows.append(",".join([name, *onehot]))
        _save_image(root / "ISIC_2019_Training_Input" / "ISIC_2019_Training_Input" / f"{name}.jpg", seed=i)
    (root / "ISIC_2019_Training_GroundTruth.csv").write_text("\n".join([ISIC_HEADER, *rows]) + "\n")
    return ids


def test_isic2019(tmp_path):
    ids = _isic(tmp_path)
    (tmp_path / "train.txt").write_text("\n".join(ids[:12]) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(i + ".jpg" for i in ids[12:]) + "\n")
    train, test = load_isic2019(root=tmp_path)
    assert isinstance(train, FileListDataset) and (len(train), len(test)) == (12, 4)
    assert train.num_classes == 8 and "UNK" not in train.class_names  # unused column dropped
    np.testing.assert_array_equal(test.labels, [4, 5, 6, 7])
    x, _ = test[0]
    assert x.shape == (3, 224, 224)
    arrays_train, arrays_test = load_dataset(
        "isic2019",
        root=str(tmp_path),
        lazy=False,
        image_size=8,
        drop_unused_classes=False,
        test_fraction=0.2,
        split_seed=0,
    )
    assert arrays_train.inputs.shape == (12, 3, 8, 8) and arrays_train.num_classes == 9
    # only a training list: the test split is the rest; no list: stratified split
    (tmp_path / "test.txt").unlink()
    _, rest = load_isic2019(root=tmp_path)
    assert len(rest) == 4
    (tmp_path / "train.txt").unlink()
    tr, te = load_isic2019(root=tmp_path, test_fraction=0.5, split_seed=0)
    assert (len(tr), len(te)) == (8, 8)


def test_isic2019_errors(tmp_path):
    ids = _isic(tmp_path)
    gt = tmp_path / "ISIC_2019_Training_GroundTruth.csv"
    lines = gt.read_text().splitlines()
    lines[3] = f"{ids[2]},1.0,1.0,0,0,0,0,0,0,0"
    gt.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"GroundTruth.csv line 4 \(image {ids[2]}\): row is not one-hot"):
        load_isic2019(root=tmp_path)
    lines[3] = f"{ids[2]},0,0,0,0,0,0,0,0,0"
    gt.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"line 4 .*not one-hot \(all zero\)"):
        load_isic2019(root=tmp_path)
    lines[3] = f"{ids[2]},0,x,0,0,0,0,0,1,0"
    gt.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"line 4 .*column NV has non-numeric value 'x'"):
        load_isic2019(root=tmp_path)
    lines[3] = f"{ids[2]},0,0,1,0,0,0,0,0,0"
    gt.write_text("\n".join(lines) + "\n")
    (tmp_path / "train.txt").write_text(f"{ids[0]}\nISIC_9999999\n")
    with pytest.raises(ValueError, match=r"train.txt line 2: unknown image id 'ISIC_9999999'"):
        load_isic2019(root=tmp_path)
    (tmp_path / "train.txt").unlink()
    gt.write_text(gt.read_text().replace("image,", "img,", 1))
    with pytest.raises(ValueError, match=r"line 1: header has no 'image' column"):
        load_isic2019(root=tmp_path)


# ----------------------------------------------------------------------------------------------
# Clothing1M
# ----------------------------------------------------------------------------------------------


def _clothing(root: Path) -> None:
    keys = [f"images/{i % 3}/{i:02d}/{i}.jpg" for i in range(20)]
    for i, k in enumerate(keys):
        _save_image(root / k, seed=i)
    (root / "noisy_label_kv.txt").write_text("".join(f"{k} {i % 14}\n" for i, k in enumerate(keys[:14])))
    (root / "clean_label_kv.txt").write_text("".join(f"{k} {(i + 1) % 14}\n" for i, k in enumerate(keys[10:])))
    (root / "noisy_train_key_list.txt").write_text("\n".join(keys[:14]) + "\n")
    (root / "clean_val_key_list.txt").write_text("\n".join(keys[10:14]) + "\n")
    (root / "clean_test_key_list.txt").write_text("\n".join(keys[14:]) + "\n")


def test_clothing1m(tmp_path):
    _clothing(tmp_path)
    train, test = load_dataset("clothing1m", root=str(tmp_path), test_fraction=0.2, split_seed=0)
    assert isinstance(train, FileListDataset) and (len(train), len(test)) == (14, 6)
    assert train.num_classes == 14 and len(train.class_names) == 14
    np.testing.assert_array_equal(train.labels, np.arange(14))
    np.testing.assert_array_equal(test.labels, [(i + 1) % 14 for i in range(4, 10)])
    val = load_clothing1m_split(root=tmp_path, split="clean_val")
    np.testing.assert_array_equal(val.labels, [1, 2, 3, 4])
    small, _ = load_clothing1m(root=tmp_path, lazy=False, image_size=4)
    assert small.inputs.shape == (14, 3, 4, 4)


def test_clothing1m_errors(tmp_path):
    _clothing(tmp_path)
    kv = tmp_path / "noisy_label_kv.txt"
    text = kv.read_text()
    kv.write_text(text + "images/x.jpg 14\n")
    with pytest.raises(ValueError, match=r"noisy_label_kv.txt line 15: bad label '14'"):
        load_clothing1m(root=tmp_path)
    kv.write_text(text + "images/x.jpg\n")
    with pytest.raises(ValueError, match=r"noisy_label_kv.txt line 15: expected '<image path> <label>'"):
        load_clothing1m(root=tmp_path)
    kv.write_text(text)
    with open(tmp_path / "noisy_train_key_list.txt", "a") as f:
        f.write("images/not/listed.jpg\n")
    with pytest.raises(ValueError, match=r"noisy_train_key_list.txt line 15: unknown path 'images/not/listed.jpg'"):
        load_clothing1m(root=tmp_path)
    _clothing(tmp_path)
    (tmp_path / "images" / "2" / "17" / "17.jpg").unlink()
    with pytest.raises(ValueError, match=r"clean_test_key_list.txt line 4: unknown path 'images/2/17/17.jpg'"):
        load_clothing1m(root=tmp_path)


def _python2_cifar_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch as Python 2's cPickle (protocol 2) wrote the official files: byte strings (read
    back as latin-1 str) and numpy 1.x's ``numpy.core.multiarray._reconstruct``."""
    P = pickle

    def text(s: bytes) -> bytes:
        return P.SHORT_BINSTRING + bytes([len(s)]) + s

    def integer(i: int) -> bytes:
        return P.BININT + struct.pack("<i", i)

    raw = data.tobytes()
    out = P.PROTO + b"\x02" + P.EMPTY_DICT + P.MARK + text(b"data")
    out += P.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n"
    out += P.GLOBAL + b"numpy\nndarray\n" + integer(0) + P.TUPLE1 + text(b"b") + P.TUPLE3 + P.REDUCE
    out += P.MARK + integer(1) + integer(data.shape[0]) + integer(data.shape[1]) + P.TUPLE2
    out += P.GLOBAL + b"numpy\ndtype\n" + text(b"u1") + integer(0) + integer(1) + P.TUPLE3 + P.REDUCE
    out += (
        P.MARK
        + integer(3)
        + text(b"|")
        + P.NONE
        + P.NONE
        + P.NONE
        + integer(-1)
        + integer(-1)
        + integer(0)
        + P.TUPLE
        + P.BUILD
    )
    out += P.NEWFALSE + P.BINSTRING + struct.pack("<i", len(raw)) + raw + P.TUPLE + P.BUILD
    out += text(b"labels") + P.EMPTY_LIST + P.MARK + b"".join(integer(v) for v in labels) + P.APPENDS
    return out + P.SETITEMS + P.STOP


def test_cifar10_python2_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        batches[name] = data
        (folder / name).write_bytes(_python2_cifar_pickle(data, [1, 2, 3, 9]))
    assert np.array_equal(load_pickle(folder / "test_batch")["data"], batches["test_batch"])
    train, test = load_cifar10(root=folder, normalize=False)
    assert train.class_names is None  # no batches.meta: no names, still loads
    np.testing.assert_allclose(test.inputs.reshape(4, -1), batches["test_batch"] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(train.labels, [1, 2, 3, 9] * 5)
