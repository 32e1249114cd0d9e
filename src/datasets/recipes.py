"""Real datasets: download, verify, extract, and lay out as ``<root>/train`` (and ``<root>/test``).

``prepare_dataset(root, dataset, files, ...)`` is what ``ImageDataModule.prepare_data`` runs when the data
config has a ``source`` (``conf/data/petimages.yaml`` and friends), and so what ``python src/prepare.py
data=<name>`` and the first training run do. The recipes:

=============  ===========================================================================================
``petimages``  Microsoft's ``kagglecatsanddogs_5340.zip``: ``PetImages/{Cat,Dog}/*`` -> ``train/{Cat,Dog}/``
               (folders layout). Every file goes, ``Thumbs.db`` and the undecodable ``Cat/666.jpg``
               included: the cache skips them and lists them in ``skipped.tsv`` (``src/data/cache.py``).
               No test set.
``kaggle``     Kaggle's Dogs vs Cats ``train.zip`` (or the competition's ``dogs-vs-cats.zip`` holding it,
               or an unzipped ``train/`` folder) from a local path (Kaggle needs a login):
               ``train/cat.N.jpg`` -> ``train/cat.N.jpg`` (kaggle layout). ``test1/`` has no labels.
``oxford_pets`` Oxford-IIIT Pet ``images.tar.gz`` + ``annotations.tar.gz``: the official lists
               ``annotations/trainval.txt`` -> ``train/<class>/``, ``test.txt`` -> ``test/<class>/``; the
               class is the species (``target: species``: cat, dog) or the breed (``target: breeds``: 37,
               the image name up to its last ``_``).
``imagenette`` fast.ai's ``imagenette2[-320|-160].tgz``: ``train/<wnid>/`` -> ``train/<wnid>/``, the official
               ``val/<wnid>/`` -> ``test/<wnid>/`` (the validation set is split off ``train/`` as usual).
``tiny_imagenet`` Stanford's ``tiny-imagenet-200.zip`` (or a local copy: the zip or its extracted folder):
               ``train/<wnid>/images/*.JPEG`` -> ``train/<wnid>/`` for the wnids of ``wnids.txt``, the
               official ``val/images/`` -> ``test/<wnid>/`` by ``val/val_annotations.txt``; the official
               ``test/`` has no labels and is left out. The classes are the wnid folders, as Imagenette's.
=============  ===========================================================================================

Where the files go (all under ``data/`` by default):

- ``downloads/<file>``: the verified archives (``download.py``), kept so that the links can be made again
  without the network; delete them to get the disk back.
- ``extracted/<archive>/``: each archive, extracted safely and atomically (``archives.py``).
- ``<root>/``: **hard links** to the extracted files (``HardLinks``): no second copy on disk, and
  both Oxford trees (species, breeds) share one extraction. Where a hard link is impossible (another
  filesystem), the file is copied, and the summary says so. The tree is built in ``<root>.partial/``,
  gets ``prepared.json`` (what it was made from, per-split counts) and is renamed to ``<root>``: a root
  with ``prepared.json`` is complete.

A ``<root>`` that already has ``train/`` or ``test/`` but no ``prepared.json`` was laid out by hand; it is
used as it is (so ``data=kaggle`` works on a ``train/`` you unzipped yourself).

``prepared.json`` records the source (``source``): a local file's resolved path, size and modification time
(``data.source.path``: kaggle, tiny_imagenet), a local folder's path, or each download's URL and sha256.
A later run naming another source (another path, the same path holding a different file, another pinned
sha256) prepares the root again and says so in one line; the new layout replaces the old one only once it
is complete (until then, and if it fails, the root holds the old source's layout, whole). A run that names
no path (``python src/train.py data=kaggle``) uses the root as prepared. A ``data.source.path`` that is
neither a zip nor a tar archive (nor a folder) is refused in one line naming it and what was expected.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from src.datasets.archives import (
    ArchiveError,
    ExtractLimits,
    NotAnArchiveError,
    check_archive,
    extract_archive,
)
from src.datasets.download import RetryPolicy, check_hashes, fetch
from src.utils.atomic import write_atomic
from src.utils.console import say
from src.utils.locks import exclusive
from src.utils.paths import expand_home

MARKER = "prepared.json"
SPLITS = ("train", "test")
KAGGLE_HELP = (
    "Kaggle's Dogs vs Cats needs a Kaggle account: accept the rules at "
    "https://www.kaggle.com/c/dogs-vs-cats, then download train.zip from "
    "https://www.kaggle.com/c/dogs-vs-cats/data, or with the Kaggle API: "
    "`kaggle competitions download -c dogs-vs-cats` (gives dogs-vs-cats.zip, which holds train.zip). "
    "Then run `python src/prepare.py data=kaggle data.source.path=/path/to/train.zip` (the zip, or the "
    "unzipped train/ folder). Without a login, data=petimages downloads the same photos from Microsoft."
)


@dataclass
class Sources:
    """What a recipe gets its files from: configured downloads, extracted on demand, and local archives."""

    dataset: str  # names the extracted folders, so that two datasets' images.tar.gz never meet
    files: Mapping[str, Mapping[str, Any]]
    download_dir: Path
    extract_dir: Path
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    limits: ExtractLimits = field(default_factory=ExtractLimits)
    progress: bool = True

    def archive(self, role: str) -> Path:
        """The verified download of ``files[role]`` (``url``, ``sha256``, optionally ``md5``)."""
        if role not in self.files:
            raise KeyError(f"data.source.files has no {role!r} entry (it has {sorted(self.files)})")
        spec = self.files[role]
        if not spec.get("url"):
            raise ValueError(f"data.source.files.{role}.url is not set")
        name = Path(spec["url"].split("?")[0]).name
        return fetch(
            spec["url"],
            self.download_dir / name,
            sha256=spec.get("sha256"),
            md5=spec.get("md5"),
            policy=self.retry,
            progress=self.progress,
            pin_key=f"data.source.files.{role}.sha256",
        )

    def tree(self, role: str) -> Path:
        """``files[role]`` downloaded and extracted: the folder holding its members."""
        archive = self.archive(role)
        return extract_archive(archive, self.extract_dir / f"{self.dataset}-{_stem(archive)}", self.limits)

    def local_tree(
        self, archive: Path, sha256: str | None = None, pin_key: str | None = None, expected: str = ""
    ) -> Path:
        """A local archive (not downloaded: Kaggle's), extracted. With ``pin_key`` its hash is checked
        against ``sha256`` (or printed, to pin it); without, it is not hashed (an archive inside another).
        A file that is not an archive is refused first (``NotAnArchiveError``, naming ``expected``)."""
        check_archive(archive, expected or "a zip or tar(.gz) archive")
        inside = f"{archive.parent.name}-" if pin_key is None else ""
        target = self.extract_dir / f"{self.dataset}-{inside}{_stem(archive)}"
        if pin_key is not None:
            check_hashes(archive, {"sha256": sha256}, archive.name, str(archive), pin_key)
        return extract_archive(archive, target, self.limits)


def _stem(archive: Path) -> str:
    name = archive.name
    for suffix in (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar", ".zip"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


class HardLinks:
    """Fills ``<partial root>/<split>/...`` with hard links (or copies) and counts what went where."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.counts: dict[str, Counter[str]] = {}
        self.copied = 0

    def add(self, source: Path, split: str, *relative: str) -> None:
        """Put ``source`` at ``<out>/<split>/<relative...>``; ``relative[0]`` is the class when it is a
        folder, else the file name itself (kaggle layout: counted under its label, the name's first part)."""
        dest = self.out.joinpath(split, *relative)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, dest)
        except OSError:  # another filesystem, or one without hard links
            shutil.copy2(source, dest)
            self.copied += 1
        label = relative[0] if len(relative) > 1 else relative[0].split(".")[0]
        self.counts.setdefault(split, Counter())[label] += 1

    def add_folder(self, folder: Path, split: str, label: str) -> None:
        """Every visible file of ``folder`` into class ``label`` (the cache judges which ones decode)."""
        for source in sorted(folder.iterdir()):
            if source.is_file() and not source.name.startswith("."):
                self.add(source, split, label, source.name)

    def summary(self) -> dict[str, dict[str, int]]:
        return {split: dict(sorted(counts.items())) for split, counts in self.counts.items()}


