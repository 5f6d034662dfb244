"""Tests for the CIFAR-100, transition-matrix and instance-dependent noise generators."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_noise import _balanced

from l2b.noise import (
    CIFAR100_ASYMMETRIC_MAP,
    CIFAR100_COARSE_LABEL_NAMES,
    CIFAR100_FINE_LABEL_NAMES,
    NoisyLabels,
    cifar100_asymmetric_noise,
    cifar100_hierarchical_noise,
    cifar100_superclasses,
    empirical_transition,
    instance_dependent_noise,
    make_noise,
    transition_noise,
)


def _random_transition(k: int, seed: int) -> np.ndarray:
    t = np.random.default_rng(seed).random((k, k)) + 2.0 * np.eye(k)
    return t / t.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def y100() -> np.ndarray:
    return _balanced(100, 100)


@pytest.fixture(scope="module")
def y10() -> np.ndarray:
    return _balanced(10, 400)


@pytest.fixture(scope="module")
def x10(y10) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(y10.size, 2, 4, 4))


T5 = _random_transition(5, 7)

# name -> (labels fixture, generator(labels, features, rate, seed))
NEW_GENERATORS = {
    "cifar100-asym": (
        "y100",
        lambda y, x, rate, seed: cifar100_asymmetric_noise(y, rate=rate, seed=seed),
    ),
    "cifar100-hier": (
        "y100",
        lambda y, x, rate, seed: cifar100_hierarchical_noise(y, rate=rate, seed=seed),
    ),
    "transition": (
        "y10",
        lambda y, x, rate, seed: transition_noise(y % 5, transition=(1 - rate) * np.eye(5) + rate * T5, seed=seed),
    ),
    "instance": (
        "y10",
        lambda y, x, rate, seed: instance_dependent_noise(y, x, rate=rate, seed=seed),
    ),
}


def _run(name, request, rate, seed):
    fixture, gen = NEW_GENERATORS[name]
    y = request.getfixturevalue(fixture)
    x = request.getfixturevalue("x10")
    return y, x, gen(y, x, rate, seed)


# ------------------------------------------------------- CIFAR-100 hierarchy


def test_cifar100_names():
    assert len(CIFAR100_FINE_LABEL_NAMES) == 100 == len(set(CIFAR100_FINE_LABEL_NAMES))
    assert len(CIFAR100_COARSE_LABEL_NAMES) == 20 == len(set(CIFAR100_COARSE_LABEL_NAMES))
    # the cifar-100-python meta file lists both in alphabetical order
    assert list(CIFAR100_FINE_LABEL_NAMES) == sorted(CIFAR100_FINE_LABEL_NAMES)
    assert list(CIFAR100_COARSE_LABEL_NAMES) == sorted(CIFAR100_COARSE_LABEL_NAMES)
    assert CIFAR100_FINE_LABEL_NAMES[0] == "apple" and CIFAR100_FINE_LABEL_NAMES[99] == "worm"
    assert CIFAR100_COARSE_LABEL_NAMES[4] == "fruit_and_vegetables"


def test_cifar100_superclasses_table():
    sup = cifar100_superclasses()
    assert sup.shape == (100,) and sup.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(sup, minlength=20), np.full(20, 5))
    np.testing.assert_array_equal(np.flatnonzero(sup == 4), [0, 51, 53, 57, 83])
    np.testing.assert_array_equal(np.flatnonzero(sup == 0), [4, 30, 55, 72, 95])
    fine, coarse = CIFAR100_FINE_LABEL_NAMES, CIFAR100_COARSE_LABEL_NAMES
    known = {
        "people": ("baby", "boy", "girl", "man", "woman"),
        "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
        "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
        "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
        "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    }
    for group, members in known.items():
        assert {fine[i] for i in np.flatnonzero(sup == coarse.index(group))} == set(members)
    # a fresh copy each time
    sup[:] = 0
    assert cifar100_superclasses()[95] == 0 and cifar100_superclasses()[99] != 0


def test_cifar100_asymmetric_map():
    sup = cifar100_superclasses()
    assert sorted(CIFAR100_ASYMMETRIC_MAP) == list(range(100))
    assert sorted(CIFAR100_ASYMMETRIC_MAP.values()) == list(range(100))  # a permutation
    for src, dst in CIFAR100_ASYMMETRIC_MAP.items():
        assert src != dst and sup[src] == sup[dst]
    assert [CIFAR100_ASYMMETRIC_MAP[c] for c in (4, 30, 55, 72, 95)] == [30, 55, 72, 95, 4]
    assert [CIFAR100_ASYMMETRIC_MAP[c] for c in (0, 51, 53, 57, 83)] == [51, 53, 57, 83, 0]


# -------------------------------------------------------- shared behaviour


@pytest.mark.parametrize("name", sorted(NEW_GENERATORS))
def test_structure_rows_and_rate(name, request):
    y, _, res = _run(name, request, 0.4, 3)
    if name == "transition":
        y = y % 5
    k = 100 if name.startswith("cifar100") else (5 if name == "transition" else 10)
    assert isinstance(res, NoisyLabels)
    assert res.labels.shape == y.shape and res.labels.dtype == np.int64
    assert res.transition.shape == (k, k) and res.transition.dtype == np.float64
    np.testing.assert_allclose(res.transition.sum(axis=1), 1.0, atol=1e-12)
    assert (res.transition >= 0).all()
    np.testing.assert_array_equal(res.noise_mask, res.labels != y)
    assert res.noise_rate == pytest.approx(res.noise_mask.mean())
    expected = 0.4 * (1 - np.diag(T5)).mean() if name == "transition" else 0.4
    assert res.noise_rate == pytest.approx(expected, abs=0.03)
    emp = empirical_transition(y, res.labels, num_classes=k)
    # CIFAR-100 hierarchical: 40 flips per class spread over 4 siblings, sd ~0.03 per cell
    np.testing.assert_allclose(emp, res.transition, atol=0.12 if name == "cifar100-hier" else 0.07)


@pytest.mark.parametrize("name", sorted(NEW_GENERATORS))
def test_seeding_and_purity(name, request):
    y = request.getfixturevalue(NEW_GENERATORS[name][0])
    x = request.getfixturevalue("x10")
    y_before, x_before = y.copy(), x.copy()
    _, _, a = _run(name, request, 0.3, 1)
    _, _, b = _run(name, request, 0.3, 1)
    _, _, c = _run(name, request, 0.3, 2)
    np.testing.assert_array_equal(y, y_before)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)


def test_new_generators_do_not_touch_global_rng(request):
    np.random.seed(7)
    expected = np.random.random_sample(3)
    np.random.seed(7)
    for name in NEW_GENERATORS:
        _run(name, request, 0.3, 1)
    np.testing.assert_array_equal(np.random.random_sample(3), expected)


# ------------------------------------------------------ CIFAR-100 generators


def test_cifar100_asymmetric_exact(y100):
    res = cifar100_asymmetric_noise(y100, rate=0.35, seed=0)
    assert res.num_classes == 100
    for c in range(100):
        sel = y100 == c
        assert res.noise_mask[sel].sum() == 35
        np.testing.assert_array_equal(np.unique(res.labels[sel & res.noise_mask]), [CIFAR100_ASYMMETRIC_MAP[c]])
    assert res.transition[4, 30] == pytest.approx(0.35)
    assert res.transition[4, 4] == pytest.approx(0.65)
    assert res.transition[95, 4] == pytest.approx(0.35)


def test_cifar100_hierarchical_exact(y100):
    sup = cifar100_superclasses()
    res = cifar100_hierarchical_noise(y100, rate=1.0, seed=0)
    assert res.noise_mask.all()
    np.testing.assert_array_equal(sup[res.labels], sup[y100])  # super-class kept
    emp = empirical_transition(y100, res.labels, num_classes=100)
    same = sup[:, None] == sup[None, :]
    assert (emp[same & ~np.eye(100, dtype=bool)] > 0).all()  # every sibling reached
    assert (emp[~same] == 0).all()

    res = cifar100_hierarchical_noise(y100, rate=0.3, seed=1)
    for c in (0, 17, 99):
        assert res.noise_mask[y100 == c].sum() == 30
    t = res.transition
    np.testing.assert_allclose(np.diag(t), 0.7)
    np.testing.assert_allclose(t[0, [51, 53, 57, 83]], 0.075)
    assert (t[~same] == 0).all()
    np.testing.assert_array_equal(cifar100_hierarchical_noise(y100, rate=0.0, seed=1).transition, np.eye(100))


def test_cifar100_label_range():
    with pytest.raises(ValueError, match=r"num_classes=100.*label 100"):
        cifar100_hierarchical_noise(np.array([0, 100]), rate=0.1, seed=0)
    with pytest.raises(ValueError, match=r"num_classes=100.*label 100"):
        cifar100_asymmetric_noise(np.array([0, 100]), rate=0.1, seed=0)


def test_make_noise_cifar100_kinds(y100):
    for kind, fn in [
        ("cifar100-asymmetric", cifar100_asymmetric_noise),
        ("cifar100-hierarchical", cifar100_hierarchical_noise),
    ]:
        got = make_noise(kind, y100, rate=0.2, seed=4)
        expected = fn(y100, rate=0.2, seed=4)
        np.testing.assert_array_equal(got.labels, expected.labels)
        np.testing.assert_array_equal(got.transition, expected.transition)
        assert make_noise(kind, y100, rate=0.2, seed=4, num_classes=100).num_classes == 100
        with pytest.raises(ValueError, match="must be 100"):
            make_noise(kind, y100, rate=0.2, seed=4, num_classes=10)


# --------------------------------------------------------- transition noise


def test_transition_noise_matches_matrix():
    t = np.array([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.2, 0.0, 0.8]])
    t_before = t.copy()
    y = _balanced(3, 4000)
    res = transition_noise(y, transition=t, seed=0)
    np.testing.assert_array_equal(t, t_before)
    np.testing.assert_array_equal(res.transition, t)
    assert res.transition is not t
    emp = empirical_transition(y, res.labels, num_classes=3)
    np.testing.assert_allclose(emp, t, atol=0.03)
    assert (emp[t == 0] == 0).all()  # zero-probability flips never happen
    assert res.noise_rate == pytest.approx((0.5 + 0.2) / 3, abs=0.02)


def test_transition_noise_identity_and_extra_classes():
    y = np.array([0, 1, 1, 2], dtype=np.int64)
    res = transition_noise(y, transition=np.eye(6), seed=3)
    np.testing.assert_array_equal(res.labels, y)
    assert res.num_classes == 6 and res.noise_rate == 0.0
    # rows may be off by less than 1e-6
    near = np.full((2, 2), 0.5) + np.array([[4e-7, 0], [0, 0]])
    assert transition_noise([0, 1], transition=near, seed=0).labels.shape == (2,)
    empty = transition_noise(np.array([], dtype=np.int64), transition=np.eye(2), seed=0)
    assert empty.labels.shape == (0,) and empty.noise_rate == 0.0


@pytest.mark.parametrize(
    "matrix, match",
    [
        (np.ones((2, 3)) / 3, "square"),
        (np.ones(3) / 3, "square"),
        (np.array([[1.2, -0.2], [0.0, 1.0]]), r"non-negative.*\[0, 1\] = -0\.2"),
        (np.array([[0.5, 0.4], [0.0, 1.0]]), r"sum to 1.*row 0"),
        (np.array([[np.nan, 1.0], [0.0, 1.0]]), "finite"),
        ("abc", "`transition`"),
    ],
)
def test_transition_noise_bad_matrix(matrix, match):
    with pytest.raises(ValueError, match=match):
        transition_noise(np.array([0, 1]), transition=matrix, seed=0)


def test_transition_noise_label_out_of_range():
    with pytest.raises(ValueError, match=r"K=2.*label 2"):
        transition_noise(np.array([0, 2]), transition=np.eye(2), seed=0)
    with pytest.raises(ValueError, match="`seed`"):
        transition_noise(np.array([0, 1]), transition=np.eye(2), seed=-1)


# -------------------------------------------------- instance-dependent noise


def _truncated_normal_mean(mean: float, std: float) -> float:
    """Mean of N(mean, std**2) truncated to [0, 1]."""
    pdf = lambda z: math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)  # noqa: E731
    cdf = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731
    a, b = (0 - mean) / std, (1 - mean) / std
    return mean + std * (pdf(a) - pdf(b)) / (cdf(b) - cdf(a))


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5])
def test_instance_rate_close(rate):
    rng = np.random.default_rng(5)
    y = rng.integers(0, 10, size=4000)
    x = rng.normal(size=(4000, 32)).astype(np.float32)
    res = instance_dependent_noise(y, x, rate=rate, seed=11)
    # each example flips with probability q_i exactly, E[q_i] = the truncated-normal mean
    # (0.129 for rate 0.1, ~rate otherwise); binomial sd of the mean is < 0.01
    assert res.noise_rate == pytest.approx(_truncated_normal_mean(rate, 0.1), abs=0.025)
    assert res.noise_rate == pytest.approx(rate, abs=0.05)
    np.testing.assert_allclose(res.transition, empirical_transition(y, res.labels, num_classes=10))
    np.testing.assert_allclose(res.transition.sum(axis=1), 1.0, atol=1e-12)


def test_instance_depends_on_features(y10, x10):
    a = instance_dependent_noise(y10, x10, rate=0.5, seed=0)
    # scale does not matter (features are normalised to unit norm)
    b = instance_dependent_noise(y10, 1e3 * x10, rate=0.5, seed=0)
    assert (a.labels == b.labels).mean() > 0.999
    # other features, same seed: other noisy labels
    c = instance_dependent_noise(y10, np.flip(x10, axis=0), rate=0.5, seed=0)
    assert not np.array_equal(a.labels, c.labels)
    # num_classes larger than needed, images of any shape
    d = instance_dependent_noise(y10, x10.reshape(len(y10), -1), rate=0.5, seed=0, num_classes=12)
    assert d.num_classes == 12 and d.labels.max() < 12


def test_instance_norm_std_extremes(y10, x10):
    none = instance_dependent_noise(y10, x10, rate=0.0, seed=0, norm_std=0.0)
    np.testing.assert_array_equal(none.labels, y10)
    np.testing.assert_array_equal(none.transition, np.eye(10))
    every = instance_dependent_noise(y10, x10, rate=1.0, seed=0, norm_std=0.0)
    assert every.noise_mask.all()
    # a very wide flip-rate distribution is close to uniform on [0, 1]
    wide = instance_dependent_noise(y10, x10, rate=0.4, seed=0, norm_std=50.0)
    assert wide.noise_rate == pytest.approx(0.5, abs=0.05)
    # truncation at 0 raises the mean flip rate above a nominal rate of 0
    low = instance_dependent_noise(y10, x10, rate=0.0, seed=0)
    assert 0.04 < low.noise_rate < 0.12


def test_instance_integer_and_zero_features():
    y = np.array([0, 1, 2, 0, 1, 2])
    x = np.zeros((6, 3, 2), dtype=np.uint8)
    x[:3] = 200
    res = instance_dependent_noise(y, x, rate=0.5, seed=0)
    assert res.labels.shape == (6,) and res.labels.max() < 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"features": np.zeros((3, 2))}, "one row per label"),
        ({"features": np.zeros(4)}, "ndim >= 2"),
        ({"features": np.zeros((4, 2), dtype=object)}, "real numeric dtype"),
        ({"features": np.full((4, 2), np.nan)}, "finite"),
        ({"norm_std": -0.1}, "`norm_std`"),
        ({"norm_std": float("inf")}, "`norm_std`"),
        ({"rate": 1.5}, "`rate`"),
        ({"num_classes": 2}, r"num_classes=2.*label 3"),
    ],
)
def test_instance_validation(kwargs, match):
    args = {"features": np.ones((4, 2)), "rate": 0.2, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        instance_dependent_noise(np.array([0, 1, 2, 3]), **args)


def test_instance_single_class():
    with pytest.raises(ValueError, match="at least two classes"):
        instance_dependent_noise(np.zeros(3, dtype=np.int64), np.ones((3, 2)), rate=0.2, seed=0)


# ------------------------------------------------------------- properties


@settings(max_examples=40, deadline=None)
@given(
    labels=st.lists(st.integers(min_value=0, max_value=99), min_size=1, max_size=200),
    rate=st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_property_cifar100_hierarchical(labels, rate, seed):
    y = np.asarray(labels, dtype=np.int64)
    sup = cifar100_superclasses()
    res = cifar100_hierarchical_noise(y, rate=rate, seed=seed)
    np.testing.assert_allclose(res.transition.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(sup[res.labels], sup[y])
    for c in np.unique(y):
        sel = y == c
        assert abs(res.noise_mask[sel].sum() - rate * sel.sum()) <= 0.5 + 1e-9
    asym = cifar100_asymmetric_noise(y, rate=rate, seed=seed)
    flipped = asym.noise_mask
    np.testing.assert_array_equal(asym.labels[flipped], [CIFAR100_ASYMMETRIC_MAP[int(c)] for c in y[flipped]])


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    k=st.integers(min_value=1, max_value=6),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_property_transition_support(data, k, seed):
    labels = data.draw(st.lists(st.integers(min_value=0, max_value=k - 1), max_size=100))
    weights = data.draw(
        st.lists(st.sampled_from([0.0, 0.5, 1.0, 3.0]), min_size=k * k, max_size=k * k).filter(
            lambda w: all(sum(w[i * k : (i + 1) * k]) > 0 for i in range(k))
        )
    )
    t = np.asarray(weights).reshape(k, k)
    t /= t.sum(axis=1, keepdims=True)
    y = np.asarray(labels, dtype=np.int64)
    res = transition_noise(y, transition=t, seed=seed)
    assert res.labels.shape == y.shape
    if y.size:
        assert (t[y, res.labels] > 0).all()  # only labels in the support of the row
    np.testing.assert_array_equal(res.noise_mask, res.labels != y)


@settings(max_examples=30, deadline=None)
@given(
    labels=st.lists(st.integers(min_value=0, max_value=4), min_size=2, max_size=60),
    rate=st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
    norm_std=st.sampled_from([0.0, 0.1, 1.0]),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_property_instance(labels, rate, norm_std, seed):
    y = np.asarray(labels, dtype=np.int64)
    x = np.random.default_rng(0).normal(size=(y.size, 3))
    res = instance_dependent_noise(y, x, rate=rate, seed=seed, norm_std=norm_std, num_classes=5)
    assert res.labels.min() >= 0 and res.labels.max() < 5
    np.testing.assert_allclose(res.transition.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(res.noise_mask, res.labels != y)
    if norm_std == 0.0 and rate == 0.0:
        assert not res.noise_mask.any()
    if norm_std == 0.0 and rate == 1.0:
        assert res.noise_mask.all()
