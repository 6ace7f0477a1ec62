"""/metrics: Prometheus text with request counts and latency by route template."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import AppHarness
from ymera.auth.permissions import Role


async def _samples(harness: AppHarness, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    resp = await harness.client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def _key(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


async def test_requests_are_counted_by_route_template_not_raw_path(harness: AppHarness) -> None:
    headers = await harness.headers(Role.ADMIN)
    for user_id in ("no-such-user-1", "no-such-user-2"):
        resp = await harness.client.get(f"/api/v1/users/{user_id}", headers=headers)
        assert resp.status_code == 404

    counts = await _samples(harness, "ymera_http_requests_total")

    assert counts[_key(method="GET", route="/api/v1/users/{user_id}", status="404")] == 2
    assert not [k for k in counts if "no-such-user" in dict(k)["route"]]
    latency = await _samples(harness, "ymera_http_request_duration_seconds_count")
    assert latency[_key(method="GET", route="/api/v1/users/{user_id}")] == 2


async def test_unmatched_paths_share_one_label(harness: AppHarness) -> None:
    """Unknown paths must not create a time series each (unbounded cardinality)."""
    for n in range(3):
        assert (await harness.client.get(f"/nowhere/{n}")).status_code == 404

    counts = await _samples(harness, "ymera_http_requests_total")

    assert counts[_key(method="GET", route="<unmatched>", status="404")] == 3
    assert not [k for k in counts if dict(k)["route"].startswith("/nowhere")]


async def test_framework_routes_are_labelled_by_their_path(harness: AppHarness) -> None:
    assert (await harness.client.get("/openapi.json")).status_code == 200
    assert (await harness.client.get("/docs")).status_code == 200

    counts = await _samples(harness, "ymera_http_requests_total")

    assert counts[_key(method="GET", route="/openapi.json", status="200")] == 1
    assert counts[_key(method="GET", route="/docs", status="200")] == 1


async def test_metrics_lists_the_http_families(harness: AppHarness) -> None:
    await harness.client.get("/healthz")
    text = (await harness.client.get("/metrics")).text
    for name in (
        "ymera_http_requests_total",
        "ymera_http_request_duration_seconds",
        "ymera_http_requests_in_flight",
        "ymera_events_published_total",
    ):
        assert f"# TYPE {name}" in text
    assert 'ymera_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
