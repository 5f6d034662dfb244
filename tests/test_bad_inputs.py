"""Bad inputs, each refused before training starts with an error that names the problem: the file,
the key or field, the index and the value. Mostly through the entry points users hit: config files
and the command line, ``run_experiment``, ``load_dataset``, the noisy-label files, ``l2b.fit``.

Where ``run_experiment`` refuses a run it must leave no half-made run directory behind."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import l2b
from l2b.cli.main import main as l2b_main
from l2b.data import DATASETS, ArrayDataset, load_dataset, load_digits
from l2b.data.files import BadImageError
from l2b.noise import load_noisy_labels
from l2b.training import TrainConfig, run_experiment
from l2b.training.validation import IncompleteMetaSetWarning, check_finite_inputs, check_meta_set

Image = pytest.importorskip("PIL.Image")


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """`l2b train` sets torch's thread count for the MLP; give the other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def refused_run(tmp_path: Path, error: type[Exception], match: str, **config) -> None:
    """run_experiment with a tiny config must raise `error` matching `match` and create no run directory."""
    out = tmp_path / "run"
    cfg = TrainConfig(**{"epochs": 1, "warmup_epochs": 0, "device": "cpu", **config})
    with pytest.raises(error, match=match):
        run_experiment(cfg, out_dir=out, progress=False, log=None)
    assert not out.exists(), "a refused run left a run directory behind"


def cli(capsys, *args) -> tuple[int, str]:
    """`l2b ARGS...` in this process: (exit code, stderr)."""
    code = l2b_main([str(a) for a in args])
    return code, capsys.readouterr().err


def save_image(path: Path, seed: int, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)


def image_tree(root: Path, per_class: int = 4, classes=("cat", "dog")) -> Path:
    for c, name in enumerate(classes):
        for i in range(per_class):
            fmt = ("JPEG", "PNG")[i % 2]
            save_image(root / name / f"{i}.{fmt.lower()}", 10 * c + i, fmt)
    return root


def idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    return struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def mnist_root(root: Path, n: int = 20) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for stem in ("train", "t10k"):
        (root / f"{stem}-images-idx3-ubyte").write_bytes(idx_bytes(rng.integers(0, 256, (n, 28, 28), np.uint8)))
        (root / f"{stem}-labels-idx1-ubyte").write_bytes(idx_bytes((np.arange(n) % 10).astype(np.uint8)))
    return root


