"""The job log's filters, in a module that imports no torch or Lightning: `configs/hydra/default.yaml` sets
`QuietFilter` on every entry point's log handlers (adlab-serve's and adlab-score's too, which run ONNX
Runtime and would otherwise load torch only for it), and `adlab.cli.report_user_errors` runs every job in
`quiet_warnings()`. Why they exist: `adlab.harness.console`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

# warnings that say nothing a user can act on, ignored outright
IGNORED_WARNINGS = (
    # adlab's loaders index tensors in the training process on purpose: workers would only add start-up cost
    r".*does not have many workers.*",
    # raised inside Lightning's own code (its use of torch's pytree), not by anything in a job's config
    r".*isinstance\(treespec, LeafSpec\).*",
    # adlab-eval and adlab-predict load a checkpoint to test or score it: the training callbacks have no use
    r".*callbacks used to create the checkpoint need to be provided.*",
)
TIP_PREFIX = "💡 Tip"


class QuietFilter(logging.Filter):
    """Pass each message once (by level and text) and drop Lightning's tips; errors always pass.

    One filter instance may sit on several handlers (console and log file): a record that passed on one
    handler passes on the others too; a later record with the same text does not. A record at ERROR or
    above, or carrying a traceback, always passes and is not kept (a long-lived service logs each failure).
    """

    def __init__(self, name: str = ""):
        super().__init__(name)
        # the first record of each text (kept, not its id: a freed record's id is soon reused)
        self._first: dict[tuple[int, str], logging.LogRecord] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.lstrip().startswith(TIP_PREFIX):
            return False
        if record.levelno >= logging.ERROR or record.exc_info:
            return True
        return self._first.setdefault((record.levelno, message), record) is record


@contextmanager
def quiet_warnings() -> Iterator[None]:
    """Within the block, ignore the warnings in `IGNORED_WARNINGS` and send the others through logging
    (`py.warnings`); Python's warning handling is restored after it.

    Wraps each job of the command-line entry points, never library code, so that tests and notebooks keep
    Python's own warning handling.
    """
    with warnings.catch_warnings():
        for pattern in IGNORED_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        logging.captureWarnings(True)
        try:
            yield
        finally:
            logging.captureWarnings(False)
