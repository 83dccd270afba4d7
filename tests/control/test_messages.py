"""Gossip envelopes and worker bindings: signing, checking, and agreement with py-libp2p on keys and PeerIDs."""

from __future__ import annotations

import itertools
import os

import pytest
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from zoo_node.control.addresses import local_ipv4_addresses, publishable
from zoo_node.control.messages import (
    ControlKey,
    MessageError,
    MonotonicMillis,
    decode_envelope,
    ed25519_public_from_peer_id,
    encode_envelope,
    peer_id_bytes,
    sign_worker_binding,
    verify_worker_binding,
)
from zoo_node.proto import gossip_pb2


def test_control_key_peer_id_and_bytes_agree_with_py_libp2p() -> None:
    seed = os.urandom(32)
    key = ControlKey.from_seed(seed)
    libp2p_id = ID.from_pubkey(create_new_key_pair(seed).public_key)
    assert key.peer_id == libp2p_id.to_base58()
    assert peer_id_bytes(key.peer_id) == libp2p_id.to_bytes()
    public = ed25519_public_from_peer_id(key.peer_id)
    public.verify(key.private.sign(b"x"), b"x")


def test_an_rsa_or_garbage_peer_id_is_refused() -> None:
    with pytest.raises(ValueError, match="not an Ed25519 PeerID"):
        ed25519_public_from_peer_id("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")
    with pytest.raises(ValueError, match="not base58"):
        ed25519_public_from_peer_id("12D3KooW0OIl")


def test_worker_binding_verifies_only_for_its_node_and_run() -> None:
    node = ControlKey.from_seed(os.urandom(32))
    other = ControlKey.from_seed(os.urandom(32))
    signed = sign_worker_binding(node, 5, "12D3KooWdataPeer")
    assert verify_worker_binding(signed, node.peer_id, 5).data_peer_id == "12D3KooWdataPeer"
    with pytest.raises(MessageError) as exc:
        verify_worker_binding(signed, other.peer_id, 5)
    assert exc.value.reason == "wrong_signer"
    with pytest.raises(MessageError) as exc:
        verify_worker_binding(signed, node.peer_id, 6)
    assert exc.value.reason == "wrong_run"
    # The same binding text with another key's signature.
    forged = gossip_pb2.SignedWorkerBinding(
        binding=signed.binding, signature=sign_worker_binding(other, 5, "x").signature
    )
    with pytest.raises(MessageError) as exc:
        verify_worker_binding(forged, node.peer_id, 5)
    assert exc.value.reason == "bad_signature"


def test_envelope_round_trip_and_malformed_input() -> None:
    data = encode_envelope("12D3KooWnode", 3, 1234, heartbeat=gossip_pb2.Heartbeat(operator="0x" + "00" * 20))
    envelope = decode_envelope(data)
    assert (envelope.run_id, envelope.node_peer_id, envelope.sent_at_ms) == (3, "12D3KooWnode", 1234)
    assert envelope.WhichOneof("body") == "heartbeat"
    no_body = gossip_pb2.GossipEnvelope(format=1).SerializeToString()
    future_format = gossip_pb2.GossipEnvelope(format=9, heartbeat=gossip_pb2.Heartbeat()).SerializeToString()
    for bad in (b"\xff\xff\xff", no_body, future_format):
        with pytest.raises(MessageError) as exc:
            decode_envelope(bad)
        assert exc.value.reason == "malformed"
    with pytest.raises(ValueError, match="exactly one"):
        encode_envelope("p", 1, 1)


def test_monotonic_millis_strictly_increase() -> None:
    clock = MonotonicMillis()
    stamps = [clock() for _ in range(1000)]
    assert all(b > a for a, b in itertools.pairwise(stamps))


def test_unspecified_listen_addresses_are_published_as_the_machines_own() -> None:
    listen = [
        "/ip4/0.0.0.0/tcp/31330/p2p/12D3KooWx",
        "/ip4/127.0.0.1/tcp/5/p2p/12D3KooWx",
        "/ip6/::/tcp/1/p2p/12D3KooWx",
    ]
    assert publishable(listen, interface_ips=["203.0.113.7", "10.0.0.2"]) == [
        "/ip4/203.0.113.7/tcp/31330/p2p/12D3KooWx",
        "/ip4/10.0.0.2/tcp/31330/p2p/12D3KooWx",
        "/ip4/127.0.0.1/tcp/5/p2p/12D3KooWx",
    ]
    ips = local_ipv4_addresses()
    assert ips and all(ip != "0.0.0.0" for ip in ips)
    assert all("0.0.0.0" not in addr for addr in publishable(["/ip4/0.0.0.0/tcp/1"]))
