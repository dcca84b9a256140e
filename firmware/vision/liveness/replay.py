"""Static-replay check: a held-up photo or a frozen screen gives near-identical frames.

Over the attempt, a live face changes a little (micro-expressions, small pose changes, blinks): its
landmark *shape* (after removing translation, rotation and scale, which a hand-held photo also has) and
its embedding drift.  A replayed still changes only by sensor noise and global motion.  The attempt is
rejected when both stay within the thresholds, which are calibrated on replay bursts of real images and
on live sessions (``models/liveness/calibrate_liveness.py``), not guessed.

Both statistics are *medians over all frame pairs* (at least 3 frames): "the frames stay too similar"
must hold for most pairs, so one odd frame (a detection that jumped to another face, a motion-blurred
frame) neither hides a replay nor rejects a live face, and attempts of different lengths compare fairly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from firmware.vision.liveness.frame import LivenessFrame
from firmware.vision.liveness.geometry import procrustes_residual, spread
from firmware.vision.liveness.result import CheckResult, Verdict

#: frames compared pairwise at most (evenly spread over the attempt): bounds the cost of long attempts
MAX_PAIR_FRAMES = 12


@dataclass(frozen=True)
class StaticReplayThresholds:
    """Median pairwise shape change below ``max_shape_change`` (IODs) AND median pairwise embedding cosine
    above ``min_embedding_cosine`` = static."""

    max_shape_change: float
    min_embedding_cosine: float
    min_frames: int = 3
    same_face_min_cosine: float = -1.0
    #: the frames must span at least this long before "static" can be concluded: a live person standing
    #: still is as still as a photo over a third of a second (measured: 0.003 IOD), not over a second
    min_span_s: float = 0.0


def shape_change(frames: Sequence[LivenessFrame]) -> float:
    """Median over frame pairs of the similarity-invariant landmark change, in inter-ocular distances."""
    return float(np.median([procrustes_residual(a.landmarks, b.landmarks) for a, b in combinations(frames, 2)]))


def embedding_median_cosine(frames: Sequence[LivenessFrame]) -> float | None:
    """Median over frame pairs of the embeddings' cosine similarity (None without embeddings)."""
    embs = [f.embedding for f in frames if f.embedding is not None]
    if len(embs) < 2 or len({e.shape for e in embs}) != 1:
        return None
    e = np.stack(embs)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    sims = e @ e.T
    return float(np.median(sims[np.triu_indices(len(e), 1)]))


def embedding_min_cosine(frames: Sequence[LivenessFrame]) -> float | None:
    """Smallest cosine similarity between the embeddings of any two frames (None without embeddings)."""
    embs = [f.embedding for f in frames if f.embedding is not None]
    if len(embs) < 2 or len({e.shape for e in embs}) != 1:
        return None
    e = np.stack(embs)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    return float((e @ e.T)[np.triu_indices(len(e), 1)].min())


def check_same_face(frames: Sequence[LivenessFrame], min_cosine: float) -> CheckResult:
    """Every frame of one attempt must show the same person.

    Why: the checks compare frames with each other, so an attempt whose face changes identity mid-way (a
    second face in view, a swapped picture) would look "alive" to them; it is refused instead.  The
    threshold sits below the least similar pair of frames of any live session in the calibration data.
    """
    cos = embedding_min_cosine(frames)
    if cos is None:
        return CheckResult("same_face", Verdict.UNKNOWN, {}, "needs embeddings of at least 2 frames")
    if cos < min_cosine:
        return CheckResult("same_face", Verdict.FAIL, {"embedding_min_cosine": cos},
                           f"the face changed during the attempt (cosine {cos:.3f} < {min_cosine:.3f})")
    return CheckResult("same_face", Verdict.PASS, {"embedding_min_cosine": cos}, "one face throughout")


def check_static_replay(frames: Sequence[LivenessFrame], th: StaticReplayThresholds) -> CheckResult:
    if len(frames) < th.min_frames:
        return CheckResult("static_replay", Verdict.UNKNOWN, {"frames": float(len(frames))},
                           f"needs at least {th.min_frames} frames, got {len(frames)}")
    span = float(frames[-1].t - frames[0].t)
    if span < th.min_span_s - 1e-6:  # (frame times accumulate rounding)
        return CheckResult("static_replay", Verdict.UNKNOWN, {"frames": float(len(frames)), "span_s": span},
                           f"needs {th.min_span_s:.2f} s of frames to judge stillness, got {span:.2f} s")
    sample = spread(list(frames), MAX_PAIR_FRAMES)
    shape = shape_change(sample)
    cos = embedding_median_cosine(sample)
    scores = {"shape_change": shape}
    if cos is not None:
        scores["embedding_cosine"] = cos
    shape_static = shape < th.max_shape_change
    emb_static = cos is None or cos > th.min_embedding_cosine
    if shape_static and emb_static:
        return CheckResult("static_replay", Verdict.FAIL, scores,
                           f"face stayed static over {len(frames)} frames (median shape change {shape:.4f} < "
                           f"{th.max_shape_change:.4f} IOD" + ("" if cos is None else
                           f", embedding cosine {cos:.4f} > {th.min_embedding_cosine:.4f}") + ")")
    return CheckResult("static_replay", Verdict.PASS, scores, "face changed between frames")
