"""``[vision]`` config section: validated keys, and a pipeline built from it."""

from __future__ import annotations

import pytest

from firmware.config_errors import ConfigError
from firmware.vision import FacePipeline, Reason
from firmware.vision.config import VisionConfig


def test_defaults_and_round_trip():
    cfg = VisionConfig.from_dict({"num_threads": 2, "operating_point": "strict", "min_face_px": 60})
    assert cfg.num_threads == 2 and cfg.quality().min_face_px == 60.0
    assert "blurred" in cfg.quality().enabled


@pytest.mark.parametrize("d,key", [
    ({"num_thread": 2}, "unknown key"),
    ({"num_threads": 0}, "num_threads"),
    ({"num_threads": True}, "num_threads"),
    ({"runtime": "onnx"}, "runtime"),
    ({"operating_point": "lenient"}, "operating_point"),
    ({"threshold": 2.0}, "threshold"),
    ({"gates": ["blurred", "sunburn"]}, "unknown gate"),
    ({"gates": "blurred"}, "gates"),
    ({"min_brightness": -1}, "min_brightness"),
    ({"max_yaw": float("nan")}, "max_yaw"),
    ({"flip": "yes"}, "flip"),
])
def test_bad_values_name_the_key(d, key):
    with pytest.raises(ConfigError, match=key):
        VisionConfig.from_dict(d)


def test_pipeline_from_config(astronaut):
    pipe = FacePipeline.from_config(VisionConfig(operating_point="strict", min_face_px=400.0))
    assert pipe.threshold() == pipe.embedder.spec.threshold("strict")
    assert pipe.process(astronaut).reason is Reason.FACE_TOO_SMALL  # policy from config applies
    pipe = FacePipeline.from_config(VisionConfig(threshold=0.9, margin=0.2, gates=()))
    assert pipe.threshold() == 0.9 and pipe.margin() == 0.2
    assert pipe.threshold("unlock") == pipe.embedder.spec.threshold("unlock")
