"""Node configuration: one pydantic model, loaded with the precedence defaults < config.toml < environment < flags.

- The file is `$ZOO_NODE_HOME/config.toml` (see `resolve_home`).
- The environment: `ZOO_NODE_<FIELD>`, nested sections joined by a double underscore, e.g.
  `ZOO_NODE_CHAIN__RPC_URL=http://127.0.0.1:8545`. Lists accept JSON (`["a","b"]`) or commas (`a,b`).
  `ZOO_NODE_HOME` and `ZOO_NODE_PASSWORD_FILE` are not config fields: they say where the config and password are.
- Flags: the CLI passes a nested dict of the flags a person gave.

Each layer is validated on its own first, so an error names its source: the file and key, or the variable.
Every field carries a description; `render_reference()` turns them into docs/configuration.md and a test keeps the
two in step.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zoo_node.errors import ConfigError

ENV_PREFIX = "ZOO_NODE_"
# Environment variables that locate things rather than set config fields.
ENV_NOT_FIELDS = frozenset({"ZOO_NODE_HOME", "ZOO_NODE_PASSWORD_FILE"})
CONFIG_FILE = "config.toml"
DEFAULT_HOME = Path("~/.zoo-node")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ChainConfig(_Section):
    """How the node reaches the chain."""

    rpc_url: str = Field("http://127.0.0.1:8545", description="JSON-RPC endpoint of the EVM chain.")
    deployment_file: Path | None = Field(
        None,
        description="JSON file with the contract addresses and chain id (written by `zoo-node chain deploy` or "
        "the dev chain). Relative paths are taken from the home.",
    )
    request_timeout_s: float = Field(10.0, gt=0, description="Timeout of one JSON-RPC request, in seconds.")
    max_retries: int = Field(
        5,
        ge=0,
        description="Retries, with exponential backoff, when the RPC cannot be reached (never on reverts).",
    )
    receipt_timeout_s: float = Field(120.0, gt=0, description="How long to wait for a transaction's receipt.")


class SwarmConfig(_Section):
    """The control plane's py-libp2p host and the run's gossip."""

    listen_multiaddrs: list[str] = Field(
        default_factory=lambda: ["/ip4/0.0.0.0/tcp/31330"],
        description="Multiaddrs the control-plane host listens on (TCP; port 0 picks a free port).",
    )
    bootstrap_peers: list[str] = Field(
        default_factory=list,
        description="Multiaddrs with /p2p/<PeerID> to dial at start, besides those registered nodes publish on chain.",
    )
    heartbeat_interval_s: float = Field(5.0, gt=0, description="Seconds between this node's signed heartbeats.")
    peer_timeout_s: float = Field(30.0, gt=0, description="A peer silent for this long is marked gone.")
    max_message_bytes: int = Field(
        64 * 1024, gt=0, description="Gossip messages larger than this are dropped and counted."
    )
    announce_multiaddrs: list[str] = Field(
        default_factory=list,
        description="Multiaddrs published on chain and in heartbeats for others to dial (behind NAT or a proxy); "
        "empty means the addresses the host listens on.",
    )
    registry_refresh_s: float = Field(
        30.0,
        gt=0,
        description="Seconds between re-reads of the registered nodes on chain (who may gossip, where to dial).",
    )
    target_connections: int = Field(
        16, ge=1, description="Registered nodes the host keeps dialling until it is connected to this many."
    )


class ApiConfig(_Section):
    """The node's local API (NodeService gRPC) and metrics."""

    socket: Path = Field(
        Path("node.sock"),
        description="Unix socket of the NodeService gRPC API. Relative paths are in the home.",
    )
    tcp_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Also serve the API on 127.0.0.1 at this port (0 picks one), guarded by the token file.",
    )
    token_file: Path = Field(
        Path("api.token"),
        description="Bearer token guarding the TCP API (created, mode 0600, when missing). Relative paths are in the "
        "home.",
    )
    metrics_port: int | None = Field(
        9464,
        ge=0,
        le=65535,
        description="Prometheus /metrics on 127.0.0.1 at this port (0 picks one; unset disables).",
    )


