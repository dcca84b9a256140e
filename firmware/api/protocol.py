"""The Face Security API wire protocol, version 1 (pure: no sockets, no lock).

One request per connection over a Unix stream socket.  The client sends one UTF-8 JSON object, ended by a
newline or by shutting down its write side; the server answers with zero or more *progress* lines and
exactly one *final* line, each one JSON object ending in ``\\n``, then closes.

Request (at most :data:`MAX_REQUEST_BYTES`, newline included)::

    {"v": 1, "method": "verify", "params": {"user": "alice", "purpose": "sudo", "timeout_s": 10}}
    {"v": 1, "method": "status"}
    {"v": 1, "method": "users"}

``verify`` params: ``user`` (optional; an enrolled user's id or name: only that user may pass),
``purpose`` (required; 1-32 of ``[a-z0-9_.-]``, checked against the caller's allowed purposes, recorded in
the audit log), ``timeout_s`` (optional, 0 < t <= the server's ``max_timeout_s``; default
:data:`DEFAULT_TIMEOUT_S`).  Unknown keys are refused, so a typo never silently changes a request.

Progress line (verify only, zero or more, before the final line)::

    {"v": 1, "progress": "looking"}      the request is waiting for a face at the camera
    {"v": 1, "progress": "face_seen"}    a face is in view: liveness and matching are running

Final line, success of the call (``ok`` is the answer to the question asked)::

    verify: {"v": 1, "ok": true|false, "user_id": str|null, "reason": str, "scores": {str: float},
             "attempt_id": str|null}
    status: {"v": 1, "ok": true, "status": {...}}
    users:  {"v": 1, "ok": true, "users": [{"user_id": str, "name": str}, ...]}

verify ``reason``: ``ok``; ``spoof_suspected`` (liveness refused the attempt); ``no_match`` (not an
enrolled face); ``wrong_user`` (an enrolled face, not the one asked for); ``schedule`` / ``lockdown``
(recognised, but the door's policy refuses them now); ``lockout`` (too many failures: the shared lockout
is running); ``timeout`` (no decided attempt within ``timeout_s``).  Every reason except ``ok`` and
``timeout`` is a face that was refused; failures count toward the lockout exactly as at the door.

Final line, the call itself failed (no attempt ran)::

    {"v": 1, "ok": false, "error": {"code": "<code>", "message": "<one line for a human>"}}

Error codes (:data:`ERROR_CODES`): ``malformed`` (not JSON, not an object, bad field, incomplete),
``too_large``, ``unsupported_version``, ``unknown_method``, ``forbidden`` (the caller's uid/gid may not
call this method or purpose), ``rate_limited``, ``busy`` (too many connections), ``unknown_user`` (no
active enrolled user has that id or name), ``unavailable`` (the lock is in FAULT or not ready), ``timeout`` (the request was not received in time), ``internal``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from firmware.errors import FaceLockError

VERSION = 1
MAX_REQUEST_BYTES = 4096
MAX_TIMEOUT_S = 60.0
DEFAULT_TIMEOUT_S = 10.0
METHODS = ("verify", "status", "users")
PROGRESS = ("looking", "face_seen")
VERIFY_REASONS = ("ok", "spoof_suspected", "no_match", "wrong_user", "schedule", "lockdown", "lockout", "timeout")
ERROR_CODES = ("malformed", "too_large", "unsupported_version", "unknown_method", "forbidden", "rate_limited",
               "busy", "unknown_user", "unavailable", "timeout", "internal")
_PURPOSE = re.compile(r"^[a-z0-9_.-]{1,32}$")
_USER = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")  # a user id or a display name (as the template store allows)


class ProtocolError(FaceLockError):
    """A request or response that breaks the protocol; ``code`` is one of :data:`ERROR_CODES`."""

    def __init__(self, code: str, message: str):
        assert code in ERROR_CODES, code
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Request:
    method: str
    user: str | None = None
    purpose: str = ""
    timeout_s: float = DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    reason: str
    user_id: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    attempt_id: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"v": VERSION, "ok": self.ok, "user_id": self.user_id, "reason": self.reason,
                "scores": {k: float(v) for k, v in self.scores.items()}, "attempt_id": self.attempt_id}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_request(raw: bytes, max_timeout_s: float = MAX_TIMEOUT_S) -> Request:
    """Bytes of one request (without the newline) -> Request, or ProtocolError saying what is wrong."""
    if len(raw) > MAX_REQUEST_BYTES:
        raise ProtocolError("too_large", f"request larger than {MAX_REQUEST_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("malformed", "request is not UTF-8") from None
    if not text.strip():
        raise ProtocolError("malformed", "empty request")
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("malformed", f"request is not one JSON object ({str(exc)[:80]})") from None
    if not isinstance(obj, dict):
        raise ProtocolError("malformed", "request must be a JSON object")
    unknown = set(obj) - {"v", "method", "params"}
    if unknown:
        raise ProtocolError("malformed", f"unknown request key {sorted(unknown)[0]!r}")
    v = obj.get("v")
    if not isinstance(v, int) or isinstance(v, bool):
        raise ProtocolError("malformed", "missing or non-integer protocol version 'v'")
    if v != VERSION:
        raise ProtocolError("unsupported_version", f"protocol version {v} is not supported (this server: {VERSION})")
    method = obj.get("method")
    if not isinstance(method, str):
        raise ProtocolError("malformed", "missing 'method'")
    if method not in METHODS:
        raise ProtocolError("unknown_method", f"unknown method {method[:40]!r} (known: {', '.join(METHODS)})")
    params = obj.get("params", {})
    if not isinstance(params, dict):
        raise ProtocolError("malformed", "'params' must be an object")
    if method != "verify":
        if params:
            raise ProtocolError("malformed", f"{method} takes no params")
        return Request(method)
    unknown = set(params) - {"user", "purpose", "timeout_s"}
    if unknown:
        raise ProtocolError("malformed", f"unknown verify param {sorted(unknown)[0]!r}")
    user = params.get("user")
    if user is not None and (not isinstance(user, str) or not _USER.match(user)):
        raise ProtocolError("malformed", "'user' must be a user id or name (1-128 printable characters)")
    purpose = params.get("purpose")
    if not isinstance(purpose, str) or not _PURPOSE.match(purpose):
        raise ProtocolError("malformed", "'purpose' is required: 1-32 characters of a-z 0-9 _ . -")
    timeout = params.get("timeout_s", DEFAULT_TIMEOUT_S)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not math.isfinite(timeout) \
            or not 0 < timeout <= max_timeout_s:
        raise ProtocolError("malformed", f"'timeout_s' must be a number in (0, {max_timeout_s:g}]")
    return Request(method, user, purpose, float(timeout))


def encode_request(method: str, user: str | None = None, purpose: str | None = None,
                   timeout_s: float | None = None) -> bytes:
    """The client side of :func:`decode_request` (one line)."""
    params: dict[str, Any] = {}
    if method == "verify":
        params["purpose"] = purpose
        if user is not None:
            params["user"] = user
        if timeout_s is not None:
            params["timeout_s"] = timeout_s
    obj: dict[str, Any] = {"v": VERSION, "method": method}
    if params:
        obj["params"] = params
    return encode_line(obj)


def encode_line(obj: dict[str, Any]) -> bytes:
    """One protocol line: compact JSON, ASCII only (non-ASCII escaped), newline-terminated."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode() + b"\n"


def error_line(code: str, message: str) -> bytes:
    return encode_line({"v": VERSION, "ok": False, "error": {"code": code, "message": " ".join(message.split())}})


def progress_line(stage: str) -> bytes:
    assert stage in PROGRESS, stage
    return encode_line({"v": VERSION, "progress": stage})


def decode_response_line(raw: bytes) -> dict[str, Any]:
    """One server line -> dict (client side); ProtocolError("malformed") for anything that is not one."""
    try:
        obj = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProtocolError("malformed", "the server's answer is not JSON") from None
    if not isinstance(obj, dict) or obj.get("v") != VERSION:
        raise ProtocolError("malformed", "the server's answer is not a version-1 protocol object")
    return obj
