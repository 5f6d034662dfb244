"""Segmentation data from the files users have: image + mask folders, CSV lists, NIfTI and
MetaImage volumes; clear refusals for masks that do not fit."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from l2b.segmentation import read_mask, read_mask_csv, read_mask_folder, read_volumes


def _image(path, h=12, w=10, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def _index_png(path, mask):
    im = Image.fromarray(mask.astype(np.uint8), mode="P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    im.save(path)


@pytest.fixture
def folders(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for i in range(3):
        _image(images / f"s{i}.jpg", seed=i)
        m = np.zeros((12, 10), np.uint8)
        m[2 : 5 + i, 3:7] = 1
        m[8:10, 1:3] = 2
        _index_png(masks / f"s{i}.png", m)
    return images, masks


def test_a_folder_of_images_and_index_masks(folders):
    images, masks = folders
    data = read_mask_folder(images, masks)
    assert data.images.shape == (3, 3, 12, 10) and data.images.dtype == np.float32
    assert data.masks.shape == (3, 12, 10) and data.num_classes == 3
    assert data.masks[1, 2:6, 3:7].all() and (data.masks[1, 8:10, 1:3] == 2).all()
    assert data.paths[0].endswith("s0.jpg") and data.mask_paths[2].endswith("s2.png")
    assert list(data.cases) == ["s0", "s1", "s2"]
    resized = read_mask_folder(images, masks, image_size=(24, 20), channels=1)
    assert resized.images.shape == (3, 1, 24, 20) and resized.masks.shape == (3, 24, 20)
    assert set(np.unique(resized.masks)) == {0, 1, 2}  # nearest neighbour: no new classes


def test_binary_masks_0_255_and_refusals(tmp_path, folders):
    images, masks = folders
    Image.fromarray(np.where(np.eye(12, 10) > 0, 255, 0).astype(np.uint8), mode="L").save(tmp_path / "b.png")
    assert set(np.unique(read_mask(tmp_path / "b.png"))) == {0, 1}
    smooth = np.zeros((12, 10), np.uint8)
    smooth[3:6, 3:6], smooth[2, 3:6] = 255, 128  # an anti-aliased edge
    Image.fromarray(smooth, mode="L").save(masks / "s1.png")
    with pytest.raises(ValueError, match=r"mask .*s1\.png: values \{0, 128, 255\} are neither class indices"):
        read_mask_folder(images, masks)
    _index_png(masks / "s1.png", np.zeros((6, 10), np.uint8))
    with pytest.raises(ValueError, match=r"mask .*s1\.png is 10x6 but its image .*s1\.jpg is 10x12"):
        read_mask_folder(images, masks)
    (masks / "s1.png").unlink()
    with pytest.raises(ValueError, match=r"masks: no mask for image\(s\) s1"):
        read_mask_folder(images, masks)
    Image.fromarray(np.zeros((12, 10, 3), np.uint8) + np.array([255, 0, 0], np.uint8)).save(masks / "s1.png")
    with pytest.raises(ValueError, match="a colour image"):
        read_mask_folder(images, masks)


def test_a_csv_of_pairs_with_cases_and_given_noisy_masks(tmp_path, folders):
    images, masks = folders
    noisy = tmp_path / "noisy"
    noisy.mkdir()
    for i in range(3):
        _index_png(noisy / f"s{i}.png", np.zeros((12, 10), np.uint8))
    lines = ["image,mask,case,other_mask"] + [
        f"images/s{i}.jpg,masks/s{i}.png,patient{i // 2},noisy/s{i}.png" for i in range(3)
    ]
    (tmp_path / "pairs.csv").write_text("\n".join(lines) + "\n")
    data = read_mask_csv(tmp_path / "pairs.csv")
    assert list(data.cases) == ["patient0", "patient0", "patient1"]
    assert data.other_masks is not None and data.other_masks.sum() == 0 and data.masks.sum() > 0
    (tmp_path / "bad.csv").write_text("picture,mask\nimages/s0.jpg,masks/s0.png\n")
    with pytest.raises(ValueError, match=r"bad\.csv: no column 'image' \(columns: picture, mask\)"):
        read_mask_csv(tmp_path / "bad.csv")
    (tmp_path / "gone.csv").write_text("image,mask\nimages/s0.jpg,masks/nope.png\n")
    with pytest.raises(ValueError, match=r"gone\.csv, line 2: mask masks/nope\.png does not exist"):
        read_mask_csv(tmp_path / "gone.csv")


def test_nifti_and_metaimage_volumes_are_sliced_with_their_case(tmp_path):
    nib = pytest.importorskip("nibabel")
    sitk = pytest.importorskip("SimpleITK")
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    rng = np.random.default_rng(0)
    vol = rng.normal(size=(8, 8, 3)).astype(np.float32)  # NIfTI: slices along the last axis
    lab = np.zeros((8, 8, 3), np.uint8)
    lab[2:5, 2:5, 1] = 1
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "img" / "case01.nii.gz")
    nib.save(nib.Nifti1Image(lab, np.eye(4)), tmp_path / "lab" / "case01.nii.gz")
    mhd = rng.normal(size=(2, 8, 8)).astype(np.float32)  # MetaImage: slices first
    mlab = np.zeros((2, 8, 8), np.uint8)
    mlab[0, 1:3, 1:3] = 1
    sitk.WriteImage(sitk.GetImageFromArray(mhd), str(tmp_path / "img" / "Case02.mhd"))
    sitk.WriteImage(sitk.GetImageFromArray(mlab), str(tmp_path / "lab" / "Case02_segmentation.mhd"))
    data = read_volumes(tmp_path / "img", tmp_path / "lab")
    assert data.images.shape == (5, 1, 8, 8) and data.masks.shape == (5, 8, 8)
    assert list(data.cases) == ["Case02", "Case02", "case01", "case01", "case01"]
    assert data.masks[3].sum() == 9 and data.masks[0].sum() == 4 and data.paths[3].endswith("case01.nii.gz#1")
    assert 0 <= data.images.min() and data.images.max() <= 1
    bigger = read_volumes(tmp_path / "img", tmp_path / "lab", image_size=16)
    assert bigger.masks.shape == (5, 16, 16) and bigger.masks[3].sum() == 36


def test_volumes_without_the_medical_extra_say_what_to_install(tmp_path, monkeypatch):
    from l2b.segmentation import data as data_module

    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    for d in ("img", "lab"):
        (tmp_path / d / "a.mhd").write_text("ObjectType = Image\n")
    monkeypatch.setattr(data_module, "_volume_reader", lambda: (None, None))
    with pytest.raises(ValueError, match=r"needs SimpleITK: pip install 'l2b\[medical\]'"):
        read_volumes(tmp_path / "img", tmp_path / "lab")


def test_the_synthetic_shapes_are_seeded_and_not_thresholdable():
    from l2b.segmentation import dice_per_image
    from l2b.segmentation.synthetic import make_shapes

    a, b = make_shapes(40, seed=3), make_shapes(40, seed=3)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)
    assert a.images.shape == (40, 1, 48, 48) and 0.02 < a.masks.mean() < 0.4 and len(set(a.cases)) == 40
    three = make_shapes(40, classes=3, seed=1)
    assert set(np.unique(three.masks)) == {0, 1, 2} and three.num_classes == 3
    x = a.images[:, 0]
    best = max(
        float(dice_per_image(((x > t) if up else (x < t)).astype(np.int64), a.masks, 2).mean())
        for t in np.linspace(0, 1, 41)
        for up in (True, False)
    )
    assert best < 0.4  # brightness alone does not find the objects: their texture does


def test_mask_issues_corrected_masks_and_overlays_name_files(tmp_path):
    from l2b.segmentation import mask_issues, overlay_figure, read_mask, save_masks, write_mask_issues

    given = np.zeros((3, 8, 8), np.int64)
    given[:, 2:6, 2:6] = 1
    given[2] = 0  # the third mask lost its object
    probs = np.zeros((3, 2, 8, 8))
    probs[:, 0] = 0.9
    probs[:, 1] = 0.1
    probs[:, 1, 2:6, 2:6], probs[:, 0, 2:6, 2:6] = 0.8, 0.2  # the model sees the object everywhere
    paths = ["/data/a.png", "/data/b.png", "/data/vol.nii.gz#7"]
    rows = mask_issues(probs, given, paths, class_names=["background", "prostate"])
    assert [r["path"] for r in rows][0] == "/data/vol.nii.gz#7"  # most suspect first
    assert rows[0]["quality"] == 0.0 and rows[0]["wrong_share"] == 16 / 64 and rows[0]["is_issue"]
    assert rows[0]["worst_class"] == "prostate" and not rows[1]["is_issue"]
    csv_path = write_mask_issues(rows, tmp_path / "mask_issues.csv")
    assert csv_path.read_text().splitlines()[1].startswith("/data/vol.nii.gz#7,2,0.0,0.25,prostate,True")
    written = save_masks(probs.argmax(1), paths, tmp_path / "corrected")
    assert [p.name for p in written] == ["a.png", "b.png", "vol_007.png"]
    assert np.array_equal(read_mask(written[2]), probs.argmax(1)[2])
    with pytest.raises(ValueError, match="two masks would be written to a.png"):
        save_masks(given[:2], ["x/a.png", "y/a.jpg"], tmp_path / "clash")
    figure = overlay_figure(
        np.zeros((2, 1, 8, 8)), given[:2], given[:2], tmp_path / "o.png", weights={"weight": probs[:2, 1]}
    )
    assert figure.stat().st_size > 0
