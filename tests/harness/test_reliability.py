"""Every mistake a new user makes ends on one line naming the input and what was expected, with exit status 2,
no traceback, and nothing of adlab's written in the run folder (Hydra's own `.hydra/` and log aside).

Each case has an id; `docs/reliability.md` lists them all (`test_every_case_is_documented`). The entry points
run in this process (`main()` with a command line), as a user's shell would run them, only faster.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from adlab.cli import check_overrides
from adlab.data.synthetic import coil_like_table
from adlab.harness.configs import config_dir
from adlab.train import train
from tests.helpers import TINY, compose_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
HYDRA_OWN = {".hydra"}  # Hydra writes its job files (and the job's log) before adlab's code runs


def one_line_failure(capsys, action: Callable[[], object]) -> str:
    """Run `action`, expect exit status 2 with exactly one `adlab: error:` line and no traceback; the line."""
    with pytest.raises(SystemExit) as stop:
        action()
    err = capsys.readouterr().err
    assert stop.value.code == 2, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    errors = [line for line in err.splitlines() if line.startswith("adlab: error:")]
    assert len(errors) == 1, err[-2000:]
    assert err.strip().splitlines()[-1] == errors[0], err[-2000:]
    return errors[0]


def run_main(monkeypatch, main: Callable[[], None], args: list[str]) -> Callable[[], None]:
    """`main` with `args` as its command line (what `adlab-<entry> args...` runs)."""

    def call() -> None:
        monkeypatch.setattr(sys, "argv", ["adlab", *args])
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        try:
            main()
        finally:  # Hydra configures logging for its job: leave pytest's capture as it was
            for handler in root.handlers:
                if handler not in handlers:
                    handler.close()
            root.handlers, root.level = handlers, level

    return call


def adlab_files(run_dir: Path) -> list[str]:
    """What adlab wrote in a run folder: everything but Hydra's job folder and log file."""
    if not run_dir.exists():
        return []
    return sorted(
        str(p.relative_to(run_dir))
        for p in run_dir.rglob("*")
        if p.is_file() and p.relative_to(run_dir).parts[0] not in HYDRA_OWN and p.suffix != ".log"
    )


