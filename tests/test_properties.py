"""Properties (hypothesis) of the noise generators and of the weight normalisation, over random
labels, rates, seeds, transition matrices, features and scores."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from l2b.meta.normalize import NORMALIZATIONS, ORG_EPS, normalize_scores
from l2b.noise import NOISE_KINDS, instance_dependent_noise, make_noise, transition_noise

PROPERTY = settings(max_examples=30, deadline=None)
SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
RATES = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)

# The classes a kind works with: the CIFAR kinds are fixed, the others take any K >= 2.
FIXED_K = {"cifar10-asymmetric": 10, "cifar100-asymmetric": 100, "cifar100-hierarchical": 100}


def _labels(data, k: int, *, min_size: int = 0, max_size: int = 120) -> np.ndarray:
    values = data.draw(st.lists(st.integers(min_value=0, max_value=k - 1), min_size=min_size, max_size=max_size))
    return np.asarray(values, dtype=np.int64)


def _check_record(res, clean: np.ndarray, k: int) -> None:
    """What every generator promises: labels (N,) int64 in [0, K), a (K, K) row-stochastic
    transition matrix, and a realised rate and mask that describe the labels returned."""
    assert res.labels.shape == clean.shape and res.labels.dtype == np.int64
    if clean.size:
        assert res.labels.min() >= 0 and res.labels.max() < k
    assert res.transition.shape == (k, k)
    assert (res.transition >= 0).all()
    np.testing.assert_allclose(res.transition.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_array_equal(res.noise_mask, res.labels != clean)
    assert res.noise_rate == (float(np.mean(res.labels != clean)) if clean.size else 0.0)


def _per_class_quota(clean: np.ndarray, rate: float) -> int:
    """How many labels the per-class generators select: round(rate * n_c), halves up, per class."""
    return sum(min(n, int(np.floor(rate * n + 0.5))) for n in np.bincount(clean) if n)


# ----------------------------------------------------------------------------------------------
# noise generators
# ----------------------------------------------------------------------------------------------


@PROPERTY
@given(data=st.data(), kind=st.sampled_from(NOISE_KINDS), rate=RATES, seed=SEEDS)
def test_every_kind_keeps_its_promises(data, kind, rate, seed):
    k = FIXED_K.get(kind) or data.draw(st.integers(min_value=2, max_value=12), label="k")
    clean = _labels(data, k)
    before = clean.copy()
    res = make_noise(kind, clean, rate=rate, num_classes=k, seed=seed)
    np.testing.assert_array_equal(clean, before)  # input untouched
    _check_record(res, clean, k)
    again = make_noise(kind, clean, rate=rate, num_classes=k, seed=seed)
    np.testing.assert_array_equal(res.labels, again.labels)  # the seed decides
    np.testing.assert_array_equal(res.transition, again.transition)
    if rate == 0.0 or kind == "none":
        np.testing.assert_array_equal(res.labels, clean)


@PROPERTY
@given(data=st.data(), k=st.integers(min_value=2, max_value=12), rate=RATES, seed=SEEDS)
def test_symmetric_flip_changes_every_selected_label(data, k, rate, seed):
    clean = _labels(data, k)
    res = make_noise("symmetric", clean, rate=rate, num_classes=k, seed=seed)
    # Exactly round(rate * n_c) of each class are selected; none of them keeps its clean label.
    assert int(res.noise_mask.sum()) == _per_class_quota(clean, rate)
    uniform = make_noise("symmetric-uniform", clean, rate=rate, num_classes=k, seed=seed)
    assert int(uniform.noise_mask.sum()) <= _per_class_quota(clean, rate)  # may redraw the clean label
    expected = np.full((k, k), rate / (k - 1))
    np.fill_diagonal(expected, 1.0 - rate)
    np.testing.assert_allclose(res.transition, expected, atol=1e-12)


@PROPERTY
@given(data=st.data(), k=st.integers(min_value=2, max_value=12), rate=RATES, seed=SEEDS)
def test_pair_noise_moves_to_the_next_class_only(data, k, rate, seed):
    clean = _labels(data, k)
    res = make_noise("pair", clean, rate=rate, num_classes=k, seed=seed)
    flipped = res.noise_mask
    np.testing.assert_array_equal(res.labels[flipped], (clean[flipped] + 1) % k)
    assert int(flipped.sum()) == _per_class_quota(clean, rate)


@st.composite
def row_stochastic(draw, k: int) -> np.ndarray:
    """A (k, k) matrix of non-negative rows summing to one, zeros included."""
    entries = draw(st.lists(st.sampled_from([0.0, 0.0, 0.1, 0.5, 1.0, 2.5]), min_size=k * k, max_size=k * k))
    t = np.asarray(entries).reshape(k, k)
    t[t.sum(axis=1) == 0, draw(st.integers(min_value=0, max_value=k - 1))] = 1.0
    return t / t.sum(axis=1, keepdims=True)


@PROPERTY
@given(data=st.data(), k=st.integers(min_value=1, max_value=8), seed=SEEDS)
def test_transition_noise_with_random_matrices(data, k, seed):
    t = data.draw(row_stochastic(k), label="transition")
    clean = _labels(data, k)
    res = transition_noise(clean, transition=t, seed=seed)
    _check_record(res, clean, k)
    np.testing.assert_array_equal(res.transition, t)
    if clean.size:
        assert (t[clean, res.labels] > 0).all()  # only classes the row can reach
    np.testing.assert_array_equal(transition_noise(clean, transition=t, seed=seed).labels, res.labels)
    np.testing.assert_array_equal(transition_noise(clean, transition=np.eye(k), seed=seed).labels, clean)


@PROPERTY
@given(
    data=st.data(),
    k=st.integers(min_value=2, max_value=6),
    rate=RATES,
    norm_std=st.sampled_from([0.0, 0.05, 0.3]),
    seed=SEEDS,
)
def test_instance_dependent_noise(data, k, rate, norm_std, seed):
    clean = _labels(data, k, min_size=1, max_size=60)
    d = data.draw(st.integers(min_value=1, max_value=5), label="d")
    scale = data.draw(st.sampled_from([1e-3, 1.0, 1e3]), label="scale")
    features = np.random.default_rng(seed % 1000).normal(size=(clean.size, d)) * scale
    res = instance_dependent_noise(clean, features, rate=rate, num_classes=k, seed=seed, norm_std=norm_std)
    _check_record(res, clean, k)
    again = instance_dependent_noise(clean, features, rate=rate, num_classes=k, seed=seed, norm_std=norm_std)
    np.testing.assert_array_equal(res.labels, again.labels)
    if rate == 0.0 and norm_std == 0.0:
        np.testing.assert_array_equal(res.labels, clean)


# ----------------------------------------------------------------------------------------------
# weight normalisation
# ----------------------------------------------------------------------------------------------


@st.composite
def scores(draw, *, low: float = -50.0, high: float = 50.0, dtype=torch.float64) -> torch.Tensor:
    """Raw scores (R, B): R = 1 (L2RW) or 2 (L2B), values rounded to 1e-3 so a positive score is
    never vanishingly small next to the normaliser's 1e-10 guard."""
    rows = draw(st.sampled_from([1, 2]))
    cols = draw(st.integers(min_value=1, max_value=16))
    values = draw(
        st.lists(
            st.floats(min_value=low, max_value=high, allow_nan=False).map(lambda v: round(v, 3)),
            min_size=rows * cols,
            max_size=rows * cols,
        )
    )
    return torch.tensor(values, dtype=dtype).reshape(rows, cols)