def _need_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist: expected {what}")
    return path


def _find(tree: Path, name: str, what: str) -> Path:
    """``tree/name``, or ``tree/<folder>/name`` (archives that wrap their content in a folder)."""
    for candidate in (tree / name, *(child / name for child in sorted(tree.iterdir()) if child.is_dir())):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{tree} has no {name}: expected {what}")


# ---------------------------------------------------------------------------------------------- recipes


def link_petimages(sources: Sources, links: HardLinks) -> None:
    pets = _find(
        sources.tree("archive"),
        "PetImages",
        "PetImages/Cat and PetImages/Dog, as in kagglecatsanddogs_5340.zip",
    )
    for label in ("Cat", "Dog"):
        links.add_folder(_need_dir(pets / label, f"the {label} images of PetImages"), "train", label)


KAGGLE_EXPECTED = "Kaggle's train.zip or dogs-vs-cats.zip, or the unzipped train/ folder"
TINY_IMAGENET_EXPECTED = "tiny-imagenet-200.zip or its extracted folder"
#: What each recipe's ``data.source.path`` should be (the recipes that take a local copy).
LOCAL_EXPECTED = {"kaggle": KAGGLE_EXPECTED, "tiny_imagenet": TINY_IMAGENET_EXPECTED}


def link_kaggle(
    sources: Sources, links: HardLinks, path: str | None = None, sha256: str | None = None
) -> None:
    if not path:
        raise FileNotFoundError(f"data.source.path is not set. {KAGGLE_HELP}")
    given = Path(path).expanduser()
    if not given.exists():
        raise FileNotFoundError(f"data.source.path={given} does not exist. {KAGGLE_HELP}")
    if given.is_dir():
        folder = given if any(given.glob("cat.*")) else _find(given, "train", "a train/ folder of cat.N.jpg")
    else:
        tree = sources.local_tree(given, sha256, "data.source.sha256", KAGGLE_EXPECTED)
        if not any(tree.glob("*/cat.*")) and any(tree.glob("train.zip")):  # Kaggle's dogs-vs-cats.zip
            tree = sources.local_tree(tree / "train.zip")
        folder = _find(tree, "train", "train/cat.0.jpg ... train/dog.12499.jpg, as in Kaggle's train.zip")
    for source in sorted(folder.iterdir()):
        if source.is_file() and not source.name.startswith("."):
            links.add(source, "train", source.name)


