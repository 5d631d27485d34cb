"""`PropensityModule`: an MLP (or an ensemble of K MLPs) propensity-to-buy scorer for customer features."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from adlab.data.features import DataMeta, TabularMeta, TrainSplit
from adlab.errors import AdlabError
from adlab.families.propensity.export import propensity_spec
from adlab.families.propensity.features import l1_path_ranking
from adlab.families.propensity.nets import NUMERIC_EMBEDDINGS, PiecewiseLinearEmbedding, TabularMLP
from adlab.families.propensity.report import PropensityReport
from adlab.harness.averaging import WeightAverage
from adlab.harness.checkpoints import StoredRun
from adlab.harness.exporting import ExportSpec
from adlab.metrics.binary import PropensityMetrics
from adlab.metrics.ranking import score_deciles

CALIBRATIONS = (None, "temperature", "isotonic")
log = logging.getLogger(__name__)


def _tabular_meta(meta: DataMeta | dict[str, Any]) -> TabularMeta:
    """The data meta as `TabularMeta`: as a tabular source builds it, or as hyper-parameters store it."""
    meta = DataMeta.from_dict(meta) if isinstance(meta, dict) else meta
    meta.require(TabularMeta, "model=propensity")
    return meta


def _feature_indices(meta: TabularMeta, features: Sequence[str] | None) -> tuple[Tensor, Tensor]:
    """Positions of the selected columns among the data's categorical and numeric columns."""
    categorical, numeric = list(meta.categorical), list(meta.numeric)
    if features is None:
        return torch.arange(len(categorical)), torch.arange(len(numeric))
    unknown = [name for name in features if name not in categorical and name not in numeric]
    if unknown:
        raise AdlabError(
            f"model.features: {unknown} are not feature columns of the data ({categorical + numeric})"
        )
    if not features:
        raise AdlabError("model.features=[]: select at least one column, or null for all")
    return (
        torch.tensor([i for i, name in enumerate(categorical) if name in features], dtype=torch.long),
        torch.tensor([i for i, name in enumerate(numeric) if name in features], dtype=torch.long),
    )


