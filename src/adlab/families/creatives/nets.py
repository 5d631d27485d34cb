"""Generators and discriminators for class-conditional creatives, and DiffAugment.

Two families, chosen by the model preset:

- DCGAN (Radford et al. 2016): transposed-convolution generator with batch norm, strided-convolution
  discriminator with leaky ReLU. The baseline; unconditional unless `num_classes` is given.
- SN-ResNet (Miyato et al. 2018, Miyato & Koyama 2018): residual generator whose batch norms are
  conditioned on the class (conditional BN), residual discriminator with spectral normalisation and a
  projection head for the class.

Every generator maps `z (batch, latent_dim) float32` and `labels (batch,) int64` (ignored when
unconditional) to images `(batch, c, h, w) float32` in [-1, 1] (tanh). Every discriminator maps such
images and labels to one realness score per image, `(batch,) float32` (a logit; no sigmoid).
The image side must be divisible by 2**upsamplings (28 = 7 * 2**2, 32 = 4 * 2**3, 64 = 4 * 2**4).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from adlab.errors import AdlabError

POLICIES = ("color", "translation", "cutout")


def _base_side(image_shape: Sequence[int], steps: int) -> tuple[int, int]:
    """The feature-map side before `steps` doublings; fails naming the sizes when it is not whole."""
    _, height, width = image_shape
    factor = 2**steps
    if steps < 1 or height % factor or width % factor:
        raise AdlabError(
            f"model.generator: a {height}x{width} image cannot be reached by {steps} doublings; "
            f"set data.source.image_size to a multiple of {factor} or change upsamplings"
        )
    return height // factor, width // factor


def _maybe_sn(module: nn.Module, enabled: bool) -> nn.Module:
    return spectral_norm(module) if enabled else module


class ProjectionHead(nn.Module):
    """Realness from pooled features `h (batch, d)`: `linear(h) + <embed(y), h>` (the projection
    discriminator); only the linear part when unconditional."""

    def __init__(self, features: int, num_classes: int, use_spectral_norm: bool):
        super().__init__()
        self.linear = _maybe_sn(nn.Linear(features, 1), use_spectral_norm)
        self.embed = (
            _maybe_sn(nn.Embedding(num_classes, features), use_spectral_norm) if num_classes else None
        )

    def forward(self, features: Tensor, labels: Tensor | None) -> Tensor:
        score = self.linear(features).squeeze(1)
        if self.embed is not None:
            if labels is None:
                raise ValueError("a conditional discriminator needs labels")
            score = score + (self.embed(labels) * features).sum(dim=1)
        return score


# ---------------------------------------------------------------------------------------------- DCGAN
class DCGANGenerator(nn.Module):
    """z (and a class embedding concatenated to it) -> dense -> `upsamplings` x (transposed conv 4x4/2,
    BN, ReLU) -> 3x3 conv -> tanh.

    Args:
        latent_dim: size of z.
        image_shape: `(channels, height, width)` of the images to make.
        num_classes: classes to condition on (0: unconditional).
        width: channels of the first feature map; halved at every upsampling.
        upsamplings: doublings of the feature map (28x28 images: 2, from 7x7).
    """

    def __init__(
        self,
        latent_dim: int,
        image_shape: Sequence[int],
        num_classes: int = 0,
        width: int = 256,
        upsamplings: int = 2,
    ):
        super().__init__()
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.image_shape = tuple(int(s) for s in image_shape)
        self.base = _base_side(self.image_shape, upsamplings)
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes else None
        inputs = latent_dim * (2 if num_classes else 1)
        self.width = width
        self.stem = nn.Sequential(
            nn.Linear(inputs, width * self.base[0] * self.base[1], bias=False),
            nn.BatchNorm1d(width * self.base[0] * self.base[1]),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        channels = width
        for _ in range(upsamplings):
            out = max(channels // 2, 32)
            layers += [
                nn.ConvTranspose2d(channels, out, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            channels = out
        layers += [nn.Conv2d(channels, self.image_shape[0], 3, padding=1), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], dim=1)
        hidden = self.stem(z).view(len(z), self.width, *self.base)
        return self.body(hidden)


class DCGANDiscriminator(nn.Module):
    """`downsamplings` x (conv 4x4/2, [BN], leaky ReLU) -> flatten -> realness (+ class projection).

    Args:
        image_shape: `(channels, height, width)`.
        num_classes: classes (0: unconditional; else a projection head).
        width: channels of the first convolution; doubled at every downsampling.
        downsamplings: halvings of the image.
        use_spectral_norm: spectral normalisation instead of batch norm.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        num_classes: int = 0,
        width: int = 64,
        downsamplings: int = 2,
        use_spectral_norm: bool = False,
    ):
        super().__init__()
        image_shape = tuple(int(s) for s in image_shape)
        base = _base_side(image_shape, downsamplings)
        layers: list[nn.Module] = []
        channels = image_shape[0]
        for index in range(downsamplings):
            out = width * 2**index
            layers.append(_maybe_sn(nn.Conv2d(channels, out, 4, stride=2, padding=1), use_spectral_norm))
            if index and not use_spectral_norm:  # no BN on the first layer, as in DCGAN
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            channels = out
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.head = ProjectionHead(channels * base[0] * base[1], num_classes, use_spectral_norm)

    def forward(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.head(self.body(images), labels)


# ------------------------------------------------------------------------------------------ SN-ResNet
class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose scale and shift come from the class (an embedding per class, starting at the
    identity); `num_classes=0` gives plain batch norm with one learned scale and shift."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=num_classes == 0)
        self.embed = None
        if num_classes:
            self.embed = nn.Embedding(num_classes, 2 * channels)
            # start at the identity transform: scale 1, shift 0
            nn.init.ones_(self.embed.weight[:, :channels])
            nn.init.zeros_(self.embed.weight[:, channels:])

    def forward(self, x: Tensor, labels: Tensor | None) -> Tensor:
        out = self.norm(x)
        if self.embed is None:
            return out
        scale, shift = self.embed(labels).chunk(2, dim=1)
        return out * scale[:, :, None, None] + shift[:, :, None, None]


class GeneratorBlock(nn.Module):
    """Pre-activation residual block that doubles the side: CBN-ReLU-up-conv-CBN-ReLU-conv + up-1x1 skip."""

    def __init__(self, in_channels: int, out_channels: int, num_classes: int):
        super().__init__()
        self.norm1 = ConditionalBatchNorm2d(in_channels, num_classes)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = ConditionalBatchNorm2d(out_channels, num_classes)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor, labels: Tensor | None) -> Tensor:
        h = F.interpolate(F.relu(self.norm1(x, labels)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.norm2(self.conv1(h), labels)))
        return h + self.skip(F.interpolate(x, scale_factor=2, mode="nearest"))


