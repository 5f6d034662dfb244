"""Silent data faults, now refused or corrected as documented (docs/data-and-noise.md, docs/faults.md):
repeated examples and train/test leaks in file-based data sets, ambiguous image-folder layouts and
symlink loops, images that are not 8-bit RGB / grey, and inputs of the wrong scale given to
`l2b predict` / `l2b evaluate`. Every test makes its own tiny files."""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from l2b.cli.main import main as l2b_main
from l2b.data import FileListDataset, load_dataset
from l2b.data.files import BadImageError, decode_resized, list_image_files
from l2b.data.imagefolder import load_imagefolder
from l2b.data.lists import load_clothing1m, load_csv, load_isic2019
from l2b.data.splits import stratified_holdout
from l2b.training import TrainConfig, run_experiment

Image = pytest.importorskip("PIL.Image")

LAYOUTS = r"accepted layouts: root/<class>/<images> \(one tree, split with test_fraction\), or root/train/"


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def save_image(path: Path, seed: int, fmt: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def image_tree(root: Path, per_class: int = 3, classes=("cat", "dog")) -> Path:
    for c, name in enumerate(classes):
        for i in range(per_class):
            save_image(root / name / f"{i}.png", 10 * c + i)
    return root


def refused_run(tmp_path: Path, error: type[Exception], match: str, **config) -> str:
    """run_experiment must raise `error` matching `match` and leave no run directory; the message."""
    out = tmp_path / "run"
    cfg = TrainConfig(**{"epochs": 1, "warmup_epochs": 0, "device": "cpu", "image_size": 8, **config})
    with pytest.raises(error, match=match) as info:
        run_experiment(cfg, out_dir=out, progress=False, log=None)
    assert not out.exists(), "a refused run left a run directory behind"
    message = str(info.value)
    assert "\n" not in message
    return message


def cli(capsys, *args) -> tuple[int, str, str]:
    """`l2b ARGS...` in this process: (exit code, stdout, stderr)."""
    code = l2b_main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, err)


# ----------------------------------------------------------------------------------------------
# 1. Repeated examples and train/test leaks
# ----------------------------------------------------------------------------------------------


def test_list_file_with_repeated_paths_is_refused_before_any_split(tmp_path):
    root = tmp_path / "data"
    for i in range(4):
        save_image(root / "img" / f"{i}.png", i)
    os.symlink(root / "img" / "1.png", root / "img" / "link.png")
    (root / "train.csv").write_text(
        "path,label\n"
        "img/0.png,0\n"  # line 2
        "img/1.png,1\n"  # line 3
        "img/./0.png,0\n"  # line 4: img/0.png again
        "img/2.png,0\n"
        "img/link.png,0\n"  # line 6: img/1.png again, with another label
        "img/3.png,1\n"
    )
    message = refused_run(
        tmp_path, ValueError, r"train\.csv: 2 files are listed more than once", data="csv", data_root=str(root)
    )
    assert "1 of them with different labels" in message
    assert "'img/0.png' (line 2, line 4)" in message and "'img/1.png' (line 3, line 6; labels 0 and 1)" in message
    assert message.endswith("list each file once")
    # the same without checking files: paths are normalised, not resolved
    (root / "train.csv").write_text("img/0.png,0\nimg/1.png,1\nimg/../img/0.png,0\nimg/2.png,1\n")
    with pytest.raises(ValueError, match=r"1 file is listed more than once .*'img/0\.png' \(line 1, line 3\)"):
        load_csv(root=root, check_files=False, image_size=4)


def test_file_in_both_the_train_and_the_test_list_is_refused(tmp_path, capsys):
    root = tmp_path / "data"
    for i in range(5):
        save_image(root / "img" / f"{i}.png", i)
    (root / "train.csv").write_text("img/0.png,0\nimg/1.png,1\nimg/2.png,0\n")
    (root / "test.csv").write_text("img/3.png,0\nimg/./1.png,1\nimg/4.png,1\n")
    message = refused_run(
        tmp_path,
        ValueError,
        r"test\.csv: 1 test file is also in the training set .*train\.csv \(a train/test leak\): "
        r"'img/\./1\.png' \(line 2; training: line 2\); remove them from one of the two",
        data="csv",
        data_root=str(root),
    )
    assert "test.csv" in message
    code, _, err = cli(capsys, "train", "--data", "csv", "--data-root", root, "--epochs", 1, "--out", tmp_path / "r")
    assert code == 2 and not (tmp_path / "r").exists()
    one_error_line(err, "l2b train: error:", "test.csv", "train/test leak")


