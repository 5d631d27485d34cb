"""`adlab-score` of a customers package (value or segments, exported from a run on transactions): a purchase
log in, one row per customer out (serving/batch.py routes a package here by its kind of data).

    adlab-score model=PACKAGE input=transactions.csv output=ratings.csv [as_of=YYYY-MM-DD]

The input is a CSV (comma-separated), another text file (split as the training log was, e.g. CDNOW's
whitespace) or a parquet file with the training log's columns. The whole log is held in memory (a
customer's lines may be anywhere in the file). Value packages write `customer, predicted_spend,
buy_probability[, decile, tier]`, segments packages `customer, segment, segment_name, distance` (the
customer column keeps the log's name), under a temporary name renamed at the end.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from adlab.data.sources.base import read_log
from adlab.errors import AdlabError
from adlab.harness.io import atomic_write_bytes
from adlab.harness.report import print_outputs
from adlab.serving.batch import file_kind
from adlab.serving.customers import CustomerScorer, CustomerScores
from adlab.serving.package import ModelPackage


def read_log_file(path: Path, scorer: CustomerScorer) -> pd.DataFrame:
    """The input file as a frame (text as strings, parquet typed); `AdlabError` naming `input` otherwise.
    A `.csv` is comma-separated; another text file is split as the training log was."""
    separator = "comma" if "".join(path.suffixes).lower().endswith(".csv") else scorer.separator
    return read_log(path, "input", separator)


def score_log_file(
    scorer: CustomerScorer, input_path: str | Path, output_path: str | Path, as_of: str | None = None
) -> CustomerScores:
    """Score every customer of the log at `input_path` into `output_path` (.csv or .parquet); the scores.

    `AdlabError` naming the input when the file does not fit the package: a missing column, unparseable
    dates or amounts, refunds a `refunds=error` model refuses, no purchase on or before the as-of day.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    output_kind = file_kind(output_path, "output")
    if input_path.resolve() == output_path.resolve():
        raise AdlabError(f"output={output_path}: would overwrite the input")
    day = scorer.as_of_day(as_of)
    frame = read_log_file(input_path, scorer)
    try:
        log = scorer.validated_log(frame, f"input={input_path}")
    except AdlabError as error:
        message = str(error)
        raise AdlabError(
            message if message.startswith("input=") else f"input={input_path}: {message}"
        ) from None
    scores = scorer.score_log(log, day)
    if len(scores.customers) == 0:
        first = log["date"].min().date()
        raise AdlabError(
            f"input={input_path}: no purchase on or before {day.date()} (the file starts {first}); expected "
            f"purchase histories up to the model's cutoff {scorer.cutoff.date()}, or a later as_of=YYYY-MM-DD"
        )
    table = scores.frame(scorer.log_format.customer)
    try:
        if output_kind == "parquet":
            atomic_write_bytes(output_path, table.to_parquet(index=False))
        else:
            atomic_write_bytes(output_path, table.to_csv(index=False).encode())
    except OSError as error:
        raise AdlabError(f"output={output_path}: cannot write it ({error.strerror or error})") from None
    return scores


def score_job(cfg: DictConfig, package: ModelPackage) -> None:
    """Rate or segment the customers of `cfg.input` into `cfg.output` and say who was not scored."""
    unused = [name for name in ("id_column", "keep", "ignore") if cfg.get(name)]
    if unused:
        raise AdlabError(
            f"{', '.join(unused)}: not used when scoring customers from their transactions (the output has one "
            "row per customer); leave them unset"
        )
    scorer = CustomerScorer(package, int(cfg.threads), allow_torchscript=bool(cfg.allow_torchscript))
    started = time.perf_counter()
    scores = score_log_file(scorer, cfg.input, cfg.output, cfg.get("as_of"))
    seconds = time.perf_counter() - started
    what = "rated" if scorer.task == "customer_value" else "segmented"
    print(
        f"{what} {len(scores.customers)} customers as of {scores.as_of.date()} with {scorer.model_version} "
        f"into {cfg.output} in {seconds:.2f} s"
    )
    if scores.not_scored:
        print(
            f"not scored: {len(scores.not_scored)} customers with no purchase on or before {scores.as_of.date()}"
        )
    if scorer.task == "customer_value" and not scorer.rating:
        print("no decile or tier: the package carries no reference customers (export the run's best.ckpt)")
    if scores.overflowed:
        print(
            f"adlab: warning: input={cfg.input}: {len(scores.overflowed)} customers left blank, their values "
            f"overflow the model's arithmetic (first: {scores.overflowed[0]})",
            file=sys.stderr,
        )
    print_outputs(None, {"ratings" if scorer.task == "customer_value" else "segments": cfg.output})