class ResNetGenerator(nn.Module):
    """z -> dense to `width` x base x base -> `upsamplings` residual blocks with class-conditional BN ->
    BN-ReLU-conv3x3 -> tanh.

    Args:
        latent_dim: size of z.
        image_shape: `(channels, height, width)`.
        num_classes: classes for conditional BN (0: unconditional).
        width: channels of every block.
        upsamplings: residual up-blocks (28x28: 2).
    """

    def __init__(
        self,
        latent_dim: int,
        image_shape: Sequence[int],
        num_classes: int = 0,
        width: int = 128,
        upsamplings: int = 2,
    ):
        super().__init__()
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.image_shape = tuple(int(s) for s in image_shape)
        self.base = _base_side(self.image_shape, upsamplings)
        self.width = width
        self.stem = nn.Linear(latent_dim, width * self.base[0] * self.base[1])
        self.blocks = nn.ModuleList(GeneratorBlock(width, width, num_classes) for _ in range(upsamplings))
        self.out = nn.Sequential(
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, self.image_shape[0], 3, padding=1),
            nn.Tanh(),
        )

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        h = self.stem(z).view(len(z), self.width, *self.base)
        for block in self.blocks:
            h = block(h, labels)
        return self.out(h)


class DiscriminatorBlock(nn.Module):
    """Residual block: [ReLU]-conv-ReLU-conv [-avgpool] + 1x1 [-avgpool] skip, spectrally normalised.

    The first block of the network (`first=True`) takes raw pixels: no ReLU before its first conv and a
    pool-then-conv skip, as in the SN-GAN reference ("optimised block").
    """

    def __init__(self, in_channels: int, out_channels: int, downsample: bool, first: bool, use_sn: bool):
        super().__init__()
        self.first, self.downsample = first, downsample
        self.conv1 = _maybe_sn(nn.Conv2d(in_channels, out_channels, 3, padding=1), use_sn)
        self.conv2 = _maybe_sn(nn.Conv2d(out_channels, out_channels, 3, padding=1), use_sn)
        self.skip = (
            _maybe_sn(nn.Conv2d(in_channels, out_channels, 1), use_sn)
            if in_channels != out_channels or downsample
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        skip = x
        if self.skip is not None:
            if self.first:
                skip = self.skip(F.avg_pool2d(x, 2) if self.downsample else x)
            else:
                skip = self.skip(x)
                skip = F.avg_pool2d(skip, 2) if self.downsample else skip
        return h + skip


class ResNetDiscriminator(nn.Module):
    """`downsamplings` residual down-blocks, then `extra_blocks` at that size, ReLU, global sum pool,
    realness + projection of the class embedding.

    Args:
        image_shape: `(channels, height, width)`.
        num_classes: classes for the projection head (0: unconditional).
        width: channels of every block.
        downsamplings: halvings (28x28: 2, to 7x7).
        extra_blocks: residual blocks after the last halving.
        use_spectral_norm: spectral normalisation of every layer (the SN-GAN recipe).
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        num_classes: int = 0,
        width: int = 128,
        downsamplings: int = 2,
        extra_blocks: int = 2,
        use_spectral_norm: bool = True,
    ):
        super().__init__()
        image_shape = tuple(int(s) for s in image_shape)
        _base_side(image_shape, downsamplings)
        blocks = [DiscriminatorBlock(image_shape[0], width, True, True, use_spectral_norm)]
        blocks += [
            DiscriminatorBlock(width, width, True, False, use_spectral_norm) for _ in range(downsamplings - 1)
        ]
        blocks += [
            DiscriminatorBlock(width, width, False, False, use_spectral_norm) for _ in range(extra_blocks)
        ]
        self.blocks = nn.Sequential(*blocks)
        self.head = ProjectionHead(width, num_classes, use_spectral_norm)

    def forward(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        features = F.relu(self.blocks(images)).sum(dim=(2, 3))
        return self.head(features, labels)


# ---------------------------------------------------------------------------------------- DiffAugment
def diff_augment(images: Tensor, policy: Sequence[str]) -> Tensor:
    """Differentiable augmentation (Zhao et al. 2020) of `(batch, c, h, w)` images in [-1, 1].

    Applied to real and generated images alike before the discriminator, so it regularises the
    discriminator without leaking into the generated distribution. Policies: "color" (brightness,
    saturation, contrast), "translation" (shift by up to 1/8 of the side, zero padded), "cutout" (one
    square of half the side set to zero).
    """
    unknown = set(policy) - set(POLICIES)
    if unknown:
        raise AdlabError(
            f"model.diff_augment={list(policy)}: unknown policies {sorted(unknown)}; expected {POLICIES}"
        )
    batch, _, height, width = images.shape
    device = images.device
    x = images
    if "color" in policy:
        x = x + (torch.rand(batch, 1, 1, 1, device=device) - 0.5)
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (torch.rand(batch, 1, 1, 1, device=device) * 2) + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (torch.rand(batch, 1, 1, 1, device=device) + 0.5) + mean
    if "translation" in policy:
        shift_h, shift_w = max(height // 8, 1), max(width // 8, 1)
        dy = torch.randint(-shift_h, shift_h + 1, (batch, 1, 1), device=device)
        dx = torch.randint(-shift_w, shift_w + 1, (batch, 1, 1), device=device)
        rows = (torch.arange(height, device=device)[None, :, None] + dy).expand(batch, height, width)
        cols = (torch.arange(width, device=device)[None, None, :] + dx).expand(batch, height, width)
        inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
        flat = (rows.clamp(0, height - 1) * width + cols.clamp(0, width - 1)).flatten(1)
        gathered = x.flatten(2).gather(2, flat[:, None, :].expand(-1, x.shape[1], -1)).view_as(x)
        x = gathered * inside[:, None].to(x.dtype)
    if "cutout" in policy:
        cut_h, cut_w = height // 2, width // 2
        top = torch.randint(0, height - cut_h + 1, (batch, 1, 1), device=device)
        left = torch.randint(0, width - cut_w + 1, (batch, 1, 1), device=device)
        rows = torch.arange(height, device=device)[None, :, None]
        cols = torch.arange(width, device=device)[None, None, :]
        hole = (rows >= top) & (rows < top + cut_h) & (cols >= left) & (cols < left + cut_w)
        x = x * (~hole)[:, None].to(x.dtype)
    return x
