"""Fixtures for the integration tests (PostgreSQL, the CLI end to end)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from atb.db import connection


@pytest.fixture(autouse=True)
def disconnect_after_each_test() -> Iterator[None]:
    """CLI commands bind the connection proxy and leave it bound; unbind it after every test so
    the next one starts from nothing."""
    yield
    connection.disconnect()
