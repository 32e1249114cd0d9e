"""Choose how W&B runs before the logger starts: online when it can, else offline with a line saying why.

W&B asks for a key on the terminal (or waits on the network) when it has none, and with a key but no network
(wandb 0.31) it is silent for about 90 s and then fails the run with a ``CommError``. A researcher on a laptop
or an air-gapped cluster node should get a run anyway, at once. So ``choose_wandb_mode``, unless the user
chose a mode (``WANDB_MODE``):

* with no ``WANDB_API_KEY`` and no key stored by ``wandb login``, sets ``WANDB_MODE=offline``;
* with a key, opens a TCP connection to the W&B server (``WANDB_BASE_URL``, or the ``HTTPS_PROXY`` in between)
  and, if none is made within ``REACH_TIMEOUT_S`` seconds (the name lookup included), sets
  ``WANDB_MODE=offline``. We chose going offline over stopping: the run keeps every metric and picture in
  its offline folder, and ``wandb sync <run dir>/wandb/offline-run-*`` uploads it later.

Each choice that was not the user's is said in one line. ``WANDB_MODE=disabled`` is the user's to choose, and
it saves no metrics anywhere (W&B writes no files at all): the line says so, and that ``logger=wandb_csv`` or
``logger=csv`` keeps them in a CSV file.
"""

from __future__ import annotations

import netrc
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

WANDB_HOST = "api.wandb.ai"
WANDB_URL = f"https://{WANDB_HOST}"
REACH_TIMEOUT_S = 3.0  # a TCP handshake takes milliseconds when the network is there


def has_wandb_key() -> bool:
    """True when W&B could authenticate: an environment key or a ``wandb login`` entry in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc_path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return netrc.netrc(netrc_path).authenticators(WANDB_HOST) is not None
    except (FileNotFoundError, netrc.NetrcParseError, PermissionError):
        return False


def server_address() -> tuple[str, int]:
    """The host and port a W&B request first connects to: the HTTPS proxy if one is set, else the server."""
    url = os.environ.get("WANDB_BASE_URL") or WANDB_URL
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    parts = urlsplit(proxy if proxy and url.startswith("https") else url)
    if not parts.hostname:
        raise ValueError(f"WANDB_BASE_URL={url!r} (or the proxy {proxy!r}) names no host")
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def unreachable(address: tuple[str, int], timeout_s: float = REACH_TIMEOUT_S) -> str | None:
    """Why no TCP connection to ``address`` was made within ``timeout_s`` seconds (name lookup included), or
    ``None`` if one was.

    The lookup has no timeout of its own (a resolver without a network can hang for tens of seconds), so
    the attempt runs on a daemon thread that is abandoned when the time is up.
    """
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            with socket.create_connection(address, timeout=timeout_s):
                outcome.append(None)
        except OSError as error:
            outcome.append(error.strerror or type(error).__name__)

    attempt = threading.Thread(target=connect, name="wandb-reachable", daemon=True)
    attempt.start()
    attempt.join(timeout_s)
    return outcome[0] if outcome else f"no answer within {timeout_s:g} s"


def choose_wandb_mode(timeout_s: float = REACH_TIMEOUT_S) -> tuple[str, str | None]:
    """Set ``WANDB_MODE`` as the module docstring says; return the mode in force and the line to print
    about it (``None`` when there is nothing to say: online, or offline by the user's own choice)."""
    os.environ.setdefault("WANDB_SILENT", "true")
    chosen = os.environ.get("WANDB_MODE")
    if chosen == "disabled":
        return chosen, (
            "W&B: WANDB_MODE=disabled: W&B saves nothing, neither online nor offline; to keep the metrics in "
            "a CSV file as well, add logger=wandb_csv (or logger=csv)"
        )
    if chosen:
        return chosen, None
    if not has_wandb_key():
        os.environ["WANDB_MODE"] = "offline"
        return "offline", (
            "W&B: no API key found, logging offline (set WANDB_API_KEY or run `wandb login` to go online)"
        )
    address = server_address()
    why = unreachable(address, timeout_s)
    if why is not None:
        os.environ["WANDB_MODE"] = "offline"
        return "offline", (
            f"W&B: {address[0]}:{address[1]} cannot be reached ({why}), so this run logs offline; upload it "
            "later with `wandb sync`, or set WANDB_MODE=offline to skip this check"
        )
    return "online", None


def offline_run_dirs(save_dir: str | Path) -> list[Path]:
    """The offline run folders W&B wrote under ``save_dir`` (``wandb/offline-run-<time>-<id>``)."""
    return sorted((Path(save_dir) / "wandb").glob("offline-run-*"))