def cifar_root(root: Path, n: int = 6) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        batch = {
            "batch_label": name,
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "labels": [i % 10 for i in range(n)],
            "filenames": [f"{i}.png" for i in range(n)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return folder


def rewrite_batch(path: Path, change) -> None:
    batch = pickle.loads(path.read_bytes())
    batch = change(batch)
    path.write_bytes(pickle.dumps(batch, protocol=2))


# ----------------------------------------------------------------------------------------------
# config values and config files
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, match",
    [
        ({"epoch": 3}, r"my\.yaml: unknown key\(s\) 'epoch'; known keys: data, "),
        ({"epochs": -2}, r"my\.yaml: config epochs=-2 must be at least 1"),
        ({"noise_rate": 1.5}, r"my\.yaml: config noise_rate=1\.5 must be in \[0, 1\]"),
        ({"noise_rate": -0.1}, r"my\.yaml: config noise_rate=-0\.1 must be in \[0, 1\]"),
        ({"epochs": "3"}, r"my\.yaml: epochs='3' should be of type int"),
        ({"hidden": [64, "wide"]}, r"my\.yaml: hidden=\[64, 'wide'\] should be of type tuple"),
        ({"epochs": 3, "warmup_epochs": 5}, r"my\.yaml: config warmup_epochs=5 must be in \[0, epochs=3\]"),
        ({"noise": "file"}, r"my\.yaml: config noise_file=None must be set exactly when noise is 'file'"),
        (
            {"meta_source": "oracle"},
            r"my\.yaml: config meta_source='oracle' must be one of split, file, trusted, confident, none",
        ),
    ],
    ids=[
        "unknown-key",
        "negative-epochs",
        "rate-above-one",
        "rate-below-zero",
        "wrong-type",
        "wrong-item-type",
        "warmup-beyond-epochs",
        "noise-file-missing",
        "unknown-meta-source",
    ],
)
def test_config_values_name_the_source_key_and_value(values, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_dict(values, source="my.yaml")


def test_cli_config_file_with_an_unknown_key(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text("lr: 0.05\nnoise_rates: 0.2\n")
    code, err = cli(capsys, "train", "--config", path, "--print-config")
    assert code == 2 and f"{path}: unknown key(s) 'noise_rates'" in err and "Traceback" not in err


def test_cli_config_file_that_is_not_a_mapping(tmp_path, capsys):
    path = tmp_path / "list.yaml"
    path.write_text("- epochs\n- 3\n")
    code, err = cli(capsys, "train", "--config", path, "--print-config")
    assert code == 2 and f"{path} must hold a mapping of config keys, got list" in err


def test_cli_negative_epochs(tmp_path, capsys):
    code, err = cli(capsys, "train", "--epochs", "-3", "--out", tmp_path / "run")
    assert code == 2 and "command line: config epochs=-3 must be at least 1" in err
    assert not (tmp_path / "run").exists()


def test_cli_threads_not_positive(tmp_path, capsys):
    code, err = cli(capsys, "train", "--threads", "0", "--out", tmp_path / "run")
    assert code == 2 and "threads=0 must be a positive integer" in err
    assert not (tmp_path / "run").exists()


def test_cli_noise_rate_above_one(tmp_path, capsys):
    code, err = cli(capsys, "train", "--noise-rate", "1.5", "--out", tmp_path / "run")
    assert code == 2 and "config noise_rate=1.5 must be in [0, 1]" in err
    assert not (tmp_path / "run").exists()


def test_cli_resume_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.txt").write_text("hello")
    code, err = cli(capsys, "train", "--resume", folder)
    assert code == 2 and f"{folder / 'config.yaml'} not found: {folder} is not an l2b run directory" in err
    assert sorted(p.name for p in folder.iterdir()) == ["a.txt"]  # nothing written into it


def test_cli_resume_of_a_run_without_checkpoint(tmp_path, capsys):
    import yaml

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"config": TrainConfig(epochs=1, warmup_epochs=0).to_dict()}))
    code, err = cli(capsys, "train", "--resume", run, "--quiet")
    assert code == 2 and f"{run / 'checkpoint.pt'} not found: the run stopped before its first checkpoint" in err


# ----------------------------------------------------------------------------------------------
# run_experiment: data, noisy-label files and meta sets checked before the run directory exists
# ----------------------------------------------------------------------------------------------


def test_run_csv_list_with_an_unknown_path(tmp_path):
    root = tmp_path / "data"
    for i in range(2):
        save_image(root / "img" / f"{i}.png", i, "PNG")
    (root / "train.csv").write_text("path,label\nimg/0.png,0\nimg/missing.png,1\nimg/1.png,1\n")
    refused_run(
        tmp_path,
        ValueError,
        r"train\.csv line 3: unknown path 'img/missing\.png' \(no file .*missing\.png\)",
        data="csv",
        data_root=str(root),
    )


def test_run_csv_list_with_a_missing_label_column(tmp_path):
    root = tmp_path / "data"
    for i in range(2):
        save_image(root / "img" / f"{i}.png", i, "PNG")
    (root / "train.csv").write_text("img/0.png\nimg/1.png\n")
    refused_run(
        tmp_path,
        ValueError,
        r"train\.csv line 1: expected at least 2 columns \(path in column 0, label in "
        r"column 1\), found 1: 'img/0\.png'",
        data="csv",
        data_root=str(root),
    )


def test_run_imagefolder_with_a_truncated_jpeg(tmp_path):
    root = image_tree(tmp_path / "data")
    jpeg = root / "dog" / "2.jpeg"
    jpeg.write_bytes(jpeg.read_bytes()[:150])
    refused_run(tmp_path, BadImageError, r"dog/2\.jpeg: cannot decode image", data="imagefolder", data_root=str(root))


def test_run_imagefolder_with_a_text_file_named_png(tmp_path):
    root = image_tree(tmp_path / "data")
    (root / "cat" / "notes.png").write_text("shopping list: milk, eggs\n")
    refused_run(
        tmp_path,
        BadImageError,
        r"cat/notes\.png: cannot decode image \(UnidentifiedImageError",
        data="imagefolder",
        data_root=str(root),
    )


