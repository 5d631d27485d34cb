"""RecBole 1.2.1's SASRec on adlab's MovieLens-100K leave-one-out split: the stored peer figures that
`scripts/bench_recommend.py --recbole FILE` reads (issue 17, point 5).

    make peers   # RecBole in the separate .venv-peers, never in adlab's own environment
    nice -n 15 .venv-peers/bin/python scripts/recbole_sasrec.py --seed 1 [--epochs 300] [--threads 1]
        [--max-minutes M] [--resume] [--out docs/measurements/recbole_sasrec.json] [--data-dir /work/data]

The interactions are read by adlab's own source with the `recommend_sasrec` experiment's data config
(`adlab.data.sources.interactions.InteractionsSource`: every rating counts, no threshold, no k-core,
a user's repeated items dropped, time order with ties in file order) and written, in that order, as
RecBole's atomic `.inter` file (user_id, item_id, rating, timestamp). RecBole's sorts are stable, so
`eval_args` LS valid_and_test with order TO gives each user the same test (last) and val (second to last)
item and the same train sequence as adlab: checked user by user before training, and the run stops if one
differs. Ranking is full (every film; the user's earlier films excluded), as adlab's.

Config: SASRec with RecBole's defaults (2 layers, 2 heads, hidden 64, inner 256, dropout 0.5, Adam lr
1e-3), CE loss over the whole catalogue, MAX_ITEM_LIST_LENGTH 50, train_batch_size 256, topk 10, metrics
NDCG, Hit, MRR, model chosen on val NDCG@10, up to `--epochs` epochs with RecBole's early stopping
(stopping_step 10: training ends after 10 epochs without a better val NDCG@10), then the best val
checkpoint is tested. RecBole's MRR is MRR@10 (a hit beyond rank 10 counts 0), stored as
`mrr_at_10`: it is not adlab's `mrr` (over the whole ranking) and is not compared with it.

RecBole 1.2.1 runs beside torch 2.14 / numpy 2 / pandas 3 with three workarounds, none editing its source:
- its unconditional `from ray import tune` (hyper-parameter search, unused here) meets an empty stand-in
  module put in `sys.modules` before RecBole is imported (ray itself is not installed);
- `np.float_`, `np.complex_`, `np.unicode_` (removed in numpy 2) are aliased to `np.float64`,
  `np.complex128`, `np.str_` before RecBole is imported;
- `TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1` is set only while RecBole loads one of its own checkpoints (it pickles
  RecBole's Config object, which torch's weights-only loader refuses): a file in `<work>/saved_seed_S/`
  that this script wrote and whose sha256 it recorded right after writing; a file with another sha256 is
  not loaded. `--work` is the script's own output folder: keep it writable by you alone.

After every epoch the run keeps its latest training state (`<work>/saved_seed_S/latest.pth`, written to a
side file then renamed) and `<work>/progress_seed_S.json` (the settings, the val curve, the best
checkpoint's name, the sha256 of both checkpoints, and the random states of torch, the train loader, numpy
and Python): `--resume` continues the run where it stopped, in a later session too. Checked once: seed 1
stopped after its epoch 1 and resumed gave val NDCG@10 0.0651, 0.0628, 0.0646, 0.0583, 0.0648, 0.0643,
0.0649 for epochs 2-8, the figures of the uninterrupted run. A resumed run with other settings (seed,
epochs, threads, data folder) is refused. Every part ends by testing the best checkpoint so far (stored
as a lower bound while `converged` is false); the figure that counts is the one of the part that ends
with RecBole's early stopping.

Each run merges its seed into `--out`: per seed the test `ndcg_at_10`, `hr_at_10`, `mrr_at_10`, the val
figures of the chosen epoch, epochs run, best epoch, wall time, whether early stopping ended the run
(`converged`), and the versions and command. A run stopped by `--max-minutes` or SIGTERM/SIGINT (after the
epoch in progress) still tests its best checkpoint so far and says `converged: false`: its figure is a
lower bound of the converged one.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import random
import shlex
import signal
import sys
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NAME = "ml100k_adlab"
METRICS = {"ndcg@10": "ndcg_at_10", "hit@10": "hr_at_10", "mrr@10": "mrr_at_10"}


def _workarounds() -> None:
    """The ray stand-in and numpy 2 aliases RecBole 1.2.1 needs at import (see the module docstring)."""
    ray = types.ModuleType("ray")
    ray.tune = types.ModuleType("ray.tune")
    sys.modules.setdefault("ray", ray)
    sys.modules.setdefault("ray.tune", ray.tune)
    for alias, kind in (("float_", np.float64), ("complex_", np.complex128), ("unicode_", np.str_)):
        if alias not in np.__dict__:
            setattr(np, alias, kind)


def sha256(path: Path) -> str:
    """The file's sha256 (hex)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def own_checkpoint_load(path: Path, expected_sha256: str | None):
    """Allow torch's full (pickle) load only for RecBole's own checkpoint `path`: a file this script wrote
    in its work folder and recorded the sha256 of right after writing it."""
    if expected_sha256 is None or not path.is_file() or sha256(path) != expected_sha256:
        raise SystemExit(f"{path}: expected a checkpoint this script wrote (sha256 recorded); not loading it")
    previous = os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"]
        else:
            os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = previous


