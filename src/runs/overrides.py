"""A run's command-line overrides (``key=value``, ``+key=value``, ``~key``, ``group=option``), read as Hydra
reads them: what a resumed run replays (``src/runs/resume.py``) and what a sweep's table shows
(``src/runs/sweeps.py``).

Before Hydra parses a command line, the entry points pass it through ``command_line``: ``~`` is expanded
(``src/utils/paths.py``) and a key that was renamed is written in its new spelling (``RENAMED_KEYS``), so the
old spelling keeps working, on the command line and in the overrides an older run saved. It also refuses an
inherited ``PROJECT_ROOT`` that is not this repository's root (``src/runs/paths.py``), and importing this
module registers the ``${project_root:}`` resolver that ``conf/paths/default.yaml`` reads.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from src.runs.folders import HYDRA_OVERRIDES
from src.runs.paths import check_inherited_root
from src.utils.paths import expand_home_in_overrides

#: Old key -> new key (its sub-keys follow): the synthetic set's settings moved under ``data.source``, where
#: every dataset keeps what makes its files; ``compile`` is the run's choice, not the network's.
RENAMED_KEYS = {"data.generate": "data.source", "model.compile": "compile"}


def override_key(override: str) -> str:
    """The key an override sets: ``+a.b=1`` -> ``a.b``, ``~a`` -> ``a``, ``model=one_tower`` -> ``model``."""
    return override.lstrip("+~").split("=", 1)[0]


def override_value(override: str) -> str:
    """The value of ``key=value``, without the quotes Hydra would strip."""
    value = override.split("=", 1)[1] if "=" in override else ""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return value


def last_value(overrides: list[str], key: str) -> str | None:
    """The value the last override of ``key`` gives (``None`` if none sets it)."""
    found = None
    for override in overrides:
        if "=" in override and not override.startswith("~") and override_key(override) == key:
            found = override_value(override)
    return found


def merge_overrides(saved: list[str], new: list[str]) -> list[str]:
    """``saved`` then ``new``, one override per key, the later winning (in its place at the end).

    An override that replaces a saved ``+key=...`` (which added a key the config lacks) becomes
    ``++key=...``, so it still applies to the composed config. A saved ``+a.b=...`` is replayed as
    ``++a.b=...`` (add or replace): the config may have declared the key since the run started (the trainer
    keys of ``conf/trainer/default.yaml``, say), and a plain ``+`` would then fail with "an item is already
    at 'a.b'". Config groups (``+experiment=...``, no dot) are replayed as saved.
    """
    merged: dict[str, str] = {}
    for override in [*map(add_or_replace, saved), *new]:
        key = override_key(override)
        previous = merged.pop(key, None)
        if previous is not None and previous.startswith("+") and not override.startswith(("+", "~")):
            override = "++" + override
        merged[key] = override
    return list(merged.values())


def add_or_replace(override: str) -> str:
    """``+a.b=1`` -> ``++a.b=1`` for a config value (a dotted key); anything else as it is."""
    key = override_key(override)
    single_plus = override.startswith("+") and not override.startswith("++")
    is_value = "." in key and "/" not in key and "@" not in key
    return "+" + override if single_plus and is_value else override


def saved_overrides(run_dir: Path) -> list[str]:
    """The task overrides a run was started with (``<run>/.hydra/overrides.yaml``), or ``[]``."""
    path = run_dir / HYDRA_OVERRIDES
    if not path.is_file():
        return []
    return [respell(str(o)) for o in yaml.safe_load(path.read_text()) or []]


def respell(override: str) -> str:
    """``override`` with a renamed key in its new spelling: ``data.generate.seed=1`` -> ``data.source.seed=1``
    (``RENAMED_KEYS``); any other override as it is."""
    key = override_key(override)
    for old, new in RENAMED_KEYS.items():
        if key == old or key.startswith(old + "."):
            start = override.index(old)
            return override[:start] + new + override[start + len(old) :]
    return override


def command_line(argv: list[str]) -> list[str]:
    """The command line (without the program name) as Hydra is to read it: ``~`` expanded in every
    ``key=value``, renamed keys in their new spelling. Flags (``-m``) are left alone. ``SystemExit`` for an
    inherited ``PROJECT_ROOT`` that is not this repository's root (``check_inherited_root``)."""
    check_inherited_root()
    return [arg if arg.startswith("-") else respell(arg) for arg in expand_home_in_overrides(argv)]


def run_dir_argument(argv: list[str]) -> Path | None:
    """The run folder a command line names (its last ``hydra.run.dir=``), or None: none given, a multirun
    (``-m``), or a value Hydra still has to resolve (``${now:...}``: a new folder each time)."""
    if any(arg in ("-m", "--multirun") for arg in argv):
        return None
    value = last_value(argv, "hydra.run.dir")
    if not value or "${" in value:
        return None
    return Path(value).expanduser().absolute()
