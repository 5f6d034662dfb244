"""The command line answers --help and argument errors without importing torch, and what its
help lists is what the live registries and TrainConfig hold."""

import dataclasses
import subprocess
import sys

import pytest

import l2b
from l2b.cli import declared
from l2b.cli.main import build_parser
from l2b.configs import list_configs
from l2b.data import DATASETS
from l2b.meta import ENGINES, NORMALIZATIONS
from l2b.methods import list_methods
from l2b.models import list_models
from l2b.names import MASK_NOISE_KINDS, PRECISIONS
from l2b.noise import NOISE_KINDS
from l2b.segmentation.noise import MASK_NOISE
from l2b.training import AUTOCAST_DTYPES, TrainConfig
from l2b.training.config import META_SOURCES, option_keys


def _l2b(*args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run `python -m l2b ARGS` as a user would; also the modules it imported (-X importtime)."""
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "l2b", *args], capture_output=True, text=True, timeout=120
    )
    imported = [line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")]
    return r, imported


def _heavy(imported: list[str]) -> list[str]:
    return [m for m in imported if m.split(".")[0] in ("torch", "numpy", "tqdm")]


@pytest.mark.parametrize(
    "command", [[], ["train"], ["relabel"], ["report"], ["evaluate"], ["predict"]], ids=lambda c: " ".join(c) or "l2b"
)
def test_help_imports_no_torch(command):
    r, imported = _l2b(*command, "--help")
    assert r.returncode == 0, r.stderr
    assert "usage: l2b" in r.stdout
    assert _heavy(imported) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--epochs", "x"], "argument --epochs: invalid int value: 'x'"),
        (["train", "--method", "nope"], "argument --method: invalid choice: 'nope'"),
        (["train", "--lr"], "argument --lr: expected one argument"),
        (["predict", "run"], "the following arguments are required: --data, --out"),
        (["relabel"], "the following arguments are required: RUN_DIR"),
        ([], "the following arguments are required: command"),
        (["bogus"], "invalid choice: 'bogus'"),
    ],
)
def test_argument_errors_exit_2_without_importing_torch(args, message):
    r, imported = _l2b(*args)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert _heavy(imported) == []


def test_train_help_lists_the_registries_and_shipped_configs():
    r, _ = _l2b("train", "--help")
    text = " ".join(r.stdout.split())  # argparse wraps lines
    for names in (list_methods(), list_models(), ENGINES, NORMALIZATIONS, NOISE_KINDS, META_SOURCES, PRECISIONS):
        assert "{" + ",".join(names) in text
    assert f"registered: {', '.join(DATASETS)}" in text
    assert ",".join(list_configs()) in "".join(text.split())  # argparse may break a long name at a hyphen
    assert ".safetensors file (Hugging Face, timm)" in text


def _train_parser():
    return build_parser()._subparsers._group_actions[0].choices["train"]


def test_the_choice_lists_are_the_live_registries():
    choices = {a.dest: tuple(a.choices) for a in _train_parser()._actions if a.choices}
    assert choices["method"] == tuple(list_methods())
    assert choices["model"] == tuple(list_models())
    assert choices["engine"] == ENGINES
    assert choices["normalize"] == NORMALIZATIONS
    assert choices["noise"] == (*NOISE_KINDS, "instance", "file", *MASK_NOISE_KINDS)
    assert MASK_NOISE_KINDS == tuple(MASK_NOISE.names(sort=False))  # the static list is the live registry
    assert choices["meta_source"] == META_SOURCES
    assert choices["precision"] == PRECISIONS == tuple(AUTOCAST_DTYPES)
    # What the CLI reads from the registries' source, without importing them, is what they hold.
    assert declared.method_names() == list_methods()
    assert declared.model_names() == list_models()
    assert declared.dataset_names() == list(DATASETS)
    assert declared.train_defaults() == _field_defaults()
    assert sorted(o.config_key for o, _, _ in declared.component_options()) == sorted(option_keys())


def _field_defaults() -> dict:
    return {
        f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
        for f in dataclasses.fields(TrainConfig)
    }


def test_the_defaults_in_train_help_are_trainconfigs():
    resolved = TrainConfig()
    fields = {f.name for f in dataclasses.fields(TrainConfig)} | set(option_keys())
    checked = []
    for action in _train_parser()._actions:
        if action.dest not in fields or not action.help.endswith(")"):
            continue
        shown = action.help.rsplit("(default: ", 1)[1][:-1]
        if " " in shown:  # said in words: it depends on the data or on other keys
            continue
        if action.dest in option_keys():  # an option of an entry the default config does not choose
            kind, option = option_keys()[action.dest]
            if option.name not in getattr(resolved, f"{kind}_options"):
                continue
        value = getattr(resolved, action.dest)
        assert shown == str(list(value) if isinstance(value, tuple) else value), action.dest
        checked.append(action.dest)
    assert {"hidden", "engine", "normalize", "temperature", "epochs", "lr", "data", "model", "method"} <= set(checked)


def test_the_package_exposes_its_names_when_first_used():
    code = "import sys, l2b; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr
    for name in l2b.__all__:
        assert getattr(l2b, name) is not None
    assert l2b.TrainConfig is TrainConfig and isinstance(l2b.__version__, str)
    assert l2b.models.list_models() == list_models()
    with pytest.raises(AttributeError):
        l2b.no_such_name  # noqa: B018


def test_unreadable_declarations_fall_back_to_the_live_registries(tmp_path, monkeypatch):
    monkeypatch.setattr(declared, "_PACKAGE", tmp_path)  # no source files there
    assert declared.method_names() == list_methods()
    assert declared.model_names() == list_models()
    assert declared.dataset_names() == list(DATASETS)
    assert declared.train_defaults() == _field_defaults()
    assert sorted(o.config_key for o, _, _ in declared.component_options()) == sorted(option_keys())


def test_a_preset_sets_its_values_over_the_config_and_under_the_command_line(tmp_path):
    from l2b.names import PRESETS

    for name, preset in PRESETS.items():
        r, _ = _l2b("train", "--preset", name, "--print-config")
        assert r.returncode == 0, r.stderr
        for key, value in preset["values"].items():
            assert f"{key}: {value}" in r.stdout
        assert name in " ".join(_l2b("train", "--help")[0].stdout.split())
    r, _ = _l2b("train", "--preset", "fast", "--meta-every", "4", "--print-config")
    assert "meta_every: 4" in r.stdout  # the command line wins
    r, _ = _l2b("train", "--preset", "fast", "--resume", str(tmp_path))
    assert r.returncode == 2 and "drop --preset" in r.stderr
