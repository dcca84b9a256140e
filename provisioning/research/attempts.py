"""Attempt-level recognition: an attempt's frames are fused, the attempt (not a frame) is decided.

Two sources of attempts:

- **live clips** (``extras/liveness_video/live``): each clip is read at the device's frame rate through
  the device pipeline *with its quality gates*; the person is enrolled from the first ``enroll_frames``
  usable frames (as ``facelock enroll --camera`` does) and every later run of ``frames`` usable frames,
  starting ``gap_s`` after the enrollment, is one attempt against the gallery of every clip's person;
- **bursts of stills**: each still replayed as ``frames`` augmented frames
  (:func:`provisioning.research.face_set.augment`), the attempt compared with every other image of the
  set as a one-image template (all cross-identity attempt/template pairs).

Fusion rules (each gets its own threshold at the same held-out FAR before their FRRs are compared):
``mean`` = cosine of the re-normalised mean embedding (what the lock runs), ``mean_score`` = mean of the
frames' cosines, ``k_of_n:k`` = the k-th best frame cosine (k of n frames above threshold).
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware.vision.matcher import fuse_embeddings

FUSIONS = ("mean", "mean_score", "k_of_n:1", "k_of_n:2", "k_of_n:3")


def fused_scores(frames: np.ndarray, refs: np.ndarray, rule: str) -> np.ndarray:
    """Scores of attempts against references: ``frames`` (A, n, D) unit rows, ``refs`` (C, D) -> (A, C)."""
    if rule == "mean":
        f = np.stack([fuse_embeddings(list(a)) for a in frames])
        return f @ refs.T
    per = np.einsum("and,cd->anc", frames, refs)  # (A, n, C)
    if rule == "mean_score":
        return per.mean(1)
    if rule.startswith("k_of_n:"):
        k = int(rule.split(":")[1])
        if k > frames.shape[1]:
            raise ValueError(f"{rule}: attempts have only {frames.shape[1]} frames")
        return -np.partition(-per, k - 1, axis=1)[:, k - 1]
    raise ValueError(f"unknown fusion rule {rule!r}")


# ----------------------------------------------------------------------------------------- live clips
@dataclass
class ClipFrames:
    name: str
    fps: float  # rate the frames were sampled at (the device's)
    reasons: list[str]
    vectors: np.ndarray  # (F, D), NaN rows where a frame was not usable


def read_clip(path: Path, pipe, fps: float) -> ClipFrames:
    """Frames of a clip at ``fps`` (nearest source frame), each through the pipeline with its gates."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise OSError(f"cannot open {path}")
    src_fps = cap.get(cv2.CAP_PROP_FPS) or fps
    reasons, vecs = [], []
    k, next_t = 0, 0.0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        t = k / src_fps
        k += 1
        if t + 1e-9 < next_t:
            continue
        next_t += 1.0 / fps
        res = pipe.process(np.ascontiguousarray(bgr[:, :, ::-1]))
        reasons.append(res.reason.value)
        vecs.append(res.embedding if res.ok else np.full(pipe.embedder.dim, np.nan, np.float32))
    cap.release()
    return ClipFrames(path.stem, min(fps, src_fps), reasons,
                      np.stack(vecs) if vecs else np.zeros((0, pipe.embedder.dim), np.float32))


def live_clips(folder: Path) -> list[Path]:
    manifest = folder.parent / "manifest.csv"
    if manifest.is_file():
        with open(manifest, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("kind") == "live"]
        return [folder.parent / r["file"] for r in rows if (folder.parent / r["file"]).is_file()]
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".mp4", ".mov", ".avi", ".mkv"))


@dataclass
class ClipAttempts:
    template: np.ndarray | None  # (D,) enrollment template
    attempts: list[np.ndarray]  # each (frames, D)
    frames_read: int
    usable: int


