"""Tests for l2b.models: registry behaviour, output shapes, parameter counts, forward-mode AD."""

from __future__ import annotations

import pytest
import torch
import torch.autograd.forward_ad as fwAD
from torch import nn
from torch.func import functional_call

from l2b.models import create_model, list_models, register_model

# torch itself triggers this when forward AD first loads its JVP decompositions; not our code.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

# Small inputs per model so the whole file stays fast on a CPU: (in_shape, batch size).
SMALL_INPUTS: dict[str, tuple[tuple[int, ...], int]] = {
    "mlp": ((64,), 4),
    "small_cnn": ((3, 16, 16), 2),
    "fast_cnn": ((3, 16, 16), 2),
    "preact_resnet18": ((3, 32, 32), 2),
    "resnet18": ((3, 64, 64), 2),
    "resnet50": ((3, 64, 64), 2),
    "wrn28_10": ((3, 8, 8), 2),
}
# The segmentation models: per-pixel logits (B, K, H, W); their meta-gradient is tested in
# tests/test_segmentation_weights.py.
SEGMENTATION_INPUTS: dict[str, tuple[tuple[int, ...], int]] = {"unet": ((1, 16, 16), 2), "unetpp": ((3, 16, 16), 2)}
# Forward AD through the largest models is slow and adds nothing over resnet18.
JVP_MODELS = [name for name in SMALL_INPUTS if name not in ("resnet50", "wrn28_10")]


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_registered_model_has_a_test_input() -> None:
    assert set(list_models()) == set(SMALL_INPUTS) | set(SEGMENTATION_INPUTS)
    assert list_models() == sorted(list_models())


@pytest.mark.parametrize("name", sorted(SMALL_INPUTS))
def test_logits_shape(name: str) -> None:
    torch.manual_seed(0)
    in_shape, batch = SMALL_INPUTS[name]
    model = create_model(name, num_classes=7, in_shape=in_shape)
    x = torch.randn(batch, *in_shape)
    out = model(x)
    assert out.shape == (batch, 7)
    assert torch.isfinite(out).all()
    model.eval()
    with torch.no_grad():
        assert model(x[:1]).shape == (1, 7)


@pytest.mark.parametrize("name", sorted(SEGMENTATION_INPUTS))
def test_segmentation_models_return_per_pixel_logits(name: str) -> None:
    torch.manual_seed(0)
    in_shape, batch = SEGMENTATION_INPUTS[name]
    model = create_model(name, num_classes=3, in_shape=in_shape, width=4, depth=2)
    out = model(torch.randn(batch, *in_shape))
    assert out.shape == (batch, 3, *in_shape[1:]) and torch.isfinite(out).all()
    blocks = model.meta_blocks()  # every parameter in the blocks the tail engine walks, once each
    assert sum(_n_params(b) for b in blocks) == _n_params(model)
    with pytest.raises(ValueError, match=rf"model '{name}' with depth 3 .* multiples of 8, got 20x16"):
        create_model(name, num_classes=2, in_shape=(1, 20, 16), width=4, depth=3)


@pytest.mark.parametrize(
    ("name", "in_shape"),
    [
        ("small_cnn", (1, 8, 8)),
        ("small_cnn", (5, 28, 28)),
        ("preact_resnet18", (1, 8, 8)),
        ("preact_resnet18", (4, 12, 20)),
        ("resnet18", (1, 32, 32)),
        ("mlp", (2, 3, 5)),
        ("fast_cnn", (1, 8, 8)),
        ("fast_cnn", (1, 28, 28)),
    ],
)
def test_other_channel_counts_and_sizes(name: str, in_shape: tuple[int, ...]) -> None:
    model = create_model(name, num_classes=3, in_shape=in_shape)
    assert model(torch.randn(2, *in_shape)).shape == (2, 3)


@pytest.mark.parametrize(
    ("name", "num_classes", "expected"),
    [
        ("preact_resnet18", 10, 11.2e6),
        ("resnet18", 1000, 11.7e6),
        ("resnet50", 1000, 25.6e6),
        ("wrn28_10", 10, 36.5e6),
        ("fast_cnn", 10, 0.30e6),
    ],
)
def test_parameter_counts(name: str, num_classes: int, expected: float) -> None:
    model = create_model(name, num_classes=num_classes, in_shape=(3, 224, 224))
    assert abs(_n_params(model) - expected) / expected < 0.02


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(ValueError, match="no_such_net") as err:
        create_model("no_such_net", num_classes=10, in_shape=(3, 32, 32))
    for name in list_models():
        assert name in str(err.value)


def test_unknown_kwarg_names_the_model() -> None:
    with pytest.raises(TypeError, match="small_cnn") as err:
        create_model("small_cnn", num_classes=10, in_shape=(3, 32, 32), depth=3)
    assert "depth" in str(err.value)
    with pytest.raises(TypeError, match="preact_resnet18"):
        create_model("preact_resnet18", num_classes=10, in_shape=(3, 32, 32), width=3)


