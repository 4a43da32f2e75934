"""WebSource against a real HTTP server on 127.0.0.1.

The server is the standard library's, in a thread, with one route per behaviour (full bodies with and
without Content-Length, redirect chains, bodies cut short, stalls, errors). Since 127.0.0.1 is a
loopback address the filters here allow it explicitly (``allow_private_networks`` or the address in
``allowed_hosts``) and allow the server's port. Names such as ``images.test`` are resolved by fake
resolvers to 127.0.0.1: they exist in no DNS, so a download that works proves the connection went to
the checked address and not to a second lookup. A second server speaks TLS with a certificate for
``images.test`` from a throw-away CA, to show that the name (not the address) is sent as SNI and
verified.
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
import threading
import time
from collections.abc import Coroutine, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from glimpse.domain.url_rules import ImportFilter
from glimpse.errors import DownloadFailed, InvalidInput, TooLarge
from glimpse.jobs.web_source import WebSource
from glimpse.redaction import redact_url

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")
MiB = 1024 * 1024
STALL_LIMIT = 10.0  # seconds a stalling route waits at most, so a failing test cannot hang the server
LAST_MODIFIED = "Tue, 01 Dec 2026 10:00:00 GMT"


def pattern(size: int) -> bytes:
    """Deterministic, non-repeating-looking bytes, so a reordered or dropped chunk is noticed."""
    block = bytes(range(251)) * (64 * 1024 // 251 + 1)
    return (block * (size // len(block) + 1))[:size]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LocalServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        self.server.seen.append((url.path, self.headers.get("Host", "")))
        route = getattr(self, "route_" + url.path.strip("/").replace("-", "_"), None)
        if route is None:
            self.send_error(404)
            return
        route(query)

    def route_data(self, query: dict[str, str]) -> None:
        body = pattern(int(query["size"]))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for start in range(0, len(body), 64 * 1024):
            self.wfile.write(body[start : start + 64 * 1024])

    def route_chunked(self, query: dict[str, str]) -> None:
        body = pattern(int(query["size"]))
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for start in range(0, len(body), 100_000):
            piece = body[start : start + 100_000]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        if query.get("cut") != "1":
            self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True

    def route_host(self, query: dict[str, str]) -> None:
        body = self.headers.get("Host", "").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def route_token(self, query: dict[str, str]) -> None:
        body = self.headers.get("X-Auth-Token", "-").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def route_chain(self, query: dict[str, str]) -> None:
        """``/chain?n=3`` redirects to ``n=2``, ... with a different redirect status each time."""
        left = int(query["n"])
        if left == 0:
            self.route_data({"size": query.get("size", "1000")})
            return
        status = (301, 302, 303, 307, 308)[left % 5]
        self.redirect(status, f"/chain?n={left - 1}&size={query.get('size', '1000')}")

    def route_redirect(self, query: dict[str, str]) -> None:
        self.redirect(int(query.get("status", "302")), query["to"])

    def route_loop(self, query: dict[str, str]) -> None:
        self.redirect(302, "/loop")

    def route_nowhere(self, query: dict[str, str]) -> None:
        self.send_response(302)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def route_short(self, query: dict[str, str]) -> None:
        """Announces ``size`` bytes, sends ``send`` of them, then closes the connection."""
        self.send_response(200)
        self.send_header("Content-Length", query["size"])
        self.end_headers()
        self.wfile.write(pattern(int(query["send"])))
        self.wfile.flush()
        self.close_connection = True

    def route_status(self, query: dict[str, str]) -> None:
        code = int(query["code"])
        body = b"nope"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def route_stall_headers(self, query: dict[str, str]) -> None:
        self.server.stop.wait(STALL_LIMIT)
        self.close_connection = True

    def route_stall_body(self, query: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(pattern(10))
        self.wfile.flush()
        self.server.stop.wait(STALL_LIMIT)
        self.close_connection = True

    def route_resumable(self, query: dict[str, str]) -> None:
        """``size`` bytes offered as byte ranges with the validator ``validator`` (``lm``: a
        Last-Modified date only, ``weak``: a weak ETag only); every answer is cut after ``cut``
        bytes. The Range and If-Range of each request are recorded in ``server.ranges``."""
        size, cut = int(query["size"]), int(query["cut"])
        wanted, given = self.headers.get("Range"), self.headers.get("If-Range")
        self.server.ranges.append((wanted, given))
        validator = {"lm": ("Last-Modified", LAST_MODIFIED), "weak": ("ETag", 'W/"w1"')}[query["validator"]]
        start = int(wanted.removeprefix("bytes=").rstrip("-")) if wanted and given == validator[1] else 0
        body = pattern(size)[start:]
        self.send_response(206 if start else 200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header(*validator)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:cut])
        self.wfile.flush()
        self.close_connection = True

    def redirect(self, status: int, location: str) -> None:
        self.send_response(status)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


class LocalServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.stop = threading.Event()
        self.seen: list[tuple[str, str]] = []
        self.ranges: list[tuple[str | None, str | None]] = []
        self.server_names: list[str | None] = []
        self.scheme = "http"
        if tls is not None:
            tls.sni_callback = self._record_sni
            # The handshake happens on the first read, in the request's own thread.
            self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
            self.scheme = "https"

    def _record_sni(self, connection: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        self.server_names.append(name)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up early (the size cap, an early stop, a refused certificate) are expected."""

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"


