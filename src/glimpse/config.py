"""Typed settings, read once at start-up from an INI file (Glance's layout) plus environment variables.

Option names follow Glance where Glance has one, so an operator can carry their knowledge over.
Environment variables override the file: ``GLIMPSE_<OPTION>`` for ``[DEFAULT]`` options and
``GLIMPSE_<SECTION>__<OPTION>`` for the others (for example ``GLIMPSE_DATABASE__CONNECTION``).
Every option is documented in ``docs/configuration.md``. Nothing here is read at import time:
:func:`load_settings` builds a :class:`Settings` which is then passed down explicitly.
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from glimpse.domain.images import DEFAULT_CONTAINER_FORMATS, DEFAULT_DISK_FORMATS
from glimpse.domain.import_plugins import ImportPlugin, parse_output_format, parse_plugins
from glimpse.domain.imports import ImportMethod
from glimpse.domain.inspection import ContentRules
from glimpse.domain.url_rules import ImportFilter
from glimpse.errors import ConfigError

ENV_PREFIX = "GLIMPSE_"
DEFAULT_SECTION = "DEFAULT"
RESERVED_STORE_PREFIX = "os_glance_"
#: Glance's reserved id of the staging store, and the name of its optional section.
STAGING_STORE_ID = "os_glance_staging_store"
STAGING_DESCRIPTION = "Staging area for interoperable image import"
ALL_IMPORT_METHODS = tuple(str(method) for method in ImportMethod)
#: Glance's default ``enabled_import_methods``: glance-download is offered only when listed.
DEFAULT_IMPORT_METHODS = tuple(
    str(method) for method in ImportMethod if method is not ImportMethod.GLANCE_DOWNLOAD
)
#: Glance's default ``[glance_download_properties] extra_properties``: the property names (or
#: prefixes) a glance-download copies from the remote image.
DEFAULT_DOWNLOAD_PROPERTIES = ("hw_", "trait:", "os_distro", "os_secure_boot", "os_type")
SUPPORTED_HASH_ALGORITHMS = ("sha256", "sha384", "sha512", "sha3_256", "sha3_512", "blake2b")
STORE_TYPES = ("file", "s3", "swift")
DEFAULT_BACKENDS = "fast:file,cheap:file,reliable:file"

_SIZE_UNITS = {"": 1, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What one client may send before its request is answered, how slowly, and how many at once."""

    #: Longest request line or single header line, in bytes (Glance's ``max_header_line``).
    max_header_line: int = 16384
    #: Most bytes of a request's line and headers together.
    max_header_size: int = 65536
    #: Seconds a client has to send a request's line and headers, from its first byte (or from the
    #: connection); then 408 and the connection is closed.
    client_header_timeout: float = 60.0
    #: Seconds a request body may stall (no byte arriving while the server waits for one); then the
    #: connection is closed (Glance's ``client_socket_timeout``).
    client_socket_timeout: float = 900.0
    #: Connections one API process keeps at once; requests on connections beyond get 503 with
    #: ``Retry-After``.
    max_client_connections: int = 1000


@dataclass(frozen=True, slots=True)
class DatabaseTimeouts:
    """How long a process waits for a PostgreSQL or MariaDB server (``[database]``), so that a server
    that stops answering (down, or its packets dropped) gives 503s instead of requests that hang."""

    #: Seconds to open a connection, handshake and login included (Glimpse-only: oslo.db passes it in
    #: ``connection_parameters``).
    connect_timeout: float = 10.0
    #: Seconds one statement (or commit, or the pool's ping) may wait for the server's answer; then
    #: the connection is dropped and the request answers 503 (Glimpse-only). Longer than any lock
    #: wait of the server (MariaDB's ``innodb_lock_wait_timeout`` is 50 s by default).
    read_timeout: float = 60.0
    #: Seconds to wait for a free connection of the process's pool (oslo.db's ``pool_timeout``).
    pool_timeout: float = 30.0
    #: Seconds after which a pooled connection is replaced (oslo.db's ``connection_recycle_time``).
    connection_recycle_time: int = 3600


NOTIFICATION_DRIVERS = ("messagingv2", "noop")
DEFAULT_PUBLISHER_ID = "image.localhost"


