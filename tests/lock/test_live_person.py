"""With the real, calibrated liveness in the loop: a live enrolled person (head turning in 3-D, blinking)
unlocks on the first attempt, a live stranger is denied as not recognised, a held-up photo is a spoof."""

from __future__ import annotations

import pytest

from firmware.lock.statemachine import State
from provisioning import demofaces as df
from tests.support.decider import make_decider


def live(pipeline, who: str, n: int = 30, seed: int = 1):
    base = df.near(who)
    return df.live_person(base, pipeline.process(base).primary.mesh.points, n, seed=seed)


@pytest.mark.parametrize(("who", "rows"), [("astronaut", ["face_seen", "granted"]),
                                           ("grace_hopper", ["face_seen", "denied"])])
def test_live_person_is_judged_by_face_not_by_liveness(make_harness, pipeline, gallery, threshold, liveness,
                                                       who, rows):
    frames = live(pipeline, who)
    h = make_harness(frames, lambda: make_decider(pipeline, gallery, threshold, liveness))
    assert h.run_until(lambda: len([r for r in h.rows() if r != "boot"]) >= 2, timeout=20)
    assert h.rows()[:2] == rows, h.rows()
    assert h.relay_pin_high() == (who == "astronaut")
    assert h.ctl.counters.spoof == 0


def test_the_same_face_held_still_is_a_spoof(make_harness, pipeline, gallery, threshold, liveness):
    frames = df.held_photo(df.near("astronaut"), 20, seed=4)
    h = make_harness(frames, lambda: make_decider(pipeline, gallery, threshold, liveness))
    assert h.run_until(lambda: h.ctl.counters.spoof > 0 or h.relay_pin_high(), timeout=20)
    assert h.ctl.counters.spoof == 1 and not h.relay_pin_high() and h.ctl.snap.state is State.DENIED
