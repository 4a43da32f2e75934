"""The identity seam: who is calling, from a validated Keystone token or, in development, from headers.

Every request under ``/v2`` goes through :func:`authenticate` (a dependency of each v2 router), which asks
the process's :class:`Authenticator` for an :class:`Identity` and keeps it on the request; the handlers
then build their :class:`~glimpse.context.RequestContext` from it (``glimpse.api.deps.context``).
``GET /`` and ``GET /versions`` stay open, as in Glance.

``auth_strategy = keystone``
    :class:`KeystoneAuthenticator`: keystonemiddleware's ``auth_token`` (the library Glance uses,
    configured from ``[keystone_authtoken]`` as written for Glance) validates ``X-Auth-Token`` and
    ``X-Service-Token``. It is a WSGI component, so it runs on a worker thread, for the request's headers
    only (never its body), and a validated token is kept in its cache for ``token_cache_time``
    seconds, so a cached token costs a thread hop and a cache look-up. A missing or refused token is
    401 with ``WWW-Authenticate: Keystone uri="..."``; a Keystone that cannot be reached is 503. No
    request is ever let through unvalidated.
``auth_strategy = noauth``
    :class:`NoAuthAuthenticator`: the identity headers keystonemiddleware would set (``X-Project-Id``,
    ``X-User-Id``, ``X-Roles``...) are believed as sent, or the configured defaults apply. Anyone can
    send those headers: it is for development and must never face a network.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import anyio
from fastapi import Request

from glimpse.config import Settings
from glimpse.context import Identity
from glimpse.domain.images import MAX_STRING, check_text
from glimpse.errors import ConfigError, IdentityUnavailable, InvalidInput, Unauthenticated
from glimpse.logs import bind_log_fields

log = logging.getLogger(__name__)

#: Token validations one process runs at once (each holds a worker thread while Keystone answers).
VALIDATION_THREADS = 16
#: Tokens longer than this are refused without asking Keystone (fernet tokens are about 200 characters).
MAX_TOKEN_LENGTH = 8192


def _roles(value: str | None) -> tuple[str, ...]:
    return tuple(r.strip().lower() for r in (value or "").split(",") if r.strip())


def identity_from_headers(get: Callable[[str], str | None]) -> Identity:
    """The identity in the headers keystonemiddleware sets (``X-User-Id``, ``OpenStack-System-Scope``...).

    ``get`` returns a header's value or ``None``. Ids and names are checked the way image fields are
    (at most 255 characters, no control characters), since they end up in the database.
    """

    def text(*names: str) -> str | None:
        for name in names:
            value = (get(name) or "").strip()
            if value:
                if len(value) > MAX_STRING:
                    raise InvalidInput(f"Header {name} is longer than {MAX_STRING} characters.")
                return check_text(f"Header {name}", value)
        return None

    return Identity(
        user_id=text("x-user-id"),
        project_id=text("x-project-id", "x-tenant-id"),
        roles=_roles(get("x-roles")),
        user_name=text("x-user-name"),
        project_name=text("x-project-name"),
        user_domain_id=text("x-user-domain-id"),
        project_domain_id=text("x-project-domain-id"),
        domain_id=text("x-domain-id"),
        system_scope=text("openstack-system-scope"),
        service_user_id=text("x-service-user-id"),
        service_project_id=text("x-service-project-id"),
        service_roles=_roles(get("x-service-roles")),
    )


class Authenticator(Protocol):
    """Turns a request's headers into an :class:`Identity`, or refuses it."""

    async def identify(self, headers: Mapping[str, str]) -> Identity: ...


class NoAuthAuthenticator:
    """Development only: the identity headers are believed as sent; without any, the defaults apply."""

    def __init__(self, settings: Settings) -> None:
        self._default = Identity(
            user_id=settings.noauth_default_user,
            project_id=settings.noauth_default_project,
            roles=settings.noauth_default_roles,
        )

    async def identify(self, headers: Mapping[str, str]) -> Identity:
        sent = ("x-project-id", "x-tenant-id", "x-user-id", "x-roles")
        if not any((headers.get(name) or "").strip() for name in sent):
            return self._default
        return identity_from_headers(headers.get)


def _known_authtoken_options(auth_type: str) -> set[str]:
    from keystoneauth1 import loading
    from keystonemiddleware import auth_token

    known: set[str] = set()
    for _group, opts in auth_token.list_opts():
        for opt in opts:
            known.add(opt.dest)
            known.update(old.name for old in opt.deprecated_opts if old.name)
    try:
        loader: Any = loading.get_plugin_loader(auth_type)
    except Exception:  # keystoneauth1 raises its own NoMatchingPlugin
        raise ConfigError(
            f"[keystone_authtoken] auth_type = {auth_type!r} is not a keystoneauth1 plugin; "
            "use 'password' or 'v3applicationcredential'."
        ) from None
    known.update(opt.dest for opt in loader.get_options())
    return known


