"""`MarketingDataModule`: the only LightningDataModule in adlab, shared by every model family."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from adlab.data.loaders import TensorBatchLoader
from adlab.data.sources.base import BuiltData
from adlab.data.splits import STAGES, fold_assignment, official_split, random_split
from adlab.errors import AdlabError


class MarketingDataModule(L.LightningDataModule):
    """Split a source's rows, fit preprocessing on train only, and serve tensor-indexed batches.

    Args:
        source: a source object (`adlab.data.sources`): `load()` then `build(raw, splits)`.
        split: "official" (the dataset's own test set, val carved from training) or three fractions
            `[train, val, test]` summing to 1; default 60/20/20.
        val_fraction: with `split="official"`, the share of the official training rows used as val.
        batch_size: training batch size.
        eval_batch_size: batch size of val/test (default: 4 x batch_size).
        seed: seed of the split and of the shuffling (the harness passes the run's seed).
        drop_last: drop the last short training batch.
        resident: keep each split's tensors on the training device (one copy, no per-batch transfer);
            worth it on a GPU when the data fits in its memory.
        folds: cross-fitting (tabular sources): the train and val rows together form a pool cut into this
            many stratified folds (seeded); preprocessing is fitted once on the whole pool (it reads no
            labels), so every fold's network sees the same encoding. None: the plain split.
        fold: with `folds`, which fold is val (the others are train); None serves the whole pool as
            both train and val (the cross-fitted ensemble's own view, see `adlab.crossfit`).
    """

    def __init__(
        self,
        source: Any,
        split: str | list[float] = (0.6, 0.2, 0.2),
        val_fraction: float = 0.2,
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        seed: int = 1,
        drop_last: bool = False,
        resident: bool = False,
        folds: int | None = None,
        fold: int | None = None,
    ):
        super().__init__()
        self.source = source
        self.split = split
        self.val_fraction = val_fraction
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or 4 * batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.resident = resident
        if folds is not None and folds < 2:
            raise AdlabError(f"data.folds={folds}: expected null or at least 2 folds")
        if fold is not None and (folds is None or not 0 <= fold < folds):
            raise AdlabError(f"data.fold={fold}: expected null or 0..data.folds-1 (data.folds={folds})")
        self.folds = folds
        self.fold = fold
        # with folds: each pool row's fold (pool = the sorted train and val rows of the plain split)
        self.pool: np.ndarray | None = None
        self.fold_of: np.ndarray | None = None
        self.splits: dict[str, np.ndarray] | None = None
        self.tensors: dict[str, dict[str, Any]] = {}
        self.meta: dict[str, Any] = {}
        self.preprocessing: dict[str, Any] = {}
        self.raw: Any = None

    def setup(self, stage: str | None = None) -> None:
        """Load and validate the source, split it and fit preprocessing (once; later calls are no-ops)."""
        if self.splits is not None:
            return
        raw = self.source.load()
        groups = getattr(raw, "groups", None)
        official = getattr(raw, "official", None)
        if isinstance(self.split, str):
            if self.split != "official":
                raise AdlabError(
                    f"data.split={self.split!r}: expected 'official' or [train, val, test] fractions"
                )
            if official is None:
                raise AdlabError(
                    "data.split=official: this source declares no official split; give fractions"
                )
            splits = official_split(official, raw.labels, self.val_fraction, self.seed, groups)
        else:
            splits = random_split(raw.labels, list(self.split), self.seed, groups)
        if self.folds is not None:
            splits, built = self._cross_fit_splits(raw, splits)
        else:
            built = self.source.build(raw, splits)
        self.raw, self.splits = raw, splits
        self.tensors, self.meta, self.preprocessing = built.tensors, built.meta, built.state

    def _cross_fit_splits(self, raw: Any, splits: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], Any]:
        """Pool train and val, fit preprocessing on the pool, and cut this fold's train/val from it."""
        pool = np.sort(np.concatenate([splits["train"], splits["val"]]))
        built = self.source.build(raw, {"train": pool, "val": pool, "test": splits["test"]})
        pool_tensors = built.tensors["train"]
        tabular = isinstance(pool_tensors, dict) and {"categorical", "numeric", "target"} <= set(pool_tensors)
        if (
            not tabular
            or len(pool_tensors["target"]) != len(pool)
            or getattr(raw, "groups", None) is not None
        ):
            raise AdlabError(
                f"data.folds={self.folds}: expected a tabular source with one row per customer "
                f"({type(self.source).__name__} is not); set data.folds=null"
            )
        self.pool = pool
        self.fold_of = fold_assignment(np.asarray(raw.labels)[pool], self.folds, self.seed)
        if self.fold is None:
            return {"train": pool, "val": pool, "test": splits["test"]}, built
        return self._cut_fold(built, splits["test"])

    def _cut_fold(
        self, pool_built: BuiltData, test_rows: np.ndarray
    ) -> tuple[dict[str, np.ndarray], BuiltData]:
        """This module's fold as val and the other folds as train, cut from the pool's built data."""
        held_out = self.fold_of == self.fold
        pool_tensors = pool_built.tensors["train"]
        tensors = {
            "train": {name: t[torch.from_numpy(~held_out)] for name, t in pool_tensors.items()},
            "val": {name: t[torch.from_numpy(held_out)] for name, t in pool_tensors.items()},
            "test": pool_built.tensors["test"],
        }
        fold_splits = {"train": self.pool[~held_out], "val": self.pool[held_out], "test": test_rows}
        # what a fold network may know of labels comes from its own train rows (the output bias starts at
        # this rate; positive_weight="balanced" uses it)
        meta = {
            **pool_built.meta,
            "positive_rate": float(tensors["train"]["target"].float().mean()),
            "rows": {stage: int(len(rows)) for stage, rows in fold_splits.items()},
        }
        return fold_splits, BuiltData(tensors=tensors, meta=meta, state=pool_built.state)

    def fold_view(self, fold: int) -> MarketingDataModule:
        """The data module of one fold, cut from this pool module (`data.folds` set, `data.fold` null, set
        up): the same as a new module with `data.fold=fold`, without loading the source again or refitting
        its preprocessing (the pool's is shared)."""
        if self.folds is None or self.fold is not None or self.splits is None:
            raise ValueError("fold_view needs a set-up pool module (folds set, fold None)")
        view = type(self)(
            self.source,
            split=self.split,
            val_fraction=self.val_fraction,
            batch_size=self.batch_size,
            eval_batch_size=self.eval_batch_size,
            seed=self.seed,
            drop_last=self.drop_last,
            resident=self.resident,
            folds=self.folds,
            fold=fold,
        )
        view.raw, view.pool, view.fold_of = self.raw, self.pool, self.fold_of
        pool_built = BuiltData(tensors=self.tensors, meta=self.meta, state=self.preprocessing)
        view.splits, built = view._cut_fold(pool_built, self.splits["test"])
        view.tensors, view.meta, view.preprocessing = built.tensors, built.meta, built.state
        return view

    def save_splits(self, directory: str | Path) -> Path:
        """Write the row indices of every split to `<directory>/splits.npz`."""
        path = Path(directory) / "splits.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{stage: self.splits[stage] for stage in STAGES})
        return path

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _shard(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def _stage_tensors(self, stage: str) -> dict[str, Any]:
        """A split's tensors, moved once to the training device when `resident`."""
        tensors = self.tensors[stage]
        if self.resident and self.trainer is not None:
            device = self.trainer.strategy.root_device
            if any(t.device != device for t in tensors.values()):
                tensors = self.tensors[stage] = {name: t.to(device) for name, t in tensors.items()}
        return tensors

    def loader(self, stage: str, shuffle: bool | None = None) -> TensorBatchLoader:
        """A batch loader over one split's tensors (training shuffles by default)."""
        training = stage == "train"
        return TensorBatchLoader(
            self._stage_tensors(stage),
            self.batch_size if training else self.eval_batch_size,
            shuffle=training if shuffle is None else shuffle,
            seed=self.seed,
            drop_last=self.drop_last and training,
            epoch=self._epoch,
            shard=self._shard,
        )

    def train_dataloader(self) -> TensorBatchLoader:
        return self.loader("train")

    def val_dataloader(self) -> TensorBatchLoader:
        return self.loader("val")

    def test_dataloader(self) -> TensorBatchLoader:
        return self.loader("test")

    def predict_dataloader(self) -> TensorBatchLoader:
        return self.loader("test")

    def state_dict(self) -> dict[str, Any]:
        """Saved inside checkpoints: the fitted preprocessing and the data meta."""
        return {"preprocessing": self.preprocessing, "meta": self.meta}
