"""Residual networks: pre-activation ResNet-18 for CIFAR-sized images and ImageNet-style
ResNet-18 / ResNet-50.

All blocks add the shortcut out of place (``out + shortcut``) and use non-inplace ReLUs so the
models run under ``torch.func.functional_call`` and forward-mode AD.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..options import Option
from .cnn import image_shape, init_conv_bn
from .registry import register_model

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "PreActBasicBlock",
    "PreActResNet",
    "ResNet",
    "preact_resnet18",
    "wrn28_10",
    "resnet18",
    "resnet50",
]


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    # Every conv here feeds a BatchNorm, which makes a conv bias redundant.
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


def _conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)


# --------------------------------------------------------------------------------------------
# Pre-activation ResNet (He et al., "Identity Mappings in Deep Residual Networks", 2016)
# --------------------------------------------------------------------------------------------


class PreActBasicBlock(nn.Module):
    """BN-ReLU-conv3x3 twice, plus a shortcut.

    Input ``(N, c_in, H, W)``, output ``(N, c_out, ceil(H / stride), ceil(W / stride))``.
    When the shape changes the shortcut is a strided 1x1 conv applied to the pre-activated input
    (so both branches start from the same normalised tensor); otherwise it is the identity.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.relu1 = nn.ReLU()
        self.conv1 = _conv3x3(c_in, c_out, stride)
        # Wide ResNets put dropout between the two convolutions.
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu2 = nn.ReLU()
        self.conv2 = _conv3x3(c_out, c_out)
        self.shortcut: nn.Module | None = _conv1x1(c_in, c_out, stride) if stride != 1 or c_in != c_out else None

    def forward(self, x: Tensor) -> Tensor:
        """``(N, c_in, H, W)`` -> ``(N, c_out, H', W')``."""
        pre = self.relu1(self.bn1(x))
        # Structural branch fixed at construction, not data-dependent.
        shortcut = x if self.shortcut is None else self.shortcut(pre)
        out = self.drop(self.conv1(pre))
        out = self.conv2(self.relu2(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """Pre-activation residual network for small images (no stem down-sampling, no max-pool).

    3x3 stem conv (``stem_width`` channels) -> stages of PreAct basic blocks (``layers[i]`` blocks
    of ``widths[i]`` channels, first one with stride ``strides[i]``) -> BN -> ReLU -> global average
    pool -> linear. The defaults are ResNet-18's four stages (64/128/256/512 channels, strides
    1/2/2/2); a wide ResNet is the same network with three wider stages (see ``wrn28_10``).

    Input ``(N, C, H, W)``, any C; designed for H, W of 8 to 64 (32x32 gives a 4x4 final map with
    ResNet-18's strides). Output logits ``(N, num_classes)``.
    """

    def __init__(
        self,
        layers: Sequence[int],
        in_chans: int,
        num_classes: int,
        base_width: int = 64,
        *,
        widths: Sequence[int] | None = None,
        strides: Sequence[int] = (1, 2, 2, 2),
        stem_width: int | None = None,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        widths = [base_width * 2**i for i in range(4)] if widths is None else list(widths)
        stem_width = base_width if stem_width is None else stem_width
        # No BN-ReLU after the stem: the first block's pre-activation provides it.
        self.stem = _conv3x3(in_chans, stem_width)
        stages: list[nn.Module] = []
        c_in = stem_width
        for n_blocks, c_out, stride in zip(layers, widths, strides, strict=True):
            blocks = [PreActBasicBlock(c_in, c_out, stride, drop_rate)]
            blocks += [PreActBasicBlock(c_out, c_out, 1, drop_rate) for _ in range(n_blocks - 1)]
            stages.append(nn.Sequential(*blocks))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        # Pre-activation blocks end on a conv, so the head needs its own normalisation.
        self.bn = nn.BatchNorm2d(c_in)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        self.num_classes = num_classes
        init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(N, C, H, W)`` to logits ``(N, num_classes)``."""
        out = self.stages(self.stem(x))
        out = self.pool(self.relu(self.bn(out)))
        return self.fc(out.flatten(1))

    def meta_blocks(self) -> list[nn.Module]:
        """Stem conv, each residual block, final BN, fc: forward order, for ``engine="tail"``
        (see :mod:`l2b.meta.tail`)."""
        return [self.stem, *(block for stage in self.stages for block in stage), self.bn, self.fc]


@register_model("preact_resnet18")
def preact_resnet18(*, num_classes: int, in_shape: tuple[int, ...]) -> PreActResNet:
    """Pre-activation ResNet-18 for CIFAR-sized images (about 11.17 M parameters, 10 classes).

    Input ``(N, *in_shape)`` with ``in_shape = (C, H, W)``, H, W >= 8 recommended;
    output logits ``(N, num_classes)``.
    """
    c, _, _ = image_shape(in_shape, "preact_resnet18")
    return PreActResNet([2, 2, 2, 2], c, num_classes)


@register_model(
    "wrn28_10",
    options=(Option("drop_rate", "float", 0.0, "dropout rate inside the wide residual blocks", minimum=0, below=1),),
)
def wrn28_10(*, num_classes: int, in_shape: tuple[int, ...], drop_rate: float = 0.0) -> PreActResNet:
    """WRN-28-10 (Zagoruyko & Komodakis, 2016) for CIFAR-sized images: a 16-channel stem, three
    stages of (28 - 4) / 6 = 4 pre-activation blocks, 10x wider than a plain ResNet (160 / 320 /
    640 channels, strides 1 / 2 / 2), dropout `drop_rate` between each block's convolutions.
    About 36.5 M parameters for 10 classes."""
    c, _, _ = image_shape(in_shape, "wrn28_10")
    return PreActResNet(
        [4, 4, 4], c, num_classes, widths=(160, 320, 640), strides=(1, 2, 2), stem_width=16, drop_rate=drop_rate
    )


# --------------------------------------------------------------------------------------------
# ImageNet-style ResNet (He et al., "Deep Residual Learning for Image Recognition", 2015)
# --------------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, add shortcut, ReLU (post-activation).

    Input ``(N, c_in, H, W)``, output ``(N, planes, ceil(H / stride), ceil(W / stride))``.
    """

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        c_out = planes * self.expansion
        self.conv1 = _conv3x3(c_in, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = _conv3x3(planes, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu2 = nn.ReLU()
        self.downsample = _projection(c_in, c_out, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        """``(N, c_in, H, W)`` -> ``(N, planes, H', W')``."""
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.downsample(x))


class Bottleneck(nn.Module):
    """conv1x1-BN-ReLU, conv3x3(stride)-BN-ReLU, conv1x1-BN, add shortcut, ReLU.

    The stride sits on the 3x3 conv (the common "v1.5" variant, which the 25.6 M count matches).
    Input ``(N, c_in, H, W)``, output ``(N, 4 * planes, ceil(H / stride), ceil(W / stride))``.
    """

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        c_out = planes * self.expansion
        self.conv1 = _conv1x1(c_in, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv3 = _conv1x1(planes, c_out)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu3 = nn.ReLU()
        self.downsample = _projection(c_in, c_out, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        """``(N, c_in, H, W)`` -> ``(N, 4 * planes, H', W')``."""
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + self.downsample(x))


def _projection(c_in: int, c_out: int, stride: int) -> nn.Module:
    # nn.Identity keeps forward() free of branches when the shapes already match.
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(_conv1x1(c_in, c_out, stride), nn.BatchNorm2d(c_out))


class ResNet(nn.Module):
    """ImageNet-style ResNet.

    7x7 stride-2 stem conv (64) -> BN -> ReLU -> 3x3 stride-2 max-pool -> four stages
    (64/128/256/512 planes, strides 1/2/2/2) -> global average pool -> linear.

    Input ``(N, C, H, W)``, any C; designed for 224x224 (7x7 final map), works down to about
    32x32. Output logits ``(N, num_classes)``.
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: Sequence[int],
        in_chans: int,
        num_classes: int,
        *,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages: list[nn.Module] = []
        c_in = 64
        for i, n_blocks in enumerate(layers):
            planes = 64 * 2**i
            stride = 1 if i == 0 else 2
            blocks: list[nn.Module] = [block(c_in, planes, stride)]
            c_in = planes * block.expansion
            blocks += [block(c_in, planes) for _ in range(n_blocks - 1)]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        self.num_classes = num_classes
        init_conv_bn(self)
        if zero_init_residual:
            # Each residual block then starts as the identity, which helps large-batch training.
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn().weight)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(N, C, H, W)`` to logits ``(N, num_classes)``."""
        out = self.pool(self.stages(self.stem(x)))
        return self.fc(out.flatten(1))

    def translate_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """A state dict in torchvision's ResNet layout (``conv1``, ``bn1``, ``layer1``..``layer4``,
        ``fc``) renamed to this model's (``stem.0``, ``stem.1``, ``stages.0``..``stages.3``, ``fc``);
        the blocks' own names (conv1..3, bn1..3, downsample.0/1) already agree. A state dict in
        this model's layout comes back unchanged."""
        if not any(k.startswith("layer1.") for k in state):
            return dict(state)
        out = {}
        for key, value in state.items():
            head, _, rest = key.partition(".")
            if head == "conv1":
                key = f"stem.0.{rest}"
            elif head == "bn1":
                key = f"stem.1.{rest}"
            elif head.startswith("layer") and head[5:].isdigit():
                key = f"stages.{int(head[5:]) - 1}.{rest}"
            out[key] = value
        return out

    def meta_blocks(self) -> list[nn.Module]:
        """Stem conv and BN, each residual block, fc: forward order, for ``engine="tail"``
        (see :mod:`l2b.meta.tail`)."""
        return [*self.stem, *(block for stage in self.stages for block in stage), self.fc]


@register_model(
    "resnet18",
    options=(
        Option(
            "zero_init_residual",
            "bool",
            False,
            "start each residual block's last BatchNorm at zero (each block then starts as the identity)",
        ),
    ),
)
def resnet18(*, num_classes: int, in_shape: tuple[int, ...], zero_init_residual: bool = False) -> ResNet:
    """ImageNet-style ResNet-18, basic blocks [2, 2, 2, 2] (about 11.69 M parameters, 1000 classes).

    Input ``(N, *in_shape)`` with ``in_shape = (C, H, W)``, 224x224 nominal;
    output logits ``(N, num_classes)``.

    Options
    -------
    zero_init_residual : start the last BN of each block at weight 0 (block = identity).
    """
    c, _, _ = image_shape(in_shape, "resnet18")
    return ResNet(BasicBlock, [2, 2, 2, 2], c, num_classes, zero_init_residual=zero_init_residual)


@register_model(
    "resnet50",
    options=(
        Option(
            "zero_init_residual",
            "bool",
            False,
            "start each residual block's last BatchNorm at zero (each block then starts as the identity)",
        ),
    ),
)
def resnet50(*, num_classes: int, in_shape: tuple[int, ...], zero_init_residual: bool = False) -> ResNet:
    """ImageNet-style ResNet-50, bottleneck blocks [3, 4, 6, 3] (about 25.56 M parameters,
    1000 classes).

    Input ``(N, *in_shape)`` with ``in_shape = (C, H, W)``, 224x224 nominal;
    output logits ``(N, num_classes)``.

    Options
    -------
    zero_init_residual : start the last BN of each block at weight 0 (block = identity).
    """
    c, _, _ = image_shape(in_shape, "resnet50")
    return ResNet(Bottleneck, [3, 4, 6, 3], c, num_classes, zero_init_residual=zero_init_residual)
