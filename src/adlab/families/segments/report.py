"""The segment report of a tested checkpoint: who is in which segment, what each segment is, and a map.

Runs when the selected checkpoint is tested (`adlab-train`, `adlab-eval`) on the test customers, and writes
into the run directory (tables and the plot also go to W&B / MLflow / TensorBoard):
- `segments.csv`: per test customer (`row`: its position in the test split; `customer`: the source's row
  of the customer where the batch has it), its segment, the segment's name and the distance to the centre;
- `profiles.csv`: per segment its name, size, share, the top distinguishing features (difference from the
  population mean in population standard deviations, and lift = segment mean / population mean of the raw
  value) and the holdout behaviour (buying rate and mean holdout spend or target);
- `plots/segments_map.png`: the test customers' embeddings in 2-D (PCA), coloured by segment.

The per-customer segments keyed by the customer id are the module's per-row predictions
(`SegmentModule.prediction_columns`), written by the harness as `predictions.parquet`.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch

from adlab.families.segments.nets import batch_inputs
from adlab.harness.artifacts import pyplot, save_figure, save_table

TOP_FEATURES = 3
# words for the transactions source's features: (when above the population, when below)
WORDS = {
    "days_since_last": ("lapsed", "recent"),
    "recency_days": ("long-standing repeat", "short-lived"),
    "tenure_days": ("long-tenure", "new"),
    "frequency": ("frequent", "one-time"),
    "orders": ("frequent", "one-time"),
    "orders_last_90_days": ("recently active", "recently quiet"),
    "orders_last_30_days": ("very recently active", "not recently active"),
    "spend_last_90_days": ("high-recent-spend", "no-recent-spend"),
    "total_spend": ("big spenders", "small spenders"),
    "mean_order_spend": ("big-basket", "small-basket"),
    "max_order_spend": ("big-ticket", "small-ticket"),
    "spend_per_day": ("high-rate spenders", "low-rate spenders"),
    "overdue": ("overdue", "on-schedule"),
    "first_order_spend": ("big-first-order", "small-first-order"),
    "last_order_spend": ("big-last-order", "small-last-order"),
    "repeat_mean_spend": ("big repeat-order", "no repeat-order"),
    "std_order_spend": ("uneven-basket", "even-basket"),
    "mean_gap_days": ("slow-repeat", "fast-repeat"),
    "std_gap_days": ("irregular", "regular"),
    "last_gap_days": ("long-last-gap", "short-last-gap"),
    "refunds": ("refunding", "no-refund"),
    "refund_spend": ("refunding", "no-refund"),
    "units": ("many-unit", "few-unit"),
    "units_per_order": ("bulk-buying", "single-unit"),
    "distinct_products": ("varied", "single-product"),
}
# words are ordered as in "recent frequent big spenders": recency, then frequency, then the rest
ORDER = (
    "days_since_last",
    "overdue",
    "orders_last_30_days",
    "orders_last_90_days",
    "tenure_days",
    "recency_days",
    "frequency",
    "orders",
    "mean_gap_days",
    "std_gap_days",
    "last_gap_days",
)


def segment_profile(
    inputs: np.ndarray, raw: np.ndarray, segments: np.ndarray, k: int, names: list[str]
) -> list[dict[str, Any]]:
    """Per segment: size, share and every feature's difference from the population (in population standard
    deviations of the model input) and lift (segment mean / population mean of the raw value; NaN when the
    population mean is 0), sorted by the absolute difference (most distinguishing first)."""
    inputs, raw = np.asarray(inputs, dtype=np.float64), np.asarray(raw, dtype=np.float64)
    mean, spread = inputs.mean(0), inputs.std(0)
    spread = np.where(spread > 0, spread, 1.0)
    raw_mean = raw.mean(0)
    profile = []
    for j in range(k):
        members = segments == j
        if not members.any():
            profile.append({"segment": j, "size": 0, "share": 0.0, "features": []})
            continue
        difference = (inputs[members].mean(0) - mean) / spread
        with np.errstate(divide="ignore", invalid="ignore"):
            lift = np.where(raw_mean != 0, raw[members].mean(0) / raw_mean, np.nan)
        order = np.argsort(-np.abs(difference), kind="stable")
        profile.append(
            {
                "segment": j,
                "size": int(members.sum()),
                "share": float(members.mean()),
                "features": [(names[i], float(difference[i]), float(lift[i])) for i in order],
            }
        )
    return profile


# inter-purchase gaps are 0 for one-order customers (undefined): a segment without gaps is not "fast-repeat"
GAPS = ("mean_gap_days", "std_gap_days", "last_gap_days")


def _word(name: str, difference: float) -> str:
    high, low = WORDS.get(name, (f"high {name}", f"low {name}"))
    return high if difference > 0 else low


def _inside(word: str, other: str) -> bool:
    """Whether `word` says part of what `other` says: its words begin, in order, the words of a run of
    `other`'s ("recent" and "recently active" in "very recently active"); a negation ("not recently
    active") never holds the word it negates."""
    inner, outer = word.split(), other.split()
    if ("not" in inner) != ("not" in outer):
        return False
    return any(
        all(o.startswith(i) for i, o in zip(inner, outer[start : start + len(inner)], strict=True))
        for start in range(len(outer) - len(inner) + 1)
    )


