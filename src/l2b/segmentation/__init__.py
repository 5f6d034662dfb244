"""Segmentation with noisy masks: metrics (Dice, IoU per image, class and case) and mask-noise
simulators. The task itself (:class:`l2b.tasks.Segmentation`) and the per-pixel meta-gradient
(:func:`l2b.meta_weights` with logits (B, K, H, W)) live with their kind."""

from __future__ import annotations

from .metrics import case_dice, dice_per_image, iou_per_image
from .noise import MASK_NOISE, MaskNoise, make_mask_noise, mask_noise_report

__all__ = [
    "MASK_NOISE",
    "MaskNoise",
    "case_dice",
    "dice_per_image",
    "iou_per_image",
    "make_mask_noise",
    "mask_noise_report",
]
