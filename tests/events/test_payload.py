"""The relay's hand-built event payloads are exactly what ``EventOut`` would
produce in JSON mode (the relay skips pydantic for speed, not for a new format)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ymera.events.schemas import EventOut
from ymera.events.service import event_payload_from_row

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
instants = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))]),
)


@given(
    seq=st.integers(min_value=1, max_value=2**53),
    type=st.text(min_size=1, max_size=20),
    actor=st.none() | st.text(max_size=10),
    data=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    created_at=instants,
)
def test_payload_matches_the_schema(
    seq: int, type: str, actor: str | None, data: dict[str, Any], created_at: datetime
) -> None:
    row = {
        "seq": seq,
        "type": type,
        "resource_type": "task",
        "resource_id": "r1",
        "actor": actor,
        "data": data,
        "created_at": created_at,
    }
    assert event_payload_from_row(row) == EventOut.model_validate(row).model_dump(mode="json")
