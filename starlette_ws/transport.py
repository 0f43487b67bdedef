"""A connection's transport as our WebSocket protocol uses it: a close that gives up on a client
that never reads, and writes joined per loop iteration (`write_frame`), flushed for every
connection of the loop from one callback (`JoinedWrites`)."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from starlette_ws.served import address, logger


class JoinedWrites:
    """The transports of one loop that hold frames (`LingeringTransport.write_frame`): each writes
    them in one call at the end of the loop iteration, all from one callback."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiting: list[LingeringTransport] = []

    def flush(self) -> None:
        waiting, self.waiting = self.waiting, []
        for transport in waiting:
            try:
                transport.flush()
            except Exception:  # one connection's failure is not the others'
                logger.exception("Writing to %s failed", address(transport.get_extra_info("peername")))


JOINED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, JoinedWrites] = weakref.WeakKeyDictionary()


def joined_writes(loop: asyncio.AbstractEventLoop) -> JoinedWrites:
    joined = JOINED.get(loop)
    if joined is None:
        joined = JOINED[loop] = JoinedWrites(loop)
    return joined


class LingeringTransport(asyncio.Transport):
    """A connection's transport, except that `close()` gives up on unsent data after `linger`
    seconds (asyncio's own close waits for the buffer to drain, which a client that never reads
    never lets happen), and that it can join writes (`write_frame`)."""

    # one per connection, idle ones included: no instance dict
    __slots__ = (
        "abort_timer",
        "direct",
        "high_water",
        "joined",
        "linger",
        "loop",
        "pending",
        "pending_bytes",
        "transport",
    )

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop, linger: float) -> None:
        super().__init__()
        self.transport = transport
        self.loop = loop
        self.linger = linger
        self.abort_timer: asyncio.TimerHandle | None = None
        self.high_water = transport.get_write_buffer_limits()[1]
        self.joined = joined_writes(loop)
        self.pending: list[bytes] = []  # what `write_frame` was given, not yet written
        self.pending_bytes = 0
        self.direct = False  # the protocol says whether a frame may go as it is (`write_frame`)

    def write_frame(self, data: bytes) -> bool:
        """`write_soon` an app's frame, or do nothing and say False while the protocol says
        frames may not go as they are."""
        if not self.direct:
            return False
        self.write_soon(data)
        return True

    def write_soon(self, data: bytes) -> None:
        """Write at the end of this loop iteration, joined with whatever else comes by then: one
        system call for all the frames of an iteration. Past the high-water mark it is all
        written now, so that flow control (`pause_writing`) sees it."""
        pending = self.pending
        if not pending:  # the first since the last write: one more transport to flush
            joined = self.joined
            if not joined.waiting:
                joined.loop.call_soon(joined.flush)
            joined.waiting.append(self)
        pending.append(data)
        self.pending_bytes += len(data)
        if self.pending_bytes >= self.high_water:
            self.flush()

    def flush(self) -> None:
        pending = self.pending
        if pending:
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            pending.clear()  # the same list again: no allocation per write
            self.pending_bytes = 0
            if not self.transport.is_closing():  # a lost connection: nobody to write to
                self.transport.write(data)

    def write(self, data: bytes | bytearray | memoryview[Any]) -> None:
        """Write now, after what `write_frame` holds (in one call with it)."""
        if self.pending:
            self.pending.append(bytes(data))
            self.flush()
        else:
            self.transport.write(data)

    def close(self) -> None:
        self.flush()
        self.transport.close()
        if self.abort_timer is None and self.transport.get_write_buffer_size():
            self.abort_timer = self.loop.call_later(self.linger, self.transport.abort)

    def forget(self) -> None:
        self.pending.clear()
        self.pending_bytes = 0
        if self.abort_timer is not None:
            self.abort_timer.cancel()
            self.abort_timer = None

    def abort(self) -> None:
        self.pending.clear()
        self.pending_bytes = 0
        self.transport.abort()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def is_reading(self) -> bool:
        return self.transport.is_reading()

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() + self.pending_bytes

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)
