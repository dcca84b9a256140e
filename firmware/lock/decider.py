"""The attempt decider: the frames of one attempt -> liveness -> match -> authorisation -> a Decision.

Pure: no files, sockets, GPIO, threads or clocks.  Models run (the face pipeline is computation), but
everything the decision depends on is passed in: the frames, the enrolled users (:class:`Enrolled`, a
snapshot the runtime replaces when ``users.db`` changes) and the policy context (:class:`Context`, the
time, lockout and lockdown of the moment).  So the lock's runtime, the Face Security API (through
:mod:`firmware.lock.port`), the demo and the benchmarks all take the product's decision with the same
code, and a test can replay an attempt frame by frame.

Order of the checks, and why:
1. A frame with a face becomes an :class:`Observation` (embedding when the quality gates pass, the
   liveness inputs of the frame).
2. Once ``frames_per_attempt`` usable frames (or liveness' own minimum) are in, liveness is checked over
   the attempt's evidence window (:meth:`AttemptDecider.window`): its last ``max_frames_per_attempt``
   frames.  A live person gets up to that many frames to show it (blink, head motion, the learned PAD
   model's few frames); a full window that still fails is a spoof when a check FAILED on it, and
   *inconclusive* ("try again", not a failure) when no check saw evidence either way.  One exception,
   bounded in time rather than frames: when the only thing missing is an ``any_of`` alternative and the
   blink is one of them (default policy: static replay says "frozen", no blink yet; every required check
   passed), the window keeps growing until its frames span ``[liveness] blink_wait_s`` (2.0 s), so a live
   person who stands still has a realistic interval to blink; a check that FAILED for any other reason
   still refuses when the frame window is full.
3. Then the mean embedding is matched 1:N against the gallery (threshold and margin from the manifest).
4. A recognised user is authorised by :func:`firmware.lock.policy.authorize` (schedules, lockdown,
   lockout); a refusal there is not a failed attempt.
A face that leaves before a decision, or an attempt that runs into the state machine's verify timeout (a
slow device may never fill the window in frames), ends it (:meth:`AttemptDecider.ended`): abandoned,
unless a liveness check had already FAILED on it (evidence of an attack, e.g. a picture; not merely "no
blink yet"), in which case it counts as a spoof: a photo pulled away, or held up in front of a lock too
slow to fill the window before the timeout, must still count toward lockout.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from firmware.hw.camera.base import Frame
from firmware.lock import policy as pol
from firmware.vision.liveness.result import Verdict


@dataclass
class Observation:
    """What one frame told the lock.  ``liveness`` holds the frame's liveness inputs (landmarks, crop)."""

    frame_index: int
    ts: float
    face: bool  # a face was detected
    usable: bool  # quality gates passed and an embedding exists
    embedding: np.ndarray | None = None
    reason: str = ""
    liveness: Any = None  # firmware.vision.liveness.LivenessFrame, or None


class Why(str, enum.Enum):
    """Why an attempt stands where it stands: the closed set of reasons the decider (and the runtime, for a
    caller's attempt) gives, next to the free-text ``reason`` the audit keeps.

    Why a closed set: the door tells the person in front of it what to do (:mod:`firmware.lock.feedback`
    maps every member to an LED/buzzer pattern, and a test checks the map is total), so a new reason
    cannot be added without deciding what the person is told; a refusal is never silent.
    """

    GATHERING = "gathering"  # PENDING: usable frames are coming in
    POOR_FACE = "poor_face"  # PENDING: a face, but the quality gates refuse it (turned away, far, blurred)
    LIVENESS_NEEDS_TIME = "liveness_needs_time"  # a check needs a longer span / more frames of a steady face
    LIVENESS_NEEDS_BLINK = "liveness_needs_blink"  # the blink check has not seen a blink yet
    LIVENESS_NEEDS_MOTION = "liveness_needs_motion"  # the motion check saw too little head movement to judge
    LIVENESS_FAILING = "liveness_failing"  # PENDING: a check FAILED so far, the window is still filling
    LIVENESS_CHALLENGE = "liveness_challenge"  # PENDING: inconclusive, the LED is lit: blink now
    SPOOF = "spoof"  # a liveness check FAILED on the attempt (counts toward lockout)
    NOT_RECOGNISED = "not_recognised"  # no enrolled user matched (below threshold, ambiguous, empty gallery)
    NO_USABLE_FACE = "no_usable_face"  # nothing the matcher could use
    SCHEDULE = "schedule"  # recognised, outside their schedule
    LOCKDOWN = "lockdown"  # recognised, the site is locked down
    LOCKOUT = "lockout"  # too many failures: locked out for now
    REVOKED = "revoked"  # recognised, but revoked since the gallery was loaded
    UNAVAILABLE = "unavailable"  # the lock is in FAULT or TAMPER (a caller's attempt)
    FACE_LOST = "face_lost"  # the face left before a decision
    TIMED_OUT = "timed_out"  # the verify timeout (or a caller's) ended the attempt
    GRANTED = "granted"


