"""The console's static files: vendored third-party files are pinned by SHA-256 in static/VENDORED.json
and checked when the app is built (`verify_vendored`), so a swapped or corrupted htmx never reaches a
browser; the app refuses to start instead.  Only the files listed in STATIC_FILES are served."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from central.errors import CentralError

STATIC_DIR = Path(__file__).resolve().parent / "static"
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
MANIFEST = STATIC_DIR / "VENDORED.json"
STATIC_FILES = {"htmx.min.js": "text/javascript", "console.js": "text/javascript", "console.css": "text/css",
                "favicon.svg": "image/svg+xml"}


class AssetError(CentralError):
    """A vendored static file is missing or differs from its pinned SHA-256."""


def verify_vendored(directory: Path = STATIC_DIR) -> dict[str, str]:
    """{file: sha256} of every vendored file, or AssetError."""
    try:
        manifest = json.loads((directory / MANIFEST.name).read_text())
    except (OSError, ValueError) as exc:
        raise AssetError(f"cannot read {MANIFEST.name}: {exc.__class__.__name__}") from None
    out = {}
    for name, entry in manifest.items():
        try:
            digest = hashlib.sha256((directory / name).read_bytes()).hexdigest()
        except OSError:
            raise AssetError(f"vendored {name} is missing") from None
        if digest != entry.get("sha256"):
            raise AssetError(f"vendored {name} differs from its pinned sha256 ({digest[:16]}... != "
                             f"{str(entry.get('sha256'))[:16]}...)")
        out[name] = digest
    return out
