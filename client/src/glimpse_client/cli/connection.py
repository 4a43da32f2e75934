"""From ``glimpse``'s global options and environment to a :class:`glimpse_client.ClientConfig`."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping

from glimpse_client import ClientConfig, config_from_cloud

from .errors import UsageError

#: Environment variables that mean "use openstacksdk's loader" when no image URL is given.
CLOUD_VARIABLES = ("OS_CLOUD", "OS_AUTH_URL")
#: For each setting of a direct connection, its variables, the first set one winning: Glimpse's own
#: before the OpenStack clients' ones (an option on the command line wins over all of them).
URL_VARIABLES = ("GLIMPSE_URL", "OS_IMAGE_URL", "OS_ENDPOINT")
TOKEN_VARIABLES = ("OS_TOKEN", "OS_AUTH_TOKEN")
PROJECT_VARIABLES = ("GLIMPSE_PROJECT_ID", "OS_PROJECT_ID")
USER_VARIABLES = ("GLIMPSE_USER_ID", "OS_USER_ID")
DEFAULT_TIMEOUT = 30.0


def _env_help(names: tuple[str, ...]) -> str:
    return "env: " + ", then ".join(names)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The global connection options (defaults come from the environment when the options are read)."""
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--os-cloud",
        metavar="NAME",
        help="cloud from clouds.yaml, read with openstacksdk's loader (env: OS_CLOUD; other OS_* "
        "variables also count)",
    )
    group.add_argument(
        "--endpoint",
        "--os-image-url",
        "--os-endpoint",
        dest="endpoint",
        metavar="URL",
        help=f"image service URL, e.g. http://127.0.0.1:9292, used directly ({_env_help(URL_VARIABLES)})",
    )
    group.add_argument(
        "--token",
        "--os-token",
        "--os-auth-token",
        dest="token",
        metavar="TOKEN",
        help=f"sent as X-Auth-Token with an image service URL ({_env_help(TOKEN_VARIABLES)})",
    )
    group.add_argument(
        "--project-id",
        "--os-project-id",
        dest="project_id",
        metavar="ID",
        help=f"no-auth servers: X-Project-Id to send ({_env_help(PROJECT_VARIABLES)})",
    )
    group.add_argument(
        "--user-id",
        "--os-user-id",
        dest="user_id",
        metavar="ID",
        help=f"no-auth servers: X-User-Id to send ({_env_help(USER_VARIABLES)})",
    )
    group.add_argument(
        "--roles",
        metavar="A,B",
        help="no-auth servers: X-Roles to send, comma-separated (env: GLIMPSE_ROLES)",
    )
    group.add_argument(
        "--timeout",
        dest="http_timeout",
        type=float,
        metavar="SECONDS",
        help=f"timeout of each HTTP request (default: the cloud's api_timeout, else {DEFAULT_TIMEOUT:g}; "
        "env: GLIMPSE_TIMEOUT)",
    )


def _setting(given: str | None, environ: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    """The option when given, else the first of ``names`` set (and not empty) in the environment."""
    return given or next((environ[name] for name in names if environ.get(name)), None)


def _timeout(options: argparse.Namespace, environ: Mapping[str, str]) -> float | None:
    """``--timeout`` or ``GLIMPSE_TIMEOUT``; None when neither is given."""
    if options.http_timeout is not None:
        return float(options.http_timeout)
    raw = environ.get("GLIMPSE_TIMEOUT")
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise UsageError(f"GLIMPSE_TIMEOUT={raw!r} is not a number of seconds") from None


def _from_cloud(cloud: str | None, timeout: float | None) -> ClientConfig:
    """The cloud's settings; its own ``api_timeout`` (else the SDK's default) unless one is given.
    Without openstacksdk, ``config_from_cloud`` raises an error that names the extra to install."""
    config = config_from_cloud(cloud)
    return config if timeout is None else dataclasses.replace(config, timeout=timeout)


def config_from_options(
    options: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> ClientConfig:
    """Pick the connection, in this order: ``--os-cloud``; an image service URL (``--endpoint`` or
    its aliases, then ``GLIMPSE_URL``, ``OS_IMAGE_URL``, ``OS_ENDPOINT``), used directly; ``OS_CLOUD``
    or ``OS_AUTH_URL`` (openstacksdk's loader reads every ``OS_*`` variable). Raises UsageError when
    none is given."""
    env = os.environ if environ is None else environ
    timeout = _timeout(options, env)
    if options.os_cloud:
        return _from_cloud(options.os_cloud, timeout)
    endpoint = _setting(options.endpoint, env, URL_VARIABLES)
    if endpoint:
        roles = options.roles if options.roles is not None else env.get("GLIMPSE_ROLES")
        return ClientConfig(
            endpoint=endpoint,
            token=_setting(options.token, env, TOKEN_VARIABLES),
            project_id=_setting(options.project_id, env, PROJECT_VARIABLES),
            user_id=_setting(options.user_id, env, USER_VARIABLES),
            # Unset: the SDK's member roles with a no-auth identity; set but empty: no roles at all.
            roles=None if roles is None else tuple(r.strip() for r in roles.split(",") if r.strip()),
            timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
        )
    if any(env.get(name) for name in CLOUD_VARIABLES):
        return _from_cloud(env.get("OS_CLOUD") or None, timeout)
    raise UsageError(
        "no image service given: use --os-cloud NAME (clouds.yaml) or OS_* variables, "
        "or --endpoint URL (or GLIMPSE_URL)"
    )
