"""The controller's pluggable stages: face analysis, liveness, matching, event sink.

Why protocols: the face pipeline, liveness, template store and telemetry are written in parallel and
can land in any order.  The controller depends only on these small interfaces; the adapters below
bind them to the real packages when those import, and the daemon falls into FAULT (never into a
fake "recognised") when a required stage is missing: ``build_stages`` raises
:class:`StageUnavailableError` with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from firmware.errors import FaceLockError
from firmware.hw.camera.base import Frame

log = logging.getLogger("facelock.stages")


class StageUnavailableError(FaceLockError):
    """A stage the lock needs (face pipeline, models, liveness, templates) cannot be built."""


@dataclass
class Observation:
    """What one frame told us.  ``payload`` is stage-private data for liveness (landmarks etc.)."""

    frame_index: int
    ts: float
    face: bool  # a face was detected
    usable: bool  # quality gates passed and an embedding exists
    embedding: np.ndarray | None = None
    reason: str = ""
    payload: Any = None


@dataclass(frozen=True)
class LivenessVerdict:
    live: bool
    reason: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    attack: bool = False  # some check FAILED (evidence of an attack), not merely "no evidence yet"


@dataclass(frozen=True)
class MatchVerdict:
    user_id: str | None  # set only when accepted
    score: float
    reason: str


class FaceAnalyzer(Protocol):
    def analyze(self, frame: Frame) -> Observation: ...


class LivenessChecker(Protocol):
    min_frames: int

    def check(self, observations: Sequence[Observation]) -> LivenessVerdict: ...


class Matcher(Protocol):
    def match(self, observations: Sequence[Observation]) -> MatchVerdict: ...

    def __len__(self) -> int: ...


class EventSink(Protocol):
    def emit(self, type_: str, severity: str | None = None, user_id: str | None = None,
             reason: str | None = None, scores: dict[str, float] | None = None, **data: Any) -> None: ...

    def close(self) -> None: ...


@dataclass
class Stages:
    analyzer: FaceAnalyzer
    matcher: Matcher
    liveness: LivenessChecker | None = None  # None only when the liveness package is absent
    #: user id -> audit pseudonym (firmware.pseudonym): what the audit log records instead of the id
    pseudonyms: dict[str, str] = field(default_factory=dict)
    #: user id -> windows stored with the template by `facelock policy set` (checked with [policy.schedule])
    schedules: dict[str, tuple[Any, ...]] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- adapters
class VisionAnalyzer:
    """firmware.vision.FacePipeline -> Observation."""

    def __init__(self, pipeline: Any):
        self.pipeline = pipeline

    def analyze(self, frame: Frame) -> Observation:
        res = self.pipeline.process(frame.rgb)
        face = res.primary is not None
        payload = None
        if face:
            try:
                from firmware.vision.liveness.adapter import frame_from_result

                payload = frame_from_result(res, t=frame.ts, pipeline=self.pipeline)
            except ImportError:
                payload = None
        return Observation(frame.index, frame.ts, face, bool(res.ok and res.embedding is not None),
                           res.embedding, str(getattr(res.reason, "value", res.reason)), payload)


class PolicyLiveness:
    """firmware.vision.liveness.LivenessPolicy -> LivenessVerdict."""

    def __init__(self, policy: Any):
        self.policy = policy
        self.min_frames = int(getattr(policy.config, "min_frames", 3))

    def check(self, observations: Sequence[Observation]) -> LivenessVerdict:
        import dataclasses

        pad = getattr(self.policy, "pad_model", None)
        for o in observations:  # score each frame's PAD once, not on every re-check of a growing attempt
            f = o.payload
            if f is not None and pad is not None and getattr(f, "pad_score", 0) is None and f.face is not None:
                o.payload = dataclasses.replace(f, pad_score=float(pad.score(f.face)))
        frames = [o.payload for o in observations if o.payload is not None]
        if len(frames) < self.min_frames:
            return LivenessVerdict(False, f"too_few_frames:{len(frames)}")
        d = self.policy.decide(frames)
        scores = {k: float(v) for k, v in dict(d.scores).items() if isinstance(v, (int, float))}
        reason = "live" if d.live else str(getattr(d, "reason", "") or "spoof_suspected")
        from firmware.vision.liveness import Verdict

        attack = any(c.verdict is Verdict.FAIL for c in d.checks.values())
        return LivenessVerdict(bool(d.live), reason, scores, attack)


class GalleryMatcher:
    """firmware.vision.Gallery: the mean of the attempt's usable embeddings, matched 1:N."""

    def __init__(self, gallery: Any, threshold: float, margin: float = 0.05):
        self.gallery = gallery
        self.threshold = float(threshold)
        self.margin = float(margin)

    def __len__(self) -> int:
        return len(self.gallery)

    def remove(self, user_id: str) -> bool:
        """Forget a user at once (a remote revoke); False when they were not in the gallery."""
        if user_id not in self.gallery.user_ids:
            return False
        self.gallery.remove(user_id)
        return True

    def match(self, observations: Sequence[Observation]) -> MatchVerdict:
        embs = [o.embedding for o in observations if o.usable and o.embedding is not None]
        if not embs:
            return MatchVerdict(None, -1.0, "no_usable_face")
        e = np.mean(np.stack(embs), axis=0)
        r = self.gallery.match(e, self.threshold, self.margin)
        return MatchVerdict(r.user_id if r.accepted else None, float(r.score), str(r.reason))


