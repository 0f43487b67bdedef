from __future__ import annotations

from starlette_ws.deny import MAX_REASON_BYTES, close_reason
from starlette_ws.params import Error


def test_close_reason_fits_a_close_frame() -> None:
    errors: list[Error] = [{"type": "int_parsing", "loc": ["query", "é" * 100], "msg": "", "input": "x"}] * 3
    reason = close_reason(errors)
    assert len(reason.encode()) <= MAX_REASON_BYTES
    assert reason.startswith("query.éé")
    assert close_reason([{"type": "missing", "loc": ["query", "token"], "msg": "", "input": None}]) == (
        "query.token: missing"
    )
