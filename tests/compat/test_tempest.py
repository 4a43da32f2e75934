"""OpenStack's interoperability tests for images (Tempest's ``tempest.api.image``) against Glimpse.

A real Keystone, a live Glimpse validating its tokens and listed in its catalog, and Tempest (pinned,
in a virtualenv of its own) run with dynamic credentials and ``--concurrency 2``. Every test of
``tempest.api.image`` runs, and the outcome must be exactly the documented one
(:func:`tempestsupport.judge`):

* a test named in ``tests/data/tempest-exclude.txt`` (what Glimpse knowingly lacks, each line with its
  reason) must not pass: when it does, its line is out of date and is to be removed;
* a test that Tempest skips must be named in ``tests/data/tempest-skips.txt`` (with Tempest's reason),
  and every line there must still match a skipped test;
* every other test passes.

``docs/compatibility.md`` ("Tempest") gives the counts and the reasons.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from keystonesupport import REGION, KeystoneServer, protected_server
from livesupport import free_port
from tempestsupport import (
    FileServer,
    glimpse_settings,
    install_tempest,
    judge,
    read_list,
    run_tempest,
    write_workspace,
)

pytestmark = [pytest.mark.live, pytest.mark.timeout(1500)]

DATA = Path(__file__).resolve().parents[1] / "data"
EXCLUDE_LIST = DATA / "tempest-exclude.txt"
SKIP_LIST = DATA / "tempest-skips.txt"


def test_tempest_image_api(tmp_path_factory: pytest.TempPathFactory, disk_images: Path) -> None:
    excluded, expected_skips = read_list(EXCLUDE_LIST), read_list(SKIP_LIST)
    venv = install_tempest()
    root = tmp_path_factory.mktemp("tempest")
    qcow2 = (disk_images / "qcow2.img").read_bytes()
    with (
        KeystoneServer(tmp_path_factory.getbasetemp().parent, root / "keystone", cache=True) as keystone,
        FileServer({"/cirros.qcow2": qcow2}) as web,
    ):
        port = free_port()
        server = protected_server(root / "glimpse", keystone, port=port, **glimpse_settings(web, port))
        try:
            keystone.image_service({("public", REGION): server.url, ("internal", REGION): server.url})
            workspace = write_workspace(venv, root, keystone, web.url("/cirros.qcow2"))
            run = run_tempest(venv, workspace)
        finally:
            server.stop()

    assert run.results, run.output[-4000:]
    verdict = judge(run.results, excluded, expected_skips)
    statuses = Counter(outcome["status"] for outcome in run.results.values())
    print(f"\ntempest.api.image: {verdict.summary()}; subunit statuses {dict(statuses)}")
    assert not verdict.problems, (
        "\n\n".join(verdict.problems) + f"\n\n--- end of `tempest run` ---\n{run.output[-3000:]}"
    )
