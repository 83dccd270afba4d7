"""Settlement without a chain: crediting, pro-rata sharing to the wei, and each cheat refused with its reason."""

from __future__ import annotations

import dataclasses
import random

import pytest

from tests.accounting.simnodes import SimNode, announce, cosigned_round, directory_of
from zoo_node.chain.merkle import leaf_hash, verify_proof
from zoo_node.coordinator.checks import CreditHistory, Reason
from zoo_node.coordinator.ledger import LedgerError, SettlementLedger
from zoo_node.coordinator.settlement import (
    Announcement,
    EpochTerms,
    SettlementError,
    settle_epoch,
)
from zoo_node.coordinator.sharing import share_pro_rata
from zoo_node.receipts import Receipt, cosign

RUN = 5
REWARD = 10**18 + 7  # not divisible by the usual weights: the rounding rule matters
FLOPS = {"stage/0": 3_000_000, "stage/1": 5_000_000}


def terms(epoch: int = 1, **overrides) -> EpochTerms:
    values = dict(run_id=RUN, epoch=epoch, reward_wei=REWARD, epoch_length_s=3600.0, flops_per_sample=FLOPS)
    return EpochTerms(**{**values, **overrides})


@pytest.fixture
def trio() -> list[SimNode]:
    return [SimNode.new(), SimNode.new(), SimNode.new()]


def reasons(settlement) -> list[tuple[str, str]]:
    return [(r.announcer, str(r.reason)) for r in settlement.rejections]


# ---- sharing ------------------------------------------------------------------------------------------------
def test_pro_rata_pays_exactly_the_reward_with_the_documented_rounding() -> None:
    # 100 wei by weights 1:1:1 -> 33.33 each; the leftover wei goes to the lowest address (equal remainders).
    assert share_pro_rata(100, {"0xC": 1, "0xa": 1, "0xB": 1}) == {"0xa": 34, "0xB": 33, "0xC": 33}
    # Largest remainders first: 10 * (5, 3, 2) / 10 exact; 7 * (5, 3, 2) / 10 = 3.5, 2.1, 1.4 -> 4, 2, 1.
    assert share_pro_rata(7, {"0x1": 5, "0x2": 3, "0x3": 2}) == {"0x1": 4, "0x2": 2, "0x3": 1}
    assert share_pro_rata(10, {"0x1": 5, "0x2": 3, "0x3": 2}) == {"0x1": 5, "0x2": 3, "0x3": 2}
    assert share_pro_rata(5, {"0x1": 0, "0x2": 9}) == {"0x1": 0, "0x2": 5}


def test_pro_rata_is_exact_and_fair_on_random_splits() -> None:
    rng = random.Random(1)
    for _ in range(300):
        weights = {f"0x{i:040x}": rng.randrange(0, 10**22) for i in range(rng.randrange(1, 40))}
        weights[f"0x{99:040x}"] = rng.randrange(1, 10**6)
        reward = rng.randrange(0, 10**24)
        shares = share_pro_rata(reward, weights)
        total = sum(weights.values())
        assert sum(shares.values()) == reward
        for account, weight in weights.items():
            exact_floor = reward * weight // total
            assert shares[account] - exact_floor in (0, 1)


def test_pro_rata_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="all zero"):
        share_pro_rata(10, {"0x1": 0})
    with pytest.raises(ValueError, match="weight of 0x1"):
        share_pro_rata(10, {"0x1": -1})
    with pytest.raises(ValueError, match="reward"):
        share_pro_rata(-1, {"0x1": 1})


