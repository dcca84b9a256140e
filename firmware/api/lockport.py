"""Binds the API to the running lock: a read-only view of the controller, and the daemon's start-up.

The view reads only immutable values the lock loop replaces whole (its state snapshot, the lockout
state, the lockdown), so an API thread never needs the loop's thread and never waits for it; the hub is
attached as the controller's attempt listener.  Start-up failures (socket path in use, unwritable
directory) are logged and audited and leave the door running without the API, as telemetry does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from firmware.api.attempts import VerifyHub
from firmware.api.config import ApiConfig
from firmware.api.protocol import VERSION, ProtocolError, VerifyResult
from firmware.api.server import ApiServer
from firmware.api.service import ApiService, Recorder, TemplateDirectory
from firmware.errors import FaceLockError

log = logging.getLogger("facelock.api")


class ControllerView:
    def __init__(self, ctl: Any, hub: VerifyHub):
        self.ctl = ctl
        self.hub = hub

    def unavailable(self) -> str | None:
        from firmware.lock.statemachine import State

        ctl = self.ctl
        if not ctl.ready or ctl.stages is None:
            return "starting"
        if ctl.snap.state is State.FAULT:
            return "the lock is in FAULT"
        return None

    def lockout_remaining(self) -> float:
        from firmware.lock import policy as pol

        return pol.lockout_remaining(self.ctl.lockout, self.ctl.clock())

    def status(self) -> dict[str, Any]:
        ctl = self.ctl
        matcher = getattr(ctl.stages, "matcher", None)
        return {
            "protocol": VERSION, "device": ctl.cfg.device.id, "ready": bool(ctl.ready),
            "state": ctl.snap.state.value, "available": self.unavailable() is None,
            "lockdown": ctl.lockdown.value, "failures": len(ctl.lockout.failures),
            "lockout_remaining_s": round(self.lockout_remaining(), 3),
            "enrolled": len(matcher) if matcher is not None else 0,
            "liveness": getattr(ctl.stages, "liveness", None) is not None,
            "frames_analyzed": ctl.counters.analyzed,
            "verify_waiting": self.hub.waiting,
            "verify_run": self.hub.opened,  # verify requests that reached the camera
        }

    def user_ref(self, user_id: str | None) -> str | None:
        return self.ctl.user_ref(user_id)

    def verify(self, wanted: frozenset[str] | None, purpose: str, timeout_s: float,
               progress: Callable[[str], None], gone: Callable[[], bool]) -> VerifyResult:
        """Wait for the next attempt the door decides (see firmware.api.attempts)."""
        deadline = time.monotonic() + timeout_s
        w = self.hub.open(wanted)
        try:
            progress("looking")
            seen = False
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return VerifyResult(False, "timeout")
                res, now_seen = w.wait(min(left, 0.1), seen)
                if res is not None:
                    return res
                if now_seen and not seen:
                    seen = True
                    progress("face_seen")
                if gone():
                    raise ProtocolError("malformed", "the caller hung up before the answer")
        finally:
            self.hub.close(w)


class RunningApi:
    def __init__(self, server: ApiServer, recorder: Recorder, hub: VerifyHub, ctl: Any):
        self.server = server
        self.recorder = recorder
        self.hub = hub
        self.ctl = ctl

    def close(self) -> None:
        if getattr(self.ctl, "attempt_listener", None) is self.hub:
            self.ctl.attempt_listener = None
        self.server.close()
        self.recorder.flush(2.0)
        self.recorder.close()


def start_api(cfg: Any, ctl: Any, events: Any, audit_factory: Callable[[], Any]) -> RunningApi | None:
    """The API per the config's ``[api]`` section (absent or ``enabled = false``: None).

    ``audit_factory`` opens the API's own connection to the lock's audit log (same file, same chain key),
    on the API's recorder thread."""
    api_cfg: ApiConfig | None = cfg.sections.get("api")
    if api_cfg is None or not api_cfg.enabled:
        return None
    hub = VerifyHub()
    view = ControllerView(ctl, hub)
    recorder = Recorder(audit_factory, events, view.user_ref)
    service = ApiService(api_cfg, view, TemplateDirectory(cfg.data_dir, dict(cfg.sections)), recorder)
    try:
        server = ApiServer(api_cfg, service)
    except FaceLockError as exc:
        recorder.close()
        log.error("Face Security API not started: %s", exc)
        ctl.audit.append("api_error", reason=str(exc)[:200])
        return None
    ctl.attempt_listener = hub
    return RunningApi(server, recorder, hub, ctl)
