"""The API's methods (verify, status, users) over small interfaces to the lock, the users and the records.

Why interfaces: the socket server (firmware.api.server) and these methods are tested without a camera;
the daemon binds them to the running lock through :mod:`firmware.api.lockport`.  Every request, served or
refused, goes to the :class:`Recorder`: one audit record (the audit log's hash chain; the user as their
pseudonym, never a name or id) and one ``api_request`` event.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from firmware.api.access import Peer, RateLimiter, may_call
from firmware.api.config import ApiConfig
from firmware.api.protocol import VERSION, ProtocolError, Request, VerifyResult

log = logging.getLogger("facelock.api")


class LockView(Protocol):
    """What the API needs of the running lock (implemented by firmware.api.lockport)."""

    def unavailable(self) -> str | None:
        """None when the lock can decide attempts; otherwise why not (FAULT, starting)."""

    def lockout_remaining(self) -> float: ...

    def status(self) -> dict[str, Any]: ...

    def verify(self, wanted: frozenset[str] | None, purpose: str, timeout_s: float,
               progress: Callable[[str], None], gone: Callable[[], bool]) -> VerifyResult:
        """One attempt decided by the lock for this caller (never the relay); ``timeout`` when none came."""

    def user_ref(self, user_id: str | None) -> str | None:
        """The user's audit pseudonym."""


class UserDirectory(Protocol):
    def active_users(self) -> list[tuple[str, str]]:
        """(user id, name) of every active enrolled user."""


class TemplateDirectory:
    """Active users from the site's template store (names and ids only: nothing is decrypted)."""

    def __init__(self, site: Any):
        self.site = site  # firmware.site.Site

    def active_users(self) -> list[tuple[str, str]]:
        with self.site.templates() as store:
            return [(u.user_id, u.name) for u in store.list(include_revoked=False)]


@dataclass(frozen=True)
class Record:
    """One request, for the audit log and the event outbox."""

    peer: Peer
    method: str
    purpose: str | None
    ok: bool
    reason: str | None = None  # verify's reason
    error: str | None = None  # the error code when the call failed
    user_id: str | None = None
    attempt_id: str | None = None
    scores: dict[str, float] | None = None
    duration_ms: float = 0.0