@dataclass(frozen=True, slots=True)
class NotificationSettings:
    """``[oslo_messaging_notifications]`` plus the ``[DEFAULT]`` options Glance reads beside it."""

    #: ``messagingv2`` (oslo.messaging's 2.0 envelope, to ``transport_url``) or ``noop`` (nothing sent).
    driver: str = "noop"
    #: ``[oslo_messaging_notifications] transport_url``, else ``[DEFAULT] transport_url``.
    transport_url: str | None = None
    topics: tuple[str, ...] = ("notifications",)
    #: Times a failed send is tried again before the event is dropped (0: never; -1 is taken as 0:
    #: a sender that waits forever would only fill its queue).
    retry: int = 0
    #: ``[DEFAULT] disabled_notifications``: events (``image.create``) or categories (``image``).
    disabled: tuple[str, ...] = ()
    #: ``[DEFAULT] default_publisher_id``.
    publisher_id: str = DEFAULT_PUBLISHER_ID
    #: ``[oslo_messaging_notifications] queue_size``: events one process holds for its sender; more
    #: are dropped (counted and logged) rather than slowing a request.
    queue_size: int = 1000

    @property
    def enabled(self) -> bool:
        return self.driver != "noop"


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """One entry of ``enabled_backends`` plus its own ``[<id>]`` section."""

    id: str
    type: str
    description: str = ""
    weight: int = 0
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def datadir(self) -> Path:
        return Path(self.options["filesystem_store_datadir"])

    @property
    def node_local(self) -> bool:
        """Whether the objects live on one node only: a ``file`` store is a directory of the node
        (unless an operator mounts one shared directory everywhere), an object store is shared."""
        return self.type == "file"


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    database_connection: str
    stores: tuple[StoreSettings, ...]
    default_backend: str
    #: ``os_glance_staging_store``: a file store at ``node_staging_uri`` unless its section says otherwise.
    staging: StoreSettings
    bind_host: str = "127.0.0.1"
    bind_port: int = 9292
    workers: int = 1
    public_endpoint: str | None = None
    #: This node's own URL: its identity for data staged here and for the tasks that need that data.
    worker_self_reference_url: str | None = None
    image_size_cap: int = 1099511627776
    user_storage_quota: int = 0
    #: ``[DEFAULT] use_keystone_limits``: the four quotas come from Keystone's unified limits
    #: (``[oslo_limit]``); ``user_storage_quota`` is then not used.
    use_keystone_limits: bool = False
    #: The ``[oslo_limit]`` section as written (option name -> text): how to reach Keystone's limits.
    oslo_limit: Mapping[str, str] = field(default_factory=dict)
    #: The section ``[oslo_limit] auth_section`` names, as written (empty without one): where the
    #: auth plugin's options are read from then.
    oslo_limit_auth: Mapping[str, str] = field(default_factory=dict)
    #: ``[quota] limits_cache_time``: seconds a project's limits read from Keystone are believed.
    limits_cache_time: float = 10.0
    #: ``[quota] reservation_step``: bytes an upload of unknown size reserves at a time.
    reservation_step: int = 64 * 1024 * 1024
    #: ``[quota] reservation_timeout``: seconds a reservation lives without a sign of its upload
    #: (a crashed process's reservations are then dropped by the housekeeping).
    reservation_timeout: float = 900.0
    enabled_import_methods: tuple[str, ...] = DEFAULT_IMPORT_METHODS
    #: ``[glance_download_properties] extra_properties``: the remote image's properties a
    #: glance-download copies, by name or prefix (an item matches every name it begins).
    download_properties: tuple[str, ...] = DEFAULT_DOWNLOAD_PROPERTIES
    task_time_to_live: int = 48
    #: Minutes without a heartbeat after which an import lock may be broken (doubled while pending).
    import_lock_stale_after: int = 60
    #: Days an entry of an image's history is kept (``GET /v2/images/{id}/history``) before it is purged.
    image_history_days: int = 365
    #: Hours the answer of a request sent with an ``Idempotency-Key`` is kept for its retries.
    idempotency_key_ttl: int = 24
    #: Seconds after which a request sent with an ``Idempotency-Key`` that never answered (its
    #: process died) no longer holds the key, so that a retry runs it again.
    idempotency_claim_timeout: float = 900.0
    #: Seconds between two progress writes (heartbeats) of a running task.
    task_progress_interval: float = 2.0
    #: Seconds a runner owns a claimed task without heart-beating; then the reaper takes it back.
    task_lease_time: float = 30.0
    #: ``[task] task_max_duration``: seconds after its import request by which any task must have
    #: ended (it fails and undoes its work past them); 0: no limit.
    task_max_duration: float = 0.0
    #: ``[task] task_stall_timeout``: seconds a byte-moving step may move nothing before the task
    #: fails as stalled; 0: never.
    task_stall_timeout: float = 600.0
    #: ``[task] web_download_connect_timeout``: seconds to resolve and connect to a web-download server.
    web_download_connect_timeout: float = 30.0
    #: ``[task] web_download_read_timeout``: seconds a web-download server may send nothing.
    web_download_read_timeout: float = 60.0
    #: ``[task] web_download_retries``: times a web-download cut short resumes (HTTP Range).
    web_download_retries: int = 3
    #: Seconds between two looks for pending tasks or expired leases (a wake-up also comes at once
    #: from an import accepted by the same process).
    runner_poll_interval: float = 1.0
    #: Seconds between two looks for task changes on behalf of the requests watching an image's tasks.
    task_watch_interval: float = 0.5
    #: Whether ``glimpse-server serve`` runs task runners inside each API process.
    embedded_runner: bool = True
    #: Tasks one runner process executes at once.
    max_concurrent_tasks: int = 2
    #: ``[image_import_opts] image_import_plugins``: the steps run on staged data, in this order.
    import_plugins: tuple[ImportPlugin, ...] = ()
    #: ``[image_conversion] output_format``: the disk format ``image_conversion`` converts to.
    conversion_output_format: str = "raw"
    #: ``[image_conversion] rate_limit``: bytes per second one conversion may read (0: no limit).
    conversion_rate_limit: int = 0
    #: Seconds an object must have been in a store before the orphan sweep may remove it.
    orphan_sweep_grace_time: float = 3600.0
    #: ``[task] upload_stale_after``: seconds an image may stay ``saving`` with no sign of its upload
    #: before the housekeeping puts it back to ``queued`` (the upload's process died).
    upload_stale_after: float = 900.0
    #: The ``[import_filtering_opts]`` section: which URLs web-download may fetch.
    import_filter: ImportFilter = field(default_factory=ImportFilter)
    hashing_algorithm: str = "sha512"
    max_request_id_length: int = 64
    limit_param_default: int = 25
    api_limit_max: int = 1000
    #: Count quotas: -1 means unlimited (as in Glance).
    image_member_quota: int = 128
    image_property_quota: int = 128
    image_tag_quota: int = 128
    disk_formats: tuple[str, ...] = DEFAULT_DISK_FORMATS
    container_formats: tuple[str, ...] = DEFAULT_CONTAINER_FORMATS
    #: ``[image_format] require_image_format_match`` and ``gpt_safety_checks_nonfatal``.
    content_rules: ContentRules = field(default_factory=ContentRules)
    show_image_direct_url: bool = False
    #: ``noauth`` (identity from request headers; development only) or ``keystone`` (tokens validated).
    auth_strategy: str = "noauth"
    #: The ``[keystone_authtoken]`` section as written (option name -> text), for keystonemiddleware.
    keystone_authtoken: Mapping[str, str] = field(default_factory=dict)
    noauth_default_user: str = "glimpse-user"
    noauth_default_project: str = "glimpse-project"
    noauth_default_roles: tuple[str, ...] = ("member", "reader")
    policy_file: Path | None = None
    #: ``property_protection_file``: Glance's INI file of property protections (None: no protections).
    property_protection_file: Path | None = None
    #: ``property_protection_rule_format``: ``roles`` or ``policies`` (what the file's values name).
    property_protection_rule_format: str = "roles"
    #: ``delayed_delete``: DELETE leaves the image ``pending_delete`` with its data, for the scrubber.
    delayed_delete: bool = False
    #: ``scrub_time``: seconds a ``pending_delete`` image keeps its data before the scrubber removes it.
    scrub_time: int = 0
    #: ``wakeup_time``: seconds between two passes of ``glimpse-server scrubber`` (without ``--once``).
    wakeup_time: int = 300
    #: ``[oslo_policy] enforce_scope``: refuse tokens whose scope the rule does not accept (403).
    enforce_scope: bool = True
    #: ``[oslo_policy] enforce_new_defaults``: only True (the secure-RBAC defaults) is supported.
    enforce_new_defaults: bool = True
    #: ``[healthcheck] disable_by_file_path``: while this file exists, ``/healthcheck`` answers 503
    #: (take a node out of its load balancer before stopping it).
    healthcheck_disable_file: Path | None = None
    #: ``[healthcheck] detailed``: the JSON answer of ``/healthcheck`` names each check and its time.
    healthcheck_detailed: bool = False
    #: ``[healthcheck] timeout``: seconds the database and the default store each have to answer.
    healthcheck_timeout: float = 2.0
    log_level: str = "INFO"
    #: One JSON object per log line (oslo.log's ``use_json``) instead of text lines.
    use_json: bool = False
    #: Seconds a stopping ``serve`` process lets its requests in flight finish (SIGTERM).
    shutdown_grace_period: int = 30
    #: Units of work one process runs at once (0: 1 on SQLite, 4 on a database server).
    database_threads: int = 0
    #: ``[metrics] multiproc_dir``: where this node's processes keep their metrics; None:
    #: ``<data_dir>/metrics`` (see :attr:`metrics_directory` and :mod:`glimpse.telemetry`).
    metrics_dir: Path | None = None
    http_limits: HttpLimits = field(default_factory=HttpLimits)
    database_timeouts: DatabaseTimeouts = field(default_factory=DatabaseTimeouts)
    notifications: NotificationSettings = field(default_factory=NotificationSettings)

    @property
    def stage_host(self) -> str | None:
        """The node that data staged by this process can be read from (``os_glance_stage_host``):
        this node's ``worker_self_reference_url`` when staging is local to the node, else None (any
        node can read it, or the node has no identity)."""
        return self.worker_self_reference_url if self.staging.node_local else None

    @property
    def offered_import_methods(self) -> tuple[str, ...]:
        """The import methods this site accepts: ``enabled_import_methods``, without glance-download
        when tokens are not validated (``noauth``: there is no token whose service catalog could
        name the other region)."""
        if self.auth_strategy == "keystone":
            return self.enabled_import_methods
        return tuple(m for m in self.enabled_import_methods if m != ImportMethod.GLANCE_DOWNLOAD)

    @property
    def identity_url(self) -> str | None:
        """The identity service a glance-download reads the caller's catalog from:
        ``[keystone_authtoken] auth_url`` (the URL this service reaches Keystone at), else
        ``www_authenticate_uri``."""
        options = self.keystone_authtoken
        url = options.get("auth_url") or options.get("www_authenticate_uri")
        return url.rstrip("/") if url else None

    @property
    def metrics_directory(self) -> Path:
        """Where this node's processes keep their metrics (``[metrics] multiproc_dir``)."""
        return self.metrics_dir or self.data_dir / "metrics"

    @property
    def effective_database_threads(self) -> int:
        if self.database_threads:
            return self.database_threads
        return 1 if self.database_connection.startswith("sqlite") else 4

    def store(self, store_id: str) -> StoreSettings:
        for store in self.stores:
            if store.id == store_id:
                return store
        raise KeyError(store_id)

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with some fields changed (tests and the CLI use this)."""
        return replace(self, **changes)  # type: ignore[arg-type]


def parse_size(value: str, option: str) -> int:
    """Parse Glance-style sizes: ``1099511627776``, ``10GB``, ``512MB``, ``0``."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?B?)\s*", value.upper())
    if not match:
        raise ConfigError(f"{option} = {value!r} is not a size; write bytes or a number with KB/MB/GB/TB.")
    unit = match.group(2)
    if unit and not unit.endswith("B"):
        unit += "B"
    return int(match.group(1)) * _SIZE_UNITS[unit]


