"""What a recommender shows when tested: example users, their history and what it recommends.

`recommendation_examples.csv` in the run directory (also a W&B table, an MLflow artifact and a
TensorBoard text): for the first `examples_shown` test examples, the user, their latest five items (titles,
newest last), the top-10 recommendation, the held-out target and its rank.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from torch import Tensor

from adlab.data.features import InteractionsFeatures
from adlab.harness.artifacts import save_table

HISTORY_SHOWN = 5


def example_rows(
    catalogue: InteractionsFeatures, batch: dict[str, Tensor], top: Tensor, ranks: Tensor
) -> list[dict[str, Any]]:
    """One table row per example of `batch` (CPU tensors): user, history, recommended, target, rank."""
    rows = []
    for row in range(len(top)):
        history = [int(i) for i in batch["history"][row].tolist() if i > 0][-HISTORY_SHOWN:]
        target = int(batch["target"][row])
        rank = int(ranks[row]) + 1
        rows.append(
            {
                "user": catalogue.user_ids[int(batch["user"][row]) - 1],
                "history": " | ".join(catalogue.title(i) for i in history),
                "recommended": " | ".join(catalogue.title(int(i)) for i in top[row].tolist()),
                "target": catalogue.title(target),
                "target_rank": rank,
                "hit_at_10": rank <= 10,
            }
        )
    return rows


class RecommendationReport(L.Callback):
    """Writes the example table of the tested checkpoint (rows gathered by the module's `test_step`)."""

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rows = getattr(pl_module, "test_examples", [])
        if rows and trainer.is_global_zero:
            save_table(trainer, rows, "recommendation_examples")
