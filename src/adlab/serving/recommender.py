"""Top-k recommendations from an exported recommendation package (what `POST /recommend` and
`POST /similar` compute), reading the package only: no family code, no training data.

The package (`adlab-export` of a recommendation checkpoint) holds the user encoder with the item vectors
in its graph (`history (1, L) int64 [, user_features] -> scores (1, items + 1), user_vector`) and, in
`preprocessing.json`, the catalogue (`item_ids`, `item_titles`), train `popularity`, the `item_vectors` and
the history length `max_length`. Rules, also stated by `describe()` for `/metadata`:

- item ids are the catalogue's (strings); an id not in the catalogue is ignored and counted (`unknown`);
- the latest `max_length` known items are the history (oldest first); items in it are never recommended;
- an empty history (nothing known) gets the most popular items (`fallback: "popularity"`);
- `k` is a whole number from 1 to the catalogue's size; anything else is refused with `AdlabError`;
- the visitor's attributes (`user_attributes`, e.g. age, gender), when the package has them, are optional:
  one not given, or a value training never saw, is coded unknown (counted, `unknown_user_values`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from adlab.errors import AdlabError
from adlab.serving.backends import load_backend
from adlab.serving.package import ModelPackage


@dataclass
class Recommendation:
    """An answer: item ids best first with their scores, and what happened to the input.

    Attributes:
        items: recommended item ids, best first.
        titles: their titles (ids where the package has none).
        scores: the model's scores (train interaction counts for the popularity fallback).
        unknown: input item ids not in the catalogue (ignored).
        fallback: None, or "popularity" when no known item was given.
        unknown_ids: those input item ids.
        unknown_user_values: visitor attribute values training never saw (None: no attributes given).
    """

    items: list[str]
    titles: list[str]
    scores: list[float]
    unknown: int = 0
    fallback: str | None = None
    unknown_ids: list[str] = field(default_factory=list)
    unknown_user_values: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON answer of the service (`unknown_user_values` only when attributes were given)."""
        extra = {} if self.unknown_user_values is None else {"unknown_user_values": self.unknown_user_values}
        return {
            "items": [
                {"item": i, "title": t, "score": s}
                for i, t, s in zip(self.items, self.titles, self.scores, strict=True)
            ],
            "unknown_items": self.unknown,
            "fallback": self.fallback,
        } | extra


