"""`facelock`: the provisioning and maintenance CLI.

Exit codes (documented in the README): 0 success, 1 a FaceLock error (bad
input, refused verification, wrong key...), 2 usage error (click), 3 a
verification or integrity check that ran and failed (e.g. audit verify).
"""

from __future__ import annotations

import sys

import click

from firmware.errors import FaceLockError
from provisioning import commands
from provisioning.discovery import register_all

EXIT_ERROR = 1
EXIT_CHECK_FAILED = 3


class FaceLockGroup(click.Group):
    """Turns every FaceLockError into one line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except FaceLockError as exc:
            click.echo(f"facelock: error: {' '.join(str(exc).split())}", err=True)  # always one line
            sys.exit(getattr(exc, "exit_code", EXIT_ERROR))


@click.group(cls=FaceLockGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="facelock")
def main() -> None:
    """FaceLock provisioning: CA and devices, enrollment, users, policy, images, audit, benchmarks."""


register_all(main, commands)

if __name__ == "__main__":  # pragma: no cover
    main()
