"""`facelock encrypt IMAGE --user U -o OUT`: seal an image under a user's key after verifying their face."""

from __future__ import annotations

from pathlib import Path

import click

from provisioning.options import PATH, data_dir_option, emit_json, json_option
from provisioning.pinentry import pin_file_option


@click.command("encrypt")
@click.argument("image", type=PATH)
@click.option("--user", "user", required=True, help="Owner of the encrypted file (name or user id).")
@click.option("-o", "--output", "output", required=True, type=PATH, help="Output file.")
@click.option("--probe", type=PATH, default=None,
              help="Verify the user's face from this image (scripting and tests) instead of the camera.")
@click.option("--camera", "camera", default=None, metavar="SOURCE",
              help="Verify the user's live face from this camera: V4L2 index, /dev/videoN, picamera2, a video "
              "file or a frame folder [default: the config's [camera], else 0].")
@click.option("--pin", "use_pin", is_flag=True,
              help="Also require a PIN to decrypt (Argon2id, 64 MiB): safe even from a rooted lock, which never "
              "stores it. Read from --pin-file, $FACELOCK_PIN or a prompt.")
@pin_file_option
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@data_dir_option
@json_option
def command(image: Path, user: str, output: Path, probe: Path | None, camera: str | None, use_pin: bool,
            pin_file: Path | None, force: bool, data_dir: Path, as_json: bool) -> None:
    """Encrypt IMAGE for USER, after verifying USER's face (--probe IMAGE or --camera SOURCE).

    The output is a FaceLock image container (ChaCha20-Poly1305 over the chaotic
    layer) under USER's image key; only USER's face, verified again on this
    device, can decrypt it.  The file's bytes come back bit-exact.

    With --pin the file also needs a PIN that the lock never stores (see the
    README's threat model: the only factor a rooted lock does not hold).

    \b
    Example:
      facelock encrypt photo.jpg --user alice --camera 0 -o photo.flk
      facelock encrypt photo.jpg --user alice --camera 0 --pin -o photo.flk
    """
    from firmware.crypto import container, pinfactor
    from firmware.crypto.errors import ImageDecodeError
    from provisioning import auditlog, stores
    from provisioning.datadir import DataDir
    from provisioning.errors import FaceRefusedError, InputFileError
    from provisioning.verify import CONTAINER_META_KEY, image_key_for, read_input, write_output

    dd = DataDir(data_dir)
    dd.require_device()
    data = read_input(image, "image")
    try:
        container.describe_image(data)
    except ImageDecodeError as exc:
        raise InputFileError(f"{image}: {exc}") from None
    pin = None
    if use_pin:  # asked (and length-checked) before the face, so nobody poses for a refusal
        from provisioning.pinentry import read_pin

        pin = read_pin(pin_file, confirm=True)
        pinfactor.normalise_pin(pin)
    users = stores.users(dd)
    try:
        u, key, meta = image_key_for(users, user, probe, camera)
    except FaceRefusedError as exc:
        auditlog.record(dd, auditlog.refusal_kind("encrypt", exc), user=users.audit_ref(users.get(user).user_id))
        raise
    owner = {"user_id": u.user_id, **{k: v for k, v in meta.items() if k != "verified_by"}}
    if pin is not None:
        owner["pin"] = pinfactor.new_descriptor()
        key = pinfactor.combine(key, pin, owner["pin"])
    token = container.seal_file_bytes(key, data, metadata={CONTAINER_META_KEY: owner})
    write_output(output, token, force, inputs=(image,))
    auditlog.record(dd, "image_encrypted", user=users.audit_ref(u.user_id), bytes=len(data))
    info = {"output": str(output), "user_id": u.user_id, "bytes": len(token), "verified_by": meta["verified_by"],
            "pin": pin is not None}
    if as_json:
        emit_json(info)
    else:
        click.echo(f"encrypted {image} for {u.name} -> {output} ({len(token)} bytes)")
