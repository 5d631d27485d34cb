"""Batches by tensor indexing: one gather per batch instead of a per-row collate."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor


class TensorBatchLoader:
    """Iterate over dict batches cut from in-memory tensors that share their first dimension.

    Shuffling is a function of (seed, epoch), so a resumed run sees the same batches as an uninterrupted
    one. Under distributed training each rank takes an interleaved shard, padded (as torch's
    DistributedSampler does) so that every rank runs the same number of steps.

    Args:
        tensors: name -> tensor, each `(n, ...)`.
        batch_size: rows per batch.
        shuffle: reshuffle every epoch.
        seed: base seed of the shuffle.
        drop_last: drop a final short batch.
        epoch: callable returning the current epoch (the trainer's), used to vary the shuffle.
        shard: callable returning `(rank, world_size)`.
    """

    def __init__(
        self,
        tensors: dict[str, Tensor],
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        epoch: Callable[[], int] | None = None,
        shard: Callable[[], tuple[int, int]] | None = None,
    ):
        lengths = {len(t) for t in tensors.values()}
        if len(lengths) != 1:
            raise ValueError(f"tensors differ in length: { {k: len(v) for k, v in tensors.items()} }")
        # row gathers are several times faster on row-major (contiguous) storage
        self.tensors = {name: tensor.contiguous() for name, tensor in tensors.items()}
        self.size = lengths.pop()
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = epoch or (lambda: 0)
        self.shard = shard or (lambda: (0, 1))

    def _indices(self) -> Tensor:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch())
            order = torch.randperm(self.size, generator=generator)
        else:
            order = torch.arange(self.size)
        rank, world = self.shard()
        if world > 1:
            per_rank = -(-self.size // world)
            padding = per_rank * world - self.size
            if padding:
                order = torch.cat([order, order[:padding]])
            order = order[rank::world]
        return order

    def _rows(self) -> int:
        rank, world = self.shard()
        return -(-self.size // world) if world > 1 else self.size

    def __len__(self) -> int:
        rows = self._rows()
        return rows // self.batch_size if self.drop_last else -(-rows // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        # the permutation moves once per epoch to where the data lives (a GPU when resident)
        order = self._indices().to(next(iter(self.tensors.values())).device)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            if self.drop_last and len(index) < self.batch_size:
                break
            # index_select is about 3x cheaper per call than advanced indexing (tensor[index])
            yield {name: tensor.index_select(0, index) for name, tensor in self.tensors.items()}
