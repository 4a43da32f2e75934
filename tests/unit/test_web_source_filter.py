"""The web-download filter: URL parsing, the import filtering lists, the address rules and DNS checks.

No sockets: names are resolved by fake resolvers and the few :class:`WebSource` tests at the end run
against ``httpx.MockTransport`` to see exactly which address and headers a request would use.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import httpx
import pytest

from glimpse.domain.url_rules import ImportFilter, ParsedURL, check_url
from glimpse.errors import DownloadFailed, InvalidInput
from glimpse.jobs.resolve import resolve_and_check
from glimpse.jobs.web_source import WebSource

pytestmark = pytest.mark.timeout(30)

T = TypeVar("T")
PREFIX = "URI for web-download does not pass filtering: "
DEFAULT = ImportFilter()
PRIVATE_OK = ImportFilter(allow_private_networks=True)


def run(coro: Coroutine[Any, Any, T]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(10):
            return await coro

    return asyncio.run(bounded())


def refused(url: str, flt: ImportFilter = DEFAULT) -> str:
    with pytest.raises(InvalidInput) as info:
        check_url(url, flt)
    message = info.value.message
    assert message.startswith(PREFIX), message
    return message


def resolver_of(table: dict[str, Sequence[str]]) -> Callable[[str, int], Awaitable[Sequence[str]]]:
    async def resolve(host: str, port: int) -> Sequence[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


# -- parsing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://example.com/image.qcow2", ("http", "example.com", 80, "/image.qcow2")),
        ("https://example.com/a/b.img", ("https", "example.com", 443, "/a/b.img")),
        ("http://example.com", ("http", "example.com", 80, "/")),
        ("HTTP://EXAMPLE.COM./x", ("http", "example.com", 80, "/x")),
        ("http://example.com:80/x", ("http", "example.com", 80, "/x")),
        ("http://example.com:/x", ("http", "example.com", 80, "/x")),
        ("https://example.com:443/x", ("https", "example.com", 443, "/x")),
        ("http://example.com:443/x", ("http", "example.com", 443, "/x")),
        ("http://example.com/x?a=1&b=2#part", ("http", "example.com", 80, "/x?a=1&b=2")),
        ("http://example.com/%7Euser/a%20b", ("http", "example.com", 80, "/%7Euser/a%20b")),
        (
            "http://example.com/d\u00e9j\u00e0?q=\u00fc",
            ("http", "example.com", 80, "/d%C3%A9j%C3%A0?q=%C3%BC"),
        ),
        ("http://b\u00fccher.example/x", ("http", "xn--bcher-kva.example", 80, "/x")),
        ("http://B\u00dcCHER.Example./x", ("http", "xn--bcher-kva.example", 80, "/x")),
        ("http://xn--bcher-kva.example/x", ("http", "xn--bcher-kva.example", 80, "/x")),
        ("http://my_host.example/x", ("http", "my_host.example", 80, "/x")),
        ("http://ex\u200bample.com/x", ("http", "example.com", 80, "/x")),
        ("http://93.184.216.34/x", ("http", "93.184.216.34", 80, "/x")),
        (
            "http://[2606:2800:220:1:248:1893:25C8:1946]/",
            ("http", "2606:2800:220:1:248:1893:25c8:1946", 80, "/"),
        ),
        ("http://[::ffff:93.184.216.34]/", ("http", "::ffff:5db8:d822", 80, "/")),
        ("http://[64:ff9b::93.184.216.34]/", ("http", "64:ff9b::5db8:d822", 80, "/")),
        ("http://1572395042/", ("http", "93.184.216.34", 80, "/")),
        ("http://172.15.255.255/", ("http", "172.15.255.255", 80, "/")),
        ("http://172.32.0.0/", ("http", "172.32.0.0", 80, "/")),
        ("http://100.63.255.255/", ("http", "100.63.255.255", 80, "/")),
        ("http://100.128.0.0/", ("http", "100.128.0.0", 80, "/")),
        ("http://169.255.0.1/", ("http", "169.255.0.1", 80, "/")),
    ],
)
def test_accepted_urls_are_normalised(url: str, expected: tuple[str, str, int, str]) -> None:
    parsed = check_url(url, DEFAULT)
    assert (parsed.scheme, parsed.host, parsed.port, parsed.target) == expected


def test_parsed_url_parts() -> None:
    named = check_url("https://Example.com:443/a?b", DEFAULT)
    assert named.address is None
    assert named.url == "https://example.com/a?b"
    assert named.authority == "example.com"
    literal = check_url("http://[2606:2800:220:1::1]:443/", DEFAULT)
    assert str(literal.address) == "2606:2800:220:1::1"
    assert literal.authority == "[2606:2800:220:1::1]:443"
    assert literal.url == "http://[2606:2800:220:1::1]:443/"
    assert isinstance(literal, ParsedURL)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "empty"),
        ("example.com/image", "only absolute http and https"),
        ("/relative/path", "only absolute http and https"),
        ("ftp://example.com/image", "only absolute http and https"),
        ("file:///etc/passwd", "only absolute http and https"),
        ("gopher://example.com/", "only absolute http and https"),
        ("http:example.com/x", "no host"),
        ("http:/example.com/x", "no host"),
        ("http:///x", "no host"),
        ("http://", "no host"),
        ("http://:80/", "no host"),
        ("http://user:secret@example.com/", "user names and passwords"),
        ("http://user@example.com/", "user names and passwords"),
        ("http://@example.com/", "user names and passwords"),
        ("http://example.com@127.0.0.1/", "user names and passwords"),
        ("http://example.com\\@127.0.0.1/", "backslashes"),
        ("http:\\\\example.com/", "backslashes"),
        (" http://example.com/", "spaces"),
        ("http://exa mple.com/", "spaces"),
        ("http://example.com/a b", "spaces"),
        ("http://example.com/\n", "control characters"),
        ("http://exam\tple.com/", "control characters"),
        ("http://example.com\x00.evil/", "control characters"),
        ("http://example.com:0/", "not a valid port"),
        ("http://example.com:65536/", "not a valid port"),
        ("http://example.com:123456/", "not a valid port"),
        ("http://example.com:8o/", "not a valid port"),
        ("http://example.com:+80/", "not a valid port"),
        ("http://example.com:80:80/", "not a valid port"),
        ("http://[::1/", "cannot be parsed"),
        ("http://[v1.fe]/", "not a valid IPv6 address"),
        ("http://[fe80::1%25eth0]/", "zone identifiers"),
        ("http://[::1]x/", "not a valid host and port"),
        ("http://%31%32%37.0.0.1/", "percent-encoded"),
        ("http://exa!mple.com/", "not a valid host name"),
        ("http://-example.com/", "not a valid host name"),
        ("http://example-.com/", "not a valid host name"),
        ("http://a..b.example/", "not a valid host name"),
        ("http://" + "a" * 64 + ".example/", "not a valid host name"),
        ("http://" + ".".join(["abcdefghij"] * 24) + ".example/", "not a valid host name"),
        ("http://\u2603\u2603.example\u00a0/", "internationalised"),
    ],
)
def test_malformed_urls_are_refused(url: str, reason: str) -> None:
    assert reason in refused(url)


def test_refusal_message_names_the_uri_and_the_rule() -> None:
    message = refused("http://user:pw@example.com/image")
    assert message == (
        f"{PREFIX}http://***@example.com/image (user names and passwords in the URI are not accepted)."
    )  # the URI as written, except its credentials
    assert "\\n" in refused("http://example.com/\nInjected: header")


# -- IP literals in every spelling -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        # Loopback, spelt every way inet_aton and URL parsers accept.
        ("http://127.0.0.1/", "127.0.0.1 is a loopback address"),
        ("http://127.0.0.1./", "127.0.0.1 is a loopback address"),
        ("http://127.1/", "127.0.0.1 is a loopback address"),
        ("http://127.0.1/", "127.0.0.1 is a loopback address"),
        ("http://2130706433/", "127.0.0.1 is a loopback address"),
        ("http://0177.0.0.1/", "127.0.0.1 is a loopback address"),
        ("http://0177.1/", "127.0.0.1 is a loopback address"),
        ("http://017700000001/", "127.0.0.1 is a loopback address"),
        ("http://0x7f.0.0.1/", "127.0.0.1 is a loopback address"),
        ("http://0X7F.0x0.0x00.0x1/", "127.0.0.1 is a loopback address"),
        ("http://0x7f.1/", "127.0.0.1 is a loopback address"),
        ("http://0x7f000001/", "127.0.0.1 is a loopback address"),
        ("http://0x7f.0.0.0x1/", "127.0.0.1 is a loopback address"),
        ("http://127.0.0.255/", "127.0.0.255 is a loopback address"),
        ("http://127.255.255.254/", "is a loopback address"),
        ("http://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11/", "127.0.0.1 is a loopback address"),
        ("http://127\u30020\u30020\u30021/", "127.0.0.1 is a loopback address"),
        ("http://[::1]/", "::1 is a loopback address"),
        ("http://[0:0:0:0:0:0:0:1]/", "::1 is a loopback address"),
        ("http://localhost/", "localhost always means this machine"),
        ("http://LOCALHOST./", "localhost always means this machine"),
        ("http://images.localhost/", "images.localhost always means this machine"),
        # IPv6 that stands for an IPv4 address.
        ("http://[::ffff:127.0.0.1]/", "stands for 127.0.0.1, a loopback address"),
        ("http://[::ffff:7f00:1]/", "stands for 127.0.0.1, a loopback address"),
        ("http://[0:0:0:0:0:ffff:127.0.0.1]/", "stands for 127.0.0.1, a loopback address"),
        ("http://[::ffff:10.0.0.1]/", "stands for 10.0.0.1, a private address"),
        ("http://[64:ff9b::127.0.0.1]/", "stands for 127.0.0.1, a loopback address"),
        ("http://[64:ff9b::10.1.2.3]/", "stands for 10.1.2.3, a private address"),
        ("http://[2002:7f00:1::]/", "stands for 127.0.0.1, a loopback address"),
        ("http://[2002:c0a8:0101::1]/", "stands for 192.168.1.1, a private address"),
        ("http://[::127.0.0.1]/", "is a reserved address"),
        ("http://[64:ff9b:1::a00:1]/", "a local-use NAT64 address"),
        ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "a Teredo tunnel address"),
        # The cloud metadata service.
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is the cloud metadata service"),
        ("http://169.254.169.254:80/openstack/latest/meta_data.json", "the cloud metadata service"),
        ("http://2852039166/", "169.254.169.254 is the cloud metadata service"),
        ("http://0xa9fea9fe/", "169.254.169.254 is the cloud metadata service"),
        ("http://0251.0376.0251.0376/", "169.254.169.254 is the cloud metadata service"),
        ("http://169.254.43518/", "169.254.169.254 is the cloud metadata service"),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254 is the cloud metadata service"),
        ("http://[::ffff:169.254.169.254]/", "stands for 169.254.169.254, the cloud metadata service"),
        ("http://[64:ff9b::a9fe:a9fe]/", "stands for 169.254.169.254, the cloud metadata service"),
        ("http://100.100.100.200/", "the cloud metadata service"),
        # Link-local, private, shared, unspecified, multicast, reserved.
        ("http://169.254.1.1/", "169.254.1.1 is a link-local address"),
        ("http://[fe80::1]/", "fe80::1 is a link-local address"),
        ("http://[febf:ffff::1]/", "is a link-local address"),
        ("http://10.0.0.1/", "10.0.0.1 is a private address"),
        ("http://10.255.255.255/", "is a private address"),
        ("http://012.0.0.1/", "10.0.0.1 is a private address"),
        ("http://167772161/", "10.0.0.1 is a private address"),
        ("http://172.16.0.1/", "172.16.0.1 is a private address"),
        ("http://172.31.255.255/", "172.31.255.255 is a private address"),
        ("http://192.168.0.1/", "192.168.0.1 is a private address"),
        ("http://192.168.257/", "192.168.1.1 is a private address"),
        ("http://0xc0.0xa8.1.1/", "192.168.1.1 is a private address"),
        ("http://[fc00::1]/", "fc00::1 is a private (unique local) address"),
        ("http://[fd12:3456:789a::1]/", "is a private (unique local) address"),
        ("http://[fec0::1]/", "is a site-local address"),
        ("http://100.64.0.1/", "100.64.0.1 is a shared (carrier-grade NAT) address"),
        ("http://100.127.255.254/", "is a shared (carrier-grade NAT) address"),
        ("http://0.0.0.0/", "0.0.0.0 is the unspecified address"),
        ("http://0/", "0.0.0.0 is the unspecified address"),
        ("http://0x0/", "0.0.0.0 is the unspecified address"),
        ("http://0.0.0.7/", "0.0.0.7 is in 0.0.0.0/8"),
        ("http://[::]/", ":: is the unspecified address"),
        ("http://224.0.0.1/", "224.0.0.1 is a multicast address"),
        ("http://239.255.255.250/", "is a multicast address"),
        ("http://[ff02::1]/", "ff02::1 is a multicast address"),
        ("http://240.0.0.1/", "240.0.0.1 is a reserved address"),
        ("http://255.255.255.255/", "the broadcast address"),
        ("http://4294967295/", "the broadcast address"),
        ("http://192.0.2.10/", "is not a public address"),
        ("http://198.18.0.1/", "is not a public address"),
        ("http://[2001:db8::1]/", "is not a public address"),
        ("http://[100::1]/", "reserved address"),
    ],
)
def test_non_public_ip_literals_are_refused(url: str, reason: str) -> None:
    message = refused(url)
    assert reason in message
    assert message.startswith(PREFIX + url)


@pytest.mark.parametrize(
    "url",
    [
        "http://1.2.3.256/",
        "http://256.1.1.1/",
        "http://1.2.3.4.5/",
        "http://1.2.65536/",
        "http://1.16777216/",
        "http://4294967296/",
        "http://08.0.0.1/",
        "http://0x7g.0.0.1/",
        "http://1..1/",
        "http://.1/",
        "http://example.123/",
        "http://example.0x10/",
        "http://999999999999999999999999/",
    ],
)
def test_malformed_ipv4_is_refused_not_resolved(url: str) -> None:
    assert "is not a valid IPv4 address" in refused(url)


def test_allow_private_networks_lifts_address_rules_but_not_metadata() -> None:
    flt = ImportFilter(allow_private_networks=True, allowed_ports=())
    for url in (
        "http://127.0.0.1:8000/",
        "http://0x7f.1/",
        "http://[::1]/",
        "http://10.0.0.1/",
        "http://[::ffff:192.168.1.1]/",
        "http://localhost/",
    ):
        check_url(url, flt)
    for url in (
        "http://169.254.169.254/",
        "http://2852039166/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:169.254.169.254]/",
    ):
        assert "cloud metadata service" in refused(url, flt)


def test_an_allowed_ip_host_lifts_address_rules_for_that_host_only() -> None:
    flt = ImportFilter(allowed_hosts=("127.0.0.1", "169.254.169.254"), allowed_ports=(8000, 80))
    assert check_url("http://127.0.0.1:8000/x", flt).host == "127.0.0.1"
    assert check_url("http://0x7f.0.0.1:8000/x", flt).host == "127.0.0.1"
    check_url("http://169.254.169.254/", flt)
    assert "'127.0.0.2' is not in allowed_hosts" in refused("http://127.0.0.2:8000/", flt)
    assert "'localhost' is not in allowed_hosts" in refused("http://localhost:8000/", flt)
    assert "port 8080 is not in allowed_ports" in refused("http://127.0.0.1:8080/", flt)


def test_an_allowed_name_lifts_the_localhost_rule() -> None:
    flt = ImportFilter(allowed_hosts=("localhost",))
    assert check_url("http://LocalHost/", flt).host == "localhost"


# -- the filtering lists -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flt", "url", "reason"),
    [
        # Ports: the effective port counts, so a URL without one is checked as 80 or 443.
        (DEFAULT, "http://example.com:8080/", "port 8080 is not in allowed_ports"),
        (DEFAULT, "https://example.com:8443/", "port 8443 is not in allowed_ports"),
        (ImportFilter(allowed_ports=(8080,)), "http://example.com/", "port 80 is not in allowed_ports"),
        (ImportFilter(allowed_ports=(8080,)), "https://example.com/", "port 443 is not in allowed_ports"),
        (ImportFilter(allowed_ports=(), disallowed_ports=(22,)), "http://example.com:22/", "port 22 is in"),
        (ImportFilter(allowed_ports=(), disallowed_ports=(80,)), "http://example.com/", "port 80 is in"),
        # Schemes.
        (ImportFilter(allowed_schemes=("https",)), "http://example.com/", "'http' is not in allowed_schemes"),
        (
            ImportFilter(allowed_schemes=(), disallowed_schemes=("http",)),
            "http://example.com/",
            "'http' is in disallowed_schemes",
        ),
        (ImportFilter(allowed_schemes=("ftp",)), "ftp://example.com/", "only absolute http and https"),
        # Hosts.
        (
            ImportFilter(allowed_hosts=("images.example.com",)),
            "http://example.com/",
            "'example.com' is not in allowed_hosts",
        ),
        (
            ImportFilter(allowed_hosts=("images.example.com",)),
            "http://sub.images.example.com/",
            "is not in allowed_hosts",
        ),
        (ImportFilter(disallowed_hosts=("evil.example",)), "http://EVIL.example./", "'evil.example' is in"),
        (
            ImportFilter(disallowed_hosts=("93.184.216.34",)),
            "http://1572395042/",
            "93.184.216.34 is in disallowed_hosts",
        ),
        (
            ImportFilter(disallowed_hosts=("93.184.216.34",)),
            "http://[::ffff:93.184.216.34]/",
            "(93.184.216.34) is in disallowed_hosts",
        ),
        (
            ImportFilter(disallowed_hosts=("2606:2800:220:1::1",)),
            "http://[2606:2800:220:1:0::1]/",
            "is in disallowed_hosts",
        ),
        (
            ImportFilter(disallowed_hosts=("b\u00fccher.example",)),
            "http://xn--bcher-kva.example/",
            "is in disallowed_hosts",
        ),
    ],
)
def test_filter_lists_refuse(flt: ImportFilter, url: str, reason: str) -> None:
    assert reason in refused(url, flt)


@pytest.mark.parametrize(
    ("flt", "url"),
    [
        (DEFAULT, "http://example.com/"),
        (DEFAULT, "https://example.com/"),
        (DEFAULT, "http://example.com:443/"),
        (ImportFilter(allowed_ports=(8080,)), "http://example.com:8080/"),
        (ImportFilter(allowed_ports=()), "http://example.com:8080/"),
        (ImportFilter(allowed_ports=(), disallowed_ports=(22,)), "http://example.com:8080/"),
        # When both lists are set the allow-list wins, as in Glance.
        (ImportFilter(allowed_ports=(8080,), disallowed_ports=(8080,)), "http://example.com:8080/"),
        (ImportFilter(allowed_schemes=("http",), disallowed_schemes=("http",)), "http://example.com/"),
        (
            ImportFilter(allowed_hosts=("example.com",), disallowed_hosts=("example.com",)),
            "http://example.com/",
        ),
        (ImportFilter(allowed_schemes=(), disallowed_schemes=("http",)), "https://example.com/"),
        (ImportFilter(allowed_schemes=()), "http://example.com/"),
        (ImportFilter(disallowed_hosts=("evil.example",)), "http://good.example/"),
        (ImportFilter(allowed_hosts=("Images.Example.COM.",)), "http://images.example.com/"),
        (ImportFilter(allowed_hosts=("xn--bcher-kva.example",)), "http://b\u00fccher.example/"),
        (ImportFilter(allowed_hosts=("[2606:2800:220:1::1]",)), "http://[2606:2800:220:1:0:0:0:1]/"),
    ],
)
def test_filter_lists_allow(flt: ImportFilter, url: str) -> None:
    check_url(url, flt)


def test_filter_normalises_its_entries() -> None:
    flt = ImportFilter(
        allowed_schemes=(" HTTPS ",),
        allowed_hosts=("Example.COM.", "::1", "[::FFFF:127.0.0.1]", "0x7f.1", "b\u00fccher.example"),
    )
    assert flt.allowed_schemes == ("https",)
    assert flt.allowed_hosts == ("example.com", "::1", "::ffff:7f00:1", "127.0.0.1", "xn--bcher-kva.example")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"allowed_ports": (0,)}, "allowed_ports: 0 is not a port number"),
        ({"disallowed_ports": (70000,)}, "disallowed_ports: 70000 is not a port number"),
        ({"allowed_ports": ("80",)}, "allowed_ports: '80' is not a port number"),
        ({"allowed_ports": (True,)}, "allowed_ports: True is not a port number"),
        ({"allowed_hosts": ("*.example.com",)}, "allowed_hosts: '*.example.com' is not a host name"),
        ({"disallowed_hosts": ("1.2.3.999",)}, "disallowed_hosts: '1.2.3.999' is not a host name"),
        ({"allowed_schemes": ("ht tp",)}, "allowed_schemes: 'ht tp' is not a URL scheme"),
    ],
)
def test_filter_rejects_unusable_entries(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="import_filtering_opts") as info:
        ImportFilter(**kwargs)
    assert message in str(info.value)


# -- resolving ---------------------------------------------------------------------------------------


def test_resolve_returns_every_checked_address_once() -> None:
    resolver = resolver_of({"images.example.com": ["93.184.216.34", "2606:2800:220:1::1", "93.184.216.34"]})
    addresses = run(resolve_and_check("images.example.com", 443, DEFAULT, resolver))
    assert addresses == ["93.184.216.34", "2606:2800:220:1::1"]


def test_resolve_passes_the_normalised_name_and_port() -> None:
    seen: list[tuple[str, int]] = []

    async def resolver(host: str, port: int) -> list[str]:
        seen.append((host, port))
        return ["93.184.216.34"]

    run(resolve_and_check("B\u00fccher.Example.", 8080, DEFAULT, resolver))
    assert seen == [("xn--bcher-kva.example", 8080)]


@pytest.mark.parametrize(
    ("answers", "reason"),
    [
        (["93.184.216.34", "127.0.0.1"], "rebind.example resolves to 127.0.0.1, and 127.0.0.1 is a loopback"),
        (["10.1.2.3", "93.184.216.34"], "resolves to 10.1.2.3, and 10.1.2.3 is a private address"),
        (["93.184.216.34", "169.254.169.254"], "169.254.169.254 is the cloud metadata service"),
        (["2606:2800:220:1::1", "::1"], "resolves to ::1, and ::1 is a loopback address"),
        (["93.184.216.34", "::ffff:127.0.0.1"], "stands for 127.0.0.1, a loopback address"),
        (["93.184.216.34", "64:ff9b::a9fe:a9fe"], "stands for 169.254.169.254"),
        (["fe80::1%eth0"], "fe80::1 is a link-local address"),
        (["100.64.1.1"], "shared (carrier-grade NAT)"),
        (["0.0.0.0"], "the unspecified address"),
        (["fd00:ec2::254"], "the cloud metadata service"),
    ],
)
def test_resolve_refuses_when_any_address_is_forbidden(answers: list[str], reason: str) -> None:
    resolver = resolver_of({"rebind.example": answers})
    with pytest.raises(InvalidInput) as info:
        run(resolve_and_check("rebind.example", 80, DEFAULT, resolver, uri="http://rebind.example/img"))
    assert info.value.message.startswith(PREFIX + "http://rebind.example/img (")
    assert reason in info.value.message


def test_resolve_without_uri_names_the_host() -> None:
    resolver = resolver_of({"rebind.example": ["10.0.0.1"]})
    with pytest.raises(InvalidInput, match=r"filtering: rebind\.example \(rebind\.example resolves to"):
        run(resolve_and_check("rebind.example", 80, DEFAULT, resolver))


def test_resolve_allows_private_answers_when_allowed_but_never_metadata() -> None:
    resolver = resolver_of(
        {"mirror.internal": ["10.0.0.5", "fd12::5"], "sneaky.example": ["169.254.169.254"]}
    )
    assert run(resolve_and_check("mirror.internal", 80, PRIVATE_OK, resolver)) == ["10.0.0.5", "fd12::5"]
    by_name = ImportFilter(allowed_hosts=("mirror.internal", "sneaky.example"))
    assert run(resolve_and_check("mirror.internal", 80, by_name, resolver)) == ["10.0.0.5", "fd12::5"]
    for flt in (PRIVATE_OK, by_name):
        with pytest.raises(InvalidInput, match="cloud metadata service"):
            run(resolve_and_check("sneaky.example", 80, flt, resolver))


def test_resolve_checks_literals_without_a_lookup() -> None:
    async def resolver(host: str, port: int) -> list[str]:
        raise AssertionError("an IP literal must not be looked up")

    assert run(resolve_and_check("93.184.216.34", 80, DEFAULT, resolver)) == ["93.184.216.34"]
    assert run(resolve_and_check("2606:2800:220:1::1", 80, DEFAULT, resolver)) == ["2606:2800:220:1::1"]
    assert run(resolve_and_check("[2606:2800:220:1::1]", 80, DEFAULT, resolver)) == ["2606:2800:220:1::1"]
    for host in ("127.0.0.1", "::1", "0x7f.1", "2130706433"):
        with pytest.raises(InvalidInput, match="loopback"):
            run(resolve_and_check(host, 80, DEFAULT, resolver))


def test_resolve_applies_the_deny_list_to_answers() -> None:
    resolver = resolver_of({"alias.example": ["93.184.216.34"], "mapped.example": ["::ffff:93.184.216.34"]})
    flt = ImportFilter(disallowed_hosts=("93.184.216.34",))
    for name in ("alias.example", "mapped.example"):
        with pytest.raises(InvalidInput, match=r"93\.184\.216\.34.* is in disallowed_hosts"):
            run(resolve_and_check(name, 80, flt, resolver))


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "The host name nowhere.example could not be resolved (Name or service not known)"),
        ({"nowhere.example": []}, "The host name nowhere.example has no addresses"),
        ({"nowhere.example": ["not-an-ip"]}, "which is not an IP address"),
    ],
)
def test_resolve_failures_are_download_failures(table: dict[str, Sequence[str]], message: str) -> None:
    with pytest.raises(DownloadFailed) as info:
        run(resolve_and_check("nowhere.example", 80, DEFAULT, resolver_of(table)))
    assert message in info.value.message


def test_resolve_refuses_malformed_hosts() -> None:
    with pytest.raises(InvalidInput, match="not a valid IPv4 address"):
        run(resolve_and_check("1.2.3.256", 80, DEFAULT, resolver_of({})))


# -- WebSource against a mock transport: which address and which headers --------------------------------


class Recorder:
    """A mock transport's handler that records requests and answers from a table of paths."""

    def __init__(self, answers: dict[str, httpx.Response], fail_on: frozenset[str] = frozenset()) -> None:
        self.answers = answers
        self.fail_on = fail_on
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host in self.fail_on:
            raise httpx.ConnectError("connection refused", request=request)
        return self.answers[request.url.path]


