"""What every command family shares: the two consoles and the arguments several commands take."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

out = Console()
err = Console(stderr=True)

StudyArg = Annotated[Path, typer.Argument(help="study file (YAML)", show_default=False)]
ProfileOpt = Annotated[str | None, typer.Option("--profile", "-p", help="scale profile, e.g. tiny")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]
AddressOpt = Annotated[
    str | None, typer.Option(help="Ray cluster address (default: local)", envvar="RAY_ADDRESS")
]
