"""The Python client of the Face Security API (what ``facelock verify`` uses).

    from firmware.api.client import ApiClient
    res = ApiClient().verify(user="alice", purpose="kiosk", timeout_s=10)
    if res.ok: ...

Errors are typed: :class:`ApiUnavailableError` when nothing answers on the socket (the daemon is down, or
the path is wrong), :class:`ApiCallError` (with ``code``) when the server refused the call, and
:class:`~firmware.api.protocol.ProtocolError` when the answer is not the protocol.  A verify that ran and
refused the face is *not* an error: it returns ``VerifyResult(ok=False, reason=...)``.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from firmware.api.config import DEFAULT_SOCKET
from firmware.api.protocol import (
    DEFAULT_TIMEOUT_S,
    ProtocolError,
    VerifyResult,
    decode_response_line,
    encode_request,
)
from firmware.errors import FaceLockError

MAX_LINE = 64 * 1024
ENV_SOCKET = "FACELOCK_API_SOCKET"


class ApiUnavailableError(FaceLockError):
    """No Face Security API answers at the socket (daemon stopped, API off, wrong path, no permission)."""


class ApiCallError(FaceLockError):
    """The server refused the call: ``code`` is one of firmware.api.protocol.ERROR_CODES."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def default_socket() -> Path:
    return Path(os.environ.get(ENV_SOCKET) or DEFAULT_SOCKET)


class ApiClient:
    def __init__(self, path: str | Path | None = None, connect_timeout_s: float = 2.0):
        self.path = Path(path) if path is not None else default_socket()
        self.connect_timeout_s = connect_timeout_s

    def call(self, request: bytes, timeout_s: float, on_progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Send one request line; return the final answer object (progress lines go to ``on_progress``)."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            s.settimeout(self.connect_timeout_s)
            give_up = time.monotonic() + self.connect_timeout_s
            while True:
                try:
                    s.connect(str(self.path))
                    break
                except BlockingIOError:  # the listen backlog is full (the server is busy): retry a moment
                    if time.monotonic() > give_up:
                        raise ApiUnavailableError(f"{self.path} accepts no connection (server busy)") from None
                    time.sleep(0.02)
                except OSError as exc:
                    raise ApiUnavailableError(f"no Face Security API at {self.path} ({exc.strerror or exc})") from None
            s.sendall(request)
            s.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + timeout_s
            buf = b""
            while True:
                nl = buf.find(b"\n")
                if nl >= 0:
                    obj = decode_response_line(buf[:nl])
                    buf = buf[nl + 1:]
                    if "progress" in obj:
                        if on_progress is not None:
                            on_progress(str(obj["progress"]))
                        continue
                    return obj
                if len(buf) > MAX_LINE:
                    raise ProtocolError("too_large", "the server's answer line is too long")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ApiUnavailableError(f"no answer from {self.path} within {timeout_s:g} s")
                s.settimeout(left)
                try:
                    chunk = s.recv(65536)
                except TimeoutError:
                    raise ApiUnavailableError(f"no answer from {self.path} within {timeout_s:g} s") from None
                except OSError as exc:
                    raise ApiUnavailableError(f"the connection to {self.path} failed ({exc.strerror or exc})") from None
                if not chunk:
                    raise ApiUnavailableError(f"{self.path} closed the connection without an answer")
                buf += chunk
        finally:
            s.close()

    @staticmethod
    def _check(obj: dict[str, Any]) -> dict[str, Any]:
        err = obj.get("error")
        if err is not None:
            if not isinstance(err, dict):
                raise ProtocolError("malformed", "the server's error is not an object")
            raise ApiCallError(str(err.get("code", "internal")), str(err.get("message", "")))
        return obj

    def verify(self, user: str | None = None, purpose: str = "cli", timeout_s: float = DEFAULT_TIMEOUT_S,
               on_progress: Callable[[str], None] | None = None) -> VerifyResult:
        obj = self._check(self.call(encode_request("verify", user, purpose, timeout_s), timeout_s + 5.0, on_progress))
        try:
            scores = {str(k): float(v) for k, v in dict(obj.get("scores") or {}).items()}
            return VerifyResult(bool(obj["ok"]), str(obj["reason"]), obj.get("user_id"), scores, obj.get("attempt_id"))
        except (KeyError, TypeError, ValueError):
            raise ProtocolError("malformed", "the server's verify answer lacks ok/reason") from None

    def status(self, timeout_s: float = 5.0) -> dict[str, Any]:
        return dict(self._check(self.call(encode_request("status"), timeout_s))["status"])

    def users(self, timeout_s: float = 5.0) -> list[dict[str, str]]:
        return list(self._check(self.call(encode_request("users"), timeout_s))["users"])