def test_run_noise_file_of_the_wrong_length(tmp_path, digits):
    path = tmp_path / "short.npy"
    np.save(path, np.zeros(5, np.int64))
    refused_run(
        tmp_path,
        ValueError,
        rf"short\.npy.*expected num_examples={len(digits[0])} labels, got 5",
        noise="file",
        noise_file=str(path),
    )


def test_run_noise_file_with_a_label_out_of_range(tmp_path, digits):
    labels = digits[0].labels.copy()
    labels[7] = 10
    path = tmp_path / "labels.txt"
    path.write_text("".join(f"{v}\n" for v in labels))
    refused_run(
        tmp_path,
        ValueError,
        r"labels\.txt.*\[0, num_classes=10\), got label 10 at position 7",
        noise="file",
        noise_file=str(path),
    )


def test_run_noise_file_of_float_labels_with_fractions(tmp_path, digits):
    labels = digits[0].labels.astype(np.float64)
    labels[3] = 2.5
    path = tmp_path / "float.npy"
    np.save(path, labels)
    refused_run(
        tmp_path,
        ValueError,
        r"float\.npy.*integer dtype, got dtype float64 \(label 2\.5 at position 3 is "
        r"not a whole number\)",
        noise="file",
        noise_file=str(path),
    )


def test_run_noise_file_without_the_named_label_set(tmp_path, digits):
    path = tmp_path / "sets.npz"
    np.savez(path, worse_label=digits[0].labels, aggre_label=digits[0].labels)
    refused_run(
        tmp_path,
        ValueError,
        r"'random_label1' not found in .*sets\.npz.*available keys: \['aggre_label', "
        r"'worse_label'\] \(config noise_label / --noise-label\)",
        noise="file",
        noise_file=str(path),
        noise_label="random_label1",
    )


def test_run_noise_file_of_an_unsupported_format(tmp_path, digits):
    path = tmp_path / "labels.pkl"
    path.write_bytes(pickle.dumps(list(digits[0].labels)))
    refused_run(
        tmp_path,
        ValueError,
        r"unsupported label file .*labels\.pkl.*suffix '\.pkl'",
        noise="file",
        noise_file=str(path),
    )


def _meta_file(tmp_path: Path, index: np.ndarray) -> Path:
    path = tmp_path / "meta.csv"
    path.write_text("index\n" + "".join(f"{i}\n" for i in index))
    return path


def test_run_meta_file_missing_classes(tmp_path, digits):
    index = np.flatnonzero(digits[0].labels < 2)[:20]  # only 0s and 1s
    path = _meta_file(tmp_path, index)
    refused_run(
        tmp_path,
        ValueError,
        r"meta_file .*meta\.csv: the meta set \(20 examples\) has no example of class "
        r"2 \('2'\), 3 \('3'\), .*9 \('9'\) \(8 of 10 classes missing\).*--allow-incomplete-meta",
        meta_source="file",
        meta_file=str(path),
    )


def test_run_meta_file_smaller_than_the_number_of_classes(tmp_path, digits):
    index = [int(np.flatnonzero(digits[0].labels == c)[0]) for c in (4, 5, 6)]
    path = _meta_file(tmp_path, np.array(index))
    refused_run(
        tmp_path,
        ValueError,
        r"meta\.csv: the meta set \(3 examples for 10 classes, fewer than one per "
        r"class\) has no example of class 0 \('0'\), 1 \('1'\), 2 \('2'\), 3 \('3'\), 7",
        meta_source="file",
        meta_file=str(path),
    )


def test_run_incomplete_meta_set_allowed_with_a_warning(tmp_path, digits):
    index = np.flatnonzero(digits[0].labels != 3)[:30]
    path = _meta_file(tmp_path, index)
    cfg = TrainConfig(
        epochs=1,
        warmup_epochs=0,
        device="cpu",
        meta_source="file",
        meta_file=str(path),
        allow_incomplete_meta=True,
        meta_batch_size=10,
    )
    with pytest.warns(
        IncompleteMetaSetWarning,
        match=r"meta\.csv: the meta set \(30 examples\) has no example of "
        r"class 3 \('3'\) \(1 of 10 classes missing\); training with it anyway",
    ):
        summary = run_experiment(cfg, out_dir=tmp_path / "run", progress=False, log=None)
    assert summary["epochs"] == 1 and (tmp_path / "run" / "summary.json").is_file()


