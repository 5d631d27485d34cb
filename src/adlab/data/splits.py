"""Train/val/test splits: stratified, seeded, optionally grouped, or the dataset's official split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from adlab.errors import AdlabError

STAGES = ("train", "val", "test")


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate `data.split`: three positive fractions (train, val, test) that sum to 1."""
    values = tuple(float(f) for f in fractions)
    if len(values) != 3:
        raise AdlabError(f"data.split={list(values)}: expected three fractions [train, val, test]")
    if any(f <= 0 for f in values):
        raise AdlabError(f"data.split={list(values)}: every fraction must be > 0 so that no split is empty")
    if abs(sum(values) - 1.0) > 1e-6:
        raise AdlabError(f"data.split={list(values)}: fractions sum to {sum(values):.4g}, expected 1")
    return values  # type: ignore[return-value]


def _stratified_parts(
    labels: np.ndarray, fractions: Sequence[float], rng: np.random.Generator
) -> list[np.ndarray]:
    """Cut each class's shuffled members by the cumulative fractions, so every part keeps the class mix."""
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    bounds = np.cumsum(fractions)[:-1]
    for value in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == value))
        cuts = np.rint(bounds * len(members)).astype(int)
        for position, chunk in enumerate(np.split(members, cuts)):
            parts[position].append(chunk)
    return [np.sort(np.concatenate(chunks)) for chunks in parts]


def _grouped(
    labels: np.ndarray, groups: np.ndarray, fractions: Sequence[float], rng: np.random.Generator
) -> list[np.ndarray]:
    """Split whole groups (e.g. identical texts) so that no group straddles two parts."""
    unique, first_index, inverse = np.unique(groups, return_index=True, return_inverse=True)
    group_parts = _stratified_parts(labels[first_index], fractions, rng)
    assignment = np.empty(len(unique), dtype=int)
    for position, members in enumerate(group_parts):
        assignment[members] = position
    row_part = assignment[inverse.reshape(-1)]
    return [np.flatnonzero(row_part == position) for position in range(len(fractions))]


def random_split(
    labels: np.ndarray,
    fractions: Sequence[float],
    seed: int,
    groups: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Seeded split into train/val/test by `fractions`, stratified on `labels`.

    Args:
        labels: (n,) class of each row, used for stratification.
        fractions: (train, val, test), positive, summing to 1.
        seed: the split's seed; the same seed gives the same split.
        groups: optional (n,) key; rows sharing a key always land in the same split.

    Returns:
        `{"train": idx, "val": idx, "test": idx}`, sorted int64 row indices.
    """
    fractions = check_fractions(fractions)
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    parts = (
        _grouped(labels, np.asarray(groups), fractions, rng)
        if groups is not None
        else _stratified_parts(labels, fractions, rng)
    )
    splits = dict(zip(STAGES, parts, strict=True))
    _check_not_empty(splits, f"data.split={list(fractions)} on {len(labels)} rows")
    return splits


def official_split(
    official: np.ndarray,
    labels: np.ndarray,
    val_fraction: float,
    seed: int,
    groups: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Use the dataset's own test set; carve val (stratified) from its training rows unless it has one.

    Args:
        official: (n,) strings "train", "test" and optionally "val".
        labels: (n,) classes for stratifying the carved val split.
        val_fraction: share of the official training rows that becomes val.
        seed: seed of the carve.
        groups: optional (n,) key kept together when carving val.
    """
    official = np.asarray(official).astype(str)
    unknown = set(np.unique(official)) - set(STAGES)
    if unknown:
        raise AdlabError(f"official split column has values {sorted(unknown)}; expected train/val/test")
    splits = {stage: np.flatnonzero(official == stage) for stage in STAGES}
    if len(splits["val"]) == 0:
        if not 0 < val_fraction < 1:
            raise AdlabError(f"data.val_fraction={val_fraction}: expected a fraction between 0 and 1")
        pool = splits["train"]
        carved = random_split(
            np.asarray(labels)[pool],
            (1 - val_fraction, val_fraction / 2, val_fraction / 2),
            seed,
            None if groups is None else np.asarray(groups)[pool],
        )
        # the two carved halves together form val; the official test set stays untouched
        splits["train"] = pool[carved["train"]]
        splits["val"] = np.sort(pool[np.concatenate([carved["val"], carved["test"]])])
    _check_not_empty(splits, "the official split")
    return splits


def fold_assignment(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each row's fold `(n,)` in 0..folds-1: stratified on `labels`, seeded, folds as equal as possible."""
    labels = np.asarray(labels)
    if len(labels) < folds:
        raise AdlabError(
            f"fit.folds={folds}: only {len(labels)} train and val rows; expected at most {len(labels)} folds"
        )
    parts = _stratified_parts(labels, [1 / folds] * folds, np.random.default_rng(seed))
    if min(len(rows) for rows in parts) == 0:
        raise AdlabError(
            f"fit.folds={folds}: {len(labels)} train and val rows leave a fold empty; expected fewer folds"
        )
    fold_of = np.empty(len(labels), dtype=np.int64)
    for fold, rows in enumerate(parts):
        fold_of[rows] = fold
    return fold_of


def _check_not_empty(splits: dict[str, np.ndarray], what: str) -> None:
    empty = [stage for stage, rows in splits.items() if len(rows) == 0]
    if empty:
        raise AdlabError(f"{what} leaves the {'/'.join(empty)} split empty; use more data or other fractions")
