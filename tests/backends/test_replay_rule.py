"""One replay rule for every room store (`RoomStore.replay`): the same cases, the same answers,
in memory, in a real Redis and in a real PostgreSQL."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator

import anyio
import pytest

from starlette_ws.engines import Engine
from starlette_ws.history import RoomStore
from starlette_ws.history.base import Entry, Replay, replay_of

pytestmark = pytest.mark.anyio

HISTORY = 5  # the room says 1..8 and keeps 4..8
WRONG = "0123456789abcdef"
RIGHT = "right"  # stands for the room's epoch, known once the entries are appended

ALL = [4, 5, 6, 7, 8]
# (since, epoch, offsets replayed, missed)
CASES = {
    "no since": (None, None, ALL, 0),
    "no since, an epoch": (None, WRONG, ALL, 0),
    "since without epoch": (5, None, [6, 7, 8], 0),
    "since without epoch, older than kept": (1, None, ALL, 2),
    "since above last, right epoch": (12, RIGHT, ALL, None),
    "since above last, no epoch": (9, None, ALL, None),
    "wrong epoch": (5, WRONG, ALL, None),
    "wrong epoch, since 0": (0, WRONG, ALL, None),
    "older than kept": (1, RIGHT, ALL, 2),
    "since 0": (0, RIGHT, ALL, 3),
    "just before the oldest kept": (3, RIGHT, ALL, 0),
    "one behind": (7, RIGHT, [8], 0),
    "since == last": (8, RIGHT, [], 0),
}


@pytest.fixture(params=["memory", "redis", "postgres"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[RoomStore]:
    """A store of each engine, for a deployment (prefix) of its own."""
    url = "memory://" if request.param == "memory" else request.getfixturevalue(f"{request.param}_url")
    created = Engine(url).store(f"t{secrets.token_hex(4)}:", HISTORY, 300.0)
    with anyio.fail_after(10):
        await created.connect()
    yield created
    await created.disconnect()


async def said(store: RoomStore, room: str, count: int) -> list[Entry]:
    rest = json.dumps({"type": "message", "text": "hello"})[1:]
    return [await store.append(room, rest) for _ in range(count)]


@pytest.mark.parametrize("case", CASES)
async def test_replay_follows_the_rule(store: RoomStore, case: str) -> None:
    since, epoch, offsets, missed = CASES[case]
    with anyio.fail_after(10):
        entries = await said(store, "r", 8)
        current = entries[0].epoch
        replay = await store.replay("r", since, current if epoch == RIGHT else epoch)
    assert [entry.offset for entry in replay.entries] == offsets
    assert replay.missed == missed
    assert (replay.epoch, replay.last) == (current, 8)
    assert replay.entries == tuple(entry for entry in entries if entry.offset in offsets)  # payloads too


async def test_a_room_nobody_spoke_in(store: RoomStore) -> None:
    """Its epoch is given before its first entry: a client can hold it from its first visit."""
    with anyio.fail_after(10):
        first = await store.replay("quiet", None, None)
        nothing_yet = await store.replay("quiet", 0, first.epoch)
        ahead = await store.replay("quiet", 3, first.epoch)
        entries = await said(store, "quiet", 2)
        since_zero = await store.replay("quiet", 0, first.epoch)
    assert first == Replay(first.epoch, (), 0, 0)
    assert nothing_yet == Replay(first.epoch, (), 0, 0)
    assert ahead == Replay(first.epoch, (), 0, None)  # an offset this history never gave
    assert entries[0].epoch == first.epoch
    assert since_zero == Replay(first.epoch, tuple(entries), 2, 0)


@pytest.mark.contract("B30")
async def test_a_reset_starts_a_new_history(store: RoomStore) -> None:
    """`DELETE /api/rooms/{room}/history`: what was kept goes, a new epoch starts at offset 1, and
    a client of the old history is told it missed an unknown number; other rooms keep theirs."""
    with anyio.fail_after(10):
        old = await said(store, "r", 3)
        kept = await said(store, "other", 2)
        await store.reset("r")
        await store.reset("never-made")  # nothing to forget: no error
        stale = await store.replay("r", 3, old[0].epoch)
        new = await said(store, "r", 1)
        other = await store.replay("other", 0, kept[0].epoch)
    assert stale.epoch != old[0].epoch and stale.missed is None and stale.entries == ()
    assert (new[0].offset, new[0].epoch) == (1, stale.epoch)
    assert other == Replay(kept[0].epoch, tuple(kept), 2, 0)


@pytest.mark.parametrize("case", CASES)
def test_the_rule_itself(case: str) -> None:
    """`replay_of` from every retained entry gives the answers the engines give."""
    since, epoch, offsets, missed = CASES[case]
    retained = [Entry(offset, "e", f"p{offset}") for offset in ALL]
    replay = replay_of("e", retained, 8, since, "e" if epoch == RIGHT else epoch)
    assert [entry.offset for entry in replay.entries] == offsets
    assert replay.missed == missed


async def test_every_store_lists_rooms_by_name(store: RoomStore) -> None:
    """`/rooms` and `GET /api/rooms` show rooms in the same order on every engine: by name,
    whatever order members arrived in (Redis once listed them by expiry)."""
    names = ["zulu", "alpha", "mike", "Bravo", "échelle", "0"]
    with anyio.fail_after(10):
        for at, room in enumerate(names):
            await store.present(room, f"m{at}", str(at), 30.0 - at)  # the last to arrive expires first
        listed = await store.rooms()
    assert list(listed) == sorted(names)
    assert listed["mike"] == ["2"]
