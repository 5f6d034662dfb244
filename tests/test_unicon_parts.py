"""UNICON's division and losses against hand computations (l2b.methods.unicon)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from l2b.methods.unicon import (
    js_divergence,
    label_divergence,
    nt_xent,
    refinement_weights,
    selection_threshold,
    uniform_selection,
)


def test_js_divergence_is_scipys_squared_distance_in_nats():
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(5, 4, generator=g, dtype=torch.float64), 1)
    q = torch.softmax(torch.randn(5, 4, generator=g, dtype=torch.float64), 1)
    expected = [jensenshannon(a, b) ** 2 for a, b in zip(p.numpy(), q.numpy())]  # natural log by default
    np.testing.assert_allclose(js_divergence(p, q).numpy(), expected, rtol=1e-6)


def test_label_divergence_by_hand():
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 0])
    d = label_divergence(probs, labels, 2)
    # agreeing: 0; half-half against a one-hot: 0.5 ln(1/0.75) + 0.5 (0.5 ln(0.5/0.75) + 0.5 ln(0.5/0.25));
    # opposite one-hots: ln 2, the maximum
    half = 0.5 * math.log(1 / 0.75) + 0.5 * (0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25))
    np.testing.assert_allclose(d.numpy(), [0.0, half, math.log(2)], atol=1e-8)


def test_the_threshold_is_the_mean_lowered_only_above_d_u():
    d = torch.tensor([0.1, 0.2, 0.3, 0.6])
    assert selection_threshold(d) == pytest.approx(0.3)  # mean 0.3 <= d_u = 0.7
    # above d_u: d - (d - min) / tau = 0.3 - (0.3 - 0.1) / 5
    assert selection_threshold(d, d_u=0.25, tau=5) == pytest.approx(0.3 - 0.2 / 5)
    # with natural logs the divergence never exceeds ln 2 < 0.7: the published d_u never lowers it
    assert selection_threshold(torch.full((4,), math.log(2))) == pytest.approx(math.log(2))


def test_uniform_selection_takes_the_same_count_per_class_and_the_lowest_divergences():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    div = np.array([0.5, 0.1, 0.3, 0.2, 0.05, 0.6, 0.4, 0.01, 0.02, 0.03])
    # below 0.35: 7 of 10, so int(0.7 * 10 / 3) = 2 per class
    chosen = uniform_selection(div, labels, 3, threshold=0.35)
    assert list(chosen) == [1, 3, 7, 4, 8, 9]
    assert np.bincount(labels[chosen], minlength=3).tolist() == [2, 2, 2]
    # a class with fewer examples than the count gives them all
    chosen = uniform_selection(div, labels, 3, threshold=0.65)  # 10 of 10: 3 per class, class 2 has 2
    assert np.bincount(labels[chosen], minlength=3).tolist() == [3, 3, 2]


def test_refinement_weights_count_small_divergences_as_zero():
    d = torch.tensor([0.0, 0.49, 0.5, 0.69])
    torch.testing.assert_close(refinement_weights(d), torch.tensor([1.0, 1.0, 0.5, 1 - 0.69]))


def test_nt_xent_against_a_direct_computation():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    t = 0.05
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    losses = []
    for i in range(8):
        pos = (i + 4) % 8
        others = [j for j in range(8) if j != i]
        denom = sum(math.exp(float(z[i] @ z[j]) / t) for j in others)
        losses.append(-math.log(math.exp(float(z[i] @ z[pos]) / t) / denom))
    assert float(nt_xent(z1, z2, temperature=t)) == pytest.approx(np.mean(losses), rel=1e-9)
    with pytest.raises(ValueError, match="same shape"):
        nt_xent(z1, z2[:3])
