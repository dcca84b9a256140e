"""Signed remote commands (firmware.telemetry) mapped onto the lock.

The telemetry client has already checked each command (Ed25519 signature by the management key, fresh
timestamp, unseen nonce, its own topic); here the *lock's* rules apply: policy (lockdown, who may
unlock remotely), the state machine's rows (a remote unlock from FAULT or TAMPER does nothing) and the
template store (revoke).  Each command runs on the lock loop's thread (:meth:`Controller.call`), so it
sees and changes the state machine, the audit log and the gallery without races, and its answer (the
``detail`` of ``cmd/result``) says what actually happened, read back from the relay.

A refused command raises :class:`CommandRefusedError`: the telemetry client answers ``ok: false`` with
the reason.  ``snapshot`` never sends a picture: faces do not leave the lock (the event schema cannot
carry one either); it answers with the lock's state only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from firmware.errors import FaceLockError
from firmware.lock import policy as pol
from firmware.lock.statemachine import Command as SmCommand
from firmware.lock.statemachine import Event, Input, State

log = logging.getLogger("facelock.remote")

#: the requester recorded for every signed command (the management key is the lock's administrator)
BY = pol.MANAGEMENT


class CommandRefusedError(FaceLockError):
    """The lock refused a correctly signed command (policy, state, unknown user); the text is the reason."""


class RemoteCommands:
    """``handle(command) -> detail`` for the telemetry client's ``on_command`` (any thread).

    ``revoke``: marks a user revoked in the template store (raises the store's UserNotFoundError for an
    unknown id); ``call_timeout``: how long a command may wait for the lock loop.
    """

    def __init__(self, ctl: Any, revoke: Callable[[str], None] | None = None, call_timeout: float = 5.0):
        self.ctl = ctl
        self.revoke = revoke
        self.call_timeout = call_timeout

    def handle(self, command: Any) -> str:
        name = str(command.name)
        args = dict(command.args or {})
        fn = {
            "lock": self._lock,
            "unlock": self._unlock,
            "lockdown": self._lockdown,
            "enroll-mode": self._enroll_mode,
            "revoke-user": self._revoke_user,
            "snapshot": self._snapshot,
        }.get(name)
        if fn is None:
            raise CommandRefusedError(f"unknown command {name!r}")
        return str(self.ctl.call(lambda: fn(args), self.call_timeout))

    # -- each runs on the lock loop's thread -------------------------------------------------------
    def _state(self) -> str:
        ctl = self.ctl
        return (f"state={ctl.snap.state.value} relay={'energized' if ctl.io.relay_energized else 'off'} "
                f"door={'open' if ctl.snap.door_open else 'closed'} lockdown={ctl.lockdown.value}")

    def _feed(self, command: SmCommand, duration_s: float = 0.0) -> Any:
        return self.ctl.feed(Input(Event.COMMAND, command=command, user=BY, duration_s=duration_s))

    def _lock(self, _args: dict[str, Any]) -> str:
        if self.ctl.snap.state is not State.UNLOCKED:
            return f"already locked ({self._state()})"
        self._feed(SmCommand.LOCK)
        return f"locked ({self._state()})"

    def _unlock(self, args: dict[str, Any]) -> str:
        ctl = self.ctl
        if not pol.may_remote_unlock(ctl.cfg.policy, ctl.lockdown, BY):
            ctl.audit.append("command_refused", command="unlock", by=BY, reason="lockdown")
            raise CommandRefusedError(f"refused: lockdown {ctl.lockdown.value} allows no remote unlock")
        duration = float(args.get("duration_s") or 0.0)
        st = self._feed(SmCommand.UNLOCK, duration)
        if st.row != "remote_unlock" or not ctl.io.relay_energized:
            raise CommandRefusedError(f"refused: cannot unlock in state {ctl.snap.state.value}")
        return f"unlocked for {duration or ctl.timing.unlock_s:g} s ({self._state()})"

    def _lockdown(self, args: dict[str, Any]) -> str:
        ctl = self.ctl
        mode = pol.Lockdown.NOBODY if args.get("on") else ctl.cfg.policy.lockdown
        if not ctl.set_lockdown(mode, BY):
            raise CommandRefusedError("refused: remote lockdown is disabled by config (policy.remote_lockdown)")
        if mode is pol.Lockdown.NOBODY and ctl.snap.state is State.UNLOCKED:
            self._feed(SmCommand.LOCK)  # a lockdown also ends a running unlock
        return f"lockdown {mode.value} ({self._state()})"

    def _enroll_mode(self, args: dict[str, Any]) -> str:
        ctl = self.ctl
        if args.get("on"):
            st = self._feed(SmCommand.ENROLL)
            if st.row != "enroll_start":
                raise CommandRefusedError(f"refused: enroll mode needs an idle lock, state is {ctl.snap.state.value}")
            return f"enroll mode on for up to {ctl.timing.enroll_timeout_s:g} s (face unlock paused)"
        if ctl.snap.state is not State.ENROLL:
            return f"enroll mode was not on ({self._state()})"
        self._feed(SmCommand.ENROLL_DONE)
        return f"enroll mode off ({self._state()})"

    def _revoke_user(self, args: dict[str, Any]) -> str:
        from firmware.templates import UserNotFoundError

        ctl = self.ctl
        user_id = str(args["user_id"])
        if self.revoke is None:
            raise CommandRefusedError("refused: this lock has no template store")
        ref = ctl.user_ref(user_id)
        try:
            self.revoke(user_id)
        except UserNotFoundError:
            raise CommandRefusedError("refused: no such user") from None
        matcher = getattr(ctl.stages, "matcher", None)
        removed = bool(matcher is not None and hasattr(matcher, "remove") and matcher.remove(user_id))
        ctl.audit.append("user_revoked", user=ref, by=BY)
        ctl.emit("user_revoked", user_id=user_id, reason="remote")
        return "revoked" + ("; removed from the live gallery" if removed else "")

    def _snapshot(self, _args: dict[str, Any]) -> str:
        return f"no image: faces never leave the lock; {self._state()}"
