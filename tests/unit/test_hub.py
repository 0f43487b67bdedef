"""The hub's fan-out against a fake backend and fake ASGI sends: joins, own copies, slow members, stops."""

from __future__ import annotations

import asyncio
import logging

import anyio
import pytest

from starlette_ws.backends import Event
from starlette_ws.connection import CLOSED, OPEN, Connection
from starlette_ws.hub import HOLD, Hub, opened, seal
from tests.unit.fakes import FakeSend, others, settle, socket


class FakeBackend:
    """What was published, delivered only when the test says so."""

    in_process = True  # its publish never waits

    def __init__(self) -> None:
        self.published: list[tuple[str, str]] = []
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.subscribing: asyncio.Future[None] | None = None
        self.failing = False  # `next_published` raises (a backend bug) until this is false again
        self.connected = False
        self.resubscribed = 0

    @property
    def listening(self) -> bool:
        return True

    async def connect(self) -> None:
        self.connected = True

    async def disconnect(self) -> None:
        self.connected = False

    async def subscribe(self, channel: str) -> None:
        if self.subscribing is not None:
            await self.subscribing

    async def unsubscribe(self, channel: str) -> None:
        pass

    async def publish(self, channel: str, message: str) -> None:
        self.published.append((channel, message))

    async def next_published(self) -> Event:
        if self.failing:
            raise ValueError("a bug in the backend")
        return await self.events.get()

    async def ping(self) -> None:
        pass

    def deliver(self, index: int) -> None:
        self.events.put_nowait(Event(*self.published[index]))


@pytest.mark.anyio
async def test_a_join_cancelled_while_subscribing_leaves_nothing() -> None:
    with anyio.fail_after(5):
        backend = FakeBackend()
        hub = Hub(backend, 1000)
        await hub.start()
        helpers = others()
        backend.subscribing = asyncio.get_running_loop().create_future()
        join = asyncio.create_task(hub.join("chat", socket(FakeSend())))
        await settle()
        join.cancel()
        await settle()
        assert others() == helpers  # no sender task left behind
        assert hub._channels == {} and len(hub) == 0
        await hub.stop()


@pytest.mark.anyio
async def test_own_copy_is_matched_by_identity_not_text() -> None:
    """Two connections with the same client id send the same text: neither copy frees what the
    other holds behind its own."""

    with anyio.fail_after(5):
        backend = FakeBackend()
        hub = Hub(backend, 1000)
        await hub.start()
        sends = FakeSend(), FakeSend()
        one = await hub.join("chat", socket(sends[0]))
        two = await hub.join("chat", socket(sends[1]))
        await hub.broadcast(one, "chat", "Client #1 says: hi")  # published, not waited for
        one.send_text_nowait("You wrote: more")  # waits behind its copy
        await hub.broadcast(two, "chat", "Client #1 says: hi")
        two.send_text_nowait("You wrote: more")
        assert sends[0].texts == sends[1].texts == []
        backend.deliver(1)  # the second connection's copy comes back first
        await settle()
        assert sends[0].texts == ["Client #1 says: hi"]
        assert sends[1].texts == ["Client #1 says: hi", "You wrote: more"]
        backend.deliver(0)
        await settle()
        hi, more = "Client #1 says: hi", "You wrote: more"  # the plain text, once per publish
        assert sends[0].texts == [hi, hi, more]  # its own copy came second: its own line after it
        assert sends[1].texts == [hi, more, hi]
        await hub.stop()
        assert not others()


@pytest.mark.anyio
async def test_a_burst_is_published_without_waiting_for_copies_and_each_own_message_follows_its_copy() -> None:
    """The reference order for a sender of a, b, c: `You wrote: a`, `says: a`, `You wrote: b`, ...;
    all three are published before the first copy is back."""
    with anyio.fail_after(5):
        backend = FakeBackend()
        hub, (sender, _), (send, other) = await started_hub(backend, 2)
        for text in "abc":
            sender.send_text_nowait(f"You wrote: {text}")
            await hub.broadcast(sender, "chat", f"says: {text}")
        assert len(backend.published) == 3 and send.texts == ["You wrote: a"]
        for index in range(3):
            backend.deliver(index)
        await settle()
        assert send.texts == ["You wrote: a", "says: a", "You wrote: b", "says: b", "You wrote: c", "says: c"]
        assert other.texts == ["says: a", "says: b", "says: c"]
        await hub.stop()


