"""What a door last reported about itself, from its newest events (pure: no I/O).

The centre stores events, not the lock's retained state topic, so the console derives the door's state
from the events the lock's runtime emits (firmware.lock.controller): `state_changed` (data.state, the
state machine's state), `command_result` with reason "lockdown" (data.mode, after a remote lockdown),
`tamper`, and `heartbeat` (data.audit_seq / audit_head: the head of the lock's keyed audit chain).
"""

from __future__ import annotations

from dataclasses import dataclass
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
