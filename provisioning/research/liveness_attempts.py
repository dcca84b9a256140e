"""The product's liveness decision on real footage: attempts built as the daemon builds them.

``facelock eval-liveness`` (default mode) runs here.  Why the daemon's attempts and not the checks alone: the
figure that matters is what the lock *does* — the shipped ``LivenessPolicy`` and models, unchanged, fed
the frames the daemon would feed it (its camera frame rate, ``frames_per_attempt``,
``max_frames_per_attempt``, ``face_lost_s``, ``verify_timeout_s``, ``denied_s``), each attempt decided by
the lock's own decider (``firmware.lock.decider.AttemptDecider``: per-frame ``observe``, then
``liveness_step`` / ``ended``, as the runtime calls them).

Sources (``discover``):
- video clips: ``<root>/live/*`` and ``<root>/attack/*`` (attack type from the file-name prefix
  ``print_``/``screen_`` or from ``manifest.csv``'s ``kind`` column), played at the clip's own frame rate
  (``--fps`` subsamples, as a slower daemon would see it);
- frame folders in the nuaa layout: ``nuaa_like/<subject>/{live,spoof}`` — each folder one sequence;
- still bursts: ``--stills DIR`` images, each held still in front of the camera for ``burst_s`` seconds
  (one real image repeated with sensor noise: what a photo on a stand or a frozen screen gives).

Per-frame analysis (the real face pipeline plus the learned PAD model) is cached as numbers only — mesh,
embedding, per-frame scores, never pixels — under the cache dir (default /tmp/facelock-cache), so the
policy can be re-run over every attempt in seconds.  Identities (for the identity-disjoint calibration)
come from the file names: ``<type>_<identity>_<real|fake>`` and nuaa subject ids.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

VIDEO_EXT = {".mp4", ".mov", ".avi", ".mkv", ".webm"}
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".pgm"}
CACHE_VERSION = "attempts-v1"
#: the span of frames over which static replay is judged (a design choice, not fitted: see replay.py)
STATIC_SPAN_S = 0.8


@dataclass(frozen=True)
class Source:
    """One sequence to present to the lock."""

    name: str  # relative, for reports
    path: Path
    live: bool
    attack_type: str  # "bona_fide" | "print" | "screen" | ...
    identity: str
    fps: float
    kind: str  # "video" | "frames" | "burst"
    frames: tuple[Path, ...] = ()  # for "frames" / "burst"


def identity_of(stem: str) -> str:
    """Identity key from a clip name: print_nuaa_imposter0001_00_00_01 -> nuaa0001, screen_zubair_fake -> zubair."""
    s = re.sub(r"^(print|screen|replay|mask)_", "", stem)
    m = re.match(r"nuaa_(?:client|imposter)(\d+)", s)
    if m:
        return f"nuaa{m.group(1)}"
    s = re.sub(r"_(real|fake)$", "", s)
    m = re.match(r"(minivision)_demo", s)
    if m:
        return m.group(1)
    return s


def _manifest_kinds(root: Path) -> dict[str, str]:
    p = root / "manifest.csv"
    if not p.is_file():
        return {}
    with p.open(newline="", encoding="utf-8") as f:
        return {row["file"]: row.get("kind", "") for row in csv.DictReader(f) if row.get("file")}


def _video_fps(path: Path) -> float:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()
    return fps if 1.0 <= fps <= 120.0 else 15.0


def discover(root: Path, stills: Path | None = None, frames_fps: float = 15.0) -> list[Source]:
    """Every source under ``root`` (a liveness_video folder, an extras/spoof folder, or extras/ with both)."""
    root = Path(root)
    out: list[Source] = []
    for base in (root, root / "liveness_video"):
        kinds = _manifest_kinds(base)
        for sub, live in (("live", True), ("attack", False)):
            d = base / sub
            if not d.is_dir():
                continue
            for f in sorted(d.iterdir()):
                if f.suffix.lower() not in VIDEO_EXT:
                    continue
                rel = f"{sub}/{f.name}"
                if live:
                    atype = "bona_fide"
                else:
                    atype = kinds.get(rel) or (f.stem.split("_", 1)[0] if "_" in f.stem else "unknown")
                out.append(Source(str(f.relative_to(root)), f, live, atype, identity_of(f.stem),
                                  _video_fps(f), "video"))
    for nuaa in (root / "nuaa_like", root / "spoof" / "nuaa_like"):
        if not nuaa.is_dir():
            continue
        for subj in sorted(p for p in nuaa.iterdir() if p.is_dir()):
            for sub, live in (("live", True), ("spoof", False)):
                imgs = tuple(sorted(p for p in (subj / sub).glob("*") if p.suffix.lower() in IMAGE_EXT))
                if imgs:
                    out.append(Source(str((subj / sub).relative_to(root)), subj / sub, live,
                                      "bona_fide" if live else "print", f"nuaa{subj.name}", frames_fps,
                                      "frames", imgs))
    if stills is not None:
        for f in sorted(p for p in Path(stills).rglob("*") if p.suffix.lower() in IMAGE_EXT):
            ident = f.parent.parent.name if f.parent.name in ("live", "spoof", "real", "fake") else f.parent.name
            ident = f"nuaa{ident}" if ident.isdigit() else ident
            out.append(Source(f"stills/{f.relative_to(stills)}", f, False, "still_replay", ident, frames_fps,
                              "burst", (f,)))
    return out


def iter_frames(src: Source, fps: float | None = None, burst_s: float = 2.0, seed: int = 0
                ) -> Iterator[tuple[float, np.ndarray]]:
    """(t, rgb) of a source as the camera would present it (``fps`` subsamples a video to that rate)."""
    import cv2

    from firmware.vision.image import load_image

    if src.kind == "video":
        cap = cv2.VideoCapture(str(src.path))
        step = 1.0 if not fps or fps >= src.fps else src.fps / fps
        try:
            k, nxt = 0, 0.0
            while True:
                ok, bgr = cap.read()
                if not ok:
                    return
                if k >= nxt - 1e-9:
                    nxt += step
                    yield k / src.fps, np.ascontiguousarray(bgr[:, :, ::-1])
                k += 1
        finally:
            cap.release()
    elif src.kind == "frames":
        for k, p in enumerate(src.frames):
            yield k / src.fps, load_image(p)
    else:  # burst: one image held still, with sensor noise and sub-pixel jitter, for burst_s seconds
        img = load_image(src.frames[0])
        rng = np.random.default_rng(seed)
        for k in range(max(2, int(round(burst_s * src.fps)))):
            m = np.float32([[1, 0, rng.normal(0, 0.3)], [0, 1, rng.normal(0, 0.3)]])
            moved = cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REFLECT)
            noisy = moved.astype(np.float32) + rng.normal(0, 2.0, img.shape)
            yield k / src.fps, np.clip(noisy, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------- per-frame cache
@dataclass
class FrameRecord:
    """What the daemon's analyzer produced for one frame, reduced to numbers (payload scored once)."""

    t: float
    face: bool
    usable: bool
    reason: str
    payload: Any = None  # firmware.vision.liveness.LivenessFrame (scored: no pixels) or None
    embedding: np.ndarray | None = None  # the match embedding (usable frames)
    #: the texture PAD model's input features of the frame's aligned crop (``pad_features``), so the texture
    #: model can be re-trained and re-scored per fold without re-running the face pipeline; None if no crop
    pad_features: np.ndarray | None = None