class WorkerConfig(_Section):
    """The data-plane worker process that the supervisor spawns."""

    device: str = Field("auto", description="Torch device for the shard: auto, cpu, cuda or cuda:N.")
    host_multiaddrs: list[str] = Field(
        default_factory=lambda: ["/ip4/0.0.0.0/tcp/0"],
        description="Multiaddrs the worker's hivemind p2pd listens on.",
    )
    announce_multiaddrs: list[str] = Field(
        default_factory=list,
        description="Public multiaddrs announced for the worker (behind NAT or a proxy).",
    )
    client_mode: bool = Field(
        False,
        description="Run the worker's DHT in client mode (no inbound connections; averaging through relays).",
    )
    num_shards: int = Field(
        1, ge=1, description="Shards of the run this worker serves, chosen by coverage (the least-served first)."
    )
    use_relay: bool = Field(True, description="Allow circuit relays for peers that cannot be dialled directly.")
    restart_backoff_s: float = Field(1.0, gt=0, description="First delay before restarting a worker that exited.")
    restart_backoff_max_s: float = Field(60.0, gt=0, description="Largest restart delay (the backoff doubles).")
    report_timeout_s: float = Field(
        60.0, gt=0, description="A worker that reports nothing for this long is killed and restarted."
    )
    stop_timeout_s: float = Field(
        20.0,
        gt=0,
        description="On drain-and-stop (SIGTERM, `Shutdown`), the worker's time to exit before its process group is "
        "killed.",
    )


class CoordinatorConfig(_Section):
    """The run owner's coordinator (`zoo-node coordinator run`) and its CoordinatorService API."""

    listen: str = Field(
        "127.0.0.1:31340",
        pattern=r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$",
        description="host:port of the CoordinatorService gRPC API (port 0 picks a free one; the address it got is "
        "written to run/coordinator.addr in the home, where the dashboard and queries find it).",
    )
    admin_token_file: Path = Field(
        Path("coordinator.token"),
        description="Bearer token of the API's state-changing calls (settle, pause, resume, close), created (mode "
        "0600) when missing. Relative paths are in the home.",
    )
    sample_interval_s: float = Field(5.0, gt=0, description="Seconds between samples of the run's time series.")
    settle_poll_s: float = Field(10.0, gt=0, description="Seconds between checks for ended epochs to settle.")
    max_request_bytes: int = Field(
        64 * 1024,
        gt=0,
        le=4 * 1024 * 1024,
        description="API requests larger than this are refused with INVALID_ARGUMENT.",
    )


class NodeConfig(_Section):
    """Everything `zoo-node` reads from config.toml, the environment and flags."""

    network: str = Field("devnet", description="Name of the network this node belongs to (devnet for local runs).")
    run_id: int | None = Field(
        None, ge=0, description="Run to join; unset means the only active run in the RunRegistry."
    )
    run_spec: Path | None = Field(
        None,
        description="The run's spec file (TOML) for the worker to train; its hash must match the run's spec hash on "
        "chain. Relative paths are taken from the home.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log verbosity.")
    owner_address: str | None = Field(
        None,
        pattern=r"^0x[0-9a-fA-F]{40}$",
        description="Cold owner address that holds the stake and receives rewards; unset means the operator key.",
    )
    chain: ChainConfig = Field(default_factory=ChainConfig, description="Chain access.")
    swarm: SwarmConfig = Field(default_factory=SwarmConfig, description="Control-plane swarm.")
    api: ApiConfig = Field(default_factory=ApiConfig, description="Local API and metrics.")
    worker: WorkerConfig = Field(default_factory=WorkerConfig, description="Data-plane worker.")
    coordinator: CoordinatorConfig = Field(
        default_factory=CoordinatorConfig, description="Run coordinator (run owners only)."
    )


# Defaults a fresh `zoo-node init --network NAME` writes into config.toml, beyond the model's own.
NETWORK_PRESETS: dict[str, dict[str, Any]] = {
    "devnet": {
        "network": "devnet",
        "chain": {"rpc_url": "http://127.0.0.1:8545"},
        # A local network binds loopback only, on free ports.
        "swarm": {
            "listen_multiaddrs": ["/ip4/127.0.0.1/tcp/0"],
            "heartbeat_interval_s": 2.0,
            "peer_timeout_s": 10.0,
        },
        "api": {"metrics_port": 0},
        "worker": {"host_multiaddrs": ["/ip4/127.0.0.1/tcp/0"]},
    },
}


def resolve_home(home: Path | str | None = None) -> Path:
    """The node home: the flag, else `$ZOO_NODE_HOME`, else systemd's `$STATE_DIRECTORY`, else `~/.zoo-node`."""
    if home is None:
        home = os.environ.get("ZOO_NODE_HOME") or None
    if home is None and os.environ.get("STATE_DIRECTORY"):
        # systemd's StateDirectory=zoo-node sets this (to /var/lib/zoo-node); it may list several, colon-separated.
        home = os.environ["STATE_DIRECTORY"].split(":")[0]
    return Path(home or DEFAULT_HOME).expanduser().absolute()


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _raise_layer_error(source: str, exc: ValidationError, *, env: bool = False) -> None:
    err = exc.errors()[0]
    where = _loc(err["loc"])
    if env:
        where = ENV_PREFIX + "__".join(str(p) for p in err["loc"]).upper()
        raise ConfigError(f"{where}: {err['msg']}")
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    raise ConfigError(f"{source}: {where}: {err['msg']}{more}")


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a config.toml into a dict (not yet validated); a missing file is an empty layer."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _env_value(raw: str, annotation: Any) -> Any:
    text = raw.strip()
    if "list" in str(annotation):
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                pass
        return [item.strip() for item in text.split(",") if item.strip()]
    return raw


