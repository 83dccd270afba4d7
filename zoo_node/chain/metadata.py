"""A node's metadata URI: a self-contained `data:` URI holding its multiaddrs (no server to fetch it from).

Format: `data:application/json;base64,<base64 of {"multiaddrs": ["/ip4/.../tcp/..."]}>`.
"""

from __future__ import annotations

import base64
import binascii
import json

from zoo_node.chain.errors import ChainError

PREFIX = "data:application/json;base64,"
MAX_URI_BYTES = 1024  # the NodeRegistry's limit


def encode_metadata_uri(multiaddrs: list[str]) -> str:
    """The URI for these multiaddrs; `ChainError` if one is not a multiaddr or the URI exceeds the contract's limit."""
    for addr in multiaddrs:
        if not isinstance(addr, str) or not addr.startswith("/") or " " in addr:
            raise ChainError(f"not a multiaddr: {addr!r}")
    body = json.dumps({"multiaddrs": list(multiaddrs)}, separators=(",", ":")).encode()
    uri = PREFIX + base64.b64encode(body).decode()
    if len(uri) > MAX_URI_BYTES:
        raise ChainError(f"{len(multiaddrs)} multiaddrs make a metadata URI of {len(uri)} bytes (max {MAX_URI_BYTES})")
    return uri


def decode_metadata_uri(uri: str) -> list[str]:
    """The multiaddrs in a metadata URI; an empty URI has none. `ChainError` if it is not in our format."""
    if not uri:
        return []
    if not uri.startswith(PREFIX):
        raise ChainError(f"metadata URI is not a {PREFIX}... URI: {uri[:60]!r}")
    try:
        data = json.loads(base64.b64decode(uri[len(PREFIX) :], validate=True))
    except (binascii.Error, ValueError):
        raise ChainError("metadata URI: the payload is not base64-encoded JSON") from None
    addrs = data.get("multiaddrs") if isinstance(data, dict) else None
    if not isinstance(addrs, list) or not all(isinstance(a, str) for a in addrs):
        raise ChainError('metadata URI: expected {"multiaddrs": [strings]}')
    return addrs
