"""Random input on every socket through the TestClient: always a documented outcome.

Documented: the replies, a 403 refusal, or a close with 1003 (binary), 1008 (flood) or 1009 (too
big). An unhandled exception inside the app would be raised here by the TestClient.
"""

from __future__ import annotations

import os
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from starlette_ws.app import create_app
from starlette_ws.settings import Settings

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
LIMIT = 256

app = create_app(Settings(max_message_bytes=LIMIT, chat_rate_burst=5))
text = st.text(max_size=40)
segment = st.text(min_size=1, max_size=20).map(lambda s: quote(s, safe=""))
query = st.lists(st.tuples(st.sampled_from(["q", "token", "Token", "x", "q[]"]), text), max_size=4)
frames = st.lists(st.one_of(st.text(max_size=300), st.binary(max_size=20)), max_size=8)
header_value = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)


def ends_reply(text: str, frame: str | bytes) -> bool:
    return isinstance(frame, str) and (text.startswith(f"Message text was: {frame}") or f" says: {frame}" in text)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(
    path=st.one_of(
        st.just("/ws"),
        segment.map(lambda s: f"/items/{s}/ws"),
        segment.map(lambda s: f"/ws/{s}"),
    ),
    query=query,
    cookie=header_value,
    origin=st.one_of(st.none(), st.just("http://testserver"), header_value),
    frames=frames,
)
def test_every_outcome_is_documented(
    path: str, query: list[tuple[str, str]], cookie: str, origin: str | None, frames: list[str | bytes]
) -> None:
    url = path + ("?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in query) if query else "")
    headers = {"cookie": cookie} | ({"origin": origin} if origin is not None else {})
    with TestClient(app) as client:
        try:
            with client.websocket_connect(url, headers=headers) as ws:
                for frame in frames:
                    if isinstance(frame, bytes):
                        ws.send_bytes(frame)
                    else:
                        ws.send_text(frame)
                    for _ in range(3):  # a reply is 1 to 3 messages; the last one carries the frame
                        message = ws.receive()
                        if message["type"] == "websocket.close" or ends_reply(message["text"], frame):
                            break
                    if message["type"] == "websocket.close":
                        expected = 1003 if isinstance(frame, bytes) else 1009 if len(frame.encode()) > LIMIT else 1008
                        assert message["code"] == expected
                        break
                    assert message["type"] == "websocket.send"
                    assert isinstance(frame, str)
                    assert ends_reply(message["text"], frame)
        except WebSocketDenialResponse as denial:
            assert denial.status_code == 403
            assert denial.json()["detail"]
        except WebSocketDisconnect as exc:  # no route matched: closed before accept
            assert exc.code == 1000
