"""`l2b pretrain`: SimCLR on a folder of images, resumed exactly after an interrupt, and its
weights taken by `l2b train --init-weights`."""

from __future__ import annotations

import json
import os
import signal
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from l2b import rundir
from l2b.cli.main import main
from l2b.pretrain import PretrainConfig
from l2b.pretrain import loop as pretrain_loop
from l2b.pretrain.loop import ENCODER, pretrain
from l2b.training import prepare


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain") / "images"
    rng = np.random.default_rng(0)
    for c, colour in enumerate([(200, 40, 40), (40, 40, 200)]):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(10):
            a = np.clip(np.array(colour)[None, None] + rng.normal(0, 40, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(root / f"class{c}" / f"{i}.png")
    return root


def _config(folder, **over):
    values = {
        "data": "imagefolder",
        "data_root": str(folder),
        "image_size": 16,
        "model": "small_cnn",
        "width": 8,
        "epochs": 2,
        "batch_size": 8,
        "device": "cpu",
        **over,
    }
    return PretrainConfig.from_flat(values)


def test_pretraining_resumes_exactly_after_an_interrupt(folder, tmp_path, monkeypatch):
    whole = pretrain(_config(folder), tmp_path / "whole")
    # a folder of unchecked labels is pre-trained on whole, as l2b train takes it
    assert whole["epochs"] == 2 and whole["images"] == 20 and np.isfinite(whole["final_loss"])
    lines = (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]

    calls = {"n": 0}
    real = pretrain_loop.nt_xent

    def stop_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # Ctrl-C during the first step of epoch 2 (three steps per epoch)
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(pretrain_loop, "nt_xent", stop_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        pretrain(_config(folder), tmp_path / "cut")
    monkeypatch.setattr(pretrain_loop, "nt_xent", real)
    resumed = pretrain(_config(folder), tmp_path / "cut", resume=True)
    a, b = load_file(tmp_path / "whole" / ENCODER), load_file(tmp_path / "cut" / ENCODER)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["final_loss"] == whole["final_loss"]
    assert (tmp_path / "cut" / "metrics.jsonl").read_text().count("\n") == 2
    with pytest.raises(ValueError, match="another config"):
        pretrain(_config(folder, epochs=3), tmp_path / "cut", resume=True)


def test_train_starts_from_the_pretrained_weights(folder, tmp_path, capsys):
    pretrain(_config(folder, epochs=1), tmp_path / "pre")
    code = main(
        [
            "train", "--data", "imagefolder", "--data-root", str(folder), "--image-size", "16", "--model", "small_cnn",
            "--width", "8", "--method", "ce", "--epochs", "1", "--warmup-epochs", "0", "--batch-size", "8",
            "--init-weights", str(tmp_path / "pre" / ENCODER), "--quiet", "--threads", "1",
            "--out", str(tmp_path / "run"),
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    # another width than pre-trained: the error says which model and options the file was made for
    code = main(
        [
            "train", "--data", "imagefolder", "--data-root", str(folder), "--image-size", "16", "--model", "small_cnn",
            "--width", "16", "--method", "ce", "--epochs", "1", "--init-weights", str(tmp_path / "pre" / ENCODER),
            "--quiet", "--out", str(tmp_path / "other"),
        ]
    )  # fmt: skip
    assert code == 2
    assert (
        "l2b pretrain wrote it for --model small_cnn --width 8 on its own images: train with the same"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "other").exists()
    # a finished run (pretrain's or train's) or a user's own config.yaml is never written over
    config_before = (tmp_path / "run" / "config.yaml").read_text()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.yaml").write_text("lr: 0.1\n")
    refusals = {
        "pre": r"already holds a finished run \(.*encoder\.safetensors",
        "run": r"already holds a finished run \(.*summary",
        "mine": r"l2b did not write \(config\.yaml\)",
    }
    for out, said in refusals.items():
        with pytest.raises(FileExistsError, match=said):
            pretrain(_config(folder, epochs=1), tmp_path / out)
    assert (tmp_path / "run" / "config.yaml").read_text() == config_before
    assert (tmp_path / "mine" / "config.yaml").read_text() == "lr: 0.1\n"
    with pytest.raises(FileExistsError, match=r"mine/config\.yaml is a file, not a folder"):
        pretrain(_config(folder, epochs=1), tmp_path / "mine" / "config.yaml")
    (tmp_path / "busy").mkdir()
    with rundir.lock_run_dir(tmp_path / "busy"), pytest.raises(rundir.RunDirectoryLocked):
        pretrain(_config(folder, epochs=1), tmp_path / "busy")  # another live process owns it
    assert not (tmp_path / "busy" / "config.yaml").exists()


def test_pretrain_refuses_what_it_cannot_use(tmp_path, capsys, monkeypatch):
    assert main(["pretrain", "--out", str(tmp_path / "x")]) == 2
    assert "needs --data" in capsys.readouterr().err
    features = SimpleNamespace(inputs=np.zeros((10, 64), np.float32), mean=(0.5,), std=(0.2,), num_classes=2)
    monkeypatch.setattr(prepare, "load_dataset", lambda name, **options: (features, None))
    assert main(["pretrain", "--data", "digits", "--out", str(tmp_path / "y"), "--quiet"]) == 2
    assert "inputs of shape (64,)" in capsys.readouterr().err
    assert main(["pretrain", "--data", "digits", "--model", "mlp", "--width", "8", "--out", str(tmp_path / "z")]) == 2
    assert "width do(es) not apply" in capsys.readouterr().err
    assert main(["pretrain", "--data", "digits", "--model", "mlp", "--threads", "0", "--out", str(tmp_path / "t")]) == 2
    assert "threads=0 must be a positive integer" in capsys.readouterr().err
    with pytest.raises(ValueError, match="temperature=-1.0 must be positive"):
        PretrainConfig(data="digits", values={"temperature": -1.0})


def test_the_cost_benchmark_runs(folder, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "pretrain_cost.py"), "--folder", str(folder), "--image-size", "16",
         "--epochs", "2", "--batch-size", "8", "--threads", "1", "--out", str(tmp_path / "cost")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    data = json.loads((tmp_path / "cost.json").read_text())
    assert len(data["pretrain_seconds_per_epoch"]) == 2 and data["pretrain_over_ce"] > 0


def test_c2d_is_dividemix_from_the_pretrained_weights_in_both_networks(folder, tmp_path, capsys):
    from l2b.training import TrainConfig
    from l2b.training.setup import build_model

    pretrain(_config(folder, epochs=1), tmp_path / "pre")
    encoder = tmp_path / "pre" / ENCODER
    config = TrainConfig(
        data="imagefolder", data_root=str(folder), image_size=16, model="small_cnn", width=8, method="dividemix",
        augment=True, init_weights=str(encoder), epochs=2, warmup_epochs=1, batch_size=8,
    )  # fmt: skip
    pair = build_model(config, num_classes=2, in_shape=(3, 16, 16))
    weights = load_file(encoder)
    body = [k for k in weights if not k.startswith("fc.") and not k.startswith("classifier")]
    for net in pair.nets:  # both networks start from the self-supervised weights, as C2D's do
        own = net.state_dict()
        checked = [k for k in body if k in own]
        assert len(checked) > 4 and all(torch.equal(own[k], weights[k]) for k in checked)
    code = main(
        [
            "train", "--data", "imagefolder", "--data-root", str(folder), "--image-size", "16", "--model", "small_cnn",
            "--width", "8", "--method", "dividemix", "--augment", "--init-weights", str(encoder), "--epochs", "2",
            "--warmup-epochs", "1", "--batch-size", "8", "--quiet", "--threads", "1", "--out", str(tmp_path / "c2d"),
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err


def test_resume_needs_only_the_run_directory_and_refuses_a_changed_option(folder, tmp_path, capsys):
    out = str(tmp_path / "pre")
    flags = ["--data", "imagefolder", "--data-root", str(folder), "--image-size", "16", "--width", "8"]
    assert main(["pretrain", *flags, "--epochs", "1", "--batch-size", "8", "--quiet", "--out", out]) == 0
    capsys.readouterr()
    assert main(["pretrain", "--resume", "--quiet", "--out", out]) == 0  # the run's own config, read back
    assert json.loads(capsys.readouterr().out)["epochs"] == 1
    assert main(["pretrain", "--resume", "--quiet", "--epochs", "3", "--out", out]) == 2
    assert "epochs 3 (the run has 1)" in capsys.readouterr().err
    assert main(["pretrain", "--resume", "--quiet", *flags, "--out", out]) == 0  # agreeing options are fine


def test_train_subset_pretrains_on_the_images_train_subset_trains_on(folder):
    """--train-subset / --split-seed draw the class-balanced subset l2b train draws: the same
    images (its noisy training part and its meta set), in the same order."""
    from l2b import prepare_data
    from l2b.training import TrainConfig

    x, _, _ = pretrain_loop._images(_config(folder, train_subset=12, split_seed=3))
    data = prepare_data(
        TrainConfig(
            data="imagefolder", data_root=str(folder), image_size=16, train_subset=12, split_seed=3, method="ce"
        )
    )
    assert x.shape[0] == 12 and len(data.train) == 12
    assert torch.equal(x, torch.as_tensor(data.train.inputs))
    with pytest.raises(ValueError, match="train_subset=99 is larger than the training split of 'imagefolder' .20"):
        pretrain_loop._images(_config(folder, train_subset=99))


def test_c2d_l2b_interrupted_mid_epoch_resumes_to_the_same_run(folder, tmp_path, monkeypatch):
    """C2D + L2B (DivideMix + L2B from the SimCLR encoder): Ctrl-C inside an epoch of the method,
    then --resume, ends as the uninterrupted run; the resumed run does not start over from the encoder."""
    from test_resume import assert_same_run, interrupt_at_method_step

    import l2b.training.setup as setup_mod
    from l2b.training import TrainConfig, run_experiment

    pretrain(_config(folder, epochs=1), tmp_path / "pre")
    config = TrainConfig(
        data="imagefolder", data_root=str(folder), image_size=16, noise="symmetric", noise_rate=0.3, num_meta=4,
        model="small_cnn", width=8, method="dividemix-l2b", augment=True, init_weights=str(tmp_path / "pre" / ENCODER),
        epochs=3, warmup_epochs=1, batch_size=4, meta_batch_size=4, device="cpu",
    )  # fmt: skip
    real = setup_mod.create_method
    steps = {"n": 0}

    def counting(name, **opts):
        method = real(name, **opts)
        step = method.step

        def counted(*a, **kw):
            steps["n"] += 1
            return step(*a, **kw)

        method.step = counted
        return method

    monkeypatch.setattr(setup_mod, "create_method", counting)
    run_experiment(config, out_dir=tmp_path / "whole", progress=False, log=None)
    whole_steps = steps["n"]
    interrupt_at_method_step(monkeypatch, 2)  # the second DivideMix + L2B step: inside epoch 2 (of 3 steps)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, out_dir=tmp_path / "cut", progress=False, log=None)
    cursor = rundir.load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["trainer"]
    assert cursor["epoch"] == 1 and cursor["cursor"]["step"] == 2  # mid-epoch: the epoch in progress, 2 steps done
    monkeypatch.setattr(setup_mod, "create_method", counting)
    steps["n"] = 0
    run_experiment(config, out_dir=tmp_path / "cut", progress=False, log=None, resume=True)
    # continued after the cut, not started over (a fresh start would give the same run too)
    assert whole_steps == 6 and steps["n"] == whole_steps - 2
    assert_same_run(tmp_path / "whole", tmp_path / "cut")
