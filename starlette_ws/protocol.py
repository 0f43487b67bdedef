"""uvicorn's protocols, made strict where one client could otherwise hold memory or a socket for good.

`HttpProtocol` (httptools) reads request heads, the WebSocket handshake included:

- a head must arrive within `HANDSHAKE_TIMEOUT` seconds, or the connection is closed;
- a URL over 8 KiB is answered 414, more than 128 headers or 64 KiB of head 431;
- at `--limit-concurrency` open connections a new one gets 503 (or, in a flood, is closed at once)
  and one log line a second says how many were refused (uvicorn's own check skips upgrades).

`WebSocketProtocol` (websockets' sans-I/O implementation, uvicorn's default) carries the sockets:

- while the client leaves our output unread (the write buffer over its high-water mark) nothing
  more is read from it, so a flood of pings cannot pile up pongs; a client that leaves it unread
  for `WS_DRAIN_TIMEOUT` seconds is dropped, and so is a closing one whose last bytes never leave;
- a message of more than `WS_MAX_FRAGMENTS` frames closes with 1009, as websockets' own client does;
- invalid UTF-8 in a text message closes with 1007 and one log line (it is the client's fault);
- a handshake websockets refuses itself (414, 431) is answered and closed;
- on shutdown, a close frame that cannot leave within half the graceful timeout is given up;
- a connection that ends without the client's close frame reaches the app as 1006, a close frame
  without a code as 1005 (uvicorn says 1005 for both once the handshake is done);
- an idle connection holds less: no handshake request and response once accepted, and an
  `Inbox` in place of the `asyncio.Queue` of received messages (about 4 KB less in all).

The timeouts and the fragment limit are the served app's settings (`Settings`, found through
uvicorn's config: `served.settings_for`). The classes live in `protocol_http` and `protocol_ws`.

Serve with `starlette-ws` (`make run` does), or with `uvicorn starlette_ws.app:app --http
starlette_ws.protocol:HttpProtocol --ws starlette_ws.protocol:WebSocketProtocol --limit-concurrency N`.
"""

from starlette_ws.protocol_http import HttpProtocol
from starlette_ws.protocol_ws import FrameCache, Inbox, WebSocketProtocol
from starlette_ws.sockets import text_frame
from starlette_ws.transport import LingeringTransport

__all__ = ["FrameCache", "HttpProtocol", "Inbox", "LingeringTransport", "WebSocketProtocol", "text_frame"]
