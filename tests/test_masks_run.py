"""``l2b train --data masks``: a user's images and masks through the one training run.

Each test writes its own tiny folder or list of PNG images and masks (synthetic shapes), so the
layouts users have are read from disk as they would be.
"""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from test_resume import assert_same_run, interrupt_at_method_step

from l2b.data import DATASETS, data_task
from l2b.names import MASK_NOISE_KINDS
from l2b.segmentation.dataset import case_split, load_masks
from l2b.segmentation.noise import MASK_NOISE
from l2b.segmentation.synthetic import make_shapes
from l2b.training import TrainConfig, prepare_data, run_experiment

SMALL = {"model": "unet", "width": 4, "depth": 2, "batch_size": 4, "meta_batch_size": 2, "device": "cpu"}


def write_folder(root, n=24, size=24, seed=0, cases=None):
    """root/images and root/masks PNGs (masks as 0/255); returns the clean masks (n, size, size)."""
    data = make_shapes(n, size=size, seed=seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, (x, m) in enumerate(zip(data.images, data.masks)):
        Image.fromarray((x[0] * 255).astype(np.uint8)).save(root / "images" / f"im{i:02d}.png")
        Image.fromarray((m * 255).astype(np.uint8)).save(root / "masks" / f"im{i:02d}.png")
    if cases is not None:  # a CSV list with a case per image (slices of `cases` volumes)
        with (root / "list.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["image", "mask", "case"])
            for i in range(n):
                w.writerow([f"images/im{i:02d}.png", f"masks/im{i:02d}.png", f"case{i % cases}"])
    return data.masks


def test_masks_is_a_registered_segmentation_data_set_and_its_noise_names_are_the_simulators():
    assert "masks" in DATASETS and data_task("masks") == "segmentation" and data_task("digits") == "classification"
    assert set(MASK_NOISE_KINDS) == set(MASK_NOISE.names())


def test_case_split_keeps_cases_whole_reaches_the_count_and_is_seeded():
    cases = np.repeat(np.array(["a", "b", "c", "d", "e"]), [3, 1, 4, 2, 5])
    for seed in range(5):
        idx = case_split(cases, 5, seed=seed)
        chosen = set(cases[idx])
        assert len(idx) >= 5 and np.array_equal(idx, np.flatnonzero(np.isin(cases, list(chosen))))
        # the draw stopped at the count: without its last case the others fell short
        assert any(len(idx) - int((cases == c).sum()) < 5 for c in chosen)
        np.testing.assert_array_equal(idx, case_split(cases, 5, seed=seed))
    np.testing.assert_array_equal(case_split(np.arange(10).astype(str), 4, seed=0).size, 4)  # 2-D: exactly
    assert case_split(cases, 0, seed=0).size == 0


def test_load_masks_reads_a_folder_a_list_with_cases_and_class_names(tmp_path):
    clean = write_folder(tmp_path, n=12, size=16, cases=3)
    train, test = load_masks(tmp_path)
    assert test is None and train.labels.shape == (12, 16, 16) and train.inputs.shape[1:] == (3, 16, 16)
    np.testing.assert_array_equal(train.labels, clean)
    assert train.class_names == ("background", "foreground") and train.paths[0].endswith("im00.png")
    assert list(train.cases[:2]) == ["im00", "im01"]  # 2-D images: each its own case
    (tmp_path / "classes.txt").write_text("sky\nprostate\n")
    train, test = load_masks(tmp_path / "list.csv", test_fraction=0.34, split_seed=1, image_size=8)
    assert train.class_names == ("sky", "prostate") and train.labels.shape[1:] == (8, 8)
    assert not set(train.cases) & set(test.cases) and len(set(test.cases)) == 1  # a whole case of three
    with pytest.raises(ValueError, match="expected a folder with images/ and masks/"):
        load_masks(tmp_path / "images")
    with pytest.raises(ValueError, match="needs data_root"):
        load_masks(None)


def test_config_on_masks_simulates_nothing_by_default_and_takes_only_mask_noise(tmp_path):
    write_folder(tmp_path, n=8)
    cfg = TrainConfig(data="masks", data_root=str(tmp_path), method="ce", **SMALL)
    assert cfg.task == "segmentation" and cfg.noise == "none" and not cfg.truth_known and cfg.test_fraction == 0
    with pytest.raises(ValueError, match=r"noise='symmetric' must be one of none, paper, boundary.*mask noise"):
        TrainConfig(data="masks", data_root=str(tmp_path), noise="symmetric", **SMALL)
    cfg = TrainConfig(data="masks", data_root=str(tmp_path), noise="paper", **SMALL)
    assert cfg.noise_rate == 1.0 and cfg.truth_known and cfg.meta_source == "split"
    with pytest.raises(ValueError, match="learns its weights on a meta set of checked masks"):
        prepare_data(TrainConfig(data="masks", data_root=str(tmp_path), **SMALL))


def test_prepare_masks_corrupts_the_asked_share_and_splits_by_case(tmp_path):
    clean = write_folder(tmp_path, n=30, size=24, cases=6)
    cfg = TrainConfig(
        data="masks", data_root=str(tmp_path / "list.csv"), noise="boundary", noise_rate=0.5, num_meta=5, **SMALL
    )
    data = prepare_data(cfg)
    pool_cases = data.train.cases
    meta, train, test = (set(pool_cases[data.meta_idx]), set(pool_cases[data.train_idx]), set(data.test.cases))
    assert not meta & train and not test & (meta | train) and len(meta) == 1 and len(test) == 2
    assert len(data.test) == 10 and len(data.meta_idx) == 5  # test_fraction 0.2 of 30 = 6 images: two cases of 5
    np.testing.assert_array_equal(data.meta_labels, data.train.labels[data.meta_idx])  # clean meta masks
    changed = (data.noisy.labels != data.train.labels).reshape(len(data.train), -1).any(1)
    assert 8 <= changed.sum() <= 10  # half the pool's 20 masks drawn, (almost) all of them moved
    assert data.realised_noise_rate == pytest.approx(float(np.mean(data.given != data.clean)))
    assert data.train.labels.shape[0] + len(data.test) == len(clean)


def test_trusted_masks_replace_the_given_ones_and_leave_training(tmp_path):
    write_folder(tmp_path / "data", n=16, size=24)
    # the checked masks of three training images differ from the given ones (an empty mask given)
    checked = tmp_path / "checked"
    (checked / "images").mkdir(parents=True)
    (checked / "masks").mkdir()
    for i in (1, 4, 9):
        (checked / "images" / f"im{i:02d}.png").write_bytes(
            (tmp_path / "data" / "images" / f"im{i:02d}.png").read_bytes()
        )
        (checked / "masks" / f"im{i:02d}.png").write_bytes(
            (tmp_path / "data" / "masks" / f"im{i:02d}.png").read_bytes()
        )
        Image.fromarray(np.zeros((24, 24), np.uint8)).save(tmp_path / "data" / "masks" / f"im{i:02d}.png")
    cfg = TrainConfig(data="masks", data_root=str(tmp_path / "data"), trusted=str(checked), **SMALL)
    data = prepare_data(cfg)
    assert cfg.meta_source == "trusted" and len(data.meta_idx) == 3 and data.test is None
    assert sorted(data.train.paths[i].rsplit("/", 1)[1] for i in data.meta_idx) == ["im01.png", "im04.png", "im09.png"]
    assert not np.isin(data.meta_idx, data.train_idx).any() and len(data.train_idx) == 13
    assert all(m.any() for m in data.meta_labels)  # the checked masks, not the empty given ones
    assert not data.truth_known and data.clean is None and any("checked masks" in n for n in data.notes)
    bad = tmp_path / "bad.csv"
    bad.write_text("image,mask\nnowhere.png,masks/im01.png\n")
    with pytest.raises(ValueError, match=r"trusted .*bad.csv.*line 2: image nowhere.png does not exist"):
        prepare_data(cfg.replace(trusted=str(bad)))


def test_l2b_train_on_a_mask_folder_writes_dice_and_mask_issues_by_file(tmp_path):
    write_folder(tmp_path / "data", n=20, size=24)
    r = subprocess.run(
        [sys.executable, "-m", "l2b", "train", "--data", "masks", "--data-root", str(tmp_path / "data"),
         "--model", "unet", "--width", "4", "--depth", "2", "--noise", "paper", "--num-meta", "4", "--epochs", "2",
         "--batch-size", "4", "--meta-batch-size", "2", "--threads", "1", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "meta Dice" in r.stdout and "paper mask noise simulated on 100% of the masks" in r.stdout
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "segmentation" and 0 <= summary["test_dice_at_best_meta"] <= 1
    assert 0 < summary["realised_mask_dice"] < 1 and summary["best_meta_dice"] is not None
    assert json.loads((run / "data.json").read_text())["task"] == "segmentation"
    rows = list(csv.DictReader((run / "label_issues.csv").open()))
    assert len(rows) == summary["num_meta"] * 0 + 12  # 20 - 4 test - 4 meta: every training image once
    assert all(r["path"].endswith(".png") and "/images/" in r["path"] and "/masks/" in r["mask_path"] for r in rows)
    q = [float(r["quality"]) for r in rows]
    assert q == sorted(q) and {r["worst_class"] for r in rows} <= {"foreground"}
    files = list(csv.DictReader((run / "files.csv").open()))
    assert {f["role"] for f in files} == {"train", "meta", "test"} and all(
        f["given_label"].endswith(".png") for f in files
    )
    pe = np.load(run / "per_example.npz")
    assert pe["pred_prob"].shape == (12, 2, 24, 24) and pe["pred_prob"].dtype == np.float16
    assert pe["given_label"].shape == pe["clean_label"].shape == (12, 24, 24)


def test_a_mask_run_interrupted_mid_epoch_resumes_to_the_uninterrupted_run(tmp_path, monkeypatch):
    import l2b.training.setup as setup_mod

    write_folder(tmp_path / "data", n=16, size=16)
    cfg = TrainConfig(
        data="masks", data_root=str(tmp_path / "data"), noise="boundary", num_meta=4, epochs=3, warmup_epochs=1, **SMALL
    )
    run_experiment(cfg, out_dir=tmp_path / "full", progress=False, log=None)
    real = interrupt_at_method_step(monkeypatch, 3)  # epoch 2, mid-epoch
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, out_dir=tmp_path / "cut", progress=False, log=None)
    monkeypatch.setattr(setup_mod, "create_method", real)
    run_experiment(cfg, out_dir=tmp_path / "cut", progress=False, log=None, resume=True)
    assert_same_run(tmp_path / "full", tmp_path / "cut")


def test_mask_run_refusals_name_the_problem(tmp_path):
    write_folder(tmp_path, n=8)
    base = {"data": "masks", "data_root": str(tmp_path), "noise": "paper", "num_meta": 2, **SMALL}
    with pytest.raises(ValueError, match=r"segmentation needs a map of logits.*--model unet or unetpp"):
        mlp = {k: v for k, v in base.items() if k not in ("width", "depth")}
        run_experiment(TrainConfig(**{**mlp, "model": "mlp"}), progress=False, log=None)
    with pytest.raises(ValueError, match="masks would not follow"):
        run_experiment(TrainConfig(**base, augment=True), progress=False, log=None)
    with pytest.raises(ValueError, match="meta_source='confident' chooses examples by the class"):
        run_experiment(
            TrainConfig(**{**base, "meta_source": "confident", "warmup_epochs": 1}), progress=False, log=None
        )
    Image.fromarray(np.full((24, 24), 7, np.uint8)).save(tmp_path / "masks" / "im03.png")  # an index mask: 8 classes
    with pytest.raises(ValueError, match=r"no meta mask has a pixel of class 2 \('class 2'\)"):
        run_experiment(TrainConfig(**base), progress=False, log=None)
    Image.fromarray(np.full((24, 24), 128, np.uint8)).save(tmp_path / "masks" / "im03.png")
    with pytest.raises(ValueError, match=r"im03.png"):
        run_experiment(TrainConfig(**base), progress=False, log=None)


@pytest.fixture(scope="module")
def mask_run(tmp_path_factory):
    """A finished run on a mask folder stored at 24 px and trained at 16 (image_size)."""
    root = tmp_path_factory.mktemp("maskrun")
    write_folder(root / "data", n=20, size=24)
    cfg = TrainConfig(
        data="masks",
        data_root=str(root / "data"),
        image_size=16,
        noise="boundary",
        noise_rate=0.5,
        num_meta=4,
        epochs=3,
        **SMALL,
    )
    summary = run_experiment(cfg, out_dir=root / "run", progress=False, log=None)
    return root, summary


def l2b_cli(*args):
    return subprocess.run([sys.executable, "-m", "l2b", *map(str, args)], capture_output=True, text=True, timeout=600)


def test_evaluate_a_mask_run_scores_its_own_test_cases_as_the_run_did(mask_run):
    root, summary = mask_run
    r = l2b_cli("evaluate", root / "run")
    assert r.returncode == 0, r.stderr
    scores = json.loads(r.stdout)
    assert scores["images"] == 4 and scores["dice"] == pytest.approx(summary["test_dice_at_best_meta"], abs=1e-6)
    assert scores["iou"] == pytest.approx(summary["test_iou_at_best_meta"], abs=1e-6)
    r = l2b_cli("evaluate", root / "run", "--data", root / "data" / "images")
    assert r.returncode == 2 and "has no masks to score against" in r.stderr


def test_predict_writes_masks_at_each_images_own_size_and_scores_given_masks(mask_run, tmp_path):
    root, _ = mask_run
    r = l2b_cli("predict", root / "run", "--data", root / "data", "--out", tmp_path / "pred")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["images"] == 20 and 0 <= report["dice"] <= 1 and report["cases"] == 20
    rows = list(csv.DictReader((tmp_path / "pred" / "predictions.csv").open()))
    assert len(rows) == 20 and rows[0]["path"].endswith("im00.png") and {r["height"] for r in rows} == {"24"}
    for row in rows[:3]:
        mask = np.asarray(Image.open(row["mask"]))
        assert mask.shape == (24, 24) and set(np.unique(mask)) <= {0, 1}  # the stored size, class indices
        shares = float(row["share_background"]) + float(row["share_foreground"])
        assert shares == pytest.approx(1.0) and float(row["share_foreground"]) == pytest.approx(mask.mean())
    r = l2b_cli("predict", root / "run", "--data", root / "data", "--out", tmp_path / "pred")
    assert r.returncode == 2 and "is not empty" in r.stderr
    r = l2b_cli("predict", root / "run", "--data", root / "data", "--out", tmp_path / "p.csv")
    assert r.returncode == 2 and "give a folder" in r.stderr


def test_relabel_a_mask_run_writes_the_flagged_masks_as_predicted_and_lists_all(mask_run, tmp_path):
    root, _ = mask_run
    pe = np.load(root / "run" / "per_example.npz")
    prob, given = pe["pred_prob"].astype(np.float32), pe["given_label"]
    from l2b.segmentation.metrics import dice_per_image

    quality = dice_per_image(given, prob.argmax(1), 2).mean(1).numpy()
    r = l2b_cli("relabel", root / "run", "--out", tmp_path / "rel", "--threshold", "0.5")
    assert r.returncode == 0, r.stderr
    assert f"changed {int((quality < 0.5).sum())} of {len(quality)} masks" in r.stdout
    assert "true masks known: mean Dice" in r.stdout
    rows = list(csv.DictReader((tmp_path / "rel" / "relabelled.csv").open()))
    assert len(rows) == len(quality) == 12
    for row in rows:
        changed = row["changed"] == "True"
        assert changed == (float(row["quality"]) < 0.5)
        assert (row["mask"] != row["given_mask"]) == changed
        if changed:
            assert np.asarray(Image.open(row["mask"])).shape == (24, 24)
    assert len(list((tmp_path / "rel" / "masks").iterdir())) == int((quality < 0.5).sum())


def test_a_volume_run_predicts_nifti_mask_volumes_at_the_stored_size(tmp_path):
    nibabel = pytest.importorskip("nibabel")
    shapes = make_shapes(12, size=20, seed=1)
    for d in ("images", "masks", "new"):
        (tmp_path / d).mkdir()
    for c in range(3):  # three volumes of four slices, slices along the last axis
        vol = np.moveaxis(shapes.images[4 * c : 4 * c + 4, 0], 0, -1) * 1000
        lab = np.moveaxis(shapes.masks[4 * c : 4 * c + 4], 0, -1).astype(np.uint8)
        nibabel.save(nibabel.Nifti1Image(vol.astype(np.float32), np.eye(4)), str(tmp_path / "images" / f"c{c}.nii.gz"))
        nibabel.save(nibabel.Nifti1Image(lab, np.eye(4)), str(tmp_path / "masks" / f"c{c}.nii.gz"))
    (tmp_path / "new" / "c9.nii.gz").write_bytes((tmp_path / "images" / "c0.nii.gz").read_bytes())
    cfg = TrainConfig(data="masks", data_root=str(tmp_path), noise="paper", num_meta=4, epochs=2, **SMALL)
    summary = run_experiment(cfg, out_dir=tmp_path / "run", progress=False, log=None)
    data = prepare_data(cfg)
    assert data.example_shape == (1, 20, 20) and len(np.unique(data.train.cases[data.meta_idx])) == 1
    assert summary["test_set"].startswith("whole cases") and len(data.test) == 4
    r = l2b_cli("predict", tmp_path / "run", "--data", tmp_path / "new", "--out", tmp_path / "pred")
    assert r.returncode == 0, r.stderr
    written = sorted(p.name for p in (tmp_path / "pred" / "masks").iterdir())
    assert written == ["c9_000.png", "c9_001.png", "c9_002.png", "c9_003.png", "c9_mask.nii.gz"]
    volume = np.asarray(nibabel.load(str(tmp_path / "pred" / "masks" / "c9_mask.nii.gz")).dataobj)
    assert volume.shape == (20, 20, 4)
    np.testing.assert_array_equal(volume[..., 2], np.asarray(Image.open(tmp_path / "pred" / "masks" / "c9_002.png")))


def test_report_on_mask_runs_shows_dice_the_ranking_and_overlays_by_file(mask_run, tmp_path):
    root, summary = mask_run
    r = l2b_cli("report", root / "run", "--out", tmp_path / "rep")
    assert r.returncode == 0, r.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| l2b seed 0"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "boundary" and cells[5].startswith(f"{summary['test_dice_at_best_meta']:.4f}")
    assert cells[7].endswith("of 12") and 0 <= float(cells[8]) <= 1  # AP: half the masks were corrupted
    assert "![Dice](dice.png)" in md and "(overlays_1.png)" in md
    assert (tmp_path / "rep" / "overlays_1.png").stat().st_size > 0
    # The last epoch's per-pixel weights, drawn beside each suspect mask: relative to each step's
    # mean weight per pixel, so over three equal batches of 4 the two maps average 1.
    pe = np.load(root / "run" / "per_example.npz")
    assert pe["alpha_map"].shape == pe["beta_map"].shape == (12, 16, 16) and pe["alpha_map"].dtype == np.float16
    total = pe["alpha_map"].astype(np.float64) + pe["beta_map"]
    assert np.isfinite(total).all() and (total >= 0).all() and abs(total.mean() - 1.0) < 1e-2
    assert "each pixel's weight on its given mask and on its pseudo-mask" in md
    with pytest.raises(ValueError, match="mix masks and class labels"):
        from l2b.reports.mask_report import report_kind
        from l2b.reports.plots import load_run

        digits = run_experiment(
            TrainConfig(epochs=1, method="ce", device="cpu"), out_dir=tmp_path / "d", progress=False, log=None
        )
        assert digits
        report_kind([load_run(root / "run"), load_run(tmp_path / "d")])


def test_the_promise12_paper_config_runs_on_promise12s_own_layout(tmp_path):
    """MetaImage volumes CaseNN.mhd with CaseNN_segmentation.mhd beside them (PROMISE12's layout),
    the shipped paper config (five-view pseudo-masks, the meta step, clipping) at a tiny size:
    whole cases for test and meta, a batch holding one image's five views accepted."""
    sitk = pytest.importorskip("SimpleITK")
    shapes = make_shapes(30, size=20, seed=2)
    for c in range(6):  # six cases of five slices
        sl = slice(5 * c, 5 * c + 5)
        sitk.WriteImage(sitk.GetImageFromArray(shapes.images[sl, 0] * 800), str(tmp_path / f"Case{c:02d}.mhd"))
        mask = shapes.masks[sl].astype(np.uint8)
        sitk.WriteImage(sitk.GetImageFromArray(mask), str(tmp_path / f"Case{c:02d}_segmentation.mhd"))
    r = l2b_cli(
        "train", "--config", "promise12-unetpp-paper", "--data-root", tmp_path, "--image-size", "16",
        "--test-cases", "2", "--meta-cases", "1", "--width", "4", "--depth", "2", "--epochs", "2",
        "--threads", "1", "--quiet", "--out", tmp_path / "run",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["num_meta"] == 5 and 0 <= summary["test_dice_at_best_meta"] <= 1
    files = list(csv.DictReader((tmp_path / "run" / "files.csv").open()))
    case = {
        role: {f["path"].rsplit("/", 1)[1].split(".")[0] for f in files if f["role"] == role}
        for role in ("train", "meta", "test")
    }
    assert len(case["test"]) == 2 and len(case["meta"]) == 1 and len(case["train"]) == 3
    assert not (case["train"] & case["meta"]) and not (case["test"] & (case["train"] | case["meta"]))
    r = l2b_cli("evaluate", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    scores = json.loads(r.stdout)
    assert scores["cases"] == 2 and scores["images"] == 10 and 0 <= scores["case_dice"] <= 1


def test_given_noisy_masks_beside_checked_ones_train_with_the_checked_as_truth(tmp_path):
    clean = write_folder(tmp_path / "data", n=12, size=24)
    (tmp_path / "noisy").mkdir()
    noisy = clean.copy()
    noisy[::2] = 0  # every other annotator drew nothing
    for i, m in enumerate(noisy):
        Image.fromarray((m * 255).astype(np.uint8)).save(tmp_path / "noisy" / f"im{i:02d}.png")
    cfg = TrainConfig(
        data="masks", data_root=str(tmp_path / "data"), noise="file", noise_file=str(tmp_path / "noisy"),
        num_meta=2, **SMALL,
    )  # fmt: skip
    data = prepare_data(cfg)
    assert data.truth_known and cfg.test_fraction == 0.2
    pool = [int(p[-6:-4]) for p in data.train.paths]  # image number of each pool position
    np.testing.assert_array_equal(data.noisy.labels, noisy[pool])
    np.testing.assert_array_equal(data.meta_labels, clean[pool][data.meta_idx])  # the checked masks
    assert data.realised_noise_rate == pytest.approx(
        float(np.mean(noisy[pool][data.train_idx] != clean[pool][data.train_idx]))
    )
    (tmp_path / "noisy" / "im03.png").unlink()
    with pytest.raises(ValueError, match=r"noise_file .*noisy: no mask named im03"):
        prepare_data(cfg)


def test_empty_folders_and_case_splits_that_leave_a_set_empty_are_refused(tmp_path):
    """An empty mask folder, a folder with no pairs at all, and case splits that leave the meta
    set or the training set without an image: each refused by name before training."""
    write_folder(tmp_path / "d", n=12, size=16, cases=3)
    for sub in ("nomasks/images", "nomasks/masks", "none/images", "none/masks"):
        (tmp_path / sub).mkdir(parents=True)
    Image.open(tmp_path / "d" / "images" / "im00.png").save(tmp_path / "nomasks" / "images" / "im00.png")
    listed = str(tmp_path / "d" / "list.csv")
    cases = [
        ({"data_root": str(tmp_path / "nomasks")}, r"nomasks/masks: no mask for image\(s\) im00"),
        ({"data_root": str(tmp_path / "none")}, "no image / mask pairs found"),
        ({"data_root": listed, "data_options": {"meta_cases": 0}}, "meta_cases=0 must be at least 1"),
        (
            {"data_root": listed, "data_options": {"meta_cases": 2, "test_cases": 2}},
            r"meta_cases=2: 2 cases asked for, and the data hold 1 \(after the test cases\)",
        ),
        (
            {"data_root": listed, "data_options": {"meta_cases": 1, "test_cases": 2}},
            "no image is left to train on after the meta and test sets",
        ),
    ]
    for options, message in cases:
        with pytest.raises(ValueError, match=message):
            run_experiment(
                TrainConfig(data="masks", noise="paper", epochs=1, **SMALL, **options),
                out_dir=tmp_path / "run",
                progress=False,
                log=None,
            )
        assert not (tmp_path / "run" / "checkpoint.pt").exists()
