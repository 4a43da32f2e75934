"""The python-openstackclient plugin module (entry point group ``openstack.cli.extension``).

OSC imports this module when it starts, for every command, so it imports nothing beyond the standard
library and osc-lib: a broken or partial install of the SDK must never break other ``openstack``
commands. The client is built only when one of our commands asks for ``client_manager.glimpse``.

Our commands (group ``openstack.glimpse.v1``, loaded after OSC's own groups, so ours win) replace
two of OSC's: ``image task list`` (which keeps OSC's behaviour without ``--image``) and ``image
import`` (which keeps every option and check of OSC's and makes ``--wait`` wait). For each, cliff's
command manager logs a WARNING "found duplicate implementations of the 'image import' command...".
Nobody sees it: osc-lib's log set-up puts the ``cliff`` logger at ERROR whatever the verbosity
(``-v``, ``--debug`` included), so the record is dropped before any handler. No filter is
installed for it; only a clouds.yaml ``logging:`` section lowering ``cliff``'s level would show it.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from osc_lib import utils

if TYPE_CHECKING:
    from glimpse_client import Client

API_NAME = "glimpse"
API_VERSION_OPTION = "os_glimpse_api_version"
API_VERSIONS = ("1",)
DEFAULT_API_VERSION = "1"


def make_client(instance: Any) -> Client:
    """A :class:`glimpse_client.Client` on OSC's keystoneauth session and image endpoint.

    ``instance`` is OSC's ClientManager: its ``session`` carries the credentials (token, or none with
    ``--os-auth-type none``), and ``get_endpoint_for_service_type`` applies OSC's rules for the
    image endpoint (an ``image_endpoint_override``, the catalog for ``--os-interface`` and
    ``--os-region-name``, or ``--os-endpoint`` without Keystone).
    """
    from glimpse_client import Client, config_from_session

    interface = instance.interface or "public"
    endpoint = instance.get_endpoint_for_service_type(
        "image", region_name=instance.region_name, interface=interface
    )
    config = config_from_session(
        instance.session, interface=interface, region_name=instance.region_name, endpoint_override=endpoint
    )
    return Client(config)


def build_option_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The global option OSC expects of a plugin (there is only one version)."""
    parser.add_argument(
        "--os-glimpse-api-version",
        metavar="<glimpse-api-version>",
        default=utils.env("OS_GLIMPSE_API_VERSION"),
        help=f"Glimpse plugin API version, default={DEFAULT_API_VERSION} (Env: OS_GLIMPSE_API_VERSION)",
    )
    return parser
