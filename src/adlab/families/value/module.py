"""`ValueModule`: forecast each customer's spend in the holdout window from calibration-period behaviour."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adlab.data.features import DataMeta, TrainSplit, TransactionsMeta
from adlab.errors import AdlabError
from adlab.families.value.metrics import ValueMetrics
from adlab.families.value.nets import ValueNet
from adlab.families.value.report import ValueReport, rate_customers
from adlab.families.value.ziln import ziln_expected_spend, ziln_loss

HEADS = {"ziln": 3, "mse": 1}
SEQUENCE_ENCODERS = (None, "none", "gru")


class ValueModule(L.LightningModule):
    """Customer value model: an MLP (optionally with a GRU over the spend sequence) and a ZILN or MSE head.

    Args:
        meta: the data's `TransactionsMeta` (feature names, sequence shape, window lengths).
        head: "ziln" (zero-inflated lognormal: probability of buying, lognormal mean and scale of spend;
            `adlab.families.value.ziln`) or "mse" (spend regressed directly, for comparison).
        hidden_sizes: widths of the MLP's hidden layers.
        dropout: dropout after each hidden layer.
        sequence_encoder: None (features only) or "gru" (a GRU over the per-period spend sequence).
        sequence_hidden: width of the GRU's state.
        spend_weight: weight of the ZILN's lognormal term (spend of the buyers) against its "buys at all"
            term; 1 is the plain likelihood.
        members: ensemble size K: independently initialised networks trained side by side, each on its own
            loss; the prediction is their mean expected spend and mean probability (a mixture).
        optimizer: a partial optimizer (`_partial_: true` in config) taking the parameters.
        tiers: cumulative shares of customers (best predicted first) rated A and A+B in the per-customer
            predictions (`prediction_columns`); the rest are C.
        report: draw the decile chart and the Lorenz curve of the test customers when testing
            (`adlab.families.value.report.ValueReport`).
        cpu_threads: torch threads on CPU (small matrices run fastest on one); None keeps torch's default.

    The per-customer predictions are the customer rating: the harness writes them as `predictions.parquet`
    and `ratings.csv` (`predictions_name`) after training, adlab-eval and adlab-predict.

    Batches are dicts (rows = customers): `features (batch, F) float32`, `sequence (batch, periods,
    channels) float32`, `target (batch,) float32` holdout spend. Spend is modelled in units of
    `spend_scale` (the train customers' mean positive holdout spend, set by `fit_to_train`).
    """

    # the predictions table in marketing terms: also written as ratings.csv (adlab.harness.predictions)
    predictions_name = "ratings"

    def __init__(
        self,
        meta: TransactionsMeta | dict[str, Any],
        head: str = "ziln",
        hidden_sizes: Sequence[int] = (64, 32),
        dropout: float = 0.1,
        sequence_encoder: str | None = None,
        sequence_hidden: int = 16,
        spend_weight: float = 1.0,
        members: int = 1,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        tiers: Sequence[float] = (0.2, 0.5),
        report: bool = True,
        cpu_threads: int | None = 1,
    ):
        super().__init__()
        meta = DataMeta.from_dict(meta) if isinstance(meta, dict) else meta
        meta.require(TransactionsMeta, "the value model")
        if head not in HEADS:
            raise AdlabError(f"model.head={head!r}: expected one of {sorted(HEADS)}")
        if sequence_encoder not in SEQUENCE_ENCODERS:
            raise AdlabError(f"model.sequence_encoder={sequence_encoder!r}: expected null or gru")
        tiers = [float(t) for t in tiers]
        if len(tiers) != 2 or not 0 < tiers[0] < tiers[1] < 1:
            raise AdlabError(
                f"model.tiers={tiers}: expected two increasing shares in (0, 1), e.g. [0.2, 0.5]"
            )
        # meta is rebuilt from the checkpoint's data entry; hyper-parameters hold plain values only
        self.save_hyperparameters(ignore=["meta", "optimizer"])
        self.head = head
        self.tiers = tiers
        self.report = report
        if not float(spend_weight) > 0:
            raise AdlabError(f"model.spend_weight={spend_weight}: expected a positive weight")
        if int(members) < 1:
            raise AdlabError(f"model.members={members}: expected at least 1")
        use_sequence = sequence_encoder == "gru"
        self.nets = nn.ModuleList(
            ValueNet(
                len(meta.features),
                HEADS[head],
                hidden_sizes,
                dropout,
                sequence_channels=len(meta.sequence_channels) if use_sequence else 0,
                sequence_hidden=sequence_hidden,
            )
            for _ in range(int(members))
        )
        self.use_sequence = use_sequence
        self.optimizer_factory = optimizer or (lambda params: torch.optim.AdamW(params, lr=1e-3))
        self.register_buffer("spend_scale", torch.ones(()))
        self.val_metrics = ValueMetrics()
        self.test_metrics = ValueMetrics()
        self._train_loss_sum = torch.zeros(())
        self._train_batches = 0

    def setup(self, stage: str) -> None:
        if self.hparams.cpu_threads and self.device.type == "cpu":
            torch.set_num_threads(int(self.hparams.cpu_threads))

    def fit_to_train(self, train: TrainSplit) -> None:
        """Set the spend unit and start the head at the train customers' marginals (called by the harness
        before a fresh fit): the buyer rate and the mean and spread of log spend (ZILN), or the mean
        spend (MSE). Kept in the state dict, so checkpoints score the same."""
        target = train.tensors["target"].double()
        positive = target[target > 0]
        if len(positive) == 0:
            raise AdlabError(
                "data: no train customer bought in the holdout window; expected some holdout spend "
                "(a later data.source.holdout_end, or more customers)"
            )
        self.spend_scale.fill_(float(positive.mean()))
        if self.head == "ziln":
            rate = min(max(len(positive) / len(target), 1e-4), 1 - 1e-4)
            log_spend = (positive / self.spend_scale.double()).log()
            sigma = max(float(log_spend.std()) if len(positive) > 1 else 1.0, 0.1)
            start = [
                math.log(rate / (1 - rate)),
                float(log_spend.mean()),
                sigma + math.log(-math.expm1(-sigma)),
            ]
        else:
            start = [float((target / self.spend_scale.double()).mean())]
        with torch.no_grad():
            for net in self.nets:
                net.head.bias.copy_(torch.tensor(start))

    # ------------------------------------------------------------------ model
    def forward(self, features: Tensor, sequence: Tensor | None = None) -> Tensor:
        """Head outputs of every member `(members, batch, 3)` (ZILN: logit, mu, raw sigma) or
        `(members, batch, 1)` (MSE), spend in `spend_scale` units."""
        sequence = sequence if self.use_sequence else None
        return torch.stack([net(features, sequence) for net in self.nets])

    def predict_value(self, features: Tensor, sequence: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """`(expected holdout spend (batch,), probability of buying (batch,) or None for the MSE head)`."""
        outputs = self(features, sequence).float()
        if self.head == "ziln":
            spend, probability = ziln_expected_spend(outputs)
            return spend.mean(0) * self.spend_scale, probability.mean(0)
        return outputs[..., 0].clamp_min(0).mean(0) * self.spend_scale, None

    def loss(self, outputs: Tensor, target: Tensor) -> Tensor:
        """ZILN negative log-likelihood, or the squared error of spend (both in `spend_scale` units), of
        `outputs (members, batch, k)`: the mean of the members' losses."""
        scaled = (target.float() / self.spend_scale).expand(outputs.shape[:-1])
        if self.head == "ziln":
            return ziln_loss(outputs, scaled, self.hparams.spend_weight)
        return F.mse_loss(outputs[..., 0].float(), scaled)

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: dict[str, Tensor], batch_index: int) -> Tensor:
        loss = self.loss(self(batch["features"], batch.get("sequence")), batch["target"])
        self._train_loss_sum = self._train_loss_sum.to(loss.device) + loss.detach()
        self._train_batches += 1
        return loss

    def on_train_epoch_end(self) -> None:
        if self._train_batches:
            self.log("train/loss", self._train_loss_sum / self._train_batches, sync_dist=True)
        self._train_loss_sum, self._train_batches = torch.zeros(()), 0

    def _evaluate(self, batch: dict[str, Tensor], metrics: ValueMetrics, stage: str) -> None:
        outputs = self(batch["features"], batch.get("sequence"))
        self.log(f"{stage}/loss", self.loss(outputs, batch["target"]), batch_size=len(batch["target"]))
        spend, probability = self.predict_value(batch["features"], batch.get("sequence"))
        metrics.update(spend, spend if probability is None else probability, batch["target"])

    def validation_step(self, batch: dict[str, Tensor], batch_index: int) -> None:
        self._evaluate(batch, self.val_metrics, "val")

    def test_step(self, batch: dict[str, Tensor], batch_index: int) -> None:
        self._evaluate(batch, self.test_metrics, "test")

    def _log_metrics(self, stage: str, metrics: ValueMetrics) -> None:
        self.log_dict({f"{stage}/{name}": value for name, value in metrics.compute().items()})
        metrics.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val", self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test", self.test_metrics)

    def predict_step(self, batch: dict[str, Tensor], batch_index: int) -> dict[str, Tensor]:
        """Per customer: `predicted_spend (batch,)`, `buy_probability (batch,)` (NaN for the MSE head), and
        the actual holdout spend `target (batch,)` when the batch has it."""
        spend, probability = self.predict_value(batch["features"], batch.get("sequence"))
        outputs = {
            "predicted_spend": spend,
            "buy_probability": torch.full_like(spend, math.nan) if probability is None else probability,
        }
        if "target" in batch:
            outputs["target"] = batch["target"]
        return outputs

    def prediction_columns(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The customer rating (`adlab.harness.predictions`): predicted spend, probability of buying, decile of
        predicted spend among the scored customers (1 = best), tier A/B/C (`tiers`) and, when known, the
        actual holdout spend."""
        spend = outputs.get("predicted_spend", np.zeros(0))
        decile, tier = rate_customers(spend, self.tiers)
        columns = {
            "predicted_spend": spend.round(2),
            "buy_probability": outputs.get("buy_probability", np.zeros(0)).round(4),
            "decile": decile,
            "tier": tier,
        }
        if "target" in outputs:
            columns["holdout_spend"] = outputs["target"].round(2)
        return columns

    def configure_callbacks(self) -> list[L.Callback]:
        """The customer rating runs for every value job that tests, whatever the callbacks config holds."""
        if not self.report:
            return []
        attached = self._trainer is not None and any(
            isinstance(c, ValueReport) for c in self.trainer.callbacks
        )
        return [] if attached else [ValueReport()]

    def export_spec(self, stored: Any) -> Any:
        """`adlab-export`'s hook: raw calibration features in, expected spend and probability of buying out,
        the feature scaling in the graph and the log's reading rules beside it (`value_spec`)."""
        from adlab.families.value.export import value_spec

        return value_spec(self, stored)

    def configure_optimizers(self) -> Any:
        return self.optimizer_factory(self.parameters())
