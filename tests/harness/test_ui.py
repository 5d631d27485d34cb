"""The offline UI: a run trained with `logger=mlflow`, browsed with `make ui` (MLflow's UI on 127.0.0.1) in
headless Chromium, shows the run and its test metric."""

from __future__ import annotations

import html
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from adlab.train import train
from tests.helpers import load_script

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="chromium is not installed (Debian's `chromium` package; .ci/run installs it)",
    ),
    pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed"),
]


def ui_command(outputs: Path, port: int) -> list[str]:
    """The command `make ui` runs (read with `make -n`, which runs nothing)."""
    recipe = subprocess.run(
        ["make", "-n", "ui", f"OUTPUTS={outputs}", f"UI_PORT={port}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (line,) = [line for line in recipe.splitlines() if "mlflow ui" in line]
    return shlex.split(line)


def get_json(url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait_until_up(url: str, server: subprocess.Popen, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the UI server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise AssertionError(f"the UI server did not answer within {seconds} s")


def page_text(url: str, profile: Path) -> str:
    """The rendered page (after its scripts ran) as plain text."""
    dom = subprocess.run(
        [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--virtual-time-budget=15000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    ).stdout
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", dom)).split())


def test_the_mlflow_ui_shows_a_run_and_its_test_metric(train_config, tmp_path):
    pytest.importorskip("mlflow", reason="mlflow comes with adlab's `ui` extra (pip install -e '.[ui]')")
    metrics = train(train_config(["experiment=propensity_coil", "fit=plain", "logger=mlflow"]))
    assert (tmp_path / "mlflow.db").is_file()  # the store sits in the outputs root (paths.log_dir)
    port = load_script("_serve").free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "ui.log", "w")  # noqa: SIM115 (closed in finally)
    server = subprocess.Popen(
        ui_command(tmp_path, port), cwd=REPO, stdout=log, stderr=log, start_new_session=True
    )
    try:
        wait_until_up(url, server)
        experiment = get_json(f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=propensity_coil")
        experiment_id = experiment["experiment"]["experiment_id"]
        (run,) = get_json(f"{url}/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment_id]})["runs"]
        text = page_text(
            f"{url}/#/experiments/{experiment_id}/runs/{run['info']['run_id']}", tmp_path / "chromium"
        )
        assert "train-propensity_coil-seed1" in text, text[:2000]
        shown = re.search(r"test/auroc ([0-9.]+)", text)
        assert shown is not None, text[:2000]
        assert float(shown.group(1)) == pytest.approx(metrics["test/auroc"], rel=1e-5)
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its workers: the group started above
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
