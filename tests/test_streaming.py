"""Training on image files streamed from disk (lazy data sets): the CLI, workers, resume, the
inference commands, and the real loaders' layouts (ISIC2019, Clothing1M) end to end."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from test_data_formats import _clothing, _isic
from test_resume import assert_same_run, interrupt_at_method_step

from l2b.data import BadImageError
from l2b.training import TrainConfig, run_experiment

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """An ImageFolder tree: 3 colour classes x 30 noisy images of 20x24, PNG and JPEG."""
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    for c, colour in enumerate(COLOURS):
        (root / f"class{c}").mkdir()
        for i in range(30):
            a = np.clip(np.array(colour)[None, None] + rng.normal(0, 40, (20, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(root / f"class{c}" / (f"{i}.jpg" if i % 2 else f"{i}.png"))
    return root


def config(folder, **kw):
    base = dict(
        data="imagefolder",
        data_root=str(folder),
        noise="symmetric",  # simulated: the folder labels play the truth
        lazy=True,
        image_size=16,
        model="small_cnn",
        epochs=3,
        warmup_epochs=1,
        num_meta=9,
        meta_batch_size=6,
        batch_size=16,
        workers=0,
        device="cpu",
        seed=1,
    )
    return TrainConfig(**{**base, **kw})


def l2b(*args, cwd):
    return subprocess.run([sys.executable, "-m", "l2b", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_cli_trains_a_streamed_image_folder_and_its_model_evaluates_and_predicts(folder, tmp_path):
    r = l2b(
        "train",
        "--data",
        "imagefolder",
        "--noise",
        "symmetric",
        "--data-root",
        str(folder),
        "--lazy",
        "--image-size",
        "16",
        "--model",
        "small_cnn",
        "--epochs",
        "2",
        "--warmup-epochs",
        "1",
        "--num-meta",
        "9",
        "--meta-batch-size",
        "6",
        "--batch-size",
        "16",
        "--workers",
        "2",
        "--threads",
        "1",
        "--quiet",
        "--out",
        "run",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["data"] == "imagefolder" and summary["skipped_files"] == 0
    for name in ("model.pt", "per_example.npz", "label_issues.csv", "metrics.jsonl"):
        assert (run / name).is_file(), name
    assert not (run / "checkpoint.pt").exists()
    pe = np.load(run / "per_example.npz")
    assert pe["pred_prob"].shape == (len(pe["index"]), 3) and not np.isnan(pe["alpha"]).any()
    r = l2b("evaluate", "run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev["accuracy"] == pytest.approx(summary["test_accuracy_at_best_meta"])
    r = l2b("predict", "run", "--data", "imagefolder", "--split", "train", "--out", "p.csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 1 + len(pe["index"]) + 9  # train split incl. meta


def test_workers_do_not_change_the_result(folder, tmp_path):
    """Augmentation is seeded per example from the plan, not by whichever worker decodes it."""
    a = run_experiment(config(folder, workers=0), out_dir=tmp_path / "w0", progress=False, log=None)
    b = run_experiment(config(folder, workers=2), out_dir=tmp_path / "w2", progress=False, log=None)
    assert a["test_accuracy"] == b["test_accuracy"]
    assert_same_run(tmp_path / "w0", tmp_path / "w2")


def test_streamed_run_interrupted_mid_epoch_resumes_to_the_same_result(folder, tmp_path, monkeypatch):
    import l2b.rundir as rundir
    import l2b.training.setup as setup_mod  # where a run builds its method

    cfg = config(folder, workers=2, mixup=True)
    run_experiment(cfg, out_dir=tmp_path / "full", progress=False, log=None)
    real_create = interrupt_at_method_step(monkeypatch, 3)  # the third L2B step: epoch 2 (5 steps per epoch)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, out_dir=tmp_path / "cut", progress=False, log=None)
    ckpt = rundir.load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    cursor = ckpt["trainer"]["cursor"]
    assert ckpt["trainer"]["epoch"] == 1 and cursor["step"] == 3 and len(cursor["meta_plan"]) == cursor["n_batches"]
    monkeypatch.setattr(setup_mod, "create_method", real_create)
    run_experiment(cfg, out_dir=tmp_path / "cut", progress=False, log=None, resume=True)
    assert_same_run(tmp_path / "full", tmp_path / "cut")


def test_streamed_no_clean_meta_mode(folder, tmp_path):
    s = run_experiment(
        config(folder, meta_source="confident", num_meta=6, method="l2rw"),
        out_dir=tmp_path / "r",
        progress=False,
        log=None,
    )
    records = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    sizes = [r.get("meta_size") for r in records]
    assert sizes[0] is None and all(2 <= m <= 6 for m in sizes[1:])  # never padded beyond num_meta
    assert 0.0 <= s["meta_purity"] <= 1.0


def test_corrupt_file_is_named_or_skipped_and_counted(folder, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(folder, root)
    (root / "class1" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    # Streamed files are checked as they are read (a full decoding pass up front would cost as
    # much as an epoch): the error names the file, from a worker process too.
    for workers in (0, 2):
        with pytest.raises(BadImageError, match=r"^\S*class1/broken.jpg: cannot decode image"):
            run_experiment(
                config(root, epochs=1, warmup_epochs=0, workers=workers),
                out_dir=tmp_path / f"a{workers}",
                progress=False,
                log=None,
            )
    s = run_experiment(
        config(root, epochs=1, warmup_epochs=0, skip_bad_files=True), out_dir=tmp_path / "b", progress=False, log=None
    )
    assert s["skipped_files"] == 1


def test_image_options_on_array_data_sets_are_refused_by_name(folder, tmp_path):
    with pytest.raises(ValueError, match=r"image_size=32 does not apply to data set 'digits'"):
        run_experiment(TrainConfig(image_size=32, epochs=1, warmup_epochs=0), out_dir=tmp_path / "x", log=None)
    with pytest.raises(ValueError, match="augment=True is for in-memory images"):
        run_experiment(config(folder, augment=True), log=None)


@pytest.mark.parametrize("name", ["isic2019", "clothing1m"])
def test_isic2019_and_clothing1m_layouts_train_from_the_cli(name, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    if name == "isic2019":  # 8 classes x 5 images: one clean meta image per class
        _isic(root, n=40)
        method = ["--method", "l2rw", "--num-meta", "8", "--meta-batch-size", "4"]
    else:  # 14 training images, one per class: too few for a meta set
        _clothing(root)
        method = ["--method", "ce", "--num-meta", "0"]
    r = l2b(
        "train",
        "--data",
        name,
        "--data-root",
        str(root),
        "--image-size",
        "16",
        "--model",
        "small_cnn",
        "--epochs",
        "1",
        "--warmup-epochs",
        "0",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--noise",
        "none",
        *method,
        "--threads",
        "1",
        "--quiet",
        "--out",
        "run",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["data"] == name and summary["epochs"] == 1
