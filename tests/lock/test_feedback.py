"""The person at the door is told what to do: every reason the decider gives maps to an LED/buzzer cue,
and the lock loop plays it on the (gpiozero mock) pins.

- The tables are total: every :class:`Why` has a cue, every cue a signal, every signal a pin pattern;
  every refusal has a buzzer pattern and an LED pattern of its own (not the idle blip), so no refusal
  is silent.  :func:`why_of` is total over outcomes, so a Decision built anywhere has a reason.
- Through the runtime (real face pipeline and models, replay camera, MockFactory pins): an attempt
  whose liveness is inconclusive for want of frames blinks the green LED in the "hold still" rhythm,
  one for want of a blink in the "blink" rhythm, a stranger's refusal lights red ("try again") with
  its two beeps on the buzzer pin; the pin timings are read from the pins' recorded edges.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from firmware.config import Config, LockConfig
from firmware.hw.gpio import BUZZER_PATTERNS, LED_PATTERNS
from firmware.lock import feedback as fb
from firmware.lock.decider import Decision, Outcome, Why, liveness_wait, why_of
from firmware.lock.policy import LockoutConfig, PolicyConfig
from firmware.lock.statemachine import LED_PATTERN, State
from provisioning import demofaces as df
from tests.support.decider import make_decider

REFUSALS = (Outcome.NO_MATCH, Outcome.SPOOF, Outcome.REFUSED, Outcome.INCONCLUSIVE)


# ------------------------------------------------------------------------------------------- tables
def test_every_reason_the_decider_can_give_has_a_cue_and_every_cue_a_pin_pattern():
    assert set(fb.CUE_FOR) == set(Why), set(Why) - set(fb.CUE_FOR)
    assert set(fb.SIGNALS) == set(fb.Cue), set(fb.Cue) - set(fb.SIGNALS)
    for cue, sig in fb.SIGNALS.items():
        assert sig.led in LED_PATTERNS, (cue, sig.led)
        assert sig.buzzer is None or sig.buzzer in BUZZER_PATTERNS, (cue, sig.buzzer)


def test_cues_are_told_apart_on_the_pins():
    """Each cue's LED pattern is its own: not another cue's, and not a state's (except that "try again"
    takes the place of the plain "denied" red)."""
    leds = {c: LED_PATTERNS[s.led] for c, s in fb.SIGNALS.items()}
    assert len({repr(v) for v in leds.values()}) == len(leds), leds
    states = {LED_PATTERNS[p] for p in LED_PATTERN.values() if p not in ("denied", "lockout", "verifying", "granted")}
    own = {c: v for c, v in leds.items() if c not in (fb.Cue.LOCKED_OUT, fb.Cue.VERIFYING, fb.Cue.GRANTED)}
    assert not [c for c, v in own.items() if v in states], own
    # (the LED challenge asks for the same thing as "blink": it sounds the same)
    buzz = [fb.SIGNALS[c].buzzer for c in fb.Cue if fb.SIGNALS[c].buzzer and c is not fb.Cue.BLINK_NOW]
    assert fb.SIGNALS[fb.Cue.BLINK_NOW].buzzer == fb.SIGNALS[fb.Cue.BLINK].buzzer
    assert len(set(buzz)) == len(buzz), buzz


@pytest.mark.parametrize("outcome", list(Outcome))
@pytest.mark.parametrize("reason", ["", "score=0.9", "below_threshold", "ambiguous", "empty_gallery", "schedule",
                                    "lockdown", "lockout", "revoked", "fault", "tamper", "timeout", "cancelled",
                                    "face_lost", "verify_timeout", "no_face", "too_few_frames", "gathering",
                                    "no_usable_face", "liveness:static_replay required: x",
                                    "liveness_inconclusive:fasnet required: x", "something new"])
def test_no_decision_is_without_a_reason_the_door_can_show(outcome, reason):
    d = Decision(outcome, reason)
    assert d.why is not None and d.why is why_of(outcome, reason)
    cue = fb.cue_for(d)
    if outcome in REFUSALS:  # a refusal is never silent: its own LED pattern and a buzzer pattern
        sig = fb.SIGNALS[cue]
        assert sig.buzzer is not None and sig.led not in ("ready", "off", "verifying", "granted"), (d, cue)
        assert cue is not fb.Cue.GRANTED
    if outcome is Outcome.GRANTED:
        assert cue is fb.Cue.GRANTED


def test_the_policy_names_the_checks_still_waiting_and_the_door_asks_for_them():
    assert liveness_wait(("static_replay", "blink")) is Why.LIVENESS_NEEDS_BLINK
    assert liveness_wait(("motion",)) is Why.LIVENESS_NEEDS_MOTION
    assert liveness_wait(("fasnet", "static_replay")) is Why.LIVENESS_NEEDS_TIME
    assert liveness_wait(()) is Why.LIVENESS_NEEDS_TIME
    assert fb.CUE_FOR[Why.LIVENESS_NEEDS_BLINK] is fb.Cue.BLINK
    assert fb.CUE_FOR[Why.LIVENESS_NEEDS_TIME] is fb.Cue.HOLD_STILL
    # shown while an attempt runs and with its refusal; a lockout shows the lockout, whatever tripped it
    assert fb.led_pattern(State.DENIED, fb.Cue.BLINK) == "blink"
    assert fb.led_pattern(State.VERIFYING, fb.Cue.HOLD_STILL) == "hold_still"
    assert fb.led_pattern(State.LOCKOUT, fb.Cue.TRY_AGAIN) == "lockout"
    assert fb.led_pattern(State.IDLE, fb.Cue.TRY_AGAIN) == "ready"
    assert fb.buzzer_pattern(State.DENIED, fb.Cue.TRY_AGAIN, "denied") == "try_again"
    assert fb.buzzer_pattern(State.LOCKOUT, fb.Cue.TRY_AGAIN, "denied") == "lockout"
    assert fb.buzzer_pattern(State.UNLOCKED, fb.Cue.GRANTED, "granted") == "granted"
    assert fb.buzzer_pattern(State.DENIED, fb.Cue.TRY_AGAIN, None) is None


# ---------------------------------------------------------------------------------------- on the pins
def _durations(pin, level: bool) -> list[float]:
    """How long the pin stayed at ``level`` each time, from gpiozero MockPin's recorded edges (the first
    and the still-running interval are cut off: they may be partial)."""
    st = pin.states  # PinState(timestamp = seconds since the previous change, state)
    return [st[i + 1].timestamp for i in range(1, len(st) - 1) if bool(st[i].state) is level]


def _assert_blinks(pin, on_s: float, off_s: float, tol: float = 0.08) -> None:
    on, off = _durations(pin, True), _durations(pin, False)
    assert on and off, pin.states
    assert abs(float(np.median(on)) - on_s) < tol and abs(float(np.median(off)) - off_s) < tol, (on, off)


def _watch(h, seconds: float):
    """Clear the LED pins' history, let the LEDs run (the lock loop is not ticked: the state holds)."""
    pins = {n: h.io.factory.pin(getattr(h.ctl.cfg.gpio, f"{n}_pin")) for n in ("green_led", "red_led", "buzzer")}
    pins["green_led"].clear_states()
    pins["red_led"].clear_states()
    time.sleep(seconds)
    return pins


