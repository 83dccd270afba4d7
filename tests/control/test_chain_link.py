"""The control plane's adapter over the chain clients, against the anvil dev chain; and `join`'s refusals."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys

import pytest

from tests.control.joins import REPO, chain_home, clean_env, create_run
from tests.fixtures.homes import TEST_PASSWORD
from zoo_node.config import load_config
from zoo_node.control.chain_link import ChainDirectory, JoinError, parse_stake
from zoo_node.control.join import JoinOptions, run_join
from zoo_node.identity import load_operator_account


def test_parse_stake() -> None:
    assert parse_stake("1.5") == 15 * 10**17
    for bad in ("abc", "-1", "0", "nan", "1e-30"):
        with pytest.raises(JoinError, match="--stake"):
            parse_stake(bad)


def test_registration_runs_and_registered_nodes(make_home, devchain) -> None:
    home = chain_home(make_home, "n", devchain)
    other = chain_home(make_home, "o", devchain)
    config = load_config(home)
    directory = ChainDirectory.from_config(config, home)
    from zoo_node.identity import load_public_identity

    me = load_public_identity(home)
    assert directory.check_registration(me.control_peer_id, me.operator_address) is None
    with pytest.raises(JoinError, match="no active run"):
        directory.pick_run(None)
    first = create_run(devchain)
    assert directory.pick_run(None) == first
    second = create_run(devchain)
    with pytest.raises(JoinError, match="several runs are active"):
        directory.pick_run(None)
    devchain.client(devchain.accounts[1]).runs.close_run(second)
    with pytest.raises(JoinError, match="closed"):
        directory.pick_run(second)
    with pytest.raises(JoinError, match="does not exist"):
        directory.pick_run(99)

    sender = directory.with_account(load_operator_account(home, TEST_PASSWORD))
    addrs = [f"/ip4/127.0.0.1/tcp/4001/p2p/{me.control_peer_id}"]
    with pytest.raises(JoinError, match="below the registry's minimum"):
        sender.register(me.control_peer_id, me.operator_address, 10**17, addrs)
    sender.register(me.control_peer_id, me.operator_address, 10**18, addrs)
    info = directory.check_registration(me.control_peer_id, me.operator_address)
    assert info is not None and info.multiaddrs == addrs
    assert not sender.publish_multiaddrs(info, addrs)  # unchanged: no transaction
    assert sender.publish_multiaddrs(info, ["/ip4/127.0.0.1/tcp/4002"])
    assert sender.join_run(info, first) and not sender.join_run(info, first)
    assert [(n.peer_id, n.multiaddrs) for n in directory.registered_nodes()] == [
        (me.control_peer_id, ("/ip4/127.0.0.1/tcp/4002",))
    ]
    # Settlement: nothing until the coordinator posts epoch 1's root, then the end of epoch 1.
    assert directory.settled_until(first) is None
    devchain.increase_time(3601)
    devchain.client(devchain.accounts[1]).rewards.post_root(first, 1, b"\x07" * 32, 0)
    run = directory.client.runs.get_run(first)
    assert directory.settled_until(first) == run.epoch_end(1)
    # The same PeerID claimed by another home's operator.
    stranger = load_public_identity(other)
    with pytest.raises(JoinError, match="registered with operator"):
        directory.check_registration(me.control_peer_id, stranger.operator_address)


def test_join_refuses_clearly(make_home, devchain) -> None:
    """In-process (the CLI's one-line error for any ZooError is the foundation's, tested there)."""
    home = chain_home(make_home, "r", devchain)
    create_run(devchain)
    for options, message in (
        (JoinOptions(home=home, register=True), "--register needs --stake"),
        (JoinOptions(home=home), "is not registered on chain: run `zoo-node join --register --stake <coins>`"),
    ):
        with pytest.raises(JoinError, match=re.escape(message)):
            asyncio.run(run_join(options))
    assert not (home / "node.sock").exists()  # it stopped before serving anything


def test_status_without_a_node_is_one_clear_line(node_home) -> None:
    home, _ = node_home
    out = subprocess.run(
        [sys.executable, "-m", "zoo_node", "status", "--home", str(home), "--json"],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    expected = f"error: no node is running here: {home / 'node.sock'} does not exist (start `zoo-node join`)"
    assert out.stderr.strip().splitlines() == [expected]


def test_startup_steps_log_each_step_with_its_notes_on_a_terminal_too(caplog) -> None:
    from zoo_node.control.join import StartupSteps

    caplog.set_level("INFO", logger="zoo_node.control.join")
    for interactive in (True, False):
        steps = StartupSteps(interactive=interactive)
        with steps.step("Doing a thing") as notes:
            notes.append("it went fine")
        with pytest.raises(JoinError), steps.step("Failing"):
            raise JoinError("no")
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Doing a thing: done in" in m and "(it went fine)" in m for m in messages) == 2
    assert sum(m.startswith("Failing: failed after") and m.endswith(": no") for m in messages) == 2