def serve(httpd: LocalServer) -> Iterator[LocalServer]:
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    yield from serve(LocalServer())


class Certificates:
    """A throw-away CA and a server certificate for ``images.test`` signed by it."""

    def __init__(self, directory: Path) -> None:
        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web-download test CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "images.test")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("images.test")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        self.ca_pem = ca.public_bytes(serialization.Encoding.PEM).decode()
        self.chain = directory / "server.pem"
        self.chain.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            + leaf.public_bytes(serialization.Encoding.PEM)
        )

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.chain)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.ca_pem)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_server(certificates: Certificates) -> Iterator[LocalServer]:
    yield from serve(LocalServer(certificates.server_context()))


def run(coro: Coroutine[Any, Any, T], limit: float = 20.0) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(limit):
            return await coro

    return asyncio.run(bounded())


def private_ok(server: LocalServer) -> ImportFilter:
    return ImportFilter(allow_private_networks=True, allowed_ports=(server.port,))


def only_loopback_ip(server: LocalServer) -> ImportFilter:
    return ImportFilter(allowed_hosts=("127.0.0.1",), allowed_ports=(server.port,))


def fixed_resolver(table: dict[str, Sequence[str]], calls: list[str] | None = None) -> Any:
    async def resolve(host: str, port: int) -> Sequence[str]:
        if calls is not None:
            calls.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


class Fetched:
    def __init__(self, size: int | None, chunks: list[bytes]) -> None:
        self.size = size
        self.chunks = chunks
        self.body = b"".join(chunks)


async def fetch(source: WebSource, url: str, headers: dict[str, str] | None = None) -> Fetched:
    async with source.stream(url, headers) as download:
        return Fetched(download.size, [chunk async for chunk in download.chunks])


# -- whole downloads ---------------------------------------------------------------------------------


@pytest.mark.parametrize("make_filter", [private_ok, only_loopback_ip])
def test_full_download_with_content_length(server: LocalServer, make_filter: Any) -> None:
    size = 3 * MiB + 7
    got = run(fetch(WebSource(make_filter(server)), server.url(f"/data?size={size}")))
    assert got.size == size
    assert got.body == pattern(size)
    assert all(len(chunk) >= 256 * 1024 for chunk in got.chunks[:-1])
    assert len(got.chunks) == 4


def test_full_download_chunked_has_no_announced_size(server: LocalServer) -> None:
    size = 2 * MiB + 12345
    got = run(fetch(WebSource(private_ok(server)), server.url(f"/chunked?size={size}")))
    assert got.size is None
    assert got.body == pattern(size)
    assert all(len(chunk) >= 256 * 1024 for chunk in got.chunks[:-1])


def test_empty_body(server: LocalServer) -> None:
    got = run(fetch(WebSource(private_ok(server)), server.url("/data?size=0")))
    assert (got.size, got.body) == (0, b"")


def test_connection_goes_to_the_checked_address_with_the_name_as_host(server: LocalServer) -> None:
    calls: list[str] = []
    flt = ImportFilter(allowed_hosts=("images.test",), allowed_ports=(server.port,))
    source = WebSource(flt, resolver=fixed_resolver({"images.test": ["127.0.0.1"]}, calls))
    got = run(fetch(source, server.url("/host", host="Images.TEST")))
    assert got.body == f"images.test:{server.port}".encode()
    assert calls == ["images.test"]


# -- redirects ---------------------------------------------------------------------------------------