def test_run_meta_set_larger_than_a_class(tmp_path):
    refused_run(
        tmp_path,
        ValueError,
        r"class \d has \d+ examples, fewer than the 150 the class-balanced meta set of "
        r"1500 needs",
        num_meta=1500,
    )


def test_run_meta_split_smaller_than_the_number_of_classes(tmp_path):
    refused_run(
        tmp_path,
        ValueError,
        r"num_meta=5 is smaller than the number of classes \(10\).*"
        r"--allow-incomplete-meta",
        num_meta=5,
    )
    cfg = TrainConfig(
        epochs=1, warmup_epochs=0, device="cpu", num_meta=5, allow_incomplete_meta=True, meta_batch_size=5
    )
    with pytest.warns(
        IncompleteMetaSetWarning,
        match=r"num_meta=5: the meta set \(5 examples for 10 classes, "
        r"fewer than one per class\) has no example of class .*\(5 of 10 classes missing\)",
    ):
        run_experiment(cfg, out_dir=tmp_path / "run", progress=False, log=None)


def _poisoned_digits(split: str, index: int, value: float):
    def load(*, test_fraction: float = 0.2, split_seed: int = 0):
        train, test = load_digits(test_fraction=test_fraction, split_seed=split_seed)
        # Written after the ArrayDataset checked its arrays: only the check before training sees it.
        (train if split == "train" else test).inputs[index, 0, 4, 4] = value
        return train, test

    return load


@pytest.mark.parametrize("split, index, value", [("train", 5, np.nan), ("test", 11, -np.inf)])
def test_run_non_finite_inputs(tmp_path, split, index, value):
    DATASETS.register("poisoned")(_poisoned_digits(split, index, value))
    try:
        _refuse_poisoned(tmp_path, split, index)
    finally:
        DATASETS.unregister("poisoned")


def _refuse_poisoned(tmp_path, split, index):
    refused_run(
        tmp_path,
        ValueError,
        rf"data set 'digits-{split}': input {index} has NaN or Inf values \(1 such "
        r"examples\)",
        data="poisoned",
    )


# ----------------------------------------------------------------------------------------------
# load_dataset: files on disk
# ----------------------------------------------------------------------------------------------


def test_idx_file_with_a_wrong_magic_number(tmp_path):
    root = mnist_root(tmp_path / "mnist")
    labels = root / "train-labels-idx1-ubyte"
    labels.write_bytes(b"\x08\x01" + labels.read_bytes()[2:])
    with pytest.raises(
        ValueError,
        match=r"train-labels-idx1-ubyte: bad magic number 0x08010801: an idx file starts "
        r"with two zero bytes",
    ):
        load_dataset("mnist", root=root)


def test_idx_file_with_a_truncated_payload(tmp_path):
    root = mnist_root(tmp_path / "mnist")
    images = root / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(
        ValueError,
        match=r"t10k-images-idx3-ubyte: truncated: dimensions \(20, 28, 28\) of uint8 need "
        r"15680 bytes of data, found 15580",
    ):
        load_dataset("mnist", root=root)


def test_idx_file_with_a_corrupt_gzip_stream(tmp_path):
    root = mnist_root(tmp_path / "mnist")
    images = root / "train-images-idx3-ubyte"
    (root / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(images.read_bytes())[:-40])
    images.unlink()
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz: corrupt or truncated gzip stream"):
        load_dataset("mnist", root=root)


def test_idx_images_and_labels_of_different_lengths(tmp_path):
    root = mnist_root(tmp_path / "mnist")
    (root / "train-labels-idx1-ubyte").write_bytes(idx_bytes((np.arange(19) % 10).astype(np.uint8)))
    with pytest.raises(
        ValueError,
        match=r"train-labels-idx1-ubyte: 19 labels but .*train-images-idx3-ubyte holds 20 "
        r"images",
    ):
        load_dataset("mnist", root=root)


