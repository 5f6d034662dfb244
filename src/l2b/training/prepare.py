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
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import FileListDataset, class_balanced_split, load_dataset, stratified_holdout
from ..data.files import BadImageError
from ..data.trusted import append_files, dataset_paths, decode_like, match_files, read_trusted
from ..methods import create_method
from ..noise import (
    CIFAR10_LABEL_NAMES,
    CIFAR100_FINE_LABEL_NAMES,
    CLASS_SPECIFIC_NOISE,
    NOISE_MODELS,
    NoisyLabels,
)
from .batches import TensorData
from .config import TrainConfig
from .meta_sources import read_meta_file
from .streams import StreamData
from .validation import validate_run_data

__all__ = ["PreparedData", "dataset_options", "load_run_data", "prepare_data"]


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
        (empty for ``meta_source: confident``, which chooses one every epoch, and ``none``);
        meta_labels : (M,) their trusted labels.
    selection_idx, selection_labels : (S,) the part of the trusted examples held out for model
        selection (``selection_fraction``; empty: selection runs on the meta set).
    test : the test set, or None when there is none whose labels may be scored (a user's
        unchecked labels and no ``trusted_test``).
    skipped_files : ((split, path, reason), ...), the undecodable image files the loader left
        out, with the decoder's reason
        (``skip_bad_files``), training split first; kept here because a subset forgets them.
    sources : where the meta, selection and test sets came from, in words (recorded in data.json).
    notes : lines for the run's log about what was done to the user's data (checked images
        taken out of training, a test tree left unscored ...).
    test_pool_idx : positions of `train` that are checked test images (``trusted_test``), so
        out of training.
    """

    config: TrainConfig
    train: Any
    test: Any
    noisy: NoisyLabels
    train_idx: np.ndarray
    meta_idx: np.ndarray
    meta_labels: np.ndarray
    skipped_files: tuple[tuple[str, str, str], ...] = ()
    selection_idx: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    selection_labels: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    sources: dict[str, str | None] = dataclasses.field(default_factory=dict)
    notes: tuple[str, ...] = ()
    test_pool_idx: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))

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
    def truth_known(self) -> bool:
        """Whether the true labels of the training examples are known (see
        :attr:`TrainConfig.truth_known`); when not, :attr:`clean` is None."""
        return self.config.truth_known

    @property
    def clean(self) -> np.ndarray | None:
        """(N,) the true labels of the training examples, or None when nobody knows them."""
        return self.train.labels[self.train_idx] if self.truth_known else None

    @property
    def realised_noise_rate(self) -> float | None:
        """The share of wrong given labels; None when the truth is unknown."""
        if not self.truth_known:
            return None
        return float(np.mean(self.given != self.clean)) if len(self.train_idx) else 0.0

    @property
    def class_names(self) -> tuple[str, ...]:
        """The name of every class, in label order (the indices as names when the data set has none)."""
        names = getattr(self.train, "class_names", None)
        return tuple(str(n) for n in names) if names is not None else tuple(str(k) for k in range(self.num_classes))

    @property
    def paths(self) -> list[str] | None:
        """The image file of every example of `train` (the pool the indices point into), or None."""
        return dataset_paths(self.train)

    @property
    def train_inputs(self) -> np.ndarray:
        """(N, *example_shape) inputs of the training examples (in-memory data sets only)."""
        return self.train.inputs[self.train_idx]

    @property
    def example_shape(self) -> tuple[int, ...]:
        """The shape of one model input (for streamed images: a decoded image's, evaluation view)."""
        if isinstance(self.test, FileListDataset):
            return tuple(self.test[0][0].shape)
        if isinstance(self.train, FileListDataset):
            return tuple(self.train.with_transform(self._eval_transform())[0][0].shape)
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
            pool, pool_eval = self.train, self.train.with_transform(self._eval_transform())

            def files(rows: np.ndarray, labels: np.ndarray, pool=pool, pool_eval=pool_eval) -> StreamData:
                return StreamData(
                    pool,
                    pool_eval,
                    np.asarray(rows, np.int64),
                    torch.as_tensor(labels, dtype=torch.int64),
                    workers=self.config.workers,
                    pin_memory=device.type == "cuda",
                )

            test = None
            if self.test is not None:
                test = files(np.arange(len(self.test)), self.test.labels, pool=self.test, pool_eval=self.test)
            train = files(self.train_idx, self.given)
            meta = files(self.meta_idx, self.meta_labels) if len(self.meta_idx) else None
            return train, meta, test

        def tensors(x: np.ndarray, y: np.ndarray) -> TensorData:
            return TensorData(torch.as_tensor(x, device=device), torch.as_tensor(y, device=device))

        meta = tensors(self.train.inputs[self.meta_idx], self.meta_labels) if len(self.meta_idx) else None
        test = None if self.test is None else tensors(self.test.inputs, self.test.labels)
        return tensors(self.train_inputs, self.given), meta, test

    def _eval_transform(self):
        """The evaluation transform of streamed images: the test set's, else the loader's own."""
        if isinstance(self.test, FileListDataset):
            return self.test.transform
        return decode_like(self.train, [self.train.path(0)], self.train.labels[:1], name="probe").transform

    def selection_set(self, device: torch.device) -> TensorData | StreamData | None:
        """The held-out trusted examples model selection runs on, or None (selection on the meta set)."""
        if not len(self.selection_idx):
            return None
        if self.streamed:
            view = self.train.with_transform(self._eval_transform())
            return StreamData(
                view,
                view,
                np.asarray(self.selection_idx, np.int64),
                torch.as_tensor(self.selection_labels, dtype=torch.int64),
                workers=self.config.workers,
                pin_memory=device.type == "cuda",
            )
        return TensorData(
            torch.as_tensor(self.train.inputs[self.selection_idx], device=device),
            torch.as_tensor(self.selection_labels, device=device),
        )


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
    train, test = load_run_data(config, training=True)  # the first stage, which evaluate and predict use alone
    if config.task == "segmentation":
        return _prepare_masks(config, train, test)
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
    if train.num_classes < 2:
        names = getattr(train, "class_names", None) or ("0",)
        raise ValueError(
            f"data {config.data!r} has a single class ({names[0]!r}): a classifier needs examples of two or more "
            "classes (with one folder per class, or two or more labels in the list)"
        )
    _check_noise_fits(config, train.class_names)
    _refuse_untrusted_meta(config)
    notes: list[str] = _rare_class_notes(train)
    sources: dict[str, str | None] = {}
    if not config.test_checked and test is not None:  # e.g. a test/ tree of unchecked labels
        notes.append(
            f"the test split of {config.data!r} has the same unchecked labels as its training split: it is not "
            "scored (an accuracy against unchecked labels says little); give checked test images with "
            "trusted_test (--trusted-test FOLDER_OR_LIST)"
        )
        test = None
    noisy = _make_noise(config, train.labels, None if stream else train.inputs, train.num_classes)
    if config.train_subset is not None:
        train, noisy = _train_subset(config, train, noisy)
    held_out = np.zeros(0, np.int64)  # pool examples that are checked test images
    if config.trusted_test is not None:
        test, held_out = _trusted_test(config, train, notes)
        sources["test"] = f"trusted_test {config.trusted_test} ({len(test)} checked examples)"
    elif test is not None:
        sources["test"] = f"the test split of {config.data!r}"
    if config.meta_source == "trusted":
        _pool_paths(train, "trusted")  # file data only: refused by name before the list is read
        checked, checked_labels = read_trusted(config.trusted, train.class_names, what="trusted")
        if not checked:
            raise ValueError(f"trusted {config.trusted}: no images")
        test = _without_trusted(config, test, checked, notes)
        train, noisy, meta_idx, meta_labels = _trusted_meta(
            config, train, noisy, checked, checked_labels, held_out, notes
        )
        sources["meta"] = f"trusted {config.trusted} ({len(meta_idx)} checked examples)"
        train_idx = np.setdiff1d(np.arange(len(train)), np.concatenate([meta_idx, held_out])).astype(np.int64)
    else:
        meta_idx, meta_labels, train_idx = _meta_split(config, train.labels, train.num_classes)
        train_idx = np.setdiff1d(train_idx, held_out).astype(np.int64)
        sources["meta"] = {
            "split": f"a class-balanced subset of the training split with its true labels ({len(meta_idx)})",
            "file": f"meta_file {config.meta_file} ({len(meta_idx)})",
            "confident": "chosen every epoch after warm-up among examples the model predicts confidently "
            "in agreement with their given label",
            "none": None,
        }[config.meta_source]
    meta_idx, meta_labels, sel_idx, sel_labels = _selection_split(config, meta_idx, meta_labels, train.num_classes)
    if len(sel_idx):
        sources["selection"] = f"{len(sel_idx)} of the trusted examples, held out of the meta set"
    validate_run_data(config, train, test, meta_labels)
    return PreparedData(
        config,
        train,
        test,
        noisy,
        train_idx,
        meta_idx,
        meta_labels,
        skipped,
        selection_idx=sel_idx,
        selection_labels=sel_labels,
        sources=sources,
        notes=tuple(notes),
        test_pool_idx=held_out,
    )


def _rare_class_notes(train) -> list[str]:
    """A word on each class with one or two examples where the typical class has five times more:
    in a list of class names that is most often a misspelt label (``cta`` for ``cat``), which
    would otherwise train as a class of its own without a word."""
    labels = np.asarray(train.labels)
    if labels.ndim != 1:  # masks: no class per example
        return []
    counts = np.bincount(labels, minlength=train.num_classes)
    typical = float(np.median(counts))
    names = getattr(train, "class_names", None) or [str(k) for k in range(len(counts))]
    return [
        f"class {names[k]!r} has {int(n)} training example(s), the typical class {typical:g}: a misspelt label? "
        "(it trains as a class of its own)"
        for k, n in enumerate(counts)
        if 0 < n <= 2 and typical >= 5 * n
    ]


def _refuse_untrusted_meta(config: TrainConfig) -> None:
    """A method that learns from a clean meta set, on data whose labels nobody checked and no
    trusted set: refused with the remedies, rather than trusting the given labels."""
    if config.meta_source != "none":
        return
    try:
        needs = create_method(config.method, **config.method_options).needs_meta
    except ValueError:
        return  # the config's own checks report it
    if needs and config.task == "segmentation":
        raise ValueError(
            f"config method {config.method!r} learns its weights on a meta set of checked masks, and the masks of "
            f"data {config.data!r} are unchecked (nothing says which are right): give a few images with checked "
            "masks with trusted (--trusted: a folder with images/ and masks/, or an image,mask CSV list), or train "
            "with --method ce"
        )
    if needs:
        raise ValueError(
            f"config method {config.method!r} learns its weights on a meta set of checked labels, and the labels "
            f"of data {config.data!r} are unchecked (nothing says which are right): give a few checked images per "
            "class with trusted (--trusted FOLDER_OR_LIST: a folder of class sub-folders, or a path,label list), "
            "or let the model pick a pseudo-clean meta set with --meta-source confident, or train with --method ce"
        )


def _pool_paths(train, what: str) -> list[str]:
    paths = dataset_paths(train)
    if paths is None:
        raise ValueError(
            f"config {what} names checked image files, but data set {getattr(train, 'name', 'data')!r} was not "
            "read from image files; give trusted examples of it by position with meta_file (lines index,label)"
        )
    return paths


def _trusted_test(config: TrainConfig, train, notes: list[str]):
    """(the checked test set decoded as the training images, pool positions that are checked
    test images and so leave training)."""
    pool = _pool_paths(train, "trusted_test")
    paths, labels = read_trusted(config.trusted_test, train.class_names, what="trusted_test")
    if not paths:
        raise ValueError(f"trusted_test {config.trusted_test}: no images")
    where = match_files(pool, paths)
    held = np.unique(where[where >= 0]).astype(np.int64)
    if len(held) == len(pool):
        raise ValueError(
            f"trusted_test {config.trusted_test}: every one of the {len(pool)} training files is a checked test "
            "image, so nothing is left to train on; give checked test images that are not (all) the training files"
        )
    if len(held):
        notes.append(
            f"{len(held)} of the {len(paths)} checked test images are also training files: taken out of training"
        )
    return decode_like(train, paths, labels, name=f"{config.data}-trusted-test"), held


def _without_trusted(config: TrainConfig, test, checked: list[str], notes: list[str]):
    """The test set without the checked meta images it holds: a split cut from the same folder
    gives them up to the meta set; a checked test set (``trusted_test``) holding one is refused,
    since its accuracy would be measured on images the weights were fitted to."""
    paths = None if test is None else dataset_paths(test)
    if paths is None:
        return test
    where = match_files(paths, checked)
    found = where >= 0
    if not found.any():
        return test
    if config.trusted_test is not None:
        i = int(np.flatnonzero(found)[0])
        raise ValueError(
            f"trusted {checked[i]} is also a checked test image ({paths[where[i]]}, trusted_test "
            f"{config.trusted_test}; {int(found.sum())} of the {len(checked)} checked meta images are): a "
            "checked image goes into one of the two sets, or the test accuracy is measured on images the weights "
            "were fitted to"
        )
    drop = np.unique(where[found])
    if len(drop) == len(paths):
        raise ValueError(f"trusted {config.trusted}: every test image is a checked meta image; nothing is left to test")
    notes.append(f"{len(drop)} checked images fell into the test split: taken out of it for the meta set")
    return test.subset(np.setdiff1d(np.arange(len(paths)), drop))


def _trusted_meta(
    config: TrainConfig,
    train,
    noisy: NoisyLabels,
    paths: list[str],
    labels: np.ndarray,
    held_out: np.ndarray,
    notes: list[str],
):
    """The checked meta examples `paths` (M,) with `labels` (M,): those that are training files
    are taken out of training (by file, whatever their folder label was); the others are
    appended to the pool."""
    pool = _pool_paths(train, "trusted")
    where = match_files(pool, paths)  # a checked test image among them was refused (_without_trusted)
    found = where >= 0
    if len(np.unique(where[found])) != int(found.sum()):
        raise ValueError(f"trusted {config.trusted}: two checked images are copies of one training file; keep one")
    new = [p for p, f in zip(paths, found) if not f]
    start = len(train)
    train = append_files(train, new, labels[~found])
    if len(new):  # appended examples are never trained on; their "given" label is the checked one
        extra = labels[~found]
        noisy = dataclasses.replace(
            noisy,
            labels=np.concatenate([noisy.labels, extra]),
            noise_mask=np.concatenate([noisy.noise_mask, np.zeros(len(extra), bool)]),
        )
    meta_idx = where.copy()
    meta_idx[~found] = start + np.arange(len(new))
    order = np.argsort(meta_idx)
    if found.any():
        relabelled = int((noisy.labels[where[found]] != labels[found]).sum())
        notes.append(
            f"{int(found.sum())} of the {len(paths)} checked images are also training files: taken out of training "
            f"and used with their checked class ({relabelled} of them had another class in the training data)"
        )
    return train, noisy, meta_idx[order].astype(np.int64), labels[order].astype(np.int64)


def _selection_split(
    config: TrainConfig, meta_idx: np.ndarray, meta_labels: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(meta idx, meta labels, selection idx, selection labels): ``selection_fraction`` of the
    meta set held out, stratified by class (seeded by ``seed + 2``), for choosing the checkpoint."""
    empty = np.zeros(0, np.int64)
    if config.selection_fraction == 0 or not len(meta_idx):
        return meta_idx, meta_labels, empty, empty
    keep, held = stratified_holdout(meta_labels, fraction=config.selection_fraction, seed=config.seed + 2)
    if not len(held) or len(keep) < 2:
        raise ValueError(
            f"config selection_fraction={config.selection_fraction} of the {len(meta_idx)} trusted examples leaves "
            f"{len(keep)} for the meta set and {len(held)} for selection; give more checked examples or change it"
        )
    keep, held = np.sort(keep), np.sort(held)
    return meta_idx[keep], meta_labels[keep], meta_idx[held], meta_labels[held]


def dataset_options(config: TrainConfig, name: str | None = None) -> dict[str, Any]:
    """Keyword arguments for :func:`l2b.data.load_dataset` that `config` implies for data set
    `name` (default: the config's own): the split, the root, and the data set's options that are
    set (``data_options``)."""
    name = config.data if name is None else name
    opts: dict[str, Any] = {"test_fraction": config.test_fraction, "split_seed": config.split_seed}
    if name != config.data:
        return opts
    if config.data_root is not None:
        opts["root"] = config.data_root
    # the data set's declared options (checked against it by the config): those that are set
    opts.update({k: v for k, v in config.data_options.items() if v is not None and v is not False})
    return opts


def load_run_data(config: TrainConfig, name: str | None = None, *, training: bool = False):
    """(train, test) of the data set `name` (default: the run's own), split as the run split it:
    same ``test_fraction`` and ``split_seed``, and for its own data set the run's ``data_root``
    and image options (so a streamed data set comes back as FileListDatasets). No noise, no
    meta split: what a trained model is evaluated on. ``training``: loaded to train on (train,
    pretrain), so an undecodable file's error ends with the option that gets past it,
    ``skip_bad_files``, where the data set has it and it is off."""
    name = config.data if name is None else name
    try:
        return load_dataset(name, **dataset_options(config, name))
    except BadImageError as err:
        if training and name == config.data and config.data_options.get("skip_bad_files") is False:
            raise BadImageError(
                err.path, f"{err.reason}; skip_bad_files (--skip-bad-files) leaves undecodable files out and lists them"
            ) from None
        raise


def train_subset_index(train, size: int, split_seed: int) -> np.ndarray:
    """The positions (size,) of the class-balanced training subset ``train_subset`` draws (with
    ``split_seed``, on the data set's own labels): one draw for ``l2b train`` and ``l2b pretrain``."""
    idx, _ = class_balanced_split(
        train.labels, num_selected=size, num_classes=train.num_classes, seed=split_seed, allow_incomplete=True
    )
    return idx


def _train_subset(config: TrainConfig, train, noisy: NoisyLabels):
    """The class-balanced subset of `config.train_subset` training examples (drawn with
    split_seed, on the clean labels) and their noisy labels, generated on the whole split."""
    if config.train_subset > len(train):
        raise ValueError(
            f"config train_subset={config.train_subset} is larger than the training split ({len(train)} examples)"
        )
    idx = train_subset_index(train, config.train_subset, config.split_seed)
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
    model = NOISE_MODELS.get(config.noise)
    try:
        return model(
            clean,
            rate=0.0 if config.noise_rate is None else config.noise_rate,
            num_classes=num_classes,
            seed=config.seed,
            inputs=inputs,
            file=config.noise_file,
            label=config.noise_label,
        )
    except ValueError as err:
        if config.noise != "file":
            raise
        # the library says `key`; the config and the CLI call it noise_label
        raise ValueError(f"{err} (config noise_label / --noise-label)") from None


def _meta_split(config: TrainConfig, clean: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(meta indices (M,), their trusted labels (M,), remaining training indices) per meta_source.

    ``split``: class-balanced on the true labels, which it keeps (the trusted subset). ``file``:
    the listed examples, with the file's labels or else the data set's own. ``confident``: no
    fixed meta set (the trainer selects one every epoch); everything stays in training.
    """
    empty = np.array([], dtype=np.int64)
    if config.meta_source in ("confident", "none") or config.num_meta == 0 and config.meta_source == "split":
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


# ---------------------------------------------------------------------------------------------
# masks (task "segmentation"): the same stages, each split by whole cases


def _prepare_masks(config: TrainConfig, train, test) -> PreparedData:
    """:func:`prepare_data` for a mask data set (:class:`l2b.segmentation.dataset.MaskDataset`):
    mask noise only when asked (on ``noise_rate`` of the masks), then the training subset, the
    checked test set, the meta set and the selection hold-out, each of whole cases."""
    from ..segmentation.dataset import case_split

    if config.augment:
        raise ValueError(
            f"config augment=True crops and flips the images alone: with data {config.data!r} the masks would not "
            "follow them (joint image / mask augmentation is not built yet); remove it"
        )
    if config.meta_source == "confident":
        raise ValueError(
            "config meta_source='confident' chooses examples by the class the model predicts, which masks do not "
            "have; give checked masks with trusted (--trusted), or simulate noise and let num_meta take clean ones"
        )
    _refuse_untrusted_meta(config)
    notes: list[str] = _rare_class_notes(train)
    sources: dict[str, str | None] = {}
    if not config.test_checked and test is not None:  # only test_cases cuts one from unchecked masks
        raise ValueError(
            f"config test_cases={config.data_options.get('test_cases')} holds out cases of data {config.data!r} to "
            "score against, but its masks are unchecked: give checked test masks with trusted_test (--trusted-test), "
            "or simulate noise (--noise) so that the given masks are the truth"
        )
    noisy = _make_mask_noise(config, train.labels, train.num_classes, train.paths)
    if config.train_subset is not None:
        if config.train_subset > len(train):
            raise ValueError(
                f"config train_subset={config.train_subset} is larger than the training split ({len(train)} images)"
            )
        idx = case_split(train.cases, config.train_subset, seed=config.split_seed)
        train = train.subset(idx)
        noisy = _noise_of(train.labels, noisy.labels[idx], train.num_classes)
    held_out = np.zeros(0, np.int64)
    if config.trusted_test is not None:
        test = _checked_masks(config, config.trusted_test, train, "trusted_test")
        where = _match_images(train.paths, test.paths)
        held_out = np.unique(where[where >= 0]).astype(np.int64)
        if len(held_out):
            notes.append(
                f"{len(held_out)} of the {len(test)} checked test images are training images: taken out of training"
            )
        sources["test"] = f"trusted_test {config.trusted_test} ({len(test)} checked masks)"
    elif test is not None:
        sources["test"] = (
            f"whole cases of data {config.data!r} held out ({len(test)} images, test_fraction {config.test_fraction:g})"
        )
    empty = np.zeros(0, np.int64)
    if config.meta_source == "trusted":
        checked = _checked_masks(config, config.trusted, train, "trusted")
        if test is not None and config.trusted_test is None:  # a split cut from the same files
            in_test = _match_images(test.paths, checked.paths)
            if (in_test >= 0).any():
                keep = np.setdiff1d(np.arange(len(test)), in_test[in_test >= 0])
                notes.append(f"{int((in_test >= 0).sum())} checked images fell into the test split: taken out of it")
                test = test.subset(keep)
        where = _match_images(train.paths, checked.paths)
        if len(held_out) and np.isin(where, held_out).any():
            i = int(np.flatnonzero(np.isin(where, held_out))[0])
            raise ValueError(
                f"trusted {checked.paths[i]} is also a checked test image (trusted_test {config.trusted_test}); a "
                "checked image goes into one of the two sets"
            )
        found = where >= 0
        if len(np.unique(where[found])) != int(found.sum()):
            raise ValueError(f"trusted {config.trusted}: two checked images are copies of one training image; keep one")
        start = len(train)
        if (~found).any():  # checked images that are not training images join the pool, never trained on
            extra = checked.subset(np.flatnonzero(~found))
            train = train.appended(extra)
            noisy = _noise_of(train.labels, np.concatenate([noisy.labels, extra.labels]), train.num_classes)
        meta_idx = where.copy()
        meta_idx[~found] = start + np.arange(int((~found).sum()))
        order = np.argsort(meta_idx)
        meta_idx, meta_labels = meta_idx[order].astype(np.int64), checked.labels[order]
        if found.any():
            notes.append(
                f"{int(found.sum())} of the {len(checked)} checked images are training images: taken out of "
                "training and used with their checked masks"
            )
        sources["meta"] = f"trusted {config.trusted} ({len(meta_idx)} checked masks)"
    elif config.meta_source == "split":
        whole = config.data_options.get("meta_cases")
        try:
            drawn = case_split(train.cases, config.num_meta, seed=config.seed + 1, whole_cases=whole)
        except ValueError as err:
            raise ValueError(f"config meta_cases={whole}: {err} (after the test cases)") from None
        meta_idx = np.setdiff1d(drawn, held_out)
        meta_labels = train.labels[meta_idx]
        cases = len(np.unique(train.cases[meta_idx]))
        sources["meta"] = (
            f"whole cases of the training split with their clean masks ({len(meta_idx)} images, {cases} cases)"
        )
    elif config.meta_source == "file":
        meta_idx, labels = read_meta_file(config.meta_file, num_examples=len(train), num_classes=train.num_classes)
        if labels is not None:
            raise ValueError(
                f"meta_file {config.meta_file} gives a label per line; for masks list the indices of the images whose "
                "masks are checked (one per line), or give the checked masks with trusted"
            )
        meta_idx = np.sort(meta_idx)
        meta_labels = train.labels[meta_idx]
        sources["meta"] = f"meta_file {config.meta_file} ({len(meta_idx)} images whose masks are checked)"
    else:
        meta_idx, meta_labels = empty, np.zeros((0, *train.labels.shape[1:]), np.int64)
        sources["meta"] = None
    train_idx = np.setdiff1d(np.arange(len(train)), np.concatenate([meta_idx, held_out])).astype(np.int64)
    sel_idx, sel_labels = empty, np.zeros((0, *train.labels.shape[1:]), np.int64)
    if config.selection_fraction and len(meta_idx):
        held = case_split(train.cases[meta_idx], round(config.selection_fraction * len(meta_idx)), seed=config.seed + 2)
        keep = np.setdiff1d(np.arange(len(meta_idx)), held)
        if not len(held) or len(keep) < 2:
            raise ValueError(
                f"config selection_fraction={config.selection_fraction} of the {len(meta_idx)} checked images leaves "
                f"{len(keep)} for the meta set and {len(held)} for selection (whole cases); give more checked masks"
            )
        sel_idx, sel_labels = meta_idx[held], meta_labels[held]
        meta_idx, meta_labels = meta_idx[keep], meta_labels[keep]
        sources["selection"] = f"{len(sel_idx)} of the checked images (whole cases), held out of the meta set"
    if not len(train_idx):
        raise ValueError(f"data {config.data!r}: no image is left to train on after the meta and test sets")
    from .validation import check_finite_inputs

    for part in (train, test):
        if part is not None:
            check_finite_inputs(part.inputs, name=part.name)
    missing = np.setdiff1d(np.arange(train.num_classes), meta_labels) if len(meta_labels) else []
    if len(missing):  # a class no meta pixel shows gets no meta-gradient signal
        names = ", ".join(f"{k} ({train.class_names[k]!r})" for k in missing[:6])
        message = (
            f"{sources['meta']}: no meta mask has a pixel of class {names}; give checked masks that show every "
            "class, or accept it with allow_incomplete_meta (--allow-incomplete-meta)"
        )
        if not config.allow_incomplete_meta:
            raise ValueError(message)
        notes.append(message)
    return PreparedData(
        config,
        train,
        test,
        noisy,
        train_idx,
        meta_idx,
        meta_labels,
        selection_idx=sel_idx,
        selection_labels=sel_labels,
        sources=sources,
        notes=tuple(notes),
        test_pool_idx=held_out,
    )


def _noise_of(clean: np.ndarray, given: np.ndarray, num_classes: int) -> NoisyLabels:
    """Masks' NoisyLabels: the given masks (N, H, W), the pixel transition matrix (K, K) realised
    from `clean`, the share of pixels that differ, and the images (N,) with any differing pixel."""
    k = num_classes
    counts = np.bincount((clean.reshape(-1) * k + given.reshape(-1)), minlength=k * k).reshape(k, k).astype(float)
    rows = counts.sum(1, keepdims=True)
    transition = np.where(rows > 0, counts / np.maximum(rows, 1), np.eye(k))
    differs = (clean != given).reshape(len(clean), -1)
    return NoisyLabels(
        labels=given,
        transition=transition,
        noise_rate=float(differs.mean()) if differs.size else 0.0,
        noise_mask=differs.any(1),
    )


def _make_mask_noise(config: TrainConfig, clean: np.ndarray, num_classes: int, paths: Sequence[str]) -> NoisyLabels:
    """The masks the run learns from: the given ones; or (``noise`` a simulator) ``noise_rate`` of
    them, drawn with ``seed``, corrupted by it (:data:`l2b.segmentation.noise.MASK_NOISE`); or
    (``noise: file``) real noisy masks read from the folder ``noise_file``, one per image by stem,
    with the data's own masks as the truth."""
    if config.noise == "none":
        return _noise_of(clean, clean.copy(), num_classes)
    if config.noise == "file":
        given = _given_masks(config, paths)
        if given.shape != clean.shape or int(given.max(initial=0)) >= num_classes:
            raise ValueError(
                f"noise_file {config.noise_file}: masks of shape {given.shape[1:]} with classes up to "
                f"{int(given.max(initial=0))}, the data's are {clean.shape[1:]} with {num_classes} classes"
            )
        return _noise_of(clean, given, num_classes)
    from ..segmentation.noise import make_mask_noise

    n = len(clean)
    chosen = np.sort(np.random.default_rng((config.seed, 7)).permutation(n)[: round(config.noise_rate * n)])
    given = clean.copy()
    if len(chosen):
        given[chosen] = make_mask_noise(config.noise, clean[chosen], seed=config.seed).masks
    return _noise_of(clean, given, num_classes)


def _given_masks(config: TrainConfig, paths: Sequence[str]) -> np.ndarray:
    """(N, H, W) the masks in folder ``noise_file`` named like the images at `paths` (any image
    suffix), resized as the data were: the given, noisy annotation beside the checked one."""
    from ..segmentation.data import IMAGE_SUFFIXES, read_mask

    folder = Path(config.noise_file)
    if not folder.is_dir():
        raise ValueError(f"noise_file {folder}: for masks, a folder of the given (noisy) masks named like the images")
    found = {p.stem: p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    size = config.data_options.get("image_size")
    out = []
    for path in paths:
        if "#" in path:
            raise ValueError(f"noise_file {folder}: given masks of volume slices ({path}) are not read yet")
        stem = Path(path).stem
        if stem not in found:
            raise ValueError(f"noise_file {folder}: no mask named {stem} (for image {path})")
        out.append(read_mask(found[stem], size=None if size is None else (size, size)))
    shapes = {m.shape for m in out}
    if len(shapes) > 1:
        raise ValueError(f"noise_file {folder}: masks of different sizes; give image_size to resize them alike")
    return np.stack(out)


def _checked_masks(config: TrainConfig, source: str, train, what: str):
    """A checked mask set (trusted, trusted_test) read like the data and fitting it: same image
    shape, class indices of the data's classes."""
    from ..segmentation.dataset import as_mask_dataset, read_mask_source

    try:
        data = read_mask_source(source, image_size=config.data_options.get("image_size"))
    except ValueError as err:
        raise ValueError(f"{what} {source}: {err}") from None
    if int(data.masks.max(initial=0)) >= train.num_classes:
        raise ValueError(
            f"{what} {source}: a mask holds class {int(data.masks.max())}, but the training masks have "
            f"{train.num_classes} classes ({', '.join(train.class_names)})"
        )
    checked = as_mask_dataset(data, what, tuple(train.class_names))
    if checked.example_shape != train.example_shape:
        raise ValueError(
            f"{what} {source}: images of shape {checked.example_shape}, the training images {train.example_shape}; "
            "give image_size (--image-size) so both are resized alike"
        )
    return checked


def _match_images(pool: Sequence[str], new: Sequence[str]) -> np.ndarray:
    """For every image of `new` (M,), its position in `pool` (N,) or -1: files as
    :func:`~l2b.data.trusted.match_files` finds them (real path, or a copy by its bytes); volume
    slices (``vol.nii.gz#12``) by the volume's real path and the slice."""
    if not any("#" in p for p in list(pool) + list(new)):
        return match_files(list(pool), list(new))

    def key(p: str) -> str:
        base, _, part = p.partition("#")
        return f"{os.path.realpath(base)}#{part}"

    where = {key(p): i for i, p in enumerate(pool)}
    return np.array([where.get(key(p), -1) for p in new], dtype=np.int64)
