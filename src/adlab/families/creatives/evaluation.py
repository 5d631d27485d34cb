"""Offline scores of generated images: FID and KID (torchmetrics) in the feature space of an adlab image
classifier (the evaluator), the classification accuracy score (CAS: a classifier trained on generated
images, tested on real ones), per-class diversity, the real-versus-real floor and a pure-noise reference.

No network access is needed. The evaluator is a small classifier trained here on the GAN's own train split
(`EvaluatorNet`, cached on disk), an imagery checkpoint trained by adlab on the same data
(`model.evaluator_ckpt`), or, for the FID/KID features only, torchvision's Inception v3 when the user gives
a local weights file. FID values from different extractors are not comparable with each other, nor with
published Inception FIDs: read a FID beside the floor (real test images against real train images) and the
noise reference (uniform noise images) measured by the same extractor.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from adlab.errors import AdlabError, excerpt
from adlab.harness.checkpoints import load_module, load_weights
from adlab.harness.io import atomic_write_bytes

log = logging.getLogger(__name__)


def load_evaluator(ckpt_path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """An adlab image classifier (an `ImageryModule` checkpoint) in eval mode, frozen."""
    model = load_module(ckpt_path, device, what="model.evaluator_ckpt")
    if not (hasattr(model, "features") and hasattr(model, "classes")):
        raise AdlabError(
            f"model.evaluator_ckpt={ckpt_path}: a {type(model).__name__} checkpoint; expected an image "
            "classifier (adlab-train experiment=imagery_fashion_cpu)"
        )
    return model.eval().requires_grad_(False)


class EvaluatorNet(nn.Module):
    """A small CNN classifier, the default evaluator and CAS classifier: two (conv 3x3, BN, ReLU, max-pool)
    stages, global average pooling, a `feature_dim` hidden layer (the FID/KID features), class logits.

    Args:
        image_shape: `(channels, height, width)` of the images.
        num_classes: classes to tell apart.
        width: channels of the first stage (doubled in the second).
        feature_dim: size of the penultimate features.

    Input `(batch, c, h, w) float32` pixels in [-1, 1]; `forward` gives logits `(batch, classes)`,
    `features` the penultimate `(batch, feature_dim)`.
    """

    def __init__(self, image_shape: Sequence[int], num_classes: int, width: int = 32, feature_dim: int = 128):
        super().__init__()
        channels = int(image_shape[0])
        self.feature_dim = feature_dim
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(2 * width, feature_dim),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


class PixelClassifier(nn.Module):
    """A classifier net on uint8 images with the interface of an adlab imagery module, so that
    `GenerativeScores` takes either: `prepare(uint8) -> [-1, 1] floats`, `forward(prepared) -> logits`,
    `features(uint8) -> (batch, d)`, `classes`, `image_shape`, `net.feature_dim`."""

    def __init__(self, net: nn.Module, classes: Sequence[str], image_shape: Sequence[int]):
        super().__init__()
        self.net = net
        self.classes = list(classes)
        self.image_shape = tuple(int(s) for s in image_shape)

    def prepare(self, images: Tensor) -> Tensor:
        return images.float() / 127.5 - 1

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def features(self, images: Tensor) -> Tensor:
        return self.net.features(self.prepare(images))


def new_classifier(
    net_factory: Callable[..., nn.Module] | None, classes: Sequence[str], image_shape: Sequence[int]
) -> PixelClassifier:
    """A fresh `PixelClassifier` around `net_factory(image_shape=, num_classes=)` (default `EvaluatorNet`),
    built outside inference mode (Lightning tests under it) so that it can be trained."""
    with torch.inference_mode(False):
        net = (net_factory or EvaluatorNet)(image_shape=tuple(image_shape), num_classes=len(classes))
        return PixelClassifier(net, classes, image_shape)


def fit_classifier(
    classifier: PixelClassifier,
    images: Tensor,
    labels: Tensor,
    epochs: int,
    batch_size: int = 256,
    lr: float = 2e-3,
    seed: int = 0,
) -> PixelClassifier:
    """Train `classifier` on `images (n, c, h, w) uint8` and `labels (n,) int64` (Adam, cross-entropy, a
    seeded shuffle each epoch; batches cut down for splits under 32 batches) on the classifier's device;
    returns it frozen, in eval mode."""
    device = next(classifier.parameters()).device
    # a small split still gets some 30 steps an epoch (batch norm keeps at least 16 rows a batch)
    batch_size = min(batch_size, max(16, len(images) // 32))
    order_generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        classifier.train().requires_grad_(True)
        optimizer = torch.optim.Adam(classifier.parameters(), lr=lr)
        with torch.enable_grad(), torch.inference_mode(False):
            for _ in range(epochs):
                order = torch.randperm(len(images), generator=order_generator)
                for start in range(0, len(images), batch_size):
                    index = order[start : start + batch_size]
                    if len(index) < 2:  # batch norm needs two rows
                        continue
                    # clones: inputs made under inference mode cannot be saved for backward
                    x = classifier.prepare(images[index].to(device).clone())
                    loss = F.cross_entropy(classifier(x), labels[index].to(device).clone())
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
    return classifier.eval().requires_grad_(False)


@torch.no_grad()
def classifier_accuracy(
    classifier: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 1000
) -> float:
    """Share of `images (n, c, h, w) uint8` the classifier puts in their class `labels (n,)`."""
    device = next(classifier.parameters()).device
    right = 0
    for start in range(0, len(images), batch_size):
        x = classifier.prepare(images[start : start + batch_size].to(device))
        right += int((classifier(x).argmax(dim=1).cpu() == labels[start : start + batch_size]).sum())
    return right / max(len(images), 1)


def train_evaluator(
    net_factory: Callable[..., nn.Module] | None,
    images: Tensor,
    labels: Tensor,
    classes: Sequence[str],
    epochs: int,
    cache_dir: str | Path | None = None,
    dataset: str = "data",
) -> PixelClassifier:
    """The default evaluator: `net_factory(image_shape=, num_classes=)` (default `EvaluatorNet`) trained on
    the train split `images (n, c, h, w) uint8`, `labels (n,) int64` for `epochs` epochs, seed 0.

    With `cache_dir`, the weights are kept under `<cache_dir>/<dataset>-<hash>/evaluator.pt`, the hash
    covering the images, the labels, the net's config and the epochs: the next run on the same split
    reuses them instead of training again.
    """
    image_shape = tuple(int(s) for s in images.shape[1:])
    factory = net_factory or EvaluatorNet
    classifier = PixelClassifier(
        factory(image_shape=image_shape, num_classes=len(classes)), classes, image_shape
    )
    path = None
    if cache_dir:
        digest = hashlib.sha256()
        for part in (images.contiguous().numpy().tobytes(), labels.contiguous().numpy().tobytes()):
            digest.update(part)
        digest.update(f"{factory!r}|{epochs}|{list(classes)}".encode())
        path = Path(cache_dir) / f"{dataset}-{digest.hexdigest()[:12]}" / "evaluator.pt"
        if path.is_file():
            classifier.net.load_state_dict(load_weights(path, "the cached evaluator"))
            log.info("evaluator: reused %s (trained on this train split before)", path)
            return classifier.eval().requires_grad_(False)
    started = time.perf_counter()
    fit_classifier(classifier, images, labels, epochs)
    log.info(
        "evaluator: trained a %s on %d train images, %d epochs, in %.1f s%s",
        type(classifier.net).__name__,
        len(images),
        epochs,
        time.perf_counter() - started,
        f"; cached at {path}" if path else "",
    )
    if path is not None:
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in classifier.net.state_dict().items()}, buffer)
        atomic_write_bytes(path, buffer.getvalue())
    return classifier


class ClassifierFeatures(nn.Module):
    """FID/KID feature extractor: `(batch, c, h, w) uint8` images -> `(batch, d) float32` penultimate
    features of an adlab image classifier (which scales and normalises the pixels itself). A 2-D float
    input `(batch, d)` is taken as features already extracted (the stored floor reference)."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier.eval().requires_grad_(False)
        self.num_features = int(classifier.net.feature_dim)

    def train(self, mode: bool = True) -> ClassifierFeatures:
        # always in evaluation mode: batch-norm statistics and dropout must not change with the caller's mode
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        if images.dim() == 2:
            return images.float()
        return self.classifier.features(images).float()


