"""The keystore writers' lock (crash-safe writes themselves live in firmware.fsutil).

WHY: two processes rotating keys at once must not interleave their
read-modify-write of the key files; an flock is released by the kernel even
when its holder is SIGKILLed, so a crash never leaves the store locked.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from firmware.keystore.errors import KeystoreBusyError


@contextlib.contextmanager
def exclusive_lock(lock_path: Path, timeout_s: float) -> Iterator[None]:
    """Hold an flock on ``lock_path``; the kernel drops it when the holder dies (even by SIGKILL)."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise KeystoreBusyError(
                        f"keystore lock {lock_path} held by another process for over {timeout_s}s"
                    ) from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # closing releases the flock
