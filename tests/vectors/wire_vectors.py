"""Known-answer vectors of the two MQTT wire formats: the EVENT (schema v1, `firmware.telemetry.events`) and
the signed COMMAND (v1, `firmware.telemetry.commands`, signed by `provisioning.signing.sign_command`).

Each vector fixes every random and time input (the event id's 16 random bytes and the time; the command's
Ed25519 key seed, nonce and time; Ed25519 signatures are deterministic) and records the exact bytes on the
wire.  `tests/vectors/test_wire_vectors.py` checks both directions: the device decodes (verifies) each
stored vector to the recorded fields, and encoding the same inputs with the same fixed randomness gives the
stored bytes exactly.

Regenerate only on a deliberate format change (then bump the format's version):

    PYTHONPATH=. python -m tests.vectors.wire_vectors
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FILES = {"event": HERE / "event_v1.json", "command": HERE / "command_v1.json"}

EVENT_CASES: list[dict[str, Any]] = [
    {"name": "access_granted with a score and data", "random": "00112233445566778899aabbccddeeff",
     "ts": 1800000000.25, "seq": 7,
     "args": {"device": "door-1", "type": "access_granted", "user_id": "u-3f2a", "reason": "granted",
              "scores": {"decision_ms": 412.5}},
     "data": {"by": None, "state": "UNLOCKED"}},
    {"name": "tamper (door forced), default severity, non-ASCII reason", "random": "ffeeddccbbaa99887766554433221100",
     "ts": 1800000123.0, "seq": 1,
     "args": {"device": "shed", "type": "tamper", "reason": "door_forced — café"}, "data": {"state": "TAMPER"}},
    {"name": "heartbeat with the audit chain head", "random": "0f" * 16, "ts": 1800000200.5, "seq": 123456,
     "args": {"device": "door-1", "type": "heartbeat"},
     "data": {"audit_seq": 42, "audit_head": "ab" * 32, "uptime_s": 3600.0}},
]

COMMAND_KEY_SEED = bytes(range(32))  # the management key of these vectors (Ed25519 private key seed)
COMMAND_CASES: list[dict[str, Any]] = [
    {"name": "unlock for 3 s", "device": "door-1", "command": "unlock", "args": {"duration_s": 3},
     "ts": 1800000000.0, "nonce": "0123456789abcdef0123456789abcdef"},
    {"name": "reset-tamper", "device": "door-1", "command": "reset-tamper", "args": {},
     "ts": 1800000010.5, "nonce": "fedcba9876543210fedcba9876543210"},
    {"name": "lockdown on, another device", "device": "shed", "command": "lockdown", "args": {"on": True},
     "ts": 1800000020.0, "nonce": "00000000000000000000000000000001"},
]


@contextlib.contextmanager
def fixed_event_randomness(random16: bytes) -> Iterator[None]:
    """The event id's randomness (firmware.telemetry.events' pool) returns exactly these 16 bytes, once."""
    from firmware.telemetry import events

    taken: list[bytes] = []

    def take16() -> bytes:
        if taken:
            raise AssertionError("the event format drew more randomness than the vector fixes")
        taken.append(random16)
        return random16

    events._POOL.take16 = take16  # type: ignore[method-assign]
    try:
        yield
        if not taken:
            raise AssertionError("the event format drew no randomness: the vector's id is not what it makes")
    finally:
        del events._POOL.take16


def encode_event(case: dict[str, Any]) -> bytes:
    from firmware.telemetry.events import encode, make_event

    with fixed_event_randomness(bytes.fromhex(case["random"])):
        ev = make_event(**case["args"], ts=case["ts"], **case["data"])
    return encode(ev.with_seq(case["seq"]))


@contextlib.contextmanager
def fixed_command_randomness(nonce: str, ts: float) -> Iterator[None]:
    """sign_command's nonce (secrets.token_hex(16)) and time (time.time()) fixed."""
    from provisioning import signing

    real_secrets, real_time = signing.secrets, signing.time

    class Secrets:
        @staticmethod
        def token_hex(n: int) -> str:
            assert n * 2 == len(nonce), (n, nonce)
            return nonce

    class Time:
        @staticmethod
        def time() -> float:
            return ts

    signing.secrets, signing.time = Secrets, Time  # type: ignore[assignment]
    try:
        yield
    finally:
        signing.secrets, signing.time = real_secrets, real_time


def command_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(COMMAND_KEY_SEED)


def public_key_hex() -> str:
    from cryptography.hazmat.primitives import serialization

    return command_key().public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def encode_command(case: dict[str, Any]) -> bytes:
    from provisioning.signing import sign_command

    with fixed_command_randomness(case["nonce"], case["ts"]):
        return sign_command(command_key(), case["device"], case["command"], case["args"])


def build() -> dict[str, dict[str, Any]]:
    events = []
    for c in EVENT_CASES:
        raw = encode_event(c)
        events.append({**c, "wire": raw.decode("utf-8"), "wire_hex": raw.hex()})
    commands = []
    for c in COMMAND_CASES:
        raw = encode_command(c)
        sig = base64.b64decode(json.loads(raw)["sig"])
        commands.append({**c, "wire": raw.decode("ascii"), "signature_hex": sig.hex()})
    return {
        "event": {"format": "FaceLock event v1 (compact JSON, keys in schema order, UTF-8)", "vectors": events},
        "command": {"format": "FaceLock command v1 (JSON; sig = Ed25519 over the canonical JSON of the rest)",
                    "key_seed_hex": COMMAND_KEY_SEED.hex(), "public_key_hex": public_key_hex(),
                    "vectors": commands},
    }


def load(kind: str) -> dict[str, Any]:
    return json.loads(FILES[kind].read_text())


if __name__ == "__main__":
    for kind, doc in build().items():
        FILES[kind].write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
        print("wrote", FILES[kind])
