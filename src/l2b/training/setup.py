"""The one place that builds a training run: device, model, optimizer, schedule, method, trainer, seeds.

``l2b train`` (:func:`l2b.training.run_experiment`), :func:`l2b.fit`, the scikit-learn estimator
(through :func:`l2b.fit`) and the benchmarks all build their trainer with :func:`build_trainer`;
those that start from a :class:`TrainConfig` (``l2b train`` and the benchmarks) go through
:func:`trainer_for_config`, which reads every setting from it. So the same settings and seed give
the same run everywhere, bit for bit.

Seeds, from one ``seed``:

- ``seed``: the synthetic noise (:func:`~l2b.training.prepare_data`) and the model's
  initialisation (:func:`build_model`, under a forked global torch RNG); a method that trains
  two networks (DivideMix) initialises the second from ``seed + 3``;
- ``seed + 1``: the class-balanced meta split (:func:`~l2b.training.prepare_data`);
- ``seed + 2``: the trainer's generator, from which every batch order, meta batch, augmentation
  and mixup draw (:func:`build_trainer`).

During training the global torch RNG is forked and seeded with ``seed`` (:func:`seeded`); no
shipped model draws from it, and the caller's global state is left as it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.augment import FeatureNoise, augment_batch
from ..data.autoaugment import StrongAugment
from ..data.preprocessing import preprocessing_of
from ..methods import Method, TwoNetworks, create_method, method_class
from ..models import create_model
from ..tasks import Task, get_task
from .config import AUTOCAST_DTYPES, TrainConfig
from .init_weights import load_init_weights
from .meta_sources import confident_meta_set
from .optim import Optimization, check_warmup
from .trainer import Trainer

__all__ = [
    "build_augmentation",
    "build_strong_augmentation",
    "build_model",
    "build_trainer",
    "resolve_device",
    "seeded",
    "trainer_for_config",
    "trainer_generator",
]


def resolve_device(name: str | torch.device) -> torch.device:
    """'auto' picks CUDA when available, else CPU; 'cpu', 'cuda', 'cuda:N' and 'mps' are checked
    against what this machine has. Anything else is a ValueError naming the value and the choices."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    choices = "use 'auto', 'cpu', 'cuda' or 'cuda:N' (or 'mps' on Apple silicon)"
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {name!r} is not a device name; {choices}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available; {choices}")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} was asked for but MPS is not available on this machine; {choices}")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {name!r} is not supported by l2b; {choices}")
    return dev


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """The global torch RNG forked (restored on exit) and seeded with `seed`."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def trainer_generator(seed: int) -> torch.Generator:
    """The CPU generator every sampling decision of a run draws from."""
    return torch.Generator().manual_seed(seed + 2)


def build_strong_augmentation(config: TrainConfig, train: Any, example_shape: tuple[int, ...]) -> StrongAugment | None:
    """The augmentation of the ``strong`` views a method declares (``Method.views``), or None
    when it declares none: AutoAugment's CIFAR-10 policy on the training images' pixels, their
    standardisation undone and redone with the data set's own statistics. Refused by name for
    inputs that are not images with recorded statistics (feature vectors, arrays of one's own)."""
    if "strong" not in method_class(config.method).views.values():
        return None
    prep = preprocessing_of(train)
    shape = tuple(example_shape)
    if prep is None or len(shape) != 3:
        raise ValueError(
            f"method {config.method!r} trains on strong views (AutoAugment's CIFAR-10 policy), which are drawn on "
            f"images (C, H, W) whose pixel statistics the data set records; data set {config.data!r} has inputs "
            f"of shape {shape}"
        )
    if min(shape[1:]) < 16:
        raise ValueError(
            f"method {config.method!r} trains on strong views, AutoAugment's CIFAR-10 policy, made for 32 x 32 "
            f"photos; on images of {shape[1]} x {shape[2]} pixels (data set {config.data!r}) its shifts and shears "
            "leave little of the image (UNICON on digits fell from 83 % to 27 % test accuracy): use images of at "
            "least 16 x 16 (image_size) or a method without strong views (dividemix)"
        )
    return StrongAugment(prep.mean, prep.std)


def build_augmentation(config: TrainConfig, *, streamed: bool = False):
    """The batched augmentation of in-memory training batches: crop and flip for images
    (``augment``), Gaussian feature noise as the stand-in for data without one
    (``feature_noise``), or none. A method that takes several views of each example needs one
    (streamed images are augmented by their loader)."""
    if config.augment:
        return augment_batch
    if config.feature_noise is not None:
        return FeatureNoise(config.feature_noise)
    if method_class(config.method).views and not streamed:
        raise ValueError(
            f"method {config.method!r} trains on {1 + len(method_class(config.method).views)} augmented views of every "
            "example: set augment: true (--augment) for images, or feature_noise: STD (--feature-noise STD: Gaussian "
            "noise, the stand-in for data without an image augmentation, e.g. digits or feature vectors)"
        )
    return None


@torch.no_grad()
def check_model_output(model: nn.Module, inputs: Any, name: str, task: Task | str = "classification") -> None:
    """Refuse a model whose logits do not have the task's shape, (B, K) for classification, by
    one eval-mode forward of two training examples (`inputs` (N, ...); streamed data, None, is
    not probed), before any training step would fail deep inside a loss."""
    if inputs is None or len(inputs) == 0:
        return
    task = get_task(task)
    first = next(model.parameters())
    sample = torch.as_tensor(np.asarray(inputs[:2]), dtype=first.dtype, device=first.device)
    was = model.training
    model.eval()
    try:
        out = model(sample)
    finally:
        model.train(was)
    if task.name == "classification" and (not isinstance(out, torch.Tensor) or out.dim() != 2):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        hint = " (unet and unetpp are segmentation models: their labels are masks, --data masks)"
        raise ValueError(
            f"model {name!r} returns outputs of shape {shape} for a batch of {len(sample)}; classification needs "
            f"logits (B, K){hint if isinstance(out, torch.Tensor) and out.dim() == 4 else ''}"
        )
    want = (len(sample), *tuple(sample.shape[2:]))
    if task.name == "segmentation" and (
        not isinstance(out, torch.Tensor) or out.dim() != 4 or (out.shape[0], *out.shape[2:]) != want
    ):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"model {name!r} returns outputs of shape {shape} for images of shape {tuple(sample.shape)}; "
            f"segmentation needs a map of logits per class of the images' size (B, K, H, W): choose a "
            f"segmentation model (--model unet or unetpp)"
        )