@PROPERTY
@given(raw=scores(), normalize=st.sampled_from(NORMALIZATIONS), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_weights_are_non_negative_and_sum_to_one(raw, normalize, dtype):
    raw = raw.to(dtype)
    w = normalize_scores(raw, normalize=normalize)
    assert w.shape == raw.shape and w.dtype == dtype
    assert torch.isfinite(w).all() and (w >= 0).all()
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    if normalize == "org" and not (raw > 0).any():
        assert (w == 0).all()  # no positive score: every weight exactly zero
    elif normalize == "org":  # sum(positive) / (sum(positive) + the 1e-10 guard)
        positive = float(raw.clamp(min=0).sum())
        assert abs(float(w.sum()) - positive / (positive + ORG_EPS)) <= tol
    else:
        assert abs(float(w.sum()) - 1.0) <= tol
    if normalize == "org":
        assert (w[raw <= 0] == 0).all()


@PROPERTY
@given(raw=scores(), scale=st.floats(min_value=1e-2, max_value=1e3))
def test_org_weights_ignore_the_scale_of_the_scores(raw, scale):
    w = normalize_scores(raw, normalize="org")
    torch.testing.assert_close(normalize_scores(raw * scale, normalize="org"), w, rtol=1e-6, atol=1e-9)


@PROPERTY
@given(raw=scores(), normalize=st.sampled_from(NORMALIZATIONS), temperature=st.floats(min_value=0.05, max_value=20.0))
def test_a_larger_score_never_gets_a_smaller_weight(raw, normalize, temperature):
    w = normalize_scores(raw, normalize=normalize, temperature=temperature).reshape(-1)
    order = torch.argsort(raw.reshape(-1), stable=True)
    steps = torch.diff(w[order])
    assert (steps >= -1e-12).all(), (raw, w)


@PROPERTY
@given(raw=scores(), temperature=st.floats(min_value=0.05, max_value=20.0))
def test_softmax_temperature_divides_the_scores(raw, temperature):
    torch.testing.assert_close(
        normalize_scores(raw, normalize="softmax", temperature=temperature),
        normalize_scores(raw / temperature, normalize="softmax"),
        rtol=1e-9,
        atol=1e-12,
    )


HUGE = st.sampled_from([-1e30, -1e20, -1.0, 0.0, 1.0, 1e20, 1e30])


@st.composite
def huge_scores(draw, dtype) -> torch.Tensor:
    rows, cols = draw(st.sampled_from([1, 2])), draw(st.integers(min_value=1, max_value=16))
    return torch.tensor(draw(st.lists(HUGE, min_size=rows * cols, max_size=rows * cols)), dtype=dtype).reshape(
        rows, cols
    )


@PROPERTY
@given(
    data=st.data(), normalize=st.sampled_from(["org", "softmax"]), dtype=st.sampled_from([torch.float32, torch.float64])
)
def test_weights_stay_finite_for_huge_scores(data, normalize, dtype):
    raw = data.draw(huge_scores(dtype), label="raw")
    w = normalize_scores(raw, normalize=normalize)
    assert torch.isfinite(w).all() and (w >= 0).all()
    if normalize == "softmax" or (raw > 0).any():
        assert abs(float(w.sum()) - 1.0) <= 1e-5


@PROPERTY
@given(data=st.data(), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_sigmoid_weights_stay_finite_for_huge_scores_with_one_not_hugely_negative(data, dtype):
    raw = data.draw(huge_scores(dtype), label="raw")
    assume(bool((raw > -1e20).any()))
    w = normalize_scores(raw, normalize="sigmoid")
    assert torch.isfinite(w).all() and (w >= 0).all() and abs(float(w.sum()) - 1.0) <= 1e-5


def test_sigmoid_weights_when_every_score_is_hugely_negative():
    w = normalize_scores(torch.full((2, 4), -1e30), normalize="sigmoid")
    assert torch.isfinite(w).all()
