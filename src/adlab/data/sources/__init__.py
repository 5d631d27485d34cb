"""Sources read files, validate them and hand tensors to `MarketingDataModule`.

Every source has two methods:

- `load() -> raw`: read and validate the input. `raw` has `labels` (n,) for stratification, and may have
  `groups` (n,) (rows that must share a split) and `official` (n,) ("train"/"val"/"test").
- `build(raw, splits) -> BuiltData`: fit preprocessing on the training rows only and return tensors per
  split plus a typed `meta` (`adlab.data.features.DataMeta`: what a model needs to know about the data)
  and the fitted preprocessing `state` (e.g. `TabularFeatures`; stored in checkpoints via `to_dict()`).
"""

from adlab.data.sources.base import BuiltData

__all__ = ["BuiltData"]
