"""Checkpoints are read without running code from them, by adlab and by Lightning; `load_module` rebuilds a
module from a checkpoint alone."""

from __future__ import annotations

import builtins
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import lightning as L
import pytest
import torch
from safetensors.torch import save_file

from adlab.cli import check_overrides
from adlab.data.features import DataMeta
from adlab.errors import AdlabError
from adlab.generate import generate
from adlab.harness.checkpoints import SAFE_LOAD, StoredRun, load_checkpoint, load_module, load_weights
from tests.helpers import compose_config, run_module


class WritesMarker:
    """Unpickling this object calls `function(argument)`: a shell command or Python code writing a file."""

    def __init__(self, function, argument: str):
        self.function, self.argument = function, argument

    def __reduce__(self):
        return (self.function, (self.argument,))


def payload(kind: str, marker: Path) -> WritesMarker:
    if kind == "shell":
        return WritesMarker(os.system, f"touch {marker}")
    return WritesMarker(builtins.exec, f"open({str(marker)!r}, 'w').write('ran')")


def plant(path: Path, marker: Path, kind: str = "shell") -> Path:
    """A file shaped like an adlab checkpoint whose pickle would write `marker` when loaded."""
    torch.save(
        {
            "state_dict": {"layer.weight": torch.zeros(2, 2)},
            "adlab_config": {"model": {"_target_": "builtins.dict"}},
            "adlab_data": {"meta": {"kind": "unknown"}, "preprocessing": {}},
            "callbacks": {"planted": payload(kind, marker)},
        },
        path,
    )
    return path


@pytest.mark.parametrize("kind", ["shell", "exec"])
def test_a_pickled_callable_is_refused_and_never_runs(tmp_path, kind):
    marker = tmp_path / "marker"
    evil = plant(tmp_path / "evil.ckpt", marker, kind)
    callable_name = "posix.system" if kind == "shell" else "exec"  # torch names builtins without module
    for read in (load_checkpoint, StoredRun.read, load_module):
        with pytest.raises(
            AdlabError, match=rf"ckpt_path=.*evil\.ckpt: refused: loading it would call {callable_name}"
        ):
            read(evil)
    with pytest.raises(AdlabError, match="refused"):
        generate(compose_config("generate", [f"ckpt_path={evil}"], tmp_path / "generate"))
    assert not marker.exists()


def _one_line_refusal(result, path: Path) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert str(path) in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("entry_point", "extra"),
    [("adlab.eval", []), ("adlab.train", ["trainer.max_epochs=1"])],
    ids=["adlab-eval", "adlab-train-resume"],
)
def test_cli_refuses_a_planted_checkpoint_in_one_line(tmp_path, entry_point, extra):
    marker = tmp_path / "marker"
    evil = plant(tmp_path / "evil.ckpt", marker, "shell" if entry_point == "adlab.eval" else "exec")
    result = run_module(entry_point, f"ckpt_path={evil}", f"hydra.run.dir={tmp_path / 'run'}", *extra)
    assert "refused" in _one_line_refusal(result, evil)
    assert not marker.exists()


def test_cli_refuses_a_csv_as_checkpoint_in_one_line(tmp_path):
    table = tmp_path / "customers.csv"
    table.write_text("customer_id,MOSTYPE,CARAVAN\n1,33,0\n2,37,1\n")
    result = run_module("adlab.eval", f"ckpt_path={table}", f"hydra.run.dir={tmp_path / 'run'}")
    assert "not a PyTorch checkpoint" in _one_line_refusal(result, table)


def test_half_a_checkpoint_or_a_directory_is_refused(tmp_path):
    whole = tmp_path / "whole.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "adlab_config": {}}, whole)
    half = tmp_path / "half.ckpt"
    half.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(AdlabError, match=r"half\.ckpt: not a PyTorch checkpoint"):
        load_checkpoint(half)
    with pytest.raises(AdlabError, match="a directory; expected a .ckpt file"):
        load_checkpoint(tmp_path)


