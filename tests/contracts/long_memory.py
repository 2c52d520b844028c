"""Contract of `LongMemory` (memory/long_context/base.py): what a session has read, and answers drawn from it.

The properties: `read` returns the session's `MemoryInfo` (its id, the memory's mode, tokens read and stored
bytes), which `state_info` then reports too; reads accumulate (tokens of two reads = the sum of each alone),
concurrent reads of one session included; `""` reads nothing and stores nothing; `recall` names the session,
the mode and the tokens read, answers the same way twice, stays within `max_tokens` (whitespace-separated words
never outnumber tokens) and never changes what is stored (byte for byte); an unknown session reports zeros and a
recall of it stores nothing; `forget` drops everything of one session (its storage is as if it never existed)
and nothing of the others; an id outside 1–128 characters of `A-Za-z0-9._:-` is refused by every method with
`InvalidSessionIdError`; an empty query answers nothing: empty text or a `LongMemoryError`, never a change.
A memory whose answers are the session's own words (`verbatim = True`) recalls the passage that answers.

A backend runs it by subclassing `LongMemoryContract` in a `test_*.py` file and providing:

    memory    the `LongMemory` under test (any scope: every test uses sessions of its own).
    stored    a callable: session id -> a comparable snapshot of everything the backend stores for the session.
    verbatim  class attribute: True when recall answers with passages of what was read (extractive); False
              when it generates (a model's answers are only testable with trained weights).
"""

import asyncio
import contextlib
import uuid
from collections.abc import Callable

import pytest

from chimera.memory.long_context.base import LongMemory, LongMemoryError, MemoryInfo, Recollection
from chimera.memory.sessions.base import InvalidSessionIdError

Stored = Callable[[str], object]

HANDBOOK = """Travel policy. Employees book economy class for flights under six hours.

Expenses. Meals are reimbursed up to 45 euros per day with receipts.

Security. Laptops must use full-disk encryption and a screen lock after five minutes.

Holidays. Every employee has 27 days of paid leave per year, plus public holidays."""
MEMO = "The office wifi password rotates every Monday; ask the front desk for the new one."


def session() -> str:
    return f"contract-{uuid.uuid4().hex[:16]}"


class LongMemoryContract:
    """Run against every `LongMemory`; see the module docstring for the fixtures a subclass provides."""

    verbatim = True

    async def test_read_reports_what_state_info_then_reports(self, memory: LongMemory) -> None:
        sid = session()
        info = await memory.read(sid, HANDBOOK)
        assert isinstance(info, MemoryInfo)
        assert (info.session, info.mode) == (sid, memory.mode)
        assert info.tokens_read > 0 and info.state_bytes > 0
        assert await memory.state_info(sid) == info

    async def test_reads_accumulate(self, memory: LongMemory) -> None:
        alone = [(await memory.read(session(), text)).tokens_read for text in (HANDBOOK, MEMO)]
        sid = session()
        await memory.read(sid, HANDBOOK)
        both = await memory.read(sid, MEMO)
        assert both.tokens_read == sum(alone)
        assert (await memory.state_info(sid)).tokens_read == sum(alone)

    async def test_concurrent_reads_of_one_session_lose_nothing(self, memory: LongMemory) -> None:
        texts = [f"Fact number {i}: the code word is zebra{i}." for i in range(6)]
        alone = [(await memory.read(session(), text)).tokens_read for text in texts]
        sid = session()
        infos = await asyncio.gather(*(memory.read(sid, text) for text in texts))
        assert (await memory.state_info(sid)).tokens_read == sum(alone) == max(i.tokens_read for i in infos)
        if self.verbatim:
            for i in (0, 5):
                assert f"zebra{i}" in (await memory.recall(sid, f"zebra{i}")).text

    async def test_empty_text_reads_and_stores_nothing(self, memory: LongMemory, stored: Stored) -> None:
        sid = session()
        assert await memory.read(sid, "") == MemoryInfo(session=sid, mode=memory.mode)
        assert stored(sid) == stored(session())

    async def test_recall_reports_the_session_and_changes_nothing(self, memory: LongMemory, stored: Stored) -> None:
        sid = session()
        info = await memory.read(sid, HANDBOOK)
        before = stored(sid)

        found = await memory.recall(sid, "How many days of paid leave do I get?", max_tokens=8)

        assert isinstance(found, Recollection)
        assert (found.session, found.mode, found.tokens_read) == (sid, memory.mode, info.tokens_read)
        assert len(found.text.split()) <= 8 + 1  # at most 8 tokens (an extract may add an ellipsis)
        assert stored(sid) == before
        assert await memory.state_info(sid) == info
        assert await memory.recall(sid, "How many days of paid leave do I get?", max_tokens=8) == found

    async def test_recall_answers_with_the_passage_that_answers(self, memory: LongMemory) -> None:
        if not self.verbatim:
            pytest.skip("this memory generates its answers; what they say is testable only with trained weights")
        sid = session()
        await memory.read(sid, HANDBOOK)
        await memory.read(sid, MEMO)
        assert "27 days of paid leave" in (await memory.recall(sid, "How many days of paid leave do I get?")).text
        assert "wifi password" in (await memory.recall(sid, "wifi password")).text
        assert "27 days" not in (await memory.recall(session(), "paid leave days")).text

    async def test_an_unknown_session_reports_zeros_and_recall_stores_nothing(
        self, memory: LongMemory, stored: Stored
    ) -> None:
        sid = session()
        empty = stored(sid)
        assert await memory.state_info(sid) == MemoryInfo(session=sid, mode=memory.mode)
        assert (await memory.recall(sid, "anything at all", max_tokens=4)).tokens_read == 0
        assert stored(sid) == empty
        assert (await memory.state_info(sid)).tokens_read == 0

    async def test_forget_drops_one_session_and_it_starts_over(self, memory: LongMemory, stored: Stored) -> None:
        gone, kept = session(), session()
        fresh = await memory.read(gone, HANDBOOK)
        kept_info = await memory.read(kept, MEMO)
        kept_before = stored(kept)

        await memory.forget(gone)
        await memory.forget(session())  # unknown: nothing to drop, no error

        assert await memory.state_info(gone) == MemoryInfo(session=gone, mode=memory.mode)
        assert stored(gone) == stored(session())
        assert stored(kept) == kept_before and await memory.state_info(kept) == kept_info
        assert (await memory.read(gone, HANDBOOK)).tokens_read == fresh.tokens_read

    async def test_sessions_are_isolated(self, memory: LongMemory, stored: Stored) -> None:
        a, b = session(), session()
        info = await memory.read(a, HANDBOOK)
        before = stored(a)
        assert (await memory.state_info(b)).tokens_read == 0
        await memory.read(b, MEMO)
        assert stored(a) == before and await memory.state_info(a) == info

    @pytest.mark.parametrize("bad", ["", "a b", "x" * 129, "../etc/passwd", "s\n", "naïve"])
    async def test_a_bad_session_id_is_refused_by_every_method(self, memory: LongMemory, bad: str) -> None:
        calls = (memory.read(bad, "text"), memory.recall(bad, "text"), memory.state_info(bad), memory.forget(bad))
        for call in calls:
            with pytest.raises(InvalidSessionIdError):
                await call

    async def test_an_empty_query_answers_nothing_and_changes_nothing(self, memory: LongMemory, stored: Stored) -> None:
        sid = session()
        info = await memory.read(sid, HANDBOOK)
        before = stored(sid)
        with contextlib.suppress(LongMemoryError):  # refusing the query is as good as answering nothing
            assert (await memory.recall(sid, "")).text == ""
        assert stored(sid) == before and await memory.state_info(sid) == info
