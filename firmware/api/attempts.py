"""Where API verify requests meet the door's attempts.

Why verify *watches* the door's attempts instead of running its own: there is one camera and one person
in front of it.  The lock loop keeps doing exactly what it does for the door (same frames, pipeline,
liveness, matcher, schedules, lockdown and the one lockout state), and tells this hub about each attempt
it starts and decides; a waiting verify takes the first decision made after it arrived.  So a verify can
neither open the door nor keep it from opening, never blocks the lock loop (the loop's side only sets a
flag under a lock), and a refused face counts once toward the lockout, whoever asked.

The lock loop calls :meth:`VerifyHub.attempt_started` and :meth:`VerifyHub.attempt_decided`; API threads
call :meth:`VerifyHub.open`, then :meth:`Waiter.wait` and :meth:`VerifyHub.close`.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from firmware.api.protocol import VerifyResult

#: door outcome reasons (from the lock loop) -> the API's verify reason
_REFUSALS = {"spoof_suspected": "spoof_suspected", "no_match": "no_match", "schedule": "schedule",
             "lockdown": "lockdown", "lockout": "lockout"}


@dataclass(frozen=True)
class Outcome:
    """One decided door attempt, as the lock loop reports it."""

    granted: bool
    reason: str  # "ok" or one of _REFUSALS' keys
    user_id: str | None  # the recognised user (also set when recognised but refused by policy)
    scores: Mapping[str, float]
    attempt_id: str = field(default_factory=lambda: uuid.uuid4().hex)


def public_scores(scores: Mapping[str, float]) -> dict[str, float]:
    """The scores a caller sees: the match similarity to two decimals, nothing of the liveness internals.

    Why so little: fine-grained scores are an oracle.  A caller that sees the exact similarity or each
    liveness check's value can hill-climb a forged face or a replay until it passes; the door never
    shows them either.  The full scores stay inside the lock.
    """
    out: dict[str, float] = {}
    if "match" in scores:
        out["match"] = round(float(scores["match"]), 2)
    return out


def answer(outcome: Outcome, wanted: frozenset[str] | None) -> VerifyResult:
    """What a verify asking for ``wanted`` users (None = anyone enrolled) learns from an outcome.  Pure."""
    scores = public_scores(outcome.scores)
    recognised = outcome.user_id
    if recognised is not None and wanted is not None and recognised not in wanted:
        # another enrolled person: do not tell the caller who it was
        return VerifyResult(False, "wrong_user", None, scores, outcome.attempt_id)
    if outcome.granted:
        return VerifyResult(True, "ok", recognised, scores, outcome.attempt_id)
    reason = _REFUSALS.get(outcome.reason, "no_match")
    return VerifyResult(False, reason, recognised if reason in ("schedule", "lockdown") else None, scores,
                        outcome.attempt_id)


class Waiter:
    """One verify request waiting for the next decided attempt."""

    def __init__(self, wanted: frozenset[str] | None):
        self.wanted = wanted
        self.result: VerifyResult | None = None
        self.face_seen = False
        self._cond = threading.Condition()

    def _offer(self, outcome: Outcome) -> None:
        with self._cond:
            if self.result is None:
                self.result = answer(outcome, self.wanted)
                self._cond.notify_all()

    def _seen(self) -> None:
        with self._cond:
            self.face_seen = True
            self._cond.notify_all()

    def wait(self, timeout: float, seen_before: bool = False) -> tuple[VerifyResult | None, bool]:
        """Block up to ``timeout`` s for a result or for a face newly seen; returns (result, face_seen)."""
        with self._cond:
            self._cond.wait_for(lambda: self.result is not None or self.face_seen != seen_before, timeout)
            return self.result, self.face_seen


class VerifyHub:
    """The waiting verify requests; thread safe.  The lock loop's calls are O(waiters) and never block long."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: list[Waiter] = []
        self.attempts_started = 0
        self.attempts_decided = 0
        self.opened = 0  # verify requests that reached the camera (a refused caller never does)

    # -- the API's side ------------------------------------------------------------------------------
    def open(self, wanted: frozenset[str] | None) -> Waiter:
        w = Waiter(wanted)
        with self._lock:
            self._waiters.append(w)
            self.opened += 1
        return w

    def close(self, w: Waiter) -> None:
        with self._lock:
            if w in self._waiters:
                self._waiters.remove(w)

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiters)

    # -- the lock loop's side ----------------------------------------------------------------------------
    def attempt_started(self) -> None:
        with self._lock:
            self.attempts_started += 1
            waiters = list(self._waiters)
        for w in waiters:
            w._seen()

    def attempt_decided(self, granted: bool, reason: str, user_id: str | None,
                        scores: Mapping[str, float] | None = None) -> Outcome:
        outcome = Outcome(granted, reason, user_id, dict(scores or {}))
        with self._lock:
            self.attempts_decided += 1
            waiters, self._waiters = self._waiters, []
        for w in waiters:
            w._offer(outcome)
        return outcome
