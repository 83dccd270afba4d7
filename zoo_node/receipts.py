"""The canonical receipt of one averaging round, its byte encoding and digest, and its co-signatures.

An averaging round of a shard is witnessed by its group: every member signs the same *round digest*, which covers

    run id, shard, round, and every member's data-plane PeerID with the samples it contributed

(the samples are hivemind's averaging weights, which every member sees through the round's all-gather). A member
cannot later claim more samples than the group saw: the others' signatures would not verify over the changed digest.

Canonical encoding (all integers big-endian; strings UTF-8 with a 2-byte length; members sorted by PeerID):

    b"zoo-node/receipt/v1\\n" || u64 run_id || str shard || u64 round || u32 n || n * (str peer_id || u64 samples)

digest = sha256(encoding); a co-signature is the member's Ed25519 signature (its data-plane key, the key of its
p2pd identity) over the 32-byte digest, checked against the public key inlined in its PeerID.

A `Receipt` is what one node journals and gossips: the witnessed `RoundBody`, the co-signatures, and this node's own
unwitnessed figures for its share (tokens, FLOPs, seconds, device). Settlement credits only the witnessed samples.

Importable by every layer: only `cryptography`, protobuf and our identity helpers (no torch, hivemind, libp2p).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from zoo_node.errors import ZooError
from zoo_node.identity import ed25519_public_bytes, peer_id_from_ed25519_public

if TYPE_CHECKING:
    from zoo_node.proto import worker_pb2

RECEIPT_DOMAIN = b"zoo-node/receipt/v1\n"
MAX_STRING_BYTES = 256
MAX_MEMBERS = 4096
_U64_MAX = 2**64 - 1


class ReceiptError(ZooError):
    """A receipt that is malformed (bad field, duplicate member, unparseable message)."""


def _u64(name: str, value: int) -> bytes:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _U64_MAX:
        raise ReceiptError(f"receipt {name}: {value!r} is not an integer in [0, 2**64)")
    return struct.pack(">Q", value)


def _str(name: str, value: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise ReceiptError(f"receipt {name}: must be a non-empty string, got {value!r}")
    raw = value.encode()
    if len(raw) > MAX_STRING_BYTES:
        raise ReceiptError(f"receipt {name}: {len(raw)} bytes (at most {MAX_STRING_BYTES})")
    return struct.pack(">H", len(raw)) + raw


@dataclass(frozen=True, order=True)
class Member:
    """One member of an averaging group: its data-plane PeerID and the samples it contributed."""

    peer_id: str
    samples: int


@dataclass(frozen=True)
class RoundBody:
    """What a group witnesses of one averaging round; members are kept sorted by PeerID."""

    run_id: int
    shard: str
    round: int
    members: tuple[Member, ...]

    def __post_init__(self) -> None:
        try:
            members = tuple(sorted(Member(m.peer_id, m.samples) for m in self.members))
        except (TypeError, AttributeError):
            raise ReceiptError(f"receipt members: not a list of (peer_id, samples): {self.members!r}") from None
        object.__setattr__(self, "members", members)
        self._encoding  # noqa: B018 - validates every field (and keeps the bytes)

    @classmethod
    def of(cls, run_id: int, shard: str, round: int, samples: Mapping[str, int]) -> RoundBody:
        """Build from `{data-plane PeerID: samples}` (what hivemind's all-gather returns, keyed by base58)."""
        return cls(run_id, shard, round, tuple(Member(p, s) for p, s in samples.items()))

    def encode(self) -> bytes:
        """The canonical bytes (see the module docstring)."""
        return self._encoding

    @functools.cached_property
    def _encoding(self) -> bytes:
        if not self.members:
            raise ReceiptError("receipt members: a round has at least one member")
        if len(self.members) > MAX_MEMBERS:
            raise ReceiptError(f"receipt members: {len(self.members)} members (at most {MAX_MEMBERS})")
        parts = [RECEIPT_DOMAIN, _u64("run_id", self.run_id), _str("shard", self.shard), _u64("round", self.round)]
        parts.append(struct.pack(">I", len(self.members)))
        previous = None
        for member in self.members:
            if member.peer_id == previous:
                raise ReceiptError(f"receipt members: {member.peer_id} is listed twice")
            previous = member.peer_id
            parts += [_str("member peer_id", member.peer_id), _u64(f"samples of {member.peer_id}", member.samples)]
        return b"".join(parts)

    @functools.cached_property
    def digest(self) -> bytes:
        """sha256 of the canonical encoding: what every member signs (computed once; the body is immutable)."""
        return hashlib.sha256(self.encode()).digest()

    @property
    def peer_ids(self) -> tuple[str, ...]:
        return tuple(m.peer_id for m in self.members)

    def samples_of(self, peer_id: str) -> int | None:
        for member in self.members:
            if member.peer_id == peer_id:
                return member.samples
        return None

    @property
    def total_samples(self) -> int:
        return sum(m.samples for m in self.members)


def cosign(body: RoundBody, key: Ed25519PrivateKey) -> bytes:
    """This member's co-signature of the round (Ed25519 over the digest, with its data-plane key)."""
    return key.sign(body.digest)


def signer_peer_id(key: Ed25519PrivateKey) -> str:
    """The PeerID whose co-signatures `key` makes."""
    return peer_id_from_ed25519_public(ed25519_public_bytes(key))


def verify_cosignature(body: RoundBody, peer_id: str, signature: bytes) -> bool:
    """True when `signature` is `peer_id`'s Ed25519 signature of the round digest."""
    from zoo_node.control.messages import ed25519_public_from_peer_id  # the PeerID <-> key codec, cryptography only

    try:
        ed25519_public_from_peer_id(peer_id).verify(bytes(signature), body.digest)
    except (ValueError, InvalidSignature, TypeError):
        return False
    return True


VerifiedCache = dict[tuple[bytes, str, bytes], bool]


def _verified(body: RoundBody, peer_id: str, signature: bytes, cache: VerifiedCache | None) -> bool:
    if cache is None:
        return verify_cosignature(body, peer_id, signature)
    key = (body.digest, peer_id, signature)
    if key not in cache:
        cache[key] = verify_cosignature(body, peer_id, signature)
    return cache[key]


@dataclass(frozen=True)
class CosignatureCheck:
    """Which members' co-signatures are missing or do not verify, and which signers are not members."""

    missing: tuple[str, ...]
    invalid: tuple[str, ...]
    strangers: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.invalid or self.strangers)