def adlab_log(data_dir: Path, work: Path):
    """adlab's filtered, time-ordered MovieLens-100K log (the `recommend_sasrec` data config) and its
    leave-one-out cut: (rows user/item/rating/time in adlab's order, {user: (train items, val, test)})."""
    import pandas as pd
    from hydra.utils import instantiate

    from adlab.harness.configs import compose

    cfg = compose("train", ["experiment=recommend_sasrec", f"paths.data_dir={data_dir}"], work)
    source = instantiate(cfg.data.source)
    frame, dropped, _ = source.interactions()
    raw = source.load()
    if dropped or raw.dropped:
        print(f"adlab's source dropped: {dropped} {raw.dropped}", file=sys.stderr)
    items = raw.item_ids[raw.items - 1]
    users = np.repeat(raw.user_ids, np.diff(raw.offsets))
    ratings = frame.set_index(["user", "item"])["rating"].reindex(pd.MultiIndex.from_arrays([users, items]))
    rows = pd.DataFrame(
        {
            "user_id:token": users,
            "item_id:token": items,
            "rating:float": ratings.to_numpy(),
            "timestamp:float": raw.times,
        }
    )
    split = {}
    for index, user in enumerate(raw.user_ids):
        sequence = items[raw.offsets[index] : raw.offsets[index + 1]]
        split[str(user)] = ([str(i) for i in sequence[:-2]], str(sequence[-2]), str(sequence[-1]))
    return rows, split


def recbole_split(train_data, valid_data, test_data) -> dict[str, tuple[list[str], str, str]]:
    """{user token: (train items in order, val item, test item)} as RecBole cut them. Its train set is
    augmented (one row per train target, in time order, with the items before it): a user's train
    sequence is the first row's one-item prefix followed by every row's target."""
    dataset = train_data._dataset
    uid, iid = dataset.uid_field, dataset.iid_field
    listed = iid + dataset.config["LIST_SUFFIX"]
    feat = train_data._dataset.inter_feat
    cut: dict[str, list] = {}
    for user, prefix, target in zip(feat[uid].numpy(), feat[listed].numpy(), feat[iid].numpy(), strict=True):
        token = dataset.id2token(uid, int(user))
        if token not in cut:
            cut[token] = [[dataset.id2token(iid, int(prefix[0]))], None, None]
        cut[token][0].append(dataset.id2token(iid, int(target)))
    for position, loader in ((1, valid_data), (2, test_data)):
        feat = loader._dataset.inter_feat
        for user, item in zip(feat[uid].numpy(), feat[iid].numpy(), strict=True):
            cut[dataset.id2token(uid, int(user))][position] = dataset.id2token(iid, int(item))
    return {user: ([str(i) for i in v[0]], str(v[1]), str(v[2])) for user, v in cut.items()}