OXFORD_TARGETS = ("species", "breeds")
OXFORD_LISTS = {"train": "trainval.txt", "test": "test.txt"}  # the official split
OXFORD_SPECIES = {1: "cat", 2: "dog"}


def read_oxford_list(path: Path) -> list[tuple[str, int, int, int]]:
    """(image, class id, species, breed id) per line of an Oxford-IIIT Pet list (``#`` lines are comments).

    ValueError naming the file and line when a line is not ``Image CLASS-ID SPECIES BREED-ID``.
    """
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        try:
            image, class_id, species, breed_id = fields[0], *map(int, fields[1:])
            if len(fields) != 4 or species not in OXFORD_SPECIES:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"{path}:{number}: expected 'Image CLASS-ID SPECIES BREED-ID' with SPECIES 1 (cat) or "
                f"2 (dog), got {line!r}"
            ) from None
        rows.append((image, class_id, species, breed_id))
    return rows


def link_oxford_pets(sources: Sources, links: HardLinks, target: str = "species") -> None:
    if target not in OXFORD_TARGETS:
        raise ValueError(
            f"data.source.target={target!r} is not known; choose one of {', '.join(OXFORD_TARGETS)}"
        )
    images = _find(sources.tree("images"), "images", "images/<Breed>_<n>.jpg, as in images.tar.gz")
    annotations = _find(sources.tree("annotations"), "annotations", "annotations/trainval.txt and test.txt")
    for split, list_name in OXFORD_LISTS.items():
        listed = annotations / list_name
        if not listed.is_file():
            raise FileNotFoundError(f"{listed} does not exist: expected the official {split} list")
        rows = read_oxford_list(listed)
        missing = [image for image, *_ in rows if not (images / f"{image}.jpg").is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} images listed in {listed} are not in {images}, e.g. {missing[0]}.jpg"
            )
        for image, _, species, _ in rows:
            label = OXFORD_SPECIES[species] if target == "species" else image.rsplit("_", 1)[0]
            links.add(images / f"{image}.jpg", split, label, f"{image}.jpg")


IMAGENETTE_SPLITS = {"train": "train", "test": "val"}  # ours: theirs (val is the official held-out set)


