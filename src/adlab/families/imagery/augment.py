"""Training-time image augmentation applied to whole batches on their device.

Per-image torchvision transforms would run in Python once per image; on in-memory uint8 tensors the same
flips, shifts and erasures are a handful of tensor operations per batch, so augmentation costs almost
nothing beside the model (what a 10-minute CPU budget needs) and runs on the GPU when training does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from adlab.errors import AdlabError


class BatchAugment:
    """Random horizontal flip, pad-and-crop translation and random erasing of a batch.

    Args:
        flip: mirror each image left-right with probability 1/2.
        translate: pad by this many pixels (black) and crop back at a random offset; 0 turns it off.
        erase_prob: probability that an image gets one random rectangle set to the mean colour.
        erase_scale: range of the rectangle's share of the image area.
        erase_ratio: range of the rectangle's aspect ratio (height / width).

    `geometric` runs on the raw `(batch, c, h, w)` images of any dtype (uint8 here) before normalisation;
    `erase` runs on normalised float images, where 0 is the mean colour (as torchvision's RandomErasing
    after Normalize).
    """

    def __init__(
        self,
        flip: bool = True,
        translate: int = 2,
        erase_prob: float = 0.0,
        erase_scale: Sequence[float] = (0.02, 0.25),
        erase_ratio: Sequence[float] = (0.3, 3.3),
    ):
        if translate < 0 or not 0 <= erase_prob <= 1:
            raise AdlabError(
                f"augment: translate={translate} must be >= 0 and erase_prob={erase_prob} in [0, 1]"
            )
        self.flip = bool(flip)
        self.translate = int(translate)
        self.erase_prob = float(erase_prob)
        self.erase_scale = (float(erase_scale[0]), float(erase_scale[1]))
        self.erase_ratio = (float(erase_ratio[0]), float(erase_ratio[1]))

    def geometric(self, images: Tensor) -> Tensor:
        """Flip and translate `(batch, c, h, w)`; returns the same shape and dtype."""
        if not self.flip and not self.translate:
            return images
        return flip_and_translate(images, self.translate, self.flip)

    def erase(self, images: Tensor) -> Tensor:
        """Zero one random rectangle in a share `erase_prob` of the normalised `(batch, c, h, w)` images."""
        if not self.erase_prob:
            return images
        batch, _, height, width = images.shape
        device = images.device
        area = height * width * torch.empty(batch, device=device).uniform_(*self.erase_scale)
        log_ratio = torch.empty(batch, device=device).uniform_(
            math.log(self.erase_ratio[0]), math.log(self.erase_ratio[1])
        )
        ratio = log_ratio.exp()
        box_h = (area * ratio).sqrt().round().clamp(1, height)
        box_w = (area / ratio).sqrt().round().clamp(1, width)
        top = (torch.rand(batch, device=device) * (height - box_h + 1)).floor()
        left = (torch.rand(batch, device=device) * (width - box_w + 1)).floor()
        rows = torch.arange(height, device=device)[None, :]
        cols = torch.arange(width, device=device)[None, :]
        in_rows = (rows >= top[:, None]) & (rows < (top + box_h)[:, None])
        in_cols = (cols >= left[:, None]) & (cols < (left + box_w)[:, None])
        chosen = torch.rand(batch, device=device) < self.erase_prob
        mask = in_rows[:, :, None] & in_cols[:, None, :] & chosen[:, None, None]
        return images.masked_fill(mask[:, None], 0.0)

    def __repr__(self) -> str:
        return (
            f"BatchAugment(flip={self.flip}, translate={self.translate}, erase_prob={self.erase_prob}, "
            f"erase_scale={self.erase_scale}, erase_ratio={self.erase_ratio})"
        )


def flip_and_translate(images: Tensor, shift: int, flip: bool = True) -> Tensor:
    """Pad `(batch, c, h, w)` by `shift` zeros, crop each image back at its own random offset and mirror
    half of them left-right.

    Two gathers for the whole batch (rows, then columns; a mirrored image reads its columns in reverse),
    instead of one small operation per image or per flag: on a busy 2-core CPU every extra operation
    costs a thread synchronisation.
    """
    batch, channels, height, width = images.shape
    device = images.device
    padded = F.pad(images, (shift, shift, shift, shift)) if shift else images
    offset_y = torch.randint(0, 2 * shift + 1, (batch, 1), device=device)
    offset_x = torch.randint(0, 2 * shift + 1, (batch, 1), device=device)
    rows = offset_y + torch.arange(height, device=device)
    cols = offset_x + torch.arange(width, device=device)
    if flip:
        mirrored = torch.rand(batch, 1, device=device) < 0.5
        cols = torch.where(mirrored, cols.flip(1), cols)
    padded_width = width + 2 * shift
    picked_rows = padded.gather(2, rows[:, None, :, None].expand(batch, channels, height, padded_width))
    return picked_rows.gather(3, cols[:, None, None, :].expand(batch, channels, height, width))
