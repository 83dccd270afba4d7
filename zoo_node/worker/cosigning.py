"""Collecting an averaging round's co-signatures through the run's hivemind DHT.

After a round, every member knows the same `RoundBody` (run, shard, round, members and samples from the round's
all-gather). Each member calls `collect_cosignatures`: it stores its own signature of the digest under

    key    <prefix>/cosign/<digest hex>
    subkey the signature (hex)         value: the signer's data-plane PeerID

and reads the key until every member's valid signature is there or the deadline passes. The subkey is the
signature itself, so nobody can overwrite or displace another member's entry; anything stored there that does not
verify (junk, a non-member, another digest) is ignored. What comes back goes into the receipt; a member that never
signed leaves its co-signature missing, and settlement refuses the receipt (`missing_cosignature`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from zoo_node.receipts import Receipt, RoundBody, cosign, signer_peer_id, verify_cosignature

logger = logging.getLogger(__name__)


def cosign_key(prefix: str, body: RoundBody) -> str:
    return f"{prefix}/cosign/{body.digest.hex()}"


def publish_cosignature(dht: Any, prefix: str, body: RoundBody, key: Ed25519PrivateKey, ttl_s: float) -> bytes:
    """Store this member's co-signature of `body` in the DHT (without waiting); returns it."""
    from hivemind.utils.timed_storage import get_dht_time

    me = signer_peer_id(key)
    if me not in body.peer_ids:
        raise ValueError(f"{me} is not a member of {body.shard} round {body.round}")
    signature = cosign(body, key)
    dht.store(
        cosign_key(prefix, body),
        subkey=signature.hex(),
        value=me,
        expiration_time=get_dht_time() + ttl_s,
        return_future=True,
    )
    return signature


def read_cosignatures(dht: Any, prefix: str, body: RoundBody) -> dict[str, bytes]:
    """The members' valid co-signatures of `body` found in the DHT now."""
    from hivemind.utils.timed_storage import ValueWithExpiration

    found = dht.get(cosign_key(prefix, body), latest=True)
    if found is None or not isinstance(found.value, dict):
        return {}
    members = set(body.peer_ids)
    signatures: dict[str, bytes] = {}
    for subkey, item in found.value.items():
        peer = item.value if isinstance(item, ValueWithExpiration) else None
        if not isinstance(peer, str) or peer not in members or not isinstance(subkey, str):
            continue
        try:
            signature = bytes.fromhex(subkey)
        except ValueError:
            continue
        if verify_cosignature(body, peer, signature):
            signatures[peer] = signature
    return signatures


def collect_cosignatures(
    dht: Any,
    prefix: str,
    body: RoundBody,
    key: Ed25519PrivateKey,
    *,
    timeout_s: float,
    poll_s: float = 0.1,
    ttl_s: float = 600.0,
) -> dict[str, bytes]:
    """Publish our co-signature and gather the others' until all members have signed or `timeout_s` passes.

    Returns every valid co-signature found (ours included). Polling the DHT is the only way to hear other
    processes here; the loop ends as soon as the condition holds.
    """
    me = signer_peer_id(key)
    signatures = {me: publish_cosignature(dht, prefix, body, key, ttl_s)}
    deadline = time.monotonic() + timeout_s
    while True:
        signatures.update(read_cosignatures(dht, prefix, body))
        if len(signatures) == len(body.members) or time.monotonic() >= deadline:
            break
        time.sleep(poll_s)
    if len(signatures) < len(body.members):
        missing = sorted(set(body.peer_ids) - set(signatures))
        logger.warning(
            "round %s of %s: no co-signature from %s within %.0f s", body.round, body.shard, missing, timeout_s
        )
    return signatures


def cosigned_receipt(
    dht: Any,
    prefix: str,
    body: RoundBody,
    key: Ed25519PrivateKey,
    *,
    tokens: int,
    flops: float,
    seconds: float,
    device: str,
    timeout_s: float,
) -> Receipt:
    """The receipt this member journals for the round: the body, the co-signatures collected, its own figures."""
    signatures = collect_cosignatures(dht, prefix, body, key, timeout_s=timeout_s)
    return Receipt(body, signatures, tokens=tokens, flops=flops, seconds=seconds, device=device)
