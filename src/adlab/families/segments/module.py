"""`SegmentModule`: customer segments from an autoencoder's embedding, refined by a DEC/IDEC clustering head."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from torch import Tensor

from adlab.data.features import DataMeta, TabularMeta, TrainSplit, TransactionsMeta
from adlab.errors import AdlabError
from adlab.families.segments.metrics import bootstrap_ari, segment_metrics, segment_shares
from adlab.families.segments.nets import (
    AutoencoderEnsemble,
    TabularAutoencoder,
    batch_inputs,
    soft_assignment,
    target_distribution,
)
from adlab.families.segments.report import SegmentReport, name_segments, segment_profile

log = logging.getLogger(__name__)
ENCODE_BATCH = 8192


class SegmentModule(L.LightningModule):
    """Customer segments: an autoencoder over each customer's features, then a DEC/IDEC clustering head.

    Why reconstruction and not a contrastive objective: customer tables are small (thousands of rows) and
    have no natural augmentations (cropping or recolouring a customer's spend has no meaning), so the
    positive pairs a contrastive loss needs would be invented noise; reconstructing the features keeps
    every column's information in the embedding with no such choice.

    Training: `pretrain_epochs` epochs of reconstruction only; then, at the switch epoch, the `k` centres
    start from scikit-learn's k-means (seeded, `kmeans_restarts` inits) on the embeddings of the train
    customers, and training goes on with IDEC's loss (Guo et al. 2017): reconstruction + `cluster_weight` x
    KL(P || Q), Q the Student-t soft assignments to the centres (DEC, Xie et al. 2016) and P the sharpened
    target distribution, recomputed at the start of each epoch by a frozen copy of the encoder and centres
    (soft segment sizes over the whole train split). Keeping the reconstruction term stops the embedding
    from distorting into degenerate clusters.

    Guards (labels and holdout spend are never used in fitting; they only reach the metrics):
    - every segment keeps at least `min_segment_share` of the train customers. At the switch the k-means
      start is re-seeded up to `reseeds` times while a segment is under the share, and the start with the
      largest smallest segment is kept. DEC's target distribution divides by the soft segment sizes, which
      grows small segments, so a segment between half the share and the share is a logged warning for the
      first `share_grace_epochs` clustering epochs, and such an epoch is never selected (`val/silhouette`
      is logged as -1); after them, or under half the share at any time (a collapse), or when training
      ends, it is logged as an error and the run stops with one line (`AdlabError`), never a silent result;
    - `fit_to_train` refuses (one line, exit 2) k < 2, k above the train customers, k x `min_segment_share`
      above 1 (no segmentation can keep every share) and features that are all constant.

    Args:
        meta: the data's `TransactionsMeta` (calibration features) or `TabularMeta` (numeric columns and
            categorical embeddings).
        k: number of segments.
        min_segment_share: the smallest share of train customers a segment may hold.
        latent_dim: width of the embedding (of each autoencoder).
        hidden_sizes: widths of the encoder's hidden layers (the decoder mirrors them).
        embedding_dim: width of each categorical embedding (tabular data).
        encoders: autoencoders trained side by side from different initialisations; the segments are formed
            in their embeddings concatenated (`encoders x latent_dim` wide), which makes them repeat across
            seeds (`AutoencoderEnsemble`); 1 is a single autoencoder.
        pretrain_epochs: reconstruction-only epochs before the clustering head starts.
        cluster_weight: weight of the KL term (IDEC's gamma).
        alpha: degrees of freedom of the Student-t kernel.
        kmeans_restarts: k-means inits at the switch (the best inertia wins).
        reseeds: further k-means starts (new seeds) tried when a start leaves a segment under the share.
        share_grace_epochs: clustering epochs in which a segment between half the share and the share is a
            warning (the epoch is not selectable) rather than an error.
        seed: seed of the weights' initialisation and of k-means (the run's seed by default in configs).
        optimizer: a partial optimizer taking the parameters.
        report: write `segments.csv`, `profiles.csv` and `plots/segments_map.png` when testing.
        cpu_threads: torch threads on CPU (None keeps torch's default).

    Batches are dicts (rows = customers): transactions `features (batch, F) float32`, `target (batch,)`
    holdout spend (metrics only), optionally `calibration`, `customer`; tabular `numeric (batch, N) float32`,
    `categorical (batch, C) int64`, `target (batch,)` 0/1 (metrics only).
    """

    def __init__(
        self,
        meta: TransactionsMeta | TabularMeta | dict[str, Any],
        k: int = 8,
        min_segment_share: float = 0.02,
        latent_dim: int = 8,
        hidden_sizes: Sequence[int] = (64, 32),
        embedding_dim: int = 4,
        encoders: int = 1,
        pretrain_epochs: int = 10,
        cluster_weight: float = 0.1,
        alpha: float = 1.0,
        kmeans_restarts: int = 10,
        reseeds: int = 3,
        share_grace_epochs: int = 5,
        seed: int = 0,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        report: bool = True,
        cpu_threads: int | None = 1,
    ):
        super().__init__()
        meta = DataMeta.from_dict(meta) if isinstance(meta, dict) else meta
        if not isinstance(meta, (TransactionsMeta, TabularMeta)):
            raise AdlabError(
                f"the segments model needs transactions or tabular data; data.source gives {meta.kind!r} data"
            )
        if int(k) < 2:
            raise AdlabError(f"model.k={k}: expected at least 2 segments")
        if int(encoders) < 1:
            raise AdlabError(f"model.encoders={encoders}: expected at least 1 autoencoder")
        if not 0 <= float(min_segment_share) < 1:
            raise AdlabError(f"model.min_segment_share={min_segment_share}: expected a share in [0, 1)")
        if int(k) * float(min_segment_share) > 1:
            raise AdlabError(
                f"model.k={k} x model.min_segment_share={min_segment_share} exceeds all customers; expected "
                "k x min share <= 1"
            )
        if (
            int(pretrain_epochs) < 0
            or float(cluster_weight) < 0
            or float(alpha) <= 0
            or int(share_grace_epochs) < 0
        ):
            raise AdlabError(
                f"model.pretrain_epochs={pretrain_epochs}, cluster_weight={cluster_weight}, alpha={alpha}, "
                f"share_grace_epochs={share_grace_epochs}: expected pretrain_epochs >= 0, cluster_weight >= 0, "
                "alpha > 0, share_grace_epochs >= 0"
            )
        self.save_hyperparameters(ignore=["meta", "optimizer"])
        self.spend = isinstance(meta, TransactionsMeta)
        self.feature_names = list(meta.features) if self.spend else list(meta.numeric)
        cardinalities = [] if self.spend else list(meta.cardinalities)
        self.categorical_names = [] if self.spend else list(meta.categorical)
        with torch.random.fork_rng():
            torch.manual_seed(int(seed))
            members = [
                TabularAutoencoder(
                    len(self.feature_names), cardinalities, embedding_dim, list(hidden_sizes), latent_dim
                )
                for _ in range(int(encoders))
            ]
        # one autoencoder stays one (its checkpoints keep their keys); several are an ensemble
        self.net = members[0] if len(members) == 1 else AutoencoderEnsemble(members)
        self.k = int(k)
        self.centres = torch.nn.Parameter(torch.zeros(self.k, int(latent_dim) * int(encoders)))
        self.register_buffer("centres_ready", torch.zeros((), dtype=torch.bool))
        # raw-value scaling of the numeric inputs (profiles and names), set by `fit_to_train`
        self.register_buffer("feature_mean", torch.zeros(len(self.feature_names)))
        self.register_buffer("feature_scale", torch.ones(len(self.feature_names)))
        self.segment_names: list[str] = [f"segment {j}" for j in range(self.k)]
        self.optimizer_factory = optimizer or (lambda params: torch.optim.Adam(params, lr=1e-3))
        self._train: tuple[Tensor, Tensor | None] | None = None
        self._teacher: tuple[TabularAutoencoder | AutoencoderEnsemble, Tensor, Tensor] | None = None
        self._outputs: dict[str, list[Tensor]] = {}
        self._losses: list[Tensor] = []
        self._under_share = False  # this epoch's train segments break the share (within the grace)

    # ------------------------------------------------------------------ fitting besides weights
    def fit_to_train(self, train: TrainSplit) -> None:
        """Check the train customers (k, shares, constant features) and keep their inputs in memory for the
        k-means start, the target distribution and the share guard (not in the checkpoint)."""
        numeric, categorical = batch_inputs(train.tensors)
        rows = len(numeric)
        if self.k > rows:
            raise AdlabError(f"model.k={self.k}: expected at most the {rows} train customers")
        if rows < self.k * max(1, int(np.ceil(self.hparams.min_segment_share * rows))):
            raise AdlabError(
                f"data: {rows} train customers are fewer than k={self.k} x the minimum segment size; "
                "expected more customers, a smaller model.k or model.min_segment_share"
            )
        varying = bool((numeric.std(dim=0) > 0).any()) if numeric.shape[1] else False
        if categorical is not None:
            varying = varying or bool((categorical != categorical[:1]).any())
        if not varying:
            raise AdlabError(
                "data: every feature is constant over the train customers; expected features that vary"
            )
        self._train = (numeric, categorical)
        features = train.features
        if features is not None and hasattr(features, "scale"):
            if self.spend:  # signed log1p then standardised (`TransactionsFeatures`)
                self.feature_mean.copy_(torch.tensor(features.mean, dtype=torch.float32))
                self.feature_scale.copy_(torch.tensor(features.scale, dtype=torch.float32))
            elif len(getattr(features, "mean", [])) == len(self.feature_names):
                self.feature_mean.copy_(torch.tensor(features.mean, dtype=torch.float32))
                self.feature_scale.copy_(torch.tensor(features.scale, dtype=torch.float32))

    def raw_features(self, numeric: Tensor) -> Tensor:
        """The numeric inputs back in the data's units (for profiles; lifts are ratios of these)."""
        values = numeric.float() * self.feature_scale.to(numeric.device) + self.feature_mean.to(
            numeric.device
        )
        return torch.sign(values) * torch.expm1(values.abs()) if self.spend else values

    # ------------------------------------------------------------------ model
    def forward(self, numeric: Tensor, categorical: Tensor | None = None) -> Tensor:
        """The embedding `(batch, encoders x latent_dim)`."""
        return self.net.encode(numeric, categorical)

    @torch.no_grad()
    def encode_all(self, numeric: Tensor, categorical: Tensor | None) -> Tensor:
        """Embeddings of many rows in chunks, in eval mode, on the module's device.

        Returns `(rows, encoders x latent_dim)` on CPU."""
        training = self.training
        self.eval()
        parts = []
        for start in range(0, len(numeric), ENCODE_BATCH):
            cat = None if categorical is None else categorical[start : start + ENCODE_BATCH].to(self.device)
            parts.append(self(numeric[start : start + ENCODE_BATCH].to(self.device), cat).cpu())
        self.train(training)
        return torch.cat(parts) if parts else torch.zeros(0, self.centres.shape[1])

    def assign(self, latent: Tensor) -> tuple[Tensor, Tensor]:
        """`(segment (rows,) int64, distance to its centre (rows,))` by the nearest centre."""
        distance = torch.cdist(latent.float(), self.centres.detach().to(latent.device).float())
        nearest, segment = distance.min(dim=1)
        return segment, nearest

    def _train_segments(self) -> tuple[np.ndarray, Tensor]:
        assert self._train is not None
        latent = self.encode_all(*self._train)
        return self.assign(latent)[0].numpy(), latent

    def _start_centres(self) -> None:
        """k-means on the train customers' embeddings (re-seeded while a segment is under the share)."""
        if self._train is None:
            raise AdlabError(
                "model: the clustering head needs the train customers (fit_to_train was not called)"
            )
        latent = self.encode_all(*self._train).double().numpy()
        share = self.hparams.min_segment_share
        best: tuple[float, KMeans] | None = None
        for attempt in range(int(self.hparams.reseeds) + 1):
            seed = int(self.hparams.seed) + 1000 * attempt
            kmeans = KMeans(self.k, n_init=int(self.hparams.kmeans_restarts), random_state=seed).fit(latent)
            smallest = float(segment_shares(kmeans.labels_, self.k).min())
            if best is None or smallest > best[0]:
                best = (smallest, kmeans)
            if smallest >= share:
                break
            log.warning(
                "segments: k-means start %d (seed %d) leaves a segment with %.2f%% of train customers "
                "(< %.2f%%)",
                attempt + 1,
                seed,
                100 * smallest,
                100 * share,
            )
        assert best is not None
        smallest, kmeans = best
        if smallest < share / 2:
            message = (
                f"model: segment collapse at the k-means start: after {int(self.hparams.reseeds) + 1} seeds the "
                f"smallest segment holds {smallest:.2%} of train customers, below half of "
                f"model.min_segment_share={share}; expected a smaller model.k or model.min_segment_share"
            )
            log.error(message)
            raise AdlabError(message)
        with torch.no_grad():
            self.centres.copy_(torch.from_numpy(kmeans.cluster_centers_).float())
            self.centres_ready.fill_(True)
        log.info("segments: clustering head started from k-means at epoch %d", self.current_epoch)

    def _check_shares(self, final: bool = False) -> None:
        """The share guard on the train customers (class docstring; `final`: no grace), and the segments'
        names from their profile."""
        segments, _ = self._train_segments()
        shares = segment_shares(segments, self.k)
        share = self.hparams.min_segment_share
        grace = self.current_epoch < int(self.hparams.pretrain_epochs) + int(self.hparams.share_grace_epochs)
        self._under_share = bool(shares.min() < share)
        if self._under_share and (final or not grace or shares.min() < share / 2):
            message = (
                f"model: segment collapse at epoch {self.current_epoch}: segment {int(shares.argmin())} holds "
                f"{shares.min():.2%} of train customers, below model.min_segment_share="
                f"{share}; expected a smaller model.cluster_weight or model.k"
            )
            log.error(message)
            raise AdlabError(message)
        if self._under_share:
            log.warning(
                "segments: epoch %d: segment %d holds %.2f%% of train customers (< %.2f%%); within the first "
                "%d clustering epochs, so training goes on and this epoch is not selected",
                self.current_epoch,
                int(shares.argmin()),
                100 * shares.min(),
                100 * share,
                int(self.hparams.share_grace_epochs),
            )
        numeric = self._train[0]
        profile = segment_profile(
            numeric.numpy(), self.raw_features(numeric).numpy(), segments, self.k, self.feature_names
        )
        self.segment_names = name_segments(profile, self.k)

    # ------------------------------------------------------------------ steps
    def _loss(self, batch: dict[str, Tensor], teacher: bool) -> tuple[Tensor, Tensor, Tensor | None]:
        numeric, categorical = batch_inputs(batch)
        latent = self(numeric, categorical)
        reconstruction = self.net.reconstruction_loss(latent, numeric, categorical)
        if not bool(self.centres_ready):
            return reconstruction, reconstruction, None
        q = soft_assignment(latent, self.centres, self.hparams.alpha)
        with torch.no_grad():
            if teacher and self._teacher is not None:
                net, centres, frequency = self._teacher
                p = target_distribution(
                    soft_assignment(net.encode(numeric, categorical), centres, self.hparams.alpha), frequency
                )
            else:
                p = target_distribution(q)
        kl = F.kl_div(q.clamp_min(1e-12).log(), p, reduction="batchmean")
        return reconstruction + self.hparams.cluster_weight * kl, reconstruction, kl

    def on_train_epoch_start(self) -> None:
        if self.hparams.cpu_threads and self.device.type == "cpu":
            torch.set_num_threads(int(self.hparams.cpu_threads))
        if not bool(self.centres_ready) and self.current_epoch >= int(self.hparams.pretrain_epochs):
            self._start_centres()
        if bool(self.centres_ready) and self._train is not None:
            # the epoch's target distribution: a frozen copy of the encoder and centres, soft sizes over train
            latent = self.encode_all(*self._train).to(self.device)
            frequency = soft_assignment(latent, self.centres.detach(), self.hparams.alpha).sum(dim=0)
            teacher = copy.deepcopy(self.net).eval()
            for parameter in teacher.parameters():
                parameter.requires_grad_(False)
            self._teacher = (teacher, self.centres.detach().clone(), frequency)

    def training_step(self, batch: dict[str, Tensor], batch_index: int) -> Tensor:
        loss, reconstruction, kl = self._loss(batch, teacher=True)
        self._losses.append(
            torch.stack(
                [
                    loss.detach(),
                    reconstruction.detach(),
                    (kl if kl is not None else loss.new_zeros(())).detach(),
                ]
            )
        )
        return loss

    def on_train_epoch_end(self) -> None:
        if self._losses:
            loss, reconstruction, kl = torch.stack(self._losses).mean(0)
            self.log_dict({"train/loss": loss, "train/reconstruction": reconstruction, "train/kl": kl})
        self._losses = []

    def on_train_end(self) -> None:
        """A run shorter than `pretrain_epochs` (fast_dev_run, a time budget) still ends with segments: the
        k-means start on the pretrained embedding (logged). Either way the share guard runs without grace."""
        if bool(self.centres_ready) and self._train is not None:
            self._check_shares(final=True)
        elif self._train is not None:
            log.warning(
                "segments: training ended before model.pretrain_epochs=%d; the segments are k-means on the "
                "autoencoder's embedding (no clustering head epochs)",
                self.hparams.pretrain_epochs,
            )
            self._start_centres()
            self._check_shares(final=True)

    def on_validation_epoch_start(self) -> None:
        # during fitting, after the epoch's training batches and before its checkpoint: guard and names
        fitting = (
            self._trainer is not None and self.trainer.training is False and self.trainer.state.fn == "fit"
        )
        self._under_share = False
        if (
            fitting
            and not self.trainer.sanity_checking
            and bool(self.centres_ready)
            and self._train is not None
        ):
            self._check_shares()
        self._outputs = {}

    def on_test_epoch_start(self) -> None:
        self._outputs = {}

    def _collect(self, batch: dict[str, Tensor], stage: str) -> None:
        loss, reconstruction, _ = self._loss(batch, teacher=False)
        size = len(batch["target"]) if "target" in batch else None
        self.log(f"{stage}/loss", loss, batch_size=size)
        self.log(f"{stage}/reconstruction", reconstruction, batch_size=size)
        if not bool(self.centres_ready) or "target" not in batch:
            return
        latent = self(*batch_inputs(batch))
        segment, distance = self.assign(latent)
        for name, value in (
            ("latent", latent),
            ("segment", segment),
            ("distance", distance),
            ("target", batch["target"]),
        ):
            self._outputs.setdefault(name, []).append(value.detach().float().cpu())

    def validation_step(self, batch: dict[str, Tensor], batch_index: int) -> None:
        self._collect(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_index: int) -> None:
        self._collect(batch, "test")

    def _log_segment_metrics(self, stage: str) -> None:
        if not self._outputs:
            if stage == "val":
                # no segments yet (pretraining): the worst silhouette, so that checkpointing on
                # val/silhouette never selects an epoch before the clustering head exists
                self.log("val/silhouette", -1.0)
            return
        outputs = {name: torch.cat(parts).numpy() for name, parts in self._outputs.items()}
        segments = outputs["segment"].astype(np.int64)
        scores = segment_metrics(segments, self.k, outputs["latent"], outputs["target"], self.spend)
        if stage == "val" and self._under_share:
            scores["silhouette"] = -1.0  # the train segments break the share: never the selected epoch
        if stage == "test" and self._train is not None:
            scores["ari_bootstrap"] = self.bootstrap_ari(outputs["latent"], segments)
        self.log_dict({f"{stage}/{name}": float(value) for name, value in scores.items()})

    def bootstrap_ari(self, latent: np.ndarray, segments: np.ndarray) -> float:
        """Stability against the sample with the encoder held fixed: the mean ARI between `segments` of the
        rows `latent (n, latent_dim)` and k-means (seeded `kmeans_restarts` inits, as at the switch)
        refitted on bootstrap resamples of the train customers' embeddings."""
        assert self._train is not None
        train = self.encode_all(*self._train).double().numpy()

        def refit(sample: np.ndarray, seed: int) -> Callable[[np.ndarray], np.ndarray]:
            kmeans = KMeans(self.k, n_init=int(self.hparams.kmeans_restarts), random_state=seed).fit(sample)
            return lambda values: kmeans.predict(np.asarray(values, dtype=np.float64))

        stability = bootstrap_ari(
            refit, train, {"test": latent}, {"test": segments}, seed=int(self.hparams.seed)
        )
        return stability["test"]

    def on_validation_epoch_end(self) -> None:
        self._log_segment_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_segment_metrics("test")

    def predict_step(self, batch: dict[str, Tensor], batch_index: int) -> dict[str, Tensor]:
        """Per customer: `segment (batch,) int64`, `distance (batch,)` to its centre in the embedding, and
        the holdout spend or target `target (batch,)` when the batch has it."""
        segment, distance = self.assign(self(*batch_inputs(batch)))
        outputs = {"segment": segment, "distance": distance}
        if "target" in batch:
            outputs["target"] = batch["target"]
        return outputs

    def prediction_columns(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each customer's segment, its name and the distance to its centre (`adlab.harness.predictions`),
        and the holdout spend (transactions) or target when known."""
        segment = outputs.get("segment", np.zeros(0, dtype=np.int64)).astype(np.int64)
        columns = {
            "segment": segment,
            "segment_name": np.asarray([self.segment_names[s] for s in segment], dtype=object),
            "distance": outputs.get("distance", np.zeros(0)).round(4),
        }
        if "target" in outputs:
            columns["holdout_spend" if self.spend else "target"] = outputs["target"].round(2)
        return columns

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["segment_names"] = list(self.segment_names)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        names = checkpoint.get("segment_names")
        if names and len(names) == self.k:
            self.segment_names = [str(name) for name in names]

    def configure_callbacks(self) -> list[L.Callback]:
        """The segment report runs for every segments job that tests, whatever the callbacks config holds."""
        if not self.hparams.report:
            return []
        attached = self._trainer is not None and any(
            isinstance(c, SegmentReport) for c in self.trainer.callbacks
        )
        return [] if attached else [SegmentReport()]

    def export_spec(self, stored: Any) -> Any:
        """`adlab-export`'s hook: raw calibration features in, segment and distance to its centre out, the
        feature scaling in the graph and the log's reading rules and segment names beside it
        (`segments_spec`; transactions data only)."""
        from adlab.families.segments.export import segments_spec

        return segments_spec(self, stored)

    def configure_optimizers(self) -> Any:
        return self.optimizer_factory(self.parameters())
