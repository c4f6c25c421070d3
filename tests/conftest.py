"""Shared test set-up. Database fixtures live in tests/db.py and are loaded as a plugin."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import aioresponses_shim

aioresponses_shim.install()

pytest_plugins = ["tests.db"]

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES
