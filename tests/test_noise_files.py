"""Tests for l2b.noise.files (real noisy labels read from files).

Every file is tiny and written by the test itself into ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from l2b.noise import (
    LABEL_FILE_SUFFIXES,
    NoisyLabels,
    empirical_transition,
    load_noisy_labels,
    noisy_labels_from_file,
)

CLEAN = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1], dtype=np.int64)
WORSE = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 5, 7], dtype=np.int64)
AGGRE = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 3, 0, 1], dtype=np.int64)


def _cifar10n_like(path):
    """A CIFAR-10N-shaped ``.pt`` file: a dict of int64 numpy arrays."""
    torch.save(
        {
            "clean_label": CLEAN,
            "aggre_label": AGGRE,
            "worse_label": WORSE,
            "random_label1": AGGRE,
            "random_label2": WORSE,
            "random_label3": CLEAN,
        },
        path,
    )
    return path


# --------------------------------------------------------------------- .pt


def test_pt_cifar10n_like(tmp_path):
    path = _cifar10n_like(tmp_path / "CIFAR-10_human.pt")
    for key, expected in [("worse_label", WORSE), ("aggre_label", AGGRE), ("clean_label", CLEAN)]:
        got = load_noisy_labels(path, key=key, num_examples=12, num_classes=10)
        assert got.dtype == np.int64 and got.shape == (12,)
        np.testing.assert_array_equal(got, expected)
    # str paths work too
    np.testing.assert_array_equal(load_noisy_labels(str(path), key="worse_label"), WORSE)


def test_pt_cifar100n_like_with_lists_and_other_dtypes(tmp_path):
    path = tmp_path / "CIFAR-100_human.pt"
    torch.save(
        {
            "clean_label": np.arange(6, dtype=np.int64),
            "noisy_label": np.array([0, 1, 2, 3, 4, 4], dtype=np.int32),
            "clean_coarse_label": [0, 0, 1, 1, 2, 2],
            "noisy_coarse_label": [0, 0, 1, 1, 2, 2],
        },
        path,
    )
    np.testing.assert_array_equal(load_noisy_labels(path, key="noisy_label"), [0, 1, 2, 3, 4, 4])
    got = load_noisy_labels(path, key="noisy_coarse_label")
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, [0, 0, 1, 1, 2, 2])


def test_pt_tensors_and_bare_array(tmp_path):
    torch.save({"noisy_label": torch.tensor([3, 1, 2])}, tmp_path / "t.pt")
    np.testing.assert_array_equal(load_noisy_labels(tmp_path / "t.pt"), [3, 1, 2])  # single key
    torch.save(np.array([2, 2, 0]), tmp_path / "bare.pth")
    np.testing.assert_array_equal(load_noisy_labels(tmp_path / "bare.pth"), [2, 2, 0])
    with pytest.raises(ValueError, match=r"`key`='noisy_label' given.*bare\.pth.*single unnamed"):
        load_noisy_labels(tmp_path / "bare.pth", key="noisy_label")


def test_pt_written_by_numpy1(tmp_path):
    """The CIFAR-N releases name ``numpy.core.multiarray._reconstruct`` (numpy 1.x)."""
    src = _cifar10n_like(tmp_path / "new.pt")
    old = tmp_path / "old.pt"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(old, "w", zipfile.ZIP_STORED) as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            zout.writestr(name, data)
    np.testing.assert_array_equal(load_noisy_labels(old, key="worse_label"), WORSE)


def test_pt_missing_and_ambiguous_key(tmp_path):
    path = _cifar10n_like(tmp_path / "c10n.pt")
    with pytest.raises(ValueError) as info:
        load_noisy_labels(path, key="noisy_label")
    msg = str(info.value)
    assert "c10n.pt" in msg and "'noisy_label'" in msg
    for key in ("aggre_label", "worse_label", "random_label1", "random_label3", "clean_label"):
        assert key in msg
    with pytest.raises(ValueError, match=r"c10n\.pt.*several label sets.*worse_label"):
        load_noisy_labels(path)


class _Payload:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalPayload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (eval, (f"open({self.marker!r}, 'w').close()",))


@pytest.mark.parametrize("payload", [_Payload, _EvalPayload])
def test_malicious_torch_file_refused(tmp_path, payload):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"noisy_label": payload(marker)}, path)
    with pytest.raises(ValueError, match=r"refused to load .*evil\.pt"):
        load_noisy_labels(path, key="noisy_label")
    assert not marker.exists()


def test_malicious_plain_pickle_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil_plain.pt"
    with open(path, "wb") as f:
        pickle.dump({"noisy_label": _Payload(marker)}, f, protocol=2)
    with pytest.raises(ValueError, match=r"refused to load .*evil_plain\.pt") as info:
        load_noisy_labels(path, key="noisy_label")
    assert "weights_only` set to `False`" not in str(info.value)  # no unsafe advice
    assert not marker.exists()


def test_corrupt_torch_file_refused(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a torch file at all")
    with pytest.raises(ValueError, match=r"refused to load .*junk\.pt"):
        load_noisy_labels(path)


# ------------------------------------------------------------- .npy / .npz


def test_npy(tmp_path):
    np.save(tmp_path / "a.npy", WORSE.astype(np.uint8))
    got = load_noisy_labels(tmp_path / "a.npy", num_examples=12, num_classes=10)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, WORSE)


@pytest.mark.parametrize(
    "array, match",
    [
        (np.array([0.0, 1.0]), r"integer dtype, got dtype float64"),
        (np.zeros((2, 2), dtype=np.int64), r"1-D, got shape \(2, 2\)"),
        (np.array([0, -3]), "non-negative, got label -3"),
    ],
)
def test_npy_bad_content(tmp_path, array, match):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(ValueError, match=r"bad\.npy.*" + match):
        load_noisy_labels(tmp_path / "bad.npy")


def test_npy_object_array_refused(tmp_path):
    marker = tmp_path / "pwned"
    np.save(tmp_path / "obj.npy", np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"obj\.npy"):
        load_noisy_labels(tmp_path / "obj.npy")
    assert not marker.exists()


def test_npz(tmp_path):
    np.savez(tmp_path / "sets.npz", worse_label=WORSE, aggre_label=AGGRE)
    path = tmp_path / "sets.npz"
    np.testing.assert_array_equal(load_noisy_labels(path, key="aggre_label"), AGGRE)
    with pytest.raises(ValueError, match=r"'random_label1' not found.*\['aggre_label', 'worse_label'\]"):
        load_noisy_labels(path, key="random_label1")


# ------------------------------------------------------------ .csv / .txt


def test_txt_one_per_line(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("\n".join(map(str, WORSE)) + "\n\n")
    np.testing.assert_array_equal(load_noisy_labels(path, num_examples=12), WORSE)
    with pytest.raises(ValueError, match="single unnamed"):
        load_noisy_labels(path, key="label")


def test_csv_index_label_with_header_any_order(tmp_path):
    path = tmp_path / "labels.csv"
    order = np.random.default_rng(0).permutation(12)
    lines = ["index,label"] + [f"{i},{WORSE[i]}" for i in order]
    path.write_text("\n".join(lines) + "\n")
    np.testing.assert_array_equal(load_noisy_labels(path), WORSE)
    np.testing.assert_array_equal(load_noisy_labels(path, key="label"), WORSE)


def test_csv_several_columns(tmp_path):
    path = tmp_path / "multi.csv"
    rows = [f"{i},{w},{a}" for i, (w, a) in enumerate(zip(WORSE, AGGRE))]
    lines = ["idx,worse_label,aggre_label", *rows]
    path.write_text("\r\n".join(lines))
    np.testing.assert_array_equal(load_noisy_labels(path, key="aggre_label"), AGGRE)
    with pytest.raises(ValueError, match=r"multi\.csv.*several label sets.*aggre.*worse"):
        load_noisy_labels(path)
    with pytest.raises(ValueError, match=r"'noisy_label' not found.*multi\.csv"):
        load_noisy_labels(path, key="noisy_label")


@pytest.mark.parametrize(
    "text, match",
    [
        ("index,label\n0,1\n1,cat\n", r"line 3: column 'label' must be an integer, got 'cat'"),
        ("1\n2.5\n", r"line 2: column 'label' must be an integer, got '2.5'"),
        ("index,label\n0,1\n1,2,3\n", r"line 3: expected 2 comma-separated values, got 3"),
        ("index,label\n0,1\n0,2\n", r"line 3: column 'index' .* duplicate index 0"),
        ("index,label\n0,1\n5,2\n", r"line 3: column 'index' .* out-of-range .* index 5"),
        ("0,1\n1,2\n", r"line 1: a file with 2 columns needs a header"),
        ("label,label\n1,2\n", r"line 1: header columns must be non-empty and unique"),
        ("index\n0\n1\n", r"no label column besides the index"),
        ("1\n99999999999999999999999\n", r"line 2: value .* does not fit in int64"),
    ],
)
def test_malformed_csv(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"bad\.csv.*" + match):
        load_noisy_labels(path)


def test_non_utf8_text(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes(b"\xff\xfe1\n")
    with pytest.raises(ValueError, match=r"latin\.txt.*UTF-8"):
        load_noisy_labels(path)


# ------------------------------------------------------------------- .json


def test_json_list_and_object(tmp_path):
    (tmp_path / "l.json").write_text(json.dumps(WORSE.tolist()))
    np.testing.assert_array_equal(load_noisy_labels(tmp_path / "l.json"), WORSE)
    (tmp_path / "d.json").write_text(json.dumps({"worse_label": WORSE.tolist(), "note": "x"}))
    np.testing.assert_array_equal(load_noisy_labels(tmp_path / "d.json", key="worse_label"), WORSE)
    with pytest.raises(ValueError, match=r"d\.json.*key='note'.*expected an array or list"):
        load_noisy_labels(tmp_path / "d.json", key="note")


@pytest.mark.parametrize(
    "obj, match",
    [
        ([0, 1, 2.5], r"labels must be integers, got 2\.5 at position 2"),
        ([0, True], r"labels must be integers, got True at position 1"),
        ("0 1 2", "must hold a JSON list"),
        ([[0, 1], [1, 2]], r"labels must be integers, got \[0, 1\]"),
    ],
)
def test_json_bad_content(tmp_path, obj, match):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(obj))
    with pytest.raises(ValueError, match=r"bad\.json.*" + match):
        load_noisy_labels(path)


def test_json_syntax_error(tmp_path):
    (tmp_path / "broken.json").write_text("[0, 1,")
    with pytest.raises(ValueError, match=r"broken\.json.*not valid JSON"):
        load_noisy_labels(tmp_path / "broken.json")


# -------------------------------------------------------------- validation


def test_wrong_length_names_file_key_and_value(tmp_path):
    path = _cifar10n_like(tmp_path / "c10n.pt")
    with pytest.raises(ValueError, match=r"c10n\.pt.*key='worse_label'.*num_examples=50000.*got 12"):
        load_noisy_labels(path, key="worse_label", num_examples=50000)


def test_out_of_range_names_file_key_and_value(tmp_path):
    path = _cifar10n_like(tmp_path / "c10n.pt")
    with pytest.raises(ValueError, match=r"c10n\.pt.*key='worse_label'.*num_classes=8.*label 8 at position 8"):
        load_noisy_labels(path, key="worse_label", num_classes=8)
    (tmp_path / "a.txt").write_text("0\n1\n7\n")
    with pytest.raises(ValueError, match=r"a\.txt.*num_classes=3.*label 7 at position 2"):
        load_noisy_labels(tmp_path / "a.txt", num_classes=3)


def test_suffix_missing_file_and_arguments(tmp_path):
    assert ".pt" in LABEL_FILE_SUFFIXES and ".csv" in LABEL_FILE_SUFFIXES
    with pytest.raises(ValueError, match=r"unsupported label file .*labels\.pkl.*'\.pkl'"):
        load_noisy_labels(tmp_path / "labels.pkl")
    with pytest.raises(FileNotFoundError, match=r"nothere\.npy"):
        load_noisy_labels(tmp_path / "nothere.npy")
    (tmp_path / "a.txt").write_text("0\n1\n")
    with pytest.raises(ValueError, match="`num_examples`"):
        load_noisy_labels(tmp_path / "a.txt", num_examples=-1)
    with pytest.raises(ValueError, match="`num_classes`"):
        load_noisy_labels(tmp_path / "a.txt", num_classes=0)


# --------------------------------------------------------- NoisyLabels from file


def test_noisy_labels_from_file(tmp_path):
    path = _cifar10n_like(tmp_path / "c10n.pt")
    clean = CLEAN.copy()
    res = noisy_labels_from_file(clean, path, key="worse_label")
    np.testing.assert_array_equal(clean, CLEAN)  # not mutated
    assert isinstance(res, NoisyLabels) and res.num_classes == 10
    np.testing.assert_array_equal(res.labels, WORSE)
    assert res.noise_rate == pytest.approx(2 / 12)
    np.testing.assert_array_equal(res.noise_mask, WORSE != CLEAN)
    np.testing.assert_allclose(res.transition, empirical_transition(CLEAN, WORSE, num_classes=10))
    np.testing.assert_allclose(res.transition.sum(axis=1), 1.0)
    assert res.transition[0, 5] == pytest.approx(0.5)
    assert noisy_labels_from_file(clean, path, key="clean_label").noise_rate == 0.0
    assert noisy_labels_from_file(clean, path, key="worse_label", num_classes=12).num_classes == 12


def test_noisy_labels_from_file_length_mismatch(tmp_path):
    (tmp_path / "short.json").write_text("[0, 1, 2]")
    with pytest.raises(ValueError, match=r"short\.json.*num_examples=12.*got 3"):
        noisy_labels_from_file(CLEAN, tmp_path / "short.json")
