"""``fedsilo federate``: run a federation through site agents, as federation.toml describes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def federate(
    config: Annotated[Path, typer.Argument(help="The federation.toml to run.")],
) -> None:
    """Start the server, launch a training job at each site, federate, save, clean up."""
    raise typer.Exit(code=2)