def build_model(
    config: TrainConfig,
    *,
    num_classes: int,
    in_shape: Sequence[int],
    device: torch.device | None = None,
    seed: int | None = None,
    init_weights: bool = True,
    log: Callable[[str], None] | None = None,
) -> nn.Module:
    """The network `config` describes, for examples of shape `in_shape` (for a method that
    trains two networks, a :class:`~l2b.methods.TwoNetworks` pair of them).

    Initialised under a forked global torch RNG seeded with `seed` (default: ``config.seed``),
    as ``l2b train`` initialises it; the caller's global RNG state is unchanged. Then, with
    ``config.init_weights`` set and `init_weights` true, every network is loaded from that
    state dict (:func:`~l2b.training.init_weights.load_init_weights`; a fresh classifier where
    the number of classes differs), and what was loaded is passed to `log`. With
    ``config.channels_last`` its convolution weights are stored channels-last.
    """
    dev = torch.device("cpu") if device is None else device
    seed = config.seed if seed is None else seed
    nets = []
    for i in range(method_class(config.method).networks):  # a second network from seed + 3
        with seeded(seed + 3 * i, dev):
            nets.append(
                create_model(config.model, num_classes=num_classes, in_shape=tuple(in_shape), **config.model_options)
            )
        if init_weights and config.init_weights is not None:
            report = load_init_weights(nets[-1], config.init_weights)
            if log is not None and i == 0:
                log(report.line())
    if len(nets) == 1:
        model = nets[0]
    else:
        with seeded(seed + 6, dev):  # the projection heads, for a method that has them
            model = TwoNetworks(*nets, projection_dim=method_class(config.method).projection_dim)
    # channels_last reorders 4-d weights only (convolutions): the same maths, other kernels.
    return model.to(dev, memory_format=torch.channels_last) if config.channels_last else model.to(dev)