class _PluginOptionsAreKnown(logging.Filter):
    """keystonemiddleware warns that the auth plugin's options (``username``, ``password``...) are unknown
    to it when they come as a mapping; they are read all the same, and Glimpse has already refused any
    option that neither it nor the plugin reads."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith('The option "%s" is not known to keystonemiddleware')


_PLUGIN_OPTIONS_FILTER = _PluginOptionsAreKnown()


def _accepted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The application behind the middleware: reached only when the tokens were accepted."""
    environ["glimpse.accepted"] = True
    start_response("204 No Content", [])
    return [b""]


class KeystoneAuthenticator:
    """Tokens validated by keystonemiddleware's ``auth_token`` against Keystone, off the event loop."""

    def __init__(self, settings: Settings) -> None:
        from keystonemiddleware import auth_token

        options = dict(settings.keystone_authtoken)
        unknown = sorted(set(options) - _known_authtoken_options(options.get("auth_type", "password")))
        if unknown:
            raise ConfigError(
                f"[keystone_authtoken] has unknown option(s) {', '.join(unknown)}; "
                "see docs/configuration.md for the options keystonemiddleware reads."
            )
        logging.getLogger("keystonemiddleware._common.config").addFilter(_PLUGIN_OPTIONS_FILTER)
        # Glimpse makes the decision itself and never passes a request on unvalidated; the catalog
        # header is not used, so keystonemiddleware need not build it.
        options.update({"delay_auth_decision": "false", "include_service_catalog": "false"})
        self._uri = options.get("www_authenticate_uri") or options.get("auth_url") or ""
        self._challenge = f'Keystone uri="{self._uri}"'
        self._where = options.get("auth_url") or self._uri
        self._protocol = auth_token.AuthProtocol(_accepted, options)
        self._limiter = anyio.CapacityLimiter(VALIDATION_THREADS)

    async def identify(self, headers: Mapping[str, str]) -> Identity:
        token = (headers.get("x-auth-token") or "").strip()
        service_token = (headers.get("x-service-token") or "").strip()
        if not token:
            raise Unauthenticated(
                "The request you have made requires authentication: send a Keystone token in X-Auth-Token.",
                self._challenge,
            )
        if len(token) > MAX_TOKEN_LENGTH or len(service_token) > MAX_TOKEN_LENGTH:
            raise Unauthenticated(
                "The token is not valid: it is too long to be a Keystone token.", self._challenge
            )
        environ = await anyio.to_thread.run_sync(self._validate, token, service_token, limiter=self._limiter)
        return identity_from_headers(lambda name: environ.get("HTTP_" + name.upper().replace("-", "_")))

    def _validate(self, token: str, service_token: str) -> dict[str, Any]:
        """Run the middleware over a header-only request; the environ it leaves has the identity headers."""
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/",
            "SCRIPT_NAME": "",
            "QUERY_STRING": "",
            "SERVER_NAME": "glimpse",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "HTTP_X_AUTH_TOKEN": token,
        }
        if service_token:
            environ["HTTP_X_SERVICE_TOKEN"] = service_token
        answer: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> None:
            answer["status"], answer["headers"] = status, headers

        try:
            for _chunk in self._protocol(environ, start_response):
                pass
        except Exception:
            log.exception("validating a token failed unexpectedly")
            raise IdentityUnavailable(
                "The token could not be validated: the identity service gave an unexpected answer. "
                "Try again; if it persists, the operator should check the server log."
            ) from None
        status = str(answer.get("status", "500"))
        if environ.get("glimpse.accepted") and environ.get("HTTP_X_IDENTITY_STATUS") == "Confirmed":
            return environ
        if status.startswith("401"):
            challenge = next(
                (v for k, v in answer.get("headers", []) if k.lower() == "www-authenticate"), self._challenge
            )
            what = "service token" if environ.get("HTTP_X_SERVICE_IDENTITY_STATUS") == "Invalid" else "token"
            raise Unauthenticated(
                f"The {what} is not valid: it is unknown, expired or revoked"
                + (", or lacks the service role" if what == "service token" else "")
                + ". Get a new token from Keystone.",
                challenge,
            )
        raise IdentityUnavailable(
            f"The identity service (Keystone at {self._where}) cannot be reached to validate the token, "
            "or it refused this service's own [keystone_authtoken] credentials; try again later, and if "
            "it persists the operator should check the server log. Nothing was done."
        )


def build_authenticator(settings: Settings) -> Authenticator:
    """The authenticator ``auth_strategy`` asks for; a configuration it cannot use is a ConfigError."""
    if settings.auth_strategy == "keystone":
        return KeystoneAuthenticator(settings)
    return NoAuthAuthenticator(settings)


async def authenticate(request: Request) -> None:
    """Dependency of every ``/v2`` route: the caller's identity, validated once, kept on the request."""
    authenticator: Authenticator = request.app.state.authenticator
    identity = await authenticator.identify(request.headers)
    request.state.identity = identity
    # Reset with the request id the middleware bound, when the request ends.
    bind_log_fields(user_id=identity.user_id, project_id=identity.project_id)
