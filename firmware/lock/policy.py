"""Access policy: failed-attempt lockout with exponential backoff, per-user schedules, remote lockdown.

Pure functions over immutable values; the caller passes the time (monotonic seconds for lockout,
a wall-clock ``datetime`` for schedules), so the daemon, the demo and the tests share one behaviour.

Lockout is FIDO/Android style: ``max_failures`` free attempts within ``window_s``; reaching the limit
locks out for ``base_lockout_s``.  After a lockout, every further failure (until a success or
``reset_after_s`` of quiet) locks out again for ``factor`` times longer, capped at ``max_lockout_s``.
A brute-force attacker therefore gets a handful of tries, then exponentially fewer per hour.

The window alone can be walked around: one failure every ``window_s / max_failures`` seconds never
reaches the limit (1 per 15 s was 5,760 failures a day with backoff 0).  So there are two budgets over
rolling windows as well: ``max_failures_per_hour`` and ``max_failures_per_day``.  Spending a budget locks
out until its oldest failure leaves the window, so no hour (day) ever sees more failures than its budget.
Config values that would switch lockout off (a tiny window, a zero lockout) are refused.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from firmware.config_errors import ConfigError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Lockdown(str, enum.Enum):
    OFF = "off"
    ADMINS = "admins"  # only admins may unlock
    NOBODY = "nobody"  # nobody may unlock by face or remote command (exit button still works)


@dataclass(frozen=True)
class LockoutConfig:
    max_failures: int = 5
    window_s: float = 60.0
    base_lockout_s: float = 30.0
    factor: float = 2.0
    max_lockout_s: float = 3600.0
    reset_after_s: float = 900.0
    max_failures_per_hour: int = 20
    max_failures_per_day: int = 60


@dataclass(frozen=True)
class LockoutState:
    """Failure timestamps inside the window, and how many lockouts in a row (the backoff level)."""

    failures: tuple[float, ...] = ()
    level: int = 0
    until: float = 0.0  # monotonic time the current lockout ends
    last_failure: float | None = None
    #: failures of the last 24 h (newest last, at most max_failures_per_day of them): the budgets' memory
    recent: tuple[float, ...] = ()


def lockout_remaining(st: LockoutState, now: float) -> float:
    return max(0.0, st.until - now)


def register_failure(st: LockoutState, now: float, cfg: LockoutConfig) -> tuple[LockoutState, float]:
    """Record a failed attempt. Returns (new state, lockout seconds starting now; 0 = not locked out)."""
    level = st.level
    if st.last_failure is not None and now - st.last_failure >= cfg.reset_after_s:
        level = 0
    recent = (tuple(t for t in st.recent if now - t < DAY_S) + (now,))[-cfg.max_failures_per_day:]
    budget_until = budget_lockout_until(recent, cfg)
    failures = tuple(t for t in st.failures if now - t < cfg.window_s) + (now,)
    if level == 0 and len(failures) < cfg.max_failures:
        if budget_until > now:
            return LockoutState(failures, 0, max(st.until, budget_until), now, recent), budget_until - now
        return LockoutState(failures, 0, st.until, now, recent), 0.0
    level += 1
    duration = min(cfg.base_lockout_s * cfg.factor ** (level - 1), cfg.max_lockout_s)
    until = max(now + duration, budget_until)
    return LockoutState((), level, until, now, recent), until - now


HOUR_S = 3600.0
DAY_S = 86400.0


def budget_lockout_until(recent: tuple[float, ...], cfg: LockoutConfig) -> float:
    """When the hourly/daily budgets allow the next attempt (0 when neither is spent).

    ``recent`` is sorted oldest first.  A budget of B is spent when the last B failures all lie within
    its window; the next attempt is then allowed once the oldest of them leaves it.
    """
    until = 0.0
    for budget, span in ((cfg.max_failures_per_hour, HOUR_S), (cfg.max_failures_per_day, DAY_S)):
        if len(recent) >= budget and recent[-1] - recent[-budget] < span:
            until = max(until, recent[-budget] + span)
    return until


def register_success(st: LockoutState) -> LockoutState:
    """A granted attempt clears failures and the backoff level; the budgets keep their memory (a
    colleague's unlock between an attacker's tries must not give the attacker a fresh day)."""
    return LockoutState(recent=st.recent)


@dataclass(frozen=True)
class Window:
    """Days of the week and a local-time window [start, end); end <= start crosses midnight."""

    days: frozenset[int]  # 0 = Monday
    start: dt.time
    end: dt.time

    def contains(self, when: dt.datetime) -> bool:
        t = when.time()
        wd = when.weekday()
        if self.start < self.end:
            return wd in self.days and self.start <= t < self.end
        if self.start == self.end:  # whole day
            return wd in self.days
        # crosses midnight: the part after midnight belongs to the previous day's window
        return (wd in self.days and t >= self.start) or (((wd - 1) % 7) in self.days and t < self.end)


_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _parse_time(key: str, value: Any) -> dt.time:
    if not isinstance(value, str) or not _HHMM.match(value):
        raise ConfigError(f"{key}: expected \"HH:MM\" (24 h), got {value!r}")
    h, m = value.split(":")
    return dt.time(int(h), int(m))


def window_from_dict(key: str, d: Any) -> Window:
    if not isinstance(d, Mapping):
        raise ConfigError(f"{key}: expected a table with days, start, end")
    unknown = set(d) - {"days", "start", "end"}
    if unknown:
        raise ConfigError(f"{key}.{sorted(unknown)[0]}: unknown key (allowed: days, start, end)")
    days_raw = d.get("days", list(DAYS))
    if not isinstance(days_raw, list) or not days_raw:
        raise ConfigError(f"{key}.days: expected a non-empty list of {', '.join(DAYS)}")
    days = set()
    for day in days_raw:
        if not isinstance(day, str) or day.lower() not in DAYS:
            raise ConfigError(f"{key}.days: {day!r} is not one of {', '.join(DAYS)}")
        days.add(DAYS.index(day.lower()))
    return Window(frozenset(days), _parse_time(f"{key}.start", d.get("start", "00:00")),
                  _parse_time(f"{key}.end", d.get("end", "00:00")))


def window_to_dict(w: Window) -> dict[str, Any]:
    """The stored form of a window (what :func:`window_from_dict` reads back)."""
    return {"days": [DAYS[d] for d in sorted(w.days)], "start": w.start.strftime("%H:%M"),
            "end": w.end.strftime("%H:%M")}


#: Bounds that keep lockout switched on: values outside them would let a steady trickle of failures
#: (or a burst) through, so they are refused at load time rather than trusted.
INT_BOUNDS: dict[str, tuple[int, int]] = {
    "max_failures": (1, 20),
    "max_failures_per_hour": (1, 200),
    "max_failures_per_day": (1, 1000),
}
FLOAT_BOUNDS: dict[str, tuple[float, float]] = {
    "window_s": (30.0, 86400.0),
    "base_lockout_s": (5.0, 86400.0),
    "factor": (1.0, 10.0),
    "max_lockout_s": (5.0, 7 * 86400.0),
    "reset_after_s": (30.0, 7 * 86400.0),
}
FLOAT_WHY = {
    "window_s": "shorter windows never collect max_failures",
    "base_lockout_s": "a shorter lockout is no lockout",
    "factor": "backoff never shrinks",
    "max_lockout_s": "seconds",
    "reset_after_s": "seconds",
}


@dataclass(frozen=True)
class PolicyConfig:
    lockout: LockoutConfig = field(default_factory=LockoutConfig)
    admins: frozenset[str] = frozenset()
    #: user id -> windows in which that user may unlock; users not listed may unlock at any time.
    schedules: Mapping[str, tuple[Window, ...]] = field(default_factory=dict)
    lockdown: Lockdown = Lockdown.OFF
    #: who may change the lockdown remotely: "admins" (a signed command naming an admin) or "nobody"
    remote_lockdown: str = "admins"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PolicyConfig:
        d = dict(d)
        known = {"max_failures", "window_s", "base_lockout_s", "factor", "max_lockout_s", "reset_after_s",
                 "max_failures_per_hour", "max_failures_per_day", "admins", "schedule", "lockdown",
                 "remote_lockdown"}
        for k in d:
            if k not in known:
                raise ConfigError(f"policy.{k}: unknown key (allowed: {', '.join(sorted(known))})")
        lk = LockoutConfig()
        vals: dict[str, Any] = {}
        for name, (lo, hi) in INT_BOUNDS.items():
            if name in d:
                v = d[name]
                if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                    raise ConfigError(f"policy.{name}: expected an integer {lo}..{hi}, got {v!r}")
                vals[name] = v
        for name, (lo, hi) in FLOAT_BOUNDS.items():
            if name in d:
                v = d[name]
                if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
                    raise ConfigError(f"policy.{name}: expected a number {lo:g}..{hi:g} ({FLOAT_WHY[name]}), "
                                      f"got {v!r}")
                vals[name] = float(v)
        lk = replace(lk, **vals)
        if lk.max_lockout_s < lk.base_lockout_s:
            raise ConfigError(f"policy.max_lockout_s: must be >= base_lockout_s ({lk.base_lockout_s:g}), "
                              f"got {lk.max_lockout_s:g}")
        if lk.max_failures_per_day < lk.max_failures_per_hour:
            raise ConfigError(f"policy.max_failures_per_day: must be >= max_failures_per_hour "
                              f"({lk.max_failures_per_hour}), got {lk.max_failures_per_day}")
        if lk.reset_after_s < lk.window_s:
            raise ConfigError(f"policy.reset_after_s: must be >= window_s ({lk.window_s:g}), got {lk.reset_after_s:g}")
        admins = d.get("admins", [])
        if not isinstance(admins, list) or not all(isinstance(a, str) and a for a in admins):
            raise ConfigError(f"policy.admins: expected a list of user ids, got {admins!r}")
        schedules: dict[str, tuple[Window, ...]] = {}
        sched = d.get("schedule", {})
        if not isinstance(sched, Mapping):
            raise ConfigError("policy.schedule: expected a table of user id -> list of windows")
        for user, wins in sched.items():
            if not isinstance(wins, list) or not wins:
                raise ConfigError(f"policy.schedule.{user}: expected a non-empty list of windows")
            schedules[str(user)] = tuple(window_from_dict(f"policy.schedule.{user}[{i}]", w)
                                         for i, w in enumerate(wins))
        try:
            lockdown = Lockdown(d.get("lockdown", "off"))
        except ValueError:
            raise ConfigError(f"policy.lockdown: expected off, admins or nobody, got {d.get('lockdown')!r}") \
                from None
        remote = d.get("remote_lockdown", "admins")
        if remote not in ("admins", "nobody"):
            raise ConfigError(f"policy.remote_lockdown: expected admins or nobody, got {remote!r}")
        return cls(lk, frozenset(admins), schedules, lockdown, remote)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # "ok", "lockout", "schedule", "lockdown"


#: ``requested_by`` of a remote command signed by the management key (verified by firmware.telemetry):
#: the management side is the lock's administrator, so it counts as an admin.
MANAGEMENT = "management"


def is_admin(cfg: PolicyConfig, who: str | None) -> bool:
    return who is not None and (who == MANAGEMENT or who in cfg.admins)


def schedule_allows(when: dt.datetime, *sources: tuple[Window, ...] | None) -> bool:
    """Inside a window of every source that lists the user (None = the source does not restrict them).

    Why every source: the config file's ``[policy.schedule]`` and the per-user schedule that
    ``facelock policy set`` stores with the template are both written by the lock's operator; a window
    in one can only narrow what the other allows, never widen it (fail secure).
    """
    return all(any(w.contains(when) for w in windows) for windows in sources if windows is not None)


def authorize(cfg: PolicyConfig, user: str, when: dt.datetime, lockout: LockoutState, now: float,
              lockdown: Lockdown | None = None,
              user_schedules: Mapping[str, tuple[Window, ...]] | None = None) -> Decision:
    """May this recognised user unlock now?  Lockout is checked by the caller before matching too.

    ``user_schedules``: per-user windows stored with the templates (``facelock policy set``), checked
    together with ``cfg.schedules`` (:func:`schedule_allows`).
    """
    mode = cfg.lockdown if lockdown is None else lockdown
    if mode is Lockdown.NOBODY:
        return Decision(False, "lockdown")
    if mode is Lockdown.ADMINS and user not in cfg.admins:
        return Decision(False, "lockdown")
    if lockout_remaining(lockout, now) > 0:
        return Decision(False, "lockout")
    if not schedule_allows(when, cfg.schedules.get(user), (user_schedules or {}).get(user)):
        return Decision(False, "schedule")
    return Decision(True, "ok")


def may_set_lockdown(cfg: PolicyConfig, requested_by: str | None) -> bool:
    """Remote lockdown changes: only admins (the management key, or a user id in ``admins``), when allowed."""
    return cfg.remote_lockdown == "admins" and is_admin(cfg, requested_by)


def may_remote_unlock(cfg: PolicyConfig, lockdown: Lockdown, requested_by: str | None) -> bool:
    if lockdown is Lockdown.NOBODY:
        return False
    if lockdown is Lockdown.ADMINS:
        return is_admin(cfg, requested_by)
    return True


def schedules_from_policies(policies: Mapping[str, Any]) -> dict[str, tuple[Window, ...]]:
    """Per-user windows from the templates' policy objects (``{"schedule": [{days, start, end}, ...]}``).

    A user whose stored schedule is malformed gets an empty window list, so they cannot unlock until it is
    fixed (fail secure for that user only; everyone else is unaffected).  Users without a schedule are
    not listed (no restriction).
    """
    out: dict[str, tuple[Window, ...]] = {}
    for user, policy in policies.items():
        if not isinstance(policy, Mapping) or "schedule" not in policy:
            continue
        wins = policy["schedule"]
        try:
            if not isinstance(wins, list) or not wins:
                raise ConfigError("expected a non-empty list of windows")
            out[str(user)] = tuple(window_from_dict(f"schedule[{i}]", w) for i, w in enumerate(wins))
        except ConfigError:
            out[str(user)] = ()
    return out
