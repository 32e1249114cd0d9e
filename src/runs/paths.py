"""Where a run's data, cache and outputs go: ``paths.root_dir`` and what follows from it, from the config.

``conf/paths/default.yaml`` sets ``root_dir: ${project_root:}``, the repository root (the folder holding
``src/`` and ``conf/``), computed from this file's place, not read from the environment. ``data_dir`` and
``log_dir`` follow it unless ``conf/local/default.yaml`` or the command line set them.

An environment variable ``PROJECT_ROOT`` (a rootutils project's ``.env`` exports one) used to move all of it:
set to another project's folder, the data, its cache and the run folders went there; set but empty, to
``/data`` and ``/outputs`` at the filesystem root. It is read no more, and a value that is not this
repository's root is refused before Hydra starts (``check_inherited_root``, called by ``command_line`` in
``src/runs/overrides.py``, which every entry point runs first), with one line saying to set
``paths.root_dir`` instead: a user who set it meaning to move the outputs learns that it does not.

Importing this module registers the ``project_root`` resolver; ``src/runs/overrides.py`` imports it, so every
entry point has it before Hydra composes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

#: The repository root: the folder holding ``src/`` and ``conf/``. The project's one answer to "where is
#: the repository": entry points, the bench and the notebook import it rather than work it out again.
REPO_ROOT = Path(__file__).resolve().parents[2]
#: The Hydra configuration folder (``conf/``).
CONF_DIR = REPO_ROOT / "conf"
RESOLVER = "project_root"
ENV_VAR = "PROJECT_ROOT"


def register_resolver() -> None:
    """``${project_root:}`` in a config is ``REPO_ROOT`` (registered once per process)."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, lambda: str(REPO_ROOT))


def check_inherited_root(environ: Mapping[str, str] = os.environ) -> None:
    """``SystemExit`` with one line if ``PROJECT_ROOT`` is set to anything but this repository's root
    (empty included); unset, or this root (as the entry points used to set it), passes."""
    value = environ.get(ENV_VAR)
    if value is None:
        return
    if value.strip() and Path(value).expanduser().resolve() == REPO_ROOT:
        return
    shown = repr(value) if not value.strip() else value
    raise SystemExit(
        f"error: {ENV_VAR}={shown} is set in the environment, but this project's root is {REPO_ROOT} and "
        f"{ENV_VAR} does not move its data or outputs: unset it (a .env file of another project may export "
        f"it), and to write elsewhere set paths.root_dir=<folder> (or paths.data_dir, paths.log_dir) on the "
        "command line or in conf/local/default.yaml"
    )


def folders_line(cfg: Any) -> str:
    """One line naming the run's data, cache and output folders, as the composed ``cfg`` resolves them."""
    data = cfg.data
    return f"data: {data.get('root')}  cache: {data.get('cache_dir')}  outputs: {cfg.paths.output_dir}"


register_resolver()
