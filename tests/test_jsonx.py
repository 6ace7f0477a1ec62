"""kit.jsonx: orjson, with the standard library for what orjson refuses."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
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


def test_integers_beyond_64_bits_come_back_exactly() -> None:
    # orjson alone reads them as floats (-2**63 - 1 came back -9.223372036854776e18).
    for n in (-(2**63) - 1, -(2**63), 2**64, 2**64 - 1, 10**30):
        assert jsonx.loads(jsonx.dumps({"n": n})) == {"n": n}
        assert jsonx.loads(jsonx.dumpb([n])) == [n]
        assert jsonx.loads(memoryview(jsonx.dumpb([n]))) == [n]
    assert jsonx.loads('{"id": "1234567890123456789012", "x": 1.5}') == {
        "id": "1234567890123456789012",
        "x": 1.5,
    }


@pytest.mark.parametrize(
    "bad",
    ["[NaN, 12345678901234567890]", "[Infinity, 12345678901234567890]", "[1234567890123456789"],
)
def test_the_slower_path_refuses_what_json_does_not_hold(bad: str) -> None:
    with pytest.raises(ValueError, match=r"JSON|Expecting|delimiter"):
        jsonx.loads(bad)
