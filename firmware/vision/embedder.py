"""Face embedder: aligned 112×112 RGB uint8 -> L2-normalised float32 vector.

The model's input layout comes from the manifest: NHWC for the shipped MobileFaceNet, NCHW for
embedders converted from ONNX (e.g. an opt-in research model), so one class runs both."""

from __future__ import annotations

import numpy as np

from firmware.vision.errors import InvalidImageError, ModelLoadError
from firmware.vision.manifest import ModelSpec
from firmware.vision.runtime import TFLiteModel


def l2_normalize(v: np.ndarray, axis: int = -1) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    n = np.linalg.norm(v, axis=axis, keepdims=True)
    if not np.all(np.isfinite(n)) or np.any(n == 0):
        raise InvalidImageError("embedding has zero or non-finite norm")
    return v / n


class Embedder:
    """``embedder(aligned) -> (D,) float32 with unit L2 norm``.

    ``flip=True`` averages the embeddings of the crop and its mirror image (test-time augmentation;
    twice the inference time, more robust).
    """

    def __init__(self, model: TFLiteModel, spec: ModelSpec, flip: bool = False):
        self.model = model
        self.spec = spec
        self.flip = flip
        self.size = spec.input_size
        shape = model.inputs[0].shape
        self.nchw = spec.layout == "NCHW"
        want = (3, self.size[1], self.size[0]) if self.nchw else (self.size[1], self.size[0], 3)
        if shape[1:] != want:
            raise ModelLoadError(f"{spec.name}: input {shape} does not match manifest size {self.size}")
        self.batch = shape[0]
        self.dim = spec.output_size
        if model.outputs[0].shape[-1] != self.dim:
            raise ModelLoadError(f"{spec.name}: output {model.outputs[0].shape} != manifest size {self.dim}")

    def raw(self, aligned: np.ndarray) -> np.ndarray:
        """Un-normalised model output for one crop."""
        a = np.asarray(aligned)
        if a.shape != (self.size[1], self.size[0], 3) or a.dtype != np.uint8:
            raise InvalidImageError(f"embedder needs a {self.size[1]}x{self.size[0]}x3 uint8 crop, got "
                                    f"{a.shape} {a.dtype}")
        x = (a.astype(np.float32) - self.spec.norm_mean) / self.spec.norm_std
        if self.nchw:
            x = x.transpose(2, 0, 1)
        x = np.repeat(x[None], self.batch, axis=0)
        return self.model(x)[0][0]

    def __call__(self, aligned: np.ndarray) -> np.ndarray:
        v = self.raw(aligned)
        if self.flip:
            v = l2_normalize(v) + l2_normalize(self.raw(np.ascontiguousarray(aligned[:, ::-1])))
        return l2_normalize(v)
