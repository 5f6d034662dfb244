"""Reliability fixes from the fault review (issue 17): inputs that used to be ignored or to end in a
traceback now get one clear line naming the file, key or flag, and exit code 2."""

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
    "name, match",
    [
        ("banana", "device 'banana' is not a device name; use 'auto', 'cpu', 'cuda'"),
        ("mps", "device 'mps' was asked for but MPS is not available"),
        ("xpu", "device 'xpu' is not supported by l2b"),
    ],
)
def test_an_unknown_or_missing_device_is_one_clear_line(name, match, capsys):
    if name == "mps":
        import torch

        if torch.backends.mps.is_available():
            pytest.skip("this machine has MPS")
    with pytest.raises(ValueError, match=match):
        resolve_device(name)
    assert main(["train", "--device", name, "--epochs", "1", "--warmup-epochs", "0", "--quiet", "--print-config"]) in (
        0,
        2,
    )  # --print-config resolves nothing; a real run refuses:
    assert main(["train", "--device", name, "--epochs", "1", "--warmup-epochs", "0", "--quiet"]) == 2
    assert match.split(";")[0] in capsys.readouterr().err