def cache_dir() -> Path:
    return Path(os.environ.get("FACELOCK_CACHE_DIR") or "/tmp/facelock-cache") / "liveness-attempts"


def _key(src: Source, fps: float | None, models: str) -> str:
    from provisioning.research.cachefiles import code_fingerprint

    st = src.path.stat()
    ident = (f"{CACHE_VERSION}|{code_fingerprint(__file__)}|{models}|{src.kind}|{src.path.resolve()}|"
             f"{st.st_size}|{st.st_mtime_ns}|{fps}")
    return hashlib.sha1(ident.encode()).hexdigest()


def _save(path: Path, recs: list[FrameRecord]) -> None:
    n = len(recs)
    lf = [r.payload for r in recs]
    has = np.array([p is not None for p in lf], bool)
    lm = np.zeros((n, 468, 3), np.float32)
    dim = next((p.embedding.shape[0] for p in lf if p is not None and p.embedding is not None), 1)
    le = np.zeros((n, dim), np.float32)
    me = np.zeros((n, dim), np.float32)
    sc = np.full((n, 3), np.nan, np.float64)  # pad_score, fas_score, openness
    pf_dim = next((r.pad_features.shape[0] for r in recs if r.pad_features is not None), 1)
    pf = np.full((n, pf_dim), np.nan, np.float32)
    for i, (r, p) in enumerate(zip(recs, lf, strict=True)):
        if r.embedding is not None:
            me[i] = r.embedding
        if r.pad_features is not None:
            pf[i] = r.pad_features
        if p is None:
            continue
        lm[i, :, :p.landmarks.shape[1]] = p.landmarks
        if p.embedding is not None:
            le[i] = p.embedding
        sc[i] = [np.nan if v is None else v for v in (p.pad_score, p.fas_score, p.openness)]
    from provisioning.research.cachefiles import private_dir

    private_dir(path.parent)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, t=np.array([r.t for r in recs]), face=np.array([r.face for r in recs], bool),
                        usable=np.array([r.usable for r in recs], bool), reason=np.array([r.reason for r in recs]),
                        has=has, lm=lm, le=le, me=me, sc=sc, pf=pf)
    os.replace(tmp, path)


