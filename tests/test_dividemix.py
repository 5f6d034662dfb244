"""DivideMix and DivideMix + L2B: the pieces against hand computations, and the whole method
through everything the other methods have (resume, reports, evaluate / predict, l2b.fit, torchrun)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_resume import assert_same_run, interrupt_at_method_step

import l2b
from l2b.cli.main import main
from l2b.data import FeatureNoise
from l2b.methods import TwoNetworks
from l2b.methods.dividemix import (
    clean_probability,
    co_guessed_targets,
    co_refined_targets,
    mixmatch_loss,
    sharpen,
    unlabelled_weight,
)
from l2b.training import TrainConfig, build_model, prepare_data, run_experiment

DM = {"feature_noise": 0.3, "epochs": 4, "warmup_epochs": 1, "device": "cpu", "seed": 1}


def test_the_mixture_split_recovers_known_components():
    rng = np.random.default_rng(0)
    clean = rng.normal(0.15, 0.05, 700)
    noisy = rng.normal(0.7, 0.1, 300)
    losses = np.clip(np.concatenate([clean, noisy]), 0, 1)
    prob = clean_probability(losses, seed=0)
    truth = np.r_[np.ones(700, bool), np.zeros(300, bool)]
    assert np.mean((prob > 0.5) == truth) > 0.99
    order = np.argsort(losses)  # the posterior of the low-loss component falls as the loss grows
    assert np.all(np.diff(prob[order]) <= 1e-9)
    assert prob[np.argmin(losses)] > 0.999 and prob[np.argmax(losses)] < 1e-3


def test_co_refinement_and_co_guessing_by_hand():
    p1 = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], dtype=torch.float64)
    p2 = torch.tensor([[0.4, 0.5, 0.1], [0.2, 0.4, 0.4]], dtype=torch.float64)
    labels = torch.tensor([1, 2])
    w = torch.tensor([0.5, 1.0], dtype=torch.float64)
    # example 0: 0.5 * [0, 1, 0] + 0.5 * [0.5, 0.4, 0.1] = [0.25, 0.7, 0.05]; squared (T = 0.5), normalised
    a = np.array([0.25, 0.7, 0.05]) ** 2
    # example 1: w = 1: the given label exactly
    expected = np.stack([a / a.sum(), [0.0, 0.0, 1.0]])
    got = co_refined_targets(p1, p2, labels, w, num_classes=3, temperature=0.5).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    q = [
        torch.tensor([[0.7, 0.2, 0.1]]),
        torch.tensor([[0.5, 0.4, 0.1]]),
        torch.tensor([[0.3, 0.3, 0.4]]),
        torch.tensor([[0.5, 0.1, 0.4]]),
    ]
    m = np.array([0.5, 0.25, 0.25]) ** 2  # the mean of the four, sharpened
    np.testing.assert_allclose(co_guessed_targets(q, temperature=0.5).numpy(), [m / m.sum()], rtol=1e-6)
    np.testing.assert_allclose(sharpen(torch.tensor([[0.2, 0.8]]), 1.0).numpy(), [[0.2, 0.8]])


def test_the_mixmatch_loss_terms_against_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 4, generator=g, dtype=torch.float64)
    targets = torch.softmax(torch.randn(7, 4, generator=g, dtype=torch.float64), 1)
    n_x, weight = 3, 2.5
    loss, terms = mixmatch_loss(logits, targets, n_x, weight_u=weight)
    z, t = logits.numpy(), targets.numpy()
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    lx = -np.mean([sum(t[i, k] * np.log(p[i, k]) for k in range(4)) for i in range(n_x)])
    lu = np.mean([(p[i, k] - t[i, k]) ** 2 for i in range(n_x, 7) for k in range(4)])
    mean_p = p.mean(0)
    penalty = sum(0.25 * np.log(0.25 / mean_p[k]) for k in range(4))
    assert terms["loss_x"] == pytest.approx(lx, rel=1e-12)
    assert terms["loss_u"] == pytest.approx(lu, rel=1e-12)
    assert terms["penalty"] == pytest.approx(penalty, rel=1e-12)
    assert float(loss) == pytest.approx(lx + weight * lu + penalty, rel=1e-12)
    # no unlabelled rows: Lu is zero; the ramp-up is linear from the end of the warm-up
    assert mixmatch_loss(logits, targets, 7, weight_u=weight)[1]["loss_u"] == 0.0
    assert [unlabelled_weight(e, lambda_u=25, rampup_epochs=16) for e in (0, 4, 16, 30)] == [0.0, 6.25, 25.0, 25.0]


def test_dividemix_needs_two_views_and_refuses_mixup(tmp_path):
    from PIL import Image

    for c in range(2):
        (tmp_path / f"c{c}").mkdir()
        for i in range(12):
            Image.fromarray(np.full((8, 8, 3), 20 * i + c, np.uint8)).save(tmp_path / f"c{c}" / f"{i}.png")
    images = TrainConfig(
        method="dividemix",
        data="imagefolder",
        data_root=str(tmp_path),
        lazy=False,
        image_size=8,
        num_meta=4,
        epochs=2,
        warmup_epochs=1,
        device="cpu",
    )
    with pytest.raises(
        ValueError, match=r"trains on 2 augmented views of every example: set augment: true \(--augment\)"
    ):
        run_experiment(images, out_dir=tmp_path / "run", progress=False, log=None)
    assert not (tmp_path / "run").exists()  # refused before the run directory is made
    # strong views on 8 x 8 images: refused by name, again before the run directory
    with pytest.raises(ValueError, match="at least 16 x 16"):
        run_experiment(
            images.replace(method="unicon", augment=True), out_dir=tmp_path / "run", progress=False, log=None
        )
    assert not (tmp_path / "run").exists()
    # digits has no image augmentation: the documented stand-in is filled in, and recorded
    assert TrainConfig(method="dividemix").feature_noise == 0.3 and TrainConfig().feature_noise is None
    assert TrainConfig(method="dividemix").replace(method="l2b").feature_noise is None
    with pytest.raises(ValueError, match="mixup does not apply to dividemix"):
        TrainConfig(method="dividemix", mixup=True, feature_noise=0.3)
    with pytest.raises(
        ValueError,
        match=r"config dividemix_meta='labelled' does not apply to method 'dividemix': it is for methods dividemix-l2b",
    ):
        TrainConfig(method="dividemix", dividemix_meta="labelled")


@pytest.mark.parametrize("method", ["dividemix", "dividemix-l2b"])
def test_a_run_writes_everything_the_other_methods_do(tmp_path, capsys, method):
    run = tmp_path / "run"
    args = [
        "train",
        "--method",
        method,
        "--feature-noise",
        "0.3",
        "--epochs",
        "3",
        "--warmup-epochs",
        "1",
        "--quiet",
        "--out",
        str(run),
    ]
    assert main(args) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in records] == ["warmup", method, method]
    assert 0.4 < records[-1]["labelled_share_0"] < 0.8 and "memorised" in records[-1]
    if method == "dividemix-l2b":
        assert "meta_loss" in records[-1]
    pe = np.load(run / "per_example.npz")
    assert pe["clean_prob"].shape == pe["index"].shape
    noisy = pe["clean_label"] != pe["given_label"]
    assert pe["clean_prob"][~noisy].mean() > pe["clean_prob"][noisy].mean() + 0.3
    header = (run / "label_issues.csv").read_text().splitlines()[0]
    assert header.endswith(",alpha_share,clean_probability")
    state = torch.load(run / "model.pt", weights_only=True)
    assert any(k.startswith("nets.0.") for k in state) and any(k.startswith("nets.1.") for k in state)
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    accuracy = json.loads(capsys.readouterr().out)["accuracy"]
    assert accuracy == json.loads((run / "summary.json").read_text())["test_accuracy_at_best_meta"]
    assert main(["predict", str(run), "--data", "digits", "--out", str(tmp_path / "p.csv")]) == 0
    assert main(["report", str(run), "--out", str(tmp_path / "report")]) == 0


def test_the_labelled_meta_split_needs_no_clean_data(tmp_path):
    cfg = TrainConfig(method="dividemix-l2b", dividemix_meta="labelled", num_meta=0, **DM)
    summary = run_experiment(cfg, out_dir=tmp_path / "run", progress=False, log=None)
    assert summary["best_meta_epoch"] == 4 and summary["test_accuracy"] > 0.8  # no meta set: the last epoch


def test_kill_and_resume_with_two_networks_ends_as_the_uninterrupted_run(tmp_path, monkeypatch):
    import l2b.training.setup as setup_mod

    cfg = TrainConfig(method="dividemix-l2b", **DM)
    run_experiment(cfg, out_dir=tmp_path / "full", progress=False, log=None)
    real = interrupt_at_method_step(monkeypatch, 30)  # inside epoch 3 (21 steps an epoch after warm-up)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, out_dir=tmp_path / "cut", progress=False, log=None)
    ckpt = l2b.rundir.load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert ckpt["trainer"]["epoch"] == 2 and ckpt["trainer"]["cursor"]["step"] == 9
    assert ckpt["trainer"]["method"]["clean_prob"].shape[0] == 2  # the division of the epoch in progress
    monkeypatch.setattr(setup_mod, "create_method", real)
    run_experiment(cfg, out_dir=tmp_path / "cut", progress=False, log=None, resume=True)
    assert_same_run(tmp_path / "full", tmp_path / "cut")


def test_l2b_fit_trains_a_pair():
    cfg = TrainConfig(method="dividemix", **DM)
    data = prepare_data(cfg)
    pair = build_model(cfg, num_classes=data.num_classes, in_shape=data.example_shape)
    assert isinstance(pair, TwoNetworks)
    meta = (data.train.inputs[data.meta_idx], data.meta_labels)
    train = (data.train_inputs, data.given)
    with pytest.raises(ValueError, match="pass model=l2b.methods.TwoNetworks"):
        l2b.fit(pair.nets[0], train, meta, method="dividemix", augment=FeatureNoise(0.3))
    with pytest.raises(ValueError, match="pass augment="):
        l2b.fit(pair, train, meta, method="dividemix")
    result = l2b.fit(
        pair,
        train,
        meta,
        method="dividemix",
        epochs=4,
        warmup_epochs=1,
        seed=1,
        augment=FeatureNoise(0.3),
        test=(data.test.inputs, data.test.labels),
    )
    recorded = run_experiment(cfg, progress=False, log=None)
    assert result.history[-1]["test_accuracy"] == recorded["test_accuracy"]  # the same run as l2b train's


def test_two_processes_train_dividemix(tmp_path):
    pytest.importorskip("torch.distributed")
    from test_distributed_training import torchrun

    r = torchrun(
        "--method",
        "dividemix-l2b",
        "--feature-noise",
        "0.3",
        "--epochs",
        "3",
        "--warmup-epochs",
        "1",
        "--quiet",
        "--out",
        "run",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["test_accuracy"] > 0.8
    assert (tmp_path / "run" / "label_issues.csv").read_text().splitlines()[0].endswith("clean_probability")


def test_the_shipped_digits_configs_run(tmp_path):
    for name in ("digits-dividemix", "digits-dividemix-l2b"):
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "l2b",
                "train",
                "--config",
                name,
                "--epochs",
                "3",
                "--warmup-epochs",
                "1",
                "--print-config",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        assert "feature_noise: 0.3" in r.stdout and "method: dividemix" in r.stdout


def test_the_estimator_trains_a_pair_on_noisy_feature_views():
    from sklearn.datasets import load_digits

    from l2b.sklearn import L2BClassifier

    X, y = load_digits(return_X_y=True)
    clf = L2BClassifier(method="dividemix", epochs=4, warmup_epochs=1, random_state=0).fit(X[:1200], y[:1200])
    assert isinstance(clf.model_, TwoNetworks) and clf.score(X[1200:], y[1200:]) > 0.85
    with pytest.raises(ValueError, match="mixup does not apply to dividemix"):
        L2BClassifier(method="dividemix", mixup=True, epochs=2, warmup_epochs=1).fit(X[:300], y[:300])


def test_streamed_images_come_in_two_views_and_a_run_resumes_exactly(tmp_path, monkeypatch):
    from PIL import Image
    from test_streaming import COLOURS, config

    import l2b.training.setup as setup_mod

    rng = np.random.default_rng(0)
    for c, colour in enumerate(COLOURS):
        (tmp_path / "images" / f"class{c}").mkdir(parents=True)
        for i in range(30):
            a = np.clip(np.array(colour)[None, None] + rng.normal(0, 40, (20, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(tmp_path / "images" / f"class{c}" / f"{i}.png")
    cfg = config(tmp_path / "images", method="dividemix")
    data = prepare_data(cfg)
    train, _, _ = data.sets(torch.device("cpu"))
    cursor = l2b.training.batches.EpochCursor(perm=torch.arange(len(train)), n_batches=2)
    train.plan_epoch(cursor, generator=torch.Generator().manual_seed(0), next_meta=None)
    batch = next(
        train.batches(
            cursor,
            None,
            generator=None,
            next_meta=None,
            augment=None,
            shard=None,
            device=torch.device("cpu"),
            views=("second",),
        )
    )
    assert list(batch.views) == ["second"] and batch.views["second"].shape == batch.inputs.shape
    assert not torch.equal(batch.views["second"], batch.inputs)  # two random crops / flips of the same images

    run_experiment(cfg, out_dir=tmp_path / "full", progress=False, log=None)
    real = interrupt_at_method_step(monkeypatch, 3)  # inside epoch 2 (6 steps an epoch)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, out_dir=tmp_path / "cut", progress=False, log=None)
    monkeypatch.setattr(setup_mod, "create_method", real)
    run_experiment(cfg, out_dir=tmp_path / "cut", progress=False, log=None, resume=True)
    assert_same_run(tmp_path / "full", tmp_path / "cut")
