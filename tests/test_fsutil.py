"""firmware.fsutil: the single crash-safe writer."""

from __future__ import annotations

import os
import stat

import pytest

from firmware import fsutil


def test_atomic_write_creates_0600_and_replaces(tmp_path):
    p = tmp_path / "key.bin"
    fsutil.atomic_write(p, b"one")
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    fsutil.atomic_write(p, b"two")
    assert p.read_bytes() == b"two"
    assert [x.name for x in tmp_path.iterdir()] == ["key.bin"]  # no temp left behind


def test_exclusive_refuses_existing(tmp_path):
    p = tmp_path / "ca.key"
    fsutil.atomic_write(p, b"first", exclusive=True)
    with pytest.raises(FileExistsError):
        fsutil.atomic_write(p, b"second", exclusive=True)
    assert p.read_bytes() == b"first"
    assert [x.name for x in tmp_path.iterdir()] == ["ca.key"]


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    p = tmp_path / "state.json"
    fsutil.atomic_write(p, b"old")
    with pytest.raises(TypeError):
        fsutil.atomic_write(p, "not bytes")  # type: ignore[arg-type]
    assert p.read_bytes() == b"old"
    assert len(list(tmp_path.iterdir())) == 1


def test_parents_and_modes(tmp_path):
    p = tmp_path / "a" / "b" / "cert.pem"
    fsutil.atomic_write(p, b"pem", 0o644, make_parents=True)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700


def test_overwrite_and_remove(tmp_path):
    p = tmp_path / "template"
    p.write_bytes(b"secret" * 10)
    assert fsutil.overwrite_and_remove(p) is True
    assert not p.exists()
    assert fsutil.overwrite_and_remove(p) is False


def test_refuses_to_follow_a_planted_temp_symlink(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_bytes(b"untouched")
    p = tmp_path / "key"
    os.symlink(target, tmp_path / f".key.{os.getpid()}{fsutil.TMP_SUFFIX}")
    with pytest.raises(OSError):
        fsutil.atomic_write(p, b"x")
    assert target.read_bytes() == b"untouched"