@pytest.mark.anyio
async def test_own_messages_go_after_hold_when_the_copy_never_comes() -> None:
    with anyio.fail_after(5):
        backend = FakeBackend()
        backend.in_process = False  # over the network a copy can be lost: HOLD s at most
        hub, (sender,), (send,) = await started_hub(backend, 1)
        await hub.broadcast(sender, "chat", "lost by the engine")
        sender.send_text_nowait("You wrote: next")
        await asyncio.sleep(HOLD / 2)
        assert send.texts == []
        await asyncio.sleep(HOLD)
        assert send.texts == ["You wrote: next"]  # not held for ever
        backend.deliver(0)  # late: delivered like anyone's
        await settle()
        assert send.texts == ["You wrote: next", "lost by the engine"]
        await hub.stop()


@pytest.mark.anyio
async def test_stop_ends_every_sender_even_one_waiting_for_its_client() -> None:
    with anyio.fail_after(5):
        hub = Hub(FakeBackend(), 1000)
        await hub.start()
        send = FakeSend()
        conn = await hub.join("chat", socket(send))
        send.pause()
        conn.send_text_nowait("a")
        conn.send_text_nowait("b")
        await hub.stop()
        assert not others() and conn.state is CLOSED and len(hub) == 0
        assert send.texts == ["a"]


def test_the_envelope_is_fixed_size_and_only_a_hub_header_is_stripped() -> None:
    payload = seal("0123456789abcdef", 1, "Client #1 says: hi")
    tag, text = opened(payload)
    assert len(payload.encode()) - len(text.encode()) == 32
    assert (tag, text) == ("0123456789abcdef:00000000000001", "Client #1 says: hi")
    assert opened("Client #1 says: hi") == ("", "Client #1 says: hi")


async def started_hub(backend: FakeBackend, members: int) -> tuple[Hub, list[Connection], list[FakeSend]]:
    hub = Hub(backend, 1000)
    await hub.start()
    sends = [FakeSend() for _ in range(members)]
    return hub, [await hub.join("chat", socket(send)) for send in sends], sends


@pytest.mark.anyio
async def test_a_slow_member_gets_every_broadcast_in_order_without_holding_up_the_others() -> None:
    with anyio.fail_after(5):
        backend = FakeBackend()
        hub, (fast, slow), (fast_send, slow_send) = await started_hub(backend, 2)
        slow_send.pause()
        for n, text in enumerate(["1", "2", "3"]):
            await hub.publish("chat", text)
            backend.deliver(n)
            await settle()
            assert fast_send.texts == ["1", "2", "3"][: n + 1]  # sent inline, whatever the slow one does
        assert slow_send.texts == ["1"] and slow.queued_bytes == 2
        slow.send_text_nowait("own")  # the client's own message waits its turn too
        slow_send.resume()
        await settle()
        assert slow_send.texts == ["1", "2", "3", "own"] and slow.state is OPEN
        await hub.publish("chat", "4")
        backend.deliver(3)
        await settle()
        assert fast_send.texts == ["1", "2", "3", "4"] and slow_send.texts == ["1", "2", "3", "own", "4"]
        assert fast.state is OPEN and len(hub) == 2
        await hub.stop()


@pytest.mark.anyio
async def test_a_failed_send_drops_only_that_member_and_only_a_bug_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="starlette_ws.hub"), anyio.fail_after(5):
        backend = FakeBackend()
        hub, (gone, broken, well), (gone_send, broken_send, well_send) = await started_hub(backend, 3)
        gone_send.error = OSError("connection reset")  # the client went away: not an error of ours
        broken_send.error = ValueError("a bug")
        await hub.publish("chat", "hi")
        backend.deliver(0)
        await settle()
        assert gone.state is CLOSED and broken.state is CLOSED and well.state is OPEN and len(hub) == 1
        await hub.publish("chat", "still here")
        backend.deliver(1)
        await settle()
        assert well_send.texts == ["hi", "still here"] and gone_send.sent == broken_send.sent == []
        await hub.stop()

    assert [(r.getMessage(), type(r.exc_info[1])) for r in caplog.records if r.exc_info] == [
        ("Sending to a chat client failed", ValueError)
    ]


@pytest.mark.anyio
async def test_stop_stops_every_connection_and_disconnects_even_after_the_listener_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="starlette_ws.hub"), anyio.fail_after(5):
        backend = FakeBackend()
        backend.failing = True
        hub, (idle, waiting, closing), sends = await started_hub(backend, 3)
        await settle()
        assert hub._listener is not None and not hub._listener.done()  # it failed, and waits to listen again
        for send, conn in zip(sends[1:], (waiting, closing), strict=True):
            send.pause()
            conn.send_text_nowait("a")
            conn.send_text_nowait("b")
        closing.close(1000, "bye")
        assert len(others()) == 4  # the listener, the sampler and two sender tasks
        await hub.stop()
        assert [conn.state for conn in (idle, waiting, closing)] == [CLOSED, CLOSED, CLOSED]
        assert not backend.connected and len(hub) == 0 and not others()
        assert [send.texts for send in sends] == [[], ["a"], ["a"]]

    assert caplog.records and caplog.records[0].getMessage().startswith("Broadcast listener failed")