def test_idx_label_out_of_range(tmp_path):
    root = mnist_root(tmp_path / "mnist")
    labels = (np.arange(20) % 10).astype(np.uint8)
    labels[3] = 12
    (root / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte: label 12 at index 3 is outside \[0, 10\)"):
        load_dataset("mnist", root=root)


def test_cifar_batch_missing_its_data(tmp_path):
    folder = cifar_root(tmp_path)
    rewrite_batch(folder / "data_batch_4", lambda b: {k: v for k, v in b.items() if k != "data"})
    with pytest.raises(
        ValueError,
        match=r"data_batch_4: missing field 'data' \(fields: batch_label, filenames, "
        r"labels\)",
    ):
        load_dataset("cifar10", root=tmp_path)


def test_cifar_batch_that_is_not_a_dict(tmp_path):
    folder = cifar_root(tmp_path)
    rewrite_batch(folder / "test_batch", lambda b: [b["data"], b["labels"]])
    with pytest.raises(ValueError, match=r"test_batch: expected a pickled dict, found list"):
        load_dataset("cifar10", root=tmp_path)


def test_cifar_batch_with_float_labels(tmp_path):
    folder = cifar_root(tmp_path)
    rewrite_batch(folder / "data_batch_2", lambda b: {**b, "labels": [0.5 * i for i in range(6)]})
    with pytest.raises(
        ValueError,
        match=r"data_batch_2: field 'labels' must be a flat list of integers, found "
        r"float64 of shape \(6,\)",
    ):
        load_dataset("cifar10", root=tmp_path)


def test_csv_list_with_no_entries(tmp_path):
    (tmp_path / "train.csv").write_text("# path,label\n\n")
    with pytest.raises(ValueError, match=r"train\.csv: no entries"):
        load_dataset("csv", root=tmp_path)


def test_csv_list_file_that_does_not_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"list file '.*lists/train\.csv' not found"):
        load_dataset("csv", train_list=str(tmp_path / "lists" / "train.csv"))


def test_imagefolder_class_folder_without_images(tmp_path):
    root = image_tree(tmp_path / "data")
    (root / "eel").mkdir()
    (root / "eel" / "README.txt").write_text("photos to come")
    with pytest.raises(ValueError, match=r"data/eel: class folder has no image files \(extensions: \.jpg"):
        load_dataset("imagefolder", root=root)