def compare(adlab: dict, recbole: dict) -> dict[str, int]:
    """How many users have the same val item, test item and whole train sequence in both cuts."""
    same = {"users_adlab": len(adlab), "users_recbole": len(recbole), "test": 0, "val": 0, "train": 0}
    for user, cut in adlab.items():
        theirs = recbole.get(user)
        if theirs is not None:
            same["train"] += theirs[0] == cut[0]
            same["val"] += theirs[1] == cut[1]
            same["test"] += theirs[2] == cut[2]
    return same


def config_dict(seed: int, epochs: int, work: Path) -> dict:
    return {
        "model": "SASRec",
        "dataset": NAME,
        "data_path": str(work / "data"),
        "checkpoint_dir": str(work / f"saved_seed_{seed}"),
        "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        "loss_type": "CE",
        "train_neg_sample_args": None,
        "MAX_ITEM_LIST_LENGTH": 50,
        "train_batch_size": 256,
        "epochs": epochs,
        "stopping_step": 10,
        "seed": seed,
        "reproducibility": True,
        "topk": [10],
        "metrics": ["NDCG", "Hit", "MRR"],
        "valid_metric": "NDCG@10",
        "use_gpu": False,
        "device": "cpu",
        "show_progress": False,
        "worker": 0,
    }


def _command() -> str:
    """The command line as run, with the niceness it ran at."""
    return f"nice -n {os.nice(0)} .venv-peers/bin/python scripts/recbole_sasrec.py " + shlex.join(
        sys.argv[1:]
    )


def random_states(torch, train_data) -> dict:
    """Every random state a RecBole epoch draws from: torch's (dropout), the train loader's generator
    (shuffling), numpy's and Python's, as JSON lists."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state().tolist(),
        "loader": train_data.generator.get_state().tolist(),
        "numpy": [kind, keys.tolist(), position, has_gauss, cached],
        "python": [version, list(state), gauss],
    }


def set_random_states(torch, train_data, states: dict) -> None:
    """Restore what `random_states` stored (numpy's and Python's are absent from files written before they
    were kept: SASRec's training with the CE loss does not draw from them, so they are left as seeded)."""
    torch.set_rng_state(torch.tensor(states["torch"], dtype=torch.uint8))
    train_data.generator.set_state(torch.tensor(states["loader"], dtype=torch.uint8))
    if "numpy" in states:
        kind, keys, position, has_gauss, cached = states["numpy"]
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, cached))
    if "python" in states:
        version, state, gauss = states["python"]
        random.setstate((version, tuple(state), gauss))


