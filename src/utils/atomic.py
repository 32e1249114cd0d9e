"""Write a file so that a reader (or a resumed run) sees all of it or none of it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def replacing(path: str | os.PathLike[str], fsync: bool = False) -> Iterator[BinaryIO]:
    """A handle on a temporary file beside ``path``, renamed over ``path`` when the block ends.

    The rename is atomic on one filesystem, which is why the temporary file lives in the same folder. A
    failure (a full disk, an exception in the block) leaves ``path`` as it was and removes the temporary
    file. ``fsync``: have the bytes on disk before the rename (a crash then cannot leave an empty file).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path`` (``replacing``)."""
    with replacing(path) as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
    return Path(path)
