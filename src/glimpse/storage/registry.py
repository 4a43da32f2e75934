"""The named image stores of one deployment, built once from :class:`~glimpse.config.Settings`.

:func:`build_stores` turns each ``enabled_backends`` entry into a driver through ``_FACTORIES``, the
one table that maps a store type to the code that builds it. The staging area used by interoperable
import (``os_glance_staging_store``) is a store too, built by the same table from its own settings
(any type), reachable as :attr:`StoreRegistry.staging`, but never listed among the configured stores.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from glimpse.config import STAGING_STORE_ID, Settings, StoreSettings, parse_bool, parse_size
from glimpse.errors import ConfigError, StoreNotFound, UnknownStore
from glimpse.ports import ImageStore
from glimpse.storage.filesystem import DEFAULT_CHUNK_SIZE, FilesystemStore

if TYPE_CHECKING:
    from glimpse.storage.swift import KeystoneAuth

# The object store drivers are imported by the factories that build them: their client libraries
# (boto3, python-swiftclient, keystoneauth1) cost a process that has no such store a second of
# start-up and tens of MiB it would never use.

__all__ = ["STAGING_STORE_ID", "StoreRegistry", "build_stores"]


class StoreRegistry:
    """The configured stores in their configured order, the default one and the staging store."""

    def __init__(self, stores: Iterable[ImageStore], default_id: str, staging: ImageStore) -> None:
        by_id: dict[str, ImageStore] = {}
        for store in stores:
            if store.id in by_id:
                raise ValueError(f"store id {store.id!r} is used twice.")
            by_id[store.id] = store
        if default_id not in by_id:
            raise ValueError(f"default store {default_id!r} is not one of the stores ({', '.join(by_id)}).")
        if staging.id in by_id:
            raise ValueError(f"the staging store id {staging.id!r} is also a configured store id.")
        self._stores = by_id
        self._default = by_id[default_id]
        self._staging = staging

    def __repr__(self) -> str:
        return f"StoreRegistry(ids={list(self._stores)!r}, default={self._default.id!r})"

    def __contains__(self, store_id: object) -> bool:
        return store_id in self._stores

    def get(self, store_id: str) -> ImageStore:
        """The configured store called ``store_id``; raises :class:`UnknownStore` otherwise."""
        try:
            return self._stores[store_id]
        except KeyError:
            raise UnknownStore(store_id, self._stores) from None

    @property
    def default(self) -> ImageStore:
        return self._default

    @property
    def staging(self) -> ImageStore:
        return self._staging

    def all(self) -> tuple[ImageStore, ...]:
        """Every configured store in configured order; the staging store is not among them."""
        return tuple(self._stores.values())

    def ids(self) -> tuple[str, ...]:
        return tuple(self._stores)

    def for_location(self, location: str) -> ImageStore:
        """The store (configured or staging) that holds ``location``; :class:`StoreNotFound` if none does."""
        for store in (*self._stores.values(), self._staging):
            if store.owns(location):
                return store
        raise StoreNotFound("The image data is at a location that no configured store holds.")


_FILE_OPTIONS: Final = ("filesystem_store_chunk_size", "filesystem_store_datadir", "filesystem_store_fsync")


def _filesystem(settings: StoreSettings) -> ImageStore:
    """A file store from its ``enabled_backends`` entry and ``[<id>]`` section."""
    unknown = sorted(set(settings.options) - set(_FILE_OPTIONS))
    if unknown:
        raise ConfigError(
            f"[{settings.id}] has unknown option(s) {', '.join(unknown)} for a file store; "
            f"known options are {', '.join(_FILE_OPTIONS)}."
        )
    datadir = settings.options.get("filesystem_store_datadir", "").strip()
    if not datadir:
        raise ConfigError(f"[{settings.id}] filesystem_store_datadir is empty; give a directory path.")
    option = f"[{settings.id}] filesystem_store_chunk_size"
    raw_chunk_size = settings.options.get("filesystem_store_chunk_size", "").strip()
    chunk_size = parse_size(raw_chunk_size, option) if raw_chunk_size else DEFAULT_CHUNK_SIZE
    if chunk_size < 1:
        raise ConfigError(f"{option} = {raw_chunk_size!r} must be at least 1 byte.")
    raw_fsync = settings.options.get("filesystem_store_fsync", "").strip()
    fsync = parse_bool(raw_fsync, f"[{settings.id}] filesystem_store_fsync") if raw_fsync else True
    return FilesystemStore(
        settings.id,
        datadir,
        description=settings.description,
        weight=settings.weight,
        fsync=fsync,
        chunk_size=chunk_size,
    )


_S3_OPTIONS: Final = (
    "s3_store_host",
    "s3_store_access_key",
    "s3_store_secret_key",
    "s3_store_bucket",
    "s3_store_create_bucket_on_put",
    "s3_store_large_object_size",
    "s3_store_large_object_chunk_size",
    "s3_store_thread_pools",
    "s3_store_bucket_url_format",
    "s3_store_region_name",
)
_MiB: Final = 1024 * 1024


def _whole_number(settings: StoreSettings, name: str, default: int, minimum: int) -> int:
    raw = settings.options.get(name, "").strip()
    if not raw:
        return default
    try:
        number = int(raw)
    except ValueError:
        raise ConfigError(f"[{settings.id}] {name} = {raw!r} is not a whole number.") from None
    if number < minimum:
        raise ConfigError(f"[{settings.id}] {name} = {raw!r} must be at least {minimum}.")
    return number


def _s3(settings: StoreSettings) -> ImageStore:
    """An S3 store from its ``enabled_backends`` entry and ``[<id>]`` section (Glance's option names)."""
    from glimpse.storage.s3 import BUCKET_URL_FORMATS, MIN_PART_SIZE, S3Store

    unknown = sorted(set(settings.options) - set(_S3_OPTIONS))
    if unknown:
        raise ConfigError(
            f"[{settings.id}] has unknown option(s) {', '.join(unknown)} for an s3 store; "
            f"known options are {', '.join(_S3_OPTIONS)}."
        )
    required = {}
    for name in ("s3_store_host", "s3_store_access_key", "s3_store_secret_key", "s3_store_bucket"):
        value = settings.options.get(name, "").strip()
        if not value:
            raise ConfigError(f"[{settings.id}] {name} is not set; an s3 store needs it.")
        required[name] = value
    host = required["s3_store_host"]
    endpoint = host if "://" in host else f"https://{host}"
    if not endpoint.startswith(("http://", "https://")):
        raise ConfigError(
            f"[{settings.id}] s3_store_host = {host!r} must be a host name or an http:// or https:// URL."
        )
    raw_create = settings.options.get("s3_store_create_bucket_on_put", "").strip()
    create = parse_bool(raw_create, f"[{settings.id}] s3_store_create_bucket_on_put") if raw_create else False
    url_format = settings.options.get("s3_store_bucket_url_format", "").strip() or "auto"
    if url_format not in BUCKET_URL_FORMATS:
        raise ConfigError(
            f"[{settings.id}] s3_store_bucket_url_format = {url_format!r} must be one of "
            f"{', '.join(BUCKET_URL_FORMATS)}."
        )
    # Sizes are whole MB, as in Glance; parts are at least S3's 5 MB minimum.
    large = _whole_number(settings, "s3_store_large_object_size", 100, 1)
    chunk = _whole_number(settings, "s3_store_large_object_chunk_size", 10, MIN_PART_SIZE // _MiB)
    threads = _whole_number(settings, "s3_store_thread_pools", 10, 1)
    try:
        return S3Store(
            settings.id,
            endpoint_url=endpoint,
            access_key=required["s3_store_access_key"],
            secret_key=required["s3_store_secret_key"],
            bucket=required["s3_store_bucket"],
            region=settings.options.get("s3_store_region_name", "").strip() or "us-east-1",
            create_bucket_on_put=create,
            large_object_size=large * _MiB,
            chunk_size=chunk * _MiB,
            thread_pools=threads,
            bucket_url_format=url_format,
            description=settings.description,
            weight=settings.weight,
        )
    except ValueError as exc:
        raise ConfigError(f"[{settings.id}] {exc}") from None


_SWIFT_OPTIONS: Final = (
    "swift_store_auth_address",
    "swift_store_user",
    "swift_store_key",
    "swift_store_container",
    "swift_store_create_container_on_put",
    "swift_store_large_object_size",
    "swift_store_large_object_chunk_size",
    "swift_store_auth_version",
    "swift_store_multi_tenant",
    "swift_store_region",
    "swift_store_endpoint_type",
    "swift_store_service_type",
    "swift_store_auth_insecure",
    "swift_store_cacert",
    "swift_store_config_file",
    "default_swift_reference",
)
# The credentials that may come either from the store's section or from a reference of
# swift_store_config_file, never from both.
_SWIFT_CREDENTIALS: Final = ("swift_store_auth_address", "swift_store_user", "swift_store_key")
_SWIFT_REFERENCE_OPTIONS: Final = (
    "auth_address",
    "user",
    "key",
    "auth_version",
    "user_domain_id",
    "user_domain_name",
    "project_domain_id",
    "project_domain_name",
)


@dataclass(frozen=True, slots=True)
class _SwiftAccount:
    """The credentials of a swift store, from its section or from a reference, and how to name them."""

    auth_address: str
    user: str
    key: str
    auth_version: str
    domains: Mapping[str, str]
    credential_options: str
    address_option: str
    user_option: str
    source: str


def _swift_auth_version(raw: str, option: str) -> str:
    version = raw.strip().lower().removeprefix("v")
    if version in ("1", "1.0"):
        return "1"
    if version in ("3", "3.0"):
        return "3"
    if version in ("2", "2.0"):
        raise ConfigError(
            f"{option} = {raw!r}: Keystone no longer offers the v2.0 identity API; set it to 3 and "
            "give the v3 identity URL (ending in /v3) as the auth address."
        )
    raise ConfigError(f"{option} = {raw!r} must be 1 (v1 auth, such as tempauth) or 3 (Keystone v3).")


def _swift_account(settings: StoreSettings) -> _SwiftAccount:
    """The store's credentials: its own options, or the ``default_swift_reference`` section of
    ``swift_store_config_file`` (read here, once, when the store is built)."""
    section = f"[{settings.id}]"
    version_option = f"{section} swift_store_auth_version"
    raw_version = settings.options.get("swift_store_auth_version", "").strip()
    config_file = settings.options.get("swift_store_config_file", "").strip()
    if not config_file:
        if settings.options.get("default_swift_reference", "").strip():
            raise ConfigError(
                f"{section} default_swift_reference is set but swift_store_config_file is not; give the "
                "file that holds the reference, or use swift_store_auth_address, swift_store_user and "
                "swift_store_key instead."
            )
        values = {}
        for name in _SWIFT_CREDENTIALS:
            value = settings.options.get(name, "").strip()
            if not value:
                raise ConfigError(
                    f"{section} {name} is not set; a swift store needs it (or swift_store_config_file "
                    "with a reference that has auth_address, user and key)."
                )
            values[name] = value
        return _SwiftAccount(
            auth_address=values["swift_store_auth_address"],
            user=values["swift_store_user"],
            key=values["swift_store_key"],
            auth_version=_swift_auth_version(raw_version, version_option) if raw_version else "1",
            domains={},
            credential_options=f"{section} swift_store_user and swift_store_key",
            address_option=f"{section} swift_store_auth_address",
            user_option=f"{section} swift_store_user",
            source=section,
        )
    given = [name for name in _SWIFT_CREDENTIALS if settings.options.get(name, "").strip()]
    if given:
        raise ConfigError(
            f"{section} sets both swift_store_config_file and {', '.join(given)}; keep the credentials "
            "in one place: the reference in the file, or the options of the section."
        )
    reference = settings.options.get("default_swift_reference", "").strip() or "ref1"
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(config_file, encoding="utf-8") as stream:
            parser.read_file(stream)
    except OSError as exc:
        raise ConfigError(
            f"{section} swift_store_config_file = {config_file!r} cannot be read ({exc.strerror or exc}); "
            "give the path of the file that holds the Swift credentials."
        ) from None
    except configparser.Error as exc:
        raise ConfigError(
            f"{section} swift_store_config_file {config_file!r} is not an INI file: "
            f"{str(exc).splitlines()[0]}"
        ) from None
    where = f"[{reference}] of swift_store_config_file {config_file!r}"
    if not parser.has_section(reference):
        known = ", ".join(parser.sections()) or "none"
        raise ConfigError(
            f"{section} default_swift_reference = {reference!r} names no section of swift_store_config_file "
            f"{config_file!r} (its sections: {known})."
        )
    entries = {k: v.strip() for k, v in parser.items(reference, raw=True) if k not in parser.defaults()}
    unknown = sorted(set(entries) - set(_SWIFT_REFERENCE_OPTIONS))
    if unknown:
        raise ConfigError(
            f"{where} has unknown option(s) {', '.join(unknown)}; known options are "
            f"{', '.join(_SWIFT_REFERENCE_OPTIONS)}."
        )
    for name in ("auth_address", "user", "key"):
        if not entries.get(name):
            raise ConfigError(f"{where} has no {name}; a swift store needs auth_address, user and key.")
    ref_version = entries.get("auth_version", "")
    if ref_version:
        version = _swift_auth_version(ref_version, f"{where} auth_version")
    else:
        version = _swift_auth_version(raw_version, version_option) if raw_version else "1"
    domains = {name: entries[name] for name in _SWIFT_REFERENCE_OPTIONS[4:] if entries.get(name)}
    if version == "1" and domains:
        raise ConfigError(
            f"{where} sets {', '.join(domains)}, which only Keystone (auth_version = 3) uses; remove them "
            "or set auth_version = 3."
        )
    return _SwiftAccount(
        auth_address=entries["auth_address"],
        user=entries["user"],
        key=entries["key"],
        auth_version=version,
        domains=domains,
        credential_options=f"user and key of {where}",
        address_option=f"auth_address of {where}",
        user_option=f"user of {where}",
        source=where,
    )


def _swift_keystone(settings: StoreSettings, account: _SwiftAccount) -> tuple[str, KeystoneAuth]:
    """The user name and the Keystone v3 settings of a store whose user is ``project:user``."""
    from glimpse.storage.swift import ENDPOINT_TYPES, KeystoneAuth

    section = f"[{settings.id}]"
    project, sep, user = account.user.partition(":")
    if not sep or not project or not user or ":" in user:
        raise ConfigError(
            f"{account.user_option} = {account.user!r} must be 'project:user' for Keystone (auth version "
            "3): the project whose Swift account holds the images, and the user."
        )
    endpoint_type = settings.options.get("swift_store_endpoint_type", "").strip() or "publicURL"
    if endpoint_type not in ENDPOINT_TYPES:
        raise ConfigError(
            f"{section} swift_store_endpoint_type = {endpoint_type!r} must be one of "
            f"{', '.join(ENDPOINT_TYPES)}."
        )
    domains = account.domains
    for kind in ("user", "project"):
        if domains.get(f"{kind}_domain_id") and domains.get(f"{kind}_domain_name"):
            raise ConfigError(
                f"{account.source} sets both {kind}_domain_id and {kind}_domain_name; keep one."
            )
    keystone = KeystoneAuth(
        project_name=project,
        user_domain_id=domains.get("user_domain_id"),
        user_domain_name=domains.get("user_domain_name"),
        project_domain_id=domains.get("project_domain_id"),
        project_domain_name=domains.get("project_domain_name"),
        region=settings.options.get("swift_store_region", "").strip() or None,
        endpoint_type=endpoint_type,
        service_type=settings.options.get("swift_store_service_type", "").strip() or "object-store",
    )
    return user, keystone


def _swift(settings: StoreSettings) -> ImageStore:
    """A Swift store from its ``enabled_backends`` entry and ``[<id>]`` section (Glance's names)."""
    from glimpse.storage.swift import SwiftStore

    unknown = sorted(set(settings.options) - set(_SWIFT_OPTIONS))
    if unknown:
        raise ConfigError(
            f"[{settings.id}] has unknown option(s) {', '.join(unknown)} for a swift store; "
            f"known options are {', '.join(_SWIFT_OPTIONS)}."
        )
    raw_multi = settings.options.get("swift_store_multi_tenant", "").strip()
    if raw_multi and parse_bool(raw_multi, f"[{settings.id}] swift_store_multi_tenant"):
        raise ConfigError(
            f"[{settings.id}] swift_store_multi_tenant = true is not available yet; every image goes "
            "into the one account of swift_store_user."
        )
    account = _swift_account(settings)
    user, keystone = account.user, None
    if account.auth_version == "3":
        user, keystone = _swift_keystone(settings, account)
    cacert = settings.options.get("swift_store_cacert", "").strip() or None
    if cacert is not None and not os.path.isfile(cacert):
        raise ConfigError(
            f"[{settings.id}] swift_store_cacert = {cacert!r} is not a file; give the CA bundle (PEM) "
            "that signed the HTTPS certificates of Keystone and Swift."
        )
    raw_insecure = settings.options.get("swift_store_auth_insecure", "").strip()
    option = f"[{settings.id}] swift_store_auth_insecure"
    insecure = parse_bool(raw_insecure, option) if raw_insecure else False
    raw_create = settings.options.get("swift_store_create_container_on_put", "").strip()
    option = f"[{settings.id}] swift_store_create_container_on_put"
    create = parse_bool(raw_create, option) if raw_create else False
    large = _whole_number(settings, "swift_store_large_object_size", 5120, 1)
    chunk = _whole_number(settings, "swift_store_large_object_chunk_size", 200, 1)
    try:
        return SwiftStore(
            settings.id,
            auth_address=account.auth_address,
            user=user,
            key=account.key,
            keystone=keystone,
            cacert=cacert,
            insecure=insecure,
            credential_options=account.credential_options,
            address_option=account.address_option,
            container=settings.options.get("swift_store_container", "").strip() or "glance",
            create_container_on_put=create,
            large_object_size=large * _MiB,
            chunk_size=chunk * _MiB,
            description=settings.description,
            weight=settings.weight,
        )
    except ValueError as exc:
        raise ConfigError(f"[{settings.id}] {exc}") from None


# Store type -> factory. A new driver is enabled by adding its type here (and to config.STORE_TYPES).
_FACTORIES: Final[Mapping[str, Callable[[StoreSettings], ImageStore]]] = {
    "file": _filesystem,
    "s3": _s3,
    "swift": _swift,
}


def build_store(settings: StoreSettings) -> ImageStore:
    """Build the driver for one ``enabled_backends`` entry, or for the staging store."""
    try:
        factory = _FACTORIES[settings.type]
    except KeyError:
        raise ConfigError(
            f"store {settings.id!r} has unknown type {settings.type!r}; "
            f"known types are {', '.join(_FACTORIES)}."
        ) from None
    return factory(settings)


def build_stores(settings: Settings) -> StoreRegistry:
    """Build every configured store, the default one and the staging store from ``settings``.

    The staging store goes through the same factories as the others: a ``file`` store at
    ``node_staging_uri`` by default, or whatever type ``[os_glance_staging_store]`` names.
    """
    return StoreRegistry(
        [build_store(store) for store in settings.stores],
        settings.default_backend,
        build_store(settings.staging),
    )