# ---- honest work --------------------------------------------------------------------------------------------
def test_honest_rounds_are_credited_by_witnessed_samples(trio: list[SimNode]) -> None:
    a, b, c = trio
    directory = directory_of(trio, trio, RUN)
    round1 = cosigned_round(RUN, "stage/0", 1, {a: 10, b: 20, c: 30})
    round2 = cosigned_round(RUN, "stage/1", 1, {a: 8, b: 8})
    settlement = settle_epoch(terms(), announce(round1) + announce(round2), directory)
    assert settlement.rejections == ()
    flops = {n.owner: 0 for n in trio}
    for credit in settlement.credits:
        flops[credit.owner] += credit.flops
    assert flops == {a.owner: 10 * 3e6 + 8 * 5e6, b.owner: 20 * 3e6 + 8 * 5e6, c.owner: 30 * 3e6}
    assert settlement.total_flops == sum(flops.values())
    assert sum(settlement.shares.values()) == REWARD
    assert settlement.shares == share_pro_rata(REWARD, {o: int(f) for o, f in flops.items()})
    # The tree holds the cumulative amounts and its proofs verify (OpenZeppelin's leaves).
    tree = settlement.tree
    for owner, amount in settlement.cumulative.items():
        assert verify_proof(tree.proof(owner), tree.root, leaf_hash(owner, amount))
    report = settlement.report()
    assert report["paid_wei"] == str(REWARD) and report["counts"]["accepted"] == 5
    assert report["owners"][a.owner]["amount_wei"] == str(settlement.shares[a.owner])
    assert report["owners"][a.owner]["gpu_hours"] == pytest.approx(2 * 10.0 / 3600)
    node = report["nodes"][a.peer_id]
    assert node["verified_flops"] == str(70_000_000) and node["hours_label"] == "gpu-hours"
    assert node["mfu"] == pytest.approx(7e7 / (20.0 * 989e12))


def test_the_same_announcement_twice_counts_once(trio: list[SimNode]) -> None:
    directory = directory_of(trio, trio, RUN)
    copies = cosigned_round(RUN, "stage/0", 1, dict.fromkeys(trio, 4))
    settlement = settle_epoch(terms(), announce(copies) * 2, directory)
    assert len(settlement.credits) == 3 and settlement.duplicates == 3 and settlement.rejections == ()


def test_a_refused_receipt_announced_again_is_listed_once_and_a_completed_copy_still_counts(trio) -> None:
    a, b, _ = trio
    directory = directory_of(trio, trio, RUN)
    full = cosigned_round(RUN, "stage/0", 1, {a: 4, b: 4})
    partial = dataclasses.replace(full[a], cosignatures={a.worker: full[a].cosignatures[a.worker]})
    announcements = [Announcement(a.peer_id, partial)] * 3 + [Announcement(a.peer_id, full[a])]
    settlement = settle_epoch(terms(), announcements, directory)
    assert reasons(settlement) == [(a.peer_id, "missing_cosignature")] and settlement.duplicates == 2
    assert [cr.owner for cr in settlement.credits] == [a.owner]


def test_owner_with_two_nodes_gets_their_sum() -> None:
    owner = SimNode.new().owner
    a, b = SimNode.new(owner=owner), SimNode.new(owner=owner)
    c = SimNode.new()
    directory = directory_of([a, b, c], [a, b, c], RUN)
    settlement = settle_epoch(terms(), announce(cosigned_round(RUN, "stage/0", 1, {a: 1, b: 1, c: 2})), directory)
    assert settlement.shares == {owner: REWARD // 2 + REWARD % 2, c.owner: REWARD // 2} or settlement.shares == {
        owner: REWARD // 2,
        c.owner: REWARD // 2 + REWARD % 2,
    }
    assert sum(settlement.shares.values()) == REWARD


def test_an_epoch_without_verified_work_allocates_nothing(trio: list[SimNode]) -> None:
    settlement = settle_epoch(terms(), [], directory_of(trio, trio, RUN))
    assert settlement.shares == {} and settlement.tree is None and settlement.report()["paid_wei"] == "0"
    # with earlier allocations, the tree is the previous one, unchanged
    again = settle_epoch(terms(epoch=2), [], directory_of(trio, trio, RUN), previous_cumulative={trio[0].owner: 5})
    assert again.shares == {} and again.tree.total == 5


# ---- cheating -----------------------------------------------------------------------------------------------
def test_claiming_more_samples_than_the_group_witnessed_is_refused(trio: list[SimNode]) -> None:
    a, b, c = trio
    directory = directory_of(trio, trio, RUN)
    honest = cosigned_round(RUN, "stage/0", 1, {a: 10, b: 10, c: 10})
    # c rewrites its own sample count after the round and re-signs; a and b's signatures are over the true digest.
    inflated = cosigned_round(RUN, "stage/0", 1, {a: 10, b: 10, c: 50}, signers=[])[c]
    inflated = inflated.with_cosignatures({**honest[a].cosignatures, c.worker: cosign(inflated.body, c.data_key)})
    announcements = [*announce({a: honest[a], b: honest[b]}), Announcement(c.peer_id, inflated.to_bytes())]
    settlement = settle_epoch(terms(), announcements, directory)
    assert reasons(settlement) == [(c.peer_id, "samples_not_witnessed")]
    assert "claims 50 samples; the group co-signed 10" in settlement.rejections[0].detail
    assert {cr.owner for cr in settlement.credits} == {a.owner, b.owner}
    assert c.owner not in settlement.shares and sum(settlement.shares.values()) == REWARD
    rejected = settlement.report()["rejected"]
    assert rejected[0]["reason"] == "samples_not_witnessed" and rejected[0]["announcer"] == c.peer_id


