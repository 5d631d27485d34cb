"""`adlab-compare` on multirun folders written as Hydra and adlab-train leave them (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from adlab.compare import main as compare


def write_job(job: Path, seed: int, metrics: dict[str, float], overrides: list[str] | None = None) -> None:
    """A multirun job folder: `.hydra/config.yaml`, `.hydra/overrides.yaml` and `metrics.json`."""
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text(f"seed: {seed}\n")
    overrides = [f"seed={seed}"] if overrides is None else overrides
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (job / "metrics.json").write_text(json.dumps(metrics))


def seeds_run(sweep: Path, hits: tuple[float, ...] = (100.0, 110.0, 120.0)) -> Path:
    """A seed multirun (seeds 1, 2, ...) whose model and logreg baseline report test/top20_hits."""
    for number, value in enumerate(hits):
        metrics = {
            "test/top20_hits": value,
            "baseline/logreg/test/top20_hits": value + 1,
            "val/auroc": 0.7 + number / 100,
        }
        write_job(sweep / str(number), number + 1, metrics)
    return sweep


def board(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "leaderboard.csv")


def test_seeds_fold_into_one_group_with_mean_and_sample_std(tmp_path, capsys):
    compare(
        [str(seeds_run(tmp_path / "sweep")), "--metrics", "test/top20_hits", "--out", str(tmp_path / "c")]
    )
    table = board(tmp_path / "c")
    assert len(table) == 1 and table.loc[0, "n"] == 3 and table.loc[0, "seeds"] == "1,2,3"
    assert table.loc[0, "test/top20_hits_mean"] == pytest.approx(110.0)
    assert table.loc[0, "test/top20_hits_std"] == pytest.approx(10.0)  # n - 1 in the denominator
    assert "110 ± 10" in capsys.readouterr().out


def test_a_setting_besides_the_seed_gets_its_own_group(tmp_path):
    sweep = seeds_run(tmp_path / "sweep")
    for number, (seed, hits) in enumerate(((1, 90.0), (2, 94.0))):
        overrides = [f"seed={seed}", "model.ema_decay=0.95"]
        write_job(sweep / str(number + 3), seed, {"test/top20_hits": hits}, overrides)
    compare([str(sweep), "--metrics", "top20_hits", "--out", str(tmp_path / "c")])
    table = board(tmp_path / "c").set_index("group")
    assert table.loc["(defaults)", "n"] == 3 and table.loc["(defaults)", "test/top20_hits_mean"] == 110
    averaged = table.loc["model.ema_decay=0.95"]
    assert averaged["n"] == 2 and averaged["seeds"] == "1,2"
    assert averaged["test/top20_hits_mean"] == pytest.approx(92.0)
    assert averaged["test/top20_hits_std"] == pytest.approx(2.83, abs=0.01)


def test_a_seed_added_with_plus_is_folded_too(tmp_path):
    for seed in (1, 2):
        write_job(
            tmp_path / "sweep" / str(seed), seed, {"test/auroc": 0.7}, [f"+seed={seed}", "model.dropout=0.1"]
        )
    compare([str(tmp_path / "sweep"), "--out", str(tmp_path / "c")])
    table = board(tmp_path / "c")
    assert list(table["group"]) == ["model.dropout=0.1"] and table.loc[0, "n"] == 2


def test_baselines_get_a_row_beside_the_model(tmp_path, capsys):
    compare(
        [
            str(seeds_run(tmp_path / "sweep")),
            "--metrics",
            "top20_hits",
            "--baselines",
            "--out",
            str(tmp_path / "c"),
        ]
    )
    table = board(tmp_path / "c").set_index("scorer")
    assert list(table.index) == ["model", "logreg"]
    assert table.loc["logreg", "test/top20_hits_mean"] == pytest.approx(111.0)
    assert "| logreg | 3 | 111 ± 10 |" in capsys.readouterr().out


def test_per_seed_lists_the_first_metric_run_by_run_in_seed_order(tmp_path, capsys):
    sweep = seeds_run(tmp_path / "sweep", hits=tuple(float(h) for h in range(100, 111)))  # seeds 1-11
    compare(
        [str(sweep), "--metrics", "top20_hits", "--baselines", "--per-seed", "--out", str(tmp_path / "c")]
    )
    out = capsys.readouterr().out
    assert "| (defaults) | 3 | 102 | 103 |" in out
    assert out.index("| (defaults) | 2 |") < out.index("| (defaults) | 10 |")  # 2 before 10
    assert board(tmp_path / "c").loc[0, "seeds"] == ",".join(str(s) for s in range(1, 12))
    assert "top20_hits per seed" in (tmp_path / "c" / "leaderboard.md").read_text()


def test_stage_val_reads_val_metrics_by_default(tmp_path):
    compare([str(seeds_run(tmp_path / "sweep")), "--stage", "val", "--out", str(tmp_path / "c")])
    table = board(tmp_path / "c")
    assert [c for c in table.columns if c.endswith("_mean")] == ["val/auroc_mean"]
    assert table.loc[0, "val/auroc_mean"] == pytest.approx(0.71)


def test_a_ledger_gives_the_same_leaderboard_as_the_folders(tmp_path):
    sweep = seeds_run(tmp_path / "sweep")
    lines = [
        {
            "run_dir": str(job),
            "overrides": [f"seed={seed}"],
            "seed": seed,
            "metrics": {"test/top20_hits": hits},
        }
        for job, seed, hits in ((sweep / "0", 1, 100.0), (sweep / "1", 2, 110.0), (sweep / "2", 3, 120.0))
    ]
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_text("".join(json.dumps(line) + "\n" for line in lines))
    compare(["--ledger", str(ledger), "--metrics", "top20_hits", "--out", str(tmp_path / "l")])
    compare([str(sweep), "--metrics", "top20_hits", "--out", str(tmp_path / "d")])
    columns = ["group", "n", "seeds", "test/top20_hits_mean", "test/top20_hits_std"]
    assert board(tmp_path / "l")[columns].equals(board(tmp_path / "d")[columns])


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (["--metrics", "test/ndcg_at_10"], "test/ndcg_at_10"),
        (["--stage", "val", "--metrics", "bpc"], "val/bpc"),
    ],
)
def test_a_metric_no_run_reports_is_one_line_and_exit_2(tmp_path, capsys, arguments, named):
    with pytest.raises(SystemExit) as exit_info:
        compare([str(seeds_run(tmp_path / "sweep")), *arguments, "--out", str(tmp_path / "c")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and named in error


def test_a_missing_directory_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        compare([str(tmp_path / "nowhere"), "--out", str(tmp_path / "c")])
    assert exit_info.value.code == 2 and "nowhere" in capsys.readouterr().err