def _field_annotation(path: list[str]) -> Any:
    model: Any = NodeConfig
    annotation: Any = None
    for part in path:
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return None
        annotation = fields[part].annotation
        model = annotation
    return annotation


def env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    """The `ZOO_NODE_*` variables as a nested dict; an unknown name is an error that names it."""
    layer: dict[str, Any] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name in ENV_NOT_FIELDS:
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        annotation = _field_annotation(path)
        if annotation is None:
            raise ConfigError(f"{name}: not a configuration field (see docs/configuration.md)")
        node = layer
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = _env_value(raw, annotation)
    return layer


def load_config(
    home: Path | str | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> NodeConfig:
    """Load the node's configuration: defaults < `<home>/config.toml` < `ZOO_NODE_*` < `flags`.

    Raises `ConfigError` naming the file and key, or the environment variable, and the reason.
    """
    home_path = resolve_home(home)
    file_path = home_path / CONFIG_FILE
    environ = os.environ if environ is None else environ
    file_layer = read_config_file(file_path)
    env = env_layer(environ)
    flag_layer = dict(flags or {})
    try:
        NodeConfig.model_validate(file_layer)
    except ValidationError as exc:
        _raise_layer_error(str(file_path), exc)
    try:
        NodeConfig.model_validate(env)
    except ValidationError as exc:
        _raise_layer_error("environment", exc, env=True)
    merged = _deep_merge(_deep_merge(file_layer, env), flag_layer)
    try:
        return NodeConfig.model_validate(merged)
    except ValidationError as exc:
        _raise_layer_error("flags", exc)
        raise  # unreachable; keeps type checkers content


def write_config(path: Path, data: Mapping[str, Any]) -> None:
    """Write a config layer (validated first) as TOML, mode 0600."""
    import tomli_w

    try:
        NodeConfig.model_validate(dict(data))
    except ValidationError as exc:
        _raise_layer_error("new config", exc)
    text = tomli_w.dumps(json.loads(json.dumps(dict(data), default=str)))
    path.write_text("# zoo-node configuration; every key is described in docs/configuration.md\n" + text)
    path.chmod(0o600)


def resolve_in_home(home: Path, path: Path) -> Path:
    """A configured path, with relative paths taken from the home."""
    path = path.expanduser()
    return path if path.is_absolute() else home / path


def render_reference() -> str:
    """docs/configuration.md: every field of `NodeConfig` with its type, default, env variable and description."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `zoo-node config docs`; tests/test_config.py fails when it is out of date. -->",
        "",
        "Precedence, lowest first: the defaults below < `$ZOO_NODE_HOME/config.toml` < `ZOO_NODE_*` environment",
        "variables < command-line flags. The home is `--home`, else `$ZOO_NODE_HOME`, else systemd's",
        "`$STATE_DIRECTORY` (`/var/lib/zoo-node` under the unit in `systemd/`), else `~/.zoo-node`.",
        "Nested keys are TOML tables (`[chain]` then `rpc_url = ...`) and environment variables join the parts",
        "with a double underscore (`ZOO_NODE_CHAIN__RPC_URL`). Lists in the environment are JSON or",
        "comma-separated. An invalid file fails with the file, the key and the reason.",
        "",
    ]

    def section(model: type[BaseModel], prefix: list[str]) -> None:
        title = ".".join(prefix) if prefix else "top level"
        lines.extend([f"## {title}", "", (model.__doc__ or "").strip(), ""])
        lines.append("| key | type | default | environment | description |")
        lines.append("| --- | --- | --- | --- | --- |")
        nested = []
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                nested.append((annotation, [*prefix, name]))
                continue
            default = field.get_default(call_default_factory=True)
            type_name = str(annotation).replace("typing.", "").replace("pathlib.", "").replace("<class '", "")
            type_name = type_name.replace("'>", "").replace("|", "\\|")
            env = ENV_PREFIX + "__".join([*prefix, name]).upper()
            key = ".".join([*prefix, name])
            lines.append(
                f"| `{key}` | `{type_name}` | `{json.dumps(default, default=str)}` | `{env}` | "
                f"{field.description or ''} |"
            )
        lines.append("")
        for model_, prefix_ in nested:
            section(model_, prefix_)

    section(NodeConfig, [])
    return "\n".join(lines).rstrip() + "\n"
