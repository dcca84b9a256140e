"""The product-level liveness evaluation: attempts built as the daemon builds them, and the CLI around it."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from firmware.vision.liveness import LivenessConfig, LivenessFrame, LivenessPolicy
from provisioning.cli import main
from provisioning.research import liveness_attempts as la


def _recs(scores, fps=10.0, gap_after=None, gap_s=1.0):
    """Frame records at ``fps`` with a face, each carrying a learned-PAD score; optional face-less gap."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 100, (468, 3))
    out, t = [], 0.0
    for i, s in enumerate(scores):
        lf = LivenessFrame(landmarks=base + rng.normal(0, 2, base.shape), embedding=np.ones(8) + rng.normal(0, .05, 8),
                           fas_score=s, t=t)
        out.append(la.FrameRecord(t, True, True, "ok", lf, np.ones(8)))
        t += 1 / fps
        if gap_after is not None and i == gap_after:
            for _ in range(int(gap_s * fps)):
                out.append(la.FrameRecord(t, False, False, "no_face"))
                t += 1 / fps
    return out


@pytest.fixture()
def policy():
    from firmware.vision.liveness.policy import load_thresholds

    return LivenessPolicy(LivenessConfig(), load_thresholds())


P = la.AttemptParams(frames_per_attempt=3, max_frames_per_attempt=10, face_lost_s=0.5, verify_timeout_s=3.0,
                     denied_s=2.0, unlock_s=5.0)


def test_live_person_is_accepted_once_static_replay_could_judge(policy):
    """fasnet passes after 5 scored frames, but "live" waits until the frames span static_min_span_s
    (0.8 s: frame 9 at 10 fps): a picture frozen in front of the camera is judged before anyone is let in."""
    span = policy.thresholds.static.min_span_s
    assert span >= 0.5
    atts = la.run_attempts(_recs([0.01] * 20), P, la.liveness_decider(policy, P))
    assert atts[0].outcome == "live" and atts[0].frames == round(span * 10) + 1
    assert len(atts) == 1  # then the door is open for unlock_s: no frame analysed


def test_attack_is_refused_at_the_full_window_and_counted(policy):
    atts = la.run_attempts(_recs([0.99] * 40), P, la.liveness_decider(policy, P))
    assert atts[0].outcome == "spoof" and atts[0].frames == P.max_frames_per_attempt
    assert "fasnet" in atts[0].reason and atts[0].checks["fasnet"] == "fail"
    # DENIED for denied_s (2 s = 20 frames at 10 fps), then a new attempt on the same attacker
    assert len(atts) == 2 and atts[1].t_first_face >= atts[0].t_end + P.denied_s - 1e-9


def test_face_leaving_after_a_failed_check_is_a_spoof_and_without_one_is_abandoned(policy):
    atts = la.run_attempts(_recs([0.99] * 6 + [0.01] * 10, gap_after=5), P, la.liveness_decider(policy, P))
    assert atts[0].outcome == "spoof" and atts[0].reason.endswith(":face_lost")
    atts = la.run_attempts(_recs([0.01] * 2 + [0.01] * 10, gap_after=1), P, la.liveness_decider(policy, P))
    assert atts[0].outcome == "face_lost" and atts[1].outcome == "live"


def test_summary_counts_iso_figures(policy):
    src_l = la.Source("live/a.mp4", None, True, "bona_fide", "a", 10.0, "video")  # type: ignore[arg-type]
    src_a = la.Source("attack/print_a.mp4", None, False, "print", "a", 10.0, "video")  # type: ignore[arg-type]
    rec = {src_l.name: _recs([0.01] * 30), src_a.name: _recs([0.99] * 30)}
    r = la.evaluate([src_l, src_a], rec, policy, P)
    s = r["summary"]
    assert s["bpcer"] == 0.0 and s["apcer"]["print"]["apcer"] == 0.0 and s["apcer"]["print"]["attempts"] >= 1
    assert s["time_to_live_s"]["median"] == pytest.approx(policy.thresholds.static.min_span_s)  # the static span


def test_identity_of_pairs_live_and_attack_clips():
    assert la.identity_of("screen_zubair_fake") == la.identity_of("zubair_real") == "zubair"
    assert la.identity_of("print_nuaa_imposter0001_00_00_01") == la.identity_of("nuaa_client0001_00_00_01")
    assert la.identity_of("print_minivision_demo_photo") == la.identity_of("screen_minivision_demo_phone")


def test_eval_liveness_product_mode_on_clips_made_here(tmp_path, astronaut, monkeypatch):
    """The whole CLI path on two tiny clips (the photo moved about: labelled live and print): it runs the
    real pipeline and shipped models, builds attempts and reports per source; no ../shared needed."""
    monkeypatch.setenv("FACELOCK_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "clips"
    for sub, name in (("live", "me_real.mp4"), ("attack", "print_me_fake.mp4")):
        (root / sub).mkdir(parents=True)
        w = cv2.VideoWriter(str(root / sub / name), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (320, 240))
        for k in range(15):
            m = np.float32([[1, 0, 3 * np.sin(k / 3)], [0, 1, 2 * np.cos(k / 4)]])
            img = cv2.warpAffine(cv2.resize(astronaut, (320, 320))[40:280], m, (320, 240))
            w.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        w.release()
    out = tmp_path / "r.json"
    res = CliRunner().invoke(main, ["eval-liveness", "--root", str(root), "--json", str(out)])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    names = {s["name"]: s for s in r["sources"]}
    assert set(names) == {"live/me_real.mp4", "attack/print_me_fake.mp4"}
    assert names["attack/print_me_fake.mp4"]["attack_type"] == "print" and names["live/me_real.mp4"]["fps"] == 10.0
    assert r["attempt_params"]["max_frames_per_attempt"] == 30
    for s in names.values():
        assert s["attempts"] and all(a["outcome"] in ("live", "spoof", "inconclusive", "timeout", "face_lost")
                                     for a in s["attempts"])
    assert "BPCER" in res.output and "APCER" in res.output
    # the same clips again come from the cache (numbers only) and give the same report
    res2 = CliRunner().invoke(main, ["eval-liveness", "--root", str(root), "--json", str(tmp_path / "r2.json")])
    assert res2.exit_code == 0 and json.loads((tmp_path / "r2.json").read_text())["sources"] == r["sources"]
    assert not list((tmp_path / "cache").rglob("*.jpg")) and not list((tmp_path / "cache").rglob("*.png"))
