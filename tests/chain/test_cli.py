"""The operator and run-owner commands, run as real `zoo-node` processes against a real anvil."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.fixtures.chain import configure_chain
from tests.foundation.cli_runner import REPO, cli_env, run_cli
from zoo_node.chain.client import ChainClient
from zoo_node.chain.deployment import load_deployment
from zoo_node.chain.merkle import RewardTree
from zoo_node.chain.proofs import EpochClaims
from zoo_node.cli import main
from zoo_node.identity import KeyPaths

COIN = 10**18


def _ok(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _one_line_error(proc: subprocess.CompletedProcess, *fragments: str, logs: bool = False) -> None:
    """Exit code 2 and the error as one line on stderr (after retry warnings in the log, when `logs`)."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    if logs:
        lines = [line for line in lines if not line.startswith("{")]  # JSON log records
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def run_in_process(*args: str) -> subprocess.CompletedProcess:
    """`zoo-node ARGS` through the real entry point, in this process: importing web3 takes seconds per process on
    this machine, so only the tests about processes and signals pay for a subprocess."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(["zoo-node", *args], code, out.getvalue(), err.getvalue())


def _cli(home, password_file, *args):
    return run_in_process(*args, "--home", str(home), "--password-file", str(password_file))


def test_register_rules_as_one_line_errors(chain_node_home, password_file, make_home, devchain):
    home, identity = chain_node_home
    # The real process: the revert's reason as one line, exit code 2.
    proc = run_cli("register", "--stake", "0.5", "--home", str(home), "--password-file", str(password_file))
    _one_line_error(proc, "StakeTooLow", f"minimum={COIN}")
    _one_line_error(_cli(home, password_file, "register", "--stake", "lots"), "--stake", "'lots'")
    _one_line_error(_cli(home, password_file, "register", "--stake", "1000"), "holds 100 coins")
    addr = "/ip4/127.0.0.1/tcp/4001"
    node = _ok(_cli(home, password_file, "register", "--stake", "2", "--multiaddr", addr, "--json"))
    assert node["peer_id"] == identity.control_peer_id and node["stake_wei"] == str(2 * COIN)
    assert node["owner"] == node["operator"] == identity.operator_address and node["status"] == "active"
    assert node["hardware"]["gpu_model"] == "cpu"  # no nvidia-smi here
    _one_line_error(_cli(home, password_file, "register"), "AlreadyRegistered")
    # Another operator holding a copy of this node's control key cannot take the node over.
    other, _ = make_home("other")
    shutil.copy(KeyPaths.of(home).control_key, KeyPaths.of(other).control_key)
    configure_chain(other, devchain)
    _one_line_error(_cli(other, password_file, "register"), "NodeOwnedByAnother", f"owner={identity.operator_address}")
    status = _ok(run_in_process("chain", "status", "--home", str(home), "--json"))
    assert [n["peer_id"] for n in status["active_nodes"]] == [identity.control_peer_id]


def test_deregister_then_withdraw_after_unbonding(chain_node_home, password_file, devchain):
    home, identity = chain_node_home
    _ok(_cli(home, password_file, "register", "--json"))
    exiting = _ok(_cli(home, password_file, "deregister", "--json"))
    assert exiting["status"] == "exiting"
    _one_line_error(_cli(home, password_file, "withdraw"), "StillUnbonding")
    devchain.increase_time(devchain.deployment.unbonding_period_s)
    done = _ok(_cli(home, password_file, "withdraw", "--json"))
    assert done["withdrawn_wei"] == str(COIN) and done["owner"] == identity.operator_address
    _one_line_error(_cli(home, password_file, "deregister"), "withdrawn, not active")


def test_rewards_show_and_claim(chain_node_home, password_file, devchain, tmp_path):
    home, identity = chain_node_home
    me = identity.operator_address
    run_id, _ = devchain.client(devchain.accounts[1]).runs.create_run(
        spec_hash=b"\x01" * 32, coordinator=devchain.accounts[2].address, epoch_length_s=60, reward_per_epoch=COIN,
        funding=5 * COIN,
    )  # fmt: skip
    assert _ok(run_in_process("rewards", "show", "--home", str(home), "--json")) == {"account": me, "runs": []}
    tree = RewardTree.build({me: COIN // 4, devchain.accounts[5].address: COIN // 2})
    claims = EpochClaims.from_tree(run_id, 1, tree).write(tmp_path / "claims-1.json")
    devchain.increase_time(60)
    devchain.client(devchain.accounts[2]).rewards.post_root(run_id, 1, tree.root, tree.total, claims.as_uri())
    (shown,) = _ok(run_in_process("rewards", "show", "--home", str(home), "--json"))["runs"]
    assert shown["cumulative_wei"] == shown["claimable_wei"] == str(COIN // 4) and shown["problem"] == ""
    balance = devchain.client().balance(me)
    (claim,) = _ok(_cli(home, password_file, "rewards", "claim", "--json"))["claims"]
    assert claim["paid_wei"] == str(COIN // 4)
    receipt = devchain.client().w3.eth.get_transaction_receipt(claim["tx_hash"])
    assert devchain.client().balance(me) == balance + COIN // 4 - receipt["gasUsed"] * receipt["effectiveGasPrice"]
    again = _ok(_cli(home, password_file, "rewards", "claim", "--json"))
    assert again["claims"] == []  # nothing left: no transaction is sent
    (shown,) = _ok(run_in_process("rewards", "show", "--home", str(home), "--json"))["runs"]
    assert shown["claimed_wei"] == str(COIN // 4) and shown["claimable_wei"] == "0"
    claims.unlink()
    (shown,) = _ok(run_in_process("rewards", "show", "--home", str(home), "--json"))["runs"]
    assert "cannot read the claims file" in shown["problem"]
    _one_line_error(_cli(home, password_file, "rewards", "claim", "--run", str(run_id)), "cannot read the claims file")


def test_chain_deploy(node_home, password_file, devchain, tmp_path, monkeypatch):
    home, identity = node_home
    devchain.fund(identity.operator_address, 10 * COIN)
    out = tmp_path / "deployment.json"
    shown = _ok(
        _cli(home, password_file, "chain", "deploy", "--rpc", devchain.rpc_url, "-o", str(out), "--min-stake", "2",
             "--unbonding-period", "30", "--json")
    )  # fmt: skip
    deployment = load_deployment(out)
    assert shown["deployment_file"] == str(out) and deployment.deployer == identity.operator_address
    assert deployment.chain_id == 31337 and deployment.min_stake_wei == 2 * COIN
    fresh = ChainClient.connect(devchain.rpc_url, out)
    assert fresh.nodes.min_stake() == 2 * COIN and fresh.nodes.unbonding_period() == 30
    monkeypatch.setenv("ZOO_NODE_CHAIN__MAX_RETRIES", "2")
    proc = _cli(home, password_file, "chain", "deploy", "--rpc", "http://127.0.0.1:9")
    _one_line_error(proc, "http://127.0.0.1:9", "unreachable after 3 attempts (Connection refused)", logs=True)


def test_missing_deployment_file_is_a_one_line_error(node_home, password_file):
    home, _ = node_home
    _one_line_error(_cli(home, password_file, "register"), "chain.deployment_file is not set")


def _start_devnet(tmp_path, *extra):
    proc = subprocess.Popen(
        [sys.executable, "-m", "zoo_node", "chain", "devnet", "--json", "--accounts", "3",
         "--deployment-file", str(tmp_path / "devnet.json"), *extra],
        cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = proc.stdout.readline()
    assert line, proc.stderr.read()
    return proc, json.loads(line)


def _gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A zombie still answers kill(0): it is gone once its parent (here, init) reaps it.
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split(")")[-1].split()[0] == "Z":
                return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_chain_devnet_serves_until_stopped_and_takes_anvil_with_it(tmp_path, how):
    proc, info = _start_devnet(tmp_path)
    try:
        client = ChainClient.connect(info["rpc_url"], tmp_path / "devnet.json")
        assert client.nodes.min_stake() == COIN and len(info["accounts"]) == 3
        assert client.balance(info["accounts"][1]["address"]) == 10_000 * COIN
        from eth_account import Account

        assert all(Account.from_key(a["private_key"]).address == a["address"] for a in info["accounts"])
        assert info["accounts"][0]["private_key"].startswith("0x")
        proc.send_signal(how)
        code = proc.wait(timeout=20)
        assert code == (0 if how != signal.SIGKILL else -signal.SIGKILL), proc.stderr.read()
        assert _gone(info["pid"]), "anvil outlived `zoo-node chain devnet`"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_cold_owner_registers_and_withdraws_with_its_own_keystore(chain_node_home, password_file, devchain, tmp_path):
    from eth_account import Account

    from tests.fixtures.homes import TEST_PASSWORD, TEST_SCRYPT_N
    from zoo_node.config import CONFIG_FILE, read_config_file, write_config

    home, identity = chain_node_home
    cold = devchain.accounts[7]
    layer = read_config_file(home / CONFIG_FILE)
    write_config(home / CONFIG_FILE, {**layer, "owner_address": cold.address})
    _one_line_error(_cli(home, password_file, "register"), f"owned by {cold.address}", "--owner-keystore")
    keystore = tmp_path / "owner.json"
    keystore.write_text(json.dumps(Account.encrypt(cold.key, TEST_PASSWORD, iterations=TEST_SCRYPT_N)))
    owner_args = ("--owner-keystore", str(keystore), "--owner-password-file", str(password_file))
    node = _ok(_cli(home, password_file, "register", *owner_args, "--json"))
    assert node["owner"] == cold.address and node["operator"] == identity.operator_address
    assert _ok(run_in_process("rewards", "show", "--home", str(home), "--json"))["account"] == cold.address
    _ok(_cli(home, password_file, "deregister", "--json"))  # the operator may start the exit
    devchain.increase_time(devchain.deployment.unbonding_period_s)
    _one_line_error(_cli(home, password_file, "withdraw"), "--owner-keystore")
    done = _ok(_cli(home, password_file, "withdraw", *owner_args, "--json"))
    assert done["owner"] == cold.address and done["withdrawn_wei"] == str(COIN)
