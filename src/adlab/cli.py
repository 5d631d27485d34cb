"""Command-line plumbing shared by adlab's Hydra entry points.

User mistakes become one line on stderr and exit status 2, whether they surface while Hydra composes
the config (unknown key, bad override) or while the job runs (bad data, bad checkpoint).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from adlab.errors import AdlabError

EXIT_USER_ERROR = 2
# Hydra flags that take a value, and flags after which no config of ours is composed
VALUE_FLAGS = {"--cfg", "-c", "--package", "-p"}
SKIP_CHECK_FLAGS = {"-h", "--help", "--hydra-help", "-i", "-cp", "-cn", "-cd"}
# Hydra's rerun flag unpickles the file it names (code from a file would run); argparse also takes any
# unambiguous prefix of it (`--exp`)
RERUN_FLAG = "--experimental-rerun"


def fail(message: str) -> None:
    """Print a user error on one line and exit with status 2."""
    print(f"adlab: error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_USER_ERROR)


def report_user_errors(function: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a job function so an `AdlabError` ends the process with one line and status 2."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except AdlabError as error:
            fail(str(error))

    wrapped.__name__ = function.__name__
    wrapped.__doc__ = function.__doc__
    return wrapped


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
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from adlab.harness.configs import config_dir, register_resolvers

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
    register_resolvers()
    try:
        overrides = _first_values(overrides)
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            compose(config_name=config_name, overrides=overrides)
    except Exception as error:  # Hydra raises several types for a bad command line
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        cause = error.__cause__
        if cause is not None and str(cause).strip():
            lines.append(str(cause).strip().splitlines()[0])
        message = "; ".join(lines)
        fail(f"bad config or override ({' '.join(argv) or 'no overrides'}): {message}")
    finally:
        GlobalHydra.instance().clear()
