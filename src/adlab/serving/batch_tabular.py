"""`adlab-score` of a tabular package (propensity scorers): one score per row of the file (serving/batch.py)."""

from __future__ import annotations

import sys
import time

from omegaconf import DictConfig

from adlab.harness.report import print_outputs
from adlab.serving.batch import ScoringReport, describe_ignored, score_file
from adlab.serving.package import ModelPackage
from adlab.serving.scorer import TabularScorer


def score_job(cfg: DictConfig, package: ModelPackage) -> None:
    """Score `cfg.input` into `cfg.output` (row id, kept columns, score) and say what was ignored or unseen."""
    scorer = TabularScorer(package, int(cfg.threads), allow_torchscript=bool(cfg.allow_torchscript))
    started = time.perf_counter()
    report = ScoringReport()
    rows = score_file(
        scorer,
        cfg.input,
        cfg.output,
        cfg.get("id_column"),
        list(cfg.keep),
        list(cfg.ignore),
        int(cfg.chunk_rows),
        report,
    )
    seconds = time.perf_counter() - started
    print(
        f"scored {rows} rows with {scorer.model_version} into {cfg.output} in {seconds:.2f} s ({rows / seconds:,.0f} rows/s)"
    )
    if report.ignored:
        print(f"ignored {describe_ignored(scorer.schema, report.ignored)}")
    if report.drift:
        # scored as in training (unseen categories share one bucket), but the scores may not mean much
        print(
            f"adlab: warning: input={cfg.input}: values training never saw: {report.drift.summary()}",
            file=sys.stderr,
        )
    print_outputs(None, {"scores": cfg.output})