@dataclass(frozen=True)
class Receipt:
    """A round body with its co-signatures and the announcing node's own figures for its share of the round."""

    body: RoundBody
    cosignatures: Mapping[str, bytes] = field(default_factory=dict)  # data-plane PeerID -> signature
    tokens: int = 0
    flops: float = 0.0
    seconds: float = 0.0
    device: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "cosignatures", {p: bytes(s) for p, s in self.cosignatures.items()})
        _u64("tokens", self.tokens)
        for name in ("flops", "seconds"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ReceiptError(f"receipt {name}: {value!r} is not a finite non-negative number")

    @property
    def digest(self) -> bytes:
        return self.body.digest

    def with_cosignatures(self, signatures: Mapping[str, bytes]) -> Receipt:
        return dataclasses.replace(self, cosignatures={**self.cosignatures, **signatures})

    def check_cosignatures(self, cache: VerifiedCache | None = None) -> CosignatureCheck:
        """Which co-signatures are missing, invalid or by strangers. `cache` remembers verifications across the
        copies of one round (every member announces the same signatures: each is verified once)."""
        members = set(self.body.peer_ids)
        missing = tuple(p for p in self.body.peer_ids if p not in self.cosignatures)
        signed = [p for p in self.body.peer_ids if p in self.cosignatures]
        invalid = tuple(p for p in signed if not _verified(self.body, p, self.cosignatures[p], cache))
        strangers = tuple(sorted(p for p in self.cosignatures if p not in members))
        return CosignatureCheck(missing, invalid, strangers)

    # ---- protobuf (zoo.node.v1.Receipt: what the worker submits, the journal keeps and the gossip carries)
    def to_proto(self) -> worker_pb2.Receipt:
        from zoo_node.proto import worker_pb2

        b = self.body
        return worker_pb2.Receipt(
            run_id=b.run_id,
            shard=b.shard,
            round=b.round,
            members=[worker_pb2.ReceiptMember(peer_id=m.peer_id, samples=m.samples) for m in b.members],
            tokens=self.tokens,
            flops=float(self.flops),
            seconds=float(self.seconds),
            device=self.device,
            cosignatures=[worker_pb2.CoSignature(peer_id=p, signature=s) for p, s in sorted(self.cosignatures.items())],
        )

    @classmethod
    def from_proto(cls, message: worker_pb2.Receipt) -> Receipt:
        """Parse a `zoo.node.v1.Receipt`; `ReceiptError` on a malformed one (e.g. one member listed twice)."""
        body = RoundBody(
            message.run_id,
            message.shard,
            message.round,
            tuple(Member(m.peer_id, m.samples) for m in message.members),
        )
        signatures: dict[str, bytes] = {}
        for c in message.cosignatures:
            if c.peer_id in signatures:
                raise ReceiptError(f"receipt cosignatures: {c.peer_id} signed twice")
            signatures[c.peer_id] = bytes(c.signature)
        return cls(body, signatures, message.tokens, message.flops, message.seconds, message.device)

    @classmethod
    def from_bytes(cls, data: bytes) -> Receipt:
        from google.protobuf.message import DecodeError

        from zoo_node.proto import worker_pb2

        message = worker_pb2.Receipt()
        try:
            message.ParseFromString(data)
        except DecodeError:
            raise ReceiptError("not a serialized zoo.node.v1.Receipt") from None
        return cls.from_proto(message)

    def to_bytes(self) -> bytes:
        return self.to_proto().SerializeToString(deterministic=True)


def sign_all(body: RoundBody, keys: Iterable[Ed25519PrivateKey]) -> dict[str, bytes]:
    """Co-signatures of `body` by each key (tests and single-process tools)."""
    return {signer_peer_id(k): cosign(body, k) for k in keys}
