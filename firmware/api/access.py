"""Who may call the API (peer credentials -> rules) and how often (per-uid sliding windows).  Pure.

Why the kernel's credentials and nothing the client says: a Unix socket's peer uid/gid (SO_PEERCRED) are
set by the kernel at ``connect()`` and cannot be forged by the caller; a token in the request could be
copied.  Why per-uid rate limits on top of the door's lockout: the lockout counts *refused faces*; the
rate limit bounds how many camera attempts (and audit records) one local account can ask for at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from firmware.api.config import AllowRule


@dataclass(frozen=True)
class Peer:
    """The caller as the kernel reports it."""

    pid: int
    uid: int
    gid: int
    groups: frozenset[int] = frozenset()  # supplementary groups (SO_PEERGROUPS), when the kernel tells


def _matches(rule: AllowRule, peer: Peer) -> bool:
    if rule.uid is not None:
        return peer.uid == rule.uid
    return rule.gid is not None and (peer.gid == rule.gid or rule.gid in peer.groups)


def may_connect(rules: Iterable[AllowRule], peer: Peer) -> bool:
    """Does any rule name this caller at all?  (Checked before the request is even read.)"""
    return any(_matches(r, peer) for r in rules)


def may_call(rules: Iterable[AllowRule], peer: Peer, method: str, purpose: str | None = None) -> bool:
    """Some rule that names the caller allows this method (and, for verify, this purpose)."""
    for r in rules:
        if not _matches(r, peer) or method not in r.methods:
            continue
        if purpose is None or "*" in r.purposes or purpose in r.purposes:
            return True
    return False


@dataclass(frozen=True)
class RateState:
    """Request times of one caller within the last window (monotonic seconds)."""

    times: tuple[float, ...] = ()


def rate_check(st: RateState, now: float, limit: int, window_s: float = 60.0) -> tuple[RateState, bool]:
    """(new state, allowed).  A refused request is not recorded, so waiting always helps."""
    recent = tuple(t for t in st.times if now - t < window_s)
    if len(recent) >= limit:
        return RateState(recent), False
    return RateState(recent + (now,)), True


class RateLimiter:
    """Per-uid sliding windows (the only state; callers serialise access with their own lock)."""

    def __init__(self, limit: int, window_s: float = 60.0, max_callers: int = 4096):
        self.limit = limit
        self.window_s = window_s
        self.max_callers = max_callers
        self._st: dict[int, RateState] = {}

    def allow(self, uid: int, now: float) -> bool:
        st, ok = rate_check(self._st.get(uid, RateState()), now, self.limit, self.window_s)
        if len(self._st) >= self.max_callers and uid not in self._st:
            self._st = {u: s for u, s in self._st.items() if s.times and now - s.times[-1] < self.window_s}
        self._st[uid] = st
        return ok
