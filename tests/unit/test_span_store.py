"""The `SpanStore` contract on `SqliteSpanStore` (a real file), and what only a shared file on one host has to
show: 50k spans written from two threads while queries run, two processes writing at once, one schema for all.

`pytest -s` prints the timings (insert rate, list and trace query times) of the 50k run.
"""

import dataclasses
import multiprocessing
import sqlite3
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from chimera.spans.sqlite import SqliteSpanStore
from chimera.spans.store import SpanStore, SpanStoreError, TraceQuery
from tests.contracts.span_store import MakeStore, SpanStoreContract, chat_trace, span

TRACES_PER_WRITER, SPANS_PER_TRACE, BATCH_TRACES = 2_500, 10, 25  # 2 writers x 25,000 spans
MODELS, EXPERTS, TENANTS = ("chimera-auto", "chimera-react", "expert:code"), ("code", "math", "general"), ("a", "b")


class TestSqliteSpanStore(SpanStoreContract):
    @pytest.fixture
    def make_store(self, tmp_path: Path) -> MakeStore:
        @contextmanager
        def make(retention_days: float, max_spans: int, max_attribute_chars: int) -> Iterator[SpanStore]:
            store = SqliteSpanStore(tmp_path / "traces.sqlite", retention_days=retention_days, max_spans=max_spans,
                                    max_attribute_chars=max_attribute_chars)  # fmt: skip
            try:
                yield store
            finally:
                store.close()

        return make


def _load_trace(n: int, base_ns: int) -> list[dict[str, Any]]:
    """Trace number `n` of the load: a chat request of 10 spans, children first; every 10th fails."""
    tid = f"{n + 1:032x}"
    spans = chat_trace(tid, base_ns + n * 1_000_000, tenant=TENANTS[n % 2], model=MODELS[n % 3],
                       expert=EXPERTS[n % 3 if n % 5 else 0], session=f"s{n % 100}", failed=n % 10 == 0,
                       tokens=(n % 50, 10), duration_ms=n % 100)  # fmt: skip
    for k in range(SPANS_PER_TRACE - len(spans)):
        spans.insert(0, span(tid, 10 + k, 3, f"agent.step{k}", spans[-1]["start_ns"] + 10 + k, spans[-1]["start_ns"]
                             + 20 + k, chimera__tool__observation=f"needle-{n}-{k} " + "x" * 200))  # fmt: skip
    return spans


def _writer(store: SqliteSpanStore, first: int, base_ns: int, elapsed: list[float]) -> None:
    began = time.perf_counter()
    for start in range(first, first + TRACES_PER_WRITER, BATCH_TRACES):
        store.add([s for n in range(start, start + BATCH_TRACES) for s in _load_trace(n, base_ns)])
    elapsed.append(time.perf_counter() - began)


def _timed(call: Any) -> tuple[Any, float]:
    began = time.perf_counter()
    result = call()
    return result, (time.perf_counter() - began) * 1000