def _load(path: Path) -> list[FrameRecord]:
    from firmware.vision.liveness.frame import LivenessFrame

    with np.load(path) as z:
        t, face, usable, reason, has, lm, le, me, sc = (z[k] for k in
                                                         ("t", "face", "usable", "reason", "has", "lm", "le", "me", "sc"))
        pf = z["pf"] if "pf" in z.files else None  # caches written before the texture features were kept
    out = []
    for i in range(len(t)):
        p = None
        if has[i]:
            pad, fas, opn = (None if np.isnan(v) else float(v) for v in sc[i])
            p = LivenessFrame(landmarks=lm[i], embedding=le[i] if np.any(le[i]) else None, pad_score=pad,
                              fas_score=fas, openness=opn if sc[i, 2] == sc[i, 2] else float("nan"),
                              t=float(t[i]))
        feats = pf[i].astype(np.float64) if pf is not None and has[i] and np.isfinite(pf[i]).all() else None
        out.append(FrameRecord(float(t[i]), bool(face[i]), bool(usable[i]), str(reason[i]), p,
                               me[i] if usable[i] else None, feats))
    return out


def has_pad_features(recs: Sequence[FrameRecord]) -> bool:
    """Whether every scored frame of a source carries its texture features (caches from before they were
    kept do not: ``analyze_source(..., need_pad_features=True)`` recomputes those)."""
    return all(r.pad_features is not None for r in recs if r.payload is not None and r.payload.pad_score is not None)


def analyze_source(src: Source, decider: Any, policy: Any, fps: float | None = None,
                   models_id: str = "", use_cache: bool = True, need_pad_features: bool = False
                   ) -> list[FrameRecord]:
    """Per-frame records of a source through the lock's own per-frame analysis (``AttemptDecider.observe``)
    and the policy's per-frame scoring (``LivenessPolicy.scored``), from the cache when present (unless
    ``need_pad_features`` and the cached records predate the texture features)."""
    from firmware.hw.camera.base import Frame
    from firmware.vision.liveness.pad_features import pad_features

    path = cache_dir() / (_key(src, fps, models_id) + ".npz")
    if use_cache and path.is_file():
        try:
            recs = _load(path)
            if not need_pad_features or has_pad_features(recs):
                return recs
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)
    recs = []
    for k, (t, rgb) in enumerate(iter_frames(src, fps)):
        obs = decider.observe(Frame(rgb, k, t))
        lf = obs.liveness
        feats = pad_features(lf.face) if lf is not None and lf.face is not None else None
        payload = policy.scored(lf, every_score=True) if lf is not None else None
        recs.append(FrameRecord(t, obs.face, obs.usable, obs.reason, payload,
                                obs.embedding if obs.usable else None, feats))
    if use_cache:
        _save(path, recs)
    return recs


# ------------------------------------------------------------------------------- the daemon's attempts
@dataclass(frozen=True)
class AttemptParams:
    """The ``[lock]`` values that shape an attempt (firmware.config.LockConfig)."""

    frames_per_attempt: int = 3
    max_frames_per_attempt: int = 10
    face_lost_s: float = 0.5
    verify_timeout_s: float = 3.0
    denied_s: float = 2.0
    unlock_s: float = 5.0

    @classmethod
    def from_lock(cls, lock: Any) -> AttemptParams:
        return cls(lock.frames_per_attempt, lock.max_frames_per_attempt, lock.face_lost_s, lock.verify_timeout_s,
                   lock.denied_s, lock.unlock_s)


@dataclass
class Attempt:
    t_first_face: float
    outcome: str = "open"  # live | spoof | inconclusive | timeout | face_lost | end_of_clip
    t_end: float | None = None
    frames: int = 0
    reason: str = ""
    checks: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"t_first_face": round(self.t_first_face, 3), "outcome": self.outcome,
                "t_end": None if self.t_end is None else round(self.t_end, 3), "frames": self.frames,
                "reason": self.reason[:300], "checks": self.checks}


def liveness_decider(policy: Any, p: AttemptParams, pipeline: Any = None) -> Any:
    """The lock's own attempt decider (firmware.lock.decider) with this liveness policy and these rules;
    only its liveness half runs here (``observe`` with a ``pipeline``, ``liveness_step``, ``ended``)."""
    from firmware.lock.decider import AttemptDecider, AttemptRules, Enrolled

    return AttemptDecider(pipeline, policy, Enrolled(None), 0.0, 0.0,
                          AttemptRules(p.frames_per_attempt, p.max_frames_per_attempt, p.face_lost_s))


