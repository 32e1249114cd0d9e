"""``src/datasets/download.py`` against a local HTTP server that drops connections, fails and ignores
ranges."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from src.datasets import download
from src.datasets.download import ChecksumError, DownloadError, HostNotFoundError, RetryPolicy, fetch
from tests.conftest import ROOT, run_env
from tests.helpers.archive_server import serve

PAYLOAD = os.urandom(1_000_000)
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()
FAST = RetryPolicy(attempts=3, backoff_s=0.01, timeout_s=10)


@pytest.fixture
def server():
    with serve() as (base, state):
        state.files["/data.tgz"] = PAYLOAD
        yield base, state


def test_download_is_verified_and_renamed(server, tmp_path: Path) -> None:
    base, state = server
    path = fetch(f"{base}/data.tgz", tmp_path / "data.tgz", sha256=SHA256, md5=MD5, policy=FAST)
    assert path.read_bytes() == PAYLOAD
    assert not (tmp_path / "data.tgz.part").exists()
    assert state.requests == [("/data.tgz", None)]
    # A verified file is reused: no second request.
    fetch(f"{base}/data.tgz", tmp_path / "data.tgz", sha256=SHA256, policy=FAST)
    assert len(state.requests) == 1


@pytest.mark.parametrize("algorithm", ["sha256", "md5"])
def test_wrong_checksum_is_refused_naming_the_file_and_both_hashes(server, tmp_path: Path, algorithm) -> None:
    base, _ = server
    wrong = "0" * (64 if algorithm == "sha256" else 32)
    with pytest.raises(ChecksumError) as error:
        fetch(f"{base}/data.tgz", tmp_path / "data.tgz", policy=FAST, **{algorithm: wrong})
    message = str(error.value)
    actual = SHA256 if algorithm == "sha256" else MD5
    assert "data.tgz" in message and f"expected {wrong}" in message and f"{algorithm} is {actual}" in message
    assert f"sha256={SHA256}" in message  # the value to pin, if the user trusts the new file
    assert list(tmp_path.iterdir()) == []  # neither the file nor its .part is kept


def test_dropped_connection_resumes_with_a_range_request(server, tmp_path: Path) -> None:
    base, state = server
    state.drop_after["/data.tgz"] = 300_000  # sends 300 kB of the 1 MB it promised, then hangs up
    path = fetch(f"{base}/data.tgz", tmp_path / "data.tgz", sha256=SHA256, policy=FAST, progress=False)
    assert path.read_bytes() == PAYLOAD
    first, second = state.ranges("/data.tgz")
    assert first is None
    start = int(second.removeprefix("bytes=").removesuffix("-"))
    assert 0 < start <= 300_000  # the rest only, from what had reached the disk


def test_a_later_run_resumes_the_part_file(server, tmp_path: Path) -> None:
    base, state = server
    state.drop_after["/data.tgz"] = 400_000
    once = RetryPolicy(attempts=1, backoff_s=0.01, timeout_s=10)
    with pytest.raises(DownloadError) as error:
        fetch(f"{base}/data.tgz", tmp_path / "data.tgz", sha256=SHA256, policy=once, progress=False)
    part = tmp_path / "data.tgz.part"
    kept = part.stat().st_size
    assert 0 < kept <= 400_000 and part.read_bytes() == PAYLOAD[:kept]
    assert str(part) in str(error.value) and "resumes" in str(error.value)
    assert not (tmp_path / "data.tgz").exists()  # a partial file never gets the final name

    path = fetch(f"{base}/data.tgz", tmp_path / "data.tgz", sha256=SHA256, policy=once, progress=False)
    assert path.read_bytes() == PAYLOAD and not part.exists()
    assert state.ranges("/data.tgz") == [None, f"bytes={kept}-"]


def test_the_progress_bar_counts_the_whole_file_with_its_rate(server, tmp_path: Path, capsys) -> None:
    """A resumed download's bar starts at the bytes on disk and ends at the whole file; off a terminal,
    rich writes each bar once, finished, on stderr (nothing on stdout but the messages)."""
    base, state = server
    part = tmp_path / "data.tgz.part"
    part.write_bytes(PAYLOAD[:250_000])
    fetch(f"{base}/data.tgz", tmp_path / "data.tgz", sha256=SHA256, policy=FAST)
    printed = capsys.readouterr()
    (bar,) = [line for line in printed.err.splitlines() if line.strip()]
    assert bar.startswith("data.tgz ") and " 100% 976.6/976.6 KiB " in bar and re.search(r"[kMG]?B/s", bar)
    assert "━" not in printed.out and "\r" not in printed.err
    assert state.ranges("/data.tgz") == ["bytes=250000-"]


def test_transient_503_is_retried_with_exponential_backoff(server, tmp_path: Path, monkeypatch) -> None:
    base, state = server
    state.fail_times["/data.tgz"] = 3
    waits: list[float] = []
    monkeypatch.setattr(download.time, "sleep", waits.append)
    policy = RetryPolicy(attempts=4, backoff_s=0.5, timeout_s=10)
    fetch(f"{base}/data.tgz", tmp_path / "data.tgz", sha256=SHA256, policy=policy, progress=False)
    assert waits == [0.5, 1.0, 2.0]
    assert len(state.requests) == 4


def test_gives_up_after_the_last_attempt(server, tmp_path: Path, monkeypatch) -> None:
    base, state = server
    state.fail_times["/data.tgz"] = 10
    monkeypatch.setattr(download.time, "sleep", lambda seconds: None)
    with pytest.raises(DownloadError, match="gave up after 3 attempts"):
        fetch(f"{base}/data.tgz", tmp_path / "data.tgz", policy=FAST, progress=False)
    assert len(state.requests) == 3


def test_not_found_is_not_retried(server, tmp_path: Path) -> None:
    base, state = server
    with pytest.raises(DownloadError, match=r"missing\.tgz: HTTP 404"):
        fetch(f"{base}/missing.tgz", tmp_path / "missing.tgz", policy=FAST, progress=False)
    assert len(state.requests) == 1


def test_a_server_that_ignores_range_is_read_from_the_start(server, tmp_path: Path) -> None:
    base, state = server
    state.ignore_range = True
    (tmp_path / "data.tgz.part").write_bytes(b"stale bytes from another file")
    path = fetch(f"{base}/data.tgz", tmp_path / "data.tgz", sha256=SHA256, policy=FAST, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert state.ranges("/data.tgz") == ["bytes=29-"]


def test_a_whole_part_file_is_finished_without_downloading_again(server, tmp_path: Path) -> None:
    base, state = server
    (tmp_path / "data.tgz.part").write_bytes(PAYLOAD)  # killed between the last byte and the rename
    path = fetch(f"{base}/data.tgz", tmp_path / "data.tgz", sha256=SHA256, policy=FAST, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert state.ranges("/data.tgz") == [f"bytes={len(PAYLOAD)}-"]  # answered 416: nothing more to send


def test_unpinned_hash_is_printed_with_the_key_to_pin_it(server, tmp_path: Path, capsys) -> None:
    base, _ = server
    fetch(
        f"{base}/data.tgz", tmp_path / "data.tgz", policy=FAST, progress=False, pin_key="data.source.x.sha256"
    )
    assert f"data.source.x.sha256={SHA256}" in capsys.readouterr().out


def test_file_urls_and_paths_are_copied_and_verified(tmp_path: Path) -> None:
    source = tmp_path / "mirror" / "data.tgz"
    source.parent.mkdir()
    source.write_bytes(PAYLOAD)
    assert fetch(f"file://{source}", tmp_path / "a.tgz", sha256=SHA256).read_bytes() == PAYLOAD
    assert fetch(str(source), tmp_path / "b.tgz", md5=MD5).read_bytes() == PAYLOAD
    with pytest.raises(ChecksumError, match="c.tgz"):
        fetch(str(source), tmp_path / "c.tgz", sha256="f" * 64)


# --- a host name that does not resolve (issue #26) ---------------------------------------------------------

UNRESOLVABLE = "http://no-such-host.invalid/x.tgz"  # .invalid never resolves (RFC 6761)


@pytest.fixture
def no_dns_wait(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``.invalid`` names fail to resolve at once, as a resolver answers when offline: the test never waits
    on a real DNS server. Returns the names looked up."""
    real = socket.getaddrinfo
    looked_up: list[str] = []

    def getaddrinfo(host, *args, **kwargs):
        looked_up.append(str(host))
        if str(host).endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return looked_up


