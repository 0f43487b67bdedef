from __future__ import annotations

import pytest

from harness.services import find_binary
from tests.services import require


def test_finds_postgres_binaries_off_path() -> None:
    postgres = require("postgres")
    assert postgres.endswith("/postgres")
    assert find_binary("pg_isready") is not None


def test_missing_binary_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-server is not installed"):
        require("no-such-server")


def test_missing_binary_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no-such-server is not installed"):
        require("no-such-server")