def _bool_or_none(value: str) -> bool | None:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    return None


def parse_bool(value: str, option: str) -> bool:
    """Parse oslo.config-style booleans (``true``/``false``, ``yes``/``no``, ``on``/``off``, ``1``/``0``)."""
    flag = _bool_or_none(value)
    if flag is None:
        raise ConfigError(f"{option} = {value!r} is not a boolean; write true or false.")
    return flag


def _parse_int(value: str, option: str, minimum: int = 0) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise ConfigError(f"{option} = {value!r} is not a whole number.") from None
    if number < minimum:
        raise ConfigError(f"{option} = {number} is below its minimum {minimum}.")
    return number


def _log_level(value: str) -> str:
    level = value.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(
            f"log_level = {value!r} is not a level; use DEBUG, INFO, WARNING, ERROR or CRITICAL."
        )
    return level


_LIST_ITEM = re.compile(
    r"""\s*(?:'(?P<single>[^']*)'|"(?P<double>[^"]*)"|(?P<bare>[^,'"]*?))\s*(?P<end>,|\Z)"""
)


def parse_list(value: str, option: str) -> tuple[str, ...]:
    """Parse a list as oslo.config writes one: ``a,b``, ``a, b``, ``[a, b]``, ``['a', 'b']``, ``["a","b"]``.

    Items may be quoted (then they keep what is inside the quotes); empty items are dropped, so an
    empty value (or ``[]``) is an empty list.
    """
    text = value.strip()
    if text.startswith("[") or text.endswith("]"):
        if len(text) < 2 or not (text.startswith("[") and text.endswith("]")):
            raise ConfigError(f"{option} = {value!r} has an unmatched bracket; write a, b or [a, b].")
        text = text[1:-1]
    items: list[str] = []
    position = 0
    while position < len(text):
        match = _LIST_ITEM.match(text, position)
        if match is None:
            raise ConfigError(
                f"{option} = {value!r} is not a list; write a, b or [a, b] (quote an item as 'a' or \"a\")."
            )
        item = next(part for part in match.group("single", "double", "bare") if part is not None)
        if item:
            items.append(item)
        position = match.end()
    return tuple(items)


