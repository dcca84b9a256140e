"""Authenticated remote commands: Ed25519 signature by the management key + fresh timestamp + unseen nonce.

Wire format (version 1), published on `facelock/<device>/cmd/<name>`, never retained:

    {"v": 1, "name": "unlock", "device": "door-1", "ts": 1700000000.5, "nonce": "<32 hex>",
     "args": {"duration_s": 5}, "sig": "<base64 Ed25519 signature>"}

The signature covers the canonical JSON (sorted keys, no spaces) of every key but "sig", so the device id,
the name and the arguments are all bound: a command signed for one device or one name cannot be replayed
on another topic.  Checks run cheapest-and-safest first; the nonce is remembered only once the signature
and the timestamp are good, so unauthenticated junk cannot fill the nonce table.

Commands and their arguments: the one table, firmware.lock.remote.COMMANDS (lock, unlock {duration_s?},
lockdown {on}, enroll-mode {on}, revoke-user {user_id}, reset-tamper, snapshot).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware.lock.remote import COMMANDS, ArgsError, check_args
from firmware.telemetry.errors import CommandRejected, TelemetryError
from firmware.telemetry.grants import granted_signer
from firmware.telemetry.replay_guard import ReplayGuard, device_clock
from firmware.telemetry.topics import ROOT

COMMAND_VERSION = 1
MAX_COMMAND_BYTES = 4096
NONCE_HEX_MIN, NONCE_HEX_MAX = 32, 64

#: wire names, from the one command table (firmware.lock.remote.COMMANDS)
COMMAND_NAMES: frozenset[str] = frozenset(COMMANDS)


def _num(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class Command:
    """A command that passed every check (only these reach the device's `on_command`)."""

    name: str
    device: str
    ts: float
    nonce: str
    args: dict[str, Any] = field(default_factory=dict)


def canonical(d: dict[str, Any]) -> bytes:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise TelemetryError(f"cannot load management public key {path}: {exc.__class__.__name__}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise TelemetryError(f"management key {path} is not an Ed25519 public key")
    return key


NonceStore = ReplayGuard  # the replay store (firmware.telemetry.replay_guard): nonces + high-water mark


class CommandVerifier:
    """Turns (topic, payload, retain) into a `Command` or raises CommandRejected(reason)."""

    def __init__(
        self,
        device_id: str,
        public_key: Ed25519PublicKey,
        nonces: NonceStore,
        max_age_s: float = 30.0,
        clock: Callable[[], float] = device_clock,
    ) -> None:
        self.device_id = device_id
        self.public_key = public_key
        self.nonces = nonces
        self.max_age_s = max_age_s
        self.clock = clock

    def verify(self, topic: str, payload: bytes, retain: bool = False) -> Command:
        if retain:
            # A retained command would replay itself on every reconnect (a retained UNLOCK opens the door).
            raise CommandRejected("retained", "commands must not be retained")
        parts = topic.split("/")
        if len(parts) != 4 or parts[0] != ROOT or parts[1] != self.device_id or parts[2] != "cmd":
            raise CommandRejected("wrong_topic", "not this device's command topic")
        topic_name = parts[3]
        if len(payload) > MAX_COMMAND_BYTES:
            raise CommandRejected("malformed", f"{len(payload)} bytes, more than {MAX_COMMAND_BYTES}")
        try:
            d = json.loads(bytes(payload).decode("utf-8"), parse_constant=_refuse_constant)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise CommandRejected("malformed", "not JSON") from None
        if not isinstance(d, dict):
            raise CommandRejected("malformed", "not a JSON object")
        if "sig" not in d:
            raise CommandRejected("unsigned", "no signature")
        v = d.get("v")
        if not isinstance(v, int) or isinstance(v, bool):
            raise CommandRejected("malformed", "missing version")
        if v != COMMAND_VERSION:
            raise CommandRejected("unknown_version", f"version {v}")
        if set(d) - {"grant"} != {"v", "name", "device", "ts", "nonce", "args", "sig"}:
            raise CommandRejected("malformed", "unexpected or missing keys")
        sig_text, name, device, ts, nonce, args = d["sig"], d["name"], d["device"], d["ts"], d["nonce"], d["args"]
        if not isinstance(sig_text, str):
            raise CommandRejected("malformed", "sig must be base64 text")
        try:
            sig = base64.b64decode(sig_text, validate=True)
        except (binascii.Error, ValueError):
            raise CommandRejected("malformed", "sig is not base64") from None
        if not isinstance(name, str) or name not in COMMAND_NAMES:
            raise CommandRejected("unknown_command", str(name)[:40])
        if name != topic_name:
            raise CommandRejected("wrong_topic", "name differs from the topic")
        if device != self.device_id:
            raise CommandRejected("wrong_device", "signed for another device")
        if not _num(ts):
            raise CommandRejected("malformed", "ts must be a number")
        if not isinstance(nonce, str) or not NONCE_HEX_MIN <= len(nonce) <= NONCE_HEX_MAX or not _is_hex(nonce):
            raise CommandRejected("malformed", f"nonce must be {NONCE_HEX_MIN}..{NONCE_HEX_MAX} hex digits")
        if not isinstance(args, dict):
            raise CommandRejected("malformed", "args must be an object")
        body = {k: d[k] for k in ("v", "name", "device", "ts", "nonce", "args", "grant") if k in d}
        signer = self.public_key
        if "grant" in d:  # a scoped key (the HA bridge): only the commands its grant names, on this device
            signer = granted_signer(d["grant"], self.public_key, self.device_id, name, self.clock())
        try:
            signer.verify(sig, canonical(body))
        except (InvalidSignature, ValueError, TypeError):
            raise CommandRejected("bad_signature", "not signed by the management key") from None
        now = self.clock()
        if abs(now - ts) > self.max_age_s:
            raise CommandRejected("stale", f"timestamp {now - ts:+.1f} s off (limit {self.max_age_s:g} s)")
        _check_args(name, args)
        self.nonces.admit(nonce, float(ts), self.max_age_s)  # replay / older than accepted: CommandRejected
        return Command(name=name, device=device, ts=float(ts), nonce=nonce, args=dict(args))


def _check_args(name: str, args: dict[str, Any]) -> None:
    try:
        check_args(name, args)
    except ArgsError as exc:
        raise CommandRejected("bad_args", str(exc)) from None


def _is_hex(s: str) -> bool:
    return all(c in "0123456789abcdef" for c in s)


def _refuse_constant(name: str) -> None:
    raise ValueError(name)
