"""Find labelled image files on disk in the two layouts we read.

``kaggle``: one folder of files named ``<class>.<number>.<ext>``, as Kaggle's Dogs vs. Cats ``train/``
(``cat.0.jpg``, ``dog.12499.jpg``): the label is the part of the name before the first dot.

``folders``: one sub-folder per class, ``<folder>/<class>/*.jpg``, as ImageNet, Imagenette or PetImages.

``auto`` picks ``folders`` when the folder has sub-folders holding images, else ``kaggle``.

Every visible file of a class folder is a candidate, whatever its name: whether it is an image is for the
decoder to say (``src/data/cache.py`` skips and reports what it cannot decode, ``Thumbs.db`` included), so
no file is dropped silently. What is not read is listed in ``ignored``, each entry with its reason in
``ignored_reasons`` (the datamodule prints them): hidden files and folders (``.DS_Store``), sub-folders of
a class folder (their files are not read: a class is one flat folder), broken symbolic links, files outside
any class folder, and, in the Kaggle layout, files whose name carries no label. A class folder with nothing
to read is an error naming it and what it holds: it would silently be no class at all.

``select_classes`` keeps a subset of the classes found (``data.classes``): the first N class names in
sorted order, or the ones named; the others' files are not read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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
    ignored: tuple[Path, ...] = ()  # entries present but not read (see the module docstring)
    ignored_reasons: tuple[str, ...] = ()  # why, one per entry of ``ignored``

    def __len__(self) -> int:
        return len(self.paths)


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _not_read(entry: Path) -> str | None:
    """Why ``entry`` of an image folder is not read; ``None`` for a candidate (a visible file, or a link to
    one)."""
    if entry.name.startswith("."):
        return "hidden"
    if entry.is_file():
        return None
    if entry.is_symlink() and not entry.exists():
        return "a broken link"
    if entry.is_dir():
        return f"a sub-folder, {sum(1 for f in entry.rglob('*') if f.is_file())} files not read"
    return "not a regular file"


def _entries(folder: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The candidate files of ``folder``, and what is not read, with why."""
    files, ignored = [], []
    for entry in sorted(folder.iterdir()):
        why = _not_read(entry)
        if why is None:
            files.append(entry)
        else:
            ignored.append((entry, why))
    return files, ignored


def expected_layout(layout: str) -> str:
    """What ``layout`` expects to find in a split folder, in words (for error messages)."""
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
        raise FileNotFoundError(f"image folder {folder} does not exist; expected {expected_layout(layout)}")
    if layout == "auto":
        has_class_dirs = any(
            child.is_dir() and any(_is_image(f) for f in child.iterdir()) for child in folder.iterdir()
        )
        layout = "folders" if has_class_dirs else "kaggle"

    named: list[tuple[Path, str]] = []
    ignored: list[tuple[Path, str]] = []
    if layout == "folders":
        for entry in sorted(folder.iterdir()):
            if not entry.is_dir() or entry.name.startswith("."):
                ignored.append((entry, _not_read(entry) or "outside any class folder"))
                continue
            files, not_read = _entries(entry)
            if not files:
                _empty_class(entry, not_read)
            named += [(f, entry.name) for f in files]
            ignored += not_read
    else:
        top_files, ignored = _entries(folder)
        for f in top_files:
            match = _KAGGLE_NAME.match(f.name)
            if match:
                named.append((f, match["label"].lower()))
            else:
                ignored.append((f, "no <class>.<n>.<ext> name"))

    if not any(_is_image(p) for p, _ in named):
        raise ValueError(f"no images found in {folder} (layout {layout}); expected {expected_layout(layout)}")
    classes = sorted({name for _, name in named})
    index = {name: i for i, name in enumerate(classes)}
    return LabelledFiles(
        [p for p, _ in named],
        [index[n] for _, n in named],
        classes,
        tuple(p for p, _ in ignored),
        tuple(why for _, why in ignored),
    )


def select_classes(files: LabelledFiles, classes: int | Sequence[str] | None, folder: Path) -> LabelledFiles:
    """The files of some of the classes (``data.classes``), relabelled 0..n-1 in sorted order.

    ``classes``: None keeps every class; a number N the first N class names in sorted order (the same on
    every run); a list the classes it names. ValueError naming ``data.classes`` and ``folder`` for an N
    outside 1..(classes found), an empty list, a repeated name, or a name that is no class of ``folder``.
    """
    if classes is None:
        return files
    found = files.classes
    if isinstance(classes, int) and not isinstance(classes, bool):
        if not 1 <= classes <= len(found):
            raise ValueError(
                f"data.classes={classes}: {folder} has {len(found)} classes; give a number from 1 to "
                f"{len(found)}, a list of class names, or null for all"
            )
        keep = found[:classes]
    elif isinstance(classes, Sequence) and not isinstance(classes, str):
        wanted = [str(name) for name in classes]
        unknown = [name for name in wanted if name not in found]
        if not wanted or unknown or len(set(wanted)) < len(wanted):
            why = f"no class {unknown} in {folder}" if unknown else "each class once, at least one"
            raise ValueError(
                f"data.classes={wanted}: {why} (its {len(found)} classes: {', '.join(found[:5])}"
                f"{', ...' if len(found) > 5 else ''})"
            )
        keep = sorted(wanted)
    else:
        raise ValueError(
            f"data.classes={classes!r}: expected null (every class), a number N (the first N class names "
            "in sorted order) or a list of class names, e.g. data.classes=[cat,dog]"
        )
    index = {name: i for i, name in enumerate(keep)}
    kept = [
        (path, index[found[label]])
        for path, label in zip(files.paths, files.labels, strict=True)
        if found[label] in index
    ]
    return LabelledFiles(
        [path for path, _ in kept], [label for _, label in kept], keep, files.ignored, files.ignored_reasons
    )


def _empty_class(class_dir: Path, not_read: list[tuple[Path, str]]) -> None:
    held = "; ".join(f"{p.name} ({why})" for p, why in not_read[:5])
    what = f"{len(not_read)} entries not read: {held}" if not_read else "it is empty"
    raise ValueError(
        f"class folder {class_dir} (class {class_dir.name!r}) has 0 files to read ({what}); every "
        f"sub-folder of {class_dir.parent} is a class: fill it or remove it"
    )


def describe_ignored(files: LabelledFiles, folder: Path, shown: int = 5) -> str:
    """``<entry> (<why>); ...`` for the first ``shown`` entries not read, paths relative to ``folder``."""
    parts = [
        f"{p.relative_to(folder) if p.is_relative_to(folder) else p} ({why})"
        for p, why in zip(files.ignored[:shown], files.ignored_reasons[:shown], strict=False)
    ]
    more = len(files.ignored) - shown
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
