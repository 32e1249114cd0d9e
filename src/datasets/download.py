"""Download one file, resumably, and verify it before anything trusts it.

pooch does most of a download well: ``pooch.HTTPDownloader`` streams a URL with ``requests`` into a file,
drives a progress bar (drawn here with rich, as training's is) and forwards any ``requests.get`` argument.
What it lacks, and this module adds:

- **Resume.** A download goes to ``<file>.part``. When a connection dies, the next attempt (in this run
  or a later one) asks for the rest with an HTTP ``Range`` request and appends to it; a server that
  ignores the range (status 200) is read again from the start, and a range that starts elsewhere is
  refused. The ``.part`` file is renamed to its final name only after its checksum matched, so a file
  under the final name is always a whole, verified download.
- **Retries with exponential backoff** on a dropped connection, a timeout and HTTP 429/5xx: waits of
  ``backoff_s``, 2 x ``backoff_s``, 4 x ... (at most a minute) between ``attempts``. Other HTTP errors
  (403, 404) are final and name the URL.
- **No retries for a host name that does not resolve** (no network, a mistyped host): waiting does not
  bring the network back, so ``HostNotFoundError`` is raised at once, with one line that names the host,
  the URL and where to put the file downloaded by hand (``dest``: a file there is verified and used, no
  download). An empty ``.part`` file is removed whenever a download fails: a failed run leaves only bytes
  to resume.
- **Verification that names the file.** sha256 (and md5, where the publisher gives only that) of the whole
  file; a mismatch deletes the file and raises ``ChecksumError`` with the file name, the URL, the expected
  and the actual hash. With no hash pinned (``sha256: null``), the hash is printed with the config key to
  pin it.

``file://`` URLs and plain paths are copied, for a mirror on a local disk.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pooch
import requests
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from urllib3.exceptions import NameResolutionError

from src.utils.console import say

CHUNK = 1 << 16  # bytes per write; a dropped connection loses at most the chunk in flight (pooch: 1 KiB)
HASH_CHUNK = 1 << 20
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_WAIT_S = 60.0
_CONTENT_RANGE = re.compile(r"^bytes (?:(?P<start>\d+)-\d+|\*)/(?P<total>\d+|\*)$")


class DownloadError(RuntimeError):
    """The file could not be downloaded (the message names the URL, and the ``.part`` file kept)."""


class HostNotFoundError(DownloadError):
    """The URL's host name does not resolve: no network, or a mistyped host (not retried)."""


class ChecksumError(ValueError):
    """A downloaded file's hash is not the pinned one (the message names the file and both hashes)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try (config: ``data.source.download``)."""

    attempts: int = 5
    backoff_s: float = 2.0
    timeout_s: float = 60.0

    def wait(self, failed_attempts: int) -> float:
        """Seconds to wait after the ``failed_attempts``-th failure: ``backoff_s`` doubled each time."""
        return min(self.backoff_s * 2 ** (failed_attempts - 1), MAX_WAIT_S)


def file_hashes(path: str | Path) -> dict[str, str]:
    """sha256 and md5 of the file at ``path``, in one pass."""
    digests = {"sha256": hashlib.sha256(), "md5": hashlib.md5(usedforsecurity=False)}
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            for digest in digests.values():
                digest.update(chunk)
    return {name: digest.hexdigest() for name, digest in digests.items()}


def check_hashes(
    path: Path, expected: dict[str, str | None], name: str, source: str, pin_key: str
) -> dict[str, str]:
    """Hashes of ``path``; ``ChecksumError`` when one of ``expected`` (sha256, md5) differs.

    ``name`` and ``source`` say which file it is in the message; with no sha256 pinned, the computed one
    is printed with ``pin_key``, the config key to set it with.
    """
    actual = file_hashes(path)
    for algorithm, want in expected.items():
        if want and actual[algorithm] != want.lower():
            raise ChecksumError(
                f"{name} (from {source}): {algorithm} is {actual[algorithm]}, expected {want}. The file "
                "may be damaged or the publisher may have changed it; it was deleted. If you trust the new "
                f"file, pin its hash: {pin_key}={actual['sha256']}"
            )
    if not expected.get("sha256"):
        say(f"{name}: sha256 {actual['sha256']} (not pinned; to pin it: {pin_key}={actual['sha256']})")
    return actual


