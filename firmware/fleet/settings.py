"""The centre's per-door settings, as a real lock takes them: inside the lock's own bounds, or not at all.

A bundle's ``settings`` object is free-form on the wire (scalars, firmware.fleet.bundle).  A lock applies a
setting only when its own config could hold that value, checked by the very validators that check the
lock's TOML file (firmware.config for ``[lock]``, firmware.lock.policy for the lockout bounds), so there is
one place for each bound.  Liveness and the match threshold can only be made stricter than the lock's
file says: the centre may ask a door for more proof, never for less.

Settings are judged one by one in name order, each over the lock's file config (the base) plus the
settings taken before it, so the result is always a config the lock's own loader would accept: a setting the lock cannot take
(unknown name, wrong type, out of bounds, weaker than the lock's floor) is ignored and reported, and the
rest of the bundle still applies.  Why not refuse the whole bundle: the same bundle carries revocations,
and a refused bundle would leave a revoked person able to open the door.  Removing a setting at the
centre returns the lock to its file value (the base is re-applied each time, nothing accumulates).

Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from firmware.config import Config, LockConfig, check_blink_wait, section_from_dict
from firmware.config_errors import ConfigError
from firmware.lock.policy import FLOAT_BOUNDS, INT_BOUNDS, PolicyConfig

#: [lock] keys a bundle may set (timings and the attempt's frame window; not the fault retry or liveness)
LOCK_KEYS = ("unlock_s", "verify_timeout_s", "denied_s", "held_open_alert_s", "frames_per_attempt",
             "max_frames_per_attempt", "face_lost_s")
#: lockout keys a bundle may set (the [policy] lockout bounds of firmware.lock.policy)
LOCKOUT_KEYS = tuple(INT_BOUNDS) + tuple(FLOAT_BOUNDS)
LIVENESS_ORDER = ("off", "auto", "required")  # weakest first


@dataclass(frozen=True)
class LockSettings:
    """What a bundle's settings mean for this lock: the effective config, a threshold floor, what was ignored."""

    config: Config
    threshold_floor: float | None = None
    ignored: tuple[tuple[str, str], ...] = ()  # (setting, why)

    def same_decider(self, other: LockSettings) -> bool:
        """Whether a lock running ``other`` can keep its decider (liveness and threshold unchanged)."""
        return (self.config.lock.liveness == other.config.lock.liveness
                and self.threshold_floor == other.threshold_floor)


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def lock_settings(base: Config, settings: Mapping[str, Any]) -> LockSettings:
    """The config this lock runs under ``settings`` (see the module docstring for the rules)."""
    lock = dataclasses.asdict(base.lock)
    lk = base.policy.lockout
    lockout = {k: getattr(lk, k) for k in LOCKOUT_KEYS}
    floor: float | None = None
    ignored: list[tuple[str, str]] = []
    for name in sorted(settings):
        value = settings[name]
        if name in LOCK_KEYS:
            try:
                check_blink_wait(section_from_dict(LockConfig, "lock", {**lock, name: value}),
                                 base.sections.get("liveness"))
            except ConfigError as exc:
                ignored.append((name, str(exc)[:160]))
                continue
            lock[name] = value
        elif name in LOCKOUT_KEYS:
            try:
                PolicyConfig.from_dict({**lockout, name: value})
            except ConfigError as exc:
                ignored.append((name, str(exc)[:160]))
                continue
            lockout[name] = value
        elif name == "liveness":
            if value not in LIVENESS_ORDER:
                ignored.append((name, f"expected one of {', '.join(LIVENESS_ORDER)}"))
            elif LIVENESS_ORDER.index(value) < LIVENESS_ORDER.index(base.lock.liveness):
                ignored.append((name, f"weaker than this lock's own {base.lock.liveness!r}"))
            else:
                try:
                    check_blink_wait(section_from_dict(LockConfig, "lock", {**lock, "liveness": value}),
                                     base.sections.get("liveness"))
                except ConfigError as exc:
                    ignored.append((name, str(exc)[:160]))
                    continue
                lock["liveness"] = value
        elif name == "match_threshold":
            if not _num(value) or not 0.0 < value < 1.0:
                ignored.append((name, "expected a number between 0 and 1"))
            else:
                floor = float(value)  # a floor: the lock's calibrated threshold stays when it is stricter
        else:
            ignored.append((name, "not a setting this lock knows"))
    # every value was checked together with those taken before it, so the result is a valid config
    new_lock = section_from_dict(LockConfig, "lock", lock)
    new_lockout = PolicyConfig.from_dict(lockout).lockout
    new_policy = dataclasses.replace(base.policy, lockout=new_lockout)
    return LockSettings(dataclasses.replace(base, lock=new_lock, policy=new_policy), floor, tuple(ignored))
