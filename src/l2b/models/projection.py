"""A projection head on a classifier's features, for contrastive losses (SimCLR, UNICON).

The features are the input of the classifier's output ``nn.Linear`` (the layer that produces
the logits), read by a forward hook (:func:`l2b.meta.head.capture_head`), so no registered
model needs a second output."""

from __future__ import annotations

from torch import Tensor, nn

from ..meta.head import capture_head, find_head

__all__ = ["ProjectionHead", "features_of", "feature_width"]


class ProjectionHead(nn.Module):
    """SimCLR's projection g: Linear(d, d), ReLU, Linear(d, out) on features (B, d) -> (B, out)."""

    def __init__(self, features: int, out: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features, features), nn.ReLU(inplace=True), nn.Linear(features, out))

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h)


def feature_width(model: nn.Module) -> int:
    """d: the input width of the model's output layer (its last ``nn.Linear``)."""
    return int(model.get_submodule(find_head(model)).in_features)


def features_of(model: nn.Module, x: Tensor) -> Tensor:
    """The features (B, d) the model's output layer receives for inputs `x` (with their graph)."""
    with capture_head(model, find_head(model)) as cap:
        model(x)
    return cap.features()
