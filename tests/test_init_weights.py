"""--init-weights: a run starts from a state dict the user has, torchvision's ResNet layout
included (built here from the published architecture, since torchvision is not a dependency), as a
torch file or a .safetensors file."""

import os
import pickle
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from l2b.cli.main import main
from l2b.models import create_model
from l2b.training import TrainConfig, build_model
from l2b.training.init_weights import load_init_weights, save_safetensors


def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    shapes = {f"{prefix}.{k}": (c,) for k in ("weight", "bias", "running_mean", "running_var")}
    return {**shapes, f"{prefix}.num_batches_tracked": ()}


def torchvision_resnet_shapes(depth: int, classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """Key -> shape of torchvision's resnet18 / resnet50 state dict, written from the architecture."""
    blocks, bottleneck = {18: ([2, 2, 2, 2], False), 50: ([3, 4, 6, 3], True)}[depth]
    out = {"conv1.weight": (64, 3, 7, 7), **_bn("bn1", 64)}
    c_in = 64
    for stage, n in enumerate(blocks):
        planes = 64 * 2**stage
        c_out = planes * (4 if bottleneck else 1)
        for b in range(n):
            p = f"layer{stage + 1}.{b}"
            if bottleneck:
                convs = [(planes, c_in, 1, 1), (planes, planes, 3, 3), (c_out, planes, 1, 1)]
            else:
                convs = [(planes, c_in, 3, 3), (c_out, planes, 3, 3)]
            for i, shape in enumerate(convs, 1):
                out[f"{p}.conv{i}.weight"] = shape
                out.update(_bn(f"{p}.bn{i}", shape[0]))
            if b == 0 and (stage > 0 or c_in != c_out):
                out[f"{p}.downsample.0.weight"] = (c_out, c_in, 1, 1)
                out.update(_bn(f"{p}.downsample.1", c_out))
            c_in = c_out
    return {**out, "fc.weight": (classes, c_in), "fc.bias": (classes,)}


@pytest.mark.parametrize("depth, count", [(18, 122), (50, 320)])
def test_a_torchvision_resnet_state_dict_loads_with_a_fresh_classifier(depth, count, tmp_path):
    shapes = torchvision_resnet_shapes(depth)
    assert len(shapes) == count  # torchvision's resnet18 / resnet50 state dicts hold 122 / 320 entries
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randint(0, 5, s, generator=g) if s else torch.tensor(7) for k, s in shapes.items()}
    state = {k: v if k.endswith("num_batches_tracked") else v.float() + 0.5 for k, v in state.items()}
    path = tmp_path / f"resnet{depth}.pth"
    torch.save(state, path)
    model = create_model(f"resnet{depth}", num_classes=8, in_shape=(3, 64, 64))
    fresh_fc = model.fc.weight.detach().clone()
    report = load_init_weights(model, path)
    assert report.loaded == count - 2 and report.reinitialised == ("fc.bias", "fc.weight") and not report.unexpected
    own = model.state_dict()
    assert torch.equal(own["stem.0.weight"], state["conv1.weight"])
    assert torch.equal(own["stem.1.running_var"], state["bn1.running_var"])
    last = "layer4.1.bn2.weight" if depth == 18 else "layer4.2.conv3.weight"
    assert torch.equal(own[last.replace("layer4", "stages.3")], state[last])
    assert torch.equal(model.fc.weight, fresh_fc)  # 1,000 ImageNet classes against 8 here
    assert "classifier re-initialised (fc.bias, fc.weight" in report.line()


def test_the_same_number_of_classes_loads_the_classifier_too_and_ddp_prefixes_are_dropped(tmp_path):
    src = create_model("resnet18", num_classes=10, in_shape=(3, 32, 32))
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}, "epoch": 3}, tmp_path / "c.pt")
    model = create_model("resnet18", num_classes=10, in_shape=(3, 32, 32))
    report = load_init_weights(model, tmp_path / "c.pt")
    assert not report.reinitialised and all(torch.equal(a, b) for a, b in zip(model.parameters(), src.parameters()))


def test_weights_for_another_input_or_model_are_refused_with_the_key_and_shapes(tmp_path):
    torch.save({k: torch.zeros(s) for k, s in torchvision_resnet_shapes(18).items()}, tmp_path / "rgb.pth")
    grey = create_model("resnet18", num_classes=8, in_shape=(1, 64, 64))
    with pytest.raises(ValueError, match=r"rgb\.pth: stem\.0\.weight has shape \(64, 3, 7, 7\) in the file but "
                       r"\(64, 1, 7, 7\) in model ResNet"):  # fmt: skip
        load_init_weights(grey, tmp_path / "rgb.pth")
    torch.save(create_model("mlp", num_classes=10, in_shape=(64,)).state_dict(), tmp_path / "mlp.pt")
    with pytest.raises(ValueError, match=r"mlp\.pt: \d+ of model ResNet's \d+ tensors are not in the file"):
        load_init_weights(create_model("resnet18", num_classes=8, in_shape=(3, 64, 64)), tmp_path / "mlp.pt")
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))  # not weights at all
    with pytest.raises(ValueError, match=r"photo\.png: not a weights file: it starts with neither a zip archive"):
        load_init_weights(grey, tmp_path / "photo.png")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match=r"list\.pt: not a state dict .* found list"):
        load_init_weights(grey, tmp_path / "list.pt")


