"""Batched augmentation (augment_batch), per-image transforms, FileListDataset and make_loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from l2b.data import ArrayDataset, FileListDataset, augment_batch, make_loader
from l2b.data import transforms as T

Image = pytest.importorskip("PIL.Image")


# ----------------------------------------------------------------------------------------------
# augment_batch
# ----------------------------------------------------------------------------------------------


def _batch(n=64, c=3, h=8, w=8, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed)) + 0.5  # never 0: padding shows


def _explain(x, out, p, mode):
    """For each example, the (dy, dx, flipped) windows of the padded input equal to the output."""
    n, _, h, w = x.shape
    padded = F.pad(x, (p, p, p, p), mode="constant" if mode == "zeros" else "reflect")
    found = []
    for i in range(n):
        matches = [
            (dy, dx, fl)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
            for fl in (False, True)
            if torch.equal(out[i], (lambda win: win.flip(-1) if fl else win)(padded[i, :, dy : dy + h, dx : dx + w]))
        ]
        assert matches, f"example {i} is not a padded crop (or its mirror) of the input"
        found.append(matches[0])
    return found


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_augment_batch_is_crop_and_flip(mode):
    x = _batch()
    before = x.clone()
    out = augment_batch(x, generator=torch.Generator().manual_seed(1), crop_padding=2, padding_mode=mode)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(x, before)  # input untouched
    found = _explain(x, out, 2, mode)
    offsets = {(dy, dx) for dy, dx, _ in found}
    flips = sum(fl for _, _, fl in found)
    assert len(offsets) > 8  # crops really vary (25 possible offsets, 64 examples)
    assert 12 <= flips <= 52  # about half flipped
    assert not torch.equal(out, x)


def test_augment_batch_reproducible_and_seed_dependent():
    x = _batch()
    a = augment_batch(x, generator=torch.Generator().manual_seed(7))
    b = augment_batch(x, generator=torch.Generator().manual_seed(7))
    c = augment_batch(x, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    g = torch.Generator().manual_seed(7)
    first, second = augment_batch(x, generator=g), augment_batch(x, generator=g)
    assert torch.equal(first, a) and not torch.equal(first, second)  # the generator advances


def test_augment_batch_options():
    x = _batch(n=32)
    only_flip = augment_batch(x, generator=torch.Generator().manual_seed(0), crop_padding=0)
    same = [torch.equal(o, i) for o, i in zip(only_flip, x)]
    mirrored = [torch.equal(o, i.flip(-1)) for o, i in zip(only_flip, x)]
    assert all(s or m for s, m in zip(same, mirrored)) and any(same) and any(mirrored)
    only_crop = augment_batch(x, generator=torch.Generator().manual_seed(0), crop_padding=3, flip=False)
    assert all(not fl for *_, fl in _explain(x, only_crop, 3, "zeros"))
    assert torch.equal(augment_batch(x, generator=None, crop_padding=0, flip=False), x)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        augment_batch(x[0], generator=None)
    with pytest.raises(ValueError, match="reflect padding"):
        augment_batch(x, generator=None, crop_padding=8, padding_mode="reflect")


def test_augment_batch_device_agnostic():
    x = _batch(n=16).to(torch.float64)
    ref = augment_batch(x, generator=torch.Generator().manual_seed(3))
    meta = augment_batch(x.to("meta"), generator=torch.Generator().manual_seed(3))
    assert meta.device.type == "meta" and meta.shape == x.shape and meta.dtype == torch.float64
    half = augment_batch(x.to(torch.bfloat16), generator=torch.Generator().manual_seed(3))
    assert torch.equal(half, ref.to(torch.bfloat16))  # pure data movement: exact in any dtype
    if torch.cuda.is_available():
        on_gpu = augment_batch(x.cuda(), generator=torch.Generator().manual_seed(3))
        assert on_gpu.is_cuda and torch.equal(on_gpu.cpu(), ref)  # CPU generator: same draws
        gpu_gen = augment_batch(x.cuda(), generator=torch.Generator("cuda").manual_seed(3))
        assert gpu_gen.is_cuda and gpu_gen.shape == x.shape


# ----------------------------------------------------------------------------------------------
# per-image transforms
# ----------------------------------------------------------------------------------------------


def _pil(w=40, h=30, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_transforms():
    img = _pil()
    g = torch.Generator().manual_seed(0)
    assert T.random_resized_crop(16)(img, g).size == (16, 16)
    assert T.resize(15)(img).size == (20, 15)  # shorter side
    assert T.center_crop(10)(img).size == (10, 10)
    assert T.center_crop((8, 12))(img).size == (12, 8)
    mirrored = T.horizontal_flip(p=1.0)(img)
    assert np.array_equal(np.asarray(mirrored), np.asarray(img)[:, ::-1])
    assert T.horizontal_flip(p=0.0)(img) is img
    x = T.to_tensor()(img)
    assert x.shape == (3, 30, 40) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert x[1, 2, 3] == pytest.approx(np.asarray(img)[2, 3, 1] / 255)
    y = T.normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))(x)
    assert torch.allclose(y, (x - 0.5) / 0.25)
    train = T.train_transform(24)
    a, b = train(img, torch.Generator().manual_seed(5)), train(img, torch.Generator().manual_seed(5))
    assert a.shape == (3, 24, 24) and torch.equal(a, b)
    boxes = {T.RandomResizedCrop(24).box(40, 30, torch.Generator().manual_seed(s)) for s in range(20)}
    assert len(boxes) > 10 and all(0 <= l < r <= 40 and 0 <= t < bt <= 30 for l, t, r, bt in boxes)  # noqa: E741
    assert T.eval_transform(16)(img).shape == (3, 16, 16)


# ----------------------------------------------------------------------------------------------
# FileListDataset and make_loader
# ----------------------------------------------------------------------------------------------


@pytest.fixture()
def image_files(tmp_path) -> tuple[list[Path], np.ndarray]:
    paths = []
    for i in range(12):
        p = tmp_path / f"{i}.jpg"
        _pil(20 + i, 18, seed=i).save(p)
        paths.append(p)
    return paths, np.arange(12) % 3


def test_file_list_dataset(image_files):
    paths, labels = image_files
    ds = FileListDataset(
        paths, labels, transform=T.compose(T.resize((8, 8)), T.to_tensor()), name="t", class_names=("a", "b", "c")
    )
    assert len(ds) == 12 and ds.num_classes == 3 and ds.path(4) == str(paths[4])
    x, y = ds[4]
    assert x.shape == (3, 8, 8) and y == 1
    with pytest.raises(AttributeError, match="decoded lazily"):
        ds.inputs
    sub = ds.subset(np.array([0, 5]), labels=np.array([2, 2]))
    assert len(sub) == 2 and sub[1][1] == 2 and sub.path(1) == str(paths[5])
    plain = FileListDataset(paths, labels, transform=lambda img: img.size, return_index=True)
    assert plain[3] == ((23, 18), 0, 3)
    with pytest.raises(ValueError, match=r"label 3 of example 0"):
        FileListDataset(paths[:1], [3], num_classes=3)


def _epochs(loader, n=2):
    return [[(x.clone(), y.clone()) for x, y in loader] for _ in range(n)]


def test_make_loader_seeded_with_and_without_workers(image_files):
    paths, labels = image_files
    ds = FileListDataset(
        paths, labels, transform=T.compose(T.random_resized_crop(8), T.horizontal_flip(), T.to_tensor())
    )
    ref = _epochs(make_loader(ds, batch_size=5, shuffle=True, seed=11))
    again = _epochs(make_loader(ds, batch_size=5, shuffle=True, seed=11))
    workers = _epochs(make_loader(ds, batch_size=5, shuffle=True, seed=11, num_workers=2))
    other = _epochs(make_loader(ds, batch_size=5, shuffle=True, seed=12))
    for a, b, c in zip(ref, again, workers):
        assert [len(y) for _, y in a] == [5, 5, 2]
        for (xa, ya), (xb, yb), (xc, yc) in zip(a, b, c):
            assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(xa, xc) and torch.equal(ya, yc)
    assert not torch.equal(ref[0][0][0], ref[1][0][0])  # a new order / augmentation every epoch
    assert not torch.equal(ref[0][0][0], other[0][0][0])
    seen = torch.cat([y for _, y in ref[0]])
    assert sorted(seen.tolist()) == sorted(labels.tolist())


def test_make_loader_on_arrays():
    data = ArrayDataset(np.arange(20, dtype=np.float32).reshape(10, 2), np.arange(10) % 2, 2)
    batches = list(make_loader(data, batch_size=4, shuffle=False))
    assert [len(y) for _, y in batches] == [4, 4, 2] and batches[0][0].dtype == torch.float32
    shuffled = torch.cat([y for _, y in make_loader(data, batch_size=4, shuffle=True, seed=1, drop_last=True)])
    assert len(shuffled) == 8
    with pytest.raises(TypeError, match="make_loader"):
        make_loader([1, 2], batch_size=1, shuffle=False)
