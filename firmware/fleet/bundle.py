"""The per-door policy bundle (format v1): what a door may do, signed by the centre.

Wire form, published retained on facelock/<door>/policy:

    {"body": {"v": 1, "door": "door-a", "version": 7, "issued_at": 1764600000,
              "lockdown": "off" | "nobody",
              "settings": {"<name>": scalar, ...},
              "people": [{"id": "<uuid>", "schedule": null | [{"days": [...], "start": "08:00", "end": "18:00"}],
                          "templates": [{"id": "<uuid>", "sealed": "<base64 HPKE ciphertext>"}]}]},
     "sig": "<base64 Ed25519 over canonical(body)>"}

Only the people the door needs appear, by their random id (no names), each template sealed to that door
(firmware.fleet.sealing).  A door accepts a bundle only if the signature verifies under the centre key it
was given at onboarding, the body names this door, every field has its type and bound, and the version is
newer than the one it runs (firmware.fleet.store): a replayed old bundle cannot restore a revoked person.

Pure: no I/O, no clock.  Signing is the centre's (central.policy.sign_bundle); the door only verifies.  `encode_template`/`decode_template` fix the template plaintext (float32 vector).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware import boundedjson
from firmware.config_errors import ConfigError
from firmware.fleet.errors import BundleRejected
from firmware.lock.policy import Window, window_from_dict
from firmware.telemetry.topics import valid_device_id

BUNDLE_VERSION = 1
MAX_BUNDLE_BYTES = 8 * 1024 * 1024
MAX_PEOPLE = 20_000
MAX_TEMPLATES_PER_PERSON = 10
MAX_SETTINGS = 32
LOCKDOWN_MODES = ("off", "nobody")
_TEMPLATE_MAGIC = b"FLT1"
MAX_DIM = 2048


def canonical(d: Any) -> bytes:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def encode_template(embedding: np.ndarray) -> bytes:
    v = np.asarray(embedding, dtype="<f4").ravel()
    if not 0 < v.size <= MAX_DIM or not np.all(np.isfinite(v)):
        raise ValueError("a template is 1..2048 finite numbers")
    return _TEMPLATE_MAGIC + struct.pack(">H", v.size) + v.tobytes()


def decode_template(data: bytes) -> np.ndarray:
    if len(data) < 6 or data[:4] != _TEMPLATE_MAGIC:
        raise BundleRejected("bad_template", "not a v1 template")
    (n,) = struct.unpack(">H", data[4:6])
    if not 0 < n <= MAX_DIM or len(data) != 6 + 4 * n:
        raise BundleRejected("bad_template", "template length does not match its header")
    v = np.frombuffer(data, dtype="<f4", offset=6).astype(np.float32)
    if not np.all(np.isfinite(v)):
        raise BundleRejected("bad_template", "non-finite value")
    return v


@dataclass(frozen=True)
class SealedTemplate:
    id: str
    sealed: bytes


@dataclass(frozen=True)
class PersonEntry:
    id: str
    schedule: tuple[Window, ...] | None  # None: any time
    templates: tuple[SealedTemplate, ...]


@dataclass(frozen=True)
class Bundle:
    door: str
    version: int
    issued_at: int
    lockdown: str
    settings: dict[str, Any]
    people: tuple[PersonEntry, ...]

    def person(self, person_id: str) -> PersonEntry | None:
        for p in self.people:
            if p.id == person_id:
                return p
        return None


def verify_bundle(payload: bytes, centre_key: Ed25519PublicKey, door: str) -> Bundle:
    """Signature first (cheap, and nothing unauthenticated is parsed further), then every field."""
    if not isinstance(payload, bytes | bytearray) or len(payload) > MAX_BUNDLE_BYTES:
        raise BundleRejected("malformed", "empty or too large")
    try:
        d = boundedjson.loads(bytes(payload).decode("utf-8"), max_depth=8)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BundleRejected("malformed", "not JSON") from None
    if not isinstance(d, dict) or set(d) != {"body", "sig"} or not isinstance(d["body"], dict):
        raise BundleRejected("malformed", "expected {body, sig}")
    if not isinstance(d["sig"], str):
        raise BundleRejected("malformed", "sig must be base64 text")
    try:
        sig = base64.b64decode(d["sig"], validate=True)
    except (binascii.Error, ValueError):
        raise BundleRejected("malformed", "sig is not base64") from None
    try:
        centre_key.verify(sig, canonical(d["body"]))
    except (InvalidSignature, ValueError, TypeError):
        raise BundleRejected("bad_signature", "not signed by the centre") from None
    bundle = parse_body(d["body"])
    if bundle.door != door:
        raise BundleRejected("wrong_door", "signed for another door")
    return bundle


def _int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def parse_body(b: dict[str, Any]) -> Bundle:
    keys = {"v", "door", "version", "issued_at", "lockdown", "settings", "people"}
    if set(b) != keys:
        raise BundleRejected("malformed", "unexpected or missing keys")
    if not _int(b["v"]):
        raise BundleRejected("malformed", "missing version")
    if b["v"] != BUNDLE_VERSION:
        raise BundleRejected("unknown_version", f"bundle format {b['v']}")
    door, version, issued_at = b["door"], b["version"], b["issued_at"]
    if not isinstance(door, str) or not valid_device_id(door):
        raise BundleRejected("malformed", "bad door id")
    if not _int(version) or not 1 <= version < 2**53:
        raise BundleRejected("malformed", "bad version")
    if not _int(issued_at) or issued_at < 0:
        raise BundleRejected("malformed", "bad issued_at")
    if b["lockdown"] not in LOCKDOWN_MODES:
        raise BundleRejected("malformed", "bad lockdown mode")
    settings = b["settings"]
    if not isinstance(settings, dict) or len(settings) > MAX_SETTINGS:
        raise BundleRejected("malformed", "settings must be a small object")
    for k, v in settings.items():
        if not isinstance(k, str) or len(k) > 64 or not (
                v is None or isinstance(v, bool | str) and len(str(v)) <= 256
                or isinstance(v, int | float) and math.isfinite(v)):
            raise BundleRejected("malformed", "settings values must be scalars")
    people = b["people"]
    if not isinstance(people, list) or len(people) > MAX_PEOPLE:
        raise BundleRejected("malformed", "people must be a list")
    out: list[PersonEntry] = []
    seen: set[str] = set()
    for i, p in enumerate(people):
        if not isinstance(p, dict) or set(p) != {"id", "schedule", "templates"}:
            raise BundleRejected("malformed", f"people[{i}]: expected id, schedule, templates")
        pid = p["id"]
        if not isinstance(pid, str) or not 0 < len(pid) <= 64 or pid in seen:
            raise BundleRejected("malformed", f"people[{i}]: bad or duplicate id")
        seen.add(pid)
        sched: tuple[Window, ...] | None = None
        if p["schedule"] is not None:
            if not isinstance(p["schedule"], list) or not 0 < len(p["schedule"]) <= 32:
                raise BundleRejected("malformed", f"people[{i}].schedule: a non-empty list or null")
            try:
                sched = tuple(window_from_dict(f"schedule[{j}]", w) for j, w in enumerate(p["schedule"]))
            except ConfigError as exc:
                raise BundleRejected("malformed", f"people[{i}]: {exc}") from None
        tpls = p["templates"]
        if not isinstance(tpls, list) or not 0 < len(tpls) <= MAX_TEMPLATES_PER_PERSON:
            raise BundleRejected("malformed", f"people[{i}].templates: 1..{MAX_TEMPLATES_PER_PERSON}")
        sealed: list[SealedTemplate] = []
        for t in tpls:
            if not isinstance(t, dict) or set(t) != {"id", "sealed"} or not isinstance(t["id"], str) \
                    or not 0 < len(t["id"]) <= 64 or not isinstance(t["sealed"], str):
                raise BundleRejected("malformed", f"people[{i}]: bad template entry")
            try:
                sealed.append(SealedTemplate(t["id"], base64.b64decode(t["sealed"], validate=True)))
            except (binascii.Error, ValueError):
                raise BundleRejected("malformed", f"people[{i}]: template is not base64") from None
        out.append(PersonEntry(pid, sched, tuple(sealed)))
    return Bundle(door, version, issued_at, b["lockdown"], dict(settings), tuple(out))

