"""``~`` in path settings (``src/utils/paths.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from src.utils.paths import expand_home, expand_home_in_overrides


def test_a_tilde_in_a_setting_is_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    argv = [
        "data.source.path=~/Downloads/train.zip",  # Hydra's parser rejects this as it is
        "data.root='~/data'",  # quoted for Hydra: reached the code as a folder named ~
        "~callbacks.progress_bar",  # Hydra's "delete this key", not a path
        "-m",
        "seed=1",
        "tags=[a~b]",
    ]
    assert expand_home_in_overrides(argv) == [
        f"data.source.path={tmp_path}/Downloads/train.zip",
        f"data.root='{tmp_path}/data'",
        "~callbacks.progress_bar",
        "-m",
        "seed=1",
        "tags=[a~b]",
    ]
    assert expand_home("~/x") == tmp_path / "x" and expand_home("/a/~b") == Path("/a/~b")
