"""The FaceLock event schema (version 1), shared by the device and the central monitor.

Wire format: one UTF-8 JSON object, at most MAX_EVENT_BYTES, with exactly these keys:

    v         int     schema version, 1
    id        str     UUID4 (canonical text); the same across every resend, the monitor de-duplicates on it
    ts        float   creation time, Unix seconds
    seq       int     per-device sequence number (>= 1) assigned by the outbox; gaps mean eviction
    device    str     device id (also the MQTT client id and TLS identity)
    type      str     one of EVENT_TYPES
    severity  str     one of SEVERITIES ("debug" < "info" < "warning" < "critical")
    user_id   str|null  enrolled user, when known
    reason    str|null  short machine-readable cause (e.g. "no_match", "liveness", "replay")
    scores    {str: float}  decision scores (match similarity, liveness...), finite numbers
    data      {str: str|int|float|bool|null}  small extra facts

Why so strict: the monitor must count and drop bad payloads rather than store them, and the schema is
built so that a face image or an embedding cannot ride along: every value is a scalar, strings are short
(MAX_TEXT), and keys naming images, frames, embeddings or templates are refused.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from firmware.telemetry.errors import EventDecodeError, EventValidationError, UnknownEventVersionError
from firmware.telemetry.topics import valid_device_id

SCHEMA_VERSION = 1
MAX_EVENT_BYTES = 8192
MAX_TEXT = 256
MAX_FIELDS = 32

EVENT_TYPES: frozenset[str] = frozenset(
    {
        "access_granted",
        "access_denied",
        "spoof_suspected",
        "lockout",
        "tamper",
        "door_held_open",
        "door_opened",
        "door_closed",
        "fault",
        "command_result",
        "command_rejected",
        "outbox_evicted",
        "state_changed",
        "enrolled",
        "user_revoked",
        "heartbeat",
        "api_request",
    }
)

SEVERITIES: tuple[str, ...] = ("debug", "info", "warning", "critical")
SEVERITY_RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}

# Default severity per type, so callers rarely have to think about it.
DEFAULT_SEVERITY: dict[str, str] = {
    "access_granted": "info",
    "access_denied": "warning",
    "spoof_suspected": "critical",
    "lockout": "critical",
    "tamper": "critical",
    "door_held_open": "warning",
    "door_opened": "info",
    "door_closed": "info",
    "fault": "critical",
    "command_result": "info",
    "command_rejected": "warning",
    "outbox_evicted": "warning",
    "state_changed": "debug",
    "enrolled": "info",
    "user_revoked": "info",
    "heartbeat": "debug",
    "api_request": "info",
}

FORBIDDEN_KEY_PARTS = ("image", "frame", "embedding", "template", "pixel", "photo", "jpeg", "png")
_KEYS = ("v", "id", "ts", "seq", "device", "type", "severity", "user_id", "reason", "scores", "data")
_KEY_SET = frozenset(_KEYS)

_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class Event:
    """One event; immutable so the id and payload cannot drift between resends."""

    id: str
    ts: float
    device: str
    type: str
    severity: str
    seq: int | None = None
    user_id: str | None = None
    reason: str | None = None
    scores: Mapping[str, float] = field(default_factory=dict)
    data: Mapping[str, Scalar] = field(default_factory=dict)
    # Set by make_event/decode once the fields passed validation; the mappings are frozen copies, so it
    # stays true and encode() can skip a second full check on the hot path.
    _checked: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scores", MappingProxyType(dict(self.scores)))
        object.__setattr__(self, "data", MappingProxyType(dict(self.data)))

    def with_seq(self, seq: int) -> Event:
        """A copy with `seq` set (the mappings are immutable, so sharing them is safe).  Built directly
        rather than through copy.copy: this runs once per stored event, on the lock's own thread."""
        new = object.__new__(Event)
        d = new.__dict__
        d.update(self.__dict__)
        d["seq"] = seq
        return new

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": SCHEMA_VERSION,
            "id": self.id,
            "ts": self.ts,
            "seq": self.seq,
            "device": self.device,
            "type": self.type,
            "severity": self.severity,
            "user_id": self.user_id,
            "reason": self.reason,
            "scores": dict(self.scores),
            "data": dict(self.data),
        }


