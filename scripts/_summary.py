"""Mean ± standard deviation over seeds, for the benchmark scripts' summaries and tables.

Shared by `bench_value.py`, `bench_segments.py` and `bench_peers.py`; not a script itself.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence


def over_seeds(values: Sequence[float]) -> dict[str, float]:
    """`{"mean", "std", "seeds"}` of one figure over seeds; std is the sample one, 0.0 with one seed."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "seeds": len(values),
    }


def metrics_over_seeds(
    figures: Sequence[Mapping[str, float]], metrics: Iterable[str]
) -> dict[str, dict[str, float]]:
    """metric -> `over_seeds` of its values in `figures` (one mapping of metric -> value per seed)."""
    return {name: over_seeds([figure[name] for figure in figures]) for name in metrics}


def mean_std_cell(stats: Mapping[str, float], decimals: int = 4, std_decimals: int = 3) -> str:
    """A table cell `mean ± std`: the mean right-aligned in 14 characters, the std left-aligned in 5."""
    return f"{stats['mean']:>14.{decimals}f} ± {stats['std']:<5.{std_decimals}f}"
