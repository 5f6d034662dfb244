"""Using a finished run: its model rebuilt from ``config.yaml`` and ``model.pt``, and data to feed it.

>>> model, config = load_trained_model("runs/my-run")
>>> probs = predict_proba(model, inputs)          # l2b.training.trainer.predict_proba

The model is rebuilt from the run's config (model name, MLP widths) and the shape and class count
of the run's data set, then ``model.pt`` (the epoch selected on the clean meta set) is loaded
with ``torch.load(weights_only=True)``, so no code from the file is executed.

Inputs from a file (``.npz`` / ``.npy``) are raw by default (8-bit pixels 0..255; digits' 0..16)
and get exactly the run's preprocessing, re-derived from the run's data set as its config
describes it (:func:`run_preprocessing`); ``preprocessed=True`` takes them as already preprocessed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data import DATASETS, FileListDataset
from ..data.preprocessing import Preprocessing, preprocessing_of
from ..rundir import CHECKPOINT, CONFIG, MODEL, lock_holder
from ..untrusted import load_untrusted_torch
from .config import TrainConfig, read_run_config
from .prepare import load_run_data
from .setup import build_model, resolve_device
from .streams import StreamData
from .validation import check_state_fits

__all__ = [
    "InputData",
    "as_model_inputs",
    "example_shape",
    "image_inputs",
    "is_image_source",
    "load_input_file",
    "load_inputs",
    "load_npz",
    "load_trained_model",
    "read_image_source",
    "run_preprocessing",
]


def as_model_inputs(inputs: np.ndarray | StreamData, device: torch.device) -> torch.Tensor | StreamData:
    """What :func:`~l2b.training.trainer.predict_proba` takes: a tensor on `device`, or the stream."""
    return inputs if isinstance(inputs, StreamData) else torch.as_tensor(inputs, device=device)


def example_shape(train, test) -> tuple[int, ...]:
    """The shape of one model input: an array data set's, or a decoded test image's (streamed)."""
    if isinstance(test, FileListDataset):
        return tuple(test[0][0].shape)
    return tuple(train.example_shape)


def load_trained_model(
    run_dir: str | Path,
    *,
    device: str | torch.device = "cpu",
    num_classes: int | None = None,
    in_shape: Sequence[int] | None = None,
) -> tuple[nn.Module, TrainConfig]:
    """The trained model of a finished run (in eval mode, on `device`) and the run's config.

    `num_classes` and `in_shape` default to those of the run's data set, which is then loaded to
    read them; pass both to skip that.

    Raises
    ------
    FileNotFoundError
        When `run_dir` has no config.yaml (not a run directory) or no model.pt (unfinished run:
        the message says whether it is still training, can be resumed from its checkpoint, or
        stopped before its first checkpoint and must be started again).
    ValueError
        When model.pt cannot be loaded safely or does not fit the model the config describes.
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    path = run_dir / MODEL
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {_unfinished(run_dir)}")
    if num_classes is None or in_shape is None:
        train, test = load_run_data(config)
        num_classes = train.num_classes if num_classes is None else num_classes
        in_shape = example_shape(train, test) if in_shape is None else in_shape
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    state = load_untrusted_torch(path, what="model file", map_location=dev)  # weights_only: runs no code
    model = build_model(config, num_classes=num_classes, in_shape=in_shape, init_weights=False)
    check_state_fits(
        state,
        model,
        source=str(path),
        advice=f"it does not fit the {config.model!r} model that {run_dir / CONFIG} describes (input shape "
        f"{tuple(in_shape)}, {num_classes} classes): use the model.pt this run wrote",
    )
    model.load_state_dict(state)
    return model.to(dev).eval(), config


def _unfinished(run_dir: Path) -> str:
    """What to do about a run without model.pt: wait for it, resume it, or start it again."""
    holder = lock_holder(run_dir)
    if holder is not None:
        return f"the run in {run_dir} is still training ({holder}); wait for it to finish, then try again"
    if (run_dir / CHECKPOINT).is_file():
        return (
            f"the run in {run_dir} stopped before it finished (its last checkpoint is {run_dir / CHECKPOINT}); "
            f"continue it with `l2b train --resume {run_dir}`"
        )
    return (
        f"the run in {run_dir} stopped before its first checkpoint, so there is nothing to resume; start it "
        f"again with `l2b train --config {run_dir / CONFIG} --out {run_dir}`"
    )


@dataclass(frozen=True)
class InputData:
    """Inputs (N, *example_shape) float32 (or, for a streamed data set, a :class:`StreamData`
    decoding them batch by batch), labels (N,) int64 or None, where they came from and, for a
    file, what preprocessing was applied to its inputs; ``paths`` (N,) for image files."""

    inputs: np.ndarray | StreamData
    labels: np.ndarray | None
    source: str
    split: str | None = None
    preprocessing: str | None = None
    paths: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.inputs)