@dataclasses.dataclass
class Progress:
    """A seed's run kept across stops: `<work>/progress_seed_S.json` beside RecBole's checkpoints in
    `<work>/saved_seed_S/` (`latest.pth` after every epoch, RecBole's own best file). The settings that
    shape the run are stored and a resumed run must match them."""

    file: Path
    checkpoint_dir: Path
    settings: dict
    state: dict = dataclasses.field(default_factory=dict)

    def fresh(self) -> None:
        self.state = {"settings": self.settings, "history": [], "fit_seconds": 0.0, "parts": 0}

    def save(self, trainer, train_data, torch, epoch: int, seconds: float) -> None:
        """After each epoch: the latest training state (written to a side file, then renamed) and, beside
        it, the curve, the best checkpoint's name, both files' sha256 and the random states."""
        latest, partial = self.checkpoint_dir / "latest.pth", self.checkpoint_dir / "latest.pth.partial"
        trainer._save_checkpoint(epoch, verbose=False, saved_model_file=str(partial))
        partial.replace(latest)
        if trainer.cur_step == 0:  # RecBole has just saved a new best checkpoint
            best = Path(trainer.saved_model_file)
            self.state.update(best_file=best.name, best_sha256=sha256(best))
            self.state["best_valid_result"] = {k: float(v) for k, v in trainer.best_valid_result.items()}
        self.state.update(
            latest_sha256=sha256(latest),
            fit_seconds_at_latest=seconds,
            random_states=random_states(torch, train_data),
        )
        self.write()

    def write(self) -> None:
        partial = self.file.with_suffix(".partial")
        partial.write_text(json.dumps(self.state) + "\n")
        partial.replace(self.file)

    def best_file(self) -> Path:
        return self.checkpoint_dir / Path(self.state["best_file"]).name

    def resume(self, trainer, train_data, torch) -> bool:
        """Continue from the stored state; False when there is none. A stored file that is unreadable,
        made with other settings, or whose checkpoints are not the ones recorded ends the run in one line."""
        if not self.file.is_file():
            return False
        try:
            self.state = json.loads(self.file.read_text())
            if self.state["settings"] != self.settings:
                raise SystemExit(
                    f"{self.file}: made with {self.state['settings']}, not {self.settings}; "
                    "run without --resume (or with a new --work) to start again"
                )
            latest, best = self.checkpoint_dir / "latest.pth", self.best_file()
            if not best.is_file() or sha256(best) != self.state["best_sha256"]:
                raise SystemExit(f"{best}: not the best checkpoint recorded in {self.file}; not resuming")
            with own_checkpoint_load(latest, self.state["latest_sha256"]):
                trainer.resume_checkpoint(str(latest))
            trainer.best_valid_result = self.state["best_valid_result"]
            set_random_states(torch, train_data, self.state["random_states"])
            self.state["fit_seconds"] = self.state["fit_seconds_at_latest"]
        except (KeyError, ValueError, TypeError) as error:
            raise SystemExit(
                f"{self.file}: not a progress file of this script ({error!r}); not resuming"
            ) from None
        trainer.saved_model_file = str(self.best_file())
        print(f"resumed {self.file} at epoch {trainer.start_epoch}", flush=True)
        return True


