"""Tests for l2b.noise (synthetic label noise)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l2b.noise import (
    CIFAR10_ASYMMETRIC_MAP,
    NOISE_KINDS,
    NoisyLabels,
    asymmetric_noise,
    cifar10_asymmetric_noise,
    empirical_transition,
    make_noise,
    pair_noise,
    symmetric_noise,
)


def _balanced(num_classes: int, per_class: int, seed: int = 0) -> np.ndarray:
    labels = np.repeat(np.arange(num_classes, dtype=np.int64), per_class)
    return np.random.default_rng(seed).permutation(labels)


GENERATORS = {
    "flip": lambda y, rate, seed: symmetric_noise(y, rate=rate, seed=seed),
    "uniform": lambda y, rate, seed: symmetric_noise(y, rate=rate, seed=seed, convention="uniform"),
    "pair": lambda y, rate, seed: pair_noise(y, rate=rate, seed=seed),
    "asym": lambda y, rate, seed: asymmetric_noise(y, rate=rate, mapping={0: 2, 2: 0, 7: 1}, seed=seed),
    "cifar10": lambda y, rate, seed: cifar10_asymmetric_noise(y, rate=rate, seed=seed),
}


@pytest.fixture(scope="module")
def y10() -> np.ndarray:
    return _balanced(10, 1000)


# ---------------------------------------------------------------- structure


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_result_structure_and_mask(name, y10):
    res = GENERATORS[name](y10, 0.4, 3)
    assert isinstance(res, NoisyLabels)
    assert res.labels.shape == y10.shape and res.labels.dtype == np.int64
    assert res.noise_mask.shape == y10.shape and res.noise_mask.dtype == np.bool_
    assert res.transition.shape == (10, 10) and res.transition.dtype == np.float64
    assert res.num_classes == 10
    np.testing.assert_array_equal(res.noise_mask, res.labels != y10)
    assert res.noise_rate == pytest.approx(res.noise_mask.mean())
    assert res.labels.min() >= 0 and res.labels.max() < 10


@pytest.mark.parametrize("name", sorted(GENERATORS))
@pytest.mark.parametrize("rate", [0.0, 0.2, 0.5, 0.8, 1.0])
def test_transition_rows_sum_to_one(name, rate, y10):
    t = GENERATORS[name](y10, rate, 0).transition
    np.testing.assert_allclose(t.sum(axis=1), 1.0, atol=1e-12)
    assert (t >= 0).all()


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_empirical_transition_matches_generator(name, y10):
    res = GENERATORS[name](y10, 0.45, 11)
    emp = empirical_transition(y10, res.labels, num_classes=10)
    np.testing.assert_allclose(emp.sum(axis=1), 1.0, atol=1e-12)
    # 1000 examples per class; per-cell sampling error is ~0.016 at worst.
    np.testing.assert_allclose(emp, res.transition, atol=0.06)


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_rate_zero_is_identity(name, y10):
    res = GENERATORS[name](y10, 0.0, 5)
    np.testing.assert_array_equal(res.labels, y10)
    np.testing.assert_array_equal(res.transition, np.eye(10))
    assert res.noise_rate == 0.0 and not res.noise_mask.any()


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_seeding_and_purity(name, y10):
    before = y10.copy()
    a = GENERATORS[name](y10, 0.3, 1)
    b = GENERATORS[name](y10, 0.3, 1)
    c = GENERATORS[name](y10, 0.3, 2)
    np.testing.assert_array_equal(y10, before)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)
    assert a.labels is not y10


def test_does_not_touch_global_rng(y10):
    np.random.seed(123)
    expected = np.random.random_sample(3)
    np.random.seed(123)
    for name in GENERATORS:
        GENERATORS[name](y10, 0.3, 1)
    np.testing.assert_array_equal(np.random.random_sample(3), expected)


def test_accepts_lists_and_other_int_dtypes():
    y = [0, 1, 2, 3] * 5
    a = symmetric_noise(y, rate=0.4, seed=0)
    b = symmetric_noise(np.asarray(y, dtype=np.uint8), rate=0.4, seed=0)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert b.labels.dtype == np.int64


# ------------------------------------------------------------------- rates


@pytest.mark.parametrize("rate", [0.1, 0.25, 0.5, 0.9, 1.0])
def test_flip_rate_exact_per_class(rate):
    y = np.concatenate([np.full(n, c) for c, n in enumerate([7, 30, 101, 400])]).astype(np.int64)
    res = symmetric_noise(y, rate=rate, seed=0)
    for c in range(4):
        sel = y == c
        n_c = int(sel.sum())
        assert abs(res.noise_mask[sel].mean() - rate) <= 0.5 / n_c + 1e-12
    assert abs(res.noise_rate - rate) <= 0.5 / 7 + 1e-12
    np.testing.assert_allclose(np.diag(res.transition), 1 - rate)
    assert res.transition[0, 1] == pytest.approx(rate / 3)


def test_flip_rate_one_changes_every_label(y10):
    res = symmetric_noise(y10, rate=1.0, seed=0)
    assert res.noise_mask.all()
    # the other K-1 classes are all reached
    emp = empirical_transition(y10, res.labels)
    assert (emp[~np.eye(10, dtype=bool)] > 0).all()


def test_uniform_rate_close_to_scaled(y10):
    rate = 0.6
    res = symmetric_noise(y10, rate=rate, seed=4, convention="uniform")
    assert res.noise_rate == pytest.approx(rate * 9 / 10, abs=0.02)
    np.testing.assert_allclose(np.diag(res.transition), 1 - rate + rate / 10)
    assert res.transition[0, 1] == pytest.approx(rate / 10)


def test_uniform_single_class_allowed():
    res = symmetric_noise(np.zeros(5, dtype=np.int64), rate=0.8, seed=0, convention="uniform")
    assert res.noise_rate == 0.0
    np.testing.assert_array_equal(res.transition, [[1.0]])


def test_pair_maps_to_next_class_exactly():
    y = _balanced(5, 40)
    res = pair_noise(y, rate=0.25, seed=9)
    np.testing.assert_array_equal(res.labels[res.noise_mask], (y[res.noise_mask] + 1) % 5)
    for c in range(5):
        assert res.noise_mask[y == c].sum() == 10
    expected = 0.75 * np.eye(5) + 0.25 * np.roll(np.eye(5), 1, axis=1)
    np.testing.assert_allclose(res.transition, expected)


def test_asymmetric_generic_mapping():
    y = _balanced(4, 50)
    res = asymmetric_noise(y, rate=0.4, mapping={1: 3}, seed=0)
    assert res.noise_mask[y == 1].sum() == 20
    assert not res.noise_mask[y != 1].any()
    np.testing.assert_array_equal(res.labels[res.noise_mask], 3)
    assert res.noise_rate == pytest.approx(20 / 200)
    expected = np.eye(4)
    expected[1, 1], expected[1, 3] = 0.6, 0.4
    np.testing.assert_allclose(res.transition, expected)


def test_cifar10_mapping_exact(y10):
    assert CIFAR10_ASYMMETRIC_MAP == {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
    res = cifar10_asymmetric_noise(y10, rate=0.4, seed=0)
    for src, dst in {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}.items():
        sel = y10 == src
        assert res.noise_mask[sel].sum() == 400
        np.testing.assert_array_equal(np.unique(res.labels[sel & res.noise_mask]), [dst])
    for c in (0, 1, 6, 7, 8):
        assert not res.noise_mask[y10 == c].any()
    # cat <-> dog in both directions
    assert ((y10 == 3) & (res.labels == 5)).sum() == 400
    assert ((y10 == 5) & (res.labels == 3)).sum() == 400
    assert res.transition[3, 5] == pytest.approx(0.4) and res.transition[5, 3] == pytest.approx(0.4)


# -------------------------------------------------------------- dispatcher


def test_make_noise_dispatch(y10):
    assert NOISE_KINDS == (
        "none",
        "symmetric",
        "symmetric-uniform",
        "pair",
        "cifar10-asymmetric",
        "cifar100-asymmetric",
        "cifar100-hierarchical",
    )
    none = make_noise("none", y10, rate=0.5, seed=0)
    np.testing.assert_array_equal(none.labels, y10)
    np.testing.assert_array_equal(none.transition, np.eye(10))
    assert none.labels is not y10
    pairs = [
        ("symmetric", symmetric_noise(y10, rate=0.3, seed=1)),
        ("symmetric-uniform", symmetric_noise(y10, rate=0.3, seed=1, convention="uniform")),
        ("pair", pair_noise(y10, rate=0.3, seed=1)),
        ("cifar10-asymmetric", cifar10_asymmetric_noise(y10, rate=0.3, seed=1)),
    ]
    for kind, expected in pairs:
        got = make_noise(kind, y10, rate=0.3, seed=1)
        np.testing.assert_array_equal(got.labels, expected.labels)
        np.testing.assert_array_equal(got.transition, expected.transition)


def test_num_classes_default_and_explicit():
    y = np.array([0, 1, 1, 2], dtype=np.int64)
    assert symmetric_noise(y, rate=0.0, seed=0).num_classes == 3
    res = symmetric_noise(y, rate=0.5, seed=0, num_classes=6)
    assert res.num_classes == 6 and res.transition.shape == (6, 6)


# ------------------------------------------------------ empirical transition


def test_empirical_transition_counts_and_empty_rows():
    clean = np.array([0, 0, 0, 0, 2, 2])
    noisy = np.array([0, 1, 1, 0, 2, 0])
    t = empirical_transition(clean, noisy, num_classes=4)
    expected = np.array([[0.5, 0.5, 0, 0], [0, 1, 0, 0], [0.5, 0, 0.5, 0], [0, 0, 0, 1]], dtype=float)
    np.testing.assert_allclose(t, expected)
    assert empirical_transition(clean, noisy).shape == (3, 3)


def test_empirical_transition_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        empirical_transition(np.array([0, 1]), np.array([0, 1, 1]))


# ------------------------------------------------------------- validation


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")])
def test_bad_rate(rate):
    with pytest.raises(ValueError, match=r"`rate` must lie in \[0, 1\]"):
        symmetric_noise(np.array([0, 1, 2]), rate=rate, seed=0)


def test_flip_single_class_positive_rate():
    with pytest.raises(ValueError, match="num_classes=1"):
        symmetric_noise(np.zeros(4, dtype=np.int64), rate=0.2, seed=0)
    with pytest.raises(ValueError, match="num_classes=1"):
        pair_noise(np.zeros(4, dtype=np.int64), rate=0.2, seed=0)
    assert symmetric_noise(np.zeros(4, dtype=np.int64), rate=0.0, seed=0).noise_rate == 0.0


@pytest.mark.parametrize(
    "labels, match",
    [
        (np.zeros((2, 3), dtype=np.int64), "1-D"),
        (np.array([0.0, 1.0, 2.0]), "integer dtype"),
        (np.array([0, -1, 2]), "non-negative"),
    ],
)
def test_bad_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        symmetric_noise(labels, rate=0.1, seed=0)


def test_labels_out_of_range_for_num_classes():
    with pytest.raises(ValueError, match=r"num_classes=3.*label 5"):
        pair_noise(np.array([0, 1, 5]), rate=0.1, num_classes=3, seed=0)
    with pytest.raises(ValueError, match="cifar10|num_classes=10"):
        cifar10_asymmetric_noise(np.array([0, 10]), rate=0.1, seed=0)


def test_bad_convention_and_kind():
    with pytest.raises(ValueError, match="`convention`.*'flipp'"):
        symmetric_noise(np.array([0, 1]), rate=0.1, seed=0, convention="flipp")
    with pytest.raises(ValueError, match="`kind`.*'gaussian'"):
        make_noise("gaussian", np.array([0, 1]), rate=0.1, seed=0)
    with pytest.raises(ValueError, match="must be 10"):
        make_noise("cifar10-asymmetric", np.array([0, 1]), rate=0.1, num_classes=5, seed=0)


@pytest.mark.parametrize(
    "mapping, match",
    [
        ({0: 3}, r"outside \[0, num_classes=3\)"),
        ({-1: 0}, r"outside \[0, num_classes=3\)"),
        ({1: 1}, "itself"),
    ],
)
def test_bad_mapping(mapping, match):
    with pytest.raises(ValueError, match=match):
        asymmetric_noise(np.array([0, 1, 2]), rate=0.2, mapping=mapping, seed=0)


def test_bad_num_classes_and_seed():
    with pytest.raises(ValueError, match="`num_classes`"):
        symmetric_noise(np.array([0, 1]), rate=0.1, num_classes=0, seed=0)
    with pytest.raises(ValueError, match="`num_classes` must be given"):
        symmetric_noise(np.array([], dtype=np.int64), rate=0.1, seed=0)
    with pytest.raises(ValueError, match="`seed`"):
        symmetric_noise(np.array([0, 1]), rate=0.1, seed=None)


def test_empty_labels_with_num_classes():
    res = symmetric_noise(np.array([], dtype=np.int64), rate=0.3, num_classes=3, seed=0)
    assert res.labels.shape == (0,) and res.noise_rate == 0.0
    np.testing.assert_allclose(res.transition.sum(axis=1), 1.0)


# ------------------------------------------------------------ properties


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.integers(min_value=0, max_value=7), min_size=1, max_size=300),
    rate=st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_property_flip_rate_and_rows(labels, rate, seed):
    y = np.asarray(labels, dtype=np.int64)
    k = int(y.max()) + 1
    if k == 1 and rate > 0:
        with pytest.raises(ValueError):
            symmetric_noise(y, rate=rate, seed=seed)
        return
    res = symmetric_noise(y, rate=rate, seed=seed)
    np.testing.assert_allclose(res.transition.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(res.noise_mask, res.labels != y)
    # each class deviates from rate * n_c by at most half an example
    for c in np.unique(y):
        sel = y == c
        assert abs(res.noise_mask[sel].sum() - rate * sel.sum()) <= 0.5 + 1e-9
    assert abs(res.noise_rate - rate) <= 0.5 * len(np.unique(y)) / y.size + 1e-9
