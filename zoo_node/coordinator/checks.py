"""The checks a receipt passes before its work is credited, and the reasons a receipt is refused.

A receipt is *announced* by a node (the control PeerID that gossiped it); it claims the samples of that node's
worker(s) among the round's members. It is credited only if, in this order:

1. it parses (`malformed`), is for this run (`wrong_run`) and for a shard of the run (`unknown_shard`);
2. the announcing node is an active registered node of the run, and one of the members is a data-plane PeerID bound
   to it (`unregistered_peer`; `not_a_member` when the node's worker is known but not in the group);
3. every member co-signed the round digest (`missing_cosignature`) and every co-signature verifies over it; where a
   member's signature does not verify while another announced copy of the same round is fully co-signed and gives
   the claimant fewer samples, the claimant changed its sample count (`samples_not_witnessed`); otherwise
   `bad_cosignature` (also for a signature by a PeerID that is not a member);
4. the members belong to at least `min_nodes` distinct registered nodes (`unwitnessed`: nobody else saw the work);
5. the claimant's (shard, round) was not credited before: the same digest in an earlier epoch is `replayed`, another
   digest for a round already credited is `double_claim`;
6. the credited FLOPs (witnessed samples x FLOPs per sample of the shard) fit the node's declared hardware at its
   peak: within the receipt's seconds (capped at the epoch length), and summed over the epoch within the epoch
   length (`beyond_peak`).

The same receipt announced twice by the same node is counted once (`duplicates`), not refused.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from zoo_node.coordinator.nodes import NodeDirectory, RegisteredNode
from zoo_node.receipts import Receipt, VerifiedCache


class Reason(enum.StrEnum):
    MALFORMED = "malformed"
    WRONG_RUN = "wrong_run"
    UNKNOWN_SHARD = "unknown_shard"
    UNREGISTERED_PEER = "unregistered_peer"
    NOT_A_MEMBER = "not_a_member"
    MISSING_COSIGNATURE = "missing_cosignature"
    BAD_COSIGNATURE = "bad_cosignature"
    SAMPLES_NOT_WITNESSED = "samples_not_witnessed"
    UNWITNESSED = "unwitnessed"
    REPLAYED = "replayed"
    DOUBLE_CLAIM = "double_claim"
    BEYOND_PEAK = "beyond_peak"


class Refused(Exception):
    """Raised inside the checks; becomes a `Rejection` in the epoch report."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class CreditedRound:
    """A (shard, round, worker) already credited: by which digest and in which epoch."""

    digest: bytes
    epoch: int


class CreditHistory:
    """Rounds credited so far: earlier epochs (from the ledger) plus this settlement's."""

    def __init__(self, earlier: Mapping[tuple[str, int, str], CreditedRound] | None = None) -> None:
        self._credited: dict[tuple[str, int, str], CreditedRound] = dict(earlier or {})

    def get(self, shard: str, round: int, worker: str) -> CreditedRound | None:
        return self._credited.get((shard, round, worker))

    def add(self, shard: str, round: int, worker: str, digest: bytes, epoch: int) -> None:
        self._credited[(shard, round, worker)] = CreditedRound(digest, epoch)


def claimant_workers(receipt: Receipt, announcer: str, directory: NodeDirectory) -> tuple[str, ...]:
    """The members bound to the announcing node."""
    return tuple(p for p in receipt.body.peer_ids if directory.control_of(p) == announcer)


def check_identity(
    receipt: Receipt, announcer: str, directory: NodeDirectory
) -> tuple[RegisteredNode, tuple[str, ...]]:
    """Step 2: the announcing node and its workers among the members."""
    node = directory.node(announcer)
    if node is None:
        raise Refused(Reason.UNREGISTERED_PEER, f"node {announcer} is not an active registered node of the run")
    workers = claimant_workers(receipt, announcer, directory)
    if not workers:
        known_workers = directory.workers_of(announcer)
        if known_workers:
            raise Refused(
                Reason.NOT_A_MEMBER,
                f"the worker of node {announcer} ({', '.join(sorted(known_workers))}) is not a member of the round",
            )
        raise Refused(
            Reason.UNREGISTERED_PEER,
            f"no member ({', '.join(receipt.body.peer_ids)}) is bound to node {announcer}",
        )
    return node, workers


