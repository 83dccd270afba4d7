"""An account's figures per epoch, read back from the epoch reports the coordinator publishes.

Each posted root's `proofsURI` names a claims file (`zoo_node.chain.proofs` format) that also carries the epoch's
report under `report` (see `zoo_node.coordinator.settlement.write_claims_file`). `account_epochs` walks a run's
`RootPosted` events and returns, per epoch: verified FLOPs, GPU-hours (CPU-hours for CPU nodes), MFU, the amount
earned that epoch, the cumulative amount, and whether it is claimed. `zoo-node rewards show --json` lists them.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from eth_utils import to_checksum_address

from zoo_node.errors import ZooError

if TYPE_CHECKING:
    from zoo_node.chain.client import ChainClient


class ReportError(ZooError):
    """An epoch report cannot be read or is not in our format."""


def read_report(location: str, *, timeout_s: float = 10.0) -> dict[str, Any] | None:
    """The epoch report inside the claims file at `location` (path, file:// or http(s)://); None if it has none."""
    parsed = urlparse(location)
    try:
        if parsed.scheme in ("http", "https"):
            with urllib.request.urlopen(location, timeout=timeout_s) as response:
                text = response.read().decode()
        elif parsed.scheme in ("", "file"):
            text = Path(unquote(parsed.path) if parsed.scheme else location).read_text()
        else:
            raise ReportError(f"{location}: unsupported location (use a path, file:// or http(s)://)")
        data = json.loads(text)
    except OSError as exc:
        raise ReportError(f"{location}: cannot read the epoch report: {exc}") from None
    except ValueError:
        raise ReportError(f"{location}: the claims file is not valid JSON") from None
    report = data.get("report") if isinstance(data, dict) else None
    if report is not None and not (isinstance(report, dict) and report.get("version") == 1):
        raise ReportError(f"{location}: the epoch report is not version 1")
    return report


def account_figures(report: dict[str, Any], account: str, claimed_total: int) -> dict[str, Any]:
    """One epoch's figures for `account` from a report (zeros when it earned nothing that epoch)."""
    owners = {to_checksum_address(k): v for k, v in report.get("owners", {}).items()}
    entry = owners.get(to_checksum_address(account), {})
    cumulative = int(entry.get("cumulative_wei", 0))
    return {
        "epoch": int(report["epoch"]),
        "verified_flops": entry.get("verified_flops", "0"),
        "gpu_hours": entry.get("gpu_hours", 0.0),
        "cpu_hours": entry.get("cpu_hours", 0.0),
        "mfu": entry.get("mfu"),
        "amount_wei": entry.get("amount_wei", "0"),
        "cumulative_wei": str(cumulative),
        "claimed": cumulative > 0 and cumulative <= claimed_total,
        "nodes": entry.get("nodes", []),
    }


def account_epochs(client: ChainClient, run_id: int, account: str) -> list[dict[str, Any]]:
    """`account`'s figures for every epoch of `run_id` whose root was posted, oldest first.

    An epoch whose report cannot be read is listed with a `problem` instead of figures.
    """
    claimed_total = client.rewards.claimed(run_id, account)
    events = client.rewards.events("RootPosted", client.deployment.block, argument_filters={"runId": run_id})
    out = []
    for event in sorted(events, key=lambda e: e["epoch"]):
        uri = event["proofsURI"]
        try:
            report = read_report(uri) if uri else None
        except ReportError as exc:
            out.append({"epoch": event["epoch"], "problem": str(exc)})
            continue
        if report is None:
            out.append({"epoch": event["epoch"], "problem": f"no epoch report at {uri or '(no URI)'}"})
            continue
        out.append(account_figures(report, account, claimed_total))
    return out


def account_rewards(
    client: ChainClient, account: str, *, run_ids: list[int] | None = None, claims_location: str | None = None
) -> list[dict[str, Any]]:
    """`account`'s rewards per run (cumulative, claimed, claimable) with each run's per-epoch figures: what
    `zoo-node rewards show --json` prints and a node's `Status` carries."""
    from zoo_node.chain.operator import reward_status

    rewards = reward_status(client, account, run_ids=run_ids, claims_location=claims_location)
    return [{**r.as_dict(), "epochs": account_epochs(client, r.run_id, account)} for r in rewards]
