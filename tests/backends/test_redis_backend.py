from __future__ import annotations

import asyncio

from starlette_ws.backends import backend_for_url
from starlette_ws.backends.redis import RedisBackend
from tests.backends.support import Listener, connected, run
from tests.services import RedisServer

LOGGER = "starlette_ws.backends.redis"


def test_chosen_by_url_scheme() -> None:
    assert isinstance(backend_for_url("redis://127.0.0.1:6379/0"), RedisBackend)


def test_subscribed_once_subscribe_returns(redis_url: str) -> None:
    """The subscription is confirmed by the server before subscribe() returns."""

    async def main() -> None:
        sub, pub = await connected(redis_url), await connected(redis_url)
        listener = Listener(sub)
        try:
            for n in range(50):
                await sub.subscribe(f"room-{n}")
                await pub.publish(f"room-{n}", str(n))
                assert (await listener.get()).message == str(n)
        finally:
            await listener.stop()
            await sub.disconnect()
            await pub.disconnect()

    run(main())


def test_subscribe_before_anyone_listens(redis_url: str) -> None:
    async def main() -> None:
        sub, pub = await connected(redis_url), await connected(redis_url)
        await sub.subscribe("early")
        await asyncio.sleep(0.1)
        await pub.publish("early", "queued in the socket until someone reads")
        listener = Listener(sub)
        try:
            assert (await listener.get()).message == "queued in the socket until someone reads"
        finally:
            await listener.stop()
            await sub.disconnect()
            await pub.disconnect()

    run(main())


def test_cancel_during_an_outage_then_recover(redis_server: RedisServer, redis_url: str) -> None:
    async def main() -> None:
        sub, pub = await connected(redis_url), await connected(redis_url)
        await sub.subscribe("chat")
        try:
            redis_server.stop()
            for _ in range(5):  # cancelled while reconnecting, each time
                listener = Listener(sub)
                await asyncio.sleep(0.15)
                await listener.stop()
            redis_server.start()
            listener = Listener(sub)
            while True:
                await pub.publish("chat", "back")
                try:
                    assert (await listener.get(within=0.1)).message == "back"
                    break
                except TimeoutError:
                    continue
            await listener.stop()
        finally:
            await sub.disconnect()
            await pub.disconnect()

    run(main())
