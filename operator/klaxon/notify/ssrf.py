"""Refuse channel destinations on link-local and cloud metadata addresses (SSRF guard).

A channel URL is user input, and an in-cluster pod can reach the node's metadata service,
which hands out credentials. Every resolved address is checked, at connect time too
(``GuardedResolver``), so DNS rebinding between check and connect does not help. Loopback and
private ranges stay allowed; an AlertConfig may allow everything (``allowPrivateChannelAddresses``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})
METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),
        ipaddress.ip_address("fd00:ec2::254"),
        ipaddress.ip_address("100.100.100.200"),
    }
)
LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))


class BlockedAddress(Exception):
    """The destination is link-local or a metadata service and the AlertConfig does not allow it."""


def address_problem(addr: str) -> str | None:
    """Why an IP address is refused, or None."""
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    if any(ip in net for net in LINK_LOCAL):
        return f"{ip} is link-local"
    return None


def host_problem(host: str) -> str | None:
    name = host.strip("[]").rstrip(".").lower()
    if name in METADATA_HOSTS:
        return f"{name} is a cloud metadata host"
    try:
        return address_problem(name)
    except ValueError:
        return None


async def check_host(host: str, port: int = 0) -> list[str]:
    """Resolve ``host`` and raise ``BlockedAddress`` if it or any of its addresses is refused.

    Returns the vetted addresses (empty when the name does not resolve: the connection attempt
    reports that). Connect to one of them, not to the name again: a second lookup could answer
    differently (DNS rebinding).
    """
    problem = host_problem(host)
    addresses: list[str] = []
    if problem is None:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            return []
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        problem = next((p for a in addresses if (p := address_problem(a))), None)
    if problem is not None:
        raise BlockedAddress(
            f"destination refused: {problem} (set allowPrivateChannelAddresses on the "
            "AlertConfig to allow it)"
        )
    return addresses


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that drops refused addresses at connect time."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: Any = socket.AF_INET) -> list[ResolveResult]:
        problem = host_problem(host)
        if problem is not None:
            raise BlockedAddress(f"destination refused: {problem}")
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if address_problem(r["host"]) is None]
        if not allowed:
            raise BlockedAddress(f"destination refused: every address of {host} is link-local or metadata")
        return allowed

    async def close(self) -> None:
        await self._inner.close()
