"""The web-download source: fetch an image from a user-given URL without letting that URL reach inside.

:class:`WebSource` connects only to an address it has just resolved (:mod:`glimpse.jobs.resolve`)
and checked with the rules of :mod:`glimpse.domain.url_rules` (the name goes into the Host header and
the TLS server name, and the certificate is verified against the name), follows redirects itself and
checks every hop again, and streams the body with a size cap, a timeout on silence and detection of
bodies cut short.

A body cut short (the connection dropped, or the server went silent for the read timeout) resumes
where it stopped, up to ``retries`` times: a new request for the rest (``Range: bytes=N-``), made
only when the first answer advertised ``Accept-Ranges: bytes`` and carried a validator (a strong
``ETag``, else ``Last-Modified``), which the request sends as ``If-Range`` so that a file changed in
the meantime is never stitched to the old one's first part. The caller sees one continuous stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any, Final, NamedTuple
from urllib.parse import urljoin

import httpx

from glimpse import __version__
from glimpse.domain.url_rules import ImportFilter, IPAddress, ParsedURL, check_url, shown_uri
from glimpse.errors import DownloadFailed, InvalidInput, TooLarge
from glimpse.jobs.resolve import Resolver, resolve_and_check, system_resolver

__all__ = ["CHUNK_SIZE", "Download", "DownloadFailed", "WebSource"]

log = logging.getLogger(__name__)

#: Bytes per chunk handed to the caller (the last chunk of a body may be shorter).
CHUNK_SIZE: Final = 1024 * 1024
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_USER_AGENT: Final = f"glimpse-web-download/{__version__}"
_DECIMAL = re.compile(r"[0-9]+")


# -- fetching ----------------------------------------------------------------------------------------


class Download(NamedTuple):
    """What :meth:`WebSource.stream` yields: the announced size (if known) and the body's chunks."""

    size: int | None
    chunks: AsyncIterator[bytes]


