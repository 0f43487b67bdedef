"""Both implementations under real uvicorn servers, for the parity suite.

`ours` serves `starlette_ws.app:app`, `reference` serves the FastAPI twin of the tutorial
(`comparison.fastapi_app:app`); both run with the same uvicorn options. They are shared by the
tests that leave the server as they found it. A test that breaks the reference's chat for good
(a zombie connection left in its list, a broadcast loop stuck on a stalled socket) takes a
fresh server from `start_server` instead, so the shared one stays trustworthy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import pytest

from harness.git import commit
from harness.servers import UvicornServer

OURS = "starlette_ws.app:app"
REFERENCE = "comparison.fastapi_app:app"

StartServer = Callable[..., UvicornServer]


def pytest_runtest_setup(item: pytest.Item) -> None:
    """The contract rows a test checks (its `contract` markers, the test's and its case's) and its
    docstring's first paragraph, as properties of its <testcase> in the JUnit XML: the comparison
    report's parity section is built from them."""
    rows = [row for marker in item.iter_markers("contract") for row in marker.args]
    item.user_properties += [("contract", row) for row in dict.fromkeys(rows)]
    paragraph: list[str] = []
    for line in (getattr(getattr(item, "function", None), "__doc__", None) or "").splitlines():
        if paragraph and not line.strip():
            break
        paragraph.append(line)
    if paragraph:
        item.user_properties.append(("description", " ".join(" ".join(paragraph).split())))


@pytest.fixture(scope="session", autouse=True)
def tested_commit(record_testsuite_property: Callable[[str, object], None]) -> None:
    """The commit this run tested, a property of the JUnit XML's suite (the report prints it)."""
    record_testsuite_property("commit", commit())


@pytest.fixture(scope="session")
def ours() -> Iterator[UvicornServer]:
    with UvicornServer(OURS) as server:
        yield server


@pytest.fixture(scope="session")
def reference() -> Iterator[UvicornServer]:
    with UvicornServer(REFERENCE) as server:
        yield server


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Start a private server for one test; every server it started is stopped afterwards."""
    started: list[UvicornServer] = []

    def start(app: str, env: Mapping[str, str] | None = None, args: Sequence[str] = ()) -> UvicornServer:
        server = UvicornServer(app, env=env, args=args)
        started.append(server)
        return server.start()

    yield start
    for server in reversed(started):
        server.__exit__(None, None, None)
