"""The `zoo-node` command line: a root typer app that mounts one command group per area.

Each area's commands live in `zoo_node.commands.<area>` and stay thin over library functions. Errors derived from
`zoo_node.errors.ZooError` print as one line on stderr and exit with code 2.
"""

from __future__ import annotations

import sys

import typer

from zoo_node import __version__
from zoo_node.commands import chain as chain_commands
from zoo_node.commands import control as control_commands
from zoo_node.commands import coordinator as coordinator_commands
from zoo_node.commands import keys as keys_commands
from zoo_node.commands import model as model_commands
from zoo_node.commands import service as service_commands
from zoo_node.commands import testnet as testnet_commands
from zoo_node.commands import worker as worker_commands
from zoo_node.errors import ZooError
from zoo_node.logs import configure_logging

app = typer.Typer(
    name="zoo-node",
    help="Node daemon of the Zoo Compute Network: train Zen-3 together, get paid on chain.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"zoo-node {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
    log_level: str | None = typer.Option(
        None,
        "--log-level",
        envvar="ZOO_NODE_LOG_LEVEL",
        help="debug, info, warning or error (default: info).",
        show_envvar=True,
    ),
) -> None:
    configure_logging(log_level)


# Command groups. Each area adds one line here; the modules import heavy libraries lazily.
keys_commands.register(app)
coordinator_commands.register(app)
model_commands.register(app)
chain_commands.register(app)
control_commands.register(app)
service_commands.register(app)
testnet_commands.register(app)
worker_commands.register(app)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: runs the app and turns a `ZooError` into one line and exit code 2.

    Usage errors are click's own (exit 2, a usage line); anything else that escapes is a bug and keeps its traceback.
    """
    try:
        app(args=argv, prog_name="zoo-node")
    except ZooError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        return exc.exit_code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