LONG_DENIED = LockConfig(unlock_s=0.5, verify_timeout_s=5.0, denied_s=10.0, max_frames_per_attempt=4,
                         fault_retry_initial_s=0.05, fault_retry_max_s=0.2)


def test_too_few_frames_for_the_learned_model_shows_hold_still(make_harness, pipeline, gallery, threshold):
    """A window (4 frames) shorter than the learned PAD model needs (5): inconclusive, not a spoof; the
    green LED blinks 1.0 s on / 0.2 s off ("hold still") and the buzzer ticked."""
    from firmware.vision.liveness import LivenessConfig, LivenessPolicy

    pol = LivenessPolicy.from_files(LivenessConfig(required=("same_face", "fasnet"), any_of=()))
    frames = df.held_photo(df.near("astronaut"), 20, seed=6)
    h = make_harness(frames, lambda: make_decider(pipeline, gallery, threshold, pol), lock=LONG_DENIED)
    assert h.run_until(lambda: h.ctl.snap.state is State.DENIED or h.relay_pin_high(), timeout=20), h.rows()
    assert h.rows()[-1] == "denied" and h.ctl.counters.spoof == 0 and not h.ctl.lockout.failures
    assert h.ctl.cue is fb.Cue.HOLD_STILL and h.io.led_pattern == "hold_still"
    assert h.io.buzzer_pattern == "hold_still"
    pins = _watch(h, 3.0)
    _assert_blinks(pins["green_led"], *LED_PATTERNS["hold_still"][0])
    assert len(pins["red_led"].states) == 1 and not pins["red_led"].state  # red stays off