def build_trainer(
    model: nn.Module,
    *,
    method: str | Method,
    optim: Optimization,
    seed: int,
    num_examples: int,
    num_classes: int,
    method_options: dict[str, Any] | None = None,
    **trainer_options: Any,
) -> Trainer:
    """A ready :class:`Trainer` for `model` (already on its device).

    Parameters
    ----------
    method : a registered method's name (built with `method_options`) or a built one.
    optim : the optimisation settings: SGD over the trainable parameters (``requires_grad``),
        its cosine schedule over every step of ``optim.epochs`` epochs of `num_examples`
        examples, the batch sizes, warm-up epochs and ``max_bad_steps``.
    seed : the run's seed; the trainer's generator is :func:`trainer_generator` (``seed + 2``).
    trainer_options : passed to :class:`Trainer` (progress, callbacks, checkpoint, meta_selector,
        augment, log, dist).
    """
    check_warmup(method if isinstance(method, str) else method.name, optim)
    if isinstance(method, str):
        method = create_method(method, **(method_options or {}))
    elif method_options:
        raise ValueError("method_options apply to a method given by name, not to a built one")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters (none with requires_grad=True)")
    optimizer, scheduler = optim.optimizer(params, num_examples=num_examples)
    return Trainer(
        model,
        method,
        optimizer,
        scheduler,
        num_classes=num_classes,
        batch_size=optim.batch_size,
        meta_batch_size=optim.meta_batch_size,
        warmup_epochs=optim.warmup_epochs,
        max_bad_steps=optim.max_bad_steps,
        generator=trainer_generator(seed),
        **trainer_options,
    )


def effective_meta_batch(config: TrainConfig, meta_size: int) -> int:
    """The meta batch a run uses: the config's, or the whole meta set when that is smaller (a
    batch larger than the set would repeat its examples within one meta-gradient)."""
    if meta_size <= 0:
        return config.meta_batch_size
    return min(config.meta_batch_size, meta_size)


def trainer_for_config(
    config: TrainConfig,
    model: nn.Module,
    *,
    num_examples: int,
    num_classes: int,
    streamed: bool = False,
    meta_batch_size: int | None = None,
    **trainer_options: Any,
) -> Trainer:
    """:func:`build_trainer` with every setting a :class:`TrainConfig` holds: the method and its
    options, the optimisation, the seed, the augmentation (:func:`build_augmentation`; `streamed`
    when the loader augments), ``test_every``, ``precision`` (the steps' autocast) and, for
    ``meta_source: confident``, the meta-set selector. `meta_batch_size` overrides the config's
    (a meta set smaller than the configured batch: see :func:`effective_meta_batch`).
    `trainer_options` are the run's own hooks (progress, callbacks, checkpoint, log, dist)."""
    optim = config.optimization()
    if meta_batch_size is not None:
        optim = dataclasses.replace(optim, meta_batch_size=meta_batch_size)
    selector = None
    if config.meta_source == "confident":
        selector = partial(confident_meta_set, num_meta=config.num_meta, num_classes=num_classes)
    return build_trainer(
        model,
        method=config.method,
        method_options=config.method_options,
        optim=optim,
        seed=config.seed,
        num_examples=num_examples,
        num_classes=num_classes,
        meta_selector=selector,
        augment=build_augmentation(config, streamed=streamed),
        test_every=config.test_every,
        autocast_dtype=AUTOCAST_DTYPES[config.precision],
        **trainer_options,
    )
