"""Outputs one can find and read: the block every entry point ends with, the job's log file, where the
ledger goes, a quiet console, every logger receiving the same results, and a leaderboard by experiment."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pandas as pd
import pytest

from adlab.compare import main as compare
from adlab.harness.ledger import ledger_path
from adlab.harness.report import print_outputs
from adlab.train import train
from tests.helpers import compose_config, run_module

SRC = Path(__file__).resolve().parents[2] / "src" / "adlab"


@pytest.fixture(scope="module")
def cli_run(coil_data_dir, tmp_path_factory):
    """`adlab-train` as a user runs it: cross-fitted (2 folds, so several trainers), progress bars on, its
    run folder named with hydra.run.dir outside ./outputs. (completed process, run folder)"""
    run = tmp_path_factory.mktemp("elsewhere") / "run"
    result = run_module(
        "adlab.train",
        "experiment=propensity_coil",
        "fit.folds=2",
        "trainer.max_epochs=2",
        "extras.print_config=false",
        f"paths.data_dir={coil_data_dir}",
        f"hydra.run.dir={run}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result, run


def block(stdout: str) -> dict[str, str]:
    """The outputs block at the end of a job's stdout: name -> path."""
    lines = stdout.strip().splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("run folder:"))
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in lines[start:])}


@pytest.mark.slow
def test_training_ends_with_where_it_wrote_what(cli_run):
    result, run = cli_run
    written = block(result.stdout)
    assert Path(written["run folder"]) == run
    assert Path(written["metrics"]) == run / "metrics.json"
    assert Path(written["best checkpoint"]) == run / "checkpoints" / "best.ckpt"
    assert Path(written["log"]) == run / "train.log"
    assert written["plots"].endswith("png)")


@pytest.mark.slow
def test_the_ledger_goes_beside_a_run_folder_named_on_the_command_line(cli_run):
    result, run = cli_run
    ledger = run.parent / "ledger.jsonl"
    assert Path(block(result.stdout)["ledger"]) == ledger
    (entry,) = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert entry["run_dir"] == str(run) and "baseline/logreg/test/auroc" in entry["metrics"]


@pytest.mark.slow
def test_the_log_file_holds_the_run(cli_run):
    _, run = cli_run
    log = (run / "train.log").read_text()
    for expected in ("GPU available", "fold 2/2: best val/auroc", "baseline 2/2", "test metrics", "ledger:"):
        assert expected in log, expected


@pytest.mark.slow
def test_the_console_says_each_thing_once_without_tips(cli_run):
    result, _ = cli_run
    assert result.stderr.count("GPU available") == 1  # three trainers, one line
    assert "Tip:" not in result.stderr and "litlogger" not in result.stderr
    assert "weights_only" not in result.stderr and "does not have many workers" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if re.search(r"\.py:\d+: ", line)]
    assert len(warnings) == len(set(warnings))
    assert "baseline 1/2: fitting" in result.stderr  # a status line while baselines fit
    assert "fold 2/2 · Epoch 2/2" in result.stdout  # the progress bars say which fold they fit


BATCH_KINDS = sorted(f"serving/{path.name}" for path in (SRC / "serving").glob("batch_*.py"))


@pytest.mark.parametrize("entry", ["train.py", "eval.py", "export.py", "generate.py", *BATCH_KINDS])
def test_every_entry_point_ends_with_the_outputs_block(entry):
    """Each entry point, and each kind's `adlab-score` job, ends by printing where its outputs are."""
    assert "print_outputs(" in (SRC / entry).read_text()


def test_outputs_block_lists_what_the_run_folder_holds(tmp_path, capsys):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "plots").mkdir()
    for name in ("metrics.json", "checkpoints/best.ckpt", "plots/gains_lift.png"):
        (tmp_path / name).write_text("x")
    entries = print_outputs(tmp_path, {"ledger": tmp_path.parent / "ledger.jsonl", "nothing": None})
    assert list(entries) == ["run folder", "metrics", "best checkpoint", "plots", "ledger"]
    out = capsys.readouterr().out
    assert "plots:" in out and "(1 png)" in out and "nothing" not in out


def test_the_ledger_sits_in_the_outputs_root(tmp_path):
    inside = compose_config("train", [f"paths.log_dir={tmp_path}"], tmp_path / "train" / "runs" / "a")
    assert ledger_path(inside) == tmp_path / "ledger.jsonl"
    elsewhere = compose_config("train", [], tmp_path / "mine" / "run1")
    assert ledger_path(elsewhere) == tmp_path / "mine" / "ledger.jsonl"
    chosen = compose_config("train", [f"paths.ledger={tmp_path / 'l.jsonl'}"], tmp_path / "run")
    assert ledger_path(chosen) == tmp_path / "l.jsonl"


