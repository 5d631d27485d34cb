"""scripts/bench_value.py without training: `--split val` runs with test=false and reads only val figures,
the mean ± std per method over seeds, the goal's ratios and checks, and what `--json` prints."""

from __future__ import annotations

import json
import math
import sys

import pytest

from adlab.harness.configs import compose
from tests.helpers import load_script

# method -> metric -> its mean over seeds 1 and 2 on val (seed 1 is 0.01 under it, seed 2 0.01 over)
VAL = {
    "ziln": {"normalized_gini": 0.62, "spearman": 0.52, "decile_mape": 0.12, "total_spend_error": 0.03},
    "bgnbd": {"normalized_gini": 0.55, "spearman": 0.50, "decile_mape": 0.10, "total_spend_error": -0.1},
    "boosting": {"normalized_gini": 0.58, "spearman": 0.45, "decile_mape": 0.15, "total_spend_error": 0.2},
    "naive": {"normalized_gini": 0.40, "spearman": 0.40, "decile_mape": 0.30, "total_spend_error": 0.3},
}
for figures in VAL.values():
    figures.update(top10_capture=0.3, auroc=0.7)
DELTA = 0.01


def figure(method: str, metric: str, seed: int, split: str) -> float:
    """The fake run's figure: the val ones above, and test ones that differ from them (2x + 1)."""
    value = VAL[method][metric] + DELTA * (1 if seed == 2 else -1)
    return value if split == "val" else 2 * value + 1


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_value")


@pytest.fixture
def runs(bench, monkeypatch):
    """Replace training by a run that composes the config like the script and returns both splits' figures
    (without BG/NBD's when `missing` names it); the composed configs are listed."""
    configs = []
    missing: set[str] = set()

    def train_run(overrides, output_dir):
        cfg = compose("train", overrides, output_dir)
        configs.append(cfg)
        metrics = {"val/loss": 1.0, "test/loss": 2.0}
        for method, prefix in bench.METHODS.items():
            if method not in missing:
                for split in ("val", "test"):
                    for name in bench.METRICS:
                        metrics[f"{prefix}{split}/{name}"] = figure(method, name, cfg.seed, split)
        return cfg, metrics

    monkeypatch.setattr(bench, "train_run", train_run)
    return configs, missing


@pytest.mark.parametrize("split", ["val", "test"])
def test_a_seed_runs_the_preset_and_reads_only_its_split(bench, runs, split, tmp_path):
    configs, _ = runs
    run = bench.run_seed(2, tmp_path / "data", tmp_path / "logs", ["model.members=2"], split)
    (cfg,) = configs
    assert cfg.test is (split == "test")
    assert (cfg.experiment_name, cfg.seed, cfg.model.members) == ("value_cdnow", 2, 2)
    assert run == {m: {n: figure(m, n, 2, split) for n in bench.METRICS} for m in bench.METHODS}


def main_json(bench, monkeypatch, capsys, tmp_path, *args: str) -> dict:
    """What `bench_value.py --seeds 1 2 --json ARGS` prints, parsed (one JSON object on stdout)."""
    argv = ["bench_value.py", "--seeds", "1", "2", "--data-dir", str(tmp_path), "--log-dir", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", [*argv, "--json", *args])
    bench.main()
    return json.loads(capsys.readouterr().out)


def test_split_val_summarises_the_val_figures_over_seeds_and_checks_the_goal(
    bench, runs, monkeypatch, capsys, tmp_path
):
    output = main_json(bench, monkeypatch, capsys, tmp_path, "--split", "val", "model.members=2")
    configs, _ = runs
    assert [(cfg.seed, cfg.test, cfg.model.members) for cfg in configs] == [(1, False, 2), (2, False, 2)]
    assert set(output) == {"split", "overrides", "seeds", "wall_seconds", "runs", "summary", "goal"}
    assert (output["split"], output["overrides"], output["seeds"]) == ("val", ["model.members=2"], [1, 2])
    assert output["runs"][0]["ziln"]["spearman"] == pytest.approx(0.51)
    for method, figures in VAL.items():
        for name, mean in figures.items():
            cell = output["summary"][method][name]
            assert cell["mean"] == pytest.approx(mean) and cell["seeds"] == 2
            assert cell["std"] == pytest.approx(DELTA * math.sqrt(2))  # the sample std of mean ± DELTA
    goal = output["goal"]
    # Gini over boosting's (the best baseline's), Spearman over BG/NBD's
    assert goal["gini_ratio"] == pytest.approx(0.62 / 0.58)
    assert goal["spearman_ratio"] == pytest.approx(0.52 / 0.50)
    assert goal["gini_and_spearman_at_least_1.05x"] is False  # Spearman is 1.04x
    assert goal["total_spend_error_within_5%"] is True
    assert goal["decile_mape_below_every_baseline"] is False  # BG/NBD's is lower
    assert goal["baselines"] == ["bgnbd", "boosting", "naive"]


def test_without_bgnbd_its_row_is_missing_and_the_goal_is_over_the_other_baselines(
    bench, runs, monkeypatch, capsys, tmp_path
):
    runs[1].add("bgnbd")
    output = main_json(bench, monkeypatch, capsys, tmp_path)
    assert [cfg.test for cfg in runs[0]] == [True, True] and output["split"] == "test"
    assert set(output["summary"]) == {"ziln", "boosting", "naive"}
    assert output["summary"]["ziln"]["spearman"]["mean"] == pytest.approx(2 * 0.52 + 1)
    assert output["goal"]["baselines"] == ["boosting", "naive"]
    assert output["goal"]["decile_mape_below_every_baseline"] is True
    assert output["goal"]["spearman_ratio"] == pytest.approx((2 * 0.52 + 1) / (2 * 0.45 + 1))


def test_the_table_names_the_split_and_the_goal(bench, runs, monkeypatch, capsys, tmp_path):
    argv = ["bench_value.py", "--seeds", "1", "2", "--log-dir", str(tmp_path), "--split", "val"]
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("CDNOW val customers, mean ± std over 2 seed(s)")
    assert [line.split()[0] for line in lines[2:6]] == ["ziln", "bgnbd", "boosting", "naive"]
    assert lines[2].split()[1:4] == ["0.6200", "±", "0.014"]
    assert lines[6].startswith(f"goal: Gini {0.62 / 0.58:.3f}x and Spearman 1.040x the best baseline")
