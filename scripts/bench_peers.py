"""Benchmark adlab's bring-your-own-table propensity preset beside the peers a researcher would pick instead.

    .venv-peers/bin/python scripts/bench_peers.py [--seeds 1 2 3 4 5] [--datasets ...] [--models ...]
        [--split test|val|holdout] [--peer-cache FILE] [--adlab-runs FILE ...] [--json] [OVERRIDE ...]

Datasets (`adlab-data fetch NAME` each): CoIL 2000 (official test split, val carved from its training
customers), CDNOW repeat purchase, Telco churn and MLC churn (adlab's seeded, stratified 60/20/20). For
each dataset and seed the split is built once with adlab's data module, exactly as `adlab-train
experiment=propensity_csv data.source.path=FILE data.source.target=COLUMN ...` builds it, and every model
gets the same train/val/test rows and the same inputs: the feature columns as the tabular source reads
them (categories as text, numbers as float64, missing numbers filled with the train rows' median).

Models, one CPU thread each: `propensity_csv` (the preset itself, run live through `adlab.train.train`
with its baselines off; its split is checked to be the same rows), RealMLP-TD and TabM (pytabkit, its
defaults, early stopping on val by AUC: `val_metric_name="1-auc_ovr"`), CatBoost (its defaults, val AUC,
best iteration kept, 200 rounds patience), LightGBM (its defaults with 10000 trees, stopped after 200
rounds without a better val AUC) and logistic regression (one-hot + scaled numbers, C=1). A peer whose
library is missing is named and left out; the others run.

Figures on `--split` (default test; `val` reads no test row, for choosing adlab's defaults): AUROC,
average precision, top20_capture (adlab's metric code for everyone) and fit seconds, mean ± std over seeds;
then each model's mean rank on AUROC across the datasets, and the goal of issue 20 (propensity_csv best
mean rank, never more than 0.005 AUROC behind the best peer). `--peer-cache FILE` keeps each peer fit's val
and test figures (one fit gives both), so that comparing adlab settings on val refits no peer; only the
figures of `--split` are printed. `--adlab-runs FILE [FILE ...]` takes propensity_csv's figures from earlier
`--json` outputs (the same split; a later file's run of a dataset and seed replaces an earlier one's) instead
of training it, so that a peer added to the table does not make the preset's test split read twice (the
output names those files and their overrides; overrides of this run are refused with them).
Extra arguments are overrides of propensity_csv (val experiments).
A cross-fitted propensity_csv (`fit=crossfit`) trains on the train and val rows; its val figures are the
out-of-fold scores it stored for the val rows (each from the fold network that held the row out).
`--split holdout` reads no test row either: each table is cut to its train and val rows, the val rows
become its test split, and every model fits on the train rows (val carved from them, 20%) and is scored
on the val rows; a cross-fitted ensemble is then scored like a plain fit, on rows none of it has seen.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

from _bench import train_run  # noqa: E402
from _summary import mean_std_cell, metrics_over_seeds  # noqa: E402
from adlab.cli import fail  # noqa: E402
from adlab.data.sources.tabular import read_table  # noqa: E402
from adlab.harness.checkpoints import load_checkpoint  # noqa: E402
from adlab.harness.configs import compose  # noqa: E402
from adlab.metrics.binary import score_probabilities  # noqa: E402

METRICS = ("auroc", "average_precision", "top20_capture", "fit_seconds")
ADLAB = "propensity_csv"
GOAL_MARGIN = 0.005


@dataclass(frozen=True)
class Table:
    """A registry dataset as a user would point propensity_csv at it."""

    path: str  # below the data folder
    target: str
    positive: str | None = None
    split_column: str | None = None

    def overrides(self, data_dir: Path) -> list[str]:
        """propensity_csv's data overrides for this table."""
        found = [
            f"data.source.path={data_dir / self.path}",
            f"data.source.target={self.target}",
            "data.source.id_column=customer_id",
            "data.source.impute=median",
        ]
        if self.positive is not None:
            found.append(f"data.source.positive={self.positive}")
        if self.split_column is not None:
            found += ["data.split=official", f"data.source.split_column={self.split_column}"]
        return found


# smallest first
DATASETS = {
    "mlc_churn": Table("mlc_churn/mlc_churn.csv", "churn", positive="yes"),
    "telco_churn": Table("telco_churn/telco_churn.csv", "churn", positive="Yes"),
    "coil2000": Table("coil2000/coil2000.parquet", "CARAVAN", split_column="split"),
    "cdnow": Table("cdnow/cdnow.parquet", "repeat"),
}


