"""Start a real libp2p host with a node's key and print the PeerID it runs under (one JSON line).

`python -m tests.foundation.peer_id_probe p2pd HOME`: hivemind's p2pd with the data-plane key.
`python -m tests.foundation.peer_id_probe libp2p HOME`: a py-libp2p host with the control-plane key.
Two modes in separate processes: hivemind and py-libp2p cannot share one interpreter (DESIGN.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def p2pd_peer_id(home: Path) -> dict:
    import asyncio

    from hivemind.p2p import P2P

    from zoo_node.identity import KeyPaths

    async def run() -> dict:
        p2p = await P2P.create(
            identity_path=str(KeyPaths.of(home).data_key),
            host_maddrs=["/ip4/127.0.0.1/tcp/0"],
            check_if_identity_free=False,  # hivemind's check assumes RSA identities
        )
        try:
            maddrs = [str(m) for m in await p2p.get_visible_maddrs()]
            return {"peer_id": p2p.peer_id.to_base58(), "maddrs": maddrs}
        finally:
            await p2p.shutdown()

    return asyncio.run(run())


def libp2p_peer_id(home: Path) -> dict:
    import multiaddr
    import trio
    from libp2p import new_host
    from libp2p.crypto.ed25519 import create_new_key_pair

    from zoo_node.identity import load_control_seed

    async def run() -> dict:
        host = new_host(key_pair=create_new_key_pair(load_control_seed(home)))
        async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            return {"peer_id": host.get_id().to_base58(), "maddrs": [str(a) for a in host.get_addrs()]}

    return trio.run(run)


if __name__ == "__main__":
    mode, home = sys.argv[1], Path(sys.argv[2])
    result = p2pd_peer_id(home) if mode == "p2pd" else libp2p_peer_id(home)
    print(json.dumps(result), flush=True)
