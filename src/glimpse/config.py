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
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlparse

from glimpse.domain.images import DEFAULT_CONTAINER_FORMATS, DEFAULT_DISK_FORMATS
from glimpse.errors import GlimpseError

ENV_PREFIX = "GLIMPSE_"
DEFAULT_SECTION = "DEFAULT"
RESERVED_STORE_PREFIX = "os_glance_"
ALL_IMPORT_METHODS = ("glance-direct", "web-download", "copy-image")
SUPPORTED_HASH_ALGORITHMS = ("sha256", "sha384", "sha512", "sha3_256", "sha3_512", "blake2b")
STORE_TYPES = ("file", "s3")

_SIZE_UNITS = {"": 1, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


class ConfigError(GlimpseError):
    """The configuration cannot be used; the message names the option and what to write instead."""


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


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    database_connection: str
    stores: tuple[StoreSettings, ...]
    default_backend: str
    staging_dir: Path
    bind_host: str = "127.0.0.1"
    bind_port: int = 9292
    workers: int = 1
    public_endpoint: str | None = None
    image_size_cap: int = 1099511627776
    user_storage_quota: int = 0
    enabled_import_methods: tuple[str, ...] = ALL_IMPORT_METHODS
    task_time_to_live: int = 48
    #: Minutes without a heartbeat after which an import lock may be broken (doubled while pending).
    import_lock_stale_after: int = 60
    #: Seconds between two progress writes (heartbeats) of a running task.
    task_progress_interval: float = 2.0
    #: Seconds a runner owns a claimed task without heart-beating; then the reaper takes it back.
    task_lease_time: float = 30.0
    #: Seconds between two looks for pending tasks or expired leases (a wake-up also comes at once
    #: from an import accepted by the same process).
    runner_poll_interval: float = 1.0
    #: Seconds between two looks for task changes on behalf of the requests watching an image's tasks.
    task_watch_interval: float = 0.5
    #: Whether ``glimpse-server serve`` runs task runners inside each API process.
    embedded_runner: bool = True
    #: Tasks one runner process executes at once.
    max_concurrent_tasks: int = 2
    #: The ``[import_filtering_opts]`` section, as given (parsed by the web-download source).
    import_filtering_opts: Mapping[str, str] = field(default_factory=dict)
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
    show_image_direct_url: bool = False
    auth_strategy: str = "noauth"
    noauth_default_user: str = "glimpse-user"
    noauth_default_project: str = "glimpse-project"
    noauth_default_roles: tuple[str, ...] = ("member", "reader")
    policy_file: Path | None = None
    log_level: str = "INFO"
    #: Units of work one process runs at once (0: 1 on SQLite, 4 on a database server).
    database_threads: int = 0

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


def parse_bool(value: str, option: str) -> bool:
    """Parse oslo.config-style booleans (``true``/``false``, ``yes``/``no``, ``on``/``off``, ``1``/``0``)."""
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{option} = {value!r} is not a boolean; write true or false.")


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


def _parse_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


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
    for item in _parse_list(raw):
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


def _staging_dir(raw: str | None, data_dir: Path) -> Path:
    if not raw:
        return data_dir / "staging"
    parsed = urlparse(raw)
    if parsed.scheme != "file" or not parsed.path.startswith("/"):
        raise ConfigError(f"node_staging_uri = {raw!r} must be a file:// URI with an absolute path.")
    return Path(parsed.path)


def load_settings(config_file: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from ``config_file`` (optional) and ``environ`` (defaults to ``os.environ``)."""
    env = dict(os.environ if environ is None else environ)
    parser = configparser.ConfigParser(interpolation=None)
    if config_file is None and env.get(f"{ENV_PREFIX}CONFIG_FILE"):
        config_file = Path(env[f"{ENV_PREFIX}CONFIG_FILE"])
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"config file {config_file} does not exist.")
        parser.read(config_file)
    src = _Source(parser, env)

    def opt(option: str, section: str = DEFAULT_SECTION) -> str | None:
        value = src.get(section, option)
        return None if value is None or value.strip() == "" else value.strip()

    data_dir = Path(opt("data_dir") or "data").resolve()
    backends = _parse_backends(opt("enabled_backends") or "fast:file,cheap:file,reliable:file")
    stores: list[StoreSettings] = []
    for store_id, store_type in backends:
        options = src.section(store_id)
        if store_type == "file":
            options.setdefault("filesystem_store_datadir", str(data_dir / "stores" / store_id))
        stores.append(
            StoreSettings(
                id=store_id,
                type=store_type,
                description=options.pop("store_description", "") or "",
                weight=_parse_int(options.pop("weight", "0"), f"[{store_id}] weight"),
                options=options,
            )
        )
    default_backend = opt("default_backend", "glance_store") or backends[0][0]
    if default_backend not in {s.id for s in stores}:
        raise ConfigError(
            f"[glance_store] default_backend = {default_backend!r} is not one of "
            f"enabled_backends ({', '.join(s.id for s in stores)})."
        )

    methods = _parse_list(opt("enabled_import_methods") or ",".join(ALL_IMPORT_METHODS))
    for method in methods:
        if method not in ALL_IMPORT_METHODS:
            raise ConfigError(
                f"enabled_import_methods: unknown method {method!r}; known: {', '.join(ALL_IMPORT_METHODS)}."
            )
    hashing = opt("hashing_algorithm") or "sha512"
    if hashing not in SUPPORTED_HASH_ALGORITHMS:
        raise ConfigError(
            f"hashing_algorithm = {hashing!r} is not supported; "
            f"choose one of {', '.join(SUPPORTED_HASH_ALGORITHMS)}."
        )
    auth = opt("auth_strategy") or "noauth"
    if auth != "noauth":
        raise ConfigError(f"auth_strategy = {auth!r} is not available yet; only 'noauth' is.")

    def int_opt(option: str, default: int, section: str = DEFAULT_SECTION, minimum: int = 0) -> int:
        value = opt(option, section)
        return default if value is None else _parse_int(value, option, minimum)

    def float_opt(option: str, default: float, section: str) -> float:
        value = opt(option, section)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"[{section}] {option} = {value!r} is not a number.") from None
        if number <= 0:
            raise ConfigError(f"[{section}] {option} must be greater than 0.")
        return number

    def size_opt(option: str, default: int) -> int:
        value = opt(option)
        return default if value is None else parse_size(value, option)

    policy_file = opt("policy_file", "oslo_policy")
    return Settings(
        data_dir=data_dir,
        database_connection=opt("connection", "database") or f"sqlite:///{data_dir / 'glimpse.sqlite'}",
        stores=tuple(stores),
        default_backend=default_backend,
        staging_dir=_staging_dir(opt("node_staging_uri"), data_dir),
        bind_host=opt("bind_host") or "127.0.0.1",
        bind_port=int_opt("bind_port", 9292, minimum=1),
        workers=int_opt("workers", 1, minimum=1),
        public_endpoint=(opt("public_endpoint") or "").rstrip("/") or None,
        image_size_cap=size_opt("image_size_cap", 1099511627776),
        user_storage_quota=size_opt("user_storage_quota", 0),
        enabled_import_methods=methods,
        task_time_to_live=int_opt("task_time_to_live", 48, "task"),
        import_lock_stale_after=int_opt("import_lock_stale_after", 60, minimum=1),
        task_progress_interval=float_opt("task_progress_interval", 2.0, "task"),
        task_lease_time=float_opt("task_lease_time", 30.0, "task"),
        runner_poll_interval=float_opt("runner_poll_interval", 1.0, "task"),
        task_watch_interval=float_opt("task_watch_interval", 0.5, "task"),
        embedded_runner=parse_bool(opt("embedded_runner", "task") or "true", "[task] embedded_runner"),
        max_concurrent_tasks=int_opt("max_concurrent_tasks", 2, "task", minimum=1),
        import_filtering_opts=src.section("import_filtering_opts"),
        hashing_algorithm=hashing,
        max_request_id_length=int_opt("max_request_id_length", 64),
        limit_param_default=int_opt("limit_param_default", 25, minimum=1),
        api_limit_max=int_opt("api_limit_max", 1000, minimum=1),
        image_member_quota=int_opt("image_member_quota", 128, minimum=-1),
        image_property_quota=int_opt("image_property_quota", 128, minimum=-1),
        image_tag_quota=int_opt("image_tag_quota", 128, minimum=-1),
        disk_formats=_parse_list(opt("disk_formats", "image_format") or ",".join(DEFAULT_DISK_FORMATS)),
        container_formats=_parse_list(
            opt("container_formats", "image_format") or ",".join(DEFAULT_CONTAINER_FORMATS)
        ),
        show_image_direct_url=parse_bool(opt("show_image_direct_url") or "false", "show_image_direct_url"),
        auth_strategy=auth,
        noauth_default_user=opt("noauth_default_user", "auth") or "glimpse-user",
        noauth_default_project=opt("noauth_default_project", "auth") or "glimpse-project",
        noauth_default_roles=_parse_list(opt("noauth_default_roles", "auth") or "member,reader"),
        policy_file=Path(policy_file) if policy_file else None,
        log_level=_log_level(opt("log_level") or "INFO"),
        database_threads=int_opt("threads", 0, "database"),
    )