def test_50k_spans_from_two_threads_while_queries_run(tmp_path: Path) -> None:
    store = SqliteSpanStore(tmp_path / "traces.sqlite")
    base_ns = time.time_ns() - 3_600 * 10**9  # an hour ago: inside retention (which runs every 10k spans)
    elapsed: list[float] = []
    writers = [threading.Thread(target=_writer, args=(store, w * TRACES_PER_WRITER, base_ns, elapsed))
               for w in range(2)]  # fmt: skip
    during: list[float] = []
    began = time.perf_counter()
    for w in writers:
        w.start()
    while any(w.is_alive() for w in writers):  # readers never wait for the writers, and always see whole batches
        page, ms = _timed(lambda: store.traces(TraceQuery(tenant="a", limit=50)))
        during.append(ms)
        starts = [s.start_ns for s in page.items]
        assert starts == sorted(starts, reverse=True) and all(s.span_count == SPANS_PER_TRACE for s in page.items)
    for w in writers:
        w.join()
    wall_s = time.perf_counter() - began
    total = 2 * TRACES_PER_WRITER

    assert store.count() == total * SPANS_PER_TRACE
    newest, list_ms = _timed(lambda: store.traces(TraceQuery(limit=50)))
    assert [s.trace_id for s in newest.items] == [f"{n + 1:032x}" for n in range(total - 1, total - 51, -1)]
    filtered, filtered_ms = _timed(lambda: _all(store, TraceQuery(tenant="a", model="chimera-react", limit=200)))
    expected = [n for n in range(total - 1, -1, -1) if n % 2 == 0 and n % 3 == 1]
    assert [s.trace_id for s in filtered] == [f"{n + 1:032x}" for n in expected]
    assert len(_all(store, TraceQuery(status="error", limit=200))) == total // 10
    assert len(_all(store, TraceQuery(expert="math", min_duration_ms=90, limit=200))) == len(
        [n for n in range(total) if n % 5 and n % 3 == 1 and n % 100 >= 90]
    )
    # n % 50 >= 45 (the engine's usage, which repeats the expert's, is not counted)
    assert len(_all(store, TraceQuery(min_tokens=55, limit=200))) == total // 10
    assert len(store.traces(TraceQuery(session="s7", limit=200)).items) == total // 100
    found, text_ms = _timed(lambda: store.traces(TraceQuery(text="needle-4321-3", limit=10)).items)
    assert [s.trace_id for s in found] == [f"{4321 + 1:032x}"]
    spans, trace_ms = _timed(lambda: store.trace(f"{777 + 1:032x}"))
    assert len(spans) == SPANS_PER_TRACE and [s["start_ns"] for s in spans] == sorted(s["start_ns"] for s in spans)
    store.close()
    print(f"\n50k spans: {total * SPANS_PER_TRACE / wall_s:,.0f} spans/s over {wall_s:.1f} s (2 writers, "
          f"{statistics.mean(elapsed):.1f} s each, batches of {BATCH_TRACES * SPANS_PER_TRACE}); "
          f"list during writes p50 {statistics.median(during):.1f} ms max {max(during):.1f} ms ({len(during)} "
          f"queries); after: newest page {list_ms:.1f} ms, tenant+model all pages {filtered_ms:.1f} ms, "
          f"text search {text_ms:.1f} ms, one trace {trace_ms:.1f} ms")  # fmt: skip


def _all(store: SpanStore, query: TraceQuery) -> list[Any]:
    items, page = [], store.traces(query)
    items += page.items
    while page.next_cursor:
        page = store.traces(dataclasses.replace(query, cursor=page.next_cursor))
        items += page.items
    return items


def _write_from_a_process(path: str, worker: int, start: Any) -> None:
    """One of two processes: open the (maybe new) file as the other does, then write 200 batches of 20 spans, one
    span of each batch into a trace both processes write to."""
    start.wait()
    store = SqliteSpanStore(Path(path))
    shared = "f" * 32
    for b in range(200):
        tid = f"{worker:02x}{b:030x}"
        batch = [span(tid, i + 1, None if i == 0 else 1, f"w{worker}.{i}", 10**18, 10**18 + i) for i in range(19)]
        store.add([*batch, span(shared, worker * 1000 + b + 1, None, "shared", 10**18, 10**18 + 1)])
    store.close()


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "traces.sqlite"
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    processes = [context.Process(target=_write_from_a_process, args=(str(path), w, start)) for w in (1, 2)]
    for p in processes:
        p.start()
    time.sleep(0.5)  # both importing; then both open the new file at once
    start.set()
    for p in processes:
        p.join(120)
    assert [p.exitcode for p in processes] == [0, 0]
    store = SqliteSpanStore(path)
    assert store.count() == 2 * 200 * 20
    (shared,) = store.traces(TraceQuery(text="shared", limit=10)).items
    assert shared.trace_id == "f" * 32 and shared.span_count == 400
    assert len(store.trace(f"{1:02x}{199:030x}")) == 19
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # set once, kept by the file


def test_closing_waits_for_queries_in_other_threads_which_then_get_a_typed_error(tmp_path: Path) -> None:
    store = SqliteSpanStore(tmp_path / "traces.sqlite")
    base_ns = time.time_ns() - 10**9
    store.add([s for n in range(500) for s in _load_trace(n, base_ns)])
    refused: list[SpanStoreError] = []

    def scan() -> None:  # text searches that match nothing read every span: the close lands mid-query
        while True:
            try:
                store.traces(TraceQuery(text="no such text"))
            except SpanStoreError as e:
                refused.append(e)
                return

    readers = [threading.Thread(target=scan) for _ in range(3)]
    for r in readers:
        r.start()
    time.sleep(0.3)
    store.close()  # closing a connection another thread is using would crash the process
    for r in readers:
        r.join(10)
    assert len(refused) == 3 and all("closed" in str(e) for e in refused)


def test_a_file_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "traces.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(SpanStoreError, match="schema 99"):
        SqliteSpanStore(path)
