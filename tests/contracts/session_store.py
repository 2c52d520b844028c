"""Contract of `SessionStore` (memory/sessions/base.py): a conversation's turns, oldest first, per session id.

The properties: `append` adds turns at the end and `load` returns them in order, roles and contents intact (unicode
and empty content included); appending nothing changes nothing; a session keeps only its newest `max_messages`
turns; every append (re)sets the session's expiry to `ttl_s` (or to its own `ttl_s`); sessions never see each
other's turns; `load` of an unknown session is `[]`; `delete` forgets one session (and its owner) and leaves the
others; the first `claim` of a session makes its owner, later claims by others fail, also when they race; every
method refuses an id outside 1–128 characters of `A-Za-z0-9._:-` with `InvalidSessionIdError` (a `SessionError`)
before touching storage; concurrent appends to one session lose nothing; `owned_by` lists an owner's sessions of
the store's expiry, most recently used first, in pages after a cursor (`UnknownCursorError` for one not listed),
never another owner's nor a deleted one, and a session with a shorter expiry only once a turn gives it the store's.

A backend runs it by subclassing `SessionStoreContract` in a `test_*.py` file and providing:

    make_store   an async context manager factory: (ttl_s, max_messages) -> an open store, closed on exit.
                 Stores made by one test share their storage (a second store sees the first one's sessions).
    expiry_of    a callable: session id -> seconds until the backend expires it (None: no expiry set).
"""

import asyncio
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest

from chimera.memory.sessions.base import InvalidSessionIdError, SessionError, SessionStore, UnknownCursorError
from chimera.messages import ChatMessage

MakeStore = Callable[[int, int], AbstractAsyncContextManager[SessionStore]]
ExpiryOf = Callable[[str], float | None]

BAD_IDS = ["", "a b", "x" * 129, "../etc/passwd", "s\n", "naïve", "a/b", "*"]


def session() -> str:
    return f"contract-{uuid.uuid4().hex}"


def msg(role: str, content: str) -> ChatMessage:
    return ChatMessage(role=role, content=content)  # type: ignore[arg-type]


