"""`facelock eval-liveness` end to end: on a tiny synthetic spoof folder (no ../shared), and on the real one."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from provisioning.cli import main


@pytest.fixture()
def tiny_root(tmp_path, astronaut, monkeypatch):
    """nuaa_like/<3 subjects>/{live,spoof}: face crops of the photo (live) and blurred, washed-out ones
    (a poor print); plus a pairs.csv of 2 images for the replay run."""
    monkeypatch.setenv("FACELOCK_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    root = tmp_path / "faces" / "extras" / "spoof"
    for s in range(3):
        for kind in ("live", "spoof"):
            d = root / "nuaa_like" / f"000{s}" / kind
            d.mkdir(parents=True)
            for i in range(4):
                x, y = rng.integers(20, 60, 2)
                crop = astronaut[y:y + 230, 90 + x:320 + x].astype(np.float32) * rng.uniform(0.8, 1.1)
                if kind == "spoof":
                    crop = cv2.GaussianBlur(crop, (0, 0), 1.8) * 0.6 + 90
                crop = np.clip(crop + rng.normal(0, 2, crop.shape), 0, 255).astype(np.uint8)
                cv2.imwrite(str(d / f"{i}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    faces = tmp_path / "faces"
    (faces / "sets").mkdir()
    for i in range(2):
        cv2.imwrite(str(faces / "sets" / f"a{i}.png"), cv2.cvtColor(np.roll(astronaut, 5 * i, 1), cv2.COLOR_RGB2BGR))
    (faces / "pairs.csv").write_text("set,path_a,path_b,identity_a,identity_b,same\n"
                                     "t,sets/a0.png,sets/a1.png,x,x,1\n")
    return root


def test_eval_liveness_cli_on_a_synthetic_folder(tiny_root, tmp_path):
    out = tmp_path / "report.json"
    res = CliRunner().invoke(main, ["eval-liveness", "--train", "--root", str(tiny_root), "--json", str(out)])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    for part in ("single_frame", "multi_frame"):
        p = r[part]
        assert set(p["pooled_threshold"]["apcer"]) == {"nuaa_print"}
        assert 0 <= p["pooled_threshold"]["bpcer"] <= 1 and 0 <= p["nested_threshold"]["bpcer"] <= 1
        assert p["n_bona_fide"] > 0
    assert r["multi_frame"]["n_bona_fide"] == 3  # C(4, 4) per subject
    assert r["replay"]["trials"] == 2 and r["replay"]["rejected"] == 2
    assert "static" in r["liveness_thresholds"]


def test_eval_liveness_cli_refuses_a_folder_without_data(tmp_path):
    res = CliRunner().invoke(main, ["eval-liveness", "--train", "--root", str(tmp_path), "--json",
                                    str(tmp_path / "o.json"), "--no-replay"])
    assert res.exit_code != 0 and "nuaa_like" in res.output
    res = CliRunner().invoke(main, ["eval-liveness", "--root", str(tmp_path), "--json", str(tmp_path / "o.json")])
    assert res.exit_code != 0 and "nothing to evaluate" in res.output


@pytest.mark.shared
@pytest.mark.slow
def test_eval_liveness_on_the_research_set(shared_faces, tmp_path, monkeypatch):
    monkeypatch.setenv("FACELOCK_CACHE_DIR", str(tmp_path / "cache"))  # measured from scratch, as on a fresh CI machine
    out = tmp_path / "report.json"
    res = CliRunner().invoke(main, ["eval-liveness", "--train", "--root", str(shared_faces / "extras" / "spoof"),
                                    "--json", str(out), "--replay-limit", "40"])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    s = r["single_frame"]["pooled_threshold"]
    assert s["bpcer"] <= 0.10 and s["apcer"]["nuaa_print"] <= 0.05
    assert r["multi_frame"]["curve"]["eer"] <= r["single_frame"]["curve"]["eer"]
    assert r["replay"]["rejection_rate"] == 1.0
