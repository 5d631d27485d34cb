"""Sources read files, validate them and hand tensors to `MarketingDataModule`.

Every source has two methods:

- `load() -> raw`: read and validate the input. `raw` has `labels` (n,) for stratification, and may have
  `groups` (n,) (rows that must share a split) and `official` (n,) ("train"/"val"/"test").
- `build(raw, splits) -> BuiltData`: fit preprocessing on the training rows only and return tensors per
  split plus a typed `meta` (`adlab.data.features.DataMeta`: what a model needs to know about the data)
  and the fitted preprocessing `state` (e.g. `TabularFeatures`; stored in checkpoints via `to_dict()`).

and, to score or evaluate a new file with a trained run (`adlab-predict`, `adlab-eval data.source.path=...`):

- `build_new(meta, preprocessing, labelled) -> NewData`: read the file at the source's path and build its
  rows with the stored `meta` and `preprocessing` (plain containers, as checkpoints keep them), fitting
  nothing; `labelled` requires (and returns) the target. Unseen categories are counted in `NewData.unseen`.
  `raw` (of `load`) and `NewData` carry `row_ids` and `id_name` where the data has row identifiers.
"""

from adlab.data.sources.base import BuiltData, NewData

__all__ = ["BuiltData", "NewData"]