def run_attempts(recs: Sequence[FrameRecord], p: AttemptParams, decider: Any,
                 stop_at_first_live: bool = False) -> list[Attempt]:
    """The daemon's attempts over a source's frames: the lock's own decider (``liveness_decider``) decides
    each one frame by frame, exactly as the runtime calls it, and the state machine's timers shape them:
    IDLE -> face -> VERIFYING; a live verdict ends the attempt (the lock would then match and unlock for
    ``unlock_s``: no frame is analysed meanwhile), a refusal shows DENIED for ``denied_s``; no face for
    longer than ``face_lost_s``, the verify timeout or the end of the source end the attempt through
    ``decider.ended`` (a spoof when a check had FAILED on it)."""
    from firmware.lock.decider import Attempt as LockAttempt
    from firmware.lock.decider import Observation, Outcome

    out: list[Attempt] = []
    state, busy_until = "idle", -1.0
    att: Attempt | None = None
    la: Any = None

    def close(d: Any, now: float) -> str:
        assert att is not None
        att.t_end = now
        att.reason = d.reason
        frames = [o.liveness for o in decider.window(la) if o.liveness is not None]
        if d.outcome is Outcome.SPOOF:
            att.outcome = "spoof"
        elif d.outcome is Outcome.INCONCLUSIVE:
            att.outcome = "inconclusive"
        else:  # ABANDONED: the face left, the timeout, the end of the source
            att.outcome = {"verify_timeout": "timeout"}.get(d.reason, "face_lost")
        if len(frames) >= decider.liveness.config.min_frames:  # for the report only: each check's verdict
            att.checks = {n: c.verdict.value for n, c in decider.liveness.decide(frames).checks.items()}
        return "busy" if att.outcome in ("spoof", "inconclusive") else "idle"

    for k, r in enumerate(recs):
        now = r.t
        if state == "verifying" and att is not None and now - att.t_first_face >= p.verify_timeout_s:
            state = close(decider.ended(la, "verify_timeout"), now)
            busy_until = now + p.denied_s
        if state == "busy" and now >= busy_until:
            state = "idle"
        if state == "busy":
            continue
        if not r.face:
            if state == "verifying" and decider.face_gone(la, now):
                state = close(decider.ended(la, "face_lost"), now)
                busy_until = now + p.denied_s
            continue
        if state == "idle":
            att = Attempt(now)
            out.append(att)
            la = LockAttempt(now, now, k)
            state = "verifying"
        assert att is not None
        la.observations.append(Observation(k, now, True, r.usable, r.embedding, r.reason, r.payload))
        la.last_face_ts = now
        att.frames = len(la.observations)
        d = decider.liveness_step(la)
        if d is None:  # live: the lock goes on to match
            att.outcome, att.t_end, att.reason = "live", now, "live"
            if stop_at_first_live:
                return out
            state, busy_until = "busy", now + p.unlock_s
        elif d.final:
            state = close(d, now)
            busy_until = now + p.denied_s
    if att is not None and att.outcome == "open":  # the source ended: the person walked away
        close(decider.ended(la, "end_of_source"), recs[-1].t if recs else 0.0)
    return out


# ----------------------------------------------------------------------------------------- the report
def summarise(per_source: list[dict[str, Any]]) -> dict[str, Any]:
    """ISO/IEC 30107-3 figures over attempts: BPCER = live attempts not accepted (of those decided),
    APCER per attack type = attack attempts accepted; plus per-source first-live latency."""
    live_att = [a for s in per_source if s["live"] for a in s["attempts"]
                if a["outcome"] in ("live", "spoof", "inconclusive", "timeout")]
    bpcer = (sum(a["outcome"] != "live" for a in live_att) / len(live_att)) if live_att else None
    apcer: dict[str, Any] = {}
    for s in per_source:
        if s["live"]:
            continue
        d = apcer.setdefault(s["attack_type"], {"attempts": 0, "accepted": 0, "sources": 0, "sources_accepted": 0})
        decided = [a for a in s["attempts"] if a["outcome"] in ("live", "spoof", "inconclusive", "timeout")]
        d["attempts"] += len(decided)
        d["accepted"] += sum(a["outcome"] == "live" for a in decided)
        d["sources"] += 1
        d["sources_accepted"] += int(any(a["outcome"] == "live" for a in decided))
    for d in apcer.values():
        d["apcer"] = d["accepted"] / d["attempts"] if d["attempts"] else None
    waits = [s["time_to_live_s"] for s in per_source if s["live"] and s["time_to_live_s"] is not None]
    never = [s["name"] for s in per_source if s["live"] and s["time_to_live_s"] is None]
    return {
        "bpcer": bpcer, "live_attempts": len(live_att),
        "live_attempts_refused_as_spoof": sum(a["outcome"] == "spoof" for a in live_att),
        "live_attempts_inconclusive": sum(a["outcome"] in ("inconclusive", "timeout") for a in live_att),
        "apcer": apcer,
        "time_to_live_s": {"median": float(np.median(waits)) if waits else None,
                           "p95": float(np.percentile(waits, 95)) if waits else None, "n": len(waits)},
        "live_sources_never_live": never,
    }


