"""What the coordinator takes from the run's gossip: a heartbeat's figures and a receipt's row in the store.

Both run on messages that already passed the control plane's `GossipGuard` (registered origin, good signatures,
right run, fresh). Nothing here raises on a strange receipt: a receipt that does not parse is still stored (by the
sha256 of its bytes) so that settlement can refuse it as `malformed` in its report, instead of it silently vanishing.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from zoo_node.receipts import Receipt, ReceiptError

if TYPE_CHECKING:
    from zoo_node.proto import gossip_pb2, worker_pb2

# Heartbeat fields (by name) that may carry the worker's figures. The gossip schema is the control plane's; these
# are read when the schema has them, so the coordinator follows the schema without a release in lockstep.
_LOSS_KEYS = ("loss", "train_loss")
_MFU_KEYS = ("mfu",)


def _finite(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def reported_figures(heartbeat: gossip_pb2.Heartbeat) -> tuple[float | None, float | None]:
    """(loss, MFU) a heartbeat reports, None for each it does not.

    Looks at a `metrics` map (string -> double), a `progress` message (`zoo.node.v1.Progress`, whose `mfu` is
    meaningful only when non-zero) and plain `loss` / `mfu` fields, whichever the schema has.
    """
    fields = heartbeat.DESCRIPTOR.fields_by_name
    loss = mfu = None
    if "metrics" in fields:
        metrics = heartbeat.metrics
        loss = next((v for k in _LOSS_KEYS if (v := _finite(metrics.get(k))) is not None), None)
        mfu = next((v for k in _MFU_KEYS if (v := _finite(metrics.get(k))) is not None), None)
    if "progress" in fields and heartbeat.HasField("progress"):
        progress = heartbeat.progress
        if mfu is None and progress.mfu > 0:
            mfu = _finite(progress.mfu)
        if loss is None and "loss" in progress.DESCRIPTOR.fields_by_name and progress.loss > 0:
            loss = _finite(progress.loss)
    if loss is None and "loss" in fields:
        loss = _finite(heartbeat.loss) if heartbeat.loss > 0 else None
    if mfu is None and "mfu" in fields:
        mfu = _finite(heartbeat.mfu) if heartbeat.mfu > 0 else None
    return loss, mfu


@dataclass(frozen=True)
class HeardReceipt:
    """A receipt as heard, ready for the store."""

    digest: bytes
    shard: str
    round: int
    tokens: int
    flops: float
    seconds: float
    device: str
    blob: bytes
    parsed: bool


def heard_receipt(message: worker_pb2.Receipt) -> HeardReceipt:
    """The store's view of an announced receipt; the round digest if it parses, else the hash of its bytes."""
    blob = message.SerializeToString(deterministic=True)
    try:
        digest = Receipt.from_proto(message).digest
        parsed = True
    except (ReceiptError, ValueError, TypeError):
        digest = hashlib.sha256(b"unparsed\n" + blob).digest()
        parsed = False
    return HeardReceipt(
        digest=digest,
        shard=message.shard[:256],
        round=min(int(message.round), 2**63 - 1),
        tokens=min(int(message.tokens), 2**63 - 1),
        flops=_finite(message.flops) or 0.0,
        seconds=_finite(message.seconds) or 0.0,
        device=message.device[:256],
        blob=blob,
        parsed=parsed,
    )
