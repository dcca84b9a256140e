"""Research caches are keyed by the code that filled them and are owner-only.

Why: a cache keyed by model hashes and input files alone survived edits of the face pipeline, and the
model cards' figures were then computed partly from numbers today's code does not produce.
"""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest

from provisioning.research import cachefiles, face_set, liveness_attempts, liveness_eval


def _tree(root: Path) -> Path:
    (root / "firmware" / "vision" / "liveness").mkdir(parents=True)
    (root / "firmware" / "vision" / "a.py").write_text("x = 1\n")
    (root / "firmware" / "vision" / "liveness" / "b.py").write_text("y = 2\n")
    extra = root / "provisioning" / "c.py"
    extra.parent.mkdir()
    extra.write_text("z = 3\n")
    return extra


def test_fingerprint_follows_every_vision_source_and_the_caching_module(tmp_path, monkeypatch):
    extra = _tree(tmp_path)
    monkeypatch.setattr(cachefiles, "_ROOT", tmp_path)
    fp = cachefiles.code_fingerprint.__wrapped__
    base = fp(str(extra))
    assert base == fp(str(extra))
    (tmp_path / "firmware" / "vision" / "liveness" / "b.py").write_text("y = 3\n")
    after_vision = fp(str(extra))
    assert after_vision != base
    extra.write_text("z = 4\n")
    assert fp(str(extra)) != after_vision
    (tmp_path / "firmware" / "vision" / "new.py").write_text("")
    assert fp(str(extra)) not in (base, after_vision)


def test_the_real_fingerprint_covers_the_face_pipeline():
    files = sorted((cachefiles._ROOT / "firmware" / "vision").rglob("*.py"))
    assert any(f.name == "pipeline.py" for f in files) and any(f.name == "fasnet.py" for f in files)
    assert len(cachefiles.code_fingerprint(face_set.__file__)) == 16


@pytest.mark.parametrize("key", ["face_set", "liveness_attempts", "liveness_eval"])
def test_every_cache_key_changes_with_the_code(key, tmp_path, monkeypatch):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\0")

    def make() -> str:
        if key == "face_set":
            fs = type("FS", (), {"sha256": "s", "root": tmp_path, "__len__": lambda self: 3})()
            return str(face_set.cache_file(tmp_path, fs, "m", "st"))
        if key == "liveness_attempts":
            src = liveness_attempts.Source("clip.mp4", clip, True, "bona_fide", "id", 15.0, "video")
            return liveness_attempts._key(src, 15.0, "m")
        return liveness_eval._key(clip, "burst", 0)

    monkeypatch.setattr(cachefiles, "code_fingerprint", lambda *a: "aaaa")
    one = make()
    assert one == make()
    monkeypatch.setattr(cachefiles, "code_fingerprint", lambda *a: "bbbb")
    assert make() != one


def test_cache_directories_are_owner_only(tmp_path):
    d = cachefiles.private_dir(tmp_path / "a" / "b")
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    emb = face_set.Embeddings(model="m", model_sha256="s", vectors=np.zeros((1, 2), np.float32),
                              reasons=np.array(["ok"]), ms=np.zeros(1))
    target = tmp_path / "c" / "emb.npz"
    face_set.save_cached(target, emb)
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert face_set.load_cached(target) is not None
