"""Templates sealed to one door: HPKE (RFC 9180) base mode, DHKEM(X25519), HKDF-SHA256, ChaCha20-Poly1305.

The HPKE `info` binds the door id, the person id and the template id, so a sealed template lifted from
one door's bundle, or moved to another person inside a bundle, does not open.  Only the door holds the
private key (sealed in its keystore), so neither the broker nor anyone reading a bundle learns a template.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from firmware.fleet.errors import SealError

SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
MAX_SEALED = 16384


def _info(door: str, person: str, template_id: str) -> bytes:
    return b"\0".join([b"facelock fleet template v1", door.encode(), person.encode(), template_id.encode()])


def seal_template(door_pub: X25519PublicKey | bytes, door: str, person: str, template_id: str,
                  plaintext: bytes) -> bytes:
    if isinstance(door_pub, bytes):
        door_pub = X25519PublicKey.from_public_bytes(door_pub)
    return SUITE.encrypt(plaintext, door_pub, info=_info(door, person, template_id))


def open_template(door_key: X25519PrivateKey, door: str, person: str, template_id: str, sealed: bytes) -> bytes:
    if not isinstance(sealed, bytes) or not 32 + 16 <= len(sealed) <= MAX_SEALED:
        raise SealError("sealed template has an impossible length")
    try:
        return SUITE.decrypt(sealed, door_key, info=_info(door, person, template_id))
    except (InvalidTag, ValueError) as exc:
        raise SealError(f"template {template_id[:36]} does not open with this door's key "
                        f"({exc.__class__.__name__})") from None
