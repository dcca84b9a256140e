"""Signed remote commands: the one command table, and each command carried out on the lock.

The table (:data:`COMMANDS`) is the only place a command is defined: its wire name, its argument schema,
the handler below that carries it out, and the state-machine command it feeds (if any).  The telemetry
verifier (firmware.telemetry.commands) reads the names and argument schemas from it; the dispatcher
(:class:`RemoteCommands`) reads the handlers.  Adding a command is adding a row.

The telemetry client has already checked each command (Ed25519 signature by the management key, fresh
timestamp, unseen nonce, its own topic, arguments per this table); here the *lock's* rules apply: policy
(lockdown, who may unlock remotely: :meth:`firmware.lock.runtime.LockRuntime.unlock_allowed`, checked
once), the state machine's rows (a remote unlock from FAULT or TAMPER does nothing) and the template
store (revoke).  Each command goes through :class:`firmware.lock.port.LockPort`, so it runs on the lock
loop's thread, and its answer (the ``detail`` of ``cmd/result``) says what actually happened, read back
from the relay.

A refused command raises :class:`CommandRefusedError`: the telemetry client answers ``ok: false`` with
the reason.  ``snapshot`` never sends a picture: faces do not leave the lock (the event schema cannot
carry one either); it answers with the lock's state only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from firmware.lock import policy as pol
from firmware.lock.port import CommandRefusedError, LockPort
from firmware.lock.statemachine import Command as SmCommand
from firmware.lock.statemachine import State

log = logging.getLogger("facelock.remote")

#: the requester recorded for every signed command (the management key is the lock's administrator)
BY = pol.MANAGEMENT

__all__ = ["BY", "COMMANDS", "CommandRefusedError", "CommandSpec", "RemoteCommands", "check_args"]


def _num(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _user_id(x: object) -> bool:
    return isinstance(x, str) and 0 < len(x) <= 128


def _flag(x: object) -> bool:
    return isinstance(x, bool)


@dataclass(frozen=True)
class Arg:
    check: Callable[[Any], bool]
    required: bool = False


@dataclass(frozen=True)
class CommandSpec:
    """One row of the command table."""

    name: str  # wire name (topic level and the signed "name")
    args: Mapping[str, Arg] = field(default_factory=dict)
    handler: str = ""  # RemoteCommands method that carries it out
    sm_command: SmCommand | None = None  # the state-machine command it feeds, when it feeds one


class ArgsError(ValueError):
    """Arguments that do not match a command's schema (the verifier rejects them as ``bad_args``)."""


COMMANDS: dict[str, CommandSpec] = {s.name: s for s in (
    CommandSpec("lock", {}, "_lock", SmCommand.LOCK),
    CommandSpec("unlock", {"duration_s": Arg(lambda x: _num(x) and 0.5 <= x <= 30)}, "_unlock", SmCommand.UNLOCK),
    CommandSpec("lockdown", {"on": Arg(_flag, True)}, "_lockdown", SmCommand.LOCK),
    # enroll-mode only pauses face unlock (ENROLL state, enroll_timeout_s) while someone enrolls with
    # `facelock users enroll` on the device or at the centre: the door never enrolls from its own camera, so
    # there is no user to name and a user_id argument is refused (bad_args), not ignored
    CommandSpec("enroll-mode", {"on": Arg(_flag, True)}, "_enroll_mode", SmCommand.ENROLL),
    CommandSpec("revoke-user", {"user_id": Arg(_user_id, True)}, "_revoke_user"),
    CommandSpec("reset-tamper", {}, "_reset_tamper", SmCommand.RESET),
    CommandSpec("snapshot", {}, "_snapshot"),
)}


def check_args(name: str, args: Mapping[str, Any]) -> None:
    """ArgsError unless ``args`` match the schema of command ``name`` (KeyError for an unknown name)."""
    spec = COMMANDS[name].args
    unknown = set(args) - set(spec)
    if unknown:
        raise ArgsError(f"unknown argument {sorted(unknown)[0]!r}")
    for arg, a in spec.items():
        if arg not in args:
            if a.required:
                raise ArgsError(f"missing argument {arg!r}")
            continue
        if not a.check(args[arg]):
            raise ArgsError(f"bad value for {arg!r}")


