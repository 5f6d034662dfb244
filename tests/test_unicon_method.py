"""`--method unicon` end to end on a tiny image folder: the division, MixMatch on the strong
views, and a run interrupted mid-epoch and resumed equal to an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch
from PIL import Image

from l2b.methods import unicon as unicon_module
from l2b.training import TrainConfig, run_experiment

TIMING = {"train_seconds", "images_per_second", "test_seconds", "seconds", "resumed"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("unicon") / "images"
    rng = np.random.default_rng(0)
    for c, colour in enumerate([(220, 40, 40), (40, 220, 40), (40, 40, 220)]):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(16):
            a = np.clip(np.array(colour)[None, None] + rng.normal(0, 50, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(root / f"c{c}" / f"{i}.png")
    return root


def _config(folder, **over):
    values = dict(
        data="imagefolder",
        data_root=str(folder),
        image_size=16,
        noise="symmetric",
        noise_rate=0.3,
        num_meta=6,
        model="small_cnn",
        width=8,
        method="unicon",
        augment=True,
        epochs=3,
        warmup_epochs=1,
        batch_size=8,
        meta_batch_size=6,
        device="cpu",
    )
    return TrainConfig(**{**values, **over})


def test_unicon_trains_on_strong_views_with_its_division(folder, tmp_path, monkeypatch):
    seen = []
    real = unicon_module.mixmatch_step

    def spy(model, i, optimizer, batch, **kwargs):
        seen.append((batch.inputs.shape[0], batch.num_labelled, kwargs["extra_loss"] is not None))
        return real(model, i, optimizer, batch, **kwargs)

    monkeypatch.setattr(unicon_module, "mixmatch_step", spy)
    summary = run_experiment(_config(folder), out_dir=tmp_path / "run", progress=False, log=None)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in records] == ["warmup", "unicon", "unicon"]
    assert 0 < records[1]["labelled_share"] < 1 and "divergence_threshold" in records[1]
    # every MixMatch batch holds both strong views of every example of the step (2 B rows)
    assert seen and all(n % 2 == 0 and labelled % 2 == 0 and labelled <= n for n, labelled, _ in seen)
    assert any(extra for *_, extra in seen)  # the contrastive term joined the steps with unlabelled rows
    assert np.isfinite(summary["test_accuracy"])


@pytest.mark.parametrize("method", ["unicon", "unicon-l2b"])
def test_unicon_interrupted_mid_epoch_resumes_to_the_same_run(method, folder, tmp_path, monkeypatch):
    whole = run_experiment(_config(folder, method=method), out_dir=tmp_path / "whole", progress=False, log=None)
    calls = {"n": 0}
    real = unicon_module.UNICON.step

    def interrupt_once(self, model, optimizer, batch, ctx):
        calls["n"] += 1
        if calls["n"] == 3:  # Ctrl-C during the third UNICON step (epoch 2)
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, model, optimizer, batch, ctx)

    monkeypatch.setattr(unicon_module.UNICON, "step", interrupt_once)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(_config(folder, method=method), out_dir=tmp_path / "cut", progress=False, log=None)
    monkeypatch.setattr(unicon_module.UNICON, "step", real)
    resumed = run_experiment(
        _config(folder, method=method), out_dir=tmp_path / "cut", progress=False, log=None, resume=True
    )

    def metrics(run):
        return [
            {k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        ]

    assert metrics("cut") == metrics("whole")
    if method == "unicon-l2b":  # the L2B step ran after the warm-up, on the clean meta batches
        assert [np.isfinite(r.get("meta_loss", np.nan)) for r in metrics("whole")] == [False, True, True]
    assert resumed["test_accuracy"] == whole["test_accuracy"]
    a = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "model.pt", weights_only=True)
    a, b = a.get("state_dict", a), b.get("state_dict", b)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_strong_views_refuse_tiny_images():
    with pytest.raises(ValueError, match="made for 32 x 32 photos; on images of 8 x 8"):
        run_experiment(TrainConfig(method="unicon", epochs=2, warmup_epochs=1, device="cpu"), log=None)
