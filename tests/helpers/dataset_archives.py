"""Tiny archives with the layouts and quirks of the real datasets, and crafted unsafe ones.

The real archives cannot be downloaded here, so the tests build small ones that the same code must handle:

- ``petimages_zip``: ``kagglecatsanddogs_5340.zip`` -- the licence PDF and readme at the top,
  ``PetImages/Cat`` and ``PetImages/Dog`` with a ``Thumbs.db`` each, an empty ``Cat/666.jpg``, a truncated
  ``Dog/11702.jpg``, a PNG and a GIF named ``.jpg`` (decodable, not JFIF) and a greyscale JPEG.
- ``kaggle_train_zip``: Kaggle's ``train.zip`` (``train/cat.N.jpg``, ``train/dog.N.jpg``), optionally
  wrapped in ``dogs-vs-cats.zip`` as the Kaggle API ships it.
- ``oxford_tarballs``: ``images.tar.gz`` (``images/<Breed>_<n>.jpg`` for the 37 breeds, cat breeds
  capitalised, dog breeds not, plus ``.mat`` files no list mentions and a PNG named ``.jpg``) and
  ``annotations.tar.gz`` (``annotations/list.txt`` with its ``#`` header, ``trainval.txt``, ``test.txt``).
- ``imagenette_tgz``: ``imagenette2-160/{train,val}/<wnid>/*.JPEG`` and ``noisy_imagenette.csv``.
- ``tiny_imagenet_zip``: ``tiny-imagenet-200.zip`` -- ``wnids.txt`` (unsorted), ``words.txt`` (more wnids than
  that), ``train/<wnid>/images/*.JPEG`` beside ``<wnid>_boxes.txt``, the classes' val images mixed in one
  ``val/images/`` with ``val_annotations.txt``, an unlabelled ``test/images/``; 64x64, one greyscale.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

CAT_BREEDS = [
    "Abyssinian",
    "Bengal",
    "Birman",
    "Bombay",
    "British_Shorthair",
    "Egyptian_Mau",
    "Maine_Coon",
    "Persian",
    "Ragdoll",
    "Russian_Blue",
    "Siamese",
    "Sphynx",
]
DOG_BREEDS = [
    "american_bulldog",
    "american_pit_bull_terrier",
    "basset_hound",
    "beagle",
    "boxer",
    "chihuahua",
    "english_cocker_spaniel",
    "english_setter",
    "german_shorthaired",
    "great_pyrenees",
    "havanese",
    "japanese_chin",
    "keeshond",
    "leonberger",
    "miniature_pinscher",
    "newfoundland",
    "pomeranian",
    "pug",
    "saint_bernard",
    "samoyed",
    "scottish_terrier",
    "shiba_inu",
    "staffordshire_bull_terrier",
    "wheaten_terrier",
    "yorkshire_terrier",
]
MTIME = 1_575_590_400  # 2019-12-06, the date of Imagenette's v2 archives: any fixed date will do
IMAGENETTE_WNIDS = [
    "n01440764",
    "n02102040",
    "n02979186",
    "n03000684",
    "n03028079",
    "n03394916",
    "n03417042",
    "n03425413",
    "n03445777",
    "n03888257",
]


def image_bytes(seed: int, fmt: str = "JPEG", mode: str = "RGB", size: tuple[int, int] = (40, 30)) -> bytes:
    """A small random picture encoded as ``fmt``: every image of a test archive differs."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    picture = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    picture.save(buffer, fmt)
    return buffer.getvalue()


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def write_tar(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> Path:
    """A tar archive of ``members``, each dated ``MTIME``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), MTIME
            tf.addfile(info, io.BytesIO(data))
    return path


def petimages_zip(path: Path, per_class: int = 6) -> dict[str, int]:
    """Write the PetImages zip; return the files each class folder holds (decodable or not)."""
    licence = b"%PDF-1.4\n" + np.random.default_rng(0).bytes(200_000)  # big enough to be cut mid-download
    members = {"CDLA-Permissive-2.0.pdf": licence, "readme[1].txt": b"PetImages readme"}
    for c, label in enumerate(("Cat", "Dog")):
        for i in range(per_class):
            members[f"PetImages/{label}/{i}.jpg"] = image_bytes(100 * c + i)
        members[f"PetImages/{label}/Thumbs.db"] = b"\xd0\xcf\x11\xe0 not an image"
    members["PetImages/Cat/666.jpg"] = b""  # undecodable in the real zip
    members["PetImages/Dog/11702.jpg"] = image_bytes(7)[:60]  # truncated
    members["PetImages/Cat/9000.jpg"] = image_bytes(8, "PNG")  # decodable, not a JPEG
    members["PetImages/Dog/9000.jpg"] = image_bytes(9, "GIF", "P")
    members["PetImages/Dog/9001.jpg"] = image_bytes(10, "JPEG", "L")  # greyscale
    write_zip(path, members)
    return {"Cat": per_class + 3, "Dog": per_class + 4}


def kaggle_train_zip(path: Path, per_class: int = 6, wrapped: bool = False) -> Path:
    """Kaggle's ``train.zip``; with ``wrapped``, inside ``dogs-vs-cats.zip`` beside ``test1.zip``."""
    members = {
        f"train/{label}.{i}.jpg": image_bytes(1000 * c + i)
        for c, label in enumerate(("cat", "dog"))
        for i in range(per_class)
    }
    if not wrapped:
        return write_zip(path, members)
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    test1 = io.BytesIO()
    with zipfile.ZipFile(test1, "w") as zf:
        zf.writestr("test1/1.jpg", image_bytes(5))
    return write_zip(
        path,
        {"train.zip": inner.getvalue(), "test1.zip": test1.getvalue(), "sampleSubmission.csv": b"id,label\n"},
    )


def oxford_tarballs(folder: Path, trainval: int = 3, test: int = 1) -> tuple[Path, Path, dict[str, int]]:
    """``images.tar.gz`` and ``annotations.tar.gz`` with ``trainval`` + ``test`` images per breed.

    Returns both paths and the number of images per split.
    """
    breeds = sorted(CAT_BREEDS + DOG_BREEDS, key=str.lower)  # CLASS-ID follows this order, from 1
    images: dict[str, bytes] = {}
    lists: dict[str, list[str]] = {"trainval": [], "test": []}
    for class_id, breed in enumerate(breeds, start=1):
        species = 1 if breed in CAT_BREEDS else 2
        breed_id = (CAT_BREEDS if species == 1 else DOG_BREEDS).index(breed) + 1
        for n in range(1, trainval + test + 1):
            name = f"{breed}_{n}"
            images[f"images/{name}.jpg"] = image_bytes(class_id * 100 + n)
            lists["trainval" if n <= trainval else "test"].append(f"{name} {class_id} {species} {breed_id}")
    images[f"images/{CAT_BREEDS[0]}_1.jpg"] = image_bytes(3, "PNG")  # a few real ones are PNG inside
    images["images/Abyssinian_100.mat"] = b"MATLAB 5.0"  # in the real archive, listed nowhere
    header = "#Image CLASS-ID SPECIES BREED ID\n#ID: 1:37 Class ids\n#SPECIES: 1:Cat 2:Dog\n"
    annotations = {
        "annotations/README": b"Oxford-IIIT Pet annotations",
        "annotations/list.txt": (header + "\n".join(lists["trainval"] + lists["test"]) + "\n").encode(),
        "annotations/trainval.txt": ("\n".join(lists["trainval"]) + "\n").encode(),
        "annotations/test.txt": ("\n".join(lists["test"]) + "\n").encode(),
    }
    return (
        write_tar(folder / "images.tar.gz", images),
        write_tar(folder / "annotations.tar.gz", annotations),
        {"train": len(lists["trainval"]), "test": len(lists["test"])},
    )


def imagenette_tgz(path: Path, train: int = 3, val: int = 2) -> Path:
    """fast.ai's layout: ``<stem>/train/<wnid>/<wnid>_<n>.JPEG``, ``<stem>/val/<wnid>/ILSVRC2012_val_*``."""
    stem = path.name.removesuffix(".tgz")
    members = {f"{stem}/noisy_imagenette.csv": b"path,noisy_labels_0,is_valid\n"}
    for c, wnid in enumerate(IMAGENETTE_WNIDS):
        for n in range(train):
            members[f"{stem}/train/{wnid}/{wnid}_{n}.JPEG"] = image_bytes(5000 + 10 * c + n)
        for n in range(val):
            members[f"{stem}/val/{wnid}/ILSVRC2012_val_{c:04d}{n:04d}.JPEG"] = image_bytes(7000 + 10 * c + n)
    return write_tar(path, members)


TINY_IMAGENET_WNIDS = ["n02124075", "n01443537", "n04067472", "n01629819"]  # wnids.txt's order: not sorted


def tiny_imagenet_zip(path: Path, train: int = 3, val: int = 2, test: int = 2) -> dict[str, object]:
    """Stanford's ``tiny-imagenet-200.zip`` with ``train`` and ``val`` images per class of
    ``TINY_IMAGENET_WNIDS``; ``train/<first wnid>/images/<wnid>_0.JPEG`` is greyscale.

    Returns ``val``: val image name -> its wnid (by ``val_annotations.txt``), and ``grey``: that file's name.
    """
    top = "tiny-imagenet-200"
    wnids = TINY_IMAGENET_WNIDS
    words = ["n00001740\tentity", *(f"{w}\tname of {w}" for w in wnids), "n15102894\tdeadwood"]
    members = {
        f"{top}/wnids.txt": "".join(f"{w}\n" for w in wnids).encode(),
        f"{top}/words.txt": "\n".join(words).encode(),
    }
    for c, wnid in enumerate(wnids):
        boxes = "".join(f"{wnid}_{n}.JPEG\t0\t4\t60\t62\n" for n in range(train))
        members[f"{top}/train/{wnid}/{wnid}_boxes.txt"] = boxes.encode()
        for n in range(train):
            mode = "L" if (c, n) == (0, 0) else "RGB"
            members[f"{top}/train/{wnid}/images/{wnid}_{n}.JPEG"] = image_bytes(
                9000 + 10 * c + n, mode=mode, size=(64, 64)
            )
    labels = {f"val_{i}.JPEG": wnids[(3 * i + 1) % len(wnids)] for i in range(val * len(wnids))}  # mixed
    for i, name in enumerate(labels):
        members[f"{top}/val/images/{name}"] = image_bytes(9500 + i, size=(64, 64))
    annotations = "".join(f"{name}\t{wnid}\t1\t2\t50\t60\n" for name, wnid in labels.items())
    members[f"{top}/val/val_annotations.txt"] = annotations.encode()
    for i in range(test):
        members[f"{top}/test/images/test_{i}.JPEG"] = image_bytes(9900 + i, size=(64, 64))
    write_zip(path, members)
    return {"val": labels, "grey": f"{wnids[0]}_0.JPEG"}


# ------------------------------------------------------------------------------------ crafted archives


def zip_with_symlink(path: Path, name: str = "data/link", target: str = "/etc/passwd") -> Path:
    """A zip whose member ``name`` is a Unix symbolic link to ``target`` (after one ordinary file)."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("data/ok.txt", b"fine")
        info = zipfile.ZipInfo(name)
        info.external_attr = (0o120777 << 16) | 0x20  # S_IFLNK | rwx
        zf.writestr(info, target)
    return path


def tar_with_link(path: Path, name: str = "data/link", hard: bool = False) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        ok = tarfile.TarInfo("data/ok.txt")
        ok.size = 4
        tf.addfile(ok, io.BytesIO(b"fine"))
        link = tarfile.TarInfo(name)
        link.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
        link.linkname = "../../outside" if not hard else "data/ok.txt"
        tf.addfile(link)
    return path


def zip_bomb(path: Path, name: str = "bomb.bin", size: int = 50 * 10**6) -> Path:
    """``size`` zero bytes, which deflate to about a thousandth of that."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("readme.txt", b"small")
        with zf.open(name, "w", force_zip64=True) as member:
            block = bytes(1 << 20)
            for start in range(0, size, len(block)):
                member.write(block[: size - start])
    return path
