"""Shell habits: Hydra's tab completion for every Hydra entry point, Ctrl-C, a dataset never fetched."""

from __future__ import annotations

import importlib
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
from hydra.core.global_hydra import GlobalHydra

from adlab.errors import AdlabError
from adlab.harness.build import build_datamodule
from tests.helpers import TINY, compose_config

# every console script that runs a Hydra app: (program name, module)
HYDRA_ENTRY_POINTS = [
    ("adlab-train", "adlab.train"),
    ("adlab-eval", "adlab.eval"),
    ("adlab-predict", "adlab.predict"),
    ("adlab-export", "adlab.export"),
    ("adlab-generate", "adlab.generate"),
    ("adlab-score", "adlab.serving.batch"),
    ("adlab-serve", "adlab.serving.app"),
]


def complete(monkeypatch, capsys, program: str, module: str, *args: str, line: str = "") -> str:
    """Run an entry point's `main()` with Hydra's completion flags, as the bash function does; its stdout."""
    entry = importlib.import_module(module)
    monkeypatch.setattr(sys, "argv", [program, *args])
    monkeypatch.setenv("COMP_LINE", f"{program} {line}")
    monkeypatch.setenv("COMP_POINT", str(len(program) + 1 + len(line)))
    GlobalHydra.instance().clear()
    try:
        entry.main()
    finally:
        GlobalHydra.instance().clear()
    return capsys.readouterr().out


@pytest.mark.parametrize(("program", "module"), HYDRA_ENTRY_POINTS)
def test_every_hydra_entry_point_completes_its_config(monkeypatch, capsys, program, module):
    script = complete(monkeypatch, capsys, program, module, "-sc", "install=bash")
    assert f"-F hydra_bash_completion {program}" in script
    candidates = complete(monkeypatch, capsys, program, module, "-sc", "query=bash", line="pa").split()
    assert "paths." in candidates  # every job has the paths group


def test_completion_lists_the_presets(monkeypatch, capsys):
    candidates = complete(
        monkeypatch, capsys, "adlab-train", "adlab.train", "-sc", "query=bash", line="experiment=prop"
    ).split()
    assert "experiment=propensity_coil" in candidates
    assert all(c.startswith("experiment=propensity_") for c in candidates)


def test_a_dataset_never_fetched_names_the_fetch_command_and_data_dir(tmp_path):
    empty = tmp_path / "data"
    cfg = compose_config("train", [f"paths.data_dir={empty}", *TINY], tmp_path / "run")
    with pytest.raises(AdlabError) as error:
        build_datamodule(cfg)
    message = str(error.value)
    assert f"adlab-data fetch coil2000 --data-dir {empty}" in message
    assert "ADLAB_DATA_DIR" in message and "\n" not in message


@pytest.mark.slow
def test_ctrl_c_exits_130_with_the_command_that_resumes(coil_data_dir, tmp_path):
    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "adlab.train",
        "experiment=propensity_coil",
        "fit=plain",
        f"paths.data_dir={coil_data_dir}",
        "extras.print_config=false",
        "callbacks.progress_bar=null",
        "callbacks.early_stopping=null",
        "trainer.max_epochs=100000",
        f"hydra.run.dir={run}",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        last = run / "checkpoints" / "last.ckpt"
        deadline = time.monotonic() + 300
        while not last.is_file() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert last.is_file(), "no checkpoint before the interrupt"
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr[-2000:]
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("adlab: interrupted; resume with: adlab-train ")
    resume = shlex.split(line.split("resume with: ", 1)[1])
    assert resume[-1] == f"ckpt_path={last}"
    assert "experiment=propensity_coil" in resume and not any(a.startswith("hydra.") for a in resume)
    assert "Traceback" not in stderr
