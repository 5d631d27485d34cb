"""`MarketingDataModule`: the only LightningDataModule in adlab, shared by every model family."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np

from adlab.data.features import DataMeta, TrainSplit
from adlab.data.loaders import TensorBatchLoader
from adlab.data.sources.base import BuiltData, NewData
from adlab.data.splits import STAGES, official_split, random_split
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

    After `setup`: `splits` (stage -> sorted row indices of the source's rows), `tensors` (stage -> name ->
    `(rows, ...)` tensors), `meta` (the source's typed `DataMeta`), `features` (the preprocessing fitted on
    train, e.g. `TabularFeatures`, or None) and `raw` (what the source loaded).
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
    ):
        super().__init__()
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise AdlabError(f"data.{name}={value!r}: expected a positive number of rows")
        self.source = source
        self.split = split
        self.val_fraction = val_fraction
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or 4 * batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.resident = resident
        self.splits: dict[str, np.ndarray] | None = None
        self.tensors: dict[str, dict[str, Any]] = {}
        self.meta: DataMeta | None = None
        self.features: Any = None
        self.raw: Any = None

    def setup(self, stage: str | None = None) -> None:
        """Load and validate the source, split it and fit preprocessing (once; later calls are no-ops)."""
        if self.splits is not None:
            return
        raw = self.source.load()
        self.setup_rows(raw, self.split_rows(raw))

    def split_rows(self, raw: Any) -> dict[str, np.ndarray]:
        """The configured split of the source's loaded rows: stage -> sorted row indices."""
        groups = getattr(raw, "groups", None)
        if not isinstance(self.split, str):
            return random_split(raw.labels, list(self.split), self.seed, groups)
        if self.split != "official":
            raise AdlabError(
                f"data.split={self.split!r}: expected 'official' or [train, val, test] fractions"
            )
        official = getattr(raw, "official", None)
        if official is None:
            raise AdlabError("data.split=official: this source declares no official split; give fractions")
        return official_split(official, raw.labels, self.val_fraction, self.seed, groups)

    def setup_rows(self, raw: Any, splits: dict[str, np.ndarray], built: BuiltData | None = None) -> None:
        """Set up on the given rows of `raw` instead of the configured split (a fit strategy's own rows).

        Args:
            raw: what `source.load()` returned.
            splits: stage -> row indices of `raw`.
            built: the tensors, meta and preprocessing of those rows when the caller already has them (cut
                from another module's); None builds them with the source, fitting preprocessing on
                `splits["train"]`.
        """
        built = built if built is not None else self.source.build(raw, splits)
        self.raw, self.splits = raw, splits
        self.tensors, self.meta, self.features = built.tensors, built.meta, built.state

    def setup_new(self, meta: DataMeta, preprocessing: dict[str, Any], labelled: bool) -> NewData:
        """Set up on a new file (the source's path) as one test split, built with a trained run's `meta` and
        `preprocessing` (`source.build_new`; nothing is fitted). What adlab-eval and adlab-predict use.

        Returns the `NewData` (row ids, unseen categories, notes); `test_dataloader` then serves its rows
        in file order, and `row_ids("test")` gives their identifiers.
        """
        build_new = getattr(self.source, "build_new", None)
        if not callable(build_new):
            raise AdlabError(
                f"data.source: {type(self.source).__name__} cannot build a new file with a trained run's "
                "preprocessing (it has no build_new)"
            )
        new = build_new(meta, preprocessing, labelled)
        self.raw, self.splits = new, {"test": np.arange(new.rows)}
        self.tensors, self.meta, self.features = {"test": new.tensors}, meta, preprocessing
        return new

    def row_ids(self, stage: str) -> tuple[str, np.ndarray]:
        """The name and values `(rows,)` of a split's row identifiers, in the split's order: the source's
        id column (or image paths) where its data has one, else each row's position in the source's rows."""
        rows = self.splits[stage]
        ids = getattr(self.raw, "row_ids", None)
        if ids is None:
            return "row", np.asarray(rows)
        return getattr(self.raw, "id_name", "row"), np.asarray(ids)[rows]

    def like(self) -> MarketingDataModule:
        """A new module, not set up, with this one's source and settings."""
        return type(self)(
            self.source,
            split=self.split,
            val_fraction=self.val_fraction,
            batch_size=self.batch_size,
            eval_batch_size=self.eval_batch_size,
            seed=self.seed,
            drop_last=self.drop_last,
            resident=self.resident,
        )

    def train_split(self) -> TrainSplit:
        """What the harness hands a model before fitting: the train split's tensors, meta and features."""
        return TrainSplit(tensors=self.tensors["train"], meta=self.meta, features=self.features)

    def save_splits(self, directory: str | Path) -> Path:
        """Write the row indices of every split to `<directory>/splits.npz`."""
        path = Path(directory) / "splits.npz"
        partial = path.with_name(".splits.npz.tmp")
        try:  # through a temporary file: a full disk leaves no half-written splits
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(partial, "wb") as stream:
                np.savez(stream, **{stage: self.splits[stage] for stage in STAGES})
            partial.replace(path)
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise AdlabError(f"{path}: could not write the split ({error.strerror or error})") from None
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
        """Saved inside checkpoints as `adlab_data`, in plain containers: `{"meta": ..., "preprocessing": ...}`
        (`DataMeta.from_dict` and e.g. `TabularFeatures.from_dict` rebuild them)."""
        return {"meta": _plain(self.meta), "preprocessing": _plain(self.features)}


def _plain(value: Any) -> Any:
    """A contract object's `to_dict()`; plain containers as they are; None as an empty dict."""
    if value is None:
        return {}
    return value.to_dict() if hasattr(value, "to_dict") else value
