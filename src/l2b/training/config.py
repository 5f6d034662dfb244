"""The frozen, validated configuration of one training run."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


META_SOURCES = ("split", "file", "confident")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run. Defaults: L2B on digits with 40 % symmetric noise.

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
    the whole split first, so real noisy-label files stay aligned); ``noise`` / ``noise_rate`` (synthetic noise on the training split, seeded by ``seed``),
    ``num_meta`` (size of the meta set), ``meta_source``: ``split`` (a class-balanced clean subset
    taken out of the training split), ``file`` (the training examples listed in ``meta_file``,
    lines ``index[,label]``, taken out of the training split; without a label column the data
    set's own labels count as trusted), ``confident`` (no clean data: after warm-up, rebuilt every
    epoch from examples the model predicts confidently and in agreement with their given label,
    see :func:`l2b.training.meta_sources.confident_meta_set`).
    Model and method: ``model``, ``hidden`` (MLP widths), ``width`` (small_cnn's and fast_cnn's first layer), ``method`` and its options; ``augment``
    (random 4-pixel-padded crop and horizontal flip of image batches, noisy and meta).
    ``allow_incomplete_meta``: accept a meta set that lacks some class (a warning instead of an
    error). ``max_bad_steps``: steps with a non-finite loss or meta-gradient are skipped and
    counted; this many in a row stop the run (its last checkpoint kept).
    Optimisation: SGD(lr, momentum, weight_decay, nesterov), cosine schedule over all steps,
    ``warmup_epochs`` of plain cross-entropy before any other method starts.
    """

    data: str = "digits"
    data_root: str | None = None
    image_size: int | None = None
    lazy: bool | None = None
    workers: int = 2
    skip_bad_files: bool = False
    train_subset: int | None = None
    test_fraction: float = 0.2
    split_seed: int = 0
    noise: str = "symmetric"
    noise_rate: float = 0.4
    noise_file: str | None = None
    noise_label: str | None = None
    num_meta: int = 100
    meta_source: str = "split"
    meta_file: str | None = None
    allow_incomplete_meta: bool = False
    model: str = "mlp"
    hidden: tuple[int, ...] = (256,)
    width: int | None = None
    method: str = "l2b"
    engine: str = "forward"
    normalize: str = "org"
    temperature: float = 1.0
    bootstrap_beta: float | None = None
    augment: bool = False
    mixup: bool = False
    mixup_alpha: float = 32.0
    clip_grad: float | None = None
    epochs: int = 40
    warmup_epochs: int = 5
    batch_size: int = 64
    meta_batch_size: int = 100
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    seed: int = 0
    device: str = "auto"
    max_bad_steps: int = 10

    def __post_init__(self) -> None:
        checks = [
            ("noise_rate", 0.0 <= self.noise_rate <= 1.0, "must be in [0, 1]"),
            ("epochs", self.epochs >= 1, "must be at least 1"),
            ("warmup_epochs", 0 <= self.warmup_epochs <= self.epochs, f"must be in [0, epochs={self.epochs}]"),
            ("batch_size", self.batch_size >= 2, "must be at least 2 (BatchNorm needs two examples)"),
            ("meta_batch_size", self.meta_batch_size >= 2, "must be at least 2"),
            ("num_meta", self.num_meta >= 0, "must be non-negative"),
            ("image_size", self.image_size is None or self.image_size >= 8, "must be at least 8 or unset"),
            ("workers", self.workers >= 0, "must be non-negative"),
            ("train_subset", self.train_subset is None or self.train_subset >= 2, "must be at least 2 or unset"),
            ("width", self.width is None or (self.width >= 1 and self.model in ("small_cnn", "fast_cnn")),
             "must be a positive channel count, and is for models small_cnn and fast_cnn only"),
            ("max_bad_steps", self.max_bad_steps >= 1, "must be at least 1"),
            ("lr", self.lr > 0, "must be positive"),
            ("momentum", 0.0 <= self.momentum < 1.0, "must be in [0, 1)"),
            ("weight_decay", self.weight_decay >= 0, "must be non-negative"),
            ("test_fraction", 0.0 < self.test_fraction < 1.0, "must be in (0, 1)"),
            ("temperature", self.temperature > 0, "must be positive"),
            ("mixup_alpha", self.mixup_alpha > 0, "must be positive"),
            ("clip_grad", self.clip_grad is None or self.clip_grad > 0, "must be positive or unset"),
            ("noise_file", (self.noise_file is not None) == (self.noise == "file"),
             "must be set exactly when noise is 'file'"),
            ("meta_source", self.meta_source in META_SOURCES, f"must be one of {', '.join(META_SOURCES)}"),
            ("meta_file", (self.meta_file is not None) == (self.meta_source == "file"),
             "must be set exactly when meta_source is 'file'"),
            ("warmup_epochs", self.meta_source != "confident" or self.warmup_epochs >= 1,
             "must be at least 1 with meta_source 'confident' (the meta set is chosen by the warmed-up model)"),
        ]
        for key, ok, why in checks:
            if not ok:
                raise ValueError(f"config {key}={getattr(self, key)!r} {why}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> "TrainConfig":
        """Build from a plain mapping (a YAML file, say), checking key names and value types.

        Raises ValueError naming the source, the key and the value for an unknown key or a value
        of the wrong type; range checks follow in ``__post_init__``.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; known keys: "
                             f"{', '.join(fields)}")
        defaults = cls()
        clean: dict[str, Any] = {}
        for key, value in values.items():
            clean[key] = _coerce(key, value, getattr(defaults, key), fields[key].type, source)
        try:
            return cls(**clean)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    def model_options(self) -> dict[str, Any]:
        """Keyword arguments for :func:`l2b.models.create_model` beyond the shapes."""
        if self.model == "mlp":
            return {"hidden": self.hidden}
        return {"width": self.width} if self.width is not None else {}

    def method_options(self) -> dict[str, Any]:
        """Keyword arguments for :func:`l2b.methods.create_method`."""
        opts: dict[str, Any] = {"mixup": self.mixup, "mixup_alpha": self.mixup_alpha, "clip_grad": self.clip_grad}
        if self.method in ("l2b", "l2rw"):
            opts.update(engine=self.engine, normalize=self.normalize, temperature=self.temperature)
        if self.method.startswith("bootstrap") and self.bootstrap_beta is not None:
            opts["beta"] = self.bootstrap_beta
        return opts


def _coerce(key: str, value: Any, default: Any, annotation: str, source: str) -> Any:
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
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        return float(value)
    if kind == "str":
        if not isinstance(value, str):
            raise bad()
        return value
    if kind.startswith("tuple"):
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise bad()
        return tuple(value)
    return value
