"""Keep a run's console to what matters, by dropping two notes of Lightning's that are not about this project.

Only these, matched narrowly, so that any other warning still shows:

- torch 2.13 deprecated ``isinstance(x, LeafSpec)``, and Lightning 2.6.6's own ``lightning/pytorch/utilities/
  _pytree.py`` still does it: a FutureWarning on every run (once per process), that no code of ours can fix;
- the "💡 Tip: ... try installing litlogger" advertisement Lightning logs whenever a Trainer starts.

What was ours is fixed where it arises instead: the kernel scores are logged the way Lightning expects of
values computed on rank 0 (``src/callbacks/tower_kernels.py``), and the model summary counts the net's FLOPs
(``src/callbacks/model_summary.py``).
"""

from __future__ import annotations

import logging
import sys
import warnings

LIGHTNING_TIP_PREFIX = "💡 Tip:"
#: the logger Lightning's rank_zero_info writes to
RANK_ZERO_LOGGER = "lightning.pytorch.utilities.rank_zero"


def _not_a_tip(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(LIGHTNING_TIP_PREFIX)


LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")


def quiet_lightning() -> None:
    """Drop the two notes of the module docstring, and send Lightning's messages through the run's logging
    handlers (console and ``<run dir>/train.log``) instead of the console handler Lightning adds for itself
    when it is imported before logging is configured (idempotent)."""
    for name in LIGHTNING_LOGGERS:
        lightning_logger = logging.getLogger(name)
        if logging.getLogger().handlers:  # the run's handlers exist (Hydra's job logging)
            lightning_logger.handlers.clear()
            lightning_logger.propagate = True
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )
    logger = logging.getLogger(RANK_ZERO_LOGGER)
    if _not_a_tip not in logger.filters:
        logger.addFilter(_not_a_tip)


def say(message: str, *, error: bool = False) -> None:
    """Print ``message`` (to stderr when ``error``) and write it to the run's log file too.

    The project's one way to tell the user something: the console shows the line as it is, and the log
    file that Hydra's job logging opened (``<run dir>/train.log``, conf/hydra/job_logging/project.yaml)
    gets it with its time stamp, so that the file holds what the console showed whether or not the output
    is a terminal. Outside a Hydra run (a test, a script) there is no such file and it is a plain print.
    """
    print(message, file=sys.stderr if error else sys.stdout, flush=True)
    record = logging.LogRecord(
        "src", logging.WARNING if error else logging.INFO, __file__, 0, message, None, None
    )
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
