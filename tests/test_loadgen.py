"""The benchmarks' load generator reads the lines it measures as the server writes them: a parser
that no longer matched would make the rooms benchmark count nothing, not fail."""

from __future__ import annotations

from starlette.testclient import TestClient

from comparison.loadgen import MORE_SENDERS, SENDER_ID, chat_path, sender_ids, sender_line
from starlette_ws.app import create_app


def test_the_load_generator_finds_the_senders_line_in_the_chat_and_in_a_room() -> None:
    with TestClient(create_app()) as client:
        for room in (None, "bench"):
            with (
                client.websocket_connect(chat_path(7, room)) as receiver,
                client.websocket_connect(chat_path(SENDER_ID, room)) as sender,
            ):
                sender.send_text("12 1700000000000000000")
                # a room first sends its members and announces both joins: no text, no offset
                frames = [receiver.receive_text() for _ in range(4 if room else 1)]
                assert [sender_line(frame.encode(), room) for frame in frames] == [
                    *([None] * (len(frames) - 1)),
                    b"12 1700000000000000000",
                ], frames


def test_a_room_newcomer_is_sent_the_recent_lines_first_which_the_load_generator_can_tell_by_their_stamp() -> None:
    """A room sends a connection without `since` its recent messages: a receiver of a later run
    would count the earlier run's lines, but for their stamps (`receive_broadcasts`' `since_ns`)."""
    with TestClient(create_app()) as client:
        with client.websocket_connect(chat_path(SENDER_ID, "again")) as sender:
            sender.send_text("5 1700000000000000000")
            assert sender_line(sender.receive_text().encode(), "again") is None  # presence
            assert sender_line(sender.receive_text().encode(), "again") is None  # its join
            assert sender_line(sender.receive_text().encode(), "again") == b"5 1700000000000000000"
        with client.websocket_connect(chat_path(7, "again")) as late:
            frames = [late.receive_text() for _ in range(2)]  # presence, then the recent line
            assert [sender_line(frame.encode(), "again") for frame in frames] == [None, b"5 1700000000000000000"]


def test_with_three_senders_each_ones_line_is_found_and_nobody_elses() -> None:
    assert sender_ids(3) == [SENDER_ID, MORE_SENDERS, MORE_SENDERS + 1]
    with TestClient(create_app()) as client:
        for room in (None, "three"):
            with (
                client.websocket_connect(chat_path(7, room)) as receiver,
                client.websocket_connect(chat_path(MORE_SENDERS + 1, room)) as sender,
            ):
                sender.send_text("3 1700000000000000000")
                frames = [receiver.receive_text().encode() for _ in range(4 if room else 1)]
                assert sender_line(frames[-1], room, 3) == b"3 1700000000000000000"
                assert sender_line(frames[-1], room, 2) is None  # not one of the first two
                assert [sender_line(frame, room, 3) for frame in frames[:-1]] == [None] * (len(frames) - 1)