def source_report(src: Source, attempts: list[Attempt]) -> dict[str, Any]:
    first_live = next((a for a in attempts if a.outcome == "live"), None)
    return {"name": src.name, "live": src.live, "attack_type": src.attack_type, "identity": src.identity,
            "kind": src.kind, "fps": src.fps,
            "time_to_live_s": None if first_live is None or first_live.t_end is None
            else round(first_live.t_end - attempts[0].t_first_face, 3),
            "attempts": [a.to_dict() for a in attempts]}


# ------------------------------------------------------------------------------------------ evaluation
def evaluate(sources: Sequence[Source], records: dict[str, list[FrameRecord]], policy: Any,
             params: AttemptParams) -> dict[str, Any]:
    """Every source's attempts under ``policy`` (a LivenessPolicy) and ``params``, and the summary."""
    per = []
    decider = liveness_decider(policy, params)
    for src in sources:
        atts = run_attempts(records[src.name], params, decider)
        per.append(source_report(src, atts))
    return {"summary": summarise(per), "sources": per}


def window_scores(recs: Sequence[FrameRecord], frames: int) -> list[float]:
    """Median learned-PAD attack score of every run of ``frames`` consecutive scored frames."""
    sc = [r.payload.fas_score for r in recs if r.payload is not None and r.payload.fas_score is not None]
    return [float(np.median(sc[i - frames:i])) for i in range(frames, len(sc) + 1)]


def fit_fasnet_threshold(live_windows: Sequence[float], attack_windows: Sequence[float], margin: float = 1.25,
                         live_quantile: float = 0.99) -> float:
    """The learned-PAD threshold from calibration windows: ``margin`` x the live windows' ``live_quantile``
    (so a live person is not refused for a typical bad moment), kept below the attack windows' 1st
    percentile when the two overlap less than that; never outside (0.05, 0.95)."""
    lv = float(np.quantile(live_windows, live_quantile)) if len(live_windows) else 0.5
    t = lv * margin
    if len(attack_windows):
        t = min(t, float(np.quantile(attack_windows, 0.01)) * 0.98) if np.quantile(attack_windows, 0.01) > lv else t
    return float(min(max(t, 0.05), 0.95))


def fit_static(live_shape: Sequence[float], still_shape: Sequence[float], margin: float = 1.1) -> float:
    """Static-replay shape threshold: ``margin`` x the largest shape change any still held in front of the
    camera showed (every still is caught by shape; the embedding-cosine gate, ``fit_static_cosine``, is
    what keeps a live person who stands still from being called static).  ``live_shape`` is reported, not
    used: live and still shapes overlap (a still live face is as rigid as a photo), their cosines do not."""
    return float(np.max(still_shape)) * margin if len(still_shape) else 0.0


def fit_static_cosine(still_cos: Sequence[float], margin: float = 0.003) -> float:
    """Static-replay embedding-cosine threshold: just below the least self-similar still (a photo's
    embeddings barely change; a live face's change with expression and light even when it stands still)."""
    return float(np.min(still_cos)) - margin if len(still_cos) else 0.97


