"""The frozen, validated configuration of one training run."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ..data import DATASETS, data_task, labels_checked
from ..methods import METHODS, create_method, method_class
from ..models import MODELS
from ..names import DEVICE_HELP, MASK_NOISE_KINDS, META_SOURCES, NOISE_KINDS, PRECISIONS, did_you_mean
from ..options import Option
from ..registry import Registry
from .optim import Optimization, check_warmup

# META_SOURCES and PRECISIONS (the values of meta_source and precision) are defined in l2b.names.
#: Config keys that hold paths: recorded absolute, so a run works from any directory.
PATH_KEYS = ("data_root", "noise_file", "meta_file", "trusted", "trusted_test", "init_weights")
# precision -> the dtype of the training steps' autocast (None: none). Its keys are PRECISIONS
# (tests/test_cli_startup.py checks it).
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}
#: The values of ``noise``: a synthetic generator (l2b.names.NOISE_KINDS, "none" included), or
#: instance-dependent noise, or real noisy labels from noise_file (l2b.training.prepare._make_noise).
NOISE_CHOICES = NOISE_KINDS + ("instance", "file")
#: The values of ``noise`` on a segmentation data set: a mask-noise simulator or none.
MASK_NOISE_CHOICES = ("none",) + MASK_NOISE_KINDS + ("file",)
# A plain decimal float literal: YAML 1.1 reads 1e-2 (no dot) as a string, so a float key takes it.
_FLOAT_LITERAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


@dataclass(frozen=True, init=False)
class TrainConfig:
    """Everything that defines a run. Defaults: L2B on digits with 40 % symmetric noise.

    Two modes, and the data decide. On a benchmark (digits, CIFAR, MNIST ...: the data set's
    labels are true labels) ``noise`` defaults to 40 % ``symmetric`` noise and every figure
    against the truth is computed. On a user's own data (``imagefolder``, ``csv``; Clothing1M's
    training labels), whose labels nobody checked, ``noise`` defaults to ``none``, no figure
    needs the truth (:attr:`truth_known` is False), no test split is cut from the unchecked
    labels (``test_fraction`` 0 unless ``trusted_test`` or simulated noise makes a test set
    trustworthy), and the meta set comes from ``trusted``: a folder of checked images in the
    same class layout, or a ``path,label`` list of them (class names or indices), taken out of
    the training data by file. ``trusted_test`` is a checked test set in the same forms. Noise
    simulated on a user's data (``noise`` set) makes the given labels the truth, as asked.
    ``selection_fraction``: the share of the meta set held out (stratified) for choosing the
    checkpoint, so that selection does not run on the examples the weights were fitted to.
    Paths (:data:`PATH_KEYS`) are recorded absolute.

    Noise: ``noise`` names a synthetic generator (:data:`l2b.noise.NOISE_KINDS`), ``instance``
    (instance-dependent, Xia et al. 2020, from the inputs) or ``file`` (real noisy labels read
    from ``noise_file``, label set ``noise_label``, e.g. CIFAR-10N's ``worse_label``).
    Data: ``data`` (registered name), ``data_root`` (where its files are, for on-disk data sets),
    ``test_fraction`` and ``split_seed`` (fixed held-out test split); in ``data_options``, for
    image-file data sets, ``image_size`` (side of the images the model sees; loader default when
    unset), ``lazy`` (stream images from disk through a DataLoader with ``workers`` processes
    instead of holding them in memory; loader default when unset: ISIC2019 and Clothing1M
    stream) and ``skip_bad_files`` (leave undecodable images out and count them instead of
    stopping);
    ``train_subset`` (train on a class-balanced random subset of this many examples of the
    training split, drawn with ``split_seed`` before the meta split; the noise is generated on
    the whole split first, so real noisy-label files stay aligned); ``noise`` / ``noise_rate``
    (synthetic noise on the training split, seeded by ``seed``),
    ``num_meta`` (size of the meta set), ``meta_source``: ``split`` (a class-balanced clean subset
    taken out of the training split), ``file`` (the training examples listed in ``meta_file``,
    lines ``index[,label]``, taken out of the training split; without a label column the data
    set's own labels count as trusted), ``confident`` (no clean data: after warm-up, rebuilt every
    epoch from examples the model predicts confidently and in agreement with their given label,
    see :func:`l2b.training.meta_sources.confident_meta_set`).
    Model and method: ``model``, ``hidden`` (MLP widths), ``width`` (small_cnn's and fast_cnn's
    first layer), ``method`` and its options; ``augment``
    (random 4-pixel-padded crop and horizontal flip of image batches, noisy and meta).
    ``init_weights``: a state dict file to start the model from (see
    :mod:`l2b.training.init_weights`; torchvision's ResNet layout is understood).
    ``allow_incomplete_meta``: accept a meta set that lacks some class (a warning instead of an
    error). ``max_bad_steps``: steps with a non-finite loss or meta-gradient are skipped and
    counted; this many in a row stop the run (its last checkpoint kept).
    Optimisation: SGD(lr, momentum, weight_decay, nesterov), cosine schedule over all steps,
    ``warmup_epochs`` of plain cross-entropy before any other method starts (unset: an eighth of
    the epochs, recorded as resolved; a warm-up that leaves no epoch for a method other than
    ``ce`` is refused; checked by :class:`~l2b.training.optim.Optimization`, as :func:`l2b.fit`
    checks them). ``test_every``: the test set is evaluated every this many epochs, at the last
    one and at each new best on the meta set (for the record only).
    Speed: ``precision: bf16`` runs each training step's forward and backward under bfloat16
    autocast, except the meta-gradient (the weights are computed in float32 whatever it says, so
    they stay exact; see :class:`~l2b.training.Trainer`); ``channels_last`` stores the convolution
    weights in channels-last memory format, which lets cuDNN pick its faster NHWC kernels.

    Options of the data set, the model and the method (and the method's engine) are declared by
    their registry entries (:class:`l2b.options.Option`) and nested in ``data_options``,
    ``model_options`` and ``method_options`` (``method_options: {engine: head}``), every declared
    option recorded with its value. Each may also be given, and read (``config.engine``), by its
    flat key (``engine="head"``, ``dividemix_lambda_u=4``, ``image_size=64``, the command-line
    flag's name), as configs written before the nesting did. One that does not apply (``engine``
    for ``ce``, ``hidden`` for ``resnet18``, ``image_size`` for ``digits``) is an error naming the
    key; one that applies and is not given takes the entry's default.
    ``noise_rate`` does not apply to ``noise: file`` and defaults to 0.4 otherwise.
    Masks (``data: masks``, :mod:`l2b.segmentation.dataset`; :attr:`task` ``segmentation``): the
    labels are masks (N, H, W), ``noise`` names a mask-noise simulator
    (:data:`l2b.names.MASK_NOISE_KINDS`) or ``none``, ``noise_rate`` is the share of training
    masks it corrupts (default 1.0, every mask, as in the paper), and every split (test, meta,
    selection, ``train_subset``) takes whole cases; ``num_meta`` counts images; ``trusted`` and
    ``trusted_test`` are mask data in the same layouts (checked masks).
    ``feature_noise``: Gaussian noise of this standard deviation added to every in-memory training
    batch (noisy and meta), the documented stand-in for image augmentation on data without one
    (digits, feature vectors); methods that train on two views of each example (DivideMix) need
    it or ``augment``.
    """

    data: str = "digits"
    data_options: dict[str, Any] = field(default_factory=dict)
    data_root: str | None = None
    workers: int = 2
    train_subset: int | None = None
    test_fraction: float | None = None
    split_seed: int = 0
    noise: str | None = None
    noise_rate: float | None = None
    noise_file: str | None = None
    noise_label: str | None = None
    num_meta: int = 100
    meta_source: str | None = None
    meta_file: str | None = None
    trusted: str | None = None
    trusted_test: str | None = None
    selection_fraction: float | None = None
    allow_incomplete_meta: bool = False
    model: str = "mlp"
    model_options: dict[str, Any] = field(default_factory=dict)
    init_weights: str | None = None
    method: str = "l2b"
    method_options: dict[str, Any] = field(default_factory=dict)
    augment: bool = False
    feature_noise: float | None = None
    # The optimisation keys (see optimization()); their defaults are Optimization's.
    epochs: int = Optimization.epochs
    warmup_epochs: int | None = Optimization.warmup_epochs
    batch_size: int = Optimization.batch_size
    meta_batch_size: int = Optimization.meta_batch_size
    lr: float = Optimization.lr
    momentum: float = Optimization.momentum
    weight_decay: float = Optimization.weight_decay
    nesterov: bool = Optimization.nesterov
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = False
    max_bad_steps: int = Optimization.max_bad_steps
    test_every: int = 1

    def __post_init__(self) -> None:
        self._resolve_options()
        try:
            optim = self.optimization()
            check_warmup(self.method, optim)
        except ValueError as err:
            raise ValueError(f"config {err}") from None
        object.__setattr__(self, "warmup_epochs", optim.warmup_epochs)  # config.yaml says what ran
        noises = MASK_NOISE_CHOICES if self.task == "segmentation" else NOISE_CHOICES
        kind = "mask noise" if self.task == "segmentation" else "label noise"
        masks = self.task == "segmentation"
        what = "masks" if masks else "labels"
        checked_form = (
            "a folder with images/ and masks/, or an image,mask list"
            if masks
            else "FOLDER_OR_LIST: a folder of class sub-folders, or a path,label list"
        )
        checks = [
            (
                "noise",
                self.noise in noises,
                f"must be one of {', '.join(noises)} ({kind} of data {self.data!r}){did_you_mean(self.noise, noises)}",
            ),
            ("noise_rate", self.noise_rate is None or 0.0 <= self.noise_rate <= 1.0, "must be in [0, 1]"),
            ("num_meta", self.num_meta >= 0, "must be non-negative"),
            ("workers", self.workers >= 0, "must be non-negative"),
            ("test_every", isinstance(self.test_every, int) and self.test_every >= 1, "must be a positive epoch count"),
            ("train_subset", self.train_subset is None or self.train_subset >= 2, "must be at least 2 or unset"),
            ("test_fraction", 0.0 <= self.test_fraction < 1.0, "must be in [0, 1) (0: no test split)"),
            (
                "selection_fraction",
                0.0 <= self.selection_fraction < 1.0,
                "must be in [0, 1) (the share of the meta set held out for model selection)",
            ),
            (
                "feature_noise",
                self.feature_noise is None or (math.isfinite(self.feature_noise) and self.feature_noise > 0),
                "must be positive and finite, or unset",
            ),
            ("seed", 0 <= self.seed < 2**32 - 3, "must be in [0, 2**32 - 3) (seeds up to seed + 3 are used)"),
            ("split_seed", 0 <= self.split_seed < 2**32, "must be in [0, 2**32)"),
            (
                "feature_noise",
                self.feature_noise is None or not self.augment,
                "is a stand-in for image augmentation: set it or augment, not both",
            ),
            (
                "noise_file",
                (self.noise_file is not None) == (self.noise == "file"),
                "must be set exactly when noise is 'file'",
            ),
            ("precision", self.precision in PRECISIONS, f"must be one of {', '.join(PRECISIONS)}"),
            (  # the form only: whether this machine has the device is checked when a run starts
                "device",
                isinstance(self.device, str) and re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device) is not None,
                f"is not a device name: {DEVICE_HELP}",
            ),
            (
                "meta_source",
                self.meta_source in META_SOURCES,
                f"must be one of {', '.join(META_SOURCES)}{did_you_mean(self.meta_source, META_SOURCES)}",
            ),
            (
                "meta_file",
                (self.meta_file is not None) == (self.meta_source == "file"),
                "must be set exactly when meta_source is 'file'",
            ),
            (
                "trusted",
                self.trusted is None or self.meta_source == "trusted",
                f"is a meta set of checked examples (meta_source 'trusted', its default) and meta_source is "
                f"{self.meta_source!r}: give one of them",
            ),
            (
                "trusted",
                self.trusted is not None or self.meta_source != "trusted",
                f"must be given with meta_source 'trusted' (--trusted {checked_form})",
            ),
            (
                "meta_source",
                self.meta_source != "split" or self.num_meta == 0 or self.truth_known,
                f"takes the meta set from the training split with its {what} as true, and the {what} of data "
                f"{self.data!r} are unchecked (nothing says which are right): give checked examples with trusted "
                f"(--trusted {checked_form})"
                + ("" if masks else ", or let the model pick a pseudo-clean meta set with --meta-source confident"),
            ),
            (
                "test_fraction",
                self.test_fraction == 0 or self.trusted_test is None,
                "cuts a test split that trusted_test (the checked test set) replaces: its examples would leave "
                "training for nothing; leave test_fraction at 0",
            ),
            (
                "test_fraction",
                self.test_fraction == 0 or self.test_checked,
                f"cuts a test split from data {self.data!r}, whose {what} are unchecked: it would not be scored (an "
                f"accuracy against unchecked {what} says little) and its examples would leave training; give checked "
                "test images with trusted_test (--trusted-test), or leave test_fraction at 0",
            ),
            (
                "selection_fraction",
                self.selection_fraction == 0 or self.meta_source in ("split", "file", "trusted"),
                f"holds out part of a fixed meta set, and meta_source {self.meta_source!r} has none",
            ),
            (
                "warmup_epochs",
                self.meta_source != "confident" or self.warmup_epochs >= 1,
                "must be at least 1 with meta_source 'confident' (the meta set is chosen by the warmed-up model)",
            ),
        ]
        for key, ok, why in checks:
            if not ok:
                raise ValueError(f"config {key}={getattr(self, key)!r} {why}")
        try:  # the method's own checks of its option values (engine names, temperature, beta ...)
            create_method(self.method, **self.method_options)
        except ValueError as err:
            raise ValueError(f"config method {self.method!r}: {err}") from None

    def __init__(self, **values: Any) -> None:
        """Keyword arguments: the fields, and any declared option of the method or the model by
        its flat key (``engine="head"``, ``hidden=(64,)``), which goes into its nested block."""
        values = _nest(values, source="TrainConfig")
        for f in dataclasses.fields(self):
            if f.name in values:
                value = values.pop(f.name)
            else:
                value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            object.__setattr__(self, f.name, value)
        if values:
            raise TypeError(f"TrainConfig got unexpected keyword argument(s) {', '.join(sorted(map(str, values)))}")
        self.__post_init__()

    def __getattr__(self, name: str) -> Any:
        """A method's or model's option read by its flat key (``config.engine``,
        ``config.hidden``): its value in the nested block, None where the entry does not take it."""
        if not name.startswith("_"):
            keys = option_keys()
            if name in keys:
                kind, option = keys[name]
                return self.__dict__.get(f"{kind}_options", {}).get(option.name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _resolve_options(self) -> None:
        """Check every method and model option against its registry entry's declaration: one that
        does not apply is refused by name; one that applies and is not given takes the entry's
        default, so the recorded config says what ran. Then the defaults that depend on the data."""
        for kind, registry in _REGISTRIES.items():
            entry = getattr(self, kind)
            try:
                declared = registry.options(entry)
            except ValueError as err:
                raise ValueError(f"config {err}") from None
            by_name = {o.name: o for o in declared} | {o.config_key: o for o in declared}
            given: dict[str, Any] = {}
            for name, value in getattr(self, f"{kind}_options").items():
                option = by_name.get(name)
                if option is None:
                    if value is None or value is False:  # unset, or off: nothing to apply
                        continue
                    raise ValueError(_not_applicable(kind, entry, name, value))
                given[option.name] = option.check(value, where="config")
            resolved = {o.name: given.get(o.name, o.default) for o in declared}
            alpha = by_name.get("mixup_alpha")
            if alpha is not None and not resolved.get("mixup") and resolved["mixup_alpha"] != alpha.default:
                raise ValueError(
                    f"config mixup_alpha={resolved['mixup_alpha']!r} is mixup's Beta parameter, and mixup is off: "
                    "set mixup (--mixup) or remove it"
                )
            object.__setattr__(self, f"{kind}_options", resolved)
        for key, value in _data_defaults(self).items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)
        if self.noise in ("file", "none"):
            if self.noise_rate is not None:
                why = {
                    "file": "the rate is what the file's labels give (recorded as realised_noise_rate)",
                    "none": "no noise is simulated; set noise (e.g. symmetric) to simulate some",
                }[self.noise]
                raise ValueError(
                    f"config noise_rate={self.noise_rate!r} does not apply to noise {self.noise!r}: {why}; remove it"
                )
        elif self.noise_rate is None:  # masks: the paper corrupts every training mask
            object.__setattr__(self, "noise_rate", 1.0 if self.noise in MASK_NOISE_KINDS else DEFAULT_NOISE_RATE)
        for key in PATH_KEYS:  # absolute, so the recorded config works from any directory
            value = getattr(self, key)
            if value is not None and value != "":
                object.__setattr__(self, key, os.path.abspath(os.path.expanduser(value)))
        if self._auto_feature_noise():
            object.__setattr__(self, "feature_noise", DIGITS_FEATURE_NOISE)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config", recorded: bool = False) -> TrainConfig:
        """Build from a plain mapping (a YAML file, say), checking key names and value types.

        Raises ValueError naming the source, the key and the value for an unknown key, a value
        of the wrong type, or an option that does not apply to the chosen method, model or noise;
        range checks follow in ``__post_init__``.

        ``recorded=True`` reads a config that l2b itself wrote (a run directory's config.yaml or
        checkpoint): versions before options were checked recorded every key, so keys that do not
        apply to the run's method, model or noise are dropped there instead of refused.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        flat = option_keys()
        unknown = sorted(set(values) - set(fields) - set(flat), key=str)  # YAML keys may be numbers, too
        if unknown:
            raise ValueError(
                f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; known keys: {', '.join(fields)}, and the "
                f"method's and model's options by their flat keys (see l2b train --help)"
                f"{did_you_mean(unknown[0], [*fields, *flat])}"
            )
        clean: dict[str, Any] = {}
        for key, value in values.items():  # a flat option's type is the same for every entry taking it
            # (its range and choices are checked against the chosen entry's declaration, later)
            clean[key] = (
                flat[key][1].coerce(value, where=f"{source}:")
                if key in flat
                else _coerce(key, value, fields[key].type, source)
            )
        clean = _nest(clean, source=source)
        if recorded:
            clean = _applicable(clean)
        try:
            return cls(**clean)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None

    def _auto_feature_noise(self) -> bool:
        """A method that trains on two views of each example (DivideMix), on digits, with no
        augmentation set: digits has no meaningful image augmentation, so the documented stand-in
        (Gaussian feature noise, :data:`DIGITS_FEATURE_NOISE`) is filled in and recorded."""
        return (
            self.data == "digits"
            and not self.augment
            and self.feature_noise is None
            and bool(method_class(self.method).views)
        )

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with `changes`. Options filled in from the old method's, model's or noise's
        defaults are reset when that choice changes, so they follow the new one (or go away)."""
        values = self.to_dict()
        flat = {k: v for k, v in changes.items() if k in option_keys()}
        changes = {k: v for k, v in changes.items() if k not in flat}
        for kind, registry in _REGISTRIES.items():
            if kind in changes and changes[kind] != values[kind]:
                # options that were the old entry's defaults follow the new entry (or go away)
                old = registry.option_defaults(values[kind])
                new = _option_names(registry, changes[kind])
                values[f"{kind}_options"] = {
                    n: v for n, v in values[f"{kind}_options"].items() if n in new and not _same(v, old.get(n))
                }
        for key, (kind, option) in option_keys().items():
            if key in flat:
                block = changes.get(f"{kind}_options", values[f"{kind}_options"])
                changes[f"{kind}_options"] = {**block, option.name: flat[key]}
        if "noise" in changes and "noise_rate" not in changes and changes["noise"] in ("file", "none"):
            values["noise_rate"] = None
        # Defaults the data chose follow the new data (and the new noise), explicit values stay.
        defaults = {**_data_defaults(self), "noise": _default_noise(self.data)}
        for key, value in defaults.items():
            if key not in changes and values[key] == value:
                values[key] = None
        if values["noise"] is None and "noise_rate" not in changes and values["noise_rate"] == DEFAULT_NOISE_RATE:
            values["noise_rate"] = None  # filled in again if the new data's noise takes a rate
        if "feature_noise" not in changes and self.data == "digits" and bool(method_class(self.method).views):
            if self.feature_noise == DIGITS_FEATURE_NOISE:  # filled in for the old method: refilled if needed
                values["feature_noise"] = None
        values.update(changes)
        return TrainConfig(**values)

    @property
    def truth_known(self) -> bool:
        """Whether the true labels of the training examples are known: the data set's own labels
        are true labels (a benchmark), or noise is simulated on top of them (as the user asked)."""
        return self.noise != "none" or labels_checked(self.data, "train")

    @property
    def test_checked(self) -> bool:
        """Whether the test set's labels may be scored against: a ``trusted_test`` set, a
        benchmark's test split, or the test split of data whose labels play the truth."""
        return self.trusted_test is not None or self.noise != "none" or labels_checked(self.data, "test")

    @property
    def task(self) -> str:
        """What a label of the data set is (:mod:`l2b.tasks`): ``segmentation`` for masks,
        ``classification`` otherwise."""
        return data_task(self.data)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain YAML-ready values: the options nested per component, tuples as lists."""
        d = dataclasses.asdict(self)
        for kind in _REGISTRIES:
            d[f"{kind}_options"] = {k: list(v) if isinstance(v, tuple) else v for k, v in d[f"{kind}_options"].items()}
        return d

    def to_flat_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` with every option under its flat key (``engine``, ``dividemix_lambda_u``,
        the command-line flag's name) instead of the nested blocks."""
        d = self.to_dict()
        for kind, registry in _REGISTRIES.items():
            block = d.pop(f"{kind}_options")
            d.update({o.config_key: block[o.name] for o in registry.options(getattr(self, kind))})
        return d

    def optimization(self) -> Optimization:
        """The optimisation settings, as :func:`l2b.fit` and the estimator take them."""
        return Optimization(**{k: getattr(self, k) for k in Optimization.field_names()})


# kind -> the registry whose entries declare the options of the config's `{kind}_options` block
_REGISTRIES: dict[str, Registry] = {"data": DATASETS, "model": MODELS, "method": METHODS}


def option_keys() -> dict[str, tuple[str, Option]]:
    """{flat config key: (kind, declaration)} of every option a method or a model declares: the
    keys configs and the command line may give flat (``engine``, ``dividemix_lambda_u``, ``hidden``)."""
    out: dict[str, tuple[str, Option]] = {}
    for kind, registry in _REGISTRIES.items():
        for key, (option, _) in registry.declarations().items():
            if key in out:
                raise ValueError(f"option key {key!r} is declared by both a {out[key][0]} and a {kind}")
            out[key] = (kind, option)
    return out


def flat_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """A config mapping with its nested option blocks spread out under the flat keys (the
    command-line flags' names) of the chosen entries: ``{"method": "dividemix", "method_options":
    {"lambda_u": 4}}`` -> ``{"method": "dividemix", "dividemix_lambda_u": 4}``. Flat keys and other
    keys pass through; an option name the entry does not declare keeps its name."""
    out = {k: v for k, v in values.items() if not (k.endswith("_options") and k[: -len("_options")] in _REGISTRIES)}
    for kind, registry in _REGISTRIES.items():
        block = values.get(f"{kind}_options")
        if not isinstance(block, Mapping):
            continue
        entry = values.get(kind, _FIELD_DEFAULTS[kind])
        keys = {o.name: o.config_key for o in registry.options(entry)} if entry in registry else {}
        out.update({keys.get(name, name): value for name, value in block.items()})
    return out


def _option_names(registry: Registry, entry: str) -> set[str]:
    try:
        return {o.name for o in registry.options(entry)}
    except ValueError:
        return set()


def _nest(values: dict[str, Any], *, source: str) -> dict[str, Any]:
    """`values` with every flat option key moved into its nested block (copies; the caller's
    mappings are left alone). The same option given both ways is refused."""
    flat = option_keys()
    out = {k: v for k, v in values.items() if k not in flat}
    for kind in _REGISTRIES:
        block = out.get(f"{kind}_options")
        if block is None:
            continue
        if not isinstance(block, Mapping):
            raise ValueError(f"{source}: {kind}_options must be a mapping of option: value, got {block!r}")
        out[f"{kind}_options"] = dict(block)
    for key, value in values.items():
        if key not in flat:
            continue
        kind, option = flat[key]
        block = out.setdefault(f"{kind}_options", {})
        if option.name in block or option.config_key in block:
            raise ValueError(f"{source}: option {key!r} is given twice, flat and in {kind}_options")
        block[option.name] = value
    return out


def _not_applicable(kind: str, entry: str, name: str, value: Any) -> str:
    """The error for option `name` given to a method or model that does not declare it."""
    registry = _REGISTRIES[kind]
    for key, (k, option) in option_keys().items():
        if k == kind and name in (key, option.name):
            takers = registry.takers(option.name)
            listed = " and ".join([", ".join(takers[:-1]), takers[-1]] if len(takers) > 1 else takers)
            return (
                f"config {key}={value!r} does not apply to {registry.kind} {entry!r}: it is for "
                f"{registry.kind}s {listed} only ({option.help})"
            )
    known = [o.name for o in registry.options(entry)]
    return (
        f"config {kind}_options: {registry.kind} {entry!r} has no option {name!r}{did_you_mean(name, known)}; "
        f"its options: {', '.join(known) or '(none)'}"
    )


DEFAULT_NOISE_RATE = 0.4
# The stand-in augmentation DivideMix gets on digits when none is set: std of Gaussian noise on the
# standardised pixels, chosen on the clean meta set (0.1 / 0.3 / 0.6 / 1.0; docs/results.md).
DIGITS_FEATURE_NOISE = 0.3


def _default_noise(data: str) -> str:
    """Noise is simulated by default on a benchmark only, never on labels nobody checked."""
    return "symmetric" if labels_checked(data, "train") else "none"


def _data_defaults(config: TrainConfig) -> dict[str, Any]:
    """The defaults that depend on the data: noise is simulated on a benchmark only; a user's
    unchecked labels get no test split cut from them and no meta set taken from them."""
    noise = config.noise if config.noise is not None else _default_noise(config.data)
    simulated = noise != "none"
    truth = simulated or labels_checked(config.data, "train")
    test_checked = config.trusted_test is not None or simulated or labels_checked(config.data, "test")
    if config.trusted is not None:
        meta = "trusted"
    elif config.meta_file is not None:
        meta = "file"
    else:
        meta = "split" if truth else "none"
    return {
        "noise": noise,
        "test_fraction": 0.2 if test_checked and config.trusted_test is None else 0.0,
        "meta_source": meta,
        "selection_fraction": 0.0,
    }


def _same(a: Any, b: Any) -> bool:
    return (list(a) == list(b)) if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) else a == b


def _applicable(values: dict[str, Any]) -> dict[str, Any]:
    """Nested `values` without the options that do not apply to their method or model (nor a
    noise rate to noise that takes none): what l2b itself recorded in older versions."""
    out = dict(values)
    for kind, registry in _REGISTRIES.items():
        block = out.get(f"{kind}_options")
        entry = out.get(kind, _FIELD_DEFAULTS[kind])
        if block and entry in registry:
            declared = registry.options(entry)
            names = {o.name for o in declared} | {o.config_key for o in declared}
            out[f"{kind}_options"] = {k: v for k, v in block.items() if k in names}
    if out.get("noise") in ("file", "none"):
        out.pop("noise_rate", None)
    return out


def _coerce(key: str, value: Any, annotation: str, source: str) -> Any:
    """Check one config value against its field's type (as declared by its annotation)."""
    optional = "None" in str(annotation)
    if value is None:
        if optional:
            return None
        raise ValueError(f"{source}: {key} must not be empty (null)")
    kind = str(annotation).replace(" | None", "")

    def bad() -> ValueError:
        return ValueError(f"{source}: {key}={value!r} should be of type {kind}")

    if kind == "bool":
        if not isinstance(value, bool):
            raise bad()
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if kind == "float":
        if isinstance(value, str) and _FLOAT_LITERAL.fullmatch(value.strip()):
            value = float(value)  # "1e-2": YAML 1.1 wants a dot in a float; a float key takes it
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        try:
            return float(value)
        except OverflowError:  # an int beyond any float
            raise bad() from None
    if kind == "str":
        if not isinstance(value, str):
            raise bad()
        return value
    if kind.startswith("tuple"):
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise bad()
        return tuple(value)
    return value


_FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def read_run_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The TrainConfig a run directory was started with (from its config.yaml, read with
    :func:`l2b.rundir.read_run_doc`; keys of older versions that no longer apply are dropped)."""
    from pathlib import Path

    from ..rundir import CONFIG, read_run_doc

    doc = read_run_doc(run_dir)
    return TrainConfig.from_dict(doc["config"], source=str(Path(run_dir) / CONFIG), recorded=True)