class NullSink:
    """Used only when the telemetry package is absent: events go to the log (the audit log still records)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, type_: str, severity: str | None = None, user_id: str | None = None,
             reason: str | None = None, scores: dict[str, float] | None = None, **data: Any) -> None:
        self.events.append({"type": type_, "severity": severity, "user_id": user_id, "reason": reason})
        del self.events[:-100]
        log.info("event %s reason=%s user=%s", type_, reason, user_id)

    def close(self) -> None:
        pass


class OutboxSink:
    """Events into the durable telemetry outbox (firmware.telemetry), which the MQTT client publishes."""

    def __init__(self, path: Path, device_id: str):
        from firmware.telemetry.events import make_event
        from firmware.telemetry.outbox import Outbox

        self._make = make_event
        self.outbox = Outbox(path)
        self.device_id = device_id

    def emit(self, type_: str, severity: str | None = None, user_id: str | None = None,
             reason: str | None = None, scores: dict[str, float] | None = None, **data: Any) -> None:
        clean = {k: v for k, v in data.items() if v is None or isinstance(v, (str, int, float, bool))}
        ev = self._make(self.device_id, type_, severity, user_id, reason,
                        {k: float(v) for k, v in (scores or {}).items()}, **clean)
        self.outbox.put(ev)

    def close(self) -> None:
        self.outbox.close()


def open_event_sink(data_dir: Path, device_id: str, enabled: bool = True) -> EventSink:
    if enabled:
        try:
            return OutboxSink(Path(data_dir) / "outbox.db", device_id)
        except ImportError as exc:
            log.warning("telemetry package not available (%s): events go to the log only", exc)
    return NullSink()


# ------------------------------------------------------------------------------------- construction
def build_pipeline(num_threads: int = 1, vision: Any = None) -> Any:
    """The real face pipeline (models sha256-checked), or StageUnavailableError saying why not.

    ``vision``: the ``[vision]`` config section (firmware.vision.config.VisionConfig); without one the
    manifest's defaults are used with ``num_threads``.
    """
    try:
        from firmware.vision import FacePipeline
    except ImportError as exc:
        raise StageUnavailableError(f"face pipeline not available: {exc}") from exc
    try:
        if vision is not None:
            return FacePipeline.from_config(vision)
        return FacePipeline.from_manifest(num_threads=num_threads)
    except FaceLockError as exc:
        raise StageUnavailableError(f"face pipeline cannot load its models: {exc}") from exc


def build_liveness(section: Any, mode: str = "required") -> LivenessChecker | None:
    """Liveness per ``[lock] liveness``: "required" (default: anything missing is a FAULT), "auto" (used
    when its package and calibration files are installed; a file that exists but fails its check is
    still a FAULT), or "off" (development only).

    Why "required" by default: deleting a liveness file must not quietly turn anti-spoofing off.
    """
    if mode == "off":
        log.warning("liveness is OFF by config: a photo of an enrolled user may unlock")
        return None
    try:
        from firmware.vision.liveness import LivenessConfig, LivenessPolicy
    except ImportError as exc:
        if mode == "auto":
            log.warning("liveness package not installed: attempts are decided without liveness")
            return None
        raise StageUnavailableError(f"liveness required but not installed: {exc}") from exc
    try:
        return PolicyLiveness(LivenessPolicy.from_files(section or LivenessConfig()))
    except FaceLockError as exc:
        cause = exc.__cause__
        if mode == "auto" and isinstance(cause, FileNotFoundError):
            log.warning("liveness calibration not installed (%s): attempts are decided without liveness", exc)
            return None
        raise StageUnavailableError(f"liveness cannot load: {exc}") from exc


def open_templates(data_dir: Path, sections: dict[str, Any]) -> Any:
    """The protected template store (firmware.templates) over the configured keystore."""
    try:
        from firmware.keystore import KeystoreConfig, open_keystore
        from firmware.templates import TemplateStore
    except ImportError as exc:
        raise StageUnavailableError(f"template store not available: {exc}") from exc
    try:
        ks = open_keystore(sections.get("keystore") or KeystoreConfig(), data_dir)
        return TemplateStore(data_dir, ks)
    except FaceLockError as exc:
        raise StageUnavailableError(f"template store cannot be opened: {exc}") from exc


@dataclass
class Enrolled:
    """What the lock needs of the enrolled users: the gallery (memory only), pseudonyms and schedules."""

    gallery: Any
    pseudonyms: dict[str, str]
    schedules: dict[str, tuple[Any, ...]]


def load_enrolled(data_dir: Path, sections: dict[str, Any], dim: int) -> Enrolled:
    """Active users' templates (decrypted into memory only, never written back in the clear), their audit
    pseudonyms and their stored schedules."""
    from firmware.lock.policy import schedules_from_policies
    from firmware.pseudonym import audit_pseudonym
    from firmware.vision import Gallery

    gallery = Gallery(dim=dim)
    store = open_templates(data_dir, sections)
    try:
        refs = {}
        for c in store.candidates():
            gallery.enroll(c.user_id, c.embeddings)
            refs[c.user_id] = audit_pseudonym(store.keystore, c.user_id)
        schedules = schedules_from_policies({u.user_id: u.policy for u in store.list(include_revoked=False)})
    except FaceLockError as exc:
        raise StageUnavailableError(f"template store cannot be read: {exc}") from exc
    finally:
        store.close()
    return Enrolled(gallery, refs, schedules)


def load_gallery(data_dir: Path, sections: dict[str, Any], dim: int) -> Any:
    """Enrolled users' templates, decrypted into memory only (never written back in the clear)."""
    return load_enrolled(data_dir, sections, dim).gallery