class WebSource:
    """Fetches a URL for web-download, checking it against the filter at every hop.

    ``timeout`` bounds every wait for the server (so a server that stops sending fails after
    ``timeout`` seconds of silence; a slow but steady one does not); ``connect_timeout`` (default:
    ``timeout``) bounds resolving a name and connecting. ``max_size`` caps the body (``None``: no
    cap). ``retries`` is how many times a body cut short may resume (see the module's docstring).
    ``transport`` and ``verify`` are passed to httpx; a transport is meant for tests.
    """

    def __init__(
        self,
        flt: ImportFilter,
        *,
        timeout: float = 60.0,
        connect_timeout: float | None = None,
        retries: int = 0,
        max_redirects: int = 5,
        max_size: int | None = None,
        resolver: Resolver = system_resolver,
        verify: ssl.SSLContext | bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        if timeout <= 0 or (connect_timeout is not None and connect_timeout <= 0):
            raise ValueError("timeouts must be positive.")
        if retries < 0:
            raise ValueError("retries cannot be negative.")
        if max_redirects < 0:
            raise ValueError("max_redirects cannot be negative.")
        if max_size is not None and max_size < 0:
            raise ValueError("max_size cannot be negative.")
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive.")
        self._filter = flt
        self._timeout = timeout
        self._connect_timeout = timeout if connect_timeout is None else connect_timeout
        self._retries = retries
        self._max_redirects = max_redirects
        self._max_size = max_size
        self._resolver = resolver
        self._verify = verify
        self._transport = transport
        self._chunk_size = chunk_size

    @contextlib.asynccontextmanager
    async def stream(self, url: str, headers: Mapping[str, str] | None = None) -> AsyncIterator[Download]:
        """Open ``url`` (following redirects) and yield its body; everything is closed on exit.

        ``headers`` (a token, for glance-download) are sent to the origin of ``url`` only: a
        redirect to another scheme, host or port is followed without them.

        Raises ``InvalidInput`` when the URL or a redirect target does not pass the filter,
        :class:`DownloadFailed` when the server cannot be reached, answers with an error or stops
        early, and ``TooLarge`` when the body is bigger than ``max_size``.
        """
        # No connection is ever reused (a pooled connection to an address could carry another
        # name's TLS session), nothing is read from the environment (a proxy would resolve names
        # itself) and no cookies are kept.
        async with httpx.AsyncClient(
            transport=self._transport,
            verify=self._verify,
            trust_env=False,
            follow_redirects=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        ) as client:
            response, parsed, sent = await self._open(client, url, headers or {})
            try:
                size = self._announced_size(response, parsed)
                chunks = self._body(client, response, parsed, sent)
                try:
                    yield Download(size, chunks)
                finally:
                    await chunks.aclose()
            finally:
                await response.aclose()

    async def _open(
        self, client: httpx.AsyncClient, url: str, headers: Mapping[str, str]
    ) -> tuple[httpx.Response, ParsedURL, Mapping[str, str]]:
        """The answer with the body, where it came from, and the headers sent there."""
        current, previous = url, None
        origin: tuple[str, str, int] | None = None
        for _ in range(self._max_redirects + 1):
            try:
                parsed = check_url(current, self._filter)
                addresses = await self._resolve(parsed, current)
            except InvalidInput as exc:
                if previous is None:
                    raise
                raise InvalidInput(f"{exc.message} The server at {previous} redirected there.") from None
            here = (parsed.scheme, parsed.host, parsed.port)
            origin = origin or here
            extra = headers if here == origin else {}
            response = await self._send(client, parsed, addresses, extra)
            status = response.status_code
            if status in REDIRECT_STATUSES:
                location = response.headers.get("location")
                await response.aclose()
                if not location:
                    raise DownloadFailed(
                        f"The server at {parsed.shown} answered {status} (a redirect) without saying where "
                        "to; check the URL and import again."
                    )
                previous, current = parsed.shown, urljoin(parsed.url, location.strip())
                log.debug("web-download: %s redirected (%d) to %s", previous, status, shown_uri(current))
                continue
            if not 200 <= status < 300:
                await response.aclose()
                raise DownloadFailed(
                    f"The server at {parsed.shown} answered {status} {response.reason_phrase}; "
                    "check the URL and import again.",
                    status=status,
                )
            return response, parsed, extra
        raise DownloadFailed(
            f"The URL redirected more than {self._max_redirects} times (the last redirect went to "
            f"{shown_uri(current)}); import from the final URL or ask its owner to fix the redirects."
        )

    async def _resolve(self, parsed: ParsedURL, url: str) -> list[IPAddress]:
        if parsed.address is not None:
            return [parsed.address]  # check_url has applied the address rules already
        try:
            async with asyncio.timeout(self._connect_timeout):
                answers = await resolve_and_check(
                    parsed.host, parsed.port, self._filter, self._resolver, uri=url
                )
        except TimeoutError:
            raise DownloadFailed(
                f"Looking up {parsed.host} took longer than {self._connect_timeout:g} seconds; "
                "check the URL and import again."
            ) from None
        return [ipaddress.ip_address(answer) for answer in answers]

    def _request(
        self, parsed: ParsedURL, address: IPAddress, extra: Mapping[str, str] | None = None
    ) -> httpx.Request:
        host = f"[{address}]" if address.version == 6 else str(address)
        timeout = httpx.Timeout(self._timeout, connect=self._connect_timeout)
        extensions: dict[str, Any] = {"timeout": timeout.as_dict()}
        if parsed.scheme == "https" and parsed.address is None:
            # TLS: send the name as SNI and verify the certificate against it, not the address.
            extensions["sni_hostname"] = parsed.host
        return httpx.Request(
            "GET",
            f"{parsed.scheme}://{host}:{parsed.port}{parsed.target}",
            headers={
                "Host": parsed.authority,
                "User-Agent": _USER_AGENT,
                "Accept": "*/*",
                "Accept-Encoding": "identity",
                **(extra or {}),
            },
            extensions=extensions,
        )

    async def _send(
        self,
        client: httpx.AsyncClient,
        parsed: ParsedURL,
        addresses: Sequence[IPAddress],
        extra: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        failure: httpx.TransportError | None = None
        for address in addresses:
            try:
                return await client.send(self._request(parsed, address, extra), stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                log.debug("web-download: connecting to %s at %s failed: %s", parsed.host, address, exc)
                failure = exc
            except httpx.TimeoutException as exc:
                raise DownloadFailed(
                    f"The server at {parsed.shown} did not answer within {self._timeout:g} seconds; "
                    "check the URL and import again."
                ) from exc
            except httpx.TransportError as exc:
                raise DownloadFailed(
                    f"The request to {parsed.shown} failed ({_describe(exc)}); "
                    "check the URL and import again."
                ) from exc
        if isinstance(failure, httpx.ConnectTimeout):
            detail = f"no answer within {self._connect_timeout:g} seconds"
        else:
            detail = _describe(failure) if failure is not None else "no address to connect to"
        raise DownloadFailed(
            f"Could not connect to {parsed.authority} ({detail}); check the URL and import again."
        ) from failure

    def _announced_size(self, response: httpx.Response, parsed: ParsedURL) -> int | None:
        """The body's size from Content-Length when it counts the image's bytes; refuses too large."""
        length = _content_length(response)
        if length is None or not _is_identity(response):
            return None
        if self._max_size is not None and length > self._max_size:
            raise TooLarge(
                f"The image at {parsed.shown} is {length} bytes, more than the {self._max_size} bytes "
                "allowed; it was not downloaded."
            )
        return length

    async def _body(
        self, client: httpx.AsyncClient, response: httpx.Response, parsed: ParsedURL, sent: Mapping[str, str]
    ) -> AsyncGenerator[bytes, None]:
        length = _content_length(response)
        identity = _is_identity(response)
        validator = _validator(response)
        received = 0
        resumes = 0
        current = response

        base = 0  # where the body of ``current`` starts in the file

        def progress() -> str:
            # Bytes off the wire: what the caller got plus what was still buffered for the next chunk.
            wire = current.num_bytes_downloaded
            done = max(received, base + wire) if identity else wire
            return f"{done} of {length} bytes" if length is not None else f"{done} bytes"

        broken: tuple[str, Exception | None]
        try:
            while True:
                try:
                    async for chunk in current.aiter_bytes(self._chunk_size):
                        received += len(chunk)
                        if self._max_size is not None and received > self._max_size:
                            raise TooLarge(
                                f"The image at {parsed.shown} is larger than the {self._max_size} bytes "
                                f"allowed; the download was stopped after {received} bytes."
                            )
                        yield chunk
                except httpx.DecodingError as exc:
                    raise DownloadFailed(
                        f"The body sent by {parsed.shown} could not be decoded ({exc}); check the URL and "
                        "import again."
                    ) from exc
                except httpx.TimeoutException as exc:
                    broken = (
                        f"The server at {parsed.shown} sent nothing for {self._timeout:g} seconds after "
                        f"{progress()}",
                        exc,
                    )
                except httpx.RemoteProtocolError as exc:
                    broken = (_cut_short_text(progress(), length), exc)
                except httpx.TransportError as exc:
                    broken = (
                        f"The download from {parsed.shown} failed after {progress()} ({_describe(exc)})",
                        exc,
                    )
                else:
                    if length is None or not identity or received >= length:
                        return
                    broken = (_cut_short_text(progress(), length), None)
                what, cause = broken
                if self._retries == 0:
                    raise DownloadFailed(f"{what}; check the URL and import again.") from cause
                refusal = _why_not_resume(identity, validator, resumes, self._retries)
                if refusal is not None:
                    raise DownloadFailed(f"{what}, {refusal}; check the URL and import again.") from cause
                assert validator is not None
                resumes += 1
                log.info(
                    "web-download: %s; resuming at byte %d (%d of %d)", what, received, resumes, self._retries
                )
                if current is not response:
                    await current.aclose()
                    current = response  # closed already; the first response is closed by stream()
                current = await self._resume(client, parsed, sent, received, validator, what)
                base = received
                length = _range_total(current, length)
        finally:
            if current is not response:
                await current.aclose()

    async def _resume(
        self,
        client: httpx.AsyncClient,
        parsed: ParsedURL,
        sent: Mapping[str, str],
        offset: int,
        validator: str,
        what: str,
    ) -> httpx.Response:
        """Ask for the body from ``offset`` on, provided the file is still the one first answered."""
        addresses = await self._resolve(parsed, parsed.url)
        try:
            response = await self._send(
                client, parsed, addresses, {**sent, "Range": f"bytes={offset}-", "If-Range": validator}
            )
        except DownloadFailed as exc:
            raise DownloadFailed(f"{what}, and resuming it failed: {exc.message}") from None
        status = response.status_code
        start = _range_start(response)
        etag = response.headers.get("etag")
        changed = status == 200 or (etag is not None and validator.startswith('"') and etag != validator)
        if status == 206 and start == offset and _is_identity(response) and not changed:
            return response
        await response.aclose()
        if changed:
            raise DownloadFailed(
                f"{what}, and the file changed on the server since the download began (it no longer "
                f"matches {validator}), so the download could not resume; import again to download "
                "the new file."
            )
        raise DownloadFailed(
            f"{what}, and the server answered the request for the rest (from byte {offset}) with "
            f"{status} {response.reason_phrase}, so the download could not resume; check the URL "
            "and import again."
        )


def _validator(response: httpx.Response) -> str | None:
    """What ``If-Range`` can send to resume this body: a strong ETag, else Last-Modified; None when
    the server does not accept byte ranges or gave no validator."""
    ranges = response.headers.get("accept-ranges", "")
    if "bytes" not in [unit.strip().lower() for unit in ranges.split(",")]:
        return None
    etag: str | None = response.headers.get("etag")
    if etag and not etag.startswith("W/"):
        return etag
    modified: str | None = response.headers.get("last-modified")
    return modified or None


def _why_not_resume(identity: bool, validator: str | None, resumes: int, retries: int) -> str | None:
    """Why a body cut short cannot resume (None: it can)."""
    if not identity:
        return "and the body was encoded, so it cannot resume where it stopped"
    if validator is None:
        return (
            "and the server does not offer to resume (no 'Accept-Ranges: bytes' with an ETag or "
            "Last-Modified), so the download could not resume"
        )
    if resumes >= retries:
        return f"again after {resumes} resume(s) ([task] web_download_retries = {retries})"
    return None


_CONTENT_RANGE = re.compile(r"bytes\s+([0-9]+)-([0-9]+)/([0-9]+|\*)")


def _range_start(response: httpx.Response) -> int | None:
    match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
    return int(match.group(1)) if match else None


def _range_total(response: httpx.Response, known: int | None) -> int | None:
    match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
    if match is None or match.group(3) == "*":
        return known
    return int(match.group(3))


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    return int(value) if value is not None and _DECIMAL.fullmatch(value) else None


def _is_identity(response: httpx.Response) -> bool:
    encoding: str = response.headers.get("content-encoding", "identity")
    return encoding.strip().lower() == "identity"


def _cut_short_text(progress: str, length: int | None) -> str:
    ending = "" if length is not None else ", before the end of the body"
    return f"The server closed the connection after {progress}{ending}"


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
