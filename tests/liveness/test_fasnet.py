"""The learned PAD model (MiniFASNet pair): the authors' crop rule, the shipped TFLite files, tampering, and
(with ../shared) its verdicts on real live and replayed faces."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from firmware.vision.liveness import PadModelError
from firmware.vision.liveness.fasnet import FAS_SCALES, FasNet, crop_box, fas_crops
from firmware.vision.manifest import Manifest, default_models_dir


def test_crop_rule_is_the_authors():
    # centred box, scale fits: 2.7x about the centre, truncated to int
    assert crop_box((100, 100, 50, 60), 640, 480, 2.7) == (57, 49, 192, 211)
    # the scale is capped so the crop fits the frame ((h-1)/bh), then shifted back inside
    x0, y0, x1, y1 = crop_box((10, 10, 100, 100), 300, 200, 4.0)
    assert (x0, y0) == (0, 0) and y1 - y0 == 199 and x1 - x0 == 199
    x0, y0, x1, y1 = crop_box((250, 150, 40, 40), 300, 200, 2.7)
    assert x1 <= 300 and y1 <= 200 and x0 >= 0 and y0 >= 0
    with pytest.raises(Exception, match="positive"):
        crop_box((0, 0, 0, 10), 100, 100, 2.7)


def test_the_model_build_cuts_its_check_crops_with_the_devices_rule():
    """One place for the crop rule: the build step's TFLite-vs-PyTorch check (models/minifasnet.py) uses the
    firmware's ``crop_box`` and input size, so the check exercises the crops the door really feeds."""
    import importlib.util
    import sys

    from firmware.vision.liveness import fasnet

    path = Path(__file__).resolve().parents[2] / "models" / "minifasnet.py"
    spec = importlib.util.spec_from_file_location("minifasnet_build", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # (dataclasses look their module up)
    try:
        spec.loader.exec_module(mod)
    finally:
        del sys.modules[spec.name]
    assert mod.crop_box is fasnet.crop_box and mod.INPUT == fasnet.INPUT
    assert "def crop_box" not in path.read_text()
    crops = mod.verification_crops(mod.VARIANTS[0])
    assert crops.shape == (28, fasnet.INPUT, fasnet.INPUT, 3) and crops.dtype == np.float32


def test_crops_are_bgr_80x80_per_scale(astronaut):
    c = fas_crops(astronaut, (160, 40, 250, 160), FAS_SCALES)
    assert c.shape == (len(FAS_SCALES), 80, 80, 3) and c.dtype == np.uint8
    # BGR, as the authors fed cv2 images: a pure-red RGB frame is red in the last channel
    red = np.zeros((200, 200, 3), np.uint8)
    red[..., 0] = 255
    rc = fas_crops(red, (80, 80, 120, 120), FAS_SCALES)
    assert (rc[..., 2] == 255).all() and (rc[..., 0] == 0).all()


def test_shipped_models_load_and_score(astronaut):
    f = FasNet.from_manifest()
    assert f.scales == FAS_SCALES and f.names == ("minifasnet_v1se", "minifasnet_v2")
    p = f.real_probs(f.crops(astronaut, (160, 40, 250, 160)))
    assert p.shape == (2,) and ((p >= 0) & (p <= 1)).all()
    s = f.attack_score(f.crops(astronaut, (160, 40, 250, 160)))
    assert 0.0 <= s <= 1.0
    with pytest.raises(Exception, match="crops"):
        f.real_probs(np.zeros((1, 80, 80, 3), np.uint8))


def test_altered_model_is_refused(tmp_path):
    src = default_models_dir()
    for p in src.glob("*"):
        if p.is_file():
            shutil.copy(p, tmp_path / p.name)
    blob = bytearray((tmp_path / "minifasnet_v2.tflite").read_bytes())
    blob[len(blob) // 2] ^= 0x01
    (tmp_path / "minifasnet_v2.tflite").write_bytes(bytes(blob))
    with pytest.raises(PadModelError, match="integrity"):
        FasNet.from_manifest(Manifest.load(tmp_path))


def test_manifest_pins_both_models_with_provenance():
    m = Manifest.load()
    for name, scale in (("minifasnet_v2", 2.7), ("minifasnet_v1se", 4.0)):
        spec = m.spec(name)
        assert spec.role == "pad" and spec.license == "Apache-2.0" and spec.extra["crop_scale"] == scale
        assert spec.source["repository"] == "minivision-ai/Silent-Face-Anti-Spoofing" and len(spec.sha256) == 64
        build = m.data["models"][name]["build"]
        assert build["max_abs_diff_vs_pytorch"] < 1e-4 and build["argmax_agreement"] == 1.0


@pytest.mark.shared
def test_real_live_face_passes_and_phone_replay_of_it_fails(shared_faces):
    """Diagnostic on real footage: the same person live and replayed on a phone (first 20 frames each)."""
    import cv2

    from firmware.vision import FacePipeline

    pipe, f = FacePipeline.from_manifest(), FasNet.from_manifest()

    def scores(path: Path) -> list[float]:
        cap, out = cv2.VideoCapture(str(path)), []
        for _ in range(20):
            ok, bgr = cap.read()
            if not ok:
                break
            rgb = np.ascontiguousarray(bgr[:, :, ::-1])
            r = pipe.process(rgb, embed=False)
            if r.primary is not None:
                out.append(f.attack_score(f.crops(rgb, r.primary.detection.box)))
        cap.release()
        return out

    clips = shared_faces / "extras" / "liveness_video"
    live = scores(clips / "live" / "lestari15_real.mp4")
    screen = scores(clips / "attack" / "screen_lestari15_fake.mp4")
    assert len(live) >= 10 and len(screen) >= 10
    assert np.median(live) < 0.1 and np.median(screen) > 0.9