def test_image_folder_reaching_one_image_twice_is_refused(tmp_path):
    root = image_tree(tmp_path / "data")
    os.symlink(root / "cat" / "0.png", root / "dog" / "also-cat.png")  # one image, two classes
    message = refused_run(
        tmp_path,
        ValueError,
        r"data: 1 file is listed more than once, 1 of them with different labels",
        data="imagefolder",
        data_root=str(root),
    )
    assert "cat/0.png, dog/also-cat.png; labels cat and dog" in message
    # split trees: an image of the training tree linked into the test tree is a leak
    split = tmp_path / "split"
    image_tree(split / "train")
    image_tree(split / "test", per_class=1)
    os.symlink(split / "train" / "dog" / "2.png", split / "test" / "dog" / "leak.png")
    with pytest.raises(
        ValueError, match=r"split/test: 1 test file is also in the training set .*split/train \(a train/test leak\)"
    ):
        load_imagefolder(root=split, image_size=4)


def test_clothing1m_repeated_key_is_refused_and_a_leaked_test_image_left_out(tmp_path):
    keys = [f"images/{i % 2}/{i}.jpg" for i in range(8)]
    for i, k in enumerate(keys):
        save_image(tmp_path / k, i, "JPEG")
    (tmp_path / "noisy_label_kv.txt").write_text("".join(f"{k} {i % 14}\n" for i, k in enumerate(keys)))
    (tmp_path / "clean_label_kv.txt").write_text("".join(f"{k} {i % 14}\n" for i, k in enumerate(keys)))
    (tmp_path / "noisy_train_key_list.txt").write_text("\n".join([*keys[:5], keys[2]]) + "\n")
    (tmp_path / "clean_test_key_list.txt").write_text("\n".join(keys[5:]) + "\n")
    with pytest.raises(
        ValueError,
        match=r"noisy_train_key_list\.txt: 1 file is listed more than once .*'images/0/2\.jpg' \(line 3, line 6\)",
    ):
        load_clothing1m(root=tmp_path)
    # The official lists as published: a test image the training list also has is left out of
    # training, with a warning, rather than refusing the benchmark.
    (tmp_path / "noisy_train_key_list.txt").write_text("\n".join(keys[:6]) + "\n")
    with pytest.warns(UserWarning, match=r"1 images of the clean_test split are also listed in noisy_train"):
        train, test = load_clothing1m(root=tmp_path)
    assert len(train) == 5 and len(test) == 3


def test_isic_two_ids_of_one_file_are_refused(tmp_path):
    classes = ("MEL", "NV")
    (tmp_path / "images").mkdir()
    rows = []
    for i in range(6):
        if i == 5:
            os.symlink(tmp_path / "images" / "ISIC_0.jpg", tmp_path / "images" / "ISIC_5.jpg")
        else:
            save_image(tmp_path / "images" / f"ISIC_{i}.jpg", i, "JPEG")
        rows.append(f"ISIC_{i},{int(i % 2 == 0)},{int(i % 2 == 1)}\n")
    (tmp_path / "ISIC_2019_Training_GroundTruth.csv").write_text("image," + ",".join(classes) + "\n" + "".join(rows))
    with pytest.raises(
        ValueError,
        match=r"GroundTruth\.csv: 1 file is listed more than once, 1 of them with different labels "
        r".*line 2 \(image ISIC_0\), line 7 \(image ISIC_5\); labels MEL and NV",
    ):
        load_isic2019(root=tmp_path)


# ----------------------------------------------------------------------------------------------
# 2. Image-folder layouts
# ----------------------------------------------------------------------------------------------


def test_train_folder_without_test_folder_is_refused_not_taken_as_a_class(tmp_path, capsys):
    root = image_tree(tmp_path / "data" / "train")
    message = refused_run(
        tmp_path,
        ValueError,
        r"data: has a train/ folder but no test/ folder",
        data="imagefolder",
        data_root=str(root.parent),
    )
    assert "accepted layouts" in message
    code, _, err = cli(capsys, "train", "--data", "imagefolder", "--data-root", root.parent, "--out", tmp_path / "r")
    assert code == 2 and not (tmp_path / "r").exists()
    one_error_line(err, "has a train/ folder but no test/ folder", "accepted layouts")
    only_test = image_tree(tmp_path / "t" / "test")
    with pytest.raises(ValueError, match=r"has a test/ folder but no train/ folder.*" + LAYOUTS):
        load_imagefolder(root=only_test.parent)


