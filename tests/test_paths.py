"""``~`` in path settings (``src/utils/paths.py``); the project's root and an inherited ``PROJECT_ROOT``
(``src/runs/paths.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from src.utils.paths import expand_home, expand_home_in_overrides
from tests.conftest import CONF, ROOT


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


# -- the project's root comes from the config, never from an inherited PROJECT_ROOT (#27) ------------------


def paths_as_resolved(env_value: str | None, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``src/train.py --cfg job --resolve --package paths`` with ``PROJECT_ROOT`` as given (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "PROJECT_ROOT"} | {"HOME": str(tmp_path)}
    if env_value is not None:
        env["PROJECT_ROOT"] = env_value
    show = ["--cfg", "job", "--resolve", "--package", "paths"]
    command = [sys.executable, str(ROOT / "src" / "train.py"), *show]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("value", ["", "foreign"])
def test_an_inherited_project_root_is_refused_in_one_line(value: str, tmp_path: Path) -> None:
    # It moved data, cache and outputs there; empty, to /data and /outputs at the filesystem root.
    inherited = str(tmp_path / value) if value else ""
    result = paths_as_resolved(inherited, tmp_path)
    assert result.returncode != 0, result.stdout
    (line,) = result.stderr.strip().splitlines()
    assert f"PROJECT_ROOT={inherited or repr('')}" in line and "paths.root_dir" in line, line
    assert "root_dir" not in result.stdout


def test_paths_follow_the_repository_root_without_the_variable(tmp_path: Path) -> None:
    for value in (None, str(ROOT)):  # unset, or set to this root as the entry points did
        result = paths_as_resolved(value, tmp_path)
        assert result.returncode == 0, result.stderr
        assert f"root_dir: {ROOT}\n" in result.stdout and f"data_dir: {ROOT}/data\n" in result.stdout


def test_the_composed_root_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from src.runs.paths import REPO_ROOT, check_inherited_root  # registers ${project_root:}

    monkeypatch.setenv("PROJECT_ROOT", "")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train")
    assert (cfg.paths.root_dir, cfg.paths.data_dir, cfg.data.cache_dir) == (
        str(REPO_ROOT),
        f"{ROOT}/data",
        f"{ROOT}/data/cache",
    )
    with pytest.raises(SystemExit, match="PROJECT_ROOT=''"):
        check_inherited_root({"PROJECT_ROOT": ""})
    check_inherited_root({})
    check_inherited_root({"PROJECT_ROOT": f"{ROOT}/src/.."})
