"""Contract of `SpanStore` (chimera/spans/store.py): spans by trace, trace summaries to list and filter, retention.

The properties: `add` stores every record of a batch or, when one is invalid, none (`InvalidSpanError`), and returns
how many; re-adding a (trace_id, span_id) replaces it; string attribute values over the limit are cut with the
"…[truncated N chars]" marker; `trace` returns a trace's spans oldest first, a child whose parent has not arrived
included, and `TraceNotFoundError` for an unknown trace; a summary's root is the parentless span, else the earliest,
and fills in when the root arrives; tokens add up over the spans, a span nested in a usage-reporting one left out;
`traces` lists newest first, every filter narrows, and its cursor pages through a list once, in order; a cursor it
did not hand out is an `InvalidTraceQueryError`; `prune` deletes traces past `retention_days`, then the oldest
traces beyond `max_spans`, and says how many spans it deleted; `count` counts spans.

A backend runs it by subclassing `SpanStoreContract` in a `test_*.py` file and providing:

    make_store   a context manager factory: (retention_days, max_spans, max_attribute_chars) -> an open store,
                 closed on exit; each test's stores start empty.
"""

import itertools
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest

from chimera.spans.store import (
    InvalidSpanError,
    InvalidTraceQueryError,
    SpanStore,
    TraceNotFoundError,
    TraceQuery,
)

MakeStore = Callable[[float, int, int], AbstractContextManager[SpanStore]]
DAY_NS = 86_400 * 10**9
_ids = itertools.count(1)


def new_trace_id() -> str:
    return f"{next(_ids):032x}"


def span(
    trace_id: str,
    span_id: int,
    parent: int | None,
    name: str,
    start_ns: int,
    end_ns: int,
    status: str = "OK",
    role: str = "api",
    **attributes: Any,
) -> dict[str, Any]:
    """A span record; attribute names are given with `__` for the dots (`chimera__model`)."""
    parent_id = None if parent is None else f"{parent:016x}"
    return {"trace_id": trace_id, "span_id": f"{span_id:016x}", "parent_id": parent_id, "name": name,
            "start_ns": start_ns, "end_ns": end_ns, "status": status,
            "attributes": {k.replace("__", "."): v for k, v in attributes.items()},
            "resource": {"chimera.process.role": role, "process.pid": 7, "service.name": "chimera"}}  # fmt: skip


def chat_trace(trace_id: str, start_ns: int, *, tenant: str = "acme", model: str = "chimera-auto",
               expert: str = "general", session: str = "s1", failed: bool = False, tokens: tuple[int, int] = (5, 7),
               duration_ms: float = 10.0) -> list[dict[str, Any]]:  # fmt: skip
    """A chat request's spans, children first (the order they end and are exported in)."""
    end = start_ns + int(duration_ms * 1e6)
    usage = {"gen_ai__usage__input_tokens": tokens[0], "gen_ai__usage__output_tokens": tokens[1]}
    return [
        span(trace_id, 4, 3, "engine.generate", start_ns + 3, end - 3, role="ray-worker", **usage),
        span(trace_id, 3, 1, "expert.generate", start_ns + 2, end - 2, chimera__expert=expert,
             gen_ai__request__model="SmolLM2", **usage),
        span(trace_id, 2, 1, "router.route", start_ns + 1, start_ns + 2, chimera__route__expert=expert),
        span(trace_id, 1, None, "POST /v1/chat/completions", start_ns, end, "ERROR" if failed else "OK",
             chimera__model=model, chimera__tenant=tenant, chimera__session=session),
    ]  # fmt: skip