#: the reasons the matcher, the policy and the runtime give, per outcome -> Why (see :func:`why_of`)
_WHY_OF_REASON: dict[str, dict[str, Why]] = {
    "pending": {"gathering": Why.GATHERING},
    "no_match": {"no_usable_face": Why.NO_USABLE_FACE},
    "refused": {"schedule": Why.SCHEDULE, "lockdown": Why.LOCKDOWN, "lockout": Why.LOCKOUT,
                "revoked": Why.REVOKED, "fault": Why.UNAVAILABLE, "tamper": Why.UNAVAILABLE},
    "abandoned": {"face_lost": Why.FACE_LOST, "no_face": Why.FACE_LOST, "too_few_frames": Why.FACE_LOST,
                  "cancelled": Why.FACE_LOST, "timeout": Why.TIMED_OUT, "verify_timeout": Why.TIMED_OUT},
}


class Outcome(str, enum.Enum):
    PENDING = "pending"  # keep gathering frames
    GRANTED = "granted"
    NO_MATCH = "no_match"
    SPOOF = "spoof"
    REFUSED = "refused"  # a recognised user the policy refuses now (schedule, lockdown, lockout)
    INCONCLUSIVE = "inconclusive"  # liveness saw no evidence either way in a full window: "try again"
    ABANDONED = "abandoned"  # the face left before a decision, with no failed liveness check


#: what an outcome means when its reason string names nothing more specific (never silent: see why_of)
_WHY_OF_OUTCOME: dict[Outcome, Why] = {
    Outcome.PENDING: Why.GATHERING, Outcome.GRANTED: Why.GRANTED, Outcome.NO_MATCH: Why.NOT_RECOGNISED,
    Outcome.SPOOF: Why.SPOOF, Outcome.REFUSED: Why.UNAVAILABLE, Outcome.INCONCLUSIVE: Why.LIVENESS_NEEDS_TIME,
    Outcome.ABANDONED: Why.FACE_LOST,
}


def why_of(outcome: Outcome, reason: str) -> Why:
    """The :class:`Why` of a decision built without one: from its reason when it names one (the policy's
    "schedule", the runtime's "revoked", ...), else from its outcome (a matcher refusal of any kind is
    "not recognised").  Total, so no Decision is without a reason the door can show."""
    if outcome is Outcome.GRANTED:
        return Why.GRANTED
    if outcome is Outcome.SPOOF:
        return Why.SPOOF
    return _WHY_OF_REASON.get(outcome.value, {}).get(reason, _WHY_OF_OUTCOME[outcome])


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str = ""
    user_id: str | None = None  # the recognised user (GRANTED or REFUSED only)
    score: float | None = None  # best match cosine, when matching ran
    liveness_scores: Mapping[str, float] = field(default_factory=dict)
    why: Why | None = None  # the closed-set reason; None = derived from outcome and reason (why_of)

    def __post_init__(self) -> None:
        if self.why is None:
            object.__setattr__(self, "why", why_of(self.outcome, self.reason))

    @property
    def final(self) -> bool:
        return self.outcome is not Outcome.PENDING

    @property
    def failure(self) -> bool:
        """Counts toward lockout."""
        return self.outcome in (Outcome.NO_MATCH, Outcome.SPOOF)


