"""The frozen, validated configuration of one training run."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass
from typing import Any

import torch

from ..data import labels_checked
from ..methods import create_method, list_methods, method_class, method_options
from ..models import list_models, model_options
from ..names import META_SOURCES, NOISE_KINDS, PRECISIONS, did_you_mean
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
# A plain decimal float literal: YAML 1.1 reads 1e-2 (no dot) as a string, so a float key takes it.
_FLOAT_LITERAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


@dataclass(frozen=True)
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
    ``test_fraction`` and ``split_seed`` (fixed held-out test split); for image-file data sets
    ``image_size`` (side of the images the model sees; loader default when unset), ``lazy``
    (stream images from disk through a DataLoader with ``workers`` processes instead of holding
    them in memory; loader default when unset: ISIC2019 and Clothing1M stream) and
    ``skip_bad_files`` (leave undecodable images out and count them instead of stopping);
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

    Options of one method or model (:data:`OPTION_KEYS`: ``engine``, ``normalize``,
    ``temperature``, ``bootstrap_beta``, ``mixup``, ``mixup_alpha``, ``clip_grad``, the
    ``dividemix_*`` keys; ``hidden``, ``width``) are checked against that method's or model's
    registry entry: one that does not apply (``engine`` for ``ce``, ``hidden`` for ``resnet18``)
    is an error naming the key; one that applies and is unset takes the entry's default.
    ``noise_rate`` does not apply to ``noise: file`` and defaults to 0.4 otherwise.
    ``feature_noise``: Gaussian noise of this standard deviation added to every in-memory training
    batch (noisy and meta), the documented stand-in for image augmentation on data without one
    (digits, feature vectors); methods that train on two views of each example (DivideMix) need
    it or ``augment``.
    """

    data: str = "digits"
    data_root: str | None = None
    image_size: int | None = None
    lazy: bool | None = None
    workers: int = 2
    skip_bad_files: bool = False
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
    hidden: tuple[int, ...] | None = None
    width: int | None = None
    init_weights: str | None = None
    method: str = "l2b"
    engine: str | None = None
    engine_head: str | None = None
    engine_tail_modules: int | None = None
    normalize: str | None = None
    temperature: float | None = None
    bootstrap_beta: float | None = None
    augment: bool = False
    feature_noise: float | None = None
    mixup: bool = False
    mixup_alpha: float = 32.0
    clip_grad: float | None = None
    dividemix_lambda_u: float | None = None
    dividemix_threshold: float | None = None
    dividemix_sharpen: float | None = None
    dividemix_alpha: float | None = None
    dividemix_rampup: float | None = None
    dividemix_loss_history: int | None = None
    dividemix_penalty: bool | None = None
    dividemix_meta: str | None = None
    dividemix_l2b_clip: float | None = None
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
        checks = [
            (
                "noise",
                self.noise in NOISE_CHOICES,
                f"must be one of {', '.join(NOISE_CHOICES)}{did_you_mean(self.noise, NOISE_CHOICES)}",
            ),
            ("noise_rate", self.noise_rate is None or 0.0 <= self.noise_rate <= 1.0, "must be in [0, 1]"),
            ("num_meta", self.num_meta >= 0, "must be non-negative"),
            ("image_size", self.image_size is None or self.image_size >= 8, "must be at least 8 or unset"),
            ("workers", self.workers >= 0, "must be non-negative"),
            ("test_every", isinstance(self.test_every, int) and self.test_every >= 1, "must be a positive epoch count"),
            ("train_subset", self.train_subset is None or self.train_subset >= 2, "must be at least 2 or unset"),
            ("width", self.width is None or self.width >= 1, "must be a positive channel count"),
            ("test_fraction", 0.0 <= self.test_fraction < 1.0, "must be in [0, 1) (0: no test split)"),
            (
                "selection_fraction",
                0.0 <= self.selection_fraction < 1.0,
                "must be in [0, 1) (the share of the meta set held out for model selection)",
            ),
            ("mixup_alpha", math.isfinite(self.mixup_alpha) and self.mixup_alpha > 0, "must be positive and finite"),
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
                "clip_grad",
                self.clip_grad is None or (math.isfinite(self.clip_grad) and self.clip_grad > 0),
                "must be positive and finite, or unset",
            ),
            (
                "noise_file",
                (self.noise_file is not None) == (self.noise == "file"),
                "must be set exactly when noise is 'file'",
            ),
            ("precision", self.precision in PRECISIONS, f"must be one of {', '.join(PRECISIONS)}"),
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
                (self.trusted is not None) == (self.meta_source == "trusted"),
                "must be set exactly when meta_source is 'trusted' (the default when it is set)",
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
            create_method(self.method, **self.method_options())
        except ValueError as err:
            raise ValueError(f"config method {self.method!r}: {err}") from None

    def _resolve_options(self) -> None:
        """Check every method, model and noise option against the registry entry it belongs to:
        an option that does not apply is refused by name; one that applies and is unset takes the
        entry's default, so the recorded config says what ran."""
        try:
            accepted = {"method": method_options(self.method), "model": model_options(self.model)}
        except ValueError as err:
            raise ValueError(f"config {err}") from None
        for key, (kind, option) in OPTION_KEYS.items():
            value = getattr(self, key)
            if option in accepted[kind]:
                if value is None and accepted[kind][option] is not None:
                    object.__setattr__(self, key, accepted[kind][option])
            elif value is not None and not _same(value, _FIELD_DEFAULTS[key]):  # mixup=False: off, not set
                takers = [
                    n
                    for n in (list_methods if kind == "method" else list_models)(sort=False)
                    if _takes(n, kind, option)
                ]
                raise ValueError(
                    f"config {key}={value!r} {OPTION_MEANING[key]}, and is for {kind}s "
                    f"{' and '.join(takers)} only; it does not apply to {kind} {getattr(self, kind)!r}"
                )
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
        elif self.noise_rate is None:
            object.__setattr__(self, "noise_rate", DEFAULT_NOISE_RATE)
        for key in PATH_KEYS:  # absolute, so the recorded config works from any directory
            value = getattr(self, key)
            if value is not None and value != "":
                object.__setattr__(self, key, os.path.abspath(os.path.expanduser(value)))
        if self._auto_feature_noise():
            object.__setattr__(self, "feature_noise", DIGITS_FEATURE_NOISE)
        if self.hidden is not None:
            object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))

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
        unknown = sorted(set(values) - set(fields), key=str)  # YAML keys may be numbers, too
        if unknown:
            raise ValueError(
                f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; known keys: {', '.join(fields)}"
            )
        clean: dict[str, Any] = {}
        for key, value in values.items():
            clean[key] = _coerce(key, value, fields[key].type, source)
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
            and method_class(self.method).views > 1
        )

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with `changes`. Options filled in from the old method's, model's or noise's
        defaults are reset when that choice changes, so they follow the new one (or go away)."""
        values = self.to_dict()
        for kind in ("method", "model"):
            if kind in changes and changes[kind] != values[kind]:
                old = (method_options if kind == "method" else model_options)(values[kind])
                for key, (k, option) in OPTION_KEYS.items():
                    if k != kind or key in changes or option not in old:
                        continue
                    if _same(values[key], old[option]) or not _takes(changes[kind], kind, option):
                        values[key] = _FIELD_DEFAULTS[key]  # then filled from the new entry, if it takes it
        if "noise" in changes and "noise_rate" not in changes and changes["noise"] in ("file", "none"):
            values["noise_rate"] = None
        # Defaults the data chose follow the new data (and the new noise), explicit values stay.
        defaults = {**_data_defaults(self), "noise": _default_noise(self.data)}
        for key, value in defaults.items():
            if key not in changes and values[key] == value:
                values[key] = None
        if values["noise"] is None and "noise_rate" not in changes and values["noise_rate"] == DEFAULT_NOISE_RATE:
            values["noise_rate"] = None  # filled in again if the new data's noise takes a rate
        if "feature_noise" not in changes and self.data == "digits" and method_class(self.method).views > 1:
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

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden"] = None if self.hidden is None else list(self.hidden)
        return d

    def optimization(self) -> Optimization:
        """The optimisation settings, as :func:`l2b.fit` and the estimator take them."""
        return Optimization(**{k: getattr(self, k) for k in Optimization.field_names()})

    def model_options(self) -> dict[str, Any]:
        """Keyword arguments for :func:`l2b.models.create_model` beyond the shapes."""
        return {
            option: getattr(self, key)
            for key, (kind, option) in OPTION_KEYS.items()
            if kind == "model" and getattr(self, key) is not None
        }

    def method_options(self) -> dict[str, Any]:
        """Keyword arguments for :func:`l2b.methods.create_method`."""
        return {
            option: getattr(self, key)
            for key, (kind, option) in OPTION_KEYS.items()
            if kind == "method" and getattr(self, key) is not None
        }


# Config keys that belong to one registry entry: key -> (which choice, the entry's option name).
# A key applies when the chosen method / model accepts that option (l2b.methods.method_options,
# l2b.models.model_options); the CLI and the checks above read this table.
OPTION_KEYS: dict[str, tuple[str, str]] = {
    "engine": ("method", "engine"),
    "engine_head": ("method", "head"),
    "engine_tail_modules": ("method", "tail_modules"),
    "normalize": ("method", "normalize"),
    "temperature": ("method", "temperature"),
    "bootstrap_beta": ("method", "beta"),
    "mixup": ("method", "mixup"),
    "mixup_alpha": ("method", "mixup_alpha"),
    "clip_grad": ("method", "clip_grad"),
    "dividemix_lambda_u": ("method", "lambda_u"),
    "dividemix_threshold": ("method", "p_threshold"),
    "dividemix_sharpen": ("method", "sharpen_temperature"),
    "dividemix_alpha": ("method", "mix_alpha"),
    "dividemix_rampup": ("method", "rampup_epochs"),
    "dividemix_loss_history": ("method", "loss_history"),
    "dividemix_penalty": ("method", "confidence_penalty"),
    "dividemix_meta": ("method", "meta_split"),
    "dividemix_l2b_clip": ("method", "l2b_clip_grad"),
    "hidden": ("model", "hidden"),
    "width": ("model", "width"),
}
OPTION_MEANING = {
    "engine": "is the meta-gradient engine",
    "engine_head": "names the output nn.Linear of engine 'head'",
    "engine_tail_modules": "is the number of last blocks of engine 'tail'",
    "normalize": "is the weight normalisation",
    "temperature": "is the softmax normalisation's temperature",
    "bootstrap_beta": "is the observed label's weight",
    "mixup": "turns on mixup",
    "mixup_alpha": "is mixup's Beta parameter",
    "clip_grad": "clips the gradient norm",
    "dividemix_lambda_u": "is DivideMix's unlabelled-loss weight",
    "dividemix_threshold": "is DivideMix's clean-probability threshold",
    "dividemix_sharpen": "is DivideMix's sharpening temperature",
    "dividemix_alpha": "is MixMatch's Beta parameter",
    "dividemix_rampup": "is DivideMix's lambda_u ramp-up in epochs",
    "dividemix_loss_history": "is the number of epochs of losses DivideMix's mixture averages",
    "dividemix_penalty": "turns on DivideMix's warm-up confidence penalty",
    "dividemix_meta": "is where DivideMix-L2B's meta batch comes from",
    "dividemix_l2b_clip": "clips the gradient norm of DivideMix-L2B's L2B step",
    "hidden": "are the hidden layer widths",
    "width": "must be a positive channel count",
}
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


def _takes(name: str, kind: str, option: str) -> bool:
    try:
        return option in (method_options if kind == "method" else model_options)(name)
    except ValueError:
        return False


def _applicable(values: dict[str, Any]) -> dict[str, Any]:
    """`values` without the option keys that do not apply to their method, model or noise."""
    out = dict(values)
    for key, (kind, option) in OPTION_KEYS.items():
        name = out.get(kind, getattr(_DEFAULTS, kind))
        if key in out and not _takes(name, kind, option):
            del out[key]
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
_DEFAULTS = TrainConfig()


def read_run_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The TrainConfig a run directory was started with (from its config.yaml, read with
    :func:`l2b.rundir.read_run_doc`; keys of older versions that no longer apply are dropped)."""
    from pathlib import Path

    from ..rundir import CONFIG, read_run_doc

    doc = read_run_doc(run_dir)
    return TrainConfig.from_dict(doc["config"], source=str(Path(run_dir) / CONFIG), recorded=True)
