"""`RecommendationModule`: next-item recommendation over the whole catalogue (SASRec-style or two-tower)."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn

from adlab.data.features import DataMeta, InteractionsFeatures, InteractionsMeta, TrainSplit
from adlab.errors import AdlabError
from adlab.families.recommendation.metrics import TOP_K, RankingMetrics, exclude_seen, target_ranks
from adlab.families.recommendation.nets import SequentialEncoder
from adlab.families.recommendation.report import RecommendationReport, example_rows
from adlab.harness.checkpoints import StoredRun
from adlab.harness.exporting import ExportSpec

CATALOGUE_KEY = "recommendation_catalogue"


class RecommendationModule(L.LightningModule):
    """A recommender trained to predict each next item with cross-entropy over the whole catalogue.

    Args:
        meta: the data's `InteractionsMeta` (catalogue size, history length, attribute cardinalities).
        net: a partial network (`_partial_: true`) taking `items`, `max_length`, `user_cardinalities` and
            `item_cardinalities`: `adlab.families.recommendation.nets.SequentialEncoder` (SASRec-style,
            default) or `...nets.TwoTowerEncoder`.
        optimizer: a partial optimizer taking the parameters (default AdamW, lr 1e-3).
        label_smoothing: cross-entropy label smoothing.
        warmup_steps: linear learning-rate warm-up over this many optimizer steps (0: none).
        examples_shown: test users shown in `recommendation_examples.csv` (history -> recommended titles).
        cpu_threads: torch threads on CPU; None keeps torch's default.

    Batches are dicts (rows = examples): `history (batch, L) int64` the latest items before the target,
    oldest first, left-padded with 0; `target (batch,) int64`; `user (batch,) int64`; `user_features
    (batch, U) int64`; val/test batches also `seen (batch, S) int64`, the items excluded from the
    ranking. Training predicts the item after every real slot of the history (the last one: `target`).
    """

    def __init__(
        self,
        meta: InteractionsMeta | dict[str, Any],
        net: Callable[..., nn.Module] | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        label_smoothing: float = 0.0,
        warmup_steps: int = 0,
        examples_shown: int = 10,
        cpu_threads: int | None = None,
    ):
        super().__init__()
        meta = DataMeta.from_dict(meta) if isinstance(meta, dict) else meta
        meta.require(InteractionsMeta, "the recommendation model")
        if not 0 <= label_smoothing < 1:
            raise AdlabError(f"model.label_smoothing={label_smoothing}: expected a value in [0, 1)")
        self.save_hyperparameters(ignore=["meta", "net", "optimizer"])
        self.meta = meta
        try:
            self.net = (net or SequentialEncoder)(
                items=meta.items,
                max_length=meta.max_length,
                user_cardinalities=meta.user_cardinalities,
                item_cardinalities=meta.item_cardinalities,
            )
        except ValueError as error:
            raise AdlabError(f"model.net: {error}") from None
        self.optimizer_factory = optimizer or (lambda params: torch.optim.AdamW(params, lr=1e-3))
        self.label_smoothing = label_smoothing
        self.warmup_steps = int(warmup_steps)
        self.examples_shown = int(examples_shown)
        self.register_buffer("popularity", torch.zeros(meta.items + 1))
        self.catalogue: InteractionsFeatures | None = None
        self.val_metrics = RankingMetrics(meta.items)
        self.test_metrics = RankingMetrics(meta.items)
        self.test_examples: list[dict[str, Any]] = []
        self._train_loss_sum = torch.zeros(())
        self._train_batches = 0

    def setup(self, stage: str) -> None:
        if self.hparams.cpu_threads and self.device.type == "cpu":
            torch.set_num_threads(int(self.hparams.cpu_threads))

    # ------------------------------------------------------------------ what it keeps besides weights
    def fit_to_train(self, train: TrainSplit) -> None:
        """Keep the catalogue (ids, titles, attributes, each user's train items) and the train popularity
        of every item (called by the harness before a fresh fit)."""
        features = train.features
        if not isinstance(features, InteractionsFeatures):
            raise AdlabError(
                "the recommendation model needs interactions data (data.source: InteractionsSource)"
            )
        self.use_catalogue(features)

    def use_catalogue(self, catalogue: InteractionsFeatures) -> None:
        """Take the catalogue: item attribute codes into the net, popularity into a buffer."""
        self.catalogue = catalogue
        with torch.no_grad():
            self.popularity[1:] = torch.tensor(catalogue.popularity, dtype=torch.float32)
        codes = torch.tensor(catalogue.item_codes, dtype=torch.int64).reshape(self.meta.items, -1)
        for table in self.net.modules():
            if hasattr(table, "set_codes") and table.codes.shape[1] == codes.shape[1]:
                table.set_codes(codes)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.catalogue is not None:
            checkpoint[CATALOGUE_KEY] = self.catalogue.to_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if isinstance(checkpoint.get(CATALOGUE_KEY), dict):
            self.catalogue = InteractionsFeatures.from_dict(checkpoint[CATALOGUE_KEY])

    # ------------------------------------------------------------------ model
    def forward(self, history: Tensor, user_features: Tensor) -> Tensor:
        """Scores `(batch, items + 1)` of every item after the latest one (column 0: padding, -inf)."""
        scores = self.net(history, user_features) @ self.net.item_vectors().T
        scores[:, 0] = -math.inf
        return scores

    def score(self, batch: dict[str, Tensor]) -> Tensor:
        """A batch's scores with the padding and each row's `seen` items at -inf."""
        return exclude_seen(self(batch["history"], batch["user_features"]), batch.get("seen"))

    def training_step(self, batch: dict[str, Tensor], batch_index: int) -> Tensor:
        history = batch["history"]
        states = self.net.states(history, batch["user_features"])
        following = torch.cat([history[:, 1:], batch["target"][:, None]], dim=1)
        predicted = (following > 0) & (history > 0)  # a real item after a real item
        logits = states[predicted] @ self.net.item_vectors().T
        logits[:, 0] = -math.inf
        loss = F.cross_entropy(logits.float(), following[predicted], label_smoothing=self.label_smoothing)
        self._train_loss_sum = self._train_loss_sum.to(loss.device) + loss.detach()
        self._train_batches += 1
        return loss

    def on_train_epoch_end(self) -> None:
        if self._train_batches:
            self.log("train/loss", self._train_loss_sum / self._train_batches, sync_dist=True)
        self._train_loss_sum, self._train_batches = torch.zeros(()), 0

    def validation_step(self, batch: dict[str, Tensor], batch_index: int) -> None:
        self.val_metrics.update(self.score(batch), batch["target"], self.popularity)

    def test_step(self, batch: dict[str, Tensor], batch_index: int) -> None:
        scores = self.score(batch)
        self.test_metrics.update(scores, batch["target"], self.popularity)
        wanted = self.examples_shown - len(self.test_examples)
        if wanted > 0 and self.catalogue is not None:
            rows = {name: value[:wanted].cpu() for name, value in batch.items()}
            top = scores[:wanted].topk(min(TOP_K, self.meta.items), dim=1).indices.cpu()
            ranks = target_ranks(scores[:wanted], batch["target"][:wanted]).cpu()
            self.test_examples += example_rows(self.catalogue, rows, top, ranks)

    def _log_metrics(self, stage: str, metrics: RankingMetrics) -> None:
        self.log_dict({f"{stage}/{name}": value for name, value in metrics.compute().items()})
        metrics.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val", self.val_metrics)

    def on_test_epoch_start(self) -> None:
        self.test_examples = []

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test", self.test_metrics)

    def predict_step(self, batch: dict[str, Tensor], batch_index: int) -> dict[str, Tensor]:
        """Per example: `top (batch, 10)` recommended item indices, `rank (batch,)` of the target (0-based)
        and the `target (batch,)`."""
        scores = self.score(batch)
        return {
            "top": scores.topk(min(TOP_K, self.meta.items), dim=1).indices,
            "rank": target_ranks(scores, batch["target"]),
            "target": batch["target"],
        }

    def prediction_columns(self, outputs: dict[str, Any]) -> dict[str, Any]:
        """`predictions.parquet`'s columns: the target item's id, its rank (1 = first) and the top 10 ids
        joined by `|`."""
        import numpy as np

        if not outputs:
            return {}
        ids = np.asarray(["", *self.catalogue.item_ids], dtype=object) if self.catalogue else None
        name = (lambda index: ids[index]) if ids is not None else (lambda index: index.astype(str))
        return {
            "target_item": name(outputs["target"]),
            "target_rank": outputs["rank"] + 1,
            "recommended": np.asarray(["|".join(row) for row in name(outputs["top"])], dtype=object),
        }

    def configure_callbacks(self) -> list[L.Callback]:
        """The example table runs for every recommendation job that tests."""
        if self.examples_shown <= 0:
            return []
        attached = self._trainer is not None and any(
            isinstance(c, RecommendationReport) for c in self.trainer.callbacks
        )
        return [] if attached else [RecommendationReport()]

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.warmup_steps <= 0:
            return optimizer
        warmup = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / self.warmup_steps)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": warmup, "interval": "step"}}

    # ------------------------------------------------------------------ use
    @torch.no_grad()
    def recommend(self, user: str, k: int) -> tuple[list[int], list[int], list[float]]:
        """For a user of the training log: `(their train items, top-k item indices, scores)`, the user's
        train items excluded."""
        catalogue = self.require_catalogue()
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.meta.items:
            raise AdlabError(
                f"k={k}: expected a whole number from 1 to the catalogue's {self.meta.items} items"
            )
        users = {user_id: index for index, user_id in enumerate(catalogue.user_ids, start=1)}
        if str(user) not in users:
            raise AdlabError(
                f"user={user}: not a user of the training log ({len(users)} users, e.g. "
                f"{', '.join(catalogue.user_ids[:3])})"
            )
        index = users[str(user)]
        items = catalogue.history(index)
        length = self.meta.max_length
        history = torch.tensor([[0] * max(length - len(items), 0) + items[-length:]], device=self.device)
        codes = torch.tensor([catalogue.user_codes[index - 1]], dtype=torch.int64, device=self.device)
        seen = torch.tensor([items or [0]], device=self.device)
        scores = exclude_seen(self(history, codes.reshape(1, -1)), seen)[0]
        top = scores.topk(k)
        return items, top.indices.tolist(), top.values.tolist()

    def require_catalogue(self) -> InteractionsFeatures:
        if self.catalogue is None:
            raise AdlabError(
                "this recommendation checkpoint carries no catalogue; retrain with this adlab version"
            )
        return self.catalogue

    def generate_outputs(self, options: DictConfig, output_dir: Path) -> Path:
        """`adlab-generate ckpt_path=... user=ID k=10`: print a user's latest train items and the top-k
        recommendations (titles), and write them to `<output_dir>/recommendations.csv`."""
        user, k = options.get("user"), options.get("k", TOP_K)
        if user is None:
            raise AdlabError("user is not set; expected user=ID, a user id of the training log")
        catalogue = self.require_catalogue()
        history, top, scores = self.recommend(str(user), k)
        print(f"user {user}: {len(history)} items in the training log; latest first:")
        for item in history[::-1][:5]:
            print(f"    {catalogue.title(item)}")
        print(f"top {k} recommendations (items they already have excluded):")
        rows = []
        for rank, (item, score) in enumerate(zip(top, scores, strict=True), start=1):
            print(f"{rank:>4}. {catalogue.title(item)}  ({score:.3f})")
            rows.append(
                {
                    "rank": rank,
                    "item": catalogue.item_ids[item - 1],
                    "title": catalogue.title(item),
                    "score": score,
                }
            )
        output_dir.mkdir(parents=True, exist_ok=True)
        path = output_dir / "recommendations.csv"
        with open(path, "w", newline="", encoding="utf-8") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"adlab-generate: wrote {path}")
        return path

    def export_spec(self, stored: StoredRun) -> ExportSpec:
        """`adlab-export`'s hook: the user encoder with the item vectors in the graph (scores of every item)."""
        from adlab.families.recommendation.export import recommender_spec

        return recommender_spec(self, stored)
