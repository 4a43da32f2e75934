"""Stored objects of an image that a task wrote, and removing the ones no location row refers to.

An import writes each target store's object under the image id, so the object a task left behind
is found by name. Before removing one, :func:`remove_unreferenced` re-reads the image: an object
that a location row refers to is data, not debris, and a store that the image's *current* lock
holder (another task) is writing to is left alone, since its object may be that task's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from glimpse.errors import NotFound, StorageError, StoreNotFound
from glimpse.ports import ImageStore, Ports, Repositories

log = logging.getLogger(__name__)


async def delete_object(store: ImageStore, location: str) -> bool:
    """Delete one object; True if it was there. Failures are logged, never raised."""
    try:
        await store.delete(location)
    except StoreNotFound:
        return False
    except StorageError as exc:
        log.warning("could not remove %s from store %s: %s; it is an orphan now", location, store.id, exc)
        return False
    log.info("removed %s from store %s", location, store.id)
    return True


def _references(repos: Repositories, image_id: str, task_id: str | None) -> tuple[set[str], set[str]]:
    """The image's location URLs, and the stores its current lock holder (if not ``task_id``) targets."""
    try:
        image = repos.images.get(image_id)
    except NotFound:
        # A pending_delete image keeps its data for the scrubber (or a restore).
        return {location.url for location in repos.images.pending_delete_locations(image_id)}, set()
    referenced = {location.url for location in image.locations}
    busy: set[str] = set()
    holder = image.import_task_id
    if holder is not None and holder != task_id:
        other = repos.tasks.find(holder)
        busy = set(other.stores) if other is not None else set()
    return referenced, busy


async def remove_unreferenced(
    ports: Ports, image_id: str, objects: Mapping[str, str], *, task_id: str | None
) -> list[str]:
    """Delete the objects (store id → location) that no location row of the image refers to.

    Returns the ids of the stores whose object was removed.
    """
    if not objects:
        return []
    referenced, busy = await ports.run(lambda s: _references(s, image_id, task_id), readonly=True)
    removed: list[str] = []
    for store_id, location in objects.items():
        if location in referenced:
            continue
        if store_id in busy:
            log.info(
                "image %s: store %s is being written by another task; its object stays", image_id, store_id
            )
            continue
        store = ports.stores.staging if store_id == ports.stores.staging.id else None
        if store is None:
            if store_id not in ports.stores:
                continue
            store = ports.stores.get(store_id)
        if await delete_object(store, location):
            removed.append(store_id)
    return removed
