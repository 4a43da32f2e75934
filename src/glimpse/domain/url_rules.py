"""Which URLs and addresses a web-download may reach: Glance's import filtering, plus the rules that
keep a user-given URL from reaching inside the cloud (server-side request forgery).

Pure rules, no sockets and no DNS:

* :class:`ImportFilter` is ``[import_filtering_opts]`` as a value (``glimpse.config`` builds it once,
  at start-up): scheme, host and port allow and deny lists, with Glance's meaning.
* :func:`check_url` parses a URL strictly and applies the filter, plus the address rules to hosts
  written as IP literals, including every disguise the C library accepts (``2130706433``,
  ``0177.0.0.1``, ``0x7f.1``, IPv4-mapped and NAT64 IPv6).
* :func:`check_addresses` applies the same rules to the addresses a host name resolved to, and
  refuses the name when *any* of them is forbidden, so a name with one public and one private answer
  cannot pass. Resolving is the caller's business (:mod:`glimpse.jobs.resolve`).

Address rules: only public addresses are fetched. ``allow_private_networks = true`` lifts the rules
for everything except the cloud metadata service; a host listed in ``allowed_hosts`` lifts them for
that host (for the metadata service only when it is listed as an IP literal).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple
from urllib.parse import quote, urlsplit

import idna

from glimpse.errors import InvalidInput
from glimpse.redaction import redact_url

__all__ = [
    "DEFAULT_PORTS",
    "FILTER_MESSAGE",
    "IPAddress",
    "ImportFilter",
    "ParsedURL",
    "check_addresses",
    "check_host",
    "check_url",
    "redact_url",
    "shown_uri",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

FILTER_MESSAGE: Final = "URI for web-download does not pass filtering: {uri}"
DEFAULT_PORTS: Final[Mapping[str, int]] = {"http": 80, "https": 443}

_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_DECIMAL = re.compile(r"[0-9]+")
_OCTAL = re.compile(r"0[0-7]*")
_HEX = re.compile(r"0x[0-9a-f]*")
_PORT = re.compile(r"[0-9]{1,5}")
#: Characters refused anywhere in a URL: controls, space and the backslash that browsers read as "/".
_FORBIDDEN_URL_CHARACTERS = re.compile(r"[\x00-\x20\x7f\\]")
#: Visible ASCII stays as written in the request target; anything else is percent-encoded as UTF-8.
_TARGET_SAFE: Final = "".join(chr(code) for code in range(0x21, 0x7F))


class _Refusal(Exception):
    """Internal: why a URL or an address was refused, in plain words (``str()`` of it)."""


# -- the filter --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportFilter:
    """``[import_filtering_opts]``: which URLs web-download may fetch.

    Each pair of lists works as in Glance: when the allow-list is set the deny-list is ignored; an
    empty allow-list allows everything the deny-list does not name. Ports apply to the URL's
    effective port (80 for http and 443 for https when the URL names none). Host entries are
    normalised like URL hosts (lower case, no trailing dot, IDNA, canonical IP text).
    ``allow_private_networks`` is Glimpse's own switch: see the module docstring.
    """

    allowed_schemes: tuple[str, ...] = ("http", "https")
    disallowed_schemes: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    disallowed_hosts: tuple[str, ...] = ()
    allowed_ports: tuple[int, ...] = (80, 443)
    disallowed_ports: tuple[int, ...] = ()
    allow_private_networks: bool = False

    def __post_init__(self) -> None:
        for name in ("allowed_schemes", "disallowed_schemes"):
            schemes = tuple(scheme.strip().lower() for scheme in getattr(self, name))
            for scheme in schemes:
                if not _SCHEME.fullmatch(scheme):
                    raise ValueError(f"[import_filtering_opts] {name}: {scheme!r} is not a URL scheme.")
            object.__setattr__(self, name, schemes)
        for name in ("allowed_hosts", "disallowed_hosts"):
            object.__setattr__(self, name, tuple(_config_host(host, name) for host in getattr(self, name)))
        for name in ("allowed_ports", "disallowed_ports"):
            ports = tuple(getattr(self, name))
            for port in ports:
                if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                    raise ValueError(
                        f"[import_filtering_opts] {name}: {port!r} is not a port number (1-65535)."
                    )
            object.__setattr__(self, name, ports)


def _config_host(value: str, option: str) -> str:
    text = value.strip()
    try:
        # An IPv6 address may be written with or without brackets in the configuration.
        return str(ipaddress.IPv6Address(text.removeprefix("[").removesuffix("]")))
    except ValueError:
        pass
    try:
        host, _ = _normalise_host(text)
    except _Refusal as refusal:
        raise ValueError(
            f"[import_filtering_opts] {option}: {value!r} is not a host name or IP address ({refusal})."
        ) from None
    return host


# -- parsing URLs and hosts --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParsedURL:
    """A URL that passed :func:`check_url`, in normalised parts."""

    scheme: str
    #: Lower-case ASCII (IDNA) name without trailing dot, or canonical IP text (IPv6 without brackets).
    host: str
    #: The effective port: the URL's own, or the scheme's default.
    port: int
    #: Path and query as sent in the request line (``/`` when the URL has no path).
    target: str
    #: The address when the host is an IP literal (in any of its spellings), else ``None``.
    address: IPAddress | None

    @property
    def authority(self) -> str:
        """``host[:port]`` as it belongs in a URL or a Host header (the default port left out)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.authority}{self.target}"

    @property
    def shown(self) -> str:
        """:attr:`url` as messages and log lines show it: its credentials replaced (:func:`redact_url`)."""
        return shown_uri(self.url)