def test_redirect_chain_is_followed(server: LocalServer) -> None:
    before = len(server.seen)
    got = run(fetch(WebSource(private_ok(server), max_redirects=5), server.url("/chain?n=5&size=5000")))
    assert got.body == pattern(5000)
    assert [path for path, _ in server.seen[before:]] == ["/chain"] * 6


def test_redirect_to_another_name_is_checked_and_resolved_again(server: LocalServer) -> None:
    calls: list[str] = []
    flt = ImportFilter(allowed_hosts=("a.test", "b.test"), allowed_ports=(server.port,))
    resolver = fixed_resolver({"a.test": ["127.0.0.1"], "b.test": ["127.0.0.1"]}, calls)
    target = server.url("/host", host="b.test")
    got = run(fetch(WebSource(flt, resolver=resolver), server.url(f"/redirect?to={target}", host="a.test")))
    assert got.body == f"b.test:{server.port}".encode()
    assert calls == ["a.test", "b.test"]


def test_extra_headers_go_to_the_first_origin_only(server: LocalServer) -> None:
    """A glance-download's token follows a redirect within the image service, never to another host."""
    flt = ImportFilter(allowed_hosts=("a.test", "b.test"), allowed_ports=(server.port,))
    resolver = fixed_resolver({"a.test": ["127.0.0.1"], "b.test": ["127.0.0.1"]})
    source = WebSource(flt, resolver=resolver)
    token = {"X-Auth-Token": "secret-token"}
    same = server.url("/redirect?to=/token", host="a.test")
    assert run(fetch(source, same, token)).body == b"secret-token"
    elsewhere = server.url("/token", host="b.test")
    away = server.url(f"/redirect?to={elsewhere}", host="a.test")
    assert run(fetch(source, away, token)).body == b"-"


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://169.254.169.254:{port}/latest/meta-data/", "169.254.169.254 is the cloud metadata service"),
        ("http://0xa9fea9fe:{port}/latest/meta-data/", "169.254.169.254 is the cloud metadata service"),
        ("http://[::ffff:169.254.169.254]:{port}/", "stands for 169.254.169.254"),
        ("http://127.0.0.1:1/", "port 1 is not in allowed_ports"),
        ("http://127.0.0.1/", "port 80 is not in allowed_ports"),
        ("ftp://127.0.0.1/image", "only absolute http and https"),
        ("http://user:pw@127.0.0.1/", "user names and passwords"),
    ],
)
def test_redirect_to_a_forbidden_place_is_refused(server: LocalServer, target: str, reason: str) -> None:
    target = target.format(port=server.port)
    started = time.monotonic()
    start = server.url(f"/redirect?to={target}")
    with pytest.raises(InvalidInput) as info:
        run(fetch(WebSource(private_ok(server)), start))
    message = info.value.message
    # Both URLs as written, except a password (redact_url leaves the others unchanged).
    assert message.startswith(f"URI for web-download does not pass filtering: {redact_url(target)} (")
    assert reason in message
    assert message.endswith(f"The server at {redact_url(start)} redirected there.")
    assert time.monotonic() - started < 5  # refused, not attempted and timed out


def test_redirect_to_a_host_outside_allowed_hosts_is_refused(server: LocalServer) -> None:
    target = server.url("/data?size=10", host="localhost")
    with pytest.raises(InvalidInput, match="'localhost' is not in allowed_hosts"):
        run(fetch(WebSource(only_loopback_ip(server)), server.url(f"/redirect?to={target}")))


def test_redirect_to_a_name_resolving_to_metadata_is_refused(server: LocalServer) -> None:
    resolver = fixed_resolver({"metadata.test": ["169.254.169.254"]})
    target = f"http://metadata.test:{server.port}/latest/meta-data/"
    with pytest.raises(InvalidInput, match=r"metadata\.test resolves to 169\.254\.169\.254"):
        run(fetch(WebSource(private_ok(server), resolver=resolver), server.url(f"/redirect?to={target}")))


def test_dns_rebinding_between_hops_is_refused(server: LocalServer) -> None:
    answers = iter([["127.0.0.1"], ["169.254.169.254"]])

    async def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    before = len(server.seen)
    url = server.url("/redirect?to=/data%3Fsize%3D10", host="flip.test")
    with pytest.raises(InvalidInput, match=r"flip\.test resolves to 169\.254\.169\.254"):
        run(fetch(WebSource(private_ok(server), resolver=rebinding), url))
    assert [path for path, _ in server.seen[before:]] == ["/redirect"]


