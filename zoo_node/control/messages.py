"""The run's gossip messages: building, signing and checking `GossipEnvelope`s (protos/zoo/node/v1/gossip.proto).

Two signatures protect a heartbeat. The pubsub message as a whole is signed by the node's control-plane key
(libp2p strict signing, checked in `zoo_node.control.swarm`). Inside it, the worker binding (control PeerID ->
data-plane PeerID) carries its own Ed25519 signature by the same key, so that it stays verifiable when passed on
alone, e.g. to the data plane, which cannot import libp2p. Verification here uses `cryptography` only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf.message import DecodeError

from zoo_node.identity import ed25519_public_bytes, peer_id_from_ed25519_public
from zoo_node.proto import gossip_pb2, worker_pb2

ENVELOPE_FORMAT = 1
BINDING_DOMAIN = b"zoo-node/worker-binding/v1\n"
_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}
# Identity multihash (0x00, length 36) of a protobuf PublicKey{Type: Ed25519 (1), Data: 32 bytes}.
_ED25519_PEER_PREFIX = bytes([0x00, 36, 0x08, 0x01, 0x12, 32])


class MessageError(ValueError):
    """A gossip message that cannot be accepted; `reason` is the drop counter's label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        if char not in _B58_INDEX:
            raise ValueError(f"not base58: {char!r}")
        number = number * 58 + _B58_INDEX[char]
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


def peer_id_bytes(peer_id: str) -> bytes:
    """The binary multihash of a base58 PeerID (what libp2p puts in a pubsub message's `from`)."""
    return _b58decode(peer_id)


def ed25519_public_from_peer_id(peer_id: str) -> Ed25519PublicKey:
    """The Ed25519 public key inlined in a PeerID (`12D3KooW...`); ValueError for any other kind of PeerID."""
    raw = _b58decode(peer_id)
    if len(raw) != 38 or not raw.startswith(_ED25519_PEER_PREFIX):
        raise ValueError(f"{peer_id!r} is not an Ed25519 PeerID")
    return Ed25519PublicKey.from_public_bytes(raw[len(_ED25519_PEER_PREFIX) :])


@dataclass(frozen=True)
class ControlKey:
    """The node's control-plane Ed25519 key with its PeerID."""

    private: Ed25519PrivateKey
    peer_id: str

    @classmethod
    def from_seed(cls, seed: bytes) -> ControlKey:
        private = Ed25519PrivateKey.from_private_bytes(seed)
        return cls(private, peer_id_from_ed25519_public(ed25519_public_bytes(private)))


def sign_worker_binding(
    key: ControlKey, run_id: int, data_peer_id: str, issued_at_ms: int | None = None
) -> gossip_pb2.SignedWorkerBinding:
    """Bind `data_peer_id` to this node for `run_id`, signed by the control key."""
    binding = gossip_pb2.WorkerBinding(
        run_id=run_id,
        control_peer_id=key.peer_id,
        data_peer_id=data_peer_id,
        issued_at_ms=issued_at_ms if issued_at_ms is not None else int(time.time() * 1000),
    ).SerializeToString()
    return gossip_pb2.SignedWorkerBinding(binding=binding, signature=key.private.sign(BINDING_DOMAIN + binding))


def verify_worker_binding(
    signed: gossip_pb2.SignedWorkerBinding, control_peer_id: str, run_id: int
) -> gossip_pb2.WorkerBinding:
    """Check a binding against the node that gossiped it; raises MessageError (malformed, wrong_signer, ...)."""
    binding = gossip_pb2.WorkerBinding()
    try:
        binding.ParseFromString(signed.binding)
    except DecodeError:
        raise MessageError("malformed", "worker binding is not a WorkerBinding") from None
    if binding.control_peer_id != control_peer_id:
        raise MessageError("wrong_signer", f"worker binding names node {binding.control_peer_id}")
    if binding.run_id != run_id:
        raise MessageError("wrong_run", f"worker binding is for run {binding.run_id}")
    if not binding.data_peer_id:
        raise MessageError("malformed", "worker binding has no data-plane PeerID")
    try:
        public = ed25519_public_from_peer_id(control_peer_id)
        public.verify(signed.signature, BINDING_DOMAIN + signed.binding)
    except (ValueError, InvalidSignature):
        raise MessageError("bad_signature", "worker binding signature does not verify") from None
    return binding


class MonotonicMillis:
    """Unix-millisecond timestamps that strictly increase within this process (the envelopes' replay guard)."""

    def __init__(self) -> None:
        self._last = 0

    def __call__(self) -> int:
        self._last = max(int(time.time() * 1000), self._last + 1)
        return self._last


def encode_envelope(
    node_peer_id: str,
    run_id: int,
    sent_at_ms: int,
    *,
    heartbeat: gossip_pb2.Heartbeat | None = None,
    receipt: gossip_pb2.ReceiptAnnouncement | None = None,
) -> bytes:
    """Serialize one envelope carrying exactly one of `heartbeat` or `receipt`."""
    if (heartbeat is None) == (receipt is None):
        raise ValueError("an envelope carries exactly one of heartbeat or receipt")
    envelope = gossip_pb2.GossipEnvelope(
        format=ENVELOPE_FORMAT, run_id=run_id, node_peer_id=node_peer_id, sent_at_ms=sent_at_ms
    )
    if heartbeat is not None:
        envelope.heartbeat.CopyFrom(heartbeat)
    else:
        assert receipt is not None
        envelope.receipt.CopyFrom(receipt)
    return envelope.SerializeToString()


def decode_envelope(data: bytes) -> gossip_pb2.GossipEnvelope:
    """Parse an envelope; MessageError("malformed") if it is not one of ours."""
    envelope = gossip_pb2.GossipEnvelope()
    try:
        envelope.ParseFromString(data)
    except DecodeError:
        raise MessageError("malformed", "not a GossipEnvelope") from None
    if envelope.format != ENVELOPE_FORMAT:
        raise MessageError("malformed", f"envelope format {envelope.format} (expected {ENVELOPE_FORMAT})")
    if envelope.WhichOneof("body") is None:
        raise MessageError("malformed", "envelope has no body")
    return envelope


def check_heartbeat(envelope: gossip_pb2.GossipEnvelope) -> gossip_pb2.WorkerBinding | None:
    """Validate a heartbeat's fields; returns its verified worker binding (None when it has none)."""
    heartbeat = envelope.heartbeat
    if not heartbeat.operator.startswith("0x") or len(heartbeat.operator) != 42:
        raise MessageError("malformed", f"heartbeat operator {heartbeat.operator!r} is not an address")
    if not heartbeat.throughput >= 0:  # also rejects NaN
        raise MessageError("malformed", "heartbeat throughput is negative or NaN")
    if heartbeat.HasField("worker"):
        return verify_worker_binding(heartbeat.worker, envelope.node_peer_id, envelope.run_id)
    return None


def check_receipt(envelope: gossip_pb2.GossipEnvelope) -> worker_pb2.Receipt:
    """Validate a receipt announcement's fields (not its co-signatures: that is the coordinator's job)."""
    receipt = envelope.receipt.receipt
    if receipt.run_id != envelope.run_id:
        raise MessageError("wrong_run", f"receipt is for run {receipt.run_id}")
    if not receipt.shard or not receipt.members:
        raise MessageError("malformed", "receipt has no shard or no members")
    if not (receipt.flops >= 0 and receipt.seconds >= 0):
        raise MessageError("malformed", "receipt has negative or NaN flops or seconds")
    return receipt