def static_windows(recs: Sequence[FrameRecord], frames: int) -> tuple[list[float], list[float]]:
    """(shape change, embedding cosine) of the static-replay check over windows of ``frames`` frames."""
    from firmware.vision.liveness.geometry import spread
    from firmware.vision.liveness.replay import MAX_PAIR_FRAMES, embedding_median_cosine, shape_change

    lf = [r.payload for r in recs if r.payload is not None]
    shapes, coss = [], []
    step = max(1, frames // 3)
    for i in range(min(frames, len(lf)), len(lf) + 1, step):
        w = spread(lf[max(0, i - frames):i], MAX_PAIR_FRAMES)
        if len(w) < 3:
            continue
        shapes.append(shape_change(w))
        c = embedding_median_cosine(w)
        coss.append(1.0 if c is None else c)
    return shapes, coss


def window_stats(sources: Sequence[Source], records: dict[str, list[FrameRecord]], window: int, fas_frames: int,
                 span_s: float = STATIC_SPAN_S) -> dict[str, dict[str, list[float]]]:
    """Per source, the calibration statistics (computed once; the folds only choose sources)."""
    out = {}
    for s in sources:
        n = max(3, min(window, int(np.ceil(span_s * s.fps)) + 1))
        shapes, coss = static_windows(records[s.name], n) if (s.kind == "burst" or (s.live and s.kind == "video")) \
            else ([], [])
        out[s.name] = {"fas": window_scores(records[s.name], fas_frames), "shape": shapes, "cos": coss}
    return out


def calibrate(sources: Sequence[Source], stats: dict[str, dict[str, list[float]]],
              exclude_identity: str | None = None) -> dict[str, float]:
    """Thresholds fitted on every identity but ``exclude_identity`` (identity-disjoint calibration): the
    learned-PAD threshold from live vs attack windows, static replay from still bursts vs live videos over
    ``STATIC_SPAN_S`` windows (as the check judges them)."""
    use = [s for s in sources if s.identity != exclude_identity]
    live_w = [w for s in use if s.live for w in stats[s.name]["fas"]]
    att_w = [w for s in use if not s.live and s.kind != "burst" for w in stats[s.name]["fas"]]
    live_shape = [x for s in use if s.live and s.kind == "video" for x in stats[s.name]["shape"]]
    still_shape = [x for s in use if s.kind == "burst" for x in stats[s.name]["shape"]]
    still_cos = [x for s in use if s.kind == "burst" for x in stats[s.name]["cos"]]
    return {"fasnet_max_attack": fit_fasnet_threshold(live_w, att_w),
            "static_max_shape_change": fit_static(live_shape, still_shape),
            "static_min_embedding_cosine": fit_static_cosine(still_cos),
            "n_live_windows": float(len(live_w)), "n_attack_windows": float(len(att_w)),
            "live_window_p99": float(np.quantile(live_w, 0.99)) if live_w else float("nan"),
            "attack_window_p01": float(np.quantile(att_w, 0.01)) if att_w else float("nan"),
            "still_shape_max": float(np.max(still_shape)) if still_shape else float("nan"),
            "live_shape_p01": float(np.quantile(live_shape, 0.01)) if live_shape else float("nan")}


# ------------------------------------------------------------------ blink thresholds from real footage
#: the file listing spans of source files that are not evidence of what their folder says (the exclusions
#: of the blink calibration), kept with the thresholds they shaped
EXCLUSIONS_FILE = Path(__file__).resolve().parents[2] / "models" / "liveness" / "calibration_exclusions.csv"
#: the conservative blink fit: this factor beyond the deepest dip at which any calibration attack window
#: still shows a blink (the same margin calibrate_liveness.py used on synthetic sequences)
BLINK_MARGIN = 1.25


@dataclass(frozen=True)
class Exclusion:
    """A span of one source (by name, as ``discover`` names it) left out of the blink calibration."""

    source: str
    t_start_s: float
    t_end_s: float
    reason: str


def load_exclusions(path: Path | None = None) -> list[Exclusion]:
    """The exclusion manifest (CSV: ``source,t_start_s,t_end_s,reason``); a missing file is an error, not
    "nothing excluded" (a silently dropped manifest would put the real person's blinks into the attacks)."""
    p = Path(path) if path is not None else EXCLUSIONS_FILE
    with p.open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r.get("source") and not r["source"].startswith("#")]
    try:
        return [Exclusion(r["source"], float(r["t_start_s"]), float(r["t_end_s"]), r["reason"]) for r in rows]
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{p}: malformed exclusion row: {exc!r}") from exc


def frames_are_a_sequence(frames: Sequence[Path]) -> bool:
    """Whether a frame folder is consecutive camera frames: one capture prefix and frame numbers stepping
    by one (``<prefix>_<n>.jpg``).  The nuaa folders are not (``0003_01_00_01_0``, ``_15``, ``_215``: frames
    seconds to minutes apart, some from other sessions), so a "blink" between two of them is an artefact."""
    keys = [re.match(r"^(.*)_(\d+)$", p.stem) for p in frames]
    if len(frames) < 3 or not all(keys):
        return False
    if len({k.group(1) for k in keys if k}) != 1:
        return False
    idx = sorted(int(k.group(2)) for k in keys if k)
    return all(b - a == 1 for a, b in zip(idx, idx[1:], strict=False))


def _runs(recs: Sequence[FrameRecord], gap_s: float, drop: Callable[[float], bool]) -> list[list[Any]]:
    """Runs of scored face frames as one attempt would hold them: a gap longer than ``gap_s`` (the lock's
    ``face_lost_s``) or an excluded frame ends a run."""
    runs: list[list[Any]] = []
    cur: list[Any] = []
    last = None
    for r in recs:
        if not r.face:
            continue
        if r.payload is None or drop(r.t) or (last is not None and r.t - last > gap_s):
            if cur:
                runs.append(cur)
            cur = []
        if r.payload is not None and not drop(r.t):
            cur.append(r.payload)
        last = r.t
    if cur:
        runs.append(cur)
    return runs