# ----------------------------------------------------------------------------------------------------
# command lines refused before Hydra starts the job: nothing is written at all
OVERRIDE_CASES = [
    # (case id, entry point config, overrides, expected message)
    ("plus-unknown-key", "train", ["+sed=5"], r"\+sed=5: adlab-train has no setting 'sed' \(did you mean 'seed'\?\)"),
    ("plus-unknown-trainer-key", "train", ["+trainer.limt_train_batches=3"],
     r"trainer\.limt_train_batches: not a setting of Trainer .*did you mean 'limit_train_batches'"),
    ("plus-unknown-model-key", "train", ["+model.hiden=[8]"], r"model\.hiden: not a setting of PropensityModule"),
    ("plus-data-on-eval", "eval", ["ckpt_path=x.ckpt", "+data.source.path=new.csv"],
     r"'data\.source\.path' is already a setting of adlab-eval; set it without '\+'"),
    ("plus-existing-key-on-predict", "predict", ["ckpt_path=x.ckpt", "+data.source.path=new.csv"],
     r"'data\.source\.path' is already a setting of adlab-predict; set it without '\+': data\.source\.path=new\.csv"),
    ("delete-required-key", "train", ["~seed"], r"~seed: adlab-train needs 'seed'"),
    ("seed-text", "train", ["seed=abc"], r"seed='abc': expected an integer"),
    ("seed-fraction", "train", ["seed=1.5"], r"seed=1\.5: expected an integer"),
    ("seed-negative", "train", ["seed=-1"], r"seed=-1: expected an integer from 0 to 4294967295"),
    ("batch-size-text", "train", ["data.batch_size=abc"], r"data\.batch_size='abc': expected an integer"),
    ("learning-rate-negative", "train", ["model.optimizer.lr=-1"],
     r"model\.optimizer\.lr=-1: refused by AdamW \(Invalid learning rate"),
    ("weight-decay-negative", "train", ["model.optimizer.weight_decay=-0.1"],
     r"model\.optimizer\.weight_decay=-0\.1: refused by AdamW"),
    ("betas-out-of-range", "train", ["+model.optimizer.betas=[1.5,0.9]"], r"model\.optimizer\.betas=.*refused by AdamW"),
    ("folds-text", "train", ["fit=crossfit", "fit.folds=abc"], r"fit\.folds='abc': expected an integer"),
    ("max-epochs-fraction", "train", ["trainer.max_epochs=2.5"], r"trainer\.max_epochs=2\.5: expected an integer"),
    ("hidden-sizes-text", "train", ["model.hidden_sizes=abc"], r"model\.hidden_sizes='abc': expected a list of integers"),
    ("dropout-text", "train", ["model.dropout=high"], r"model\.dropout='high': expected a number"),
    ("switch-text", "train", ["train=yes"], r"train='yes': expected true or false"),
    ("precision-unknown", "train", ["trainer.precision=bf17"], r"trainer\.precision='bf17': expected one of"),
    ("target-unimportable", "train", ["model._target_=adlab.nope.Model"],
     r"model\._target_=adlab\.nope\.Model: cannot be imported"),
    ("required-value-unset", "train", ["data=tabular"], r"data\.source\.path is not set; give data\.source\.path="),
    ("experiment-typo", "train", ["experiment=propensity_cil"], r"Could not find 'experiment/propensity_cil'"),
    ("sweep-value-text", "train", ["seed=abc,2"], r"seed='abc': expected an integer"),
    ("generate-count-text", "generate", ["ckpt_path=x.ckpt", "n=abc"], r"n='abc': expected an integer"),
    ("generate-temperature-text", "generate", ["ckpt_path=x.ckpt", "temperature=hot"], r"temperature='hot': expected a number"),
    ("generate-banned-words-text", "generate", ["ckpt_path=x.ckpt", "banned_words=cheap"],
     r"banned_words='cheap': expected a list"),
    ("generate-classes-text", "generate", ["ckpt_path=x.ckpt", "classes=hat"], r"classes='hat': expected a list"),
    ("serve-port-text", "serve", ["model_path=x", "port=abc"], r"port='abc': expected an integer"),
    ("score-chunk-fraction", "score", ["model_path=x", "input=a.csv", "output=b.csv", "chunk_rows=1.5"],
     r"chunk_rows=1\.5: expected an integer"),
    ("export-opset-text", "export", ["ckpt_path=x.ckpt", "opset=latest"], r"opset='latest': expected an integer"),
]  # fmt: skip


@pytest.mark.parametrize(
    "case, config, overrides, expected", OVERRIDE_CASES, ids=[c[0] for c in OVERRIDE_CASES]
)
def test_command_line_mistakes(case, config, overrides, expected, capsys):
    line = one_line_failure(capsys, lambda: check_overrides(config, overrides))
    assert re.search(expected, line), line


def test_run_folder_inside_a_file_is_refused_before_hydra_starts(tmp_path, capsys):
    """case: run-dir-under-file"""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file where a folder would go\n")
    line = one_line_failure(capsys, lambda: check_overrides("train", [f"hydra.run.dir={blocker / 'run'}"]))
    assert f"{blocker} is a file, not a folder" in line
    assert blocker.read_text().startswith("a file")


def test_force_adding_a_key_the_entry_point_has_is_an_override():
    check_overrides("predict", ["ckpt_path=x.ckpt", "++data.source.path=new.csv"])  # no error


def test_an_optuna_search_into_a_new_log_folder_gets_its_database_folder(tmp_path):
    """The sweeper opens `sqlite:///${paths.log_dir}/...` before any job creates the log folder."""
    logs = tmp_path / "new" / "logs"
    check_overrides(
        "train", ["-m", "experiment=value_cdnow", "hparams_search=value_optuna", f"paths.log_dir={logs}"]
    )
    assert logs.is_dir()


