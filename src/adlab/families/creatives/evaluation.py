"""Offline scores of generated images: FID and KID (torchmetrics) in the feature space of an adlab image
classifier, the classification accuracy score (CAS), per-class diversity and the real-versus-real floor.

No network access is needed: the feature extractor is an imagery checkpoint trained by adlab on the same
data (`adlab-train experiment=imagery_fashion_cpu`), or torchvision's Inception v3 when the user gives a
local weights file. FID values from different extractors are not comparable with each other, nor with
published Inception FIDs; compare runs scored by the same extractor, and against the floor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from adlab.errors import AdlabError
from adlab.harness.checkpoints import load_module


def load_evaluator(ckpt_path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """An adlab image classifier (an `ImageryModule` checkpoint) in eval mode, frozen."""
    model = load_module(ckpt_path, device, what="model.evaluator_ckpt")
    if not (hasattr(model, "features") and hasattr(model, "classes")):
        raise AdlabError(
            f"model.evaluator_ckpt={ckpt_path}: a {type(model).__name__} checkpoint; expected an image "
            "classifier (adlab-train experiment=imagery_fashion_cpu)"
        )
    return model.eval().requires_grad_(False)


class ClassifierFeatures(nn.Module):
    """FID/KID feature extractor: `(batch, c, h, w) uint8` images -> `(batch, d) float32` penultimate
    features of an adlab image classifier (which scales and normalises the pixels itself)."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier.eval().requires_grad_(False)
        self.num_features = int(classifier.net.feature_dim)

    def train(self, mode: bool = True) -> ClassifierFeatures:
        # always in evaluation mode: batch-norm statistics and dropout must not change with the caller's mode
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        return self.classifier.features(images).float()


class InceptionFeatures(nn.Module):
    """FID/KID feature extractor from torchvision's Inception v3 with local weights (2048-d pool features).

    `(batch, c, h, w) uint8` images are made RGB, resized to 299x299 and ImageNet-normalised. The weights
    file is torchvision's `inception_v3` state dict (e.g. `inception_v3_google-0cc3c7bd.pth`); nothing is
    downloaded. This is not the TensorFlow FID Inception, so values differ from published FIDs.
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
            first = str(error).splitlines()[0]
            raise AdlabError(
                f"model.inception_weights={path}: not torchvision inception_v3 weights ({first[:160]})"
            ) from None
        net.fc = nn.Identity()
        self.net = net.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> InceptionFeatures:
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
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
    """Stream real and generated images, then `compute()` FID, KID, CAS, diversity and the floor.

    Args:
        classifier: an adlab image classifier (see `load_evaluator`): CAS, diversity and (unless
            `features` is given) the FID/KID features.
        features: another feature extractor for FID/KID (e.g. `InceptionFeatures`).
        kid: also compute KID (it keeps every feature vector in memory).
        kid_subset_size / kid_subsets: KID's random subsets (the size is cut to the sample count).
        floor: also compute the real-versus-real floor from `update_floor` images.

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
            for m in (self.fid, self.kid, self.floor_fid, self.floor_kid, self.cas, self.class_cas)
            if m is not None
        ]

    def reset(self) -> None:
        for metric in self._metrics():
            metric.reset()
        self.real_diversity = ClassDiversity(self.num_classes, self.feature_dim, self.device)
        self.fake_diversity = ClassDiversity(self.num_classes, self.feature_dim, self.device)
        self.floor_updates = 0
        self.conditional = False

    @torch.no_grad()
    def update_real(self, images: Tensor, labels: Tensor) -> None:
        """The reference images (the test split at test time)."""
        for metric in (self.fid, self.kid, self.floor_fid, self.floor_kid):
            if metric is not None:
                metric.update(images, real=True)
        self.real_diversity.update(self.features(images), labels)

    @torch.no_grad()
    def update_fake(self, images: Tensor, labels: Tensor, conditional: bool = True) -> None:
        """Generated images; `labels` are the classes asked for (CAS only when `conditional`; an
        unconditional generator's images are grouped by the classifier's prediction for diversity)."""
        for metric in (self.fid, self.kid):
            if metric is not None:
                metric.update(images, real=False)
        logits = self.classifier(self.classifier.prepare(images))
        self.fake_diversity.update(self.features(images), labels if conditional else logits.argmax(dim=1))
        if conditional:
            self.conditional = True
            self.cas.update(logits, labels)
            self.class_cas.update(logits, labels)

    @torch.no_grad()
    def update_floor(self, images: Tensor) -> None:
        """Real images from another split (train), scored against the real ones: the best a generator
        that reproduced the data distribution exactly could reach with this many samples."""
        for metric in (self.floor_fid, self.floor_kid):
            if metric is not None:
                metric.update(images, real=False)
        self.floor_updates += 1

    def _kid(self, metric: KernelInceptionDistance) -> tuple[float, float]:
        samples = min(sum(len(f) for f in metric.real_features), sum(len(f) for f in metric.fake_features))
        # torchmetrics refuses a subset larger than the sample; a smaller subset is the best estimate left
        metric.subset_size = min(self.kid_subset_size, samples)
        mean, std = metric.compute()
        return float(mean), float(std)

    def compute(self) -> dict[str, Any]:
        """`fid`, `kid`, `kid_std`, `cas`, `cas_per_class` (list), `diversity_real` / `diversity_fake`
        (lists per class), `fid_floor`, `kid_floor` (each present only when measured)."""
        result: dict[str, Any] = {"fid": float(self.fid.compute())}
        if self.kid is not None:
            result["kid"], result["kid_std"] = self._kid(self.kid)
        if self.conditional:
            result["cas"] = float(self.cas.compute())
            result["cas_per_class"] = self.class_cas.compute().tolist()
        result["diversity_real"] = self.real_diversity.compute().tolist()
        result["diversity_fake"] = self.fake_diversity.compute().tolist()
        if self.floor_fid is not None and self.floor_updates:
            result["fid_floor"] = float(self.floor_fid.compute())
            if self.floor_kid is not None:
                result["kid_floor"] = self._kid(self.floor_kid)[0]
        return result


def to_uint8(images: Tensor) -> Tensor:
    """Generator output in [-1, 1] -> `(batch, c, h, w) uint8`, quantised as a saved PNG would be."""
    return ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