@pytest.mark.parametrize(
    "make, match",
    [
        (
            lambda r: (image_tree(r / "train"), image_tree(r / "test"), image_tree(r / "cat")),
            r"mixes the split folders train/ and test/ with other folders \(cat\)",
        ),
        (
            lambda r: (image_tree(r), save_image(r / "loose.png", 1)),
            r"1 image file directly in the root \(loose\.png\), which belong to no class",
        ),
        (
            lambda r: (image_tree(r / "train"), image_tree(r / "test"), save_image(r / "train" / "x.png", 1)),
            r"train: 1 image file next to the class folders \(x\.png\)",
        ),
        (
            lambda r: (r.mkdir(parents=True), save_image(r / "a.png", 1), save_image(r / "b.png", 2)),
            r"2 image files directly in the root",
        ),
    ],
    ids=["split-and-class-folders", "loose-image-beside-classes", "loose-image-in-train", "no-class-folders"],
)
def test_ambiguous_layouts_are_refused_with_the_accepted_ones(tmp_path, make, match):
    root = tmp_path / "data"
    make(root)
    with pytest.raises(ValueError, match=match + ".*" + LAYOUTS):
        load_imagefolder(root=root, image_size=4)


def test_empty_class_folder_is_refused_and_hidden_entries_are_ignored(tmp_path):
    root = image_tree(tmp_path / "data")
    (root / ".cache").mkdir()
    (root / ".DS_Store").write_bytes(b"\0")
    (root / "README.txt").write_text("notes, not an image")
    train, test = load_imagefolder(root=root, image_size=4, test_fraction=0.34)
    assert train.class_names == ("cat", "dog") and len(train) + len(test) == 6
    (root / "eel").mkdir()
    with pytest.raises(ValueError, match=r"data/eel: class folder has no image files"):
        load_imagefolder(root=root, image_size=4)


def test_symlink_loops_are_walked_once(tmp_path):
    root = image_tree(tmp_path / "data")
    os.symlink(root / "cat", root / "cat" / "loop")  # cat/loop/loop/... forever with plain followlinks
    os.symlink("..", root / "dog" / "up")  # dog/up -> data: would reach cat/ and dog/ again
    assert len(list_image_files(root / "cat")) == 3
    with pytest.raises(ValueError, match=r"listed more than once"):  # dog/up/cat/0.png is cat/0.png under 'dog'
        load_imagefolder(root=root, image_size=4)
    (root / "dog" / "up").unlink()
    train, test = load_imagefolder(root=root, image_size=4, test_fraction=0.34)
    assert len(train) + len(test) == 6


# ----------------------------------------------------------------------------------------------
# 3. Images that are not 8-bit RGB or grey
# ----------------------------------------------------------------------------------------------


def _grey(path: Path, values, mode: str, fmt: str) -> Path:
    arr = np.asarray([values])
    if mode in ("I;16", "I;16B"):
        im = Image.frombytes(mode, (arr.shape[1], 1), arr.astype("<u2" if mode == "I;16" else ">u2").tobytes())
    elif mode == "I":
        im = Image.fromarray(arr.astype(np.int32))
    else:
        im = Image.fromarray(arr.astype(np.float32))
    im.save(path, format=fmt)
    return path


@pytest.mark.parametrize("mode, fmt", [("I;16", "PNG"), ("I;16B", "TIFF"), ("I", "TIFF")])
def test_16_bit_images_are_divided_by_257(tmp_path, mode, fmt):
    path = _grey(tmp_path / f"x.{fmt.lower()}", [0, 257, 32896, 65535], mode, fmt)
    with Image.open(path) as im:
        assert im.mode.startswith("I")
    out = decode_resized(path, (1, 4))
    assert out.shape == (3, 1, 4) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, 0], [[0, 1, 128, 255]] * 3)  # Pillow's own convert gives 255 from 256 up


def test_32_bit_int_and_float_images_beyond_a_known_range_are_refused(tmp_path):
    big = _grey(tmp_path / "big.tiff", [0, 70000], "I", "TIFF")
    with pytest.raises(
        BadImageError, match=r"big\.tiff: 32-bit integer image \(mode 'I'\) with values 0\.\.70000, outside"
    ):
        decode_resized(big, (1, 2))
    unit = _grey(tmp_path / "unit.tiff", [0.0, 0.5, 1.0], "F", "TIFF")
    np.testing.assert_array_equal(decode_resized(unit, (1, 3))[:, 0], [[0, 128, 255]] * 3)
    wide = _grey(tmp_path / "wide.tiff", [0.0, 3.5], "F", "TIFF")
    with pytest.raises(BadImageError, match=r"wide\.tiff: 32-bit float image \(mode 'F'\) with values 0\.\.3\.5"):
        decode_resized(wide, (1, 2))


