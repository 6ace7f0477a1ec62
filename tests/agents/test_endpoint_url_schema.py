"""The schema of an agent's ``endpoint_url`` states what the API accepts: every
URL its pattern allows validates, and common endpoints match it."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ymera.agents.schemas import AgentCreate

SCHEMA = AgentCreate.model_json_schema()["properties"]["endpoint_url"]["anyOf"][0]
PATTERN = re.compile(SCHEMA["pattern"])


@settings(max_examples=500, deadline=None)
@given(st.from_regex(PATTERN, fullmatch=True))
def test_every_url_the_schema_allows_is_accepted(url: str) -> None:
    agent = AgentCreate(name="a", connection_mode="http", endpoint_url=url)
    assert agent.endpoint_url is not None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9999/hook",
        "https://agent.example.com/run?x=1",
        "http://localhost:18080",
        "HTTPS://Agents.Example.org/v1/tasks",
    ],
)
def test_common_endpoints_match_the_schema(url: str) -> None:
    assert PATTERN.fullmatch(url)


@pytest.mark.parametrize("url", ["ftp://example.com", "files:write", "http://"])
def test_other_schemes_and_empty_hosts_do_not(url: str) -> None:
    assert PATTERN.fullmatch(url) is None
