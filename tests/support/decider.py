"""The product's attempt decider over a test gallery, for tests that run the lock loop in-process."""

from __future__ import annotations

from firmware.lock.decider import AttemptDecider, Enrolled


def make_decider(pipeline, gallery, threshold, liveness=None, pseudonyms=None) -> AttemptDecider:
    """The shipped pipeline's calibrated margin; the gallery and (optional) liveness policy given."""
    return AttemptDecider(pipeline, liveness, Enrolled(gallery, dict(pseudonyms or {})), threshold, pipeline.margin())
