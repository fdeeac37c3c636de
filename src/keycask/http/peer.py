"""Who is on the other end of a connection, as policies see it.

``client_address`` is ``aws:SourceIp``; ``trusted`` says whether that peer
is one of the load balancers allowed to name the real client in a PROXY
header (``http/proxy.py``).
"""

from __future__ import annotations

import ipaddress

__all__ = ["Network", "client_address", "trusted"]


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted(client: str | None, networks: tuple[Network, ...]) -> bool:
    if client is None:
        return False
    try:
        address = ipaddress.ip_address(client.partition("%")[0])
    except ValueError:
        return False
    return any(address in network for network in networks)


def client_address(peer: object) -> str | None:
    """The client's address as policies see it (``aws:SourceIp``).

    A dual-stack socket reports IPv4 clients as IPv4-mapped IPv6
    (``::ffff:127.0.0.1``), which no IPv4 ``IpAddress`` condition matches: a
    Deny on an IPv4 range would not apply. Such addresses are given in their
    IPv4 form, once per connection.
    """
    if not isinstance(peer, tuple) or not peer:
        return None
    host = str(peer[0])
    if host[:7].lower() == "::ffff:" and "." in host:
        try:
            mapped = ipaddress.IPv6Address(host).ipv4_mapped
        except ValueError:
            return host
        if mapped is not None:
            return str(mapped)
    return host
