"""Runtime loader: real interpreters, the rebuilt embedder's graph, and a clear error without a runtime."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from firmware.vision.errors import ModelLoadError, RuntimeUnavailableError
from firmware.vision.runtime import TFLiteModel, interpreter_class


def test_a_runtime_is_available():
    name, cls = interpreter_class()
    assert name in ("ai-edge-litert", "tflite-runtime")


def test_no_runtime_gives_a_clear_error(monkeypatch):
    monkeypatch.delenv("FACELOCK_TFLITE_RUNTIME", raising=False)
    # a None entry in sys.modules makes the import fail as if the wheel were absent
    for mod in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter"):
        monkeypatch.setitem(sys.modules, mod, None)
    with pytest.raises(RuntimeUnavailableError, match="ai-edge-litert"):
        interpreter_class()


def test_unknown_runtime_name(monkeypatch):
    monkeypatch.setenv("FACELOCK_TFLITE_RUNTIME", "onnx")
    with pytest.raises(RuntimeUnavailableError, match="unknown"):
        interpreter_class()


def test_rebuilt_embedders_are_batch_one_with_real_prelu(manifest):
    for name, spec in manifest.models.items():
        if spec.role != "embedder":
            continue
        model = TFLiteModel(manifest.verified_path(name))
        assert model.inputs[0].shape == (1, 112, 112, 3)
        assert model.outputs[0].shape == (1, 192)
        ops = model.op_names()
        if ops:  # the runtime exposes the graph
            assert "PRELU" in ops and "ABS" not in ops


def test_wrong_input_shape_and_bad_model_file(manifest, tmp_path):
    model = TFLiteModel(manifest.verified_path("detector"))
    with pytest.raises(ModelLoadError, match="shape"):
        model(np.zeros((1, 64, 64, 3), np.float32))
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"this is not a flatbuffer" * 10)
    with pytest.raises(ModelLoadError):
        TFLiteModel(bad)
    with pytest.raises(ModelLoadError, match="num_threads"):
        TFLiteModel(manifest.verified_path("detector"), num_threads=0)
