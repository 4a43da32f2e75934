"""Explicit client configuration: no globals, no environment lookups."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ClientConfig:
    """Where the server is and who the caller is.

    ``token`` is sent as ``X-Auth-Token``. ``project_id``, ``user_id`` and ``roles`` are sent as the
    identity headers a no-auth server reads (``X-Project-Id``, ``X-User-Id``, ``X-Roles``).
    ``request_id`` is sent as ``X-Openstack-Request-Id`` on every request.
    """

    endpoint: str
    token: str | None = None
    project_id: str | None = None
    user_id: str | None = None
    roles: tuple[str, ...] = field(default_factory=tuple)
    timeout: float = 30.0
    request_id: str | None = None

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.token is not None:
            headers["X-Auth-Token"] = self.token
        if self.project_id is not None:
            headers["X-Project-Id"] = self.project_id
        if self.user_id is not None:
            headers["X-User-Id"] = self.user_id
        if self.roles:
            headers["X-Roles"] = ",".join(self.roles)
        if self.request_id is not None:
            headers["X-Openstack-Request-Id"] = self.request_id
        return headers
