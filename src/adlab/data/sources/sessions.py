"""Car-maker website sessions with a known purchase probability: a generated table for `propensity_web`.

The scenario: a car maker bids for website visitors and wants to know which ones will buy (here: book a
test drive or request a quote within the next weeks). Each row is a visitor's session: which of the key
pages were seen (pricing, car configurator, technical specifications, financing), how engaged the visitor
was, where they came from, plus columns that carry no signal. The true purchase probability of every
visitor is a known function of the session, so a trained scorer can be checked against it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from adlab.data.sources.tabular import TabularSource

KEY_PAGES = ("saw_pricing", "saw_configurator", "saw_specifications", "saw_financing")
DEVICES = ("desktop", "mobile", "tablet")
REFERRERS = ("search", "direct", "social", "display", "email")
REFERRER_EFFECT = {"search": 0.3, "direct": 0.4, "social": -0.4, "display": -0.6, "email": 0.5}
DEVICE_EFFECT = {"desktop": 0.2, "mobile": -0.2, "tablet": 0.0}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def generate_sessions(rows: int, seed: int, intercept: float = -6.5) -> pd.DataFrame:
    """Draw `rows` visitor sessions; columns: session_id, features, `true_propensity` and `purchased` (0/1).

    The true logit is additive in the pages seen, engagement (log pages viewed, log minutes), returning
    visits, referrer and device, plus two interactions a linear model cannot express: configurator *and*
    financing together (a visitor pricing a concrete car), and a saturating effect of time on site.
    `intercept` sets the base rate (about 8% with the default). Noise columns are independent of it all.
    """
    generator = np.random.default_rng(seed)
    returning = generator.binomial(1, 0.35, rows)
    previous_visits = np.where(returning == 1, 1 + generator.poisson(1.5, rows), 0)
    interest = generator.normal(0.0, 1.0, rows)  # latent intent, seen only through behaviour
    pages = {
        name: generator.binomial(1, _sigmoid(base + 0.9 * interest + 0.3 * returning))
        for name, base in zip(KEY_PAGES, (-0.5, -1.0, -0.8, -1.8), strict=True)
    }
    pages_viewed = 1 + generator.poisson(np.exp(1.2 + 0.35 * interest + 0.4 * sum(pages.values())))
    minutes = np.round(generator.gamma(2.0, 1.5 + 0.6 * pages_viewed), 2)
    device = generator.choice(DEVICES, rows, p=(0.45, 0.45, 0.10))
    referrer = generator.choice(REFERRERS, rows, p=(0.35, 0.2, 0.2, 0.15, 0.1))
    logit = (
        intercept
        + 0.8 * pages["saw_pricing"]
        + 1.0 * pages["saw_configurator"]
        + 0.4 * pages["saw_specifications"]
        + 0.9 * pages["saw_financing"]
        + 1.2 * pages["saw_configurator"] * pages["saw_financing"]
        + 0.5 * np.log(pages_viewed)
        + 1.2 * np.tanh(minutes / 15.0)
        + 0.35 * np.minimum(previous_visits, 4)
        + np.vectorize(REFERRER_EFFECT.get)(referrer)
        + np.vectorize(DEVICE_EFFECT.get)(device)
    )
    propensity = _sigmoid(logit)
    frame = pd.DataFrame(
        {
            "session_id": np.arange(rows),
            **pages,
            "pages_viewed": pages_viewed,
            "minutes_on_site": minutes,
            "previous_visits": previous_visits,
            "device": device,
            "referrer": referrer,
            # no signal: a visitor's hour and weekday, and a random tracking score
            "hour": generator.integers(0, 24, rows),
            "weekday": generator.choice(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), rows),
            "tracking_score": np.round(generator.normal(0.0, 1.0, rows), 3),
        }
    )
    frame["true_propensity"] = propensity
    frame["purchased"] = generator.binomial(1, propensity)
    return frame


class WebSessionSource(TabularSource):
    """`TabularSource` over `generate_sessions(rows, seed)`: same validation, preprocessing and meta.

    Args:
        rows: sessions to generate.
        seed: generator seed (fixed per dataset, independent of the run's seed, so that every run sees
            the same visitors and only the split and training vary).
        intercept: base-rate logit of the generator.
        name: dataset name.

    `true_propensity` is kept out of the features (as is `session_id`); tests read it from
    `generate_sessions` with the same arguments.
    """

    def __init__(self, rows: int = 20000, seed: int = 0, intercept: float = -6.5, name: str = "web_sessions"):
        super().__init__(
            path=f"generated:web_sessions(rows={rows}, seed={seed})",
            target="purchased",
            categorical=["device", "referrer", "weekday"],
            numeric=None,
            id_column="session_id",
            drop=["true_propensity"],
            name=name,
        )
        self.rows, self.seed, self.intercept = rows, seed, intercept

    def read_frame(self) -> pd.DataFrame:
        return generate_sessions(self.rows, self.seed, self.intercept)
