"""`facelock eval`, `facelock calibrate` and `facelock bench vision` end to end on generated data."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from skimage import data

from provisioning.cli import main
from tests.support.imagegeom import in_frame, rotate


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Two people (transformed copies of two public photos), a face-less photo and a corrupt file."""
    root = tmp_path_factory.mktemp("faces")
    people = {"eileen": data.astronaut(), "cameraman": np.repeat(data.camera()[:, :, None], 3, 2)}
    paths: dict[str, list[str]] = {}
    for name, img in people.items():
        d = root / "sets" / "demo" / name
        d.mkdir(parents=True)
        for k, (scale, dx, ang) in enumerate([(1.0, 0, 0), (0.8, 60, 8), (0.9, -50, -10), (1.1, 20, 4)]):
            frame = rotate(in_frame(img, scale=scale, dx=dx), ang)
            Image.fromarray(frame).save(d / f"{k}.png")
            paths.setdefault(name, []).append(f"sets/demo/{name}/{k}.png")
    d = root / "sets" / "other" / "nobody"
    d.mkdir(parents=True)
    Image.fromarray(data.coffee()).save(d / "coffee.jpg")
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    rows = []
    for name, ps in paths.items():
        for i in range(len(ps)):
            for j in range(i + 1, len(ps)):
                rows.append(("demo", ps[i], ps[j], name, name, 1))
    for a in paths["eileen"]:
        for b in paths["cameraman"]:
            rows.append(("demo", a, b, "eileen", "cameraman", 0))
    rows.append(("other", "sets/other/nobody/coffee.jpg", "sets/other/nobody/corrupt.jpg", "x", "x", 1))
    rows.append(("other", "sets/other/nobody/coffee.jpg", paths["eileen"][0], "x", "eileen", 0))
    with open(root / "pairs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["set", "path_a", "path_b", "identity_a", "identity_b", "same"])
        w.writerows(rows)
    return root


def test_eval_reports_every_key_and_counts_failures(dataset, tmp_path):
    out, plot = tmp_path / "eval.json", tmp_path / "roc.png"
    r = CliRunner().invoke(main, ["eval", "--pairs", str(dataset / "pairs.csv"), "--root", str(dataset),
                                  "--json", str(out), "--plot", str(plot), "--quiet"])
    assert r.exit_code == 0, r.output
    rep = json.loads(out.read_text())
    for key in ("pairs", "genuine", "impostor", "failures", "accuracy", "tar_at_far_1e-2", "tar_at_far_1e-3",
                "eer", "auc", "threshold_at_far_1e-3", "median_ms_per_image", "model", "per_set"):
        assert key in rep, key
    assert rep["pairs"] == 6 + 6 + 16 + 2 and rep["genuine"] == 13 and rep["impostor"] == 17
    assert rep["failures"] == 2 and set(rep["failed_images"]) == {"sets/other/nobody/coffee.jpg",
                                                                   "sets/other/nobody/corrupt.jpg"}
    assert rep["failure_reasons"] == {"no_face": 1, "unreadable: ImageDecodeError": 1}
    demo = rep["per_set"]["demo"]
    assert demo["accuracy"] == 1.0 and demo["auc"] == 1.0 and demo["failures"] == 0
    other = rep["per_set"]["other"]
    assert other["failures"] == 2 and other["genuine"] == 1
    # the failed genuine pair is a false reject, not dropped: overall TAR can't be 1 at any FAR
    assert rep["tar_at_far_1e-2"] == pytest.approx(12 / 13)
    assert rep["model"]["name"] == "mobilefacenet_dynamic" and len(rep["model"]["sha256"]) == 64
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_bad_inputs_are_clear_errors(dataset, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c\n1,2,3\n")
    r = CliRunner().invoke(main, ["eval", "--pairs", str(bad), "--root", str(dataset), "--quiet"])
    assert r.exit_code == 1 and "lacks column" in r.output
    bad.write_text("set,path_a,path_b,identity_a,identity_b,same\ns,a,b,x,y,2\n")
    r = CliRunner().invoke(main, ["eval", "--pairs", str(bad), "--root", str(dataset), "--quiet"])
    assert r.exit_code == 1 and "'same' must be 0 or 1" in r.output
    r = CliRunner().invoke(main, ["eval", "--pairs", str(dataset / "pairs.csv"), "--root",
                                  str(tmp_path / "nope"), "--quiet"])
    assert r.exit_code == 1 and "not a directory" in r.output


def _models_copy(tmp_path):
    from firmware.vision import Manifest

    m = Manifest.load()
    d = tmp_path / "models"
    d.mkdir()
    for spec in m.models.values():
        shutil.copyfile(m.directory / spec.file, d / spec.file)
    shutil.copyfile(m.path, d / "manifest.json")
    return d


def test_calibrate_writes_cross_validated_thresholds_with_their_out_of_sample_record(dataset, tmp_path):
    from firmware.vision import Manifest

    d = _models_copy(tmp_path)
    r = CliRunner().invoke(main, ["calibrate", "--listing", str(dataset / "pairs.csv"), "--root", str(dataset),
                                  "--model", "mobilefacenet_dynamic", "--manifest", str(d / "manifest.json"),
                                  "--cache-dir", str(tmp_path / "cache"), "--reps", "2", "--quiet"])
    assert r.exit_code == 0, r.output
    spec = Manifest.load(d).spec("mobilefacenet_dynamic")
    th = spec.thresholds
    ops = th["operating_points"]
    assert ops["unlock"]["far"] == 1e-4 and ops["strict"]["far"] == 1e-5 and ops["unlock"]["set_far"] == 1e-3
    # 3 people: far too few pairs to see 1e-4, so the threshold sits above every impostor
    assert ops["unlock"]["in_sample"]["impostors_above"] == 0
    oos = ops["unlock"]["out_of_sample"]
    assert oos["impostor_pairs"] >= 0 and len(oos["ci95_binomial"]) == 2 and "ci95_identity_bootstrap" in oos
    assert spec.threshold("strict") >= spec.threshold("unlock")
    assert th["calibration"]["model_sha256"] == spec.sha256 and th["calibration"]["images"] == 10
    assert th["calibration"]["failures"] == 2 and th["protocol"]["identities"] == 3
    assert [p["far"] for p in th["far_curve"]][:2] == [1e-2, 5e-3]
    # the embeddings cache is private to the user and holds no image
    cached = list((tmp_path / "cache").glob("*.npz"))
    assert cached and all(p.stat().st_mode & 0o077 == 0 for p in cached)
    with np.load(cached[0]) as z:
        assert set(z.files) == {"vectors", "reasons", "ms", "meta"}


def test_eval_reports_far_at_the_shipped_thresholds_over_all_pairs(dataset, tmp_path):
    out = tmp_path / "eval.json"
    r = CliRunner().invoke(main, ["eval", "--pairs", str(dataset / "pairs.csv"), "--root", str(dataset),
                                  "--json", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    fas = json.loads(out.read_text())["far_at_shipped"]
    u = fas["unlock"]
    # all pairs, not the CSV's 17: 4 eileen x 4 cameraman (coffee/corrupt have no face: no pair)
    assert u["impostor_pairs"] == 16 and u["genuine_pairs"] == 6 + 6 + 1
    assert u["impostors_above"] == 0 and set(u["per_set"]) == {"demo", "other"}
    assert "hard_impostors" in u and u["promise"]["far"] is not None


def test_tampered_model_stops_the_cli(dataset, tmp_path):
    d = _models_copy(tmp_path)
    f = d / "blazeface_short_range.tflite"
    f.write_bytes(f.read_bytes()[:-10] + b"0123456789")
    r = CliRunner().invoke(main, ["eval", "--pairs", str(dataset / "pairs.csv"), "--root", str(dataset),
                                  "--manifest", str(d / "manifest.json"), "--quiet"])
    assert r.exit_code == 1 and "integrity" in r.output


def test_bench_vision_json():
    r = CliRunner().invoke(main, ["bench", "vision", "--json", "--rounds", "3", "--warmup", "1"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    st = out["stages"]
    for k in ("detection", "landmarks", "alignment", "embedding[mobilefacenet_float]",
              "embedding[mobilefacenet_dynamic]", "matching", "full_pipeline"):
        assert st[k]["median_ms"] > 0 and st[k]["p95_ms"] >= st[k]["median_ms"]
    assert out["float_over_quantized_embedding_ratio"]["mobilefacenet_dynamic"] > 0
    assert out["quantized_vs_float_cosine_on_frame"]["mobilefacenet_dynamic"] > 0.95