def fetch(
    url: str,
    dest: str | Path,
    sha256: str | None = None,
    md5: str | None = None,
    policy: RetryPolicy | None = None,
    progress: bool = True,
    pin_key: str = "sha256",
) -> Path:
    """The file from ``url`` at ``dest``, downloaded (resuming a ``.part``) and verified; return ``dest``.

    A ``dest`` already there is checked against the pinned hashes and reused when it matches (it is
    downloaded again when it does not: the pins changed).
    """
    dest = Path(dest)
    policy = policy or RetryPolicy()
    expected = {"sha256": sha256, "md5": md5}
    if dest.is_file():
        if not (sha256 or md5):
            return dest  # only a verified download is ever renamed to dest
        try:
            check_hashes(dest, expected, dest.name, str(dest), pin_key)
            return dest
        except ChecksumError as error:
            say(f"{error}\ndownloading {dest.name} again")
            dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    scheme = urlparse(url).scheme
    if scheme in ("http", "https"):
        download_http(url, part, policy, progress)
    elif scheme in ("file", ""):
        source = Path(unquote(urlparse(url).path) if scheme else url).expanduser()
        if not source.is_file():
            raise FileNotFoundError(f"{url}: no such file")
        shutil.copyfile(source, part)
    else:
        raise DownloadError(f"{url}: only http, https and file URLs (or a local path) are supported")
    try:
        check_hashes(part, expected, dest.name, url, pin_key)
    except ChecksumError:
        part.unlink()
        raise
    part.replace(dest)
    return dest


def download_http(url: str, part: Path, policy: RetryPolicy, progress: bool = True) -> None:
    """Download ``url`` into ``part``, resuming what ``part`` holds; retry as ``policy`` says.

    ``HostNotFoundError`` at once when the host name does not resolve; an empty ``part`` is removed whenever
    the download fails.
    """
    try:
        _download_with_retries(url, part, policy, progress)
    except BaseException:
        if part.exists() and part.stat().st_size == 0:
            part.unlink()
        raise


def _download_with_retries(url: str, part: Path, policy: RetryPolicy, progress: bool) -> None:
    last_error: Exception | None = None
    for attempt in range(1, policy.attempts + 1):
        offset = part.stat().st_size if part.exists() else 0
        if offset:
            say(f"resuming {part.name} at {offset / 1e6:,.1f} MB")
        try:
            _request(url, part, offset, policy.timeout_s, progress)
            return
        except requests.HTTPError as error:
            status = error.response.status_code if error.response is not None else None
            if status not in RETRY_STATUS:
                raise DownloadError(f"{url}: HTTP {status} ({error}); not retrying") from error
            last_error = error
        except (requests.RequestException, _IncompleteError) as error:
            host = unresolved_host(error)
            if host is not None:
                raise HostNotFoundError(
                    host_not_found(host or urlparse(url).hostname or url, url, part)
                ) from error
            last_error = error
        if attempt < policy.attempts:
            wait = policy.wait(attempt)
            say(f"{url}: attempt {attempt}/{policy.attempts} failed ({last_error}); retrying in {wait:g} s")
            time.sleep(wait)
    kept = part.stat().st_size if part.exists() else 0
    where = (
        f"the {kept:,} bytes received are kept in {part}, and the next run resumes from there"
        if kept
        else "nothing was received"
    )
    raise DownloadError(
        f"{url}: gave up after {policy.attempts} attempts ({last_error}); {where}"
    ) from last_error