def test_a_host_that_does_not_resolve_fails_at_once_naming_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    no_dns_wait: list[str],
) -> None:
    waits: list[float] = []
    monkeypatch.setattr(download.time, "sleep", waits.append)
    patient = RetryPolicy(attempts=5, backoff_s=2.0, timeout_s=1)
    with pytest.raises(HostNotFoundError) as error:
        fetch(UNRESOLVABLE, tmp_path / "x.tgz", policy=patient)
    assert str(error.value) == (
        f"cannot resolve no-such-host.invalid (no network?): download {UNRESOLVABLE} on a machine with "
        f"internet, put it at {tmp_path / 'x.tgz'} and run this again (the file is verified and used)"
    )
    assert isinstance(error.value, DownloadError)  # what callers already catch
    assert waits == [] and no_dns_wait.count("no-such-host.invalid") == 1  # one try, no retry
    assert list(tmp_path.iterdir()) == []  # no .part left behind
    printed = capsys.readouterr()
    assert printed.out == "" and "x.tgz" not in printed.err  # not even an empty progress bar


def test_transient_errors_are_still_retried_beside_the_dns_check(
    server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_dns_wait: list[str]
) -> None:
    base, state = server  # 127.0.0.1: resolves; 503 twice, then the file
    state.fail_times["/data.tgz"] = 2
    waits: list[float] = []
    monkeypatch.setattr(download.time, "sleep", waits.append)
    path = fetch(f"{base}/data.tgz", tmp_path / "data.tgz", sha256=SHA256, policy=FAST, progress=False)
    assert path.read_bytes() == PAYLOAD and len(waits) == 2 and len(state.requests) == 3


