import os
import stat

import pytest

from psal.utils.atomic import atomic_path


def test_success_renames_and_keeps_suffix(tmp_path):
    dest = tmp_path / "sub" / "out.png"
    with atomic_path(dest) as tmp:
        assert tmp.suffix == ".png" and tmp.parent == dest.parent and not dest.exists()
        tmp.write_bytes(b"data")
    assert dest.read_bytes() == b"data"
    assert [p.name for p in dest.parent.iterdir()] == ["out.png"]


def test_failure_leaves_nothing_and_keeps_the_old_file(tmp_path):
    dest = tmp_path / "out.txt"
    dest.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert dest.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_new_file_mode_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "new.bin") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == 0o644


def test_replaced_file_keeps_its_mode(tmp_path):
    dest = tmp_path / "keep.bin"
    dest.write_bytes(b"a")
    dest.chmod(0o640)
    with atomic_path(dest) as tmp:
        tmp.write_bytes(b"b")
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640 and dest.read_bytes() == b"b"
