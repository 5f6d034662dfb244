"""Using a finished run: its model rebuilt from ``config.yaml`` and ``model.pt``, and data to feed it.

>>> model, config = load_trained_model("runs/my-run")
>>> probs = predict_proba(model, inputs)          # l2b.training.trainer.predict_proba

The model is rebuilt from the run's config (model name, MLP widths) and the shape and class count
of the run's data set, then ``model.pt`` (the epoch selected on the clean meta set) is loaded
with ``torch.load(weights_only=True)``, so no code from the file is executed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data import DATASETS, FileListDataset
from ..rundir import CONFIG, MODEL, read_run_config
from .config import TrainConfig
from .prepare import load_run_data
from .setup import build_model, resolve_device
from .streams import StreamData
from .validation import load_untrusted_torch

__all__ = ["InputData", "as_model_inputs", "example_shape", "load_inputs", "load_npz", "load_trained_model"]


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
        When `run_dir` has no config.yaml (not a run directory) or no model.pt (unfinished run).
    ValueError
        When model.pt cannot be loaded safely or does not fit the model the config describes.
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    path = run_dir / MODEL
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: the run in {run_dir} has not finished (continue it with `l2b train --resume {run_dir}`)"
        )
    if num_classes is None or in_shape is None:
        train, test = load_run_data(config)
        num_classes = train.num_classes if num_classes is None else num_classes
        in_shape = example_shape(train, test) if in_shape is None else in_shape
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    state = load_untrusted_torch(path, what="model file", map_location=dev)  # weights_only: runs no code
    model = build_model(config, num_classes=num_classes, in_shape=in_shape)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise ValueError(
            f"{path} does not fit the {config.model!r} model that {run_dir / CONFIG} describes "
            f"(input shape {tuple(in_shape)}, {num_classes} classes): {err}"
        ) from None
    return model.to(dev).eval(), config


@dataclass(frozen=True)
class InputData:
    """Inputs (N, *example_shape) float32 (or, for a streamed data set, a :class:`StreamData`
    decoding them batch by batch), labels (N,) int64 or None, and where they came from."""

    inputs: np.ndarray | StreamData
    labels: np.ndarray | None
    source: str
    split: str | None = None

    def __len__(self) -> int:
        return len(self.inputs)


def load_inputs(
    data: str | Path | None,
    config: TrainConfig,
    *,
    example_shape: Sequence[int],
    num_classes: int,
    split: str | None = None,
    owner: str = "the model",
    run_data: tuple | None = None,
) -> InputData:
    """Data for a trained model: a registered data set's split, or an .npz file.

    Parameters
    ----------
    data : None (the run's own data set), a registered data set name, or the path of an .npz file
        holding ``inputs`` (N, *example_shape) and optionally ``labels`` (N,).
    split : "test" (default) or "train", for registered data sets, split as the run split them;
        not allowed with an .npz file.
    example_shape, num_classes : what the model expects; checked against the data.
    owner : names the model in error messages (e.g. "the model of runs/x").
    run_data : (train, test) of the run's own data set when the caller has loaded them already
        (:func:`load_run_data`), so they are not loaded a second time.
    """
    if split not in (None, "test", "train"):
        raise ValueError(f"split must be 'test' or 'train', got {split!r}")
    text = None if data is None else str(data)
    if text is None or (text in DATASETS and not Path(text).is_file()):
        name = config.data if text is None else text
        train, test = run_data if run_data is not None and name == config.data else load_run_data(config, name)
        part = split or "test"
        ds = test if part == "test" else train
        if ds.num_classes != num_classes:
            raise ValueError(f"data set {name!r} has {ds.num_classes} classes but {owner} predicts {num_classes}")
        if isinstance(ds, FileListDataset):  # streamed: decoded batch by batch with the evaluation transform
            view = ds if part == "test" else ds.with_transform(test.transform)
            _check_shape(view[0][0].numpy()[None], example_shape, f"data set {name!r}", owner)
            stream = StreamData(view, view, np.arange(len(ds)), torch.as_tensor(ds.labels), workers=config.workers)
            return InputData(stream, ds.labels, name, part)
        _check_shape(ds.inputs, example_shape, f"data set {name!r}", owner)
        return InputData(ds.inputs, ds.labels, name, part)
    path = Path(text)
    if path.suffix != ".npz" and not path.is_file():
        raise ValueError(
            f"data {text!r} is neither a registered data set ({', '.join(sorted(DATASETS))}) nor an .npz file"
        )
    if split is not None:
        raise ValueError(f"a split ({split!r}) applies to registered data sets, not to the file {path}")
    inputs, labels = load_npz(path, example_shape=example_shape, num_classes=num_classes, owner=owner)
    return InputData(inputs, labels, str(path), None)


def load_npz(
    path: str | Path, *, example_shape: Sequence[int], num_classes: int, owner: str = "the model"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read ``inputs`` (as float32) and, if present, ``labels`` (as int64) from an .npz file,
    checking the example shape, finiteness and the label range; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as err:
        raise ValueError(f"{path} is not a readable .npz file: {err}") from None
    if "inputs" not in arrays:
        raise ValueError(
            f"{path} has no 'inputs' array (it holds: {', '.join(sorted(arrays)) or 'nothing'}); "
            "expected 'inputs' (N, *example_shape) and optionally 'labels' (N,)"
        )
    x = arrays["inputs"]
    if x.dtype.kind not in "fiub" or x.ndim < 1:
        raise ValueError(
            f"{path}: 'inputs' must be a numeric array of shape (N, *example_shape), got dtype "
            f"{x.dtype} shape {x.shape}"
        )
    _check_shape(x, example_shape, str(path), owner)
    x = x.astype(np.float32, copy=False)
    if len(x) == 0:
        raise ValueError(f"{path}: 'inputs' holds no examples")
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


def _check_shape(x: np.ndarray, example_shape: Sequence[int], source: str, owner: str) -> None:
    expected = tuple(int(d) for d in example_shape)
    if tuple(x.shape[1:]) != expected:
        want = ", ".join(["N", *map(str, expected)])
        raise ValueError(
            f"{source}: inputs have shape {tuple(x.shape)}, i.e. examples of shape {tuple(x.shape[1:])}, "
            f"but {owner} expects examples of shape {expected} (inputs of shape ({want}))"
        )
