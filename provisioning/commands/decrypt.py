"""`facelock decrypt FILE -o OUT`: open a FaceLock container only after the owner's face verifies again."""

from __future__ import annotations

from pathlib import Path

import click

from provisioning.options import PATH, data_dir_option, emit_json, json_option
from provisioning.pinentry import pin_file_option


@click.command("decrypt")
@click.argument("file", type=PATH)
@click.option("-o", "--output", "output", required=True, type=PATH, help="Output file.")
@click.option("--probe", type=PATH, default=None,
              help="Verify the owner's face from this image (scripting and tests) instead of the camera.")
@click.option("--camera", "camera", default=None, metavar="SOURCE",
              help="Verify the owner's live face from this camera: V4L2 index, /dev/videoN, picamera2, a video "
              "file or a frame folder [default: the config's [camera], else 0].")
@pin_file_option
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@data_dir_option
@json_option
def command(file: Path, output: Path, probe: Path | None, camera: str | None, pin_file: Path | None, force: bool,
            data_dir: Path, as_json: bool) -> None:
    """Decrypt FILE after verifying its owner's face (--probe IMAGE or --camera SOURCE).

    Another person's face is refused (exit code 3) and nothing is written.  Files
    of a purged user cannot be decrypted by anyone.  A file sealed with
    `encrypt --pin` also needs its PIN (--pin-file, $FACELOCK_PIN or a prompt);
    a wrong PIN is refused with exit code 3.

    \b
    Example:
      facelock decrypt photo.flk --camera 0 -o photo.jpg
    """
    from firmware.crypto import container, pinfactor
    from firmware.crypto.errors import ContainerFormatError, CryptoError, WrongKeyError
    from provisioning import auditlog, stores
    from provisioning.datadir import DataDir
    from provisioning.errors import FaceRefusedError, InputFileError, ProvisioningError
    from provisioning.verify import CONTAINER_META_KEY, image_key_for, read_input, write_output

    dd = DataDir(data_dir)
    dd.require_device()
    token = read_input(file, "container")
    try:
        header = container.read_header(token)
    except ContainerFormatError as exc:
        raise InputFileError(f"{file}: not a FaceLock encrypted file ({exc})") from None
    owner = header.metadata.get(CONTAINER_META_KEY, {}) if isinstance(header.metadata, dict) else {}
    user_id = owner.get("user_id") if isinstance(owner, dict) else None
    if not isinstance(user_id, str):
        raise InputFileError(f"{file}: not sealed by `facelock encrypt` (no owner in its header)")
    pin = None
    if "pin" in owner:  # descriptor bounded (KDF memory <= 64 MiB) and PIN read before the face is asked
        try:
            pinfactor.parse_descriptor(owner["pin"])
        except ContainerFormatError as exc:
            raise InputFileError(f"{file}: {exc}") from None
        from provisioning.pinentry import read_pin

        pin = read_pin(pin_file, confirm=False)
    users = stores.users(dd)
    if users.find(user_id) is None:
        raise ProvisioningError(f"{file}: its owner {user_id} is not enrolled on this device (purged, or another "
                                "device): it cannot be decrypted")
    try:
        u, key, _meta = image_key_for(users, user_id, probe, camera)
    except FaceRefusedError as exc:
        auditlog.record(dd, auditlog.refusal_kind("decrypt", exc), user=users.audit_ref(user_id))
        raise
    if pin is not None:
        try:
            key = pinfactor.combine(key, pin, owner["pin"])
        except pinfactor.PinError as exc:
            raise FaceRefusedError(f"{file}: the PIN is refused: {exc}") from None
    try:
        opened = container.open_(key, token)
    except WrongKeyError:
        if pin is not None:
            auditlog.record(dd, "decrypt_refused_pin", user=users.audit_ref(user_id))
            raise FaceRefusedError(f"{file}: wrong PIN (the face verified): nothing decrypted") from None
        raise ProvisioningError(f"{file}: cannot be decrypted: this container was sealed under a different key") from None
    except CryptoError as exc:
        raise ProvisioningError(f"{file}: cannot be decrypted: {exc}") from None
    data = opened.data if opened.data is not None else None
    if data is None:  # a raw-array container: write it as PNG is not our job; refuse clearly
        raise InputFileError(f"{file}: holds a raw frame, not an image file; use the firmware API to open it")
    write_output(output, data, force, inputs=(file,))
    auditlog.record(dd, "image_decrypted", user=users.audit_ref(u.user_id), bytes=len(data))
    info = {"output": str(output), "user_id": u.user_id, "bytes": len(data)}
    if as_json:
        emit_json(info)
    else:
        click.echo(f"decrypted {file} for {u.name} -> {output} ({len(data)} bytes)")
