"""The files and strings the chain area reads: clear errors naming the file and the problem."""

from __future__ import annotations

import dataclasses
import json

import pytest

from zoo_node.chain.client import ChainClient
from zoo_node.chain.deployment import Deployment, load_deployment
from zoo_node.chain.errors import ChainError
from zoo_node.chain.merkle import RewardTree
from zoo_node.chain.metadata import decode_metadata_uri, encode_metadata_uri
from zoo_node.chain.operator import format_coins, parse_coins
from zoo_node.chain.proofs import EpochClaims, load_claims

A = "0x" + "11" * 20
B = "0x" + "22" * 20


def _deployment(**changes) -> Deployment:
    base = Deployment(31337, A, B, "0x" + "33" * 20, 5, A, 10**18, 60, "http://127.0.0.1:8545")
    return dataclasses.replace(base, **changes)


def test_deployment_file_roundtrip_and_errors(tmp_path):
    path = _deployment().write(tmp_path / "sub" / "deployment.json")
    assert load_deployment(path) == _deployment()
    with pytest.raises(ChainError, match="deployment file not found"):
        load_deployment(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ChainError, match=r"bad.json: the deployment file is not valid JSON"):
        load_deployment(bad)
    data = _deployment().as_dict()
    for key, value, message in [
        ("version", 9, "unsupported deployment format version 9"),
        ("chain_id", "31337", "chain_id must be a non-negative integer"),
        ("node_registry", "0x1234", "node_registry must be an address"),
    ]:
        bad.write_text(json.dumps({**data, key: value}))
        with pytest.raises(ChainError, match=message):
            load_deployment(bad)


def test_a_deployment_that_does_not_match_the_chain_is_named(devchain):
    with pytest.raises(ChainError, match="serves chain id 31337, the deployment is for chain id 5"):
        ChainClient.connect(devchain.rpc_url, dataclasses.replace(devchain.deployment, chain_id=5))
    with pytest.raises(ChainError, match=f"no RunRegistry contract at {B}"):
        ChainClient.connect(devchain.rpc_url, dataclasses.replace(devchain.deployment, run_registry=B))


def test_claims_file_roundtrip_and_errors(tmp_path):
    tree = RewardTree.build({A: 5, B: 7})
    path = EpochClaims.from_tree(3, 2, tree).write(tmp_path / "claims.json")
    for location in (str(path), path.as_uri()):
        claims = load_claims(location)
        assert (claims.run_id, claims.epoch, claims.root, claims.allocated) == (3, 2, tree.root, 12)
        assert claims.check(B).amount == 7 and claims.check(B).proof == tree.proof(B)
    with pytest.raises(ChainError, match="has no reward in run 3 epoch 2"):
        claims.check("0x" + "44" * 20)
    tampered = json.loads(path.read_text())
    tampered["claims"][next(iter(tampered["claims"]))]["amount"] = "6"
    path.write_text(json.dumps(tampered))
    claims = load_claims(str(path))
    with pytest.raises(ChainError, match=r"proof for .* does not match root"):
        claims.check(next(iter(claims.claims)))
    path.write_text('{"version": 1}')
    with pytest.raises(ChainError, match="malformed claims file"):
        load_claims(str(path))
    with pytest.raises(ChainError, match="unsupported claims file location"):
        load_claims("ftp://example/claims.json")


def test_metadata_uri_errors():
    with pytest.raises(ChainError, match="not a multiaddr"):
        encode_metadata_uri(["127.0.0.1:4001"])
    with pytest.raises(ChainError, match="max 1024"):
        encode_metadata_uri([f"/ip4/10.0.0.{i}/tcp/31330/p2p/12D3KooW{'x' * 44}" for i in range(20)])
    with pytest.raises(ChainError, match="not a data:application/json;base64"):
        decode_metadata_uri("https://example.com/node.json")
    with pytest.raises(ChainError, match="not base64-encoded JSON"):
        decode_metadata_uri("data:application/json;base64,@@@")


@pytest.mark.parametrize(
    ("text", "wei"), [("1", 10**18), ("1.5", 15 * 10**17), ("0.000000000000000001", 1), (" 2 ", 2 * 10**18)]
)
def test_parse_coins(text, wei):
    assert parse_coins(text) == wei
    assert parse_coins(format_coins(wei)) == wei


@pytest.mark.parametrize("text", ["abc", "-1", "0.0000000000000000001", "nan", "inf", ""])
def test_parse_coins_refuses(text):
    with pytest.raises(ChainError, match="--stake"):
        parse_coins(text, "--stake")
