"""Connection settings the OpenStack way: clouds.yaml, ``OS_*`` variables and Keystone tokens.

The work is done by openstacksdk's config loader (which files and variables mean what) and by a
keystoneauth1 session (getting, caching and renewing tokens, reading the service catalog). Both are
the optional extra ``glimpse-client[openstack]`` and are imported only when one of these functions
is called, so the SDK itself keeps depending on httpx alone.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import AsyncGenerator, Generator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import httpx

from ._config import ClientConfig
from ._exceptions import GlimpseClientError, TransportError, error_from_response

if TYPE_CHECKING:
    import argparse

    from keystoneauth1.session import Session

EXTRA_HINT = "pip install 'glimpse-client[openstack]'"
IMAGE_SERVICE = "image"
# The SDK's paths start with /v2, so a catalog URL that already ends with the version loses it.
_VERSION_SUFFIX = re.compile(r"/v2(\.\d+)?/*$")


def _require_openstack() -> None:
    try:
        import keystoneauth1.session  # noqa: F401
        import openstack.config  # noqa: F401
    except ImportError as exc:
        raise GlimpseClientError(
            "Reading clouds.yaml, OS_* variables or a Keystone session needs openstacksdk and "
            f"keystoneauth1, which come with the optional extra: {EXTRA_HINT} ({exc})"
        ) from exc


@contextmanager
def _openstack_errors(doing: str) -> Iterator[None]:
    """Turn keystoneauth's and openstacksdk's exceptions into the SDK's own."""
    from keystoneauth1 import exceptions as ks_exceptions
    from openstack import exceptions as sdk_exceptions

    try:
        yield
    except GlimpseClientError:
        raise
    except ks_exceptions.ConnectionError as exc:
        raise TransportError(f"{doing}: {exc}") from exc
    except ks_exceptions.HttpError as exc:
        response = httpx.Response(
            exc.http_status or 500,
            json={"message": f"{doing}: {exc.message}"},
            headers={"x-openstack-request-id": exc.request_id or ""},
        )
        raise error_from_response(response) from exc
    except (ks_exceptions.ClientException, sdk_exceptions.SDKException) as exc:
        raise GlimpseClientError(f"{doing}: {exc}") from exc


def _ssl_context(verify: bool | str | None, cert: str | tuple[str, str] | None) -> bool | ssl.SSLContext:
    """httpx's ``verify`` for a keystoneauth session's ``verify`` (bool or CA bundle) and ``cert``."""
    if isinstance(verify, str) or cert is not None:
        context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
        if verify is False:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if isinstance(cert, tuple):
            context.load_cert_chain(*cert)
        elif cert is not None:
            context.load_cert_chain(cert)
        return context
    return verify is not False


def _image_endpoint(url: str) -> str:
    return _VERSION_SUFFIX.sub("", url.rstrip("/")) or url


class SessionAuth(httpx.Auth):
    """Takes the credentials of every request from a keystoneauth session.

    The headers come from the session's auth plugin (``X-Auth-Token`` for Keystone tokens), which
    fetches a token the first time and a new one when keystoneauth finds the current one about to
    expire. When the server still answers 401 the plugin is invalidated and the request sent once
    more with a fresh token, if the plugin can get one (a fixed admin token cannot) and the body
    can be sent again (a streamed upload cannot). The session's ``additional_headers`` go along.
    No token is sent with the no-auth plugin (``auth_type: none``).
    """

    def __init__(self, session: Session) -> None:
        from keystoneauth1.noauth import NoAuth

        self.session = session
        self._sends_token = session.auth is not None and not isinstance(session.auth, NoAuth)

    def _headers(self) -> dict[str, str]:
        headers = dict(self.session.additional_headers)
        if self._sends_token:
            with _openstack_errors("Getting a token from Keystone failed"):
                headers.update(self.session.get_auth_headers() or {})
        return headers

    def project_id(self) -> str | None:
        """The project the session's token is scoped to; ``None`` without a token (no-auth)."""
        if not self._sends_token:
            return None
        with _openstack_errors("Getting a token from Keystone failed"):
            project: str | None = self.session.get_project_id()
        return project

    def _invalidate(self) -> bool:
        return self._sends_token and self.session.invalidate()

    @staticmethod
    def _retry(request: httpx.Request, response: httpx.Response) -> bool:
        return response.status_code == 401 and isinstance(request.stream, httpx.ByteStream)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers.update(self._headers())
        response = yield request
        if self._retry(request, response) and self._invalidate():
            request.headers.update(self._headers())
            yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        # keystoneauth talks to Keystone synchronously: keep that off the event loop.
        request.headers.update(await anyio.to_thread.run_sync(self._headers))
        response = yield request
        if self._retry(request, response) and await anyio.to_thread.run_sync(self._invalidate):
            request.headers.update(await anyio.to_thread.run_sync(self._headers))
            yield request


