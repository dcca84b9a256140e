"""The model manifest (models/manifest.json): one place for every model constant.

Per model: file, sha256, bytes, role, input size/colour/normalisation, output size, source, licence
and (for embedders) the calibrated thresholds written by ``facelock calibrate``.  Every model file is
hashed at load and refused with :class:`ModelIntegrityError` when it differs from the manifest.

Research-only models (``models/research.json``, same format, every entry ``"research_only": true``) are
pinned facts only: their files are never shipped nor built.  A user installs one on their own machine
with ``facelock models install-research`` after accepting its licence; it lives in the device's
overlay, ``<data_dir>/models`` (:func:`research_dir`), is loaded through the same sha256 check, and a
manifest never names one as a default.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware import fsutil
from firmware.vision.errors import (
    ModelIntegrityError,
    ModelManifestError,
    ModelMissingError,
    NotCalibratedError,
    ResearchModelNotInstalledError,
)

MANIFEST_NAME = "manifest.json"
RESEARCH_NAME = "research.json"  # beside the manifest: pinned entries of opt-in research-only models
SCHEMA_VERSION = 1
INSTALL_RESEARCH = "facelock models install-research FILE --accept-licence"

#: Operating points the calibration writes, keyed by name; value = the per-comparison false-accept rate
#: promised out of sample over all cross-identity pairs (every set of the calibration data is held to
#: 10x that).  "unlock" is the default.
OPERATING_POINTS = {"unlock": 1e-4, "strict": 1e-5}


def default_models_dir() -> Path:
    """Where the device models live; the one resolver every model file goes through.

    In order: ``FACELOCK_MODELS_DIR``; the checkout's ``models/`` next to ``firmware/`` (a source tree or an
    editable install); ``<sys.prefix>/share/facelock/models``, where the wheel installs them (a venv, or
    ``make install-system``'s /opt/facelock); ``/usr/share/facelock/models`` for a distribution package.
    """
    env = os.environ.get("FACELOCK_MODELS_DIR")
    if env:
        return Path(env)
    candidates = (Path(__file__).resolve().parents[2] / "models",
                  Path(sys.prefix) / "share" / "facelock" / "models")
    for here in candidates:
        if (here / MANIFEST_NAME).is_file():
            return here
    return Path("/usr/share/facelock/models")


def research_dir(data_dir: str | Path | None = None) -> Path:
    """The overlay that opt-in research models are installed into: ``<data_dir>/models``.

    ``data_dir`` None = the device's default data dir (``FACELOCK_DATA_DIR``, else /var/lib/facelock).
    Never inside the checkout or the installed models directory: those ship.
    """
    if data_dir is None:
        from firmware.config import default_data_dir

        data_dir = default_data_dir()
    return Path(data_dir) / "models"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _layout(v: Any) -> str:
    if v not in ("NHWC", "NCHW"):
        raise ValueError(f"input layout must be NHWC or NCHW, got {v!r}")
    return str(v)


def _flag(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"research_only must be true or false, got {v!r}")
    return v


@dataclass(frozen=True)
class ModelSpec:
    name: str
    role: str  # "detector" | "landmarks" | "embedder"
    file: str
    sha256: str
    bytes: int
    input_size: tuple[int, int]  # (width, height)
    color: str  # "RGB"
    norm_mean: float
    norm_std: float
    output_size: int
    quantization: str
    source: dict[str, Any] = field(default_factory=dict)
    license: str = ""
    thresholds: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    layout: str = "NHWC"  # input tensor layout: "NHWC" (TFLite's own) or "NCHW" (converted from ONNX)
    research_only: bool = False  # opt-in, installed by the user into the overlay, never shipped or default
    license_terms: str = ""  # the terms the CLI shows before a research-only install

    @classmethod
    def from_dict(cls, name: str, d: dict[str, Any]) -> ModelSpec:
        try:
            inp = d["input"]
            return cls(
                name=name,
                role=str(d["role"]),
                file=str(d["file"]),
                sha256=str(d["sha256"]).lower(),
                bytes=int(d["bytes"]),
                input_size=(int(inp["size"][0]), int(inp["size"][1])),
                color=str(inp.get("color", "RGB")),
                norm_mean=float(inp["normalization"]["mean"]),
                norm_std=float(inp["normalization"]["std"]),
                output_size=int(d["output"]["size"]),
                quantization=str(d.get("quantization", "float32")),
                source=dict(d.get("source", {})),
                license=str(d.get("license", "")),
                thresholds=dict(d.get("thresholds", {})),
                extra=dict(d.get("extra", {})),
                layout=_layout(inp.get("layout", "NHWC")),
                research_only=_flag(d.get("research_only", False)),
                license_terms=str(d.get("license_terms", "")),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelManifestError(f"manifest entry {name!r} is malformed: {exc!r}") from exc

    def threshold(self, operating_point: str = "unlock") -> float:
        """Cosine threshold calibrated for the named operating point ("unlock" = FAR 1e-3, "strict" = 1e-4)."""
        try:
            return float(self.thresholds["operating_points"][operating_point]["threshold"])
        except (KeyError, TypeError, ValueError) as exc:
            raise NotCalibratedError(
                f"model {self.name!r} has no calibrated threshold for {operating_point!r}: run `facelock calibrate`"
            ) from exc

    def threshold_for_far(self, far: float) -> float:
        """Threshold of the calibrated FAR curve for a per-comparison FAR target.

        The curve's points were each chosen by identity-disjoint cross-validation and hold their FAR
        out of sample; between points the stricter neighbour is taken (never interpolated towards the
        lenient side).  A target below the lowest point that held is refused: the calibration data
        cannot vouch for it.
        """
        try:
            curve = [(float(p["far"]), float(p["threshold"])) for p in self.thresholds["far_curve"]
                     if p.get("holds")]
        except (KeyError, TypeError, ValueError) as exc:
            raise NotCalibratedError(f"model {self.name!r} has no calibrated FAR curve: run `facelock calibrate`") \
                from exc
        ok = [(f, t) for f, t in curve if f <= far * (1 + 1e-9)]
        if not ok:
            low = min((f for f, _ in curve), default=None)
            raise NotCalibratedError(
                f"model {self.name!r}: a per-comparison FAR of {far:.2g} is below what its calibration can vouch "
                f"for (lowest held-out point {low if low is None else format(low, '.2g')}); enroll fewer people, "
                "accept a higher stranger rate, or calibrate on more faces")
        return max(ok)[1]


class Manifest:
    """The parsed manifest plus the directory its files live in.

    ``research`` (the parsed research.json, optional) adds opt-in research-only entries whose files are
    looked up in ``overlay`` (default :func:`research_dir`), not beside the manifest.  They are kept out
    of ``models`` so that everything iterating the shipped models (the build, ``make wheel-smoke``, the
    benches) never expects a file the repository does not ship.
    """

    def __init__(self, data: dict[str, Any], directory: Path, path: Path | None = None,
                 research: dict[str, Any] | None = None, research_path: Path | None = None,
                 overlay: str | Path | None = None):
        self.data = data
        self.directory = Path(directory)
        self.path = path
        self.models = self._parse(data, "manifest")
        self.defaults: dict[str, str] = dict(data.get("defaults", {}))
        self.research_data = research
        self.research_path = research_path
        self.research: dict[str, ModelSpec] = self._parse(research, "research manifest") if research else {}
        self._overlay = Path(overlay) if overlay is not None else None
        for name, spec in self.research.items():
            if not spec.research_only:
                raise ModelManifestError(f"research manifest entry {name!r} lacks \"research_only\": true")
            if name in self.models:
                raise ModelManifestError(f"research model {name!r} shadows a shipped model of that name")
        for role, name in self.defaults.items():
            if name in self.research or (name in self.models and self.models[name].research_only):
                raise ModelManifestError(f"default {role!r} names research-only model {name!r}: a research-only "
                                         "model may never be a default")

    @staticmethod
    def _parse(data: Any, what: str) -> dict[str, ModelSpec]:
        if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
            raise ModelManifestError(f"{what} has no 'models' table")
        if data.get("schema") != SCHEMA_VERSION:
            raise ModelManifestError(f"{what} schema {data.get('schema')!r} != supported {SCHEMA_VERSION}")
        return {name: ModelSpec.from_dict(name, d) for name, d in data["models"].items()}

    @staticmethod
    def _read(p: Path) -> Any:
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ModelManifestError(f"model manifest not found at {p} (run `make models`)") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelManifestError(f"model manifest {p} is unreadable: {exc}") from exc

    @classmethod
    def load(cls, path: str | Path | None = None, overlay: str | Path | None = None) -> Manifest:
        """The manifest, plus research.json beside it when present; ``overlay`` = where research models
        are installed (default :func:`research_dir` of the default data dir)."""
        p = Path(path) if path is not None else default_models_dir() / MANIFEST_NAME
        if p.is_dir():
            p = p / MANIFEST_NAME
        data = cls._read(p)
        rp = p.parent / RESEARCH_NAME
        research = cls._read(rp) if rp.is_file() else None
        return cls(data, p.parent, p, research, rp if research is not None else None, overlay)

    @property
    def overlay(self) -> Path:
        """Directory of the installed research models (resolved on first use, not at load)."""
        return self._overlay if self._overlay is not None else research_dir()

    def spec(self, name_or_role: str) -> ModelSpec:
        """A model by name, or the default model of a role ("detector", "landmarks", "embedder", ...)."""
        name = self.defaults.get(name_or_role, name_or_role)
        if name in self.models:
            return self.models[name]
        if name in self.research:
            return self.research[name]
        known = sorted(self.models) + [f"{n} (research-only, opt-in)" for n in sorted(self.research)]
        raise ModelManifestError(f"model {name_or_role!r} is not in the manifest (known: {', '.join(known)})")

    def path_of(self, spec: ModelSpec) -> Path:
        """Where a model's file is: beside the manifest, or in the overlay for a research-only model."""
        return (self.overlay if spec.research_only else self.directory) / spec.file

    def verified_path(self, name_or_role: str) -> Path:
        """Path of a model file after checking it exists and its sha256 matches the manifest."""
        spec = self.spec(name_or_role)
        path = self.path_of(spec)
        if not path.is_file():
            if spec.research_only:
                raise ResearchModelNotInstalledError(
                    f"research-only model {spec.name!r} is configured but not installed at {path}: install it on "
                    f"this machine with `{INSTALL_RESEARCH}` (licence: {spec.license}), or configure another "
                    "embedder (and re-enrol)")
            raise ModelMissingError(f"model file {path} for {spec.name!r} is missing (run `make models`)")
        digest = sha256_file(path)
        if digest != spec.sha256:
            raise ModelIntegrityError(
                f"model file {path.name} fails its integrity check: sha256 {digest[:16]}… "
                f"!= manifest {spec.sha256[:16]}…; refusing to load an altered model"
            )
        return path

    def set_thresholds(self, name: str, entry: dict[str, Any]) -> None:
        """Record calibrated thresholds in the file that pins the model (manifest or research.json)."""
        spec = self.spec(name)
        table = self.research_data if spec.research_only and self.research_data is not None else self.data
        table["models"][spec.name]["thresholds"] = entry

    def save(self, path: str | Path | None = None) -> Path:
        p = Path(path) if path is not None else (self.path or self.directory / MANIFEST_NAME)
        fsutil.atomic_write(p, (json.dumps(self.data, indent=2, sort_keys=False) + "\n").encode(), 0o644)
        if self.research_data is not None and self.research_path is not None and path is None:
            fsutil.atomic_write(self.research_path,
                                (json.dumps(self.research_data, indent=2, sort_keys=False) + "\n").encode(), 0o644)
        return p
