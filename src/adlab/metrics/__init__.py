"""Marketing metrics that torchmetrics does not provide."""

from adlab.metrics.ranking import TopFractionCapture, TopFractionHits, decile_table, top_fraction_hits

__all__ = ["TopFractionCapture", "TopFractionHits", "decile_table", "top_fraction_hits"]
