"""Which CRM instances an admin may set through the portal: none on this server's own networks. Any sipgate admin
can make an account by signing in, and the server then sends requests (with CRM tokens) to the instance, so a
URL whose host is, or resolves to, a loopback, private, link-local, unspecified or otherwise non-global address
is refused (an SSRF into the server's networks, a cloud metadata service). The setting ``crm_allow_private_hosts``
lifts this for installations whose CRM is on an internal network; the CLI, an operator on the server, is never
restricted. Names are resolved with the event loop's resolver (never blocking); a name that resolves to nothing
now reaches nothing and is let through (the CRM's requests will fail and say so)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from hejcti import logs

log = logs.get("hejcti.portal")
RESOLVE_TIMEOUT_S = 5.0


def _internal(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) is link-local anyway
    except ValueError:
        return True  # not an address we can judge: refused
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


async def refused_instance(url: str) -> str | None:
    """The message key saying why ``url`` (a CRM instance as ``set_crm`` stored it) may not be set from the
    portal, or None when it may."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return "account.crm_invalid"
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        literal = True
    except ValueError:
        literal = False
    if literal:
        return "account.crm_host_internal" if _internal(host) else None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "account.crm_invalid"
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, UnicodeError):
        log.info("portal.crm_host_unresolved")
        return None
    if any(_internal(str(info[4][0])) for info in found):
        return "account.crm_host_internal"
    return None
