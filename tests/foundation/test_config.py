"""Config: precedence defaults < file < environment < flags, home resolution, and the reference doc in step."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoo_node.config import NodeConfig, load_config, render_reference, resolve_home, write_config
from zoo_node.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_defaults_with_no_file(tmp_path: Path) -> None:
    config = load_config(tmp_path, environ={})
    assert config == NodeConfig()


def test_precedence_file_then_environment_then_flags(tmp_path: Path) -> None:
    write_config(
        tmp_path / "config.toml",
        {"chain": {"rpc_url": "http://file", "max_retries": 7}, "swarm": {"peer_timeout_s": 11.0}, "run_id": 3},
    )
    environ = {"ZOO_NODE_CHAIN__RPC_URL": "http://env", "ZOO_NODE_SWARM__PEER_TIMEOUT_S": "12", "HOME": "/x"}
    config = load_config(tmp_path, flags={"swarm": {"peer_timeout_s": 13.0}}, environ=environ)
    assert config.chain.rpc_url == "http://env"  # env beats file
    assert config.chain.max_retries == 7  # file beats default, untouched by env
    assert config.swarm.peer_timeout_s == 13.0  # flag beats env
    assert config.run_id == 3
    assert config.swarm.heartbeat_interval_s == NodeConfig().swarm.heartbeat_interval_s


def test_list_values_from_the_environment(tmp_path: Path) -> None:
    comma = load_config(tmp_path, environ={"ZOO_NODE_SWARM__BOOTSTRAP_PEERS": "/ip4/1.2.3.4/tcp/1, /ip4/5.6.7.8/tcp/2"})
    as_json = load_config(tmp_path, environ={"ZOO_NODE_SWARM__BOOTSTRAP_PEERS": '["/ip4/1.2.3.4/tcp/1"]'})
    assert comma.swarm.bootstrap_peers == ["/ip4/1.2.3.4/tcp/1", "/ip4/5.6.7.8/tcp/2"]
    assert as_json.swarm.bootstrap_peers == ["/ip4/1.2.3.4/tcp/1"]


def test_invalid_flag_value_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"flags: chain\.max_retries"):
        load_config(tmp_path, flags={"chain": {"max_retries": -1}}, environ={})


def test_write_config_refuses_invalid_data(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope"):
        write_config(tmp_path / "config.toml", {"nope": 1})
    assert not (tmp_path / "config.toml").exists()


def test_home_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ZOO_NODE_HOME", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_home() == tmp_path / ".zoo-node"
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/zoo-node")
    assert resolve_home() == Path("/var/lib/zoo-node")
    monkeypatch.setenv("ZOO_NODE_HOME", str(tmp_path / "env-home"))
    assert resolve_home() == tmp_path / "env-home"
    assert resolve_home(tmp_path / "flag-home") == tmp_path / "flag-home"


def test_every_field_is_documented() -> None:
    def walk(model) -> None:
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                walk(annotation)

    walk(NodeConfig)


def test_reference_doc_is_in_step_with_the_model() -> None:
    committed = (REPO / "docs" / "configuration.md").read_text()
    assert committed == render_reference(), "run: zoo-node config docs -o docs/configuration.md"
