"""End to end on the dev chain (a real anvil): three registered nodes, two settled epochs with honest and cheating
receipts, roots posted by the coordinator, every owner claims with `zoo-node rewards claim`, balances rise by the
reported amounts, and each epoch pays exactly its reward.

The receipts are co-signed with the nodes' real data-plane keys (from `zoo-node init` homes) and announced under
their real control PeerIDs; the sample counts are the test's, not a training run's (training end to end belongs to
the testnet).
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from web3 import Web3

from tests.fixtures.chain import configure_chain
from tests.fixtures.homes import TEST_PASSWORD
from zoo_node.chain.node_registry import Hardware
from zoo_node.chain.operator import register_node
from zoo_node.cli import main
from zoo_node.control.chain_link import ChainDirectory
from zoo_node.control.messages import ControlKey, sign_worker_binding
from zoo_node.control.node_service import rewards_info
from zoo_node.coordinator.ledger import SettlementLedger
from zoo_node.coordinator.nodes import WorkerBindings
from zoo_node.coordinator.report import account_epochs, read_report
from zoo_node.coordinator.settlement import (
    Announcement,
    EpochSettler,
    SettlementError,
    load_flops_table,
)
from zoo_node.coordinator.sharing import share_pro_rata
from zoo_node.identity import load_control_seed, load_data_seed, load_operator_account
from zoo_node.receipts import Receipt, RoundBody, cosign
from zoo_node.runspec import RunSpec, dump_runspec

COIN = 10**18
REWARD = 30 * COIN + 1  # odd: the rounding rule decides the last wei
EPOCH_S = 3600


class Node:
    """A node from a real home: its operator (= owner on a devnet), control key and data-plane key."""

    def __init__(self, home, identity) -> None:
        self.home = home
        self.identity = identity
        self.owner = identity.operator_address
        self.control = ControlKey.from_seed(load_control_seed(home))
        self.data_key = Ed25519PrivateKey.from_private_bytes(load_data_seed(home))
        self.peer_id = identity.control_peer_id
        self.worker = identity.data_peer_id


def cli(*args: str) -> subprocess.CompletedProcess:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(["zoo-node", *args], code, out.getvalue(), err.getvalue())


def rounds_of(run_id, shard, rnd, samples, *, seconds=60.0, signers=None):
    """Each member's copy of one round, co-signed by `signers` (default all)."""
    body = RoundBody.of(run_id, shard, rnd, {n.worker: s for n, s in samples.items()})
    sigs = {n.worker: cosign(body, n.data_key) for n in (signers if signers is not None else samples)}
    return {n: Receipt(body, sigs, tokens=s * 64, seconds=seconds, device="cpu x1") for n, s in samples.items()}


@pytest.fixture
def run_spec_file(tmp_path):
    spec = RunSpec(name="acct-e2e", model="zen-3-tiny")
    path = tmp_path / "run.toml"
    path.write_text(dump_runspec(spec))
    return spec, path


