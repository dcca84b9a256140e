"""The outcome of one liveness check, and of the whole attempt.

Three-valued on purpose: a check can PASS (evidence of life), FAIL (evidence of an attack) or be
UNKNOWN (no evidence either way, e.g. nobody blinked, or the head did not move enough to judge
planarity).  The policy decides what UNKNOWN means for each check.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Verdict(str, enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict, the scores it was based on (numbers only) and a human-readable reason."""

    name: str
    verdict: Verdict
    scores: dict[str, float] = field(default_factory=dict)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict.value, "scores": {k: round(float(v), 6) for k, v in self.scores.items()},
                "reason": self.reason}


#: Event type the lock raises when an attempt is refused for liveness (distinct from a face mismatch).
SPOOF_EVENT_TYPE = "spoof_suspected"


@dataclass(frozen=True)
class LivenessDecision:
    """The attempt's liveness decision.

    ``live`` is the only field the lock needs to act on; ``checks`` and ``reasons`` go into the
    ``spoof_suspected`` event (scores only: never a face image, landmark or embedding) and the audit log.
    """

    live: bool
    checks: dict[str, CheckResult]
    reasons: tuple[str, ...]
    n_frames: int
    #: a refusal backed by a FAILED check (counts toward lockout); False = inconclusive ("try again")
    attack_evidence: bool = False
    #: the checks that decide the attempt and saw no evidence yet (UNKNOWN): what the person can still give
    #: (a blink, a moment longer in view); the door's feedback asks for it (firmware.lock.feedback)
    waiting_for: tuple[str, ...] = ()
    #: not live only because no ``any_of`` alternative passed yet while one of them is still UNKNOWN: every
    #: required check passed and no veto failed (default policy: static replay says "frozen", or cannot judge
    #: yet, and no blink was seen yet).  More frames can make such an attempt live without outweighing any
    #: other failure, so the decider may keep gathering them (``[liveness] blink_wait_s``)
    alternative_pending: bool = False

    @property
    def spoof_suspected(self) -> bool:
        return not self.live

    @property
    def reason(self) -> str:
        """One line for logs and the audit: "live", or every failing rule joined by "; "."""
        return "live" if self.live else "; ".join(self.reasons)

    @property
    def scores(self) -> dict[str, float]:
        """Flat ``{"check.score": value}`` view of every check's scores."""
        return {f"{n}.{k}": float(v) for n, c in self.checks.items() for k, v in c.scores.items()}

    def to_event(self) -> dict[str, Any]:
        """Payload for the ``spoof_suspected`` event (type, reasons, per-check verdicts and scores)."""
        return {
            "type": SPOOF_EVENT_TYPE,
            "live": self.live,
            "attack_evidence": self.attack_evidence,
            "n_frames": self.n_frames,
            "reasons": list(self.reasons),
            "checks": {n: c.to_dict() for n, c in self.checks.items()},
        }
