"""Ending a run on a known error with one message and an exit code, not a traceback.

The ``SystemExit`` raised is an ``ErrorExit``: it carries the message as ``reason``, so that a sweep
(``src/runs/sweeps.py``, ``run_job``) can record why a job ended in the sweep's summary and go on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from src.utils.console import say

E = TypeVar("E", bound=BaseException)


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
