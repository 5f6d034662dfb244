"""A small, fast CNN for small images (8x8 to 32x32), plus helpers shared with the ResNets."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..options import Option
from .registry import register_model

__all__ = ["FastCNN", "SmallCNN", "fast_cnn", "image_shape", "init_conv_bn", "small_cnn"]


def image_shape(in_shape: Sequence[int], model: str) -> tuple[int, int, int]:
    """Return ``in_shape`` as ``(C, H, W)``; raise ValueError naming ``model`` otherwise."""
    if len(in_shape) != 3:
        raise ValueError(f"model {model!r} needs in_shape (C, H, W) for images, got {tuple(in_shape)!r}")
    c, h, w = (int(d) for d in in_shape)
    return c, h, w


def init_conv_bn(module: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU) convs; BatchNorm weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    # No conv bias: BatchNorm's shift makes it redundant. ReLU not inplace (forward AD).
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class _PooledCNN(nn.Module):
    """``features`` (ending in a global pool and a flatten to ``(N, dim)``) -> linear head.

    The parameter names (``features.*``, ``classifier.*``) are what saved checkpoints hold.
    """

    def __init__(self, features: list[nn.Module], dim: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(*features)
        self.classifier = nn.Linear(dim, num_classes)
        self.num_classes = num_classes
        init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(N, C, H, W)`` to logits ``(N, num_classes)``."""
        return self.classifier(self.features(x))

    def meta_blocks(self) -> list[nn.Module]:
        """The layers in forward order, for ``engine="tail"`` (see :mod:`l2b.meta.tail`)."""
        return [*self.features, self.classifier]


def _check_width(width: int) -> None:
    if width < 1:
        raise ValueError(f"width must be positive, got {width!r}")


class SmallCNN(_PooledCNN):
    """conv3x3(w) BN ReLU -> conv3x3(2w) BN ReLU maxpool2 -> conv3x3(4w) BN ReLU -> GAP -> linear.

    Input ``(N, C, H, W)``, any C, H and W (the max-pool floors odd sizes; H, W >= 2);
    output logits ``(N, num_classes)``.
    """

    def __init__(self, in_chans: int, num_classes: int, width: int = 32) -> None:
        _check_width(width)
        features = [
            *_conv_bn_relu(in_chans, width),
            *_conv_bn_relu(width, 2 * width),
            nn.MaxPool2d(2),
            *_conv_bn_relu(2 * width, 4 * width),
            # Global pooling makes the head independent of the input resolution.
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
        ]
        super().__init__(features, 4 * width, num_classes)


@register_model(
    "small_cnn",
    options=(
        Option(
            "width", "int", 32, "first-layer channels (small_cnn, fast_cnn; unet, unetpp: doubled per level)", minimum=1
        ),
    ),
)
def small_cnn(*, num_classes: int, in_shape: tuple[int, ...], width: int = 32) -> SmallCNN:
    """Small fast CNN (about 0.1 M parameters at width 32).

    Input ``(N, *in_shape)`` with ``in_shape = (C, H, W)``; output logits ``(N, num_classes)``.

    Options
    -------
    width : channels of the first conv; the next two have 2x and 4x as many.
    """
    c, _, _ = image_shape(in_shape, "small_cnn")
    return SmallCNN(c, num_classes, width=width)


class FastCNN(_PooledCNN):
    """A conv stem and three pooling blocks, for CIFAR-sized images on small compute.

    stem: conv3x3(w) BN GELU; block k (widths w, 2w, 4w): conv3x3 -> maxpool2 -> BN GELU ->
    conv3x3 BN GELU; then global average pool -> linear. The block layout follows airbench's
    CIFAR-10 network (Jordan 2024): pooling right after each block's first conv keeps most convs
    at 1/4 to 1/64 of the input area, so the net is cheap for its depth.

    Input ``(N, C, H, W)`` with H, W >= 8; output logits ``(N, num_classes)``.
    """

    def __init__(self, in_chans: int, num_classes: int, width: int = 32) -> None:
        _check_width(width)
        layers: list[nn.Module] = [
            nn.Conv2d(in_chans, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.GELU(),
        ]
        c_in = width
        for c_out in (width, 2 * width, 4 * width):
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.MaxPool2d(2),
                nn.BatchNorm2d(c_out),
                nn.GELU(),
                nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.GELU(),
            ]
            c_in = c_out
        # Global average pool: airbench max-pools here, but on a 9k-image CIFAR-10 subset average
        # pooling trained faster (meta-set accuracy 59.7 % vs 47.8 % after 5 clean epochs, one run each).
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(1)]
        super().__init__(layers, 4 * width, num_classes)


@register_model(
    "fast_cnn",
    options=(
        Option(
            "width", "int", 32, "first-layer channels (small_cnn, fast_cnn; unet, unetpp: doubled per level)", minimum=1
        ),
    ),
)
def fast_cnn(*, num_classes: int, in_shape: tuple[int, ...], width: int = 32) -> FastCNN:
    """Seven-conv CNN with three pooling blocks (about 0.3 M parameters at width 32).

    Input ``(N, *in_shape)`` with ``in_shape = (C, H, W)``, H and W >= 8; output logits
    ``(N, num_classes)``.

    Options
    -------
    width : channels of the stem and first block; the next two blocks have 2x and 4x as many.
    """
    c, h, w = image_shape(in_shape, "fast_cnn")
    if min(h, w) < 8:
        raise ValueError(f"model 'fast_cnn' needs images of at least 8x8 (three 2x poolings), got {h}x{w}")
    return FastCNN(c, num_classes, width=width)
