"""`engram tune`: registration point; the command is built in its own issue."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Adds the `tune` command to the app (nothing yet)."""
