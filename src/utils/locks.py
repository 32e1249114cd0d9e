"""One process at a time: an exclusive ``flock`` on a lock file, for builds that must not run twice.

The lock file exists only while a process holds it: the holder deletes it before it lets go, so a finished
(or failed) build leaves no ``.lock`` behind. A process that was waiting then holds the lock of a deleted
file, which guards nothing; it sees that (the path is gone or is another file) and locks the path again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from src.utils.console import say

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock (one builder per machine, as documented)
    fcntl = None  # type: ignore[assignment]


@contextmanager
def exclusive(lock_path: Path, building: Path | str) -> Iterator[None]:
    """Hold an exclusive flock on ``lock_path``; while another process holds it, say so and wait.

    ``building`` names what the lock guards, for the waiting message. The lock goes with the process: a
    killed holder releases it. (flock over NFS depends on the server.)
    """
    if fcntl is None:  # pragma: no cover
        yield
        return
    waited = False
    while True:
        with open(lock_path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not waited:
                    say(f"waiting for another process building {building} ...")
                    waited = True
                fcntl.flock(handle, fcntl.LOCK_EX)
            if not is_the_file_at(handle.fileno(), lock_path):  # its holder deleted it: lock the path again
                continue
            try:
                yield
            finally:
                lock_path.unlink(missing_ok=True)  # while still held, so that no waiter takes a stale lock
                fcntl.flock(handle, fcntl.LOCK_UN)
            return


def is_the_file_at(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is the file now at ``path``."""
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (here.st_dev, here.st_ino)