def test_configs_as_shipped_pass_the_checks(capsys):
    """Every preset composes and passes the checks (bring-your-own-data presets given a file and columns)."""
    from omegaconf import OmegaConf

    from adlab.harness.config_checks import check_job_config
    from adlab.harness.configs import compose

    for path in sorted((config_dir() / "experiment").glob("*.yaml")):
        overrides = [f"experiment={path.stem}"]
        cfg = compose("train", overrides, "/tmp/unused")
        given = [
            f"data.source.{key}=given"
            for key in cfg.data.source
            if OmegaConf.is_missing(cfg.data.source, key)
        ]
        cfg = compose("train", [*overrides, *given], "/tmp/unused")
        check_job_config(cfg, "train")


# ----------------------------------------------------------------------------------------------------
# data files: refused while the job checks its inputs, before adlab writes anything
def _write(path: Path, frame: pd.DataFrame, **options) -> Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=options.pop("index", False), **options)
    return path


def _table(rows: int = 120) -> pd.DataFrame:
    return (
        coil_like_table(train_rows=rows, test_rows=0, subtypes=3)
        .drop(columns=["split"])
        .iloc[:, :12]
        .assign(CARAVAN=lambda f: np.arange(len(f)) % 2)
    )


def _ragged(path: Path) -> Path:
    _write(path, _table())
    lines = path.read_text().rstrip("\n").split("\n")
    lines[-1] = ",".join(lines[-1].split(",")[:5])
    path.write_text("\n".join(lines) + "\n")
    return path


def _missing_target(path: Path) -> Path:
    frame = _table().astype({"CARAVAN": "float"})
    frame.loc[7, "CARAVAN"] = np.nan
    return _write(path, frame)


def _latin1(path: Path) -> Path:
    frame = _table().assign(MOSTYPE="Crème")
    path.write_bytes(frame.to_csv(index=False).encode("latin-1"))
    return path


def _duplicated(path: Path) -> Path:
    frame = _table()
    frame.columns = [*frame.columns[:5], frame.columns[4], *frame.columns[6:]]
    return _write(path, frame)


