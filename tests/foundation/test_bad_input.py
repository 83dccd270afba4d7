"""Bad input: each is one line on stderr that names the problem, exit code 2, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.foundation.cli_runner import run_cli
from zoo_node.identity import KeyPaths


def assert_one_line_error(result, *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_wrong_password(node_home, tmp_path: Path) -> None:
    home, _ = node_home
    wrong = tmp_path / "wrong"
    wrong.write_text("not the password\n")
    result = run_cli("keys", "check", "--home", str(home), "--password-file", str(wrong))
    assert_one_line_error(result, "wrong password", str(KeyPaths.of(home).operator_keystore))


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda text: text[: len(text) // 2], id="truncated"),
        pytest.param(lambda text: json.dumps({**json.loads(text), "crypto": {"kdf": "scrypt"}}), id="no-ciphertext"),
        pytest.param(lambda text: json.dumps({**json.loads(text), "address": "zz"}), id="bad-address"),
    ],
)
def test_corrupted_keystore(node_home, password_file: Path, damage) -> None:
    home, _ = node_home
    path = KeyPaths.of(home).operator_keystore
    path.write_text(damage(path.read_text()))
    result = run_cli("keys", "check", "--home", str(home), "--password-file", str(password_file))
    assert_one_line_error(result, "corrupted operator keystore", str(path))


def test_corrupted_libp2p_keys(node_home) -> None:
    home, _ = node_home
    paths = KeyPaths.of(home)
    paths.data_key.write_bytes(paths.data_key.read_bytes()[:40])
    assert_one_line_error(run_cli("keys", "show", "--home", str(home)), "corrupted data-plane key")
    paths.control_key.write_bytes(b"short")
    assert_one_line_error(run_cli("keys", "show", "--home", str(home)), "corrupted control-plane key")


def test_missing_keys_say_to_run_init(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("keys", "show", "--home", str(tmp_path)), "not found", "zoo-node init")


def test_unparsable_config(node_home) -> None:
    home, _ = node_home
    (home / "config.toml").write_text("[chain\nrpc_url = 'x'\n")
    assert_one_line_error(run_cli("config", "show", "--home", str(home)), str(home / "config.toml"), "not valid TOML")


def test_unknown_config_key(node_home) -> None:
    home, _ = node_home
    (home / "config.toml").write_text("[chain]\nrpc_urll = 'http://127.0.0.1:8545'\n")
    assert_one_line_error(
        run_cli("config", "show", "--home", str(home)), str(home / "config.toml"), "chain.rpc_urll", "Extra inputs"
    )


def test_config_value_of_the_wrong_type(node_home) -> None:
    home, _ = node_home
    (home / "config.toml").write_text("[swarm]\nheartbeat_interval_s = 'often'\n")
    assert_one_line_error(
        run_cli("config", "show", "--home", str(home)), str(home / "config.toml"), "swarm.heartbeat_interval_s"
    )


def test_environment_value_of_the_wrong_type(node_home) -> None:
    home, _ = node_home
    result = run_cli("config", "show", "--home", str(home), env={"ZOO_NODE_API__METRICS_PORT": "lots"})
    assert_one_line_error(result, "ZOO_NODE_API__METRICS_PORT")


def test_unknown_environment_variable(node_home) -> None:
    home, _ = node_home
    result = run_cli("config", "show", "--home", str(home), env={"ZOO_NODE_CHAIN__RPC": "x"})
    assert_one_line_error(result, "ZOO_NODE_CHAIN__RPC", "not a configuration field")


def test_home_that_is_not_writable(tmp_path: Path, password_file: Path) -> None:
    # Tests run as root, whom mode bits do not stop: a home below a regular file cannot be created by anyone.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_cli("init", "--home", str(blocker / "home"), "--password-file", str(password_file))
    assert_one_line_error(result, str(blocker / "home"), "cannot use as the node home")


def test_read_only_filesystem_home(password_file: Path) -> None:
    result = run_cli("init", "--home", "/proc/zoo-node-home", "--password-file", str(password_file))
    assert_one_line_error(result, "/proc/zoo-node-home", "cannot use as the node home")


def test_bad_log_level() -> None:
    assert_one_line_error(run_cli("--log-level", "loud", "config", "docs"), "loud")


def test_usage_error_exits_2_without_traceback() -> None:
    result = run_cli("keys", "show", "--no-such-flag")
    assert result.returncode == 2 and "No such option" in result.stderr and "Traceback" not in result.stderr
