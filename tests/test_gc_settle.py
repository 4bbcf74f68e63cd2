"""After start-up the server freezes what it has allocated and times each garbage collection."""

from __future__ import annotations

import gc

from prometheus_client import REGISTRY

from paigham.metrics import GC_THRESHOLDS, settle_garbage_collector


def _count(generation: str) -> float:
    value = REGISTRY.get_sample_value("paigham_gc_pause_seconds_count", {"generation": generation})
    return value or 0.0


def test_settle_freezes_and_times_collections() -> None:
    callbacks = list(gc.callbacks)
    thresholds = gc.get_threshold()
    try:
        settle_garbage_collector()
        settle_garbage_collector()  # a second call adds no second timer
        assert gc.get_freeze_count() > 1000
        assert gc.get_threshold() == GC_THRESHOLDS
        assert len(gc.callbacks) == len(callbacks) + 1
        before = _count("2")
        gc.collect()
        assert _count("2") == before + 1
    finally:
        gc.callbacks[:] = callbacks
        gc.set_threshold(*thresholds)
        gc.unfreeze()
