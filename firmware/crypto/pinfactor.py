"""A per-image PIN factor on top of a user's image key (`facelock encrypt --pin`).

WHY: the image key = HKDF(keystore-sealed user secret ‖ biometric key) needs the
device's keystore and the user's face, but the lock itself holds both the
keystore and the user's template (from which the biometric key regenerates), so
root on the lock can derive every image key.  A PIN the lock never stores is the
one factor a rooted lock does not have:

    pin_key   = Argon2id(PIN, salt, m = 64 MiB, t = 3, p = 1)     (memory-hard: costly per guess)
    image_key = HKDF-SHA256(face image key ‖ pin_key, info = "facelock image key + pin v1")

The descriptor ``{"kdf": "argon2id", "m": KiB, "t": iterations, "p": lanes, "salt": base64}`` is
stored in the container's authenticated metadata.  It is read before the key exists, i.e. before
anything is authenticated, so its parameters go through `firmware.crypto.kdf` bounds first (at
most 64 MiB): a crafted file cannot make the reader allocate more.  A wrong PIN gives another
key, which the container names as a wrong key (its key id differs).

Limits, stated so nobody relies on more: the PIN protects files at rest; a PIN typed on a rooted
lock can be captured there; and an attacker holding the keystore and the file can guess offline at
one Argon2id per guess (0.65-1.0 s on one core of the 2-core test machine), so a 6-digit PIN falls in
about a week on one core and in hours on a many-core machine — use a long one.
"""

from __future__ import annotations

import base64
import os
import unicodedata
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from firmware.crypto.errors import ContainerFormatError, CryptoError, KdfParameterError
from firmware.crypto.kdf import Argon2idParams, argon2id_params

DEFAULT_PARAMS = Argon2idParams(memory_kib=64 * 1024, iterations=3, lanes=1)
SALT_BYTES = 16
MIN_PIN_CHARS = 6
MAX_PIN_CHARS = 256
_INFO = b"facelock image key + pin v1"


class PinError(CryptoError):
    """The PIN is missing, too short or too long (never echoes it)."""


class PinDescriptorError(ContainerFormatError):
    """The PIN descriptor in a container's metadata is malformed (or asks for out-of-bounds KDF work)."""


def normalise_pin(pin: str) -> bytes:
    """NFC-normalised UTF-8, so the same PIN typed on another keyboard/OS gives the same key."""
    if not isinstance(pin, str):
        raise PinError("a PIN is a string")
    text = unicodedata.normalize("NFC", pin)
    if not MIN_PIN_CHARS <= len(text) <= MAX_PIN_CHARS:
        raise PinError(f"a PIN must be {MIN_PIN_CHARS}..{MAX_PIN_CHARS} characters long")
    return text.encode("utf-8")


def new_descriptor(params: Argon2idParams = DEFAULT_PARAMS, salt: bytes | None = None) -> dict[str, Any]:
    """A fresh descriptor (random salt unless given: known-answer vectors fix it)."""
    checked = argon2id_params(params.memory_kib, params.iterations, params.lanes)
    s = os.urandom(SALT_BYTES) if salt is None else bytes(salt)
    if len(s) != SALT_BYTES:
        raise CryptoError(f"the PIN salt must be {SALT_BYTES} bytes")
    return {"kdf": "argon2id", "m": checked.memory_kib, "t": checked.iterations, "p": checked.lanes,
            "salt": base64.b64encode(s).decode("ascii")}


def parse_descriptor(desc: Any) -> tuple[Argon2idParams, bytes]:
    """Checked (parameters, salt) of a stored descriptor; PinDescriptorError before any KDF work."""
    if not isinstance(desc, dict) or desc.get("kdf") != "argon2id" or set(desc) != {"kdf", "m", "t", "p", "salt"}:
        raise PinDescriptorError("the PIN descriptor is malformed (expected kdf=argon2id, m, t, p, salt)")
    try:
        params = argon2id_params(desc["m"], desc["t"], desc["p"])
    except KdfParameterError as exc:
        raise PinDescriptorError(f"the PIN descriptor is refused: {exc}") from None
    try:
        salt = base64.b64decode(desc["salt"], validate=True)
    except (TypeError, ValueError):
        raise PinDescriptorError("the PIN descriptor's salt is not base64") from None
    if len(salt) != SALT_BYTES:
        raise PinDescriptorError(f"the PIN descriptor's salt must be {SALT_BYTES} bytes")
    return params, salt


def combine(image_key: bytes, pin: str, desc: dict[str, Any]) -> bytes:
    """The 32-byte key of a PIN-protected image: needs the face's image key *and* the PIN."""
    params, salt = parse_descriptor(desc)
    pin_key = params.derive(normalise_pin(pin), salt)
    if not isinstance(image_key, (bytes, bytearray)) or len(image_key) != 32:
        raise CryptoError("the image key must be 32 bytes")
    return HKDF(hashes.SHA256(), 32, salt=None, info=_INFO).derive(bytes(image_key) + pin_key)