def test_a_failed_download_leaves_no_empty_part_file(server, tmp_path: Path, monkeypatch) -> None:
    base, state = server
    with pytest.raises(DownloadError, match=r"missing\.tgz: HTTP 404"):
        fetch(f"{base}/missing.tgz", tmp_path / "missing.tgz", policy=FAST, progress=False)
    state.fail_times["/data.tgz"] = 10
    monkeypatch.setattr(download.time, "sleep", lambda seconds: None)
    with pytest.raises(DownloadError, match="gave up after 3 attempts .*; nothing was received"):
        fetch(f"{base}/data.tgz", tmp_path / "data.tgz", policy=FAST, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_dns_failure_keeps_the_bytes_of_an_earlier_try(tmp_path: Path, no_dns_wait: list[str]) -> None:
    part = tmp_path / "x.tgz.part"
    part.write_bytes(PAYLOAD[:1000])  # an earlier run got this far before the network went
    with pytest.raises(HostNotFoundError):
        fetch(UNRESOLVABLE, tmp_path / "x.tgz", policy=FAST, progress=False)
    assert part.read_bytes() == PAYLOAD[:1000]  # resumed when the network is back


@pytest.mark.slow
def test_prepare_offline_prints_one_line_and_leaves_nothing_partial(tmp_path: Path) -> None:
    """``python src/prepare.py`` with a download from a host that does not resolve, through the real
    resolver (``.invalid`` is answered at once, RFC 6761): no retries even with 5 attempts 30 s apart."""
    data = tmp_path / "data"
    command = [
        sys.executable,
        str(ROOT / "src" / "prepare.py"),
        "data=imagenette",
        "data.source.size=px160",
        f"data.source.sizes.px160.url={UNRESOLVABLE}",
        "data.source.download.backoff_s=30",
        f"paths.data_dir={data}",
        f"paths.log_dir={tmp_path / 'outputs'}",
    ]
    env = run_env(tmp_path) | {"RES_OPTIONS": "timeout:1 attempts:1"}  # glibc: a slow resolver waits 1 s
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    dest = data / "downloads" / "x.tgz"
    assert result.stderr.splitlines() == [
        f"cannot resolve no-such-host.invalid (no network?): download {UNRESOLVABLE} on a machine with "
        f"internet, put it at {dest} and run this again (the file is verified and used)"
    ]
    assert "retrying" not in result.stdout
    assert list((data / "downloads").iterdir()) == []  # no x.tgz.part
    assert not (data / "imagenette-px160").exists() and not (data / "imagenette-px160.partial").exists()
