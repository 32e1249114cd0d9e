"""Run W&B offline by itself when there is no API key, and say where the offline files went.

W&B asks for a key on the terminal (or waits on the network) when it has none. A researcher on a laptop or
an air-gapped cluster node should get a run anyway: with no ``WANDB_API_KEY``, no key stored by
``wandb login`` and no ``WANDB_MODE`` chosen by the user, we set ``WANDB_MODE=offline`` before the logger
starts. ``wandb sync <run dir>`` uploads such a run later.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path

WANDB_HOST = "api.wandb.ai"


def has_wandb_key() -> bool:
    """True when W&B could authenticate: an environment key or a ``wandb login`` entry in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc_path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return netrc.netrc(netrc_path).authenticators(WANDB_HOST) is not None
    except (FileNotFoundError, netrc.NetrcParseError, PermissionError):
        return False


def choose_wandb_mode() -> str:
    """Set ``WANDB_MODE=offline`` unless the user chose a mode or has a key; return the mode in force."""
    if "WANDB_MODE" not in os.environ and not has_wandb_key():
        os.environ["WANDB_MODE"] = "offline"
    os.environ.setdefault("WANDB_SILENT", "true")
    return os.environ.get("WANDB_MODE", "online")


def offline_run_dirs(save_dir: str | Path) -> list[Path]:
    """The offline run folders W&B wrote under ``save_dir`` (``wandb/offline-run-<time>-<id>``)."""
    return sorted((Path(save_dir) / "wandb").glob("offline-run-*"))