DATA_CASES = [
    # (case id, file name, writer, extra overrides, expected message)
    ("data-file-is-a-folder", "folder", lambda p: p.mkdir() or p, [], r"data\.source\.path=.*folder: a folder; expected a CSV or parquet file"),
    ("data-file-missing", "absent.csv", lambda p: p, [], r"absent\.csv: file not found"),
    ("data-file-spreadsheet", "table.xlsx", lambda p: (p.write_bytes(b"PK\x03\x04"), p)[1], [],
     r"table\.xlsx: a \.xlsx file; expected a table"),
    ("duplicate-column-names", "dup.csv", _duplicated, ["data.source.id_column=customer_id"],
     r"dup\.csv: duplicate column names \['NUM01'\]"),
    ("ragged-last-row", "ragged.csv", _ragged, ["data.source.id_column=customer_id"],
     r"ragged\.csv: line 121 has 5 fields but the header has 13"),
    ("semicolon-separated", "semi.csv", lambda p: _write(p, _table(), sep=";"), [],
     r"semi\.csv: one column named .* looks ';'-separated"),
    ("not-utf8", "latin.csv", _latin1, ["data.source.id_column=customer_id"], r"latin\.csv: not UTF-8 text"),
    ("saved-row-index", "indexed.csv", lambda p: _write(p, _table(), index=True), ["data.source.id_column=customer_id"],
     r"indexed\.csv: column 1 has no name"),
    ("id-column-as-feature", "ids.csv", lambda p: _write(p, _table()), [],
     r"column 'customer_id' looks like a row id .* set data\.source\.id_column=customer_id"),
    ("id-column-typo", "t.csv", lambda p: _write(p, _table()), ["data.source.id_column=customer_idd"],
     r"data\.source\.id_column: column 'customer_idd' is not in .*did you mean 'customer_id'"),
    ("target-typo", "t.csv", lambda p: _write(p, _table()), ["data.source.id_column=customer_id", "data.source.target=CARAVN"],
     r"target column 'CARAVN' not found \(did you mean 'CARAVAN'\?\)"),
    ("drop-typo", "t.csv", lambda p: _write(p, _table()), ["data.source.id_column=customer_id", "data.source.drop=[NUM99]"],
     r"data\.source\.drop: column 'NUM99' is not in"),
    ("split-column-typo", "t.csv", lambda p: _write(p, _table()), ["data.source.id_column=customer_id", "data.source.split_column=splt"],
     r"split column 'splt' not found"),
    ("target-among-features", "t.csv", lambda p: _write(p, _table()),
     ["data.source.id_column=customer_id", "data.source.numeric=[NUM00,CARAVAN]"],
     r"data\.source\.target=CARAVAN is also listed as a feature"),
    ("column-in-both-kinds", "t.csv", lambda p: _write(p, _table()),
     ["data.source.id_column=customer_id", "data.source.numeric=[NUM00]", "data.source.categorical=[NUM00]"],
     r"both list \['NUM00'\]"),
    ("target-missing-values", "gaps.csv", _missing_target, ["data.source.id_column=customer_id"],
     r"target column 'CARAVAN' has 1 missing values \(first in data row 8\)"),
    ("impute-typo", "t.csv", lambda p: _write(p, _table()), ["data.source.id_column=customer_id", "data.source.impute=meadian"],
     r"data\.source\.impute='meadian': expected one of"),
    ("batch-size-zero", "t.csv", lambda p: _write(p, _table()), ["data.source.id_column=customer_id", "data.batch_size=0"],
     r"data\.batch_size=0: expected a positive number of rows"),
    ("batch-size-negative", "t.csv", lambda p: _write(p, _table()), ["data.source.id_column=customer_id", "data.batch_size=-3"],
     r"data\.batch_size=-3: expected a positive number of rows"),
    ("eval-batch-size-zero", "t.csv", lambda p: _write(p, _table()), ["data.source.id_column=customer_id", "data.eval_batch_size=0"],
     r"data\.eval_batch_size=0: expected a positive number of rows"),
    ("split-fractions-wrong", "t.csv", lambda p: _write(p, _table()), ["data.source.id_column=customer_id", "data.split=[0.5,0.2,0.2]"],
     r"fractions sum to 0\.9, expected 1"),
    ("accelerator-missing", "t.csv", lambda p: _write(p, _table()), ["data.source.id_column=customer_id", "trainer.accelerator=gpu"],
     r"trainer: .*(No supported gpu backend|not available)"),
    ("devices-text", "t.csv", lambda p: _write(p, _table()), ["data.source.id_column=customer_id", "trainer.devices=abc"],
     r"trainer: `devices` selected with `CPUAccelerator` should be an int > 0"),
    ("dropout-out-of-range", "t.csv", lambda p: _write(p, _table()), ["data.source.id_column=customer_id", "model.dropout=1.5"],
     r"model config does not fit .*PropensityModule: dropout probability has to be between 0 and 1"),
    ("monitor-mode-typo", "t.csv", lambda p: _write(p, _table()), ["data.source.id_column=customer_id", "monitor_mode=maximum"],
     r"callbacks\.model_checkpoint: .*mode"),
]  # fmt: skip


