"""BlazeFace face detector (MediaPipe short/full range): anchors, score sigmoid, weighted NMS, keypoints.

Decoding follows MediaPipe's SsdAnchorsCalculator and TfLiteTensorsToDetectionsCalculator; the anchor
options live in the model manifest (``extra.anchors``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from firmware.vision.errors import ModelLoadError
from firmware.vision.manifest import ModelSpec
from firmware.vision.runtime import TFLiteModel

#: BlazeFace keypoint order. "Right"/"left" are the subject's: the subject's right eye is on the image's left.
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear", "left_ear")
RAW_SCORE_LIMIT = 80.0


@dataclass
class Detection:
    """A face in image pixel coordinates."""

    box: np.ndarray  # (4,) float32: x0, y0, x1, y1
    score: float
    keypoints: np.ndarray  # (6, 2) float32, order KEYPOINT_NAMES
    extra: dict = field(default_factory=dict)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)


def generate_anchors(input_size: int, strides: list[int], interpolated_scale_aspect_ratio: float = 1.0,
                     offset: float = 0.5) -> np.ndarray:
    """Anchor centres (N, 2) in [0, 1] as MediaPipe's SsdAnchorsCalculator with fixed_anchor_size."""
    anchors = []
    layer = 0
    n = len(strides)
    while layer < n:
        last = layer
        repeats = 0
        while last < n and strides[last] == strides[layer]:
            last += 1
            repeats += 2 if interpolated_scale_aspect_ratio == 1.0 else 1
        fm = int(np.ceil(input_size / strides[layer]))
        for y in range(fm):
            for x in range(fm):
                anchors.extend([((x + offset) / fm, (y + offset) / fm)] * repeats)
        layer = last
    return np.asarray(anchors, dtype=np.float32)


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    a = (box[2] - box[0]) * (box[3] - box[1])
    b = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(a + b - inter, 1e-9)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou_threshold: float,
                 max_faces: int) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's WEIGHTED non-max suppression: overlapping candidates are score-weighted averaged."""
    order = np.argsort(-scores)
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    alive = np.ones(len(scores), dtype=bool)
    out = []
    for i in range(len(scores)):
        if not alive[i]:
            continue
        overlap = iou_one_to_many(boxes[i], boxes) > iou_threshold
        members = overlap & alive
        members[i] = True
        w = scores[members][:, None]
        box = (boxes[members] * w).sum(0) / w.sum()
        kps = (keypoints[members] * w[:, :, None]).sum(0) / w.sum()
        out.append((box.astype(np.float32), kps.astype(np.float32), float(scores[i])))
        alive &= ~members
        if len(out) >= max_faces:
            break
    return out


class BlazeFaceDetector:
    """``detector(rgb) -> list[Detection]`` sorted by score, boxes/keypoints in the frame's pixels."""

    def __init__(self, model: TFLiteModel, spec: ModelSpec, min_score: float = 0.5,
                 iou_threshold: float = 0.3, max_faces: int = 10):
        import cv2  # noqa: F401 - fail early if OpenCV is missing

        self.model = model
        self.spec = spec
        self.size = spec.input_size[0]
        a = spec.extra.get("anchors") or {}
        try:
            self.anchors = generate_anchors(self.size, list(a["strides"]),
                                            float(a.get("interpolated_scale_aspect_ratio", 1.0)),
                                            float(a.get("offset", 0.5)))
        except KeyError as exc:
            raise ModelLoadError(f"manifest entry {spec.name!r} lacks extra.anchors.strides") from exc
        shapes = [o.shape for o in model.outputs]
        try:
            self._reg = next(i for i, s in enumerate(shapes) if s[-1] == 16)
            self._cls = next(i for i, s in enumerate(shapes) if s[-1] == 1)
        except StopIteration as exc:
            raise ModelLoadError(f"{spec.name}: unexpected output shapes {shapes}") from exc
        if shapes[self._reg][1] != len(self.anchors):
            raise ModelLoadError(f"{spec.name}: {shapes[self._reg][1]} boxes but {len(self.anchors)} anchors")
        self.min_score = min_score
        self.iou_threshold = iou_threshold
        self.max_faces = max_faces

    def preprocess(self, rgb: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        """Letterbox to the model's square input. Returns (tensor, scale, pad_x, pad_y)."""
        import cv2

        h, w = rgb.shape[:2]
        scale = self.size / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(rgb, (nw, nh), interpolation=interp)
        canvas = np.zeros((self.size, self.size, 3), dtype=np.float32)
        px, py = (self.size - nw) // 2, (self.size - nh) // 2
        canvas[py:py + nh, px:px + nw] = resized
        x = (canvas - self.spec.norm_mean) / self.spec.norm_std
        x[:py], x[py + nh:], x[:, :px], x[:, px + nw:] = 0.0, 0.0, 0.0, 0.0  # padding = mid-grey
        return x[None], scale, float(px), float(py)

    def __call__(self, rgb: np.ndarray) -> list[Detection]:
        tensor, scale, px, py = self.preprocess(rgb)
        outs = self.model(tensor)
        raw = outs[self._reg][0].astype(np.float32)
        logits = np.clip(outs[self._cls][0, :, 0].astype(np.float32), -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)
        scores = 1.0 / (1.0 + np.exp(-logits))
        keep = scores >= self.min_score
        if not keep.any():
            return []
        raw, scores, anchors = raw[keep], scores[keep], self.anchors[keep]
        s = float(self.size)
        cx = raw[:, 0] / s + anchors[:, 0]
        cy = raw[:, 1] / s + anchors[:, 1]
        bw, bh = raw[:, 2] / s, raw[:, 3] / s
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        kps = raw[:, 4:16].reshape(-1, 6, 2) / s + anchors[:, None, :]
        valid = (bw > 0) & (bh > 0)
        boxes, kps, scores = boxes[valid], kps[valid], scores[valid]
        dets = []
        for box, kp, score in weighted_nms(boxes, kps, scores, self.iou_threshold, self.max_faces):
            # from the letterboxed [0,1] square back to frame pixels
            box_px = (box * s - np.array([px, py, px, py], dtype=np.float32)) / scale
            kp_px = (kp * s - np.array([px, py], dtype=np.float32)) / scale
            dets.append(Detection(box_px.astype(np.float32), score, kp_px.astype(np.float32)))
        return dets
