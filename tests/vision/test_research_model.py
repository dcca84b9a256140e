"""The opt-in research-only embedder (w600k_mbf): install after the licence, verified load, no fallback.

The refusal paths (no --accept-licence, a tampered file, a missing install, templates of another
embedder) need nothing outside the repository: they use a shipped model with one byte changed, or
vectors.  The paths that run the research model use its copy in ../shared/models-src (or
$FACELOCK_SHARED/models-src) and skip, with the reason, where it is absent: the model is never
committed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from firmware.vision import (
    EmbedderMismatchError,
    FacePipeline,
    Gallery,
    Manifest,
    ResearchModelNotInstalledError,
)
from firmware.vision.config import VisionConfig
from firmware.vision.manifest import research_dir, sha256_file
from provisioning import demofaces as df
from provisioning.cli import main
from tests.conftest import shared_root

NAME = "w600k_mbf"
SOURCE = Path("models-src/insightface-research-only/w600k_mbf/w600k_mbf_dynamic.tflite")


def tampered(src: Path, dest: Path) -> Path:
    """A copy of a real model with one byte in its middle changed."""
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0x01
    dest.write_bytes(bytes(data))
    return dest


def install(data_dir: Path, *args: str):
    return CliRunner().invoke(main, ["models", "install-research", *args, "--data-dir", str(data_dir)])


@pytest.fixture(scope="session")
def research_file() -> Path:
    path = shared_root() / SOURCE
    if not path.is_file():
        pytest.skip(f"needs the research-only {NAME} at {path} (never committed; absent in a fresh clone)")
    return path


@pytest.fixture(scope="module")
def installed(research_file, tmp_path_factory) -> Path:
    """A data dir with the research model installed by the CLI, as a user would."""
    dd = tmp_path_factory.mktemp("research-dd")
    r = install(dd, str(research_file), "--accept-licence")
    assert r.exit_code == 0, r.output
    return dd


@pytest.fixture(scope="module")
def research_pipeline(installed) -> FacePipeline:
    return FacePipeline.from_config(VisionConfig(embedder=NAME), overlay=research_dir(installed))


# ------------------------------------------------------------------------------------- pinned entry
def test_pinned_entry_is_research_only_and_never_a_default(manifest):
    spec = manifest.spec(NAME)
    assert spec.research_only and "non-commercial research only" in spec.license and spec.license_terms
    assert (spec.layout, spec.input_size, spec.output_size, spec.norm_mean, spec.norm_std) == \
        ("NCHW", (112, 112), 512, 127.5, 127.5)
    assert NAME not in manifest.models and NAME not in manifest.defaults.values()
    assert spec.threshold("unlock") < spec.threshold("strict")  # calibrated by `facelock calibrate --model`
    # the model file itself is not in the repository, nor anywhere beside the shipped models
    assert not (manifest.directory / spec.file).exists()
    assert not list(manifest.directory.glob("w600k*"))


def test_a_research_model_as_a_default_is_refused(manifest, tmp_path):
    from firmware.vision import ModelManifestError

    data = json.loads(manifest.path.read_text())
    data["defaults"]["embedder"] = NAME
    with pytest.raises(ModelManifestError, match="never be a default"):
        Manifest(data, manifest.directory, research=manifest.research_data)


# ----------------------------------------------------------------------------- install refusals
def test_install_refuses_without_accepting_the_licence(tmp_path):
    src = tmp_path / "model.tflite"
    src.write_bytes(b"anything")
    r = install(tmp_path / "dd", str(src))
    assert r.exit_code == 1
    assert "non-commercial research only" in r.output and "--accept-licence" in r.output
    assert not research_dir(tmp_path / "dd").exists()


def test_install_refuses_a_tampered_model(manifest, tmp_path):
    src = tampered(manifest.verified_path("embedder"), tmp_path / "w600k_mbf.tflite")
    r = install(tmp_path / "dd", str(src), "--accept-licence")
    assert r.exit_code == 1 and "not the pinned w600k_mbf" in r.output
    assert not research_dir(tmp_path / "dd").exists()


def test_install_refuses_a_tampered_copy_of_the_research_model(research_file, tmp_path):
    src = tampered(research_file, tmp_path / "w600k_mbf.tflite")
    r = install(tmp_path / "dd", str(src), "--accept-licence")
    assert r.exit_code == 1 and "sha256" in r.output
    assert not research_dir(tmp_path / "dd").exists()


def test_install_refuses_a_missing_file(tmp_path):
    r = install(tmp_path / "dd", str(tmp_path / "nope.tflite"), "--accept-licence")
    assert r.exit_code == 1 and "cannot be read" in r.output


# ------------------------------------------------------------------------------------- install
def test_install_copies_the_verified_file_atomically(installed, manifest, research_file):
    spec = manifest.spec(NAME)
    overlay = research_dir(installed)
    assert sorted(p.name for p in overlay.iterdir()) == [spec.file]  # no temp file left behind
    assert sha256_file(overlay / spec.file) == spec.sha256 == sha256_file(research_file)


def test_a_failed_write_leaves_no_partial_model(research_file, tmp_path, monkeypatch):
    import os

    def boom(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    r = install(tmp_path / "dd", str(research_file), "--accept-licence")
    assert r.exit_code == 1 and "No space left" in r.output
    assert list(research_dir(tmp_path / "dd").iterdir()) == []


def test_list_shows_it_with_its_licence(installed, tmp_path):
    r = CliRunner().invoke(main, ["models", "list", "--json", "--data-dir", str(installed)])
    assert r.exit_code == 0, r.output
    rows = {m["name"]: m for m in json.loads(r.output)["models"]}
    assert rows[NAME]["research_only"] and rows[NAME]["installed"] and not rows[NAME]["default"]
    assert "non-commercial research only" in rows[NAME]["license"]
    assert rows["mobilefacenet_dynamic"]["default"] and rows["mobilefacenet_dynamic"]["license"] == "MIT"
    r = CliRunner().invoke(main, ["models", "list", "--json", "--data-dir", str(tmp_path)])
    assert not {m["name"]: m for m in json.loads(r.output)["models"]}[NAME]["installed"]


# --------------------------------------------------------------------------------- the device
def test_a_configured_but_missing_model_is_a_typed_error_naming_the_install(tmp_path):
    with pytest.raises(ResearchModelNotInstalledError, match="facelock models install-research"):
        FacePipeline.from_config(VisionConfig(embedder=NAME), overlay=research_dir(tmp_path))


def test_the_lock_faults_on_a_missing_research_model_instead_of_falling_back(tmp_path):
    from firmware.config import Config, DeviceConfig
    from firmware.site import ComponentUnavailableError, open_site

    site = open_site(Config(device=DeviceConfig(data_dir=str(tmp_path)),
                            sections={"vision": VisionConfig(embedder=NAME)}))
    with pytest.raises(ComponentUnavailableError, match="install-research") as exc:
        site.pipeline()
    assert isinstance(exc.value.__cause__, ResearchModelNotInstalledError)


def test_an_installed_file_altered_afterwards_is_refused(installed, manifest, tmp_path):
    from firmware.vision import ModelIntegrityError

    overlay = tmp_path / "models"
    overlay.mkdir()
    tampered(research_dir(installed) / manifest.spec(NAME).file, overlay / manifest.spec(NAME).file)
    with pytest.raises(ModelIntegrityError):
        FacePipeline.from_config(VisionConfig(embedder=NAME), overlay=overlay)


def test_configured_it_embeds_the_astronaut_to_512_d_and_matches_her(research_pipeline):
    pipe = research_pipeline
    assert pipe.embedder_spec.name == NAME and pipe.embedder.nchw
    g = Gallery(dim=pipe.embedder.dim)
    g.enroll("astronaut", np.stack([pipe.process(f).embedding for f in df.enrolled()]))
    probe = pipe.process(df.place(df.astronaut(), 0.85, 40, -10, 3)).embedding
    assert probe.shape == (512,) and probe.dtype == np.float32
    assert float(np.linalg.norm(probe)) == pytest.approx(1.0, abs=1e-5)
    res = g.match(probe, pipe.threshold(), pipe.margin())
    assert res.accepted and res.user_id == "astronaut", res
    stranger = pipe.process(df.place(df.cameraman_face(), df.STRANGER_SCALE))
    assert stranger.ok and g.scores(stranger.embedding)["astronaut"] < pipe.threshold()


# ------------------------------------------------------------------------- templates of another model
def test_a_192_d_template_against_a_512_d_probe_is_a_typed_error():
    rng = np.random.default_rng(0)
    g = Gallery(dim=192)
    g.enroll("ada", rng.normal(size=(3, 192)))
    with pytest.raises(EmbedderMismatchError, match="re-enrol"):
        g.scores(rng.normal(size=512))
    with pytest.raises(EmbedderMismatchError, match="re-enrol"):
        g.match(rng.normal(size=512), 0.3)
    with pytest.raises(EmbedderMismatchError, match="192-d templates but the configured embedder gives 512-d"):
        Gallery(dim=512).enroll("ada", rng.normal(size=(3, 192)))


def test_the_lock_faults_on_templates_of_another_embedder_asking_for_re_enrolment(installed, tmp_path):
    from firmware.config import Config, DeviceConfig
    from firmware.keystore import KeystoreConfig
    from firmware.site import ComponentUnavailableError, open_site

    dd = tmp_path / "data"
    shutil.copytree(research_dir(installed), research_dir(dd))
    ks = KeystoreConfig(scrypt_log2_n=10, device_secret_path=str(tmp_path / "etc" / "device.secret"))
    site = open_site(Config(device=DeviceConfig(data_dir=str(dd)),
                            sections={"keystore": ks, "vision": VisionConfig(embedder=NAME)}))
    with site.templates() as store:  # enrolled earlier with the shipped 192-d MobileFaceNet
        store.enroll("ada", np.random.default_rng(1).normal(size=(3, 192)).astype(np.float32))
    users = site.users()
    try:
        with pytest.raises(ComponentUnavailableError, match="re-enrol") as exc:
            users.load()
        assert isinstance(exc.value.__cause__, EmbedderMismatchError)
        assert "w600k_mbf" in str(exc.value)
    finally:
        users.close()


def test_bench_vision_times_the_installed_research_embedder(installed):
    r = CliRunner().invoke(main, ["bench", "vision", "--json", "--rounds", "3", "--warmup", "0",
                                  "--embedder", NAME, "--data-dir", str(installed)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output[r.output.index("{"):])
    assert out["default_embedder"] == NAME
    assert f"embedding[{NAME}]" in out["stages"] and f"embedding_as_configured[{NAME}, flip=True]" in out["stages"]
