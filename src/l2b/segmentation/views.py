"""The five views of the L2B segmentation variant, and the pseudo-mask averaged over them.

As published (github.com/yuyinzhou/L2B, L2B_segmentation/dataloader.py ``get_aug_image`` and
``avg_pseudo_label``; train.py): each training image becomes five, trained on together:

0. the image itself;
1. a zoom-in: resized up by 2p pixels and centre-cropped back (p drawn per image);
2. and 3. two zoom-outs: resized down by 2q pixels and padded back with zeros (two q's drawn);
4. a flip: vertical, horizontal or both (one of the three drawn per image).

The pad sizes are drawn from 4, 6, ..., 30 px at 144 x 144 (scaled with the image side here).
The masks follow each view (resized as one-hot maps, then the most likely class). The
pseudo-mask of the second cost row: each view's class probabilities mapped back to the original
frame (the part a zoom-in view does not see counts as background, as the published zero padding
does), averaged over the five, mapped into each view's frame again, and its most likely class
(for two classes: the foreground probability above 0.5, as published).

Tensors are image-major: the five views of image i are rows 5 i .. 5 i + 4.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["FiveViews", "VIEWS", "averaged_pseudo_labels", "draw_views", "masks_of", "views_of"]

VIEWS = 5
PAD_SIZES = tuple(range(4, 31, 2))  # the published picksize, at 144 x 144


@dataclass(frozen=True)
class FiveViews:
    """The geometry of one batch's five views.

    Attributes
    ----------
    zoom_in : Tensor, shape (B,) int64
        p of each image's zoom-in view (px).
    zoom_out : Tensor, shape (B, 2) int64
        q of its two zoom-out views.
    flip : Tensor, shape (B,) int64
        1 vertical, 2 horizontal, 3 both.
    size : (H, W)
    """

    zoom_in: Tensor
    zoom_out: Tensor
    flip: Tensor
    size: tuple[int, int]


def draw_views(batch: int, size: tuple[int, int], *, generator: torch.Generator | None = None) -> FiveViews:
    """Draw the five views' geometry for `batch` images of `size` (H, W) from `generator`."""
    h, w = size
    scale = min(h, w) / 144
    pads = sorted({max(1, round(p * scale)) for p in PAD_SIZES if round(p * scale) * 2 < min(h, w) - 1})
    if not pads:
        raise ValueError(f"images of {h}x{w} are too small for the zoom views")
    choices = torch.tensor(pads)
    zoom_in = choices[torch.randint(len(pads), (batch,), generator=generator)]
    # the two zoom-outs: two different sizes, as published (random.sample of two)
    zoom_out = torch.stack([choices[torch.randperm(len(pads), generator=generator)[:2]] for _ in range(batch)])
    if len(pads) == 1:
        zoom_out = choices[0].expand(batch, 2).clone()
    flip = torch.randint(1, 4, (batch,), generator=generator)
    return FiveViews(zoom_in=zoom_in, zoom_out=zoom_out, flip=flip, size=(h, w))


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _flip(x: Tensor, how: int) -> Tensor:
    dims = {1: (-2,), 2: (-1,), 3: (-2, -1)}[how]
    return torch.flip(x, dims)


def _zoom_in(x: Tensor, p: int) -> Tensor:
    h, w = x.shape[-2:]
    return _resize(x, (h + 2 * p, w + 2 * p))[..., p : p + h, p : p + w]


def _zoom_out(x: Tensor, q: int, fill: Tensor | None = None) -> Tensor:
    h, w = x.shape[-2:]
    out = torch.zeros_like(x) if fill is None else fill.expand_as(x).clone()
    out[..., q : h - q, q : w - q] = _resize(x, (h - 2 * q, w - 2 * q))
    return out


def views_of(x: Tensor, plan: FiveViews, *, fill: Tensor | None = None) -> Tensor:
    """The five views of images or maps `x` (B, C, H, W): (5 B, C, H, W), image-major. `fill`
    (C, 1, 1): what a zoom-out pads with (zeros by default, as published for images)."""
    views = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1]
        p, (q1, q2), f = int(plan.zoom_in[i]), plan.zoom_out[i].tolist(), int(plan.flip[i])
        views += [xi, _zoom_in(xi, p), _zoom_out(xi, q1, fill), _zoom_out(xi, q2, fill), _flip(xi, f)]
    return torch.cat(views)


def _background(k: int, like: Tensor) -> Tensor:
    fill = torch.zeros(k, 1, 1, dtype=like.dtype, device=like.device)
    fill[0] = 1.0
    return fill


def masks_of(masks: Tensor, plan: FiveViews, num_classes: int) -> Tensor:
    """The five views of masks (B, H, W) of class indices: (5 B, H, W), each view's one-hot map
    resized as the image was, then its most likely class (zoom-outs pad with background)."""
    onehot = F.one_hot(masks, num_classes).movedim(-1, 1).float()
    return views_of(onehot, plan, fill=_background(num_classes, onehot)).argmax(dim=1)


def _to_original(probs: Tensor, plan: FiveViews) -> Tensor:
    """Each view's maps (5 B, K, H, W) in the original frame, averaged over the five: (B, K, H, W).
    What a zoom-in view does not see is background."""
    h, w = plan.size
    k = probs.shape[1]
    bg = _background(k, probs)
    out = []
    for i in range(probs.shape[0] // VIEWS):
        v = probs[VIEWS * i : VIEWS * (i + 1)]
        p, (q1, q2), f = int(plan.zoom_in[i]), plan.zoom_out[i].tolist(), int(plan.flip[i])
        canvas = bg.expand(1, k, h + 2 * p, w + 2 * p).clone()
        canvas[..., p : p + h, p : p + w] = v[1:2]
        back = [
            v[0:1],
            _resize(canvas, (h, w)),
            _resize(v[2:3, :, q1 : h - q1, q1 : w - q1], (h, w)),
            _resize(v[3:4, :, q2 : h - q2, q2 : w - q2], (h, w)),
            _flip(v[4:5], f),
        ]
        out.append(torch.cat(back).mean(dim=0, keepdim=True))
    return torch.cat(out)


@torch.no_grad()
def averaged_pseudo_labels(logits: Tensor, plan: FiveViews) -> Tensor:
    """The pseudo-mask of every view (5 B, H, W) from the network's logits on the five views
    (5 B, K, H, W): softmax, mapped back and averaged (:func:`_to_original`), mapped into each
    view's frame again, most likely class."""
    probs = torch.softmax(logits.float(), dim=1)
    mean = _to_original(probs, plan)
    return views_of(mean, plan, fill=_background(probs.shape[1], probs)).argmax(dim=1)
