import os
import stat

import pytest

from ssdlite.errors import UserError
from ssdlite.files import FOLDER_MARK, atomic_write, replace_folder, write_bytes_atomic


def test_atomic_write_replaces_and_uses_ordinary_permissions(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    write_bytes_atomic(target, b"first")
    write_bytes_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    assert [p.name for p in target.parent.iterdir()] == ["out.bin"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("good")

    def crash(tmp):
        open(tmp, "w").write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, crash)
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_replace_folder_replaces_whole_and_a_failure_keeps_the_old_one(tmp_path):
    target = tmp_path / "dataset"

    def first(folder):
        (folder / "a.txt").write_text("a")
        (folder / "b.txt").write_text("b")

    def crash(folder):
        (folder / "half.txt").write_text("half")
        raise RuntimeError("disk full")

    replace_folder(target, first)
    with pytest.raises(RuntimeError):
        replace_folder(target, crash)
    assert sorted(p.name for p in target.iterdir()) == [FOLDER_MARK, "a.txt", "b.txt"]
    replace_folder(target, lambda folder: (folder / "c.txt").write_text("c"))
    assert sorted(p.name for p in target.iterdir()) == [FOLDER_MARK, "c.txt"]  # nothing of the earlier folder stays
    assert [p.name for p in tmp_path.iterdir()] == ["dataset"]  # no building or old folder left
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~mask


def test_replace_folder_never_deletes_a_users_own_folder(tmp_path):
    """A folder of other files (not written by replace_folder) is refused, untouched; an empty one is used."""
    mine = tmp_path / "Desktop"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(UserError, match="a folder of other files"):
        replace_folder(mine, lambda folder: (folder / "index.html").write_text("page"))
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]
    empty = tmp_path / "empty"
    empty.mkdir()
    replace_folder(empty, lambda folder: (folder / "index.html").write_text("page"))
    assert (empty / "index.html").is_file()
