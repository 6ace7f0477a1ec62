"""The suite detects PostgreSQL and Redis; when CI requires them, absence fails."""

from __future__ import annotations

import pytest

from tests.fixtures import services


def test_missing_service_skips_when_not_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "REQUIRE", False)
    monkeypatch.setattr(services, "_status", services.ServiceStatus(postgres="down", redis=None))
    with pytest.raises(pytest.skip.Exception, match="down"):
        services.need("postgres")
    services.need("redis")  # available: no exception


def test_missing_service_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "REQUIRE", True)
    monkeypatch.setattr(services, "_status", services.ServiceStatus(postgres=None, redis="gone"))
    with pytest.raises(pytest.fail.Exception, match="YMERA_TEST_REQUIRE_SERVICES"):
        services.need("redis")


def test_local_services_are_detected() -> None:
    """On machines that have them (and always in CI), both services answer."""
    status = services._check_postgres(), services._check_redis()
    if services.REQUIRE:
        assert status == (None, None), status
    elif status != (None, None):
        pytest.skip(f"services not running here: {status}")