class InceptionFeatures(nn.Module):
    """FID/KID feature extractor from torchvision's Inception v3 with local weights (2048-d pool features).

    `(batch, c, h, w) uint8` images are made RGB, resized to 299x299 and ImageNet-normalised. The weights
    file is torchvision's `inception_v3` state dict (e.g. `inception_v3_google-0cc3c7bd.pth`); nothing is
    downloaded. This is not the TensorFlow FID Inception, so values differ from published FIDs. A 2-D float
    input `(batch, 2048)` is taken as features already extracted.
    """

    num_features = 2048

    def __init__(self, weights_path: str | Path):
        super().__init__()
        from torchvision.models import inception_v3

        path = Path(weights_path)
        if not path.is_file():
            raise AdlabError(f"model.inception_weights={path}: file not found")
        net = inception_v3(weights=None, aux_logits=True, init_weights=False)
        try:
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except (RuntimeError, ValueError) as error:
            raise AdlabError(
                f"model.inception_weights={path}: not torchvision inception_v3 weights ({excerpt(error, 160)})"
            ) from None
        net.fc = nn.Identity()
        self.net = net.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> InceptionFeatures:
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        if images.dim() == 2:
            return images.float()
        x = images.float() / 255
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return self.net((x - self.mean) / self.std).float()


