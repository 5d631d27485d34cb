"""scripts/bench_segments.py without training: `--split val` runs with test=false and no baselines and
reads only val figures and the val customers' segments; the ARI across seeds is the mean over each pair of
seeds once, of segments matched by customer; k-means is refitted per seed on the split asked for; the
summary, goal and `--json` output of the test benchmark."""

from __future__ import annotations

import json
import statistics
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from adlab.harness.configs import compose
from tests.helpers import load_script

SEEDS = [1, 2, 3]
GROUPS = 8  # the preset's k: eight groups of customers far apart, that k-means finds with any seed
IDS = {"train": np.arange(40), "val": np.arange(100, 124), "test": np.arange(200, 224)}
# the model's segments of the 24 val (or test) customers, three per group: seed 2 renames seed 1's,
# seed 3 moves two customers of seed 1's
LABELS = {1: np.arange(24) // 3}
LABELS[2] = (LABELS[1] + 3) % GROUPS
LABELS[3] = LABELS[1].copy()
LABELS[3][[0, 5]] = [7, 2]
SHUFFLED = np.random.default_rng(1).permutation(24)  # another order of the same customers


def expected_pairs() -> dict[str, float]:
    """Each pair of seeds' ARI once, by scikit-learn."""
    return {f"{a}-{b}": adjusted_rand_score(LABELS[a], LABELS[b]) for a, b in combinations(SEEDS, 2)}


class Customers:
    """The datamodule's part the script reads: features of customers in eight groups, row ids, and a
    target that is the group on val (eta² 1 for k-means' segments) and noise on test."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.tensors = {}
        for split, ids in IDS.items():
            groups = np.arange(len(ids)) * GROUPS // len(ids)
            groups = groups[SHUFFLED] if split == "test" else groups  # test rows not in val's order
            features = np.stack([groups * 10.0, np.zeros(len(ids))], axis=1) + rng.normal(
                0, 0.1, (len(ids), 2)
            )
            target = groups if split == "val" else rng.exponential(size=len(ids))
            self.tensors[split] = {
                "features": torch.tensor(features, dtype=torch.float32),
                "target": torch.tensor(target, dtype=torch.float32),
            }

    def row_ids(self, split: str) -> tuple[str, np.ndarray]:
        return "customer_id", IDS[split]


class Model:
    """A trained model as `load_module` gives it: the seed's segments of the val customers."""

    def __init__(self, seed: int):
        self.seed = seed

    def encode_all(self, numeric: torch.Tensor, categorical: None) -> torch.Tensor:
        assert torch.equal(numeric, Customers().tensors["val"]["features"]) and categorical is None
        return numeric

    def assign(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tensor(LABELS[self.seed]), embedding


def metrics(seed: int, test: bool) -> dict[str, float]:
    """A run's metrics: val and test figures that differ, for the model and (with `test`) the baselines."""
    figures = {"val/eta2_spend": 0.30 + 0.01 * seed, "val/min_share": 0.05 - 0.01 * seed}
    figures |= {"test/eta2_spend": 0.9, "test/min_share": 0.5}
    if test:
        for method, eta2 in {
            "": 0.5,
            "baseline/kmeans/": 0.4,
            "baseline/gmm/": 0.35,
            "baseline/rfm/": 0.3,
        }.items():
            figures |= {
                f"{method}test/{name}": 0.1 for name in ("buy_rate_spread", "silhouette", "ari_bootstrap")
            }
            figures |= {f"{method}test/eta2_spend": eta2 + 0.01 * (seed - 2), f"{method}test/min_share": 0.03}
            figures[f"{method}val/eta2_spend"] = eta2 / 10
    return figures


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_segments")


@pytest.fixture
def runs(bench, monkeypatch):
    """Replace training by a run that composes the config like the script, returns `metrics` and (when it
    tests) writes the test customers' segments, seed 2's in another order; and the checkpoint and data
    loading by the fakes above. The composed configs are listed."""
    configs = []

    def train_run(overrides, output_dir):
        cfg = compose("train", overrides, output_dir)
        configs.append(cfg)
        seed = cfg.model.seed
        if cfg.test:
            order = SHUFFLED if seed == 2 else slice(None)
            rows = pd.DataFrame({"customer_id": IDS["test"][order], "segment": LABELS[seed][order]})
            Path(cfg.paths.output_dir).mkdir(parents=True)
            rows.to_parquet(Path(cfg.paths.output_dir) / "predictions.parquet")
        return cfg, metrics(seed, cfg.test)

    def load_module(path: Path) -> Model:
        assert path == Path(configs[-1].paths.output_dir) / "checkpoints" / "best.ckpt"
        return Model(configs[-1].model.seed)

    monkeypatch.setattr(bench, "train_run", train_run)
    monkeypatch.setattr(bench, "load_module", load_module)
    monkeypatch.setattr(bench, "build_datamodule", lambda cfg: Customers())
    return configs


def main_json(bench, monkeypatch, capsys, tmp_path, *args: str) -> dict:
    """What `bench_segments.py --seeds 1 2 3 --json ARGS` prints, parsed (one JSON object on stdout)."""
    argv = ["bench_segments.py", "--seeds", *map(str, SEEDS), "--log-dir", str(tmp_path), "--json", *args]
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    return json.loads(capsys.readouterr().out)


def test_pair_aris_match_segments_by_customer_and_take_each_pair_once(bench):
    segmentations = [pd.Series(LABELS[seed], index=IDS["val"]) for seed in SEEDS]
    segmentations[1] = segmentations[1].iloc[SHUFFLED]
    segmentations[2] = pd.concat([segmentations[2], pd.Series([0], index=[999])])  # one customer more
    pairs = bench.pair_aris(segmentations, SEEDS)
    assert pairs == pytest.approx(expected_pairs()) and list(pairs) == ["1-2", "1-3", "2-3"]
    assert bench.mean_ari(pairs) == pytest.approx(statistics.fmean(expected_pairs().values()))
    assert bench.mean_ari(bench.pair_aris(segmentations[:1], SEEDS[:1])) is None


def test_split_val_reads_only_val_figures_and_segments(bench, runs, monkeypatch, capsys, tmp_path):
    output = main_json(bench, monkeypatch, capsys, tmp_path, "--split", "val", "model.cluster_weight=0.5")
    trained = runs[:3]
    assert [(cfg.seed, cfg.model.seed, cfg.test) for cfg in trained] == [(1, s, False) for s in SEEDS]
    assert all(not cfg.baselines and cfg.model.cluster_weight == 0.5 for cfg in trained)
    assert set(output) == {"seeds", "split", "wall_seconds", "deep", "kmeans", "eta2_vs_kmeans"}
    deep = output["deep"]
    assert deep["eta2_per_seed"] == pytest.approx([0.31, 0.32, 0.33])
    assert deep["eta2_spend"] == pytest.approx(0.32) and deep["min_share"] == pytest.approx(0.02)
    assert deep["ari_pairs"] == pytest.approx(expected_pairs())
    assert deep["ari_seeds"] == pytest.approx(statistics.fmean(expected_pairs().values()))
    # k-means on the val customers: the same eight groups with every seed, the val target their number
    assert output["kmeans"] == pytest.approx({"eta2_spend": 1.0, "ari_seeds": 1.0}, abs=1e-6)
    assert output["eta2_vs_kmeans"] == pytest.approx(0.32, abs=1e-6)


def test_split_test_summarises_the_test_figures_and_checks_the_goal(
    bench, runs, monkeypatch, capsys, tmp_path
):
    output = main_json(bench, monkeypatch, capsys, tmp_path)
    assert [(cfg.model.seed, cfg.baselines.kmeans.seed, cfg.test) for cfg in runs[:3]] == [
        (s, s, True) for s in SEEDS
    ]
    assert set(output) == {"seeds", "wall_seconds", "runs", "summary", "ari_seeds", "goal"}
    assert output["runs"][0]["deep"]["val_eta2_spend"] == pytest.approx(0.05)
    assert set(output["summary"]) == {"deep", "kmeans", "gmm", "rfm"}
    eta2 = output["summary"]["deep"]["eta2_spend"]
    assert eta2 == pytest.approx({"mean": 0.5, "std": 0.01, "seeds": 3})
    assert output["ari_seeds"]["deep"] == pytest.approx(statistics.fmean(expected_pairs().values()))
    assert output["ari_seeds"]["kmeans"] == pytest.approx(1.0) and output["ari_seeds"]["rfm"] == 1.0
    assert output["goal"] == pytest.approx(
        {
            "eta2_vs_kmeans": 0.5 / 0.4,
            "eta2_at_least_1.10x_kmeans": True,
            "eta2_above_rfm": True,
            "ari_at_least_0.9": False,  # seed 3 moved two customers
            "no_segment_under_2%": True,
        }
    )
