"""The multiaddrs a node publishes (on chain and in heartbeats) for others to dial.

A host listening on `/ip4/0.0.0.0/...` reports exactly that, which nobody can dial: such an address is expanded to
the machine's own IPv4 addresses (loopback and link-local left out unless there is nothing else). Behind NAT or a
proxy the operator sets `swarm.announce_multiaddrs` instead.
"""

from __future__ import annotations

import ipaddress
import socket

import psutil

MAX_PUBLISHED = 6  # the NodeRegistry's metadata URI holds 1 KiB


def local_ipv4_addresses() -> list[str]:
    """This machine's IPv4 addresses, routable ones first."""
    found: list[ipaddress.IPv4Address] = []
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET:
                found.append(ipaddress.IPv4Address(address.address))
    useful = [a for a in found if not (a.is_loopback or a.is_link_local or a.is_unspecified)]
    ordered = sorted(set(useful), key=lambda a: (a.is_private, int(a))) or sorted(set(found), key=int)
    return [str(a) for a in ordered]


def publishable(listen: list[str], interface_ips: list[str] | None = None) -> list[str]:
    """`listen` with every `/ip4/0.0.0.0/` address replaced by one per interface address; at most MAX_PUBLISHED."""
    out: list[str] = []
    for addr in listen:
        if addr.startswith("/ip4/0.0.0.0/"):
            rest = addr[len("/ip4/0.0.0.0/") :]
            ips = local_ipv4_addresses() if interface_ips is None else interface_ips
            out.extend(f"/ip4/{ip}/{rest}" for ip in ips)
        elif not addr.startswith("/ip6/::/"):
            out.append(addr)
    unique = list(dict.fromkeys(out))
    return unique[:MAX_PUBLISHED]
