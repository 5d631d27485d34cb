"""Customer value baselines, fitted on the train customers of the run's own split and scored like the model.

- `NaiveRateBaseline`: holdout spend = the customer's calibration spend per day of tenure x holdout days.
- `BoostingBaseline`: scikit-learn's histogram gradient boosting regressor on the model's features.
- `BetaGeoGammaGammaBaseline`: BG/NBD (Fader, Hardie & Lee 2005) for the number of repeat purchases and
  Gamma-Gamma for their mean value, from pymc-marketing's CLV module. pymc-marketing is a peer library,
  not an adlab dependency (`make peers` builds `.venv-peers` with it): where it is missing, or where no
  train customer bought twice, the baseline is skipped with one logged reason and the run goes on.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor

from adlab.data.features import DataMeta, TransactionsMeta
from adlab.families.value.metrics import value_metrics

log = logging.getLogger(__name__)


def transactions_meta(datamodule: Any) -> TransactionsMeta:
    """The data module's meta as `TransactionsMeta` (rebuilt when it is held as plain containers)."""
    meta = datamodule.meta
    meta = DataMeta.from_dict(meta) if isinstance(meta, dict) else meta
    meta.require(TransactionsMeta, "the value baselines")
    return meta


def calibration_column(tensors: dict[str, Any], meta: TransactionsMeta, name: str) -> np.ndarray:
    """One raw calibration statistic `(rows,)` float64 of a split (`meta.calibration_columns`)."""
    return tensors["calibration"][:, meta.calibration_columns.index(name)].double().numpy()