def liveness_wait(waiting: Sequence[str]) -> Why:
    """What a live person can do about liveness checks that saw no evidence yet: blink (the blink check),
    move their head a little (the motion check), or else hold still in view a moment longer (static
    replay needs a span of frames, the learned PAD model and same-face need more frames)."""
    if "blink" in waiting:
        return Why.LIVENESS_NEEDS_BLINK
    if "motion" in waiting:
        return Why.LIVENESS_NEEDS_MOTION
    return Why.LIVENESS_NEEDS_TIME


@dataclass
class Attempt:
    """The frames of one verification attempt, and what liveness said about them so far."""

    started: float
    first_face_ts: float
    first_face_index: int
    observations: list[Observation] = field(default_factory=list)
    last_face_ts: float = 0.0  # capture time of the latest frame with a face
    liveness_failures: int = 0  # checks that failed while the window was still filling
    last_liveness_reason: str = ""
    liveness_scores: dict[str, float] = field(default_factory=dict)  # of the latest liveness check
    #: capture time of the frame after which the LED challenge was lit (None: no challenge asked)
    challenge_from: float | None = None
    #: the frame window was full and the attempt kept gathering frames for a blink (``blink_wait_s``)
    waiting_for_blink: bool = False


@dataclass(frozen=True)
class Enrolled:
    """What the lock knows of its active users, in memory only: the gallery, the audit pseudonyms and the
    schedules stored with the templates, and the ``users.db`` generation they were read at."""

    gallery: Any  # firmware.vision.Gallery
    pseudonyms: Mapping[str, str] = field(default_factory=dict)
    schedules: Mapping[str, tuple[pol.Window, ...]] = field(default_factory=dict)
    generation: int = -1


@dataclass(frozen=True)
class Context:
    """The policy facts of the moment an attempt is decided."""

    policy: pol.PolicyConfig
    when: dt.datetime
    now: float
    lockout: pol.LockoutState = field(default_factory=pol.LockoutState)
    lockdown: pol.Lockdown = pol.Lockdown.OFF


@dataclass(frozen=True)
class AttemptRules:
    frames_per_attempt: int = 3
    max_frames_per_attempt: int = 30  # as firmware.config.LockConfig
    face_lost_s: float = 0.5

    @classmethod
    def from_lock(cls, lock: Any) -> AttemptRules:
        return cls(int(lock.frames_per_attempt), int(lock.max_frames_per_attempt), float(lock.face_lost_s))


