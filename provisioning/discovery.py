"""Find click commands in a package, so each subcommand lives in its own module.

A module joins the CLI by defining a module-level ``command`` (a click.Command
or click.Group).  Nothing else has to be edited to add one, which keeps the
CLI's top level from becoming a file everyone touches.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import click


def register_all(group: click.Group, package: ModuleType) -> None:
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        command = getattr(module, "command", None)
        if isinstance(command, click.Command):
            group.add_command(command)