def test_a_forged_cosignature_is_refused(trio: list[SimNode]) -> None:
    a, b, c = trio
    directory = directory_of(trio, trio, RUN)
    copies = cosigned_round(RUN, "stage/0", 1, {a: 10, b: 10, c: 10})
    # c invents b's signature (signs with its own key in b's name).
    forged = copies[c].with_cosignatures({b.worker: cosign(copies[c].body, c.data_key)})
    settlement = settle_epoch(terms(), [Announcement(c.peer_id, forged.to_bytes())], directory)
    assert reasons(settlement) == [(c.peer_id, "bad_cosignature")]
    assert b.worker in settlement.rejections[0].detail
    assert settlement.credits == () and settlement.shares == {}


def test_a_missing_cosignature_is_refused(trio: list[SimNode]) -> None:
    a, b, c = trio
    directory = directory_of(trio, trio, RUN)
    copies = cosigned_round(RUN, "stage/0", 1, {a: 10, b: 10, c: 10}, signers=[a, c])
    settlement = settle_epoch(terms(), announce(copies), directory)
    assert reasons(settlement) == [(n.peer_id, "missing_cosignature") for n in (a, b, c)]
    assert all(b.worker in r.detail for r in settlement.rejections)
    assert settlement.shares == {}


def test_a_signature_by_a_non_member_is_refused(trio: list[SimNode]) -> None:
    a, b, c = trio
    copies = cosigned_round(RUN, "stage/0", 1, {a: 10, b: 10})
    padded = copies[a].with_cosignatures({c.worker: cosign(copies[a].body, c.data_key)})
    settlement = settle_epoch(terms(), [Announcement(a.peer_id, padded)], directory_of(trio, trio, RUN))
    assert reasons(settlement) == [(a.peer_id, "bad_cosignature")] and "non-members" in settlement.rejections[0].detail


def test_a_receipt_replayed_into_a_later_epoch_is_refused(trio: list[SimNode]) -> None:
    directory = directory_of(trio, trio, RUN)
    announcements = announce(cosigned_round(RUN, "stage/0", 1, dict.fromkeys(trio, 10)))
    history = CreditHistory()
    first = settle_epoch(terms(1), announcements, directory, history=history)
    assert len(first.credits) == 3
    fresh = announce(cosigned_round(RUN, "stage/0", 2, dict.fromkeys(trio, 10)))
    second = settle_epoch(
        terms(2), announcements[:1] + fresh, directory, history=history, previous_cumulative=first.cumulative
    )
    assert reasons(second) == [(trio[0].peer_id, "replayed")]
    assert "credited in epoch 1" in second.rejections[0].detail
    assert len(second.credits) == 3 and sum(second.shares.values()) == REWARD
    assert second.tree.total == 2 * REWARD


def test_another_receipt_for_an_already_credited_round_is_a_double_claim(trio: list[SimNode]) -> None:
    a, b, c = trio
    directory = directory_of(trio, trio, RUN)
    first = cosigned_round(RUN, "stage/0", 1, {a: 10, b: 10})
    # a forms a second "group" with c for the same round number and has it co-signed too.
    second = cosigned_round(RUN, "stage/0", 1, {a: 10, c: 10})
    settlement = settle_epoch(terms(), announce(first) + announce(second), directory)
    assert reasons(settlement) == [(a.peer_id, "double_claim")]
    assert "this epoch" in settlement.rejections[0].detail