class ValueBaseline:
    """Fit on the train split; report the value metrics on val and test (`baseline/<name>/<stage>/...`)."""

    def fit(self, train: dict[str, Any], meta: TransactionsMeta) -> bool:
        """Fit on the train customers; False (after logging why) when this baseline cannot run."""
        return True

    def predict(
        self, tensors: dict[str, Any], meta: TransactionsMeta
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """`(expected holdout spend (rows,), score of buying (rows,) or None to rank by the spend)`."""
        raise NotImplementedError

    def evaluate(self, datamodule: Any) -> dict[str, float]:
        """Fit on train; `{"val/<metric>": ..., "test/<metric>": ...}`, or `{}` when skipped."""
        meta = transactions_meta(datamodule)
        if not self.fit(datamodule.tensors["train"], meta):
            return {}
        results = {}
        for stage in ("val", "test"):
            tensors = datamodule.tensors[stage]
            spend, buy = self.predict(tensors, meta)
            scores = value_metrics(spend, tensors["target"].double().numpy(), buy)
            results.update({f"{stage}/{name}": value for name, value in scores.items()})
        return results


class NaiveRateBaseline(ValueBaseline):
    """Holdout spend = calibration spend / (days from the first purchase to the cutoff + 1) x holdout days."""

    def predict(self, tensors: dict[str, Any], meta: TransactionsMeta) -> tuple[np.ndarray, None]:
        total = calibration_column(tensors, meta, "total_spend")
        tenure = calibration_column(tensors, meta, "tenure_days")
        return total / (tenure + 1) * meta.holdout_days, None


class BoostingBaseline(ValueBaseline):
    """scikit-learn `HistGradientBoostingRegressor` on the model's calibration features.

    Args:
        loss: "squared_error" (regresses spend, as the MSE head does) or "poisson" (log link: suits
            spend that is zero for most and heavy-tailed).
        learning_rate: shrinkage.
        max_iter: boosting rounds (early stopping on an internal 10% of train when `early_stopping`).
        max_leaf_nodes: tree size.
        min_samples_leaf: fewest customers in a leaf.
        l2_regularization: leaf-value penalty.
        early_stopping: stop when the internal validation loss stops improving.
        seed: random state.
    """

    def __init__(
        self,
        loss: str = "squared_error",
        learning_rate: float = 0.05,
        max_iter: int = 300,
        max_leaf_nodes: int = 15,
        min_samples_leaf: int = 40,
        l2_regularization: float = 1.0,
        early_stopping: bool = True,
        seed: int = 0,
    ):
        self.model = HistGradientBoostingRegressor(
            loss=loss,
            learning_rate=learning_rate,
            max_iter=max_iter,
            max_leaf_nodes=max_leaf_nodes,
            min_samples_leaf=min_samples_leaf,
            l2_regularization=l2_regularization,
            early_stopping=early_stopping,
            random_state=seed,
        )

    def fit(self, train: dict[str, Any], meta: TransactionsMeta) -> bool:
        self.model.fit(train["features"].numpy(), train["target"].double().numpy())
        return True

    def predict(self, tensors: dict[str, Any], meta: TransactionsMeta) -> tuple[np.ndarray, None]:
        return np.clip(self.model.predict(tensors["features"].numpy()), 0, None), None


class BetaGeoGammaGammaBaseline(ValueBaseline):
    """BG/NBD + Gamma-Gamma (pymc-marketing's `BetaGeoModel` and `GammaGammaModel`), fitted by maximum a
    posteriori on the train customers, time in weeks.

    Expected holdout spend = expected repeat purchases in the holdout x expected mean spend per purchase;
    the score of buying is 1 - P(no purchase in the holdout).

    Args:
        method: pymc-marketing's fit method: "map" (seconds) or "mcmc" (NUTS, minutes).
        seed: random seed of the fit.
    """

    def __init__(self, method: str = "map", seed: int = 0):
        self.method = method
        self.seed = seed
        self.purchases: Any = None
        self.spend: Any = None

    @staticmethod
    def _frame(tensors: dict[str, Any], meta: TransactionsMeta) -> Any:
        import pandas as pd

        column = lambda name: calibration_column(tensors, meta, name)  # noqa: E731
        return pd.DataFrame(
            {
                "customer_id": np.arange(len(tensors["target"])),
                "frequency": column("frequency"),
                "recency": column("recency_days") / 7,
                "T": column("tenure_days") / 7,
                "monetary_value": column("repeat_mean_spend"),
            }
        )

    def fit(self, train: dict[str, Any], meta: TransactionsMeta) -> bool:
        frame = self._frame(train, meta)
        repeat = frame[(frame["frequency"] > 0) & (frame["monetary_value"] > 0)]
        if len(repeat) < 2:
            log.warning(
                "baselines: BG/NBD + Gamma-Gamma skipped: %d of %d train customers bought more than once "
                "before the cutoff; BG/NBD and Gamma-Gamma need repeat purchases to fit",
                len(repeat),
                len(frame),
            )
            return False
        try:
            from pymc_marketing.clv import BetaGeoModel, GammaGammaModel
        except ImportError:
            log.warning(
                "baselines: BG/NBD + Gamma-Gamma skipped: pymc-marketing is not installed "
                "(it is a peer library: `make peers` builds .venv-peers with it)"
            )
            return False
        self.purchases = BetaGeoModel(data=frame[["customer_id", "frequency", "recency", "T"]])
        self.purchases.fit(method=self.method, progressbar=False, **self._seed_option())
        self.spend = GammaGammaModel(data=repeat[["customer_id", "frequency", "monetary_value"]])
        self.spend.fit(method=self.method, progressbar=False, **self._seed_option())
        return True

    def _seed_option(self) -> dict[str, Any]:
        return {"random_seed": self.seed} if self.method == "mcmc" else {}

    def predict(self, tensors: dict[str, Any], meta: TransactionsMeta) -> tuple[np.ndarray, np.ndarray]:
        frame = self._frame(tensors, meta)
        weeks = meta.holdout_days / 7
        mean = lambda values: np.asarray(values.mean(("chain", "draw")).values, dtype=np.float64)  # noqa: E731
        purchases = mean(
            self.purchases.expected_purchases(
                data=frame[["customer_id", "frequency", "recency", "T"]], future_t=weeks
            )
        )
        spend = mean(
            self.spend.expected_customer_spend(data=frame[["customer_id", "frequency", "monetary_value"]])
        )
        buys = 1 - mean(
            self.purchases.expected_probability_no_purchase(
                t=weeks, data=frame[["customer_id", "frequency", "recency", "T"]]
            )
        )
        return purchases * spend, buys
