"""Segmentation metrics and mask-noise simulators, against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from l2b.segmentation import MASK_NOISE, case_dice, dice_per_image, iou_per_image, make_mask_noise


def _square_masks(n=2, size=32, lo=8, hi=24):
    m = np.zeros((n, size, size), np.int64)
    m[:, lo:hi, lo:hi] = 1
    return m


def test_dice_and_iou_by_hand():
    target = np.zeros((2, 4, 4), np.int64)
    target[0, :2, :2] = 1  # 4 pixels of class 1
    target[0, 3, 3] = 2  # 1 pixel of class 2
    pred = np.zeros_like(target)
    pred[0, :2, :1] = 1  # 2 of them found, none extra
    # image 1: nothing anywhere -> both classes absent from both: 1
    dice = dice_per_image(pred, target, 3)
    assert dice.shape == (2, 2)
    assert dice[0].tolist() == pytest.approx([2 * 2 / (2 + 4), 0.0]) and dice[1].tolist() == [1.0, 1.0]
    assert iou_per_image(pred, target, 3)[0].tolist() == pytest.approx([2 / 4, 0.0])
    # per case: the slices of a volume pooled (4 + 2 found 2 of class 1; class 2: 0 / 1)
    cases = case_dice(pred, target, np.array(["a", "a"]), 3)
    assert cases == {"a": pytest.approx((2 * 2 / 6 + 0.0) / 2)}
    with pytest.raises(ValueError, match="predicted masks of shape"):
        dice_per_image(pred[:, :2], target, 3)


@pytest.mark.parametrize("name", sorted(MASK_NOISE.names()))
def test_every_simulator_is_pure_and_seeded(name):
    masks = _square_masks(3)
    masks[1, 2:6, 2:6] = 2
    before = masks.copy()
    a = make_mask_noise(name, masks, seed=5)
    b = make_mask_noise(name, masks, seed=5)
    assert np.array_equal(masks, before)  # inputs untouched
    assert np.array_equal(a.masks, b.masks) and a.masks.shape == masks.shape and a.masks.dtype == masks.dtype
    assert 0 <= a.mean_dice <= 1 and 0 <= a.pixel_error <= 1 and a.dice.shape == (3,)
    with pytest.raises(ValueError, match="masks must be integer class indices"):
        MASK_NOISE.get(name)(masks.astype(float), np.random.default_rng(0))


def test_boundary_shift_moves_every_edge_by_k_pixels():
    masks = _square_masks(1)  # a 16 x 16 square
    grown = make_mask_noise("boundary", masks, pixels=2, mode="dilate")
    shrunk = make_mask_noise("boundary", masks, pixels=2, mode="erode")
    assert grown.masks.sum() == 20 * 20 and shrunk.masks.sum() == 12 * 12
    assert grown.mean_dice == pytest.approx(2 * 256 / (256 + 400))
    assert grown.pixel_error == pytest.approx((400 - 256) / 32**2) and grown.changed.tolist() == [True]


def test_drop_removes_whole_objects():
    masks = np.zeros((1, 16, 16), np.int64)
    masks[0, 1:4, 1:4] = 1
    masks[0, 10:14, 10:14] = 1
    assert make_mask_noise("drop", masks, p=1.0).masks.sum() == 0
    assert np.array_equal(make_mask_noise("drop", masks, p=0.0).masks, masks)
    kept = make_mask_noise("drop", masks, p=0.5, seed=3).masks.sum()
    assert kept in (0, 9, 16, 25)  # only whole objects go


def test_coarse_outlines_are_the_box_and_the_hull():
    masks = np.zeros((1, 16, 16), np.int64)
    masks[0, 2:12, 2:5] = 1  # an L: a 10 x 3 bar and a 3 x 7 foot
    masks[0, 9:12, 5:12] = 1
    box = make_mask_noise("coarse", masks, shape="box").masks
    assert box.sum() == 10 * 10 and box[0, 2:12, 2:12].all()
    hull = make_mask_noise("coarse", masks, shape="polygon").masks
    assert masks.sum() < hull.sum() < box.sum() and (hull >= masks).all()


def test_spurious_blobs_add_foreground_of_a_valid_class():
    masks = np.zeros((4, 32, 32), np.int64)
    noisy = make_mask_noise("spurious", masks, blobs=2, max_radius=4, seed=1).masks
    assert (noisy.reshape(4, -1).sum(1) > 0).all() and set(np.unique(noisy)) <= {0, 1}
    three = MASK_NOISE.get("spurious")(masks, np.random.default_rng(0), num_classes=3, blobs=5)
    assert set(np.unique(three)) <= {0, 1, 2}


def test_paper_recipe_as_published():
    masks = _square_masks(8, size=144, lo=30, hi=110)  # 80 x 80 = 6,400 px: corrupted
    masks[0] = 0
    masks[0, 10:25, 10:25] = 1  # 225 px <= 300: emptied, as the published code leaves it
    r = make_mask_noise("paper", masks, seed=0)
    assert r.masks[0].sum() == 0
    assert all(r.changed[1:]) and 0.5 < r.mean_dice < 1
    # the published pixel sizes at 144 x 144; at 72 x 72 they scale: the 300-px rule becomes 75 px
    small = np.zeros((1, 72, 72), np.int64)
    small[0, 30:45, 30:45] = 1  # 225 px: over 75, so corrupted (dilated in about half the draws)
    assert any(make_mask_noise("paper", small, seed=s).masks.sum() > 225 for s in range(10))
    unscaled = [make_mask_noise("paper", small, seed=s, reference_size=72).masks.sum() for s in range(10)]
    assert unscaled == [0] * 10  # 225 <= 300 at the published scale: emptied
    # the ellipse of a bounding box replaces the mask in about half the draws
    ellipses = [make_mask_noise("paper", masks[1:2], seed=s).masks[0] for s in range(20)]
    corners = [m[30:110, 30:110].sum() for m in ellipses]
    assert len(set(corners)) > 1


def test_dice_of_torch_and_numpy_masks_agree():
    a = torch.randint(0, 3, (2, 8, 8))
    b = torch.randint(0, 3, (2, 8, 8))
    assert torch.equal(dice_per_image(a, b, 3), dice_per_image(a.numpy(), b.numpy(), 3))