def link_imagenette(
    sources: Sources, links: HardLinks, size: str = "px320", sizes: Mapping[str, Any] | None = None
) -> None:
    if sizes is not None and size not in sizes:
        raise ValueError(f"data.source.size={size!r} is not known; choose one of {', '.join(sizes)}")
    tree = sources.tree("archive")
    for ours, theirs in IMAGENETTE_SPLITS.items():
        split = _find(tree, theirs, f"{theirs}/<wnid>/*.JPEG, as in fast.ai's imagenette2 archives")
        for class_dir in sorted(p for p in split.iterdir() if p.is_dir()):
            links.add_folder(class_dir, ours, class_dir.name)


TINY_IMAGENET_LAYOUT = "tiny-imagenet-200/{wnids.txt, train/<wnid>/images/, val/val_annotations.txt}"


def read_tiny_imagenet_val(path: Path, wnids: set[str]) -> list[tuple[str, str]]:
    """(image, wnid) per line of Tiny ImageNet's ``val_annotations.txt`` (``file<TAB>wnid<TAB>box...``).

    ValueError naming the file and line when a line has no image and wnid, or a wnid not in ``wnids.txt``.
    """
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in wnids:
            raise ValueError(
                f"{path}:{number}: expected 'image<TAB>wnid<TAB>box' with a wnid of wnids.txt, got {line!r}"
            )
        rows.append((fields[0], fields[1]))
    return rows


def link_tiny_imagenet(
    sources: Sources, links: HardLinks, path: str | None = None, sha256: str | None = None
) -> None:
    if path:  # a local copy: the zip (hashed: checked against sha256, else printed) or its extracted folder
        given = Path(path).expanduser()
        if not given.exists():
            raise FileNotFoundError(f"data.source.path={given} does not exist")
        tree = (
            given
            if given.is_dir()
            else sources.local_tree(given, sha256, "data.source.sha256", TINY_IMAGENET_EXPECTED)
        )
    else:
        tree = sources.tree("archive")
    top = _find(tree, "wnids.txt", TINY_IMAGENET_LAYOUT).parent
    wnids = sorted({line.strip() for line in (top / "wnids.txt").read_text().splitlines() if line.strip()})
    for wnid in wnids:
        images = _need_dir(top / "train" / wnid / "images", f"the training images of {wnid} (wnids.txt)")
        links.add_folder(images, "train", wnid)
    annotations = top / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise FileNotFoundError(f"{annotations} does not exist: expected the labels of val/images/")
    rows = read_tiny_imagenet_val(annotations, set(wnids))
    images = top / "val" / "images"
    missing = [image for image, _ in rows if not (images / image).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} images listed in {annotations} are not in {images}, e.g. {missing[0]}"
        )
    for image, wnid in rows:
        links.add(images / image, "test", wnid, image)


RECIPES: dict[str, Callable[..., None]] = {
    "petimages": link_petimages,
    "kaggle": link_kaggle,
    "oxford_pets": link_oxford_pets,
    "imagenette": link_imagenette,
    "tiny_imagenet": link_tiny_imagenet,
}
# The options that change what a prepared root holds: a prepared root made with others is refused. (Where the
# files came from, kaggle's path say, does not count: the next run may not repeat it.)
LAYOUT_OPTIONS = {"oxford_pets": ("target",), "imagenette": ("size",)}


# --------------------------------------------------------------------------------------------- prepare


def _plain(value: Any) -> Any:
    """Mappings (an OmegaConf DictConfig included) as plain dicts, recursively."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def prepare_dataset(
    root: str | Path,
    dataset: str,
    files: Mapping[str, Any] | None = None,
    download: Mapping[str, Any] | None = None,
    extract: Mapping[str, Any] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Make ``root`` hold ``dataset`` laid out for ``ImageDataModule``; return what ``prepared.json`` says.

    Args:
        root: the dataset folder (``data.root``).
        dataset: the recipe, one of ``RECIPES``.
        files: role -> ``{url, sha256, md5}`` of the archives the recipe downloads.
        download: ``dir`` (where archives go), ``attempts``, ``backoff_s``, ``timeout_s``, ``progress``.
        extract: ``dir`` (where archives are extracted), ``max_gb``, ``max_members``.
        options: the recipe's own settings (``target`` for oxford_pets, ``path`` for kaggle, ...).
    """
    root = expand_home(root)
    if dataset not in RECIPES:
        raise ValueError(f"data.source.dataset={dataset!r} is not known; choose one of {', '.join(RECIPES)}")
    options = _plain(options)
    recipe = {"dataset": dataset, "options": {k: options.get(k) for k in LAYOUT_OPTIONS.get(dataset, ())}}
    source = _source_of(files, options)
    _check_local_source(root, dataset, options)
    made = _already_there(root, recipe, source)
    if made is not None:
        return made
    # Two runs starting at once on one root (a sweep, two users): one prepares, the other waits, then finds
    # the marker.
    root.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(root.with_name(root.name + ".lock"), root):
        made = _already_there(root, recipe, source, say_why=True)
        if made is not None:
            return made
        return _prepare(root, recipe, files, download, extract, options, source)


