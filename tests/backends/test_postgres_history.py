"""PostgresStore against a real PostgreSQL: offsets, NOTIFY order, trimming, replay, presence."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import asyncpg
import pytest

from starlette_ws.backends import MessageTooLarge
from starlette_ws.backends.postgres import MAX_PAYLOAD
from starlette_ws.history import HistoryError, Position, pack, payload, room_channel, unpack
from starlette_ws.history.base import HistoryUncertain
from starlette_ws.history.postgres import PostgresStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def prefix() -> str:
    """A deployment of its own for each test: the tables are shared, the rows are not."""
    return f"t{secrets.token_hex(4)}:"


@pytest.fixture
async def store(postgres_url: str, prefix: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(postgres_url, prefix, history=100, seconds=300)
    with anyio.fail_after(10):
        await store.connect()
    yield store
    await store.disconnect()


def rest(text: str) -> str:
    return json.dumps({"type": "message", "text": text})[1:]


async def test_offsets_increase_by_one_per_room(store: PostgresStore) -> None:
    with anyio.fail_after(10):
        a = [await store.append("a", rest(f"a{n}")) for n in range(5)]
        b = [await store.append("b", rest(f"b{n}")) for n in range(3)]
        assert [entry.offset for entry in a] == [1, 2, 3, 4, 5]
        assert [entry.offset for entry in b] == [1, 2, 3]
        assert len({entry.epoch for entry in a}) == 1
        assert a[0].epoch != b[0].epoch  # each room's history is its own
        assert all(len(entry.epoch) == 16 and int(entry.epoch, 16) >= 0 for entry in a + b)
        for n, entry in enumerate(a):
            assert entry.payload == payload(entry.offset, entry.epoch, rest(f"a{n}"))
            expected = {"offset": n + 1, "epoch": entry.epoch, "type": "message", "text": f"a{n}"}
            assert json.loads(entry.payload) == expected


async def test_non_ascii_and_quotes_round_trip(store: PostgresStore) -> None:
    text = "héllo 漢字 🎉 ' \" \\ $1 %s {} ||"
    with anyio.fail_after(10):
        entry = await store.append("intl", rest(text))
        assert entry.payload == payload(1, entry.epoch, rest(text))
        replay = await store.replay("intl", None, None)
        assert [e.payload for e in replay.entries] == [entry.payload]


async def test_concurrent_appends_from_two_stores_arrive_in_offset_order(
    postgres_url: str, store: PostgresStore, prefix: str
) -> None:
    other = PostgresStore(postgres_url, prefix, history=100, seconds=300, pool_size=4)
    listener = await asyncpg.connect(postgres_url)
    received: asyncio.Queue[str] = asyncio.Queue()
    try:
        with anyio.fail_after(15):
            await other.connect()
            await listener.add_listener(room_channel(prefix, "busy"), lambda *args: received.put_nowait(args[3]))

            async def talk(who: PostgresStore, name: str) -> list[int]:
                return [(await who.append("busy", rest(f"{name}{n}"))).offset for n in range(40)]

            # Four writers on two stores (two processes' worth of pools), all at once.
            results = await asyncio.gather(talk(store, "a"), talk(other, "b"), talk(store, "c"), talk(other, "d"))
            assert sorted(o for offsets in results for o in offsets) == list(range(1, 161))
            unpacked = [unpack(await received.get()) for _ in range(160)]
            epoch = (await store.replay("busy", None, None)).epoch
            assert [position for position, _ in unpacked] == [Position(n, epoch) for n in range(1, 161)]
            payloads = [text for _, text in unpacked]
            assert [json.loads(p)["offset"] for p in payloads] == list(range(1, 161))
            replay = await store.replay("busy", None, None)
            assert [e.payload for e in replay.entries] == payloads[-100:]  # kept: the last 100 heard
    finally:
        await listener.close()
        await other.disconnect()


async def test_trimmed_by_count(postgres_url: str, prefix: str) -> None:
    store = PostgresStore(postgres_url, prefix, history=5, seconds=300)
    try:
        with anyio.fail_after(10):
            await store.connect()
            for n in range(12):
                await store.append("r", rest(str(n)))
            replay = await store.replay("r", None, None)
            assert [e.offset for e in replay.entries] == [8, 9, 10, 11, 12]
            assert replay.last == 12
            admin = await asyncpg.connect(postgres_url)
            try:
                query = "SELECT count(*) FROM starlette_ws_entries WHERE prefix = $1"
                assert await admin.fetchval(query, prefix) == 5  # deleted, not only hidden
            finally:
                await admin.close()
    finally:
        await store.disconnect()


async def test_trimmed_by_age(postgres_url: str, prefix: str) -> None:
    store = PostgresStore(postgres_url, prefix, history=100, seconds=0.5)
    try:
        with anyio.fail_after(10):
            await store.connect()
            for n in range(3):
                await store.append("r", rest(str(n)))
            assert len((await store.replay("r", None, None)).entries) == 3
            await asyncio.sleep(0.7)
            old = await store.replay("r", 0, None)
            assert old.entries == () and old.last == 3 and old.missed == 3  # too old to replay
            await store.append("r", rest("new"))
            replay = await store.replay("r", 1, old.epoch)
            assert [e.offset for e in replay.entries] == [4]
            assert replay.missed == 2  # 2 and 3 aged out
    finally:
        await store.disconnect()


async def test_replay(store: PostgresStore) -> None:
    with anyio.fail_after(10):
        empty = await store.replay("quiet", None, None)
        assert empty.entries == () and empty.last == 0 and empty.missed == 0
        entries = [await store.append("quiet", rest(str(n))) for n in range(6)]
        assert entries[0].epoch == empty.epoch  # a room read before anyone spoke keeps its epoch
        epoch = empty.epoch

        everything = await store.replay("quiet", None, None)
        assert everything.entries == tuple(entries) and everything.last == 6 and everything.missed == 0
        since = await store.replay("quiet", 3, epoch)
        assert since.entries == tuple(entries[3:]) and since.missed == 0
        assert await store.replay("quiet", 3, None) == since  # no epoch: taken as the current one
        up_to_date = await store.replay("quiet", 6, epoch)
        assert up_to_date.entries == () and up_to_date.last == 6 and up_to_date.missed == 0
        other_epoch = await store.replay("quiet", 3, "0123456789abcdef")
        assert other_epoch.entries == tuple(entries) and other_epoch.missed is None
        ahead = await store.replay("quiet", 9, epoch)  # an offset this history never gave
        assert ahead.missed is None and ahead.entries == tuple(entries)


async def test_replay_counts_what_was_trimmed(postgres_url: str, prefix: str) -> None:
    store = PostgresStore(postgres_url, prefix, history=3, seconds=300)
    try:
        with anyio.fail_after(10):
            await store.connect()
            entries = [await store.append("r", rest(str(n))) for n in range(10)]
            replay = await store.replay("r", 2, entries[0].epoch)
            assert replay.entries == tuple(entries[7:])
            assert replay.missed == 5  # 3 to 7
    finally:
        await store.disconnect()


async def test_epoch_changes_when_the_room_row_is_lost(postgres_url: str, store: PostgresStore, prefix: str) -> None:
    with anyio.fail_after(10):
        before = [await store.append("r", rest(str(n))) for n in range(3)]
        admin = await asyncpg.connect(postgres_url)
        try:
            await admin.execute("DELETE FROM starlette_ws_rooms WHERE prefix = $1", prefix)
        finally:
            await admin.close()
        after = await store.append("r", rest("again"))
        assert after.offset == 1 and after.epoch != before[0].epoch
        replay = await store.replay("r", 3, before[0].epoch)
        assert replay.missed is None and replay.epoch == after.epoch
        assert replay.entries == (after,)  # nothing of the old history is replayed as new


async def test_epoch_changes_when_the_tables_are_dropped(postgres_url: str, prefix: str) -> None:
    """Run alone against tables of its own making: dropping them would disturb other stores."""
    admin = await asyncpg.connect(postgres_url)
    store = PostgresStore(postgres_url, prefix, history=100, seconds=300)
    try:
        with anyio.fail_after(10):
            await store.connect()
            before = await store.append("r", rest("before"))
            await store.present("r", "m1", "alice", 30)
            await admin.execute("DROP TABLE starlette_ws_rooms, starlette_ws_entries, starlette_ws_presence")
            after = await store.append("r", rest("after"))  # the store makes them again
            assert after.offset == 1 and after.epoch != before.epoch
            replay = await store.replay("r", 1, before.epoch)
            assert replay.missed is None and replay.entries == (after,)
            assert await store.members("r") == []
    finally:
        await store.disconnect()
        await admin.close()


async def test_presence_expires(store: PostgresStore) -> None:
    with anyio.fail_after(10):
        assert await store.present("r", "m1", "alice", 0.5)  # arrived
        assert await store.present("r", "m2", "bob", 30)
        assert not await store.present("r", "m3", "alice", 30)  # a second tab: listed once
        assert await store.present("s", "m4", "carol", 0.5)
        assert await store.members("r") == ["alice", "bob"]
        assert await store.rooms() == {"r": ["alice", "bob"], "s": ["carol"]}
        assert not await store.absent("r", "m3")  # alice's first tab is still there
        assert not await store.absent("r", "m3")  # not there any more
        await asyncio.sleep(0.7)
        assert await store.members("r") == ["bob"]  # m1 expired: alice has gone
        assert await store.members("s") == []
        assert await store.rooms() == {"r": ["bob"]}
        assert await store.present("r", "m2", "bob", 0.3)  # a refresh sets a new deadline; bob's only member
        assert await store.members("r") == ["bob"]
        await asyncio.sleep(0.5)
        assert await store.rooms() == {}
        assert await store.members("nowhere") == []


async def test_expired_members_are_deleted(postgres_url: str, store: PostgresStore, prefix: str) -> None:
    with anyio.fail_after(10):
        await store.present("r", "m1", "ghost", 0.2)
        await asyncio.sleep(0.3)
        assert await store.rooms() == {}
        admin = await asyncpg.connect(postgres_url)
        try:
            assert await admin.fetchval("SELECT count(*) FROM starlette_ws_presence WHERE prefix = $1", prefix) == 0
        finally:
            await admin.close()


async def test_prefixes_keep_deployments_apart(postgres_url: str, store: PostgresStore, prefix: str) -> None:
    other = PostgresStore(postgres_url, "other-" + prefix, history=100, seconds=300)
    listener = await asyncpg.connect(postgres_url)
    heard: list[str] = []
    try:
        with anyio.fail_after(10):
            await other.connect()
            await listener.add_listener(room_channel(prefix, "r"), lambda *args: heard.append(args[3]))
            mine = [await store.append("r", rest(str(n))) for n in range(3)]
            theirs = await other.append("r", rest("elsewhere"))
            await store.present("r", "m1", "alice", 30)
            await other.present("r", "m2", "bob", 30)
            assert theirs.offset == 1 and theirs.epoch != mine[0].epoch
            assert (await store.replay("r", None, None)).entries == tuple(mine)
            assert (await other.replay("r", None, None)).entries == (theirs,)
            assert await store.rooms() == {"r": ["alice"]}
            assert await other.members("r") == ["bob"]
            await listener.execute("SELECT 1")  # notifications committed before this have arrived
            assert heard == [pack(entry.offset, entry.epoch, entry.payload) for entry in mine]
            assert [unpack(text) for text in heard] == [(entry.position, entry.payload) for entry in mine]
    finally:
        await listener.close()
        await other.disconnect()


async def test_too_large_appends_nothing(store: PostgresStore) -> None:
    with anyio.fail_after(10):
        with pytest.raises(MessageTooLarge, match=f"under {MAX_PAYLOAD} bytes"):
            await store.append("r", rest("x" * 8000))
        for n in range(9):
            await store.append("r", rest(str(n)))
        # Fits with offset 9, one byte too many with offset 10: only the server can tell.
        border = '"text":"' + "x" * (MAX_PAYLOAD - len(payload(10, "0" * 16, '"text":"')) - 2) + '"}'
        assert len(payload(9, "0" * 16, border).encode()) == MAX_PAYLOAD - 1
        with pytest.raises(MessageTooLarge):
            await store.append("r", border)
        replay = await store.replay("r", None, None)
        assert replay.last == 9 and len(replay.entries) == 9
        entry = await store.append("r", rest("next"))
        assert entry.offset == 10


async def test_unreachable_postgres_raises_history_error() -> None:
    with anyio.fail_after(10):
        store = PostgresStore("postgresql://postgres@127.0.0.1:1/none", "p:", history=10, seconds=10, timeout=1)
        with pytest.raises(HistoryError, match=r"PostgreSQL at 127\.0\.0\.1:1\b"):
            await store.connect()
        with pytest.raises(HistoryError, match="not connected"):
            await store.append("r", rest("x"))


async def test_postgres_gone_after_connect_raises_history_error(postgres_url: str, prefix: str) -> None:
    admin = await asyncpg.connect(postgres_url.rsplit("/", 1)[0] + "/postgres")
    store = PostgresStore(postgres_url, prefix, history=10, seconds=10, timeout=1)
    try:
        with anyio.fail_after(15):
            await store.connect()
            await store.append("r", rest("one"))
            # Every connection of the store ends, and new ones are refused, as in an outage.
            await admin.execute("ALTER DATABASE starlette_ws ALLOW_CONNECTIONS false")
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = 'starlette_ws' AND pid <> pg_backend_pid()"
            )
            calls: list[Callable[[], Awaitable[object]]] = [
                lambda: store.append("r", rest("two")),
                lambda: store.replay("r", None, None),
                lambda: store.present("r", "m", "c", 10),
                lambda: store.absent("r", "m"),
                lambda: store.members("r"),
                lambda: store.rooms(),
            ]
            for call in calls:
                with pytest.raises(HistoryError):
                    await call()
            await admin.execute("ALTER DATABASE starlette_ws ALLOW_CONNECTIONS true")
            assert (await store.append("r", rest("three"))).offset == 2  # "two" was not kept
    finally:
        await admin.execute("ALTER DATABASE starlette_ws ALLOW_CONNECTIONS true")
        await admin.close()
        await store.disconnect()


async def test_an_append_without_an_answer_is_uncertain(postgres_url: str, prefix: str) -> None:
    """Sent, then no answer in time (here: the room's row held by another transaction)."""
    admin = await asyncpg.connect(postgres_url)
    store = PostgresStore(postgres_url, prefix, history=10, seconds=10, timeout=0.5)
    try:
        with anyio.fail_after(10):
            await store.connect()
            await store.append("r", rest("one"))
            async with admin.transaction():
                await admin.execute("SELECT 1 FROM starlette_ws_rooms WHERE prefix = $1 FOR UPDATE", prefix)
                with pytest.raises(HistoryUncertain, match=r"no answer within 0\.5 s"):
                    await store.append("r", rest("two"))
            entry = await store.append("r", rest("three"))
            assert entry.offset == (await store.replay("r", None, None)).last
    finally:
        await admin.close()
        await store.disconnect()


async def test_stores_starting_together_create_the_tables_once(postgres_url: str, prefix: str) -> None:
    admin = await asyncpg.connect(postgres_url)
    stores = [PostgresStore(postgres_url, prefix, history=10, seconds=10) for _ in range(4)]
    try:
        with anyio.fail_after(10):
            await admin.execute("DROP TABLE IF EXISTS starlette_ws_rooms, starlette_ws_entries, starlette_ws_presence")
            await asyncio.gather(*(store.connect() for store in stores))
            offsets = await asyncio.gather(*(store.append("r", rest(str(n))) for n, store in enumerate(stores)))
            assert sorted(entry.offset for entry in offsets) == [1, 2, 3, 4]
    finally:
        await admin.close()
        for store in stores:
            await store.disconnect()