def test_too_many_redirects(server: LocalServer) -> None:
    with pytest.raises(DownloadFailed, match="redirected more than 3 times") as info:
        run(fetch(WebSource(private_ok(server), max_redirects=3), server.url("/loop")))
    assert "/loop" in info.value.message
    with pytest.raises(DownloadFailed, match="redirected more than 4 times"):
        run(fetch(WebSource(private_ok(server), max_redirects=4), server.url("/chain?n=5")))
    with pytest.raises(DownloadFailed, match="redirected more than 0 times"):
        run(fetch(WebSource(private_ok(server), max_redirects=0), server.url("/chain?n=1")))


def test_redirect_without_location(server: LocalServer) -> None:
    with pytest.raises(DownloadFailed, match="answered 302 \\(a redirect\\) without saying where to"):
        run(fetch(WebSource(private_ok(server)), server.url("/nowhere")))


# -- size cap, cut-short bodies, errors, timeouts -------------------------------------------------------


def test_max_size_exceeded_mid_stream(server: LocalServer) -> None:
    received: list[int] = []

    async def scenario() -> None:
        source = WebSource(private_ok(server), max_size=MiB + 10)
        async with source.stream(server.url(f"/chunked?size={3 * MiB}")) as download:
            assert download.size is None
            async for chunk in download.chunks:
                received.append(len(chunk))

    with pytest.raises(TooLarge) as info:
        run(scenario())
    assert received == [MiB]  # the first chunk arrived, the second crossed the cap
    assert f"larger than the {MiB + 10} bytes allowed" in info.value.message
    assert f"stopped after {2 * MiB} bytes" in info.value.message


def test_announced_size_over_the_cap_is_refused_before_reading(server: LocalServer) -> None:
    with pytest.raises(TooLarge, match=f"is {2 * MiB} bytes, more than the {MiB} bytes allowed"):
        run(fetch(WebSource(private_ok(server), max_size=MiB), server.url(f"/data?size={2 * MiB}")))


def test_exactly_max_size_is_fine(server: LocalServer) -> None:
    got = run(fetch(WebSource(private_ok(server), max_size=MiB), server.url(f"/chunked?size={MiB}")))
    assert len(got.body) == MiB


def test_body_cut_short_with_content_length(server: LocalServer) -> None:
    with pytest.raises(DownloadFailed) as info:
        run(fetch(WebSource(private_ok(server)), server.url("/short?size=1000&send=100")))
    assert info.value.message == (
        "The server closed the connection after 100 of 1000 bytes; check the URL and import again."
    )


def test_large_body_cut_short_counts_the_bytes_that_arrived(server: LocalServer) -> None:
    with pytest.raises(DownloadFailed, match=f"after {MiB + 5} of {3 * MiB} bytes"):
        run(fetch(WebSource(private_ok(server)), server.url(f"/short?size={3 * MiB}&send={MiB + 5}")))


def test_chunked_body_cut_short(server: LocalServer) -> None:
    with pytest.raises(DownloadFailed, match="after 300000 bytes, before the end of the body"):
        run(fetch(WebSource(private_ok(server)), server.url("/chunked?size=300000&cut=1")))


def test_a_cut_body_resumes_from_where_it_stopped_with_last_modified_as_validator() -> None:
    for httpd in serve(LocalServer()):
        url = httpd.url("/resumable?size=1000000&cut=300000&validator=lm")
        got = run(fetch(WebSource(private_ok(httpd), retries=5, chunk_size=100_000), url))
        assert got.body == pattern(1_000_000)
        assert got.size == 1_000_000
        # Each answer brought 300000 bytes: three resumes, each from the end of the last one.
        assert httpd.ranges == [
            (None, None),
            ("bytes=300000-", LAST_MODIFIED),
            ("bytes=600000-", LAST_MODIFIED),
            ("bytes=900000-", LAST_MODIFIED),
        ]


def test_resumes_are_bounded_by_the_retries() -> None:
    for httpd in serve(LocalServer()):
        url = httpd.url("/resumable?size=1000000&cut=300000&validator=lm")
        with pytest.raises(DownloadFailed) as info:
            run(fetch(WebSource(private_ok(httpd), retries=2, chunk_size=100_000), url))
        assert info.value.message == (
            "The server closed the connection after 900000 of 1000000 bytes, again after 2 resume(s) "
            "([task] web_download_retries = 2); check the URL and import again."
        )
        assert len(httpd.ranges) == 3


