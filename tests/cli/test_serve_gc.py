"""`ymera serve` freezes its start-up objects out of the garbage collector's sight."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from ymera.cli.serve import GC_THRESHOLDS, freeze_startup_objects


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restore_gc")
def test_freeze_hides_startup_objects_and_raises_thresholds() -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    freeze_startup_objects()
    assert gc.get_freeze_count() > 1000  # modules, classes, functions...
    assert gc.get_threshold() == GC_THRESHOLDS
    assert all(count == 0 for count in gc.get_count()[1:])  # collected just before
