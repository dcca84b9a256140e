"""`facelock models list|install-research`: the device's models, and the opt-in research-only path.

The repository ships only models whose licence allows commercial use (models/manifest.json).  A
stronger research-only embedder (models/research.json pins its facts, never its file) may be used on a
user's own machine: ``install-research`` shows its licence, refuses without ``--accept-licence``,
checks the file against the pinned sha256 and copies it atomically into ``<data_dir>/models``
(firmware.vision.manifest.research_dir).  The lock uses it only when ``[vision] embedder`` names it,
and loads it through the same sha256 check as every other model.
"""

from __future__ import annotations

from pathlib import Path

import click

from provisioning.errors import InputFileError, ProvisioningError
from provisioning.options import PATH, data_dir_option, emit_json, json_option


class LicenceNotAcceptedError(ProvisioningError):
    """A research-only model was to be installed without ``--accept-licence``."""


def install_research(manifest, name: str, src: Path, overlay: Path) -> Path:
    """Copy ``src`` into ``overlay`` as the research model ``name`` after checking its pinned sha256.

    The bytes that are hashed are the bytes that are written (read once, then temp file, fsync,
    rename): a file changed between check and copy cannot slip in, and a reader never sees a partial
    model.  Raises InputFileError for an unreadable or wrong file (nothing is written then).
    """
    from firmware import fsutil
    from firmware.vision.manifest import sha256_bytes

    spec = manifest.spec(name)
    if not spec.research_only:
        raise InputFileError(f"{name} is a shipped model, not a research-only one: nothing to install")
    try:
        data = src.read_bytes()
    except OSError as exc:
        raise InputFileError(f"{src}: cannot be read ({exc.strerror or exc})") from exc
    digest = sha256_bytes(data)
    if digest != spec.sha256:
        raise InputFileError(f"{src} is not the pinned {name}: sha256 {digest[:16]}… != {spec.sha256[:16]}…; "
                             "refusing to install an altered or different model")
    dest = overlay / spec.file
    fsutil.atomic_write(dest, data, 0o644, make_parents=True)
    return dest


def _rows(manifest) -> list[dict]:
    rows = []
    for spec in [*manifest.models.values(), *manifest.research.values()]:
        path = manifest.path_of(spec)
        rows.append({"name": spec.name, "role": spec.role, "license": spec.license,
                     "research_only": spec.research_only, "default": spec.name in manifest.defaults.values(),
                     "output_size": spec.output_size, "installed": path.is_file(), "path": str(path),
                     "calibrated": bool(spec.thresholds.get("operating_points"))})
    return rows


@click.group("models")
def command() -> None:
    """Device models: list them with their licences; install an opt-in research-only embedder."""


@command.command("list")
@data_dir_option
@json_option
@click.option("--manifest", default=None, type=click.Path(), help="model manifest (default models/manifest.json)")
def list_(data_dir: Path, as_json: bool, manifest: str | None) -> None:
    """Every shipped and research-only model with its licence and whether its file is installed here."""
    from firmware.vision.manifest import Manifest, research_dir

    m = Manifest.load(manifest, overlay=research_dir(data_dir))
    rows = _rows(m)
    if as_json:
        emit_json({"models": rows, "research_dir": str(m.overlay)})
        return
    for r in rows:
        tag = " [default]" if r["default"] else " [RESEARCH-ONLY, opt-in]" if r["research_only"] else ""
        state = "installed" if r["installed"] else "NOT INSTALLED"
        click.echo(f"{r['name']:<24} {r['role']:<10} {state:<13} licence: {r['license']}{tag}")


@command.command("install-research")
@click.argument("file", type=PATH)
@click.option("--model", "name", default=None,
              help="research model to install (default: the only one pinned in models/research.json)")
@click.option("--accept-licence", "accept", is_flag=True,
              help="accept the model's licence terms (shown first); without it nothing is installed")
@click.option("--manifest", default=None, type=click.Path(), help="model manifest (default models/manifest.json)")
@data_dir_option
def install(file: Path, name: str | None, accept: bool, manifest: str | None, data_dir: Path) -> None:
    """Install a research-only embedder FILE on this machine (into DATA_DIR/models), after its licence."""
    from firmware.vision.manifest import Manifest, research_dir

    m = Manifest.load(manifest, overlay=research_dir(data_dir))
    if name is None:
        if len(m.research) != 1:
            raise InputFileError(f"name the model with --model (pinned: {', '.join(sorted(m.research)) or 'none'})")
        name = next(iter(m.research))
    spec = m.spec(name)
    if not spec.research_only:
        raise InputFileError(f"{name} is a shipped model, not a research-only one: nothing to install")
    click.echo(f"{spec.name}: licence: {spec.license}", err=True)
    click.echo(f"  {spec.license_terms}", err=True)
    if not accept:
        raise LicenceNotAcceptedError(f"{spec.name} is research-only ({spec.license}): read its terms above and "
                                      "pass --accept-licence to install it; nothing was installed")
    dest = install_research(m, spec.name, file, m.overlay)
    click.echo(f"installed {spec.name} (sha256 {spec.sha256[:16]}…) at {dest}; use it with "
               f"`[vision] embedder = \"{spec.name}\"` and re-enrol every user (its templates are "
               f"{spec.output_size}-d)")
