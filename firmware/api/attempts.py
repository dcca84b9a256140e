"""What a verify caller learns from the lock's decision of its attempt.  Pure.

Why verify runs its *own* attempt (:meth:`firmware.lock.port.LockPort.verify`) instead of riding the
door's: a person asking the device to log them in must not open the door by doing so.  The lock loop
decides the caller's attempt with the door's decider (same frames, pipeline, liveness, matcher,
schedules, lockdown and the one lockout state) but never feeds it to the state machine, so the relay is
never energised for it; a refused face counts once toward the lockout, whoever asked.
"""

from __future__ import annotations

from firmware.api.protocol import VerifyResult
from firmware.lock.decider import Decision, Outcome

#: policy refusals (firmware.lock.policy.authorize) the caller is told by name
_POLICY_REFUSALS = ("schedule", "lockdown", "lockout")


def public_scores(decision: Decision) -> dict[str, float]:
    """The scores a caller sees: the match similarity to two decimals, nothing of the liveness internals.

    Why so little: fine-grained scores are an oracle.  A caller that sees the exact similarity or each
    liveness check's value can hill-climb a forged face or a replay until it passes; the door never
    shows them either.  The full scores stay inside the lock.
    """
    return {"match": round(float(decision.score), 2)} if decision.score is not None else {}


def answer(decision: Decision, attempt_id: str | None, wanted: frozenset[str] | None) -> VerifyResult:
    """What a verify asking for ``wanted`` users (None = anyone enrolled) learns from a decision."""
    scores = public_scores(decision)
    recognised = decision.user_id
    if decision.outcome is Outcome.ABANDONED:
        return VerifyResult(False, "timeout", None, {}, attempt_id)
    if recognised is not None and wanted is not None and recognised not in wanted:
        # another enrolled person: do not tell the caller who it was
        return VerifyResult(False, "wrong_user", None, scores, attempt_id)
    if decision.outcome is Outcome.GRANTED:
        return VerifyResult(True, "ok", recognised, scores, attempt_id)
    if decision.outcome is Outcome.SPOOF:
        return VerifyResult(False, "spoof_suspected", None, scores, attempt_id)
    if decision.outcome is Outcome.REFUSED and decision.reason in _POLICY_REFUSALS:
        return VerifyResult(False, decision.reason, recognised if decision.reason != "lockout" else None, scores,
                            attempt_id)
    # no match, a user revoked since the gallery was loaded, FAULT/TAMPER: not recognised
    return VerifyResult(False, "no_match", None, scores, attempt_id)
