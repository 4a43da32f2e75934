"""Settings: read once from an INI file and the environment, every value checked when they load."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from glimpse.config import Settings, load_settings, parse_list
from glimpse.domain.url_rules import ImportFilter
from glimpse.errors import ConfigError


def settings(**env: str) -> Settings:
    return load_settings(environ=env)


# -- lists -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a,b", ("a", "b")),
        ("a, b", ("a", "b")),
        ("  a ,b  ,", ("a", "b")),
        ("[a, b]", ("a", "b")),
        ("['a', 'b']", ("a", "b")),
        ('["a","b"]', ("a", "b")),
        (" [ 'a' , \"b\" ] ", ("a", "b")),
        ("['a,b', c]", ("a,b", "c")),
        ("a", ("a",)),
        ("", ()),
        ("   ", ()),
        ("[]", ()),
        ("a,,b", ("a", "b")),
    ],
)
def test_list_forms(value: str, expected: tuple[str, ...]) -> None:
    assert parse_list(value, "opt") == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("[a, b", "unmatched bracket"),
        ("a, b]", "unmatched bracket"),
        ("['a, b]", "is not a list"),
        ("a'b, c", "is not a list"),
        ("'a' b", "is not a list"),
    ],
)
def test_malformed_lists_name_the_option(value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_list(value, "[image_format] disk_formats")
    assert caught.value.message.startswith(f"[image_format] disk_formats = {value!r}")
    assert problem in caught.value.message


#: Each list option: its variable, two items as written, how to read it back and what it should hold.
LIST_OPTIONS: list[
    tuple[str, tuple[str, str], Callable[[Settings], tuple[object, ...]], tuple[object, ...]]
] = [
    (
        "GLIMPSE_ENABLED_BACKENDS",
        ("one:file", "two:file"),
        lambda s: tuple(x.id for x in s.stores),
        ("one", "two"),
    ),
    (
        "GLIMPSE_ENABLED_IMPORT_METHODS",
        ("web-download", "copy-image"),
        lambda s: s.enabled_import_methods,
        ("web-download", "copy-image"),
    ),
    ("GLIMPSE_IMAGE_FORMAT__DISK_FORMATS", ("raw", "qcow2"), lambda s: s.disk_formats, ("raw", "qcow2")),
    (
        "GLIMPSE_IMAGE_FORMAT__CONTAINER_FORMATS",
        ("bare", "ovf"),
        lambda s: s.container_formats,
        ("bare", "ovf"),
    ),
    (
        "GLIMPSE_AUTH__NOAUTH_DEFAULT_ROLES",
        ("member", "obs"),
        lambda s: s.noauth_default_roles,
        ("member", "obs"),
    ),
    (
        "GLIMPSE_IMPORT_FILTERING_OPTS__ALLOWED_SCHEMES",
        ("https", "http"),
        lambda s: s.import_filter.allowed_schemes,
        ("https", "http"),
    ),
    (
        "GLIMPSE_IMPORT_FILTERING_OPTS__DISALLOWED_SCHEMES",
        ("ftp", "file"),
        lambda s: s.import_filter.disallowed_schemes,
        ("ftp", "file"),
    ),
    (
        "GLIMPSE_IMPORT_FILTERING_OPTS__ALLOWED_HOSTS",
        ("a.example", "b.example"),
        lambda s: s.import_filter.allowed_hosts,
        ("a.example", "b.example"),
    ),
    (
        "GLIMPSE_IMPORT_FILTERING_OPTS__DISALLOWED_HOSTS",
        ("a.example", "b.example"),
        lambda s: s.import_filter.disallowed_hosts,
        ("a.example", "b.example"),
    ),
    (
        "GLIMPSE_IMPORT_FILTERING_OPTS__ALLOWED_PORTS",
        ("8080", "443"),
        lambda s: s.import_filter.allowed_ports,
        (8080, 443),
    ),
    (
        "GLIMPSE_IMPORT_FILTERING_OPTS__DISALLOWED_PORTS",
        ("22", "25"),
        lambda s: s.import_filter.disallowed_ports,
        (22, 25),
    ),
]
#: How oslo.config files write a list of two items.
FORMS = ["{a},{b}", "{a}, {b}", "[{a}, {b}]", "['{a}', '{b}']", '["{a}","{b}"]']


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(
    ("variable", "items", "read", "expected"), LIST_OPTIONS, ids=[o[0] for o in LIST_OPTIONS]
)
def test_every_list_option_takes_every_form(
    variable: str,
    items: tuple[str, str],
    read: Callable[[Settings], tuple[object, ...]],
    expected: tuple[object, ...],
    form: str,
) -> None:
    assert read(settings(**{variable: form.format(a=items[0], b=items[1])})) == expected


def test_a_glance_style_file_is_read_as_written(tmp_path: Path) -> None:
    config = tmp_path / "glance-api.conf"
    config.write_text(
        "[DEFAULT]\n"
        "enabled_backends = fast:file, cheap:file\n"
        "enabled_import_methods = ['glance-direct', 'web-download']\n"
        "[image_format]\n"
        'disk_formats = ["raw","qcow2"]\n'
        "container_formats = [bare]\n"
        "[import_filtering_opts]\n"
        "allowed_ports = [80, 443, 8080]\n"
        "disallowed_hosts = ['evil.example']\n",
        encoding="utf-8",
    )
    loaded = load_settings(config, environ={})
    assert [store.id for store in loaded.stores] == ["fast", "cheap"]
    assert loaded.enabled_import_methods == ("glance-direct", "web-download")
    assert loaded.disk_formats == ("raw", "qcow2")
    assert loaded.container_formats == ("bare",)
    assert loaded.import_filter == ImportFilter(
        allowed_ports=(80, 443, 8080), disallowed_hosts=("evil.example",)
    )


def test_healthcheck_options_are_oslo_middlewares(tmp_path: Path) -> None:
    config = tmp_path / "glance-api.conf"
    config.write_text(
        "[healthcheck]\ndisable_by_file_path = /var/lib/glimpse/healthcheck_disable\ndetailed = true\n"
        "timeout = 0.5\n",
        encoding="utf-8",
    )
    loaded = load_settings(config, environ={})
    assert loaded.healthcheck_disable_file == Path("/var/lib/glimpse/healthcheck_disable")
    assert (loaded.healthcheck_detailed, loaded.healthcheck_timeout) == (True, 0.5)
    defaults = load_settings(environ={})
    assert (defaults.healthcheck_disable_file, defaults.healthcheck_detailed) == (None, False)
    assert defaults.healthcheck_timeout == 2.0


def test_an_empty_list_is_an_empty_list() -> None:
    loaded = settings(
        GLIMPSE_ENABLED_IMPORT_METHODS="",
        GLIMPSE_AUTH__NOAUTH_DEFAULT_ROLES="[]",
        GLIMPSE_IMPORT_FILTERING_OPTS__ALLOWED_PORTS="",
    )
    assert loaded.enabled_import_methods == ()
    assert loaded.noauth_default_roles == ()
    assert loaded.import_filter.allowed_ports == ()


@pytest.mark.parametrize(
    ("variable", "fragment"),
    [
        ("GLIMPSE_ENABLED_BACKENDS", "enabled_backends is empty"),
        ("GLIMPSE_IMAGE_FORMAT__DISK_FORMATS", "[image_format] disk_formats is empty"),
        ("GLIMPSE_IMAGE_FORMAT__CONTAINER_FORMATS", "[image_format] container_formats is empty"),
    ],
)
def test_lists_that_cannot_be_empty(variable: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[")):
        settings(**{variable: "[ ]"})


# -- defaults ----------------------------------------------------------------------------------------


def test_unset_options_take_the_defaults_of_settings() -> None:
    loaded = settings()
    for option in dataclasses.fields(Settings):
        if option.default is not dataclasses.MISSING:
            assert getattr(loaded, option.name) == option.default, option.name
        elif option.default_factory is not dataclasses.MISSING:
            assert getattr(loaded, option.name) == option.default_factory(), option.name
    assert [store.id for store in loaded.stores] == ["fast", "cheap", "reliable"]
    assert loaded.default_backend == "fast"
    assert loaded.staging.datadir == loaded.data_dir / "staging"
    assert (loaded.staging.id, loaded.staging.type, loaded.stage_host) == (
        "os_glance_staging_store",
        "file",
        None,
    )


def test_empty_scalar_values_count_as_unset() -> None:
    loaded = settings(
        GLIMPSE_BIND_PORT="",
        GLIMPSE_LOG_LEVEL=" ",
        GLIMPSE_TASK__TASK_LEASE_TIME="",
        GLIMPSE_FAST__WEIGHT="",
    )
    assert (loaded.bind_port, loaded.log_level, loaded.task_lease_time) == (9292, "INFO", 30.0)
    assert loaded.store("fast").weight == 0


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("GLIMPSE_BIND_PORT", "http", "bind_port = 'http' is not a whole number."),
        (
            "GLIMPSE_TASK__MAX_CONCURRENT_TASKS",
            "0",
            "[task] max_concurrent_tasks = 0 is below its minimum 1.",
        ),
        ("GLIMPSE_TASK__TASK_LEASE_TIME", "soon", "[task] task_lease_time = 'soon' is not a number."),
        (
            "GLIMPSE_TASK__EMBEDDED_RUNNER",
            "sometimes",
            "[task] embedded_runner = 'sometimes' is not a boolean",
        ),
        ("GLIMPSE_LOG_LEVEL", "chatty", "log_level = 'chatty' is not a level"),
        ("GLIMPSE_HEALTHCHECK__TIMEOUT", "0", "[healthcheck] timeout must be greater than 0."),
        ("GLIMPSE_HEALTHCHECK__DETAILED", "maybe", "[healthcheck] detailed = 'maybe' is not a boolean"),
        ("GLIMPSE_ENABLED_IMPORT_METHODS", "[glance-direct, web_download]", "unknown method 'web_download'"),
    ],
)
def test_bad_values_name_the_option(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(**{variable: value})
    assert message in caught.value.message


# -- [import_filtering_opts] -------------------------------------------------------------------------


def test_the_import_filter_is_built_once_as_a_frozen_value() -> None:
    loaded = settings(
        GLIMPSE_IMPORT_FILTERING_OPTS__ALLOWED_SCHEMES="https, http",
        GLIMPSE_IMPORT_FILTERING_OPTS__DISALLOWED_SCHEMES="",
        GLIMPSE_IMPORT_FILTERING_OPTS__ALLOWED_HOSTS=" images.example.com ,Mirror.Example.org.,",
        GLIMPSE_IMPORT_FILTERING_OPTS__DISALLOWED_HOSTS="evil.example",
        GLIMPSE_IMPORT_FILTERING_OPTS__ALLOWED_PORTS="443, 8443",
        GLIMPSE_IMPORT_FILTERING_OPTS__DISALLOWED_PORTS="",
        GLIMPSE_IMPORT_FILTERING_OPTS__ALLOW_PRIVATE_NETWORKS="Yes",
    )
    assert loaded.import_filter == ImportFilter(
        allowed_schemes=("https", "http"),
        allowed_hosts=("images.example.com", "mirror.example.org"),
        disallowed_hosts=("evil.example",),
        allowed_ports=(443, 8443),
        allow_private_networks=True,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.import_filter.allowed_ports = (1,)  # type: ignore[misc]


def test_the_import_filter_keeps_its_defaults() -> None:
    assert settings().import_filter == ImportFilter()
    flt = settings(GLIMPSE_IMPORT_FILTERING_OPTS__ALLOW_PRIVATE_NETWORKS="off").import_filter
    assert flt == ImportFilter(allow_private_networks=False)
    assert flt.allowed_schemes == ("http", "https")
    assert flt.allowed_ports == (80, 443)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"allowed_ports": "80, http"}, "allowed_ports: 'http' is not a port number (1-65535)"),
        ({"allowed_ports": "80,0"}, "allowed_ports: '0' is not a port number"),
        ({"disallowed_ports": "65536"}, "disallowed_ports: '65536' is not a port number"),
        ({"disallowed_ports": "-1"}, "disallowed_ports: '-1' is not a port number"),
        ({"allow_private_networks": "maybe"}, "allow_private_networks: 'maybe' is not a boolean"),
        ({"allowed_host": "example.com"}, "unknown option(s) allowed_host"),
        ({"allowed_hosts": "exa mple.com"}, "allowed_hosts: 'exa mple.com' is not a host name"),
        ({"allowed_schemes": "[ht tp]"}, "allowed_schemes: 'ht tp' is not a URL scheme"),
        ({"allowed_hosts": "[a.example"}, "allowed_hosts = '[a.example' has an unmatched bracket"),
    ],
)
def test_import_filter_typos_stop_the_load(options: dict[str, str], message: str) -> None:
    env = {f"GLIMPSE_IMPORT_FILTERING_OPTS__{name.upper()}": value for name, value in options.items()}
    with pytest.raises(ConfigError) as caught:
        settings(**env)
    assert caught.value.message.startswith("[import_filtering_opts] ")
    assert message in caught.value.message


# -- HTTP limits -------------------------------------------------------------------------------------


def test_http_limits_default_to_glance_sized_headers_and_can_be_set() -> None:
    defaults = settings().http_limits
    assert (defaults.max_header_line, defaults.max_header_size) == (16384, 65536)
    limits = settings(
        GLIMPSE_MAX_HEADER_LINE="4096",
        GLIMPSE_MAX_HEADER_SIZE="8192",
        GLIMPSE_CLIENT_HEADER_TIMEOUT="2.5",
        GLIMPSE_CLIENT_SOCKET_TIMEOUT="30",
        GLIMPSE_MAX_CLIENT_CONNECTIONS="50",
    ).http_limits
    assert (limits.max_header_line, limits.max_header_size) == (4096, 8192)
    assert (limits.client_header_timeout, limits.client_socket_timeout) == (2.5, 30.0)
    assert limits.max_client_connections == 50


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        (
            {"GLIMPSE_MAX_HEADER_LINE": "8192", "GLIMPSE_MAX_HEADER_SIZE": "4096"},
            "smaller than max_header_line",
        ),
        ({"GLIMPSE_MAX_HEADER_LINE": "100"}, "max_header_line"),
        ({"GLIMPSE_CLIENT_HEADER_TIMEOUT": "0"}, "client_header_timeout"),
        ({"GLIMPSE_MAX_CLIENT_CONNECTIONS": "0"}, "max_client_connections"),
    ],
)
def test_unusable_http_limits_are_refused_by_name(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        settings(**env)


# -- staging and the node's identity -----------------------------------------------------------------


def test_staging_section_may_name_any_store_type() -> None:
    loaded = settings(
        GLIMPSE_OS_GLANCE_STAGING_STORE__TYPE="s3",
        GLIMPSE_OS_GLANCE_STAGING_STORE__S3_STORE_BUCKET="staging",
        GLIMPSE_WORKER_SELF_REFERENCE_URL="http://node-a:9292/",
    )
    assert (loaded.staging.id, loaded.staging.type) == ("os_glance_staging_store", "s3")
    assert loaded.staging.options == {"s3_store_bucket": "staging"}
    assert not loaded.staging.node_local
    assert loaded.worker_self_reference_url == "http://node-a:9292"
    # Staged data on an object store can be read from any node: no node is recorded.
    assert loaded.stage_host is None


def test_file_staging_records_the_node() -> None:
    loaded = settings(GLIMPSE_WORKER_SELF_REFERENCE_URL="https://node-b.example.org:9292")
    assert loaded.staging.node_local
    assert loaded.stage_host == "https://node-b.example.org:9292"


def test_staging_directory_from_node_staging_uri_or_its_section(tmp_path: Path) -> None:
    by_uri = settings(GLIMPSE_NODE_STAGING_URI=f"file://{tmp_path}/a")
    by_section = settings(GLIMPSE_OS_GLANCE_STAGING_STORE__FILESYSTEM_STORE_DATADIR=str(tmp_path / "b"))
    both = settings(
        GLIMPSE_NODE_STAGING_URI=f"file://{tmp_path}/c",
        GLIMPSE_OS_GLANCE_STAGING_STORE__FILESYSTEM_STORE_DATADIR=str(tmp_path / "c"),
    )
    assert [s.staging.datadir for s in (by_uri, by_section, both)] == [tmp_path / n for n in "abc"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"GLIMPSE_OS_GLANCE_STAGING_STORE__TYPE": "nfs"},
            "[os_glance_staging_store] type = 'nfs' is not a store type; use one of file, s3, swift.",
        ),
        (
            {"GLIMPSE_OS_GLANCE_STAGING_STORE__TYPE": "swift", "GLIMPSE_NODE_STAGING_URI": "file:///srv/s"},
            "node_staging_uri = 'file:///srv/s' is set, but [os_glance_staging_store] type = swift",
        ),
        (
            {
                "GLIMPSE_NODE_STAGING_URI": "file:///srv/one",
                "GLIMPSE_OS_GLANCE_STAGING_STORE__FILESYSTEM_STORE_DATADIR": "/srv/two",
            },
            "name two different staging directories",
        ),
        ({"GLIMPSE_NODE_STAGING_URI": "/srv/staging"}, "must be a file:// URI with an absolute path"),
        ({"GLIMPSE_OS_GLANCE_STAGING_STORE__WEIGHT": "3"}, "[os_glance_staging_store] weight has no meaning"),
        ({"GLIMPSE_WORKER_SELF_REFERENCE_URL": "node-a:9292"}, "worker_self_reference_url = 'node-a:9292'"),
    ],
)
def test_bad_staging_settings_name_the_option(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=env)
    assert message in caught.value.message


def test_database_timeouts_take_oslo_db_names_where_it_has_them(tmp_path: Path) -> None:
    config = tmp_path / "glance-api.conf"
    config.write_text(
        "[database]\nconnection = sqlite:///x.db\nconnect_timeout = 3\nread_timeout = 7.5\n"
        "pool_timeout = 4\nconnection_recycle_time = 600\n"
    )
    timeouts = load_settings(config, environ={}).database_timeouts
    assert (timeouts.connect_timeout, timeouts.read_timeout) == (3, 7.5)
    assert (timeouts.pool_timeout, timeouts.connection_recycle_time) == (4, 600)
    defaults = load_settings(environ={}).database_timeouts
    assert (defaults.connect_timeout, defaults.read_timeout, defaults.pool_timeout) == (10, 60, 30)
    assert defaults.connection_recycle_time == 3600


@pytest.mark.parametrize("option", ["CONNECT_TIMEOUT", "READ_TIMEOUT", "POOL_TIMEOUT"])
def test_a_database_timeout_of_zero_is_refused(option: str) -> None:
    with pytest.raises(ConfigError, match=f"\\[database\\] {option.lower()} must be greater than 0"):
        load_settings(environ={f"GLIMPSE_DATABASE__{option}": "0"})
