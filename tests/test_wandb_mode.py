"""How W&B is set to run: offline within seconds when its server cannot be reached, and said in one line."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from src.loggers import wandb_run
from src.loggers.wandb_run import choose_wandb_mode, server_address, unreachable


@pytest.fixture(autouse=True)
def clean_wandb_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Each variable absent during the test and restored after it, also when the code under test sets it
    itself (``choose_wandb_mode`` writes WANDB_MODE and WANDB_SILENT): set first, so that monkeypatch
    records the value to restore, then deleted."""
    for name in (
        "WANDB_MODE",
        "WANDB_SILENT",
        "WANDB_API_KEY",
        "WANDB_BASE_URL",
        "HTTPS_PROXY",
        "https_proxy",
    ):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_key_without_a_reachable_server_goes_offline_at_once(
    monkeypatch: pytest.MonkeyPatch, closed_port: int
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_port}")
    timeouts: list[float] = []
    connect = wandb_run.socket.create_connection

    def timed_connect(address: tuple[str, int], timeout: float) -> socket.socket:
        timeouts.append(timeout)
        return connect(address, timeout=timeout)

    monkeypatch.setattr(wandb_run.socket, "create_connection", timed_connect)
    mode, line = choose_wandb_mode()
    assert timeouts == [wandb_run.REACH_TIMEOUT_S]  # one attempt, bounded by the timeout
    assert mode == "offline"
    assert wandb_run.os.environ["WANDB_MODE"] == "offline"
    assert line is not None and f"127.0.0.1:{closed_port} cannot be reached" in line and "wandb sync" in line


def test_a_name_lookup_that_hangs_is_abandoned_after_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def hang(*args: object, **kwargs: object) -> None:
        release.wait(30)  # hangs until the test is done with it; then fails as a lookup that gave up would
        raise TimeoutError("lookup gave up")

    monkeypatch.setattr(wandb_run.socket, "create_connection", hang)
    assert unreachable(("api.wandb.ai", 443), timeout_s=0.5) == "no answer within 0.5 s"  # returned, not hung
    release.set()


def test_a_key_and_a_reachable_server_stay_online(
    monkeypatch: pytest.MonkeyPatch, listening_port: int
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{listening_port}")
    assert choose_wandb_mode() == ("online", None)
    assert "WANDB_MODE" not in wandb_run.os.environ


def test_the_https_proxy_is_what_must_be_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert server_address() == ("proxy.example", 3128)
    monkeypatch.delenv("HTTPS_PROXY")
    assert server_address() == ("api.wandb.ai", 443)


def test_no_key_goes_offline_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    mode, line = choose_wandb_mode()
    assert mode == "offline" and line is not None and "no API key" in line


def test_the_users_own_mode_is_kept_and_disabled_says_nothing_is_saved(
    monkeypatch: pytest.MonkeyPatch, closed_port: int
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert choose_wandb_mode() == ("offline", None)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    mode, line = choose_wandb_mode()
    assert mode == "disabled"
    assert line is not None and "saves nothing" in line and "csv/version_*/metrics.csv" in line
