"""kit.jsonx: orjson, with the standard library for what orjson refuses."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ymera.kit import jsonx

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(values)
def test_round_trips_whatever_json_can_hold(value: Any) -> None:
    # Big integers (beyond 64 bits) go through the fallback.
    assert jsonx.loads(jsonx.dumps(value)) == json.loads(json.dumps(value))


def test_non_finite_floats_are_null_and_big_integers_survive() -> None:
    assert jsonx.dumps({"a": math.nan, "b": [math.inf]}) == '{"a":null,"b":[null]}'
    big = {"n": -2004159790672853598208, "f": [-math.inf]}  # the fallback path
    assert jsonx.loads(jsonx.dumps(big)) == {"n": -2004159790672853598208, "f": [None]}