def _from_session(session: Session, endpoint: str, timeout: Any) -> ClientConfig:
    config = ClientConfig(
        endpoint=_image_endpoint(endpoint),
        auth=SessionAuth(session),
        verify=_ssl_context(session.verify, session.cert),
    )
    return replace(config, timeout=float(timeout)) if timeout else config


def config_from_session(
    session: Session,
    *,
    interface: str | None = None,
    region_name: str | None = None,
    endpoint_override: str | None = None,
) -> ClientConfig:
    """A configuration that sends the session's credentials to its image endpoint.

    The endpoint is ``endpoint_override`` when given, else the ``image`` service of the session's
    catalog for ``interface`` (default ``public``) and ``region_name``; a trailing ``/v2`` is dropped.
    Tokens come from the session as described in :class:`SessionAuth`.
    """
    _require_openstack()
    endpoint = endpoint_override
    if not endpoint:
        with _openstack_errors("Finding the image endpoint in the Keystone catalog failed"):
            endpoint = session.get_endpoint(
                service_type=IMAGE_SERVICE, interface=interface or "public", region_name=region_name
            )
    if not endpoint:
        raise GlimpseClientError(
            f"The catalog has no image endpoint (interface {interface or 'public'}, region "
            f"{region_name or 'any'}); pass endpoint_override."
        )
    return _from_session(session, endpoint, session.timeout)


def config_from_cloud(
    cloud: str | None = None, *, argparse: argparse.Namespace | None = None, **options: Any
) -> ClientConfig:
    """A configuration from clouds.yaml (and secure.yaml), ``OS_*`` variables and ``options``.

    This is openstacksdk's loader, so everything it reads works: ``auth_type`` (``password``,
    ``token``, ``v3applicationcredential``, ``admin_token``, ``none``...), ``region_name``,
    ``interface``, ``image_endpoint_override`` (or ``endpoint_override``), ``cacert``, ``insecure``,
    ``api_timeout``. ``cloud`` names the cloud (default: ``OS_CLOUD``, or the environment alone);
    ``argparse`` takes options parsed by openstacksdk's ``register_argparse_arguments``;
    ``load_yaml_config=False`` and ``load_envvars=False`` turn the files or the variables off.

    The image endpoint is the override when set, else the catalog's ``image`` service for the
    cloud's interface and region. With ``auth_type: none`` no token is sent and the endpoint must be
    given (``image_endpoint_override``, or ``auth: {endpoint: ...}``).
    """
    _require_openstack()
    from openstack.config import OpenStackConfig

    load_yaml = bool(options.pop("load_yaml_config", True))
    load_env = bool(options.pop("load_envvars", True))
    with _openstack_errors("Reading the cloud configuration failed"):
        loader = OpenStackConfig(load_yaml_config=load_yaml, load_envvars=load_env, app_name="glimpse-client")
        region = loader.get_one(cloud=cloud, argparse=argparse, **options)
        session = region.get_session()
    endpoint = region.get_endpoint(IMAGE_SERVICE)
    if not endpoint:
        if region.config.get("auth_type") == "none":
            raise GlimpseClientError(
                "auth_type 'none' has no catalog: set image_endpoint_override (OS_IMAGE_ENDPOINT_OVERRIDE) "
                "or auth.endpoint to the image service's URL."
            )
        interface = region.get_interface(IMAGE_SERVICE)
        with _openstack_errors("Finding the image endpoint in the Keystone catalog failed"):
            endpoint = session.get_endpoint(
                service_type=region.get_service_type(IMAGE_SERVICE),
                service_name=region.get_service_name(IMAGE_SERVICE),
                interface=interface or "public",
                region_name=region.get_region_name(IMAGE_SERVICE),
            )
        if not endpoint:
            raise GlimpseClientError(
                f"The catalog of cloud {region.name!r} has no image endpoint (interface "
                f"{interface or 'public'}, region {region.get_region_name(IMAGE_SERVICE) or 'any'})."
            )
    return _from_session(session, endpoint, region.config.get("api_timeout"))
