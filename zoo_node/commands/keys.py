"""`zoo-node init`, `zoo-node keys show|check` and `zoo-node config show|docs`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from zoo_node.config import (
    CONFIG_FILE,
    NETWORK_PRESETS,
    load_config,
    render_reference,
    resolve_home,
    write_config,
)
from zoo_node.errors import ConfigError

HomeOption = typer.Option(None, "--home", help="Node home (default: $ZOO_NODE_HOME or ~/.zoo-node).")
PasswordFileOption = typer.Option(
    None,
    "--password-file",
    help="File holding the keystore password (else $ZOO_NODE_PASSWORD_FILE, the systemd credential, or a prompt).",
)
JsonOption = typer.Option(False, "--json", help="Print one JSON object instead of text.")

keys_app = typer.Typer(help="Show and check the node's keys.", no_args_is_help=True)
config_app = typer.Typer(help="Show the effective configuration; regenerate its reference.", no_args_is_help=True)


def init(
    home: Path | None = HomeOption,
    password_file: Path | None = PasswordFileOption,
    network: str = typer.Option("devnet", "--network", help="Network whose defaults the new config takes."),
    force: bool = typer.Option(False, "--force", help="Replace existing keys (the old ones are lost)."),
    json_out: bool = JsonOption,
) -> None:
    """Create the node home: config, the encrypted operator keystore and both libp2p keys."""
    from zoo_node.identity import create_keys, ensure_home, read_password

    home_path = ensure_home(resolve_home(home))
    preset = NETWORK_PRESETS.get(network, {"network": network})
    password = read_password(password_file, confirm=True)
    identity = create_keys(home_path, password, force=force)
    config_path = home_path / CONFIG_FILE
    if force or not config_path.exists():
        write_config(config_path, preset)
    load_config(home_path)  # the home must load cleanly before we say it is ready
    if json_out:
        typer.echo(json.dumps({"home": str(home_path), **identity.as_dict()}))
        return
    typer.echo(f"initialised {home_path}")
    _print_identity(identity.as_dict())


def _print_identity(fields: dict[str, str]) -> None:
    width = max(len(k) for k in fields)
    for key, value in fields.items():
        typer.echo(f"  {key:<{width}}  {value}")


@keys_app.command("show")
def keys_show(home: Path | None = HomeOption, json_out: bool = JsonOption) -> None:
    """Print the operator address and both PeerIDs (no password needed)."""
    from zoo_node.identity import load_public_identity

    identity = load_public_identity(resolve_home(home))
    if json_out:
        typer.echo(json.dumps(identity.as_dict()))
    else:
        _print_identity(identity.as_dict())


@keys_app.command("check")
def keys_check(
    home: Path | None = HomeOption,
    password_file: Path | None = PasswordFileOption,
    json_out: bool = JsonOption,
) -> None:
    """Decrypt the operator keystore: exit 0 if the password opens it, 2 with the reason if not."""
    from zoo_node.identity import load_operator_account, load_public_identity, read_password

    home_path = resolve_home(home)
    identity = load_public_identity(home_path)  # all three keys must be readable, not just the keystore
    account = load_operator_account(home_path, read_password(password_file))
    if json_out:
        typer.echo(json.dumps({"ok": True, "operator_address": account.address}))
    else:
        typer.echo(f"ok: the password opens the keystore of {identity.operator_address}")


@config_app.command("show")
def config_show(home: Path | None = HomeOption, json_out: bool = JsonOption) -> None:
    """Print the effective configuration (defaults < config.toml < environment)."""
    config = load_config(home)
    if json_out:
        typer.echo(config.model_dump_json())
    else:
        import tomli_w

        typer.echo(tomli_w.dumps(json.loads(config.model_dump_json(exclude_none=True))))


@config_app.command("docs")
def config_docs(
    output: Path | None = typer.Option(None, "--output", "-o", help="Write here instead of standard output."),
) -> None:
    """Print (or write) the configuration reference, docs/configuration.md."""
    text = render_reference()
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text)
    except OSError as exc:
        raise ConfigError(f"{output}: cannot write: {exc.strerror}") from None


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.add_typer(keys_app, name="keys")
    app.add_typer(config_app, name="config")