class RecommenderScorer:
    """Recommend from a visitor's recent items, and find an item's nearest items, with a package.

    Args:
        package: an exported recommendation package.
        threads: graph runtime threads (1: a request stays on one core).
        allow_torchscript: run a TorchScript package's code (see `load_backend`).
    """

    def __init__(self, package: ModelPackage, threads: int = 1, allow_torchscript: bool = False):
        pre = package.preprocessing
        if pre.get("task") != "recommendation":
            raise AdlabError(
                f"model={package.directory}: not a recommendation package (its preprocessing describes "
                f"{pre.get('kind')!r} data); expected an export of a recommendation checkpoint"
            )
        self.package = package
        self.backend = load_backend(package, threads, allow_torchscript)
        self.item_ids: list[str] = [str(i) for i in pre["item_ids"]]
        self.titles: list[str] = list(pre.get("item_titles") or self.item_ids)
        self.index = {item: position + 1 for position, item in enumerate(self.item_ids)}
        self.max_length = int(pre["max_length"])
        self.user_attributes = list(pre.get("user_attributes") or [])
        vocabularies = pre.get("vocabularies") or {}
        # attribute value -> code (position in the sorted vocabulary + 1; 0 is unknown)
        self.user_codes = {
            name: {value: code + 1 for code, value in enumerate(vocabularies.get(f"user.{name}", []))}
            for name in self.user_attributes
        }
        self.popularity = np.asarray(pre["popularity"], dtype=np.float64)
        vectors = np.asarray(pre["item_vectors"], dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.unit_vectors = vectors / np.where(norms > 0, norms, 1.0)
        self._history = np.zeros((1, self.max_length), dtype=np.int64)
        self._user = np.zeros((1, len(self.user_attributes)), dtype=np.int64)
        self._popular = np.argsort(-self.popularity, kind="stable")

    @property
    def catalogue_size(self) -> int:
        return len(self.item_ids)

    def check_k(self, k: Any) -> int:
        """`k` as an int from 1 to the catalogue's size, else `AdlabError` naming it."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= self.catalogue_size:
            raise AdlabError(
                f"k={k!r}: expected a whole number from 1 to the catalogue's {self.catalogue_size} items"
            )
        return int(k)

    def _top(self, scores: np.ndarray, k: int) -> np.ndarray:
        """Positions of the k best finite scores, best first (ties by position)."""
        k = min(k, int(np.isfinite(scores).sum()))
        if k == 0:
            return np.zeros(0, dtype=np.int64)
        part = np.argpartition(-scores, k - 1)[:k]
        return part[np.lexsort((part, -scores[part]))]

    def encode_user(self, user: Mapping[str, Any] | None) -> int | None:
        """Write the visitor's attribute codes into the graph's user input (unknown where not given or never
        seen in training); how many given values training never saw (None when `user` is None).
        `AdlabError` naming an attribute the package does not have."""
        self._user.fill(0)
        if user is None:
            return None
        unknown = 0
        for name, value in user.items():
            if name not in self.user_codes:
                raise AdlabError(
                    f"user attribute {name!r}: not one of the package's {self.user_attributes or 'none'}"
                )
            if value is not None:
                code = self.user_codes[name].get(str(value), 0)
                self._user[0, self.user_attributes.index(name)] = code
                unknown += code == 0
        return unknown

    def recommend(
        self, items: Sequence[Any], k: int = 10, user: Mapping[str, Any] | None = None
    ) -> Recommendation:
        """Top-k item ids for a visitor whose recent items are `items` (oldest first) and whose attributes
        are `user` (optional, `{attribute: value}`)."""
        k = self.check_k(k)
        unknown_user_values = self.encode_user(user)
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
            raise AdlabError(f"items={items!r}: expected a list of item ids, oldest first")
        known, unknown_ids = [], []
        for item in items:
            position = self.index.get(str(item))
            if position is None:
                unknown_ids.append(str(item))
            else:
                known.append(position)
        if not known:
            top = self._popular[:k]
            return Recommendation(
                [self.item_ids[i] for i in top],
                [self.titles[i] for i in top],
                self.popularity[top].tolist(),
                len(unknown_ids),
                "popularity",
                unknown_ids,
                unknown_user_values,
            )
        latest = known[-self.max_length :]
        self._history.fill(0)
        self._history[0, self.max_length - len(latest) :] = latest
        inputs = [self._history] + ([self._user] if self.user_attributes else [])
        scores = self.backend.run_raw(inputs)[0][0].astype(np.float64)
        scores[0] = -np.inf
        scores[known] = -np.inf  # what the visitor already had
        top = self._top(scores, k)
        return Recommendation(
            [self.item_ids[i - 1] for i in top],
            [self.titles[i - 1] for i in top],
            scores[top].tolist(),
            len(unknown_ids),
            None,
            unknown_ids,
            unknown_user_values,
        )

    def similar(self, item: Any, k: int = 10) -> Recommendation:
        """The k items whose vectors are closest (cosine) to `item`'s: "customers who liked this also liked"."""
        k = self.check_k(k)
        position = self.index.get(str(item))
        if position is None:
            raise AdlabError(
                f"item={item!r}: not in the catalogue ({self.catalogue_size} items, e.g. {self.item_ids[0]!r})"
            )
        scores = (self.unit_vectors @ self.unit_vectors[position - 1]).astype(np.float64)
        scores[position - 1] = -np.inf
        top = self._top(scores, min(k, self.catalogue_size - 1))
        return Recommendation(
            [self.item_ids[i] for i in top], [self.titles[i] for i in top], scores[top].tolist()
        )

    def describe(self) -> dict[str, Any]:
        """What `/metadata` states about recommendations."""
        return {
            "catalogue_items": self.catalogue_size,
            "max_length": self.max_length,
            "rules": [
                "item ids are the catalogue's; an unknown id is ignored and counted (unknown_items)",
                f"the latest {self.max_length} known items are the model's input; no known item given is recommended",
                "an empty history gets the most popular items (fallback: popularity)",
                f"k: a whole number from 1 to {self.catalogue_size}",
                "similar: the nearest items by cosine of the model's item vectors",
                "user attributes are optional; one not given or never seen in training is coded unknown "
                "(unknown_user_values); the popularity fallback does not read them",
            ],
            "user_attributes": {name: list(codes) for name, codes in self.user_codes.items()},
        }