def test_invalid_shapes_and_classes() -> None:
    with pytest.raises(ValueError, match="small_cnn"):
        create_model("small_cnn", num_classes=10, in_shape=(64,))
    with pytest.raises(ValueError, match=r"fast_cnn.*at least 8x8.*got 4x16"):
        create_model("fast_cnn", num_classes=10, in_shape=(3, 4, 16))
    with pytest.raises(ValueError, match="num_classes"):
        create_model("mlp", num_classes=0, in_shape=(64,))
    with pytest.raises(ValueError, match="in_shape"):
        create_model("mlp", num_classes=2, in_shape=())
    with pytest.raises(ValueError, match="dropout"):
        create_model("mlp", num_classes=2, in_shape=(4,), dropout=1.0)


def test_duplicate_registration_rejected() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @register_model("mlp")
        def _clash(*, num_classes: int, in_shape: tuple[int, ...]) -> nn.Module:
            raise AssertionError("never built")


def test_mlp_structure() -> None:
    default = create_model("mlp", num_classes=5, in_shape=(64,))
    kinds = [type(m) for m in default.modules()]
    assert kinds.count(nn.Linear) == 2 and kinds.count(nn.BatchNorm1d) == 1
    assert nn.Dropout not in kinds

    plain = create_model("mlp", num_classes=5, in_shape=(64,), batchnorm=False, hidden=(32, 16))
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in plain.modules())
    assert sum(isinstance(m, nn.Linear) for m in plain.modules()) == 3

    dropped = create_model("mlp", num_classes=5, in_shape=(64,), dropout=0.5)
    assert any(isinstance(m, nn.Dropout) for m in dropped.modules())

    linear = create_model("mlp", num_classes=5, in_shape=(64,), hidden=())
    assert linear(torch.randn(3, 64)).shape == (3, 5)


def test_initialisation() -> None:
    model = create_model("preact_resnet18", num_classes=10, in_shape=(3, 32, 32))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight))
            assert torch.equal(m.bias, torch.zeros_like(m.bias))
    # Kaiming fan_out (ReLU): std = sqrt(2 / (out_channels * k * k)).
    conv = model.stages[3][1].conv2
    expected = (2.0 / (conv.out_channels * 9)) ** 0.5
    assert abs(conv.weight.std().item() / expected - 1) < 0.05


def _jvp(model: nn.Module, x: torch.Tensor, tangents: dict[str, torch.Tensor]):
    params = {n: p.detach() for n, p in model.named_parameters()}
    bufs = {n: b.clone() for n, b in model.named_buffers()}
    with fwAD.dual_level():
        duals = {n: fwAD.make_dual(p, tangents[n]) for n, p in params.items()}
        out = functional_call(model, {**duals, **bufs}, (x,))
        primal, tangent = fwAD.unpack_dual(out)
    return primal, tangent


@pytest.mark.parametrize("name", JVP_MODELS)
def test_forward_mode_jvp_through_functional_call(name: str) -> None:
    torch.manual_seed(0)
    in_shape, batch = SMALL_INPUTS[name]
    if name == "preact_resnet18":
        in_shape = (3, 16, 16)
    model = create_model(name, num_classes=4, in_shape=in_shape).train()
    before = {n: b.clone() for n, b in model.named_buffers()}
    x = torch.randn(batch, *in_shape)
    tangents = {n: torch.randn_like(p) for n, p in model.named_parameters()}
    primal, tangent = _jvp(model, x, tangents)
    assert tangent is not None and tangent.shape == primal.shape == (batch, 4)
    assert torch.isfinite(tangent).all()
    # The module's own BatchNorm statistics are untouched (only the clones were updated).
    for n, b in model.named_buffers():
        assert torch.equal(b, before[n])


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("mlp", {}), ("mlp", {"batchnorm": False}), ("small_cnn", {"width": 4}), ("fast_cnn", {"width": 4})],
)
def test_jvp_matches_reverse_mode(name: str, kwargs: dict) -> None:
    # <u, J v> from forward mode must equal <J^T u, v> from reverse mode.
    torch.manual_seed(0)
    in_shape, batch = SMALL_INPUTS[name]
    model = create_model(name, num_classes=3, in_shape=in_shape, **kwargs).double().train()
    x = torch.randn(batch, *in_shape, dtype=torch.float64)
    v = {n: torch.randn_like(p) for n, p in model.named_parameters()}
    _, jv = _jvp(model, x, v)

    u = torch.randn(batch, 3, dtype=torch.float64)
    bufs = {n: b.clone() for n, b in model.named_buffers()}
    params = dict(model.named_parameters())
    out = functional_call(model, {**params, **bufs}, (x,))
    grads = torch.autograd.grad((out * u).sum(), list(params.values()))
    reverse = sum((g * v[n]).sum() for n, g in zip(params, grads))
    torch.testing.assert_close((u * jv).sum(), reverse)