def test_no_blink_yet_shows_blink(make_harness, pipeline, gallery, threshold):
    """The blink check required and no blink in the window: inconclusive; the green LED winks 0.2 s every
    second ("blink") and the buzzer chirped twice."""
    from firmware.vision.liveness import LivenessConfig, LivenessPolicy

    pol = LivenessPolicy.from_files(LivenessConfig(required=("same_face", "blink"), any_of=()))
    frames = df.held_photo(df.near("astronaut"), 20, seed=7)
    h = make_harness(frames, lambda: make_decider(pipeline, gallery, threshold, pol), lock=LONG_DENIED)
    assert h.run_until(lambda: h.ctl.snap.state is State.DENIED or h.relay_pin_high(), timeout=20), h.rows()
    assert h.rows()[-1] == "denied" and h.ctl.counters.spoof == 0 and not h.ctl.lockout.failures
    assert h.ctl.cue is fb.Cue.BLINK and h.io.led_pattern == "blink"
    pins = _watch(h, 2.5)
    _assert_blinks(pins["green_led"], *LED_PATTERNS["blink"][0])
    assert not pins["red_led"].state
    assert h.io.buzzer_pattern == "blink"
    on = _durations(pins["buzzer"], True)  # (the refusal's chirps may run into the pending cue's: the last)
    assert on and abs(on[-1] - BUZZER_PATTERNS["blink"][0]) < 0.04, pins["buzzer"].states


def test_a_stranger_is_told_to_try_again(make_harness, pipeline, gallery, threshold):
    """No liveness, a stranger: not recognised; red steady ("try again") and two 0.3 s beeps on the pin."""
    frames = df.held_photo(df.near("grace_hopper"), 20, seed=8)
    h = make_harness(frames, lambda: make_decider(pipeline, gallery, threshold), lock=LONG_DENIED)
    assert h.run_until(lambda: h.ctl.snap.state is State.DENIED or h.relay_pin_high(), timeout=20), h.rows()
    assert h.ctl.cue is fb.Cue.TRY_AGAIN and h.io.led_pattern == "try_again"
    pins = _watch(h, 1.0)
    assert pins["red_led"].state and not pins["green_led"].state
    assert len(pins["red_led"].states) == 1  # steady, no blinking
    on = _durations(pins["buzzer"], True)
    assert len(on) >= 2 and all(abs(d - BUZZER_PATTERNS["try_again"][0]) < 0.05 for d in on[-2:]), on
    status = (h.data_dir / "status.json").read_text()
    assert '"cue": "try_again"' in status and '"led": "try_again"' in status


def test_the_failure_that_locks_out_shows_the_lockout(make_harness, pipeline, gallery, threshold):
    """A stranger with max_failures = 1: the refusal trips the lockout, which shows (and sounds) as such."""
    cfg = Config(policy=PolicyConfig(lockout=LockoutConfig(max_failures=1, base_lockout_s=30.0)))
    frames = df.held_photo(df.near("grace_hopper"), 20, seed=9)
    h = make_harness(frames, lambda: make_decider(pipeline, gallery, threshold), lock=LONG_DENIED, cfg=cfg)
    assert h.run_until(lambda: h.ctl.snap.state is State.LOCKOUT or h.relay_pin_high(), timeout=20), h.rows()
    assert h.io.led_pattern == "lockout" and h.io.buzzer_pattern == "lockout"
    pins = _watch(h, 2.5)
    _assert_blinks(pins["red_led"], *LED_PATTERNS["lockout"][1], tol=0.1)


