"""Face re-verification in front of the image key (shared by `facelock encrypt` and `decrypt`).

The FaceLock paper's workflow: encrypt with a user's key only after their face
is verified, decrypt only after it is verified again.  The key itself needs
the face: per-user image key = HKDF(keystore-sealed user secret || biometric
key), and the biometric key is regenerated from the presented face by the
fuzzy extractor of the template store.  A different person's face neither
passes the 1:1 match nor regenerates the key.
"""

from __future__ import annotations

from pathlib import Path

from provisioning.errors import FaceRefusedError, ProvisioningError

CONTAINER_META_KEY = "facelock"


def image_key_for(users, user_ref: str, probe: Path | None, camera: str | None) -> tuple[object, bytes, dict]:
    """(user, 32-byte image key, key metadata) after verifying the presented face as ``user_ref``."""
    from provisioning import capture

    user = users.get(user_ref)
    if user.revoked:
        raise FaceRefusedError(f"user {user.name!r} ({user.user_id}) is revoked")
    emb, how = capture.probe_embedding(probe, camera)
    key, meta = users.image_key(user.user_id, emb)  # FaceRefusedError when the face is not theirs
    return user, key, {**meta, "verified_by": how}


def read_input(path: Path, what: str = "input") -> bytes:
    from provisioning.errors import InputFileError

    p = Path(path)
    try:
        if p.is_dir():
            raise InputFileError(f"{p}: is a directory")
        return p.read_bytes()
    except FileNotFoundError:
        raise InputFileError(f"{p}: no such file") from None
    except PermissionError:
        raise InputFileError(f"{p}: permission denied") from None
    except OSError as exc:
        raise InputFileError(f"{p}: cannot read {what}: {exc.strerror}") from None


def write_output(path: Path, data: bytes, force: bool, *, inputs: tuple[Path, ...] = ()) -> None:
    from provisioning.atomicfile import write_atomic
    from provisioning.errors import AlreadyExistsError

    p = Path(path)
    for src in inputs:
        try:
            if p.exists() and p.samefile(src):
                raise ProvisioningError(f"{p}: the output would overwrite the input")
        except OSError:
            pass
    if p.exists() and not force:
        raise AlreadyExistsError(f"{p} already exists (use --force to overwrite)")
    # Decrypted images are personal data: 0600 like keys.
    write_atomic(p, data, 0o600)