def split_clip(c: ClipFrames, enroll_frames: int, frames: int, gap_s: float) -> ClipAttempts:
    ok = np.flatnonzero(np.isfinite(c.vectors).all(1))
    if len(ok) < enroll_frames:
        return ClipAttempts(None, [], len(c.reasons), len(ok))
    enr = ok[:enroll_frames]
    template = fuse_embeddings(list(c.vectors[enr]))
    start = enr[-1] + int(round(gap_s * c.fps))
    rest = ok[ok > start]
    attempts = [c.vectors[rest[i:i + frames]] for i in range(0, len(rest) - frames + 1, frames)]
    return ClipAttempts(template, attempts, len(c.reasons), len(ok))


def clip_attempt_report(clips: list[ClipFrames], threshold: float, margin: float, frames: int = 3,
                        enroll_frames: int = 5, gap_s: float = 1.0, extra_templates: np.ndarray | None = None,
                        rules: tuple[str, ...] = ("mean",), thresholds: dict[str, float] | None = None) -> dict:
    """FRR of the clips' attempts (1:N over every clip person [+ extra enrolled strangers], with the
    margin rule of :meth:`firmware.vision.Gallery.match`) and their cross-person accepts."""
    from firmware.vision.matcher import Gallery

    split = {c.name: split_clip(c, enroll_frames, frames, gap_s) for c in clips}
    names = [n for n, s in split.items() if s.template is not None]
    dim = clips[0].vectors.shape[1]
    out: dict = {"frames_per_attempt": frames, "enroll_frames": enroll_frames, "gap_s": gap_s,
                 "fps": clips[0].fps if clips else None, "clips": {}, "rules": {}}
    for rule in rules:
        thr = (thresholds or {}).get(rule, threshold)
        tot = rej = wrong = cross_acc = cross_n = 0
        per: dict = {}
        gallery = Gallery(dim)
        for n in names:
            gallery.set_template(n, split[n].template)
        for j, t in enumerate(extra_templates if extra_templates is not None else []):
            gallery.set_template(f"stranger{j}", t)
        refs = np.stack([gallery.template(u) for u in gallery.user_ids])
        for n in names:
            att = split[n].attempts
            if not att:
                per[n] = {"attempts": 0}
                continue
            sc = fused_scores(np.stack(att), refs, rule)  # (A, G)
            ids = gallery.user_ids
            r_n = w_n = 0
            for a, row in zip(att, sc, strict=True):
                if rule == "mean":  # the lock's own decision: Gallery.match on the fused embedding
                    m = gallery.match(fuse_embeddings(list(a)), thr, margin)
                    accepted, who = m.accepted, m.user_id
                else:
                    order = np.argsort(row)[::-1]
                    best, second = row[order[0]], (row[order[1]] if len(order) > 1 else -1.0)
                    accepted = best >= thr and (len(order) == 1 or best - second >= margin)
                    who = ids[order[0]]
                if not accepted:
                    r_n += 1
                elif who != n:
                    w_n += 1
            own = ids.index(n)
            others = np.delete(sc, own, axis=1)
            cross_acc += int((others >= thr).sum())
            cross_n += others.size
            per[n] = {"attempts": len(att), "rejected": r_n, "wrong_person": w_n,
                      "frr": r_n / len(att)}
            tot += len(att)
            rej += r_n
            wrong += w_n
        out["rules"][rule] = {"threshold": thr, "attempts": tot, "rejected": rej, "frr": rej / max(tot, 1),
                              "wrong_person": wrong, "cross_person_accepts": cross_acc,
                              "cross_person_comparisons": cross_n, "gallery_size": len(gallery), "per_clip": per}
    for n, s in split.items():
        out["clips"][n] = {"frames_read": s.frames_read, "usable_frames": s.usable,
                           "enrolled": s.template is not None, "attempts": len(s.attempts)}
    return out


