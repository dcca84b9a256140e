"""The door commands the console offers: one table (label -> the signed command the lock understands).

The names must be the lock's own (firmware.telemetry.commands.COMMAND_NAMES); an action whose command
the lock does not implement yet is listed as unavailable instead of being sent to be refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from firmware.telemetry.commands import COMMAND_NAMES


@dataclass(frozen=True)
class DoorAction:
    key: str
    label: str
    command: str
    args: dict[str, Any] = field(default_factory=dict)
    warning: str = ""

    @property
    def available(self) -> bool:
        return self.command in COMMAND_NAMES


ACTIONS: dict[str, DoorAction] = {a.key: a for a in (
    DoorAction("lock", "Lock", "lock"),
    DoorAction("unlock", "Unlock for 5 s", "unlock", {"duration_s": 5}, "The door opens for anyone standing there."),
    DoorAction("lockdown-on", "Lockdown", "lockdown", {"on": True},
               "Nobody may unlock by face or remote command until the lockdown is lifted."),
    DoorAction("lockdown-off", "Lift lockdown", "lockdown", {"on": False}),
    DoorAction("reset-tamper", "Reset tamper", "reset-tamper", {}, "Only after the door was inspected."),
)}
