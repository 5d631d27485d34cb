"""Faults a run survives: a kill mid-epoch or mid-checkpoint-write (resumed to the same metrics), a full disk
(previous files intact, one line), concurrent ledger appends (no line lost), a NaN loss (one line, the last
good checkpoint kept).

The kill tests run the real `adlab-train` in a subprocess: `_RUNNER` patches one seam to wait at the chosen
moment (a training step of epoch 2, or half-way through writing `last.ckpt`), the test SIGKILLs it there.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from adlab.errors import AdlabError
from adlab.harness.checkpoints import load_checkpoint
from adlab.harness.io import write_metrics
from adlab.harness.ledger import append_to_ledger
from adlab.train import train
from tests.helpers import TINY

ROOT = Path(__file__).resolve().parents[2]

# ----------------------------------------------------------------------------------------------------
# SIGKILL, then resume
_RUNNER = r"""
import os, sys, time
from pathlib import Path

mode, marker = sys.argv[1], Path(sys.argv[2])
sys.argv = ["adlab-train", *sys.argv[3:]]


def hold() -> None:
    marker.write_text("here")
    time.sleep(600)  # the test kills the process here


if mode == "mid-epoch":
    from adlab.families.propensity.module import PropensityModule

    step = PropensityModule.training_step

    def training_step(self, batch, batch_idx):
        if self.current_epoch == 2 and batch_idx == 1:
            hold()
        return step(self, batch, batch_idx)

    PropensityModule.training_step = training_step
elif mode == "checkpoint-write":
    import lightning.fabric.plugins.io.torch_io as plugin

    save, writes = plugin._atomic_save, []

    def atomic_save(checkpoint, path):
        writes.append(str(path))
        if str(path).endswith(".last.ckpt.tmp") and checkpoint.get("epoch") == 2:
            import io

            buffer = io.BytesIO()
            import torch

            torch.save(checkpoint, buffer)
            with open(path, "wb") as stream:  # half the checkpoint on disk, then the power goes
                stream.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                stream.flush()
                os.fsync(stream.fileno())
            hold()
        return save(checkpoint, path)

    plugin._atomic_save = atomic_save

from adlab.train import main

main()
"""

_JOB = [
    "trainer.max_epochs=5",
    "trainer.deterministic=true",
    "callbacks.early_stopping=null",
    "callbacks.progress_bar=null",
    "extras.print_config=false",
    "baselines=none",
    "seed=3",
]


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}


def _train(data_dir: Path, run_dir: Path, *extra: str) -> dict[str, float]:
    args = [f"paths.data_dir={data_dir}", f"paths.log_dir={run_dir.parent}", f"hydra.run.dir={run_dir}"]
    result = subprocess.run(
        [sys.executable, "-m", "adlab.train", *args, *_JOB, *extra],
        capture_output=True, text=True, env=_env(), timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((run_dir / "metrics.json").read_text())


def _killed(data_dir: Path, run_dir: Path, mode: str, tmp_path: Path) -> None:
    marker = tmp_path / f"{mode}.marker"
    args = [f"paths.data_dir={data_dir}", f"paths.log_dir={run_dir.parent}", f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(
        [sys.executable, "-c", _RUNNER, mode, str(marker), *args, *_JOB],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(), cwd=ROOT,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the run never reached the chosen moment"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL


@pytest.fixture(scope="module")
def uninterrupted(coil_data_dir, tmp_path_factory) -> dict[str, float]:
    return _train(coil_data_dir, tmp_path_factory.mktemp("uninterrupted") / "run")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["mid-epoch", "checkpoint-write"])
def test_a_killed_run_resumes_to_the_same_metrics(mode, uninterrupted, coil_data_dir, tmp_path):
    """SIGKILL inside epoch 3 (a training step) or half-way through writing epoch 3's `last.ckpt`: the
    `last.ckpt` on disk is whole (epoch 2's), and resuming from it ends with the uninterrupted run's metrics."""
    run_dir = tmp_path / "killed"
    _killed(coil_data_dir, run_dir, mode, tmp_path)
    last = run_dir / "checkpoints" / "last.ckpt"
    checkpoint = load_checkpoint(last)  # whole: loads, and holds the last finished epoch
    assert checkpoint["epoch"] == 1
    assert not (run_dir / "metrics.json").exists()
    if mode == "checkpoint-write":
        assert (run_dir / "checkpoints" / ".last.ckpt.tmp").is_file()  # the half-written file, beside it
    resumed = _train(coil_data_dir, tmp_path / "resumed", f"ckpt_path={last}")
    for key, value in uninterrupted.items():
        if key.startswith(("val/", "test/")) and value is not None:
            assert resumed[key] == pytest.approx(value, rel=1e-6, abs=1e-7), key


def hydra_node(target: str, **values: object) -> str:
    """A config node on the command line: `{_target_:x.Y,key:'value'}`."""
    items = [
        f"_target_:{target}",
        *(f"{k}:{v!r}" if isinstance(v, str) else f"{k}:{v}" for k, v in values.items()),
    ]
    return "{" + ",".join(items) + "}"


# ----------------------------------------------------------------------------------------------------
# a full disk
@contextlib.contextmanager
def small_disk(path: Path, size: str):
    """A tmpfs of `size` at `path` (needs root and mount rights; skipped where there are none)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); test_full_disk_simulated covers the same path")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(disk: Path) -> None:
    """Fill the file system at `disk` to the last byte."""
    with open(disk / "ballast", "wb", buffering=0) as stream:
        for size in (65536, 1):
            with contextlib.suppress(OSError):
                while True:
                    stream.write(b"\0" * size)