async def fetch(source: WebSource, url: str) -> tuple[int | None, bytes]:
    async with source.stream(url) as download:
        return download.size, b"".join([chunk async for chunk in download.chunks])


def test_requests_go_to_the_checked_address_with_the_name_in_host_and_sni() -> None:
    recorder = Recorder({"/image": httpx.Response(200, content=b"data")})
    source = WebSource(
        ImportFilter(allowed_ports=(8443,)),
        resolver=resolver_of({"images.example.com": ["93.184.216.34"]}),
        transport=httpx.MockTransport(recorder),
    )
    assert run(fetch(source, "https://Images.Example.com:8443/image")) == (4, b"data")
    (request,) = recorder.requests
    assert request.url.host == "93.184.216.34"
    assert request.url.port == 8443
    assert request.headers["host"] == "images.example.com:8443"
    assert request.extensions["sni_hostname"] == "images.example.com"
    assert request.headers["accept-encoding"] == "identity"
    assert "cookie" not in request.headers


def test_plain_http_and_ip_literals_send_no_sni() -> None:
    recorder = Recorder({"/a": httpx.Response(200, content=b"a")})
    source = WebSource(
        DEFAULT,
        resolver=resolver_of({"images.example.com": ["2606:2800:220:1::1"]}),
        transport=httpx.MockTransport(recorder),
    )
    run(fetch(source, "http://images.example.com/a"))
    run(fetch(source, "https://93.184.216.34/a"))
    first, second = recorder.requests
    assert first.url.host == "2606:2800:220:1::1"
    assert first.headers["host"] == "images.example.com"
    assert "sni_hostname" not in first.extensions
    assert second.headers["host"] == "93.184.216.34"
    assert "sni_hostname" not in second.extensions