def run_preprocessing(train, config: TrainConfig) -> Preprocessing:
    """How the run turned raw inputs into model inputs, read off its (re-loaded) training data.

    Raises ValueError when the data set records none (then only ``preprocessed=True`` inputs
    can be fed)."""
    prep = preprocessing_of(train)
    if prep is None:
        raise ValueError(
            f"data set {config.data!r} records no input preprocessing, so raw inputs cannot be prepared as the run's "
            "were: give inputs already preprocessed as the run's data were and pass --preprocessed (preprocessed=True)"
        )
    return prep


def load_inputs(
    data: str | Path | None,
    config: TrainConfig,
    *,
    example_shape: Sequence[int],
    num_classes: int,
    split: str | None = None,
    owner: str = "the model",
    run_data: tuple | None = None,
    preprocessed: bool = False,
) -> InputData:
    """Data for a trained model: a registered data set's split, or an .npz / .npy file.

    Parameters
    ----------
    data : None (the run's own data set), a registered data set name, or the path of an .npz file
        holding ``inputs`` (N, *example_shape) and optionally ``labels`` (N,), or of an .npy file
        holding the inputs alone.
    split : "test" (default) or "train", for registered data sets, split as the run split them;
        not allowed with a file.
    example_shape, num_classes : what the model expects; checked against the data.
    owner : names the model in error messages (e.g. "the model of runs/x").
    run_data : (train, test) of the run's own data set when the caller has loaded them already
        (:func:`load_run_data`), so they are not loaded a second time.
    preprocessed : False (default): a file's inputs are raw (values in [0, scale]: 8-bit pixels
        0..255, digits 0..16) and get the run's preprocessing (:func:`run_preprocessing`); True:
        they are already preprocessed as the run's data were and are used as they are.

    A registered data set other than the run's own is put through the run's standardisation
    (its own training-split statistics undone), so the model sees inputs on the scale it was
    trained on.
    """
    if split not in (None, "test", "train"):
        raise ValueError(f"split must be 'test' or 'train', got {split!r}")
    own = run_data

    def run_train():
        nonlocal own
        if own is None:
            own = load_run_data(config)
        return own[0]

    text = None if data is None else str(data)
    if text is None or (text in DATASETS and not Path(text).is_file()):
        name = config.data if text is None else text
        if name == config.data:
            run_train()
            train, test = own
        else:
            train, test = load_run_data(config, name)
        part = split or "test"
        ds = test if part == "test" else train
        if ds.num_classes != num_classes:
            raise ValueError(f"data set {name!r} has {ds.num_classes} classes but {owner} predicts {num_classes}")
        theirs = preprocessing_of(ds)
        mine = theirs if name == config.data else preprocessing_of(run_train())
        if isinstance(ds, FileListDataset):  # streamed: decoded batch by batch with the evaluation transform
            view = ds if part == "test" else ds.with_transform(test.transform)
            _check_shape(view[0][0].numpy()[None], example_shape, f"data set {name!r}", owner)
            if mine is not None and theirs is not None and mine != theirs:
                raise ValueError(
                    f"data set {name!r} is streamed with the preprocessing {theirs.describe()}, but the run on "
                    f"{config.data!r} used {mine.describe()}; load it with the run's mean and std"
                )
            stream = StreamData(view, view, np.arange(len(ds)), torch.as_tensor(ds.labels), workers=config.workers)
            return InputData(stream, ds.labels, name, part)
        _check_shape(ds.inputs, example_shape, f"data set {name!r}", owner)
        inputs = ds.inputs
        if mine is not None and theirs is not None and mine != theirs:  # another data set: the run's statistics
            inputs = mine.rebase(inputs, theirs)
        return InputData(inputs, ds.labels, name, part)
    path = Path(text)
    if path.suffix not in (".npz", ".npy") and not path.is_file():
        raise ValueError(
            f"data {text!r} is neither a registered data set ({', '.join(sorted(DATASETS))}) nor an .npz / .npy file"
        )
    if split is not None:
        raise ValueError(f"a split ({split!r}) applies to registered data sets, not to the file {path}")
    raw, labels = load_input_file(path, example_shape=example_shape, num_classes=num_classes, owner=owner)
    if preprocessed:
        return InputData(raw.astype(np.float32, copy=False), labels, str(path), None, "none (--preprocessed)")
    prep = run_preprocessing(run_train(), config)
    prep.check_raw(raw, str(path))
    return InputData(prep.apply(raw), labels, str(path), None, f"the run's: {prep.describe()}")


