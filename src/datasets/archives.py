"""Safe extraction of the zip and tar(.gz) archives datasets ship in.

An archive from the internet is untrusted input: a member named ``../../.bashrc`` or ``/etc/passwd``, a
symbolic or hard link pointing out of the target, or a few kilobytes that inflate to terabytes (a "zip
bomb") would write where it should not. So extraction never calls ``extractall``: every member is checked
first (name, type, declared size, count) and written by this module, as a plain file or folder inside the
target, with the user's umask (never the archive's permission bits). A refused member stops the extraction
with ``UnsafeArchiveError`` naming the archive, the member and the reason, and nothing is left extracted.

A tar member also passes tarfile's ``data`` filter (PEP 706), which refuses special files and any name
that resolves outside the target. The filter is not the whole check: it strips a leading ``/`` instead of
refusing the member, lets ``..\\`` and ``C:/`` names through on POSIX, and allows links inside the target,
which this module refuses (a dataset needs none, and it writes only files and folders). Zip archives have
no such filter: the same name and type checks apply to them by hand.

A half-extracted tree must never be trusted by a later run (a killed process, a full disk, a corrupt
member): members go to ``<target>.partial/``, a marker file is written last, and the folder is renamed to
``<target>`` only then. ``<target>`` exists if and only if the extraction finished; a leftover
``.partial`` is deleted and redone by the next run. Each file keeps the modification time the archive
records, so extracting the same archive again gives the same files and the same cache fingerprint
(``src/data/cache.py``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from src.utils.atomic import write_atomic
from src.utils.console import say

MARKER = ".extracted.json"  # written last into a finished extraction
COPY_CHUNK = 1 << 20
DEFAULT_MAX_BYTES = 20 * 10**9  # 20 GB: the biggest archive here (Imagenette, full size) holds about 1.6 GB
DEFAULT_MAX_MEMBERS = 200_000  # PetImages has about 25,000 members, the Oxford images about 7,400
_DRIVE = re.compile(r"^[A-Za-z]:")


class ArchiveError(ValueError):
    """The archive could not be read or one member could not be written (the message names it)."""


class UnsafeArchiveError(ArchiveError):
    """A member would land outside the target, is a link or device, or the archive is too big."""


class NotAnArchiveError(ArchiveError):
    """The file is neither a zip nor a tar archive (the message names it and what was expected)."""


def is_archive(path: str | Path) -> bool:
    """Whether ``path`` is a zip or a (compressed) tar archive, judged by its first bytes."""
    try:
        return zipfile.is_zipfile(path) or tarfile.is_tarfile(path)
    except OSError:
        return False


def check_archive(path: str | Path, expected: str = "a zip or tar(.gz) archive") -> None:
    """``NotAnArchiveError`` naming ``path``, what it starts with and ``expected``, unless it is one."""
    path = Path(path)
    if is_archive(path):
        return
    with open(path, "rb") as f:
        head = f.read(16)
    raise NotAnArchiveError(
        f"{path} is not a zip or tar archive ({path.stat().st_size:,} bytes, starting {head!r}): "
        f"expected {expected}"
    )


@dataclass(frozen=True)
class ExtractLimits:
    """Refuse archives beyond these (config: ``data.source.extract.max_gb`` and ``max_members``)."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_members: int = DEFAULT_MAX_MEMBERS


@dataclass(frozen=True)
class _Member:
    """One archive member, already checked: where it goes and how to read it."""

    name: str
    parts: tuple[str, ...]  # the relative path inside the target, one component per element
    is_dir: bool
    size: int
    mtime: float
    open: Callable[[], AbstractContextManager[IO[bytes]]]


def safe_parts(name: str) -> tuple[str, ...]:
    """The path components of member ``name`` inside the target; ``ValueError`` saying why it is unsafe.

    Backslashes count as separators (archives made on Windows use them, and ``..\\evil`` must not pass as
    an odd file name); empty and ``.`` components are dropped.
    """
    unified = name.replace("\\", "/")
    if unified.startswith("/") or _DRIVE.match(unified):
        raise ValueError("has an absolute path")
    parts = tuple(p for p in unified.split("/") if p not in ("", "."))
    if ".." in parts:
        raise ValueError("climbs out of the target with '..'")
    if any("\0" in p for p in parts):
        raise ValueError("has a NUL byte in its name")
    return parts


