"""The bundle a door runs, on its own disk: crash-safe, rollback-proof, still sealed.

The file is the signed wire payload exactly as received (templates remain HPKE-sealed to this door's
key, which lives in the keystore), so at rest it holds nothing in the clear, and it is re-verified
against the centre key whenever it is loaded: a file edited on the SD card is refused like a tampered
message.  A new bundle replaces the old one with one atomic rename (firmware.fsutil), only after every
template in it has been opened successfully, so a door never runs half of a bundle.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from firmware import fsutil
from firmware.fleet.bundle import Bundle, decode_template, verify_bundle
from firmware.fleet.errors import BundleRejected, SealError
from firmware.fleet.sealing import open_template

FILE_NAME = "policy.bundle"


def open_all(bundle: Bundle, door_key: X25519PrivateKey) -> dict[str, list]:
    """person id -> decoded template vectors (in memory only); BundleRejected if any fails to open."""
    out: dict[str, list] = {}
    for p in bundle.people:
        vecs = []
        for t in p.templates:
            try:
                vecs.append(decode_template(open_template(door_key, bundle.door, p.id, t.id, t.sealed)))
            except SealError:
                raise BundleRejected("bad_template", f"template of person {p.id[:36]} does not open") from None
        out[p.id] = vecs
    return out


class BundleStore:
    def __init__(self, directory: str | Path, door: str, centre_key: Ed25519PublicKey,
                 door_key: X25519PrivateKey) -> None:
        self.dir = Path(directory)
        fsutil.make_private_dir(self.dir)
        self.path = self.dir / FILE_NAME
        self.door = door
        self.centre_key = centre_key
        self.door_key = door_key
        self._current: Bundle | None = None
        self._loaded = False

    def opened(self) -> tuple[Bundle, dict[str, list]] | None:
        """The applied bundle and its templates opened again (in memory only), or None before the first."""
        b = self.current()
        return None if b is None else (b, open_all(b, self.door_key))

    def current(self) -> Bundle | None:
        """The applied bundle (verified again on first load), or None before the first one."""
        if not self._loaded:
            self._loaded = True
            try:
                raw = self.path.read_bytes()
            except FileNotFoundError:
                return None
            self._current = verify_bundle(raw, self.centre_key, self.door)
        return self._current

    def forget(self) -> None:
        """Run as if nothing was stored (after the caller moved a file that no longer verifies aside)."""
        self._current, self._loaded = None, True

    def current_version(self) -> int:
        b = self.current()
        return b.version if b else 0

    def apply(self, payload: bytes, check: Callable[[Bundle, dict[str, list]], None] | None = None
              ) -> tuple[Bundle, dict[str, list], bool]:
        """Verify and apply; returns (bundle, opened templates, changed).  An equal version is a resend
        (changed=False, nothing written); an older one is refused as a rollback.  ``check`` (the lock's
        own bounds, firmware.fleet.lockhook) may refuse a verified bundle before anything is written."""
        bundle = verify_bundle(payload, self.centre_key, self.door)
        have = self.current_version()
        if bundle.version < have:
            raise BundleRejected("rollback", f"version {bundle.version} is older than the running {have}")
        opened = open_all(bundle, self.door_key)
        if check is not None:
            check(bundle, opened)
        if bundle.version == have:
            return bundle, opened, False
        fsutil.atomic_write(self.path, bytes(payload), 0o600)
        self._current, self._loaded = bundle, True
        return bundle, opened, True
