"""``src/datasets/archives.py``: crafted archives are refused naming the member; no half extraction is
trusted."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from src.datasets import archives
from src.datasets.archives import (
    MARKER,
    ArchiveError,
    ExtractLimits,
    UnsafeArchiveError,
    extract_archive,
    safe_parts,
)
from tests.helpers.dataset_archives import (
    MTIME,
    tar_with_link,
    write_tar,
    write_zip,
    zip_bomb,
    zip_with_symlink,
)

EVIL_NAMES = ["../evil.txt", "/tmp/abs-evil.txt", "a/../../evil.txt", "..\\evil.txt", "C:/evil.txt"]


def assert_nothing_extracted(tmp_path: Path, target: Path) -> None:
    assert not target.exists() and not target.with_name(target.name + ".partial").exists()
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/abs-evil.txt").exists()


@pytest.mark.parametrize("kind", ["zip", "tgz"])
@pytest.mark.parametrize("name", EVIL_NAMES)
def test_members_outside_the_target_are_refused(tmp_path: Path, kind: str, name: str) -> None:
    members = {"data/ok.txt": b"fine", name: b"evil"}
    archive = (write_zip if kind == "zip" else write_tar)(tmp_path / f"crafted.{kind}", members)
    target = tmp_path / "out" / "crafted"
    with pytest.raises(UnsafeArchiveError) as error:
        extract_archive(archive, target)
    assert f"crafted.{kind}: refusing to extract member {name!r}" in str(error.value)
    assert "nothing was extracted" in str(error.value)
    assert_nothing_extracted(tmp_path, target)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: zip_with_symlink(p / "a.zip"), "is a symbolic link"),
        (lambda p: tar_with_link(p / "a.tgz"), "is a symbolic link (to '../../outside')"),
        (lambda p: tar_with_link(p / "a.tgz", hard=True), "is a hard link"),
    ],
    ids=["zip-symlink", "tar-symlink", "tar-hardlink"],
)
def test_links_are_refused(tmp_path: Path, make, reason: str) -> None:
    archive = make(tmp_path)
    target = tmp_path / "out" / "links"
    with pytest.raises(UnsafeArchiveError) as error:
        extract_archive(archive, target)
    assert "'data/link'" in str(error.value) and reason in str(error.value)
    assert_nothing_extracted(tmp_path, target)


def tar_with(path: Path, special: tarfile.TarInfo, mode: int = 0o644) -> Path:
    """A tar.gz holding ``data/ok.txt`` (with permission bits ``mode``), then ``special``."""
    with tarfile.open(path, "w:gz") as tf:
        ok = tarfile.TarInfo("data/ok.txt")
        ok.size, ok.mode = 4, mode
        tf.addfile(ok, io.BytesIO(b"fine"))
        tf.addfile(special)
    return path


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_special_files_in_a_tar_are_refused(tmp_path: Path, kind: bytes) -> None:
    special = tarfile.TarInfo("data/dev")
    special.type = kind
    archive = tar_with(tmp_path / "special.tgz", special)
    target = tmp_path / "out" / "special"
    with pytest.raises(UnsafeArchiveError) as error:
        extract_archive(archive, target)
    assert str(error.value) == (
        "special.tgz: refusing to extract member 'data/dev': is a special file; nothing was extracted"
    )
    assert_nothing_extracted(tmp_path, target)


def test_files_get_the_umask_not_the_archive_s_permission_bits(tmp_path: Path) -> None:
    folder = tarfile.TarInfo("data/more")
    folder.type, folder.mode = tarfile.DIRTYPE, 0o777
    archive = tar_with(tmp_path / "modes.tgz", folder, mode=0o4777)  # setuid, world-writable
    umask = os.umask(0o022)
    try:
        target = extract_archive(archive, tmp_path / "out" / "modes")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((target / "data" / "ok.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((target / "data" / "more").stat().st_mode) == 0o755


def test_a_zip_bomb_beyond_the_limit_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    archive = zip_bomb(tmp_path / "bomb.zip", size=50 * 10**6)
    assert archive.stat().st_size < 200_000  # 50 MB of zeros deflate to a few tens of kB
    target = tmp_path / "out" / "bomb"
    with pytest.raises(UnsafeArchiveError) as error:
        extract_archive(archive, target, ExtractLimits(max_bytes=10 * 10**6))
    assert "member 'bomb.bin'" in str(error.value) and "past 0.01 GB" in str(error.value)
    assert "data.source.extract.max_gb" in str(error.value)
    assert_nothing_extracted(tmp_path, target)
    # The same archive within a larger limit extracts.
    extract_archive(archive, target, ExtractLimits(max_bytes=60 * 10**6))
    assert (target / "bomb.bin").stat().st_size == 50 * 10**6


def test_too_many_members_are_refused(tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "many.tgz", {f"f{i}.txt": b"x" for i in range(6)})
    target = tmp_path / "out" / "many"
    with pytest.raises(UnsafeArchiveError, match=r"member 'f5.txt'.*more than 5 members"):
        extract_archive(archive, target, ExtractLimits(max_members=5))
    assert_nothing_extracted(tmp_path, target)


def test_a_corrupt_member_names_it_and_leaves_nothing(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "corrupt.zip", {"a.txt": b"A" * 1000, "b.txt": b"B" * 5000})
    data = bytearray(archive.read_bytes())
    offset = data.index(b"b.txt") + len("b.txt") + 4  # into b.txt's compressed bytes
    data[offset] ^= 0xFF
    archive.write_bytes(bytes(data))
    target = tmp_path / "out" / "corrupt"
    with pytest.raises(ArchiveError, match=r"corrupt.zip: member 'b.txt' could not be extracted"):
        extract_archive(archive, target)
    assert_nothing_extracted(tmp_path, target)


def test_a_truncated_tarball_is_reported_as_damaged(tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "cut.tgz", {f"f{i}.bin": os.urandom(20_000) for i in range(5)})
    archive.write_bytes(archive.read_bytes()[:50_000])
    target = tmp_path / "out" / "cut"
    with pytest.raises(ArchiveError, match="cut.tgz"):
        extract_archive(archive, target)
    assert_nothing_extracted(tmp_path, target)


def test_an_interrupted_extraction_is_not_trusted_and_the_rerun_completes(
    tmp_path: Path, monkeypatch
) -> None:
    members = {f"data/{i}.bin": os.urandom(1000) for i in range(10)}
    archive = write_tar(tmp_path / "data.tgz", members)
    target = tmp_path / "out" / "data"
    real = archives.extract_member
    calls = []

    def dies_on_the_fourth(member, dest):
        calls.append(member.name)
        if len(calls) == 4:
            raise KeyboardInterrupt  # as a user's Ctrl-C would, mid-way
        return real(member, dest)

    monkeypatch.setattr(archives, "extract_member", dies_on_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        extract_archive(archive, target)
    assert len(calls) == 4
    assert_nothing_extracted(tmp_path, target)

    # A kill -9 leaves the .partial folder behind: the next run starts it again, without its junk.
    partial = target.with_name("data.partial")
    (partial / "data").mkdir(parents=True)
    (partial / "data" / "junk.bin").write_bytes(b"half")
    monkeypatch.setattr(archives, "extract_member", real)
    extract_archive(archive, target)
    assert sorted(p.name for p in (target / "data").iterdir()) == sorted(Path(m).name for m in members)
    assert all((target / name).read_bytes() == data for name, data in members.items())
    assert json.loads((target / MARKER).read_text())["files"] == 10
    assert not partial.exists()


def test_a_finished_extraction_is_reused_until_the_archive_changes(tmp_path: Path, capsys) -> None:
    archive = write_tar(tmp_path / "data.tgz", {"a.txt": b"one"})
    target = tmp_path / "out" / "data"
    extract_archive(archive, target)
    mtime = (target / "a.txt").stat().st_mtime
    (target / "a.txt").write_bytes(b"edited")  # reuse means not extracting again
    extract_archive(archive, target)
    assert (target / "a.txt").read_bytes() == b"edited"
    write_tar(archive, {"a.txt": b"a new version"})  # another size: a new download
    extract_archive(archive, target)
    assert (target / "a.txt").read_bytes() == b"a new version"
    assert "extracted from another data.tgz" in capsys.readouterr().out
    assert (target / "a.txt").stat().st_mtime == mtime == MTIME  # the archive's date, not the extraction's


def test_safe_parts() -> None:
    assert safe_parts("PetImages/Cat/1.jpg") == ("PetImages", "Cat", "1.jpg")
    assert safe_parts("./imagenette2/train/") == ("imagenette2", "train")
    assert safe_parts("PetImages\\Dog\\2.jpg") == ("PetImages", "Dog", "2.jpg")
    for name in EVIL_NAMES:
        with pytest.raises(ValueError):
            safe_parts(name)


def test_a_file_that_is_not_an_archive_is_refused_naming_it(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not an archive\n")
    target = tmp_path / "out"
    with pytest.raises(archives.NotAnArchiveError, match=r"notes\.txt is not a zip or tar") as refused:
        archives.extract_archive(notes, target)
    assert "\n" not in str(refused.value) and "expected a zip or tar" in str(refused.value)
    assert not target.exists() and not target.with_name("out.partial").exists()


def test_the_same_name_and_size_modified_since_is_extracted_again(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "a.zip", {"x.txt": b"one"})
    target = archives.extract_archive(archive, tmp_path / "out")
    write_zip(archive, {"x.txt": b"two"})  # same name and size, other content
    os.utime(archive, (MTIME + 100, MTIME + 100))
    archives.extract_archive(archive, target)
    assert (target / "x.txt").read_bytes() == b"two"
