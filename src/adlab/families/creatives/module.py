"""`CreativesModule`: a class-conditional GAN for product creatives, scored offline by an adlab classifier.

Training uses Lightning's manual optimisation: every batch makes one discriminator step, and every
`n_dis`-th batch also a generator step. Lightning's `global_step` counts every optimizer step, so an
epoch of B batches advances it by B + B / n_dis (use `max_epochs`, not `max_steps`, to compare presets).
Lightning ignores `trainer.gradient_clip_val` under manual optimisation; `grad_clip` clips here by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from PIL import Image
from torch import Tensor, nn

from adlab.data.features import DataMeta, ImageMeta, TrainSplit
from adlab.errors import AdlabError
from adlab.families.creatives.evaluation import (
    ClassifierFeatures,
    EvaluatorNet,
    GenerativeScores,
    InceptionFeatures,
    PixelClassifier,
    fit_classifier,
    load_evaluator,
    new_classifier,
    to_uint8,
    train_evaluator,
)
from adlab.families.creatives.nets import POLICIES, DCGANDiscriminator, DCGANGenerator, diff_augment
from adlab.families.creatives.report import CreativePlots, class_grid_figure, write_figure
from adlab.harness.averaging import WeightAverage

log = logging.getLogger(__name__)

LOSSES = ("bce", "hinge")


def discriminator_loss(kind: str, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """`bce`: the original GAN loss on logits; `hinge`: mean(relu(1 - real)) + mean(relu(1 + fake))."""
    if kind == "hinge":
        return F.relu(1 - real_scores).mean() + F.relu(1 + fake_scores).mean()
    return F.softplus(-real_scores).mean() + F.softplus(fake_scores).mean()


def generator_loss(kind: str, fake_scores: Tensor) -> Tensor:
    """`bce`: the non-saturating loss -log D(G(z)); `hinge`: -mean(D(G(z)))."""
    return -fake_scores.mean() if kind == "hinge" else F.softplus(-fake_scores).mean()


def folder_name(class_name: str) -> str:
    """A class name usable as one folder name ("T-shirt/top" -> "T-shirt_top")."""
    return class_name.replace("/", "_").replace("\\", "_").strip() or "class"


class CreativesModule(L.LightningModule):
    """Class-conditional image GAN (DCGAN baseline or SN-ResNet with projection D, conditional BN, EMA).

    Args:
        meta: the data's `ImageMeta` (classes, class_keys, channels, image_size); a plain dict
            (`ImageMeta.to_dict()`, as the hyperparameters store it) is read back into one.
        generator: partial generator taking `latent_dim`, `image_shape`, `num_classes`
            (`adlab.families.creatives.nets.DCGANGenerator` or `ResNetGenerator`).
        discriminator: partial discriminator taking `image_shape`, `num_classes`
            (`adlab.families.creatives.nets.DCGANDiscriminator` or `ResNetDiscriminator`).
        latent_dim: size of the noise vector z.
        conditional: condition both networks on the class (false: a plain unconditional GAN; no CAS).
        loss: "bce" (non-saturating, the DCGAN loss) or "hinge".
        generator_optimizer / discriminator_optimizer: partial optimizers (separate learning rates).
        n_dis: discriminator steps per generator step (one per batch).
        ema_decay: decay of the generator's weight average used for every sample (val, test, plots,
            adlab-generate, and what checkpoints hold), updated after every generator step and warmed up
            as min(decay, (1 + n) / (10 + n)), the initial weights counting as the first update
            (`adlab.harness.averaging.WeightAverage`); null: sample the live generator.
        diff_augment: DiffAugment policies applied to every discriminator input, e.g. [translation, cutout].
        grad_clip: clip each network's gradient norm to this (null: no clipping).
        evaluator_ckpt: an adlab image-classifier checkpoint of the same data: FID/KID features, diversity
            and the accuracy on generated images. Null (the default): `evaluator_net` is trained on the
            train split before fitting (or reused from `evaluator_cache_dir`) and stored in the checkpoints.
        evaluator_net: partial classifier net taking `image_shape`, `num_classes`, with `features(x)` and
            `feature_dim` (default `adlab.families.creatives.evaluation.EvaluatorNet`): the built-in
            evaluator and the CAS classifier.
        evaluator_epochs: epochs of the built-in evaluator on the train split.
        evaluator_cache_dir: trained evaluators are kept under `<dir>/<dataset>-<hash>/` and reused by the
            next run on the same train split (null: train every time).
        inception_weights: torchvision Inception v3 weights file: FID/KID from its 2048-d features instead.
        floor_samples: train images whose FID features are kept (in the checkpoint) for the floor.
        cas_samples: generated images (spread evenly over the classes) the CAS classifier is trained on.
        cas_epochs: epochs of the CAS classifier.
        kid_subset_size: KID subset size (cut to the number of samples).
        collapse_ratio: a class whose generated diversity is below this share of the real one is flagged
            as mode-collapsed.
        grid_samples: samples per class in the fixed-noise and class-by-sample grids.

    Batches: `image (batch, c, h, w) uint8`, `target (batch,) int64`. The generator works in [-1, 1].
    The FID floor (`test/fid_floor`) compares train images with test images: before fitting
    (`fit_to_train`) the FID features of `floor_samples` train images are computed and stored in the
    checkpoint, so `adlab-eval` and resumed fits measure the floor too.
    """

    def __init__(
        self,
        meta: ImageMeta | dict[str, Any],
        generator: Callable[..., nn.Module] | None = None,
        discriminator: Callable[..., nn.Module] | None = None,
        latent_dim: int = 128,
        conditional: bool = True,
        loss: str = "hinge",
        generator_optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        discriminator_optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        n_dis: int = 1,
        ema_decay: float | None = 0.999,
        diff_augment: Sequence[str] = (),
        grad_clip: float | None = None,
        evaluator_ckpt: str | None = None,
        evaluator_net: Callable[..., nn.Module] | None = None,
        evaluator_epochs: int = 2,
        evaluator_cache_dir: str | None = None,
        inception_weights: str | None = None,
        floor_samples: int = 10_000,
        cas_samples: int = 5000,
        cas_epochs: int = 3,
        kid_subset_size: int = 1000,
        collapse_ratio: float = 0.5,
        grid_samples: int = 10,
    ):
        super().__init__()
        image_meta = DataMeta.from_dict(meta) if isinstance(meta, dict) else meta
        image_meta.require(ImageMeta, "the creatives model")
        if loss not in LOSSES:
            raise AdlabError(f"model.loss={loss!r}: expected one of {LOSSES}")
        if n_dis < 1:
            raise AdlabError(
                f"model.n_dis={n_dis}: expected at least 1 discriminator step per generator step"
            )
        if ema_decay is not None and not 0 < ema_decay < 1:
            raise AdlabError(f"model.ema_decay={ema_decay}: expected a decay between 0 and 1, or null")
        unknown = set(diff_augment) - set(POLICIES)
        if unknown:
            raise AdlabError(
                f"model.diff_augment={list(diff_augment)}: unknown {sorted(unknown)}; expected {POLICIES}"
            )
        # save_hyperparameters reads the arguments from here: the meta goes into checkpoints as plain
        # containers (they load with weights_only=True)
        meta = image_meta.to_dict()
        self.save_hyperparameters(
            ignore=[
                "generator",
                "discriminator",
                "generator_optimizer",
                "discriminator_optimizer",
                "evaluator_net",
            ]
        )
        self.automatic_optimization = False
        self.classes: list[str] = list(image_meta.classes)
        self.class_keys: list[str] = list(image_meta.class_keys)
        self.image_shape = image_meta.image_shape
        self.conditional = conditional
        num_classes = len(self.classes) if conditional else 0
        self.latent_dim = latent_dim
        self.generator = (generator or DCGANGenerator)(
            latent_dim=latent_dim, image_shape=self.image_shape, num_classes=num_classes
        )
        self.discriminator = (discriminator or DCGANDiscriminator)(
            image_shape=self.image_shape, num_classes=num_classes
        )
        self.loss = loss
        self.g_optimizer_factory = generator_optimizer or (
            lambda params: torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))
        )
        self.d_optimizer_factory = discriminator_optimizer or (
            lambda params: torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))
        )
        self.n_dis = n_dis
        # the generator's weight average (with its batch-norm statistics), held by the generator whenever
        # it samples, until training goes on
        self.weight_average = WeightAverage(ema_decay, buffers=True)
        self.diff_augment = tuple(diff_augment)
        self.grad_clip = grad_clip
        self.evaluator_ckpt = evaluator_ckpt
        self.evaluator_net_factory = evaluator_net or EvaluatorNet
        self.evaluator_epochs = evaluator_epochs
        self.evaluator_cache_dir = evaluator_cache_dir
        self.dataset_name = folder_name(image_meta.dataset or "data")
        self.inception_weights = inception_weights
        self.floor_samples = floor_samples
        self.cas_samples = cas_samples
        self.cas_epochs = cas_epochs
        self.kid_subset_size = kid_subset_size
        self.collapse_ratio = collapse_ratio
        self.grid_samples = grid_samples
        self._sums: dict[str, Tensor] = {}
        self._batches = 0
        # test results per class, read by the plotting callback
        self.test_report: dict[str, Any] = {}
        # FID features `(rows, d) float32` of train images (fit_to_train or the checkpoint), for the floor
        self._floor_features: Tensor | None = None
        self._floor_offset = 0
        # the evaluator, its feature extractor, the CAS classifier and the metrics stay out of the module
        # tree (not trained with the GAN); the built-in evaluator's weights go into checkpoints by hand
        self.__dict__["_scores"] = {}
        self.__dict__["_evaluator"] = None
        self.__dict__["_fid_features"] = None
        self.__dict__["_cas_classifier"] = None

    def on_fit_start(self) -> None:
        # validation scores with the evaluator: a missing or mismatched one is a config error to report
        # before the first (possibly hours long) epoch, not after it; here (not in setup) a resumed fit's
        # checkpoint has brought its evaluator already
        if self.trainer.limit_val_batches != 0:
            self.evaluator()

    def fit_to_train(self, train: TrainSplit) -> None:
        """The harness's hook before fitting, with the train split's `image (rows, c, h, w) uint8` and
        `target (rows,) int64`: train (or reuse) the built-in evaluator when `evaluator_ckpt` is not set,
        and keep the FID features of a seeded sample of `floor_samples` train images for the floor."""
        images, labels = train.tensors["image"], train.tensors["target"].long()
        if not self.evaluator_ckpt:
            self.__dict__["_evaluator"] = train_evaluator(
                self.evaluator_net_factory,
                images,
                labels,
                self.classes,
                self.evaluator_epochs,
                self.evaluator_cache_dir,
                self.dataset_name,
            )
            self.__dict__["_fid_features"] = None
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[: self.floor_samples]
        extractor = self.fid_features().to("cpu")
        with torch.no_grad():
            self._floor_features = torch.cat(
                [extractor(images[order[i : i + 1000]]) for i in range(0, len(order), 1000)]
            ).cpu()

    # ------------------------------------------------------------------------------ weight average
    def on_train_start(self) -> None:
        # the initial weights count as the first average (unless a resumed fit brought one): a first
        # update from the weights after one step would leave them out
        if self.weight_average.weights is None:
            self.weight_average.update(self.generator)

    def on_train_batch_start(self, batch: Any, batch_index: int) -> None:
        self.weight_average.swap_out(self.generator)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.weight_average.save(checkpoint, self.generator, "generator.")
        # plain tensors (they load with weights_only=True): eval and resume score as the fit did
        evaluator = self.__dict__["_evaluator"]
        if isinstance(evaluator, PixelClassifier):
            checkpoint["creatives_evaluator"] = {
                k: v.detach().cpu() for k, v in evaluator.net.state_dict().items()
            }
        if self._floor_features is not None:
            checkpoint["creatives_floor_features"] = self._floor_features

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.weight_average.load(checkpoint)
        stored = checkpoint.get("creatives_evaluator")
        if stored and not self.evaluator_ckpt:
            evaluator = new_classifier(self.evaluator_net_factory, self.classes, self.image_shape)
            evaluator.net.load_state_dict(stored)
            self.__dict__["_evaluator"] = evaluator.eval().requires_grad_(False)
            self.__dict__["_fid_features"] = None
        if checkpoint.get("creatives_floor_features") is not None:
            self._floor_features = checkpoint["creatives_floor_features"]

    # --------------------------------------------------------------------------------- sampling
    def noise(self, count: int, seed: int | None = None) -> Tensor:
        """`(count, latent_dim) float32` standard normal noise; reproducible when `seed` is given."""
        if seed is None:
            return torch.randn(count, self.latent_dim, device=self.device)
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(count, self.latent_dim, generator=generator).to(self.device)

    @torch.no_grad()
    def sample(self, labels: Tensor, z: Tensor | None = None, batch_size: int = 1000) -> Tensor:
        """Images `(n, c, h, w) uint8` of the classes `labels (n,)` (ignored when unconditional), from the
        weight average when there is one (the generator holds it until training goes on)."""
        self.weight_average.swap_in(self.generator)
        net = self.generator
        was_training = net.training
        net.eval()
        try:
            labels = labels.to(self.device)
            z = self.noise(len(labels)) if z is None else z.to(self.device)
            chunks = [
                to_uint8(net(z[i : i + batch_size], labels[i : i + batch_size] if self.conditional else None))
                for i in range(0, len(labels), batch_size)
            ]
        finally:
            net.train(was_training)
        return torch.cat(chunks) if chunks else torch.empty(0, *self.image_shape, dtype=torch.uint8)

    def grid_labels(self, per_class: int) -> Tensor:
        """`(classes * per_class,) int64`: each class `per_class` times, class by class (grid rows)."""
        return torch.arange(len(self.classes)).repeat_interleave(per_class)

    @torch.no_grad()
    def interpolation(self, steps: int = 10, seed: int = 0) -> Tensor:
        """`(classes, steps, c, h, w) uint8`: per class, images along the great circle between two noises."""
        count = len(self.classes)
        ends = self.noise(2 * count, seed).view(2, count, self.latent_dim)
        a, b = ends[0], ends[1]
        omega = torch.arccos(
            (F.normalize(a, dim=1) * F.normalize(b, dim=1)).sum(1).clamp(-1 + 1e-6, 1 - 1e-6)
        )
        t = torch.linspace(0, 1, steps, device=self.device)[None, :, None]
        omega = omega[:, None, None]
        z = (torch.sin((1 - t) * omega) * a[:, None] + torch.sin(t * omega) * b[:, None]) / torch.sin(omega)
        labels = torch.arange(count, device=self.device).repeat_interleave(steps)
        return self.sample(labels, z.reshape(-1, self.latent_dim)).view(count, steps, *self.image_shape)

    # --------------------------------------------------------------------------------- training
    def _discriminate(self, images: Tensor, labels: Tensor | None) -> Tensor:
        if self.diff_augment:
            images = diff_augment(images, self.diff_augment)
        return self.discriminator(images, labels)

    def _step(self, optimizer: Any, loss: Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.grad_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")
        optimizer.step()

    def training_step(self, batch: dict[str, Tensor], batch_index: int) -> None:
        g_optimizer, d_optimizer = self.optimizers()
        real = batch["image"].float() / 127.5 - 1
        labels = batch["target"] if self.conditional else None
        with torch.no_grad():
            fake = self.generator(self.noise(len(real)), labels)
        real_scores = self._discriminate(real, labels)
        fake_scores = self._discriminate(fake, labels)
        d_loss = discriminator_loss(self.loss, real_scores, fake_scores)
        self._step(d_optimizer, d_loss)
        self._accumulate(
            d_loss=d_loss.detach(),
            real_score=real_scores.detach().mean(),
            fake_score=fake_scores.detach().mean(),
        )
        if (batch_index + 1) % self.n_dis:
            return
        # the generator step needs no discriminator gradients: freezing D skips computing them
        self.discriminator.requires_grad_(False)
        try:
            fake = self.generator(self.noise(len(real)), labels)
            g_loss = generator_loss(self.loss, self._discriminate(fake, labels))
            self._step(g_optimizer, g_loss)
        finally:
            self.discriminator.requires_grad_(True)
        self.weight_average.update(self.generator)
        self._accumulate(g_loss=g_loss.detach())

    def _accumulate(self, **values: Tensor) -> None:
        # summed on the device and logged once per epoch: a per-step .item() would stall the GPU
        for name, value in values.items():
            self._sums[name] = self._sums.get(name, torch.zeros((), device=value.device)) + value
        if "d_loss" in values:
            self._batches += 1

    def on_train_epoch_end(self) -> None:
        if self._batches:
            g_steps = max(self._batches // self.n_dis, 1)
            logged = {
                f"train/{name}": total / (g_steps if name == "g_loss" else self._batches)
                for name, total in self._sums.items()
            }
            self.log_dict(logged, sync_dist=True)
        self._sums, self._batches = {}, 0

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [
            self.g_optimizer_factory(self.generator.parameters()),
            self.d_optimizer_factory(self.discriminator.parameters()),
        ]

    # ------------------------------------------------------------------------------- evaluation
    def evaluator(self) -> nn.Module:
        """The evaluator: the classifier of `evaluator_ckpt` (loaded once), or the built-in one trained in
        `fit_to_train` or read from the checkpoint (`AdlabError` when there is neither)."""
        if self.__dict__["_evaluator"] is None:
            if not self.evaluator_ckpt:
                raise AdlabError(
                    "no evaluator to score generated images: model.evaluator_ckpt is not set and no train split "
                    "was handed over to train one (the harness does it before a fresh fit); expected "
                    "adlab-train, or model.evaluator_ckpt=<an imagery classifier's best.ckpt>"
                )
            evaluator = load_evaluator(self.evaluator_ckpt)
            if list(evaluator.classes) != self.classes or tuple(evaluator.image_shape) != self.image_shape:
                raise AdlabError(
                    f"model.evaluator_ckpt={self.evaluator_ckpt}: trained on {len(evaluator.classes)} classes of "
                    f"{tuple(evaluator.image_shape)} images; the data has {len(self.classes)} of {self.image_shape}"
                )
            self.__dict__["_evaluator"] = evaluator
        return self.__dict__["_evaluator"]

    def fid_features(self) -> nn.Module:
        """The FID/KID feature extractor: Inception v3 with `inception_weights`, else the evaluator's."""
        if self.__dict__["_fid_features"] is None:
            self.__dict__["_fid_features"] = (
                InceptionFeatures(self.inception_weights)
                if self.inception_weights
                else ClassifierFeatures(self.evaluator())
            )
        return self.__dict__["_fid_features"]

    def scores(self, stage: str) -> GenerativeScores:
        """The stage's scorer on this module's device (val: FID and the evaluator's accuracy on generated
        images; test: everything)."""
        scorers = self.__dict__["_scores"]
        if stage not in scorers or scorers[stage].classifier is not self.evaluator():
            full = stage == "test"
            scorers[stage] = GenerativeScores(
                self.evaluator(),
                self.fid_features(),
                kid=full,
                kid_subset_size=self.kid_subset_size,
                floor=full,
                noise=full,
            )
        return scorers[stage].to(self.device)

    def _score_batch(self, stage: str, batch: dict[str, Tensor], batch_index: int) -> None:
        images, labels = batch["image"], batch["target"]
        scores = self.scores(stage) if batch_index == 0 else self.__dict__["_scores"][stage]
        scores.update_real(images, labels)
        # the same noise for the same batch every epoch: epoch-to-epoch changes are the generator's
        z = self.noise(len(labels), seed=10_000 + batch_index)
        scores.update_fake(self.sample(labels, z), labels, conditional=self.conditional)

    def on_validation_epoch_start(self) -> None:
        self.scores("val").reset()

    def validation_step(self, batch: dict[str, Tensor], batch_index: int) -> None:
        self._score_batch("val", batch, batch_index)

    def on_validation_epoch_end(self) -> None:
        scores = self.__dict__["_scores"]["val"]
        result = scores.compute()
        logged = {"val/fid": result["fid"]}
        if "generated_class_accuracy" in result:
            logged["val/generated_class_accuracy"] = result["generated_class_accuracy"]
        self.log_dict(logged)
        scores.reset()

    def on_test_epoch_start(self) -> None:
        self.scores("test").reset()
        self._floor_offset = 0
        if self._floor_features is None:
            log.warning(
                "no train features for the floor (fit_to_train, or the checkpoint): test/fid_floor is not measured"
            )
        self.__dict__["_cas_classifier"] = self._train_cas_classifier() if self.conditional else None

    def _train_cas_classifier(self) -> PixelClassifier:
        """A fresh `evaluator_net` trained on `cas_samples` generated images (the classes in turn, seeded
        noise), for the classification accuracy score on the real test images."""
        labels = torch.arange(self.cas_samples) % len(self.classes)
        images = self.sample(labels, self.noise(len(labels), seed=20_000)).cpu()
        classifier = new_classifier(self.evaluator_net_factory, self.classes, self.image_shape).to(
            self.device
        )
        return fit_classifier(classifier, images, labels, self.cas_epochs, seed=1)

    def test_step(self, batch: dict[str, Tensor], batch_index: int) -> None:
        self._score_batch("test", batch, batch_index)
        scores = self.__dict__["_scores"]["test"]
        images, labels = batch["image"], batch["target"]
        if self._floor_features is not None:
            # as many train images as test images: FID is biased by the sample size, so both match
            floor = self._floor_features[self._floor_offset : self._floor_offset + len(images)]
            self._floor_offset += len(images)
            if len(floor):
                scores.update_floor(floor.to(self.device))
        noise = torch.Generator().manual_seed(30_000 + batch_index)
        scores.update_noise(
            torch.randint(0, 256, images.shape, generator=noise, dtype=torch.uint8).to(self.device)
        )
        cas_classifier = self.__dict__["_cas_classifier"]
        if cas_classifier is not None:
            scores.update_cas(cas_classifier(cas_classifier.prepare(images)), labels)

    def on_test_epoch_end(self) -> None:
        scores = self.__dict__["_scores"]["test"]
        result = scores.compute()
        measured = (
            "fid",
            "kid",
            "kid_std",
            "fid_floor",
            "kid_floor",
            "fid_noise",
            "evaluator_accuracy",
            "generated_class_accuracy",
            "cas",
        )
        logged = {f"test/{key}": result[key] for key in measured if key in result}
        rows = []
        for index, key in enumerate(self.class_keys):
            real, fake = result["diversity_real"][index], result["diversity_fake"][index]
            count_real, count_fake = result["count_real"][index], result["count_fake"][index]
            # a spread needs two images of the class on each side; an unconditional generator whose images
            # the evaluator never (or once) puts in a class has dropped that mode: collapsed, no ratio
            measured = count_real >= 2 and count_fake >= 2 and real > 0
            ratio = fake / real if measured else None
            row = {
                "class": self.classes[index],
                "images_real": count_real,
                "images_generated": count_fake,
                "diversity_real": real if count_real >= 2 else None,
                "diversity_generated": fake if count_fake >= 2 else None,
                "diversity_ratio": ratio,
                "collapsed": bool(ratio < self.collapse_ratio) if measured else count_real >= 2,
            }
            if "cas_per_class" in result:
                # a class without test images has no accuracy (torchmetrics would say 0)
                row["cas"] = result["cas_per_class"][index] if count_real else None
                if count_real:
                    logged[f"test/cas_{key}"] = row["cas"]
            if measured:
                logged[f"test/diversity_ratio_{key}"] = ratio
            rows.append(row)
        ratios = [row["diversity_ratio"] for row in rows if row["diversity_ratio"] is not None]
        logged["test/diversity_classes"] = float(len(ratios))
        if ratios:
            logged["test/diversity_ratio_min"] = float(min(ratios))
        logged["test/collapsed_classes"] = float(sum(row["collapsed"] for row in rows))
        self.log_dict(logged)
        self.test_report = {"classes": rows, "collapse_ratio": self.collapse_ratio}
        scores.reset()
        self.__dict__["_cas_classifier"] = None

    def configure_callbacks(self) -> list[L.Callback]:
        attached = any(isinstance(c, CreativePlots) for c in self.trainer.callbacks)
        return [] if attached else [CreativePlots(self.grid_samples)]

    # ------------------------------------------------------------------------------- generation
    @torch.no_grad()
    def generate_outputs(self, options: DictConfig, output_dir: Path) -> Path:
        """`adlab-generate`: `options.n` images per class as `output_dir/images/<class>/<class>_<i>.png`
        (an ImageFolder tree the image source reads back) and `output_dir/class_grid.png`.

        `options.classes` limits the classes (names or class keys; empty: all).
        """
        count = int(options.n)
        if count < 1:
            raise AdlabError(f"n={count}: expected at least one image per class")
        wanted = [str(c) for c in (options.get("classes") or [])]
        unknown = [c for c in wanted if c not in self.classes and c not in self.class_keys]
        if unknown:
            raise AdlabError(f"classes={unknown}: not classes of this model; expected some of {self.classes}")
        chosen = [
            i
            for i, (name, key) in enumerate(zip(self.classes, self.class_keys, strict=True))
            if not wanted or name in wanted or key in wanted
        ]
        root = Path(output_dir) / "images"
        for index in chosen:
            folder = root / folder_name(self.classes[index])
            folder.mkdir(parents=True, exist_ok=True)
            images = self.sample(torch.full((count,), index, dtype=torch.long)).cpu()
            for number, image in enumerate(images):
                array = image.permute(1, 2, 0).numpy()
                Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(
                    folder / f"{self.class_keys[index]}_{number:05d}.png"
                )
        per_class = min(count, self.grid_samples)
        grid = self.sample(self.grid_labels(per_class)).cpu()
        figure = class_grid_figure(grid.view(len(self.classes), per_class, *self.image_shape), self.classes)
        write_figure(figure, Path(output_dir) / "class_grid.png")
        log.info("wrote %d images per class for %d classes under %s", count, len(chosen), root)
        return root
