"""Where a project's quota limits come from (:class:`glimpse.ports.LimitSource`).

* :class:`ConfiguredLimits`: ``user_storage_quota``, the one quota of a deployment without unified
  limits (``image_size_total`` in bytes for every project).
* :class:`KeystoneLimits` (``[DEFAULT] use_keystone_limits = true``): Keystone's unified limits for
  the image endpoint named in ``[oslo_limit]``. Registered limits (the defaults of every project) and
  the project's own limits are read from ``/v3/registered_limits`` and ``/v3/limits`` with
  keystoneauth1, authenticated as the ``[oslo_limit]`` user (whose token must be system-scoped to
  read other projects' limits), on a worker thread. A project's limits are believed for
  ``[quota] limits_cache_time`` seconds; while Keystone cannot be reached and nothing is cached,
  :class:`~glimpse.errors.LimitsUnavailable` (503) says so.

oslo.limit itself is not used: it reads its options from oslo.config's global configuration, and
Glimpse reads its configuration once, into :class:`~glimpse.config.Settings`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from glimpse.config import (
    OSLO_LIMIT_ADAPTER_OPTIONS,
    OSLO_LIMIT_ENDPOINT_OPTIONS,
    OSLO_LIMIT_SECTION,
    OSLO_LIMIT_SESSION_OPTIONS,
    Settings,
)
from glimpse.domain.quotas import NO_LIMITS, Limits, Resource, from_keystone
from glimpse.errors import ConfigError, LimitsUnavailable

if TYPE_CHECKING:
    import keystoneauth1.session

# keystoneauth1 (with webob and osprofiler behind it) is imported by the Keystone reader only, when
# use_keystone_limits is on: a process that counts quotas itself never loads it.

log = logging.getLogger(__name__)

__all__ = ["ConfiguredLimits", "KeystoneLimits", "build_limits"]

ENDPOINT_OPTIONS = OSLO_LIMIT_ENDPOINT_OPTIONS
SESSION_OPTIONS = OSLO_LIMIT_SESSION_OPTIONS
ADAPTER_OPTIONS = OSLO_LIMIT_ADAPTER_OPTIONS


class ConfiguredLimits:
    """``user_storage_quota`` as a limit source: ``image_size_total`` for every project, or nothing."""

    def __init__(self, user_storage_quota: int) -> None:
        self._limits = (
            Limits({Resource.IMAGE_SIZE_TOTAL: user_storage_quota}, source="user_storage_quota")
            if user_storage_quota
            else NO_LIMITS
        )

    async def limits(self, project: str) -> Limits:
        return self._limits


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


class KeystoneLimits:
    """Keystone's unified limits for one endpoint, read with keystoneauth1 and cached briefly."""

    def __init__(
        self,
        options: Mapping[str, str],
        cache_time: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        auth: Mapping[str, str] | None = None,
    ) -> None:
        self._options = dict(options)
        #: The section ``auth_section`` names (keystoneauth1: the auth plugin is read from there).
        self._auth = dict(auth or {})
        self._cache_time = cache_time
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Limits]] = {}
        self._endpoint: tuple[str, str | None] | None = None
        self._session = self._build_session()
        interfaces = self._options.get("valid_interfaces") or self._options.get("interface") or "public"
        self._identity_filter: dict[str, Any] = {
            "service_type": "identity",
            "interface": [i.strip() for i in interfaces.split(",") if i.strip()],
            "version": (3, 0),
        }
        if self._options.get("region_name"):
            self._identity_filter["region_name"] = self._options["region_name"]

    def _build_session(self) -> keystoneauth1.session.Session:
        import keystoneauth1.exceptions
        import keystoneauth1.session
        from keystoneauth1 import loading

        name = f"[{OSLO_LIMIT_SECTION}]"
        section = self._options.get("auth_section")
        # With auth_section, keystoneauth1 reads the plugin's type and options from the named
        # section only; that section's other options (keystonemiddleware's, in keystone_authtoken)
        # are not the limits reader's business.
        source = self._auth if section else self._options
        where = f"[{section}]" if section else name
        auth_type = source.get("auth_type", "password")
        try:
            loader: Any = loading.get_plugin_loader(auth_type)
        except Exception:  # keystoneauth1's NoMatchingPlugin
            raise ConfigError(
                f"{where} auth_type = {auth_type!r} is not a keystoneauth1 plugin; use 'password' or "
                "'v3applicationcredential'."
            ) from None
        plugin_options = {opt.dest: opt for opt in loader.get_options()}
        # Options of the plugin left in [oslo_limit] beside auth_section are not used, as with
        # keystoneauth1; only names nobody reads are refused.
        known = set(plugin_options) | set(ENDPOINT_OPTIONS) | set(SESSION_OPTIONS) | set(ADAPTER_OPTIONS)
        unknown = sorted(set(self._options) - known)
        if unknown:
            raise ConfigError(
                f"{name} has option(s) {', '.join(unknown)} that neither Glimpse nor the {auth_type} "
                "plugin reads; check their spelling."
            )
        given = {key: value for key, value in source.items() if key in plugin_options}
        try:
            plugin = loader.load_from_options(**given)
        except keystoneauth1.exceptions.ClientException as exc:
            raise ConfigError(f"{where}: the {auth_type} plugin cannot be built: {exc}") from None
        verify: bool | str = not _flag(self._options.get("insecure"))
        if verify and self._options.get("cafile"):
            verify = self._options["cafile"]
        certfile = self._options.get("certfile")
        cert: tuple[str, str] | str | None = certfile
        if certfile and self._options.get("keyfile"):
            cert = (certfile, self._options["keyfile"])
        timeout = float(self._options.get("timeout") or 10)
        return keystoneauth1.session.Session(auth=plugin, verify=verify, cert=cert, timeout=timeout)

    async def limits(self, project: str) -> Limits:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(project)
        if cached is not None and cached[0] > now:
            return cached[1]
        limits = await anyio.to_thread.run_sync(self._read, project)
        with self._lock:
            self._cache[project] = (self._clock() + self._cache_time, limits)
        return limits

    # -- on a worker thread ----------------------------------------------------------------------
    def _get(self, path: str, **params: str) -> dict[str, Any]:
        import keystoneauth1.exceptions

        try:
            response = self._session.get(path, endpoint_filter=self._identity_filter, params=params)
        except keystoneauth1.exceptions.http.HttpError as exc:
            raise LimitsUnavailable(
                f"Keystone refused to give the project's limits ({exc.http_status} on {path}); check the "
                f"[{OSLO_LIMIT_SECTION}] user: it needs a system-scoped token (system_scope = all) with "
                "the reader role. Try again once that is fixed."
            ) from None
        except keystoneauth1.exceptions.ClientException as exc:
            raise LimitsUnavailable(
                f"Keystone cannot be reached to read the project's limits ({type(exc).__name__}: {exc}); "
                "try again later, or check [oslo_limit] auth_url."
            ) from None
        body: dict[str, Any] = response.json()
        return body

    def _find_endpoint(self) -> tuple[str, str | None]:
        """(service id, region id) of the endpoint whose limits apply."""
        if self._endpoint is not None:
            return self._endpoint
        options = self._options
        if options.get("endpoint_id"):
            endpoint = self._get(f"/endpoints/{options['endpoint_id']}")["endpoint"]
            found = (str(endpoint["service_id"]), endpoint.get("region_id"))
        else:
            service_type = options.get("endpoint_service_type", "")
            services = self._get("/services", type=service_type)["services"]
            if options.get("endpoint_service_name"):
                services = [s for s in services if s.get("name") == options["endpoint_service_name"]]
            if len(services) != 1:
                raise LimitsUnavailable(
                    f"Keystone has {len(services)} services of type {service_type!r}; set [oslo_limit] "
                    "endpoint_id (or endpoint_service_name) so the image endpoint's limits can be found."
                )
            query = {"service_id": str(services[0]["id"])}
            if options.get("endpoint_interface"):
                query["interface"] = options["endpoint_interface"]
            if options.get("endpoint_region_name"):
                query["region_id"] = options["endpoint_region_name"]
            endpoints = self._get("/endpoints", **query)["endpoints"]
            if len(endpoints) != 1:
                raise LimitsUnavailable(
                    f"Keystone has {len(endpoints)} endpoints for service type {service_type!r} with "
                    "[oslo_limit] endpoint_interface and endpoint_region_name as configured; set "
                    "endpoint_id, or those two options so that exactly one endpoint matches."
                )
            found = (str(endpoints[0]["service_id"]), endpoints[0].get("region_id"))
        self._endpoint = found
        return found

    def _read(self, project: str) -> Limits:
        service_id, region_id = self._find_endpoint()
        where = {"service_id": service_id}
        if region_id:
            where["region_id"] = region_id
        values: dict[str, int] = {}
        for registered in self._get("/registered_limits", **where)["registered_limits"]:
            values[str(registered["resource_name"])] = int(registered["default_limit"])
        for limit in self._get("/limits", project_id=project, **where)["limits"]:
            if limit.get("project_id") == project:
                values[str(limit["resource_name"])] = int(limit["resource_limit"])
        log.debug("project %s: limits %s from Keystone", project, values)
        return from_keystone(values)


def build_limits(settings: Settings) -> ConfiguredLimits | KeystoneLimits:
    """The process's limit source, from ``use_keystone_limits`` and ``[oslo_limit]``."""
    if settings.use_keystone_limits:
        return KeystoneLimits(settings.oslo_limit, settings.limits_cache_time, auth=settings.oslo_limit_auth)
    return ConfiguredLimits(settings.user_storage_quota)
