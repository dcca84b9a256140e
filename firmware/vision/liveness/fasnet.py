"""The learned presentation-attack model: MiniFASNetV2 (2.7x crop) + MiniFASNetV1SE (4.0x crop).

Why these crops: the authors trained each network on a crop of a fixed multiple of the face detector's box
(the 4.0x one sees the phone bezel, the hands holding a print and the background around the face; the 2.7x
one the face and its surround), resized to 80x80, BGR, pixel values not scaled.  Feeding anything else
(e.g. the embedder's tight aligned crop) measurably destroys the model, so the crop rule is reproduced here
exactly (``crop_box``: the box scaled about its centre, the scale capped so the crop fits the frame, shifted
back inside, truncated to int; bilinear resize).  The two softmax outputs are averaged as in the authors'
demo; class 1 is "real".  The score the policy uses is the attack score ``1 - p_real`` (same convention
as the texture model: higher = more likely an attack).

The models are TFLite files rebuilt by ``make models`` (models/minifasnet.py), sha256-pinned in
models/manifest.json (role ``pad``) and loaded through the same verified path as the face models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware.errors import FaceLockError
from firmware.vision.liveness.errors import LivenessInputError, PadModelError

INPUT = 80
REAL_CLASS = 1
#: Crop scale of each model, in the order FasNet runs them (manifest names sorted): V1SE 4.0x, V2 2.7x.
#: The manifest's ``extra.crop_scale`` must agree (checked at load).
FAS_SCALES = (4.0, 2.7)


def crop_box(box_xywh: Sequence[float], src_w: int, src_h: int, scale: float) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the authors' crop of ``scale`` x the box (x, y, w, h) in a src_w x src_h frame."""
    x, y, bw, bh = (float(v) for v in box_xywh)
    if not (bw > 0 and bh > 0) or not np.isfinite([x, y, bw, bh]).all():
        raise LivenessInputError(f"face box must have a positive finite size, got {tuple(box_xywh)}")
    scale = min((src_h - 1) / bh, (src_w - 1) / bw, scale)
    nw, nh = bw * scale, bh * scale
    cx, cy = x + bw / 2, y + bh / 2
    x0, y0, x1, y1 = cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2
    if x0 < 0:
        x1 -= x0
        x0 = 0.0
    if y0 < 0:
        y1 -= y0
        y0 = 0.0
    if x1 > src_w:
        x0 -= x1 - src_w
        x1 = float(src_w)
    if y1 > src_h:
        y0 -= y1 - src_h
        y1 = float(src_h)
    return int(x0), int(y0), int(x1), int(y1)


def fas_crops(rgb: np.ndarray, box_xyxy: Sequence[float], scales: Sequence[float]) -> np.ndarray:
    """(len(scales), 80, 80, 3) uint8 BGR crops of an RGB frame around a detector box (x0, y0, x1, y1)."""
    import cv2

    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    out = []
    for s in scales:
        a, b, c, d = crop_box((x0, y0, x1 - x0, y1 - y0), w, h, s)
        patch = rgb[max(b, 0):max(d, b + 1), max(a, 0):max(c, a + 1), ::-1]
        if patch.size == 0:
            raise LivenessInputError("face box lies outside the frame")
        out.append(cv2.resize(np.ascontiguousarray(patch), (INPUT, INPUT), interpolation=cv2.INTER_LINEAR))
    return np.stack(out)


@dataclass
class FasNet:
    """The MiniFASNet pair: ``real_probs(crops)`` per model, ``attack_score(crops)`` = 1 - their mean."""

    models: tuple[object, ...]  # firmware.vision.runtime.TFLiteModel, one per scale
    scales: tuple[float, ...]
    names: tuple[str, ...]

    @classmethod
    def from_manifest(cls, manifest: object = None, num_threads: int = 1, runtime: str | None = None) -> FasNet:
        from firmware.vision.manifest import Manifest
        from firmware.vision.runtime import TFLiteModel

        try:
            m = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest)  # type: ignore[arg-type]
            names = sorted(n for n, s in m.models.items() if s.role == "pad")
            if not names:
                raise PadModelError("the model manifest has no MiniFASNet (role 'pad') entry: run `make models`")
            models, scales = [], []
            for n in names:
                spec = m.spec(n)
                if spec.input_size != (INPUT, INPUT) or spec.color != "BGR":
                    raise PadModelError(f"{n}: expected an 80x80 BGR input, manifest says {spec.input_size} "
                                        f"{spec.color}")
                models.append(TFLiteModel(m.verified_path(n), num_threads=num_threads, runtime=runtime))
                scales.append(float(spec.extra["crop_scale"]))
            if tuple(scales) != FAS_SCALES:
                raise PadModelError(f"MiniFASNet crop scales {tuple(scales)} != the firmware's {FAS_SCALES}")
        except PadModelError:
            raise
        except (FaceLockError, KeyError, TypeError, ValueError) as exc:
            raise PadModelError(f"MiniFASNet models cannot be loaded: {exc}") from exc
        return cls(tuple(models), tuple(scales), tuple(names))

    def crops(self, rgb: np.ndarray, box_xyxy: Sequence[float]) -> np.ndarray:
        return fas_crops(rgb, box_xyxy, self.scales)

    def real_probs(self, crops: np.ndarray) -> np.ndarray:
        c = np.asarray(crops)
        if c.shape != (len(self.models), INPUT, INPUT, 3):
            raise LivenessInputError(f"expected {len(self.models)} crops of 80x80x3, got shape {c.shape}")
        out = []
        for model, crop in zip(self.models, c, strict=True):
            p = model(crop[None].astype(np.float32))[0][0]  # type: ignore[operator]
            out.append(float(p[REAL_CLASS]))
        return np.asarray(out)

    def attack_score(self, crops: np.ndarray) -> float:
        return float(1.0 - self.real_probs(crops).mean())


def default_manifest_path() -> Path:
    from firmware.vision.manifest import MANIFEST_NAME, default_models_dir

    return default_models_dir() / MANIFEST_NAME
