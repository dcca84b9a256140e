"""The failed-attempt counter, the lockout/backoff and the remote lockdown, kept on disk across restarts.

Why: were they in memory only, an attacker who is locked out would power-cycle the lock (or crash the
daemon) and get a fresh set of free attempts; a remote lockdown would end with a reboot.  The file is
``<data_dir>/lockstate.json``, replaced atomically (write, fsync, rename, fsync dir) *before* the failed
attempt is shown, so a SIGKILL at any instant leaves the old or the new count, never less.

Times are stored as ages relative to the moment of saving, with both clocks: on the same boot
(``/proc/sys/kernel/random/boot_id`` unchanged) the monotonic clock gives the exact elapsed time; after
a reboot the wall clock does, and when the wall clock went *backwards* (a Raspberry Pi has no RTC, and
before NTP its clock restarts from the last saved time) the elapsed time counts as zero: the lockout
then restarts in full instead of being skipped (fail secure).

The conversions (:func:`to_record`, :func:`from_record`) are pure; only :class:`LockStateFile` does I/O.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware import fsutil
from firmware.errors import FaceLockError
from firmware.lock.policy import Lockdown, LockoutConfig, LockoutState, budget_lockout_until

log = logging.getLogger("facelock.lockstate")

VERSION = 1
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


class LockStateError(FaceLockError):
    """The lock-state file cannot be written (the controller then fails secure), or is damaged."""


@dataclass(frozen=True)
class Clock:
    """One reading of both clocks (and the boot they belong to)."""

    mono: float
    wall: float
    boot_id: str = ""


def read_boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


def now_clock() -> Clock:
    return Clock(time.monotonic(), time.time(), read_boot_id())


def to_record(st: LockoutState, lockdown: Lockdown | None, now: Clock) -> dict[str, Any]:
    """The JSON object saved for this state: ages (s before ``now``), never absolute monotonic times."""
    return {
        "v": VERSION,
        "boot_id": now.boot_id,
        "mono": now.mono,
        "wall": now.wall,
        "failures_age": [round(max(0.0, now.mono - t), 6) for t in st.failures],
        "level": st.level,
        "lockout_remaining": round(max(0.0, st.until - now.mono), 6),
        "last_failure_age": None if st.last_failure is None else round(max(0.0, now.mono - st.last_failure), 6),
        "lockdown": None if lockdown is None else lockdown.value,
        "recent_age": [round(max(0.0, now.mono - t), 6) for t in st.recent],
    }


def _num(d: dict[str, Any], key: str) -> float:
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise ValueError(f"{key}: expected a finite number >= 0, got {v!r}")
    return float(v)


def from_record(d: Any, now: Clock, cfg: LockoutConfig) -> tuple[LockoutState, Lockdown | None]:
    """The state a saved record means *now*; ValueError when the record is malformed."""
    if not isinstance(d, dict) or d.get("v") != VERSION:
        raise ValueError(f"not a version-{VERSION} lock-state record")
    saved_mono, saved_wall = _num(d, "mono"), _num(d, "wall")
    if d.get("boot_id") and d.get("boot_id") == now.boot_id and now.mono >= saved_mono:
        elapsed = now.mono - saved_mono
    else:
        elapsed = max(0.0, now.wall - saved_wall)  # the clock went back: nothing has elapsed (fail secure)
    ages = d.get("failures_age")
    if not isinstance(ages, list) or len(ages) > 1000:
        raise ValueError("failures_age: expected a list")
    failures = tuple(now.mono - (_num({"a": a}, "a") + elapsed) for a in ages)
    recent_ages = d.get("recent_age", [])  # absent in files written before the budgets existed
    if not isinstance(recent_ages, list) or len(recent_ages) > 1000:
        raise ValueError("recent_age: expected a list")
    recent = tuple(sorted(now.mono - (_num({"a": a}, "a") + elapsed) for a in recent_ages))
    level = d.get("level")
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 1000:
        raise ValueError(f"level: expected an integer 0..1000, got {level!r}")
    remaining = min(max(0.0, _num(d, "lockout_remaining") - elapsed), cfg.max_lockout_s)
    lfa = d.get("last_failure_age")
    last = None if lfa is None else now.mono - (_num(d, "last_failure_age") + elapsed)
    mode = d.get("lockdown")
    lockdown = None if mode is None else Lockdown(mode)
    until = now.mono + remaining if remaining > 0 else 0.0
    # a budget lockout (up to a day) is recomputed from the failures themselves, not from the capped remainder
    until = max(until, budget_lockout_until(recent, cfg)) if recent else until
    return LockoutState(failures, level, until, last, recent), lockdown


def damaged_state(now: Clock, cfg: LockoutConfig) -> LockoutState:
    """What a damaged file is taken to mean: the failure limit was reached (one base lockout, fail secure)."""
    return LockoutState((), 1, now.mono + cfg.base_lockout_s, now.mono)


class LockStateFile:
    """``load(cfg, now)`` and ``save(state, lockdown, now)`` of ``<data_dir>/lockstate.json``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def load(self, cfg: LockoutConfig, now: Clock | None = None) -> tuple[LockoutState, Lockdown | None, str]:
        """(state, lockdown or None, note): note is "" normally, "new" without a file, else why it was damaged."""
        now = now or now_clock()
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return LockoutState(), None, "new"
        except OSError as exc:
            log.error("lock state %s unreadable (%s): starting with a lockout", self.path, exc)
            return damaged_state(now, cfg), None, f"unreadable: {exc.strerror or exc}"
        try:
            st, lockdown = from_record(json.loads(raw), now, cfg)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            log.error("lock state %s damaged (%s): starting with a lockout", self.path, exc)
            return damaged_state(now, cfg), None, f"damaged: {exc}"[:200]
        return st, lockdown, ""

    def save(self, st: LockoutState, lockdown: Lockdown | None, now: Clock | None = None) -> None:
        data = json.dumps(to_record(st, lockdown, now or now_clock()), sort_keys=True).encode()
        try:
            fsutil.atomic_write(self.path, data, 0o600)
        except OSError as exc:
            raise LockStateError(f"cannot save the lock state {self.path}: {exc.strerror or exc}") from exc
