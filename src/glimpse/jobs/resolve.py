"""Resolving a web-download host name, and checking every address it resolves to.

The rules are in :mod:`glimpse.domain.url_rules`; this module adds the lookup (the operating system's
resolver by default, any :data:`Resolver` in tests) and the errors of a name that does not resolve.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence

from glimpse.domain.url_rules import ImportFilter, IPAddress, check_addresses, check_host
from glimpse.errors import DownloadFailed

__all__ = ["DownloadFailed", "Resolver", "resolve_and_check", "system_resolver"]

#: Turns ``(host, port)`` into the host's addresses as text; the default is :func:`system_resolver`.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's resolver (``getaddrinfo``) run by the event loop."""
    loop = asyncio.get_running_loop()
    answers = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(answer[4][0]) for answer in answers]


async def resolve_and_check(
    host: str,
    port: int,
    flt: ImportFilter,
    resolver: Resolver = system_resolver,
    *,
    uri: str | None = None,
) -> list[str]:
    """Resolve ``host`` and return its addresses, refusing it when any address is forbidden.

    Checking every answer (not only the one a client would pick) is the defence against a name
    with one public and one private address; the caller must then connect only to the returned
    addresses. IP literals are checked without a lookup. Forbidden addresses raise
    ``InvalidInput`` (with Glance's filtering message when ``uri`` is given); a name that does not
    resolve raises :class:`DownloadFailed`.
    """
    shown = uri if uri is not None else host
    name, literal = check_host(host, uri=shown)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        addresses = await _lookup(name, port, resolver)
    check_addresses(name, addresses, flt, literal=literal is not None, uri=shown)
    return [str(address) for address in addresses]


async def _lookup(name: str, port: int, resolver: Resolver) -> list[IPAddress]:
    try:
        answers = await resolver(name, port)
    except OSError as exc:
        raise DownloadFailed(
            f"The host name {name} could not be resolved ({exc.strerror or exc}); "
            "check the URL and import again."
        ) from exc
    addresses: list[IPAddress] = []
    for answer in answers:
        try:
            address = ipaddress.ip_address(answer.partition("%")[0])
        except ValueError:
            raise DownloadFailed(f"Resolving {name} gave {answer!r}, which is not an IP address.") from None
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise DownloadFailed(f"The host name {name} has no addresses; check the URL and import again.")
    return addresses
