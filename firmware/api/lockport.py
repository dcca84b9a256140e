"""Binds the API to the running lock through its port (:class:`firmware.lock.port.LockPort`), and the
daemon's start-up of the API.

The view reads the lock through the port only: :meth:`LockPort.summary` for status (lock-free, so an API
thread never waits for the lock loop) and :meth:`LockPort.verify` for an attempt decided for the caller
(no relay; failures count toward the door's lockout once).  Start-up failures (socket path in use,
unwritable directory) are logged and audited and leave the door running without the API, as telemetry
does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from firmware.api.attempts import answer
from firmware.api.config import ApiConfig
from firmware.api.protocol import VERSION, ProtocolError, VerifyResult
from firmware.api.server import ApiServer
from firmware.api.service import ApiService, Recorder, TemplateDirectory
from firmware.errors import FaceLockError
from firmware.lock.statemachine import State

log = logging.getLogger("facelock.api")


class PortView:
    """The API's view of the lock (firmware.api.service.LockView) over the lock's port."""

    def __init__(self, port: Any):
        self.port = port

    def unavailable(self) -> str | None:
        s = self.port.summary()
        if not s.ready:
            return "starting" if s.state is not State.FAULT else "the lock is in FAULT"
        if s.state in (State.FAULT, State.TAMPER):
            return f"the lock is in {s.state.value}"
        return None

    def lockout_remaining(self) -> float:
        return float(self.port.summary().lockout_remaining_s)

    def status(self) -> dict[str, Any]:
        s = self.port.summary()
        return {
            "protocol": VERSION, "device": s.device, "ready": s.ready, "state": s.state.value,
            "available": self.unavailable() is None, "lockdown": s.lockdown.value, "failures": s.failures,
            "lockout_remaining_s": round(s.lockout_remaining_s, 3), "enrolled": s.enrolled,
            "liveness": s.liveness, "frames_analyzed": s.frames_analyzed,
            "verify_waiting": s.verify_waiting,
            "verify_run": s.verify_run,  # verify requests that reached the camera
        }

    def user_ref(self, user_id: str | None) -> str | None:
        return self.port.user_ref(user_id)

    def verify(self, wanted: frozenset[str] | None, purpose: str, timeout_s: float,
               progress: Callable[[str], None], gone: Callable[[], bool]) -> VerifyResult:
        """One attempt decided by the lock for this caller (never the relay)."""
        progress("looking")
        v = self.port.verify(purpose, timeout_s, on_face=lambda: progress("face_seen"), gone=gone)
        if v.decision.reason == "cancelled":
            raise ProtocolError("malformed", "the caller hung up before the answer")
        return answer(v.decision, v.attempt_id, wanted)


class RunningApi:
    def __init__(self, server: ApiServer, recorder: Recorder):
        self.server = server
        self.recorder = recorder

    def close(self) -> None:
        self.server.close()
        self.recorder.flush(2.0)
        self.recorder.close()


def start_api(site: Any, port: Any, events: Any, audit: Any) -> RunningApi | None:
    """The API per the site config's ``[api]`` section (absent or ``enabled = false``: None).

    The API writes its records through its own connection to the lock's audit log (same file, same chain
    key), opened on its recorder thread; ``audit`` is the lock's own, for the start-up error record."""
    api_cfg: ApiConfig | None = site.config.sections.get("api")
    if api_cfg is None or not api_cfg.enabled:
        return None
    view = PortView(port)
    recorder = Recorder(site.audit, events, view.user_ref)
    service = ApiService(api_cfg, view, TemplateDirectory(site), recorder)
    try:
        server = ApiServer(api_cfg, service)
    except FaceLockError as exc:
        recorder.close()
        log.error("Face Security API not started: %s", exc)
        audit.append("api_error", reason=str(exc)[:200])
        return None
    return RunningApi(server, recorder)
