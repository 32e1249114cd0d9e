"""``~`` in path settings means the home folder, on the command line and in config files alike.

Hydra's override parser rejects an unquoted ``~`` (``data.source.path=~/Downloads/train.zip`` fails with
"token recognition error at: '~'"), a shell does not expand it after ``key=`` when the key has a dot in it,
and a quoted one (``data.root='~/data'``) reached the code as a relative folder literally named ``~``.
So the entry points expand ``~`` in every ``key=value`` of their command line before Hydra parses it
(``expand_home_in_overrides``), and the code that opens a path setting expands it too (``expand_home``),
for values that come from config files (``conf/local/default.yaml``, say).
"""

from __future__ import annotations

import os
from pathlib import Path


def expand_home(path: str | os.PathLike[str]) -> Path:
    """``path`` with a leading ``~`` or ``~user`` replaced by that home folder."""
    return Path(os.path.expanduser(os.fspath(path)))


def expand_home_in_overrides(argv: list[str]) -> list[str]:
    """The command line with ``key=~/...`` written as ``key=/home/me/...`` (``key='~/...'`` likewise, quoted).

    Flags (``-m``) and arguments without ``=`` are left alone, and so is a key's leading ``~`` (Hydra's
    "delete this key").
    """
    expanded = []
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            expanded.append(arg)
            continue
        key, value = arg.split("=", 1)
        quoted = len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""
        inner = value[1:-1] if quoted else value
        if inner.startswith("~") and os.path.expanduser(inner) != inner:
            value = value[0] + os.path.expanduser(inner) + value[0] if quoted else os.path.expanduser(inner)
        expanded.append(f"{key}={value}")
    return expanded
