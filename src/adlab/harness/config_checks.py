"""Check a composed config's user values before anything is built or written.

Hydra refuses a key the config does not have, but not a key added with `+` (`+sed=5`), a value of the
wrong type (`seed=abc`, `data.batch_size=1.5`) or a value its consumer cannot take (`model.optimizer.lr=-1`):
those used to surface as tracebacks after the run folder had been written. The rules here are generic:

- a node with a `_target_` takes the parameters of what it names: every key must be one of them (unless it
  takes `**kwargs`) and every literal value must fit the parameter's type annotation;
- a top-level value keeps the type of its default in the entry point's own config file (`seed: 1` -> an
  integer), and `seed` must be one numpy accepts;
- a key added with `+` must land in such a node or in an open collection (`callbacks`, `logger`); a key
  deleted with `~` only there too;
- an optimizer node is built once on a dummy parameter, so that torch checks its values (a negative
  learning rate ...);
- the run folder must be creatable.

Values still to be interpolated are checked when their node is instantiated (`harness.build.instantiate_node`).
"""

from __future__ import annotations

import collections.abc
import difflib
import inspect
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from adlab.errors import AdlabError

# nodes whose entries are named objects a user may add or remove (`+callbacks.x={...}`, `~logger.wandb`)
OPEN_COLLECTIONS = ("callbacks", "logger")
SEED_RANGE = (0, 2**32 - 1)  # what numpy (and so Lightning's seed_everything) accepts
_RESERVED = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}
# settings the harness reads itself before the target sees them (their own checks name them)
HANDLED_BY_HARNESS = {"trainer.max_time"}  # harness.callbacks.time_budget: also a number of seconds
_SKIP_TYPE = object()  # an annotation this checker does not judge


def _locate(target: str, where: str) -> Any:
    from hydra._internal.utils import _locate as locate  # hydra.utils.get_object also logs the failure

    try:
        return locate(target)
    except Exception:  # Hydra raises ImportError, AttributeError or its own types
        raise AdlabError(
            f"{where}._target_={target}: cannot be imported; expected the dotted name of a class or function"
        ) from None