@pytest.mark.slow
def test_every_logger_gets_the_params_metrics_and_plots(train_config, tmp_path, wandb_media, monkeypatch):
    from lightning.pytorch.loggers import WandbLogger
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    wandb_metrics: set[str] = set()
    log_metrics = WandbLogger.log_metrics

    def record(self, metrics, step=None):
        wandb_metrics.update(metrics)
        return log_metrics(self, metrics, step)

    monkeypatch.setattr(WandbLogger, "log_metrics", record)
    train(train_config(["experiment=propensity_coil", "fit=plain", "logger=[wandb,mlflow,tensorboard]"]))
    plots = {key for key in wandb_media if key.startswith("plots/")}
    assert plots and {"test/auroc", "baseline/logreg/test/auroc"} <= wandb_metrics

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("propensity_coil").experiment_id])
    assert {"test/auroc", "baseline/logreg/test/auroc"} <= set(run.data.metrics)
    assert run.data.params["seed"] == "1"
    artifacts = {f"plots/{Path(a.path).stem}" for a in client.list_artifacts(run.info.run_id, "plots")}
    assert artifacts == plots
    assert [a.path for a in client.list_artifacts(run.info.run_id, "tables")] == ["tables/decile_table.csv"]

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert {"test/auroc", "baseline/logreg/test/auroc"} <= set(events.Tags()["scalars"])
    assert set(events.Tags()["images"]) == plots
    assert "tables/decile_table/text_summary" in events.Tags()["tensors"]
    hparams = (tmp_path / "run" / "tensorboard" / "hparams.yaml").read_text()
    assert "seed: 1" in hparams


def test_a_logger_whose_package_is_missing_is_one_line_naming_the_extra(train_config, monkeypatch):
    import lightning.pytorch.loggers.mlflow as mlflow_logger

    from adlab.errors import AdlabError
    from adlab.harness.build import build_loggers

    monkeypatch.setattr(mlflow_logger, "_MLFLOW_AVAILABLE", False)
    with pytest.raises(AdlabError) as error:
        build_loggers(train_config(["logger=mlflow"]), job_type="train")
    assert str(error.value).startswith("logger mlflow: ") and "pip install -e '.[ui]'" in str(error.value)


def write_job(job: Path, experiment: str, seed: int, metrics: dict[str, float]) -> Path:
    """A run folder as adlab-train leaves it: `.hydra/config.yaml`, `.hydra/overrides.yaml`, metrics."""
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text(f"seed: {seed}\nexperiment_name: {experiment}\n")
    overrides = [f"experiment={experiment}", f"seed={seed}"]
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (job / "metrics.json").write_text(json.dumps(metrics))
    return job


@pytest.fixture
def two_families(tmp_path) -> Path:
    """Two propensity runs (seeds 1, 2) and one ad copy run, with disjoint metrics."""
    sweep = tmp_path / "runs"
    for seed, auroc in ((1, 0.70), (2, 0.74)):
        write_job(
            sweep / f"coil{seed}",
            "propensity_coil",
            seed,
            {"test/auroc": auroc, "test/top20_hits": 20.0 + seed, "baseline/logreg/test/auroc": 0.6},
        )
    copy = write_job(sweep / "copy1", "copy_lstm", 1, {"test/bpc": 2.5, "test/distinct_2": 0.4})
    (copy / "plots").mkdir()
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(1, 1))
    figure.savefig(copy / "plots" / "lengths.png")
    plt.close(figure)
    return sweep


def test_compare_writes_beside_the_folder_it_reads(two_families, capsys):
    compare([str(two_families)])
    out = two_families.parent / "runs-compare"
    assert (out / "leaderboard.md").is_file() and (out / "leaderboard.png").is_file()
    assert f"table: {out / 'leaderboard.md'}" in capsys.readouterr().out.replace(str(Path.cwd()) + "/", "")


def test_compare_shows_each_experiment_with_its_own_metrics(two_families, tmp_path, capsys):
    compare([str(two_families), "--baselines", "--out", str(tmp_path / "c")])
    markdown = (tmp_path / "c" / "leaderboard.md").read_text()
    copy, coil = markdown.split("experiment: propensity_coil")
    assert "experiment: copy_lstm" in copy and "bpc" in copy and "auroc" not in copy
    assert "bpc" not in coil and "| test/auroc | test/top20_hits |" in coil
    assert "0.72 ± 0.028" in coil  # two seeds: mean ± sample std
    assert "| experiment=copy_lstm | model | 1 | 2.5 | 0.4 |" in copy  # one run: no ±
    assert "nan" not in markdown.lower()
    board = pd.read_csv(tmp_path / "c" / "leaderboard.csv")
    assert list(board["experiment"]) == ["copy_lstm", "propensity_coil", "propensity_coil"]


def test_compare_html_is_one_page_with_the_runs_plots(two_families, tmp_path):
    compare([str(two_families), "--html", "--out", str(tmp_path / "c")])
    page = (tmp_path / "c" / "leaderboard.html").read_text()
    assert "<h2>propensity_coil</h2>" in page and "<h2>copy_lstm</h2>" in page
    assert page.count("data:image/png;base64,") == 2  # the chart and copy1's plot, inline
    assert not re.search(r"src=\"(?!data:)", page)  # nothing loaded from elsewhere


def test_the_log_filter_says_a_warning_once_but_every_error():
    """A repeated warning passes once; a service's repeated failures are each logged with their traceback."""
    from adlab.harness.quiet import TIP_PREFIX, QuietFilter

    quiet = QuietFilter()

    def record(level: int, text: str) -> logging.LogRecord:
        return logging.LogRecord("adlab", level, __file__, 1, text, None, None)

    assert [quiet.filter(record(logging.WARNING, "same")) for _ in range(3)] == [True, False, False]
    assert all(quiet.filter(record(logging.ERROR, "scoring failed on /score")) for _ in range(3))
    assert not quiet.filter(record(logging.INFO, f"{TIP_PREFIX}: for seamless cloud uploads ..."))
