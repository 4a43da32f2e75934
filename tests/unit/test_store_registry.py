"""``StoreRegistry``: built from settings, or directly from in-memory stores."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from glimpse.config import Settings, StoreSettings, load_settings
from glimpse.errors import ConfigError, Conflict, StoreNotFound, UnknownStore
from glimpse.ports import ImageStore
from glimpse.storage.filesystem import FilesystemStore
from glimpse.storage.memory import InMemoryStore
from glimpse.storage.registry import STAGING_STORE_ID, StoreRegistry, build_store, build_stores
from glimpse.storage.s3 import S3Store
from glimpse.storage.swift import SwiftStore


def settings_for(tmp_path: Path, **env: str) -> Settings:
    return load_settings(environ={"GLIMPSE_DATA_DIR": str(tmp_path), **env})


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


def write(store: ImageStore, key: str, data: bytes = b"data") -> str:
    return asyncio.run(store.write(key, one_chunk(data))).location


def memory_registry() -> StoreRegistry:
    return StoreRegistry(
        [InMemoryStore("a"), InMemoryStore("ab"), InMemoryStore("c")],
        "c",
        InMemoryStore(STAGING_STORE_ID),
    )


class TestBuildFromSettings:
    def test_default_configuration(self, tmp_path: Path) -> None:
        registry = build_stores(settings_for(tmp_path))

        assert registry.ids() == ("fast", "cheap", "reliable")
        assert [store.id for store in registry.all()] == ["fast", "cheap", "reliable"]
        assert registry.default is registry.get("fast")
        for store in registry.all():
            assert isinstance(store, FilesystemStore)
            assert store.type == "file"
            assert store.datadir == tmp_path / "stores" / store.id
            assert store.describe() == {
                "data_dir": str(tmp_path / "stores" / store.id),
                "chunk_size": 4 * 1048576,
                "thin_provisioning": False,
            }
            assert store.fsync is True

    def test_order_and_default_follow_the_configuration(self, tmp_path: Path) -> None:
        registry = build_stores(
            settings_for(
                tmp_path,
                GLIMPSE_ENABLED_BACKENDS="zeta:file, alpha:file, mid:file",
                GLIMPSE_GLANCE_STORE__DEFAULT_BACKEND="mid",
            )
        )

        assert registry.ids() == ("zeta", "alpha", "mid")
        assert registry.default.id == "mid"
        assert "alpha" in registry
        assert "nope" not in registry

    def test_description_weight_and_options_reach_the_store(self, tmp_path: Path) -> None:
        registry = build_stores(
            settings_for(
                tmp_path,
                GLIMPSE_ENABLED_BACKENDS="fast:file",
                GLIMPSE_FAST__STORE_DESCRIPTION="Fast SSDs",
                GLIMPSE_FAST__WEIGHT="7",
                GLIMPSE_FAST__FILESYSTEM_STORE_DATADIR=str(tmp_path / "elsewhere"),
                GLIMPSE_FAST__FILESYSTEM_STORE_CHUNK_SIZE="64KB",
                GLIMPSE_FAST__FILESYSTEM_STORE_FSYNC="false",
            )
        )

        store = registry.get("fast")
        assert isinstance(store, FilesystemStore)
        assert store.description == "Fast SSDs"
        assert store.weight == 7
        assert store.fsync is False
        assert store.describe() == {
            "data_dir": str(tmp_path / "elsewhere"),
            "chunk_size": 65536,
            "thin_provisioning": False,
        }

    def test_staging_store(self, tmp_path: Path) -> None:
        registry = build_stores(settings_for(tmp_path))

        staging = registry.staging
        assert isinstance(staging, FilesystemStore)
        assert staging.id == STAGING_STORE_ID == "os_glance_staging_store"
        assert staging.datadir == tmp_path / "staging"
        assert STAGING_STORE_ID not in registry.ids()
        assert staging not in registry.all()
        with pytest.raises(UnknownStore):
            registry.get(STAGING_STORE_ID)

    def test_staging_follows_node_staging_uri(self, tmp_path: Path) -> None:
        registry = build_stores(settings_for(tmp_path, GLIMPSE_NODE_STAGING_URI=f"file://{tmp_path}/stage"))

        assert registry.staging.describe()["data_dir"] == str(tmp_path / "stage")

    def test_staging_on_an_object_store_is_built_by_the_same_factories(self, tmp_path: Path) -> None:
        s3 = build_stores(
            settings_for(
                tmp_path,
                GLIMPSE_OS_GLANCE_STAGING_STORE__TYPE="s3",
                GLIMPSE_OS_GLANCE_STAGING_STORE__S3_STORE_HOST="http://127.0.0.1:8080",
                GLIMPSE_OS_GLANCE_STAGING_STORE__S3_STORE_ACCESS_KEY="account:user",
                GLIMPSE_OS_GLANCE_STAGING_STORE__S3_STORE_SECRET_KEY="secret",
                GLIMPSE_OS_GLANCE_STAGING_STORE__S3_STORE_BUCKET="staging",
            )
        )
        swift = build_stores(
            settings_for(
                tmp_path,
                GLIMPSE_OS_GLANCE_STAGING_STORE__TYPE="swift",
                GLIMPSE_OS_GLANCE_STAGING_STORE__SWIFT_STORE_AUTH_ADDRESS="http://127.0.0.1:8080/auth/v1.0",
                GLIMPSE_OS_GLANCE_STAGING_STORE__SWIFT_STORE_USER="test:tester",
                GLIMPSE_OS_GLANCE_STAGING_STORE__SWIFT_STORE_KEY="testing",
            )
        )

        assert isinstance(s3.staging, S3Store)
        assert isinstance(swift.staging, SwiftStore)
        for registry in (s3, swift):
            assert registry.staging.id == STAGING_STORE_ID
            assert STAGING_STORE_ID not in registry.ids()
        assert s3.staging.location_for("k") == "s3+http://127.0.0.1:8080/staging/k"

    def test_staging_section_errors_name_the_section(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"\[os_glance_staging_store\] s3_store_host is not set"):
            build_stores(settings_for(tmp_path, GLIMPSE_OS_GLANCE_STAGING_STORE__TYPE="s3"))
        with pytest.raises(ConfigError, match=r"\[os_glance_staging_store\] has unknown option\(s\) colour"):
            build_stores(settings_for(tmp_path, GLIMPSE_OS_GLANCE_STAGING_STORE__COLOUR="blue"))

    def test_stores_create_their_directory_on_first_write(self, tmp_path: Path) -> None:
        registry = build_stores(settings_for(tmp_path))
        assert not (tmp_path / "stores").exists()

        write(registry.get("cheap"), "first")

        assert (tmp_path / "stores" / "cheap" / "first").read_bytes() == b"data"
        assert not (tmp_path / "stores" / "fast").exists()

    def test_s3_store_from_glance_options(self, tmp_path: Path) -> None:
        settings = settings_for(
            tmp_path,
            GLIMPSE_ENABLED_BACKENDS="fast:file,big:s3",
            GLIMPSE_BIG__S3_STORE_HOST="http://127.0.0.1:8080",
            GLIMPSE_BIG__S3_STORE_ACCESS_KEY="account:user",
            GLIMPSE_BIG__S3_STORE_SECRET_KEY="secret",
            GLIMPSE_BIG__S3_STORE_BUCKET="images",
            GLIMPSE_BIG__S3_STORE_CREATE_BUCKET_ON_PUT="true",
            GLIMPSE_BIG__S3_STORE_LARGE_OBJECT_SIZE="50",
            GLIMPSE_BIG__S3_STORE_LARGE_OBJECT_CHUNK_SIZE="8",
            GLIMPSE_BIG__S3_STORE_THREAD_POOLS="4",
            GLIMPSE_BIG__S3_STORE_BUCKET_URL_FORMAT="path",
            GLIMPSE_BIG__S3_STORE_REGION_NAME="eu-west-1",
            GLIMPSE_BIG__STORE_DESCRIPTION="Object storage",
        )

        store = build_stores(settings).get("big")

        assert isinstance(store, S3Store)
        assert (store.type, store.description, store.region) == ("s3", "Object storage", "eu-west-1")
        assert store.create_bucket_on_put is True
        assert (store.large_object_size, store.chunk_size, store.thread_pools) == (50 * 2**20, 8 * 2**20, 4)
        assert store.location_for("abc") == "s3+http://127.0.0.1:8080/images/abc"
        assert store.describe() == {
            "bucket": "images",
            "large_object_size": 50 * 2**20,
            "large_object_chunk_size": 8 * 2**20,
            "thread_pools": 4,
        }
        assert "secret" not in repr(store)

    def test_s3_host_without_scheme_is_https_with_glance_defaults(self, tmp_path: Path) -> None:
        store = build_store(
            StoreSettings(
                "big",
                "s3",
                options={
                    "s3_store_host": "s3.example.org",
                    "s3_store_access_key": "a",
                    "s3_store_secret_key": "b",
                    "s3_store_bucket": "images",
                },
            )
        )
        assert isinstance(store, S3Store)
        assert store.location_for("k") == "s3://s3.example.org/images/k"
        assert store.owns("s3://s3.example.org/images/k")
        assert not store.owns("s3://s3.example.org/other/k")
        assert not store.owns("s3+http://s3.example.org/images/k")
        assert (store.large_object_size, store.chunk_size, store.thread_pools) == (
            100 * 2**20,
            10 * 2**20,
            10,
        )
        assert (store.create_bucket_on_put, store.bucket_url_format, store.region) == (
            False,
            "auto",
            "us-east-1",
        )

    def test_swift_store_from_glance_options(self, tmp_path: Path) -> None:
        settings = settings_for(
            tmp_path,
            GLIMPSE_ENABLED_BACKENDS="fast:file,reliable:swift",
            GLIMPSE_RELIABLE__SWIFT_STORE_AUTH_ADDRESS="http://127.0.0.1:8080/auth/v1.0",
            GLIMPSE_RELIABLE__SWIFT_STORE_USER="account:user",
            GLIMPSE_RELIABLE__SWIFT_STORE_KEY="secret",
            GLIMPSE_RELIABLE__SWIFT_STORE_CONTAINER="images",
            GLIMPSE_RELIABLE__SWIFT_STORE_CREATE_CONTAINER_ON_PUT="yes",
            GLIMPSE_RELIABLE__SWIFT_STORE_LARGE_OBJECT_SIZE="1024",
            GLIMPSE_RELIABLE__SWIFT_STORE_LARGE_OBJECT_CHUNK_SIZE="100",
            GLIMPSE_RELIABLE__SWIFT_STORE_MULTI_TENANT="false",
        )

        store = build_stores(settings).get("reliable")

        assert isinstance(store, SwiftStore)
        assert store.type == "swift"
        assert store.create_container_on_put is True
        assert store.location_for("abc") == "swift+http://127.0.0.1:8080/images/abc"
        assert store.describe() == {
            "container": "images",
            "large_object_size": 1024 * 2**20,
            "large_object_chunk_size": 100 * 2**20,
        }
        assert "secret" not in repr(store)

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"swift_store_auth_address": ""}, "swift_store_auth_address is not set"),
            ({"swift_store_key": ""}, "swift_store_key is not set"),
            ({"swift_store_auth_address": "127.0.0.1:8080"}, "must be an http:// or https:// URL"),
            ({"swift_store_auth_version": "2"}, "no longer offers the v2.0 identity API"),
            ({"swift_store_multi_tenant": "true"}, "multi_tenant = true is not available yet"),
            ({"swift_store_large_object_chunk_size": "0"}, "must be at least 1"),
            ({"swift_store_container": "a/b"}, "without '/'"),
            ({"swift_store_regions": "x"}, "unknown option"),
        ],
    )
    def test_bad_swift_store_options(self, options: Mapping[str, str], message: str) -> None:
        base = {
            "swift_store_auth_address": "http://127.0.0.1:1/auth/v1.0",
            "swift_store_user": "a:b",
            "swift_store_key": "c",
        }
        with pytest.raises(ConfigError, match=message) as caught:
            build_store(StoreSettings("reliable", "swift", options={**base, **options}))
        assert "[reliable]" in caught.value.message

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"s3_store_host": ""}, "s3_store_host is not set"),
            ({"s3_store_bucket": ""}, "s3_store_bucket is not set"),
            ({"s3_store_secret_key": ""}, "s3_store_secret_key is not set"),
            ({"s3_store_host": "ftp://x"}, "must be a host name or an http"),
            ({"s3_store_large_object_chunk_size": "4"}, "chunk_size = '4' must be at least 5"),
            ({"s3_store_large_object_size": "big"}, "not a whole number"),
            ({"s3_store_thread_pools": "0"}, "thread_pools = '0' must be at least 1"),
            ({"s3_store_bucket_url_format": "dns"}, "must be one of auto, path, virtual"),
            ({"s3_store_create_bucket_on_put": "perhaps"}, "s3_store_create_bucket_on_put"),
            ({"s3_store_bucket_name": "x"}, "unknown option"),
        ],
    )
    def test_bad_s3_store_options(self, options: Mapping[str, str], message: str) -> None:
        base = {
            "s3_store_host": "http://127.0.0.1:1",
            "s3_store_access_key": "a",
            "s3_store_secret_key": "b",
            "s3_store_bucket": "images",
        }
        with pytest.raises(ConfigError, match=message) as caught:
            build_store(StoreSettings("big", "s3", options={**base, **options}))
        assert "[big]" in caught.value.message

    @pytest.mark.parametrize(
        ("env", "message"),
        [
            ({"GLIMPSE_FAST__FILESYSTEM_STORE_CHUNK_SIZE": "lots"}, "filesystem_store_chunk_size"),
            ({"GLIMPSE_FAST__FILESYSTEM_STORE_CHUNK_SIZE": "0"}, "at least 1 byte"),
            ({"GLIMPSE_FAST__FILESYSTEM_STORE_FSYNC": "maybe"}, "filesystem_store_fsync"),
            ({"GLIMPSE_FAST__FILESYSTEM_STORE_DATADIRS": "/a,/b"}, "unknown option"),
        ],
    )
    def test_bad_file_store_options(self, tmp_path: Path, env: Mapping[str, str], message: str) -> None:
        with pytest.raises(ConfigError, match=message) as caught:
            build_stores(settings_for(tmp_path, GLIMPSE_ENABLED_BACKENDS="fast:file", **env))
        assert "[fast]" in caught.value.message

    def test_unknown_type_is_a_config_error(self) -> None:
        with pytest.raises(ConfigError, match="unknown type 'tape'"):
            build_store(StoreSettings(id="old", type="tape"))


class TestLookup:
    def test_unknown_store_names_the_known_ones(self) -> None:
        registry = memory_registry()

        with pytest.raises(UnknownStore) as caught:
            registry.get("zzz")

        assert isinstance(caught.value, Conflict)
        assert caught.value.store_id == "zzz"
        assert caught.value.message == "Unknown store 'zzz'; known stores are: a, ab, c"

    def test_direct_construction(self) -> None:
        registry = memory_registry()

        assert registry.ids() == ("a", "ab", "c")
        assert registry.default.id == "c"
        assert registry.staging.id == STAGING_STORE_ID
        assert registry.get("ab").id == "ab"

    @pytest.mark.parametrize(
        ("stores", "default_id", "message"),
        [
            (["a", "a"], "a", "used twice"),
            (["a", "b"], "c", "default store 'c'"),
            (["a", STAGING_STORE_ID], "a", "staging store id"),
        ],
    )
    def test_inconsistent_construction_is_refused(
        self, stores: list[str], default_id: str, message: str
    ) -> None:
        with pytest.raises(ValueError, match=message):
            StoreRegistry([InMemoryStore(i) for i in stores], default_id, InMemoryStore(STAGING_STORE_ID))


class TestForLocation:
    def test_memory_locations_route_by_store_id(self) -> None:
        registry = memory_registry()
        in_a = write(registry.get("a"), "k")
        in_ab = write(registry.get("ab"), "k")
        staged = write(registry.staging, "k")

        assert registry.for_location(in_a) is registry.get("a")
        assert registry.for_location(in_ab) is registry.get("ab")
        assert registry.for_location(staged) is registry.staging

    def test_file_locations_route_by_directory(self, tmp_path: Path) -> None:
        registry = build_stores(settings_for(tmp_path))
        locations = {store.id: write(store, "same-key") for store in registry.all()}
        staged = write(registry.staging, "same-key")

        for store_id, location in locations.items():
            assert registry.for_location(location) is registry.get(store_id)
        assert registry.for_location(staged) is registry.staging

    def test_location_of_a_missing_object_still_routes(self, tmp_path: Path) -> None:
        registry = build_stores(settings_for(tmp_path))

        location = f"file://{tmp_path / 'stores' / 'reliable' / 'not-written-yet'}"

        assert registry.for_location(location) is registry.get("reliable")

    @pytest.mark.parametrize(
        "location",
        [
            "file:///etc/passwd",
            "file://{tmp}/stores/fast/../cheap/x",
            "file://{tmp}/stores/fast/nested/x",
            "file://{tmp}/stores/fast/",
            "memory://fast/x",
            "s3://bucket/x",
            "",
        ],
    )
    def test_foreign_locations(self, tmp_path: Path, location: str) -> None:
        registry = build_stores(settings_for(tmp_path))

        with pytest.raises(StoreNotFound):
            registry.for_location(location.format(tmp=tmp_path))