def test_a_receipt_from_a_peer_not_bound_to_a_registered_node_is_refused(trio: list[SimNode]) -> None:
    a, b, c = trio
    outsider = SimNode.new()  # has keys, never registered on chain
    unbound = SimNode.new()  # registered, but its worker binding was never heard (or did not verify)
    directory = directory_of([a, b, c, unbound], [a, b, c, outsider], RUN)
    copies = cosigned_round(RUN, "stage/0", 1, {a: 10, b: 10, outsider: 10, unbound: 10})
    settlement = settle_epoch(terms(), announce(copies), directory)
    assert reasons(settlement) == [(outsider.peer_id, "unregistered_peer"), (unbound.peer_id, "unregistered_peer")]
    assert "not an active registered node" in settlement.rejections[0].detail
    assert f"bound to node {unbound.peer_id}" in settlement.rejections[1].detail
    # a and b are witnessed by each other: their work counts; the outsiders' does not.
    assert {cr.owner for cr in settlement.credits} == {a.owner, b.owner}
    report = settlement.report()
    assert {r["reason"] for r in report["rejected"]} == {"unregistered_peer"}


def test_a_binding_signed_by_another_key_is_not_accepted(trio: list[SimNode]) -> None:
    from zoo_node.control.messages import MessageError, sign_worker_binding
    from zoo_node.coordinator.nodes import WorkerBindings

    a, b, _ = trio
    bindings = WorkerBindings()
    # b signs a binding that claims a's worker for a's node: the signature is not a's control key.
    with pytest.raises(MessageError):
        bindings.add_signed(sign_worker_binding(b.control, RUN, a.worker), a.peer_id, RUN)
    assert bindings.control_of(a.worker) is None


def test_a_node_whose_worker_is_not_in_the_group_is_refused(trio: list[SimNode]) -> None:
    a, b, c = trio
    copies = cosigned_round(RUN, "stage/0", 1, {a: 10, b: 10})
    settlement = settle_epoch(terms(), [Announcement(c.peer_id, copies[a])], directory_of(trio, trio, RUN))
    assert reasons(settlement) == [(c.peer_id, "not_a_member")]


def test_a_group_of_one_node_is_unwitnessed(trio: list[SimNode]) -> None:
    a = trio[0]
    copies = cosigned_round(RUN, "stage/0", 1, {a: 1000})
    settlement = settle_epoch(terms(), announce(copies), directory_of(trio, trio, RUN))
    assert reasons(settlement) == [(a.peer_id, "unwitnessed")]


def test_samples_beyond_the_devices_peak_are_refused() -> None:
    slow = SimNode.new(gpu_model="NVIDIA GeForce RTX 3090")  # 71 TFLOP/s
    fast = SimNode.new(gpu_model="NVIDIA H100 80GB HBM3")  # 989 TFLOP/s
    directory = directory_of([slow, fast], [slow, fast], RUN)
    flops = {"stage/0": 10**12}  # 1 TFLOP per sample
    # 10 s: the RTX 3090 can do at most 710 samples, the H100 9,890. Both claim 1,000 (and the group signs it).
    copies = cosigned_round(RUN, "stage/0", 1, {slow: 1000, fast: 1000}, seconds=10.0)
    settlement = settle_epoch(terms(flops_per_sample=flops), announce(copies), directory)
    assert reasons(settlement) == [(slow.peer_id, "beyond_peak")]
    assert "RTX 3090" in settlement.rejections[0].detail and "7.1e+13 FLOP/s" in settlement.rejections[0].detail
    assert [c.owner for c in settlement.credits] == [fast.owner]


def test_claimed_seconds_cannot_lift_the_epoch_bound() -> None:
    a, b = SimNode.new(gpu_model="NVIDIA L40S"), SimNode.new(gpu_model="NVIDIA L40S")  # 362 TFLOP/s each
    directory = directory_of([a, b], [a, b], RUN)
    flops = {"stage/0": 10**12}
    # 100 s epochs: at most 36,200 samples per node per epoch, whatever seconds the receipts claim.
    announcements = []
    for rnd in range(4):
        announcements += announce(cosigned_round(RUN, "stage/0", rnd, {a: 10_000, b: 10}, seconds=1e9))
    settlement = settle_epoch(terms(flops_per_sample=flops, epoch_length_s=100.0), announcements, directory)
    assert reasons(settlement) == [(a.peer_id, "beyond_peak")]
    assert "epoch" in settlement.rejections[0].detail
    assert sum(c.samples for c in settlement.credits if c.owner == a.owner) == 30_000