def make_event(
    device: str,
    type: str,  # noqa: A002 - the schema's own word
    severity: str | None = None,
    user_id: str | None = None,
    reason: str | None = None,
    scores: dict[str, float] | None = None,
    *,
    ts: float | None = None,
    event_id: str | None = None,
    **fields: Scalar,
) -> Event:
    """Build and validate a new event (fresh UUID4, current time); extra keyword fields go to `data`.

    Raises EventValidationError on an unknown type or severity, non-scalar or oversize fields, or
    any field that looks like image or embedding data.
    """
    d = {
        "v": SCHEMA_VERSION,
        "id": event_id or new_event_id(),
        "ts": time.time() if ts is None else float(ts),
        "seq": None,
        "device": device,
        "type": type,
        "severity": severity or DEFAULT_SEVERITY.get(type, "info"),
        "user_id": user_id,
        "reason": reason,
        "scores": dict(scores or {}),
        "data": fields,  # a fresh dict of this call's own keyword arguments
    }
    try:
        _validate(d, require_seq=False)
    except EventDecodeError as exc:
        raise EventValidationError(str(exc)) from None
    return _new_event(d, d["scores"], checked=True)


def _new_event(d: dict[str, Any], scores: dict[str, float], *, checked: bool) -> Event:
    """An Event from a validated field dict whose `scores` and `data` dicts nobody else holds.

    Fills the instance directly instead of through the dataclass __init__ (+ __post_init__ copies):
    every event passes here once on the device and once on the monitor, so this is the hot path."""
    event = object.__new__(Event)
    event.__dict__.update(
        id=d["id"], ts=d["ts"], device=d["device"], type=d["type"], severity=d["severity"], seq=d["seq"],
        user_id=d["user_id"], reason=d["reason"], scores=MappingProxyType(scores),
        data=MappingProxyType(d["data"]), _checked=checked,
    )
    return event


# One encoder, built once: json.dumps with non-default options builds a new JSONEncoder per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class _RandomPool:
    """os.urandom read 4 KiB at a time for event ids: the same kernel CSPRNG as uuid.uuid4(), without a
    system call per event (each one hands the interpreter lock to the network thread and waits to get it
    back).  Thread-safe; emptied in a forked child so parent and child never share ids."""

    SIZE = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buf = b""
        self._pos = 0

    def take16(self) -> bytes:
        with self._lock:
            pos = self._pos
            if pos + 16 > len(self._buf):
                self._buf, pos = os.urandom(self.SIZE), 0
            self._pos = pos + 16
            return self._buf[pos:pos + 16]

    def reset(self) -> None:
        self._lock = threading.Lock()
        self._buf, self._pos = b"", 0


_POOL = _RandomPool()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_POOL.reset)
_V4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_V4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_event_id() -> str:
    """A random (version 4, RFC 4122 variant) UUID in canonical text, like str(uuid.uuid4())."""
    h = f"{int.from_bytes(_POOL.take16(), 'big') & _V4_CLEAR | _V4_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def encode(event: Event) -> bytes:
    """Compact JSON bytes of an event that has a seq (the outbox assigns it)."""
    d = event.to_dict()
    if event._checked:
        if not _is_int(event.seq) or event.seq < 1:
            raise EventValidationError("seq must be an integer >= 1")
    else:
        try:
            _validate(d, require_seq=True)
        except EventDecodeError as exc:
            raise EventValidationError(str(exc)) from None
    raw = _ENCODER.encode(d).encode()
    if len(raw) > MAX_EVENT_BYTES:
        raise EventValidationError(f"event is {len(raw)} bytes, more than {MAX_EVENT_BYTES}")
    return raw


