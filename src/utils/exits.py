"""The project's exit codes, in one table, and ending a run on a known error with one message, not a
traceback.

==========  =========================  =====================================================================
code        name                       meaning, and who exits with it
==========  =========================  =====================================================================
0                                      done; also every rank but rank 0 after a SIGTERM or Ctrl-C
                                       (``src/callbacks/preemption.py``), so that Lightning's watcher of the
                                       processes it started does not kill rank 0 while it finishes
1           ``ERROR_EXIT_CODE``        a known error, said in one line: a ``SystemExit("<message>")`` (Python
                                       prints the message and exits with 1: bad settings, a missing file, a
                                       failed download, in every entry point), or ``exit_on_error`` below (a
                                       full disk while the data cache is built, ``src/train.py``; a checkpoint
                                       not written, ``src/runs/checkpoint_io.py``)
3           ``DIED_EXIT_CODE``         the run died: a non-finite loss, or an output that no longer depends on
                                       the input (``src/callbacks/training_health.py``, ``exit_when_dead``)
100 + n     ``FAILED_JOBS_EXIT_BASE``  a sweep (``-m``) in which n jobs did not complete, n counted up to 27
                                       (``sweep_exit_code``; ``src/hydra_callbacks/sweep_summary.py``)
130         ``INTERRUPTED_EXIT_CODE``  Ctrl-C (128 + SIGINT, what a shell reports): ``last.ckpt`` saved first
                                       unless it was pressed twice (``src/callbacks/preemption.py``), or the
                                       data's preparation stopped (``src/prepare.py``)
143         ``PREEMPTED_EXIT_CODE``    SIGTERM (128 + SIGTERM), what a cluster sends before it preempts a job:
                                       ``last.ckpt`` saved first (``src/callbacks/preemption.py``)
==========  =========================  =====================================================================

130 and 143 stop a whole sweep as they stop a single run; a job that exits with any other code is recorded
in the sweep's summary and the sweep goes on (``src/runs/sweeps.py``, ``run_job``).

The ``SystemExit`` raised by ``exit_on_error`` is an ``ErrorExit``: it carries the message as ``reason``, so
that a sweep can record why a job ended in the sweep's summary and go on.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from src.utils.console import say

ERROR_EXIT_CODE = 1
DIED_EXIT_CODE = 3
FAILED_JOBS_EXIT_BASE = 100
MOST_FAILED_JOBS_COUNTED = 27  # 100 + 27 = 127: above it, 128 + n means "ended by signal n"
INTERRUPTED_EXIT_CODE = 128 + signal.SIGINT  # 130
PREEMPTED_EXIT_CODE = 128 + signal.SIGTERM  # 143

E = TypeVar("E", bound=BaseException)


def sweep_exit_code(failed: int) -> int:
    """The exit code of a sweep in which ``failed`` jobs did not complete: 100 + ``failed``, at most 127."""
    return FAILED_JOBS_EXIT_BASE + min(failed, MOST_FAILED_JOBS_COUNTED)


class ErrorExit(SystemExit):
    """``SystemExit(code)`` that also says why: ``reason``, the one line printed (without ``error: ``)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code)
        self.reason = reason


@contextmanager
def exit_on_error(
    error: type[E],
    exit_code: int,
    trainer: Any,
    close: Callable[[int], None],
    describe: Callable[[E], str] = str,
) -> Iterator[None]:
    """After ``error`` in the block: rank 0 prints ``error: <describe(it)>`` to stderr, ``close(exit_code)``
    (the loggers), and the process exits with ``exit_code``. ``trainer``: what says which rank this is
    (its ``is_global_zero``). The exit is an ``ErrorExit`` whose ``reason`` is that line."""
    try:
        yield
    except error as caught:
        reason = describe(caught)
        if trainer.is_global_zero:
            say(f"error: {reason}", error=True)
        close(exit_code)
        raise ErrorExit(exit_code, reason) from None
