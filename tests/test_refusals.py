"""Reliability fixes from the fault review (issue 17): inputs that used to be ignored or to end in a
traceback now get one clear line naming the file, key or flag, and exit code 2."""

import re

import pytest
import yaml

from l2b.cli.main import main
from l2b.configs import DuplicateKeyError, load_yaml
from l2b.training import resolve_device


def test_a_yaml_key_given_twice_is_refused_with_both_lines(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text("lr: 0.1\nepochs: 3\nlr: 0.2\n")
    assert main(["train", "--config", str(path), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: duplicate key 'lr' on line 3 (first on line 1)" in err and "Traceback" not in err
    with pytest.raises(DuplicateKeyError, match=r"grid\.yaml: duplicate key 'b' on line 2"):
        load_yaml("a: {b: 1,\n  b: 2}\n", source="grid.yaml")  # nested mappings too
    assert load_yaml("a: 1\nb: [1, 2]\n") == yaml.safe_load("a: 1\nb: [1, 2]\n")  # otherwise as safe_load


@pytest.mark.parametrize(
    "name, match, refused",
    [
        ("banana", "device 'banana' is not a device name; use 'auto', 'cpu', 'cuda'", "config device='banana' is not"),
        ("mps", "device 'mps' was asked for but MPS is not available", "device 'mps' was asked for"),
        ("xpu", "device 'xpu' is not supported by l2b", "config device='xpu' is not a device name"),
    ],
)
def test_an_unknown_or_missing_device_is_one_clear_line(name, match, refused, capsys):
    if name == "mps":
        import torch

        if torch.backends.mps.is_available():
            pytest.skip("this machine has MPS")
    with pytest.raises(ValueError, match=match):
        resolve_device(name)
    # the config refuses what is no device name (--print-config too); a real run, a device this machine lacks
    printed = main(["train", "--device", name, "--epochs", "1", "--warmup-epochs", "0", "--quiet", "--print-config"])
    assert printed == (0 if name == "mps" else 2)
    assert main(["train", "--device", name, "--epochs", "1", "--warmup-epochs", "0", "--quiet"]) == 2
    assert refused in capsys.readouterr().err


@pytest.mark.parametrize("epochs, warmup", [(40, 5), (12, 2), (5, 1), (3, 0), (1, 0)])
def test_the_default_warmup_is_an_eighth_of_the_epochs_and_is_recorded(epochs, warmup):
    from l2b.training import TrainConfig

    cfg = TrainConfig(epochs=epochs)
    assert cfg.warmup_epochs == warmup and cfg.to_dict()["warmup_epochs"] == warmup


def test_a_warmup_that_swallows_the_run_is_refused_for_every_method_but_ce(tmp_path, capsys):
    import numpy as np

    import l2b
    from l2b.training import TrainConfig

    out = tmp_path / "run"
    assert main(["train", "--epochs", "3", "--warmup-epochs", "3", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "warmup_epochs=3 leaves none of the 3 epochs for method 'l2b'" in err and "Traceback" not in err
    assert not out.exists()
    assert TrainConfig(method="ce", epochs=3, warmup_epochs=3).warmup_epochs == 3  # CE is CE either way
    x, y = np.random.default_rng(0).normal(size=(40, 4)).astype("float32"), np.arange(40) % 2
    with pytest.raises(ValueError, match="leaves none of the 2 epochs for method 'l2rw'"):
        l2b.fit(l2b.models.create_model("mlp", num_classes=2, in_shape=(4,)), (x, y), meta=(x, y),
                method="l2rw", epochs=2, warmup_epochs=2)  # fmt: skip


@pytest.mark.parametrize("noise", ["cifar10-asymmetric", "cifar100-hierarchical"])
def test_a_noise_model_made_for_another_data_set_is_refused(noise, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--noise", noise, "--epochs", "2", "--out", str(out), "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err
    made_for = noise.split("-")[0]
    assert f"noise={noise!r} flips {made_for}'s classes by name, but data 'digits' has other classes" in err
    assert "choose noise 'pair'" in err and not out.exists()


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("lr", float("inf"), "lr=inf must be positive and finite"),
        ("weight_decay", float("nan"), "weight_decay=nan must be non-negative and finite"),
        ("clip_grad", float("inf"), "clip_grad=inf must be positive and finite"),
        ("seed", -1, r"seed=-1 must be in \[0, 2\*\*32 - 3\)"),
        ("seed", 2**40, "seed=1099511627776 must be in"),
    ],
)
def test_infinite_rates_and_out_of_range_seeds_are_refused_by_key(key, value, match):
    from l2b.training import TrainConfig

    with pytest.raises(ValueError, match=match):
        TrainConfig.from_dict({key: value})


def test_a_stray_huge_label_in_a_list_is_refused_not_millions_of_classes(tmp_path):
    from PIL import Image

    from l2b.data.lists import load_csv

    for i in range(4):
        Image.new("RGB", (4, 4), (i * 40, 0, 0)).save(tmp_path / f"{i}.png")
    (tmp_path / "train.csv").write_text("path,label\n0.png,0\n1.png,1\n2.png,0\n3.png,99999999\n")
    with pytest.raises(ValueError, match=r"train\.csv line 5: label 99999999 would make 100000000 classes"):
        load_csv(root=tmp_path, train_list=tmp_path / "train.csv")


@pytest.mark.parametrize(
    "build, suggestion",
    [
        (lambda: __import__("l2b").methods.create_method("l2bb"), "did you mean 'l2b'?"),
        (lambda: __import__("l2b").training.TrainConfig(model="resnet81"), "did you mean 'resnet18'?"),
        (lambda: __import__("l2b").training.TrainConfig(noise="symetric"), "did you mean 'symmetric'?"),
        (lambda: __import__("l2b").training.TrainConfig(engine="fowrard"), "did you mean 'forward'?"),
        (lambda: __import__("l2b").data.load_dataset("cifar-10"), "did you mean 'cifar10'?"),
    ],
    ids=["method", "model", "noise", "engine", "data"],
)
def test_a_mistyped_name_gets_the_closest_choice(build, suggestion):
    with pytest.raises(ValueError, match=re.escape(suggestion)):
        build()


def test_a_mixup_alpha_without_mixup_is_refused_not_ignored():
    from l2b.training import TrainConfig

    with pytest.raises(ValueError, match=r"mixup_alpha=4.0 is mixup's Beta parameter, and mixup is off"):
        TrainConfig(mixup_alpha=4.0)
    assert TrainConfig(mixup=True, mixup_alpha=4.0).mixup_alpha == 4.0
    TrainConfig.from_dict(TrainConfig().to_dict(), recorded=True)  # a recorded config holds the default
