"""The face pipeline: frame -> detect -> (mesh) -> align -> quality gates -> embed.

    pipe = FacePipeline.from_manifest()            # models/manifest.json, sha256-checked
    res = pipe.process(rgb)                         # FrameResult
    if res.ok: res.embedding                        # (192,) float32, unit norm
    else: res.reason, res.reason.describe()         # why the frame was rejected
    res.primary.mesh.eye("left")                    # 468-point mesh for liveness
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from firmware.vision.align import TEMPLATE_112, align_face
from firmware.vision.config import VisionConfig
from firmware.vision.detector import BlazeFaceDetector, Detection
from firmware.vision.embedder import Embedder
from firmware.vision.image import validate_rgb
from firmware.vision.imgops import pad_edge
from firmware.vision.landmarks import FaceLandmarker, FaceMesh
from firmware.vision.manifest import Manifest, ModelSpec
from firmware.vision.quality import QualityConfig, QualityReport, Reason, assess
from firmware.vision.runtime import TFLiteModel

DEFAULT_FLIP = True  # mirror test-time augmentation unless the calibration record says otherwise


@dataclass
class FaceResult:
    detection: Detection
    quality: QualityReport
    mesh: FaceMesh | None = None
    aligned: np.ndarray | None = None  # 112×112×3 uint8, in memory only: never persist it
    embedding: np.ndarray | None = None  # (D,) float32 unit vector, or None when gated out
    alignment: str = ""  # "mesh-5pt" | "blazeface-4pt"
    detector: str = ""  # which detector/strategy found the face


@dataclass
class FrameResult:
    reason: Reason
    faces: list[FaceResult] = field(default_factory=list)  # primary (largest) face first
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.reason is Reason.OK

    @property
    def primary(self) -> FaceResult | None:
        return self.faces[0] if self.faces else None

    @property
    def embedding(self) -> np.ndarray | None:
        return self.faces[0].embedding if self.ok and self.faces else None


class FacePipeline:
    def __init__(self, detector: BlazeFaceDetector, embedder: Embedder,
                 landmarker: FaceLandmarker | None = None, fallback_detector: BlazeFaceDetector | None = None,
                 quality: QualityConfig | None = None, pad_retry: bool = True, manifest: Manifest | None = None,
                 confirm: int = 2):
        self.detector = detector
        self.fallback_detector = fallback_detector
        self.landmarker = landmarker
        self.embedder = embedder
        self.quality = quality or QualityConfig()
        self.pad_retry = pad_retry
        self.manifest = manifest
        self.confirm = confirm
        self.config: VisionConfig | None = None

    @classmethod
    def from_manifest(cls, manifest: Manifest | str | Path | None = None, embedder: str = "embedder",
                      num_threads: int = 1, quality: QualityConfig | None = None, use_landmarks: bool = True,
                      use_fallback: bool = True, flip: bool | None = None, runtime: str | None = None,
                      overlay: str | Path | None = None) -> FacePipeline:
        """Load every model named by the manifest (sha256-checked). ``embedder`` = model name or role.

        ``overlay``: where opt-in research models are installed (default ``<data_dir>/models``); one that
        is configured but absent raises ``ResearchModelNotInstalledError``, never falls back.

        ``flip=None`` uses the setting the embedder's thresholds were calibrated with (mirror test-time
        augmentation on by default: +0.2-0.3 % LFW-a accuracy for a second embedder run).
        """
        m = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest, overlay=overlay)

        def load(name: str) -> tuple[TFLiteModel, ModelSpec]:
            spec = m.spec(name)
            return TFLiteModel(m.verified_path(name), num_threads=num_threads, runtime=runtime), spec

        det = BlazeFaceDetector(*load("detector"))
        fb = BlazeFaceDetector(*load("detector_fallback")) if use_fallback and "detector_fallback" in m.defaults \
            else None
        lm = FaceLandmarker(*load("landmarks")) if use_landmarks else None
        model, spec = load(embedder)
        if flip is None:
            flip = bool(spec.thresholds.get("calibration", {}).get("flip_augmentation", DEFAULT_FLIP))
        emb = Embedder(model, spec, flip=flip)
        return cls(det, emb, lm, fb, quality, manifest=m)

    @classmethod
    def from_config(cls, cfg: VisionConfig | None = None, overlay: str | Path | None = None) -> FacePipeline:
        """Build from the ``[vision]`` config section (threshold/margin overrides are applied too);
        ``overlay`` = the site's research-model dir (``<data_dir>/models``)."""
        cfg = cfg or VisionConfig()
        pipe = cls.from_manifest(cfg.manifest or None, embedder=cfg.embedder or "embedder",
                                 num_threads=cfg.num_threads, quality=cfg.quality(),
                                 use_landmarks=cfg.landmarks, use_fallback=cfg.fallback_detector, flip=cfg.flip,
                                 runtime=cfg.runtime or None, overlay=overlay)
        pipe.config = cfg
        return pipe

    @property
    def embedder_spec(self) -> ModelSpec:
        return self.embedder.spec

    def threshold(self, operating_point: str | None = None, enrolled: int = 0) -> float:
        """Cosine threshold: the config override; else, with ``vision.stranger_far``, the point of the
        calibrated FAR curve for that per-attempt promise against max(gallery_size, ``enrolled``)
        people; else the manifest's calibrated value for the operating point ("unlock" = per-comparison
        FAR 1e-4 held out of sample, "strict" = 1e-5)."""
        from firmware.vision.matcher import per_comparison_far

        cfg = getattr(self, "config", None)
        if cfg is not None and operating_point is None:
            if cfg.threshold is not None:
                return float(cfg.threshold)
            if cfg.stranger_far is not None:
                n = max(cfg.gallery_size, int(enrolled))
                return self.embedder.spec.threshold_for_far(per_comparison_far(cfg.stranger_far, n))
        op = operating_point or (cfg.operating_point if cfg is not None else "unlock")
        return self.embedder.spec.threshold(op)

    def margin(self) -> float:
        """1:N margin between the best and second-best identity (config, else manifest, else 0.05)."""
        cfg = getattr(self, "config", None)
        if cfg is not None and cfg.margin is not None:
            return float(cfg.margin)
        return float(self.embedder.spec.thresholds.get("margin", 0.05))

    # ------------------------------------------------------------------------------------------ detect
    def _strategies(self, rgb: np.ndarray):
        yield self.detector.spec.name, lambda: self.detector(rgb)
        if self.pad_retry:
            # a face filling the whole frame (a close-up crop) is outside the short-range model's
            # training distribution: shrink it by padding the frame with its border pixels
            def padded() -> list[Detection]:
                p = max(rgb.shape[:2]) // 4
                dets = self.detector(pad_edge(rgb, p))  # = cv2.copyMakeBorder(BORDER_REPLICATE), bit for bit
                for d in dets:
                    d.box -= p
                    d.keypoints -= p
                return dets

            yield self.detector.spec.name + "+pad", padded
        if self.fallback_detector is not None:
            yield self.fallback_detector.spec.name, lambda: self.fallback_detector(rgb)

    def find_faces(self, rgb: np.ndarray, all_meshes: bool = False
                   ) -> tuple[list[tuple[Detection, FaceMesh | None]], str]:
        """Faces, largest first, each with its mesh, and the detection strategy that found them.

        With a landmark model, a detection counts as a face only when the mesh model confirms it
        (face presence >= 0.5): this rejects animal faces and face-like patterns that BlazeFace scores
        above 0.5.  Only the largest ``confirm`` detections are checked; the rest are kept unconfirmed
        (they still count for the several-faces gate).  Strategies: short range, short range on a
        padded frame, full range; the first with a confirmed face wins.
        """
        for how, run in self._strategies(rgb):
            dets = sorted(run(), key=lambda d: d.area, reverse=True)
            if not dets:
                continue
            if self.landmarker is None:
                return [(d, None) for d in dets], how
            faces: list[tuple[Detection, FaceMesh | None]] = []
            for i, d in enumerate(dets):
                if i < self.confirm or all_meshes:
                    mesh = self.landmarker(rgb, d)
                    if mesh is not None:
                        faces.append((d, mesh))
                elif faces:
                    faces.append((d, None))
            if faces:
                return faces, how
        return [], ""

    # --------------------------------------------------------------------------------------- process
    def process(self, rgb: np.ndarray, embed: bool = True, all_meshes: bool = False) -> FrameResult:
        """Run the whole pipeline on one RGB frame. Bad arrays raise InvalidImageError."""
        rgb = validate_rgb(rgb)
        t: dict[str, float] = {}
        t0 = time.perf_counter()
        found, how = self.find_faces(rgb, all_meshes)
        t["detect+landmarks"] = (time.perf_counter() - t0) * 1e3
        if not found:
            return FrameResult(Reason.NO_FACE, [], t)
        dets = [d for d, _ in found]
        faces = []
        for i, (det, mesh) in enumerate(found):
            if i > 0 and mesh is None:
                faces.append(FaceResult(det, assess(rgb.shape, dets, i, None, self.quality), detector=how))
                continue
            t1 = time.perf_counter()
            aligned, _ = align_face(rgb, keypoints=det.keypoints, mesh=mesh.points if mesh else None)
            t["align"] = t.get("align", 0.0) + (time.perf_counter() - t1) * 1e3
            q = assess(rgb.shape, dets, i, aligned, self.quality)
            faces.append(FaceResult(det, q, mesh, aligned, None, "mesh-5pt" if mesh else "blazeface-4pt", how))
        primary = faces[0]
        if primary.quality.ok and embed:
            t1 = time.perf_counter()
            primary.embedding = self.embedder(primary.aligned)
            t["embed"] = (time.perf_counter() - t1) * 1e3
        t["total"] = (time.perf_counter() - t0) * 1e3
        return FrameResult(primary.quality.reason, faces, t)

    def embed_aligned(self, aligned: np.ndarray) -> np.ndarray:
        return self.embedder(aligned)


__all__ = ["FacePipeline", "FrameResult", "FaceResult", "TEMPLATE_112"]