def test_three_workers_settle_claim_and_are_paid_exactly(devchain, make_home, password_file, tmp_path, run_spec_file):
    spec, spec_path = run_spec_file
    creator, coordinator = devchain.accounts[1], devchain.accounts[2]
    a, b, c, outsider = (Node(*make_home(name)) for name in ("a", "b", "c", "outsider"))
    hardware = {a: Hardware("NVIDIA GeForce RTX 3090", 1, 24576), b: Hardware("cpu", 0, 0), c: Hardware("cpu", 0, 0)}

    # The run, funded for three epochs; the coordinator account posts its roots.
    run_id, _ = devchain.client(creator).runs.create_run(
        spec_hash=bytes.fromhex(spec.content_hash),
        coordinator=coordinator.address,
        epoch_length_s=EPOCH_S,
        reward_per_epoch=REWARD,
        funding=3 * REWARD,
    )
    # Three nodes register (staking from their operator = owner account) and join the run; the outsider does not.
    bindings = WorkerBindings()
    for node in (a, b, c):
        configure_chain(node.home, devchain)
        client = devchain.client(load_operator_account(node.home, TEST_PASSWORD))
        registration = register_node(client, operator=node.owner, peer_id=node.peer_id, hardware=hardware[node])
        client.nodes.join_run(registration.node_id, run_id)
    for node in (a, b, c, outsider):  # the outsider's binding verifies: it is the registration that it lacks
        binding = sign_worker_binding(node.control, run_id, node.worker)
        bindings.add_signed(binding, node.peer_id, run_id)

    flops = load_flops_table(spec_path)  # from zoo_node.model, computed in a child interpreter
    assert set(flops) == {"stage/0", "stage/1"}
    ledger = SettlementLedger(tmp_path / "coordinator" / "settlement.sqlite3")
    settler = EpochSettler(
        devchain.client(coordinator), ledger, run_id=run_id, flops_per_sample=flops, claims_dir=tmp_path / "claims"
    )

    # ---- epoch 1: honest rounds and one of each cheat
    r1 = rounds_of(run_id, "stage/0", 1, {a: 12, b: 8, c: 4})
    r2 = rounds_of(run_id, "stage/1", 1, {a: 6, b: 6, c: 6})
    r3 = rounds_of(run_id, "stage/1", 2, {b: 5, c: 5})
    r4 = rounds_of(run_id, "stage/0", 2, {a: 3, c: 3}, signers=[a])  # c never co-signed
    r5 = rounds_of(run_id, "stage/0", 3, {a: 7, b: 7, outsider: 7})
    r6 = rounds_of(run_id, "stage/0", 4, {a: 10**6, b: 1}, seconds=1.0)  # an RTX 3090 cannot do 10^6 samples in 1 s
    inflated = rounds_of(run_id, "stage/0", 1, {a: 12, b: 8, c: 40}, signers=[c])[c]  # c rewrites its samples
    inflated = inflated.with_cosignatures(
        {a.worker: r1[a].cosignatures[a.worker], b.worker: r1[b].cosignatures[b.worker]}
    )
    forged = r3[c].with_cosignatures({b.worker: cosign(r3[c].body, c.data_key)})  # c signs in b's name
    heard = [
        *(Announcement(n.peer_id, r1[n].to_bytes()) for n in (a, b)),
        Announcement(c.peer_id, inflated.to_bytes()),
        *(Announcement(n.peer_id, r2[n].to_bytes()) for n in (a, b, c)),
        Announcement(b.peer_id, r3[b].to_bytes()),
        Announcement(c.peer_id, forged.to_bytes()),
        Announcement(a.peer_id, r4[a].to_bytes()),
        *(Announcement(n.peer_id, r5[n].to_bytes()) for n in (a, b, outsider)),
        *(Announcement(n.peer_id, r6[n].to_bytes()) for n in (a, b)),
    ]
    with pytest.raises(SettlementError, match="has not ended yet"):
        settler.settle(1, heard, bindings)
    devchain.increase_time(EPOCH_S)
    _, published = settler.settle(1, heard, bindings)
    assert published.posted and published.allocated == REWARD

    expected_refusals = [
        (c.peer_id, "samples_not_witnessed"),
        (c.peer_id, "bad_cosignature"),
        (a.peer_id, "missing_cosignature"),
        (outsider.peer_id, "unregistered_peer"),
        (a.peer_id, "beyond_peak"),
    ]
    # What the coordinator published at the root's proofsURI: the report lists every refusal with its reason.
    posted = devchain.client().rewards.latest_root(run_id, from_block=devchain.deployment.block)
    report = read_report(posted.proofs_uri)
    assert [(r["announcer"], r["reason"]) for r in report["rejected"]] == expected_refusals
    assert all(r["detail"] for r in report["rejected"])

    # Verified FLOPs by hand: witnessed samples of the accepted copies x FLOPs per sample of the shard.
    f0, f1 = flops["stage/0"], flops["stage/1"]
    verified = {
        a.owner: 12 * f0 + 6 * f1 + 7 * f0,
        b.owner: 8 * f0 + 6 * f1 + 5 * f1 + 7 * f0 + 1 * f0,
        c.owner: 6 * f1,
    }
    amounts1 = share_pro_rata(REWARD, verified)
    assert {o: int(v["verified_flops"]) for o, v in report["owners"].items()} == verified
    assert {o: int(v["amount_wei"]) for o, v in report["owners"].items()} == amounts1
    assert sum(amounts1.values()) == REWARD and report["paid_wei"] == str(REWARD)

    # ---- every owner claims with `zoo-node rewards claim`; its balance rises by its amount (less the claim's gas)
    w3 = devchain.rpc.w3

    def claim_all(expected: dict[str, int]) -> int:
        total = 0
        for node in (a, b, c):
            before = w3.eth.get_balance(node.owner)
            proc = cli("rewards", "claim", "--home", str(node.home), "--password-file", str(password_file), "--json")
            assert proc.returncode == 0, proc.stderr
            (claim,) = json.loads(proc.stdout)["claims"]
            receipt = w3.eth.get_transaction_receipt(claim["tx_hash"])
            gas = receipt["gasUsed"] * receipt["effectiveGasPrice"]
            assert int(claim["paid_wei"]) == expected[node.owner]
            assert w3.eth.get_balance(node.owner) - before == expected[node.owner] - gas
            total += int(claim["paid_wei"])
        return total

    assert claim_all(amounts1) == REWARD

    # ---- epoch 2: a replays its epoch-1 receipt; one fresh honest round
    r7 = rounds_of(run_id, "stage/1", 3, {a: 2, b: 3, c: 5})
    heard2 = [
        Announcement(a.peer_id, r1[a].to_bytes()),
        *(Announcement(n.peer_id, r7[n].to_bytes()) for n in (a, b, c)),
    ]
    devchain.increase_time(EPOCH_S)
    settlement2, published2 = settler.settle(2, heard2, bindings)
    assert [(r.announcer, str(r.reason)) for r in settlement2.rejections] == [(a.peer_id, "replayed")]
    amounts2 = share_pro_rata(REWARD, {a.owner: 2 * f1, b.owner: 3 * f1, c.owner: 5 * f1})
    assert dict(settlement2.shares) == amounts2
    assert published2.allocated == 2 * REWARD  # the cumulative tree
    assert claim_all(amounts2) == REWARD
    # The pool paid exactly two epochs' rewards.
    assert devchain.client().rewards.pool(run_id).balance == 3 * REWARD - 2 * REWARD

    # Per-epoch figures for an owner: `zoo-node rewards show --json` (and the library function behind it).
    shown = cli("rewards", "show", "--home", str(b.home), "--json")
    assert shown.returncode == 0, shown.stderr
    (run_shown,) = json.loads(shown.stdout)["runs"]
    assert run_shown["claimed_wei"] == str(amounts1[b.owner] + amounts2[b.owner]) and run_shown["claimable_wei"] == "0"
    epochs = run_shown["epochs"]
    assert epochs == account_epochs(devchain.client(), run_id, b.owner)
    text = cli("rewards", "show", "--home", str(b.home))
    assert "epoch 2:" in text.stdout and "CPU-h" in text.stdout and "(claimed)" in text.stdout
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert [int(e["amount_wei"]) for e in epochs] == [amounts1[b.owner], amounts2[b.owner]]
    assert [int(e["verified_flops"]) for e in epochs] == [verified[b.owner], 3 * f1]
    assert all(e["claimed"] for e in epochs)
    # The same figures in the node's Status (the supervisor reads them through its ChainDirectory).
    figures = ChainDirectory(devchain.client()).rewards(run_id, b.owner)
    assert figures == run_shown
    info = rewards_info(figures, read_at=None)
    assert info.claimed_wei == run_shown["claimed_wei"] and info.claimable_wei == "0" and info.epoch == 2
    assert [(e.epoch, int(e.amount_wei), e.claimed) for e in info.epochs] == [
        (1, amounts1[b.owner], True),
        (2, amounts2[b.owner], True),
    ]
    assert info.epochs[0].cpu_hours == pytest.approx(epochs[0]["cpu_hours"])
    assert info.epochs[0].mfu == pytest.approx(-1.0 if epochs[0]["mfu"] is None else epochs[0]["mfu"])
    # b is a CPU node: its own seconds of the five credited rounds (r1, r2, r3, r5 took 60 s, r6 1 s) in CPU-hours
    assert epochs[0]["cpu_hours"] == pytest.approx((4 * 60.0 + 1.0) / 3600) and epochs[0]["gpu_hours"] == 0.0
    # The ledger survives a restart and refuses to settle an epoch twice.
    ledger.close()
    reopened = SettlementLedger(tmp_path / "coordinator" / "settlement.sqlite3")
    assert reopened.last_epoch(run_id) == 2
    assert reopened.cumulative(run_id) == {o: amounts1[o] + amounts2[o] for o in amounts1}
    assert reopened.epoch(run_id, 2).root == published2.root
    assert Web3.to_hex(published2.root) == Web3.to_hex(devchain.client().rewards.pool(run_id).root)


