"""Where a webhook may go: one address policy, for submission and for delivery.

A webhook URL is the client's choice, so the pipeline refuses to send anything to an address that is
not on the public internet: loopback, private (RFC 1918, IPv6 unique local), shared (carrier-grade NAT,
100.64.0.0/10), link-local and cloud metadata (169.254.169.254, fd00:ec2::254), unspecified,
multicast, documentation, benchmarking and reserved ranges, and the IPv6 forms that carry an IPv4
address inside (IPv4-mapped, NAT64, 6to4: the IPv4 address inside is what counts; IPv4-compatible,
local-use NAT64 and Teredo: refused outright). The tables are written out here rather than taken from
``ipaddress``'s ``is_global``, whose answers have changed between Python versions.

- At submission (:func:`host_refusal`), without DNS: a host that is an address by itself (an IPv6
  literal, a dotted quad, or any form ``inet_aton`` reads, such as ``2130706433``, ``0x7f.1`` or
  ``017700000001``), or a name that never reaches the public internet (``localhost``, ``*.internal``
  such as ``metadata.google.internal``, ``instance-data``, single-label names, reserved domains).
- At delivery (:func:`refusal`), the dispatcher resolves the host on every attempt and checks each
  address it gets.

The local runtime's receivers listen on 127.0.0.1, so ``allow_loopback`` lets loopback through, and
nothing else.
"""

from __future__ import annotations

import ipaddress
import re

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_LOOPBACK = "a loopback address"
_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# First match wins: the more specific blocks come first.
_IPV4: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("169.254.169.254/32"), "a cloud metadata address"),
    (_V4("169.254.169.253/32"), "a cloud metadata address"),  # the VPC DNS resolver
    (_V4("169.254.169.123/32"), "a cloud metadata address"),  # the time sync service
    (_V4("169.254.170.2/32"), "a cloud metadata address"),  # ECS task metadata and credentials
    (_V4("0.0.0.0/8"), "an unspecified address"),
    (_V4("10.0.0.0/8"), "a private address"),
    (_V4("100.64.0.0/10"), "a shared (carrier-grade NAT) address"),
    (_V4("127.0.0.0/8"), _LOOPBACK),
    (_V4("169.254.0.0/16"), "a link-local address"),
    (_V4("172.16.0.0/12"), "a private address"),
    (_V4("192.0.0.0/24"), "a reserved (IETF protocol) address"),
    (_V4("192.0.2.0/24"), "a documentation address"),
    (_V4("192.88.99.0/24"), "a reserved (6to4 relay) address"),
    (_V4("192.168.0.0/16"), "a private address"),
    (_V4("198.18.0.0/15"), "a benchmarking address"),
    (_V4("198.51.100.0/24"), "a documentation address"),
    (_V4("203.0.113.0/24"), "a documentation address"),
    (_V4("224.0.0.0/4"), "a multicast address"),
    (_V4("240.0.0.0/4"), "a reserved address"),
)
_MAPPED = _V6("::ffff:0:0/96")
_NAT64 = _V6("64:ff9b::/96")
_SIX_TO_FOUR = _V6("2002::/16")
_GLOBAL_UNICAST = _V6("2000::/3")
_IPV6: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("fd00:ec2::254/128"), "a cloud metadata address"),
    (_V6("fd00:ec2::253/128"), "a cloud metadata address"),  # the VPC DNS resolver
    (_V6("fd00:ec2::123/128"), "a cloud metadata address"),  # the time sync service
    (_V6("fd00:ec2::23/128"), "a cloud metadata address"),  # ECS task metadata
    (_V6("::/128"), "an unspecified address"),
    (_V6("::1/128"), _LOOPBACK),
    (_V6("::/96"), "an IPv4-compatible address (deprecated)"),
    (_V6("::ffff:0:0:0/96"), "a reserved (IPv4-translated) address"),
    (_V6("64:ff9b:1::/48"), "a local-use NAT64 address"),
    (_V6("100::/64"), "a discard-only address"),
    (_V6("2001::/32"), "a Teredo address"),
    (_V6("2001:db8::/32"), "a documentation address"),
    (_V6("2001::/23"), "a reserved (IETF protocol) address"),
    (_V6("3fff::/20"), "a documentation address"),
    (_V6("5f00::/16"), "a reserved (segment routing) address"),
    (_V6("fc00::/7"), "a private (unique local) address"),
    (_V6("fe80::/10"), "a link-local address"),
    (_V6("fec0::/10"), "a reserved (site-local) address"),
    (_V6("ff00::/8"), "a multicast address"),
)


