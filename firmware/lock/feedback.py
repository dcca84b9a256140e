"""What the person at the door is told: every reason the decider gives -> one LED/buzzer cue.

Why: a lock that refuses without saying why is switched off by its owner.  A live person refused as
"inconclusive" can pass on the next try if told what was missing (hold still a moment longer, blink);
someone turned away from the camera should be told to look at it; a stranger hears "try again"; a
locked-out person sees that trying is pointless for now.

Pure: no GPIO.  :data:`CUE_FOR` is the one table from :class:`firmware.lock.decider.Why` (the closed
set of reasons) to a :class:`Cue`; :data:`SIGNALS` says which LED and buzzer pattern each cue plays.  The
pin timings of those patterns live with the hardware (``firmware.hw.gpio.LED_PATTERNS`` and
``BUZZER_PATTERNS``), where the runtime plays them.  Tests check both tables are total, so no reason
the decider can emit is silent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from firmware.lock.decider import Decision, Why
from firmware.lock.statemachine import LED_PATTERN, State


class Cue(str, enum.Enum):
    """What the door asks of the person in front of it."""

    VERIFYING = "verifying"  # a usable face is in view, the decision is coming
    HOLD_STILL = "hold_still"  # stay in view, facing the camera, a moment longer
    BLINK = "blink"  # blink (the blink check has not seen one)
    BLINK_NOW = "blink_now"  # the LED challenge: both LEDs lit, blink now
    TURN_HEAD = "turn_head"  # turn the head a little (the motion check saw too little movement)
    LOOK_AT_CAMERA = "look_at_camera"  # face not found / not usable: face the camera, come closer
    TRY_AGAIN = "try_again"  # refused (not recognised, or a failed liveness check)
    NOT_NOW = "not_now"  # recognised but not allowed now (schedule, lockdown, revoked, lock unavailable)
    LOCKED_OUT = "locked_out"  # too many failed attempts: face unlock is off for a while
    GRANTED = "granted"


#: reason -> cue: the one table (every Why has a row; tests/lock/test_feedback.py checks it)
CUE_FOR: dict[Why, Cue] = {
    Why.GATHERING: Cue.VERIFYING,
    Why.POOR_FACE: Cue.LOOK_AT_CAMERA,
    Why.LIVENESS_NEEDS_TIME: Cue.HOLD_STILL,
    Why.LIVENESS_NEEDS_BLINK: Cue.BLINK,
    Why.LIVENESS_NEEDS_MOTION: Cue.TURN_HEAD,
    Why.LIVENESS_FAILING: Cue.HOLD_STILL,  # still filling the window: a live person's next frames may pass
    Why.LIVENESS_CHALLENGE: Cue.BLINK_NOW,
    Why.SPOOF: Cue.TRY_AGAIN,
    Why.NOT_RECOGNISED: Cue.TRY_AGAIN,
    Why.NO_USABLE_FACE: Cue.LOOK_AT_CAMERA,
    Why.SCHEDULE: Cue.NOT_NOW,
    Why.LOCKDOWN: Cue.NOT_NOW,
    Why.LOCKOUT: Cue.LOCKED_OUT,
    Why.REVOKED: Cue.NOT_NOW,
    Why.UNAVAILABLE: Cue.NOT_NOW,
    Why.FACE_LOST: Cue.LOOK_AT_CAMERA,
    Why.TIMED_OUT: Cue.LOOK_AT_CAMERA,
    Why.GRANTED: Cue.GRANTED,
}


@dataclass(frozen=True)
class Signal:
    """How a cue is shown: an LED pattern (``firmware.hw.gpio.LED_PATTERNS`` name) while it holds, and a
    buzzer pattern (``BUZZER_PATTERNS`` name) played once when it is first shown (None: silent)."""

    led: str
    buzzer: str | None


#: cue -> its LED and buzzer patterns (README "What the person at the door is told")
SIGNALS: dict[Cue, Signal] = {
    Cue.VERIFYING: Signal("verifying", None),
    Cue.HOLD_STILL: Signal("hold_still", "hold_still"),
    Cue.BLINK: Signal("blink", "blink"),
    Cue.BLINK_NOW: Signal("blink_now", "blink"),
    Cue.TURN_HEAD: Signal("turn_head", "turn_head"),
    Cue.LOOK_AT_CAMERA: Signal("look_at_camera", "look_at_camera"),
    Cue.TRY_AGAIN: Signal("try_again", "try_again"),
    Cue.NOT_NOW: Signal("not_now", "not_now"),
    Cue.LOCKED_OUT: Signal("lockout", "lockout"),
    Cue.GRANTED: Signal("granted", "granted"),
}

#: states in which the cue of the latest decision is shown instead of the state's own pattern
CUE_STATES = (State.VERIFYING, State.DENIED)


def cue_for(decision: Decision) -> Cue:
    """The cue for a decision (pending or final)."""
    assert decision.why is not None  # Decision.__post_init__ always sets it
    return CUE_FOR[decision.why]


def led_pattern(state: State, cue: Cue | None) -> str:
    """The LED pattern to show: the cue's while an attempt is running or its refusal shows, LOCKOUT's
    own in a lockout (whatever tripped it), else the state's (:data:`firmware.lock.statemachine.LED_PATTERN`)."""
    if cue is not None and state in CUE_STATES:
        return SIGNALS[cue].led
    return LED_PATTERN[state]


def buzzer_pattern(state: State, cue: Cue | None, row_buzzer: str | None) -> str | None:
    """The buzzer pattern for a transition: a refusal (the state machine's row asks for one) plays the
    cue's pattern instead of the generic one, a lockout plays the lockout's; other rows are unchanged."""
    if row_buzzer is None:
        return None
    if state is State.LOCKOUT:
        return SIGNALS[Cue.LOCKED_OUT].buzzer
    if state is State.DENIED and cue is not None:
        return SIGNALS[cue].buzzer
    return row_buzzer