def load_input_file(
    path: str | Path, *, example_shape: Sequence[int], num_classes: int, owner: str = "the model"
) -> tuple[np.ndarray, np.ndarray | None]:
    """``inputs`` and, if present, ``labels`` (int64) from an .npz file, or the inputs alone from
    an .npy file (read with ``allow_pickle=False``: an object array is refused, never unpickled).

    The inputs come back with their own numeric dtype (integer or float; raw pixels stay
    integers), checked for the example shape (N, *example_shape), at least one example and
    finite values; the labels for shape (N,), an integer dtype and the range [0, num_classes).
    Errors name the file, the array and what was expected.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    expected = "an .npz file with 'inputs' (N, *example_shape) and optionally 'labels' (N,), or an .npy file of inputs"
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as err:
        if "Object arrays" in str(err):  # an .npy of Python objects: never unpickled
            raise ValueError(_object_message(path, "the array")) from None
        if "pickled data" in str(err):  # neither .npy nor .npz: numpy would try it as a pickle
            err = "not in the .npy or .npz format; a pickle is never loaded"
        raise ValueError(f"{path} is not a readable .npz or .npy file ({err}); expected {expected}") from None
    except Exception as err:
        raise ValueError(f"{path} is not a readable .npz or .npy file ({err}); expected {expected}") from None
    if isinstance(loaded, np.ndarray):
        held, arrays = ["inputs"], {"inputs": loaded}
        if loaded.dtype.hasobject:  # np.load refuses these while loading; a structured array may slip through
            raise ValueError(_object_message(path, "the array"))
    else:
        with loaded as f:
            held, arrays = list(f.files), {}
            for key in ("inputs", "labels"):
                if key not in held:
                    continue
                try:
                    arrays[key] = f[key]
                except ValueError as err:
                    if "allow_pickle" in str(err):
                        raise ValueError(_object_message(path, f"array {key!r}")) from None
                    raise ValueError(f"{path}: array {key!r} cannot be read ({err})") from None
                except Exception as err:
                    raise ValueError(f"{path}: array {key!r} cannot be read ({err})") from None
    if "inputs" not in arrays:
        raise ValueError(
            f"{path} has no 'inputs' array (it holds: {', '.join(sorted(held)) or 'nothing'}); expected {expected}"
        )
    x = arrays["inputs"]
    if x.dtype.kind not in "fiu" or x.ndim < 1:
        raise ValueError(
            f"{path}: 'inputs' must be a numeric (integer or float) array of shape (N, *example_shape), got dtype "
            f"{x.dtype} shape {x.shape}"
        )
    _check_shape(x, example_shape, str(path), owner)
    if len(x) == 0:
        raise ValueError(f"{path}: 'inputs' holds no examples")
    if x.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))
        if bad.size:
            raise ValueError(f"{path}: input {int(bad[0])} has NaN or Inf values ({bad.size} such examples)")
    y = arrays.get("labels")
    if y is not None:
        if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != len(x):
            raise ValueError(
                f"{path}: 'labels' must be integer class indices of shape ({len(x)},), got dtype "
                f"{y.dtype} shape {y.shape}"
            )
        out = np.flatnonzero((y < 0) | (y >= num_classes))
        if out.size:
            raise ValueError(
                f"{path}: label {int(y[out[0]])} at index {int(out[0])} is outside [0, {num_classes}) "
                f"({out.size} such labels)"
            )
        y = y.astype(np.int64)
    return x, y


def load_npz(
    path: str | Path, *, example_shape: Sequence[int], num_classes: int, owner: str = "the model"
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`load_input_file` with the inputs as float32, taken as they are (no preprocessing)."""
    x, y = load_input_file(path, example_shape=example_shape, num_classes=num_classes, owner=owner)
    return x.astype(np.float32, copy=False), y


def _object_message(path: Path, what: str) -> str:
    return (
        f"{path}: {what} holds Python objects, which are refused (loading them would unpickle, and so could run, "
        "code from the file); save a numeric array instead, e.g. np.asarray(x, dtype=np.float32)"
    )


def _check_shape(x: np.ndarray, example_shape: Sequence[int], source: str, owner: str) -> None:
    expected = tuple(int(d) for d in example_shape)
    if tuple(x.shape[1:]) != expected:
        want = ", ".join(["N", *map(str, expected)])
        raise ValueError(
            f"{source}: inputs have shape {tuple(x.shape)}, i.e. examples of shape {tuple(x.shape[1:])}, "
            f"but {owner} expects examples of shape {expected} (inputs of shape ({want}))"
        )


