"""`facelock bench ...`: benchmarks that print one JSON object (ratios from one run)."""

from __future__ import annotations

import click

from provisioning import benchmarks
from provisioning.discovery import register_all


@click.group("bench")
def command() -> None:
    """Measure speed and quality on this machine; each subcommand prints JSON."""


register_all(command, benchmarks)