class ClassDiversity:
    """Per-class spread of features: the root mean squared distance between two images of a class,
    `sqrt(2 * sum_d Var_d)`, from streamed per-class sums (no pairwise matrix)."""

    def __init__(self, num_classes: int, dim: int, device: torch.device | str = "cpu"):
        self.count = torch.zeros(num_classes, dtype=torch.float64, device=device)
        self.total = torch.zeros(num_classes, dim, dtype=torch.float64, device=device)
        self.squares = torch.zeros(num_classes, dim, dtype=torch.float64, device=device)

    def to(self, device: torch.device | str) -> ClassDiversity:
        self.count, self.total, self.squares = (t.to(device) for t in (self.count, self.total, self.squares))
        return self

    def update(self, features: Tensor, labels: Tensor) -> None:
        features = features.double()
        self.count.index_add_(0, labels, torch.ones_like(labels, dtype=torch.float64))
        self.total.index_add_(0, labels, features)
        self.squares.index_add_(0, labels, features * features)

    def compute(self) -> Tensor:
        """`(num_classes,) float64`; NaN for classes with fewer than two images."""
        n = self.count[:, None]
        variance = (self.squares - self.total**2 / n.clamp_min(1)) / (n - 1).clamp_min(1)
        spread = (2 * variance.clamp_min(0).sum(dim=1)).sqrt()
        return torch.where(self.count >= 2, spread, torch.full_like(spread, float("nan")))


