"""Measurement helpers shared by ``facelock eval-liveness`` and the calibration/training scripts.

Turns images into per-frame liveness features through the real face pipeline (detector, mesh,
alignment, embedder) and caches them per image so the thousands of replay bursts are computed once.
The cache lives outside the repo (default /tmp/facelock-cache/liveness, override FACELOCK_CACHE_DIR) and
holds derived numbers only (landmarks, embeddings, PAD features), never pixels.  ISO/IEC 30107-3 metric
helpers are here too.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware.vision.liveness.eyes import eye_openness
from firmware.vision.liveness.frame import LivenessFrame
from firmware.vision.liveness.pad_features import FEATURE_DIM, FEATURE_VERSION, pad_features
from provisioning.research import synth

CACHE_VERSION = "v2-" + FEATURE_VERSION


def cache_dir() -> Path:
    base = os.environ.get("FACELOCK_CACHE_DIR") or "/tmp/facelock-cache"
    return Path(base) / "liveness"


@dataclass
class FrameFeatures:
    """Per-frame numbers of one sequence; ``valid[i]`` False when frame i had no face mesh."""

    valid: np.ndarray  # (n,) bool
    landmarks: np.ndarray  # (n, 468, 3) float32
    embeddings: np.ndarray  # (n, D) float32 (zeros where invalid)
    pad: np.ndarray  # (n, FEATURE_DIM) float32
    openness: np.ndarray  # (n,) float32 appearance eye openness

    def frames(self, pad_scores: np.ndarray | None = None, dt: float = 0.1) -> list[LivenessFrame]:
        out = []
        for i in np.flatnonzero(self.valid):
            out.append(LivenessFrame(landmarks=self.landmarks[i], embedding=self.embeddings[i],
                                     pad_score=None if pad_scores is None else float(pad_scores[i]),
                                     t=float(i) * dt))
        return out

    def save(self, path: Path) -> None:
        from provisioning.research.cachefiles import private_dir

        private_dir(path.parent)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
        np.savez_compressed(tmp, valid=self.valid, landmarks=self.landmarks, embeddings=self.embeddings,
                            pad=self.pad, openness=self.openness)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> FrameFeatures:
        with np.load(path) as z:
            return cls(z["valid"], z["landmarks"], z["embeddings"], z["pad"], z["openness"])


def features_of_frames(pipe, frames: Sequence[np.ndarray]) -> FrameFeatures:
    """Run the face pipeline on each frame and keep what liveness needs."""
    n = len(frames)
    dim = pipe.embedder_spec.output_size
    valid = np.zeros(n, bool)
    lms = np.zeros((n, 468, 3), np.float32)
    embs = np.zeros((n, dim), np.float32)
    pads = np.zeros((n, FEATURE_DIM), np.float32)
    opn = np.full(n, np.nan, np.float32)
    for i, f in enumerate(frames):
        res = pipe.process(f, embed=False)
        face = res.primary
        if face is None or face.mesh is None or face.aligned is None:
            continue
        valid[i] = True
        lms[i] = face.mesh.points
        embs[i] = pipe.embed_aligned(face.aligned)
        pads[i] = pad_features(face.aligned)
        opn[i] = eye_openness(face.aligned, face.mesh.points)
    return FrameFeatures(valid, lms, embs, pads, opn)


def _key(path: Path, kind: str, seed: int) -> str:
    from provisioning.research.cachefiles import code_fingerprint

    ident = f"{CACHE_VERSION}|{code_fingerprint(__file__)}|{kind}|{seed}|{Path(path).resolve()}"
    return hashlib.sha1(ident.encode()).hexdigest()


SEQUENCES: dict[str, Callable[[np.ndarray, int], list[np.ndarray]]] = {
    "replay10": lambda img, seed: synth.replay_burst(img, n=10, seed=seed),
    "planar6": lambda img, seed: synth.planar_warps(img, n=6, seed=seed),
    "still1": lambda img, seed: [synth._as_rgb(img)],
    # camera-like sequences (nuaa live frames) for blink/motion calibration, cached apart (eye metric v2)
    "cam_replay10": lambda img, seed: synth.replay_burst(img, n=10, seed=seed),
    "cam_planar6": lambda img, seed: synth.planar_warps(img, n=6, seed=seed),
}


def cached_sequence(pipe, image_path: Path, kind: str, seed: int = 0,
                    loader: Callable[[Path], np.ndarray] | None = None) -> FrameFeatures:
    """Features of the ``kind`` sequence made from one image, from the cache or computed and cached."""
    path = cache_dir() / kind / (_key(image_path, kind, seed) + ".npz")
    if path.is_file():
        try:
            return FrameFeatures.load(path)
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # a torn or stale cache entry: recompute
    if loader is None:
        from firmware.vision.image import load_image as loader
    img = loader(image_path)
    feats = features_of_frames(pipe, SEQUENCES[kind](img, seed))
    feats.save(path)
    return feats


# ------------------------------------------------------------------------------ ISO/IEC 30107-3 metrics
def apcer_bpcer(attack_scores: np.ndarray, bona_scores: np.ndarray, threshold: float) -> tuple[float, float]:
    """APCER = attacks accepted as bona fide (score < threshold); BPCER = bona fide rejected (score >= thr)."""
    a = np.asarray(attack_scores, dtype=np.float64)
    b = np.asarray(bona_scores, dtype=np.float64)
    apcer = float((a < threshold).mean()) if a.size else float("nan")
    bpcer = float((b >= threshold).mean()) if b.size else float("nan")
    return apcer, bpcer


def threshold_at_bpcer(bona_scores: np.ndarray, target_bpcer: float) -> float:
    """Smallest threshold whose BPCER on these bona-fide scores is <= target (attack = score >= threshold)."""
    b = np.sort(np.asarray(bona_scores, dtype=np.float64))
    if b.size == 0:
        return 0.5
    k = int(np.floor(target_bpcer * b.size))  # at most k bona-fide scores may be >= threshold
    if k >= b.size:
        return float(b[0])
    cand = b[b.size - k - 1]
    return float(np.nextafter(cand, np.inf))


# ---------------------------------------------------------------------------------- spoof data set layout
@dataclass
class SpoofSample:
    path: Path
    subject: str  # nuaa subject id, or "silent_face"
    attack: bool
    attack_type: str  # "bona_fide" | "nuaa_print" | "silent_face_fake"


def spoof_samples(root: Path) -> list[SpoofSample]:
    """Samples of a folder laid out like extras/spoof (nuaa_like/<subject>/{live,spoof}, silent_face_samples)."""
    root = Path(root)
    out: list[SpoofSample] = []
    exts = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".pgm"}
    nuaa = root / "nuaa_like"
    if nuaa.is_dir():
        for subj in sorted(p for p in nuaa.iterdir() if p.is_dir()):
            for kind, attack in (("live", False), ("spoof", True)):
                for f in sorted((subj / kind).glob("*")):
                    if f.suffix.lower() in exts:
                        out.append(SpoofSample(f, subj.name, attack, "nuaa_print" if attack else "bona_fide"))
    sfs = root / "silent_face_samples"
    if sfs.is_dir():
        for kind, attack in (("real", False), ("fake", True)):
            for f in sorted((sfs / kind).glob("*")):
                if f.suffix.lower() in exts:
                    out.append(SpoofSample(f, "silent_face", attack,
                                           "silent_face_fake" if attack else "bona_fide"))
    return out


def cross_subject_scores(x: np.ndarray, y: np.ndarray, subjects: Sequence[str], l2: float,
                         n_folds: int | None = None) -> np.ndarray:
    """Out-of-fold attack scores: each subject is scored by a model trained on the *other* subjects only.

    ``n_folds`` groups subjects into that many folds (default: leave one subject out).
    """
    from provisioning.research.pad_training import fit_pad_model

    subs = np.asarray(subjects)
    uniq = sorted(set(subjects))
    folds = [uniq[i::n_folds] for i in range(n_folds)] if n_folds else [[s] for s in uniq]
    scores = np.full(len(y), np.nan)
    for test in folds:
        te = np.isin(subs, test)
        model = fit_pad_model(x[~te], y[~te], l2=l2)
        scores[te] = model.score_features(x[te])
    return scores


def eer(attack_scores: np.ndarray, bona_scores: np.ndarray) -> float:
    """Equal error rate (APCER = BPCER) over all candidate thresholds."""
    a = np.asarray(attack_scores, dtype=np.float64)
    b = np.asarray(bona_scores, dtype=np.float64)
    best = 1.0
    for t in np.unique(np.concatenate([a, b, [np.inf]])):
        ap, bp = apcer_bpcer(a, b, t)
        best = min(best, max(ap, bp))
    return float(best)


def operating_points(attack_scores: np.ndarray, bona_scores: np.ndarray) -> dict[str, float]:
    """APCER at BPCER 10/5/1 %, BPCER at APCER 5/1 %, EER: the usual 30107-3 summary of a score."""
    a = np.asarray(attack_scores, dtype=np.float64)
    b = np.asarray(bona_scores, dtype=np.float64)
    out = {}
    for t in (0.10, 0.05, 0.01):
        thr = threshold_at_bpcer(b, t)
        out[f"apcer_at_bpcer_{t:g}"] = apcer_bpcer(a, b, thr)[0]
    for t in (0.05, 0.01):
        # largest threshold with APCER <= t: attacks scoring below it are accepted
        sa = np.sort(a)
        k = int(np.floor(t * sa.size))
        thr = float(sa[k]) if k < sa.size else float("inf")
        out[f"bpcer_at_apcer_{t:g}"] = apcer_bpcer(a, b, thr)[1]
    out["eer"] = eer(a, b)
    return out