def check_cosignatures(
    receipt: Receipt, workers: tuple[str, ...], copies: list[Receipt], cache: VerifiedCache | None = None
) -> None:
    """Step 3: every member co-signed this digest; tell a changed sample count from a forged signature."""
    check = receipt.check_cosignatures(cache)
    if check.missing:
        raise Refused(Reason.MISSING_COSIGNATURE, f"no co-signature from {', '.join(check.missing)}")
    if check.strangers:
        raise Refused(Reason.BAD_COSIGNATURE, f"co-signed by non-members {', '.join(check.strangers)}")
    if not check.invalid:
        return
    own_valid = not set(workers) & set(check.invalid)
    if own_valid:
        claimed = sum(receipt.body.samples_of(w) or 0 for w in workers)
        for copy in copies:
            if copy.digest == receipt.digest or not all(copy.body.samples_of(w) is not None for w in workers):
                continue
            witnessed = sum(copy.body.samples_of(w) or 0 for w in workers)
            if witnessed < claimed and copy.check_cosignatures(cache).ok:
                raise Refused(
                    Reason.SAMPLES_NOT_WITNESSED,
                    f"claims {claimed} samples; the group co-signed {witnessed} (digest {copy.digest.hex()[:16]})",
                )
    raise Refused(
        Reason.BAD_COSIGNATURE, f"the co-signature of {', '.join(check.invalid)} does not verify over this digest"
    )


def check_witnesses(receipt: Receipt, directory: NodeDirectory, min_nodes: int) -> None:
    """Step 4: enough distinct registered nodes in the group."""
    nodes = set()
    for peer in receipt.body.peer_ids:
        control = directory.control_of(peer)
        if control is not None and directory.node(control) is not None:
            nodes.add(control)
    if len(nodes) < min_nodes:
        raise Refused(
            Reason.UNWITNESSED,
            f"the group has {len(nodes)} registered node(s); at least {min_nodes} must witness a round",
        )


def check_not_credited(receipt: Receipt, workers: tuple[str, ...], history: CreditHistory, epoch: int) -> None:
    """Step 5: replays and double claims."""
    body = receipt.body
    for worker in workers:
        previous = history.get(body.shard, body.round, worker)
        if previous is None:
            continue
        if previous.digest == receipt.digest:
            raise Refused(
                Reason.REPLAYED,
                f"{body.shard} round {body.round} of {worker} was credited in epoch {previous.epoch}",
            )
        raise Refused(
            Reason.DOUBLE_CLAIM,
            f"{body.shard} round {body.round} of {worker} was already credited "
            f"{'this epoch' if previous.epoch == epoch else f'in epoch {previous.epoch}'} with another receipt",
        )


def check_peak(
    flops: int, receipt: Receipt, node: RegisteredNode, epoch_length_s: float, epoch_flops_so_far: int
) -> None:
    """Step 6: no more FLOPs than the declared hardware can do at its peak."""
    seconds = min(receipt.seconds, epoch_length_s)
    bound = node.peak_flops * seconds
    if flops > bound:
        raise Refused(
            Reason.BEYOND_PEAK,
            f"{flops:.4g} FLOPs in {seconds:g} s is beyond the peak of {node.hardware} "
            f"({node.peak_flops:.4g} FLOP/s, {node.peak_source})",
        )
    epoch_bound = node.peak_flops * epoch_length_s
    if epoch_flops_so_far + flops > epoch_bound:
        raise Refused(
            Reason.BEYOND_PEAK,
            f"the node's credited FLOPs this epoch would reach {epoch_flops_so_far + flops:.4g}, beyond its peak "
            f"x epoch length ({epoch_bound:.4g})",
        )