def _parameters(target: Any) -> tuple[dict[str, inspect.Parameter], dict[str, Any], bool]:
    """Parameters of a class's `__init__` or a function, their resolved annotations, and whether it takes
    `**kwargs`."""
    function = target.__init__ if inspect.isclass(target) else target
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return {}, {}, True
    parameters = {
        name: p
        for name, p in signature.parameters.items()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and name != "self"
    }
    open_keywords = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # an annotation naming a type only imported for type checking: judge none
        hints = {}
    return parameters, hints, open_keywords


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fits(value: Any, annotation: Any) -> bool | object:
    """Whether a plain config value fits an annotation; `_SKIP_TYPE` where the annotation is not judged."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return _SKIP_TYPE
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return _is_int(value)
    if annotation is float:
        return _is_int(value) or isinstance(value, float)
    if annotation is str:
        return isinstance(value, str)
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        verdicts = [_fits(value, arm) for arm in arguments]
        if any(v is True for v in verdicts):
            return True
        return _SKIP_TYPE if any(v is _SKIP_TYPE for v in verdicts) else False
    if origin is typing.Literal:
        return any(value == choice and type(value) is type(choice) for choice in arguments) or (
            # Hydra reads `precision=32` as an int where the literal is the string '32'
            isinstance(value, (int, float)) and str(value) in {str(choice) for choice in arguments}
        )
    if origin in (list, tuple, collections.abc.Sequence, collections.abc.MutableSequence) or annotation in (
        list,
        tuple,
    ):
        if not isinstance(value, (list, tuple, ListConfig)):
            return False
        if origin is tuple and arguments and arguments[-1] is not Ellipsis:
            if len(arguments) != len(value):
                return False
            return all(_fits(item, arm) is not False for item, arm in zip(value, arguments, strict=True))
        item = arguments[0] if arguments else Any
        return all(_fits(v, item) is not False for v in value)
    if origin in (dict, collections.abc.Mapping) or annotation is dict:
        return isinstance(value, (dict, DictConfig)) or _SKIP_TYPE
    return _SKIP_TYPE  # classes, callables, type variables: not a plain value's business


def describe(annotation: Any) -> str:
    """An annotation in words: `int | None` -> "an integer or null"."""
    words = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "text",
        type(None): "null",
    }
    if annotation in words:
        return words[annotation]
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        parts = list(dict.fromkeys(describe(arm) for arm in arguments))
        return " or ".join(parts)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(choice) for choice in arguments)
    if origin in (list, tuple, collections.abc.Sequence, collections.abc.MutableSequence):
        item = describe(arguments[0]) if arguments and arguments[0] is not Ellipsis else "values"
        return f"a list of {item.removeprefix('an ').removeprefix('a ')}s" if arguments else "a list"
    if origin in (dict, collections.abc.Mapping):
        return "a mapping"
    return getattr(annotation, "__name__", str(annotation))


def _shown(value: Any) -> str:
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=False)
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_target_node(node: DictConfig, path: str | None = None, resolve: bool = False) -> None:
    """Check one `_target_` node (and the target nodes inside it): known keys, values of the right type.

    Args:
        node: a config node with `_target_`.
        path: its dotted key in the job config, for messages (default: the node's own full key).
        resolve: also check interpolated values (inside a job, where they resolve); otherwise skip them.

    Raises:
        AdlabError: one line naming the key, its value and what was expected.
    """
    where = path if path is not None else node._get_full_key(None)
    target = node.get("_target_")
    if not isinstance(target, str):
        return
    located = _locate(target, where or "config")
    parameters, hints, open_keywords = _parameters(located)
    short = target.rsplit(".", 1)[-1]
    for key in node.keys():
        key = str(key)
        full = f"{where}.{key}" if where else key
        if key in _RESERVED:
            continue
        if key not in parameters and not open_keywords:
            suggestion = _suggest(key, list(parameters))
            known = list(parameters)
            listed = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
            raise AdlabError(
                f"{full}: not a setting of {short} ({target})"
                + (suggestion if suggestion else f"; its settings are {listed}")
            )
        if OmegaConf.is_missing(node, key):
            raise AdlabError(f"{full} is not set; give {full}=VALUE on the command line")
        if OmegaConf.is_interpolation(node, key) and not resolve:
            continue  # checked once resolved, when the node is instantiated
        try:
            value = node[key]
        except Exception:  # an interpolation that resolves only inside a job: its consumer reports it
            continue
        if isinstance(value, DictConfig) and "_target_" in value:
            check_target_node(value, full, resolve)
            continue
        if isinstance(value, (DictConfig, ListConfig)) and not resolve and _has_interpolation(value):
            continue
        annotation = hints.get(key, parameters[key].annotation if key in parameters else Any)
        if full in HANDLED_BY_HARNESS:
            continue
        if _fits(value, annotation) is False:
            raise AdlabError(f"{full}={_shown(value)}: expected {describe(annotation)}")


def _has_interpolation(node: DictConfig | ListConfig) -> bool:
    keys = range(len(node)) if isinstance(node, ListConfig) else node.keys()
    for key in keys:
        if OmegaConf.is_interpolation(node, key) or OmegaConf.is_missing(node, key):
            return True
        child = node._get_node(key)
        if isinstance(child, (DictConfig, ListConfig)) and _has_interpolation(child):
            return True
    return False


def _target_nodes(node: Any, path: str = "") -> list[tuple[str, DictConfig]]:
    """The outermost `_target_` nodes under `node` (the nested ones are checked with their parent)."""
    if not isinstance(node, DictConfig):
        return []
    if "_target_" in node and path:
        return [(path, node)]
    found = []
    for key in node.keys():
        if path == "" and key == "hydra":
            continue
        if OmegaConf.is_interpolation(node, key) or OmegaConf.is_missing(node, key):
            continue
        found += _target_nodes(node._get_node(key), f"{path}.{key}" if path else str(key))
    return found


def check_top_level(cfg: DictConfig, config_name: str) -> None:
    """Top-level values keep the type of their default in `configs/<config_name>.yaml`; `seed` in range."""
    from adlab.harness.configs import config_dir

    path = config_dir() / f"{config_name}.yaml"
    defaults = OmegaConf.load(path) if path.is_file() else OmegaConf.create()
    for key in defaults.keys():
        if key == "defaults" or key not in cfg:
            continue
        if OmegaConf.is_interpolation(defaults, key) or OmegaConf.is_interpolation(cfg, key):
            continue
        if OmegaConf.is_missing(defaults, key) or OmegaConf.is_missing(cfg, key):
            continue  # required values (`ckpt_path`) are named by the job that needs them
        default, value = defaults[key], cfg[key]
        if isinstance(default, ListConfig):
            if value is not None and not isinstance(value, ListConfig):
                raise AdlabError(f"{key}={_shown(value)}: expected a list, e.g. {key}=[a,b]")
            continue
        if isinstance(default, DictConfig):
            if value is not None and not isinstance(value, DictConfig):
                raise AdlabError(f"{key}={_shown(value)}: expected a mapping, e.g. {key}={{name:value}}")
            continue
        if default is None:
            continue
        expected = type(default)
        if expected is str:
            # a text setting given as a number (`monitor=5`) is still a mistake, except where null is fine
            fits = isinstance(value, str) or value is None
        elif expected is float:
            fits = _is_int(value) or isinstance(value, float)
        else:
            fits = type(value) is expected
        if not fits:
            shown_default = str(default).lower() if isinstance(default, bool) else default
            raise AdlabError(
                f"{key}={_shown(value)}: expected {describe(expected)}, like the default {shown_default}"
            )
    seed = cfg.get("seed") if "seed" in cfg and not OmegaConf.is_interpolation(cfg, "seed") else None
    if _is_int(seed) and not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise AdlabError(f"seed={seed}: expected an integer from {SEED_RANGE[0]} to {SEED_RANGE[1]}")


def check_optimizers(cfg: DictConfig) -> None:
    """Build every partial optimizer node once on a dummy parameter, so torch checks its values."""
    for path, node in _target_nodes(cfg):
        for inner_path, inner in [(path, node), *_inner_targets(node, path)]:
            target = inner.get("_target_")
            if not isinstance(target, str) or _has_interpolation(inner):
                continue
            located = _locate(target, inner_path)
            torch = sys.modules.get("torch")  # imported by locating an optimizer; entry points without
            # one (adlab-serve, adlab-score) never import it here
            if torch is None or not (inspect.isclass(located) and issubclass(located, torch.optim.Optimizer)):
                continue
            options = {k: v for k, v in OmegaConf.to_container(inner).items() if k not in _RESERVED}
            try:
                located([torch.zeros(1, requires_grad=True)], **options)
            except (ValueError, TypeError) as error:
                message = str(error).lower().replace("learning rate", "lr")
                name = next((k for k in options if k in message or k.rstrip("s") in message), None) or next(
                    (k for k in options if f": {options[k]}" in message), None
                )
                shown = f"{inner_path}.{name}={_shown(options[name])}" if name else inner_path
                raise AdlabError(f"{shown}: refused by {located.__name__} ({error})") from None


def _inner_targets(node: DictConfig, path: str) -> list[tuple[str, DictConfig]]:
    found = []
    for key in node.keys():
        if OmegaConf.is_interpolation(node, key) or OmegaConf.is_missing(node, key):
            continue
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            child_path = f"{path}.{key}"
            if "_target_" in child:
                found.append((child_path, child))
            found += _inner_targets(child, child_path)
    return found


def check_job_config(cfg: DictConfig, config_name: str) -> None:
    """Every check that needs only the composed config: top-level values, target nodes, optimizers."""
    check_top_level(cfg, config_name)
    for path, node in _target_nodes(cfg):
        check_target_node(node, path)
    check_optimizers(cfg)


def _is_group(name: str) -> bool:
    from adlab.harness.configs import config_dir

    return (config_dir() / name.split("@")[0]).is_dir()


def _declared(config_name: str, key: str) -> bool:
    """Whether the entry point's own config (no overrides) has `key`: Hydra lets `+key=v` through when its
    value there is null, and the user meant `key=v`."""
    from adlab.harness.configs import compose_only

    base = compose_only(config_name)
    parent = OmegaConf.select(base, key.rpartition(".")[0]) if "." in key else base
    return isinstance(parent, DictConfig) and key.rpartition(".")[2] in parent


def check_added_keys(cfg: DictConfig, overrides: list[str], config_name: str) -> None:
    """A key added with `+`/`++` (or deleted with `~`) must land in a target node or an open collection."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    entry = f"adlab-{config_name}"
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.type not in (OverrideType.ADD, OverrideType.FORCE_ADD, OverrideType.DEL):
            continue
        key = override.key_or_group
        if _is_group(key) or key.startswith("hydra"):
            continue  # a config group choice (`+experiment=...`) or Hydra's own settings
        parts = key.split(".")
        if parts[0] in OPEN_COLLECTIONS and len(parts) >= 2:
            continue
        node: Any = cfg
        inside_target = False
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, DictConfig) else None
            if isinstance(node, DictConfig) and "_target_" in node:
                inside_target = True
        if inside_target:
            continue  # the target node's check names an unknown setting
        if override.type == OverrideType.DEL:
            raise AdlabError(
                f"{override.input_line}: {entry} needs '{key}'; set it to another value instead of deleting it"
            )
        if _declared(config_name, key):
            if override.type == OverrideType.FORCE_ADD:
                continue  # `++key=v`: Hydra's "add or override", here an override
            raise AdlabError(
                f"{override.input_line}: '{key}' is already a setting of {entry}; set it without '+': "
                f"{override.input_line.lstrip('+')}"
            )
        parent = node if isinstance(node, DictConfig) else None
        siblings = [str(k) for k in (parent if parent is not None else cfg).keys()]
        siblings = [k for k in siblings if k not in (parts[-1], "hydra")]
        raise AdlabError(
            f"{override.input_line}: {entry} has no setting '{key}'{_suggest(parts[-1], siblings)}; "
            "'+' adds a key, which adlab accepts only as a parameter of what a node builds "
            "(e.g. +trainer.limit_train_batches=10) or as a new entry of callbacks or logger"
        )


