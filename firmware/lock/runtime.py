"""The lock's runtime: inputs (camera, switches, commands) -> the attempt decider -> the state machine ->
outputs (relay, LEDs, buzzer) + audit + events + status.

One thread owns the state machine.  Switch inputs (gpiozero callbacks) arrive on a queue; other threads
(remote commands, the Face Security API) go through :class:`firmware.lock.port.LockPort`, whose calls run
on this thread between frames.  Camera frames are read with a timeout so timers, inputs and the watchdog
keep running when the camera stalls.  Decisions are the decider's (:mod:`firmware.lock.decider`, pure);
this module only carries them out.

Fail secure, in three layers:
- the relay output is a function of the state (:func:`firmware.lock.statemachine.relay_energized`);
- any camera or stage failure feeds ``Event.FAULT`` (relay off, red/green fault pattern, an event),
  then retries with exponential backoff and feeds ``Event.RECOVERED`` once everything works again;
- any unexpected exception in a tick de-energizes the relay directly and enters FAULT.

Live reload: when a user source is given, its generation (a counter in ``users.db`` that every change
bumps) is read every tick; a change reloads the enrolled users before the next frame is analysed, and
before the relay is energised for a recognised user the source confirms they are still active.

Every relay change is read back from the GPIO device into the status file, so a supervisor (or a test)
sees what the pin does, not what the code meant.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from firmware import fsutil
from firmware.audit import AuditLog
from firmware.config import Config
from firmware.errors import FaceLockError
from firmware.hw.camera.base import Camera, CameraError, Frame
from firmware.hw.gpio import LockIO
from firmware.lock import feedback as fb
from firmware.lock import policy as pol
from firmware.lock import statemachine as sm
from firmware.lock.decider import Attempt, AttemptDecider, Context, Decision, Enrolled, Outcome, Why
from firmware.lock.lockstate import Clock, LockStateFile, now_clock
from firmware.lock.statemachine import Command, Event, Input, State

log = logging.getLogger("facelock.runtime")

#: state-machine alerts -> telemetry event (type, reason)
ALERT_EVENTS: dict[str, tuple[str, str | None]] = {
    "fault": ("fault", None),
    "tamper": ("tamper", "tamper_switch"),
    "door_forced": ("tamper", "door_forced"),
    "access_denied": ("access_denied", None),
    "lockout": ("lockout", None),
    "spoof_suspected": ("spoof_suspected", "liveness"),
    "door_held_open": ("door_held_open", None),
}

ANALYZE_STATES = (State.IDLE, State.VERIFYING)


class EventSink(Protocol):
    """Where telemetry events go (the durable outbox, :class:`firmware.site.OutboxSink`)."""

    def emit(self, type_: str, severity: str | None = None, user_id: str | None = None,
             reason: str | None = None, scores: dict[str, float] | None = None, **data: Any) -> None: ...

    def close(self) -> None: ...


class UserSource(Protocol):
    """The enrolled users as stored (``users.db``): cheap change detection, reload, and a last check."""

    def generation(self) -> int: ...

    def load(self) -> Enrolled: ...

    def is_active(self, user_id: str) -> bool: ...


@dataclass
class Counters:
    frames: int = 0
    analyzed: int = 0
    faces: int = 0
    granted: int = 0
    denied: int = 0
    spoof: int = 0
    lockouts: int = 0
    faults: int = 0
    verify_run: int = 0  # caller verifications that reached the camera (refused ones never do)
    last_decision_ms: float | None = None


def write_json_atomic(path: Path, obj: Any) -> None:
    fsutil.atomic_write(path, json.dumps(obj, sort_keys=True).encode(), 0o644)


class LockBusyError(FaceLockError):
    """A request from another thread (a remote command) was not taken up by the lock loop in time."""


class _Call:
    """A function to run on the lock loop's thread, and its outcome for the thread that asked."""

    def __init__(self, fn: Callable[[], Any]):
        self.fn = fn
        self.done = threading.Event()
        self.cancelled = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.lock = threading.Lock()


@dataclass
class VerifyRequest:
    """One attempt run on behalf of a caller (the Face Security API): decided, never energising the relay.

    ``face_seen`` is set when the caller's attempt starts (a face in view), ``done`` when it is decided;
    ``attempt_id`` names it in the audit log and in the caller's answer."""

    purpose: str
    expires: float  # monotonic
    done: threading.Event
    decision: Decision | None = None
    cancelled: bool = False
    face_seen: threading.Event = field(default_factory=threading.Event)
    attempt_id: str = field(default_factory=lambda: uuid.uuid4().hex)


