"""A loopback TCP proxy for outage tests: it can hold back a server's close, and cut a network.

When the server ends a connection, the proxy forwards everything the server sent first, then
keeps the client's side open for `hold_close` seconds before closing it. A client then sits in
the window between the server's last message (PostgreSQL's FATAL "terminating connection") and
the socket close, which on a real network is short and random; here it lasts as long as a test
needs. `cut()` makes the connections open now a black hole, as a network that stops answering does:
nothing more is passed either way and nothing is closed (TCP keepalive is answered by the sockets
on each side, so only the application can notice); connections made after it work.

The proxy runs its own event loop in a thread, so sync and async tests can both use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from harness.net import free_port

HOST = "127.0.0.1"
CHUNK = 65536


class Proxy:
    def __init__(self, target_port: int, hold_close: float = 0.0) -> None:
        self.target_port = target_port
        self.hold_close = hold_close
        self.port = free_port()
        self.closes_held = 0  # server closes held back so far (the window was opened)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self._released = asyncio.Event()  # set: closes are no longer held (teardown)
        self._connections = 0  # made so far
        self._cut_below = 0  # connections numbered below this pass nothing any more

    def start(self) -> Proxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=5)
        return self

    def cut(self) -> None:
        """Every connection open now passes nothing more, either way, and stays open."""
        self._cut_below = self._connections

    def release(self) -> None:
        """Pass closes straight through from now on, including the ones held now."""
        self._loop.call_soon_threadsafe(self._released.set)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _serve(self) -> asyncio.Server:
        return await asyncio.start_server(self._connected, HOST, self.port)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for pump in list(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    async def _connected(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            client_writer.close()
            return
        number = self._connections
        self._connections += 1
        upstream = asyncio.create_task(self._pump(client_reader, server_writer, 0.0, number))
        downstream = asyncio.create_task(self._pump(server_reader, client_writer, self.hold_close, number))
        for pump in (upstream, downstream):
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hold: float, number: int) -> None:
        try:
            with contextlib.suppress(OSError):
                while data := await reader.read(CHUNK):
                    if number < self._cut_below:  # a black hole: read, dropped, never closed
                        continue
                    writer.write(data)
                    await writer.drain()
            if number < self._cut_below:
                await asyncio.Event().wait()  # even a close does not get through
            if hold and not self._released.is_set():
                self.closes_held += 1
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(hold):
                        await self._released.wait()
        finally:
            writer.close()
