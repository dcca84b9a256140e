"""Config validation (names the key and the reason) and the camera backends' contracts."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from firmware.config import CameraConfig, config_from_dict, load_config
from firmware.config_errors import ConfigError
from firmware.hw.camera import CameraGoneError, CameraStalledError, CameraUnavailableError, open_camera
from firmware.hw.camera.opencv_camera import OpenCVCamera
from firmware.hw.camera.picamera import PiCamera
from firmware.hw.camera.replay import ReplayCamera, write_replay_folder

EXAMPLE = Path(__file__).resolve().parents[2] / "firmware" / "facelock.example.toml"


def test_example_config_is_valid_and_documented():
    cfg = load_config(EXAMPLE)
    assert cfg.gpio.relay_pin == 17 and cfg.policy.lockout.max_failures == 5
    assert "bob" in cfg.policy.schedules
    assert cfg.sections["api"].socket == "/run/facelock/api.sock" and cfg.sections["api"].allow[0].uid == 0


@pytest.mark.parametrize(("data", "key"), [
    ({"gpio": {"relay_pin": 1}}, "gpio.relay_pin"),
    ({"gpio": {"relay_pin": 22}}, "gpio.green_led_pin"),  # clashes with the green LED's default pin
    ({"gpio": {"relay_active_high": "yes"}}, "gpio.relay_active_high"),
    ({"camera": {"backend": "webcam"}}, "camera.backend"),
    ({"camera": {"backend": "replay"}}, "camera.source"),
    ({"camera": {"fps": 0}}, "camera.fps"),
    ({"lock": {"unlock_s": 3600}}, "lock.unlock_s"),
    ({"lock": {"liveness": "maybe"}}, "lock.liveness"),
    ({"lock": {"frames_per_attempt": 5, "max_frames_per_attempt": 3}}, "lock.max_frames_per_attempt"),
    ({"device": {"id": "a/b"}}, "device.id"),
    ({"log": {"level": "loud"}}, "log.level"),
    ({"daemon": {"extra": 1}}, "daemon.extra"),
    ({"gpio": []}, "[gpio]"),
    ({"cameras": {}}, "cameras"),
    ({"keystore": {"backend": "floppy"}}, "keystore"),
])
def test_bad_config_names_the_key(data, key):
    with pytest.raises(ConfigError) as e:
        config_from_dict(data)
    assert key in str(e.value)


def test_other_areas_sections_are_composed():
    cfg = config_from_dict({"keystore": {"backend": "file"}})
    assert type(cfg.sections["keystore"]).__name__ == "KeystoreConfig"


def test_unreadable_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def frames(n: int) -> list[np.ndarray]:
    return [np.full((48, 64, 3), i, np.uint8) for i in range(n)]


def test_replay_paces_frames_and_drops_for_a_slow_reader():
    cam = ReplayCamera(frames(100), fps=50.0)
    cam.start()
    t0 = time.monotonic()
    got = [cam.read(1.0) for _ in range(5)]
    assert [f.index for f in got] == [0, 1, 2, 3, 4]
    assert time.monotonic() - t0 >= 4 / 50.0 - 0.005
    time.sleep(0.2)  # ~10 frames presented meanwhile
    f = cam.read(1.0)
    assert f.index >= 12 and int(f.rgb[0, 0, 0]) == f.index  # the newest, older ones dropped
    assert abs(f.ts - (cam.t0 + f.index / 50.0)) < 1e-9
    cam.close()


def test_replay_folder_video_and_disappearance(tmp_path):
    import cv2

    folder = write_replay_folder(tmp_path / "f", [np.full((48, 64, 3), 10 * i, np.uint8) for i in range(3)])
    cam = open_camera(CameraConfig(backend="replay", source=str(folder), width=64, height=48, fps=100))
    cam.start()
    assert cam.read(1.0).rgb.shape == (48, 64, 3)
    folder.rename(tmp_path / "g")
    with pytest.raises(CameraGoneError):
        cam.read(1.0)
    video = tmp_path / "v.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(5):
        w.write(np.full((48, 64, 3), 40 * i, np.uint8))
    w.release()
    v = ReplayCamera(video, fps=100, loop=False)
    v.start()
    means = [float(v.read(1.0).rgb.mean()) for _ in range(5)]
    assert means == sorted(means)
    with pytest.raises(CameraGoneError, match="end of replay"):
        v.read(1.0)


def test_replay_stall_and_missing_sources(tmp_path):
    cam = ReplayCamera(frames(2), fps=0.5)
    cam.start()
    cam.read(1.0)
    with pytest.raises(CameraStalledError):
        cam.read(0.1)
    with pytest.raises(CameraUnavailableError, match="does not exist"):
        ReplayCamera(tmp_path / "nope").start()
    (tmp_path / "empty").mkdir()
    with pytest.raises(CameraUnavailableError, match="no images"):
        ReplayCamera(tmp_path / "empty").start()


def test_opencv_unplugged_device_and_missing_picamera2():
    with pytest.raises(CameraUnavailableError, match="does not exist"):
        OpenCVCamera("/dev/video97").start()
    try:
        import picamera2  # noqa: F401
    except ImportError:
        with pytest.raises(CameraUnavailableError, match="picamera2"):
            PiCamera().start()


def test_ppm_frames_replay_exactly_and_bad_ones_are_typed(tmp_path):
    """Raw PPM frames (what the runtime benchmark replays) read back bit for bit, without a decoder."""
    from firmware.hw.camera.replay import read_ppm

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(3)]
    folder = write_replay_folder(tmp_path / "ppm", frames, suffix=".ppm")
    cam = ReplayCamera(folder, fps=1000.0)
    cam.start()
    # The replay camera drops frames a slow reader missed (like a sensor), so compare each frame it
    # delivered with the source frame of the same index rather than assuming none was dropped.
    got = [cam.read(timeout=1.0) for _ in range(3)]
    cam.close()
    assert all(np.array_equal(f.rgb, frames[f.index % len(frames)]) for f in got)
    bad = tmp_path / "bad.ppm"
    bad.write_bytes(b"P5\n4 4\n255\n" + bytes(16))
    with pytest.raises(CameraGoneError, match="P6"):
        read_ppm(bad)
