"""Get a dataset ready: ``python src/prepare.py data=<name> [data.source....=...]``.

Runs the data config's ``prepare_data``, exactly what the first training run with that config does:
download and verify the archives, extract them safely, lay the images out in ``data.root``
(``src/datasets/recipes.py``), and build the offline cache (``src/data/cache.py``). Doing it apart from
training lets a researcher fetch the data once, on a machine with internet, and see what it holds.

    python src/prepare.py data=petimages
    python src/prepare.py data=kaggle data.source.path=~/Downloads/train.zip
    python src/prepare.py data=oxford_pets_breeds
    python src/prepare.py data=imagenette data.source.size=px160

A download that cannot be made (no network, a file gone from its server, a checksum that does not match)
ends the command with its one-line message (``src/datasets/download.py``) and exit code 1, no traceback;
``python src/prepare.py --help`` lists the keys.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from src.data.cache import CacheSpaceError
from src.data.layouts import find_labelled_images
from src.datasets.archives import ArchiveError
from src.datasets.download import ChecksumError, DownloadError
from src.runs.overrides import command_line
from src.utils.console import say
from src.utils.exits import INTERRUPTED_EXIT_CODE


def prepare(cfg: DictConfig) -> dict[str, dict[str, int]]:
    """Prepare ``cfg.data``; return, per split present, the number of files in each class."""
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    found: dict[str, dict[str, int]] = {}
    for split in ("train", "test"):
        folder = Path(datamodule.root) / split
        if not folder.is_dir():
            continue
        files = find_labelled_images(folder, datamodule.layout)
        found[split] = {name: files.labels.count(i) for i, name in enumerate(files.classes)}
        say(f"{split}: {len(files):,} files in {len(files.classes)} classes, {folder}")
    return found


@hydra.main(version_base="1.3", config_path="../conf", config_name="prepare")
def main(cfg: DictConfig) -> None:
    try:
        prepare(cfg)
    except (DownloadError, ChecksumError, ArchiveError, CacheSpaceError) as error:  # says what to do
        raise SystemExit(str(error)) from None
    except KeyboardInterrupt:  # the cache build said what it kept; no traceback
        raise SystemExit(INTERRUPTED_EXIT_CODE) from None
    hydra_cfg = HydraConfig.get()
    same_data = [f"data={hydra_cfg.runtime.choices.get('data')}"]  # and the overrides that shape the data
    same_data += [o for o in hydra_cfg.overrides.task if o.startswith(("data.", "paths.data_dir"))]
    say(f"ready: python src/train.py {' '.join(same_data)}")


if __name__ == "__main__":
    sys.argv[1:] = command_line(sys.argv[1:])  # key=~/..., old key spellings (src/runs/overrides.py)
    main()
