"""One process at a time: an exclusive ``flock`` on a lock file, for builds that must not run twice."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process building {building} ...", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
