"""`facelock enroll NAME`: capture a face, store a protected template, print the new user id."""

from __future__ import annotations

from pathlib import Path

import click

from provisioning.options import PATH, data_dir_option, emit_json, json_option

MIN_GOOD_FRAMES = 3


@click.command("enroll")
@click.argument("name")
@click.option("--images", "images", type=PATH, default=None,
              help="Enroll from the image files in this folder (an operator import: no liveness check).")
@click.option("--camera", "camera", is_flag=True, help="Enroll live from the camera (quality gates + liveness).")
@click.option("--camera-source", default=None,
              help="Camera for --camera: V4L2 index, /dev/videoN, picamera2, a video file or a frame folder "
              "[default: the config's [camera], else 0].")
@click.option("--frames", type=click.IntRange(1, 50), default=5, show_default=True,
              help="Good frames to average into the template.")
@click.option("--force", is_flag=True, help="Enroll even if this face is already enrolled under another name.")
@data_dir_option
@json_option
def command(name: str, images: Path | None, camera: bool, camera_source: str | None, frames: int, force: bool,
            data_dir: Path, as_json: bool) -> None:
    """Enroll NAME from --images DIR or --camera; prints the new user id.

    Frames that fail the quality gates (no face, several faces, too small, dark,
    blurred, turned away) are skipped with the reason; the embeddings of the good
    ones are averaged.  The template is stored protected (encrypted embedding +
    fuzzy-extractor helper data): no face image or raw embedding is written.
    A face that matches an already enrolled user is refused unless --force.

    \b
    Examples:
      facelock enroll alice --images ./alice-photos/
      facelock enroll bob --camera --camera-source 0 --frames 8
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from provisioning import auditlog, capture, stores
    from provisioning.datadir import DataDir
    from provisioning.errors import AlreadyExistsError, FaceRefusedError, ProvisioningError

    dd = DataDir(data_dir)
    dd.require_device()
    if (images is None) == (not camera):
        raise ProvisioningError("give exactly one of --images DIR or --camera")
    stores.check_user_name(name)
    users = stores.users(dd)
    if users.find(name) is not None:
        raise AlreadyExistsError(f"a user named {name!r} is already enrolled (rename or purge it first)")

    console = Console(stderr=True, quiet=as_json)
    with Progress(TextColumn("[bold]enroll[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(name, total=frames)

        def step(good: int, note: str) -> None:
            progress.update(task, advance=good, description=f"{name}: {note}")

        if images is not None:
            cap = capture.from_images(images, frames, step)
        else:
            try:
                cap = capture.from_camera(camera_source or capture.default_camera_source(), frames, step)
            except FaceRefusedError as exc:
                auditlog.record(dd, auditlog.refusal_kind("enroll", exc))
                raise
    need = min(frames, MIN_GOOD_FRAMES)
    if len(cap.embeddings) < need:
        raise FaceRefusedError(
            f"only {len(cap.embeddings)} usable face frame(s), need {need}"
            + (f" (e.g. {cap.rejected[-1][0]}: {cap.rejected[-1][1]})" if cap.rejected else "")
        )
    import numpy as np

    emb = np.stack(cap.embeddings)
    dup = users.identify(emb)
    if dup is not None and not force:
        raise AlreadyExistsError(
            f"this face is already enrolled as {dup.name!r} (user {dup.user_id}, score {dup.score:.2f}); "
            "use --force to enroll it again under another name"
        )
    user = users.enroll(name, emb)
    if not as_json:
        for src, why in cap.rejected:  # after success only: a refusal is one line
            click.echo(f"skipped {src}: {why}", err=True)
    auditlog.record(dd, "user_enrolled", user=users.audit_ref(user.user_id), frames=len(cap.embeddings),
                 source="camera" if camera else "images", forced=bool(dup is not None and force))
    info = {"user_id": user.user_id, "name": name, "frames": len(cap.embeddings),
            "liveness": "passed" if cap.liveness is not None else "not checked (still images)"}
    if as_json:
        emit_json(info)
    else:
        click.echo(user.user_id)
