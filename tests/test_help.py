"""``--help`` of every entry point: what the script does, its keys and an example (issue #26).

Hydra's default help is "<name> is powered by Hydra", the config groups of the whole conf/ folder, and the
whole composed config (over 100 lines for src/eval.py); each script selects its own page instead
(``conf/hydra/help/<script>.yaml``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CONF, ROOT, run_env

#: script -> (its purpose, as the help's first line starts, and a key its help must name)
PAGES = {
    "eval": ("src/eval.py: evaluate a checkpoint", "ckpt_path=PATH        required"),
    "analyse": ("src/analyse.py: score one net's first layer", "source=caffenet"),
    "prepare": ("src/prepare.py: get a dataset ready without training", "data=NAME"),
    "train": ("src/train.py: train an N-tower AlexNet", "data.root=PATH"),
}


# The script's --help without its imports of torch and Lightning (seconds): a bare app on its config, as
# tests/test_debug_configs.py does for src/train.py; test_each_script_uses_its_config checks the scripts.
HELP_APP = """
import sys, hydra
sys.argv = ["src/{script}.py", "--help"]
hydra.main(version_base="1.3", config_path={conf!r}, config_name="{script}")(lambda cfg: None)()
"""


def help_text(script: str, tmp_path: Path) -> str:
    app = HELP_APP.format(script=script, conf=str(CONF))
    result = subprocess.run(
        [sys.executable, "-c", app], cwd=tmp_path, env=run_env(tmp_path), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize("script", sorted(PAGES))
def test_help_says_what_the_script_does_with_an_example(script: str, tmp_path: Path) -> None:
    text = help_text(script, tmp_path)
    purpose, key = PAGES[script]
    assert text.startswith(purpose)
    assert key in text
    examples = [line.strip() for line in text.splitlines() if line.startswith(f"  python src/{script}.py ")]
    assert examples, text  # at least one example command, indented under the usage line
    assert "is powered by Hydra" not in text
    assert "== Config ==" not in text and "_target_" not in text  # not the composed config
    assert len(text.splitlines()) < 60  # a page, not the config (src/eval.py printed 105 lines)


def test_each_script_uses_its_config_and_its_config_its_help_page() -> None:
    for script in PAGES:
        source = (ROOT / "src" / f"{script}.py").read_text()
        assert f'@hydra.main(version_base="1.3", config_path="../conf", config_name="{script}")' in source
        config = (ROOT / "conf" / f"{script}.yaml").read_text()
        assert f"override hydra/help: {script}" in config
        assert (ROOT / "conf" / "hydra" / "help" / f"{script}.yaml").is_file()