def test_alpha_and_transparency_are_composited_on_white(tmp_path):
    la = Image.fromarray(np.array([[[10, 0], [10, 255], [10, 128]]], dtype=np.uint8), "LA")
    la.save(tmp_path / "la.png")
    np.testing.assert_array_equal(decode_resized(tmp_path / "la.png", (1, 3))[0, 0], [255, 10, 132])
    rgba = Image.fromarray(np.array([[[200, 0, 0, 0], [200, 0, 0, 255]]], dtype=np.uint8), "RGBA")
    rgba.save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(decode_resized(tmp_path / "rgba.png", (1, 2))[:, 0].T, [[255, 255, 255], [200, 0, 0]])
    p = Image.new("P", (2, 1))
    p.putpalette([255, 0, 0, 0, 255, 0])
    p.putpixel((1, 0), 1)
    p.save(tmp_path / "p.png", transparency=0)  # palette entry 0 (red) transparent
    np.testing.assert_array_equal(decode_resized(tmp_path / "p.png", (1, 2))[:, 0].T, [[255, 255, 255], [0, 255, 0]])
    pa = Image.new("PA", (1, 1))
    pa.putpalette([0, 0, 255])
    pa.save(tmp_path / "pa.tiff")
    with Image.open(tmp_path / "pa.tiff") as im:
        assert im.mode == "PA"
    np.testing.assert_array_equal(decode_resized(tmp_path / "pa.tiff", (1, 1))[:, 0, 0], [255, 255, 255])
    key = Image.fromarray(np.array([[0, 90]], dtype=np.uint8))
    key.save(tmp_path / "key.png", transparency=0)  # grey colour key
    np.testing.assert_array_equal(decode_resized(tmp_path / "key.png", (1, 2))[0, 0], [255, 90])
    # the lazy data sets decode through the same conversion
    ds = FileListDataset([tmp_path / "rgba.png"], [0])
    assert torch.allclose(ds[0][0], torch.tensor([[[1.0, 200 / 255]], [[1.0, 0.0]], [[1.0, 0.0]]]))


def _bands(mode: str, values) -> Image.Image:
    return Image.merge(mode, [Image.new("L", (2, 2), v) for v in values])


@pytest.mark.parametrize(
    "mode, values, fmt, expected, tol",
    [
        ("CMYK", (0, 255, 255, 0), "TIFF", (255, 0, 0), 0),
        ("CMYK", (0, 255, 255, 0), "JPEG", (255, 0, 0), 12),
        ("YCbCr", (76, 85, 255), "TIFF", (255, 0, 0), 3),
        ("LAB", (255, 128, 128), "TIFF", (255, 255, 255), 1),
        ("1", (1,), "PNG", (255, 255, 255), 0),
        ("L", (77,), "PNG", (77, 77, 77), 0),
    ],
)
def test_colour_spaces_are_converted_to_rgb(tmp_path, mode, values, fmt, expected, tol):
    im = Image.new("1", (2, 2), 1) if mode == "1" else _bands(mode, values)
    path = tmp_path / f"x.{fmt.lower()}"
    im.save(path, format=fmt)
    with Image.open(path) as back:
        assert back.mode == mode
    out = decode_resized(path, (2, 2)).astype(int)
    assert np.abs(out - np.asarray(expected)[:, None, None]).max() <= tol, out[:, 0, 0]


def test_an_image_folder_of_16_bit_pngs_is_not_washed_out(tmp_path):
    for c, name in enumerate(("dark", "light")):
        for i in range(3):
            level = (5000 + 1000 * i) if c == 0 else (50000 + 1000 * i)
            path = tmp_path / "data" / name / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            _grey(path, [level] * 4, "I;16", "PNG")
    train, test = load_imagefolder(root=tmp_path / "data", image_size=2, test_fraction=0.34, normalize=False)
    pixels = np.concatenate([train.inputs, test.inputs]) * 255
    dark = np.concatenate([train.labels, test.labels]) == 0
    assert pixels[dark].max() < 30 and pixels[~dark].min() > 190  # 7000/257 = 27; 50000/257 = 195


