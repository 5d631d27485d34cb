"""The ZILN loss and expected spend, and the value metrics, against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from adlab.families.value.metrics import (
    decile_mape,
    gini,
    normalized_gini,
    top_capture,
    total_spend_error,
    value_metrics,
)
from adlab.families.value.ziln import ziln_expected_spend, ziln_loss


def _raw_sigma(sigma: float) -> float:
    return math.log(math.expm1(sigma))  # inverse softplus


def test_ziln_loss_is_bce_plus_the_lognormal_nll_of_buyers():
    outputs = torch.tensor([[0.5, 1.0, _raw_sigma(0.8)], [-1.0, 2.0, _raw_sigma(1.5)]])
    target = torch.tensor([3.0, 0.0])
    p1, p2 = 1 / (1 + math.exp(-0.5)), 1 / (1 + math.exp(1.0))
    bce = -(math.log(p1) + math.log(1 - p2)) / 2
    # lognormal density of 3 with mu 1, sigma 0.8: -log f = log y + log sigma + log(2 pi)/2 + (log y - mu)^2 / 2 sigma^2
    nll = math.log(3) + math.log(0.8) + 0.5 * math.log(2 * math.pi) + (math.log(3) - 1) ** 2 / (2 * 0.8**2)
    torch.testing.assert_close(ziln_loss(outputs, target), torch.tensor(bce + nll / 2))
    torch.testing.assert_close(ziln_loss(outputs, target, spend_weight=3.0), torch.tensor(bce + 3 * nll / 2))
    reference = -torch.distributions.LogNormal(1.0, 0.8).log_prob(torch.tensor(3.0))
    assert math.isclose(nll, float(reference), rel_tol=1e-5)


def test_ziln_prediction_is_p_times_the_lognormal_mean():
    outputs = torch.tensor([[0.5, 1.0, _raw_sigma(0.8)]])
    spend, probability = ziln_expected_spend(outputs)
    p = 1 / (1 + math.exp(-0.5))
    torch.testing.assert_close(probability, torch.tensor([p]))
    torch.testing.assert_close(spend, torch.tensor([p * math.exp(1.0 + 0.8**2 / 2)]))
    draws = torch.distributions.LogNormal(1.0, 0.8).sample((400_000,)).mean() * p
    assert math.isclose(float(spend), float(draws), rel_tol=0.02)


def test_gini_and_capture_by_hand():
    actual = np.array([0.0, 0.0, 10.0, 30.0])
    # ranked best first: 30, 10, 0, 0 -> curve (0,0) (.25,.75) (.5,1) (.75,1) (1,1); trapezoids
    # .09375 + .21875 + .25 + .25 = .8125, Gini 2 * .8125 - 1
    assert gini(np.array([1, 2, 3, 4]), actual) == pytest.approx(0.625)
    assert normalized_gini(np.array([1, 2, 3, 4]), actual) == pytest.approx(1.0)
    # the reverse ranking: 0, 0, 10, 30 -> (0,0) (.25,0) (.5,0) (.75,.25) (1,1); area .1875, Gini -.625
    assert normalized_gini(np.array([4, 3, 2, 1]), actual) == pytest.approx(-1.0)
    # two customers tied at the top (30 and 0): their step is a straight line from (0,0) to (.5,.75)
    assert gini(np.array([5, 1, 2, 5]), actual) == pytest.approx(2 * (0.1875 + 0.21875 + 0.25) - 1)
    # all tied: the straight line, Gini 0 whatever the row order
    assert normalized_gini(np.ones(4), actual) == pytest.approx(0.0)
    assert top_capture(np.array([1, 2, 3, 4]), actual, 0.25) == pytest.approx(0.75)
    assert total_spend_error(np.array([10.0, 10.0, 10.0, 14.0]), actual) == pytest.approx(0.1)


def test_decile_mape_by_hand():
    actual = np.repeat(np.arange(1, 11, dtype=float), 2)  # deciles of 2 customers
    predicted = actual * 1.1
    assert decile_mape(predicted, actual) == pytest.approx(0.1)
    # a decile whose customers spent nothing has no relative error and is left out
    actual[:2] = 0
    predicted = actual + np.where(actual > 0, 0.5 * actual, 0.0)
    assert decile_mape(predicted, actual) == pytest.approx(0.5)


def test_spearman_and_auroc_handle_ties_like_scipy():
    generator = np.random.default_rng(0)
    actual = np.where(generator.random(300) < 0.7, 0.0, generator.gamma(2.0, 20.0, 300)).round(0)
    predicted = (actual + generator.normal(0, 15, 300)).round(-1)
    scores = value_metrics(predicted, actual)
    assert scores["spearman"] == pytest.approx(spearmanr(predicted, actual).statistic, abs=1e-5)
    assert 0.5 < scores["auroc"] <= 1