class FillDiskAt(L.Callback):
    """Fill the run's disk when validation of epoch `epoch` starts (before that epoch's checkpoints)."""

    def __init__(self, disk: str, epoch: int):
        self.disk, self.epoch = Path(disk), epoch

    def on_validation_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch and not trainer.sanity_checking:
            fill(self.disk)


def test_full_disk_during_a_checkpoint_write_keeps_the_previous_checkpoint(train_config, tmp_path):
    """A tmpfs that fills up during epoch 2: one line naming the checkpoint; last.ckpt is epoch 1's, whole."""
    with small_disk(tmp_path / "disk", "8m") as disk:
        run_dir = disk / "run"
        callback = hydra_node(f"{__name__}.FillDiskAt", disk=str(disk), epoch=1)
        cfg = train_config(
            [
                "trainer.max_epochs=3",
                "baselines=none",
                "callbacks.early_stopping=null",
                f"+callbacks.fill_disk={callback}",
            ],
            output_dir=run_dir,
        )
        with pytest.raises(AdlabError, match=r"last\.ckpt|best\.ckpt") as refused:
            train(cfg)
        message = str(refused.value)
        assert "\n" not in message and "No space left on device" in message and "is intact" in message
        last = run_dir / "checkpoints" / "last.ckpt"
        assert load_checkpoint(last)["epoch"] == 0
        assert not list((run_dir / "checkpoints").glob(".*.tmp"))


def test_full_disk_during_a_metrics_write_keeps_the_previous_file(tmp_path):
    with small_disk(tmp_path / "disk", "64k") as disk:
        path = write_metrics(disk / "metrics.json", {"test/auroc": 0.7})
        before = path.read_text()
        fill(disk)
        with pytest.raises(
            AdlabError, match=r"metrics\.json: could not write \(No space left on device\); the previous file"
        ):
            write_metrics(path, {f"test/metric_{i}": float(i) for i in range(5000)})
        assert path.read_text() == before
        assert sorted(p.name for p in disk.iterdir()) == ["ballast", "metrics.json"]


def test_full_disk_simulated(tmp_path, monkeypatch):
    """The same promise where no tmpfs can be mounted: the write fails with ENOSPC half-way."""
    import errno

    path = write_metrics(tmp_path / "metrics.json", {"test/auroc": 0.7})
    before = path.read_text()
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, stream):
            self.stream = stream

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.stream.close()

        def write(self, data):
            self.stream.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
    with pytest.raises(AdlabError, match="No space left on device"):
        write_metrics(path, {"test/auroc": 0.9})
    monkeypatch.undo()
    assert path.read_text() == before and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


# ----------------------------------------------------------------------------------------------------
# concurrent ledger appends
def _append_many(ledger: str, worker: int, lines: int) -> None:
    from omegaconf import OmegaConf

    for line in range(lines):
        cfg = OmegaConf.create(
            {
                "paths": {"output_dir": f"w{worker}/{line}", "ledger": ledger},
                "experiment_name": "x" * 9000,
                "seed": line,
            }
        )
        append_to_ledger(cfg, {"test/auroc": float(line)})


def test_concurrent_appends_lose_no_ledger_line(tmp_path):
    """Two processes append 150 lines of 9 kB each (beyond what one write is guaranteed to carry): all 300
    lines arrive whole."""
    ledger = tmp_path / "ledger.jsonl"
    # fork: the children need not import this module's torch and Lightning again (spawn where no fork)
    context = multiprocessing.get_context(
        "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    )
    workers = [context.Process(target=_append_many, args=(str(ledger), w, 150)) for w in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    lines = ledger.read_text().splitlines()
    assert len(lines) == 300
    assert sorted(json.loads(line)["run_dir"] for line in lines) == sorted(
        f"w{w}/{i}" for w in range(2) for i in range(150)
    )


@pytest.mark.slow
def test_two_multiruns_append_every_line_to_one_ledger(coil_data_dir, tmp_path):
    """Two `adlab-train -m seed=1,2,3` at once, one ledger: six lines."""
    ledger = tmp_path / "ledger.jsonl"
    common = [
        "-m",
        "seed=1,2,3",
        f"paths.data_dir={coil_data_dir}",
        f"paths.ledger={ledger}",
        "trainer.max_epochs=1",
        "baselines=none",
        *TINY[1:],
    ]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "adlab.train", *common, f"hydra.sweep.dir={tmp_path / f'sweep{k}'}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=_env(),
            cwd=ROOT,
        )  # fmt: skip
        for k in range(2)
    ]
    for process in processes:
        _, err = process.communicate(timeout=900)
        assert process.returncode == 0, err.decode()[-3000:]
    entries = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert len(entries) == 6 and sorted(e["seed"] for e in entries) == [1, 1, 2, 2, 3, 3]


# ----------------------------------------------------------------------------------------------------
# a NaN loss
class PoisonWeights(L.Callback):
    """Turn a weight of every parameter into NaN when epoch `epoch` starts: the next training loss is NaN."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                for parameter in pl_module.parameters():
                    parameter.view(-1)[0] = float("nan")


def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(train_config, tmp_path):
    callback = hydra_node(f"{__name__}.PoisonWeights", epoch=2)
    cfg = train_config(
        [
            "trainer.max_epochs=4",
            "baselines=none",
            "callbacks.early_stopping=null",
            f"+callbacks.poison={callback}",
        ]
    )
    with pytest.raises(
        AdlabError, match=r"training loss became nan at epoch 2, batch 0; stopped, the last checkpoint"
    ) as stop:
        train(cfg)
    assert "\n" not in str(stop.value)
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert last["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values() if t.is_floating_point())
    assert not (tmp_path / "run" / "metrics.json").exists()