def decode(raw: bytes | bytearray | str) -> Event:
    """Parse and validate wire bytes; raises EventDecodeError (UnknownEventVersionError for a new v)."""
    if isinstance(raw, str):
        raw = raw.encode()
    if not isinstance(raw, bytes | bytearray):
        raise EventDecodeError(f"payload must be bytes, not {type(raw).__name__}")
    if len(raw) > MAX_EVENT_BYTES:
        raise EventDecodeError(f"payload is {len(raw)} bytes, more than {MAX_EVENT_BYTES}")
    try:
        d = _DECODER.decode(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise EventDecodeError(f"not JSON: {exc.__class__.__name__}") from None
    if not isinstance(d, dict):
        raise EventDecodeError("payload is not a JSON object")
    v = d.get("v")
    if not _is_int(v):
        raise EventDecodeError("missing or non-integer schema version 'v'")
    if v != SCHEMA_VERSION:
        raise UnknownEventVersionError(f"unknown event schema version {v!r} (this build knows {SCHEMA_VERSION})")
    _validate(d, require_seq=True)
    d["ts"] = float(d["ts"])
    return _new_event(d, {k: float(x) for k, x in d["scores"].items()}, checked=True)


def severity_rank(severity: str) -> int:
    return SEVERITY_RANK[severity]


def _no_constants(name: str) -> None:
    raise ValueError(f"JSON constant {name} is not allowed")


# Built once: json.loads with a non-default option builds a new JSONDecoder per call.
_DECODER = json.JSONDecoder(parse_constant=_no_constants)


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: object) -> bool:
    return (isinstance(x, int | float)) and not isinstance(x, bool) and math.isfinite(x)


def _short_text(x: object) -> bool:
    return isinstance(x, str) and len(x) <= MAX_TEXT


_FORBIDDEN_RE = re.compile("|".join(FORBIDDEN_KEY_PARTS))


def _check_key(where: str, key: object) -> None:
    if not isinstance(key, str) or not key or len(key) > 64:
        raise EventDecodeError(f"{where}: keys must be non-empty strings of at most 64 characters")
    if _FORBIDDEN_RE.search(key.lower()) is not None:  # any FORBIDDEN_KEY_PARTS in the lower-cased key
        raise EventDecodeError(f"{where}: key {key!r} looks like image or embedding data, refused")


def _validate(d: dict[str, Any], *, require_seq: bool) -> None:
    keys = d.keys()
    if keys != _KEY_SET:
        extra, missing = sorted(keys - _KEY_SET), sorted(_KEY_SET - keys)
        raise EventDecodeError(f"bad keys: unknown {extra}, missing {missing}")
    if not isinstance(d["id"], str) or _UUID_RE.fullmatch(d["id"]) is None:
        raise EventDecodeError("id must be a canonical (lower-case, hyphenated) UUID string")
    if not _is_num(d["ts"]) or d["ts"] <= 0:
        raise EventDecodeError("ts must be a positive finite number")
    seq = d["seq"]
    if require_seq or seq is not None:
        if not _is_int(seq) or seq < 1:
            raise EventDecodeError("seq must be an integer >= 1")
    if not valid_device_id(d["device"]):
        raise EventDecodeError("device must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
    # isinstance first: a JSON list or object is unhashable, and `in` would raise TypeError, not ours.
    if not isinstance(d["type"], str) or d["type"] not in EVENT_TYPES:
        raise EventDecodeError(f"unknown event type {str(d['type'])[:40]!r}")
    if not isinstance(d["severity"], str) or d["severity"] not in SEVERITY_RANK:
        raise EventDecodeError(f"unknown severity {str(d['severity'])[:40]!r}")
    for name in ("user_id", "reason"):
        if d[name] is not None and not (_short_text(d[name]) and d[name]):
            raise EventDecodeError(f"{name} must be null or a non-empty string of at most {MAX_TEXT} characters")
    scores, data = d["scores"], d["data"]
    if not isinstance(scores, dict) or len(scores) > MAX_FIELDS:
        raise EventDecodeError(f"scores must be an object of at most {MAX_FIELDS} numbers")
    for k, x in scores.items():
        _check_key("scores", k)
        if not _is_num(x):
            raise EventDecodeError(f"scores[{k!r}] must be a finite number")
    if not isinstance(data, dict) or len(data) > MAX_FIELDS:
        raise EventDecodeError(f"data must be an object of at most {MAX_FIELDS} scalar fields")
    for k, x in data.items():
        _check_key("data", k)
        if x is None or isinstance(x, bool) or _is_int(x) or _is_num(x):
            continue
        if not _short_text(x):
            raise EventDecodeError(f"data[{k!r}] must be a scalar (strings at most {MAX_TEXT} characters)")
