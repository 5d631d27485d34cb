"""`ImageryModule`: classify ad and product images (small CNN, small ResNet, or any torchvision model)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from adlab.data.features import DataMeta, ImageMeta
from adlab.errors import AdlabError, excerpt
from adlab.families.imagery.augment import BatchAugment
from adlab.families.imagery.export import image_classifier_spec
from adlab.families.imagery.nets import SmallCNN
from adlab.families.imagery.report import ImageryPlots
from adlab.harness.averaging import WeightAverage
from adlab.harness.checkpoints import StoredRun
from adlab.harness.exporting import ExportSpec

SCHEDULES = ("onecycle", "cosine", "constant")


def _metrics(num_classes: int) -> MetricCollection:
    return MetricCollection(
        {
            "accuracy": MulticlassAccuracy(num_classes, average="micro"),
            "macro_f1": MulticlassF1Score(num_classes, average="macro"),
            "class_accuracy": MulticlassAccuracy(num_classes, average=None),
        }
    )


class ImageryModule(L.LightningModule):
    """Image classifier trained with label-smoothed cross-entropy on in-memory uint8 batches.

    Args:
        meta: the data's `ImageMeta` (classes, class_keys, channels, image_size, mean, std); a plain dict
            (`ImageMeta.to_dict()`, as the hyperparameters store it) is read back into one.
        net: a partial network (`_partial_: true` in config) taking `in_channels` and `num_classes`:
            `adlab.families.imagery.nets.SmallCNN` (default), `adlab.families.imagery.nets.SmallResNet`, or
            `adlab.families.imagery.nets.TorchvisionClassifier` (any torchvision model by name).
        augment: the training transform preset (`adlab.families.imagery.augment.BatchAugment`); None trains on the
            images as they are. Evaluation only scales and normalises (the eval preset).
        label_smoothing: cross-entropy label smoothing.
        optimizer: a partial optimizer taking the parameters (default AdamW, lr 1e-3).
        schedule: "onecycle" (torch's OneCycleLR), "cosine" (linear warm-up, cosine decay to 0) or
            "constant"; stepped every batch, over the trainer's `max_epochs`.
        warmup_fraction: share of the steps spent warming up (one-cycle's rising phase).
        ema_decay: keep an exponential moving average of the weights (e.g. 0.999), updated once per
            optimizer step (`adlab.harness.averaging.WeightAverage`); the network holds it for
            val/test/predict and in checkpoints, and its raw weights while training. None turns it off.
        channels_last: store weights and batches channels-last (faster convolutions on GPU and oneDNN CPUs).
        compile: `torch.compile` the network for training.
        misclassified_shown: misclassified test images drawn in `plots/misclassified.png` (0: no plots).

    Batches are dicts: `image (batch, c, h, w) uint8`, `target (batch,) int64`. After the transfer to the
    device the image becomes normalised float32 (augmented while training). `forward` takes normalised
    images and returns logits `(batch, num_classes)`.
    """

    def __init__(
        self,
        meta: ImageMeta | dict[str, Any],
        net: Callable[..., nn.Module] | None = None,
        augment: BatchAugment | None = None,
        label_smoothing: float = 0.0,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        schedule: str = "onecycle",
        warmup_fraction: float = 0.25,
        ema_decay: float | None = None,
        channels_last: bool = False,
        compile: bool = False,
        misclassified_shown: int = 36,
    ):
        super().__init__()
        if schedule not in SCHEDULES:
            raise AdlabError(f"model.schedule={schedule!r}: expected one of {SCHEDULES}")
        if ema_decay is not None and not 0 < ema_decay < 1:
            raise AdlabError(f"model.ema_decay={ema_decay}: expected a decay between 0 and 1, or null")
        image_meta = DataMeta.from_dict(meta) if isinstance(meta, dict) else meta
        image_meta.require(ImageMeta, "the imagery model")
        # save_hyperparameters reads the arguments from here: the meta goes into checkpoints as plain
        # containers (they load with weights_only=True)
        meta = image_meta.to_dict()
        self.save_hyperparameters(ignore=["net", "augment", "optimizer"])
        self.classes: list[str] = list(image_meta.classes)
        self.class_keys: list[str] = list(image_meta.class_keys)
        self.image_shape = image_meta.image_shape
        self.net = (net or SmallCNN)(in_channels=self.image_shape[0], num_classes=len(self.classes))
        self._check_input_size()
        # normalisation of 0-255 pixels as one multiply-add: x * pixel_scale + pixel_shift
        mean = torch.tensor(image_meta.mean).view(1, -1, 1, 1)
        std = torch.tensor(image_meta.std).view(1, -1, 1, 1)
        self.register_buffer("pixel_scale", 1 / (std * 255), persistent=False)
        self.register_buffer("pixel_shift", -mean / std, persistent=False)
        self.augment = augment
        self.label_smoothing = label_smoothing
        self.optimizer_factory = optimizer or (lambda params: torch.optim.AdamW(params, lr=1e-3))
        self.schedule = schedule
        self.warmup_fraction = warmup_fraction
        self.channels_last = channels_last
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        # batch-norm statistics are averaged too: the averaged weights are evaluated with them
        self.weight_average = WeightAverage(ema_decay, buffers=True)
        self.compile = compile
        self.misclassified_shown = misclassified_shown
        self.val_metrics = _metrics(len(self.classes))
        self.test_metrics = _metrics(len(self.classes))
        self._train_loss_sum = torch.zeros(())
        self._train_batches = 0
        # set in on_fit_start; kept out of the module tree so checkpoints hold the plain network's names
        self.__dict__["_compiled_net"] = None

    def _check_input_size(self) -> None:
        """Fail at construction, naming the sizes, when the network cannot take the data's images."""
        was_training = self.net.training
        self.net.eval()
        try:
            with torch.no_grad():
                self.net(torch.zeros(2, *self.image_shape))
        except RuntimeError as error:
            raise AdlabError(
                f"model.net cannot take {self.image_shape[1]}x{self.image_shape[2]} images with "
                f"{self.image_shape[0]} channel(s) ({excerpt(error, 160)}); set data.source.image_size larger"
            ) from None
        finally:
            self.net.train(was_training)

    # ------------------------------------------------------------------ data
    def prepare(self, images: Tensor) -> Tensor:
        """Scale and normalise `(batch, c, h, w)` uint8 images (or floats in [0, 1]) to model input."""
        scaled = images.float() if images.dtype == torch.uint8 else images.float() * 255
        normalised = torch.addcmul(self.pixel_shift, scaled, self.pixel_scale)
        return normalised.contiguous(memory_format=torch.channels_last) if self.channels_last else normalised

    def display(self, images: Tensor) -> Tensor:
        """Undo `prepare`: normalised images back to `(batch, c, h, w)` uint8."""
        return ((images.float() - self.pixel_shift) / self.pixel_scale).round().clamp(0, 255).to(torch.uint8)

    def on_after_batch_transfer(self, batch: dict[str, Tensor], dataloader_idx: int) -> dict[str, Tensor]:
        images = batch["image"]
        training = self.trainer.training and self.augment is not None
        if training:
            images = self.augment.geometric(images)
        images = self.prepare(images)
        if training:
            images = self.augment.erase(images)
        return {**batch, "image": images}

    # ------------------------------------------------------------------ model
    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)

    def export_spec(self, stored: StoredRun) -> ExportSpec:
        """`adlab-export`'s hook: the classifier with pixel scaling, normalisation and softmax in the graph."""
        return image_classifier_spec(self, stored)

    def features(self, images: Tensor) -> Tensor:
        """Penultimate features `(batch, d)` of uint8 images (or floats in [0, 1]), e.g. for FID."""
        return self.net.features(self.prepare(images))

    def on_fit_start(self) -> None:
        if self.compile and self.__dict__["_compiled_net"] is None:
            self.__dict__["_compiled_net"] = torch.compile(self.net)

    def training_step(self, batch: dict[str, Tensor], batch_index: int) -> Tensor:
        compiled = self.__dict__["_compiled_net"]
        net = self.net if compiled is None else compiled
        logits = net(batch["image"])
        loss = F.cross_entropy(logits.float(), batch["target"], label_smoothing=self.label_smoothing)
        # summed on the device and logged once per epoch: a per-step .item() would stall the GPU
        self._train_loss_sum = self._train_loss_sum.to(loss.device) + loss.detach()
        self._train_batches += 1
        return loss

    def optimizer_step(
        self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None
    ) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        self.weight_average.update(self.net)

    # the weight average: evaluated from each evaluation until training goes on, and in every checkpoint
    def on_train_batch_start(self, batch: Any, batch_index: int) -> None:
        self.weight_average.swap_out(self.net)

    def on_validation_epoch_start(self) -> None:
        self.weight_average.swap_in(self.net)

    def on_test_epoch_start(self) -> None:
        self.weight_average.swap_in(self.net)

    def on_predict_epoch_start(self) -> None:
        self.weight_average.swap_in(self.net)

    def on_fit_end(self) -> None:
        self.weight_average.swap_in(self.net)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.weight_average.save(checkpoint, self.net, "net.")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.weight_average.load(checkpoint)

    def on_train_epoch_end(self) -> None:
        if self._train_batches:
            self.log("train/loss", self._train_loss_sum / self._train_batches, sync_dist=True)
        self._train_loss_sum, self._train_batches = torch.zeros(()), 0

    def validation_step(self, batch: dict[str, Tensor], batch_index: int) -> None:
        # float32 logits: under bf16 autocast ties between classes would otherwise be common
        self.val_metrics.update(self(batch["image"]).float(), batch["target"])

    def test_step(self, batch: dict[str, Tensor], batch_index: int) -> dict[str, Tensor]:
        logits = self(batch["image"]).float()
        self.test_metrics.update(logits, batch["target"])
        return {"predictions": logits.argmax(dim=1)}

    def _log_metrics(self, stage: str, metrics: MetricCollection) -> None:
        values = metrics.compute()
        logged = {f"{stage}/accuracy": values["accuracy"], f"{stage}/macro_f1": values["macro_f1"]}
        for key, value in zip(self.class_keys, values["class_accuracy"], strict=True):
            logged[f"{stage}/accuracy_{key}"] = value
        self.log_dict(logged)
        metrics.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val", self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test", self.test_metrics)

    def predict_step(self, batch: dict[str, Tensor], batch_index: int) -> dict[str, Tensor]:
        """`probabilities (batch, num_classes)`; `target (batch,)` passed through when the batch has it."""
        outputs = {"probabilities": torch.softmax(self(batch["image"]).float(), dim=1)}
        if "target" in batch:
            outputs["target"] = batch["target"]
        return outputs

    def prediction_columns(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The predictions table (`adlab.harness.predictions`): `predicted_class`, its `probability`,
        `true_class` when the rows had labels, and `probability_<class key>` for every class."""
        probabilities = outputs.get("probabilities", np.zeros((0, len(self.classes)), dtype=np.float32))
        classes = np.asarray(self.classes, dtype=object)
        columns = {
            "predicted_class": classes[probabilities.argmax(axis=1)],
            "probability": probabilities.max(axis=1, initial=0.0),
        }
        if "target" in outputs:
            columns["true_class"] = classes[outputs["target"]]
        columns.update({f"probability_{key}": probabilities[:, k] for k, key in enumerate(self.class_keys)})
        return columns

    def configure_callbacks(self) -> list[L.Callback]:
        # attached by every trainer that tests this model (adlab-train and adlab-eval alike), once
        attached = any(isinstance(c, ImageryPlots) for c in self.trainer.callbacks)
        return [ImageryPlots(self.misclassified_shown)] if self.misclassified_shown and not attached else []

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.net.parameters())
        if self.schedule == "constant":
            return optimizer
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise AdlabError(
                f"model.schedule={self.schedule}: needs a finite trainer.max_epochs or max_steps"
            )
        total = max(int(total), 1)
        warmup = self.warmup_fraction
        if self.schedule == "onecycle":
            scheduler: Any = torch.optim.lr_scheduler.OneCycleLR(
                optimizer,
                max_lr=[group["lr"] for group in optimizer.param_groups],
                total_steps=total,
                # kept off the values where torch's phase lengths round to zero steps (tiny debug runs)
                pct_start=min(max(warmup, 1.5 / total), 1 - 1 / (1.5 * total)),
            )
        else:
            warmup_steps = int(warmup * total)

            def factor(step: int) -> float:
                if step < warmup_steps:
                    return (step + 1) / warmup_steps
                progress = (step - warmup_steps) / max(1, total - warmup_steps)
                return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