# ---------------------------------------------------------------------- what a root was prepared from


def _local_source(path: str) -> dict[str, Any]:
    """A local copy's identity: its resolved path, and for a file its size and modification time."""
    given = expand_home(path).resolve()
    if not given.is_file():
        return {"path": str(given)}
    status = given.stat()
    return {"path": str(given), "bytes": status.st_size, "mtime_ns": status.st_mtime_ns}


def _source_of(files: Mapping[str, Any] | None, options: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the files come from this time: a local copy (``data.source.path``), else each download's URL
    and sha256; None when neither is named (a run that names no path uses the root as prepared)."""
    if options.get("path"):
        return _local_source(str(options["path"]))
    downloads = {
        str(role): {"url": spec.get("url"), "sha256": spec.get("sha256")}
        for role, spec in _plain(files or {}).items()
        if isinstance(spec, Mapping) and spec.get("url")
    }
    return {"downloads": downloads} if downloads else None


def _recorded_source(made: Mapping[str, Any]) -> dict[str, Any] | None:
    """The source ``prepared.json`` records; from a root prepared before it recorded one, the path alone."""
    if made.get("source") is not None:
        return dict(made["source"])
    path = (made.get("sources") or {}).get("path")
    return {"path": str(expand_home(path).resolve())} if path else None


def _describe_source(source: Mapping[str, Any]) -> str:
    if "path" in source:
        size = f" ({source['bytes']:,} bytes)" if "bytes" in source else ""
        return f"{source['path']}{size}"
    return ", ".join(f"{spec['url']} (sha256 {spec['sha256']})" for spec in source["downloads"].values())


def _source_change(made: Mapping[str, Any], source: Mapping[str, Any] | None) -> str | None:
    """Why the root's files are not what ``source`` would give (one phrase), None if they are (or if this
    run names no source, or the root's record cannot tell)."""
    recorded = _recorded_source(made)
    if source is None or recorded is None:
        return None
    if "path" in source:
        if recorded.get("path") != source["path"]:
            return f"it was prepared from {_describe_source(recorded)}, not {_describe_source(source)}"
        identity = ("bytes", "mtime_ns")
        if all(k in recorded and k in source for k in identity) and any(
            recorded[k] != source[k] for k in identity
        ):
            return (
                f"{source['path']} changed since it was prepared ({recorded['bytes']:,} bytes then, "
                f"{source['bytes']:,} now, modified since)"
            )
        return None
    then = recorded.get("downloads") or {}
    for role, spec in source["downloads"].items():
        old = then.get(role) or {}
        if spec.get("sha256") and old.get("sha256") and spec["sha256"].lower() != old["sha256"].lower():
            return (
                f"it was prepared from {old.get('url')} (sha256 {old['sha256']}), not "
                f"{spec.get('url')} (sha256 {spec['sha256']})"
            )
    return None


def _check_local_source(root: Path, dataset: str, options: Mapping[str, Any]) -> None:
    """Refuse a ``data.source.path`` file that is not an archive, before anything is touched: one line
    naming it, what was expected and, if ``root`` is prepared, what it still holds."""
    if not options.get("path") or dataset not in LOCAL_EXPECTED:
        return
    given = expand_home(str(options["path"]))
    if not given.is_file():
        return  # a folder, or missing: the recipe says what it expected
    try:
        check_archive(given, LOCAL_EXPECTED[dataset])
    except ArchiveError as error:
        marker = root / MARKER
        recorded = _recorded_source(json.loads(marker.read_text())) if marker.is_file() else None
        kept = f"; {root} keeps what {_describe_source(recorded)} gave" if recorded else ""
        raise NotAnArchiveError(f"data.source.path={error}{kept}") from None


def _already_there(
    root: Path, recipe: dict[str, Any], source: dict[str, Any] | None = None, say_why: bool = False
) -> dict[str, Any] | None:
    """What a prepared (or hand-made) ``root`` holds, None if it needs preparing (or preparing again: its
    source changed, said in one line when ``say_why``); refuses a foreign root."""
    dataset = recipe["dataset"]
    marker = root / MARKER
    if marker.is_file():
        made = json.loads(marker.read_text())
        if {"dataset": made.get("dataset"), "options": made.get("options")} != recipe:
            raise ValueError(
                f"{root} was prepared as {made.get('dataset')} {made.get('options')}, not "
                f"{recipe['dataset']} {recipe['options']}: set data.root to another folder, or delete {root} "
                "to prepare it again"
            )
        change = _source_change(made, source)
        if change is not None:
            if say_why:
                say(f"{dataset}: {root} is out of date: {change}; preparing it again (replacing it)")
            return None
        say(f"{dataset}: {root} is ready ({_describe(made['splits'])})")
        return made
    if any((root / split).is_dir() for split in SPLITS):
        say(f"{dataset}: using {root} as it is (laid out by hand: it has no {MARKER})")
        return {**recipe, "splits": {}}
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(
            f"{root} exists but holds neither train/ nor test/ nor {MARKER}: move it away or set data.root "
            "to another folder"
        )
    return None


def _prepare(
    root: Path,
    recipe: dict[str, Any],
    files: Mapping[str, Any] | None,
    download: Mapping[str, Any] | None,
    extract: Mapping[str, Any] | None,
    options: dict[str, Any],
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Download, verify, extract and lay out into ``<root>.partial``, then rename it to ``root`` (a root
    prepared from another source is replaced only then: it is whole until the new one is)."""
    dataset = recipe["dataset"]
    download, extract = _plain(download or {}), _plain(extract or {})
    data_dir = root.parent
    sources = Sources(
        dataset=dataset,
        files=_plain(files or {}),
        download_dir=expand_home(download.get("dir") or data_dir / "downloads"),
        extract_dir=expand_home(extract.get("dir") or data_dir / "extracted"),
        retry=RetryPolicy(
            attempts=int(download.get("attempts", 5)),
            backoff_s=float(download.get("backoff_s", 2.0)),
            timeout_s=float(download.get("timeout_s", 60.0)),
        ),
        limits=ExtractLimits(
            max_bytes=int(float(extract.get("max_gb", 20)) * 1e9),
            max_members=int(extract.get("max_members", 200_000)),
        ),
        progress=bool(download.get("progress", True)),
    )
    partial = root.with_name(root.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    links = HardLinks(partial)
    try:
        RECIPES[dataset](sources, links, **options)
        if not links.counts:
            raise ValueError(f"{dataset}: the recipe found no files to lay out")
        sources_used = {role: spec.get("url") for role, spec in sources.files.items()}
        if options.get("path"):  # a local copy (kaggle's, tiny_imagenet's): nothing was downloaded
            sources_used = {"path": str(options["path"])}
        made = {**recipe, "sources": sources_used, "source": source}
        made |= {"splits": links.summary(), "copied": links.copied}
        write_atomic(partial / MARKER, json.dumps(made, indent=1) + "\n")
        if (root / MARKER).is_file():  # prepared from another source: swapped for the new layout
            old = root.with_name(root.name + ".replaced")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(root, old)
            os.replace(partial, root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if root.exists():  # an empty folder (anything else was refused above)
                root.rmdir()
            os.replace(partial, root)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    how = f"{links.copied:,} copied (another filesystem)" if links.copied else "hard links, no extra disk"
    say(f"{dataset}: laid out {root}: {_describe(made['splits'])}; {how}")
    return made


def _describe(splits: Mapping[str, Mapping[str, int]]) -> str:
    parts = []
    for split, counts in splits.items():
        total = sum(counts.values())
        shown = ", ".join(f"{name} {n:,}" for name, n in list(counts.items())[:4])
        more = ", ..." if len(counts) > 4 else ""
        parts.append(f"{split} {total:,} files in {len(counts)} classes ({shown}{more})")
    return "; ".join(parts)