def test_a_face_too_far_away_is_asked_to_look_at_the_camera(make_harness, pipeline, gallery, threshold):
    """A face the detector finds but the quality gates refuse (too small: too far from the camera): the
    attempt runs, and while it does the red LED blips 0.1 s each second ("look at the camera")."""
    frames = df.held_photo(df.place(df.astronaut(), 0.5), 20, seed=10)
    h = make_harness(frames, lambda: make_decider(pipeline, gallery, threshold), lock=LONG_DENIED)
    assert h.run_until(lambda: h.ctl.cue is fb.Cue.LOOK_AT_CAMERA, timeout=20), (h.rows(), h.ctl.cue)
    assert h.ctl.snap.state is State.VERIFYING and h.io.led_pattern == "look_at_camera"
    pins = _watch(h, 2.5)
    _assert_blinks(pins["red_led"], *LED_PATTERNS["look_at_camera"][1])
    assert not pins["green_led"].state and len(pins["green_led"].states) == 1


def test_the_led_challenge_asks_before_it_refuses(make_harness, pipeline, gallery, threshold):
    """``challenge_on_inconclusive``: the window (4 frames) too short for the learned model is not refused at
    once: both LEDs light ("blink now") for ``challenge_window_s``; a photo does not blink, so it is then
    refused as inconclusive ("blink"), not as a spoof."""
    from firmware.vision.liveness import LivenessConfig, LivenessPolicy

    pol = LivenessPolicy.from_files(LivenessConfig(required=("same_face", "fasnet"), any_of=(),
                                                   challenge_on_inconclusive=True, challenge_window_s=1.0))
    frames = df.held_photo(df.near("astronaut"), 20, seed=11)
    h = make_harness(frames, lambda: make_decider(pipeline, gallery, threshold, pol), lock=LONG_DENIED)
    assert h.run_until(lambda: h.ctl.cue is fb.Cue.BLINK_NOW or h.ctl.snap.state is State.DENIED, timeout=20), \
        (h.rows(), h.ctl.cue)
    assert h.ctl.snap.state is State.VERIFYING and h.io.led_pattern == "blink_now"
    g, r = (h.io.factory.pin(getattr(h.ctl.cfg.gpio, f"{n}_pin")) for n in ("green_led", "red_led"))
    assert g.state and r.state  # both lit: the challenge
    assert h.run_until(lambda: h.ctl.snap.state is State.DENIED, timeout=20), h.rows()
    assert h.ctl.cue is fb.Cue.BLINK and h.ctl.counters.spoof == 0 and not h.ctl.lockout.failures


def test_challenge_true_lights_the_leds_for_the_whole_attempt(make_harness, pipeline, gallery, threshold):
    """``challenge = true``: the LEDs light ("blink now") as soon as liveness starts judging; a photo does
    not answer, so the attempt ends as a spoof ("try again")."""
    from firmware.vision.liveness import LivenessConfig, LivenessPolicy

    pol = LivenessPolicy.from_files(LivenessConfig(required=("same_face",), any_of=(), challenge=True,
                                                   challenge_window_s=1.0))
    frames = df.held_photo(df.near("astronaut"), 20, seed=12)
    lock = LockConfig(unlock_s=0.5, verify_timeout_s=8.0, denied_s=10.0, max_frames_per_attempt=8,
                      fault_retry_initial_s=0.05, fault_retry_max_s=0.2)
    h = make_harness(frames, lambda: make_decider(pipeline, gallery, threshold, pol), lock=lock)
    assert h.run_until(lambda: h.ctl.cue is fb.Cue.BLINK_NOW or h.ctl.snap.state is State.DENIED, timeout=20), \
        (h.rows(), h.ctl.cue)
    assert h.ctl.snap.state is State.VERIFYING and h.io.led_pattern == "blink_now"
    assert h.run_until(lambda: h.ctl.snap.state is State.DENIED, timeout=30), h.rows()
    assert h.ctl.counters.spoof == 1 and h.ctl.cue is fb.Cue.TRY_AGAIN