def test_a_crafted_file_runs_nothing_and_a_missing_one_is_named(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('ran')",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Boom()))
    model = create_model("mlp", num_classes=10, in_shape=(64,))
    with pytest.raises(ValueError, match=r"evil\.pt: refused to load this state dict of initial weights"):
        load_init_weights(model, tmp_path / "evil.pt")
    with pytest.raises(FileNotFoundError, match="init_weights .*nope.pt: no such file"):
        load_init_weights(model, tmp_path / "nope.pt")


def test_l2b_train_starts_from_a_finished_runs_model(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["train", "--epochs", "2", "--out", str(first), "--quiet"]) == 0
    cfg = TrainConfig(init_weights=str(first / "model.pt"))
    model = build_model(cfg, num_classes=10, in_shape=(64,))
    saved = torch.load(first / "model.pt", weights_only=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())
    args = ["train", "--epochs", "2", "--init-weights", str(first / "model.pt"), "--out", str(second)]
    assert main(args) == 0
    out = capsys.readouterr()
    assert f"initial weights from {first / 'model.pt'}: {len(saved)} tensors loaded" in out.out + out.err
    assert main(["train", "--epochs", "2", "--init-weights", str(tmp_path / "x.pt"), "--out", str(tmp_path / "3")]) == 2


def test_a_missing_init_weights_file_leaves_no_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "2", "--init-weights", str(tmp_path / "x.pt"), "--out", str(out)]) == 2
    assert "x.pt: no such file" in capsys.readouterr().err and not out.exists()


def test_a_model_file_that_does_not_fit_names_the_key_and_shapes(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(run), "--quiet"]) == 0
    torch.save(create_model("mlp", num_classes=10, in_shape=(64,), hidden=(32,)).state_dict(), run / "model.pt")
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert "model.pt: tensor" in err and "has shape" in err and "use the model.pt this run wrote" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


# -- safetensors ------------------------------------------------------------------------------


