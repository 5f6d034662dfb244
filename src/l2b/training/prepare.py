"""The data of a run as the run sees them: loaded, noised, subset and split into meta and training.

>>> import l2b
>>> data = l2b.prepare_data(l2b.TrainConfig(noise_rate=0.4, seed=0))
>>> data.train_inputs.shape, data.given.shape, data.meta_labels.shape, data.realised_noise_rate

``l2b train`` (:func:`l2b.training.run_experiment`), ``l2b evaluate`` / ``predict``, the
benchmarks and anyone who wants the same examples in their own code call :func:`prepare_data`,
so the same config gives the same examples, labels and split everywhere.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data import DATASETS, FileListDataset, class_balanced_split, load_dataset
from ..noise import (
    CIFAR10_LABEL_NAMES,
    CIFAR100_FINE_LABEL_NAMES,
    CLASS_SPECIFIC_NOISE,
    NoisyLabels,
    instance_dependent_noise,
    make_noise,
    noisy_labels_from_file,
)
from .batches import TensorData
from .config import TrainConfig
from .meta_sources import read_meta_file
from .streams import StreamData
from .validation import validate_run_data

__all__ = ["IMAGE_OPTIONS", "PreparedData", "dataset_options", "load_run_data", "prepare_data"]

IMAGE_OPTIONS = ("image_size", "lazy", "skip_bad_files")


@dataclass(frozen=True)
class PreparedData:
    """A run's examples. Indices are positions in `train` (the training split, after
    ``train_subset``).

    Attributes
    ----------
    train, test : the loaded data sets (in-memory :class:`~l2b.data.ArrayDataset` or streamed
        :class:`~l2b.data.FileListDataset`); ``train.labels`` are the clean labels.
    noisy : NoisyLabels
        The labels the run learns from, over every example of `train`, with the transition matrix.
    train_idx : (N,) int64, the examples trained on;  meta_idx : (M,) int64, the clean meta set
        (empty for ``meta_source: confident``, which chooses one every epoch);  meta_labels : (M,)
        their trusted labels.
    skipped_files : ((split, path, reason), ...), the undecodable image files the loader left
        out, with the decoder's reason
        (``skip_bad_files``), training split first; kept here because a subset forgets them.
    """

    config: TrainConfig
    train: Any
    test: Any
    noisy: NoisyLabels
    train_idx: np.ndarray
    meta_idx: np.ndarray
    meta_labels: np.ndarray
    skipped_files: tuple[tuple[str, str, str], ...] = ()

    @property
    def num_classes(self) -> int:
        return int(self.train.num_classes)

    @property
    def streamed(self) -> bool:
        """Images decoded from disk batch by batch instead of held in memory."""
        return isinstance(self.train, FileListDataset)

    @property
    def given(self) -> np.ndarray:
        """(N,) the given (noisy) labels of the training examples."""
        return self.noisy.labels[self.train_idx]

    @property
    def clean(self) -> np.ndarray:
        """(N,) the true labels of the training examples."""
        return self.train.labels[self.train_idx]

    @property
    def realised_noise_rate(self) -> float:
        return float(np.mean(self.given != self.clean)) if len(self.train_idx) else 0.0

    @property
    def train_inputs(self) -> np.ndarray:
        """(N, *example_shape) inputs of the training examples (in-memory data sets only)."""
        return self.train.inputs[self.train_idx]

    @property
    def example_shape(self) -> tuple[int, ...]:
        """The shape of one model input (for streamed images: a decoded test image's)."""
        if isinstance(self.test, FileListDataset):
            return tuple(self.test[0][0].shape)
        return tuple(self.train.example_shape)

    @property
    def num_skipped(self) -> int:
        """Undecodable image files left out with ``skip_bad_files``."""
        return len(self.skipped_files)

    def sets(
        self, device: torch.device
    ) -> tuple[TensorData | StreamData, TensorData | StreamData | None, TensorData | StreamData]:
        """(training set with the given labels, meta set or None, test set) as the trainer takes
        them: tensors on `device`, or streams that decode batches with DataLoader workers."""
        if self.streamed:
            # One pool of files for the training and meta sets, viewed with either transform.
            pool, pool_eval = self.train, self.train.with_transform(self.test.transform)

            def files(rows: np.ndarray, labels: np.ndarray, pool=pool, pool_eval=pool_eval) -> StreamData:
                return StreamData(
                    pool,
                    pool_eval,
                    np.asarray(rows, np.int64),
                    torch.as_tensor(labels, dtype=torch.int64),
                    workers=self.config.workers,
                    pin_memory=device.type == "cuda",
                )

            test = files(np.arange(len(self.test)), self.test.labels, pool=self.test, pool_eval=self.test)
            train = files(self.train_idx, self.given)
            meta = files(self.meta_idx, self.meta_labels) if len(self.meta_idx) else None
            return train, meta, test

        def tensors(x: np.ndarray, y: np.ndarray) -> TensorData:
            return TensorData(torch.as_tensor(x, device=device), torch.as_tensor(y, device=device))

        meta = tensors(self.train.inputs[self.meta_idx], self.meta_labels) if len(self.meta_idx) else None
        return tensors(self.train_inputs, self.given), meta, tensors(self.test.inputs, self.test.labels)


def prepare_data(config: TrainConfig) -> PreparedData:
    """Load `config`'s data set, make its noisy labels, take its training subset and its meta set.

    The noise is generated on the whole training split (seeded by ``seed``) before the subset is
    drawn (with ``split_seed``), so real noisy-label files stay aligned; the meta split is
    class-balanced on the true labels (seeded by ``seed + 1``), or read from ``meta_file``.

    Raises ValueError naming the config key or file for data that cannot make this run (a meta
    set lacking a class, non-finite inputs, options that do not apply to the data set).
    """
    if config.augment and config.data == "digits":
        raise ValueError(
            "config augment=True is for image data sets; digits' 8x8 images are too small for 4-pixel crops"
        )
    train, test = load_run_data(config)  # the first stage, which evaluate and predict use alone
    skipped = tuple(
        (split, str(path), reason)
        for split, ds in (("train", train), ("test", test))
        for path, reason in getattr(ds, "skipped", {}).items()
    )
    stream = isinstance(train, FileListDataset)
    if stream and config.augment:
        raise ValueError(
            f"config augment=True is for in-memory images; streamed data set {config.data!r} is already "
            "augmented by its loader (random resized crop and flip)"
        )
    if stream and config.noise == "instance":
        raise ValueError(
            f"config noise='instance' needs the images in memory; load {config.data!r} with lazy=False "
            "(and a small image_size) or choose another noise"
        )
    _check_noise_fits(config, train.class_names)
    noisy = _make_noise(config, train.labels, None if stream else train.inputs, train.num_classes)
    if config.train_subset is not None:
        train, noisy = _train_subset(config, train, noisy)
    meta_idx, meta_labels, train_idx = _meta_split(config, train.labels, train.num_classes)
    validate_run_data(config, train, test, meta_labels)
    return PreparedData(config, train, test, noisy, train_idx, meta_idx, meta_labels, skipped)


def dataset_options(config: TrainConfig, name: str | None = None) -> dict[str, Any]:
    """Keyword arguments for :func:`l2b.data.load_dataset` that `config` implies for data set
    `name` (default: the config's own): the split, the root, and the image-file options that are set.

    Raises ValueError when an image-file option is set for a data set whose loader has no such
    option (digits, CIFAR, idx files are arrays already).
    """
    name = config.data if name is None else name
    opts: dict[str, Any] = {"test_fraction": config.test_fraction, "split_seed": config.split_seed}
    if name != config.data:
        return opts
    if config.data_root is not None:
        opts["root"] = config.data_root
    for key in IMAGE_OPTIONS:
        value = getattr(config, key)
        if value is None or value is False:
            continue
        if name in DATASETS and key not in inspect.signature(DATASETS[name]).parameters:
            raise ValueError(
                f"config {key}={value!r} does not apply to data set {name!r}; it is for image-file "
                "data sets (imagefolder, csv, isic2019, clothing1m)"
            )
        opts[key] = value
    return opts


def load_run_data(config: TrainConfig, name: str | None = None):
    """(train, test) of the data set `name` (default: the run's own), split as the run split it:
    same ``test_fraction`` and ``split_seed``, and for its own data set the run's ``data_root``
    and image options (so a streamed data set comes back as FileListDatasets). No noise, no
    meta split: what a trained model is evaluated on."""
    name = config.data if name is None else name
    return load_dataset(name, **dataset_options(config, name))


def _train_subset(config: TrainConfig, train, noisy: NoisyLabels):
    """The class-balanced subset of `config.train_subset` training examples (drawn with
    split_seed, on the clean labels) and their noisy labels, generated on the whole split."""
    if config.train_subset > len(train):
        raise ValueError(
            f"config train_subset={config.train_subset} is larger than the training split ({len(train)} examples)"
        )
    idx, _ = class_balanced_split(
        train.labels,
        num_selected=config.train_subset,
        num_classes=train.num_classes,
        seed=config.split_seed,
        allow_incomplete=True,
    )
    labels = noisy.labels[idx]
    mask = labels != train.labels[idx]
    return train.subset(idx), dataclasses.replace(noisy, labels=labels, noise_mask=mask, noise_rate=float(mask.mean()))


def _check_noise_fits(config: TrainConfig, class_names: tuple[str, ...] | None) -> None:
    """Refuse a noise model defined on another data set's classes (CIFAR-10's truck -> automobile
    applied to digits would flip 9 -> 1 and still be called "asymmetric"). It fits the built-in
    loader of its data set, or data whose class names are that data set's, in its label order."""
    made_for = CLASS_SPECIFIC_NOISE.get(config.noise)
    if made_for is None or config.data == made_for:
        return
    names = {"cifar10": CIFAR10_LABEL_NAMES, "cifar100": CIFAR100_FINE_LABEL_NAMES}[made_for]
    if class_names is not None and tuple(class_names) == names:
        return
    shown = "unnamed" if class_names is None else ", ".join(class_names[:5]) + (" ..." if len(class_names) > 5 else "")
    raise ValueError(
        f"config noise={config.noise!r} flips {made_for}'s classes by name, but data {config.data!r} has other "
        f"classes ({shown}); choose noise 'pair' or 'symmetric', or give real noisy labels with noise 'file'"
    )


def _make_noise(config: TrainConfig, clean: np.ndarray, inputs: np.ndarray | None, num_classes: int) -> NoisyLabels:
    """The training labels the run learns from: synthetic noise, instance-dependent noise, or a
    file of real noisy labels (aligned with the training split's order)."""
    if config.noise == "file":
        try:
            return noisy_labels_from_file(clean, config.noise_file, key=config.noise_label, num_classes=num_classes)
        except ValueError as err:  # the library says `key`; the config and the CLI call it noise_label
            raise ValueError(f"{err} (config noise_label / --noise-label)") from None
    if config.noise == "instance":
        return instance_dependent_noise(
            clean, inputs, rate=config.noise_rate, num_classes=num_classes, seed=config.seed
        )
    return make_noise(config.noise, clean, rate=config.noise_rate, num_classes=num_classes, seed=config.seed)


def _meta_split(config: TrainConfig, clean: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(meta indices (M,), their trusted labels (M,), remaining training indices) per meta_source.

    ``split``: class-balanced on the true labels, which it keeps (the trusted subset). ``file``:
    the listed examples, with the file's labels or else the data set's own. ``confident``: no
    fixed meta set (the trainer selects one every epoch); everything stays in training.
    """
    empty = np.array([], dtype=np.int64)
    if config.meta_source == "confident" or config.num_meta == 0 and config.meta_source == "split":
        return empty, empty, np.arange(len(clean))
    if config.meta_source == "file":
        idx, labels = read_meta_file(config.meta_file, num_examples=len(clean), num_classes=num_classes)
        order = np.argsort(idx)
        idx = idx[order]
        labels = clean[idx] if labels is None else labels[order]
    else:
        idx, _ = class_balanced_split(
            clean,
            num_selected=config.num_meta,
            num_classes=num_classes,
            seed=config.seed + 1,
            allow_incomplete=config.allow_incomplete_meta,
        )
        labels = clean[idx]
    return idx, labels, np.setdiff1d(np.arange(len(clean)), idx).astype(np.int64)
