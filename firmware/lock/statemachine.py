"""The lock's state machine: an explicit transition table, pure (no I/O), time injected.

Why a table: every behaviour of the door is one row that a reviewer can read and a test can name, and
anything that is *not* a row is ignored rather than improvised.  Why pure: the same code runs on the
device, in the demo and inside a hypothesis property test that feeds it thousands of random events.

Fail secure by construction: the relay output is not an action a row can forget to undo, it is a
function of the state (``relay_energized(state)`` is true in UNLOCKED only).  :func:`step` never
raises: any error inside a transition lands in FAULT, where the relay is de-energized.

The caller (the controller) owns time: it passes ``now`` (monotonic seconds) to :func:`step` and feeds
``Event.TIMER`` when :func:`timer_due` says the state's deadline has passed.  Policy decisions
(lockout, schedules, lockdown) are made by :mod:`firmware.lock.policy` before an event is fed in; a
NO_MATCH / SPOOF_SUSPECTED event carries ``lockout_s`` (> 0 when the policy has just locked out).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any


class State(str, enum.Enum):
    IDLE = "IDLE"
    VERIFYING = "VERIFYING"
    UNLOCKED = "UNLOCKED"
    RELOCKING = "RELOCKING"
    DENIED = "DENIED"
    LOCKOUT = "LOCKOUT"
    TAMPER = "TAMPER"
    ENROLL = "ENROLL"
    FAULT = "FAULT"


class Event(str, enum.Enum):
    FACE_SEEN = "face_seen"
    FACE_LOST = "face_lost"  # no face for lock.face_lost_s during an attempt: the person went away
    MATCH = "match"
    NO_MATCH = "no_match"
    SPOOF_SUSPECTED = "spoof_suspected"
    DOOR_OPENED = "door_opened"
    DOOR_CLOSED = "door_closed"
    EXIT_PRESSED = "exit_pressed"
    EXIT_HELD = "exit_held"  # the exit button held [gpio] exit_hold_reset_s (10 s): the local tamper reset
    TAMPER = "tamper"
    TAMPER_CLEARED = "tamper_cleared"
    TIMER = "timer"
    COMMAND = "command"
    FAULT = "fault"
    RECOVERED = "recovered"


class Command(str, enum.Enum):
    """Payloads of Event.COMMAND (``Input.command``)."""

    LOCK = "lock"
    UNLOCK = "unlock"
    ENROLL = "enroll"
    ENROLL_DONE = "enroll_done"
    RESET = "reset"  # clear TAMPER once the switch is closed again


#: LED pattern shown in each state (GPIO maps a name to blink timings).
LED_PATTERN: dict[State, str] = {
    State.IDLE: "ready",
    State.VERIFYING: "verifying",
    State.UNLOCKED: "granted",
    State.RELOCKING: "relocking",
    State.DENIED: "denied",
    State.LOCKOUT: "lockout",
    State.TAMPER: "tamper",
    State.ENROLL: "enroll",
    State.FAULT: "fault",
}


def relay_energized(state: State) -> bool:
    """The only place that decides the relay: energized (unlocked) in UNLOCKED, never elsewhere."""
    return state is State.UNLOCKED


@dataclass(frozen=True)
class Timing:
    """Durations in seconds (from config ``[lock]``)."""

    unlock_s: float = 5.0  # auto-relock after this long unlocked
    verify_timeout_s: float = 3.0  # a face seen but no decision within this -> back to IDLE
    denied_s: float = 2.0  # how long DENIED shows before IDLE
    held_open_alert_s: float = 30.0  # door still open this long after relock -> alert
    enroll_timeout_s: float = 60.0


@dataclass(frozen=True)
class Input:
    """One event fed to the machine, with its data."""

    event: Event
    command: Command | None = None
    user: str | None = None
    reason: str = ""
    lockout_s: float = 0.0  # set by the policy on NO_MATCH / SPOOF_SUSPECTED when it locks out
    duration_s: float = 0.0  # remote unlock: how long to stay unlocked (0 = Timing.unlock_s)


@dataclass(frozen=True)
class Snapshot:
    """Everything the machine remembers. Immutable: :func:`step` returns a new one."""

    state: State = State.IDLE
    deadline: float | None = None  # monotonic time of the next TIMER, None = no timer
    door_open: bool = False
    tamper_active: bool = False
    user: str | None = None  # who unlocked (for audit), None otherwise
    held_open_alerted: bool = False

    @property
    def relay(self) -> bool:
        return relay_energized(self.state)

    @property
    def led(self) -> str:
        return LED_PATTERN[self.state]


@dataclass(frozen=True)
class Step:
    """The result of one event: the new snapshot, the row that fired, and side-effect requests."""

    snapshot: Snapshot
    row: str | None  # the table row's name, None when the event was ignored
    alerts: tuple[str, ...] = ()  # alert/event types to raise (door_forced, tamper, fault, ...)
    buzzer: str | None = None  # buzzer pattern to play
    audit: str | None = None  # audit record kind for this transition
    error: str | None = None  # set when a transition raised and the machine failed secure

    @property
    def relay(self) -> bool:
        return self.snapshot.relay

    @property
    def state(self) -> State:
        return self.snapshot.state


Guard = Callable[[Snapshot, Input], bool]


def _always(_s: Snapshot, _i: Input) -> bool:
    return True


def _door_closed(s: Snapshot, _i: Input) -> bool:
    return not s.door_open


def _door_open(s: Snapshot, _i: Input) -> bool:
    return s.door_open


def _no_lockout(_s: Snapshot, i: Input) -> bool:
    return i.lockout_s <= 0


def _lockout(_s: Snapshot, i: Input) -> bool:
    return i.lockout_s > 0


def _tamper_released(s: Snapshot, _i: Input) -> bool:
    return not s.tamper_active


def _tamper_released_door_closed(s: Snapshot, _i: Input) -> bool:
    return not s.tamper_active and not s.door_open


def _not_alerted(s: Snapshot, _i: Input) -> bool:
    return not s.held_open_alerted


@dataclass(frozen=True)
class Row:
    """One transition: from any of ``sources`` on ``event`` (and ``command``) when ``guard`` holds."""

    name: str
    sources: tuple[State, ...]
    event: Event
    target: State
    guard: Guard = _always
    command: Command | None = None
    timer: str | None = None  # Timing field whose duration sets the new deadline; None clears it
    keep_timer: bool = False  # keep the current deadline (self-transitions that must not extend it)
    alerts: tuple[str, ...] = ()
    buzzer: str | None = None
    audit: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


ALL = tuple(State)
LOCKED_CALM = (State.IDLE, State.VERIFYING, State.DENIED, State.LOCKOUT, State.ENROLL)
EXIT_FROM = (State.IDLE, State.VERIFYING, State.DENIED, State.LOCKOUT, State.RELOCKING, State.ENROLL,
             State.UNLOCKED)
REMOTE_UNLOCK_FROM = (State.IDLE, State.VERIFYING, State.DENIED, State.LOCKOUT, State.RELOCKING)

#: The transition table.  Rows are tried in order; the first whose source, event, command and guard
#: match fires.  An event with no matching row is ignored (state, outputs and timer unchanged).
TABLE: tuple[Row, ...] = (
    # -- faults and tamper win from everywhere -------------------------------------------------------
    Row("fault", tuple(s for s in ALL if s is not State.FAULT), Event.FAULT, State.FAULT,
        alerts=("fault",), buzzer="fault", audit="fault"),
    Row("fault_again", (State.FAULT,), Event.FAULT, State.FAULT, keep_timer=True, audit="fault"),
    Row("fault_recovered", (State.FAULT,), Event.RECOVERED, State.IDLE, _tamper_released,
        audit="recovered"),
    Row("fault_recovered_tampered", (State.FAULT,), Event.RECOVERED, State.TAMPER,
        alerts=("tamper",), audit="recovered"),
    Row("tamper", tuple(s for s in ALL if s not in (State.FAULT, State.TAMPER)), Event.TAMPER,
        State.TAMPER, alerts=("tamper",), buzzer="alarm", audit="tamper"),
    Row("tamper_during_fault", (State.FAULT,), Event.TAMPER, State.FAULT, keep_timer=True,
        alerts=("tamper",), buzzer="alarm", audit="tamper"),
    Row("tamper_reset", (State.TAMPER,), Event.COMMAND, State.IDLE, _tamper_released,
        command=Command.RESET, audit="tamper_reset"),
    # the local way: someone inside holds the exit button with the door shut and the case closed
    Row("tamper_reset_local", (State.TAMPER,), Event.EXIT_HELD, State.IDLE, _tamper_released_door_closed,
        audit="tamper_reset"),
    Row("tamper_reset_local_refused", (State.TAMPER,), Event.EXIT_HELD, State.TAMPER, keep_timer=True,
        audit="tamper_reset_refused"),
    # -- the normal unlock path ------------------------------------------------------------------------
    Row("face_seen", (State.IDLE,), Event.FACE_SEEN, State.VERIFYING, timer="verify_timeout_s"),
    Row("granted", (State.VERIFYING,), Event.MATCH, State.UNLOCKED, timer="unlock_s", buzzer="granted",
        audit="granted"),
    Row("denied", (State.VERIFYING,), Event.NO_MATCH, State.DENIED, _no_lockout, timer="denied_s",
        buzzer="denied", alerts=("access_denied",), audit="denied"),
    Row("denied_lockout", (State.VERIFYING,), Event.NO_MATCH, State.LOCKOUT, _lockout,
        buzzer="denied", alerts=("access_denied", "lockout"), audit="lockout"),
    Row("spoof", (State.VERIFYING,), Event.SPOOF_SUSPECTED, State.DENIED, _no_lockout, timer="denied_s",
        buzzer="denied", alerts=("spoof_suspected",), audit="spoof_suspected"),
    Row("spoof_lockout", (State.VERIFYING,), Event.SPOOF_SUSPECTED, State.LOCKOUT, _lockout,
        buzzer="denied", alerts=("spoof_suspected", "lockout"), audit="lockout"),
    Row("verify_timeout", (State.VERIFYING,), Event.TIMER, State.IDLE, audit="verify_timeout"),
    Row("face_lost", (State.VERIFYING,), Event.FACE_LOST, State.IDLE, audit="face_lost"),
    Row("denied_done", (State.DENIED,), Event.TIMER, State.IDLE),
    Row("lockout_over", (State.LOCKOUT,), Event.TIMER, State.IDLE, audit="lockout_over"),
    # -- unlocked: relock on time or when the opened door closes again ----------------------------------
    Row("door_opened_unlocked", (State.UNLOCKED,), Event.DOOR_OPENED, State.UNLOCKED, keep_timer=True,
        audit="door_opened"),
    Row("door_closed_relock", (State.UNLOCKED,), Event.DOOR_CLOSED, State.IDLE, _door_open,
        audit="relocked"),
    Row("auto_relock", (State.UNLOCKED,), Event.TIMER, State.IDLE, _door_closed, audit="relocked"),
    Row("auto_relock_door_open", (State.UNLOCKED,), Event.TIMER, State.RELOCKING, _door_open,
        timer="held_open_alert_s", audit="relocking"),
    Row("remote_lock", (State.UNLOCKED,), Event.COMMAND, State.IDLE, _door_closed, command=Command.LOCK,
        audit="relocked"),
    Row("remote_lock_door_open", (State.UNLOCKED,), Event.COMMAND, State.RELOCKING, _door_open,
        command=Command.LOCK, timer="held_open_alert_s", audit="relocking"),
    Row("relocking_door_closed", (State.RELOCKING,), Event.DOOR_CLOSED, State.IDLE, audit="relocked"),
    Row("door_held_open", (State.RELOCKING,), Event.TIMER, State.RELOCKING, _not_alerted,
        alerts=("door_held_open",), buzzer="alert", audit="door_held_open"),
    # -- a door opened while locked was forced (or the bolt failed) -----------------------------------
    Row("door_forced", LOCKED_CALM, Event.DOOR_OPENED, State.TAMPER, alerts=("door_forced",),
        buzzer="alarm", audit="door_forced"),
    # -- request to exit from inside, and remote commands --------------------------------------------
    Row("exit", EXIT_FROM, Event.EXIT_PRESSED, State.UNLOCKED, timer="unlock_s", audit="exit_request"),
    Row("remote_unlock", REMOTE_UNLOCK_FROM, Event.COMMAND, State.UNLOCKED, command=Command.UNLOCK,
        timer="unlock_s", buzzer="granted", audit="remote_unlock"),
    Row("enroll_start", (State.IDLE,), Event.COMMAND, State.ENROLL, command=Command.ENROLL,
        timer="enroll_timeout_s", audit="enroll_start"),
    Row("enroll_done", (State.ENROLL,), Event.COMMAND, State.IDLE, command=Command.ENROLL_DONE,
        audit="enroll_done"),
    Row("enroll_timeout", (State.ENROLL,), Event.TIMER, State.IDLE, audit="enroll_timeout"),
)

ROWS_BY_NAME: dict[str, Row] = {r.name: r for r in TABLE}
assert len(ROWS_BY_NAME) == len(TABLE), "row names must be unique"


def find_row(snap: Snapshot, inp: Input) -> Row | None:
    for row in TABLE:
        if snap.state not in row.sources or row.event is not inp.event:
            continue
        if row.command is not None and row.command is not inp.command:
            continue
        if row.guard(snap, inp):
            return row
    return None


def _track_inputs(snap: Snapshot, inp: Input) -> Snapshot:
    """Switch levels are remembered whatever the state, so guards see the door as it is."""
    if inp.event is Event.DOOR_OPENED:
        return replace(snap, door_open=True)
    if inp.event is Event.DOOR_CLOSED:
        return replace(snap, door_open=False)
    if inp.event is Event.TAMPER:
        return replace(snap, tamper_active=True)
    if inp.event is Event.TAMPER_CLEARED:
        return replace(snap, tamper_active=False)
    return snap


def _apply(snap: Snapshot, inp: Input, now: float, timing: Timing) -> Step:
    row = find_row(snap, inp)
    tracked = _track_inputs(snap, inp)
    if row is None:
        return Step(tracked, None)
    if row.timer is not None:
        deadline: float | None = now + float(getattr(timing, row.timer))
    elif row.keep_timer:
        deadline = snap.deadline
    else:
        deadline = None
    if row.target is State.LOCKOUT:
        deadline = now + max(inp.lockout_s, 0.0)
    if row.name == "remote_unlock" and inp.duration_s > 0:
        deadline = now + inp.duration_s  # bounded by the command's validation (0.5..30 s)
    user = inp.user if row.target is State.UNLOCKED and row.event is Event.MATCH else None
    if row.target is State.UNLOCKED and row.event is not Event.MATCH and snap.state is State.UNLOCKED:
        user = snap.user
    held = tracked.held_open_alerted or row.name == "door_held_open"
    if row.target is not State.RELOCKING:
        held = False
    new = replace(tracked, state=row.target, deadline=deadline, user=user, held_open_alerted=held)
    return Step(new, row.name, alerts=row.alerts, buzzer=row.buzzer, audit=row.audit)


def step(snap: Snapshot, inp: Input, now: float, timing: Timing | None = None) -> Step:
    """Apply one event.  Never raises: an internal error fails secure into FAULT (relay off)."""
    try:
        return _apply(snap, inp, now, timing or Timing())
    except Exception as exc:  # noqa: BLE001 - fail secure on anything, by design
        return Step(Snapshot(state=State.FAULT, door_open=snap.door_open, tamper_active=snap.tamper_active),
                    "internal_error", alerts=("fault",), buzzer="fault", audit="fault",
                    error=f"{type(exc).__name__}: {exc}")


def timer_due(snap: Snapshot, now: float) -> bool:
    """True when the controller should feed Event.TIMER."""
    return snap.deadline is not None and now >= snap.deadline


def boot_snapshot(door_open: bool = False, tamper_active: bool = False,
                  lockout_until: float | None = None) -> Snapshot:
    """The state after a (re)start: locked, whatever happened before (fail secure across crashes).

    ``lockout_until``: the monotonic end of a lockout that was running when the lock went down (restored
    from disk by the controller), so a power cycle does not cut a lockout short.
    """
    if tamper_active:
        return Snapshot(state=State.TAMPER, door_open=door_open, tamper_active=True)
    if lockout_until is not None:
        return Snapshot(state=State.LOCKOUT, deadline=lockout_until, door_open=door_open)
    return Snapshot(state=State.IDLE, door_open=door_open)
