"""Tabular baselines (logistic regression, gradient-boosted trees) on the data module's own tensors."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder

from adlab.metrics.binary import score_probabilities


def _arrays(tensors: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tensors["categorical"].numpy(), tensors["numeric"].numpy(), tensors["target"].numpy()


class TabularBaseline:
    """Fit on the train split, report the propensity metrics on val and test.

    Subclasses build the estimator and its design matrix; inputs are exactly the tensors the MLP sees
    (category indices with the unknown bucket, imputed and scaled numeric columns).
    """

    def __init__(self, top_fraction: float = 0.2):
        self.top_fraction = top_fraction

    def fit(self, categorical: np.ndarray, numeric: np.ndarray, target: np.ndarray) -> None:
        raise NotImplementedError

    def predict(self, categorical: np.ndarray, numeric: np.ndarray) -> np.ndarray:
        """Purchase probabilities `(n,)`."""
        raise NotImplementedError

    def evaluate(self, datamodule: Any) -> dict[str, float]:
        """Fit on train; return `{"val/<metric>": ..., "test/<metric>": ...}`."""
        self.fit(*_arrays(datamodule.tensors["train"]))
        results = {}
        for stage in ("val", "test"):
            categorical, numeric, target = _arrays(datamodule.tensors[stage])
            results.update(self._stage_metrics(stage, self.predict(categorical, numeric), target))
        return results

    def _stage_metrics(self, stage: str, probabilities: np.ndarray, target: np.ndarray) -> dict[str, float]:
        """`{"<stage>/<metric>": value}` of purchase probabilities against 0/1 targets."""
        scores = score_probabilities(
            torch.as_tensor(probabilities, dtype=torch.float32), torch.as_tensor(target), self.top_fraction
        )
        return {f"{stage}/{name}": value for name, value in scores.items()}

    def evaluate_cross_fitted(self, folds: list[Any]) -> dict[str, float]:
        """Fit on each fold's train split (`adlab.families.propensity.crossfit.Fold`: `data`, `held_out`):
        val metrics of the out-of-fold scores over the pool, test metrics of the mean of the K fits'
        probabilities."""
        pool_rows = len(folds[0].held_out)
        out_of_fold = np.zeros(pool_rows, dtype=np.float64)
        targets = np.zeros(pool_rows, dtype=np.float32)
        test_scores = []
        for fold in folds:
            tensors = fold.data.tensors
            self.fit(*_arrays(tensors["train"]))
            categorical, numeric, target = _arrays(tensors["val"])
            out_of_fold[fold.held_out] = self.predict(categorical, numeric)
            targets[fold.held_out] = target
            categorical, numeric, test_target = _arrays(tensors["test"])
            test_scores.append(self.predict(categorical, numeric))
        return {
            **self._stage_metrics("val", out_of_fold, targets),
            **self._stage_metrics("test", np.mean(test_scores, axis=0), test_target),
        }


class LogisticBaseline(TabularBaseline):
    """L2 logistic regression on one-hot categories and scaled numeric columns.

    Args:
        C: inverse regularisation strength.
        class_weight: None or "balanced".
        max_iter: solver iterations.
    """

    def __init__(
        self, C: float = 1.0, class_weight: str | None = None, max_iter: int = 2000, top_fraction: float = 0.2
    ):
        super().__init__(top_fraction)
        self.encoder = OneHotEncoder(handle_unknown="ignore")
        self.model = LogisticRegression(C=C, class_weight=class_weight, max_iter=max_iter)

    def _design(self, categorical: np.ndarray, numeric: np.ndarray, fit: bool = False) -> np.ndarray:
        if categorical.shape[1] == 0:
            return numeric
        encoded = self.encoder.fit_transform(categorical) if fit else self.encoder.transform(categorical)
        return np.hstack([encoded.toarray(), numeric])

    def fit(self, categorical: np.ndarray, numeric: np.ndarray, target: np.ndarray) -> None:
        self.model.fit(self._design(categorical, numeric, fit=True), target)

    def predict(self, categorical: np.ndarray, numeric: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(self._design(categorical, numeric))[:, 1]


class GradientBoostingBaseline(TabularBaseline):
    """scikit-learn histogram gradient boosting, with category indices as native categorical features.

    Args:
        learning_rate: shrinkage.
        max_iter: boosting rounds (early stopping on an internal split of train when `early_stopping`).
        max_leaf_nodes: tree size.
        min_samples_leaf: fewest customers in a leaf (large values keep rare-buyer trees from overfitting).
        l2_regularization: leaf-value penalty.
        seed: random state.
    """

    def __init__(
        self,
        learning_rate: float = 0.05,
        max_iter: int = 300,
        max_leaf_nodes: int = 15,
        min_samples_leaf: int = 20,
        l2_regularization: float = 1.0,
        early_stopping: bool = True,
        seed: int = 0,
        top_fraction: float = 0.2,
    ):
        super().__init__(top_fraction)
        self.options = dict(
            learning_rate=learning_rate,
            max_iter=max_iter,
            max_leaf_nodes=max_leaf_nodes,
            min_samples_leaf=min_samples_leaf,
            l2_regularization=l2_regularization,
            early_stopping=early_stopping,
            random_state=seed,
        )
        self.model: HistGradientBoostingClassifier | None = None

    def fit(self, categorical: np.ndarray, numeric: np.ndarray, target: np.ndarray) -> None:
        mask = [True] * categorical.shape[1] + [False] * numeric.shape[1]
        self.model = HistGradientBoostingClassifier(categorical_features=mask or None, **self.options)
        self.model.fit(np.hstack([categorical, numeric]), target)

    def predict(self, categorical: np.ndarray, numeric: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(np.hstack([categorical, numeric]))[:, 1]
