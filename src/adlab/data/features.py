"""Typed data contracts: what a source tells models, exporters and the service about its data.

Every source's `build` returns a `DataMeta` subclass (what a model needs to be constructed: column names,
cardinalities, classes, vocabulary size ...) and, where it fits preprocessing on the train split, a
preprocessing object (`TabularFeatures` ...). Both cross module boundaries as these dataclasses, never as
`dict[str, Any]`; inside checkpoints and exported packages they are stored as plain containers
(`to_dict`) and rebuilt with `from_dict`, so loading a file never needs to unpickle a class.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from adlab.errors import AdlabError

UNKNOWN = 0
"""Vocabulary index of the unknown-category bucket: a category not seen in the train split maps here."""

MISSING = "<missing>"
"""The category a missing categorical value becomes before lookup (so "missing" is a category of its own)."""


@dataclass
class DataMeta:
    """What every source reports about its data, whatever its kind.

    Attributes:
        kind: the source kind ("tabular", "images", "text" ...); a family checks it before building.
        dataset: the dataset's name (registry name or the file's), for reports and exported packages.
        rows: rows per split, e.g. `{"train": 3493, "val": 1164, "test": 4000}`.
    """

    kind: ClassVar[str] = "unknown"
    dataset: str | None = None
    rows: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain containers only (what checkpoints and packages store), with `kind` added."""
        return {"kind": self.kind, **dataclasses.asdict(self)}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> DataMeta:
        """Rebuild the meta of the right kind from `to_dict`'s output; `AdlabError` for an unknown kind."""
        kinds = {cls.kind: cls for cls in _subclasses(DataMeta)}
        kind = data.get("kind")
        if kind not in kinds:
            raise AdlabError(f"data meta of kind {kind!r}: expected one of {sorted(kinds)}")
        cls = kinds[kind]
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def require(self, kind: type[DataMeta], model: str) -> None:
        """Raise one line when a model that needs `kind` data is given data of another kind."""
        if not isinstance(self, kind):
            raise AdlabError(f"{model} needs {kind.kind} data; data.source gives {self.kind!r} data")


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


@dataclass
class TrainSplit:
    """What the harness hands a model before fitting (`module.fit_to_train(train)`): the train split only.

    A model fits on it whatever it learns from data besides its weights (column ranking, quantile bins,
    a tokenizer ...) and keeps that in its state dict or checkpoint; it never reads `trainer.datamodule`.

    Attributes:
        tensors: the train split's tensors, name -> `(rows, ...)` (the batch contract of the source kind).
        meta: the data's meta.
        features: the preprocessing fitted on the train split (e.g. `TabularFeatures`), or None.
    """

    tensors: dict[str, Any]
    meta: DataMeta
    features: Any = None


@dataclass
class TabularMeta(DataMeta):
    """What a tabular source (a table with a binary target) tells a model about its data.

    Attributes:
        categorical: names of the categorical columns, in the order of `categorical (rows, n_cat)`.
        cardinalities: per categorical column, its vocabulary size + 1 (index 0 is the unknown bucket).
        numeric: names of the numeric columns, in the order of `numeric (rows, n_num)`.
        positive_rate: the share of buyers (target 1) among the train split's rows.
    """

    kind: ClassVar[str] = "tabular"
    categorical: list[str] = field(default_factory=list)
    cardinalities: list[int] = field(default_factory=list)
    numeric: list[str] = field(default_factory=list)
    positive_rate: float = 0.5


