"""What a door last reported about itself (pure: no I/O).

Two sources.  The lock's retained state topic, which the centre's workers store (central.doorstate:
the relay read back, the door contact, the tamper switch, lockdown on/off, the state machine's state):
when a door has published it, it decides the lock, door, tamper and machine fields, because it is the
door's state *now* (events only say what changed, and a lost or late event would leave the page wrong).
And the events the lock's runtime emits (firmware.lock.runtime): `state_changed` (data.state),
`command_result` with reason "lockdown" (data.mode: which lockdown, which the state topic does not say),
`tamper`, and `heartbeat` (data.audit_seq / audit_head: the head of the lock's keyed audit chain); they
decide what the topic does not carry, and everything for a door that never published its state.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

STATE_TYPES = ("state_changed", "command_result", "tamper", "heartbeat")


@dataclass(frozen=True)
class DoorState:
    lock: str  # "locked" | "unlocked" | "unknown"
    machine: str | None  # the state machine's state (IDLE, UNLOCKED, TAMPER ...)
    lockdown: str | None  # the lockdown mode the door last reported ("off", "nobody", ...), None: never
    lockdown_ts: float | None
    tamper: bool
    audit_seq: int | None
    audit_head: str | None
    audit_ts: float | None
    door: str = "unknown"  # the door contact: "open" | "closed" | "unknown" (state topic only)
    source: str = "events"  # "state topic" | "events" | "nothing yet"
    reported_ts: float | None = None  # the lock's clock when it published the state topic


def merge(derived: DoorState, reported: dict[str, Any] | None) -> DoorState:
    """`derived` (from events) overlaid with the state topic's fields (a stored DoorReportedState as a
    dict: lock, door, tamper, lockdown, machine, ts), when the door published one."""
    if not reported:
        return derived if derived.machine is not None else replace(derived, source="nothing yet")
    machine = reported.get("machine") or derived.machine
    # the newer of the two says whether a lockdown is on (the daemon republishes its state on each
    # state-machine move, and a lockdown need not move it); only the events say which lockdown
    lockdown = derived.lockdown
    if derived.lockdown_ts is None or derived.lockdown_ts < float(reported["ts"]):
        if not reported["lockdown"]:
            lockdown = "off"
        elif lockdown in (None, "off"):
            lockdown = "on"
    return replace(derived, lock=str(reported["lock"]).lower(), machine=machine, door=str(reported["door"]),
                   tamper=bool(reported["tamper"]) or machine == "TAMPER", lockdown=lockdown,
                   source="state topic", reported_ts=float(reported["ts"]))


def derive(events: list[dict[str, Any]]) -> DoorState:
    """`events`: event payloads of one door (any order); the newest of each kind decides."""
    newest: dict[str, dict[str, Any]] = {}
    for e in sorted(events, key=lambda e: (e.get("ts") or 0.0, e.get("seq") or 0)):
        kind = e.get("type")
        data = e.get("data") or {}
        if kind == "command_result" and e.get("reason") == "lockdown":
            newest["lockdown"] = e
        elif kind == "state_changed" and isinstance(data.get("state"), str):
            newest["state"] = e
        elif kind == "tamper":
            newest["tamper"] = e
        elif kind == "heartbeat" and isinstance(data.get("audit_seq"), int):
            newest["heartbeat"] = e
    st = newest.get("state")
    machine = st["data"]["state"] if st else None
    lock = "unknown" if machine is None else ("unlocked" if machine in ("UNLOCKED", "RELOCKING") else "locked")
    tamper = machine == "TAMPER" or (
        "tamper" in newest and (st is None or newest["tamper"].get("ts", 0) >= st.get("ts", 0)))
    ld = newest.get("lockdown")
    hb = newest.get("heartbeat")
    return DoorState(lock=lock, machine=machine,
                     lockdown=str((ld.get("data") or {}).get("mode")) if ld else None,
                     lockdown_ts=ld.get("ts") if ld else None, tamper=tamper,
                     audit_seq=hb["data"]["audit_seq"] if hb else None,
                     audit_head=str(hb["data"].get("audit_head")) if hb else None,
                     audit_ts=hb.get("ts") if hb else None)