class RemoteCommands:
    """``handle(command) -> detail`` for the telemetry client's ``on_command`` (any thread).

    ``revoke``: marks a user revoked in the template store (raises the store's UserNotFoundError for an
    unknown id).
    """

    def __init__(self, port: LockPort, revoke: Callable[[str], None] | None = None):
        self.port = port
        self.revoke = revoke

    def handle(self, command: Any) -> str:
        spec = COMMANDS.get(str(command.name))
        if spec is None:
            raise CommandRefusedError(f"unknown command {command.name!r}")
        args = dict(command.args or {})
        try:
            check_args(spec.name, args)
        except ArgsError as exc:
            raise CommandRefusedError(f"refused: {exc}") from None
        return str(getattr(self, spec.handler)(spec, args))

    # -- handlers --------------------------------------------------------------------------------
    def _lock(self, spec: CommandSpec, _args: dict[str, Any]) -> str:
        if self.port.status().state is not State.UNLOCKED:
            return f"already locked ({self.port.status().describe()})"
        _, st = self.port.command(spec.sm_command, BY)
        return f"locked ({st.describe()})"

    def _unlock(self, spec: CommandSpec, args: dict[str, Any]) -> str:
        duration = float(args.get("duration_s") or 0.0)
        step, st = self.port.command(spec.sm_command, BY, duration)
        if step is None:
            raise CommandRefusedError(f"refused: lockdown {st.lockdown.value} allows no remote unlock")
        if step.row != "remote_unlock" or not st.relay_energized:
            raise CommandRefusedError(f"refused: cannot unlock in state {st.state.value}")
        return f"unlocked for {duration or st.unlock_s:g} s ({st.describe()})"

    def _lockdown(self, _spec: CommandSpec, args: dict[str, Any]) -> str:
        st = self.port.set_lockdown(bool(args["on"]), BY)
        return f"lockdown {st.lockdown.value} ({st.describe()})"

    def _enroll_mode(self, spec: CommandSpec, args: dict[str, Any]) -> str:
        if not args["on"]:
            if self.port.status().state is not State.ENROLL:
                return f"enroll mode was not on ({self.port.status().describe()})"
            _, st = self.port.command(SmCommand.ENROLL_DONE, BY)
            return f"enroll mode off ({st.describe()})"
        step, st = self.port.command(spec.sm_command, BY)
        if step is None or step.row != "enroll_start":
            raise CommandRefusedError(f"refused: enroll mode needs an idle lock, state is {st.state.value}")
        return f"enroll mode on for up to {st.enroll_timeout_s:g} s (face unlock paused)"

    def _revoke_user(self, _spec: CommandSpec, args: dict[str, Any]) -> str:
        from firmware.templates import UserNotFoundError

        if self.revoke is None:
            raise CommandRefusedError("refused: this lock has no template store")
        try:
            removed = self.port.revoke(str(args["user_id"]), BY, self.revoke)
        except UserNotFoundError:
            raise CommandRefusedError("refused: no such user") from None
        return "revoked" + ("; removed from the live gallery" if removed else "")

    def _reset_tamper(self, spec: CommandSpec, _args: dict[str, Any]) -> str:
        st = self.port.status()
        if st.state is not State.TAMPER:
            return f"no tamper alarm to reset ({st.describe()})"
        if st.tamper_active:
            raise CommandRefusedError("refused: the tamper switch is still open (close the case first)")
        if st.door_sensor and st.door_open:
            raise CommandRefusedError("refused: the door is open (close it first)")
        step, st = self.port.command(spec.sm_command, BY)
        if step is None or step.row != "tamper_reset":
            raise CommandRefusedError(f"refused: tamper not reset, state is {st.state.value}")
        return f"tamper reset ({st.describe()})"

    def _snapshot(self, _spec: CommandSpec, _args: dict[str, Any]) -> str:
        return f"no image: faces never leave the lock; {self.port.status().describe()}"
