"""What the broker must allow for the centre, on top of the lock fleet's ACL (provisioning.mosquitto).

The centre connects with its own client certificate (CN `facelock-central`); mosquitto ACLs are additive,
so these lines extend whatever the fleet ACL grants without widening any device's rights: a door may
read only its own bundle topic and write only its own ack topic.
"""

from __future__ import annotations

from pathlib import Path

CENTRAL_USER = "facelock-central"

CENTRAL_ACL = f"""
# facelock-central: events, availability and acks in; receipts, bundles and signed commands out.
user {CENTRAL_USER}
topic read facelock/#
topic write facelock/+/receipt
topic write facelock/+/policy
topic write facelock/+/cmd/#

# Doors: their own bundle (read) and their own ack (write).
pattern read facelock/%u/policy
pattern write facelock/%u/policy/ack
"""


def extend_acl(acl_file: str | Path) -> None:
    """Append the centre's lines to a broker's ACL file (before the broker starts or reloads)."""
    p = Path(acl_file)
    text = p.read_text()
    if CENTRAL_ACL not in text:
        p.write_text(text.rstrip("\n") + "\n" + CENTRAL_ACL)


def enable_crl(conf_file: str | Path, crl_file: str | Path) -> None:
    """Make the broker check client certificates against the centre's CRL (`facelock-central devices crl`)."""
    p = Path(conf_file)
    text = p.read_text()
    line = f"crlfile {crl_file}\n"
    if line not in text:
        p.write_text(text.rstrip("\n") + "\n" + line)
