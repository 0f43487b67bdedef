"""Contract part A (docs/behaviour.md) against both implementations over real sockets: the same
transcript, exactly.

Each case of tests/scenarios.py is played once against the FastAPI reference and once against
starlette-ws. The two transcripts (replies in order, anything extra, the close, or the HTTP status
of a refused handshake) must be equal; the shared one must then be the one the contract writes down.
Refusal bodies differ on purpose (contract row B1, "rejection body") and are compared in
test_spec_b.py.
"""

from __future__ import annotations

import contextlib
import itertools

import pytest

from harness.servers import UvicornServer
from tests.clients import Transcript, drain, play, read_replies, ws_connect
from tests.scenarios import ALL, Case

_ids = itertools.count(5000)


def without_body(transcript: Transcript) -> Transcript:
    return Transcript(status=transcript.status, replies=transcript.replies, close=transcript.close)


def contract_group(case: Case) -> str:
    """The contract's part A group of a scenario, by its endpoint: echo, items, chat, or (A4) a path
    that is none of them."""
    path = case.path.partition("?")[0]
    if path == "/ws":
        return "A1"
    if path.startswith("/items/"):
        return "A2"
    return "A3" if path.startswith("/ws/") else "A4"


SCENARIOS = [pytest.param(case, id=case.id, marks=pytest.mark.contract(contract_group(case))) for case in ALL]


@pytest.mark.parametrize("case", SCENARIOS)
def test_scenario_same_on_both(reference: UvicornServer, ours: UvicornServer, case: Case) -> None:
    """One scenario: the same replies in the same order, or the same 403 refusal."""
    theirs, mine = play(reference, case), play(ours, case)
    assert without_body(mine) == without_body(theirs)
    if case.refused:
        assert theirs.status == 403
    else:
        assert theirs == Transcript(replies=case.replies or ())


def chat_session(server: UvicornServer, ids: tuple[int, int, int]) -> dict[int, list[str]]:
    """Three clients take turns, then the last one leaves and the first two keep talking.

    Every client reads what a turn should bring before the next turn starts, so the order each one
    sees is fixed by the contract (A3), not by scheduling.
    """
    one, two, three = ids
    seen: dict[int, list[str]] = {n: [] for n in ids}
    with contextlib.ExitStack() as stack:
        clients = {n: stack.enter_context(ws_connect(server, f"/ws/{n}")) for n in ids}

        def turn(sender: int, text: str, present: tuple[int, ...]) -> None:
            clients[sender].send(text)
            for n in present:
                replies, _ = read_replies(clients[n], 2 if n == sender else 1)
                seen[n] += replies

        turn(one, "hello from one", ids)
        turn(two, "two here", ids)
        turn(three, "three <b>too</b>", ids)
        turn(one, "", ids)
        clients[three].close()
        for n in (one, two):
            seen[n] += read_replies(clients[n], 1)[0]
        turn(two, "after the departure", (one, two))
        for n in (one, two):
            seen[n] += drain(clients[n])[0]
    return seen


@pytest.mark.contract("A3")
def test_chat_broadcast_order_and_departure(reference: UvicornServer, ours: UvicornServer) -> None:
    """In order: "You wrote" to the sender first, then "says" to everyone; a departure is announced."""
    ids = (next(_ids), next(_ids), next(_ids))
    theirs, mine = chat_session(reference, ids), chat_session(ours, ids)
    assert mine == theirs
    one, two, three = ids
    assert theirs[two] == [
        f"Client #{one} says: hello from one",
        "You wrote: two here",
        f"Client #{two} says: two here",
        f"Client #{three} says: three <b>too</b>",
        f"Client #{one} says: ",
        f"Client #{three} left the chat",
        "You wrote: after the departure",
        f"Client #{two} says: after the departure",
    ]


def pipelined(server: UvicornServer, sender: int, listener: int, texts: list[str]) -> tuple[list[str], list[str]]:
    """The sender sends every text without waiting for replies (as a fast typist's page does)."""
    with ws_connect(server, f"/ws/{listener}") as other, ws_connect(server, f"/ws/{sender}") as ws:
        for text in texts:
            ws.send(text)
        mine, _ = read_replies(ws, 2 * len(texts))
        heard, _ = read_replies(other, len(texts))
        return mine + drain(ws)[0], heard + drain(other)[0]


@pytest.mark.contract("A3")
def test_chat_pipelined_messages_keep_the_reference_order(reference: UvicornServer, ours: UvicornServer) -> None:
    """Messages sent back to back: each "You wrote" is followed by its own "says".

    The reference answers one message completely (sender, then the broadcast) before it reads the
    next, so the sender sees `You wrote: a`, `Client #N says: a`, `You wrote: b`, ...
    """
    sender, listener = next(_ids), next(_ids)
    texts = ["a", "b", "c", "d"]
    theirs, mine = pipelined(reference, sender, listener, texts), pipelined(ours, sender, listener, texts)
    assert theirs[0] == [line for text in texts for line in (f"You wrote: {text}", f"Client #{sender} says: {text}")]
    assert theirs[1] == [f"Client #{sender} says: {text}" for text in texts]
    assert mine == theirs


@pytest.mark.contract("A3")
def test_chat_departure_reaches_only_those_still_there(reference: UvicornServer, ours: UvicornServer) -> None:
    """The leaving client is removed first; everyone remaining gets "left the chat" once."""
    ids = (next(_ids), next(_ids), next(_ids))

    def session(server: UvicornServer) -> list[list[str]]:
        with ws_connect(server, f"/ws/{ids[0]}") as stays, ws_connect(server, f"/ws/{ids[1]}") as also:
            with ws_connect(server, f"/ws/{ids[2]}"):
                pass
            return [read_replies(stays, 1)[0] + drain(stays)[0], read_replies(also, 1)[0] + drain(also)[0]]

    theirs, mine = session(reference), session(ours)
    assert mine == theirs == [[f"Client #{ids[2]} left the chat"]] * 2
