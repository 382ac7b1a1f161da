import os
import stat

import pytest

from ssdlite.files import atomic_write, replace_folder, write_bytes_atomic


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
    assert sorted(p.name for p in target.iterdir()) == ["a.txt", "b.txt"]
    replace_folder(target, lambda folder: (folder / "c.txt").write_text("c"))
    assert [p.name for p in target.iterdir()] == ["c.txt"]  # nothing of the earlier folder stays
    assert [p.name for p in tmp_path.iterdir()] == ["dataset"]  # no building or old folder left
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~mask
