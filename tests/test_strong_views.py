"""Strong views: a method that declares them gets AutoAugment draws of its batch, by name,
seeded by the trainer's generator; data that cannot give them refuses by name."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from l2b.data import augment_batch
from l2b.data.autoaugment import StrongAugment
from l2b.methods import METHODS, Method, StepOutput, register_method
from l2b.training import TrainConfig, Trainer
from l2b.training.batches import TensorData
from l2b.training.setup import build_strong_augmentation

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.2)


class SeesViews(Method):
    """Cross-entropy on the inputs; keeps the first batch's views for the test."""

    views = {"second": "weak", "strong_1": "strong", "strong_2": "strong"}

    def __init__(self, **common):
        super().__init__(**common)
        self.seen = None

    def loss(self, model, optimizer, inputs, targets, batch, ctx):
        if self.seen is None:
            self.seen = {"inputs": batch.inputs.clone(), **{k: v.clone() for k, v in batch.views.items()}}
        return F.cross_entropy(model(inputs), targets), StepOutput(loss=0.0)


def _images(n=24, seed=0) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (n, 3, 8, 8), generator=g).float() / 255
    x = (pixels - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    return TensorData(x, torch.randint(0, 3, (n,), generator=g))


def _fit(strong) -> SeesViews:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    method = SeesViews()
    trainer = Trainer(
        model,
        method,
        torch.optim.SGD(model.parameters(), lr=0.1),
        None,
        num_classes=3,
        batch_size=8,
        meta_batch_size=8,
        generator=torch.Generator().manual_seed(5),
        progress=False,
        augment=augment_batch,
        strong_augment=strong,
    )
    trainer.fit(_images(), None, epochs=1)
    return method


def test_a_method_gets_its_named_strong_views_seeded():
    seen = _fit(StrongAugment(MEAN, STD)).seen
    assert set(seen) == {"inputs", "second", "strong_1", "strong_2"}
    assert all(v.shape == seen["inputs"].shape for v in seen.values())
    assert not torch.equal(seen["strong_1"], seen["strong_2"])  # two independent draws
    assert not torch.equal(seen["strong_1"], seen["inputs"])
    again = _fit(StrongAugment(MEAN, STD)).seen
    assert all(torch.equal(seen[k], again[k]) for k in seen)  # the trainer's generator decides them all


def test_strong_views_without_a_strong_augmentation_are_refused():
    with pytest.raises(ValueError, match="a strong view needs the strong augmentation"):
        _fit(None)


def test_the_run_builds_the_strong_augmentation_from_the_data_and_refuses_non_images():
    @register_method("toy-strong-views")
    class ToyStrong(SeesViews):
        pass

    try:
        config = TrainConfig(method="toy-strong-views", warmup_epochs=0, feature_noise=0.3)
        images = SimpleNamespace(mean=MEAN, std=STD, scale=255.0)
        assert isinstance(build_strong_augmentation(config, images, (3, 16, 16)), StrongAugment)
        with pytest.raises(ValueError, match="strong views .* data set 'digits' has inputs of shape \\(64,\\)"):
            build_strong_augmentation(config, SimpleNamespace(), (64,))
        assert build_strong_augmentation(TrainConfig(), images, (3, 16, 16)) is None  # l2b declares none
    finally:
        METHODS.unregister("toy-strong-views")