class BoringModule(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def validation_step(self, batch, batch_index):
        self.log("val/loss", self.layer(batch[0]).pow(2).mean())


def test_lightning_reloads_ckpt_path_weights_only_even_when_the_environment_says_otherwise(
    tmp_path, monkeypatch
):
    """`SAFE_LOAD` on `Trainer.validate/test/fit` beats `TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`: a file that
    slipped past adlab's own check is still refused by Lightning's load, without running its code."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "marker"
    evil = plant(tmp_path / "evil.ckpt", marker)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(4, 2)), batch_size=2)
    with pytest.raises(pickle.UnpicklingError):
        trainer.validate(BoringModule(), loader, ckpt_path=str(evil), verbose=False, **SAFE_LOAD)
    assert not marker.exists()


@dataclass
class VectorMeta(DataMeta):
    """The meta of a made-up data kind (fixed-width vectors)."""

    kind: ClassVar[str] = "vectors"
    width: int = 0


class HookedModule(L.LightningModule):
    """Counts its `on_load_checkpoint` calls and keeps what the checkpoint handed it."""

    def __init__(self, meta: VectorMeta):
        super().__init__()
        self.layer = torch.nn.Linear(meta.width, 1)
        self.hook_calls = 0

    def on_load_checkpoint(self, checkpoint):
        self.hook_calls += 1
        self.seen_note = checkpoint.get("note")


def test_load_module_rebuilds_from_the_checkpoint_alone(tmp_path):
    meta = VectorMeta(dataset="toy", width=3)
    saved = HookedModule(meta)
    path = tmp_path / "hooked.ckpt"
    torch.save(
        {
            "state_dict": saved.state_dict(),
            "adlab_config": {"model": {"_target_": f"{__name__}.HookedModule"}},
            "adlab_data": {"meta": meta.to_dict(), "preprocessing": {}},
            "note": "from the file",
        },
        path,
    )
    stored = StoredRun.read(path)
    assert stored.meta == meta and stored.preprocessing == {} and stored.config["model"]["_target_"]
    module = load_module(path)
    assert isinstance(module, HookedModule) and not module.training
    assert module.hook_calls == 1 and module.seen_note == "from the file"
    assert torch.equal(module.layer.weight, saved.layer.weight)
    with pytest.raises(AdlabError, match="device=cuda:99"):
        load_module(path, device="cuda:99")
    with pytest.raises(AdlabError, match="device=gpu0: not a device name"):
        load_module(path, device="gpu0")


def test_load_module_names_weights_that_do_not_fit(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save(
        {
            "state_dict": HookedModule(VectorMeta(width=5)).state_dict(),
            "adlab_config": {"model": {"_target_": f"{__name__}.HookedModule"}},
            "adlab_data": {"meta": VectorMeta(width=3).to_dict()},
        },
        path,
    )
    with pytest.raises(AdlabError, match=r"other\.ckpt: its weights do not fit the HookedModule"):
        load_module(path)


def test_weights_files_are_read_as_tensors_only(tmp_path):
    """Pretrained weights (`model.net.weights_path`, `model.inception_weights`) go through the same reader."""
    state = {"layer.weight": torch.ones(2, 3), "layer.bias": torch.zeros(2)}
    save_file(state, tmp_path / "net.safetensors")
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "net.pt")
    for name in ("net.safetensors", "net.pt"):
        loaded = load_weights(tmp_path / name, "model.net.weights_path")
        assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)
    marker = tmp_path / "marker"
    torch.save({"layer.weight": payload("exec", marker)}, tmp_path / "evil.pt")
    with pytest.raises(AdlabError, match=r"model\.net\.weights_path=.*evil\.pt: refused"):
        load_weights(tmp_path / "evil.pt", "model.net.weights_path")
    assert not marker.exists()
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(AdlabError, match=r"broken\.safetensors: not a safetensors file"):
        load_weights(tmp_path / "broken.safetensors", "model.net.weights_path")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(AdlabError, match=r"list\.pt: not a state dict"):
        load_weights(tmp_path / "list.pt", "model.net.weights_path")


@pytest.mark.parametrize("flag", [["--experimental-rerun", "{file}"], ["--exp={file}"], ["--e", "{file}"]])
def test_hydras_rerun_of_a_pickled_config_is_refused(tmp_path, capsys, flag):
    """`--experimental-rerun FILE` (or a prefix argparse accepts) would unpickle FILE: refused up front."""
    marker = tmp_path / "marker"
    pickled = tmp_path / "config.pickle"
    pickled.write_bytes(pickle.dumps(payload("shell", marker)))
    with pytest.raises(SystemExit) as stop:
        check_overrides("eval", [part.format(file=pickled) for part in flag])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "refused" in err and "overrides.yaml" in err
    assert not marker.exists()
