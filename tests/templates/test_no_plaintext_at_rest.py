"""Enroll users, then scan every byte of the data dir for raw embeddings, face images and unwrapped keys."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from firmware.biokey import quantize
from firmware.keystore import keyfile
from tests.support.embeddings import near, unit

IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"P5", b"P6", b"RIFF")


def _windows(buf: bytes, width: int, step: int) -> list[bytes]:
    """Overlapping slices, minus low-entropy ones (zero padding, flat image borders) that any file may hold."""
    wins = [buf[i : i + width] for i in range(0, max(1, len(buf) - width + 1), step)]
    return [w for w in wins if len(set(w)) >= 8]


def _needles_for_embedding(e: np.ndarray) -> list[bytes]:
    e = np.asarray(e, dtype=np.float64)
    n = e / np.linalg.norm(e)
    out: list[bytes] = []
    for arr in (e.astype("<f4"), n.astype("<f4"), e.astype("<f8"), n.astype("<f8"), e.astype(">f4"), n.astype(">f4")):
        out += _windows(arr.tobytes(), 16, 16)  # any 4 consecutive float32 values
    q = quantize(e)
    out += _windows(q.astype("<i2").tobytes(), 16, 8) + _windows(q.astype(">i2").tobytes(), 16, 8)
    return out


def _scan(data_dir: Path, needles: list[bytes]) -> list[tuple[str, int]]:
    hits = []
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert files, "nothing written?"
    for p in files:
        raw = p.read_bytes()
        assert not raw.startswith(IMAGE_MAGIC) or p.suffix in (".db", ".fks"), f"{p} looks like an image file"
        for i, needle in enumerate(needles):
            if needle in raw:
                hits.append((str(p.relative_to(data_dir)), i))
    return hits


def _astronaut_embedding():
    """The real pipeline on scikit-image's astronaut, when the models are installed (else None)."""
    try:
        from skimage import data

        from firmware.vision import FacePipeline, VisionError

        pipe = FacePipeline.from_manifest(num_threads=1)
        res = pipe.process(data.astronaut())
    except (ImportError, VisionError, OSError):
        return None, None
    if not res.ok:
        return None, None
    return res.embedding, res.primary.aligned


def test_data_dir_holds_no_raw_embedding_image_or_key(store):
    rng = np.random.default_rng(42)
    needles: list[bytes] = []
    keys: list[bytes] = []
    users = []
    face, aligned = _astronaut_embedding()
    if face is not None:
        users.append(("Astronaut", [face]))
        needles += _windows(np.ascontiguousarray(aligned).tobytes(), 48, 48)  # 16 RGB pixels of the face crop
    for i in range(4):
        base = unit(rng)
        users.append((f"user{i}", [base, near(rng, base, 0.9), near(rng, base, 0.9)]))
    ids = []
    for name, embs in users:
        uid = store.enroll(name, embs)
        ids.append(uid)
        for e in embs:
            needles += _needles_for_embedding(e)
        mean = np.mean([e / np.linalg.norm(e) for e in embs], axis=0)
        needles += _needles_for_embedding(mean)
        keys.append(store.biometric_key(uid, embs[0]))
        keys.append(store.user_image_key(uid, embs[0]))
    store.purge(ids[-1])
    for kid in store.keystore.list_ids():
        for v in store.keystore.versions(kid):
            keys.append(store.keystore.unseal(kid, v))
    device_secret = getattr(store.keystore, "_device_secret_path", None)
    if device_secret is not None:  # file backend: the device secret and the KEK must not be in the data dir
        assert not str(device_secret).startswith(str(store.data_dir))
        ds = Path(device_secret).read_bytes()
        params = keyfile.decode(store.keystore.path.read_bytes()).params
        kek = Scrypt(salt=base64.b64decode(params["salt"]), length=32, n=1 << params["log2n"], r=params["r"],
                     p=params["p"]).derive(len(ds).to_bytes(2, "big") + ds)
        check = base64.b64decode(params["check"])
        ChaCha20Poly1305(kek).decrypt(check[:12], check[12:], b"facelock keystore kek-check v1")  # it is the KEK
        keys += [ds, kek]
    needles += [k[i : i + 16] for k in keys for i in (0, 16) if len(k) >= i + 16]
    assert len(keys) >= 2 * len(users)
    hits = _scan(store.data_dir, needles)
    assert hits == [], f"plaintext found at rest: {hits[:5]}"


def test_scan_detects_a_planted_embedding(tmp_path):
    """The scanner is not vacuous: a raw embedding written into the data dir is found."""
    rng = np.random.default_rng(1)
    e = unit(rng)
    (tmp_path / "leak.bin").write_bytes(b"header" + e.tobytes() + b"trailer")
    assert _scan(tmp_path, _needles_for_embedding(e))
    (tmp_path / "leak.bin").write_bytes(quantize(e).tobytes())
    assert _scan(tmp_path, _needles_for_embedding(e))
    (tmp_path / "leak.bin").write_bytes(b"x" * 7 + (e * 2).astype("<f8").tobytes()[40:120])  # a scaled slice
    assert _scan(tmp_path, _needles_for_embedding(e * 2))