def test_an_unknown_gpu_model_is_bounded_by_the_fastest_known_one() -> None:
    odd = SimNode.new(gpu_model="Mystery Accelerator 9000", gpu_count=2)
    other = SimNode.new()
    assert odd.registered().peak_flops == 2 * 989e12 and odd.registered().peak_source == "gpu-ceiling"
    cpu = SimNode.new(gpu_model="cpu", gpu_count=0)
    assert cpu.registered().peak_flops == 20e12 and cpu.registered().is_cpu
    directory = directory_of([odd, other, cpu], [odd, other, cpu], RUN)
    copies = cosigned_round(RUN, "stage/0", 1, {odd: 1000, other: 1, cpu: 1000}, seconds=1.0)
    settlement = settle_epoch(terms(flops_per_sample={"stage/0": 10**12}), announce(copies), directory)
    assert reasons(settlement) == [(cpu.peer_id, "beyond_peak")]


def test_wrong_run_unknown_shard_and_garbage_are_refused(trio: list[SimNode]) -> None:
    a, b, _ = trio
    directory = directory_of(trio, trio, RUN)
    other_run = announce(cosigned_round(RUN + 1, "stage/0", 1, {a: 1, b: 1}))[:1]
    odd_shard = announce(cosigned_round(RUN, "stage/9", 1, {a: 1, b: 1}))[:1]
    garbage = [Announcement(a.peer_id, b"\x08\xff\xff"), Announcement(a.peer_id, "text")]
    settlement = settle_epoch(terms(), other_run + odd_shard + garbage, directory)
    assert [str(r.reason) for r in settlement.rejections] == ["wrong_run", "unknown_shard", "malformed", "malformed"]
    assert settlement.credits == ()


def test_bad_terms_are_refused() -> None:
    with pytest.raises(SettlementError, match="epoch"):
        terms(epoch=0)
    with pytest.raises(SettlementError, match="flops_per_sample"):
        terms(flops_per_sample={"stage/0": 0})


# ---- the ledger ---------------------------------------------------------------------------------------------
def test_the_ledger_remembers_credits_across_restarts(tmp_path, trio: list[SimNode]) -> None:
    directory = directory_of(trio, trio, RUN)
    announcements = announce(cosigned_round(RUN, "stage/0", 1, dict.fromkeys(trio, 10)))
    settlement = settle_epoch(terms(1), announcements, directory)
    ledger = SettlementLedger(tmp_path / "settlement.sqlite3")
    ledger.commit_epoch(
        run_id=RUN,
        epoch=1,
        credits=[(c.shard, c.round, w, c.digest) for c in settlement.credits for w in c.workers],
        cumulative=dict(settlement.cumulative),
        root=settlement.tree.root,
        claims_uri="file:///x",
        report=settlement.report(),
    )
    ledger.close()
    reopened = SettlementLedger(tmp_path / "settlement.sqlite3")
    assert reopened.last_epoch(RUN) == 1 and reopened.cumulative(RUN) == settlement.cumulative
    assert reopened.epoch(RUN, 1).report["paid_wei"] == str(REWARD)
    replay = settle_epoch(
        terms(2),
        announcements,
        directory,
        history=CreditHistory(reopened.credited(RUN)),
        previous_cumulative=reopened.cumulative(RUN),
    )
    assert {str(r.reason) for r in replay.rejections} == {Reason.REPLAYED.value}
    with pytest.raises(LedgerError, match="not after the last settled epoch"):
        reopened.commit_epoch(
            run_id=RUN, epoch=1, credits=[], cumulative={}, root=None, claims_uri=None, report={"x": 1}
        )


def test_receipt_objects_and_protos_are_accepted_like_bytes(trio: list[SimNode]) -> None:
    a, b, c = trio
    copies = cosigned_round(RUN, "stage/0", 1, {a: 1, b: 2, c: 3})
    mixed = [
        Announcement(a.peer_id, copies[a]),
        Announcement(b.peer_id, copies[b].to_proto()),
        Announcement(c.peer_id, copies[c].to_bytes()),
    ]
    settlement = settle_epoch(terms(), mixed, directory_of(trio, trio, RUN))
    assert len(settlement.credits) == 3
    assert isinstance(Receipt.from_proto(copies[a].to_proto()), Receipt)