def name_segments(profile: list[dict[str, Any]], k: int) -> list[str]:
    """A short name per segment from its top distinguishing features ("recent frequent big spenders");
    a word inside a chosen one ("recent" or "recently active" beside "very recently active", either order) or
    negating it (the stronger of "recently active" and "not recently active" is kept) and the gap
    features of a segment whose gaps are all 0 (lift 0: no repeat purchase) are skipped; repeated names
    get " (2)", " (3)" ..."""
    names, seen = [], {}
    for entry in profile:
        chosen: list[tuple[int, str]] = []
        for name, difference, lift in entry["features"]:
            word = _word(name, difference)
            if name in GAPS and abs(lift) < 0.05:
                continue
            said = any(_inside(word, w) or f"not {word}" == w or f"not {w}" == word for _, w in chosen)
            if abs(difference) < 0.25 or said:
                continue
            # the more specific word replaces one inside it ("very recently active" for "recently active")
            chosen = [(order, w) for order, w in chosen if not _inside(w, word)]
            chosen.append((ORDER.index(name) if name in ORDER else len(ORDER), word))
            if len(chosen) == TOP_FEATURES:
                break
        name = " ".join(word for _, word in sorted(chosen, key=lambda c: c[0])) or "average customers"
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return names[:k]


def map_figure(latent: np.ndarray, segments: np.ndarray, names: list[str]) -> Any:
    """The embeddings projected on their first two principal components, one colour per segment."""
    plt = pyplot()
    from sklearn.decomposition import PCA

    points = PCA(2).fit_transform(latent) if latent.shape[1] > 2 and len(latent) > 2 else latent
    figure, axis = plt.subplots(figsize=(7, 6))
    for j, name in enumerate(names):
        members = segments == j
        if members.any():
            axis.scatter(points[members, 0], points[members, 1], s=4, alpha=0.6, label=f"{j}: {name}")
    axis.set(title="Segments of the test customers (PCA of the embedding)", xlabel="PC 1", ylabel="PC 2")
    axis.legend(fontsize=7, markerscale=3, loc="best")
    return figure


class SegmentReport(L.Callback):
    """`segments.csv`, `profiles.csv` and `plots/segments_map.png` of the tested checkpoint (module docstring)."""

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._parts: dict[str, list[torch.Tensor]] = {}

    @torch.no_grad()
    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        numeric, categorical = batch_inputs(batch)
        latent = pl_module(numeric, categorical)
        segment, distance = pl_module.assign(latent)
        parts = {
            "latent": latent,
            "segment": segment,
            "distance": distance,
            "numeric": numeric,
            "raw": pl_module.raw_features(numeric),
            "target": batch["target"] if "target" in batch else torch.full_like(distance, float("nan")),
        }
        if "customer" in batch:
            parts["customer"] = batch["customer"]
        for name, value in parts.items():
            self._parts.setdefault(name, []).append(value.detach().cpu())

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or not getattr(self, "_parts", None):
            return
        data = {name: torch.cat(parts).numpy() for name, parts in self._parts.items()}
        segments, k = data["segment"].astype(np.int64), pl_module.k
        names = pl_module.segment_names
        rows = [
            {
                "row": i,
                **({"customer": int(data["customer"][i])} if "customer" in data else {}),
                "segment": int(segments[i]),
                "segment_name": names[segments[i]],
                "distance": round(float(data["distance"][i]), 4),
            }
            for i in range(len(segments))
        ]
        save_table(trainer, rows, "segments")
        target = data["target"].astype(np.float64)
        profile = segment_profile(data["numeric"], data["raw"], segments, k, pl_module.feature_names)
        table = []
        for entry in profile:
            members = segments == entry["segment"]
            top = entry["features"][:TOP_FEATURES]
            table.append(
                {
                    "segment": entry["segment"],
                    "name": names[entry["segment"]],
                    "size": entry["size"],
                    "share": round(entry["share"], 4),
                    "top_features": "; ".join(
                        f"{name} {difference:+.2f} sd, lift {lift:.2f}" for name, difference, lift in top
                    ),
                    "buy_rate": round(float((target[members] > 0).mean()), 4)
                    if members.any()
                    else float("nan"),
                    ("mean_holdout_spend" if pl_module.spend else "mean_target"): round(
                        float(target[members].mean()), 4
                    )
                    if members.any()
                    else float("nan"),
                }
            )
        save_table(trainer, table, "profiles")
        save_figure(trainer, map_figure(data["latent"], segments, names), "segments_map")