class Recorder:
    """Writes records on its own thread, so a flood of requests can never stall the lock loop.

    The queue is bounded: when it is full a record is dropped and counted, and the next record written
    says how many were dropped (``dropped_before``), so even a flood leaves a trace in the chain.
    """

    def __init__(self, audit_factory: Callable[[], Any] | None, events: Any,
                 user_ref: Callable[[str | None], str | None] = lambda u: None, maxsize: int = 256):
        self._audit_factory = audit_factory
        self._events = events
        self._user_ref = user_ref
        self._q: queue.Queue[Record | None] = queue.Queue(maxsize)
        self._dropped = 0
        self._dlock = threading.Lock()
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="api-recorder", daemon=True)
        self._thread.start()

    def put(self, rec: Record) -> None:
        try:
            self._q.put_nowait(rec)
        except queue.Full:
            with self._dlock:
                self._dropped += 1

    def _run(self) -> None:
        audit = None
        if self._audit_factory is not None:
            try:
                audit = self._audit_factory()  # its own connection, opened on this thread
            except Exception as exc:  # noqa: BLE001 - the API must still answer; the log says why
                log.error("API requests cannot be audited: %s", exc)
        try:
            while True:
                rec = self._q.get()
                try:
                    if rec is None:
                        return
                    with self._dlock:
                        dropped, self._dropped = self._dropped, 0
                    self._write(audit, rec, dropped)
                    self.written += 1
                finally:
                    self._q.task_done()
        finally:
            if audit is not None:
                audit.close()

    def _write(self, audit: Any, r: Record, dropped: int) -> None:
        data: dict[str, Any] = {"method": r.method, "uid": r.peer.uid, "gid": r.peer.gid, "pid": r.peer.pid,
                                "ok": r.ok, "ms": round(r.duration_ms, 1)}
        for k, v in (("purpose", r.purpose), ("reason", r.reason), ("error", r.error),
                     ("attempt_id", r.attempt_id), ("user", self._user_ref(r.user_id) if r.user_id else None)):
            if v is not None:
                data[k] = v
        if dropped:
            data["dropped_before"] = dropped
        if audit is not None:
            try:
                audit.append("api_request", **data)
            except Exception as exc:  # noqa: BLE001
                log.error("API request not audited: %s", exc)
        try:
            ev = {k: v for k, v in data.items() if k not in ("user", "reason", "ms")}
            self._events.emit("api_request", user_id=r.user_id, reason=r.reason or r.error,
                              scores=dict(r.scores or {}), **{f"peer_{k}" if k in ("uid", "gid", "pid") else k: v
                                                              for k, v in ev.items()})
        except Exception as exc:  # noqa: BLE001 - telemetry trouble never affects the API's answer
            log.error("event api_request not queued: %s", exc)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued record is written (tests, shutdown)."""
        end = time.monotonic() + timeout
        while self._q.unfinished_tasks and time.monotonic() < end:
            time.sleep(0.01)
        return not self._q.unfinished_tasks

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(5.0)


class ApiService:
    """Authorise, rate-limit and run one request; every outcome becomes a Record."""

    def __init__(self, cfg: ApiConfig, lock: LockView, users: UserDirectory, recorder: Recorder,
                 clock: Callable[[], float] = time.monotonic):
        self.cfg = cfg
        self.lock = lock
        self.users = users
        self.recorder = recorder
        self.clock = clock
        self._rl_lock = threading.Lock()
        self._all = RateLimiter(cfg.requests_per_minute)
        self._verify = RateLimiter(cfg.verify_per_minute)

    def refuse(self, peer: Peer, method: str, code: str, started: float, purpose: str | None = None) -> None:
        """Record a request that failed before it could run (malformed, forbidden, busy...)."""
        self.recorder.put(Record(peer, method, purpose, False, error=code,
                                 duration_ms=(self.clock() - started) * 1e3))

    def authorise(self, peer: Peer, req: Request) -> None:
        """ProtocolError(forbidden | rate_limited) unless this caller may make this request now."""
        if not may_call(self.cfg.allow, peer, req.method, req.purpose if req.method == "verify" else None):
            what = f"{req.method} for purpose {req.purpose!r}" if req.method == "verify" else req.method
            raise ProtocolError("forbidden", f"uid {peer.uid} may not call {what} (see [api] allow)")
        now = self.clock()
        with self._rl_lock:
            if not self._all.allow(peer.uid, now):
                raise ProtocolError("rate_limited", f"more than {self.cfg.requests_per_minute} requests a minute")
            if req.method == "verify" and not self._verify.allow(peer.uid, now):
                raise ProtocolError("rate_limited", f"more than {self.cfg.verify_per_minute} verify requests a minute")

    def run(self, peer: Peer, req: Request, progress: Callable[[str], None],
            gone: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        """The final answer (a protocol object) of an authorised request; ProtocolError for a failed call."""
        started = self.clock()
        try:
            if req.method == "status":
                out = {"v": VERSION, "ok": True, "status": self.lock.status()}
                self.recorder.put(Record(peer, "status", None, True, duration_ms=(self.clock() - started) * 1e3))
                return out
            if req.method == "users":
                users = [{"user_id": u, "name": n} for u, n in self._active_users()]
                self.recorder.put(Record(peer, "users", None, True, duration_ms=(self.clock() - started) * 1e3))
                return {"v": VERSION, "ok": True, "users": users}
            res = self._verify_attempt(req, progress, gone)
        except ProtocolError as exc:
            self.refuse(peer, req.method, exc.code, started, req.purpose or None)
            raise
        self.recorder.put(Record(peer, "verify", req.purpose, res.ok, res.reason, None, res.user_id, res.attempt_id,
                                 dict(res.scores), (self.clock() - started) * 1e3))
        return res.to_wire()

    def _active_users(self) -> list[tuple[str, str]]:
        try:
            return self.users.active_users()
        except Exception as exc:  # noqa: BLE001 - a store that cannot be read: the call fails, typed
            raise ProtocolError("unavailable", f"the user list cannot be read ({type(exc).__name__})") from None

    def _verify_attempt(self, req: Request, progress: Callable[[str], None], gone: Callable[[], bool]) -> VerifyResult:
        why = self.lock.unavailable()
        if why is not None:
            raise ProtocolError("unavailable", f"the lock cannot verify now: {why}")
        wanted: frozenset[str] | None = None
        if req.user is not None:
            wanted = frozenset(u for u, n in self._active_users() if req.user in (u, n))
            if not wanted:
                raise ProtocolError("unknown_user", "no active enrolled user has that id or name")
        if self.lock.lockout_remaining() > 0:
            return VerifyResult(False, "lockout")
        return self.lock.verify(wanted, req.purpose, req.timeout_s, progress, gone)