class SpanStoreContract:
    """Run against every `SpanStore`; see the module docstring for the fixture a subclass provides."""

    def test_a_trace_comes_back_oldest_first_and_summarized(self, make_store: MakeStore) -> None:
        tid = new_trace_id()
        with make_store(7, 1000, 8192) as store:
            assert store.add(chat_trace(tid, 1_000, tokens=(11, 13))) == 4
            assert [s["name"] for s in store.trace(tid)] == ["POST /v1/chat/completions", "router.route",
                                                             "expert.generate", "engine.generate"]  # fmt: skip
            assert store.trace(tid)[0]["attributes"]["chimera.model"] == "chimera-auto"
            (summary,) = store.traces(TraceQuery()).items
            assert summary.as_dict() == {
                "trace_id": tid,
                "root_name": "POST /v1/chat/completions",
                "start_ns": 1_000,
                "end_ns": 1_000 + 10_000_000,
                "duration_ms": 10.0,
                "span_count": 4,
                "error": False,
                "model": "chimera-auto",
                "expert": "general",
                "session": "s1",
                "tenant": "acme",
                "task": None,
                "input_tokens": 11,
                "output_tokens": 13,
                "processes": ["api 7", "ray-worker 7"],
            }  # fmt: skip  (the engine's usage repeats the expert's: counted once)
            assert store.count() == 4

    def test_a_child_before_its_parent_is_kept_and_the_root_fills_in(self, make_store: MakeStore) -> None:
        tid = new_trace_id()
        engine, expert, router, root = chat_trace(tid, 5_000)
        with make_store(7, 1000, 8192) as store:
            store.add([engine])
            assert [s["name"] for s in store.trace(tid)] == ["engine.generate"]
            (early,) = store.traces(TraceQuery()).items
            assert early.root_name == "engine.generate" and early.span_count == 1 and early.start_ns == 5_003
            store.add([router])
            assert store.traces(TraceQuery()).items[0].root_name == "router.route"  # the earliest so far
            store.add([root])
            store.add([expert])
            (late,) = store.traces(TraceQuery()).items
            assert late.root_name == "POST /v1/chat/completions" and late.start_ns == 5_000 and late.span_count == 4
            assert late.tenant == "acme" and late.model == "chimera-auto" and late.input_tokens == 5

    def test_re_adding_a_span_replaces_it(self, make_store: MakeStore) -> None:
        tid = new_trace_id()
        with make_store(7, 1000, 8192) as store:
            store.add([span(tid, 1, None, "first", 10, 20, x="a")])
            store.add([span(tid, 1, None, "again", 10, 30, "ERROR", x="b")])
            (only,) = store.trace(tid)
            assert only["name"] == "again" and only["attributes"] == {"x": "b"} and only["status"] == "ERROR"
            assert store.count() == 1 and store.traces(TraceQuery()).items[0].error is True

    def test_long_attribute_values_are_cut_with_a_marker(self, make_store: MakeStore) -> None:
        tid = new_trace_id()
        with make_store(7, 1000, 100) as store:
            store.add([span(tid, 1, None, "big", 0, 1, prompt="é" * 250, short="ok", many=["y" * 150, "z"])])
            attributes = store.trace(tid)[0]["attributes"]
        assert attributes["prompt"] == "é" * 100 + "…[truncated 150 chars]"
        assert attributes["many"] == ["y" * 100 + "…[truncated 50 chars]", "z"] and attributes["short"] == "ok"

    @pytest.mark.parametrize("broken", [{"trace_id": "XYZ"}, {"span_id": "12"}, {"parent_id": 5}, {"start_ns": -1},
                                        {"status": "FINE"}, {"attributes": []}, {"name": None}])  # fmt: skip
    def test_an_invalid_record_stores_nothing_of_its_batch(self, make_store: MakeStore, broken: dict[str, Any]) -> None:
        tid = new_trace_id()
        good = span(tid, 1, None, "good", 0, 1)
        with make_store(7, 1000, 8192) as store:
            with pytest.raises(InvalidSpanError):
                store.add([good, {**span(tid, 2, 1, "bad", 0, 1), **broken}])
            with pytest.raises(InvalidSpanError):
                store.add([{k: v for k, v in good.items() if k != "resource"}])
            assert store.count() == 0
            with pytest.raises(TraceNotFoundError):
                store.trace(tid)

    def test_lists_newest_first_and_every_filter_narrows(self, make_store: MakeStore) -> None:
        traces = {
            "a": dict(tenant="acme", model="chimera-auto", expert="code", session="s-a", duration_ms=5),
            "b": dict(tenant="acme", model="chimera-react", expert="math", session="s-b", failed=True),
            "c": dict(tenant="globex", model="chimera-auto", expert="code", session="s-a", tokens=(400, 100),
                      duration_ms=900),
        }  # fmt: skip
        ids = {name: new_trace_id() for name in traces}
        with make_store(7, 1000, 8192) as store:
            for i, (name, kw) in enumerate(traces.items()):
                store.add(chat_trace(ids[name], (i + 1) * 10**9, **kw))  # type: ignore[arg-type]
            store.add([span(ids["c"], 9, 1, "tool.calculator", 10**9 * 3 + 5, 10**9 * 3 + 6,
                            chimera__tool__observation="The Answer is 391", chimera__task__id="task-7")])  # fmt: skip

            def names(**query: Any) -> list[str]:
                found = [s.trace_id for s in store.traces(TraceQuery(**query)).items]
                return [next(n for n, i in ids.items() if i == t) for t in found]

            assert names() == ["c", "b", "a"]
            assert names(tenant="acme") == ["b", "a"] and names(model="chimera-auto") == ["c", "a"]
            assert names(expert="math") == ["b"] and names(session="s-a") == ["c", "a"]
            assert names(task="task-7") == ["c"]
            assert names(status="error") == ["b"] and names(status="ok") == ["c", "a"]
            assert names(min_duration_ms=100) == ["c"] and names(max_duration_ms=6) == ["a"]
            assert names(min_tokens=500) == ["c"] and names(min_tokens=12) == ["c", "b", "a"]
            assert names(text="answer IS 391") == ["c"] and names(text="router.") == ["c", "b", "a"]
            assert names(text="100%") == [] and names(text="_") == []  # LIKE's wildcards are plain text
            assert names(since_ns=2 * 10**9) == ["c", "b"] and names(until_ns=2 * 10**9) == ["b", "a"]
            assert names(tenant="acme", model="chimera-auto", expert="code") == ["a"]
            assert names(tenant="nobody") == []

    def test_the_cursor_pages_through_once_in_order(self, make_store: MakeStore) -> None:
        with make_store(7, 10_000, 8192) as store:
            ids = [new_trace_id() for _ in range(23)]
            for i, tid in enumerate(ids):  # two traces share each start time: the id breaks the tie
                store.add(chat_trace(tid, 10**9 + (i // 2) * 1000, tenant="acme" if i % 3 else "globex"))
            seen, cursor = [], None
            while True:
                page = store.traces(TraceQuery(tenant="acme", limit=4, cursor=cursor))
                seen += [(s.start_ns, s.trace_id) for s in page.items]
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            expected = sorted(((10**9 + (i // 2) * 1000, t) for i, t in enumerate(ids) if i % 3), reverse=True)
            assert seen == expected
            with pytest.raises(InvalidTraceQueryError) as e:
                store.traces(TraceQuery(cursor="not-a-cursor"))
            assert e.value.param == "cursor"

    def test_an_unknown_trace_is_not_found(self, make_store: MakeStore) -> None:
        with make_store(7, 1000, 8192) as store, pytest.raises(TraceNotFoundError):
            store.trace(new_trace_id())

    def test_retention_deletes_traces_past_their_age(self, make_store: MakeStore) -> None:
        now = 100 * DAY_NS
        old, recent = new_trace_id(), new_trace_id()
        with make_store(7, 1000, 8192) as store:
            store.add(chat_trace(old, now - 8 * DAY_NS))
            store.add(chat_trace(recent, now - 6 * DAY_NS))
            assert store.prune(now_ns=now) == 4
            assert [s.trace_id for s in store.traces(TraceQuery()).items] == [recent] and store.count() == 4
            with pytest.raises(TraceNotFoundError):
                store.trace(old)
            assert store.prune(now_ns=now) == 0

    def test_retention_deletes_the_oldest_traces_beyond_max_spans(self, make_store: MakeStore) -> None:
        now = 100 * DAY_NS
        ids = [new_trace_id() for _ in range(5)]
        with make_store(7, 10, 8192) as store:
            for i, tid in enumerate(ids):  # 4 spans each: 20 in all, 10 allowed
                store.add(chat_trace(tid, now - DAY_NS + i * 10**9))
            assert store.prune(now_ns=now) == 12  # three whole traces go: two would leave 12 > 10
            assert store.count() == 8
            assert [s.trace_id for s in store.traces(TraceQuery()).items] == [ids[4], ids[3]]
