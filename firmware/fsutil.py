"""Crash-safe file writes, the one implementation every part of FaceLock uses.

WHY: a lock loses power or gets killed at any instant.  A reader must then see
either the old file or the new one, never a torn mix, and a key file must be
0600 from the moment it exists.  So every write goes to a temp file created
with the final mode in the same directory, is fsynced, renamed over the target
(or hard-linked, to refuse an existing one), and made durable by an fsync of
the directory.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

TMP_SUFFIX = ".tmp"


def fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_private_dir(path: str | Path) -> None:
    """Create ``path`` (and parents) as 0700; tighten it if it already exists."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):
        os.chmod(path, 0o700)


def atomic_write(path: str | Path, data: bytes, mode: int = 0o600, *, exclusive: bool = False,
                 make_parents: bool = False) -> None:
    """Replace ``path`` with ``data`` (write temp, fsync, rename, fsync dir).

    With ``exclusive`` an existing target raises FileExistsError: link() fails
    when the name exists, so of two concurrent writers exactly one wins.
    Raises OSError; callers turn it into their own typed error.
    """
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        if exclusive:
            os.link(tmp, path)
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def remove_stale_temps(directory: str | Path, name: str) -> None:
    """Delete temp files a killed writer left behind (call while holding the writers' lock)."""
    for p in Path(directory).glob(f".{name}.*{TMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            p.unlink()


def overwrite_and_remove(path: str | Path) -> bool:
    """Zero a file's bytes, then delete it; True if it existed.

    Best effort only: wear-levelled flash and copy-on-write filesystems may keep
    old blocks.  The real erasure of a user's data is cryptographic (their keys
    are destroyed); this removes the easy copy.
    """
    path = Path(path)
    try:
        if path.is_file():
            size = path.stat().st_size
            with open(path, "r+b") as fh:
                fh.write(b"\0" * size)
                fh.flush()
                os.fsync(fh.fileno())
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_dir(path.parent)
    return True
