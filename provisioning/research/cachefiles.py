"""Research caches: keyed by the code that made them, kept private.

The fingerprint of the code that turns pixels into cached numbers, so a cache never outlives it.

Why: the research caches (embeddings of a face set, per-frame liveness records) were keyed by model
hashes and input files only.  An edit of the face pipeline (a crop rule, which face of a still is
scored, a feature) left old entries valid, and figures in the model cards were then computed partly
from numbers the current code would not produce (seen: BPCER 3/31 reported, 2/31 from a fresh cache;
a static-replay threshold 0.97533 vs 0.97404).  Keying on the source of ``firmware/vision`` (every
module a frame passes through before it is cached) plus the caching module itself makes a stale entry
impossible, at the price of recomputing after any such edit.

The entries are landmarks, embeddings and scores of real (research-licensed) faces: personal data, so
every cache directory is made owner-only (``private_dir``) before anything is written into it.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
#: the face pipeline and the liveness per-frame scoring: everything upstream of a cached number
VISION_SOURCES = ("firmware/vision",)


@cache
def code_fingerprint(*extra_files: str) -> str:
    """sha256 (16 hex chars) over path and bytes of every .py under firmware/vision and ``extra_files``."""
    h = hashlib.sha256()
    files: list[Path] = []
    for d in VISION_SOURCES:
        files.extend(sorted((_ROOT / d).rglob("*.py")))
    files.extend(Path(f).resolve() for f in extra_files)
    for f in files:
        h.update(str(f.relative_to(_ROOT) if f.is_relative_to(_ROOT) else f.name).encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make it owner-only (0700): files in it are unreachable by others."""
    import os

    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path
