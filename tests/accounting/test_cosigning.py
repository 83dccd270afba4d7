"""Co-signatures gathered through a real hivemind DHT (three DHT nodes, each with its own p2pd)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from zoo_node.receipts import RoundBody, cosign, signer_peer_id
from zoo_node.worker.cosigning import collect_cosignatures, cosign_key, cosigned_receipt, read_cosignatures


@pytest.fixture(scope="module")
def dhts():
    import hivemind

    first = hivemind.DHT(start=True, host_maddrs=["/ip4/127.0.0.1/tcp/0"])
    peers = [str(m) for m in first.get_visible_maddrs()]
    nodes = [first] + [
        hivemind.DHT(start=True, host_maddrs=["/ip4/127.0.0.1/tcp/0"], initial_peers=peers) for _ in range(2)
    ]
    yield nodes
    for dht in nodes:
        dht.shutdown()


def members(n: int) -> list[Ed25519PrivateKey]:
    return [Ed25519PrivateKey.from_private_bytes(os.urandom(32)) for _ in range(n)]


def body_for(keys: list[Ed25519PrivateKey], rnd: int) -> RoundBody:
    return RoundBody.of(1, "stage/0", rnd, {signer_peer_id(k): 4 * (i + 1) for i, k in enumerate(keys)})


def test_every_member_ends_with_every_cosignature(dhts) -> None:
    keys = members(3)
    body = body_for(keys, 1)
    with ThreadPoolExecutor(3) as pool:
        futures = [
            pool.submit(
                cosigned_receipt,
                dht,
                "run",
                body,
                key,
                tokens=64,
                flops=1.0,
                seconds=1.0,
                device="cpu x1",
                timeout_s=30.0,
            )
            for dht, key in zip(dhts, keys, strict=True)
        ]
        receipts = [f.result() for f in futures]
    for receipt in receipts:
        assert receipt.check_cosignatures().ok
        assert set(receipt.cosignatures) == set(body.peer_ids)


def test_a_member_that_never_signs_is_missing_and_junk_is_ignored(dhts) -> None:
    from hivemind.utils.timed_storage import get_dht_time

    keys = members(3)
    body = body_for(keys, 2)
    silent = signer_peer_id(keys[2])
    outsider = members(1)[0]
    # Junk under the round's key: a non-member's valid-looking signature, garbage claiming to be the silent member,
    # and the silent member's signature of another round.
    key = cosign_key("run", body)
    expires = get_dht_time() + 60
    dhts[2].store(key, subkey=cosign(body, outsider).hex(), value=signer_peer_id(outsider), expiration_time=expires)
    dhts[2].store(key, subkey=("00" * 64), value=silent, expiration_time=expires)
    dhts[2].store(key, subkey=cosign(body_for(keys, 3), keys[2]).hex(), value=silent, expiration_time=expires)
    with ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(collect_cosignatures, dht, "run", body, k, timeout_s=3.0)
            for dht, k in zip(dhts[:2], keys[:2], strict=True)
        ]
        gathered = [f.result() for f in futures]
    for signatures in gathered:
        assert set(signatures) == {signer_peer_id(keys[0]), signer_peer_id(keys[1])}
    assert silent not in read_cosignatures(dhts[1], "run", body)


def test_a_non_member_cannot_publish(dhts) -> None:
    keys = members(2)
    with pytest.raises(ValueError, match="not a member"):
        collect_cosignatures(dhts[0], "run", body_for(keys, 4), members(1)[0], timeout_s=1.0)
