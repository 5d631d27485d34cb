"""Weight averaging shared by the model families: one exponential moving average of a network's weights.

Lightning's `WeightAveraging` callback was measured against it and not used: it averages the whole
LightningModule (a GAN's discriminator too), updates after every optimizer step (a GAN's discriminator
steps too), has no warm-up ramp of its own, swaps the raw weights back after each validation (so the
checkpoints written then hold the raw weights in their state dict) and stores its state under other keys.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

CHECKPOINT_KEY = "adlab_weight_average"
"""The checkpoint key of the average's state: `{"weights": [tensors], "updates": int, "raw": [tensors] or
None}`, plain containers (checkpoints load with `weights_only=True`)."""


def warmup_decay(decay: float, updates: int) -> float:
    """The decay of update number `updates` (0-based): `min(decay, (1 + n) / (10 + n))`.

    A plain 0.999 average still holds 0.999**n of the first weights, a quarter after 1400 steps, so a
    short schedule would evaluate a half-trained blend; the ramp makes early averages follow the model.
    """
    return min(decay, (1 + updates) / (10 + updates))


def _cpu_copies(tensors: list[Tensor]) -> list[Tensor]:
    return [t.detach().to("cpu", copy=True) for t in tensors]


class WeightAverage:
    """An exponential moving average of a network's weights, warmed up (`warmup_decay`), that the network
    can hold in place of its raw weights while it is evaluated.

    A family updates it once per step of the network (`update`), swaps it in before evaluating
    (`swap_in`) and swaps the raw weights back before training goes on (`swap_out`). Checkpoints (`save`,
    `load`) always hold the average in their state dict, so a module loaded from one scores with the
    average without calling anything; the raw weights and the update count sit beside it, so a resumed fit
    goes on with both.

    Args:
        decay: the decay the ramp rises to (e.g. 0.999); None: no average (`update` does nothing, but a
            checkpoint's raw weights are still restored on resuming).
        buffers: average the buffers too (batch-norm statistics: floating buffers are averaged, counters
            copied); False averages the parameters only.

    Attributes:
        weights: the averaged tensors (parameters, then buffers), None before the first update.
        updates: how many updates the average holds (the first one copies the weights).
        raw: the network's raw weights while it holds the average (swapped in), else None.
    """

    def __init__(self, decay: float | None, buffers: bool = False):
        self.decay = decay
        self.buffers = buffers
        self.weights: list[Tensor] | None = None
        self.updates = 0
        self.raw: list[Tensor] | None = None

    def _named(self, net: nn.Module) -> list[tuple[str, Tensor]]:
        named = list(net.named_parameters())
        if self.buffers:
            named += list(net.named_buffers())
        return [(name, tensor.detach()) for name, tensor in named]

    def _tensors(self, net: nn.Module) -> list[Tensor]:
        return [tensor for _, tensor in self._named(net)]

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        """Fold `net`'s current weights into the average (the first update copies them)."""
        if self.decay is None:
            return
        current = self._tensors(net)
        if self.weights is None:
            self.weights = [t.clone() for t in current]
        else:
            if current and self.weights[0].device != current[0].device:  # restored from a checkpoint
                self.weights = [w.to(c.device) for w, c in zip(self.weights, current, strict=True)]
            weight = 1 - warmup_decay(self.decay, self.updates)
            floating = [(a, c) for a, c in zip(self.weights, current, strict=True) if a.is_floating_point()]
            if floating:
                torch._foreach_lerp_([a for a, _ in floating], [c for _, c in floating], weight)
            for averaged, value in zip(self.weights, current, strict=True):
                if not averaged.is_floating_point():  # counters such as BatchNorm's num_batches_tracked
                    averaged.copy_(value)
        self.updates += 1

    @property
    def swapped(self) -> bool:
        """Whether the network holds the average (its raw weights kept in `raw`)."""
        return self.raw is not None

    @torch.no_grad()
    def swap_in(self, net: nn.Module) -> None:
        """Put the average into `net`, keeping its raw weights; nothing when there is no average yet or it
        is in already."""
        if self.weights is None or self.raw is not None:
            return
        current = self._tensors(net)
        self.raw = [t.clone() for t in current]
        for tensor, averaged in zip(current, self.weights, strict=True):
            tensor.copy_(averaged)

    @torch.no_grad()
    def swap_out(self, net: nn.Module) -> None:
        """Give `net` its raw weights back (before training goes on); nothing when they are in already."""
        if self.raw is None:
            return
        for tensor, raw in zip(self._tensors(net), self.raw, strict=True):
            tensor.copy_(raw)
        self.raw = None

    def save(self, checkpoint: dict[str, Any], net: nn.Module, prefix: str) -> None:
        """Write the average into a checkpoint being saved (a LightningModule's `on_save_checkpoint`).

        The state dict gets the average in place of `net`'s raw weights (`prefix`: `net`'s key prefix in
        it, e.g. "net."), and `CHECKPOINT_KEY` the average, the update count and the raw weights.
        """
        if self.weights is None and self.raw is None:
            return
        raw = self.raw
        if raw is None:  # the net holds its raw weights: the state dict gets the average instead
            state = checkpoint["state_dict"]
            named = self._named(net)
            for (name, _), averaged in zip(named, self.weights, strict=True):
                if prefix + name in state:  # non-persistent buffers are not in it
                    state[prefix + name] = averaged.detach().clone()
            raw = [tensor for _, tensor in named]
        checkpoint[CHECKPOINT_KEY] = {
            "weights": None if self.weights is None else _cpu_copies(self.weights),
            "updates": self.updates,
            "raw": _cpu_copies(raw),
        }

    def load(self, checkpoint: dict[str, Any]) -> None:
        """Read the average from a checkpoint being loaded (a LightningModule's `on_load_checkpoint`).

        The checkpoint's state dict holds the average, so the network holds it once loaded (swapped in);
        a resumed fit's first training batch swaps the raw weights back. Without `decay` only the raw
        weights are kept; a checkpoint without an average starts a new one.
        """
        state = checkpoint.get(CHECKPOINT_KEY)
        self.weights, self.updates, self.raw = None, 0, None
        if state is None:
            return
        self.raw = [t.clone() for t in state["raw"]] if state["raw"] is not None else None
        if self.decay is not None and state["weights"] is not None:
            self.weights = [t.clone() for t in state["weights"]]
            self.updates = int(state["updates"])
