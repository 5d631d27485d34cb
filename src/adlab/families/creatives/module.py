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
from adlab.families.creatives.evaluation import GenerativeScores, InceptionFeatures, load_evaluator, to_uint8
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
        evaluator_ckpt: an adlab image-classifier checkpoint of the same data: FID/KID features, CAS and
            diversity (needed to validate and test; not to train-free generation).
        inception_weights: torchvision Inception v3 weights file: FID/KID from its 2048-d features instead.
        kid_subset_size: KID subset size (cut to the number of samples).
        collapse_ratio: a class whose generated diversity is below this share of the real one is flagged
            as mode-collapsed.
        grid_samples: samples per class in the fixed-noise and class-by-sample grids.

    Batches: `image (batch, c, h, w) uint8`, `target (batch,) int64`. The generator works in [-1, 1].
    The FID floor (`test/fid_floor`) compares train images with test images: the harness hands the
    train split over before fitting (`fit_to_train`); without it the floor is not measured.
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
        inception_weights: str | None = None,
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
            ignore=["generator", "discriminator", "generator_optimizer", "discriminator_optimizer"]
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
        self.inception_weights = inception_weights
        self.kid_subset_size = kid_subset_size
        self.collapse_ratio = collapse_ratio
        self.grid_samples = grid_samples
        self._sums: dict[str, Tensor] = {}
        self._batches = 0
        # test results per class, read by the plotting callback
        self.test_report: dict[str, Any] = {}
        self._floor_images: Tensor | None = None
        self._floor_offset = 0
        # the train split's images (fit_to_train), for the FID floor; a reference, not module state
        self._train_images: Tensor | None = None
        # the evaluator and its metrics stay out of the module tree: not in checkpoints, not trained
        self.__dict__["_scores"] = {}
        self.__dict__["_evaluator"] = None

    def setup(self, stage: str) -> None:
        # validation scores with the evaluator: a missing or mismatched one is a config error to report
        # before the first (possibly hours long) epoch, not after it
        validating = self._trainer is not None and self._trainer.limit_val_batches != 0
        if stage in ("validate", "test") or (stage == "fit" and validating):
            self.evaluator()

    def fit_to_train(self, train: TrainSplit) -> None:
        """The harness's hook before fitting: keep the train images `(rows, c, h, w) uint8` for the FID
        floor of the test (a real-versus-real FID); nothing is fitted on them."""
        self._train_images = train.tensors["image"]

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

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.weight_average.load(checkpoint)

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
        """The classifier of `evaluator_ckpt`, loaded once (`AdlabError` when not configured)."""
        if self.__dict__["_evaluator"] is None:
            if not self.evaluator_ckpt:
                raise AdlabError(
                    "model.evaluator_ckpt is not set; scoring generated images needs an image classifier of the "
                    "same data: adlab-train experiment=imagery_fashion_cpu, then model.evaluator_ckpt=<its best.ckpt>"
                )
            evaluator = load_evaluator(self.evaluator_ckpt)
            if list(evaluator.classes) != self.classes or tuple(evaluator.image_shape) != self.image_shape:
                raise AdlabError(
                    f"model.evaluator_ckpt={self.evaluator_ckpt}: trained on {len(evaluator.classes)} classes of "
                    f"{tuple(evaluator.image_shape)} images; the data has {len(self.classes)} of {self.image_shape}"
                )
            self.__dict__["_evaluator"] = evaluator
        return self.__dict__["_evaluator"]

    def scores(self, stage: str) -> GenerativeScores:
        """The stage's scorer on this module's device (val: FID and CAS; test: everything)."""
        scorers = self.__dict__["_scores"]
        if stage not in scorers:
            features = InceptionFeatures(self.inception_weights) if self.inception_weights else None
            full = stage == "test"
            scorers[stage] = GenerativeScores(
                self.evaluator(), features, kid=full, kid_subset_size=self.kid_subset_size, floor=full
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
        if "cas" in result:
            logged["val/cas"] = result["cas"]
        self.log_dict(logged)
        scores.reset()

    def on_test_epoch_start(self) -> None:
        self.scores("test").reset()
        self._floor_images = self._shuffled_train_images()
        self._floor_offset = 0

    def _shuffled_train_images(self) -> Tensor | None:
        """A seeded shuffle of the train images (for the real-versus-real floor), when handed over."""
        images = self._train_images
        if images is None:
            log.warning(
                "no train split was handed to the model (fit_to_train); test/fid_floor is not measured"
            )
            return None
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
        return images[order]

    def test_step(self, batch: dict[str, Tensor], batch_index: int) -> None:
        self._score_batch("test", batch, batch_index)
        if self._floor_images is not None:
            # as many train images as test images: FID is biased by the sample size, so both match
            count = len(batch["image"])
            floor = self._floor_images[self._floor_offset : self._floor_offset + count]
            self._floor_offset += count
            if len(floor):
                self.__dict__["_scores"]["test"].update_floor(floor.to(self.device))

    def on_test_epoch_end(self) -> None:
        scores = self.__dict__["_scores"]["test"]
        result = scores.compute()
        logged = {"test/fid": result["fid"], "test/kid": result["kid"], "test/kid_std": result["kid_std"]}
        for name in ("fid_floor", "kid_floor"):
            if name in result:
                logged[f"test/{name}"] = result[name]
        rows = []
        for index, key in enumerate(self.class_keys):
            real, fake = result["diversity_real"][index], result["diversity_fake"][index]
            ratio = fake / real if real and real == real else float("nan")
            row = {
                "class": self.classes[index],
                "diversity_real": real,
                "diversity_generated": fake,
                "diversity_ratio": ratio,
                "collapsed": bool(ratio < self.collapse_ratio),
            }
            if "cas_per_class" in result:
                row["cas"] = result["cas_per_class"][index]
                logged[f"test/cas_{key}"] = row["cas"]
            logged[f"test/diversity_ratio_{key}"] = ratio
            rows.append(row)
        if "cas" in result:
            logged["test/cas"] = result["cas"]
        ratios = torch.tensor([row["diversity_ratio"] for row in rows])
        logged["test/diversity_ratio_min"] = float(ratios.nan_to_num(float("inf")).min())
        logged["test/collapsed_classes"] = float(sum(row["collapsed"] for row in rows))
        self.log_dict(logged)
        self.test_report = {"classes": rows, "collapse_ratio": self.collapse_ratio}
        scores.reset()
        self._floor_images = None

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