def test_next_checked_address_is_tried_when_connecting_fails() -> None:
    recorder = Recorder({"/a": httpx.Response(200, content=b"a")}, fail_on=frozenset({"2606:2800:220:1::1"}))
    source = WebSource(
        DEFAULT,
        resolver=resolver_of({"images.example.com": ["2606:2800:220:1::1", "93.184.216.34"]}),
        transport=httpx.MockTransport(recorder),
    )
    assert run(fetch(source, "http://images.example.com/a")) == (1, b"a")
    assert [request.url.host for request in recorder.requests] == ["2606:2800:220:1::1", "93.184.216.34"]


def test_connect_failure_on_every_address_is_a_download_failure() -> None:
    recorder = Recorder({}, fail_on=frozenset({"93.184.216.34"}))
    source = WebSource(
        DEFAULT,
        resolver=resolver_of({"images.example.com": ["93.184.216.34"]}),
        transport=httpx.MockTransport(recorder),
    )
    with pytest.raises(
        DownloadFailed, match=r"Could not connect to images\.example\.com \(connection refused\)"
    ):
        run(fetch(source, "http://images.example.com/a"))


def test_second_lookup_turning_private_is_refused_before_connecting() -> None:
    answers = iter([["93.184.216.34"], ["10.0.0.7"]])

    async def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    recorder = Recorder({"/start": httpx.Response(302, headers={"Location": "/image"})})
    source = WebSource(DEFAULT, resolver=rebinding, transport=httpx.MockTransport(recorder))
    with pytest.raises(InvalidInput) as info:
        run(fetch(source, "http://flip.example/start"))
    message = info.value.message
    assert message.startswith(PREFIX + "http://flip.example/image (flip.example resolves to 10.0.0.7")
    assert message.endswith("The server at http://flip.example/start redirected there.")
    assert [request.url.path for request in recorder.requests] == ["/start"]


def test_redirect_to_a_name_with_a_private_address_is_refused() -> None:
    recorder = Recorder({"/start": httpx.Response(301, headers={"Location": "http://internal.example/x"})})
    source = WebSource(
        DEFAULT,
        resolver=resolver_of({"images.example.com": ["93.184.216.34"], "internal.example": ["192.168.0.10"]}),
        transport=httpx.MockTransport(recorder),
    )
    with pytest.raises(InvalidInput, match=r"192\.168\.0\.10 is a private address"):
        run(fetch(source, "http://images.example.com/start"))
    assert len(recorder.requests) == 1


def test_web_source_rejects_nonsense_settings() -> None:
    settings: list[dict[str, Any]] = [
        {"timeout": 0},
        {"max_redirects": -1},
        {"max_size": -1},
        {"chunk_size": 0},
    ]
    for kwargs in settings:
        with pytest.raises(ValueError, match=r"must be positive|cannot be negative"):
            WebSource(DEFAULT, **kwargs)
