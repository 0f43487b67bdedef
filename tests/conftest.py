from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from starlette_ws.app import create_app
from starlette_ws.settings import Settings
from tests.uvicorn_server import UvicornServer


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="session")
def server() -> Iterator[UvicornServer]:
    """Our app under a real uvicorn, shared by the tests that do not restart or reconfigure it."""
    with UvicornServer() as server:
        yield server
