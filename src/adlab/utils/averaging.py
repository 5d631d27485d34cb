"""Weight averaging shared by the model families."""

from __future__ import annotations

from collections.abc import Callable

import torch


def warmup_ema(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor | int], None]:
    """An EMA update whose decay ramps up as `min(decay, (1 + n) / (10 + n))` after n updates.

    A plain 0.999 average still holds 0.999**n of the first weights, a quarter after 1400 steps, so a
    short schedule would evaluate a half-trained blend; the ramp makes early averages follow the model.
    The update takes the averaged tensors, the current ones and the number of updates so far (the
    signature of `torch.optim.swa_utils.AveragedModel`'s `multi_avg_fn`).
    """

    def update(
        averaged: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor | int
    ) -> None:
        count = int(updates)
        step_decay = min(decay, (1 + count) / (10 + count))
        floating = [(a, c) for a, c in zip(averaged, current, strict=True) if a.is_floating_point()]
        if floating:
            torch._foreach_lerp_([a for a, _ in floating], [c for _, c in floating], 1 - step_decay)
        for a, c in zip(averaged, current, strict=True):
            if not a.is_floating_point():  # counters such as BatchNorm's num_batches_tracked
                a.copy_(c)

    return update
