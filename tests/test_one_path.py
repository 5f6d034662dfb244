"""One path from a config to a trained model: the same data, set-up and seed everywhere, and
options checked against the registry entry they belong to."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest

import l2b
from l2b.cli.main import main
from l2b.meta import ENGINES
from l2b.training import Optimization, TrainConfig, build_model, prepare_data, run_experiment

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "l2b"


def _fit_like_train(cfg: TrainConfig):
    """l2b.fit on exactly what l2b train prepares for `cfg`."""
    data = prepare_data(cfg)
    model = build_model(cfg, num_classes=data.num_classes, in_shape=data.example_shape)
    opt = cfg.optimization()
    meta = (data.train.inputs[data.meta_idx], data.meta_labels)
    return l2b.fit(
        model,
        (data.train_inputs, data.given),
        meta,
        test=(data.test.inputs, data.test.labels),
        method=cfg.method,
        epochs=opt.epochs,
        warmup_epochs=opt.warmup_epochs,
        batch_size=opt.batch_size,
        meta_batch_size=opt.meta_batch_size,
        lr=opt.lr,
        momentum=opt.momentum,
        weight_decay=opt.weight_decay,
        nesterov=opt.nesterov,
        max_bad_steps=opt.max_bad_steps,
        device="cpu",
        seed=cfg.seed,
        clean_labels=data.clean,
        **cfg.method_options,
    )


@pytest.mark.parametrize(
    "overrides", [{}, {"method": "l2rw", "mixup": True, "seed": 4}, {"method": "ce"}], ids=["l2b", "l2rw-mixup", "ce"]
)
def test_l2b_train_and_l2b_fit_give_the_same_run(tmp_path, overrides):
    cfg = TrainConfig(**{"epochs": 4, "warmup_epochs": 1, "device": "cpu", "seed": 3, **overrides})
    assert (
        main(["train", "--config", str(_write(tmp_path / "c.yaml", cfg)), "--quiet", "--out", str(tmp_path / "run")])
        == 0
    )
    recorded = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    result = _fit_like_train(cfg)
    timing = {"train_seconds", "images_per_second", "test_seconds"}
    assert [{k: v for k, v in r.items() if k not in timing} for r in recorded] == [
        {k: v for k, v in r.items() if k not in timing} for r in result.history
    ]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["best_meta_epoch"] == result.best_epoch


def _write(path: Path, cfg: TrainConfig) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return path


def test_prepare_data_is_what_the_run_trains_on(tmp_path):
    cfg = TrainConfig(epochs=1, warmup_epochs=0, device="cpu", seed=7, noise_rate=0.3)
    data = prepare_data(cfg)
    run_experiment(cfg, out_dir=tmp_path / "run", progress=False, log=None)
    pe = np.load(tmp_path / "run" / "per_example.npz")
    assert np.array_equal(pe["index"], data.train_idx) and np.array_equal(pe["meta_index"], data.meta_idx)
    assert np.array_equal(pe["given_label"], data.given) and np.array_equal(pe["clean_label"], data.clean)
    assert len(np.intersect1d(data.train_idx, data.meta_idx)) == 0
    assert abs(data.realised_noise_rate - 0.3) < 0.02
    assert np.array_equal(data.meta_labels, data.train.labels[data.meta_idx])  # trusted: the true labels


@pytest.mark.parametrize(
    "values, key",
    [
        ({"method": "ce", "engine": "bogus"}, "engine"),
        ({"method": "ce", "engine": "forward"}, "engine"),
        ({"method": "bootstrap-soft", "normalize": "softmax"}, "normalize"),
        ({"method": "l2b", "bootstrap_beta": 0.9}, "bootstrap_beta"),
        ({"model": "resnet18", "hidden": [64]}, "hidden"),
        ({"model": "preact_resnet18", "width": 8}, "width"),
        ({"noise": "file", "noise_file": "labels.npy", "noise_rate": 0.2}, "noise_rate"),
    ],
)
def test_an_option_that_does_not_apply_is_refused_by_name(values, key):
    with pytest.raises(ValueError, match=rf"my\.yaml: config {key}=.* (does not apply|only)"):
        TrainConfig.from_dict(values, source="my.yaml")


def test_an_option_value_is_checked_by_its_method():
    with pytest.raises(
        ValueError,
        match=rf"config engine='bogus' must be one of {', '.join(ENGINES)}",
    ):
        TrainConfig.from_dict({"engine": "bogus"})


def test_options_take_their_entry_defaults_and_follow_a_changed_choice():
    cfg = TrainConfig(method="bootstrap-soft")
    assert cfg.bootstrap_beta == 0.95 and cfg.engine is None and cfg.hidden == (256,)
    assert cfg.replace(method="bootstrap-hard").bootstrap_beta == 0.8
    assert cfg.replace(method="l2b").engine == "forward" and cfg.replace(method="l2b").bootstrap_beta is None
    assert TrainConfig(model="small_cnn").width == 32 and TrainConfig(model="small_cnn").hidden is None
    assert TrainConfig(noise="file", noise_file="x.npy").noise_rate is None and TrainConfig().noise_rate == 0.4
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # the recorded config reads back as it was


def test_a_config_recorded_by_an_older_version_still_reads():
    old = {**TrainConfig(method="ce").to_dict(), "engine": "forward", "normalize": "org", "temperature": 1.0}
    assert TrainConfig.from_dict(old, recorded=True) == TrainConfig(method="ce")
    with pytest.raises(ValueError, match="engine"):
        TrainConfig.from_dict(old)


def test_the_cli_refuses_an_engine_for_ce(capsys):
    code = main(["train", "--method", "ce", "--engine", "fused", "--print-config"])
    err = capsys.readouterr().err
    assert code == 2 and "config engine='fused'" in err and "does not apply to method 'ce'" in err


def test_the_cli_takes_its_choices_from_the_registries():
    from l2b.cli.main import build_parser

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    choices = {a.dest: tuple(a.choices) for a in train._actions if a.choices}
    assert choices["engine"] == ENGINES
    assert set(choices["method"]) == set(l2b.methods.list_methods())
    assert set(choices["model"]) == set(l2b.models.list_models())


def test_one_settings_object_checks_every_entry_point():
    for bad, match in (
        ({"batch_size": 1}, "batch_size=1 must be at least 2"),
        ({"epochs": 3, "warmup_epochs": 4}, r"warmup_epochs=4 must be in \[0, epochs=3\]"),
    ):
        with pytest.raises(ValueError, match=match):
            Optimization(**bad)
        with pytest.raises(ValueError, match=match):
            TrainConfig(**bad)
        with pytest.raises(ValueError, match=match):
            l2b.fit(
                l2b.models.create_model("mlp", num_classes=3, in_shape=(4,)),
                (np.zeros((8, 4), np.float32), np.arange(8) % 3),
                method="ce",
                **bad,
            )
        from l2b.sklearn import L2BClassifier

        with pytest.raises(ValueError, match=match):
            L2BClassifier(**bad).fit(np.random.default_rng(0).normal(size=(30, 4)), np.arange(30) % 3)


def test_the_trainer_leaves_no_hook_on_the_optimizer():
    cfg = TrainConfig(epochs=1, warmup_epochs=0, device="cpu")
    data = prepare_data(cfg)
    model = build_model(cfg, num_classes=data.num_classes, in_shape=data.example_shape)
    trainer = l2b.training.build_trainer(
        model,
        method="l2b",
        optim=cfg.optimization(),
        seed=0,
        num_examples=len(data.train_idx),
        num_classes=data.num_classes,
        progress=False,
    )
    assert not trainer.optimizer._optimizer_step_pre_hooks and not trainer.optimizer._optimizer_step_post_hooks


def test_a_config_reaches_its_trainer_through_one_function():
    """trainer_for_config carries every trainer setting a TrainConfig holds, and nothing else in
    the package or the benchmarks assembles a trainer from a config's fields by hand."""
    cfg = TrainConfig(
        epochs=4, warmup_epochs=1, device="cpu", method="l2b", engine="head", test_every=3, meta_source="confident"
    )
    cfg = cfg.replace(meta_batch_size=17, batch_size=33, feature_noise=0.1)
    data = prepare_data(cfg)
    model = build_model(cfg, num_classes=data.num_classes, in_shape=data.example_shape)
    trainer = l2b.training.trainer_for_config(
        cfg, model, num_examples=len(data.train_idx), num_classes=data.num_classes, progress=False
    )
    assert trainer.test_every == 3 and trainer.meta_selector is not None and trainer.augment is not None
    assert (trainer.batch_size, trainer.meta_batch_size, trainer.warmup_epochs) == (33, 17, 1)
    assert trainer.method.name == "l2b" and trainer.method.engine == "head"
    by_hand = [
        str(f.relative_to(ROOT))
        for f in [*SRC.rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]
        if f.name != "setup.py" and "method_options=config.method_options" in f.read_text()
    ]
    assert by_hand == []