class AttemptDecider:
    """Decides attempts with one face pipeline, one liveness policy (None only when configured off),
    the enrolled users and the calibrated threshold/margin.

    ``threshold_for`` (gallery size -> threshold), when given, is re-applied every time the enrolled users
    change (:meth:`use`): each enrolled person is one more chance for a stranger to match, so a promise
    stated per attempt (``[vision] stranger_far``) needs a stricter threshold for a larger gallery.
    """

    def __init__(self, pipeline: Any, liveness: Any, enrolled: Enrolled, threshold: float, margin: float,
                 rules: AttemptRules | None = None, threshold_for: Callable[[int], float] | None = None):
        self.pipeline = pipeline
        self.liveness = liveness
        self.threshold_for = threshold_for
        self.threshold = float(threshold)
        self.margin = float(margin)
        self.rules = rules or AttemptRules()
        self.enrolled = enrolled
        self.use(enrolled)

    def use(self, enrolled: Enrolled) -> None:
        """Decide from now on against these enrolled users (a reload), with the threshold for their number."""
        if self.threshold_for is not None:
            self.threshold = float(self.threshold_for(len(enrolled.gallery)))
        self.enrolled = enrolled

    # ------------------------------------------------------------------------------------- frames
    def observe(self, frame: Frame) -> Observation:
        from firmware.vision.liveness.adapter import frame_from_result

        res = self.pipeline.process(frame.rgb)
        face = res.primary is not None
        lf = frame_from_result(res, t=frame.ts, pipeline=self.pipeline, rgb=frame.rgb) if face else None
        return Observation(frame.index, frame.ts, face, bool(res.ok and res.embedding is not None),
                           res.embedding, str(getattr(res.reason, "value", res.reason)), lf)

    @property
    def frames_needed(self) -> int:
        need = self.rules.frames_per_attempt
        if self.liveness is not None:
            need = max(need, int(getattr(self.liveness.config, "min_frames", 3)))
        return need

    @property
    def blink_wait_s(self) -> float:
        """``[liveness] blink_wait_s`` (0 when liveness is off or the policy has no such setting)."""
        return float(getattr(getattr(self.liveness, "config", None), "blink_wait_s", 0.0) or 0.0)

    def window(self, att: Attempt) -> list[Observation]:
        """The frames liveness is decided over: the last ``max_frames_per_attempt``, or, once the attempt has
        more because it is waiting for a blink (:meth:`liveness_step`), all of its frames (their span is
        bounded by ``blink_wait_s``: the attempt stops waiting when they reach it)."""
        n = self.rules.max_frames_per_attempt
        if len(att.observations) > n and att.waiting_for_blink:
            return list(att.observations)
        return att.observations[-n:]

    def _may_wait_for_blink(self, att: Attempt, alternative_pending: bool, waiting: Sequence[str],
                            strict: bool) -> bool:
        """Whether a full frame window that is not live may keep gathering frames: only an ``any_of``
        alternative is missing (every required check passed, no veto failed), the blink is one that can
        still come, the challenge is not running, and the attempt's frames span less than ``blink_wait_s``."""
        wait = self.blink_wait_s
        if not (wait > 0 and alternative_pending and "blink" in waiting and not strict
                and att.challenge_from is None and att.observations):
            return False
        return att.observations[-1].ts - att.observations[0].ts < wait - 1e-6  # (frame times accumulate rounding)

    def face_gone(self, att: Attempt, ts: float) -> bool:
        """No face for longer than ``face_lost_s`` since the attempt's last face (capture times)."""
        return ts - att.last_face_ts > self.rules.face_lost_s

    # ----------------------------------------------------------------------------------- deciding
    def step(self, att: Attempt, ctx: Context) -> Decision:
        """After a face frame was added to ``att``: PENDING, or the attempt's decision."""
        d = self.liveness_step(att)
        if d is not None:
            return d
        return self.match(att.observations, ctx, att.liveness_scores)

    def liveness_step(self, att: Attempt) -> Decision | None:
        """The liveness half of :meth:`step`: PENDING, a final refusal, or None when the attempt may go on
        to matching (live, or liveness off).  Also what ``facelock eval-liveness`` runs, attempt by attempt."""
        usable = sum(1 for o in att.observations if o.usable)
        if usable < self.frames_needed:
            poor = bool(att.observations) and not att.observations[-1].usable
            return Decision(Outcome.PENDING, "gathering", why=Why.POOR_FACE if poor else Why.GATHERING)
        if self.liveness is None:
            return None
        window = self.window(att)
        strict = bool(getattr(self.liveness.config, "challenge", False))
        if strict and att.challenge_from is None:
            # ``[liveness] challenge = true``: the blink must answer the LED, lit with the attempt's first
            # liveness step (the runtime shows the LIVENESS_CHALLENGE cue); later frames are "led_on"
            att.challenge_from = att.observations[-1].ts
        if att.challenge_from is not None:  # frames captured after the LED lit
            for o in window:
                if o.ts > att.challenge_from and o.liveness is not None and o.liveness.led_on is not True:
                    o.liveness = replace(o.liveness, led_on=True)
        live, reason, scores, attack, waiting, alternative = self.check_liveness(window)
        att.liveness_scores = scores
        if live:
            return None
        full = len(att.observations) >= self.rules.max_frames_per_attempt
        # (with challenge_on_inconclusive, a window without evidence either way is asked at once, as before)
        if full and not (self._challenges and not attack) and self._may_wait_for_blink(att, alternative, waiting,
                                                                                        strict):
            # frozen (or not yet judged) and no blink yet, nothing else failing: wait for the blink, in time
            att.waiting_for_blink = True
            if attack:
                att.liveness_failures += 1
                att.last_liveness_reason = reason
            return Decision(Outcome.PENDING, f"liveness:{reason}"[:200], liveness_scores=scores,
                            why=Why.LIVENESS_NEEDS_BLINK)
        if not attack and self._challenges and (att.challenge_from is not None
                                                or len(att.observations) >= self.rules.max_frames_per_attempt):
            passed, d = self._challenge_step(att, window, reason, scores)
            if passed:
                return None
            if d is not None:
                return d
        if attack:  # a check FAILED (evidence of an attack), not merely "no blink yet"
            att.liveness_failures += 1
            att.last_liveness_reason = reason
        wait = liveness_wait(waiting)
        if len(att.observations) < self.rules.max_frames_per_attempt:
            # a failing check that a blink can still outweigh (blink an alternative to static replay): ask
            # for the blink; otherwise a failing window is "hold still" (its next frames may pass)
            failing = Why.LIVENESS_NEEDS_BLINK if "blink" in waiting else Why.LIVENESS_FAILING
            return Decision(Outcome.PENDING, f"liveness:{reason}", liveness_scores=scores,
                            why=Why.LIVENESS_CHALLENGE if strict else failing if attack else wait)
        if not attack:
            return Decision(Outcome.INCONCLUSIVE, f"liveness_inconclusive:{reason}"[:200], liveness_scores=scores,
                            why=wait)
        return Decision(Outcome.SPOOF, f"liveness:{reason}"[:200], liveness_scores=scores)

    @property
    def _challenges(self) -> bool:
        return self.liveness is not None and bool(getattr(self.liveness.config, "challenge_on_inconclusive", False))

    def _challenge_step(self, att: Attempt, window: Sequence[Observation], reason: str,
                        scores: Mapping[str, float]) -> tuple[bool, Decision | None]:
        """Ask, don't refuse (``[liveness] challenge_on_inconclusive``): a full window that saw no evidence
        either way lights the LED (the runtime shows the LIVENESS_CHALLENGE cue) instead of refusing; a blink
        within ``challenge_window_s`` after it stands in for the evidence that did not come ((True, None): go
        on to matching).  No blink by then: inconclusive, as without the challenge.  Never reached when a check
        FAILED (a failure is not outweighed by a blink: a replayed video blinks too)."""
        if att.challenge_from is None:  # the window is full: ask
            att.challenge_from = att.observations[-1].ts
            return False, Decision(Outcome.PENDING, f"liveness_challenge:{reason}"[:200], liveness_scores=scores,
                                   why=Why.LIVENESS_CHALLENGE)
        frames = [o.liveness for o in window if o.liveness is not None]
        ch = self.liveness.challenge(frames)
        if ch.verdict is Verdict.PASS:
            att.liveness_scores = {**scores, **{f"challenge.{k}": float(v) for k, v in ch.scores.items()}}
            return True, None
        window_s = float(self.liveness.config.challenge_window_s)
        if att.observations[-1].ts < att.challenge_from + window_s:
            return False, Decision(Outcome.PENDING, f"liveness_challenge:{reason}"[:200], liveness_scores=scores,
                                   why=Why.LIVENESS_CHALLENGE)
        return False, Decision(Outcome.INCONCLUSIVE, f"liveness_inconclusive:challenge: {ch.reason}; {reason}"[:200],
                               liveness_scores=scores, why=Why.LIVENESS_NEEDS_BLINK)

    def ended(self, att: Attempt, why: str = "face_lost") -> Decision:
        """The attempt ended before a decision (``why``: the face left, or the verify timeout): abandoned,
        or a spoof when a liveness check had already FAILED on it."""
        if att.liveness_failures:
            return Decision(Outcome.SPOOF, f"liveness:{att.last_liveness_reason[:170]}:{why}")  # (the why kept)
        return Decision(Outcome.ABANDONED, why)

    def face_lost(self, att: Attempt) -> Decision:
        """The face left before a decision (:meth:`ended`)."""
        return self.ended(att, "face_lost")

    def match(self, observations: Sequence[Observation], ctx: Context,
              liveness_scores: Mapping[str, float] | None = None) -> Decision:
        embs = [o.embedding for o in observations if o.usable and o.embedding is not None]
        if not embs:
            return Decision(Outcome.NO_MATCH, "no_usable_face")
        r = self.enrolled.gallery.match(np.mean(np.stack(embs), axis=0), self.threshold, self.margin)
        ls = dict(liveness_scores or {})
        if not r.accepted or r.user_id is None:
            return Decision(Outcome.NO_MATCH, str(r.reason), None, float(r.score), ls)
        d = pol.authorize(ctx.policy, r.user_id, ctx.when, ctx.lockout, ctx.now, ctx.lockdown,
                          self.enrolled.schedules)
        if not d.allowed:
            return Decision(Outcome.REFUSED, d.reason, r.user_id, float(r.score), ls)
        return Decision(Outcome.GRANTED, f"score={r.score:.3f}", r.user_id, float(r.score), ls)

    def check_liveness(self, observations: Sequence[Observation]
                       ) -> tuple[bool, str, dict[str, float], bool, tuple[str, ...], bool]:
        """(live, reason, scores, attack, waiting, alternative_pending) of the liveness policy over these
        frames; ``attack``: some check the policy counts FAILED (evidence of a presentation attack), as opposed
        to checks that saw no evidence yet; ``waiting``: the checks that decide and saw no evidence yet (what
        the person is asked to give); ``alternative_pending``: only an ``any_of`` alternative is missing
        (``LivenessDecision.alternative_pending``)."""
        for o in observations:  # score each frame once (PAD models, eye openness), not on every re-check
            f = o.liveness
            if f is not None and (f.face is not None or f.fas_crops is not None):
                o.liveness = self.liveness.scored(f)
        frames = [o.liveness for o in observations if o.liveness is not None]
        min_frames = int(getattr(self.liveness.config, "min_frames", 3))
        if len(frames) < min_frames:
            return False, f"too_few_frames:{len(frames)}", {}, False, (), False
        d = self.liveness.decide(frames)
        scores = {k: float(v) for k, v in dict(d.scores).items() if isinstance(v, (int, float))}
        return (bool(d.live), "live" if d.live else str(d.reason or "spoof_suspected"), scores,
                bool(d.attack_evidence), tuple(d.waiting_for), bool(getattr(d, "alternative_pending", False)))

    def decide_frames(self, frames: Sequence[Frame], ctx: Context) -> Decision:
        """One whole attempt over frames captured by someone else (the same rules as the door's loop)."""
        att: Attempt | None = None
        for frame in frames:
            obs = self.observe(frame)
            if not obs.face:
                if att is not None and self.face_gone(att, frame.ts):
                    return self.face_lost(att)
                continue
            if att is None:
                att = Attempt(ctx.now, frame.ts, frame.index)
            att.observations.append(obs)
            att.last_face_ts = frame.ts
            d = self.step(att, ctx)
            if d.final:
                return d
        if att is None:
            return Decision(Outcome.ABANDONED, "no_face")
        return self.face_lost(att) if att.liveness_failures else Decision(Outcome.ABANDONED, "too_few_frames")

    # ------------------------------------------------------------------------------------- users
    def user_ref(self, user_id: str | None) -> str | None:
        """What the audit log says about a user: their pseudonym (firmware.pseudonym), never name or id."""
        if user_id is None:
            return None
        return self.enrolled.pseudonyms.get(user_id, "unknown")

    def forget(self, user_id: str) -> bool:
        """Drop a user from the live gallery at once (a revoke); False when they were not in it."""
        if user_id not in self.enrolled.gallery.user_ids:
            return False
        self.enrolled.gallery.remove(user_id)
        return True
