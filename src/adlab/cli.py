"""Command-line plumbing shared by adlab's Hydra entry points.

User mistakes become one line on stderr and exit status 2, whether they surface while Hydra composes
the config (unknown key, bad override) or while the job runs (bad data, bad checkpoint). Ctrl-C ends a job
with one line saying how to resume it and status 130.
"""

from __future__ import annotations

import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adlab.errors import AdlabError

EXIT_USER_ERROR = 2
# what a shell reports for a process ended by Ctrl-C (128 + SIGINT)
EXIT_INTERRUPTED = 130
# Hydra flags that take a value, and flags after which no config of ours is composed
VALUE_FLAGS = {"--cfg", "-c", "--package", "-p"}
SKIP_CHECK_FLAGS = {"-h", "--help", "--hydra-help", "-i", "-cp", "-cn", "-cd", "-sc", "--shell-completion"}
# Hydra's rerun flag unpickles the file it names (code from a file would run); argparse also takes any
# unambiguous prefix of it (`--exp`)
RERUN_FLAG = "--experimental-rerun"


def fail(message: str) -> None:
    """Print a user error on one line and exit with status 2."""
    print(f"adlab: error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_USER_ERROR)


def report_user_errors(function: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a job function (its first argument: the job's config) so that an `AdlabError` ends the process
    with one line and status 2, and Ctrl-C with one line saying how to go on and status 130.

    The job runs with adlab's warning filters (`adlab.harness.quiet.quiet_warnings`).
    """

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        from adlab.harness.quiet import quiet_warnings

        interrupted: list[int] = []

        def on_sigint(signum: int, frame: Any) -> None:
            interrupted.append(signum)
            raise KeyboardInterrupt

        previous = _set_sigint(on_sigint)
        try:
            with quiet_warnings():
                return function(*args, **kwargs)
        except AdlabError as error:
            fail(str(error))
        except (KeyboardInterrupt, SystemExit) as error:
            # Lightning answers Ctrl-C with a clean shutdown and sys.exit(1): the flag tells it apart
            if isinstance(error, SystemExit) and not interrupted:
                raise
            print(
                f"adlab: interrupted; {resume_hint(args[0] if args else None)}", file=sys.stderr, flush=True
            )
            raise SystemExit(EXIT_INTERRUPTED) from None
        finally:
            _set_sigint(previous)

    wrapped.__name__ = function.__name__
    wrapped.__doc__ = function.__doc__
    return wrapped


def _set_sigint(handler: Any) -> Any:
    """Install a SIGINT handler and return the previous one (None where signals cannot be set: a thread)."""
    if handler is None:
        return None
    try:
        return signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: Python's own Ctrl-C handling stays
        return None


def resume_hint(cfg: Any) -> str:
    """What to run after Ctrl-C: resume a training job from its run's `checkpoints/last.ckpt` when one was
    written and the job's fit strategy can resume, otherwise the same command again."""
    from hydra.core.hydra_config import HydraConfig

    try:
        hydra = HydraConfig.get()
    except ValueError:
        return "run the same command again"
    command = f"adlab-{hydra.job.config_name}"
    overrides = [o for o in hydra.overrides.task if not o.lstrip("+~").startswith("ckpt_path=")]
    again = shlex.join([command, *overrides])
    if hydra.job.config_name != "train" or cfg is None or "paths" not in cfg:
        return f"run again with: {again}"
    last = (Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt").absolute()
    if not last.is_file():
        return f"no checkpoint was written yet; start again with: {again}"
    from omegaconf import open_dict

    from adlab.harness.fit import build_fit

    resumed = cfg.copy()
    with open_dict(resumed):
        resumed.ckpt_path = str(last)
    try:
        build_fit(resumed)  # a strategy that cannot resume (cross-fitting) refuses here
    except AdlabError:
        return f"this fit cannot resume from {last}; start again with: {again}"
    return f"resume with: {shlex.join([command, *overrides, f'ckpt_path={last}'])}"


def _first_values(overrides: list[str]) -> list[str]:
    """Turn sweep overrides (`seed=1,2,3`) into single values so that one config can be composed."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    single = []
    for override in parser.parse_overrides(overrides):
        if override.is_sweep_override():
            first = next(iter(override.sweep_iterator()), None)
            if first is None:
                continue
            single.append(f"{override.get_key_element()}={first}")
        else:
            single.append(override.input_line)
    return single


def check_overrides(config_name: str, argv: list[str]) -> None:
    """Compose the config with the command line's overrides and fail with one line if Hydra refuses.

    Hydra itself would print a multi-line message and exit with status 1; users get one line and 2.
    Flags (`-m`, `--cfg`, `--help`, ...) and `hydra.*` overrides are left to Hydra.
    """
    from adlab.harness.configs import compose_only

    for arg in argv:
        flag = arg.split("=", 1)[0]
        if len(flag) > 2 and RERUN_FLAG.startswith(flag):
            fail(
                f"{arg}: refused: Hydra's rerun unpickles the file it is given, which runs code from it; "
                "rerun with the overrides saved in <run dir>/.hydra/overrides.yaml instead"
            )
    if any(arg in SKIP_CHECK_FLAGS or arg.startswith(("--config-", "--info")) for arg in argv):
        return  # help, info and another config: Hydra handles these itself
    overrides, skip_next = [], False
    for arg in argv:
        if skip_next:
            skip_next = False
        elif arg in VALUE_FLAGS:
            skip_next = True  # the flag's value (`--cfg job`) is not an override
        elif not arg.startswith("-") and not arg.startswith(("hydra.", "hydra/", "+hydra")):
            overrides.append(arg)
    try:
        overrides = _first_values(overrides)
        composed = compose_only(config_name, overrides, hydra=True)
    except Exception as error:  # Hydra raises several types for a bad command line
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        cause = error.__cause__
        if cause is not None and str(cause).strip():
            lines.append(str(cause).strip().splitlines()[0])
        message = "; ".join(lines)
        fail(f"bad config or override ({' '.join(argv) or 'no overrides'}): {message}")
    from adlab.harness.config_checks import check_command_line

    try:  # keys added with +, values of the wrong type, an unwritable run folder: one line, status 2
        check_command_line(config_name, composed, overrides, argv)
    except AdlabError as error:
        fail(str(error))
