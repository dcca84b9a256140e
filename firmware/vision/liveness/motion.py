"""Planar-motion check: a printed photo or a screen moves as one plane, a head does not.

All 2-D landmarks of a flat picture, however it is tilted or moved, map from one frame to another by one
homography; a real head turning or nodding shows parallax (nose tip against cheeks and face outline), and
an expression change moves points independently, so a homography leaves a residual.  With too little
motion to tell, the verdict is UNKNOWN, never PASS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

from firmware.vision.liveness.frame import LivenessFrame
from firmware.vision.liveness.geometry import homography_residual, procrustes_residual, spread
from firmware.vision.liveness.replay import MAX_PAIR_FRAMES
from firmware.vision.liveness.result import CheckResult, Verdict


@dataclass(frozen=True)
class MotionThresholds:
    """``min_motion``: non-similarity shape change (IODs) needed to judge at all; ``min_nonplanar``:
    homography residual (IODs) above which the motion is 3-D."""

    min_motion: float
    min_nonplanar: float


def check_motion(frames: Sequence[LivenessFrame], th: MotionThresholds) -> CheckResult:
    if len(frames) < 2:
        return CheckResult("motion", Verdict.UNKNOWN, {}, "needs at least 2 frames")
    best_motion, best_nonplanar = 0.0, 0.0
    for a, b in combinations(spread(list(frames), MAX_PAIR_FRAMES), 2):
        m = procrustes_residual(b.landmarks, a.landmarks)
        r = homography_residual(a.landmarks, b.landmarks)
        best_motion = max(best_motion, m)
        best_nonplanar = max(best_nonplanar, r)
    scores = {"motion": best_motion, "nonplanar": best_nonplanar}
    if best_nonplanar >= th.min_nonplanar:
        return CheckResult("motion", Verdict.PASS, scores, "landmarks moved like a 3-D face")
    if best_motion < th.min_motion:
        return CheckResult("motion", Verdict.UNKNOWN, scores, "too little motion to judge planarity")
    return CheckResult("motion", Verdict.FAIL, scores,
                       f"landmarks moved as one plane (homography residual {best_nonplanar:.4f} < "
                       f"{th.min_nonplanar:.4f} IOD over motion {best_motion:.4f})")
