"""Gallery matcher: averaged enrollment templates, 1:N decisions with a threshold and a margin."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.vision import Gallery, GalleryError, template_from


def unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def test_template_is_the_renormalised_mean():
    a, b = unit([1, 0, 0]), unit([0, 1, 0])
    t = template_from([a, b])
    assert np.allclose(t, unit([1, 1, 0]))
    assert np.allclose(template_from(a), a)


def test_match_accept_reject_ambiguous_and_empty():
    g = Gallery(3)
    assert g.match(unit([1, 0, 0]), 0.5).reason == "empty_gallery"
    g.enroll("alice", [unit([1, 0.1, 0]), unit([1, -0.1, 0])])
    g.enroll("bob", [unit([0, 1, 0])])
    r = g.match(unit([1, 0.05, 0]), threshold=0.8, margin=0.1)
    assert r.accepted and r.user_id == "alice" and r.reason == "match" and r.margin > 0.1
    r = g.match(unit([0, 0, 1]), threshold=0.8)
    assert not r.accepted and r.user_id is None and r.reason == "below_threshold"
    r = g.match(unit([1, 1, 0]), threshold=0.5, margin=0.05)  # halfway between alice and bob
    assert not r.accepted and r.reason == "ambiguous" and r.user_id is None
    g.remove("bob")
    assert g.match(unit([1, 1, 0]), threshold=0.5).accepted  # one user: no margin to keep


def test_reenroll_replaces_and_errors():
    g = Gallery(3)
    g.enroll("alice", [unit([1, 0, 0])])
    g.enroll("alice", [unit([0, 1, 0])])
    assert len(g) == 1 and np.allclose(g.template("alice"), [0, 1, 0])
    with pytest.raises(GalleryError):
        g.enroll("carol", [])
    with pytest.raises(GalleryError):
        g.enroll("carol", [[0, 0, 0]])
    with pytest.raises(GalleryError):
        g.enroll("carol", [unit([1, 0, 0]), unit([-1, 0, 0])])  # cancels out
    with pytest.raises(GalleryError):
        g.enroll("carol", [np.ones(4)])
    with pytest.raises(GalleryError):
        g.enroll("", [unit([1, 0, 0])])
    with pytest.raises(GalleryError):
        g.match(np.ones(4), 0.5)
    with pytest.raises(GalleryError):
        g.match(np.array([np.nan, 0, 0]), 0.5)
    with pytest.raises(GalleryError):
        g.remove("nobody")


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(0, 2**31 - 1), st.floats(-0.5, 0.95), st.floats(0, 0.3))
def test_decision_invariants(n_users, seed, thr, margin):
    rng = np.random.default_rng(seed)
    g = Gallery(16)
    for i in range(n_users):
        g.enroll(f"u{i}", rng.normal(size=(3, 16)))
    probe = rng.normal(size=16)
    r = g.match(probe, thr, margin)
    scores = g.scores(probe)
    best = max(scores, key=scores.get)
    assert r.best_id == best and r.score == pytest.approx(scores[best])
    if r.accepted:
        assert r.user_id == best and r.score >= thr and (n_users == 1 or r.margin >= margin)
    else:
        assert r.user_id is None and (r.score < thr or r.margin < margin)


def test_averaging_several_frames_helps(pipeline, astronaut, cameraman):
    from tests.support.imagegeom import in_frame, rotate

    frames = [in_frame(astronaut, scale=s, dx=dx) for s, dx in ((1.0, 0), (0.8, 60), (0.9, -50))]
    frames.append(rotate(in_frame(astronaut), 10))
    embs = [pipeline.process(f).embedding for f in frames]
    g = Gallery()
    g.enroll("eileen", embs[:3])
    g.enroll("cameraman", [pipeline.process(cameraman).embedding])
    probe = embs[3]
    r = g.match(probe, pipeline.threshold("unlock"), 0.05)
    assert r.accepted and r.user_id == "eileen"
    assert r.score >= min(float(e @ probe) for e in embs[:3]) - 1e-6