@dataclass
class BlinkWindows:
    """Every window of one signal (EAR or eye appearance) an attempt over a source could present to the
    blink check, reduced to what decides it: per window and frame ``x`` = the frame's dip below the window's
    open level (1 - e/open) and ``y`` = how far the lower of the highest frames before and after it falls
    short of the open level (1 - min(max before, max after)/open).  ``find_blinks`` with ``min_drop`` t
    sees a blink iff some frame has x >= t and y <= min(reopen_tol, t/2) (closed, open on both sides)."""

    x: list[np.ndarray] = field(default_factory=list)  # one (n_windows, L) array per window length
    y: list[np.ndarray] = field(default_factory=list)

    def blinks(self, t: float, reopen_tol: float = 0.15) -> np.ndarray:
        """Per window: does ``find_blinks`` see a blink at relative min_drop ``t``?"""
        if t >= 1.0:
            return np.zeros(self.n, bool)
        r = min(reopen_tol, t / 2)
        out = [((x >= t) & (y <= r)).any(axis=1) for x, y in zip(self.x, self.y, strict=True)]
        return np.concatenate(out) if out else np.zeros(0, bool)

    def strength(self, reopen_tol: float = 0.15) -> np.ndarray:
        """Per window: the largest min_drop at which it still shows a blink (0: none at any)."""
        out = []
        for x, y in zip(self.x, self.y, strict=True):
            ok = (y <= reopen_tol) & (2 * y <= x)
            out.append(np.where(ok, x, 0.0).max(axis=1))
        return np.concatenate(out) if out else np.zeros(0)

    @property
    def n(self) -> int:
        return int(sum(len(x) for x in self.x))


def _signal_windows(runs: Sequence[np.ndarray], iods: Sequence[np.ndarray], lo: int, hi: int | Sequence[int],
                    min_iod: float, open_quantile: float = 0.9) -> BlinkWindows:
    """``BlinkWindows`` of every window of ``lo``..``hi`` consecutive frames of each run (an attempt may start
    at any frame of a run and grows to ``hi`` frames; ``hi`` per run when a sequence); windows whose median
    inter-ocular distance is below ``min_iod`` (the check says UNKNOWN) or whose signal is not finite (no
    blink) show none."""
    from numpy.lib.stride_tricks import sliding_window_view

    bw = BlinkWindows()
    his = [int(hi)] * len(runs) if isinstance(hi, (int, np.integer)) else [int(h) for h in hi]
    for e, iod, top in zip(runs, iods, his, strict=True):
        for length in range(lo, min(top, len(e)) + 1):
            w = sliding_window_view(e, length).astype(np.float64)
            big = np.median(sliding_window_view(iod, length), axis=1) >= min_iod
            w = w[big]
            if not len(w):
                continue
            fin = np.isfinite(w).all(axis=1)
            w = np.where(np.isfinite(w), w, 0.0)
            o = np.quantile(w, open_quantile, axis=1)
            bad = ~fin | (o <= 0)
            o = np.where(bad, 1.0, o)[:, None]
            edge = np.full((len(w), 1), -np.inf)
            before = np.maximum.accumulate(np.concatenate([edge, w[:, :-1]], 1), axis=1)
            after = np.concatenate([np.maximum.accumulate(w[:, ::-1], axis=1)[:, ::-1][:, 1:], edge], 1)
            x = 1 - w / o
            x[bad] = -np.inf  # no finite signal or no open level: find_blinks returns none
            bw.x.append(x)
            bw.y.append(1 - np.minimum(before, after) / o)
    return bw


def window_frames(ts: Sequence[float], max_frames: int, wait_s: float) -> int:
    """The most frames an attempt's evidence window can hold over frames captured at ``ts``: the frame
    window ``max_frames``, or, when the attempt waits for a blink (``[liveness] blink_wait_s`` = ``wait_s``),
    every frame up to the first whose span from the attempt's first frame reaches ``wait_s`` (the decider
    keeps gathering while the span is below it: ``AttemptDecider._may_wait_for_blink``), for an attempt
    starting at any frame."""
    t = np.asarray(ts, dtype=np.float64)
    if wait_s <= 0 or len(t) == 0:
        return int(max_frames)
    # frames k >= i with t[k] - t[i] < wait_s (still waiting after them), plus the frame that ends the wait
    below = np.searchsorted(t, t + wait_s - 1e-6, side="left") - np.arange(len(t))
    return int(max(max_frames, min(len(t), int(below.max()) + 1)))


