"""The Home Assistant bridge: turns HA's plain LOCK/UNLOCK on `facelock/<device>/ha/set` into signed commands.

Layers, each of which alone stops the cross-door unlock of issue 11 item 2:
- the broker lets only HA's identity (`facelock-ha`) publish on `facelock/+/ha/set`, and no device may write
  `ha/` or `homeassistant/` (so no device can press its own button nor point an entity at another door);
- the monitor publishes discovery itself, from the devices it knows, each entity's command topic its own;
- here: a device must be in the grant, UNLOCK needs the device in `ha_unlock_allowed` (default: none, so HA
  can only lock), a retained or unknown payload is refused, and each device gets at most `ha_rate_per_min`
  commands a minute;
- the bridge signs with its own scoped key, never the management key, and the device accepts that key only
  for what the management-signed grant names (lock/unlock at most, of the named devices).

Pure apart from the clock passed in: `decide` returns what to publish or why not.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.config_errors import ConfigError
from firmware.telemetry import topics
from firmware.telemetry.grants import load_grant, raw_public
from provisioning.signing import sign_command

PAYLOADS = {"LOCK": "lock", "UNLOCK": "unlock"}


@dataclass(frozen=True)
class Decision:
    ok: bool
    device: str
    command: str | None = None
    reason: str = ""
    topic: str = ""
    payload: bytes = b""


class HaBridge:
    def __init__(self, key: Ed25519PrivateKey, grant: dict, unlock_allowed: tuple[str, ...], rate_per_min: int
                 ) -> None:
        self.key = key
        self.grant = grant
        self.unlock_allowed = frozenset(unlock_allowed)
        self.rate_per_min = rate_per_min
        self._recent: dict[str, deque[float]] = {}
        body = grant.get("body") if isinstance(grant, dict) else None
        if not isinstance(body, dict) or body.get("key") is None:
            raise ConfigError("monitor.ha_grant_file: not a grant")
        import base64

        if base64.b64decode(body["key"]) != raw_public(key.public_key()):
            raise ConfigError("monitor.ha_grant_file: the grant is for another key than monitor.ha_key_file")
        devices = body.get("devices", {})
        self.granted = {d: frozenset(n) for d, n in devices.items()} if isinstance(devices, dict) else {}
        self.not_after = float(body.get("not_after", 0))

    @classmethod
    def from_files(cls, key_file: str, grant_file: str, unlock_allowed: tuple[str, ...], rate_per_min: int
                   ) -> HaBridge:
        try:
            key = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"monitor.ha_key_file: cannot load {key_file} ({exc.__class__.__name__})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError("monitor.ha_key_file: not an Ed25519 private key")
        return cls(key, load_grant(grant_file), unlock_allowed, rate_per_min)

    def devices(self) -> list[str]:
        return sorted(self.granted)

    def decide(self, device: str, payload: bytes, retain: bool, now: float) -> Decision:
        text = payload.decode(errors="replace").strip()
        name = PAYLOADS.get(text)
        if retain or name is None or not topics.valid_device_id(device):
            return Decision(False, device, name, "malformed")
        if name not in self.granted.get(device, frozenset()):
            return Decision(False, device, name, "not_granted")
        if name == "unlock" and device not in self.unlock_allowed:
            return Decision(False, device, name, "unlock_not_allowed")
        if now > self.not_after:
            return Decision(False, device, name, "grant_expired")
        q = self._recent.setdefault(device, deque())
        while q and q[0] <= now - 60.0:
            q.popleft()
        if len(q) >= self.rate_per_min:
            return Decision(False, device, name, "rate_limited")
        q.append(now)
        signed = sign_command(self.key, device, name, ts=now, grant=self.grant)
        return Decision(True, device, name, "", topics.command(device, name), signed)


def discovery_for(devices: list[str]) -> list[tuple[str, bytes]]:
    from firmware.telemetry.ha_discovery import discovery_messages

    out: list[tuple[str, bytes]] = []
    for d in devices:
        if topics.valid_device_id(d) and not topics.is_reserved(d):
            out.extend(discovery_messages(d))
    return out
