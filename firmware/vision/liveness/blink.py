"""Blink detection over an attempt from two eye-openness signals per frame.

1. the eye aspect ratio (EAR, Soukupová & Čech 2016) of the face mesh's eye contours;
2. the eye's appearance (``eyes.eye_openness``: dark iris/lashes inside the contour vs lid skin), because
   the mesh model's contours follow a closing lid only weakly.
A blink is a dip of either signal well below the attempt's own open level, with open eyes on both sides.
Using the attempt's own baseline (not an absolute value) makes it work for narrow and wide eyes; each
minimum dip is calibrated to exceed the jitter the signal shows on static replayed images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from firmware.vision.landmarks import LEFT_EYE_EAR, RIGHT_EYE_EAR
from firmware.vision.liveness.eyes import eye_openness
from firmware.vision.liveness.frame import LivenessFrame
from firmware.vision.liveness.geometry import inter_ocular
from firmware.vision.liveness.result import CheckResult, Verdict

_EYES = (list(RIGHT_EYE_EAR), list(LEFT_EYE_EAR))


def eye_aspect_ratio(landmarks: np.ndarray) -> float:
    """Mean EAR of both eyes from a (468, 2|3) mesh: (|p2-p6| + |p3-p5|) / (2 |p1-p4|)."""
    ears = []
    for idx in _EYES:
        p = landmarks[idx, :2]
        h = np.linalg.norm(p[0] - p[3])
        v = np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])
        ears.append(v / (2 * h) if h > 0 else 0.0)
    return float(np.mean(ears))


@dataclass(frozen=True)
class BlinkThresholds:
    """A frame is "closed" when EAR <= (1 - min_drop) * open level, "open" when >= (1 - reopen_tol) * open."""

    min_drop: float  # for the EAR: relative to the open level
    min_drop_appearance: float = 1.0  # for eye_openness, relative too (1.0 = signal unused)
    reopen_tol: float = 0.15
    open_quantile: float = 0.9
    min_iod_px: float = 0.0  # below this face size (inter-ocular px) the eyes are too small: UNKNOWN


def relative_drop(values: Sequence[float], open_quantile: float = 0.9) -> float:
    """1 - min / open level: the deepest dip of an openness signal relative to its open level."""
    e = np.asarray(values, dtype=np.float64)
    if len(e) == 0 or not np.isfinite(e).all():
        return 0.0
    open_level = float(np.quantile(e, open_quantile))
    return float(1 - e.min() / open_level) if open_level > 0 else 0.0


def absolute_drop(values: Sequence[float], open_quantile: float = 0.9) -> float:
    """Open level - min: the deepest dip of an openness signal in its own units."""
    e = np.asarray(values, dtype=np.float64)
    if len(e) == 0 or not np.isfinite(e).all():
        return 0.0
    return float(np.quantile(e, open_quantile) - e.min())


def find_blinks(values: Sequence[float], th: BlinkThresholds, min_drop: float | None = None,
                relative: bool = True) -> list[int]:
    """Indices of the deepest closed frame of each blink (closed run with an open frame before and after).

    ``values`` is one openness signal per frame (EAR by default; pass ``min_drop`` for another signal, and
    ``relative=False`` when the drop is in the signal's own units).
    """
    e = np.asarray(values, dtype=np.float64)
    drop = th.min_drop if min_drop is None else min_drop
    if len(e) < 3 or not np.isfinite(e).all() or drop >= 1.0:
        return []
    open_level = float(np.quantile(e, th.open_quantile))
    if relative:
        if open_level <= 0:
            return []
        closed = e <= (1 - drop) * open_level
        is_open = e >= (1 - min(th.reopen_tol, drop / 2)) * open_level
    else:
        closed = e <= open_level - drop
        is_open = e >= open_level - min(th.reopen_tol * abs(open_level), drop / 2)
    blinks = []
    i = 0
    while i < len(e):
        if closed[i]:
            j = i
            while j + 1 < len(e) and not is_open[j + 1]:
                j += 1
            before = is_open[:i].any()
            after = j + 1 < len(e) and is_open[j + 1]
            if before and after:
                seg = e[i:j + 1]
                blinks.append(i + int(np.argmin(seg)))
            i = j + 1
        else:
            i += 1
    return blinks


def check_blink(frames: Sequence[LivenessFrame], th: BlinkThresholds,
                challenge_window_s: float | None = None) -> CheckResult:
    """PASS on a blink; with a challenge window, the blink must close within it after the LED first lit.

    Without a challenge, no blink is UNKNOWN (people do not blink on demand); with one, FAIL.
    """
    if not frames:
        return CheckResult("blink", Verdict.UNKNOWN, {}, "no frames")
    iod = float(np.median([inter_ocular(f.landmarks) for f in frames]))
    if iod < th.min_iod_px:
        return CheckResult("blink", Verdict.FAIL if challenge_window_s is not None else Verdict.UNKNOWN,
                           {"iod_px": iod}, f"face too small to see a blink ({iod:.0f} < {th.min_iod_px:.0f} px "
                           "between the eyes; the blink thresholds were calibrated on larger faces)")
    ears = [eye_aspect_ratio(f.landmarks) for f in frames]
    blinks = set(find_blinks(ears, th))
    scores = {"ear_drop": relative_drop(ears, th.open_quantile)}
    if all(f.openness is not None or f.face is not None for f in frames):
        app = [f.openness if f.openness is not None else eye_openness(f.face, f.landmarks) for f in frames]
        scores["appearance_drop"] = relative_drop(app, th.open_quantile)
        blinks |= set(find_blinks(app, th, th.min_drop_appearance))
    blinks = sorted(blinks)
    scores["blinks"] = float(len(blinks))
    if challenge_window_s is not None:
        lit = [f.t for f in frames if f.led_on]
        if not lit:
            return CheckResult("blink", Verdict.FAIL, scores, "challenge active but no frame had the LED lit")
        t0 = min(lit)
        ok = [b for b in blinks if t0 <= frames[b].t <= t0 + challenge_window_s]
        scores["challenge_blinks"] = float(len(ok))
        if ok:
            return CheckResult("blink", Verdict.PASS, scores, "blinked in answer to the LED challenge")
        return CheckResult("blink", Verdict.FAIL, scores,
                           f"no blink within {challenge_window_s:.2f}s after the LED challenge")
    if blinks:
        return CheckResult("blink", Verdict.PASS, scores, f"{len(blinks)} blink(s)")
    return CheckResult("blink", Verdict.UNKNOWN, scores, "no blink seen")