# ----------------------------------------------------------------------------------------------
# 4. Inputs in the wrong scale at predict / evaluate time
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A one-epoch run on digits, the raw test pixels (0..16) and the run's preprocessed test inputs."""
    from sklearn.datasets import load_digits as sklearn_digits

    from l2b.data import load_digits

    root = tmp_path_factory.mktemp("predict")
    cfg = TrainConfig(method="ce", epochs=1, warmup_epochs=0, device="cpu")
    run_experiment(cfg, out_dir=root / "run", progress=False, log=None)
    bunch = sklearn_digits()
    _, test_idx = stratified_holdout(bunch.target, fraction=0.2, seed=0)
    raw = bunch.data.reshape(-1, 1, 8, 8)[test_idx].astype(np.int64)
    _, test = load_digits()
    return root, raw, bunch.target[test_idx], test


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_raw_inputs_get_the_runs_preprocessing(digits_run, capsys):
    root, raw, labels, test = digits_run
    code, out, err = cli(capsys, "evaluate", root / "run")
    assert code == 0, err
    reference = json.loads(out)
    np.savez(root / "raw.npz", inputs=raw, labels=labels)
    code, out, err = cli(capsys, "evaluate", root / "run", "--data", root / "raw.npz")
    assert code == 0, err
    report = json.loads(out)
    assert report["accuracy"] == reference["accuracy"] and report["loss"] == pytest.approx(reference["loss"], abs=1e-6)
    assert report["preprocessing"].startswith("the run's: (x / 16 - 0.3055) / 0.3761")
    np.savez(root / "pre.npz", inputs=test.inputs, labels=test.labels)  # already standardised: opt in
    code, out, err = cli(capsys, "evaluate", root / "run", "--data", root / "pre.npz", "--preprocessed")
    assert code == 0, err
    assert json.loads(out)["accuracy"] == reference["accuracy"] and "preprocessing" in json.loads(out)
    # .npy of raw inputs: the same predictions as the registered data set
    np.save(root / "raw.npy", raw.astype(np.uint8))
    code, _, err = cli(capsys, "predict", root / "run", "--data", root / "raw.npy", "--out", root / "a.csv")
    assert code == 0, err
    code, _, err = cli(capsys, "predict", root / "run", "--data", "digits", "--out", root / "b.csv")
    assert code == 0, err
    with open(root / "a.csv", newline="") as fa, open(root / "b.csv", newline="") as fb:
        assert list(csv.reader(fa)) == list(csv.reader(fb))
    code, _, err = cli(capsys, "evaluate", root / "run", "--data", root / "raw.npy")
    assert code == 2
    one_error_line(err, "raw.npy is an .npy file of inputs only: evaluate needs labels")


def test_inputs_in_the_wrong_scale_are_refused(digits_run, capsys):
    root, raw, labels, test = digits_run
    before = _listing(root / "run")
    np.savez(root / "std.npz", inputs=test.inputs, labels=test.labels)  # standardised, without --preprocessed
    code, _, err = cli(capsys, "evaluate", root / "run", "--data", root / "std.npz")
    assert code == 2
    one_error_line(err, "std.npz: inputs range from -0.8", "outside [0, 16]", "pass --preprocessed")
    np.save(root / "unit.npy", raw / 16.0)  # scaled to [0, 1]
    code, _, err = cli(capsys, "predict", root / "run", "--data", root / "unit.npy", "--out", root / "u.csv")
    assert code == 2 and not (root / "u.csv").exists()
    one_error_line(err, "unit.npy: inputs range from 0 to 1: they look scaled to [0, 1]", "in [0, 16]")
    assert _listing(root / "run") == before  # the run directory is only read


