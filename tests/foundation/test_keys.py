"""`zoo-node init` and `zoo-node keys`: files, modes, formats, and PeerIDs that real libp2p hosts agree with."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.foundation.cli_runner import run_cli
from zoo_node.identity import (
    KeyPaths,
    decode_p2pd_private_key,
    load_operator_account,
    load_public_identity,
    peer_id_from_ed25519_public,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def initialised(tmp_path: Path, password_file: Path) -> tuple[Path, dict]:
    home = tmp_path / "home"
    result = run_cli("init", "--home", str(home), "--password-file", str(password_file), "--json")
    assert result.returncode == 0, result.stderr
    return home, json.loads(result.stdout)


def test_init_creates_private_home_keys_and_config(initialised: tuple[Path, dict]) -> None:
    home, created = initialised
    paths = KeyPaths.of(home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for path in paths.all():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    keystore = json.loads(paths.operator_keystore.read_text())
    assert keystore["version"] == 3 and keystore["crypto"]["kdf"] == "scrypt"
    assert len(paths.control_key.read_bytes()) == 32  # py-libp2p's seed format
    assert len(decode_p2pd_private_key(paths.data_key.read_bytes())) == 32  # p2pd's 64-byte protobuf key
    assert (home / "config.toml").exists()
    assert created["control_peer_id"] != created["data_peer_id"]  # never two live hosts with one PeerID


def test_keys_show_json_has_exactly_the_three_fields(initialised: tuple[Path, dict]) -> None:
    home, created = initialised
    result = run_cli("keys", "show", "--home", str(home), "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert set(shown) == {"operator_address", "control_peer_id", "data_peer_id"}
    assert shown == {k: created[k] for k in shown}
    assert shown["operator_address"].startswith("0x") and shown["control_peer_id"].startswith("12D3KooW")


def test_keys_check_accepts_the_password_and_decrypts_to_the_address(
    initialised: tuple[Path, dict], password_file: Path
) -> None:
    home, created = initialised
    result = run_cli("keys", "check", "--home", str(home), "--password-file", str(password_file))
    assert result.returncode == 0, result.stderr
    assert created["operator_address"] in result.stdout
    account = load_operator_account(home, password_file.read_text().strip())
    assert account.address == created["operator_address"]


def test_init_refuses_to_overwrite_keys_without_force(initialised: tuple[Path, dict], password_file: Path) -> None:
    home, created = initialised
    before = KeyPaths.of(home).operator_keystore.read_bytes()
    result = run_cli("init", "--home", str(home), "--password-file", str(password_file))
    assert result.returncode == 2
    assert "already exist" in result.stderr and "--force" in result.stderr
    assert KeyPaths.of(home).operator_keystore.read_bytes() == before
    forced = run_cli("init", "--home", str(home), "--password-file", str(password_file), "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["operator_address"] != created["operator_address"]


def test_password_from_env_file_and_systemd_credential(tmp_path: Path, password_file: Path) -> None:
    home = tmp_path / "home"
    env = {"ZOO_NODE_PASSWORD_FILE": str(password_file)}
    assert run_cli("init", "--home", str(home), env=env).returncode == 0
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "keystore-password").write_text(password_file.read_text())
    result = run_cli("keys", "check", "--home", str(home), env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert result.returncode == 0, result.stderr
    (creds / "keystore-password").write_text("not it\n")
    result = run_cli("keys", "check", "--home", str(home), env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert result.returncode == 2 and "wrong password" in result.stderr


def test_no_password_source_and_no_terminal_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("init", "--home", str(tmp_path / "home"))
    assert result.returncode == 2
    assert "--password-file" in result.stderr and "Traceback" not in result.stderr


def test_peer_ids_match_real_p2pd_and_py_libp2p_hosts(node_home) -> None:
    """p2pd (through hivemind) runs under the data-plane PeerID and py-libp2p under the control-plane PeerID."""
    home, _ = node_home
    shown = json.loads(run_cli("keys", "show", "--home", str(home), "--json").stdout)
    reported = {}
    for mode in ("p2pd", "libp2p"):
        proc = subprocess.run(
            [sys.executable, "-m", "tests.foundation.peer_id_probe", mode, str(home)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        reported[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert reported["p2pd"]["peer_id"] == shown["data_peer_id"]
    assert reported["libp2p"]["peer_id"] == shown["control_peer_id"]
    assert all("/ip4/127.0.0.1/" in m for r in reported.values() for m in r["maddrs"])


def test_peer_id_of_a_known_key() -> None:
    # Vector: py-libp2p's ID.from_pubkey for the Ed25519 seed 0x01 * 32.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from zoo_node.identity import ed25519_public_bytes

    public = ed25519_public_bytes(Ed25519PrivateKey.from_private_bytes(b"\x01" * 32))
    assert peer_id_from_ed25519_public(public) == "12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5"


def test_public_identity_needs_no_password(node_home) -> None:
    home, identity = node_home
    assert load_public_identity(home) == identity
