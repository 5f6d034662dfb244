"""Segmentation with noisy masks: metrics (Dice, IoU per image, class and case) and mask-noise
simulators. The task itself (:class:`l2b.tasks.Segmentation`) and the per-pixel meta-gradient
(:func:`l2b.meta_weights` with logits (B, K, H, W)) live with their kind."""

from __future__ import annotations

from .data import SegmentationData, read_mask, read_mask_csv, read_mask_folder, read_volumes
from .metrics import case_dice, dice_per_image, iou_per_image
from .noise import MASK_NOISE, MaskNoise, make_mask_noise, mask_noise_report
from .outputs import mask_issues, overlay_figure, save_masks, write_mask_issues
from .synthetic import make_shapes

__all__ = [
    "MASK_NOISE",
    "MaskNoise",
    "SegmentationData",
    "case_dice",
    "dice_per_image",
    "iou_per_image",
    "make_mask_noise",
    "make_shapes",
    "mask_issues",
    "mask_noise_report",
    "overlay_figure",
    "read_mask",
    "read_mask_csv",
    "read_mask_folder",
    "read_volumes",
    "save_masks",
    "write_mask_issues",
]