class _Source:
    """Looks options up in the environment first, then in the INI file."""

    def __init__(self, parser: configparser.ConfigParser, environ: Mapping[str, str]) -> None:
        self._parser = parser
        self._environ = environ

    def get(self, section: str, option: str) -> str | None:
        env_name = (
            f"{ENV_PREFIX}{option}" if section == DEFAULT_SECTION else f"{ENV_PREFIX}{section}__{option}"
        ).upper()
        if env_name in self._environ:
            return self._environ[env_name]
        if section == DEFAULT_SECTION:
            return self._parser.defaults().get(option)
        if self._parser.has_section(section) and self._parser.has_option(section, option):
            return self._parser.get(section, option, raw=True)
        return None

    def section(self, section: str) -> dict[str, str]:
        values: dict[str, str] = {}
        if self._parser.has_section(section):
            values.update(
                {k: v for k, v in self._parser.items(section, raw=True) if k not in self._parser.defaults()}
            )
        prefix = f"{ENV_PREFIX}{section}__".upper()
        for name, value in self._environ.items():
            if name.upper().startswith(prefix):
                values[name[len(prefix) :].lower()] = value
        return values


def _parse_backends(raw: str) -> list[tuple[str, str]]:
    backends: list[tuple[str, str]] = []
    for item in parse_list(raw, "enabled_backends"):
        store_id, sep, store_type = item.partition(":")
        store_id, store_type = store_id.strip(), store_type.strip()
        if not sep or not store_id or not store_type:
            raise ConfigError(f"enabled_backends item {item!r} must look like 'id:type', e.g. 'fast:file'.")
        if store_type not in STORE_TYPES:
            raise ConfigError(
                f"enabled_backends: store {store_id!r} has unknown type {store_type!r}; "
                f"known types are {', '.join(STORE_TYPES)}."
            )
        if store_id.startswith(RESERVED_STORE_PREFIX):
            raise ConfigError(
                f"enabled_backends: store id {store_id!r} uses the reserved prefix "
                f"{RESERVED_STORE_PREFIX!r}; pick another name."
            )
        if any(store_id == known for known, _ in backends):
            raise ConfigError(f"enabled_backends lists store {store_id!r} twice.")
        backends.append((store_id, store_type))
    if not backends:
        raise ConfigError("enabled_backends is empty; list at least one store, e.g. 'fast:file'.")
    return backends


def _staging_store(src: _Source, raw_uri: str | None, data_dir: Path) -> StoreSettings:
    """The staging store: ``[os_glance_staging_store]`` (``type`` and that type's options) or, by
    default, a file store at ``node_staging_uri``."""
    section = f"[{STAGING_STORE_ID}]"
    options = src.section(STAGING_STORE_ID)
    store_type = options.pop("type", "").strip() or "file"
    if store_type not in STORE_TYPES:
        raise ConfigError(
            f"{section} type = {store_type!r} is not a store type; use one of {', '.join(STORE_TYPES)}."
        )
    for shown in ("store_description", "weight"):
        if shown in options:
            raise ConfigError(
                f"{section} {shown} has no meaning for the staging store, which is never listed; remove it."
            )
    if store_type != "file":
        if raw_uri:
            raise ConfigError(
                f"node_staging_uri = {raw_uri!r} is set, but {section} type = {store_type} puts staging on "
                "an object store; remove node_staging_uri (or set the type to file)."
            )
        return StoreSettings(
            id=STAGING_STORE_ID, type=store_type, description=STAGING_DESCRIPTION, options=options
        )
    if raw_uri:
        parsed = urlparse(raw_uri)
        if parsed.scheme != "file" or not parsed.path.startswith("/"):
            raise ConfigError(f"node_staging_uri = {raw_uri!r} must be a file:// URI with an absolute path.")
        given = options.get("filesystem_store_datadir", "").strip()
        if given and Path(given) != Path(parsed.path):
            raise ConfigError(
                f"node_staging_uri = {raw_uri!r} and {section} filesystem_store_datadir = {given!r} name "
                "two different staging directories; keep only one of them."
            )
        options["filesystem_store_datadir"] = parsed.path
    options.setdefault("filesystem_store_datadir", str(data_dir / "staging"))
    return StoreSettings(id=STAGING_STORE_ID, type="file", description=STAGING_DESCRIPTION, options=options)


def _self_reference_url(raw: str | None) -> str | None:
    if raw is None:
        return None
    parsed = urlparse(raw)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(
            f"worker_self_reference_url = {raw!r} must be this node's own http:// or https:// URL, "
            "as the other nodes reach it (e.g. http://node-a.example.org:9292)."
        )
    return raw.rstrip("/")


