"""The RPC disappearing mid-operation: bounded retries, a clear error, no crash, no transaction sent twice."""

from __future__ import annotations

import concurrent.futures
import time

import pytest

from tests.chain.rpc_proxy import RpcProxy
from zoo_node.chain.client import ChainClient
from zoo_node.chain.errors import ContractRevert, RpcUnavailable
from zoo_node.chain.node_registry import Hardware
from zoo_node.chain.rpc import RetryPolicy

FAST = RetryPolicy(max_retries=3, backoff_s=0.01, backoff_max_s=0.05)
COIN = 10**18


@pytest.fixture
def proxy(devchain):
    p = RpcProxy(devchain.rpc_url)
    yield p
    p.close()


def _via(proxy: RpcProxy, devchain, account) -> ChainClient:
    return ChainClient.connect(proxy.url, devchain.deployment, account, policy=FAST, check=False)


def test_unreachable_rpc_gives_a_clear_error_after_bounded_retries(devchain, proxy):
    client = _via(proxy, devchain, devchain.accounts[1])
    assert client.nodes.min_stake() == COIN
    proxy.cut()
    with pytest.raises(RpcUnavailable) as err:
        client.nodes.min_stake()
    assert proxy.url in str(err.value) and "after 4 attempts" in str(err.value)


def test_lost_answer_to_a_send_is_not_sent_twice(devchain, proxy):
    sender, recipient = devchain.accounts[1], devchain.accounts[9].address
    client = _via(proxy, devchain, sender)
    direct = devchain.client()
    nonce, balance = direct.w3.eth.get_transaction_count(sender.address), direct.balance(recipient)
    proxy.lose_answer("eth_sendRawTransaction")  # anvil gets and mines it; the client hears a dropped connection
    receipt = client.transfer(recipient, COIN)
    assert receipt["status"] == 1
    assert proxy.count("eth_sendRawTransaction") == 2  # the retry resent the same signed bytes ...
    assert direct.w3.eth.get_transaction_count(sender.address) == nonce + 1  # ... which anvil did not take twice
    assert direct.balance(recipient) == balance + COIN
    client.transfer(recipient, COIN)  # the nonce bookkeeping is still right
    assert direct.w3.eth.get_transaction_count(sender.address) == nonce + 2


def test_send_that_never_arrives_fails_clearly_and_the_next_one_works(devchain, proxy):
    sender, recipient = devchain.accounts[1], devchain.accounts[9].address
    client = _via(proxy, devchain, sender)
    direct = devchain.client()
    nonce = direct.w3.eth.get_transaction_count(sender.address)
    proxy.swallow("eth_sendRawTransaction")
    with pytest.raises(RpcUnavailable, match="may or may not have been received") as err:
        client.transfer(recipient, COIN)
    assert "after 4 attempts" in str(err.value)
    assert proxy.count("eth_sendRawTransaction") == 4
    assert direct.w3.eth.get_transaction_count(sender.address, "pending") == nonce  # nothing was sent
    proxy.allow("eth_sendRawTransaction")
    client.transfer(recipient, COIN)
    assert direct.w3.eth.get_transaction_count(sender.address) == nonce + 1


def test_anvil_killed_while_waiting_for_a_receipt(fresh_devchain):
    chain = fresh_devchain(accounts=3)
    chain.set_automine(False)  # the transaction waits in the pool: we kill anvil while the client polls for it
    proxy = RpcProxy(chain.rpc_url)  # only to see when the client has started polling
    try:
        client = ChainClient.connect(proxy.url, chain.deployment, chain.accounts[1], policy=FAST, check=False)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            future = pool.submit(client.transfer, chain.accounts[2].address, COIN)
            deadline = time.monotonic() + 10
            while proxy.count("eth_getTransactionReceipt") == 0:
                assert time.monotonic() < deadline and not future.done(), "the client never polled for the receipt"
                time.sleep(0.01)
            chain.process.kill()
            chain.process.wait(10)
            with pytest.raises(RpcUnavailable, match="receipt: the RPC is unreachable after 4 attempts"):
                future.result(timeout=30)
    finally:
        proxy.close()


def test_concurrent_sends_get_consecutive_nonces(devchain):
    sender = devchain.client(devchain.accounts[1])
    start = sender.w3.eth.get_transaction_count(sender.account.address)
    recipients = [a.address for a in devchain.accounts[10:18]]
    before = {r: sender.balance(r) for r in recipients}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        receipts = list(pool.map(lambda r: sender.transfer(r, COIN), recipients * 2))
    nonces = sorted(sender.w3.eth.get_transaction(r["transactionHash"])["nonce"] for r in receipts)
    assert nonces == list(range(start, start + 16))
    assert all(sender.balance(r) == before[r] + 2 * COIN for r in recipients)


def test_a_revert_found_only_at_mining_carries_its_reason(devchain):
    """Two registrations of one node race; both pass estimation, the second reverts in the block."""
    owner, operator = devchain.accounts[1], devchain.accounts[2]
    client = devchain.client(owner)
    register = lambda peer: client.nodes.register(  # noqa: E731
        operator=operator.address, peer_id=peer, hardware=Hardware("cpu", 0, 0), metadata_uri="", stake=COIN
    )
    devchain.set_automine(False)
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(register, "12D3KooWRace"), pool.submit(register, "12D3KooWRace")]
            _wait_for_pending_count(devchain, owner.address, 2)
            devchain.mine()
            outcomes = [_outcome(f) for f in futures]
    finally:
        devchain.set_automine(True)
    assert sorted(o if isinstance(o, str) else "ok" for o in outcomes) == ["AlreadyRegistered", "ok"]


def _outcome(future):
    try:
        return future.result(timeout=30)
    except ContractRevert as exc:
        return exc.error


def _wait_for_pending_count(chain, address: str, count: int, timeout_s: float = 10.0) -> None:
    base = chain.rpc.w3.eth.get_transaction_count(address, "latest")
    deadline = time.monotonic() + timeout_s
    while chain.rpc.w3.eth.get_transaction_count(address, "pending") < base + count:
        assert time.monotonic() < deadline, "the transactions never reached anvil's pool"
        time.sleep(0.01)
