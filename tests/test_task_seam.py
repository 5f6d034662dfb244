"""The task seam carries a second task: labels of shape (N, 2), scored per position.

A toy task (two labels per example, each scored on its own) goes through the real trainer with
a real method, and every figure the trainer records (meta and test accuracy, the checkpoint
choice, the fit to the given labels, the per-example predictions) comes from the task, checked
here against direct computations. The meta methods, whose engines weigh one cost per example,
refuse it by name.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from l2b.methods import Batch, StepContext, create_method
from l2b.tasks import TASKS, Classification, Task, get_task
from l2b.training import Trainer
from l2b.training.batches import TensorData
from l2b.training.trainer import evaluate, predict_proba

K, P = 3, 2  # classes, positions


class TwoPositions(Task):
    """Two labels per example, (N, 2); the model's logits are (N, K, 2)."""

    name = "two-positions"

    def check_labels(self, labels, num_classes, *, what):
        if tuple(labels.shape[1:]) != (P,):
            raise ValueError(f"{what} must have shape (N, {P})")
        super().check_labels(labels, num_classes, what=what)


class PerPositionNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, K * P))

    def forward(self, x):
        return self.body(x).reshape(len(x), K, P)


def _data(n: int, seed: int) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    # position 0: which third x[:, 0] falls in; position 1: the same for x[:, 1]
    labels = torch.stack([torch.bucketize(x[:, j].contiguous(), torch.tensor([-0.43, 0.43])) for j in (0, 1)], dim=1)
    return TensorData(x, labels)


def test_a_per_position_task_trains_and_is_scored_per_position():
    task = TwoPositions()
    train, meta, test = _data(300, 0), _data(60, 1), _data(90, 2)
    task.check_labels(train.labels, K, what="train labels")
    torch.manual_seed(0)
    model = PerPositionNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    trainer = Trainer(
        model,
        create_method("ce"),
        opt,
        None,
        num_classes=K,
        batch_size=32,
        meta_batch_size=16,
        generator=torch.Generator().manual_seed(0),
        progress=False,
        task=task,
    )
    result = trainer.fit(train, meta, epochs=4, test=test)
    last = result.history[-1]
    # the figures are per position, straight from the task's definition
    probs = predict_proba(model, test)
    direct = float((probs.argmax(1) == test.labels).float().mean())
    assert last["test_accuracy"] == pytest.approx(direct)
    assert evaluate(model, test, task=task) == (last["test_accuracy"], last["test_loss"])
    assert last["test_accuracy"] > 0.8  # it learnt both positions
    # the per-example record keeps each position's prediction: (N, 2)
    assert result.per_example.pred.shape == (len(train), P)
    agreement = (result.per_example.pred == train.labels.numpy()).mean(axis=1)
    assert last["train_accuracy"] == pytest.approx(float(agreement.mean()))
    # the checkpoint is chosen on the meta set's per-position accuracy
    best = max(result.history, key=lambda r: (r["meta_accuracy"], -r["meta_eval_loss"]))
    assert result.best_epoch == best["epoch"]
    # a step by hand takes the same typed batch
    out = create_method("ce").step(model, opt, Batch(train.inputs[:8], train.labels[:8]), StepContext(num_classes=K))
    assert out.predictions.shape == (8, P)


def test_meta_methods_refuse_a_task_their_engines_cannot_weigh():
    model = PerPositionNet()
    with pytest.raises(ValueError, match="task 'two-positions'"):
        Trainer(
            model,
            create_method("l2b"),
            torch.optim.SGD(model.parameters(), lr=0.1),
            None,
            num_classes=K,
            batch_size=8,
            meta_batch_size=8,
            generator=torch.Generator(),
            progress=False,
            task=TwoPositions(),
        )


def test_classification_checks_its_label_shape_and_range():
    task = get_task("classification")
    assert isinstance(task, Classification) and "classification" in TASKS.names()
    with pytest.raises(ValueError, match=r"shape \(N,\), got shape \(4, 2\)"):
        task.check_labels(torch.zeros(4, 2, dtype=torch.long), 3, what="train labels")
    with pytest.raises(ValueError, match=r"train labels must be class indices in \[0, 3\), got 3"):
        task.check_labels(np.array([0, 1, 3]), 3, what="train labels")
    with pytest.raises(ValueError, match="integer class indices"):
        task.check_labels(np.array([0.0, 1.0]), 3, what="train labels")
    np.testing.assert_array_equal(task.agreement(np.array([1, 2]), np.array([1, 0])), [1.0, 0.0])


def test_what_a_label_issue_is_comes_from_the_task():
    from l2b.reports import label_issues

    given = np.array([[0, 1], [2, 2], [1, 0]])
    probs = np.full((3, K, P), 0.05)
    for i, j, k in [(0, 0, 0), (0, 1, 1), (1, 0, 2), (1, 1, 0), (2, 0, 0), (2, 1, 2)]:
        probs[i, k, j] = 0.9  # example 0 agrees everywhere, 1 at one position, 2 at none
    table = label_issues({"index": np.arange(3), "given_label": given, "pred_prob": probs}, task=TwoPositions())
    assert list(table["index"]) == [2, 1, 0]  # most suspicious first: mean probability of the given labels
    np.testing.assert_allclose(table["label_quality"], [0.05, (0.9 + 0.05) / 2, 0.9])
    assert list(table["is_label_issue"]) == [True, True, False]
    np.testing.assert_array_equal(table["predicted_label"][0], [0, 2])


def test_accuracy_is_the_exact_fraction_of_right_predictions():
    """4 right of 5 reads 0.8, not float32's 0.800000011920929; no labels: NaN, not an error."""
    probs = torch.eye(3)[[0, 1, 2, 0, 1]].float()
    scores = get_task("classification").scores(probs, torch.tensor([0, 1, 2, 0, 2]))
    assert scores["accuracy"] == 0.8 and isinstance(scores["accuracy"], float)
    assert np.isnan(get_task("classification").scores(probs[:0], torch.zeros(0, dtype=torch.long))["accuracy"])