@dataclass
class TabularFeatures:
    """The tabular preprocessing fitted on the train split: category vocabularies, numeric fill and scaling.

    A category becomes `1 + its position in the column's vocabulary`; a category not seen in train becomes
    `UNKNOWN` (0); a missing category was `MISSING` before lookup, so it is a category of its own. A missing
    numeric value becomes the column's `fill`, then every numeric value is standardised with `mean` and
    `scale`. Export and serving rebuild this object from the checkpoint (`from_dict`) and apply the same rules.

    Attributes:
        categorical: the categorical columns, in tensor order.
        numeric: the numeric columns, in tensor order.
        vocabularies: column -> its sorted train categories (strings).
        fill: per numeric column, the value a missing one takes (median, mean or 0 of train).
        mean: per numeric column, the mean of the filled train values.
        scale: per numeric column, their standard deviation (1 for a constant column).
        minimum: per numeric column, the smallest train value (None in checkpoints of older runs); serving
            counts values outside `[minimum, maximum]`, which the model never saw.
        maximum: per numeric column, the largest train value (None in checkpoints of older runs).
    """

    categorical: list[str]
    numeric: list[str]
    vocabularies: dict[str, list[str]]
    fill: list[float]
    mean: list[float]
    scale: list[float]
    minimum: list[float] | None = None
    maximum: list[float] | None = None

    VERSION: ClassVar[int] = 1

    @classmethod
    def fit(
        cls, frame: Any, categorical: list[str], numeric: list[str], impute: str | None
    ) -> TabularFeatures:
        """Fit on the train rows of a pandas DataFrame (categories as strings, numerics float64 with NaN
        where missing); `impute` is "mean", "zero" or anything else for the median."""
        vocabularies = {c: sorted(frame[c].unique().tolist()) for c in categorical}
        values = frame[numeric].to_numpy(dtype=np.float64)
        if impute == "zero":
            fill = np.zeros(len(numeric))
        elif impute == "mean":
            fill = np.nanmean(values, axis=0) if len(numeric) else np.zeros(0)
        else:
            fill = np.nanmedian(values, axis=0) if len(numeric) else np.zeros(0)
        fill = np.nan_to_num(fill)
        filled = np.where(np.isnan(values), fill, values)
        mean = filled.mean(axis=0) if len(numeric) else np.zeros(0)
        scale = filled.std(axis=0) if len(numeric) else np.zeros(0)
        scale = np.where(scale > 0, scale, 1.0)
        minimum = filled.min(axis=0) if len(numeric) and len(filled) else np.zeros(0)
        maximum = filled.max(axis=0) if len(numeric) and len(filled) else np.zeros(0)
        return cls(
            list(categorical),
            list(numeric),
            vocabularies,
            fill.tolist(),
            mean.tolist(),
            scale.tolist(),
            minimum.tolist(),
            maximum.tolist(),
        )

    def transform(self, frame: Any) -> tuple[np.ndarray, np.ndarray]:
        """Encode a DataFrame's rows: `(categorical (rows, n_cat) int64, numeric (rows, n_num) float32)`."""
        columns = []
        for column in self.categorical:
            lookup = {value: position + 1 for position, value in enumerate(self.vocabularies[column])}
            columns.append(frame[column].map(lookup).fillna(UNKNOWN).to_numpy(dtype=np.int64))
        categorical = np.stack(columns, axis=1) if columns else np.zeros((len(frame), 0), dtype=np.int64)
        values = frame[self.numeric].to_numpy(dtype=np.float64)
        values = np.where(np.isnan(values), np.asarray(self.fill), values)
        numeric = (values - np.asarray(self.mean)) / np.asarray(self.scale)
        return categorical, numeric.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """Plain containers (what checkpoints store as `adlab_data["preprocessing"]`), with kind and version."""
        return {"kind": "tabular", "version": self.VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TabularFeatures:
        """Rebuild from `to_dict`'s output; `AdlabError` when it describes something else."""
        if data.get("kind") != "tabular" or data.get("version") != cls.VERSION:
            raise AdlabError(
                f"preprocessing of kind {data.get('kind')!r}, version {data.get('version')!r}: "
                f"expected tabular preprocessing, version {cls.VERSION}"
            )
        # minimum and maximum came later: checkpoints of older runs lack them
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


@dataclass
class TextMeta(DataMeta):
    """What the text source tells a conditional language model about its data (`adlab.data.sources.text`).

    Attributes:
        tokenizer: the tokenizer kind, "char" or "bpe".
        vocab_size: token ids in the vocabulary (alphabet or BPE pieces, special and control tokens).
        max_tokens: length of every packed sequence (longest prefix + text + `<eos>` of all splits).
        conditions: condition column -> its train values' counts (`{"Dresses": 2146, ...}`), in prefix order.
        condition_combinations: the train rows' joint condition values with their count, one list each
            (`[value_1, ..., value_k, count]`), so that generation draws consistent combinations.
        dropped_empty: rows dropped because their text was empty.
        extra_rows: training rows whose auxiliary text became an extra training sequence.
        duplicate_rows: rows repeating an earlier text (dropped with `drop_duplicates`, else kept in one split).
        train_chars_per_token: characters (+1 per text) per token (+1 for `<eos>`) over the train texts.
    """

    kind: ClassVar[str] = "text"
    tokenizer: str = "char"
    vocab_size: int = 0
    max_tokens: int = 0
    conditions: dict[str, dict[str, int]] = field(default_factory=dict)
    condition_combinations: list[list[Any]] = field(default_factory=list)
    dropped_empty: int = 0
    extra_rows: int = 0
    duplicate_rows: int = 0
    train_chars_per_token: float = 1.0


@dataclass
class TextFeatures:
    """What the text source fits on the train split and a text model keeps besides its weights.

    Attributes:
        tokenizer: the fitted tokenizer as `tokenizers` JSON (`adlab.data.tokenizers.TextTokenizer.to_json`):
            vocabulary, special tokens and one control token per condition value.
        text: the text column.
        conditions: the condition columns, in prefix order.
        train_texts: the distinct train texts, sorted (novelty of generated copy is measured against them).
    """

    tokenizer: str
    text: str
    conditions: list[str]
    train_texts: list[str]

    VERSION: ClassVar[int] = 1

    def to_dict(self) -> dict[str, Any]:
        """Plain containers (what checkpoints store), with kind and version."""
        return {"kind": "text", "version": self.VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextFeatures:
        """Rebuild from `to_dict`'s output; `AdlabError` when it describes something else."""
        if data.get("kind") != "text" or data.get("version") != cls.VERSION:
            raise AdlabError(
                f"preprocessing of kind {data.get('kind')!r}, version {data.get('version')!r}: "
                f"expected text preprocessing, version {cls.VERSION}"
            )
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


@dataclass
class TransactionsMeta(DataMeta):
    """What the transactions source tells a customer value model (`adlab.data.sources.transactions`).

    Attributes:
        features: names of the calibration features, in the order of `features (rows, F)`.
        calibration_columns: names of the raw statistics in `calibration (rows, C)` (BG/NBD's frequency,
            recency and tenure in days, Gamma-Gamma's mean repeat spend ...), read by baselines.
        sequence_channels: names of the channels of `sequence (rows, periods, channels)`.
        periods: length of the spend sequence (periods before the cutoff, the cutoff's last).
        period: "week" or "month".
        cutoff: last day of the calibration window (ISO date).
        holdout_end: last day of the holdout window (ISO date).
        calibration_days: days from the data's first date to the cutoff, both included.
        holdout_days: days in the holdout window `(cutoff, holdout_end]`.
    """

    kind: ClassVar[str] = "transactions"
    features: list[str] = field(default_factory=list)
    calibration_columns: list[str] = field(default_factory=list)
    sequence_channels: list[str] = field(default_factory=list)
    periods: int = 0
    period: str = "week"
    cutoff: str = ""
    holdout_end: str = ""
    calibration_days: int = 0
    holdout_days: int = 0


@dataclass
class TransactionsFeatures:
    """The scaling of calibration features fitted on the train customers: signed log1p, then standardised.

    Spend and counts are heavy-tailed; `sign(x) * log1p(|x|)` tames them before `(x - mean) / scale`.

    Attributes:
        names: the feature names, in tensor order.
        mean: per feature, the mean of the train customers' log1p values.
        scale: per feature, their standard deviation (1 for a constant feature).
    """

    names: list[str]
    mean: list[float]
    scale: list[float]

    VERSION: ClassVar[int] = 1

    @classmethod
    def fit(cls, names: list[str], values: np.ndarray) -> TransactionsFeatures:
        """Fit on the train customers' raw features `(rows, F)` float64."""
        logged = np.sign(values) * np.log1p(np.abs(values))
        scale = logged.std(axis=0)
        return cls(list(names), logged.mean(axis=0).tolist(), np.where(scale > 0, scale, 1.0).tolist())

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Raw features `(rows, F)` -> model input `(rows, F)` float32."""
        logged = np.sign(values) * np.log1p(np.abs(values))
        return ((logged - np.asarray(self.mean)) / np.asarray(self.scale)).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """Plain containers (what checkpoints store), with kind and version."""
        return {"kind": "transactions", "version": self.VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TransactionsFeatures:
        """Rebuild from `to_dict`'s output; `AdlabError` when it describes something else."""
        if data.get("kind") != "transactions" or data.get("version") != cls.VERSION:
            raise AdlabError(
                f"preprocessing of kind {data.get('kind')!r}, version {data.get('version')!r}: "
                f"expected transactions preprocessing, version {cls.VERSION}"
            )
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


@dataclass
class ImageMeta(DataMeta):
    """What the image source tells a model about its images (`adlab.data.sources.images`).

    Every split is one `image (rows, channels, height, width) uint8` tensor with `target (rows,) int64`
    class indices; scaling and normalisation happen on the model's device with `mean` and `std`.

    Attributes:
        classes: class names in label order (target k is `classes[k]`).
        class_keys: metric-key-safe class names in the same order ("T-shirt/top" -> "t_shirt_top").
        channels: 1 (grey) or 3 (RGB).
        image_size: `[height, width]` of every image.
        mean: per-channel mean of the train split's pixels scaled to [0, 1].
        std: per-channel standard deviation of the same (at least 1e-3).
        train_class_counts: train images per class, in `classes` order.
        skipped_images: unreadable files left out (`data.source.on_error=skip`).
    """

    kind: ClassVar[str] = "images"
    classes: list[str] = field(default_factory=list)
    class_keys: list[str] = field(default_factory=list)
    channels: int = 1
    image_size: list[int] = field(default_factory=lambda: [28, 28])
    mean: list[float] = field(default_factory=lambda: [0.5])
    std: list[float] = field(default_factory=lambda: [0.5])
    train_class_counts: list[int] = field(default_factory=list)
    skipped_images: int = 0

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """`(channels, height, width)` of one image."""
        return (int(self.channels), int(self.image_size[0]), int(self.image_size[1]))


@dataclass
class InteractionsMeta(DataMeta):
    """What the interactions source tells a recommender about its data (`adlab.data.sources.interactions`).

    Items and users are numbered from 1 in the order of `InteractionsFeatures.item_ids` / `user_ids`;
    item index 0 is padding (an empty slot of a history), never a recommendation.

    Attributes:
        items: catalogue size (items that can be recommended), without the padding index.
        users: users with at least one example.
        max_length: slots of `history (rows, max_length)`: the most recent items a model reads.
        user_attributes: user attribute columns, in the order of `user_features (rows, U)`.
        user_cardinalities: per user attribute, its vocabulary size + 1 (code 0 is unknown).
        item_attributes: item attribute columns, in the order of the item attribute codes.
        item_cardinalities: per item attribute, its vocabulary size + 1 (code 0 is unknown).
        split: "leave_one_out" (each user's last interaction is test, the one before val) or "time".
        train_interactions: interactions in the train split.
        dropped: what the source left out, by reason (`single_interaction_users`, `repeats`,
            `below_min_rating`, `k_core`, `duplicates` ...), counted in interactions (users for users).
        has_titles: whether `InteractionsFeatures.item_titles` holds item titles.
    """

    kind: ClassVar[str] = "interactions"
    items: int = 0
    users: int = 0
    max_length: int = 50
    user_attributes: list[str] = field(default_factory=list)
    user_cardinalities: list[int] = field(default_factory=list)
    item_attributes: list[str] = field(default_factory=list)
    item_cardinalities: list[int] = field(default_factory=list)
    split: str = "leave_one_out"
    train_interactions: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    has_titles: bool = False


@dataclass
class InteractionsFeatures:
    """The catalogue and what the interactions source counts on the train split (plain lists throughout).

    Attributes:
        item_ids: item index i (1-based) is `item_ids[i - 1]` (the file's ids as strings).
        item_titles: titles in the same order (empty when the data has none).
        user_ids: user index u (1-based) is `user_ids[u - 1]`.
        item_codes: `(items, A)` attribute codes of each item, in item order (0: unknown value).
        user_codes: `(users, U)` attribute codes of each user, in user order.
        vocabularies: `"user.<column>"` / `"item.<column>"` -> sorted values; code = position + 1.
        popularity: train interactions of each item `(items,)`, in item order.
        history_offsets: `(users + 1,)`: user u's train items are `history_items[offsets[u-1]:offsets[u]]`.
        history_items: every user's train items (1-based indices), oldest first.
    """

    item_ids: list[str]
    item_titles: list[str]
    user_ids: list[str]
    item_codes: list[list[int]]
    user_codes: list[list[int]]
    vocabularies: dict[str, list[str]]
    popularity: list[int]
    history_offsets: list[int]
    history_items: list[int]

    VERSION: ClassVar[int] = 1

    def history(self, user: int) -> list[int]:
        """User `user`'s (1-based) train items, oldest first."""
        return self.history_items[self.history_offsets[user - 1] : self.history_offsets[user]]

    def title(self, item: int) -> str:
        """An item's title, else its id (1-based index)."""
        return self.item_titles[item - 1] if self.item_titles else self.item_ids[item - 1]

    def to_dict(self) -> dict[str, Any]:
        """Plain containers (what checkpoints store), with kind and version."""
        return {"kind": "interactions", "version": self.VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InteractionsFeatures:
        """Rebuild from `to_dict`'s output; `AdlabError` when it describes something else."""
        if data.get("kind") != "interactions" or data.get("version") != cls.VERSION:
            raise AdlabError(
                f"preprocessing of kind {data.get('kind')!r}, version {data.get('version')!r}: "
                f"expected interactions preprocessing, version {cls.VERSION}"
            )
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})