def _randomised(model: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """The model's state dict with every tensor redrawn (BatchNorm buffers and counts included),
    so that a load is told apart from a fresh initialisation."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in model.state_dict().items():
        count = k.endswith("num_batches_tracked")
        out[k] = torch.randint(1, 100, v.shape, generator=g) if count else torch.rand(v.shape, generator=g) + 0.5
    return out


def test_a_safetensors_file_loads_into_an_mlp_with_the_dtype_cast(tmp_path):
    model = create_model("mlp", num_classes=10, in_shape=(64,))
    state = _randomised(model)
    # Hugging Face / timm files often hold bfloat16 or float16 weights: cast to the model's dtype.
    save_file({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, tmp_path / "mlp.safetensors")
    fresh = create_model("mlp", num_classes=10, in_shape=(64,))
    report = load_init_weights(fresh, tmp_path / "mlp.safetensors")
    assert report.loaded == len(state) and not report.reinitialised and not report.unexpected
    for k, v in fresh.state_dict().items():
        assert v.dtype == model.state_dict()[k].dtype and torch.equal(v, state[k].half().to(v.dtype)), k


def test_a_torchvision_resnet18_safetensors_file_loads_with_a_fresh_classifier(tmp_path):
    g = torch.Generator().manual_seed(0)
    state = {k: torch.rand(s, generator=g) if s else torch.tensor(7) for k, s in torchvision_resnet_shapes(18).items()}
    save_file(state, tmp_path / "resnet18.safetensors")
    model = create_model("resnet18", num_classes=8, in_shape=(3, 64, 64))
    fresh_fc = model.fc.weight.detach().clone()
    report = load_init_weights(model, tmp_path / "resnet18.safetensors")
    assert report.loaded == 120 and report.reinitialised == ("fc.bias", "fc.weight") and not report.unexpected
    own = model.state_dict()
    assert torch.equal(own["stem.0.weight"], state["conv1.weight"])
    assert torch.equal(own["stages.3.1.bn2.running_var"], state["layer4.1.bn2.running_var"])
    assert int(own["stem.1.num_batches_tracked"]) == 7 and torch.equal(model.fc.weight, fresh_fc)


def test_a_safetensors_file_for_another_input_is_refused_with_the_key_and_shapes(tmp_path):
    save_file({k: torch.zeros(s) for k, s in torchvision_resnet_shapes(18).items()}, tmp_path / "rgb.safetensors")
    grey = create_model("resnet18", num_classes=8, in_shape=(1, 64, 64))
    with pytest.raises(ValueError, match=r"rgb\.safetensors: stem\.0\.weight has shape \(64, 3, 7, 7\) in the file "
                       r"but \(64, 1, 7, 7\) in model ResNet"):  # fmt: skip
        load_init_weights(grey, tmp_path / "rgb.safetensors")


def test_a_truncated_or_corrupt_safetensors_file_is_a_value_error_naming_it(tmp_path):
    model = create_model("mlp", num_classes=10, in_shape=(64,))
    data = save_safetensors(model.state_dict(), tmp_path / "good.safetensors").read_bytes()
    cases = {
        "cut.safetensors": data[: len(data) // 2],  # cut off in the tensor data
        "header.safetensors": data[:40],  # cut off in the JSON header
        "short.safetensors": data[:5],  # not even the header's length
        "junk.safetensors": b"not weights at all\n" * 8,
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=re.escape(name) + ": .*(truncated or corrupt|not a safetensors file)"):
            load_init_weights(model, tmp_path / name)
    assert len(load_init_weights(model, tmp_path / "good.safetensors").unexpected) == 0  # the original is fine


def test_a_mislabelled_file_is_refused_with_what_it_holds(tmp_path):
    model = create_model("mlp", num_classes=10, in_shape=(64,))
    save_safetensors(model.state_dict(), tmp_path / "weights.pth")
    with pytest.raises(ValueError, match=r"weights\.pth: holds safetensors data .* rename it to weights\.safetensors"):
        load_init_weights(model, tmp_path / "weights.pth")
    torch.save(model.state_dict(), tmp_path / "model.safetensors")
    with pytest.raises(
        ValueError, match=r"model\.safetensors: named \*\.safetensors but holds a zip archive .* rename it to model\.pt"
    ):
        load_init_weights(model, tmp_path / "model.safetensors")


def test_save_safetensors_round_trips_exactly_through_load_init_weights(tmp_path):
    src = create_model("resnet18", num_classes=10, in_shape=(3, 32, 32))
    src.load_state_dict(_randomised(src, seed=1))  # running statistics and num_batches_tracked included
    path = save_safetensors(src.state_dict(), tmp_path / "model.safetensors")
    assert path == tmp_path / "model.safetensors" and os.listdir(tmp_path) == ["model.safetensors"]  # no temp left
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # as torch.save's model.pt beside it
    model = create_model("resnet18", num_classes=10, in_shape=(3, 32, 32))
    report = load_init_weights(model, path)
    assert report.loaded == len(src.state_dict()) and not report.reinitialised
    for k, v in src.state_dict().items():
        got = model.state_dict()[k]
        assert got.dtype == v.dtype and got.shape == v.shape and torch.equal(got, v), k
    assert int(model.state_dict()["stem.1.num_batches_tracked"]) > 0
    cfg = TrainConfig(model="resnet18", init_weights=str(path))  # the path l2b train takes
    built = build_model(cfg, num_classes=10, in_shape=(3, 32, 32))
    assert all(torch.equal(built.state_dict()[k], v) for k, v in src.state_dict().items())


def test_save_safetensors_writes_shared_and_strided_tensors_as_copies(tmp_path):
    t = torch.arange(6.0)
    state = {"w": t, "tied": t, "view": t[2:4], "transposed": t.view(2, 3).t(), "empty": torch.zeros(0)}
    back = load_file(save_safetensors(state, tmp_path / "s.safetensors"))  # safetensors alone refuses these
    assert back.keys() == state.keys() and all(torch.equal(back[k], v) for k, v in state.items())
    save_safetensors({"w": torch.ones(2)}, tmp_path / "s.safetensors")  # replaces the file
    assert torch.equal(load_file(tmp_path / "s.safetensors")["w"], torch.ones(2))
    with pytest.raises(ValueError, match="'w' must be a string key holding a dense tensor"):
        save_safetensors({"w": torch.eye(2).to_sparse()}, tmp_path / "x.safetensors")
    assert sorted(os.listdir(tmp_path)) == ["s.safetensors"]


def test_l2b_train_refuses_a_corrupt_safetensors_file_in_one_line(tmp_path, capsys):
    (tmp_path / "bad.safetensors").write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"w": trunc')
    args = ["train", "--epochs", "1", "--init-weights", str(tmp_path / "bad.safetensors"), "--out", str(tmp_path / "r")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "bad.safetensors: this safetensors file is truncated or corrupt" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()
