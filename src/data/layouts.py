"""Find labelled image files on disk in the two layouts we read.

``kaggle``: one folder of files named ``<class>.<number>.<ext>``, as Kaggle's Dogs vs. Cats ``train/``
(``cat.0.jpg``, ``dog.12499.jpg``): the label is the part of the name before the first dot.

``folders``: one sub-folder per class, ``<folder>/<class>/*.jpg``, as ImageNet, Imagenette or PetImages.

``auto`` picks ``folders`` when the folder has sub-folders holding images, else ``kaggle``.

Every visible file of a class folder is a candidate, whatever its name: whether it is an image is for the
decoder to say (``src/data/cache.py`` skips and reports what it cannot decode, ``Thumbs.db`` included), so
no file is dropped silently. In the Kaggle layout a file whose name carries no label is listed in
``ignored``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
LAYOUTS = ("kaggle", "folders", "auto")
_KAGGLE_NAME = re.compile(r"^(?P<label>[^.]+)\.[^.]+\.[^.]+$")

LAYOUT_HELP = {
    "kaggle": "<folder>/<class>.<n>.jpg, e.g. train/cat.0.jpg and train/dog.0.jpg",
    "folders": "<folder>/<class>/<any name>.jpg, e.g. train/cat/1.jpg and train/dog/1.jpg",
}


@dataclass(frozen=True)
class LabelledFiles:
    """Image files with integer labels; ``classes[label]`` is the class name. Sorted, so reproducible."""

    paths: list[Path]
    labels: list[int]
    classes: list[str]
    ignored: tuple[Path, ...] = ()  # files present but not part of the layout (no label in the name)

    def __len__(self) -> int:
        return len(self.paths)


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _visible_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith("."))


def _expected(layout: str) -> str:
    if layout == "auto":
        return f"either {LAYOUT_HELP['kaggle']} or {LAYOUT_HELP['folders']}"
    return LAYOUT_HELP[layout]


def find_labelled_images(folder: str | Path, layout: str = "auto") -> LabelledFiles:
    """Every image under ``folder`` in ``layout``, with its label.

    Raises:
        ValueError: unknown layout.
        FileNotFoundError: ``folder`` does not exist (the message names it and the expected layout).
        ValueError: ``folder`` holds no image in that layout (likewise).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"data.layout={layout!r} is not known; choose one of {', '.join(LAYOUTS)}")
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist; expected {_expected(layout)}")
    if layout == "auto":
        has_class_dirs = any(
            child.is_dir() and any(_is_image(f) for f in child.iterdir()) for child in folder.iterdir()
        )
        layout = "folders" if has_class_dirs else "kaggle"

    named: list[tuple[Path, str]] = []
    ignored: list[Path] = []
    if layout == "folders":
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            named += [(f, class_dir.name) for f in _visible_files(class_dir)]
        ignored = _visible_files(folder)
    else:
        for f in _visible_files(folder):
            match = _KAGGLE_NAME.match(f.name)
            if match:
                named.append((f, match["label"].lower()))
            else:
                ignored.append(f)

    if not any(_is_image(p) for p, _ in named):
        raise ValueError(f"no images found in {folder} (layout {layout}); expected {_expected(layout)}")
    classes = sorted({name for _, name in named})
    index = {name: i for i, name in enumerate(classes)}
    return LabelledFiles([p for p, _ in named], [index[n] for _, n in named], classes, tuple(ignored))
