"""Crash-safe writes for the CLI: firmware.fsutil with errors as one-line ProvisioningErrors."""

from __future__ import annotations

from pathlib import Path

from firmware import fsutil
from provisioning.errors import ProvisioningError


def write_atomic(path: Path, data: bytes, mode: int = 0o600, *, exclusive: bool = False) -> None:
    """Atomically replace ``path`` with ``data``; with ``exclusive`` refuse an existing file."""
    try:
        fsutil.atomic_write(path, data, mode, exclusive=exclusive, make_parents=True)
    except FileExistsError as exc:
        raise ProvisioningError(f"{path} already exists") from exc
    except OSError as exc:
        raise ProvisioningError(f"cannot write {path}: {exc.strerror or exc}") from exc


def remove_file(path: Path, *, overwrite: bool = True) -> bool:
    """Delete ``path`` (zeroing it first, see fsutil.overwrite_and_remove); True if it existed."""
    try:
        if overwrite:
            return fsutil.overwrite_and_remove(path)
        Path(path).unlink()
        fsutil.fsync_dir(Path(path).parent)
        return True
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise ProvisioningError(f"cannot delete {path}: {exc.strerror or exc}") from exc