@pytest.mark.parametrize(
    "write, needles",
    [
        (lambda p, raw: np.save(p, raw.reshape(len(raw), 64)), ["bad.npy: inputs have shape (359, 64)", "(1, 8, 8)"]),
        (lambda p, raw: np.save(p, raw[0]), ["bad.npy: inputs have shape (1, 8, 8)", "inputs of shape (N, 1, 8, 8)"]),
        (
            lambda p, raw: np.save(p, np.array([raw[0], "x"], dtype=object), allow_pickle=True),
            ["bad.npy: the array holds Python objects"],
        ),
        (lambda p, raw: np.save(p, raw.astype(str)), ["bad.npy: 'inputs' must be a numeric", "<U"]),
        (lambda p, raw: np.save(p, raw > 8), ["bad.npy: 'inputs' must be a numeric", "bool"]),
        (
            lambda p, raw: np.save(p, np.where(np.arange(raw.size).reshape(raw.shape) == 70, np.nan, raw)),
            ["bad.npy: input 1 has NaN or Inf values (1 such examples)"],
        ),
        (lambda p, raw: p.write_bytes(b"not numpy at all"), ["bad.npy is not a readable .npz or .npy file"]),
    ],
    ids=["flat", "one-example", "object", "strings", "bool", "nan", "garbage"],
)
def test_bad_npy_files_are_refused_naming_the_file(digits_run, capsys, write, needles):
    root, raw, _, _ = digits_run
    path = root / "bad.npy"
    write(path, raw)
    code, _, err = cli(capsys, "predict", root / "run", "--data", path, "--out", root / "bad.csv")
    assert code == 2 and not (root / "bad.csv").exists()
    one_error_line(err, *needles)


def test_bad_npz_files_are_refused_naming_the_file(digits_run, capsys):
    root, raw, labels, _ = digits_run
    buf = io.BytesIO()
    np.save(buf, np.array([{"inputs": 1}], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(root / "obj.npz", "w") as z:
        z.writestr("inputs.npy", buf.getvalue())
    code, _, err = cli(capsys, "evaluate", root / "run", "--data", root / "obj.npz")
    assert code == 2
    one_error_line(err, "obj.npz: array 'inputs' holds Python objects, which are refused")
    np.savez(root / "wide.npz", inputs=raw[:, :, :4], labels=labels)
    code, _, err = cli(capsys, "evaluate", root / "run", "--data", root / "wide.npz")
    assert code == 2
    one_error_line(err, "wide.npz: inputs have shape (359, 1, 4, 8)", "(1, 8, 8)")
    np.savez(root / "nan.npz", inputs=np.where(raw == 0, np.nan, raw.astype(float)), labels=labels)
    code, _, err = cli(capsys, "evaluate", root / "run", "--data", root / "nan.npz")
    assert code == 2
    one_error_line(err, "nan.npz: input 0 has NaN or Inf values")
    np.savez(root / "labels.npz", inputs=raw, labels=labels.astype(float))
    code, _, err = cli(capsys, "evaluate", root / "run", "--data", root / "labels.npz")
    assert code == 2
    one_error_line(err, "labels.npz: 'labels' must be integer class indices of shape (359,)")


def test_another_registered_data_set_gets_the_runs_statistics():
    """A data set other than the run's own is standardised with the run's mean and std."""
    from l2b.data.preprocessing import Preprocessing

    run = Preprocessing(255.0, (0.5,), (0.25,))
    other = Preprocessing(255.0, (0.1,), (0.2,))
    raw = np.arange(0, 256, 15, dtype=np.uint8).reshape(1, 1, 1, -1)
    np.testing.assert_allclose(run.rebase(other.apply(raw), other), run.apply(raw), atol=1e-5)
    assert load_dataset("digits")[0].scale == 16.0


def test_raw_8_bit_pixels_of_an_image_run_get_its_channel_statistics(tmp_path, capsys):
    root = image_tree(tmp_path / "data", per_class=6)
    cfg = TrainConfig(
        method="ce",
        data="imagefolder",
        noise="symmetric",  # simulated: the folder's test split is scored
        data_root=str(root),
        image_size=8,
        epochs=1,
        warmup_epochs=0,
        num_meta=2,
        batch_size=4,
        meta_batch_size=2,
        device="cpu",
    )
    run_experiment(cfg, out_dir=tmp_path / "run", progress=False, log=None)
    _, test = load_imagefolder(root=root, image_size=8)
    mean, std = np.asarray(test.mean)[:, None, None], np.asarray(test.std)[:, None, None]
    raw = np.round((test.inputs * std + mean) * 255).astype(np.uint8)  # the decoded pixels
    np.save(tmp_path / "raw.npy", raw)
    code, out, err = cli(
        capsys, "predict", tmp_path / "run", "--data", tmp_path / "raw.npy", "--out", tmp_path / "a.csv"
    )
    assert code == 0, err
    assert "(x / 255 - (" in json.loads(out)["preprocessing"]
    code, _, err = cli(capsys, "predict", tmp_path / "run", "--data", "imagefolder", "--out", tmp_path / "b.csv")
    assert code == 0, err
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