def test_imagefolder_with_no_decodable_image(tmp_path):
    root = tmp_path / "data"
    for c in ("cat", "dog"):
        for i in range(3):
            (root / c).mkdir(parents=True, exist_ok=True)
            (root / c / f"{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    with pytest.raises(ValueError, match=r"data set 'imagefolder': no decodable training image \(4 skipped\)"):
        load_dataset("imagefolder", root=root, test_fraction=0.34, skip_bad_files=True)


def test_imagefolder_bad_files_skipped_and_counted(tmp_path):
    root = image_tree(tmp_path / "data")
    (root / "cat" / "notes.png").write_text("not an image")
    (root / "dog" / "cut.jpg").write_bytes((root / "dog" / "0.jpeg").read_bytes()[:120])
    train, test = load_dataset("imagefolder", root=root, test_fraction=0.25, skip_bad_files=True)
    assert train.num_skipped + test.num_skipped == 2
    assert sorted(Path(p).name for p in [*train.skipped, *test.skipped]) == ["cut.jpg", "notes.png"]
    assert len(train) + len(test) == 8


# ----------------------------------------------------------------------------------------------
# noisy-label files read directly
# ----------------------------------------------------------------------------------------------


def test_label_file_with_a_negative_label(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("0\n1\n-1\n2\n")
    with pytest.raises(ValueError, match=r"labels\.txt'?: labels must be non-negative, got label -1 at position 2"):
        load_noisy_labels(path)


def test_label_file_of_whole_number_floats(tmp_path):
    path = tmp_path / "labels.npy"
    np.save(path, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(
        ValueError,
        match=r"labels\.npy'?: labels must have an integer dtype, got dtype float64 "
        r"\(whole numbers stored as floats; save the labels as integers\)",
    ):
        load_noisy_labels(path)


# ----------------------------------------------------------------------------------------------
# l2b.fit and ArrayDataset
# ----------------------------------------------------------------------------------------------


def _xy(n: int = 20, k: int = 3, d: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32), np.arange(n) % k


@pytest.mark.parametrize(
    "case, match",
    [
        ("meta-length", r"meta has 20 inputs but 19 labels"),
        ("meta-inf", r"meta input 2 has NaN or Inf values \(1 such examples\)"),
        ("empty", r"train inputs must have shape \(N, \.\.\.\) with N >= 1, got \(0, 4\)"),
        ("negative", r"train label -1 at index 4 is outside \[0, 3\)"),
        (
            "test-too-large",
            r"test label 3 at index 0 is outside \[0, 3\) \(the model returns 3 logits; 1 such labels\)",
        ),
        ("labels-2d", r"train labels must be a 1-D array of class indices, got shape \(20, 1\)"),
    ],
)
def test_fit_bad_arrays(case, match):
    x, y = _xy()
    train, meta, test = (x, y), _xy(seed=1), None
    if case == "meta-length":
        meta = (torch.as_tensor(meta[0]), torch.as_tensor(meta[1][:-1]))
    elif case == "meta-inf":
        meta[0][2, 1] = np.inf
    elif case == "empty":
        train = (x[:0], y[:0])
    elif case == "negative":
        y = y.copy()
        y[4] = -1
        train = (x, y)
    elif case == "test-too-large":
        test = (x[:1], np.array([3]))
    elif case == "labels-2d":
        train = (x, y[:, None])
    with pytest.raises(ValueError, match=match):
        l2b.fit(nn.Linear(4, 3), train, meta, test=test, epochs=1, warmup_epochs=0)


@pytest.mark.parametrize(
    "inputs, labels, match",
    [
        (np.zeros((0, 2), np.float32), np.zeros(0, np.int64), r"data set 'toy' is empty"),
        (
            np.zeros((4, 2), np.float32),
            np.array([0.0, 0.5, 1.0, 2.0]),
            r"data set 'toy': labels must be a 1-D integer array, got shape \(4,\) dtype float64 \(label 0\.5 at index 1 is "  # noqa: E501
            r"not a whole number\)",
        ),
        (
            np.zeros((4, 2), np.float32),
            np.array([0, 1, 2, 1, 0]),
            r"data set 'toy': inputs has 4 examples but labels has 5",
        ),
        (
            np.zeros((4, 2), np.float32),
            np.array([-1, 1, 2, 1]),
            r"data set 'toy': label -1 at index 0 is outside \[0, 3\) \(1 such labels\)",
        ),
        (
            np.array([[0, 1], [2, 3], [4, np.inf], [5, 6]], np.float32),
            np.array([0, 1, 2, 1]),
            r"data set 'toy': input 2 has NaN or Inf values \(1 such examples\)",
        ),
    ],
    ids=["empty", "fractional-labels", "lengths", "negative-label", "inf-input"],
)
def test_array_dataset_bad_arrays(inputs, labels, match):
    with pytest.raises(ValueError, match=match):
        ArrayDataset(inputs, labels, 3, "toy")


# ----------------------------------------------------------------------------------------------
# the checks themselves
# ----------------------------------------------------------------------------------------------


def test_check_meta_set_names_many_missing_classes_briefly():
    with pytest.raises(
        ValueError,
        match=r"clean\.csv: the meta set \(4 examples for 30 classes, fewer than one per "
        r"class\) has no example of class 1, 2, 4, 5, 6, 7, 8, 9, 10, 11 and 17 more "
        r"\(27 of 30 classes missing\)",
    ):
        check_meta_set(np.array([0, 3, 3, 12]), num_classes=30, source="clean.csv")
    check_meta_set(np.arange(5), num_classes=5, source="clean.csv")  # complete: silent


def test_check_finite_inputs_counts_across_chunks():
    x = np.zeros((10, 3), np.float32)
    x[[7, 2, 9], 1] = [np.nan, np.inf, -np.inf]
    with pytest.raises(ValueError, match=r"data set 'chunks': input 2 has NaN or Inf values \(3 such examples\)"):
        check_finite_inputs(x, name="chunks", chunk=3)
    check_finite_inputs(np.arange(6).reshape(3, 2), name="integers")  # integer inputs are always finite