def _private_imports(path: Path) -> list[str]:
    """`from l2b... import _name` (or a relative import of a private name) that crosses a package."""
    tree = ast.parse(path.read_text())
    package = path.parent
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
            if not names:
                continue
            if node.level:  # relative: private names may be used inside their own package only
                target = package
                for _ in range(node.level - 1):
                    target = target.parent
                if target != package or (node.module or "").count("."):
                    found.append(f"{path.relative_to(SRC.parent)}: {node.module} {names}")
            elif (node.module or "").startswith("l2b"):
                found.append(f"{path}: {node.module} {names}")
    return found


def test_no_module_imports_another_packages_private_names():
    roots = [SRC, SRC.parents[1] / "benchmarks", SRC.parents[1] / "tests"]
    found = [hit for root in roots for path in sorted(root.rglob("*.py")) for hit in _private_imports(path)]
    assert found == []


def test_run_directory_names_live_in_one_module():
    names = (
        '"checkpoint.pt"',
        '"model.pt"',
        '"summary.json"',
        '"per_example.npz"',
        '"metrics.jsonl"',
        '"config.yaml"',
        '"label_issues.csv"',
    )
    offenders = [
        f"{p.relative_to(SRC)}: {n}"
        for p in SRC.rglob("*.py")
        if p.name != "rundir.py"
        for n in names
        if n in p.read_text()
    ]
    assert offenders == []