# -- image files: one image, a folder, a folder tree of classes, or a list ---------------------

#: List-file suffixes `predict` / `evaluate` read as lists of images.
LIST_SUFFIXES = (".csv", ".txt", ".tsv")


def is_image_source(data: str | Path | None) -> bool:
    """Whether `data` names image files: an image, a folder, or a list file (.csv / .txt / .tsv)."""
    from ..data.files import IMAGE_EXTENSIONS

    if data is None:
        return False
    path = Path(data).expanduser()
    return path.is_dir() or path.suffix.lower() in IMAGE_EXTENSIONS + LIST_SUFFIXES


def read_image_source(source: str | Path, class_names: Sequence[str]) -> tuple[list[str], np.ndarray | None, str]:
    """(absolute paths (N,), labels (N,) or None, what it was) of an image source.

    - an image file: that image, no label;
    - a folder of images (no sub-folders with images): every image in it, no labels;
    - a folder of class sub-folders (named like the run's classes): every image, labelled by folder;
    - a list file: ``path`` lines (no labels) or ``path,label`` lines (class names or indices),
      relative paths taken relative to the list's folder.
    """
    from ..data.files import IMAGE_EXTENSIONS
    from ..data.lists import iter_rows, looks_like_header
    from ..data.trusted import read_trusted

    path = Path(source).expanduser()
    if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
        return [os.path.abspath(path)], None, "image"
    if path.is_dir():
        loose = [p for p in sorted(path.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
        subdirs = [p for p in sorted(path.iterdir()) if p.is_dir() and not p.name.startswith(".")]
        if loose and subdirs:
            raise ValueError(
                f"{path} holds both images and sub-folders: give a folder of images, or a folder of class "
                "sub-folders, not both"
            )
        if loose:
            return [os.path.abspath(p) for p in loose], None, "folder"
        if not subdirs:
            raise ValueError(f"{path}: no images and no class sub-folders in it")
        paths, labels = read_trusted(path, class_names, what="data")
        return paths, labels, "class folders"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    if path.suffix.lower() not in LIST_SUFFIXES:
        raise ValueError(f"{path} is neither an image ({', '.join(IMAGE_EXTENSIONS)}) nor a list (.csv, .txt, .tsv)")
    rows = list(iter_rows(path))
    body = rows[1:] if rows and looks_like_header(rows[0][1]) else rows
    if not body:
        raise ValueError(f"{path}: no images listed")
    if all(len(fields) == 1 for _, fields in body):
        out = []
        for number, (rel,) in ((n, f) for n, f in body):
            full = rel if os.path.isabs(rel) else os.path.join(path.parent, rel)
            if not os.path.isfile(full):
                raise ValueError(f"{path} line {number}: unknown path {rel!r} (no file {full})")
            out.append(os.path.abspath(full))
        return out, None, "list"
    paths, labels = read_trusted(path, class_names, what="data")
    return paths, labels, "labelled list"


def image_inputs(
    paths: Sequence[str], labels: np.ndarray | None, info: dict, *, workers: int = 0, source: str = "images"
) -> InputData:
    """The images `paths` decoded as the run's were (data.json's ``preprocessing`` and
    ``example_shape``): in memory at the run's size and normalisation, or streamed through the
    evaluation transform (resize, centre crop) for a streamed run."""
    from ..data._common import normalise_uint8
    from ..data.files import FileListDataset, decode_images
    from ..data.transforms import eval_transform

    prep = info.get("preprocessing")
    if prep is None:
        raise ValueError(f"{source}: the run records no image preprocessing (it was not trained on image files)")
    shape = tuple(int(d) for d in info["example_shape"])
    y = np.full(len(paths), -1, np.int64) if labels is None else np.asarray(labels, np.int64)
    described = f"the run's: images at {shape[1]}x{shape[2]}, normalised with mean {prep['mean']} std {prep['std']}"
    if "image_size" in prep:  # streamed: the evaluation transform
        view = FileListDataset(
            list(paths),
            np.maximum(y, 0),
            transform=eval_transform(int(prep["image_size"]), mean=prep["mean"], std=prep["std"]),
            num_classes=int(info["num_classes"]),
            name=source,
        )
        stream = StreamData(view, view, np.arange(len(paths)), torch.as_tensor(np.maximum(y, 0)), workers=workers)
        return InputData(stream, None if labels is None else y, source, None, described, tuple(paths))
    pixels, _, _ = decode_images(list(paths), (shape[1], shape[2]))
    inputs = normalise_uint8(pixels, tuple(prep["mean"]), tuple(prep["std"]))
    return InputData(inputs, None if labels is None else y, source, None, described, tuple(paths))
