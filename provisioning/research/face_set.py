"""A labelled face-image set for calibration and evaluation, and its embeddings (computed once, cached).

The set is every image of a dataset folder (``manifest.csv`` with columns set,path,identity, or, without
one, the images a pairs CSV names), not only the images of a pairs list: calibration scores *every*
cross-identity pair of them.  Identities are compared by a global key, because some people appear in
several sets (the colour LFW images are of LFW-a people; ``facerec_examples/biden`` is LFW-a's
``Joseph_Biden``): a pair of one person from two sets is genuine, never an impostor.

Embeddings of real faces are personal data.  The cache exists so that one dev machine does not run the
pipeline over thousands of research images for every command; it lives under ``build/`` or a temp
directory given by the caller (never the repository, never a device data dir), is written 0600, and
holds embeddings and failure reasons only, never a face image.  ``--no-cache`` skips it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from provisioning.errors import InputFileError

#: Sets whose identity labels are real names, shared across sets (LFW naming: First_Last).
NAMED_SETS = ("lfwa_gray", "lfw_color", "dlib_johns")
#: The same person labelled differently in two sets: (set, identity) -> global key.
ALIASES = {("facerec_examples", "biden"): "joseph_biden"}

#: Cache format version: bump when the pipeline's output for an image could change.
CACHE_VERSION = 3  # 3: the labelled (most central) face of a still, not the largest


def identity_key(set_name: str, identity: str) -> str:
    """Global identity key: a real name for named sets, ``set/label`` for sets with local labels."""
    alias = ALIASES.get((set_name, identity))
    if alias:
        return alias
    if set_name in NAMED_SETS:
        return identity.lower()
    return f"{set_name}/{identity}".lower()


@dataclass
class FaceSet:
    root: Path
    paths: list[str]  # relative to root
    sets: np.ndarray  # (N,) str
    identities: np.ndarray  # (N,) str, the set's own label
    keys: np.ndarray  # (N,) int, global identity index
    key_names: list[str]  # key index -> global identity key
    sha256: str  # of the listing the set came from

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def images_sha256(self) -> str:
        """Digest of the image list (paths), whichever listing it came from."""
        return hashlib.sha256("\n".join(self.paths).encode()).hexdigest()

    @property
    def set_names(self) -> list[str]:
        return sorted(set(self.sets.tolist()))

    def subset(self, mask: np.ndarray) -> FaceSet:
        idx = np.flatnonzero(mask)
        return FaceSet(self.root, [self.paths[i] for i in idx], self.sets[idx], self.identities[idx],
                       self.keys[idx], self.key_names, self.sha256)


def _rows_from(path: Path, cols: tuple[str, ...]) -> tuple[list[dict[str, str]], str]:
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path} is not UTF-8 text") from exc
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in cols if c not in (reader.fieldnames or [])]
    if missing:
        raise InputFileError(f"{path} lacks column(s) {', '.join(missing)}")
    return list(reader), hashlib.sha256(raw).hexdigest()


def load_face_set(root: str | Path, listing: str | Path | None = None, sets: tuple[str, ...] = ()) -> FaceSet:
    """Images of ``root``: from ``listing`` (a manifest.csv with set,path,identity, or a pairs CSV),
    default ``root/manifest.csv``."""
    rootp = Path(root)
    if not rootp.is_dir():
        raise InputFileError(f"--root {rootp} is not a directory")
    lp = Path(listing) if listing else rootp / "manifest.csv"
    seen: dict[str, tuple[str, str]] = {}
    if lp.is_file() and "path_a" in (lp.read_text(encoding="utf-8-sig").splitlines() or [""])[0]:
        rows, sha = _rows_from(lp, ("set", "path_a", "path_b", "identity_a", "identity_b"))
        for r in rows:
            seen.setdefault(r["path_a"], (r["set"], r["identity_a"]))
            seen.setdefault(r["path_b"], (r["set"], r["identity_b"]))
    else:
        rows, sha = _rows_from(lp, ("set", "path", "identity"))
        for r in rows:
            seen.setdefault(r["path"], (r["set"], r["identity"]))
    items = sorted((p, s, i) for p, (s, i) in seen.items() if not sets or s in sets)
    if not items:
        raise InputFileError(f"{lp} lists no images" + (f" of set(s) {', '.join(sets)}" if sets else ""))
    keys = [identity_key(s, i) for _, s, i in items]
    names = sorted(set(keys))
    index = {k: n for n, k in enumerate(names)}
    return FaceSet(rootp, [p for p, _, _ in items], np.array([s for _, s, _ in items]),
                   np.array([i for _, _, i in items]), np.array([index[k] for k in keys]), names, sha)


# ------------------------------------------------------------------------------------------ embedding
@dataclass
class Embeddings:
    """Unit embeddings of a FaceSet's images by one model; rows of failed images are NaN."""

    model: str
    model_sha256: str
    vectors: np.ndarray  # (N, D) float32
    reasons: np.ndarray  # (N,) str: "ok" or why no embedding
    ms: np.ndarray  # (N,) pipeline ms per image (0 for cached runs of extra models)

    @property
    def ok(self) -> np.ndarray:
        return self.reasons == "ok"


