"""The blink calibration of `facelock eval-liveness --calibrate` (provisioning.research.liveness_attempts):
its vectorised window test must agree with the blink check itself, and the fit must leave no calibration
attack window showing a blink."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from firmware.vision.liveness.blink import BlinkThresholds, find_blinks
from provisioning.research import liveness_attempts as la


def _windows(e: np.ndarray, lo: int, hi: int) -> la.BlinkWindows:
    return la._signal_windows([e], [np.full(len(e), 100.0)], lo, hi, 50.0)


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_windows_agree_with_find_blinks(seed):
    """For every window and threshold, BlinkWindows.blinks == bool(find_blinks(window, t)) (real check)."""
    rng = np.random.default_rng(seed)
    e = 0.3 + rng.normal(0, 0.01, 40)
    for k in rng.choice(np.arange(2, 38), 3, replace=False):  # a few dips of random depth and width
        e[k:k + rng.integers(1, 3)] *= rng.uniform(0.4, 0.97)
    bw = _windows(e, 3, 12)
    wins = [e[s:s + length] for length in range(3, 13) for s in range(len(e) - length + 1)]
    for t in (0.03, 0.06, 0.1, 0.2, 0.35, 0.5):
        expect = np.array([bool(find_blinks(w, BlinkThresholds(t))) for w in wins])
        assert np.array_equal(bw.blinks(t), expect), t
    strength = bw.strength()
    for w, st in zip(wins, strength, strict=True):  # nothing fires above a window's strength
        assert not find_blinks(w, BlinkThresholds(min(st + 1e-9, 0.999)))
        if st > 0:
            assert find_blinks(w, BlinkThresholds(st - 1e-9))


def test_small_faces_and_missing_signal_show_no_blink():
    e = np.array([0.3, 0.3, 0.1, 0.3, 0.3])
    assert not la._signal_windows([e], [np.full(5, 20.0)], 3, 5, 50.0).blinks(0.2).any()  # too small: UNKNOWN
    e2 = e.copy()
    e2[0] = np.nan
    bw = la._signal_windows([e2], [np.full(5, 100.0)], 3, 5, 50.0)
    assert bw.n == 6 and bw.blinks(0.2).sum() == 2  # the windows without the nan frame still blink


def test_fit_leaves_no_attack_window_blinking_and_folds_by_identity():
    live = np.array([0.3] * 5 + [0.1] + [0.3] * 5)  # a real blink: 67 % dip
    att_a = np.array([0.3] * 5 + [0.27] + [0.3] * 5)  # jitter: 10 % dip
    att_b = np.array([0.3] * 5 + [0.24] + [0.3] * 5)  # 20 % dip
    src = [la.Source("l", Path("l"), True, "bona_fide", "p1", 15, "video"),
           la.Source("a", Path("a"), False, "print", "p1", 15, "video"),
           la.Source("b", Path("b"), False, "screen", "p2", 15, "video")]
    stats = {"l": (_windows(live, 3, 11), _windows(live, 3, 11)), "a": (_windows(att_a, 3, 11), _windows(att_a, 3, 11)),
             "b": (_windows(att_b, 3, 11), _windows(att_b, 3, 11))}
    full = la.fit_blink(src, stats)
    assert full["attack_max_drop"] == pytest.approx(0.2)
    assert full["blink_min_drop"] == pytest.approx(0.2 * la.BLINK_MARGIN)
    for s in src:
        hit, n = la.blink_rates(stats[s.name], full["blink_min_drop"], full["blink_min_drop_appearance"])
        assert (hit > 0) == s.live and n > 0
    fold = la.fit_blink(src, stats, exclude_identity="p2")  # p2's deeper dip unseen: its attack fires
    assert fold["attack_max_drop"] == pytest.approx(0.1)
    assert la.blink_rates(stats["b"], fold["blink_min_drop"], fold["blink_min_drop_appearance"])[0] > 0


def test_frame_folders_count_as_sequences_only_when_consecutive(tmp_path):
    seq = [tmp_path / f"0001_00_00_01_{k}.jpg" for k in (7, 8, 9, 10)]
    assert la.frames_are_a_sequence(seq)
    nuaa = [tmp_path / f"0003_01_00_01_{k}.jpg" for k in (0, 15, 215, 266)]
    assert not la.frames_are_a_sequence(nuaa)
    assert not la.frames_are_a_sequence([tmp_path / "0003_01_00_01_1.jpg", tmp_path / "0003_01_02_01_2.jpg",
                                         tmp_path / "0003_01_00_01_3.jpg"])


def test_shipped_exclusion_manifest_names_a_reason_for_every_span():
    rows = la.load_exclusions()
    assert rows and all(x.reason.strip() and x.t_end_s > x.t_start_s for x in rows)
    assert any(x.source == "liveness_video/attack/screen_zubair_fake.mp4" for x in rows)


def test_exclusion_naming_an_unknown_source_is_an_error():
    src = [la.Source("l", Path("l"), True, "bona_fide", "p1", 15, "video")]
    with pytest.raises(ValueError, match="not among the sources"):
        la.blink_sources(src, [la.Exclusion("nope.mp4", 0, 1, "x")])



def _records(e: np.ndarray, fps: float) -> list[la.FrameRecord]:
    """Frame records of a face whose eye-appearance signal is ``e`` (a fixed mesh, eyes 100 px apart)."""
    from firmware.vision.liveness.frame import LivenessFrame

    lm = np.zeros((468, 3))
    lm[:, 0] = 50.0
    lm[[33, 133, 159, 145, 158, 153, 160, 144], 0] = 0.0  # one eye at x 0, the other at x 100
    lm[[263, 362, 386, 374, 385, 380, 387, 373], 0] = 100.0
    return [la.FrameRecord(i / fps, True, True, "", LivenessFrame(landmarks=lm, openness=float(v), t=i / fps))
            for i, v in enumerate(e)]


@pytest.mark.parametrize("fps, longest", [(30.0, 61), (25.0, 51), (15.0, 31), (10.0, 30)])
def test_windows_reach_the_blink_wait(fps, longest):
    """An attempt waiting for a blink decides over up to ``blink_wait_s`` of frames, so the calibration
    must judge windows that long too (every window the longer wait can present to the blink check)."""
    from firmware.vision.liveness.geometry import inter_ocular

    e = np.full(90, 0.3)
    e[50] = 0.05  # one dip
    recs = _records(e, fps)
    assert inter_ocular(recs[0].payload.landmarks) >= 50.0  # big enough for the check
    p = la.AttemptParams(max_frames_per_attempt=30)
    short = la.blink_windows(recs, p, 3, 50.0)[1]
    long = la.blink_windows(recs, p, 3, 50.0, wait_s=2.0)[1]
    assert max(x.shape[1] for x in short.x) == 30
    assert max(x.shape[1] for x in long.x) == longest == la.window_frames([r.t for r in recs], 30, 2.0)
    assert long.n == short.n + sum(90 - k + 1 for k in range(31, longest + 1))
    assert long.blinks(0.5).sum() > short.blinks(0.5).sum() or longest == 30
