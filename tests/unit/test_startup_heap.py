"""Start-up's objects are kept out of the garbage collector's full passes."""

from __future__ import annotations

import gc

from glimpse.runtime import freeze_startup_heap


def test_freezing_takes_what_exists_out_of_full_collections() -> None:
    kept = [[i] for i in range(100_000)]  # lists are always tracked by the collector
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() >= len(kept)
        later = [object(), []]
        walked = {id(obj) for obj in gc.get_objects()}  # what a full pass would walk
        assert id(kept[0]) not in walked
        assert id(kept[-1]) not in walked
        assert id(later[1]) in walked  # what comes after start-up is collected as usual
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0
