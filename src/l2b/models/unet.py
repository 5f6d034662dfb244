"""Segmentation networks: U-Net (Ronneberger et al., 2015) and UNet++ (Zhou et al., 2018).

Each maps images ``(N, C, H, W)`` to per-pixel logits ``(N, num_classes, H, W)``: binary masks are
two classes (a softmax over background and foreground, equivalent to one sigmoid output on
their difference). Their layers are convolutions, BatchNorm, ReLU, max pooling and nearest
upsampling, all of which run under ``torch.func.functional_call`` and forward-mode AD, so the
exact meta-gradient engines weigh their per-pixel costs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..options import Option
from .cnn import image_shape
from .registry import register_model

__all__ = ["UNet", "UNetPlusPlus", "unet", "unetpp"]


def _block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by BatchNorm and ReLU (same spatial size)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=False),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=False),
    )


def _check(name: str, in_shape: tuple[int, ...], width: int, depth: int) -> int:
    c, h, w = image_shape(in_shape, name)
    if width < 1 or depth < 1:
        raise ValueError(f"model {name!r} needs width >= 1 and depth >= 1, got width={width}, depth={depth}")
    step = 2**depth
    if h % step or w % step:
        raise ValueError(
            f"model {name!r} with depth {depth} halves the image {depth} times: height and width must be "
            f"multiples of {step}, got {h}x{w} (resize the images, e.g. --image-size, or lower --depth)"
        )
    return c


class UNet(nn.Module):
    """U-Net: an encoder of `depth` poolings (channels width, 2 width, ..., 2^depth width), a
    decoder that upsamples (nearest, then a 1x1 convolution halving the channels), joins the
    encoder's map of the same size and applies two 3x3 convolutions, and a 1x1 output layer.

    Input ``(N, C, H, W)`` with H and W multiples of 2^depth; output ``(N, num_classes, H, W)``.
    """

    def __init__(self, in_chans: int, num_classes: int, *, width: int = 32, depth: int = 4) -> None:
        super().__init__()
        widths = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([_block(in_chans, widths[0])])
        self.down.extend(_block(widths[i - 1], widths[i]) for i in range(1, depth + 1))
        self.pool = nn.MaxPool2d(2)
        self.reduce = nn.ModuleList(nn.Conv2d(widths[i + 1], widths[i], 1) for i in range(depth))
        self.up = nn.ModuleList(_block(2 * widths[i], widths[i]) for i in range(depth))
        self.out = nn.Conv2d(widths[0], num_classes, 1)

    def meta_blocks(self) -> list[nn.Module]:
        """The blocks with parameters in the order forward applies them (``engine="tail"``)."""
        decoder = [m for i in reversed(range(len(self.up))) for m in (self.reduce[i], self.up[i])]
        return [*self.down, *decoder, self.out]

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for i in reversed(range(len(self.up))):
            x = self.reduce[i](nn.functional.interpolate(x, scale_factor=2, mode="nearest"))
            x = self.up[i](torch.cat([skips.pop(), x], dim=1))
        return self.out(x)


class UNetPlusPlus(nn.Module):
    """UNet++ (nested U-Net, Zhou et al., DLMIA 2018), without deep supervision: node X(i, j)
    (level i, j-th on its row) convolves the concatenation of X(i, 0), ..., X(i, j - 1) and the
    upsampled X(i + 1, j - 1); the output is a 1x1 convolution of X(0, depth). The L2B
    segmentation variant uses it with 64 base filters (``width=64``).

    Input ``(N, C, H, W)`` with H and W multiples of 2^depth; output ``(N, num_classes, H, W)``.
    """

    def __init__(self, in_chans: int, num_classes: int, *, width: int = 32, depth: int = 4) -> None:
        super().__init__()
        self.depth = depth
        widths = [width * 2**i for i in range(depth + 1)]
        self.pool = nn.MaxPool2d(2)
        nodes = {}
        for i in range(depth + 1):
            for j in range(depth + 1 - i):
                if j == 0:
                    c_in = in_chans if i == 0 else widths[i - 1]
                else:
                    c_in = j * widths[i] + widths[i + 1]
                nodes[f"x{i}_{j}"] = _block(c_in, widths[i])
        self.nodes = nn.ModuleDict(nodes)
        self.out = nn.Conv2d(widths[0], num_classes, 1)

    def meta_blocks(self) -> list[nn.Module]:
        """The nodes in the order forward applies them, then the output layer (``engine="tail"``)."""
        order = [f"x{i}_0" for i in range(self.depth + 1)]
        order += [f"x{i}_{j}" for j in range(1, self.depth + 1) for i in range(self.depth + 1 - j)]
        return [*(self.nodes[n] for n in order), self.out]

    def forward(self, x: Tensor) -> Tensor:
        grid: dict[tuple[int, int], Tensor] = {}
        for i in range(self.depth + 1):
            grid[i, 0] = self.nodes[f"x{i}_0"](x if i == 0 else self.pool(grid[i - 1, 0]))
        for j in range(1, self.depth + 1):
            for i in range(self.depth + 1 - j):
                up = nn.functional.interpolate(grid[i + 1, j - 1], scale_factor=2, mode="nearest")
                grid[i, j] = self.nodes[f"x{i}_{j}"](torch.cat([*(grid[i, k] for k in range(j)), up], dim=1))
        return self.out(grid[0, self.depth])


_WIDTH = Option(
    "width", "int", 32, "first-layer channels (small_cnn, fast_cnn; unet, unetpp: doubled per level)", minimum=1
)
_DEPTH = Option("depth", "int", 4, "segmentation models: number of 2x poolings", minimum=1)


@register_model("unet", options=(_WIDTH, _DEPTH))
def unet(*, num_classes: int, in_shape: tuple[int, ...], width: int = 32, depth: int = 4) -> UNet:
    """U-Net for per-pixel classes: logits ``(N, num_classes, H, W)`` (see :class:`UNet`)."""
    return UNet(_check("unet", in_shape, width, depth), num_classes, width=width, depth=depth)


@register_model("unetpp", options=(_WIDTH, _DEPTH))
def unetpp(*, num_classes: int, in_shape: tuple[int, ...], width: int = 32, depth: int = 4) -> UNetPlusPlus:
    """UNet++ for per-pixel classes: logits ``(N, num_classes, H, W)`` (see :class:`UNetPlusPlus`)."""
    return UNetPlusPlus(_check("unetpp", in_shape, width, depth), num_classes, width=width, depth=depth)