@dataclass
class Split:
    """One dataset's rows for one seed: `frames[stage]` features, `labels[stage]` 0/1, row indices."""

    frames: dict[str, pd.DataFrame]
    labels: dict[str, np.ndarray]
    rows: dict[str, np.ndarray]
    categorical: list[str]
    numeric: list[str]


def adlab_overrides(table: Table, seed: int, data_dir: Path, log_dir: Path) -> list[str]:
    return [
        f"experiment={ADLAB}",
        f"seed={seed}",
        f"paths.log_dir={log_dir}",
        "baselines=none",
        "model.report=false",
        "extras.print_config=false",
        "callbacks.progress_bar=null",
        *table.overrides(data_dir),
    ]


def build_split(table: Table, seed: int, data_dir: Path, log_dir: Path) -> Split:
    """The seed's split and inputs, built by propensity_csv's own data module (numbers median-imputed)."""
    cfg = compose("train", adlab_overrides(table, seed, data_dir, log_dir), log_dir / "split")
    datamodule = instantiate(cfg.data, seed=seed)
    raw = datamodule.source.load()
    splits = datamodule.split_rows(raw)
    frame = raw.frame.copy()
    medians = frame.iloc[splits["train"]][raw.numeric].median()
    frame[raw.numeric] = frame[raw.numeric].fillna(medians)
    return Split(
        {stage: frame.iloc[rows].reset_index(drop=True) for stage, rows in splits.items()},
        {stage: raw.labels[rows] for stage, rows in splits.items()},
        splits,
        list(raw.categorical),
        list(raw.numeric),
    )


def holdout_table(table: Table, split: Split, data_dir: Path, folder: Path) -> Table:
    """The table cut to the split's train and val rows (written under `folder`), its val rows marked as its
    official test split: models fit on the train rows (their val carved from them) and are scored on val
    rows no fit has seen, so a cross-fitted ensemble and a plain fit compare on the same footing."""
    frame = read_table(data_dir / table.path)
    rows = np.sort(np.concatenate([split.rows["train"], split.rows["val"]]))
    cut = frame.iloc[rows].reset_index(drop=True)
    cut["split"] = np.where(np.isin(rows, split.rows["val"]), "test", "train")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{Path(table.path).stem}.parquet"
    cut.to_parquet(path, index=False)
    return Table(str(path), table.target, table.positive, split_column="split")


def as_categories(split: Split) -> dict[str, pd.DataFrame]:
    """The frames with categorical columns as pandas categories of the train rows' values (others NaN)."""
    levels = {c: sorted(split.frames["train"][c].unique()) for c in split.categorical}
    typed = {}
    for stage, frame in split.frames.items():
        frame = frame.copy()
        for column in split.categorical:
            frame[column] = pd.Categorical(frame[column], categories=levels[column])
        typed[stage] = frame
    return typed


# each peer: fit on train (early stopping on val), return the probabilities of the wanted stages
Peer = Callable[[Split, int, tuple[str, ...]], dict[str, np.ndarray]]


def fit_logistic(split: Split, seed: int, stages: tuple[str, ...]) -> dict[str, np.ndarray]:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    design = ColumnTransformer(
        [
            ("categories", OneHotEncoder(handle_unknown="ignore"), split.categorical),
            ("numbers", StandardScaler(), split.numeric),
        ]
    )
    model = make_pipeline(design, LogisticRegression(C=1.0, max_iter=5000, random_state=seed))
    model.fit(split.frames["train"], split.labels["train"])
    return {stage: model.predict_proba(split.frames[stage])[:, 1] for stage in stages}


def fit_lightgbm(split: Split, seed: int, stages: tuple[str, ...]) -> dict[str, np.ndarray]:
    import lightgbm

    frames = as_categories(split)
    model = lightgbm.LGBMClassifier(n_estimators=10000, random_state=seed, n_jobs=1, verbose=-1)
    model.fit(
        frames["train"],
        split.labels["train"],
        eval_set=[(frames["val"], split.labels["val"])],
        eval_metric="auc",
        callbacks=[lightgbm.early_stopping(200, first_metric_only=True, verbose=False)],
    )
    return {stage: model.predict_proba(frames[stage])[:, 1] for stage in stages}


def fit_catboost(split: Split, seed: int, stages: tuple[str, ...]) -> dict[str, np.ndarray]:
    import catboost

    model = catboost.CatBoostClassifier(
        eval_metric="AUC", random_seed=seed, thread_count=1, verbose=False, allow_writing_files=False
    )
    model.fit(
        split.frames["train"],
        split.labels["train"],
        cat_features=split.categorical,
        eval_set=(split.frames["val"], split.labels["val"]),
        use_best_model=True,
        early_stopping_rounds=200,
    )
    return {stage: model.predict_proba(split.frames[stage])[:, 1] for stage in stages}