def _float(value: str, option: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{option} = {value!r} is not a number.") from None
    if number <= 0:
        raise ConfigError(f"{option} must be greater than 0.")
    return number


class _Options:
    """Typed look-ups; each returns ``None`` when the option is unset, so the field's default applies.

    An empty value counts as unset, except for lists, where it is an empty list (as in oslo.config).
    Errors name the option as ``name`` in ``[DEFAULT]`` and ``[section] name`` elsewhere.
    """

    def __init__(self, source: _Source) -> None:
        self._source = source

    @staticmethod
    def name(option: str, section: str) -> str:
        return option if section == DEFAULT_SECTION else f"[{section}] {option}"

    def text(self, option: str, section: str = DEFAULT_SECTION) -> str | None:
        value = self._source.get(section, option)
        return None if value is None or not value.strip() else value.strip()

    def integer(self, option: str, section: str = DEFAULT_SECTION, minimum: int = 0) -> int | None:
        value = self.text(option, section)
        return None if value is None else _parse_int(value, self.name(option, section), minimum)

    def number(self, option: str, section: str = DEFAULT_SECTION) -> float | None:
        value = self.text(option, section)
        return None if value is None else _float(value, self.name(option, section))

    def size(self, option: str) -> int | None:
        value = self.text(option)
        return None if value is None else parse_size(value, option)

    def boolean(self, option: str, section: str = DEFAULT_SECTION) -> bool | None:
        value = self.text(option, section)
        return None if value is None else parse_bool(value, self.name(option, section))

    def listed(self, option: str, section: str = DEFAULT_SECTION) -> tuple[str, ...] | None:
        value = self._source.get(section, option)
        return None if value is None else parse_list(value, self.name(option, section))


def _import_methods(methods: tuple[str, ...] | None) -> tuple[str, ...] | None:
    for method in methods or ():
        if method not in ALL_IMPORT_METHODS:
            raise ConfigError(
                f"enabled_import_methods: unknown method {method!r}; known: {', '.join(ALL_IMPORT_METHODS)}."
            )
    return methods


def _formats(values: tuple[str, ...] | None, option: str) -> tuple[str, ...] | None:
    if values == ():
        raise ConfigError(f"{option} is empty; list the formats images may have, e.g. 'raw, qcow2'.")
    return values


def _import_filter(options: Mapping[str, str]) -> ImportFilter:
    """``[import_filtering_opts]`` parsed and checked: options not given keep their defaults."""
    known = [option.name for option in fields(ImportFilter)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(
            f"[import_filtering_opts] has unknown option(s) {', '.join(unknown)}; "
            f"the options are {', '.join(known)}."
        )
    values: dict[str, Any] = {}
    for option, value in options.items():
        name = f"[import_filtering_opts] {option}"
        if option == "allow_private_networks":
            flag = _bool_or_none(value)
            if flag is None:
                raise ConfigError(f"{name}: {value!r} is not a boolean; write true or false.")
            values[option] = flag
        elif option.endswith("_ports"):
            values[option] = tuple(_port(item, name) for item in parse_list(value, name))
        else:
            values[option] = parse_list(value, name)
    try:
        return ImportFilter(**values)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _plugins(names: tuple[str, ...] | None) -> tuple[ImportPlugin, ...] | None:
    return None if names is None else parse_plugins(names, "[image_import_opts] image_import_plugins")


def _output_format(value: str | None) -> str | None:
    return None if value is None else parse_output_format(value, "[image_conversion] output_format")


def _seconds_or_zero(value: str | None, option: str) -> float | None:
    """Seconds, where 0 is allowed (no caching)."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{option} = {value!r} is not a number of seconds.") from None
    if number < 0:
        raise ConfigError(f"{option} must be 0 (no caching) or more seconds, got {value}.")
    return number


def _at_least_bytes(value: str | None, minimum: int, option: str) -> int | None:
    if value is None:
        return None
    size = parse_size(value, option)
    if size < minimum:
        raise ConfigError(f"{option} must be at least {minimum} bytes (1MB), got {size}.")
    return size


def _at_least(value: float | None, minimum: float, option: str) -> float | None:
    if value is not None and value < minimum:
        raise ConfigError(f"{option} must be at least {minimum:g} seconds, got {value:g}.")
    return value


def _seconds_or_off(value: str | None, option: str) -> float | None:
    """Seconds, where 0 turns the limit off."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number >= 0 or number == float("inf"):
        raise ConfigError(f"{option} = {value!r} is not a number of seconds (0 turns it off).")
    return number


def _rate_limit(value: str | None) -> int | None:
    return None if value is None else parse_size(value, "[image_conversion] rate_limit")


def _port(value: str, option: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", value) or not 1 <= int(value) <= 65535:
        raise ConfigError(f"{option}: {value!r} is not a port number (1-65535).")
    return int(value)


AUTH_STRATEGIES = ("noauth", "keystone")


def _auth_strategy(strategy: str | None, flavor: str | None) -> str | None:
    """``auth_strategy``, or Glance's ``[paste_deploy] flavor`` (``keystone``, ``keystone+caching``...).

    Both may be given if they agree; a flavor without ``keystone`` in it means no authentication.
    """
    if strategy is not None and strategy not in AUTH_STRATEGIES:
        raise ConfigError(
            f"auth_strategy = {strategy!r} is not known; use 'keystone' (tokens validated against "
            "Keystone) or 'noauth' (development only)."
        )
    from_flavor = None
    if flavor is not None:
        from_flavor = "keystone" if "keystone" in flavor.split("+") else "noauth"
    if strategy is not None and from_flavor is not None and strategy != from_flavor:
        raise ConfigError(
            f"auth_strategy = {strategy!r} contradicts [paste_deploy] flavor = {flavor!r}; "
            "set only one of them."
        )
    return strategy or from_flavor


def _check_authtoken(options: Mapping[str, str]) -> None:
    """The parts of ``[keystone_authtoken]`` that must be right before a token can be validated.

    keystonemiddleware checks the rest when the server builds it (``glimpse.api.auth``).
    """
    name = "[keystone_authtoken]"
    if not (options.get("www_authenticate_uri") or options.get("auth_url")):
        raise ConfigError(
            f"auth_strategy = keystone needs {name} www_authenticate_uri (the public identity URL "
            "clients are sent to) and auth_url; copy the section from glance-api.conf."
        )
    if not options.get("auth_type"):
        raise ConfigError(
            f"auth_strategy = keystone needs {name} auth_type (normally 'password', with username, "
            "password, project_name, user_domain_name and project_domain_name): the service user "
            "that validates tokens."
        )
    if "token_cache_time" in options:
        _parse_int(options["token_cache_time"], f"{name} token_cache_time", minimum=-1)
    for flag in ("service_token_roles_required", "delay_auth_decision", "include_service_catalog"):
        if flag in options and _bool_or_none(options[flag]) is None:
            raise ConfigError(f"{name} {flag}: {options[flag]!r} is not a boolean; write true or false.")
    if "delay_auth_decision" in options and _bool_or_none(options["delay_auth_decision"]):
        raise ConfigError(
            f"{name} delay_auth_decision = true would let requests without a valid token through; "
            "Glimpse always decides itself, so remove it."
        )


def _content_rules(opt: _Options) -> ContentRules:
    defaults = ContentRules()
    match = opt.boolean("require_image_format_match", "image_format")
    nonfatal = opt.boolean("gpt_safety_checks_nonfatal", "image_format")
    return ContentRules(
        require_image_format_match=defaults.require_image_format_match if match is None else match,
        gpt_safety_checks_nonfatal=defaults.gpt_safety_checks_nonfatal if nonfatal is None else nonfatal,
    )


def _http_limits(opt: _Options) -> HttpLimits:
    defaults = HttpLimits()
    line = opt.integer("max_header_line", minimum=1024)
    size = opt.integer("max_header_size", minimum=1024)
    header_timeout = opt.number("client_header_timeout")
    socket_timeout = opt.number("client_socket_timeout")
    connections = opt.integer("max_client_connections", minimum=1)
    limits = HttpLimits(
        max_header_line=defaults.max_header_line if line is None else line,
        max_header_size=defaults.max_header_size if size is None else size,
        client_header_timeout=defaults.client_header_timeout if header_timeout is None else header_timeout,
        client_socket_timeout=defaults.client_socket_timeout if socket_timeout is None else socket_timeout,
        max_client_connections=defaults.max_client_connections if connections is None else connections,
    )
    if limits.max_header_size < limits.max_header_line:
        raise ConfigError(
            f"max_header_size = {limits.max_header_size} is smaller than max_header_line = "
            f"{limits.max_header_line}; a request with one long header line could never be sent."
        )
    return limits


def _database_timeouts(opt: _Options) -> DatabaseTimeouts:
    defaults = DatabaseTimeouts()
    chosen: dict[str, Any] = {}
    for name in ("connect_timeout", "read_timeout", "pool_timeout"):
        value = opt.number(name, "database")  # above 0, or a ConfigError
        chosen[name] = getattr(defaults, name) if value is None else value
    recycle = opt.integer("connection_recycle_time", "database", minimum=1)
    chosen["connection_recycle_time"] = defaults.connection_recycle_time if recycle is None else recycle
    return DatabaseTimeouts(**chosen)


def _notifications(opt: _Options) -> NotificationSettings:
    section = "oslo_messaging_notifications"
    drivers = [d for d in opt.listed("driver", section) or () if d != "noop"]
    if len(drivers) > 1 or (drivers and drivers[0] not in NOTIFICATION_DRIVERS):
        raise ConfigError(
            f"[{section}] driver = {','.join(drivers)} is not supported; use messagingv2 (send to "
            "transport_url) or noop (send nothing)."
        )
    driver = drivers[0] if drivers else "noop"
    transport_url = opt.text("transport_url", section) or opt.text("transport_url")
    if driver != "noop":
        if not transport_url:
            raise ConfigError(
                f"[{section}] driver = {driver} needs a broker: set [{section}] transport_url or "
                "[DEFAULT] transport_url (for example rabbit://user:password@host:5672/)."
            )
        scheme = urlparse(transport_url).scheme
        if scheme not in ("rabbit", "amqp", "kombu"):
            raise ConfigError(
                f"transport_url has the scheme {scheme!r}; Glimpse sends notifications to RabbitMQ: "
                "use rabbit://user:password@host:5672/."
            )
    topics = opt.listed("topics", section)
    if topics is not None and not topics:
        raise ConfigError(f"[{section}] topics is empty; name at least one topic (default: notifications).")
    retry = opt.integer("retry", section, minimum=-1)
    given: dict[str, Any] = {
        "topics": topics,
        "retry": max(retry, 0) if retry is not None else None,
        "disabled": opt.listed("disabled_notifications"),
        "publisher_id": opt.text("default_publisher_id"),
        "queue_size": opt.integer("queue_size", section, minimum=1),
    }
    return NotificationSettings(
        driver=driver,
        transport_url=transport_url,
        **{name: value for name, value in given.items() if value is not None},
    )


def _rule_format(value: str | None) -> str | None:
    if value is None:
        return None
    if value.strip() not in ("roles", "policies"):
        raise ConfigError(
            f"property_protection_rule_format = {value!r} is not valid; write roles or policies."
        )
    return value.strip()


OSLO_LIMIT_SECTION = "oslo_limit"
#: ``[oslo_limit]`` options that say which endpoint's limits apply, beside the auth plugin's own.
OSLO_LIMIT_ENDPOINT_OPTIONS = (
    "endpoint_id",
    "endpoint_service_type",
    "endpoint_service_name",
    "endpoint_region_name",
    "endpoint_interface",
)
#: keystoneauth1 session options (``auth_type`` and ``auth_section`` choose the auth plugin).
OSLO_LIMIT_SESSION_OPTIONS = (
    "auth_type",
    "auth_section",
    "cafile",
    "certfile",
    "keyfile",
    "insecure",
    "timeout",
)
#: keystoneauth1 adapter options an operator may have copied; the identity endpoint is looked up in
#: the catalog with ``valid_interfaces`` (default public) and ``region_name``.
OSLO_LIMIT_ADAPTER_OPTIONS = (
    "valid_interfaces",
    "region_name",
    "interface",
    "service_type",
    "service_name",
    "version",
)


def _oslo_limit_auth(src: _Source, own: Mapping[str, str]) -> dict[str, str]:
    """The section ``[oslo_limit] auth_section`` names, as written (empty without one): keystoneauth1
    then reads the auth plugin (``auth_type``, ``auth_url``, credentials) from there, not from
    ``[oslo_limit]`` (Glance deployments point it at ``keystone_authtoken``)."""
    referenced = (own.get("auth_section") or "").strip()
    if not referenced:
        return {}
    named = src.section(referenced)
    if not named:
        raise ConfigError(
            f"[{OSLO_LIMIT_SECTION}] auth_section = {referenced} names a section that is not in the "
            f"configuration; add [{referenced}] with auth_type, auth_url and the credentials, or put "
            f"them in [{OSLO_LIMIT_SECTION}] and remove auth_section."
        )
    return named


def _check_oslo_limit(options: Mapping[str, str], auth: Mapping[str, str]) -> None:
    """What ``use_keystone_limits = true`` needs before any limit can be read (the auth plugin checks
    its own options when the limits reader is built). ``auth``: the ``auth_section`` it names."""
    name = f"[{OSLO_LIMIT_SECTION}]"
    plugin = auth or options
    if not plugin.get("auth_url") or not plugin.get("auth_type"):
        raise ConfigError(
            f"use_keystone_limits = true needs {name} auth_url and auth_type (normally 'password', with "
            "username, password, user_domain_name and system_scope = all); copy the section from "
            "glance-api.conf."
        )
    if not options.get("endpoint_id") and not options.get("endpoint_service_type"):
        raise ConfigError(
            f"use_keystone_limits = true needs {name} endpoint_id (the image endpoint whose limits "
            "apply), or endpoint_service_type (image) with endpoint_region_name and endpoint_interface."
        )


def load_settings(config_file: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from ``config_file`` (optional) and ``environ`` (defaults to ``os.environ``).

    Every value is parsed and checked here, once; a value that cannot be used raises
    :class:`ConfigError` naming the option. Unset options take the defaults written in
    :class:`Settings` (and :class:`ImportFilter`).
    """
    env = dict(os.environ if environ is None else environ)
    parser = configparser.ConfigParser(interpolation=None)
    if config_file is None and env.get(f"{ENV_PREFIX}CONFIG_FILE"):
        config_file = Path(env[f"{ENV_PREFIX}CONFIG_FILE"])
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"config file {config_file} does not exist.")
        parser.read(config_file)
    src = _Source(parser, env)
    opt = _Options(src)

    data_dir = Path(opt.text("data_dir") or "data").resolve()
    raw_backends = src.get(DEFAULT_SECTION, "enabled_backends")
    backends = _parse_backends(DEFAULT_BACKENDS if raw_backends is None else raw_backends)
    stores: list[StoreSettings] = []
    for store_id, store_type in backends:
        options = src.section(store_id)
        if store_type == "file":
            options.setdefault("filesystem_store_datadir", str(data_dir / "stores" / store_id))
        shown: dict[str, Any] = {}
        if description := options.pop("store_description", "").strip():
            shown["description"] = description
        if weight := options.pop("weight", "").strip():
            shown["weight"] = _parse_int(weight, f"[{store_id}] weight")
        stores.append(StoreSettings(id=store_id, type=store_type, options=options, **shown))
    default_backend = opt.text("default_backend", "glance_store") or backends[0][0]
    if default_backend not in {s.id for s in stores}:
        raise ConfigError(
            f"[glance_store] default_backend = {default_backend!r} is not one of "
            f"enabled_backends ({', '.join(s.id for s in stores)})."
        )

    hashing = opt.text("hashing_algorithm")
    if hashing is not None and hashing not in SUPPORTED_HASH_ALGORITHMS:
        raise ConfigError(
            f"hashing_algorithm = {hashing!r} is not supported; "
            f"choose one of {', '.join(SUPPORTED_HASH_ALGORITHMS)}."
        )
    auth = _auth_strategy(opt.text("auth_strategy"), opt.text("flavor", "paste_deploy"))
    authtoken = src.section("keystone_authtoken")
    if auth == "keystone":
        _check_authtoken(authtoken)
    if opt.boolean("enforce_new_defaults", "oslo_policy") is False:
        raise ConfigError(
            "[oslo_policy] enforce_new_defaults = false is not supported: Glimpse ships only the secure-RBAC "
            "defaults. Remove the option, and write any older rule you still need into the policy_file."
        )
    log_level = opt.text("log_level")
    public_endpoint = opt.text("public_endpoint")
    policy_file = opt.text("policy_file", "oslo_policy")
    protection_file = opt.text("property_protection_file")
    disable_file = opt.text("disable_by_file_path", "healthcheck")
    metrics_dir = opt.text("multiproc_dir", "metrics")
    use_keystone_limits = opt.boolean("use_keystone_limits")
    oslo_limit = src.section(OSLO_LIMIT_SECTION)
    oslo_limit_auth = _oslo_limit_auth(src, oslo_limit) if use_keystone_limits else {}
    if use_keystone_limits:
        _check_oslo_limit(oslo_limit, oslo_limit_auth)
    step = opt.text("reservation_step", "quota")

    given: dict[str, Any] = {
        "bind_host": opt.text("bind_host"),
        "bind_port": opt.integer("bind_port", minimum=1),
        "workers": opt.integer("workers", minimum=1),
        "public_endpoint": public_endpoint.rstrip("/") or None if public_endpoint else None,
        "worker_self_reference_url": _self_reference_url(opt.text("worker_self_reference_url")),
        "image_size_cap": opt.size("image_size_cap"),
        "user_storage_quota": opt.size("user_storage_quota"),
        "use_keystone_limits": use_keystone_limits,
        "oslo_limit": oslo_limit,
        "oslo_limit_auth": oslo_limit_auth,
        "limits_cache_time": _seconds_or_zero(
            opt.text("limits_cache_time", "quota"), "[quota] limits_cache_time"
        ),
        "reservation_step": _at_least_bytes(step, 1024 * 1024, "[quota] reservation_step"),
        "reservation_timeout": _at_least(
            opt.number("reservation_timeout", "quota"), 60.0, "[quota] reservation_timeout"
        ),
        "enabled_import_methods": _import_methods(opt.listed("enabled_import_methods")),
        "download_properties": opt.listed("extra_properties", "glance_download_properties"),
        "task_time_to_live": opt.integer("task_time_to_live", "task"),
        "import_lock_stale_after": opt.integer("import_lock_stale_after", minimum=1),
        "idempotency_key_ttl": opt.integer("idempotency_key_ttl", minimum=1),
        "image_history_days": opt.integer("image_history_days", minimum=1),
        "idempotency_claim_timeout": opt.number("idempotency_claim_timeout"),
        "task_progress_interval": opt.number("task_progress_interval", "task"),
        "task_lease_time": opt.number("task_lease_time", "task"),
        "task_max_duration": _seconds_or_off(
            opt.text("task_max_duration", "task"), "[task] task_max_duration"
        ),
        "task_stall_timeout": _seconds_or_off(
            opt.text("task_stall_timeout", "task"), "[task] task_stall_timeout"
        ),
        "web_download_connect_timeout": opt.number("web_download_connect_timeout", "task"),
        "web_download_read_timeout": opt.number("web_download_read_timeout", "task"),
        "web_download_retries": opt.integer("web_download_retries", "task", minimum=0),
        "runner_poll_interval": opt.number("runner_poll_interval", "task"),
        "task_watch_interval": opt.number("task_watch_interval", "task"),
        "embedded_runner": opt.boolean("embedded_runner", "task"),
        "max_concurrent_tasks": opt.integer("max_concurrent_tasks", "task", minimum=1),
        "orphan_sweep_grace_time": opt.number("orphan_sweep_grace_time", "task"),
        "upload_stale_after": _at_least(
            opt.number("upload_stale_after", "task"), 60.0, "[task] upload_stale_after"
        ),
        "import_filter": _import_filter(src.section("import_filtering_opts")),
        "import_plugins": _plugins(opt.listed("image_import_plugins", "image_import_opts")),
        "conversion_output_format": _output_format(opt.text("output_format", "image_conversion")),
        "conversion_rate_limit": _rate_limit(opt.text("rate_limit", "image_conversion")),
        "hashing_algorithm": hashing,
        "max_request_id_length": opt.integer("max_request_id_length"),
        "limit_param_default": opt.integer("limit_param_default", minimum=1),
        "api_limit_max": opt.integer("api_limit_max", minimum=1),
        "image_member_quota": opt.integer("image_member_quota", minimum=-1),
        "image_property_quota": opt.integer("image_property_quota", minimum=-1),
        "image_tag_quota": opt.integer("image_tag_quota", minimum=-1),
        "disk_formats": _formats(opt.listed("disk_formats", "image_format"), "[image_format] disk_formats"),
        "container_formats": _formats(
            opt.listed("container_formats", "image_format"), "[image_format] container_formats"
        ),
        "content_rules": _content_rules(opt),
        "show_image_direct_url": opt.boolean("show_image_direct_url"),
        "auth_strategy": auth,
        "noauth_default_user": opt.text("noauth_default_user", "auth"),
        "noauth_default_project": opt.text("noauth_default_project", "auth"),
        "noauth_default_roles": opt.listed("noauth_default_roles", "auth"),
        "policy_file": Path(policy_file) if policy_file else None,
        "property_protection_file": Path(protection_file) if protection_file else None,
        "property_protection_rule_format": _rule_format(opt.text("property_protection_rule_format")),
        "delayed_delete": opt.boolean("delayed_delete"),
        "scrub_time": opt.integer("scrub_time", minimum=0),
        "wakeup_time": opt.integer("wakeup_time", minimum=1),
        "keystone_authtoken": authtoken,
        "enforce_scope": opt.boolean("enforce_scope", "oslo_policy"),
        "enforce_new_defaults": opt.boolean("enforce_new_defaults", "oslo_policy"),
        "log_level": _log_level(log_level) if log_level else None,
        "use_json": opt.boolean("use_json"),
        "shutdown_grace_period": opt.integer("shutdown_grace_period", minimum=1),
        "database_threads": opt.integer("threads", "database"),
        "http_limits": _http_limits(opt),
        "database_timeouts": _database_timeouts(opt),
        "notifications": _notifications(opt),
        "healthcheck_disable_file": Path(disable_file) if disable_file else None,
        "healthcheck_detailed": opt.boolean("detailed", "healthcheck"),
        "healthcheck_timeout": opt.number("timeout", "healthcheck"),
        "metrics_dir": Path(metrics_dir) if metrics_dir else None,
    }
    return Settings(
        data_dir=data_dir,
        database_connection=opt.text("connection", "database") or f"sqlite:///{data_dir / 'glimpse.sqlite'}",
        stores=tuple(stores),
        default_backend=default_backend,
        staging=_staging_store(src, opt.text("node_staging_uri"), data_dir),
        **{name: value for name, value in given.items() if value is not None},
    )
