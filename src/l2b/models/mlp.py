"""Multi-layer perceptron for flat (or flattened) features."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..options import Option
from .registry import register_model

__all__ = ["MLP", "mlp"]


class MLP(nn.Module):
    """Flatten -> [Linear -> (BatchNorm1d) -> ReLU -> (Dropout)] * len(hidden) -> Linear.

    Input ``(N, *in_shape)`` is flattened to ``(N, prod(in_shape))``; output is logits
    ``(N, num_classes)``. With ``hidden=()`` this is multinomial logistic regression.

    In train mode with BatchNorm the batch must hold at least two examples (batch statistics).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: Sequence[int] = (256,),
        *,
        batchnorm: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        widths = tuple(int(h) for h in hidden)
        if any(h < 1 for h in widths):
            raise ValueError(f"hidden widths must be positive, got {tuple(hidden)!r}")

        layers: list[nn.Module] = []
        prev = in_features
        for width in widths:
            # The bias is redundant when BatchNorm re-centres the output.
            layers.append(nn.Linear(prev, width, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm1d(width))
            # Not inplace: forward-mode AD and functional_call need the pre-activation intact.
            layers.append(nn.ReLU())
            if dropout > 0.0:
                layers.append(nn.Dropout(dropout))
            prev = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(prev, num_classes)
        self.in_features = in_features
        self.num_classes = num_classes

        for m in self.modules():
            if isinstance(m, nn.BatchNorm1d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(N, *in_shape)`` to logits ``(N, num_classes)``."""
        return self.classifier(self.features(torch.flatten(x, 1)))

    def meta_blocks(self) -> list[nn.Module]:
        """The layers in forward order, for ``engine="tail"`` (see :mod:`l2b.meta.tail`)."""
        return [*self.features, self.classifier]


@register_model(
    "mlp",
    options=(
        Option("hidden", "ints", (256,), "MLP hidden layer widths", minimum=1),
        Option("batchnorm", "bool", True, "MLP: BatchNorm after each hidden layer"),
        Option("dropout", "float", 0.0, "MLP: dropout rate after each hidden layer", minimum=0, below=1),
    ),
)
def mlp(
    *,
    num_classes: int,
    in_shape: tuple[int, ...],
    hidden: Sequence[int] = (256,),
    batchnorm: bool = True,
    dropout: float = 0.0,
) -> MLP:
    """MLP; the default is a 2-layer MLP with BatchNorm (one hidden layer of 256 units).

    Input ``(N, *in_shape)`` (flattened internally), output logits ``(N, num_classes)``.

    Options
    -------
    hidden : widths of the hidden layers, each Linear -> BatchNorm1d -> ReLU (-> Dropout).
    batchnorm : include BatchNorm1d after each hidden Linear.
    dropout : dropout probability after each hidden ReLU (0 disables it).
    """
    return MLP(math.prod(in_shape), num_classes, hidden, batchnorm=batchnorm, dropout=dropout)
