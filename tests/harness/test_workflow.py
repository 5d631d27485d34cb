"""Research workflow from the command line: multirun, resumable Optuna search, submitit, compare, W&B resume."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from adlab.compare import main as compare_main
from adlab.train import train
from tests.helpers import run_module

QUIET = ["extras.print_config=false", "callbacks.progress_bar=null", "trainer.max_epochs=2"]


def adlab_train(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    result = run_module("adlab.train", *args, *QUIET, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def multirun(coil_data_dir, tmp_path_factory) -> Path:
    """A 2-job seed multirun of the flagship on tiny CoIL-shaped data."""
    sweep = tmp_path_factory.mktemp("sweeps") / "seeds"
    logs = sweep.parent / "logs"
    adlab_train(
        "-m",
        "experiment=propensity_coil",
        "fit=plain",
        "seed=1,2",
        f"paths.data_dir={coil_data_dir}",
        f"paths.log_dir={logs}",
        f"hydra.sweep.dir={sweep}",
    )
    return sweep


def test_two_job_multirun_writes_separate_runs_and_ledger(multirun):
    runs = sorted(p.parent for p in multirun.rglob("metrics.json"))
    assert [r.name for r in runs] == ["0", "1"]
    seeds = [
        json.loads(
            json.dumps(__import__("yaml").safe_load((r / ".hydra" / "config.yaml").read_text())["seed"])
        )
        for r in runs
    ]
    assert seeds == [1, 2]
    ledger = [
        json.loads(line) for line in (multirun.parent / "logs" / "ledger.jsonl").read_text().splitlines()
    ]
    assert sorted(entry["seed"] for entry in ledger) == [1, 2]
    assert all("test/top20_hits" in entry["metrics"] for entry in ledger)


def test_compare_folds_the_seeds_of_a_real_multirun(multirun, tmp_path):
    compare_main([str(multirun), "--metrics", "test/top20_hits,test/auroc", "--out", str(tmp_path / "cmp")])
    values = [json.loads((multirun / n / "metrics.json").read_text())["test/auroc"] for n in ("0", "1")]
    import pandas as pd

    table = pd.read_csv(tmp_path / "cmp" / "leaderboard.csv")
    assert len(table) == 1 and table.loc[0, "n"] == 2  # seeds folded into one group
    assert table.loc[0, "test/auroc_mean"] == pytest.approx(sum(values) / 2)
    assert table.loc[0, "test/auroc_std"] == pytest.approx(abs(values[0] - values[1]) / 2**0.5)
    assert (tmp_path / "cmp" / "leaderboard.png").stat().st_size > 0
    assert "experiment=propensity_coil" in (tmp_path / "cmp" / "leaderboard.md").read_text()


def test_compare_reads_the_ledger_of_a_real_multirun(multirun, tmp_path):
    values = [json.loads((multirun / n / "metrics.json").read_text())["test/auroc"] for n in ("0", "1")]
    ledger = multirun.parent / "logs" / "ledger.jsonl"
    compare_main(["--ledger", str(ledger), "--metrics", "test/auroc", "--out", str(tmp_path / "l")])
    import pandas as pd

    assert pd.read_csv(tmp_path / "l" / "leaderboard.csv").loc[0, "test/auroc_mean"] == pytest.approx(
        sum(values) / 2
    )


def test_optuna_search_resumes_from_its_storage(coil_data_dir, tmp_path):
    storage = tmp_path / "optuna.db"
    common = [
        "-m",
        "experiment=propensity_coil",
        "hparams_search=propensity_optuna",
        f"paths.data_dir={coil_data_dir}",
        f"paths.log_dir={tmp_path}",
        f"hydra.sweeper.storage=sqlite:///{storage}",
        "hydra.sweeper.study_name=resume_test",
        "hydra.sweeper.n_trials=1",
        "hydra.sweeper.sampler.n_startup_trials=1",
    ]
    adlab_train(*common, f"hydra.sweep.dir={tmp_path / 'first'}")
    adlab_train(*common, f"hydra.sweep.dir={tmp_path / 'second'}")
    with sqlite3.connect(storage) as db:
        states = [row[0] for row in db.execute("SELECT state FROM trials")]
        values = [row[0] for row in db.execute("SELECT value FROM trial_values")]
    assert states == ["COMPLETE", "COMPLETE"]  # the second call added a trial to the same study
    assert all(0.0 <= v <= 1.0 for v in values)  # val/auroc values came back from the train function


def test_submitit_local_launcher_runs_a_job(coil_data_dir, tmp_path):
    adlab_train(
        "-m",
        "experiment=propensity_coil",
        "fit=plain",
        "hydra/launcher=slurm_local",
        "seed=3",
        f"paths.data_dir={coil_data_dir}",
        f"paths.log_dir={tmp_path}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        timeout=900,
    )
    metrics = list((tmp_path / "sweep").rglob("metrics.json"))
    assert len(metrics) == 1 and "test/auroc" in json.loads(metrics[0].read_text())
    assert list((tmp_path / "sweep" / ".submitit").rglob("*_log.out")), "submitit did not run the job"


def test_resumed_run_continues_its_wandb_run(train_config, tmp_path):
    first = train(
        train_config(
            ["experiment=propensity_coil", "fit=plain", "logger=wandb", "trainer.max_epochs=1"],
            output_dir=tmp_path / "a",
        )
    )
    run_id = (tmp_path / "a" / "checkpoints" / "wandb_run_id").read_text().strip()
    assert run_id and "test/auroc" in first
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    train(
        train_config(
            [
                "experiment=propensity_coil",
                "fit=plain",
                "logger=wandb",
                "trainer.max_epochs=2",
                f"ckpt_path={last}",
            ],
            output_dir=tmp_path / "b",
        )
    )
    assert (tmp_path / "b" / "checkpoints" / "wandb_run_id").read_text().strip() == run_id
    assert list((tmp_path / "b" / "wandb").glob(f"offline-run-*-{run_id}"))