def refusal(address: Address, *, allow_loopback: bool = False) -> str | None:
    """Why nothing may be sent to ``address`` (``"a private address"``), or None when it is public."""
    if isinstance(address, ipaddress.IPv4Address):
        reason = next((why for network, why in _IPV4 if address in network), None)
        return None if reason == _LOOPBACK and allow_loopback else reason
    if address.scope_id:
        return "a scoped (zone) address"
    if address in _MAPPED:  # reaches the IPv4 address itself, loopback included
        inner = address.ipv4_mapped
        assert inner is not None
        return _inside("an IPv4-mapped", inner, allow_loopback=allow_loopback)
    if address in _NAT64:  # a NAT64 gateway reaches the IPv4 address in the last 32 bits
        return _inside("a NAT64", ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF), allow_loopback=False)
    if address in _SIX_TO_FOUR:
        inner = address.sixtofour
        assert inner is not None
        return _inside("a 6to4", inner, allow_loopback=False)
    reason = next((why for network, why in _IPV6 if address in network), None)
    if reason is None and address not in _GLOBAL_UNICAST:
        reason = "a reserved address"
    return None if reason == _LOOPBACK and allow_loopback else reason


def _inside(form: str, inner: ipaddress.IPv4Address, *, allow_loopback: bool) -> str | None:
    reason = refusal(inner, allow_loopback=allow_loopback)
    return f"{reason} ({inner}) inside {form} address" if reason else None


# --- hosts as a URL writes them (no DNS) ----------------------------------------------------------

# Names that never reach the public internet, whatever DNS says (RFC 6761, 6762, 8375, 9476; ICANN's
# .internal), and the cloud metadata service's names.
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_PRIVATE_NAMES = frozenset({"instance-data", "metadata", "metadata.google.internal", "broadcasthost"})
_PRIVATE_SUFFIXES = (".internal", ".local", ".localdomain", ".home.arpa", ".invalid", ".test", ".example",
                     ".onion", ".alt")
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")


class MalformedHostError(ValueError):
    """The host is neither an address nor a name (``[zz::1]``, ``999.1.1.1``, ``a..b``)."""


def literal_address(host: str) -> Address | None:
    """The address ``host`` (as ``urlsplit(url).hostname`` gives it) is by itself, or None for a name.

    IPv6 literals; IPv4 in every form ``inet_aton`` (and so ``getaddrinfo``) reads: 1 to 4 parts, each
    decimal, octal (``0`` first) or hex (``0x`` first), the last filling the remaining bytes
    (``127.1``, ``2130706433``, ``0x7f.1``, ``017700000001``). MalformedHostError when a host looks
    like an address but is not one."""
    host = host.lower()
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise MalformedHostError("is not a valid IPv6 address") from None
    labels = host.removesuffix(".").split(".")
    if not _NUMERIC_LABEL.fullmatch(labels[-1]):
        return None  # a name: a URL's host is an IPv4 address only when its last label is a number
    value = _inet_aton(labels)
    if value is None:
        raise MalformedHostError("is not a valid IPv4 address")
    return ipaddress.IPv4Address(value)


def _inet_aton(parts: list[str]) -> int | None:
    if not 1 <= len(parts) <= 4:
        return None
    numbers = []
    for part in parts:
        if part.startswith("0x"):
            number = int(part[2:] or "0", 16)
        elif re.fullmatch(r"0[0-7]*", part):
            number = int(part, 8)
        elif re.fullmatch(r"[1-9][0-9]*", part):
            number = int(part)
        else:
            return None
        numbers.append(number)
    *leading, last = numbers
    if any(number > 255 for number in leading) or last >= 256 ** (4 - len(leading)):
        return None
    value = last
    for index, number in enumerate(leading):
        value |= number << (8 * (3 - index))
    return value


def host_refusal(host: str, *, allow_loopback: bool = False) -> str | None:
    """Why a URL whose host is ``host`` can never be delivered (``"a loopback address (127.0.0.1)"``,
    ``"a name that public DNS does not resolve"``), or None when only DNS can tell (at delivery).
    MalformedHostError if ``host`` is not a host at all."""
    address = literal_address(host)
    if address is not None:
        reason = refusal(address, allow_loopback=allow_loopback)
        return f"{reason} ({address})" if reason else None
    name = host.lower().removesuffix(".")
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise MalformedHostError("is not a valid host name")
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        return None if allow_loopback else "a loopback name (localhost)"
    if name in _PRIVATE_NAMES or name.endswith(_PRIVATE_SUFFIXES):
        return "a name that public DNS does not resolve (a private or reserved name)"
    if len(labels) == 1:
        return "a single-label name, which public DNS does not resolve"
    return None