@pytest.mark.parametrize("case, name, writer, extra, expected", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_data_file_mistakes(case, name, writer, extra, expected, tmp_path, monkeypatch, capsys):
    from adlab.train import main

    path = writer(tmp_path / name)
    run_dir = tmp_path / "run"
    args = [
        "data=tabular",
        f"data.source.path={path}",
        "data.source.target=CARAVAN",
        "baselines=none",
        f"hydra.run.dir={run_dir}",
        *TINY,
        *extra,
    ]
    line = one_line_failure(capsys, run_main(monkeypatch, main, args))
    assert re.search(expected, line), line
    assert adlab_files(run_dir) == [], "written before the inputs were checked"


# ----------------------------------------------------------------------------------------------------
# checkpoints a job resumes from, tests or generates with
@pytest.fixture(scope="module")
def trained(tmp_path_factory, coil_data_dir):
    """A one-epoch propensity run on the tiny CoIL-like data: its folder."""
    output = tmp_path_factory.mktemp("reliability_run")
    overrides = [f"paths.data_dir={coil_data_dir}", f"paths.log_dir={output.parent}", *TINY]
    train(compose_config("train", [*overrides, "trainer.max_epochs=1", "baselines=none"], output))
    return output


def _edited_checkpoint(source: Path, target: Path, edit: Callable[[dict], None]) -> Path:
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    edit(checkpoint)
    torch.save(checkpoint, target)
    return target


def _as_other_family(checkpoint: dict) -> None:
    checkpoint["adlab_config"]["model"]["_target_"] = "adlab.families.copywriting.module.CopywritingModule"


def _half(source: Path, target: Path) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def _other_data(last: Path, tmp: Path) -> tuple[Path, list[str]]:
    from adlab.data.synthetic import write_coil_like

    write_coil_like(tmp / "other", seed=5)  # the same settings, other customers
    return last, [f"paths.data_dir={tmp / 'other'}"]


CHECKPOINT_CASES = [
    # (case id, (run's last.ckpt, tmp folder) -> (checkpoint, job overrides), expected message)
    ("resume-other-family", lambda last, t: (_edited_checkpoint(last, t / "x.ckpt", _as_other_family), []),
     r"ckpt_path=.*x\.ckpt: a CopywritingModule checkpoint; this job builds PropensityModule"),
    ("resume-other-data", _other_data, r"trained on other data or another split \(data meta differs in"),
    ("resume-other-split", lambda last, t: (last, ["seed=7"]),
     r"trained with other data settings \(seed=1 then, 7 now\)"),
    ("resume-other-model-shape", lambda last, t: (last, ["model.hidden_sizes=[8]"]),
     r"its weights do not fit the PropensityModule this job's model\.\* builds \("),
    ("resume-half-checkpoint", lambda last, t: (_half(last, t / "half.ckpt"), []),
     r"half\.ckpt: not a PyTorch checkpoint"),
    ("resume-folder", lambda last, t: (last.parent, []), r"checkpoints: a directory; expected a \.ckpt file"),
]  # fmt: skip


@pytest.mark.parametrize("case, make, expected", CHECKPOINT_CASES, ids=[c[0] for c in CHECKPOINT_CASES])
def test_checkpoint_mistakes(case, make, expected, trained, coil_data_dir, tmp_path, monkeypatch, capsys):
    from adlab.train import main

    checkpoint, extra = make(trained / "checkpoints" / "last.ckpt", tmp_path)
    run_dir = tmp_path / "run"
    args = [
        f"paths.data_dir={coil_data_dir}",
        f"ckpt_path={checkpoint}",
        f"hydra.run.dir={run_dir}",
        "baselines=none",
        *TINY,
        *extra,
    ]
    line = one_line_failure(capsys, run_main(monkeypatch, main, args))
    assert re.search(expected, line), line
    assert adlab_files(run_dir) == []


def test_generate_mistakes(trained, monkeypatch, capsys, tmp_path):
    """cases: generate-cuda-without-gpu, generate-from-a-scorer, generate-conditions-text"""
    from adlab.generate import main

    best = trained / "checkpoints" / "best.ckpt"
    common = [f"ckpt_path={best}", f"hydra.run.dir={tmp_path / 'g'}"]
    if not torch.cuda.is_available():
        line = one_line_failure(capsys, run_main(monkeypatch, main, [*common, "device=cuda"]))
        assert "device=cuda: no CUDA GPU is available" in line
    line = one_line_failure(capsys, run_main(monkeypatch, main, common))
    assert "a PropensityModule checkpoint cannot generate" in line
    line = one_line_failure(capsys, run_main(monkeypatch, main, [*common, "conditions=Dresses"]))
    assert "conditions='Dresses': expected a mapping" in line


def test_sampling_options_are_checked():
    """cases: generate-temperature-zero, generate-top-p-over-one, generate-top-k-negative, generate-banned-word-empty"""
    from adlab.errors import AdlabError
    from adlab.families.copywriting.decoding import DecodingOptions

    for options, expected in (
        ({"temperature": 0.0}, "temperature=0.0: expected a positive number"),
        ({"top_p": 1.5}, r"top_p=1.5: expected a share in \(0, 1\]"),
        ({"top_k": -1}, "top_k=-1: expected 0"),
        ({"banned_words": ["cheap", " "]}, "banned_words=.*expected a list of words"),
    ):
        with pytest.raises(AdlabError, match=expected):
            DecodingOptions(**options)


def test_export_mistakes(trained, monkeypatch, capsys, tmp_path):
    """cases: export-opset-too-old, export-format-unknown"""
    from adlab.export import main

    best = trained / "checkpoints" / "best.ckpt"
    common = [f"ckpt_path={best}", f"hydra.run.dir={tmp_path / 'e'}", f"out={tmp_path / 'package'}"]
    line = one_line_failure(capsys, run_main(monkeypatch, main, [*common, "opset=3"]))
    assert "opset=3: expected an ONNX opset from 18" in line
    line = one_line_failure(capsys, run_main(monkeypatch, main, [*common, "format=xyz"]))
    assert "format='xyz': expected one of" in line
    assert not (tmp_path / "package").exists()


def test_monitor_typo_is_named_after_the_first_validation(coil_data_dir, tmp_path, monkeypatch, capsys):
    """case: monitor-typo (the metrics a model logs are known once it has validated: one line then)"""
    from adlab.train import main

    args = [
        f"paths.data_dir={coil_data_dir}",
        f"hydra.run.dir={tmp_path / 'run'}",
        "baselines=none",
        *TINY,
        "monitor=val/aucroc",
    ]
    line = one_line_failure(capsys, run_main(monkeypatch, main, args))
    assert "monitor=val/aucroc: PropensityModule logs no such metric; expected one of" in line
    assert "val/auroc" in line
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_fetch_into_a_file(tmp_path, monkeypatch, capsys):
    """case: fetch-data-dir-is-a-file"""
    from adlab.data.fetch import main

    blocker = tmp_path / "data"
    blocker.write_text("not a folder")
    monkeypatch.setenv("ADLAB_DATA_DIR", str(blocker))
    line = one_line_failure(capsys, lambda: main(["fetch", "coil2000"]))
    assert f"ADLAB_DATA_DIR={blocker}: {blocker} is a file; expected a folder" in line
    line = one_line_failure(capsys, lambda: main(["fetch", "coil2000", "--data-dir", str(blocker / "sub")]))
    assert f"--data-dir {blocker / 'sub'}: {blocker} is a file" in line


# ----------------------------------------------------------------------------------------------------
def documented_case_ids() -> set[str]:
    """The ids in the first column of docs/reliability.md's case tables (`| `case-id` | ...`)."""
    return set(re.findall(r"^\| `([a-z0-9]+(?:-[a-z0-9]+)+)` \|", DOC.read_text(), re.MULTILINE))


def tested_case_ids() -> set[str]:
    """The case ids of the tables above, and those a test lists in its docstring after "cases" and a colon."""
    ids = {c[0] for c in (*OVERRIDE_CASES, *DATA_CASES, *CHECKPOINT_CASES)}
    tests = Path(__file__).parents[1]
    for path in [
        *tests.glob("harness/test_*.py"),
        *tests.glob("serving/test_*.py"),
        *tests.glob("data/test_*.py"),
    ]:
        for listed in re.findall(r"cases?: ([a-z0-9, -]+)", path.read_text()):
            ids |= {part.strip() for part in listed.split(",") if "-" in part.strip()}
    return ids


def test_every_case_is_documented():
    """docs/reliability.md lists every case these tests check, and no case that no test checks."""
    documented, tested = documented_case_ids(), tested_case_ids()
    assert tested - documented == set(), f"cases missing from {DOC.name}"
    assert documented - tested == set(), f"cases in {DOC.name} without a test"


def test_quoted_library_messages_end_on_a_word():
    """case: message-cut-mid-sentence (a library's message quoted in a line was cut at character 200)"""
    from adlab.errors import excerpt

    long = "Expected 88 fields in line 901, saw 40; " + "the rest of a long explanation " * 10
    quoted = excerpt(long)
    assert len(quoted) <= 204 and quoted.endswith(" ...") and long.startswith(quoted[:-4])
    assert not quoted[:-4].endswith(("explanati", "th"))
    assert excerpt("first line\nsecond line") == "first line ..."
    assert excerpt("short.") == "short."