def check_output_dir(directory: str | os.PathLike) -> None:
    """The run folder exists as a writable folder or can be created (its nearest existing parent is one)."""
    path = Path(directory).expanduser().absolute()
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise AdlabError(f"output folder {path}: {probe} is a file, not a folder; choose hydra.run.dir=DIR")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise AdlabError(f"output folder {path}: {probe} is not writable; choose hydra.run.dir=DIR")
    if probe == path:
        return
    try:  # access() says yes to root even on a read-only file system: try for real
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AdlabError(
            f"output folder {path}: cannot be created ({error.strerror}); choose hydra.run.dir=DIR"
        ) from None
    # leave no empty folders behind a job that may still fail on its inputs
    while path != probe:
        try:
            path.rmdir()
        except OSError:
            break
        path = path.parent


def _run_dir(cfg: DictConfig, argv: list[str]) -> str | None:
    """The run (or sweep) folder the command line will write to, resolved as Hydra will resolve it."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    multirun = any(arg in ("-m", "--multirun") for arg in argv)
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    for arg in argv:
        if arg.startswith((f"{key}=", f"+{key}=", f"++{key}=")):
            return arg.split("=", 1)[1]
    if "hydra" not in cfg:
        return None
    with open_dict(cfg):
        cfg.hydra.runtime.cwd = os.getcwd()
        cfg.hydra.runtime.output_dir = os.getcwd()
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    try:
        return str(OmegaConf.select(cfg, key, throw_on_resolution_failure=True))
    except Exception:  # a folder that only resolves inside the job: Hydra reports it
        return None


def check_command_line(config_name: str, cfg: DictConfig, overrides: list[str], argv: list[str]) -> None:
    """All checks of a command line (`adlab.cli.check_overrides` calls this on the composed config).

    Args:
        config_name: the entry point's config (`train`, `eval` ...).
        cfg: the config composed with the command line's overrides (with Hydra's node).
        overrides: the overrides it was composed with.
        argv: the whole command line, for the run folder (`hydra.run.dir=`, `-m`).
    """
    check_added_keys(cfg, overrides, config_name)
    check_job_config(cfg, config_name)
    run_dir = _run_dir(cfg, argv)
    if run_dir:
        check_output_dir(run_dir)
    storage = OmegaConf.select(cfg, "hydra.sweeper.storage", default=None, throw_on_resolution_failure=False)
    if isinstance(storage, str) and storage.startswith("sqlite:///"):
        folder = Path(storage[len("sqlite:///") :]).parent
        check_output_dir(folder)
        folder.mkdir(parents=True, exist_ok=True)  # the Optuna sweeper opens its database before any job runs
