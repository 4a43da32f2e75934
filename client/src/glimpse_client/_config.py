"""Explicit client configuration: no globals, no environment lookups.

:func:`glimpse_client.config_from_cloud` builds a :class:`ClientConfig` from clouds.yaml and ``OS_*``
variables when the caller asks for that; this module itself never reads them.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

import httpx

#: The roles sent with the no-auth identity headers when ``roles`` is left unset: those of a
#: project member, the same as a Glimpse server's own no-auth defaults.
MEMBER_ROLES: tuple[str, ...] = ("member", "reader")


@dataclass(frozen=True)
class ClientConfig:
    """Where the server is and who the caller is.

    ``token`` is sent as ``X-Auth-Token``. ``project_id``, ``user_id`` and ``roles`` are sent as the
    identity headers a no-auth server reads (``X-Project-Id``, ``X-User-Id``, ``X-Roles``). When
    ``project_id`` or ``user_id`` is set and ``roles`` is left as ``None``, ``X-Roles: member,reader``
    is sent: a server that is sent identity headers takes the roles from ``X-Roles`` only, and a
    caller without roles may not even see an image (Glance answers 404 then). Pass ``roles=()`` to
    act without roles on purpose. ``request_id`` is sent as ``X-Openstack-Request-Id`` on every
    request.

    ``auth`` is an ``httpx.Auth`` applied to every request (see
    :func:`glimpse_client.config_from_cloud`, which sets it to one that takes Keystone tokens from a
    keystoneauth session). ``verify`` is the TLS verification: ``True`` (system CAs), ``False`` or an
    ``ssl.SSLContext`` (a private CA, a client certificate). ``poll_interval`` is how long to sleep
    between two reads when the server cannot be asked to wait for a change (plain Glance).

    ``retries`` is how many times a request that carries an ``Idempotency-Key`` (creating an image,
    starting an import or a copy) is sent again when the connection breaks or times out before an
    answer, after ``retry_backoff`` seconds, doubled at each retry; the server answers a retry with
    the first request's answer. ``0`` never retries.
    """

    endpoint: str
    token: str | None = None
    project_id: str | None = None
    user_id: str | None = None
    roles: tuple[str, ...] | None = None
    timeout: float = 30.0
    request_id: str | None = None
    auth: httpx.Auth | None = field(default=None, compare=False)
    verify: bool | ssl.SSLContext = field(default=True, compare=False)
    poll_interval: float = 1.0
    retries: int = 3
    retry_backoff: float = 0.5

    @property
    def effective_roles(self) -> tuple[str, ...]:
        """The roles sent in ``X-Roles`` (empty: no header)."""
        if self.roles is not None:
            return self.roles
        if self.project_id is not None or self.user_id is not None:
            return MEMBER_ROLES
        return ()

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.token is not None:
            headers["X-Auth-Token"] = self.token
        if self.project_id is not None:
            headers["X-Project-Id"] = self.project_id
        if self.user_id is not None:
            headers["X-User-Id"] = self.user_id
        roles = self.effective_roles
        if roles:
            headers["X-Roles"] = ",".join(roles)
        if self.request_id is not None:
            headers["X-Openstack-Request-Id"] = self.request_id
        return headers
