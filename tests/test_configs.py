"""Shipped configs, config files with command-line overrides, TensorBoard logging."""

import json
import subprocess
import sys

import pytest
import yaml

from l2b.configs import config_path, list_configs
from l2b.training import TrainConfig


def l2b(*args, cwd):
    return subprocess.run([sys.executable, "-m", "l2b", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("name", list_configs())
def test_every_shipped_config_is_valid(name):
    doc = yaml.safe_load(config_path(name).read_text())
    cfg = TrainConfig.from_dict(doc, source=name)  # unknown keys, wrong types and ranges raise
    assert cfg.to_dict() == TrainConfig.from_dict(cfg.to_dict()).to_dict()


def test_shipped_configs_cover_the_paper_and_cpu_settings():
    names = set(list_configs())
    assert {
        "digits-l2b",
        "digits-ce",
        "cifar10-sym40-paper",
        "cifar100-sym40-paper",
        "isic2019-resnet50",
        "clothing1m-resnet50",
    } <= names
    paper = TrainConfig.from_dict(yaml.safe_load(config_path("cifar10-sym40-paper").read_text()))
    assert (
        paper.model,
        paper.batch_size,
        paper.lr,
        paper.epochs,
        paper.clip_grad,
        paper.warmup_epochs,
        paper.num_meta,
        paper.augment,
    ) == ("preact_resnet18", 512, 0.15, 300, 0.25, 10, 1000, True)
    c100 = TrainConfig.from_dict(yaml.safe_load(config_path("cifar100-sym40-paper").read_text()))
    assert (c100.batch_size, c100.clip_grad, c100.augment) == (256, 0.8, True)
    assert TrainConfig.from_dict(yaml.safe_load(config_path("digits-l2b").read_text())) == TrainConfig()


def test_file_then_command_line_then_frozen_config(tmp_path):
    (tmp_path / "c.yaml").write_text("method: l2rw\nepochs: 7\nwarmup_epochs: 2\nhidden: [32, 16]\n")
    r = l2b("train", "--config", "c.yaml", "--epochs", "9", "--print-config", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load(r.stdout)
    assert (cfg["method"], cfg["epochs"], cfg["warmup_epochs"], cfg["model_options"]["hidden"]) == (
        "l2rw",
        9,
        2,
        [32, 16],
    )
    assert cfg["lr"] == TrainConfig().lr  # untouched keys keep their defaults
    # A run directory's config.yaml is itself a valid --config.
    r = l2b("train", "--epochs", "2", "--warmup-epochs", "1", "--threads", "1", "--quiet", "--out", "run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = l2b("train", "--config", "run/config.yaml", "--print-config", cwd=tmp_path)
    assert yaml.safe_load(r.stdout)["epochs"] == 2


@pytest.mark.parametrize(
    "text,message",
    [
        ("epoch: 3\n", "unknown key(s) 'epoch'"),
        ("epochs: three\n", "epochs='three' should be of type int"),
        ("noise_rate: 1.2\n", "noise_rate=1.2 must be in [0, 1]"),
        ("mixup: 1\n", "mixup=1 should be of type bool"),
        ("- a\n- b\n", "must hold a mapping of config keys"),
        ("epochs: [\n", "is not valid YAML"),
    ],
)
def test_bad_config_files_name_the_file_key_and_value(tmp_path, text, message):
    (tmp_path / "bad.yaml").write_text(text)
    r = l2b("train", "--config", "bad.yaml", "--print-config", cwd=tmp_path)
    assert r.returncode == 2 and "bad.yaml" in r.stderr and message in r.stderr and "Traceback" not in r.stderr
    r = l2b("train", "--config", "no-such-config", cwd=tmp_path)
    assert r.returncode == 2 and "neither a file nor a shipped config" in r.stderr


def test_bad_data_fails_before_creating_the_run_directory(tmp_path):
    r = l2b("train", "--data", "svhn", "--out", "run", cwd=tmp_path)
    assert r.returncode == 2 and "unknown data set 'svhn'" in r.stderr
    assert not (tmp_path / "run").exists()
    r = l2b(
        "train",
        "--config",
        "cifar10-sym40-paper",
        "--data-root",
        str(tmp_path / "nowhere"),
        "--out",
        "run",
        cwd=tmp_path,
    )
    assert r.returncode == 2 and "nowhere" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()


def test_tensorboard_scalars_are_written(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    r = l2b(
        "train",
        "--epochs",
        "3",
        "--warmup-epochs",
        "1",
        "--tensorboard",
        "--threads",
        "1",
        "--quiet",
        "--out",
        "run",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    acc.Reload()
    assert {"test_accuracy", "meta_accuracy", "train_loss", "alpha_noisy"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("test_accuracy")] == [1, 2, 3]
    final = json.loads((tmp_path / "run" / "summary.json").read_text())["test_accuracy"]
    assert acc.Scalars("test_accuracy")[-1].value == pytest.approx(final, abs=1e-6)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()  # a finished run keeps model.pt only


def test_the_promise12_paper_config_holds_the_published_values():
    cfg = TrainConfig.from_dict(yaml.safe_load(config_path("promise12-unetpp-paper").read_text()))
    assert cfg.task == "segmentation" and (cfg.noise, cfg.noise_rate) == ("paper", 1.0)
    assert (cfg.image_size, cfg.test_cases, cfg.meta_cases) == (144, 10, 3)
    assert (cfg.model, cfg.width, cfg.pseudo_views, cfg.meta_step, cfg.clip_grad) == ("unetpp", 64, 5, True, 0.2)
    assert (cfg.lr, cfg.momentum, cfg.weight_decay, cfg.epochs, cfg.meta_batch_size) == (0.005, 0.9, 5e-4, 100, 2)
