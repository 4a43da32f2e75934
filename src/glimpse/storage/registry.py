"""The named image stores of one deployment, built once from :class:`~glimpse.config.Settings`.

:func:`build_stores` turns each ``enabled_backends`` entry into a driver through ``_FACTORIES``, the
one table that maps a store type to the code that builds it. The staging area used by interoperable
import (``os_glance_staging_store``) is a store too, built by the same table from its own settings
(any type), reachable as :attr:`StoreRegistry.staging`, but never listed among the configured stores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Final

from glimpse.config import STAGING_STORE_ID, Settings, StoreSettings, parse_bool, parse_size
from glimpse.errors import ConfigError, StoreNotFound, UnknownStore
from glimpse.ports import ImageStore
from glimpse.storage.filesystem import DEFAULT_CHUNK_SIZE, FilesystemStore
from glimpse.storage.s3 import BUCKET_URL_FORMATS, MIN_PART_SIZE, S3Store
from glimpse.storage.swift import SwiftStore

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
)


def _swift(settings: StoreSettings) -> ImageStore:
    """A Swift store from its ``enabled_backends`` entry and ``[<id>]`` section (Glance's names)."""
    unknown = sorted(set(settings.options) - set(_SWIFT_OPTIONS))
    if unknown:
        raise ConfigError(
            f"[{settings.id}] has unknown option(s) {', '.join(unknown)} for a swift store; "
            f"known options are {', '.join(_SWIFT_OPTIONS)}."
        )
    required = {}
    for name in ("swift_store_auth_address", "swift_store_user", "swift_store_key"):
        value = settings.options.get(name, "").strip()
        if not value:
            raise ConfigError(f"[{settings.id}] {name} is not set; a swift store needs it.")
        required[name] = value
    auth_version = settings.options.get("swift_store_auth_version", "").strip() or "1"
    if auth_version != "1":
        raise ConfigError(
            f"[{settings.id}] swift_store_auth_version = {auth_version!r} is not available yet; only 1 "
            "(tempauth and other v1 auth) is."
        )
    raw_multi = settings.options.get("swift_store_multi_tenant", "").strip()
    if raw_multi and parse_bool(raw_multi, f"[{settings.id}] swift_store_multi_tenant"):
        raise ConfigError(
            f"[{settings.id}] swift_store_multi_tenant = true is not available yet; every image goes "
            "into the one account of swift_store_user."
        )
    raw_create = settings.options.get("swift_store_create_container_on_put", "").strip()
    option = f"[{settings.id}] swift_store_create_container_on_put"
    create = parse_bool(raw_create, option) if raw_create else False
    large = _whole_number(settings, "swift_store_large_object_size", 5120, 1)
    chunk = _whole_number(settings, "swift_store_large_object_chunk_size", 200, 1)
    try:
        return SwiftStore(
            settings.id,
            auth_address=required["swift_store_auth_address"],
            user=required["swift_store_user"],
            key=required["swift_store_key"],
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