def read_clips(folder: Path, pipe, fps: float, progress: bool = True) -> list[ClipFrames]:
    out = []
    for p in live_clips(folder):
        t0 = time.monotonic()
        out.append(read_clip(p, pipe, fps))
        if progress:
            print(f"{p.name}: {len(out[-1].reasons)} frames in {time.monotonic() - t0:.0f} s", flush=True)
    return out


# -------------------------------------------------------------------------------------------- 1:N
def stranger_chance(probe_scores: np.ndarray, probe_keys: np.ndarray, ref_keys: np.ndarray, thr: float,
                    sizes: tuple[int, ...] = (1, 10, 50)) -> dict:
    """Chance that a stranger's attempt opens the door when N random people are enrolled.

    ``probe_scores`` (P, K): each probe attempt against each identity's template; a probe's own
    identity is never in its gallery.  For a probe with ``a`` of its K-1 possible gallery members at or
    above the threshold, a random gallery of N of them contains one with probability
    1 - C(K-1-a, N) / C(K-1, N), exactly.  The margin rule is ignored, which can only overstate.
    """
    from scipy.special import gammaln

    def log_comb(n, k):
        return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)

    own = probe_keys[:, None] == ref_keys[None, :]
    above = ((probe_scores >= thr) & ~own).sum(1)
    m = int(len(ref_keys) - 1)
    out = {}
    for n in sizes:
        if n > m:
            continue
        miss = np.where(m - above >= n, np.exp(log_comb(m - above, n) - log_comb(m, n)), 0.0)
        p = 1.0 - miss
        out[str(n)] = {"stranger_accept_rate": float(p.mean()), "probes": int(len(p)),
                       "per_comparison_times_n": float(above.sum() / (len(p) * m) * n)}
    return out


# ------------------------------------------------------------------------------------ bursts of stills
def burst_attempts(burst_vectors: np.ndarray, n_images: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(A, frames, D) attempts from the first ``frames`` usable frames of each image's burst, and the
    image index of each attempt (images with fewer usable frames make no attempt)."""
    per = burst_vectors.reshape(n_images, -1, burst_vectors.shape[1])
    out, idx = [], []
    for i in range(n_images):
        ok = per[i][np.isfinite(per[i]).all(1)]
        if len(ok) >= frames:
            out.append(ok[:frames])
            idx.append(i)
    return (np.stack(out) if out else np.zeros((0, frames, burst_vectors.shape[1]), np.float32)), np.array(idx, int)


def burst_report(fs, still_vectors: np.ndarray, burst_vectors: np.ndarray, thr: float, frames: int = 3,
                 rule: str = "mean", sizes: tuple[int, ...] = (1, 10, 50)) -> dict:
    """Attempt-level FAR/FRR of bursts against one-image templates (all cross-identity pairs), and a
    stranger's chance against galleries of ``sizes`` people (templates = mean of each person's stills)."""
    from provisioning.research.calibration import ScoredSet, far_at

    att, img = burst_attempts(burst_vectors, len(fs), frames)
    ok = np.isfinite(still_vectors).all(1)
    refs = np.nan_to_num(still_vectors)
    sc = fused_scores(att, refs, rule).astype(np.float32)
    sc[:, ~ok] = -2.0
    space = ScoredSet(sc, fs.keys[img], fs.keys, fs.sets[img], fs.sets, np.ones(len(img), bool), ok, False,
                      row_image=img, key_names=fs.key_names)
    rep = far_at(space, thr)
    rep.update({"rule": rule, "frames_per_attempt": frames, "attempts": int(len(img)),
                "images_without_attempt": int(len(fs) - len(img))})
    # 1:N: one template per person (mean of their usable stills)
    keys = np.unique(fs.keys[ok])
    tmpl = np.stack([fuse_embeddings(list(still_vectors[ok & (fs.keys == k)])) for k in keys])
    probe = fused_scores(att, tmpl, rule)
    rep["stranger_chance"] = stranger_chance(probe, fs.keys[img], keys, thr, sizes)
    return rep