def _normalise_host(raw: str) -> tuple[str, IPAddress | None]:
    """The canonical host text and, for IP literals, the address; raises ``_Refusal``."""
    if not raw:
        raise _Refusal("the URI has no host")
    if raw.startswith("["):
        if not raw.endswith("]"):
            raise _Refusal("the IPv6 address in the host lacks its closing bracket")
        inner = raw[1:-1]
        if "%" in inner:
            raise _Refusal("IPv6 zone identifiers are not accepted")
        try:
            v6 = ipaddress.IPv6Address(inner)
        except ValueError:
            raise _Refusal(f"{raw} is not a valid IPv6 address") from None
        return str(v6), v6
    if "%" in raw:
        raise _Refusal("percent-encoded host names are not accepted")
    if raw.isascii():
        name = raw.lower()
    else:
        # UTS 46 mapping also folds look-alikes such as full-width digits and dots to ASCII, so the
        # IP-literal check below sees what a resolver would see.
        try:
            name = idna.encode(raw, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError) as exc:
            raise _Refusal(f"the host is not a valid internationalised domain name ({exc})") from None
    name = name.removesuffix(".")
    if not name:
        raise _Refusal("the URI has no host")
    labels = name.split(".")
    last = labels[-1]
    if _DECIMAL.fullmatch(last) or _HEX.fullmatch(last):
        # Ends in a number, so it is an IPv4 address or nothing (as URL parsers and inet_aton agree).
        address = _parse_legacy_ipv4(labels, name)
        return str(address), address
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise _Refusal(f"{name!r} is not a valid host name")
    return name, None