class GenerativeScores:
    """Stream real and generated images, then `compute()` FID, KID, CAS, diversity, the floor and the noise
    reference.

    Args:
        classifier: the evaluator (an adlab image classifier, see `load_evaluator`, or a `PixelClassifier`):
            its accuracy on the real images, diversity and (unless `features` is given) the FID/KID features.
        features: another feature extractor for FID/KID (e.g. `InceptionFeatures`).
        kid: also compute KID (it keeps every feature vector in memory).
        kid_subset_size / kid_subsets: KID's random subsets (the size is cut to the sample count).
        floor: also compute the real-versus-real floor from `update_floor` images or features.
        noise: also compute the FID of `update_noise` images (uniform noise) against the real ones.

    All images are `(batch, c, h, w) uint8`, labels `(batch,) int64`. The scores live on `device`.
    """

    def __init__(
        self,
        classifier: nn.Module,
        features: nn.Module | None = None,
        kid: bool = True,
        kid_subset_size: int = 1000,
        kid_subsets: int = 50,
        floor: bool = True,
        noise: bool = False,
    ):
        self.classifier = classifier
        self.features = features if features is not None else ClassifierFeatures(classifier)
        self.num_classes = len(classifier.classes)
        self.feature_dim = int(self.features.num_features)
        self.kid_subset_size = kid_subset_size

        def fid() -> FrechetInceptionDistance:
            return FrechetInceptionDistance(feature=self.features, reset_real_features=True)

        def kid_metric() -> KernelInceptionDistance:
            return KernelInceptionDistance(
                feature=self.features, subsets=kid_subsets, subset_size=kid_subset_size
            )

        self.fid = fid()
        self.kid = kid_metric() if kid else None
        self.floor_fid = fid() if floor else None
        self.floor_kid = kid_metric() if floor and kid else None
        self.noise_fid = fid() if noise else None
        self.evaluator_accuracy = MulticlassAccuracy(self.num_classes, average="micro")
        self.generated_accuracy = MulticlassAccuracy(self.num_classes, average="micro")
        self.cas = MulticlassAccuracy(self.num_classes, average="micro")
        self.class_cas = MulticlassAccuracy(self.num_classes, average=None)
        self.device = torch.device("cpu")
        self.reset()

    def to(self, device: torch.device | str) -> GenerativeScores:
        self.device = torch.device(device)
        for metric in self._metrics():
            metric.to(self.device)
        self.classifier.to(self.device)
        self.features.to(self.device)
        for diversity in (self.real_diversity, self.fake_diversity):
            diversity.to(self.device)
        return self

    def _metrics(self) -> list[Any]:
        return [
            m
            for m in (
                self.fid,
                self.kid,
                self.floor_fid,
                self.floor_kid,
                self.noise_fid,
                self.evaluator_accuracy,
                self.generated_accuracy,
                self.cas,
                self.class_cas,
            )
            if m is not None
        ]

    def reset(self) -> None:
        for metric in self._metrics():
            metric.reset()
        self.real_diversity = ClassDiversity(self.num_classes, self.feature_dim, self.device)
        self.fake_diversity = ClassDiversity(self.num_classes, self.feature_dim, self.device)
        self.floor_updates = 0
        self.noise_updates = 0
        self.cas_updates = 0
        self.conditional = False

    @torch.no_grad()
    def update_real(self, images: Tensor, labels: Tensor) -> None:
        """The reference images (the test split at test time)."""
        for metric in (self.fid, self.kid, self.floor_fid, self.floor_kid, self.noise_fid):
            if metric is not None:
                metric.update(images, real=True)
        self.real_diversity.update(self.features(images), labels)
        self.evaluator_accuracy.update(self.classifier(self.classifier.prepare(images)), labels)

    @torch.no_grad()
    def update_fake(self, images: Tensor, labels: Tensor, conditional: bool = True) -> None:
        """Generated images; `labels` are the classes asked for (the evaluator's accuracy on them only when
        `conditional`; an unconditional generator's images are grouped by the evaluator's prediction for
        diversity)."""
        for metric in (self.fid, self.kid):
            if metric is not None:
                metric.update(images, real=False)
        logits = self.classifier(self.classifier.prepare(images))
        self.fake_diversity.update(self.features(images), labels if conditional else logits.argmax(dim=1))
        if conditional:
            self.conditional = True
            self.generated_accuracy.update(logits, labels)

    @torch.no_grad()
    def update_floor(self, images: Tensor) -> None:
        """Real images from another split (train), or their features `(batch, d) float32` under the FID
        extractor, scored against the real ones: the best a generator that reproduced the data distribution
        exactly could reach with this many samples."""
        for metric in (self.floor_fid, self.floor_kid):
            if metric is not None:
                metric.update(images, real=False)
        self.floor_updates += 1

    @torch.no_grad()
    def update_noise(self, images: Tensor) -> None:
        """Pure-noise images, scored against the real ones: the FID of a generator that learned nothing."""
        if self.noise_fid is not None:
            self.noise_fid.update(images, real=False)
            self.noise_updates += 1

    @torch.no_grad()
    def update_cas(self, logits: Tensor, labels: Tensor) -> None:
        """Logits `(batch, classes)` of a classifier trained on generated images, for real images of the
        classes `labels`: the classification accuracy score (CAS)."""
        self.cas.update(logits, labels)
        self.class_cas.update(logits, labels)
        self.cas_updates += 1

    def _kid(self, metric: KernelInceptionDistance) -> tuple[float, float]:
        samples = min(sum(len(f) for f in metric.real_features), sum(len(f) for f in metric.fake_features))
        # torchmetrics refuses a subset larger than the sample; a smaller subset is the best estimate left
        metric.subset_size = min(self.kid_subset_size, samples)
        mean, std = metric.compute()
        return float(mean), float(std)

    def compute(self) -> dict[str, Any]:
        """`fid`, `kid`, `kid_std`, `evaluator_accuracy`, `generated_class_accuracy`, `cas`, `cas_per_class`
        (list), `diversity_real` / `diversity_fake` (lists per class, NaN below two images) with
        `count_real` / `count_fake`, `fid_floor`, `kid_floor`, `fid_noise` (each present only when measured)."""
        result: dict[str, Any] = {"fid": float(self.fid.compute())}
        if self.kid is not None:
            result["kid"], result["kid_std"] = self._kid(self.kid)
        result["evaluator_accuracy"] = float(self.evaluator_accuracy.compute())
        if self.conditional:
            result["generated_class_accuracy"] = float(self.generated_accuracy.compute())
        if self.cas_updates:
            result["cas"] = float(self.cas.compute())
            result["cas_per_class"] = self.class_cas.compute().tolist()
        result["diversity_real"] = self.real_diversity.compute().tolist()
        result["diversity_fake"] = self.fake_diversity.compute().tolist()
        result["count_real"] = self.real_diversity.count.long().tolist()
        result["count_fake"] = self.fake_diversity.count.long().tolist()
        if self.floor_fid is not None and self.floor_updates:
            result["fid_floor"] = float(self.floor_fid.compute())
            if self.floor_kid is not None:
                result["kid_floor"] = self._kid(self.floor_kid)[0]
        if self.noise_fid is not None and self.noise_updates:
            result["fid_noise"] = float(self.noise_fid.compute())
        return result


def to_uint8(images: Tensor) -> Tensor:
    """Generator output in [-1, 1] -> `(batch, c, h, w) uint8`, quantised as a saved PNG would be."""
    return ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