def test_a_weak_etag_alone_cannot_resume() -> None:
    for httpd in serve(LocalServer()):
        url = httpd.url("/resumable?size=1000&cut=100&validator=weak")
        with pytest.raises(DownloadFailed, match=r"after 100 of 1000 bytes, and the server does not offer"):
            run(fetch(WebSource(private_ok(httpd), retries=3), url))
        assert httpd.ranges == [(None, None)]


@pytest.mark.parametrize(("code", "words"), [(404, "404 Not Found"), (500, "500 Internal Server Error")])
def test_error_status(server: LocalServer, code: int, words: str) -> None:
    url = server.url(f"/status?code={code}")
    with pytest.raises(DownloadFailed) as info:
        run(fetch(WebSource(private_ok(server)), url))
    assert info.value.message == f"The server at {url} answered {words}; check the URL and import again."


def test_server_that_never_answers_times_out(server: LocalServer) -> None:
    started = time.monotonic()
    with pytest.raises(DownloadFailed, match=r"did not answer within 0\.5 seconds"):
        run(fetch(WebSource(private_ok(server), timeout=0.5), server.url("/stall-headers")))
    assert time.monotonic() - started < 5


def test_server_that_stalls_mid_body_times_out(server: LocalServer) -> None:
    started = time.monotonic()
    with pytest.raises(DownloadFailed, match=r"sent nothing for 0\.5 seconds after 10 of 1000 bytes"):
        run(fetch(WebSource(private_ok(server), timeout=0.5), server.url("/stall-body")))
    assert time.monotonic() - started < 5


def test_nothing_listening_is_a_download_failure(server: LocalServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]  # bound but not listening: connections are refused
        flt = ImportFilter(allow_private_networks=True, allowed_ports=(free_port,))
        with pytest.raises(DownloadFailed, match=f"Could not connect to 127.0.0.1:{free_port}"):
            run(fetch(WebSource(flt, timeout=2), f"http://127.0.0.1:{free_port}/image"))


def test_unknown_name_is_a_download_failure(server: LocalServer) -> None:
    flt = ImportFilter(allowed_ports=(server.port,))
    with pytest.raises(DownloadFailed, match="could not be resolved"):
        run(fetch(WebSource(flt, resolver=fixed_resolver({})), server.url("/data?size=1", host="gone.test")))


def test_stopping_early_closes_cleanly(server: LocalServer) -> None:
    async def scenario() -> bytes:
        async with WebSource(private_ok(server)).stream(server.url(f"/data?size={4 * MiB}")) as download:
            async for chunk in download.chunks:
                return chunk
        return b""

    assert run(scenario()) == pattern(MiB)


# -- TLS: connecting to the checked address, verifying the name ----------------------------------------


def tls_filter(server: LocalServer, *hosts: str) -> ImportFilter:
    return ImportFilter(allowed_hosts=hosts, allowed_ports=(server.port,))


def test_https_sends_the_name_as_sni_and_verifies_the_certificate_against_it(
    tls_server: LocalServer, certificates: Certificates
) -> None:
    calls: list[str] = []
    source = WebSource(
        tls_filter(tls_server, "images.test"),
        resolver=fixed_resolver({"images.test": ["127.0.0.1"]}, calls),
        verify=certificates.client_context(),
    )
    before = len(tls_server.server_names)
    got = run(fetch(source, tls_server.url("/host", host="images.test")))
    assert got.body == f"images.test:{tls_server.port}".encode()
    assert calls == ["images.test"]
    assert tls_server.server_names[before:] == ["images.test"]


def test_https_certificate_for_another_name_is_refused(
    tls_server: LocalServer, certificates: Certificates
) -> None:
    source = WebSource(
        tls_filter(tls_server, "other.test"),
        resolver=fixed_resolver({"other.test": ["127.0.0.1"]}),
        verify=certificates.client_context(),
        timeout=5,
    )
    with pytest.raises(
        DownloadFailed, match=r"Could not connect to other\.test:\d+ \(.*CERTIFICATE_VERIFY_FAILED"
    ):
        run(fetch(source, tls_server.url("/host", host="other.test")))


def test_https_to_an_ip_literal_verifies_against_the_address(
    tls_server: LocalServer, certificates: Certificates
) -> None:
    source = WebSource(tls_filter(tls_server, "127.0.0.1"), verify=certificates.client_context(), timeout=5)
    with pytest.raises(DownloadFailed, match="CERTIFICATE_VERIFY_FAILED"):
        run(fetch(source, tls_server.url("/host")))