def _parse_legacy_ipv4(parts: list[str], text: str) -> ipaddress.IPv4Address:
    """IPv4 in the forms ``inet_aton`` accepts: 1 to 4 parts, each decimal, octal (0...) or hex (0x...)."""
    malformed = _Refusal(f"{text!r} is not a valid IPv4 address")
    if len(parts) > 4:
        raise malformed
    numbers: list[int] = []
    for part in parts:
        if _HEX.fullmatch(part):
            numbers.append(int(part[2:] or "0", 16))
        elif _OCTAL.fullmatch(part):
            numbers.append(int(part, 8))
        elif _DECIMAL.fullmatch(part) and not part.startswith("0"):
            numbers.append(int(part))
        else:
            raise malformed
    *leading, last = numbers
    if any(number > 255 for number in leading) or last >= 256 ** (4 - len(leading)):
        raise malformed
    value = last
    for index, number in enumerate(leading):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _parse_url(url: str) -> ParsedURL:
    if not url:
        raise _Refusal("the URI is empty")
    if _FORBIDDEN_URL_CHARACTERS.search(url):
        raise _Refusal("the URI contains spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise _Refusal(f"the URI cannot be parsed ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise _Refusal("only absolute http and https URIs can be imported")
    if not url[len(parts.scheme) + 1 :].startswith("//") or not parts.netloc:
        raise _Refusal("the URI has no host")
    netloc = parts.netloc
    if "@" in netloc:
        raise _Refusal("user names and passwords in the URI are not accepted")
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise _Refusal("the IPv6 address in the host lacks its closing bracket")
        raw_host, rest = netloc[: end + 1], netloc[end + 1 :]
        if rest and not rest.startswith(":"):
            raise _Refusal(f"{netloc!r} is not a valid host and port")
        port_text = rest[1:] if rest else ""
    else:
        raw_host, _, port_text = netloc.partition(":")
    host, address = _normalise_host(raw_host)
    if not port_text:
        port = DEFAULT_PORTS[scheme]
    elif _PORT.fullmatch(port_text) and 1 <= int(port_text) <= 65535:
        port = int(port_text)
    else:
        raise _Refusal(f"{port_text!r} is not a valid port number")
    target = quote(parts.path or "/", safe=_TARGET_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=_TARGET_SAFE)
    return ParsedURL(scheme=scheme, host=host, port=port, target=target, address=address)


def _apply_lists(parsed: ParsedURL, flt: ImportFilter) -> None:
    """The scheme, host and port lists; raises ``_Refusal`` naming the rule."""
    if flt.allowed_schemes:
        if parsed.scheme not in flt.allowed_schemes:
            raise _Refusal(f"the scheme {parsed.scheme!r} is not in allowed_schemes")
    elif parsed.scheme in flt.disallowed_schemes:
        raise _Refusal(f"the scheme {parsed.scheme!r} is in disallowed_schemes")
    if flt.allowed_hosts:
        if parsed.host not in flt.allowed_hosts:
            raise _Refusal(f"the host {parsed.host!r} is not in allowed_hosts")
    elif parsed.address is not None:
        _check_denied_address(parsed.address, flt, parsed.host)
    elif parsed.host in flt.disallowed_hosts:
        raise _Refusal(f"the host {parsed.host!r} is in disallowed_hosts")
    if flt.allowed_ports:
        if parsed.port not in flt.allowed_ports:
            raise _Refusal(f"port {parsed.port} is not in allowed_ports")
    elif parsed.port in flt.disallowed_ports:
        raise _Refusal(f"port {parsed.port} is in disallowed_ports")


def _check_denied_address(address: IPAddress, flt: ImportFilter, host: str) -> None:
    """A denied IP address is denied in every spelling, IPv4 embedded in IPv6 included."""
    if flt.allowed_hosts:
        return
    for alias in (address, _embedded_ipv4(address)):
        if alias is not None and str(alias) in flt.disallowed_hosts:
            shown = host if host == str(alias) else f"{host} ({alias})"
            raise _Refusal(f"the host {shown} is in disallowed_hosts")


# -- address rules -----------------------------------------------------------------------------------


def _networks(
    *rules: tuple[str, str],
) -> tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...]:
    return tuple((ipaddress.ip_network(network), reason) for network, reason in rules)


