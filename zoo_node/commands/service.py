"""`zoo-node install-service`: write the systemd unit for this installation."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from zoo_node.errors import HomeError
from zoo_node.service import (
    DEFAULT_CREDENTIAL,
    UnitSettings,
    current_executable,
    render_coordinator_unit,
    render_node_unit,
)


def install_service(
    coordinator: bool = typer.Option(False, "--coordinator", help="Write zoo-coordinator.service instead."),
    user: str = typer.Option("zoo-node", "--user", help="System user the service runs as."),
    credential: Path = typer.Option(
        Path(DEFAULT_CREDENTIAL), "--credential", help="File holding the keystore password (loaded as a credential)."
    ),
    spec: Path = typer.Option(Path("/etc/zoo-node/run.toml"), "--spec", help="Run spec (coordinator only)."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Where to write (default /etc/systemd/system/<unit>); '-' prints it."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
) -> None:
    """Write zoo-node.service (or zoo-coordinator.service) with this installation's executable."""
    settings = UnitSettings(
        executable=current_executable(), user=user, group=user, credential=str(credential), spec=str(spec)
    )
    name = "zoo-coordinator.service" if coordinator else "zoo-node.service"
    text = render_coordinator_unit(settings) if coordinator else render_node_unit(settings)
    if output is not None and str(output) == "-":
        typer.echo(text, nl=False)
        return
    path = output or Path("/etc/systemd/system") / name
    try:
        path.write_text(text)
    except OSError as exc:
        raise HomeError(f"{path}: cannot write the unit: {exc.strerror}") from None
    if json_out:
        typer.echo(json.dumps({"unit": str(path), "executable": settings.executable, "user": user}))
        return
    typer.echo(f"wrote {path} (ExecStart={settings.executable})")
    typer.echo("next: create the user, put the password in the credential file (0600), then")
    typer.echo(f"  systemctl daemon-reload && systemctl enable --now {name}")


def register(app: typer.Typer) -> None:
    app.command("install-service")(install_service)