class PropensityModule(L.LightningModule):
    """Binary propensity scorer trained with (optionally weighted, label-smoothed) binary cross-entropy.

    Args:
        meta: the data's `TabularMeta` (categorical names and cardinalities, numeric names, positive rate),
            or its `to_dict()` (as hyper-parameters and checkpoints store it).
        hidden_sizes: widths of the MLP's hidden layers.
        dropout: dropout rate.
        embedding_dim: cap on categorical embedding widths.
        positive_weight: weight of the positive class in the loss; "balanced" uses negatives/positives of train.
        label_smoothing: targets become `y * (1 - s) + s / 2`.
        top_fraction: share of customers contacted for `topNN_hits` / `topNN_capture` (0.2 -> top20).
        optimizer: a partial optimizer (`_partial_: true` in config) taking the parameters.
        scheduler: an optional partial LR scheduler taking the optimizer.
        members: ensemble size K. Each member is trained on its own loss; the score is the members'
            mean logit, so one checkpoint holds (and one forward pass evaluates) the whole ensemble.
        bootstrap: give each member Poisson(1) weights per customer and batch (online bagging), so
            members see different resamples of train.
        features: the feature columns the network reads (names of categorical or numeric columns);
            None reads them all. The data, and so the baselines, keep every column.
        select_numeric: read only this many of the numeric columns (those of `features`, or all),
            chosen when fitting by `adlab.families.propensity.features.l1_path_ranking` on this run's train split, so val
            and test never shape the choice. The choice is saved in checkpoints. Categorical columns
            are read as `features` says. None reads every numeric column.
        numeric_embedding: None or "none" (scaled values), "periodic" (learned sin/cos features per column)
            or "piecewise_linear" (quantile bins of the column, their edges fitted on this run's train
            split when fitting starts and saved in checkpoints).
        numeric_embedding_dim: width of a numeric column's embedding.
        frequencies: learned frequencies per numeric column (periodic).
        frequency_sigma: standard deviation of the initial frequencies (periodic).
        bins: quantile bins per numeric column (piecewise_linear).
        ema_decay: average the network's weights over training steps (an exponential moving average
            whose decay ramps up to this value, `adlab.harness.averaging.WeightAverage`). Validation
            scores the average, so early stopping and checkpoint selection choose among averages, and
            checkpoints (hence test, calibration and export) hold it; training goes on from the raw
            weights. Checkpoints keep the raw weights beside the average, so a resumed fit goes on with
            both. Updated once per optimizer step. None: no average.
        calibration: post-hoc calibration fitted on val by the marketing report: None, "temperature"
            or "isotonic" (reported as `test/ece_calibrated`; the model's scores are left as they are).
        report: write the marketing report (gains/lift chart, calibration plot, decile table) on test.
        cpu_threads: torch intra-op threads when running on CPU (None leaves torch's default). A tabular
            MLP's matrices are too small to split: on a busy 2-core machine 2 threads made a training
            step 30x slower than 1 (450 ms against 14 ms for 8 members, batch 256).
        out_of_fold_rows: set on a cross-fitted ensemble (`merge_cross_fitted`): it holds the
            out-of-fold logits of that many pool rows, and its val metrics and val-fitted calibration
            use them (scoring its own training rows would be in-sample). None for a trained network.

    Batches are dicts: `categorical (batch, n_cat) int64`, `numeric (batch, n_num) float32`,
    `target (batch,) float32`. `forward` returns logits `(batch,)`.
    """

    def __init__(
        self,
        meta: TabularMeta | dict[str, Any],
        hidden_sizes: Sequence[int] = (64, 32),
        dropout: float = 0.2,
        embedding_dim: int = 8,
        positive_weight: float | str | None = None,
        label_smoothing: float = 0.0,
        top_fraction: float = 0.2,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        members: int = 1,
        bootstrap: bool = False,
        features: Sequence[str] | None = None,
        select_numeric: int | None = None,
        numeric_embedding: str | None = None,
        numeric_embedding_dim: int = 4,
        frequencies: int = 8,
        frequency_sigma: float = 0.1,
        bins: int = 8,
        ema_decay: float | None = None,
        calibration: str | None = "temperature",
        report: bool = True,
        cpu_threads: int | None = 1,
        out_of_fold_rows: int | None = None,
    ):
        super().__init__()
        typed = _tabular_meta(meta)
        # save_hyperparameters records the arguments' current values: the meta as plain containers, so
        # that checkpoints hold no class (they load with weights_only=True)
        meta = typed.to_dict()
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        meta = self.meta = typed
        if members < 1:
            raise AdlabError(f"model.members={members}: expected at least 1")
        if numeric_embedding not in NUMERIC_EMBEDDINGS:
            raise AdlabError(
                f"model.numeric_embedding={numeric_embedding!r}: expected one of {NUMERIC_EMBEDDINGS}"
            )
        if numeric_embedding == "piecewise_linear" and bins < 1:
            raise AdlabError(f"model.bins={bins}: expected at least 1 quantile bin per numeric column")
        if ema_decay is not None and not 0 < ema_decay < 1:
            raise AdlabError(f"model.ema_decay={ema_decay}: expected a decay between 0 and 1, or null")
        if calibration not in CALIBRATIONS:
            raise AdlabError(f"model.calibration={calibration!r}: expected one of {CALIBRATIONS}")
        self.optimizer_factory = optimizer or (lambda params: torch.optim.AdamW(params, lr=1e-3))
        self.scheduler_factory = scheduler
        categorical_index, numeric_index = _feature_indices(meta, features)
        # the numeric columns select_numeric chooses among; fit_to_train ranks them on train
        self.numeric_candidates = numeric_index
        if select_numeric is not None:
            if not 1 <= select_numeric <= len(numeric_index):
                raise AdlabError(
                    f"model.select_numeric={select_numeric}: expected null or 1..{len(numeric_index)} "
                    "(the numeric columns the model may read)"
                )
            # a placeholder until fitted or loaded; a copy, so that filling it leaves the candidates intact
            numeric_index = numeric_index[:select_numeric].clone()
        # which input columns the network reads; buffers so they follow the model's device. A selection
        # made on train data is state, so it goes into checkpoints; one from the config need not.
        self.register_buffer("categorical_index", categorical_index, persistent=False)
        self.register_buffer("numeric_index", numeric_index, persistent=select_numeric is not None)
        if select_numeric is not None:
            # set once the columns are chosen (and restored from checkpoints): a trained network keeps the
            # columns its first layer was fitted on when it is trained further
            self.register_buffer("numeric_selected", torch.tensor(False))
        self.net = TabularMLP(
            [meta.cardinalities[i] for i in categorical_index.tolist()],
            len(numeric_index),
            hidden_sizes,
            dropout,
            embedding_dim,
            members=members,
            numeric_embedding=numeric_embedding,
            numeric_embedding_dim=numeric_embedding_dim,
            frequencies=frequencies,
            frequency_sigma=frequency_sigma,
            bins=bins,
        )
        # start every member at the base rate: from a 0.5 start the first epochs only learn the bias, and
        # a val metric picked among those epochs selects an uncalibrated network
        rate = min(max(float(meta.positive_rate), 1e-4), 1 - 1e-4)
        with torch.no_grad():
            self.net.layers[-1].bias.fill_(math.log(rate / (1 - rate)))
        self.bootstrap = bootstrap
        self.calibration = calibration
        self.report = report
        if positive_weight == "balanced":
            rate = meta.positive_rate
            positive_weight = (1 - rate) / max(rate, 1e-6)
        self.register_buffer(
            "positive_weight",
            torch.tensor(float(positive_weight)) if positive_weight else None,
            persistent=False,
        )
        self.label_smoothing = label_smoothing
        for name in ("out_of_fold_logits", "out_of_fold_targets"):
            self.register_buffer(
                name,
                torch.zeros(out_of_fold_rows) if out_of_fold_rows is not None else None,
                persistent=out_of_fold_rows is not None,
            )
        self._val_offset = 0
        # the network holds the average (ema_decay) from each validation until training resumes
        self.weight_average = WeightAverage(ema_decay)
        self.val_metrics = PropensityMetrics(top_fraction)
        self.test_metrics = PropensityMetrics(top_fraction)
        self._train_loss_sum = torch.zeros(())
        self._train_batches = 0
        self._report: PropensityReport | None = None

    def setup(self, stage: str) -> None:
        if self.hparams.cpu_threads and self.device.type == "cpu":
            torch.set_num_threads(int(self.hparams.cpu_threads))
        if stage == "fit" and self.out_of_fold_logits is not None:
            raise AdlabError(
                "ckpt_path: a cross-fitted ensemble (fit=crossfit) cannot be trained further, its members "
                "saw different folds; expected a new run without ckpt_path"
            )

    def fit_to_train(self, train: TrainSplit) -> None:
        """Fit what the network reads on the train split, before training: the `select_numeric` columns,
        then the piecewise-linear bins of the columns read. The harness calls this once before fitting from
        scratch (`adlab.harness.build.prepare_model`), never when resuming; a module that already holds
        them (loaded from a checkpoint) keeps them, so a trained network keeps the columns its first layer
        was fitted on.

        Args:
            train: the train split; its tensors `numeric (rows, n_num) float32` and `target (rows,)` are read.
        """
        if self.hparams.select_numeric is not None and not bool(self.numeric_selected):
            self.select_numeric_columns(train.tensors)
        if self._bins_unfitted():
            self.fit_bins(train.tensors)

    def _bins_unfitted(self) -> bool:
        embedding = self.net.numeric_embedding
        return isinstance(embedding, PiecewiseLinearEmbedding) and not bool(embedding.fitted)

    def on_fit_start(self) -> None:
        # after a resumed fit restored its checkpoint: the columns and bins are there by now
        unselected = self.hparams.select_numeric is not None and not bool(self.numeric_selected)
        if unselected or self._bins_unfitted():
            raise AdlabError(
                "model.select_numeric / model.numeric_embedding=piecewise_linear fit on the train split: "
                "expected fit_to_train(train split) before trainer.fit (adlab-train calls it)"
            )

    def fit_bins(self, train: dict[str, Tensor]) -> None:
        """Set the piecewise-linear bins from the train split's numeric columns this network reads."""
        numeric = train["numeric"].detach().cpu().index_select(1, self.numeric_index.cpu())
        if not bool(torch.isfinite(numeric).all()):
            raise AdlabError(
                "data: the train split's numeric columns hold NaN or infinite values; "
                "model.numeric_embedding=piecewise_linear expected finite (imputed) values"
            )
        self.net.numeric_embedding.fit(numeric)

    def select_numeric_columns(self, train: dict[str, Tensor]) -> list[str]:
        """Choose the `select_numeric` numeric columns from the train split's tensors
        (`numeric (rows, n_num) float32`, `target (rows,)`); returns their names."""
        candidates = self.numeric_candidates
        numeric = train["numeric"].detach().cpu()[:, candidates].numpy()
        ranking = l1_path_ranking(numeric, train["target"].detach().cpu().numpy())
        chosen = candidates[sorted(ranking[: self.hparams.select_numeric])]
        self.numeric_index.copy_(chosen.to(self.numeric_index.device))
        self.numeric_selected.fill_(True)
        names = [self.meta.numeric[i] for i in chosen.tolist()]
        log.info("select_numeric=%d on the train split: %s", len(names), names)
        return names

    def column_selection(self) -> tuple[Tensor | None, Tensor | None]:
        """The categorical and numeric column indices the network reads; None where it reads them all
        (then no gather is needed)."""
        numeric_selected = self.hparams.features is not None or self.hparams.select_numeric is not None
        return (
            self.categorical_index if self.hparams.features is not None else None,
            self.numeric_index if numeric_selected else None,
        )

    def member_logits(self, categorical: Tensor, numeric: Tensor) -> Tensor:
        """Every member's logits `(members, batch)` from the full input columns."""
        # index_select: one Gather in an exported graph, where tensor indexing costs a GatherND and two
        # Transposes
        categorical_index, numeric_index = self.column_selection()
        if categorical_index is not None:
            categorical = categorical.index_select(1, categorical_index)
        if numeric_index is not None:
            numeric = numeric.index_select(1, numeric_index)
        return self.net(categorical, numeric).squeeze(-1)

    def forward(self, categorical: Tensor, numeric: Tensor) -> Tensor:
        # the mean logit, not the mean probability: one smooth score, and export stays a plain graph
        return self.member_logits(categorical, numeric).mean(dim=0)

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """Binary cross-entropy of `logits (members, batch)` or `(batch,)` against `target (batch,)`."""
        if self.label_smoothing:
            target = target * (1 - self.label_smoothing) + self.label_smoothing / 2
        target = target.expand_as(logits)
        weight = None
        if self.bootstrap and self.training:
            weight = torch.poisson(torch.ones_like(logits))
        losses = F.binary_cross_entropy_with_logits(
            logits, target, weight=weight, pos_weight=self.positive_weight, reduction="none"
        )
        # the mean over members too: Adam's updates do not depend on the loss scale, and train/loss
        # stays comparable between ensemble sizes
        return losses.mean()

    def training_step(self, batch: dict[str, Tensor], batch_index: int) -> Tensor:
        loss = self.loss(self.member_logits(batch["categorical"], batch["numeric"]), batch["target"])
        # summed here and logged once per epoch: per-step logging would dominate a tiny model's step time
        self._train_loss_sum = self._train_loss_sum.to(loss.device) + loss.detach()
        self._train_batches += 1
        return loss

    def optimizer_step(
        self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None
    ) -> None:
        # called once per optimizer step (not on gradient-accumulation batches), before any checkpoint of
        # this step is written
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        self.weight_average.update(self.net)

    def on_train_batch_start(self, batch: Any, batch_index: int) -> None:
        # validated with the average: train on from the raw weights
        self.weight_average.swap_out(self.net)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the state dict holds the average, the raw weights sit beside it: a resumed fit goes on with both
        self.weight_average.save(checkpoint, self.net, "net.")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # a resumed fit goes on from the raw weights (with or without ema_decay now)
        self.weight_average.load(checkpoint)

    def export_spec(self, stored: StoredRun) -> ExportSpec:
        """`adlab-export`'s hook: the scorer with its numeric scaling in the graph (`propensity_spec`)."""
        return propensity_spec(self, stored)

    def on_train_epoch_end(self) -> None:
        if self._train_batches:
            self.log("train/loss", self._train_loss_sum / self._train_batches, sync_dist=True)
        self._train_loss_sum, self._train_batches = torch.zeros(()), 0

    def _evaluate(self, batch: dict[str, Tensor], metrics: PropensityMetrics) -> None:
        logits = self(batch["categorical"], batch["numeric"])
        metrics.update(torch.sigmoid(logits), batch["target"])

    def on_validation_epoch_start(self) -> None:
        self._val_offset = 0
        trainer = self._trainer
        fitting = trainer is not None and trainer.state.fn == "fit" and not trainer.sanity_checking
        if fitting:
            # validation, and the checkpoints written after it, see the weight average
            self.weight_average.swap_in(self.net)

    def validation_step(self, batch: dict[str, Tensor], batch_index: int) -> None:
        if self.out_of_fold_logits is None:
            self._evaluate(batch, self.val_metrics)
            return
        # a cross-fitted ensemble: val rows come in order (the pool, unshuffled) and are scored by the
        # fold networks that did not train on them
        if self.trainer is not None and self.trainer.world_size > 1:
            raise AdlabError(
                f"trainer.devices: a cross-fitted ensemble is evaluated in one process, got {self.trainer.world_size}; "
                "expected trainer.devices=1"
            )
        rows = len(batch["target"])
        part = slice(self._val_offset, self._val_offset + rows)
        logits, targets = self.out_of_fold_logits[part], self.out_of_fold_targets[part]
        if len(logits) != rows or not torch.equal(targets, batch["target"].to(targets.dtype)):
            raise AdlabError(
                f"ckpt_path: the val rows differ from the {len(self.out_of_fold_logits)} pool customers this "
                "cross-fitted ensemble stored out-of-fold scores for; expected the data and seed it was trained on"
            )
        self._val_offset += rows
        self.val_metrics.update(torch.sigmoid(logits), batch["target"])

    def test_step(self, batch: dict[str, Tensor], batch_index: int) -> None:
        self._evaluate(batch, self.test_metrics)

    def _log_metrics(self, stage: str, metrics: PropensityMetrics) -> None:
        self.log_dict({f"{stage}/{name}": value for name, value in metrics.compute().items()})
        metrics.reset()

    def on_validation_epoch_end(self) -> None:
        trainer = self._trainer
        limited = trainer is not None and (trainer.fast_dev_run or trainer.limit_val_batches != 1.0)
        if not limited:
            self.check_val_rows(self._val_offset)
        self._log_metrics("val", self.val_metrics)

    def check_val_rows(self, rows: int) -> None:
        """A cross-fitted ensemble's val metrics and calibration read its stored out-of-fold scores:
        refuse a val split of `rows` rows when it stored scores for another number."""
        if self.out_of_fold_logits is not None and rows != len(self.out_of_fold_logits):
            raise AdlabError(
                f"ckpt_path: the val split has {rows} rows, this cross-fitted ensemble stored "
                f"out-of-fold scores for {len(self.out_of_fold_logits)}; expected the data and seed it was trained on"
            )

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test", self.test_metrics)

    def configure_callbacks(self) -> list[L.Callback]:
        """The marketing report runs for every propensity job, whatever the callbacks config holds. One
        report per module: it keeps the val rows of `trainer.validate` for the `trainer.test` that follows."""
        if not self.report:
            return []
        if self._report is None:
            self._report = PropensityReport(self.calibration, self.hparams.top_fraction)
        return [self._report]

    def predict_step(self, batch: dict[str, Tensor], batch_index: int) -> dict[str, Tensor]:
        """`score (batch,)`: purchase probabilities; `target (batch,)` passed through when the batch has it."""
        outputs = {"score": torch.sigmoid(self(batch["categorical"], batch["numeric"]))}
        if "target" in batch:
            outputs["target"] = batch["target"]
        return outputs

    def prediction_columns(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The predictions table (`adlab.harness.predictions`): `score` (probability of buying), `decile`
        (1 = the tenth of the scored customers with the highest scores, as in `decile_table.csv`) and
        `target` (0/1) when the rows had one."""
        scores = outputs.get("score", np.zeros(0, dtype=np.float32))
        columns = {"score": scores, "decile": score_deciles(scores)}
        if "target" in outputs:
            columns["target"] = outputs["target"].astype(np.int64)
        return columns

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "epoch"},
        }


def _first_linear_key(state: dict[str, Tensor]) -> str:
    """The state key of the first dense layer's weight (the one reading the concatenated inputs)."""
    keys = sorted(
        (key for key in state if key.startswith("net.layers.") and key.endswith(".weight")),
        key=lambda key: int(key.split(".")[2]),
    )
    return keys[0]


def merge_cross_fitted(
    modules: Sequence[PropensityModule], out_of_fold_logits: Tensor, out_of_fold_targets: Tensor
) -> PropensityModule:
    """One ensemble from K networks trained on K folds: its score is the mean of theirs, exactly.

    Every module must share the architecture and the data encoding (cross-fitting fits preprocessing on
    the pool). Members are stacked along the member dimension. Where each fold chose its own numeric
    columns (`select_numeric`), the ensemble reads the union of them and each member's first layer
    gets zero weights for the columns its fold did not choose, so it computes what it did before.

    Args:
        modules: the K fold networks (each with M members), in fold order.
        out_of_fold_logits: `(pool_rows,)` each pool row's logit from the network that did not train on it.
        out_of_fold_targets: `(pool_rows,)` their targets (val checks that it scores the same customers).
    """
    first = modules[0]
    hparams = dict(first.hparams)
    members = int(hparams["members"])
    selected = [m.numeric_index.detach().cpu() for m in modules]
    union = torch.unique(torch.cat(selected)) if hparams["select_numeric"] is not None else selected[0]
    hparams.update(
        members=members * len(modules),
        out_of_fold_rows=len(out_of_fold_logits),
        select_numeric=len(union) if hparams["select_numeric"] is not None else None,
    )
    merged = PropensityModule(**hparams)
    states = [m.state_dict() for m in modules]
    target = merged.state_dict()
    first_linear = _first_linear_key(target)
    embedded = first.net.numeric_embedding is not None
    numeric_width = int(hparams["numeric_embedding_dim"]) if embedded else 1
    categorical_width = sum(int(table.shape[-1]) for table in first.net.embeddings)
    for key in target:
        if key in ("numeric_index", "numeric_selected", "out_of_fold_logits", "out_of_fold_targets"):
            continue
        if target[key].ndim == 0:
            # flags (piecewise-linear bins fitted): every fold network's is set
            target[key] = states[0][key]
        elif key.startswith("net.numeric_embedding.") or key == first_linear:
            parts = []
            for state, columns in zip(states, selected, strict=True):
                positions = torch.searchsorted(union, columns)
                old = state[key]
                if key == first_linear:
                    new = torch.zeros(
                        old.shape[0], categorical_width + len(union) * numeric_width, old.shape[2]
                    )
                    new[:, :categorical_width] = old[:, :categorical_width]
                    blocks = old[:, categorical_width:].reshape(old.shape[0], len(columns), numeric_width, -1)
                    view = new[:, categorical_width:].view(old.shape[0], len(union), numeric_width, -1)
                    view[:, positions] = blocks
                else:
                    # periodic frequencies, piecewise-linear edges, weight, bias: the feature axis is
                    # dim 2 (dim 1 for weight); a column a fold did not read gets zeros
                    axis = 1 if key.endswith(".weight") else 2
                    shape = list(old.shape)
                    shape[axis] = len(union)
                    new = torch.zeros(shape, dtype=old.dtype)
                    new.index_copy_(axis, positions, old)
                parts.append(new)
            target[key] = torch.cat(parts)
        else:
            target[key] = torch.cat([state[key] for state in states])
    if hparams["select_numeric"] is not None:
        target["numeric_index"] = union.to(target["numeric_index"].dtype)
        target["numeric_selected"] = torch.tensor(True)
    target["out_of_fold_logits"] = out_of_fold_logits.detach().float().cpu()
    target["out_of_fold_targets"] = out_of_fold_targets.detach().float().cpu()
    merged.load_state_dict(target)
    return merged
