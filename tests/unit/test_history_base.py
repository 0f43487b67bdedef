"""`starlette_ws.history.base`: positions in and out of what an engine publishes, payloads, room
channels within every engine's limit, and what a reconnecting client is replayed."""

from __future__ import annotations

import json

import pytest

from starlette_ws.backends.base import MAX_CHANNEL_BYTES
from starlette_ws.history import Entry, Position, Replay, pack, payload, room_channel, unpack
from starlette_ws.history.base import replay_of, same_history

EPOCH = "9f3c0a1b2c3d4e5f"
PREFIX = "starlette-ws:"


@pytest.mark.parametrize(
    "text",
    [
        '{"offset":12,"epoch":"9f3c0a1b2c3d4e5f","type":"message","text":"hi"}',
        "two\nlines\n",  # only the first newline ends the header
        "#3:abc\nwhat looks like a header",  # a payload that starts like one is still a payload
        "a:b:c",
        "",
    ],
)
def test_unpack_gives_back_what_pack_made(text: str) -> None:
    assert unpack(pack(12, EPOCH, text)) == (Position(12, EPOCH), text)


def test_pack_puts_the_position_in_a_header_line() -> None:
    assert pack(7, "ab", "{}") == "#7:ab\n{}"


@pytest.mark.parametrize(
    "text",
    [
        '{"type":"join","room":"r","client_id":1}',
        "0123456789abcdef:00000000000001\n{}",  # a hub's own header: origin and sequence
        "!remove 5",
        "a:b\nc:d",
        "",
    ],
)
def test_unpack_leaves_anything_without_a_position_as_it_is(text: str) -> None:
    assert unpack(text) == (None, text)


def test_unpack_of_a_header_without_an_epoch_keeps_an_empty_one() -> None:
    assert unpack("#5\nbody") == (Position(5, ""), "body")


def test_payload_puts_offset_and_epoch_first_in_the_callers_object() -> None:
    text = payload(3, EPOCH, '"type":"message","text":"a:b\\nc"}')
    assert text.startswith('{"offset":3,"epoch":"9f3c0a1b2c3d4e5f",')
    assert json.loads(text) == {"offset": 3, "epoch": EPOCH, "type": "message", "text": "a:b\nc"}


def test_a_short_room_name_is_in_its_channel() -> None:
    assert room_channel(PREFIX, "lobby") == "starlette-ws:room:lobby"


def test_a_name_at_the_limit_is_kept_and_one_byte_more_is_digested() -> None:
    room = "r" * (MAX_CHANNEL_BYTES - len(PREFIX) - len("room:"))
    assert room_channel(PREFIX, room) == f"{PREFIX}room:{room}"
    longer = room_channel(PREFIX, room + "r")
    assert longer.startswith(f"{PREFIX}room#") and len(longer.encode()) <= MAX_CHANNEL_BYTES
    assert len(longer) == len(PREFIX) + len("room#") + 24  # 12 bytes of digest, in hex


@pytest.mark.parametrize("room", ["x" * 64, "é" * 23, "ü" * 24, "房间" * 8])
def test_every_room_channel_fits_in_every_engine(room: str) -> None:
    channel = room_channel(PREFIX, room)
    assert len(channel.encode()) <= MAX_CHANNEL_BYTES
    assert channel.isascii()  # the digest form: UTF-8 bytes are counted, not characters
    assert room_channel(PREFIX, room) == channel  # the same in every process


def test_distinct_rooms_get_distinct_channels() -> None:
    rooms = ["x" * 64, "x" * 63 + "y", "x" * 63, "é" * 30, "e" * 30, "a", "A"]
    channels = {room_channel(PREFIX, room) for room in rooms}
    assert len(channels) == len(rooms)
    assert room_channel("one:", "x" * 64) != room_channel("two:", "x" * 64)  # deployments stay apart


def entries(*offsets: int, epoch: str = EPOCH) -> list[Entry]:
    return [Entry(offset, epoch, f'{{"offset":{offset}}}') for offset in offsets]


def offsets(replay: Replay) -> list[int]:
    return [entry.offset for entry in replay.entries]


def test_without_since_every_retained_entry_is_replayed_and_nothing_is_missed() -> None:
    replay = replay_of(EPOCH, entries(4, 5, 6), 6, None, None)
    assert (offsets(replay), replay.missed, replay.last, replay.epoch) == ([4, 5, 6], 0, 6, EPOCH)
    assert replay.position == Position(6, EPOCH)


def test_since_in_this_history_gives_what_follows_and_counts_what_is_no_longer_kept() -> None:
    retained = entries(5, 6, 7, 8)
    after = replay_of(EPOCH, retained, 8, 6, EPOCH)
    assert (offsets(after), after.missed) == ([7, 8], 0)
    behind = replay_of(EPOCH, retained, 8, 2, EPOCH)  # 3 and 4 were trimmed
    assert (offsets(behind), behind.missed) == ([5, 6, 7, 8], 2)
    up_to_date = replay_of(EPOCH, retained, 8, 8, EPOCH)
    assert (offsets(up_to_date), up_to_date.missed, up_to_date.position) == ([], 0, Position(8, EPOCH))


def test_with_nothing_retained_every_offset_after_since_is_missed() -> None:
    replay = replay_of(EPOCH, [], 10, 3, EPOCH)
    assert (offsets(replay), replay.missed) == ([], 7)  # 4 to 10
    assert replay_of(EPOCH, [], 0, 0, EPOCH).missed == 0  # an empty room: nothing to miss


def test_another_history_replays_everything_and_what_was_missed_is_unknown() -> None:
    retained = entries(1, 2, 3)
    other_epoch = replay_of(EPOCH, retained, 3, 1, "0000000000000000")
    assert (offsets(other_epoch), other_epoch.missed) == ([1, 2, 3], None)
    beyond = replay_of(EPOCH, retained, 3, 9, EPOCH)  # an offset this history never gave
    assert (offsets(beyond), beyond.missed) == ([1, 2, 3], None)


def test_a_missing_epoch_trusts_the_offset() -> None:
    replay = replay_of(EPOCH, entries(1, 2, 3), 3, 1, None)
    assert (offsets(replay), replay.missed) == ([2, 3], 0)
    assert same_history(EPOCH, 3, 3, None) and not same_history(EPOCH, 3, 4, None)
    assert not same_history(EPOCH, 3, 1, "ff")


def test_an_entrys_position_is_its_offset_and_epoch() -> None:
    (entry,) = entries(4, epoch="ab")
    assert entry.position == Position(4, "ab")
