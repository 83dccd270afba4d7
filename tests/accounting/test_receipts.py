"""The canonical receipt: encoding, digest, co-signatures with data-plane keys, protobuf round trip, bad input."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from zoo_node.identity import KeyPaths, load_data_seed, load_public_identity
from zoo_node.proto import worker_pb2
from zoo_node.receipts import (
    RECEIPT_DOMAIN,
    Member,
    Receipt,
    ReceiptError,
    RoundBody,
    cosign,
    sign_all,
    signer_peer_id,
    verify_cosignature,
)


def keys(n: int) -> list[Ed25519PrivateKey]:
    return [Ed25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32) for i in range(n)]


def body_of(ks: list[Ed25519PrivateKey], samples: list[int], *, run_id: int = 7, round: int = 3) -> RoundBody:
    return RoundBody.of(run_id, "stage/0", round, {signer_peer_id(k): s for k, s in zip(ks, samples, strict=True)})


def test_encoding_is_the_documented_layout() -> None:
    body = RoundBody(1, "stage/0", 2, (Member("b", 5), Member("a", 4)))

    def s(text: str) -> bytes:
        return struct.pack(">H", len(text)) + text.encode()

    expected = (
        RECEIPT_DOMAIN
        + struct.pack(">Q", 1)
        + s("stage/0")
        + struct.pack(">Q", 2)
        + struct.pack(">I", 2)
        + s("a")
        + struct.pack(">Q", 4)
        + s("b")
        + struct.pack(">Q", 5)
    )
    assert body.encode() == expected
    assert body.digest == hashlib.sha256(expected).digest()


def test_digest_does_not_depend_on_member_order_but_on_every_field() -> None:
    ks = keys(3)
    base = body_of(ks, [10, 20, 30])
    reordered = RoundBody(7, "stage/0", 3, tuple(reversed(base.members)))
    assert reordered.digest == base.digest
    changed = [
        body_of(ks, [10, 20, 31]),
        body_of(ks, [10, 20, 30], run_id=8),
        body_of(ks, [10, 20, 30], round=4),
        RoundBody(7, "stage/1", 3, base.members),
        body_of(ks[:2], [10, 20]),
    ]
    assert len({base.digest, *(b.digest for b in changed)}) == 1 + len(changed)


def test_members_cosign_with_their_data_plane_keys(node_home) -> None:
    home, identity = node_home
    data_key = Ed25519PrivateKey.from_private_bytes(load_data_seed(home))
    assert signer_peer_id(data_key) == identity.data_peer_id == load_public_identity(home).data_peer_id
    other = keys(1)[0]
    body = RoundBody.of(1, "stage/0", 1, {identity.data_peer_id: 8, signer_peer_id(other): 4})
    receipt = Receipt(body, sign_all(body, [data_key, other]), tokens=512, flops=1e9, seconds=2.0, device="cpu x1")
    check = receipt.check_cosignatures()
    assert check.ok and check.missing == check.invalid == check.strangers == ()
    # The node's control key is not its data-plane key: a signature by it does not count.
    control = Ed25519PrivateKey.from_private_bytes(KeyPaths.of(home).control_key.read_bytes())
    forged = receipt.with_cosignatures({identity.data_peer_id: cosign(body, control)})
    assert forged.check_cosignatures().invalid == (identity.data_peer_id,)


def test_a_changed_sample_count_breaks_the_others_signatures() -> None:
    ks = keys(3)
    honest = body_of(ks, [10, 20, 30])
    signatures = sign_all(honest, ks)
    inflated = body_of(ks, [10, 20, 300])
    # The cheater (third key) re-signs the inflated body itself; the others' signatures are over the honest one.
    tampered = Receipt(inflated, {**signatures, signer_peer_id(ks[2]): cosign(inflated, ks[2])})
    check = tampered.check_cosignatures()
    assert set(check.invalid) == {signer_peer_id(ks[0]), signer_peer_id(ks[1])}
    assert Receipt(honest, signatures).check_cosignatures().ok


def test_missing_forged_and_stranger_signatures_are_reported() -> None:
    ks = keys(4)
    body = body_of(ks[:3], [1, 2, 3])
    sigs = sign_all(body, ks[:3])
    a, b, c = (signer_peer_id(k) for k in ks[:3])
    missing = Receipt(body, {a: sigs[a], b: sigs[b]}).check_cosignatures()
    assert missing.missing == (c,) and not missing.ok
    garbage = Receipt(body, {**sigs, b: b"\0" * 64}).check_cosignatures()
    assert garbage.invalid == (b,)
    wrong_length = Receipt(body, {**sigs, b: b"short"}).check_cosignatures()
    assert wrong_length.invalid == (b,)
    stranger = signer_peer_id(ks[3])
    extra = Receipt(body, {**sigs, stranger: cosign(body, ks[3])}).check_cosignatures()
    assert extra.strangers == (stranger,) and not extra.ok
    assert not verify_cosignature(body, "not-a-peer-id", sigs[a])


def test_protobuf_round_trip_keeps_the_digest_and_signatures() -> None:
    ks = keys(2)
    body = body_of(ks, [5, 6])
    receipt = Receipt(body, sign_all(body, ks), tokens=640, flops=3.5e12, seconds=1.25, device="NVIDIA H200 x1")
    again = Receipt.from_bytes(receipt.to_bytes())
    assert again == receipt and again.digest == receipt.digest and again.check_cosignatures().ok
    message = receipt.to_proto()
    assert isinstance(message, worker_pb2.Receipt)
    assert [m.peer_id for m in message.members] == sorted(signer_peer_id(k) for k in ks)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: RoundBody(1, "stage/0", 1, ()), "at least one member"),
        (lambda: RoundBody(1, "", 1, (Member("a", 1),)), "shard"),
        (lambda: RoundBody(-1, "stage/0", 1, (Member("a", 1),)), "run_id"),
        (lambda: RoundBody(1, "stage/0", 2**64, (Member("a", 1),)), "round"),
        (lambda: RoundBody(1, "stage/0", 1, (Member("a", 1), Member("a", 2))), "listed twice"),
        (lambda: RoundBody(1, "stage/0", 1, (Member("a", -5),)), "samples of a"),
        (lambda: RoundBody(1, "stage/0", 1, (Member("a", 1.5),)), "samples of a"),
        (lambda: RoundBody(1, "s" * 300, 1, (Member("a", 1),)), "at most 256"),
        (lambda: Receipt(RoundBody(1, "stage/0", 1, (Member("a", 1),)), flops=float("nan")), "flops"),
        (lambda: Receipt(RoundBody(1, "stage/0", 1, (Member("a", 1),)), seconds=-1.0), "seconds"),
        (lambda: Receipt.from_bytes(b"\xff\xff\xff"), "not a serialized"),
    ],
)
def test_malformed_receipts_are_refused_with_a_clear_error(make, match: str) -> None:
    with pytest.raises(ReceiptError, match=match):
        make()


def test_a_member_signing_twice_in_a_message_is_refused() -> None:
    message = worker_pb2.Receipt(
        run_id=1,
        shard="stage/0",
        round=1,
        members=[worker_pb2.ReceiptMember(peer_id="a", samples=1)],
        cosignatures=[worker_pb2.CoSignature(peer_id="a", signature=b"x"), worker_pb2.CoSignature(peer_id="a")],
    )
    with pytest.raises(ReceiptError, match="signed twice"):
        Receipt.from_proto(message)


def test_receipts_module_imports_no_torch_hivemind_or_libp2p() -> None:
    probe = "import json, sys, zoo_node.receipts, zoo_node.peaks; print(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    roots = {name.split(".")[0] for name in json.loads(proc.stdout)}
    assert not roots & {"torch", "hivemind", "libp2p"}