_METADATA_ADDRESSES: Final = frozenset(
    ipaddress.ip_address(text)
    for text in (
        "169.254.169.254",  # OpenStack, AWS, Azure, Google Cloud and most others
        "fd00:ec2::254",  # AWS over IPv6
        "169.254.170.2",  # AWS container credentials
        "100.100.100.200",  # Alibaba Cloud
    )
)
_RULES: Final = _networks(
    ("0.0.0.0/32", "the unspecified address"),
    ("0.0.0.0/8", "in 0.0.0.0/8, which means this host"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address"),
    ("10.0.0.0/8", "a private address"),
    ("172.16.0.0/12", "a private address"),
    ("192.168.0.0/16", "a private address"),
    ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
    ("224.0.0.0/4", "a multicast address"),
    ("255.255.255.255/32", "the broadcast address"),
    ("240.0.0.0/4", "a reserved address"),
    ("::/128", "the unspecified address"),
    ("::1/128", "a loopback address"),
    ("fe80::/10", "a link-local address"),
    ("fc00::/7", "a private (unique local) address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
    ("64:ff9b:1::/48", "a local-use NAT64 address"),
    ("2001::/32", "a Teredo tunnel address"),
)
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")


class _Problem(NamedTuple):
    reason: str
    metadata: bool


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (IPv4-mapped, NAT64 or 6to4), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def _classify(address: IPAddress) -> _Problem | None:
    """Why ``address`` must not be fetched from, or ``None`` for a public address."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        kind = _kind(embedded)
        if kind is None:
            return None
        return _Problem(f"{address} stands for {embedded}, {kind}", embedded in _METADATA_ADDRESSES)
    kind = _kind(address)
    if kind is None:
        return None
    return _Problem(f"{address} is {kind}", address in _METADATA_ADDRESSES)


def _kind(address: IPAddress) -> str | None:
    if address in _METADATA_ADDRESSES:
        return "the cloud metadata service address"
    for network, kind in _RULES:
        if address.version == network.version and address in network:
            return kind
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "not a public address"
    return None


def _address_refusal(address: IPAddress, flt: ImportFilter, host: str, literal: bool) -> str | None:
    problem = _classify(address)
    if problem is None:
        return None
    if host in flt.allowed_hosts and (literal or not problem.metadata):
        return None
    if flt.allow_private_networks and not problem.metadata:
        return None
    return problem.reason + "; only public addresses can be imported from"


def _is_localhost(name: str) -> bool:
    return name == "localhost" or name.endswith(".localhost")


def shown_uri(uri: str) -> str:
    """``uri`` made safe to put in a message and a log line: credentials redacted (:func:`redact_url`),
    controls escaped, length capped."""
    text = "".join(char if char.isprintable() else repr(char)[1:-1] for char in redact_url(uri))
    return text if len(text) <= 2000 else text[:2000] + "..."


def _refused(uri: str, reason: str) -> InvalidInput:
    return InvalidInput(f"{FILTER_MESSAGE.format(uri=shown_uri(uri))} ({reason}).")


def check_url(url: str, flt: ImportFilter) -> ParsedURL:
    """Parse ``url`` strictly and apply ``flt``; raise ``InvalidInput`` saying which rule refused it.

    Only absolute http(s) URLs with a host and no user name or password pass. A host written as an
    IP address (in any spelling) must be public unless the filter says otherwise. Host names are not
    resolved here: their addresses go through :func:`check_addresses` right before connecting.
    """
    try:
        parsed = _parse_url(url)
        _apply_lists(parsed, flt)
        exempt = parsed.host in flt.allowed_hosts or flt.allow_private_networks
        if parsed.address is not None:
            refusal = _address_refusal(parsed.address, flt, parsed.host, literal=True)
            if refusal is not None:
                raise _Refusal(refusal)
        elif _is_localhost(parsed.host) and not exempt:
            raise _Refusal(
                f"{parsed.host} always means this machine; only public addresses can be imported from"
            )
    except _Refusal as refusal:
        raise _refused(url, str(refusal)) from None
    return parsed


# -- resolved addresses ------------------------------------------------------------------------------


def check_host(host: str, *, uri: str) -> tuple[str, IPAddress | None]:
    """The canonical form of ``host`` (a name or an IP literal, IPv6 with or without brackets) and,
    for an IP literal, its address; a malformed host raises ``InvalidInput`` quoting ``uri``."""
    try:
        return _normalise_host(f"[{host}]" if ":" in host and not host.startswith("[") else host)
    except _Refusal as refusal:
        raise _refused(uri, str(refusal)) from None


def check_addresses(
    name: str, addresses: Sequence[IPAddress], flt: ImportFilter, *, literal: bool, uri: str
) -> None:
    """Refuse ``name`` (``InvalidInput`` quoting ``uri``) when any of its ``addresses`` is forbidden.

    ``addresses`` are what ``name`` resolved to, or the one address of an IP literal (``literal``).
    """
    for address in addresses:
        try:
            _check_denied_address(address, flt, name)
        except _Refusal as refusal:
            raise _refused(uri, str(refusal)) from None
        refusal_reason = _address_refusal(address, flt, name, literal=literal)
        if refusal_reason is not None:
            prefix = "" if literal else f"{name} resolves to {address}, and "
            raise _refused(uri, prefix + refusal_reason)