class SessionStoreContract:
    """Run against every `SessionStore`; see the module docstring for the fixtures a subclass provides."""

    async def test_appended_turns_load_in_order_intact(self, make_store: MakeStore) -> None:
        sid = session()
        turns = [msg("system", "Be brief."), msg("user", "Привет 你好 😀 \"quotes\" \\ \n newline"),
                 msg("assistant", ""), msg("user", "again")]  # fmt: skip
        async with make_store(60, 100) as store:
            await store.append(sid, turns[:2])
            await store.append(sid, [])
            await store.append(sid, turns[2:])
            assert await store.load(sid) == turns
        async with make_store(60, 100) as reopened:
            assert await reopened.load(sid) == turns

    async def test_a_session_keeps_its_newest_max_messages(self, make_store: MakeStore) -> None:
        sid = session()
        async with make_store(60, 3) as store:
            await store.append(sid, [msg("user", str(i)) for i in range(5)])
            assert [m.content for m in await store.load(sid)] == ["2", "3", "4"]
            await store.append(sid, [msg("assistant", "5")])
            assert [m.content for m in await store.load(sid)] == ["3", "4", "5"]

    async def test_every_append_sets_the_expiry(self, make_store: MakeStore, expiry_of: ExpiryOf) -> None:
        sid = session()
        async with make_store(30, 10) as store:
            await store.append(sid, [msg("user", "hi")])
            first = expiry_of(sid)
            assert first is not None and 0 < first <= 30
        async with make_store(300, 10) as longer:
            await longer.append(sid, [msg("user", "hi again")])
            refreshed = expiry_of(sid)
            assert refreshed is not None and 30 < refreshed <= 300

    async def test_an_append_may_set_its_own_expiry(self, make_store: MakeStore, expiry_of: ExpiryOf) -> None:
        sid = session()
        async with make_store(300, 10) as store:
            assert await store.claim(sid, "alice", ttl_s=20)
            await store.append(sid, [msg("user", "one-shot")], ttl_s=20)
            short = expiry_of(sid)
            assert short is not None and 0 < short <= 20
            await store.append(sid, [msg("user", "continued")])
            longer = expiry_of(sid)
            assert longer is not None and 20 < longer <= 300

    async def test_sessions_are_isolated(self, make_store: MakeStore) -> None:
        a, b = session(), session()
        async with make_store(60, 10) as store:
            await store.append(a, [msg("user", "only in a")])
            await store.append(b, [msg("user", "only in b")])
            assert [m.content for m in await store.load(a)] == ["only in a"]
            assert [m.content for m in await store.load(b)] == ["only in b"]
            assert await store.load(session()) == []

    async def test_delete_forgets_one_session(self, make_store: MakeStore) -> None:
        gone, kept = session(), session()
        async with make_store(60, 10) as store:
            await store.append(gone, [msg("user", "bye")])
            await store.append(kept, [msg("user", "stay")])
            await store.delete(gone)
            await store.delete(session())  # unknown: nothing to forget, no error
            assert await store.load(gone) == []
            assert [m.content for m in await store.load(kept)] == ["stay"]
            await store.append(gone, [msg("user", "new start")])
            assert [m.content for m in await store.load(gone)] == ["new start"]

    @pytest.mark.parametrize("bad", BAD_IDS)
    async def test_a_bad_session_id_is_refused_by_every_method(self, make_store: MakeStore, bad: str) -> None:
        async with make_store(60, 10) as store:
            calls = (store.load(bad), store.append(bad, [msg("user", "x")]), store.append(bad, []),
                     store.delete(bad), store.claim(bad, "alice"), store.owner(bad))  # fmt: skip
            for call in calls:
                with pytest.raises(InvalidSessionIdError):
                    await call
            assert issubclass(InvalidSessionIdError, SessionError)

    async def test_the_longest_and_most_varied_good_id_is_accepted(self, make_store: MakeStore) -> None:
        sid = ("Aa0._:-" + uuid.uuid4().hex * 4)[:128]
        async with make_store(60, 10) as store:
            await store.append(sid, [msg("user", "fits")])
            assert [m.content for m in await store.load(sid)] == ["fits"]
            await store.delete(sid)

    async def test_concurrent_appends_lose_nothing(self, make_store: MakeStore) -> None:
        sid = session()
        async with make_store(60, 1000) as store:
            await asyncio.gather(*(store.append(sid, [msg("user", f"{i}a"), msg("assistant", f"{i}b")])
                                   for i in range(40)))  # fmt: skip
            loaded = [m.content for m in await store.load(sid)]
        assert sorted(loaded) == sorted(f"{i}{part}" for i in range(40) for part in "ab")
        for i in range(40):  # each append's turns stay together, in their order
            assert loaded.index(f"{i}b") == loaded.index(f"{i}a") + 1

    async def test_the_first_claim_owns_a_session(self, make_store: MakeStore) -> None:
        sid = session()
        async with make_store(60, 10) as store:
            assert await store.owner(sid) is None
            claims = await asyncio.gather(*(store.claim(sid, f"p{i}") for i in range(8)))
            assert sum(claims) == 1
            owner = await store.owner(sid)
            assert owner == f"p{claims.index(True)}"
            assert await store.claim(sid, owner) and not await store.claim(sid, "someone-else")
            await store.append(sid, [msg("user", "mine")])
            assert await store.owner(sid) == owner
            await store.delete(sid)
            assert await store.owner(sid) is None and await store.claim(sid, "someone-else")

    async def test_an_owner_lists_their_sessions_most_recently_used_first(self, make_store: MakeStore) -> None:
        alice, bob = f"alice-{uuid.uuid4().hex}", f"bob-{uuid.uuid4().hex}"
        first, second, third, bobs, short = session(), session(), session(), session(), session()
        async with make_store(60, 10) as store:
            for sid in (first, second, third):
                assert await store.claim(sid, alice)
                await store.append(sid, [msg("user", "hi"), msg("assistant", "hello")])
            assert await store.claim(bobs, bob) and await store.claim(short, alice, ttl_s=20)
            await store.append(short, [msg("user", "one-shot")], ttl_s=20)
            await store.append(first, [msg("user", "again")])  # used last
            listed, more = await store.owned_by(alice, limit=10)
            assert [s.id for s in listed] == [first, third, second] and not more
            assert [s.messages for s in listed] == [3, 2, 2]
            assert listed[0].updated_at >= listed[1].updated_at >= listed[2].updated_at
            page, more = await store.owned_by(alice, limit=2)
            assert [s.id for s in page] == [first, third] and more
            page, more = await store.owned_by(alice, limit=2, after=third)
            assert [s.id for s in page] == [second] and not more
            with pytest.raises(UnknownCursorError):
                await store.owned_by(alice, limit=2, after=bobs)
            await store.delete(third)
            await store.append(short, [msg("user", "continued")])  # now of the store's expiry: listed
            assert [s.id for s in (await store.owned_by(alice, limit=10))[0]] == [short, first, second]
            assert [s.id for s in (await store.owned_by(bob, limit=10))[0]] == [bobs]
            assert await store.owned_by(f"nobody-{uuid.uuid4().hex}", limit=10) == ([], False)