def revoke_user(data_dir: Path, sections: dict[str, Any], user_id: str) -> None:
    """Mark a user revoked in the template store (a remote ``revoke-user``); their data stays until purge."""
    store = open_templates(data_dir, sections)
    try:
        store.revoke(user_id)
    finally:
        store.close()


def build_stages(data_dir: Path, sections: dict[str, Any], num_threads: int = 1,
                 gallery: Any = None, margin: float | None = None, liveness: str = "required") -> Stages:
    """Everything a decision needs; raises StageUnavailableError (-> FAULT) if anything is missing.

    The ``[vision]`` section (when present) configures the pipeline, its operating point / threshold
    override and the 1:N margin; otherwise the manifest's calibrated values are used.
    """
    pipe = build_pipeline(num_threads, sections.get("vision"))
    refs: dict[str, str] = {}
    schedules: dict[str, tuple[Any, ...]] = {}
    if gallery is None:
        enrolled = load_enrolled(data_dir, sections, int(pipe.embedder_spec.output_size))
        gallery, refs, schedules = enrolled.gallery, enrolled.pseudonyms, enrolled.schedules
    try:
        threshold = pipe.threshold()
    except FaceLockError as exc:
        raise StageUnavailableError(f"no calibrated match threshold: {exc}") from exc
    return Stages(VisionAnalyzer(pipe), GalleryMatcher(gallery, threshold, pipe.margin() if margin is None else margin),
                  build_liveness(sections.get("liveness"), liveness), refs, schedules)
