"""The fan-out floor: a bare uvloop server that speaks the tutorial's chat and nothing else.

Run from the repository root::

    python -m comparison.floor_server --port 8001 [--joined]

No framework, no ASGI, no task per connection: an asyncio `Protocol` per socket, websockets'
sans-I/O `ServerProtocol` for the handshake and the client's frames, and a broadcast that builds
its frame once and hands the same bytes to every member:

- **floor a** (default): one `transport.write` of the pre-built frame per member per message;
- **floor b** (`--joined`): the frames a member is given in one loop iteration are joined and
  written once, at the end of the iteration (`call_soon`), so a burst costs a member one write.

What it says is the tutorial's chat: "You wrote: <text>" to the sender, "Client #<id> says:
<text>" to everyone in the chat. It answers nothing else (no pages, no rooms, no limits): it is
the cost of a delivery with nothing on the path, for the benchmark to compare against.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
from collections.abc import Sequence
from typing import cast

import uvloop
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

CHAT = re.compile(r"/ws/(-?\d+)")


def text_frame(text: str) -> bytes:
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


class Chat:
    """Every member's transport, and (floor b) what each is owed in this loop iteration."""

    def __init__(self, joined: bool) -> None:
        self.joined = joined
        self.members: dict[Member, None] = {}
        self._owed: dict[Member, list[bytes]] = {}
        self._flush_scheduled = False

    def broadcast(self, frame: bytes) -> None:
        if not self.joined:
            for member in self.members:
                member.transport.write(frame)
            return
        for member in self.members:
            owed = self._owed.get(member)
            if owed is None:
                self._owed[member] = [frame]
            else:
                owed.append(frame)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        owed, self._owed = self._owed, {}
        for member, frames in owed.items():
            if member in self.members:
                member.transport.write(frames[0] if len(frames) == 1 else b"".join(frames))


class Member(asyncio.Protocol):
    def __init__(self, chat: Chat) -> None:
        self.chat = chat
        self.protocol = ServerProtocol()
        self.client_id: int | None = None
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is one in all but its class

    def data_received(self, data: bytes) -> None:
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Request):
                self._handshake(event)
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT and self.client_id is not None:
                text = bytes(event.data).decode()
                self.transport.write(text_frame(f"You wrote: {text}"))
                self.chat.broadcast(text_frame(f"Client #{self.client_id} says: {text}"))
        pending = self.protocol.data_to_send()  # pongs, close frames
        if pending:
            self.transport.write(b"".join(pending))
        if self.protocol.close_expected():
            self.transport.close()

    def _handshake(self, request: Request) -> None:
        found = CHAT.fullmatch(request.path)
        response = self.protocol.accept(request) if found else self.protocol.reject(404, "Not Found\n")
        self.protocol.send_response(response)
        self.transport.write(b"".join(self.protocol.data_to_send()))
        if found is None:
            self.transport.close()
            return
        self.client_id = int(found.group(1))
        self.chat.members[self] = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.chat.members.pop(self, None)


async def serve(host: str, port: int, joined: bool) -> None:
    loop = asyncio.get_running_loop()
    chat = Chat(joined)
    server = await loop.create_server(lambda: Member(chat), host, port, backlog=4096)
    stopped = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    print(f"floor {'b (joined)' if joined else 'a'} serving on ws://{host}:{port}/ws/{{id}}", flush=True)
    async with server:
        await stopped.wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--joined", action="store_true", help="floor b: one write per member per loop iteration")
    args = parser.parse_args(argv)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(args.host, args.port, args.joined))


if __name__ == "__main__":
    main()
