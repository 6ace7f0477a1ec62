"""kit.ids: UUIDv7 strings, unique, in creation order across milliseconds."""

from __future__ import annotations

import time
import uuid

from ymera.kit.ids import new_id


def test_ids_are_uuid7_unique_and_time_ordered() -> None:
    first = [new_id() for _ in range(2000)]
    time.sleep(0.002)  # the next millisecond: ids made then sort after these
    later = new_id()
    assert len(set(first)) == len(first)
    for text in [*first[:10], later]:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
        assert str(parsed) == text
    assert all(later > earlier for earlier in first)
    millis = int(later.replace("-", "")[:12], 16)
    assert abs(millis - time.time_ns() // 1_000_000) < 60_000
