"""What servers announce in the run's hivemind DHT: one record per (shard, server), with an expiry.

Key `<run>/servers/<shard>`, subkey the server's PeerID (base58), value a `ServerRecord` as a dict. A server
re-announces every `announce_period_s` with expiry `record_ttl_s` ahead, so a dead server fades on its own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from hivemind.utils.timed_storage import ValueWithExpiration, get_dht_time


@dataclass(frozen=True)
class ServerRecord:
    """One server of one shard, as announced."""

    peer: str
    shard: str
    tokens_per_s: float = 0.0  # moving average of compute throughput
    queued_tokens: int = 0  # work accepted and not yet done
    state: str = "serving"  # "joining" while it loads state; only "serving" replicas take calls
    round: int = 0  # averaging rounds this replica has applied
    maddrs: list[str] = field(default_factory=list)
    expires: float = 0.0  # DHT time

    def as_value(self) -> dict[str, Any]:
        value = asdict(self)
        value.pop("expires")
        return value


def servers_key(run: str, shard: str) -> str:
    return f"{run}/servers/{shard}"


def progress_key(run: str, shard: str) -> str:
    return f"{run}/progress/{shard}"


def announce(dht: Any, run: str, record: ServerRecord, ttl_s: float) -> None:
    """Store (without waiting) this server's record for its shard."""
    dht.store(
        servers_key(run, record.shard),
        subkey=record.peer,
        value=record.as_value(),
        expiration_time=get_dht_time() + ttl_s,
        return_future=True,
    )


def withdraw(dht: Any, run: str, peer: str, shard: str) -> None:
    """Replace this server's record by a short-lived `leaving` one (drain)."""
    record = ServerRecord(peer=peer, shard=shard, state="leaving")
    dht.store(servers_key(run, shard), subkey=peer, value=record.as_value(), expiration_time=get_dht_time() + 1.0)


def read_servers(dht: Any, run: str, shard: str) -> list[ServerRecord]:
    """The live records of one shard (malformed entries are skipped)."""
    found = dht.get(servers_key(run, shard), latest=True)
    if found is None or not isinstance(found.value, dict):
        return []
    records = []
    for peer, item in found.value.items():
        if not isinstance(item, ValueWithExpiration) or not isinstance(item.value, dict):
            continue
        try:
            fields = {k: item.value[k] for k in ServerRecord.__dataclass_fields__ if k in item.value}
            record = ServerRecord(**{**fields, "expires": float(item.expiration_time)})
        except TypeError:
            continue
        if record.peer == peer and record.expires > get_dht_time():
            records.append(record)
    return records