def extract_archive(archive: str | Path, target: str | Path, limits: ExtractLimits | None = None) -> Path:
    """Extract ``archive`` (zip, tar, tar.gz/bz2/xz) into ``target``; return ``target``.

    Reuses a finished extraction of the same archive (same name, size and modification time in its marker
    file). Raises ``NotAnArchiveError`` for a file that is neither a zip nor a tar archive,
    ``UnsafeArchiveError`` for a member that is unsafe or beyond ``limits`` and ``ArchiveError`` for an
    unreadable archive or member; in both cases (and on any other exception, KeyboardInterrupt included)
    nothing is left under ``target``.
    """
    archive, target = Path(archive), Path(target)
    limits = limits or ExtractLimits()
    if not archive.is_file():
        raise FileNotFoundError(f"archive {archive} does not exist")
    check_archive(archive)
    status = archive.stat()
    identity = {
        "archive": archive.name,
        "archive_bytes": status.st_size,
        "archive_mtime_ns": status.st_mtime_ns,
    }
    if (target / MARKER).is_file():
        made = json.loads((target / MARKER).read_text())
        # an extraction from before the modification time was recorded: judged by name and size
        recorded = {k: made.get(k, identity[k] if k == "archive_mtime_ns" else None) for k in identity}
        if recorded == identity:
            return target
        say(f"{target} was extracted from another {archive.name}: extracting it again")
        shutil.rmtree(target)
    elif target.exists():  # not made by this function (the marker would be there): do not trust it
        say(f"{target} has no {MARKER}: removing the incomplete extraction")
        shutil.rmtree(target)
    partial = target.with_name(target.name + ".partial")
    if partial.exists():
        say(f"removing {partial}, left by an extraction that did not finish")
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    started = time.perf_counter()
    try:
        files, total = _extract_into(archive, partial, limits)
        summary = {**identity, "files": files, "bytes": total}
        write_atomic(partial / MARKER, json.dumps(summary, indent=1) + "\n")
        os.replace(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    seconds = time.perf_counter() - started
    size = f"{files:,} files ({total / 1e6:,.1f} MB)"
    say(f"extracted {size} from {archive.name} to {target} in {seconds:.1f} s")
    return target


def _extract_into(archive: Path, folder: Path, limits: ExtractLimits) -> tuple[int, int]:
    """Write every member of ``archive`` under ``folder``; return (files, bytes)."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            members = list(_zip_members(zf, archive, limits))  # all checked before any is written
            return _write_members(archive, members, folder)
    try:
        with tarfile.open(archive, "r|*") as tf:  # a stream: one pass through the compressed file
            return _write_members(archive, _tar_members(tf, archive, folder, limits), folder)
    except tarfile.ReadError as error:
        raise ArchiveError(f"{archive} is neither a zip nor a readable tar archive ({error})") from error


def _refuse(archive: Path, name: str, reason: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"{archive.name}: refusing to extract member {name!r}: {reason}; nothing was extracted"
    )


class _Budget:
    """Counts members and declared bytes, refusing the member that goes over ``limits``."""

    def __init__(self, archive: Path, limits: ExtractLimits) -> None:
        self.archive, self.limits = archive, limits
        self.members = 0
        self.bytes = 0

    def add(self, name: str, size: int) -> None:
        self.members += 1
        self.bytes += size
        if self.members > self.limits.max_members:
            raise _refuse(
                self.archive,
                name,
                f"the archive has more than {self.limits.max_members:,} members "
                "(limit: data.source.extract.max_members)",
            )
        if self.bytes > self.limits.max_bytes:
            raise _refuse(
                self.archive,
                name,
                f"it takes the uncompressed size past {self.limits.max_bytes / 1e9:g} GB "
                f"({self.bytes:,} bytes so far; limit: data.source.extract.max_gb)",
            )


def _checked_parts(archive: Path, name: str) -> tuple[str, ...]:
    try:
        return safe_parts(name)
    except ValueError as error:
        raise _refuse(archive, name, str(error)) from None


def _zip_members(zf: zipfile.ZipFile, archive: Path, limits: ExtractLimits) -> Iterator[_Member]:
    budget = _Budget(archive, limits)
    for info in zf.infolist():
        kind = stat.S_IFMT(info.external_attr >> 16)  # the Unix file type, when the maker recorded one
        if kind == stat.S_IFLNK:
            raise _refuse(archive, info.filename, "is a symbolic link")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise _refuse(archive, info.filename, "is a device, FIFO or other special file")
        parts = _checked_parts(archive, info.filename)
        budget.add(info.filename, info.file_size)
        mtime = time.mktime((*info.date_time, 0, 0, -1))
        yield _Member(info.filename, parts, info.is_dir(), info.file_size, mtime, _opener(zf, info))


def _opener(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[], AbstractContextManager[IO[bytes]]]:
    return lambda: zf.open(info)  # reads at most info.file_size bytes and checks the CRC


def _tar_members(
    tf: tarfile.TarFile, archive: Path, folder: Path, limits: ExtractLimits
) -> Iterator[_Member]:
    budget = _Budget(archive, limits)
    for member in tf:
        if member.issym():
            raise _refuse(archive, member.name, f"is a symbolic link (to {member.linkname!r})")
        if member.islnk():
            raise _refuse(archive, member.name, f"is a hard link (to {member.linkname!r})")
        parts = _checked_parts(archive, member.name)
        try:
            tarfile.data_filter(member, str(folder))  # special files, names that resolve outside
        except tarfile.FilterError as error:
            raise _refuse(archive, member.name, str(error).removeprefix(f"{member.name!r} ")) from None
        budget.add(member.name, member.size)
        yield _Member(member.name, parts, member.isdir(), member.size, member.mtime, _tar_opener(tf, member))


def _tar_opener(
    tf: tarfile.TarFile, member: tarfile.TarInfo
) -> Callable[[], AbstractContextManager[IO[bytes]]]:
    def open_member() -> AbstractContextManager[IO[bytes]]:
        handle = tf.extractfile(member)
        assert handle is not None  # a regular file always has a reader
        return handle

    return open_member


def _write_members(
    archive: Path, members: Iterator[_Member] | list[_Member], folder: Path
) -> tuple[int, int]:
    """Write ``members`` under ``folder``; return (files, bytes). Errors name the member."""
    files = total = 0
    folder_times: list[tuple[Path, float]] = []
    try:
        for member in members:
            if not member.parts:
                continue  # the archive's own root folder ("./")
            dest = folder.joinpath(*member.parts)
            try:
                if member.is_dir:
                    dest.mkdir(parents=True, exist_ok=True)
                    folder_times.append((dest, member.mtime))
                    continue
                total += extract_member(member, dest)
            except UnsafeArchiveError:
                raise
            except Exception as error:  # a bad CRC, corrupt data, a full disk, a name clash, ...
                raise ArchiveError(
                    f"{archive.name}: member {member.name!r} could not be extracted: {error}"
                ) from error
            files += 1
    except (tarfile.TarError, EOFError, zipfile.BadZipFile, zlib.error) as error:  # the archive itself breaks
        raise ArchiveError(f"{archive.name} is damaged ({error}); delete it and run again") from error
    for path, mtime in folder_times:  # after their files, which would change them
        os.utime(path, (mtime, mtime))
    return files, total


def extract_member(member: _Member, dest: Path) -> int:
    """Write one file member to ``dest`` with the archive's modification time; return its size."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with member.open() as source, open(dest, "wb") as out:
        while chunk := source.read(COPY_CHUNK):
            written += len(chunk)
            if written > member.size:  # never more than the size checked against the limits
                raise ValueError(f"holds more than the {member.size:,} bytes its header declares")
            out.write(chunk)
    os.utime(dest, (member.mtime, member.mtime))
    return written
