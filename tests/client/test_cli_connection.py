"""``glimpse``'s connection options and environment turned into a ``ClientConfig``: the OpenStack
clients' names as aliases, and an option before ``GLIMPSE_*`` before ``OS_*``."""

from __future__ import annotations

import argparse

import pytest

from glimpse_client import ClientConfig
from glimpse_client.cli import connection
from glimpse_client.cli.errors import UsageError


def config(*argv: str, **environ: str) -> ClientConfig:
    parser = argparse.ArgumentParser()
    connection.add_arguments(parser)
    return connection.config_from_options(parser.parse_args(list(argv)), environ)


def identity(built: ClientConfig) -> tuple[str, str | None, str | None, str | None]:
    return built.endpoint, built.token, built.project_id, built.user_id


@pytest.mark.parametrize("url", ["--endpoint", "--os-image-url", "--os-endpoint"])
@pytest.mark.parametrize("token", ["--token", "--os-token", "--os-auth-token"])
def test_the_openstack_option_names_are_aliases(url: str, token: str) -> None:
    built = config(url, "http://u", token, "t", "--os-project-id", "p", "--os-user-id", "me")
    assert identity(built) == ("http://u", "t", "p", "me")
    assert identity(config(url, "http://u", "--project-id", "p", "--user-id", "me")) == (
        "http://u",
        None,
        "p",
        "me",
    )


def test_glimpse_variables_come_before_the_openstack_ones() -> None:
    everything = {
        "GLIMPSE_URL": "http://glimpse",
        "OS_IMAGE_URL": "http://image-url",
        "OS_ENDPOINT": "http://endpoint",
        "OS_TOKEN": "os-token",
        "OS_AUTH_TOKEN": "auth-token",
        "GLIMPSE_PROJECT_ID": "g-project",
        "OS_PROJECT_ID": "os-project",
        "GLIMPSE_USER_ID": "g-user",
        "OS_USER_ID": "os-user",
    }
    assert identity(config(**everything)) == ("http://glimpse", "os-token", "g-project", "g-user")
    openstack_only = {k: v for k, v in everything.items() if not k.startswith("GLIMPSE_")}
    assert identity(config(**openstack_only)) == ("http://image-url", "os-token", "os-project", "os-user")
    fallbacks = {"OS_ENDPOINT": "http://endpoint", "OS_AUTH_TOKEN": "auth-token"}
    assert identity(config(**fallbacks)) == ("http://endpoint", "auth-token", None, None)
    # A variable set to the empty string counts as unset.
    assert config(GLIMPSE_URL="", OS_IMAGE_URL="http://image-url").endpoint == "http://image-url"


def test_an_option_wins_over_every_variable() -> None:
    environ = {
        "GLIMPSE_URL": "http://glimpse",
        "OS_TOKEN": "os-token",
        "GLIMPSE_PROJECT_ID": "g-project",
        "GLIMPSE_USER_ID": "g-user",
    }
    argv = [
        "--os-endpoint",
        "http://given",
        "--os-auth-token",
        "t",
        "--os-project-id",
        "p",
        "--os-user-id",
        "u",
    ]
    assert identity(config(*argv, **environ)) == ("http://given", "t", "p", "u")


def test_an_image_url_in_the_environment_is_used_before_a_cloud() -> None:
    # OS_CLOUD names a cloud that does not exist: reading it would fail, so it was not read.
    built = config(OS_CLOUD="nowhere", OS_IMAGE_URL="http://image-url", OS_PROJECT_ID="p")
    assert (built.endpoint, built.project_id, built.effective_roles) == (
        "http://image-url",
        "p",
        ("member", "reader"),
    )


def test_no_url_and_no_cloud_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no image service given"):
        config(OS_TOKEN="t", OS_PROJECT_ID="p")
