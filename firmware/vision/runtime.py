"""TFLite runtime loader: ai-edge-litert first, tflite-runtime as the fallback.

The device needs only numpy and one of these two wheels; TensorFlow itself is a build-time tool
(models/build.py) and is never imported here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from firmware.vision.errors import ModelLoadError, RuntimeUnavailableError

#: Runtimes tried in order. Override with FACELOCK_TFLITE_RUNTIME=ai-edge-litert|tflite-runtime.
RUNTIMES = ("ai-edge-litert", "tflite-runtime")


def _import_runtime(name: str) -> Any:
    if name == "ai-edge-litert":
        from ai_edge_litert.interpreter import Interpreter  # type: ignore[import-not-found]

        return Interpreter
    if name == "tflite-runtime":
        from tflite_runtime.interpreter import Interpreter  # type: ignore[import-not-found]

        return Interpreter
    raise RuntimeUnavailableError(f"unknown TFLite runtime {name!r}; choose one of {', '.join(RUNTIMES)}")


def interpreter_class(preferred: str | None = None) -> tuple[str, Any]:
    """Return ``(runtime_name, Interpreter class)`` of the first runtime that imports."""
    preferred = preferred or os.environ.get("FACELOCK_TFLITE_RUNTIME") or None
    order = [preferred] if preferred else list(RUNTIMES)
    errors = []
    for name in order:
        try:
            return name, _import_runtime(name)
        except ImportError as exc:  # the wheel is absent or broken (e.g. tflite-runtime with numpy 2)
            errors.append(f"{name}: {exc}")
    raise RuntimeUnavailableError(
        "no TFLite runtime could be imported (" + "; ".join(errors) + "). "
        "Install ai-edge-litert (pip install ai-edge-litert) or tflite-runtime."
    )


@dataclass(frozen=True)
class TensorSpec:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: Any


class TFLiteModel:
    """A loaded TFLite model with fixed-shape input(s): ``model(x) -> list of output arrays``."""

    def __init__(self, path: str | Path, num_threads: int = 1, runtime: str | None = None):
        self.path = Path(path)
        self.runtime, cls = interpreter_class(runtime)
        if not isinstance(num_threads, int) or num_threads < 1:
            raise ModelLoadError(f"num_threads must be a positive int, got {num_threads!r}")
        try:
            self._interp = cls(model_path=str(self.path), num_threads=num_threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"{self.runtime} could not load {self.path.name}: {exc}") from exc
        self.inputs = [self._spec(d) for d in self._interp.get_input_details()]
        self.outputs = [self._spec(d) for d in self._interp.get_output_details()]
        self.num_threads = num_threads

    @staticmethod
    def _spec(d: dict) -> TensorSpec:
        return TensorSpec(int(d["index"]), str(d["name"]), tuple(int(v) for v in d["shape"]), d["dtype"])

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        if len(arrays) != len(self.inputs):
            raise ModelLoadError(f"{self.path.name} takes {len(self.inputs)} input(s), got {len(arrays)}")
        for spec, arr in zip(self.inputs, arrays, strict=True):
            arr = np.ascontiguousarray(arr, dtype=spec.dtype)
            if arr.shape != spec.shape:
                raise ModelLoadError(f"{self.path.name}: input shape {arr.shape} != model's {spec.shape}")
            self._interp.set_tensor(spec.index, arr)
        self._interp.invoke()
        return [np.array(self._interp.get_tensor(spec.index)) for spec in self.outputs]

    def op_names(self) -> list[str]:
        """Builtin op names of the model's graph (for tests: e.g. PRELU present after the rebuild)."""
        try:
            ops = self._interp._get_ops_details()  # noqa: SLF001 - public in all current runtimes
        except AttributeError:
            return []
        return [str(o["op_name"]) for o in ops]
