"""Options are declared once, on their registry entry, and everything else is derived.

A throwaway method with one declared option, written as a module the way a contributor would add
one, gets its command-line flag (with help text and checks), its config key (nested and flat), its
range check and its row in the docs' table, without any other edit.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import l2b
from l2b.cli import declared
from l2b.cli.main import build_parser
from l2b.cli.main import main as cli_main
from l2b.methods import METHODS, create_method
from l2b.models import MODELS
from l2b.options import Option, options_table
from l2b.registry import Registry, names_of
from l2b.training import TrainConfig
from l2b.training.config import flat_options, option_keys

PACKAGE = Path(l2b.__file__).resolve().parent

THROWAWAY = '''
"""A throwaway method for the test: cross-entropy on logits divided by a sharpness."""

import torch.nn.functional as F

from l2b.methods import Method, StepOutput, register_method
from l2b.options import Option


@register_method("toy-sharp")
class ToySharp(Method):
    """Cross-entropy on logits divided by `sharpness`."""

    options = (Option("sharpness", "float", 2.0, "toy-sharp: divide the logits by this", above=0, key="toy_sharpness"),)

    def __init__(self, *, sharpness: float = 2.0, **common):
        super().__init__(**common)
        self.sharpness = sharpness

    def loss(self, model, optimizer, inputs, targets, meta_inputs, meta_labels, *, dist=None):
        logits = model(inputs) / self.sharpness
        return F.cross_entropy(logits, targets), StepOutput(loss=0.0)
'''


@pytest.fixture
def toy_method(tmp_path, monkeypatch):
    """The throwaway method as a new module beside the real ones (a copy of the package's
    sources, which is what the command line reads), imported so that it registers itself."""
    package = tmp_path / "l2b"
    shutil.copytree(PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    module = package / "methods" / "toy_sharp.py"
    module.write_text(THROWAWAY)
    monkeypatch.setattr(declared, "_PACKAGE", package)
    spec = importlib.util.spec_from_file_location("l2b_test_toy_sharp", module)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    yield loaded
    METHODS.unregister("toy-sharp")
    sys.modules.pop("l2b_test_toy_sharp", None)


def _train_parser():
    return build_parser()._subparsers._group_actions[0].choices["train"]


def test_one_declared_option_gets_its_flag_key_check_help_and_docs_row(toy_method, capsys):
    # the flag, with its help and its type, read from the declaration
    actions = {a.dest: a for a in _train_parser()._actions}
    assert "toy_sharpness" in actions
    flag = actions["toy_sharpness"]
    assert flag.option_strings == ["--toy-sharpness"] and flag.type is float
    assert "toy-sharp: divide the logits by this (default: 2.0)" in flag.help
    assert "toy-sharp" in actions["method"].choices
    # the config key, nested and flat, with the declared default filled in
    config = TrainConfig(method="toy-sharp", warmup_epochs=0)
    assert config.method_options["sharpness"] == 2.0
    nested = TrainConfig.from_dict({"method": "toy-sharp", "method_options": {"sharpness": 3}})
    flat = TrainConfig.from_dict({"method": "toy-sharp", "toy_sharpness": 3})
    assert nested == flat and flat.method_options["sharpness"] == 3.0
    assert flat.to_flat_dict()["toy_sharpness"] == 3.0
    # the check: range, and an option that does not apply elsewhere
    with pytest.raises(ValueError, match=r"config toy_sharpness=-1.0 must be positive"):
        TrainConfig.from_dict({"method": "toy-sharp", "toy_sharpness": -1})
    with pytest.raises(
        ValueError, match=r"toy_sharpness=3.0 does not apply to method 'l2b': it is for methods toy-sharp only"
    ):
        TrainConfig.from_dict({"toy_sharpness": 3})
    # the command line end to end
    assert cli_main(["train", "--method", "toy-sharp", "--toy-sharpness", "4", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["method_options"]["sharpness"] == 4.0
    # the docs' table
    table = options_table(METHODS.options("toy-sharp"), block="method_options")
    assert "| `method_options.sharpness` | `--toy-sharpness` | float | `2.0` | > 0 | toy-sharp: divide" in table
    # the method itself is built from the config's block
    assert create_method("toy-sharp", **flat.method_options).sharpness == 3.0


def test_static_reading_of_declarations_equals_the_live_registries():
    live = option_keys()
    read = {option.config_key: option for option, _, _ in declared.component_options()}
    assert sorted(read) == sorted(live)
    for key, option in read.items():
        assert option.same_meaning(live[key][1]), key


def test_a_declaration_and_a_constructor_that_disagree_are_refused_at_registration():
    from l2b.methods import Method, register_method

    with pytest.raises(TypeError, match=r"declared options \['a'\] but its constructor takes \['b'"):

        @register_method("toy-mismatch")
        class Mismatch(Method):
            options = (Option("a", "int", 1, "a"),)

            def __init__(self, *, b: int = 1, **common):
                super().__init__(**common)

    assert "toy-mismatch" not in METHODS
    with pytest.raises(TypeError, match="declared options"):
        from l2b.models import register_model

        @register_model("toy-model", options=(Option("depth", "int", 2, "depth"),))
        def toy_model(*, num_classes, in_shape, width=3):  # pragma: no cover - refused
            raise AssertionError


def test_one_key_means_one_thing_across_entries():
    registry = Registry("throwaway-kind")
    registry.register("a", options=(Option("size", "int", 1, "size", minimum=1),))(object())
    registry.register("b", options=(Option("size", "int", 5, "size, defaulted otherwise", minimum=1),))(object())
    with pytest.raises(ValueError, match="declared differently by throwaway-kind 'a' and throwaway-kind 'c'"):
        registry.register("c", options=(Option("size", "float", 1.0, "size"),))(object())
    assert registry.takers("size") == ["a", "b"]
    with pytest.raises(
        ValueError, match=r"unknown throwaway-kind 'aa'; known throwaway-kinds: a, b \(did you mean 'a'\?\)"
    ):
        registry.get("aa")


def test_every_registry_answers_the_same_way():
    from l2b.meta.engines import ENGINE_REGISTRY

    for registry, name in ((METHODS, "l2b"), (MODELS, "mlp"), (ENGINE_REGISTRY, "tail")):
        assert name in registry.names()
        assert registry.get(name) is not None
        assert set(registry.option_defaults(name)) == {o.name for o in registry.options(name)}
        with pytest.raises(ValueError, match="did you mean"):
            registry.get(name + "x")
    assert names_of("engine") == ENGINE_REGISTRY.names(sort=False)


def test_flat_keys_of_older_configs_still_read():
    old = {"method": "dividemix", "dividemix_lambda_u": 4.0, "hidden": [32], "engine": "forward"}
    config = TrainConfig.from_dict(old, recorded=True)  # engine did not apply to dividemix: dropped
    assert config.method_options["lambda_u"] == 4.0 and config.model_options["hidden"] == (32,)
    assert "engine" not in config.method_options
    with pytest.raises(ValueError, match="does not apply to method 'dividemix'"):
        TrainConfig.from_dict(old)  # a user's config: refused by name
    assert flat_options(config.to_dict())["dividemix_lambda_u"] == 4.0
    with pytest.raises(ValueError, match="given twice"):
        TrainConfig.from_dict({"engine": "head", "method_options": {"engine": "forward"}})


def test_changing_the_method_resets_the_options_that_were_its_defaults():
    config = TrainConfig(method="bootstrap-soft", warmup_epochs=0)
    assert config.method_options["beta"] == 0.95
    hard = config.replace(method="bootstrap-hard")
    assert hard.method_options["beta"] == 0.8  # the new method's own default
    kept = TrainConfig(method="bootstrap-soft", bootstrap_beta=0.5, warmup_epochs=0).replace(method="bootstrap-hard")
    assert kept.method_options["beta"] == 0.5  # a value the user chose stays
    assert "engine" not in TrainConfig(engine="head").replace(method="ce").method_options


def test_a_run_directory_written_with_flat_keys_resumes(tmp_path):
    """A run started by a version that recorded every option flat (config.yaml and checkpoint)
    resumes, and ends where an uninterrupted run ends."""
    import torch

    from l2b.rundir import CHECKPOINT, CONFIG
    from l2b.training import run_experiment

    class Stop:
        def __call__(self, line):
            if line.startswith("epoch   2/"):
                raise KeyboardInterrupt

    config = TrainConfig(epochs=3, warmup_epochs=1, hidden=(32,), device="cpu")
    whole = run_experiment(config, out_dir=tmp_path / "whole", progress=False, log=None)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, out_dir=tmp_path / "old", progress=False, log=Stop())
    # rewrite what the run recorded as an older version did: every option under its flat key,
    # without the options that version did not have
    old = {k: v for k, v in config.to_flat_dict().items() if k not in ("batchnorm", "dropout")}
    doc = yaml.safe_load((tmp_path / "old" / CONFIG).read_text())
    doc["config"] = old
    (tmp_path / "old" / CONFIG).write_text(yaml.safe_dump(doc, sort_keys=False))
    ckpt = torch.load(tmp_path / "old" / CHECKPOINT, weights_only=False)
    ckpt["config"] = old
    torch.save(ckpt, tmp_path / "old" / CHECKPOINT)
    resumed = run_experiment(config, out_dir=tmp_path / "old", progress=False, log=None, resume=True)
    assert resumed["test_accuracy"] == whole["test_accuracy"]
    assert resumed["best_meta_accuracy"] == whole["best_meta_accuracy"]


def test_the_noise_models_and_data_sets_are_registries_too():
    from l2b.data import DATASETS
    from l2b.names import NOISE_KINDS
    from l2b.noise import NOISE_MODELS, make_noise

    assert tuple(NOISE_MODELS.names(sort=False)) == (*NOISE_KINDS, "instance", "file")
    with pytest.raises(ValueError, match=r"unknown noise model 'symetric'.*did you mean 'symmetric'"):
        NOISE_MODELS.get("symetric")
    noisy = make_noise("pair", np.arange(1000) % 5, rate=0.4, seed=0)
    assert noisy.noise_rate == pytest.approx(0.4, abs=0.02)
    # the image-file options are declared by the data sets that take them, and refused elsewhere
    assert {o.name for o in DATASETS.options("imagefolder")} == {"image_size", "lazy", "skip_bad_files"}
    assert DATASETS.options("digits") == ()
    with pytest.raises(ValueError, match="image_size=64 does not apply to data set 'digits'"):
        TrainConfig(image_size=64)
    config = TrainConfig(data="imagefolder", data_root="/nowhere", image_size=64)
    assert config.data_options["image_size"] == 64 and config.image_size == 64
