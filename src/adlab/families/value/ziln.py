"""The zero-inflated lognormal (ZILN) loss of Wang, Liu & Miao (2019), "A Deep Probabilistic Model for
Customer Lifetime Value Prediction": one head gives the logit of "buys at all" and the mean and scale of
the log of the spend of those who buy.

Outputs are `(batch, 3)`: `[logit, mu, raw_sigma]` with `sigma = max(softplus(raw_sigma), sqrt(1e-7))`
(the floor of the reference implementation). Spend is `0` with probability `1 - p` and lognormal(mu,
sigma) otherwise, so the expected spend is `p * exp(mu + sigma^2 / 2)`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

SIGMA_FLOOR = math.sqrt(1e-7)


def ziln_parameters(outputs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """`(batch, 3)` head outputs -> `(logit, mu, sigma)`, each `(batch,)`."""
    return outputs[..., 0], outputs[..., 1], F.softplus(outputs[..., 2]).clamp_min(SIGMA_FLOOR)


def ziln_loss(outputs: Tensor, target: Tensor, spend_weight: float = 1.0) -> Tensor:
    """Mean over the batch of BCE(buys, logit) + spend_weight * [spend > 0] * -log lognormal(spend; mu, sigma).

    Args:
        outputs: `(batch, 3)` float head outputs.
        target: `(batch,)` spend >= 0 (in the model's spend unit).
        spend_weight: weight of the buyers' lognormal term against the classification term (1: the
            likelihood of Wang, Liu & Miao).
    """
    logit, mu, sigma = ziln_parameters(outputs.float())
    target = target.float()
    positive = (target > 0).float()
    classification = F.binary_cross_entropy_with_logits(logit, positive)
    # zeros are replaced by 1 so that log() stays finite; their term is masked out
    safe = torch.where(target > 0, target, torch.ones_like(target))
    log_spend = safe.log()
    negative_log_density = (
        log_spend + sigma.log() + 0.5 * math.log(2 * math.pi) + (log_spend - mu) ** 2 / (2 * sigma**2)
    )
    return classification + spend_weight * (positive * negative_log_density).mean()


def ziln_expected_spend(outputs: Tensor) -> tuple[Tensor, Tensor]:
    """`(expected spend (batch,), probability of buying (batch,))` = `(p * exp(mu + sigma^2/2), p)`."""
    logit, mu, sigma = ziln_parameters(outputs.float())
    probability = torch.sigmoid(logit)
    return probability * torch.exp(mu + 0.5 * sigma**2), probability
