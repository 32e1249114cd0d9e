"""Ending a run on a known error with one message and an exit code, not a traceback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from src.utils.console import say

E = TypeVar("E", bound=BaseException)


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
    (its ``is_global_zero``)."""
    try:
        yield
    except error as caught:
        if trainer.is_global_zero:
            say(f"error: {describe(caught)}", error=True)
        close(exit_code)
        raise SystemExit(exit_code) from None