class LockRuntime:
    def __init__(self, cfg: Config, io: LockIO, camera_factory: Callable[[], Camera],
                 decider_factory: Callable[[], AttemptDecider], audit: AuditLog, events: EventSink | None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], dt.datetime] = dt.datetime.now,
                 status_path: Path | None = None,
                 on_step: Callable[[sm.Step, Input], None] | None = None,
                 lockstate: LockStateFile | None = None, users: UserSource | None = None):
        self.cfg = cfg
        self.io = io
        self.camera_factory = camera_factory
        self.decider_factory = decider_factory
        self.users = users
        self.audit = audit
        self.events = events
        self.clock = clock
        self.wall = wall
        self.status_path = status_path
        self.on_step = on_step
        self.timing = cfg.lock.timing()
        self.inputs: queue.Queue[Input] = queue.Queue()
        self._calls: queue.Queue[Any] = queue.Queue()  # firmware.lock.port calls
        self._verify: list[VerifyRequest] = []
        self.io.set_input_callback(lambda ev: self.inputs.put(Input(ev)))
        # failures, backoff and a remote lockdown survive a restart (lockstate.json), so a power cycle
        # neither gives an attacker fresh attempts nor lifts a lockdown
        self.lockstate = lockstate
        self.lockout = pol.LockoutState()
        self.remote_lockdown: pol.Lockdown | None = None
        state_note = ""
        if lockstate is not None:
            self.lockout, self.remote_lockdown, state_note = lockstate.load(cfg.policy.lockout, self._now_clock())
        self.lockdown = self.remote_lockdown or cfg.policy.lockdown
        remaining = pol.lockout_remaining(self.lockout, clock())
        self.snap = sm.boot_snapshot(io.door_open(), io.tamper_active(),
                                     lockout_until=clock() + remaining if remaining > 0 else None)
        self.camera: Camera | None = None
        self.decider: AttemptDecider | None = None
        self.attempt: Attempt | None = None
        self._attempt_for: VerifyRequest | None = None  # the attempt runs for a caller, not the door
        #: the face a caller's attempt was decided on is still in view: the door does not start an attempt
        #: on it (one face, one decision: a stranger's refusal for the API is not counted again by the door)
        self._held_face_ts: float | None = None
        self.counters = Counters()
        #: what the person at the door is asked to do (the latest decision's cue, shown in VERIFYING/DENIED)
        self.cue: fb.Cue | None = None
        self.fault_reason: str | None = None
        self._retry_at = 0.0
        self._retry_delay = cfg.lock.fault_retry_initial_s
        self.started = clock()
        self.last_step: sm.Step | None = None
        self.ready = False  # the first bring-up (camera + decider) has been attempted
        self._apply_outputs(None)
        boot: dict[str, Any] = {"state": self.snap.state.value, "pid": os.getpid(), "relay": self.io.relay_energized}
        if lockstate is not None:
            boot.update(failures=len(self.lockout.failures), backoff_level=self.lockout.level,
                        lockout_remaining_s=round(remaining, 1), lockdown=self.lockdown.value)
            if state_note and state_note != "new":
                boot["lockstate"] = state_note
        self.audit.append("boot", **boot)
        self._write_status()

    def _now_clock(self) -> Clock:
        c = now_clock()
        return Clock(self.clock(), c.wall, c.boot_id)

    def _save_lockstate(self) -> None:
        if self.lockstate is not None:
            self.lockstate.save(self.lockout, self.remote_lockdown, self._now_clock())

    # ------------------------------------------------------------------------------ user references
    def user_ref(self, user_id: str | None) -> str | None:
        """What the audit log says about a user: their pseudonym (firmware.pseudonym), never name or id."""
        if user_id is None:
            return None
        return self.decider.user_ref(user_id) if self.decider is not None else "unknown"

    # ------------------------------------------------------------------------------------- feeding
    def feed(self, inp: Input) -> sm.Step:
        """Apply one event to the state machine and carry out its outputs."""
        now = self.clock()
        prev = self.snap.state
        st = sm.step(self.snap, inp, now, self.timing)
        self.snap = st.snapshot
        self.last_step = st
        if st.state is not State.VERIFYING:
            self.attempt = None
        if st.state not in fb.CUE_STATES or (prev is not State.VERIFYING and st.state is State.VERIFYING):
            self.cue = None  # a new attempt, or the refusal's time is over
        self._apply_outputs(st)
        relay_ts = self.clock()
        extra: dict[str, Any] = {}
        if st.row is not None:
            if st.audit:
                if inp.event is Event.COMMAND:
                    extra = {"by": inp.user, "reason": inp.reason or None}
                else:
                    extra = {"user": self.user_ref(inp.user or st.snapshot.user), "reason": inp.reason or None}
                if st.error:
                    extra["error"] = st.error
                if st.row == "granted" and self._decision_start is not None:
                    ms = (relay_ts - self._decision_start[0]) * 1e3
                    self.counters.last_decision_ms = ms
                    extra.update(decision_ms=round(ms, 2), face_frame=self._decision_start[1],
                                 relay_mono=relay_ts)
                    self._decision_start = None
                self.audit.append(st.audit, state=st.state.value, prev=prev.value, row=st.row,
                                  relay=self.io.relay_energized, **{k: v for k, v in extra.items() if v is not None})
            self._emit_for(st, inp, prev, extra)
            self._write_status()
        if self.on_step is not None:
            self.on_step(st, inp)
        return st

    _decision_start: tuple[float, int] | None = None

    def _apply_outputs(self, st: sm.Step | None) -> None:
        relay = self.snap.relay
        self.io.set_relay(relay)
        if self.io.relay_energized != relay:  # read back: a pin that disagrees is a fault
            self.io.set_relay(False)
            raise FaceLockError("relay read-back disagrees with the commanded state")
        self.io.show(fb.led_pattern(self.snap.state, self.cue))
        buzzer = fb.buzzer_pattern(self.snap.state, self.cue, st.buzzer) if st is not None else None
        if buzzer:
            self.io.beep(buzzer)

    def _ask(self, cue: fb.Cue) -> None:
        """Show a pending attempt's cue (hold still, blink, look at the camera) while it runs; its buzzer
        pattern plays once, when the cue changes."""
        if cue is self.cue or self.snap.state is not State.VERIFYING:
            return
        self.cue = cue
        self.io.show(fb.led_pattern(self.snap.state, cue))
        buzzer = fb.SIGNALS[cue].buzzer
        if buzzer:
            self.io.beep(buzzer)

    def emit(self, type_: str, **kw: Any) -> None:
        """Queue a telemetry event (never raises: telemetry trouble must not affect the door)."""
        self._emit(type_, **kw)

    def _emit(self, type_: str, **kw: Any) -> None:
        if self.events is None:
            return
        try:
            self.events.emit(type_, **kw)
        except Exception as exc:  # noqa: BLE001 - telemetry trouble must never affect the door
            log.error("event %s could not be queued: %s", type_, exc)

    def _emit_for(self, st: sm.Step, inp: Input, prev: State, extra: dict[str, Any]) -> None:
        # events carry the enrolled user's id; a command's requester (e.g. "management") goes in data.by
        uid, by = (None, inp.user) if inp.event is Event.COMMAND else (inp.user, None)
        for alert in st.alerts:
            type_, reason = ALERT_EVENTS.get(alert, ("fault", alert))
            self._emit(type_, reason=inp.reason or reason or alert, user_id=uid, state=st.state.value)
        if st.row in ("granted", "remote_unlock", "exit"):
            scores = {"decision_ms": float(extra["decision_ms"])} if "decision_ms" in extra else {}
            self._emit("access_granted", user_id=uid, reason=st.row, scores=scores, by=by)
        if inp.event in (Event.DOOR_OPENED, Event.DOOR_CLOSED):
            self._emit(inp.event.value, state=st.state.value)
        if prev is not st.state:
            self._emit("state_changed", reason=st.row, state=st.state.value, prev=prev.value,
                       relay=self.io.relay_energized)

    def _write_status(self) -> None:
        if self.status_path is None:
            return
        seq, head = self.audit.head()
        try:
            write_json_atomic(self.status_path, {
                "pid": os.getpid(), "ts": time.time(), "ready": self.ready, "state": self.snap.state.value,
                "relay_energized": self.io.relay_energized, "led": self.io.led_pattern,
                "cue": self.cue.value if self.cue is not None else None,
                "door_open": self.snap.door_open, "tamper_active": self.snap.tamper_active,
                "fault": self.fault_reason, "audit_seq": seq, "audit_head": head,
                "frames": self.counters.frames, "analyzed": self.counters.analyzed,
                "granted": self.counters.granted, "denied": self.counters.denied, "spoof": self.counters.spoof,
                "failures": len(self.lockout.failures), "backoff_level": self.lockout.level,
                "lockout_remaining_s": round(pol.lockout_remaining(self.lockout, self.clock()), 3),
                "lockdown": self.lockdown.value,
                "uptime_s": round(self.clock() - self.started, 3),
            })
        except OSError as exc:
            log.error("cannot write status file %s: %s", self.status_path, exc)

    # -------------------------------------------------------------------------------------- faults
    def fault(self, reason: str) -> None:
        self.fault_reason = reason
        self.counters.faults += 1
        log.error("FAULT: %s", reason)
        self._close_camera()
        self._retry_at = self.clock() + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, self.cfg.lock.fault_retry_max_s)
        self.feed(Input(Event.FAULT, reason=reason[:200]))

    def _close_camera(self) -> None:
        if self.camera is not None:
            try:
                self.camera.close()
            except Exception:  # noqa: BLE001
                pass
            self.camera = None

    def bring_up(self) -> bool:
        """Open the camera and build the decider; on failure enter FAULT and schedule a retry."""
        try:
            if self.decider is None:
                self.decider = self.decider_factory()
            if self.camera is None:
                cam = self.camera_factory()
                cam.start()
                self.camera = cam
        except FaceLockError as exc:
            self.ready = True
            self.fault(f"{type(exc).__name__}: {exc}")
            return False
        if not self.ready:
            self.ready = True
            self._write_status()
        if self.snap.state is State.FAULT:
            self.fault_reason = None
            self._retry_delay = self.cfg.lock.fault_retry_initial_s
            self.feed(Input(Event.RECOVERED))
        return True

    # ------------------------------------------------------------------------------------ commands
    def unlock_allowed(self, requested_by: str | None) -> bool:
        """The one remote-unlock policy check (lockdown, who may unlock remotely); refusals are audited."""
        if pol.may_remote_unlock(self.cfg.policy, self.lockdown, requested_by):
            return True
        self.audit.append("command_refused", command=Command.UNLOCK.value, by=requested_by, reason="lockdown")
        self._emit("command_rejected", reason="lockdown", command=Command.UNLOCK.value)
        return False

    def command(self, command: Command, requested_by: str | None, duration_s: float = 0.0) -> sm.Step | None:
        """Apply a command now (on the loop's thread); None when policy refuses it."""
        if command is Command.UNLOCK and not self.unlock_allowed(requested_by):
            return None
        return self.feed(Input(Event.COMMAND, command=command, user=requested_by, duration_s=duration_s))

    def submit(self, command: Command, requested_by: str | None = None, duration_s: float = 0.0) -> bool:
        """Queue a command from any thread (checked against policy now, applied by the loop)."""
        if command is Command.UNLOCK and not self.unlock_allowed(requested_by):
            return False
        self.inputs.put(Input(Event.COMMAND, command=command, user=requested_by, duration_s=duration_s))
        return True

    def set_lockdown(self, mode: pol.Lockdown, requested_by: str | None) -> bool:
        """Switch the lockdown (remotely); it is kept across restarts until switched back."""
        if not pol.may_set_lockdown(self.cfg.policy, requested_by):
            self.audit.append("lockdown_refused", mode=mode.value, by=requested_by)
            self._emit("command_rejected", reason="lockdown_not_allowed", mode=mode.value)
            return False
        self.lockdown = mode
        self.remote_lockdown = None if mode is self.cfg.policy.lockdown else mode
        self._save_lockstate()
        self.audit.append("lockdown", mode=mode.value, by=requested_by)
        self._emit("command_result", reason="lockdown", mode=mode.value)
        return True

    def forget_user(self, user_id: str) -> bool:
        """Drop a revoked user from the live gallery now (the reload that follows confirms it)."""
        return self.decider is not None and self.decider.forget(user_id)

    # ------------------------------------------------------------------------- cross-thread calls
    def call(self, fn: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Run ``fn`` on the lock loop's thread (from any other thread) and return its result or raise.

        Why: the state machine, the audit log and the decider belong to the loop's thread; a remote command
        arriving on the telemetry thread must not touch them concurrently.  If the loop does not take the
        call within ``timeout`` it is cancelled (it will not run later) and LockBusyError is raised.
        """
        c = _Call(fn)
        self._calls.put(c)
        if not c.done.wait(timeout):
            with c.lock:
                if not c.done.is_set():
                    c.cancelled = True
                    raise LockBusyError(f"the lock loop did not take the request within {timeout:.1f} s")
        if c.error is not None:
            raise c.error
        return c.result

    def _run_calls(self) -> None:
        while True:
            try:
                c = self._calls.get_nowait()
            except queue.Empty:
                return
            with c.lock:
                if c.cancelled:
                    continue
                try:
                    c.result = c.fn()
                except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
                    c.error = exc
                finally:
                    c.done.set()

    def request_verification(self, purpose: str, timeout_s: float) -> VerifyRequest:
        """Queue one attempt for a caller (loop thread only: use LockPort.verify from elsewhere).

        The door keeps priority: the request waits while the door is in an attempt, unlocked or alarmed,
        and the next face seen while the lock is IDLE is decided for the caller.  The relay is never
        energised for it; failures still count toward lockout (the API is not a way around it).
        """
        req = VerifyRequest(purpose, self.clock() + timeout_s, threading.Event())
        if pol.lockout_remaining(self.lockout, self.clock()) > 0:
            self._resolve(req, Decision(Outcome.REFUSED, "lockout"))
        elif self.snap.state in (State.FAULT, State.TAMPER) or self.lockdown is pol.Lockdown.NOBODY:
            self._resolve(req, Decision(Outcome.REFUSED, self.snap.state.value.lower()
                                        if self.lockdown is not pol.Lockdown.NOBODY else "lockdown"))
        else:
            self._verify.append(req)
            self.counters.verify_run += 1
        return req

    def _resolve(self, req: VerifyRequest, d: Decision) -> None:
        req.decision = d
        if d.outcome is not Outcome.ABANDONED or d.reason != "timeout":
            self.audit.append("verify", purpose=req.purpose[:64], outcome=d.outcome.value, reason=d.reason[:200],
                              user=self.user_ref(d.user_id), attempt_id=req.attempt_id)
            self._write_status()
        req.done.set()

    def _expire_requests(self, now: float) -> None:
        for req in list(self._verify):
            if req.cancelled or now >= req.expires:
                self._verify.remove(req)
                if self._attempt_for is req:
                    att = self.attempt
                    if att is not None and att.liveness_failures and self.decider is not None:
                        self._finish(att, self.decider.ended(att, "timeout"))  # a spoof: counted, resolved
                        continue
                    if self.attempt is not None:  # the face was presented for the caller: not the door's
                        self._held_face_ts = self.attempt.last_face_ts
                    self._attempt_for, self.attempt = None, None
                self._resolve(req, Decision(Outcome.ABANDONED, "timeout"))

    # ---------------------------------------------------------------------------------------- loop
    def tick(self) -> None:
        """One loop iteration: inputs, timers, recovery, user reload, one frame."""
        try:
            self._tick()
        except Exception as exc:  # noqa: BLE001 - fail secure on anything
            log.exception("unexpected error in the lock loop")
            try:
                self.io.set_relay(False)
            finally:
                self.fault(f"internal error: {type(exc).__name__}: {exc}")

    def _drain_inputs(self) -> None:
        while True:
            try:
                inp = self.inputs.get_nowait()
            except queue.Empty:
                return
            self.feed(inp)

    def reload_users_if_changed(self) -> bool:
        """Reload the enrolled users when ``users.db``'s generation moved; True when it did."""
        if self.users is None or self.decider is None:
            return False
        gen = self.users.generation()
        if gen == self.decider.enrolled.generation:
            return False
        enrolled = self.users.load()
        self.decider.use(enrolled)  # and the threshold for the new gallery size
        if self.attempt is not None:  # frames gathered against the old gallery are not decided on the new one
            self.attempt = None
        self.audit.append("users_reloaded", generation=enrolled.generation, users=len(enrolled.gallery),
                          threshold=round(self.decider.threshold, 4))
        log.info("enrolled users reloaded (generation %s, %d active)", enrolled.generation, len(enrolled.gallery))
        return True

    def _tick(self) -> None:
        self._drain_inputs()
        self._run_calls()
        if self._verify:
            self._expire_requests(self.clock())
        if sm.timer_due(self.snap, self.clock()):
            att = self.attempt
            if self.snap.state is State.VERIFYING and att is not None and self._attempt_for is None \
                    and att.liveness_failures and self.decider is not None:
                # the verify timeout ended an attempt a liveness check had FAILED on: a spoof, not a
                # silent timeout (a lock too slow to fill the window must still count a held-up photo)
                self._finish(att, self.decider.ended(att, "verify_timeout"))
            else:
                self.feed(Input(Event.TIMER))
        if self.camera is None or self.decider is None:
            if self.clock() >= self._retry_at:
                self.bring_up()
            else:
                time.sleep(min(0.05, max(0.0, self._retry_at - self.clock())))
            return
        try:
            self.reload_users_if_changed()
        except FaceLockError as exc:
            self.fault(f"users: {type(exc).__name__}: {exc}")
            return
        try:
            frame = self.camera.read(timeout=self.cfg.camera.stall_timeout_s)
        except CameraError as exc:
            self.fault(f"camera: {exc}")
            return
        self.counters.frames += 1
        self._drain_inputs()
        if self.snap.state in ANALYZE_STATES:
            try:
                self._analyze(frame)
            except FaceLockError as exc:
                self.fault(f"pipeline: {type(exc).__name__}: {exc}")

    def _context(self, now: float) -> Context:
        return Context(self.cfg.policy, self.wall(), now, self.lockout, self.lockdown)

    def _analyze(self, frame: Frame) -> None:
        assert self.decider is not None
        obs = self.decider.observe(frame)
        self.counters.analyzed += 1
        att = self.attempt
        if not obs.face:
            # the person went away: the attempt is over (its frames must never be joined to a later face's)
            if self._held_face_ts is not None and frame.ts - self._held_face_ts > self.decider.rules.face_lost_s:
                self._held_face_ts = None
            if att is not None and self.decider.face_gone(att, frame.ts):
                self._finish(att, self.decider.face_lost(att), in_view=False)
            return
        self.counters.faces += 1
        now = self.clock()
        if att is None:
            if self.snap.state is not State.IDLE or pol.lockout_remaining(self.lockout, now) > 0:
                return
            pending = [r for r in self._verify if not r.cancelled]
            if pending:  # a caller's attempt: the state machine (and the relay) stay out of it
                self._attempt_for = pending[0]
                pending[0].face_seen.set()
            elif self._held_face_ts is not None:  # the face a caller's attempt was decided on: not the door's
                self._held_face_ts = frame.ts
                return
            else:
                self._attempt_for = None
                self.feed(Input(Event.FACE_SEEN))
                if self.snap.state is not State.VERIFYING:
                    return
            att = self.attempt = Attempt(now, frame.ts, frame.index)
        elif self._attempt_for is None and self.snap.state is not State.VERIFYING:
            self.attempt = None
            return
        att.observations.append(obs)
        att.last_face_ts = frame.ts
        if self._attempt_for is None:
            self._decision_start = (att.first_face_ts, att.first_face_index)
        d = self.decider.step(att, self._context(now))
        if d.final:
            self._finish(att, d)
        elif self._attempt_for is None:
            self._ask(fb.cue_for(d))

    def _finish(self, att: Attempt, d: Decision, in_view: bool = True) -> None:
        """Carry out a final decision: for the door (state machine, relay), or for a waiting caller."""
        now = self.clock()
        req, self._attempt_for = self._attempt_for, None
        self.attempt = None
        if req is not None:
            self._finish_for_caller(req, att, d, in_view, now)
            return
        self.cue = fb.cue_for(d)  # shown with the refusal (DENIED); LOCKOUT shows its own
        if d.outcome is Outcome.SPOOF:
            self.counters.spoof += 1
        elif d.outcome in (Outcome.NO_MATCH, Outcome.REFUSED, Outcome.INCONCLUSIVE):
            self.counters.denied += 1
        if d.outcome is Outcome.ABANDONED:
            self.feed(Input(Event.FACE_LOST))
        elif d.outcome is Outcome.SPOOF:
            self._failure(Event.SPOOF_SUSPECTED, d.reason, None, now)
        elif d.outcome is Outcome.NO_MATCH:
            self._failure(Event.NO_MATCH, d.reason, None, now)
        elif d.outcome is Outcome.INCONCLUSIVE:
            # liveness saw no evidence either way (e.g. too few frames the PAD model could score): DENIED
            # is shown ("try again"), but it is not a failure and does not count toward lockout
            self.feed(Input(Event.NO_MATCH, reason=d.reason))
        elif d.outcome is Outcome.REFUSED:
            # a recognised user outside their schedule or during a lockdown: refused, not a failed attempt
            self.feed(Input(Event.NO_MATCH, user=d.user_id, reason=d.reason))
        elif d.outcome is Outcome.GRANTED:
            assert d.user_id is not None
            if self.users is not None and not self.users.is_active(d.user_id):
                # revoked or purged after the gallery was loaded: never energise the relay for them
                self.counters.denied += 1
                self.cue = fb.CUE_FOR[Why.REVOKED]
                self.feed(Input(Event.NO_MATCH, user=d.user_id, reason="revoked"))
                return
            had_failures = self.lockout != pol.LockoutState()
            self.lockout = pol.register_success(self.lockout)
            self.counters.granted += 1
            self.feed(Input(Event.MATCH, user=d.user_id, reason=d.reason))
            if had_failures:  # after the relay: a crash in between keeps the old count (the safe side)
                self._save_lockstate()

    def _finish_for_caller(self, req: VerifyRequest, att: Attempt, d: Decision, in_view: bool, now: float) -> None:
        """A caller's attempt decided: the answer, the shared lockout; never the state machine or the relay.

        A face that left without a decision (and without a failed liveness check) is not an answer: the
        request waits for the next face until its time is up.  A decided face stays the caller's while it
        is in view, so the door does not decide it again (a stranger counts once toward the lockout).
        """
        if d.outcome is Outcome.ABANDONED:
            return
        if in_view:
            self._held_face_ts = att.last_face_ts
        if d.outcome is Outcome.SPOOF:
            self.counters.spoof += 1
        elif d.outcome in (Outcome.NO_MATCH, Outcome.REFUSED, Outcome.INCONCLUSIVE):
            self.counters.denied += 1
        if d.failure:
            self.lockout, lock_s = pol.register_failure(self.lockout, now, self.cfg.policy.lockout)
            self._save_lockstate()
            if d.outcome is Outcome.SPOOF:
                self._emit("spoof_suspected", reason=d.reason, state=self.snap.state.value, by="api")
            if lock_s > 0:
                self.counters.lockouts += 1
                self.audit.append("lockout", state=self.snap.state.value, reason=d.reason[:200], lockout_s=lock_s,
                                  by="api", attempt_id=req.attempt_id)
                self._emit("lockout", reason=d.reason, state=self.snap.state.value, by="api")
        if req in self._verify:
            self._verify.remove(req)
        if d.outcome is Outcome.GRANTED:
            if self.users is not None and not self.users.is_active(d.user_id):
                self.counters.denied += 1
                d = Decision(Outcome.REFUSED, "revoked", d.user_id, d.score)
            elif self.lockout != pol.LockoutState():
                self.lockout = pol.register_success(self.lockout)  # one lockout state, whoever asked
                self._save_lockstate()
        self._resolve(req, d)

    def _failure(self, event: Event, reason: str, user: str | None, now: float) -> None:
        self.lockout, lock_s = pol.register_failure(self.lockout, now, self.cfg.policy.lockout)
        self._save_lockstate()  # before the attempt is shown: a power cycle cannot undo a failure
        if lock_s > 0:
            self.counters.lockouts += 1
        self.feed(Input(event, user=user, reason=reason, lockout_s=lock_s))

    def run(self, should_stop: Callable[[], bool], on_tick: Callable[[], None] | None = None) -> None:
        self.bring_up()
        while not should_stop():
            self.tick()
            if on_tick is not None:
                on_tick()

    def shutdown(self, reason: str = "shutdown") -> None:
        """Leave the lock locked: relay off first, then record and release."""
        try:
            self.io.set_relay(False)
        finally:
            self.snap = replace(self.snap, state=State.IDLE if self.snap.state is not State.FAULT else State.FAULT,
                                deadline=None)
            try:
                self.audit.append("shutdown", reason=reason, relay=self.io.relay_energized)
                self._write_status()
            finally:
                self._close_camera()
