"""The lock's port: what other threads (remote commands, the daemon, the Face Security API) may do with a
running lock, and nothing else.

Every method runs its work on the lock loop's thread (:meth:`firmware.lock.runtime.LockRuntime.call`),
so callers never race the state machine, the audit log or the decider, and every answer is read back
after the fact (the relay from its pin).  Callers get values (:class:`LockStatus`, a
:class:`~firmware.lock.decider.Decision`), never the runtime's internals.

:meth:`LockPort.verify` runs one attempt on behalf of a caller: the next face seen while the door is idle
is decided by the same decider the door uses and the decision is returned; the relay is never energised
for it, and the door keeps priority (the request waits while the door is in an attempt, unlocked, or in
an alarm state, and times out rather than pre-empt it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from firmware.errors import FaceLockError
from firmware.lock import policy as pol
from firmware.lock.decider import Decision, Outcome
from firmware.lock.statemachine import Command, State, Step


class CommandRefusedError(FaceLockError):
    """The lock refused a correctly signed command (policy, state, unknown user); the text is the reason."""


@dataclass(frozen=True)
class LockStatus:
    state: State
    relay_energized: bool
    door_open: bool
    tamper_active: bool
    lockdown: pol.Lockdown
    door_sensor: bool  # a door contact is wired ([gpio] door_pin != -1)
    unlock_s: float
    enroll_timeout_s: float

    def describe(self) -> str:
        return (f"state={self.state.value} relay={'energized' if self.relay_energized else 'off'} "
                f"door={'open' if self.door_open else 'closed'} lockdown={self.lockdown.value}")


class LockPort:
    """A running lock (firmware.lock.runtime.LockRuntime) as other threads may use it."""

    def __init__(self, runtime: Any, timeout: float = 5.0):
        self._rt = runtime
        self.timeout = timeout

    def _on_loop(self, fn: Callable[[], Any]) -> Any:
        return self._rt.call(fn, self.timeout)

    def _status(self) -> LockStatus:
        rt = self._rt
        return LockStatus(rt.snap.state, rt.io.relay_energized, rt.snap.door_open, rt.snap.tamper_active,
                          rt.lockdown, rt.cfg.gpio.door_pin != -1, rt.timing.unlock_s, rt.timing.enroll_timeout_s)

    def status(self) -> LockStatus:
        return self._on_loop(self._status)

    def status_now(self) -> LockStatus:
        """The status from the loop's own thread (the daemon's main loop), without a hand-off."""
        return self._status()

    def command(self, command: Command, by: str, duration_s: float = 0.0) -> tuple[Step | None, LockStatus]:
        """Feed one state-machine command; (the step, or None when policy refused it; the status after)."""
        def run() -> tuple[Step | None, LockStatus]:
            return self._rt.command(command, by, duration_s), self._status()

        return self._on_loop(run)

    def set_lockdown(self, on: bool, by: str) -> LockStatus:
        """Lockdown NOBODY (on) or back to the configured mode; a lockdown also ends a running unlock."""
        def run() -> LockStatus:
            rt = self._rt
            mode = pol.Lockdown.NOBODY if on else rt.cfg.policy.lockdown
            if not rt.set_lockdown(mode, by):
                raise CommandRefusedError("refused: remote lockdown is disabled by config (policy.remote_lockdown)")
            if mode is pol.Lockdown.NOBODY and rt.snap.state is State.UNLOCKED:
                rt.command(Command.LOCK, by)
            return self._status()

        return self._on_loop(run)

    def record(self, kind: str, **data: Any) -> None:
        """Append one audit record from another thread (the audit log belongs to the loop's thread)."""
        self._on_loop(lambda: self._rt.audit.append(kind, **data))

    def reconfigure(self, cfg: Any, rebuild_decider: bool, prepare: Callable[[], None] | None = None) -> None:
        """Run under ``cfg`` from now on (the centre's settings, firmware.fleet.settings, already held to the
        lock's bounds): timings, lockout and the attempt's frame window at once; with ``rebuild_decider``
        (liveness or the threshold changed) the decider is built again on the next tick, and until then no
        face is decided.  ``prepare`` runs first, on the loop's thread."""
        def run() -> None:
            from firmware.lock.decider import AttemptRules

            rt = self._rt
            if prepare is not None:
                prepare()
            rt.cfg = cfg
            rt.timing = cfg.lock.timing()
            if rt.decider is not None:
                if rebuild_decider:
                    rt.decider, rt.attempt = None, None
                else:
                    rt.decider.rules = AttemptRules.from_lock(cfg.lock)

        self._on_loop(run)

    def revoke(self, user_id: str, by: str, revoke_in_store: Callable[[str], None]) -> bool:
        """Revoke a user in the store and drop them from the live gallery at once; True when they were in it."""
        def run() -> bool:
            rt = self._rt
            ref = rt.user_ref(user_id)
            revoke_in_store(user_id)
            removed = rt.forget_user(user_id)
            rt.audit.append("user_revoked", user=ref, by=by)
            rt.emit("user_revoked", user_id=user_id, reason="remote")
            return removed

        return self._on_loop(run)

    def verify(self, purpose: str, timeout_s: float = 10.0, on_face: Callable[[], None] | None = None,
               gone: Callable[[], bool] | None = None) -> Verification:
        """One attempt decided for the caller (no relay); ABANDONED "timeout" when no face came in time.

        ``on_face`` is called (on this thread) once the caller's attempt has a face; ``gone`` is polled and
        cancels the request when it turns true (the caller hung up).  Failures count toward the door's
        lockout, once.
        """
        req = self._on_loop(lambda: self._rt.request_verification(purpose, timeout_s))
        end = time.monotonic() + timeout_s + self.timeout
        told = False
        while not req.done.wait(0.05):
            if on_face is not None and not told and req.face_seen.is_set():
                told = True
                on_face()
            if time.monotonic() >= end or (gone is not None and gone()):
                req.cancelled = True  # the loop drops it (and the attempt it was running) on its next tick
                return Verification(Decision(Outcome.ABANDONED, "cancelled" if time.monotonic() < end else "timeout"),
                                    req.attempt_id)
        assert req.decision is not None
        return Verification(req.decision, req.attempt_id)

    # ------------------------------------------------------------------------- lock-free reads
    def summary(self) -> LockSummary:
        """What the lock is doing, read without a hand-off to the loop (any thread, never blocks).

        Safe because every field read here is a value the loop replaces whole (its snapshot, the lockout
        state, the lockdown, the enrolled snapshot, counters ints)."""
        rt = self._rt
        dec = rt.decider
        st = rt.snap
        return LockSummary(
            device=rt.cfg.device.id, ready=bool(rt.ready and dec is not None and rt.camera is not None),
            state=st.state, lockdown=rt.lockdown, failures=len(rt.lockout.failures),
            lockout_remaining_s=pol.lockout_remaining(rt.lockout, rt.clock()),
            enrolled=len(dec.enrolled.gallery) if dec is not None else 0,
            liveness=dec is not None and dec.liveness is not None,
            frames_analyzed=rt.counters.analyzed, verify_waiting=len(rt._verify), verify_run=rt.counters.verify_run,
            fault=rt.fault_reason)

    def user_ref(self, user_id: str | None) -> str | None:
        """The user's audit pseudonym (never a name or id)."""
        return self._rt.user_ref(user_id)


@dataclass(frozen=True)
class Verification:
    """A caller's attempt: the decider's decision and the id it has in the audit log."""

    decision: Decision
    attempt_id: str


@dataclass(frozen=True)
class LockSummary:
    device: str
    ready: bool  # the camera and the decider are up
    state: State
    lockdown: pol.Lockdown
    failures: int
    lockout_remaining_s: float
    enrolled: int
    liveness: bool
    frames_analyzed: int
    verify_waiting: int
    verify_run: int  # caller verifications that reached the camera
    fault: str | None
