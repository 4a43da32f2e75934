"""The scrubber: removes the data of ``pending_delete`` images once ``scrub_time`` has passed.

With ``delayed_delete``, ``DELETE /v2/images/{id}`` of an active image leaves it ``pending_delete``:
hidden from the API as a deleted image, its data and locations kept. :func:`scrub` (run by
``glimpse-server scrubber``, once or every ``wakeup_time`` seconds) takes every such image deleted
``scrub_time`` seconds ago or more and, for each:

1. claims it: one guarded UPDATE of the image row (its ``updated_at`` is the claim; see
   ``SqlImageRepository``), so that of any number of scrubbers on any nodes exactly one works on
   it; a claim whose scrubber died expires after :data:`SCRUB_LEASE`;
2. removes its object from each store that holds one, renewing the claim before each (a scrubber
   that lost its claim stops) and dropping each location row once its object is gone (an object
   already missing counts as removed);
3. when no location is left, makes the image ``deleted`` (properties, tags and members go, as for
   an image deleted at once). When a store failed, the image stays ``pending_delete`` with the
   locations not removed and the claim is given back: the next pass tries those stores again.

:func:`restore` is Glance's ``glance-scrubber --restore``: a ``pending_delete`` image goes back to
``active`` with the data it still has, unless a scrubber holds it at that moment.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from glimpse.errors import StorageError, StoreNotFound
from glimpse.ports import Ports, Repositories
from glimpse.telemetry import metrics

log = logging.getLogger(__name__)

#: How long a scrub claim lasts without renewal: a scrubber renews it before each store removal,
#: so this only matters when a scrubber died holding it (then the image waits this long).
SCRUB_LEASE: Final = timedelta(minutes=10)
#: Images one pass takes at most (the next pass takes the rest).
SCRUB_BATCH: Final = 100


@dataclass
class ScrubReport:
    """What one pass did: images made ``deleted``, and images left for the next pass (a store
    failed, or is not configured here), each with the stores still holding data."""

    scrubbed: list[str] = field(default_factory=list)
    retry: dict[str, list[str]] = field(default_factory=dict)


def _claim(repos: Repositories, image_id: str, due: datetime, expired: datetime, stamp: datetime) -> bool:
    return repos.images.claim_scrub(image_id, due, expired, stamp)


async def scrub(ports: Ports, *, limit: int = SCRUB_BATCH) -> ScrubReport:
    """One pass over the pending_delete images that are due (see the module's docstring)."""
    report = ScrubReport()
    now = ports.clock()
    due = now - timedelta(seconds=ports.settings.scrub_time)
    candidates = await ports.run(lambda s: s.images.scrub_due(due, limit), readonly=True)
    for image_id in candidates:
        stamp = ports.clock()
        won = await ports.run(
            functools.partial(_claim, image_id=image_id, due=due, expired=stamp - SCRUB_LEASE, stamp=stamp)
        )
        if not won:
            continue  # another scrubber holds it, or it was restored
        try:
            left = await _scrub_image(ports, image_id, stamp)
        except Exception:
            log.exception("scrubber: image %s could not be scrubbed; the next pass tries again", image_id)
            left = None
        if left is None:
            continue
        if left:
            report.retry[image_id] = left
        else:
            report.scrubbed.append(image_id)
    return report


async def _scrub_image(ports: Ports, image_id: str, stamp: datetime) -> list[str] | None:
    """Remove the image's data under our claim; the stores left holding data, or None if the claim
    was lost (another scrubber or a restore has the image now)."""
    locations = await ports.run(lambda s: s.images.pending_delete_locations(image_id), readonly=True)
    left: list[str] = []
    for location in locations:
        renewed = ports.clock()

        def renew(repos: Repositories, held: datetime = stamp, new: datetime = renewed) -> bool:
            return repos.images.renew_scrub(image_id, held, new)

        if not await ports.run(renew):
            log.warning("scrubber: lost the claim on image %s; another process has it now", image_id)
            return None
        stamp = renewed
        if location.store_id not in ports.stores.ids():
            log.error(
                "scrubber: image %s has data in store %s, which is not configured here; it stays "
                "pending_delete until a scrubber that has the store removes it",
                image_id,
                location.store_id,
            )
            left.append(location.store_id)
            continue
        store = ports.stores.get(location.store_id)
        try:
            await store.delete(location.url)
        except StoreNotFound:
            log.info("scrubber: image %s: data already gone from store %s", image_id, store.id)
        except StorageError as exc:
            log.warning(
                "scrubber: image %s: could not remove its data from store %s (%s); the next pass tries again",
                image_id,
                store.id,
                exc.message,
            )
            metrics().store_errors.labels(store.id).inc()
            left.append(location.store_id)
            continue

        def drop(repos: Repositories, store_id: str = location.store_id, held: datetime = stamp) -> bool:
            if not repos.images.renew_scrub(image_id, held, held):
                return False
            repos.images.drop_scrubbed_location(image_id, store_id)
            return True

        if not await ports.run(drop):
            return None
    final = stamp

    def finish(repos: Repositories) -> bool:
        if left:
            repos.images.release_scrub(image_id, final)
            return False
        return repos.images.finish_scrub(image_id, final)

    if await ports.run(finish):
        metrics().reaper_actions.labels("pending_delete_scrubbed").inc()
        log.info("scrubber: image %s deleted; its data is removed from every store", image_id)
    return left


async def restore(ports: Ports, image_id: str) -> None:
    """``pending_delete`` → ``active`` (NotFound or Conflict, with what to do, when it cannot)."""
    expired = ports.clock() - SCRUB_LEASE
    await ports.run(lambda s: s.images.restore_pending_delete(image_id, expired))
    log.info("scrubber: image %s restored to active", image_id)
