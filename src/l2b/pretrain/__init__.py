"""Self-supervised pre-training (SimCLR) on a data set's own images, ignoring their labels.

For users with no pretrained backbone for their images, and for C2D (DivideMix from
self-supervised weights): ``l2b pretrain`` trains a registered model's body with SimCLR
(Chen et al., ICML 2020) on the training images of any data set ``l2b`` reads, and writes
``encoder.safetensors``, which ``l2b train --init-weights`` takes.

This module holds the declarations (torch-free, so the command line reads them at once); the
loop is :mod:`l2b.pretrain.loop`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..options import Option

__all__ = ["PRETRAIN_OPTIONS", "PretrainConfig"]

PRETRAIN_OPTIONS: tuple[Option, ...] = (
    Option("epochs", "int", 100, "pre-training epochs", minimum=1),
    Option("batch_size", "int", 256, "images per batch (each seen in two strong views)", minimum=2),
    Option(
        "lr",
        "float",
        0.06,
        "SGD learning rate, scaled by batch_size / 256 (cosine schedule over all steps)",
        above=0,
    ),
    Option("momentum", "float", 0.9, "SGD momentum", minimum=0, below=1),
    Option("weight_decay", "float", 5e-4, "SGD weight decay", minimum=0),
    Option(
        "temperature",
        "float",
        0.5,
        "NT-Xent temperature (SimCLR's CIFAR-10 value)",
        above=0,
    ),
    Option("projection_dim", "int", 128, "output width of the projection head (SimCLR: 128)", minimum=1),
    Option(
        "train_subset",
        "int",
        None,
        "pre-train on the class-balanced subset of this many training images that l2b train's "
        "--train-subset draws (same --split-seed)",
        minimum=2,
    ),
    Option("split_seed", "int", 0, "seed of the --train-subset draw (l2b train's)", minimum=0),
    Option("seed", "int", 0, "seed for initialisation, batch order and augmentation", minimum=0),
    Option("device", "str", "auto", "'auto' (CUDA when available, else CPU), 'cpu', 'cuda', 'cuda:1', ..."),
)
"""The options of ``l2b pretrain`` besides the data set and the model (and their options)."""


@dataclass(frozen=True)
class PretrainConfig:
    """A pre-training run: the data set and its options (its training split's images; labels are
    not read), the model and its options (the body pre-trained; its classifier is left as
    initialised), and the optimisation (:data:`PRETRAIN_OPTIONS`).

    ``values`` holds the optimisation settings by option name; read them as attributes
    (``config.epochs``)."""

    data: str
    model: str = "small_cnn"
    data_root: str | None = None
    data_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        by_name = {o.name: o for o in PRETRAIN_OPTIONS} | {o.config_key: o for o in PRETRAIN_OPTIONS}
        unknown = sorted(set(self.values) - set(by_name))
        if unknown:
            raise ValueError(f"pretrain config: unknown option(s) {', '.join(unknown)}")
        resolved = {o.name: o.default for o in PRETRAIN_OPTIONS}
        for key, value in self.values.items():
            option = by_name[key]
            resolved[option.name] = option.check(value, where="pretrain config")
        object.__setattr__(self, "values", resolved)

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        raise AttributeError(f"'PretrainConfig' object has no attribute {name!r}")

    @classmethod
    def from_flat(cls, values: Mapping[str, Any]) -> PretrainConfig:
        """From flat keys (the command line's): ``data``, ``model``, ``data_root``, the data
        set's and the model's options by their keys, and :data:`PRETRAIN_OPTIONS`. The data set's
        and model's options are checked against their registry entries here (imports torch)."""
        from ..data import DATASETS
        from ..models import MODELS

        values = dict(values)
        if values.get("data") is None:
            raise ValueError("l2b pretrain needs --data: the data set whose training images to pre-train on")
        data, model = values.pop("data"), values.pop("model", cls.model)
        blocks: dict[str, dict[str, Any]] = {"data_options": {}, "model_options": {}}
        for block, registry, entry in (("data_options", DATASETS, data), ("model_options", MODELS, model)):
            for option in registry.options(entry):
                if option.config_key in values:
                    blocks[block][option.name] = option.check(values.pop(option.config_key), where="pretrain config")
        declared = {o.config_key for e in DATASETS for o in DATASETS.options(e)}
        declared |= {o.config_key for e in MODELS for o in MODELS.options(e)}
        stray = sorted(declared & set(values))
        if stray:
            raise ValueError(
                f"pretrain config: {', '.join(stray)} do(es) not apply to data set {data!r} with model {model!r}"
            )
        root = values.pop("data_root", None)
        root = None if root is None else os.path.abspath(os.path.expanduser(root))  # recorded absolute
        return cls(data=data, model=model, data_root=root, **blocks, values=values)

    @classmethod
    def from_recorded(cls, values: Mapping[str, Any]) -> PretrainConfig:
        """From what :meth:`to_dict` wrote in a run's config.yaml."""
        values = dict(values)
        fixed = {
            k: values.pop(k) for k in ("data", "model", "data_root", "data_options", "model_options") if k in values
        }
        return cls(**fixed, values=values)

    def to_flat(self) -> dict[str, Any]:
        """Every setting under its flat key (the command line's): data, model, data_root, the data
        set's and the model's options by their keys, then :data:`PRETRAIN_OPTIONS`."""
        from ..data import DATASETS
        from ..models import MODELS

        out: dict[str, Any] = {"data": self.data, "model": self.model, "data_root": self.data_root}
        for block, registry, entry in (
            (self.data_options, DATASETS, self.data),
            (self.model_options, MODELS, self.model),
        ):
            keys = {o.name: o.config_key for o in registry.options(entry)}
            out.update({keys.get(name, name): value for name, value in block.items()})
        return {**out, **self.values}

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(d.pop("values"))
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