def _pytabkit(name: str) -> Peer:
    def fit(split: Split, seed: int, stages: tuple[str, ...]) -> dict[str, np.ndarray]:
        import pytabkit

        frames = as_categories(split)
        model = getattr(pytabkit, name)(
            device="cpu", random_state=seed, n_threads=1, val_metric_name="1-auc_ovr", verbosity=0
        )
        model.fit(
            frames["train"],
            split.labels["train"],
            X_val=frames["val"],
            y_val=split.labels["val"],
            cat_col_names=split.categorical,
        )
        return {stage: model.predict_proba(frames[stage])[:, 1] for stage in stages}

    return fit


# cheapest first, so that a partial run (or its --peer-cache) holds the most models
PEERS: dict[str, tuple[str, Peer]] = {
    "logistic": ("sklearn", fit_logistic),
    "lightgbm": ("lightgbm", fit_lightgbm),
    "catboost": ("catboost", fit_catboost),
    "realmlp_td": ("pytabkit", _pytabkit("RealMLP_TD_Classifier")),
    "tabm": ("pytabkit", _pytabkit("TabM_D_Classifier")),
}
MODELS = (ADLAB, *PEERS)


def importable(models: list[str]) -> tuple[list[str], dict[str, str]]:
    """The models whose libraries import, and model -> why not for the others."""
    import importlib

    ready, missing = [], {}
    for model in models:
        if model == ADLAB:
            ready.append(model)
            continue
        try:
            importlib.import_module(PEERS[model][0])
            ready.append(model)
        except ImportError as error:
            missing[model] = str(error)
    return ready, missing