class Stop(Exception):
    """Raised from RecBole's per-epoch callback to end training early (time budget or a signal)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--epochs", type=int, default=300, help="the most epochs (early stopping ends sooner)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop after the epoch past this")
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("ADLAB_DATA_DIR", ROOT / "data"))
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue this seed's run in --work where it stopped"
    )
    parser.add_argument("--work", type=Path, default=ROOT / "outputs" / "recbole_sasrec")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "measurements" / "recbole_sasrec.json")
    args = parser.parse_args(argv)
    started = time.time()
    work, out = args.work.resolve(), args.out.resolve()

    rows, adlab_split = adlab_log(args.data_dir.resolve(), work)
    (work / "data" / NAME).mkdir(parents=True, exist_ok=True)
    rows.to_csv(work / "data" / NAME / f"{NAME}.inter", sep="\t", index=False)

    _workarounds()
    import recbole
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_logger, init_seed

    torch.set_num_threads(args.threads)
    os.chdir(work)  # RecBole writes its log/ and log_tensorboard/ folders here
    config = Config(model="SASRec", dataset=NAME, config_dict=config_dict(args.seed, args.epochs, work))
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    same = compare(adlab_split, recbole_split(train_data, valid_data, test_data))
    catalogue = dataset.item_num - 1  # RecBole's item 0 is padding
    print(
        f"split check (users with the same item as adlab's): {same}; catalogue {catalogue} items", flush=True
    )
    users = same["users_adlab"]
    if not (same["users_recbole"] == same["test"] == same["val"] == same["train"] == users):
        raise SystemExit("RecBole's split differs from adlab's; not training")

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = SASRec(config, train_data._dataset).to(config["device"])
    trainer = Trainer(config, model)
    settings = {"seed": args.seed, "epochs": args.epochs, "threads": args.threads, "data": str(args.data_dir)}
    progress = Progress(work / f"progress_seed_{args.seed}.json", Path(trainer.checkpoint_dir), settings)
    if not (args.resume and progress.resume(trainer, train_data, torch)):
        progress.fresh()
    state = progress.state
    history: list[dict] = state["history"]
    stop = {"why": None}

    def on_signal(number, _frame):
        stop["why"] = f"signal {signal.Signals(number).name}"

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def after_epoch(epoch: int, score: float) -> None:
        seconds = state["fit_seconds"] + time.time() - fit_started
        best = trainer.cur_step == 0
        history.append(
            {"epoch": epoch, "val_ndcg_at_10": float(score), "best": best, "seconds": round(seconds, 1)}
        )
        print(f"epoch {epoch}: val ndcg@10 {score:.4f} ({seconds:.0f} s)", flush=True)
        progress.save(trainer, train_data, torch, epoch, seconds)
        if args.max_minutes is not None and time.time() - fit_started > 60 * args.max_minutes:
            stop["why"] = f"--max-minutes {args.max_minutes}"
        if stop["why"]:
            raise Stop(stop["why"])

    fit_started = time.time()
    if trainer.start_epoch < args.epochs and not state.get("stopped_early"):
        state["parts"] += 1
        with contextlib.suppress(Stop):
            trainer.fit(train_data, valid_data, saved=True, show_progress=False, callback_fn=after_epoch)
        # RecBole stops once cur_step (evaluations without a better val score) exceeds stopping_step
        state["stopped_early"] = trainer.cur_step > config["stopping_step"]
        state["fit_seconds"] += time.time() - fit_started
    fit_seconds = state["fit_seconds"]
    with own_checkpoint_load(progress.best_file(), state.get("best_sha256")):
        test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    state["wall_seconds_total"] = state.get("wall_seconds_total", 0.0) + time.time() - started
    progress.write()
    best = [entry["epoch"] for entry in history if entry["best"]]
    ran_out = not stop["why"] and len(history) >= args.epochs
    result = {
        **{name: float(test[key]) for key, name in METRICS.items()},
        **{f"val_{name}": float(state["best_valid_result"][key]) for key, name in METRICS.items()},
        "epochs_run": len(history),
        "best_epoch": best[-1] if best else None,
        "converged": bool(state.get("stopped_early")),
        "parts": state["parts"],
        "stopped_by": stop["why"]
        or ("--epochs reached" if ran_out else "early stopping (10 epochs without a better val NDCG@10)"),
        "fit_seconds": round(fit_seconds, 1),
        "wall_seconds": round(state["wall_seconds_total"], 1),
        "torch_threads": args.threads,
        "load_average_at_end": [round(v, 1) for v in os.getloadavg()],
        "command": _command(),
        "split_check": same,
        "val_curve": [round(entry["val_ndcg_at_10"], 4) for entry in history],
        "finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "val_curve"}), flush=True)
    store(out, args.seed, result, recbole.__version__, torch.__version__)
    return 0


def store(out: Path, seed: int, result: dict, recbole_version: str, torch_version: str) -> None:
    """Merge one seed into the JSON file (`ndcg_at_10` etc. per seed, what bench_recommend reads)."""
    stored = json.loads(out.read_text()) if out.is_file() else {}
    stored.update(
        {
            "what": "RecBole SASRec on MovieLens-100K, adlab's leave-one-out split, full ranking; test figures "
            "of the best val NDCG@10 epoch; mrr_at_10 is RecBole's MRR@10, not adlab's mrr",
            "recbole": recbole_version,
            "torch": torch_version,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared), CPU only",
            "command": _command(),
        }
    )
    stored.setdefault("runs", {})[str(seed)] = result
    for name in (*METRICS.values(), *(f"val_{n}" for n in METRICS.values())):
        stored.setdefault(name, {})[str(seed)] = result[name]
    stored["converged"] = {s: run["converged"] for s, run in sorted(stored["runs"].items())}
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".json.partial")
    partial.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
    partial.replace(out)


if __name__ == "__main__":
    sys.exit(main())
