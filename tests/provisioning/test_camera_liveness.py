"""`--camera`: frames go through the quality gates *and* liveness; a replayed still photo is refused.

The camera source here is a folder replayed as a 30 fps camera (the same code path reads a V4L2 index
or a video file through OpenCV).  A photo held in front of the lens gives near-identical frames, which
the liveness policy's static-replay check refuses.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.provisioning.conftest import Cli, assert_one_line_error, person_a, save, variant
from tests.provisioning.test_end_to_end import NAME_A, setup_device


def still_photo_burst(folder: Path, n: int = 8) -> Path:
    """A printed photo held still: sub-pixel jitter and a little exposure flicker, nothing else."""
    folder.mkdir()
    rgb = person_a()
    for i in range(n):
        save(folder / f"f{i:03d}.png", variant(rgb, dx=0.3 * (i % 3), dy=0.2 * (i % 2), brightness=i % 3))
    return folder


def test_enroll_from_a_replayed_photo_is_refused(cli: Cli, tmp_path):
    cli("ca", "init", ok=True)
    cli("device", "init", "--id", "cam", ok=True)
    burst = still_photo_burst(tmp_path / "burst")
    r = cli("enroll", "Photo", "--camera", "--camera-source", burst)
    assert_one_line_error(r, 3, "liveness")
    users = cli("users", "list", "--json", ok=True).stdout
    assert "Photo" not in users


def test_encrypt_with_a_replayed_photo_is_refused(cli: Cli, faces, tmp_path):
    setup_device(cli, faces)
    burst = still_photo_burst(tmp_path / "burst")
    out = tmp_path / "x.flk"
    r = cli("encrypt", faces.secret, "--user", NAME_A, "--camera", burst, "-o", out)
    assert_one_line_error(r, 3, "liveness")
    assert not out.exists()


def test_camera_that_cannot_be_opened(cli: Cli, tmp_path):
    cli("ca", "init", ok=True)
    cli("device", "init", "--id", "cam", ok=True)
    assert_one_line_error(cli("enroll", "X", "--camera", "--camera-source", tmp_path / "no-such.mp4"), 1,
                          "cannot be opened")


@pytest.mark.shared
def test_printed_photo_sessions_are_refused(cli: Cli, shared_faces):
    """Real presentation attacks (printed photos filmed by a webcam) from the research set."""
    cli("ca", "init", ok=True)
    cli("device", "init", "--id", "cam", ok=True)
    spoofs = sorted((shared_faces / "extras" / "spoof" / "nuaa_like").glob("*/spoof"))
    assert spoofs
    for folder in spoofs:
        r = cli("enroll", f"spoof-{folder.parent.name}", "--camera", "--camera-source", folder)
        assert_one_line_error(r, 3)
    assert cli("users", "list", "--json", ok=True).stdout.strip() == "[]"


def still_photo_video(path: Path, n: int = 12) -> Path:
    """The same held photo as a video file (MJPG in AVI: OpenCV's built-in codec, no ffmpeg needed)."""
    import cv2

    rgb = person_a()
    h, w = rgb.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (w, h))
    assert writer.isOpened()
    for i in range(n):
        writer.write(cv2.cvtColor(variant(rgb, dx=0.3 * (i % 3), brightness=i % 2), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_video_file_camera_and_the_config_default_camera(cli: Cli, faces, tmp_path):
    setup_device(cli, faces)
    video = still_photo_video(tmp_path / "held-photo.avi")
    out = tmp_path / "x.flk"
    assert_one_line_error(cli("encrypt", faces.secret, "--user", NAME_A, "--camera", video, "-o", out), 3, "liveness")
    # no --probe and no --camera: the lock's camera from the config file (here a replay source)
    cfg = tmp_path / "facelock.toml"
    cfg.write_text(f'[device]\nid = "cam"\n\n[camera]\nbackend = "replay"\nsource = "{video}"\n')
    r = cli("encrypt", faces.secret, "--user", NAME_A, "-o", out, "--config", cfg)
    assert_one_line_error(r, 3, "liveness")
    assert not out.exists()


@pytest.mark.skipif(Path("/dev/video0").exists(), reason="this machine has a camera at /dev/video0")
def test_missing_v4l2_camera(cli: Cli, faces, tmp_path):
    setup_device(cli, faces)
    r = cli("encrypt", faces.secret, "--user", NAME_A, "-o", tmp_path / "x.flk")  # default camera 0
    assert_one_line_error(r, 1, "/dev/video0 does not exist")
    assert_one_line_error(cli("enroll", "C", "--camera", "--camera-source", "/dev/video7"), 1, "does not exist")


def test_spoof_attempts_are_audited_without_personal_data(cli: Cli, faces, tmp_path):
    setup_device(cli, faces)
    burst = still_photo_burst(tmp_path / "burst")
    assert_one_line_error(cli("encrypt", faces.secret, "--user", NAME_A, "--camera", burst, "-o", tmp_path / "x"), 3)
    assert_one_line_error(cli("enroll", "Photo", "--camera", "--camera-source", burst), 3)
    from firmware.audit import AuditLog

    with AuditLog(cli.data_dir / "audit.db", readonly=True) as log:
        assert log.verify().ok
        spoofs = [r for r in log.records() if r.kind == "provisioning.spoof_suspected"]
    assert len(spoofs) == 2
    assert set(spoofs[0].data) == {"user"} and len(spoofs[0].data["user"]) == 16  # a pseudonym, not the id
    assert spoofs[1].data == {}