def augment(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One frame of a simulated capture burst: small shift/scale/rotation, exposure, sensor noise, blur.

    A still photo replayed as an attempt's burst: the pose barely changes between frames at 15 fps,
    the camera's exposure and noise do.
    """
    import cv2

    h, w = rgb.shape[:2]
    ang = rng.uniform(-5, 5)
    sc = rng.uniform(0.93, 1.07)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), ang, sc)
    m[:, 2] += rng.uniform(-0.04, 0.04, 2) * (w, h)
    out = cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out = out.astype(np.float32) * rng.uniform(0.8, 1.2) + rng.uniform(-12, 12)
    out += rng.normal(0, rng.uniform(1.0, 4.0), out.shape)
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.6, 1.2))
    return np.clip(out, 0, 255).astype(np.uint8)


def central_face(frame_shape: tuple[int, ...], faces: list) -> int:
    """Index of the face a still photo's label refers to: of the faces with an aligned crop, the one
    whose detection box centre is nearest the frame centre (ties: the earlier, i.e. larger, face).

    Why: the labelled sets follow LFW's convention, each photo centred on the person it is labelled
    with.  The device embeds the largest face, and refuses a frame with a second face of half its width
    (``multiple_faces``); still photos are scored with that gate off, so in a photo of two people the
    largest face can be the other person (11 LFW-a images, e.g. Colin_Farrell/3): a comparison of the
    wrong person, counted as a genuine reject or as an impostor pair of a mislabelled face.
    """
    h, w = frame_shape[:2]
    best, best_d = 0, np.inf
    for i, f in enumerate(faces):
        if f.aligned is None:
            continue
        b = np.asarray(f.detection.box, dtype=np.float64)
        d = float(np.hypot((b[0] + b[2]) / 2 - w / 2, (b[1] + b[3]) / 2 - h / 2))
        if d < best_d:
            best, best_d = i, d
    return best


def process_still(pipe, rgb: np.ndarray):
    """``pipe.process`` for a labelled still photo: when the frame passes and holds several faces, the
    labelled one (:func:`central_face`) is embedded and put first, so ``res.embedding`` and
    ``res.primary`` are that person's.  Live frames (the device, the clips) keep the largest face."""
    res = pipe.process(rgb)
    if res.ok and len(res.faces) > 1:
        j = central_face(rgb.shape, res.faces)
        if j:
            face = res.faces.pop(j)
            face.embedding = pipe.embed_aligned(face.aligned)
            res.faces[0].embedding = None
            res.faces.insert(0, face)
    return res


def _seed(path: str, frame: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{path}#{frame}".encode()).digest()[:8], "big")


def embed_face_set(fs: FaceSet, pipe, extra: dict | None = None, burst: int = 0,
                   progress: bool = True) -> dict[str, Embeddings]:
    """Run the pipeline once per image (``burst`` > 0: that many augmented frames per image instead,
    rows ordered image-major, default embedder only).  ``extra``: {name: Embedder} run on the same
    aligned crop (candidate embedders, compared on exactly the faces the default one saw)."""
    from firmware.vision import VisionError, load_image

    extra = dict(extra or {}) if not burst else {}
    frames = max(burst, 1)
    n = len(fs) * frames
    dim = pipe.embedder.dim
    out = {pipe.embedder.spec.name: Embeddings(pipe.embedder.spec.name, pipe.embedder.spec.sha256,
                                               np.full((n, dim), np.nan, np.float32), np.full(n, "", object),
                                               np.zeros(n))}
    for name, emb in extra.items():
        out[name] = Embeddings(name, emb.spec.sha256, np.full((n, emb.dim), np.nan, np.float32),
                               np.full(n, "", object), np.zeros(n))
    t_last = time.monotonic()
    for i, rel in enumerate(fs.paths):
        try:
            rgb = load_image(fs.root / rel)
        except VisionError as exc:
            for e in out.values():
                e.reasons[i * frames:(i + 1) * frames] = f"unreadable: {type(exc).__name__}"
            continue
        for f in range(frames):
            row = i * frames + f
            img = augment(rgb, np.random.default_rng(_seed(rel, f))) if burst else rgb
            t0 = time.perf_counter()
            res = process_still(pipe, img)
            main = out[pipe.embedder.spec.name]
            main.ms[row] = (time.perf_counter() - t0) * 1e3
            main.reasons[row] = res.reason.value
            if res.ok:
                main.vectors[row] = res.embedding
            for name, emb in extra.items():
                out[name].reasons[row] = res.reason.value
                if res.ok:
                    t1 = time.perf_counter()
                    out[name].vectors[row] = emb(res.primary.aligned)
                    out[name].ms[row] = (time.perf_counter() - t1) * 1e3
        if progress and time.monotonic() - t_last > 30:
            t_last = time.monotonic()
            print(f"embedded {i + 1}/{len(fs)} images", flush=True)
    for e in out.values():
        e.reasons = e.reasons.astype(str)
    return out


# ---------------------------------------------------------------------------------------------- cache
def default_cache_dir() -> Path:
    """``$FACELOCK_EVAL_CACHE``, else build/eval-cache of the checkout (git-ignored)."""
    env = os.environ.get("FACELOCK_EVAL_CACHE")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "build" / "eval-cache"


def cache_file(cache_dir: Path, fs: FaceSet, model_sha: str, settings: str) -> Path:
    """The entry of (set, model, settings) for the code as it is now (``code_fingerprint``)."""
    from provisioning.research.cachefiles import code_fingerprint

    ident = (f"v{CACHE_VERSION}|{code_fingerprint(__file__)}|{fs.sha256}|{len(fs)}|{model_sha}|{settings}|"
             f"{fs.root.resolve()}")
    h = hashlib.sha256(ident.encode()).hexdigest()[:24]
    return cache_dir / f"emb-{h}.npz"


def save_cached(path: Path, e: Embeddings) -> None:
    from provisioning.research.cachefiles import private_dir

    private_dir(path.parent)
    buf = io.BytesIO()
    np.savez(buf, vectors=e.vectors, reasons=e.reasons.astype(str), ms=e.ms,
             meta=np.array([e.model, e.model_sha256]))
    from firmware import fsutil

    fsutil.atomic_write(path, buf.getvalue(), 0o600)


def load_cached(path: Path) -> Embeddings | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = z["meta"].tolist()
            return Embeddings(meta[0], meta[1], z["vectors"], z["reasons"].astype(str), z["ms"])
    except (OSError, KeyError, ValueError):
        return None


def embeddings_for(fs: FaceSet, pipe, extra: dict | None = None, burst: int = 0, cache: Path | None = None,
                   progress: bool = True) -> dict[str, Embeddings]:
    """Embeddings of every image by the pipeline's embedder (and ``extra`` ones), from the cache when
    an entry for exactly this set, model file and pipeline setting exists."""
    extra = dict(extra or {})
    settings = f"flip={pipe.embedder.flip}|lm={bool(pipe.landmarker)}|gates={pipe.quality.enabled}|burst={burst}"
    specs = {pipe.embedder.spec.name: pipe.embedder.spec.sha256, **{n: e.spec.sha256 for n, e in extra.items()}}
    got: dict[str, Embeddings] = {}
    if cache is not None:
        for name, sha in specs.items():
            flip = extra[name].flip if name in extra else pipe.embedder.flip
            c = load_cached(cache_file(cache, fs, sha, settings + f"|self-flip={flip}"))
            if c is not None and len(c.reasons) == len(fs) * max(burst, 1):
                got[name] = c
    missing = [n for n in specs if n not in got]
    if missing:
        todo = {n: e for n, e in extra.items() if n in missing}
        fresh = embed_face_set(fs, pipe, todo, burst, progress)
        for name in missing:
            if name not in fresh:  # a cached default with a fresh extra model: the default ran again
                continue
            got[name] = fresh[name]
            if cache is not None:
                flip = extra[name].flip if name in extra else pipe.embedder.flip
                save_cached(cache_file(cache, fs, specs[name], settings + f"|self-flip={flip}"), fresh[name])
    return got
