"""The deployment file: where the contracts are on which chain (written by `chain deploy` and the dev chain)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eth_utils import is_address, to_checksum_address

from zoo_node.chain.errors import ChainError

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Deployment:
    """Addresses of the three contracts, the chain id and the block they were deployed in."""

    chain_id: int
    node_registry: str
    run_registry: str
    rewards_distributor: str
    block: int
    deployer: str
    min_stake_wei: int
    unbonding_period_s: int
    rpc_url: str | None = None  # where it was deployed from; informative, a node's config says which RPC to use

    def as_dict(self) -> dict[str, Any]:
        return {"version": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Any, source: str = "deployment") -> Deployment:
        if not isinstance(data, dict):
            raise ChainError(f"{source}: not a JSON object")
        if data.get("version") != FORMAT_VERSION:
            raise ChainError(f"{source}: unsupported deployment format version {data.get('version')!r}")
        fields: dict[str, Any] = {}
        for key in ("chain_id", "block", "min_stake_wei", "unbonding_period_s"):
            value = data.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ChainError(f"{source}: {key} must be a non-negative integer, got {value!r}")
            fields[key] = value
        for key in ("node_registry", "run_registry", "rewards_distributor", "deployer"):
            value = data.get(key)
            if not isinstance(value, str) or not is_address(value):
                raise ChainError(f"{source}: {key} must be an address, got {value!r}")
            fields[key] = to_checksum_address(value)
        rpc = data.get("rpc_url")
        if rpc is not None and not isinstance(rpc, str):
            raise ChainError(f"{source}: rpc_url must be a string")
        return cls(rpc_url=rpc, **fields)

    def write(self, path: Path) -> Path:
        """Write atomically (a reader never sees half a file)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self.as_dict(), indent=2) + "\n")
            os.replace(tmp, path)
        except OSError as exc:
            raise ChainError(f"{path}: cannot write the deployment file: {exc.strerror}") from None
        return path


def load_deployment(path: Path) -> Deployment:
    """Read a deployment file; `ChainError` naming the file and the problem."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ChainError(f"{path}: deployment file not found (run `zoo-node chain deploy` or `chain devnet`)") from None
    except OSError as exc:
        raise ChainError(f"{path}: cannot read the deployment file: {exc.strerror}") from None
    except ValueError:
        raise ChainError(f"{path}: the deployment file is not valid JSON") from None
    return Deployment.from_dict(data, str(path))