@pytest.mark.anyio
async def test_a_stop_cancelled_while_a_publish_hangs_still_disconnects_the_backend() -> None:
    with anyio.fail_after(5):
        backend = FakeBackend()
        hanging = asyncio.get_running_loop().create_future()

        async def publish(channel: str, message: str) -> None:
            await hanging

        backend.publish = publish  # type: ignore[method-assign]
        backend.in_process = False  # an engine over the network: its publish runs in a task
        hub, (member,), _ = await started_hub(backend, 1)
        broadcast = asyncio.create_task(hub.broadcast(member, "chat", "hello"))
        await settle()
        stopping = asyncio.create_task(hub.stop())
        await settle()
        assert not stopping.done()  # it gives the hanging publish its grace
        stopping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopping
        assert not backend.connected and len(hub) == 0
        broadcast.cancel()
        hanging.cancel()
        await asyncio.gather(broadcast, return_exceptions=True)


@pytest.mark.anyio
async def test_over_the_network_the_next_publish_waits_for_the_engine_not_for_the_copy() -> None:
    with anyio.fail_after(5):
        backend = FakeBackend()
        backend.in_process = False  # its publish runs in a task: the broadcast waits for it, HOLD s at most
        hub, (sender,), (send,) = await started_hub(backend, 1)
        sender.send_text_nowait("You wrote: a")
        await hub.broadcast(sender, "chat", "says: a")  # returns once the engine took it
        assert backend.published and sender.publishing is not None and sender.publishing.done()
        sender.send_text_nowait("You wrote: b")
        await hub.broadcast(sender, "chat", "says: b")
        assert send.texts == ["You wrote: a"]  # "You wrote: b" waits behind the copy of a
        backend.deliver(0)
        await settle()
        assert send.texts == ["You wrote: a", "says: a", "You wrote: b"]
        backend.deliver(1)
        await settle()
        assert send.texts[-1] == "says: b"
        await hub.stop()


@pytest.mark.anyio
async def test_a_close_after_the_queue_waits_for_the_copies_on_their_way() -> None:
    with anyio.fail_after(5):
        backend = FakeBackend()
        hub, (sender,), (send,) = await started_hub(backend, 1)
        for text in "ab":
            sender.send_text_nowait(f"You wrote: {text}")
            await hub.broadcast(sender, "chat", f"says: {text}")
        sender.close(1008, "Rate limit")
        await settle()
        assert send.closes == []  # its copies are still on their way
        backend.deliver(0)
        backend.deliver(1)
        await settle()
        assert send.texts == ["You wrote: a", "says: a", "You wrote: b", "says: b"]
        assert send.closes == [(1008, "Rate limit")]
        await hub.stop()


@pytest.mark.anyio
async def test_in_process_a_loop_that_lags_past_hold_still_sends_the_copy_first() -> None:
    """memory://: the copy is already queued for the listener, so no timer gives up on it (under
    uvloop a due timer runs before the callbacks already queued)."""
    with anyio.fail_after(5):
        backend = FakeBackend()
        hub, (sender,), (send,) = await started_hub(backend, 1)
        await hub.broadcast(sender, "chat", "says: a")
        sender.send_text_nowait("You wrote: b")
        await asyncio.sleep(HOLD * 1.5)
        assert send.texts == []
        backend.deliver(0)
        await settle()
        assert send.texts == ["says: a", "You wrote: b"]
        await hub.stop()


@pytest.mark.anyio
async def test_a_connection_stopped_while_its_close_waits_for_copies_still_sends_them_and_the_close() -> None:
    """The endpoint closes (1009: its next line is too long) and leaves at once, with its own copy
    still on its way: the copy, what waited behind it and the close frame still go, within the grace."""
    with anyio.fail_after(5):
        backend = FakeBackend()
        hub, (sender,), (send,) = await started_hub(backend, 1)
        sender.send_text_nowait("You wrote: a")
        await hub.broadcast(sender, "chat", "says: a")
        sender.send_text_nowait("You wrote: b")  # waits behind "says: a"
        sender.close(1009, "Message over 100 bytes")
        stopping = asyncio.create_task(sender.stop(grace=2))
        await settle()
        assert not stopping.done()  # the close has not gone yet
        backend.deliver(0)
        await stopping
        assert send.texts == ["You wrote: a", "says: a", "You wrote: b"]
        assert send.closes == [(1009, "Message over 100 bytes")]
        await hub.stop()