def test_a_root_posted_before_a_crash_is_recognised_not_posted_twice(devchain, tmp_path):
    """The coordinator posted the root, then died before committing its ledger: the retry commits without a second
    post; a different root already on chain for the epoch is an error, not an overwrite."""
    from tests.accounting.simnodes import SimNode, announce, cosigned_round, directory_of
    from zoo_node.coordinator.settlement import EpochTerms, publish_epoch, settle_epoch

    creator, coordinator = devchain.accounts[1], devchain.accounts[2]
    run_id, _ = devchain.client(creator).runs.create_run(
        spec_hash=b"\x01" * 32, coordinator=coordinator.address, epoch_length_s=60, reward_per_epoch=REWARD,
        funding=2 * REWARD,
    )  # fmt: skip
    devchain.increase_time(60)
    nodes = [SimNode.new(), SimNode.new()]
    terms = EpochTerms(run_id, 1, REWARD, 60.0, {"stage/0": 1000})
    settlement = settle_epoch(terms, announce(cosigned_round(run_id, "stage/0", 1, dict.fromkeys(nodes, 5))),
                              directory_of(nodes, nodes, run_id))  # fmt: skip
    rewards = devchain.client(coordinator).rewards
    first = publish_epoch(settlement, rewards=rewards, claims_dir=tmp_path, ledger=SettlementLedger(tmp_path / "l1"))
    assert first.posted
    # The ledger's commit was lost: a fresh ledger, the same settlement.
    again = publish_epoch(settlement, rewards=rewards, claims_dir=tmp_path, ledger=SettlementLedger(tmp_path / "l2"))
    assert not again.posted and again.root == first.root
    assert SettlementLedger(tmp_path / "l2").last_epoch(run_id) == 1
    # Another settlement of epoch 1 (different shares) must not pass for the posted one.
    other = settle_epoch(terms, announce(cosigned_round(run_id, "stage/0", 1, {nodes[0]: 9, nodes[1]: 1})),
                         directory_of(nodes, nodes, run_id))  # fmt: skip
    with pytest.raises(SettlementError, match="already has epoch 1"):
        publish_epoch(other, rewards=rewards, claims_dir=tmp_path / "x", ledger=SettlementLedger(tmp_path / "l3"))