def unresolved_host(error: BaseException) -> str | None:
    """The host name that did not resolve, when ``error`` is (or wraps) a failed name lookup: ``""`` when the
    lookup failed but the name is not recorded; None for any other error."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, NameResolutionError):
            return str(getattr(current, "_host", "") or "")
        if isinstance(current, socket.gaierror):
            return ""
        pending += [current.__cause__, current.__context__, getattr(current, "reason", None)]
        pending += [arg for arg in current.args if isinstance(arg, BaseException)]
    return None


def host_not_found(host: str, url: str, part: Path) -> str:
    """One line: the host that does not resolve, and how to go on without it."""
    dest = part.with_name(part.name.removesuffix(".part"))
    return (
        f"cannot resolve {host} (no network?): download {url} on a machine with internet, put it at {dest} "
        "and run this again (the file is verified and used)"
    )


class _Progress:
    """The progress bar pooch's ``HTTPDownloader`` drives (``total``, ``update``, ``reset``, ``close``), drawn
    with rich on stderr over the whole file: a resumed download starts at the bytes already on disk, not at
    zero. The bar is drawn once the server has answered (pooch sets ``total``), so a request that fails
    draws none. When stderr is not a terminal, rich does not animate it: the finished bar is written once.
    """

    def __init__(self, name: str, offset: int) -> None:
        self.name = name
        self.offset = offset
        self.bar: Progress | None = None
        self.task = TaskID(0)
        self.counting_from_offset = False

    def _bar(self) -> Progress:
        if self.bar is None:
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                DownloadColumn(binary_units=True),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self.task = self.bar.add_task(self.name, total=None, completed=self.offset)
            self.bar.start()
        return self.bar

    @property
    def total(self) -> float | None:
        return self.bar.tasks[0].total if self.bar is not None else None

    @total.setter
    def total(self, remaining: int) -> None:  # pooch sets the response's length: what is left to come
        bar = self._bar()
        bar.update(self.task, total=self.offset + remaining if remaining else None, refresh=True)

    def update(self, n: int) -> None:
        if self.counting_from_offset:  # after reset: n is the whole response
            self.counting_from_offset = False
            self._bar().update(self.task, completed=self.offset + n)
        else:
            self._bar().update(self.task, advance=n)

    def reset(self) -> None:
        """pooch resets, then adds the whole response's length: set that count, so the rate stays the
        measured one."""
        self.counting_from_offset = True

    def restart(self) -> None:
        """The server sends the whole file again: count from zero."""
        self.offset = 0
        if self.bar is not None:
            self.bar.update(self.task, completed=0)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


class _IncompleteError(Exception):
    """The response ended before the file did, or described another part of it: try again."""


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """(start, total) of a ``Content-Range`` header; None for what it does not say."""
    match = _CONTENT_RANGE.match((value or "").strip())
    if not match:
        return None, None
    start, total = match["start"], match["total"]
    return (int(start) if start else None), (int(total) if total and total != "*" else None)


def _request(url: str, part: Path, offset: int, timeout_s: float, progress: bool) -> None:
    """One GET of ``url`` from byte ``offset``, appended to ``part`` by pooch's ``HTTPDownloader``."""
    expected_total: list[int | None] = [None]
    with open(part, "ab") as handle:

        def on_response(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
            """Check the response before pooch writes its body (a requests response hook)."""
            if response.is_redirect:
                return response
            length = response.headers.get("Content-Length")
            if response.status_code == 206:
                start, total = _parse_content_range(response.headers.get("Content-Range"))
                if start != offset:
                    response.close()
                    raise _IncompleteError(f"asked for bytes from {offset}, the server sent from {start}")
                expected_total[0] = total
            elif response.status_code == 200:
                if offset:
                    say(f"{url}: the server does not resume downloads; starting {part.name} again")
                    handle.seek(0)
                    handle.truncate()
                    if bar:
                        bar.restart()
                expected_total[0] = int(length) if length else None
            return response

        headers = {"Range": f"bytes={offset}-"} if offset else {}
        bar = _Progress(part.name.removesuffix(".part"), offset) if progress else False
        downloader = pooch.HTTPDownloader(
            progressbar=bar,
            chunk_size=CHUNK,
            headers=headers,
            timeout=timeout_s,
            hooks={"response": on_response},
        )
        try:
            downloader(url, handle, None)
        except requests.HTTPError as error:
            if error.response is None or error.response.status_code != 416:
                raise
            # Range not satisfiable: the part may already hold the whole file, or more than the file.
            _, total = _parse_content_range(error.response.headers.get("Content-Range"))
            if total is not None and total == offset:
                return
            handle.seek(0)
            handle.truncate()
            raise _IncompleteError(
                f"the server has {total} bytes, {part.name} held {offset}: starting again"
            ) from error
        finally:
            if bar:
                bar.close()
    size = part.stat().st_size
    if expected_total[0] is not None and size != expected_total[0]:
        raise _IncompleteError(f"received {size:,} of {expected_total[0]:,} bytes")
