"""Knowledge tests rank by text alone unless they ask for the semantic extra."""

from __future__ import annotations

import pytest

from tests.fixtures.backends import Backend
from ymera.config import Settings


@pytest.fixture
def settings(backend: Backend) -> Settings:
    return backend.settings(knowledge={"semantic": False})
