"""A door's decisions under its bundle: who is this face, and may they open now.  Pure (no I/O).

Identification is cosine similarity against the bundle's templates (the same measure as the lock's
matcher; the threshold comes from the bundle's `match_threshold` setting, default the lock's own),
and authorization is firmware.lock.policy's: lockdown first, then the person's schedule windows.  A person
absent from the bundle (never granted, or revoked) is simply unknown here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from firmware.fleet.bundle import Bundle
from firmware.lock.policy import schedule_allows

DEFAULT_MATCH_THRESHOLD = 0.5


@dataclass(frozen=True)
class DoorDecision:
    granted: bool
    reason: str  # "ok", "unknown", "schedule", "lockdown"
    person: str | None
    score: float


def identify(gallery: dict[str, list[np.ndarray]], probe: np.ndarray, threshold: float
             ) -> tuple[str | None, float]:
    p = np.asarray(probe, np.float32).ravel()
    p = p / (np.linalg.norm(p) or 1.0)
    best, best_s = None, -1.0
    for pid, vecs in gallery.items():
        for v in vecs:
            if v.shape != p.shape:
                continue
            s = float(np.dot(v / (np.linalg.norm(v) or 1.0), p))
            if s > best_s:
                best, best_s = pid, s
    return (best, best_s) if best_s >= threshold else (None, best_s)


def decide(bundle: Bundle | None, gallery: dict[str, list[np.ndarray]], probe: np.ndarray,
           when: dt.datetime) -> DoorDecision:
    if bundle is None:
        return DoorDecision(False, "no_policy", None, 0.0)
    threshold = float(bundle.settings.get("match_threshold", DEFAULT_MATCH_THRESHOLD))
    person, score = identify(gallery, probe, threshold)
    if bundle.lockdown != "off":
        return DoorDecision(False, "lockdown", person, score)
    if person is None:
        return DoorDecision(False, "unknown", None, score)
    entry = bundle.person(person)
    if entry is not None and not schedule_allows(when, entry.schedule):
        return DoorDecision(False, "schedule", person, score)
    return DoorDecision(True, "ok", person, score)