def blink_windows(recs: Sequence[FrameRecord], params: AttemptParams, min_frames: int, min_iod_px: float,
                  drop: Callable[[float], bool] = lambda t: False, wait_s: float = 0.0
                  ) -> tuple[BlinkWindows, BlinkWindows]:
    """(EAR windows, appearance windows) of one source: every window of ``max(frames_per_attempt,
    min_frames)`` up to the evidence window's most frames (``window_frames``: ``max_frames_per_attempt``,
    or the frames spanning ``wait_s`` = ``[liveness] blink_wait_s`` at the presented frame rate) of
    consecutive scored face frames (the daemon's attempt window ``AttemptDecider.window``, for an attempt
    starting at any frame), frames ``drop`` rejects (excluded spans) cut out."""
    from firmware.vision.liveness.blink import eye_aspect_ratio
    from firmware.vision.liveness.geometry import inter_ocular

    runs = _runs(recs, params.face_lost_s, drop)
    ear = [np.array([eye_aspect_ratio(f.landmarks) for f in r]) for r in runs]
    app = [np.array([np.nan if f.openness is None else f.openness for f in r], dtype=np.float64) for r in runs]
    iod = [np.array([inter_ocular(f.landmarks) for f in r]) for r in runs]
    lo = max(params.frames_per_attempt, min_frames)
    hi = [window_frames([f.t for f in r], params.max_frames_per_attempt, wait_s) for r in runs]
    return (_signal_windows(ear, iod, lo, hi, min_iod_px), _signal_windows(app, iod, lo, hi, min_iod_px))


def blink_sources(sources: Sequence[Source], exclusions: Sequence[Exclusion]
                  ) -> tuple[list[Source], list[dict[str, str]]]:
    """The sources the blink calibration uses, and every source or span it leaves out with the reason:
    live = real videos (and frame folders that are real consecutive sequences); attack = real attack videos
    and attack frame folders; still bursts are synthetic (one photo plus noise) and never calibrate."""
    use, left = [], []
    for s in sources:
        if s.kind == "burst":
            left.append({"source": s.name, "reason": "still burst: a synthetic sequence (one photo + noise)"})
        elif s.kind == "frames" and s.live and not frames_are_a_sequence(s.frames):
            left.append({"source": s.name, "reason": "live frame folder whose frames are not consecutive "
                         "(taken apart in time): a dip between them is not a blink"})
        else:
            use.append(s)
    names = {s.name for s in sources}
    for x in exclusions:
        if x.source not in names:
            raise ValueError(f"exclusion manifest names {x.source!r}, which is not among the sources")
        left.append({"source": x.source, "span_s": f"{x.t_start_s}-{x.t_end_s}", "reason": x.reason})
    return use, left


def blink_stats(sources: Sequence[Source], records: dict[str, list[FrameRecord]], params: AttemptParams,
                min_frames: int, min_iod_px: float, exclusions: Sequence[Exclusion], wait_s: float = 0.0
                ) -> dict[str, tuple[BlinkWindows, BlinkWindows]]:
    """Per calibration source, its (EAR, appearance) windows (up to ``wait_s`` of frames when the attempt
    may wait for a blink that long), excluded spans cut out."""
    out = {}
    for s in sources:
        spans = [(x.t_start_s, x.t_end_s) for x in exclusions if x.source == s.name]
        out[s.name] = blink_windows(records[s.name], params, min_frames, min_iod_px,
                                    lambda t, sp=spans: any(a <= t < b for a, b in sp), wait_s)
    return out


def fit_blink(sources: Sequence[Source], stats: dict[str, tuple[BlinkWindows, BlinkWindows]],
              exclude_identity: str | None = None, margin: float = BLINK_MARGIN) -> dict[str, float]:
    """Conservative blink thresholds from the attack windows of every identity but ``exclude_identity``:
    ``margin`` x the largest relative dip at which any of them still shows a blink, per signal (so no
    calibration attack window shows one), capped below 1 (1.0 = the signal can never fire)."""
    att = [stats[s.name] for s in sources if not s.live and s.identity != exclude_identity and s.name in stats]
    out = {}
    for k, key in ((0, "blink_min_drop"), (1, "blink_min_drop_appearance")):
        st = np.concatenate([a[k].strength() for a in att]) if att else np.zeros(0)
        worst = float(st.max()) if len(st) else 0.0
        out[key] = float(min(worst * margin, 0.99)) if worst > 0 else 0.99
        out[key.replace("blink_min", "attack_max")] = worst
    out["n_attack_windows"] = float(sum(a[0].n for a in att))
    return out


def blink_rates(stats: tuple[BlinkWindows, BlinkWindows], t_ear: float, t_app: float) -> tuple[int, int]:
    """(windows showing a blink with either signal, windows) of one source at these thresholds."""
    hit = stats[0].blinks(t_ear) | stats[1].blinks(t_app)  # the same windows, in the same order
    return int(hit.sum()), int(len(hit))
