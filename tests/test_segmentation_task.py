"""The segmentation task through the real trainer: masks (N, H, W), per-pixel methods (CE,
bootstrap, L2RW, L2B with one weight per pixel and cost), Dice and IoU in the record, the
checkpoint chosen on the meta set's Dice, and label quality as each mask's Dice against the
prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from l2b.methods import Batch, StepContext, create_method
from l2b.models import create_model
from l2b.segmentation import dice_per_image, make_mask_noise
from l2b.tasks import Segmentation, get_task
from l2b.training import Trainer
from l2b.training.batches import TensorData
from l2b.training.trainer import predict_proba

S = 16


def _shapes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, S, S) holding one bright rectangle on noise; masks (N, S, S) marking it."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.3, (n, 1, S, S)).astype(np.float32)
    y = np.zeros((n, S, S), np.int64)
    for i in range(n):
        h, w = rng.integers(4, 9, size=2)
        r, c = rng.integers(0, S - h), rng.integers(0, S - w)
        x[i, 0, r : r + h, c : c + w] += 1.0
        y[i, r : r + h, c : c + w] = 1
    return torch.from_numpy(x), torch.from_numpy(y)


def _trainer(method: str, model, task="segmentation"):
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return Trainer(
        model,
        create_method(method),
        opt,
        None,
        num_classes=2,
        batch_size=16,
        meta_batch_size=8,
        generator=torch.Generator().manual_seed(0),
        progress=False,
        task=task,
    )


@pytest.mark.parametrize("method", ["ce", "l2b"])
def test_segmentation_trains_on_noisy_masks_and_is_scored_by_dice(method):
    x, clean = _shapes(64, 0)
    noisy = torch.from_numpy(make_mask_noise("boundary", clean.numpy(), pixels=1, mode="dilate").masks)
    mx, my = _shapes(16, 1)
    tx, ty = _shapes(32, 2)
    torch.manual_seed(0)
    model = create_model("unet", num_classes=2, in_shape=(1, S, S), width=4, depth=2)
    result = _trainer(method, model).fit(TensorData(x, noisy), TensorData(mx, my), epochs=6, test=TensorData(tx, ty))
    last = result.history[-1]
    assert {"meta_dice", "meta_iou", "test_dice", "test_iou", "meta_accuracy"} <= set(last)
    probs = predict_proba(model, TensorData(tx, ty))
    direct = float(dice_per_image(probs.argmax(1), ty, 2).mean())
    assert last["test_dice"] == pytest.approx(direct)
    best = max(result.history, key=lambda r: (r["meta_dice"], -r["meta_eval_loss"]))
    assert result.best_epoch == best["epoch"]  # chosen on the meta set's Dice
    assert max(r["test_dice"] for r in result.history) > 0.6  # it learnt where the rectangles are
    assert result.per_example.pred.shape == (64, S, S)
    if method == "l2b":  # per-pixel weights, reduced to one number per image for the record
        assert np.isfinite(result.per_example.alpha).all() and result.per_example.alpha.shape == (64,)


@pytest.mark.parametrize("method", ["bootstrap-soft", "bootstrap-hard", "l2rw", "l2b"])
def test_a_step_of_each_method_on_masks(method):
    x, y = _shapes(8, 3)
    mx, my = _shapes(4, 4)
    torch.manual_seed(0)
    model = create_model("unet", num_classes=2, in_shape=(1, S, S), width=4, depth=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    before = [p.detach().clone() for p in model.parameters()]
    out = create_method(method).step(
        model, opt, Batch(x, y, meta_inputs=mx, meta_labels=my), StepContext(num_classes=2)
    )
    assert np.isfinite(out.loss) and any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert out.predictions.shape == (8, S, S)
    if method in ("l2rw", "l2b"):  # one weight per pixel and cost, normalised over all of them
        assert out.alpha.shape == (8, S, S) and out.beta.shape == (8, S, S) and out.pseudo_labels.shape == (8, S, S)
        assert float(out.alpha.sum() + out.beta.sum()) == pytest.approx(1.0, abs=1e-5)


def test_segmentation_labels_and_label_quality():
    task = get_task("segmentation")
    assert isinstance(task, Segmentation) and task.selection_metric == "dice"
    with pytest.raises(ValueError, match=r"shape \(N, H, W\), got shape \(4,\)"):
        task.check_labels(torch.zeros(4, dtype=torch.long), 2, what="train masks")
    with pytest.raises(ValueError, match=r"train masks must be class indices in \[0, 2\), got 2"):
        task.check_labels(np.full((1, 2, 2), 2), 2, what="train masks")
    given = np.zeros((2, 4, 4), np.int64)
    given[:, :2, :2] = 1
    probs = np.zeros((2, 2, 4, 4))
    probs[:, 0] = 1.0
    probs[0, 1, :2, :2], probs[0, 0, :2, :2] = 1.0, 0.0  # image 0 predicted as given
    probs[1, 1, :2, :1], probs[1, 0, :2, :1] = 1.0, 0.0  # image 1: half the object found
    quality, suggested, differs = task.label_quality(probs, given)
    np.testing.assert_allclose(quality, [1.0, 2 * 2 / (2 + 4)])
    assert differs.tolist() == [False, True] and suggested.shape == (2, 4, 4)


def test_l2b_fit_trains_a_segmentation_network_and_ranks_suspect_masks():
    import l2b

    x, clean = _shapes(48, 5)
    noisy = clean.clone()
    noisy[:8] = 0  # eight masks lost their object: the most suspect ones
    meta, test = _shapes(12, 6), _shapes(24, 7)
    torch.manual_seed(0)
    model = create_model("unet", num_classes=2, in_shape=(1, S, S), width=4, depth=2)
    out = l2b.fit(model, (x, noisy), meta, test=test, task="segmentation", method="ce", epochs=8, warmup_epochs=0,
                  batch_size=8, meta_batch_size=8, lr=0.05)  # fmt: skip
    assert out.pred_prob.shape == (48, 2, S, S) and "test_dice" in out.history[-1]
    with pytest.raises(ValueError, match=r"train labels must be one mask of class indices per image"):
        l2b.fit(model, (x, noisy[:, 0]), meta, task="segmentation", epochs=2)
    with pytest.raises(ValueError, match="augment does not apply with task='segmentation'"):
        l2b.fit(model, (x, noisy), meta, task="segmentation", augment=lambda b, **k: b)
    quality, _, differs = get_task("segmentation").label_quality(out.pred_prob, out.given_label)
    emptied = np.argsort(quality)[:8]
    assert len(set(emptied.tolist()) & set(range(8))) >= 6 and differs[:8].all()


def test_l2b_train_refuses_segmentation_pieces_on_classification_by_name(tmp_path):
    from l2b.training import TrainConfig, run_experiment

    with pytest.raises(ValueError, match=r"model 'unet' returns outputs of shape \(2, 10, 8, 8\).*segmentation models"):
        run_experiment(TrainConfig(model="unet", depth=2, width=4, epochs=2, warmup_epochs=1), out_dir=tmp_path / "a")
    with pytest.raises(ValueError, match="pseudo_views=5 is the segmentation variant's"):
        run_experiment(TrainConfig(pseudo_views=5, epochs=2, warmup_epochs=1), out_dir=tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # no half-made run directory