def score(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    found = score_probabilities(
        torch.as_tensor(probabilities, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.float32)
    )
    return {name: found[name] for name in METRICS if name in found}


def run_adlab(
    table: Table, split: Split, seed: int, data_dir: Path, log_dir: Path, stage: str, extra: list[str]
) -> dict[str, float]:
    """propensity_csv live on the seed's split; the figures of `stage` (no test row read for val)."""
    output_dir = log_dir / f"{ADLAB}-{seed}"
    overrides = [
        *adlab_overrides(table, seed, data_dir, log_dir),
        f"test={str(stage == 'test').lower()}",
        *extra,
    ]
    _, metrics = train_run(overrides, output_dir)
    pool = pooled_rows(split, np.load(output_dir / "splits.npz"), output_dir)
    if stage == "val" and pool is not None:
        figures = out_of_fold_figures(split, pool, output_dir / "checkpoints" / "best.ckpt")
    else:
        figures = {name: float(metrics[f"{stage}/{name}"]) for name in METRICS if name != "fit_seconds"}
    return {**figures, "fit_seconds": float(metrics["time/fit_seconds"])}


def pooled_rows(split: Split, saved: Any, output_dir: Path) -> np.ndarray | None:
    """Check that propensity_csv ran on the peers' rows; the pool (train and val rows, sorted) when it was
    cross-fitted (`fit=crossfit`: the pool served as both train and val), else None."""
    pool = np.sort(np.concatenate([split.rows["train"], split.rows["val"]]))
    crossfitted = np.array_equal(saved["train"], pool) and np.array_equal(saved["val"], pool)
    plain = all(np.array_equal(saved[name], split.rows[name]) for name in ("train", "val"))
    if not (crossfitted or plain) or not np.array_equal(saved["test"], split.rows["test"]):
        raise RuntimeError(f"{output_dir}: propensity_csv's split differs from the peers' split")
    return pool if crossfitted else None


def out_of_fold_figures(split: Split, pool: np.ndarray, checkpoint: Path) -> dict[str, float]:
    """A cross-fitted ensemble's val figures on the peers' val rows: the out-of-fold scores it stored for
    them (each from the fold network that held the row out), so they compare with the peers' val figures."""
    state = load_checkpoint(checkpoint)["state_dict"]
    positions = np.searchsorted(pool, split.rows["val"])
    logits = state["out_of_fold_logits"].numpy()[positions]
    if not np.array_equal(state["out_of_fold_targets"].numpy()[positions], split.labels["val"]):
        raise RuntimeError(f"{checkpoint}: its out-of-fold targets differ from the val rows' labels")
    return score(1 / (1 + np.exp(-logits)), split.labels["val"])


def run_peer(model: str, split: Split, seed: int, stages: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """One peer's fit on the seed's split: stage -> figures (the fit is the same whichever stage is read)."""
    torch.manual_seed(seed)
    started = time.perf_counter()
    probabilities = PEERS[model][1](split, seed, stages)
    seconds = time.perf_counter() - started
    return {
        stage: {**score(probabilities[stage], split.labels[stage]), "fit_seconds": seconds}
        for stage in stages
    }


def read_adlab_runs(
    paths: list[Path], split: str, datasets: list[str], seeds: list[int]
) -> tuple[dict[tuple[str, int], dict], list[dict]]:
    """propensity_csv's figures per (dataset, seed) from earlier `--json` outputs of this script (a later file's
    run replaces an earlier one's), so that adding a peer to a table does not read the preset's test split
    again; a file that is not such an output, or files that lack a requested dataset and seed, end the script
    with one line naming them (exit status 2). Also returns each file's path and overrides, for the output."""
    expected = (
        f"expected this script's --json output with {ADLAB} runs on the {split} split of every dataset and "
        "seed asked for"
    )
    figures: dict[tuple[str, int], dict] = {}
    sources = []
    for path in paths:
        try:
            stored = json.loads(path.read_text())
            if stored["split"] != split:
                raise ValueError(f"its split is {stored['split']!r}, not {split!r}")
            for run in stored["runs"]:
                if run["model"] == ADLAB:
                    figures[run["dataset"], int(run["seed"])] = {
                        name: float(run["figures"][name]) for name in METRICS
                    }
            sources.append({"path": str(path), "overrides": list(stored.get("overrides", []))})
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            fail(f"--adlab-runs {path}: {expected}: {type(error).__name__}: {error}")
    missing = [f"{d} seed {s}" for d in datasets for s in seeds if (d, s) not in figures]
    if missing:
        fail(f"--adlab-runs {' '.join(map(str, paths))}: {expected}: no {ADLAB} run for {', '.join(missing)}")
    return figures, sources


class PeerCache:
    """Peers' figures of both val and test per (dataset, seed, model), kept in a JSON file between runs so
    that choosing adlab's defaults on val does not refit the peers; delete the file when a peer changes."""

    def __init__(self, path: Path | None):
        self.path = path
        self.entries = json.loads(path.read_text()) if path is not None and path.is_file() else {}

    def figures(self, dataset: str, seed: int, model: str, split: Split, stage: str) -> dict[str, float]:
        key = f"{dataset}/{seed}/{model}"
        if key not in self.entries:
            self.entries[key] = run_peer(model, split, seed, ("val", "test") if self.path else (stage,))
            if self.path is not None:
                self.path.write_text(json.dumps(self.entries, indent=1) + "\n")
        return self.entries[key][stage]


def summarise(runs: list[dict]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """dataset -> model -> metric -> {"mean", "std", "seeds"}."""
    summary: dict = {}
    for run in runs:
        summary.setdefault(run["dataset"], {}).setdefault(run["model"], []).append(run["figures"])
    for models in summary.values():
        for model, figures in models.items():
            models[model] = metrics_over_seeds(figures, METRICS)
    return summary


def mean_ranks(summary: dict) -> dict[str, float]:
    """Each model's rank on mean AUROC per dataset (1 = best; ties share the mean rank), averaged."""
    ranks: dict[str, list[float]] = {}
    for models in summary.values():
        ranked = pd.Series({m: s["auroc"]["mean"] for m, s in models.items()}).rank(ascending=False)
        for model, rank in ranked.items():
            ranks.setdefault(model, []).append(float(rank))
    return dict(sorted(((m, statistics.fmean(r)) for m, r in ranks.items()), key=lambda item: item[1]))


def goal(summary: dict, ranks: dict[str, float]) -> dict[str, object]:
    """Issue 20's goal on the means over seeds: propensity_csv's rank and its AUROC gap to the best peer."""
    if ADLAB not in ranks:
        return {}
    gaps = {}
    for dataset, models in summary.items():
        peers = [s["auroc"]["mean"] for m, s in models.items() if m != ADLAB]
        if peers and ADLAB in models:
            gaps[dataset] = models[ADLAB]["auroc"]["mean"] - max(peers)
    return {
        "best_mean_rank": ranks[ADLAB] == min(ranks.values()),
        "auroc_minus_best_peer": gaps,
        f"never_more_than_{GOAL_MARGIN}_behind": all(gap >= -GOAL_MARGIN for gap in gaps.values()),
    }


def print_table(result: dict) -> None:
    summary = result["summary"]
    print(
        f"{result['split']} split, mean ± std over seeds {result['seeds']}; wall time {result['wall_seconds']:.0f} s"
    )
    if result["unavailable"]:
        print(
            "not run (library missing): " + "; ".join(f"{m} ({w})" for m, w in result["unavailable"].items())
        )
    for dataset, models in summary.items():
        print(f"\n{dataset}")
        print(f"{'model':<16}" + "".join(f"{name:>22}" for name in METRICS))
        for model, scores in models.items():
            cells = "".join(
                mean_std_cell(scores[n], 1, 1) if n == "fit_seconds" else mean_std_cell(scores[n])
                for n in METRICS
            )
            print(f"{model:<16}{cells}")
    print(
        "\nmean rank on AUROC across datasets: "
        + ", ".join(f"{m} {r:.2f}" for m, r in result["ranks"].items())
    )
    if result["goal"]:
        gaps = ", ".join(f"{d} {g:+.4f}" for d, g in result["goal"]["auroc_minus_best_peer"].items())
        print(
            f"goal: {ADLAB} best mean rank: {result['goal']['best_mean_rank']}; AUROC minus the best peer's: "
            f"{gaps} (never more than {GOAL_MARGIN} behind: {result['goal'][f'never_more_than_{GOAL_MARGIN}_behind']})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument(
        "--split", choices=("test", "val", "holdout"), default="test", help="the figures reported"
    )
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("ADLAB_DATA_DIR", "data")))
    parser.add_argument("--log-dir", type=Path, default=None, help="adlab's run folders (default: temporary)")
    parser.add_argument(
        "--peer-cache", type=Path, default=None, help="JSON file of the peers' val and test figures, reused"
    )
    parser.add_argument(
        "--adlab-runs",
        type=Path,
        nargs="+",
        default=None,
        help=f"earlier --json outputs whose {ADLAB} figures are reused instead of training it (later files win)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    parser.add_argument("overrides", nargs="*", help=f"extra adlab-train overrides of {ADLAB}")
    args = parser.parse_args()
    if args.adlab_runs and ADLAB in args.models and args.overrides:
        # they would not apply: the stored figures are of runs already made
        fail(
            f"overrides {' '.join(args.overrides)} with --adlab-runs: expected one or the other "
            f"({ADLAB} is not trained when its figures are read from earlier outputs)"
        )
    logging.getLogger("lightning").setLevel(logging.ERROR)
    data_dir = args.data_dir.resolve()
    log_dir = (args.log_dir or Path(tempfile.mkdtemp(prefix="bench_peers-"))).resolve()
    models, unavailable = importable(args.models)
    for model, why in unavailable.items():
        print(f"bench_peers: {model} not run: {why}", file=sys.stderr)
    stored, sources = None, None
    if args.adlab_runs and ADLAB in args.models:
        stored, sources = read_adlab_runs(args.adlab_runs, args.split, args.datasets, args.seeds)
    started, runs, cache = time.perf_counter(), [], PeerCache(args.peer_cache)
    # holdout: every model is tested on the val rows of a table cut to its train and val rows
    stage, cached_as = ("test", "{}@holdout") if args.split == "holdout" else (args.split, "{}")
    for dataset in args.datasets:
        for seed in args.seeds:
            table = DATASETS[dataset]
            split = build_split(table, seed, data_dir, log_dir / dataset)
            if args.split == "holdout":
                table = holdout_table(table, split, data_dir, log_dir / dataset / f"holdout-{seed}")
                split = build_split(table, seed, data_dir, log_dir / dataset)
            for model in models:
                if model == ADLAB and stored is not None:
                    figures = stored[(dataset, seed)]
                elif model == ADLAB:
                    run_dir = log_dir / dataset
                    figures = run_adlab(table, split, seed, data_dir, run_dir, stage, args.overrides)
                else:
                    figures = cache.figures(cached_as.format(dataset), seed, model, split, stage)
                runs.append({"dataset": dataset, "seed": seed, "model": model, "figures": figures})
                print(f"bench_peers: {dataset} seed {seed} {model}: {figures}", file=sys.stderr, flush=True)
    summary = summarise(runs)
    ranks = mean_ranks(summary)
    result = {
        "split": args.split,
        "seeds": args.seeds,
        "overrides": args.overrides,
        "adlab_runs": sources,
        "wall_seconds": time.perf_counter() - started,
        "unavailable": unavailable,
        "runs": runs,
        "summary": summary,
        "ranks": ranks,
        "goal": goal(summary, ranks),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
