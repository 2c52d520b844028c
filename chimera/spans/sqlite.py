"""`SqliteSpanStore`: the embedded span store, one SQLite file (WAL) that every Chimera process of a host writes.

Writers take SQLite's write lock at the start of each batch (`BEGIN IMMEDIATE`) and wait up to `busy_timeout_s`
for it, so processes and threads may write at once; readers never wait for writers (WAL). Each batch upserts its
spans and recomputes the summary row of every trace it touched from that trace's stored span facts, in the same
transaction: summaries are right whatever order spans arrive in, and whichever process wrote them. Each thread
(and each process, after a fork) uses a connection of its own.
"""

import contextlib
import dataclasses
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from chimera.spans._sqlite_schema import SCHEMA, SCHEMA_VERSION, list_sql
from chimera.spans.records import SpanFacts, checked, facts, search_text, summarize
from chimera.spans.store import (
    SpanStore,
    SpanStoreError,
    TraceNotFoundError,
    TracePage,
    TraceQuery,
    TraceSummary,
    encode_cursor,
)

log = logging.getLogger(__name__)
DELETE_CHUNK = 500  # traces deleted per write transaction, so that pruning never holds the write lock for long
_FACT_NAMES = tuple(f.name for f in dataclasses.fields(SpanFacts))  # the `spans` columns of the same names
_SUMMARY_NAMES = tuple(f.name for f in dataclasses.fields(TraceSummary))  # the `traces` columns of the same names
_FACTS, _SUMMARY = ", ".join(_FACT_NAMES), ", ".join(_SUMMARY_NAMES)


class SqliteSpanStore(SpanStore):
    """Spans in one SQLite file; see the module docstring for how several writers share it.

    Args:
        path: the database file (created, with its folder, if missing).
        retention_days: traces that started longer ago are deleted by `prune`.
        max_spans: beyond this many spans, `prune` deletes the oldest traces; it runs by itself (in a thread of its
            own) after every tenth of this many spans this store adds (every 1,000 at most often, 10,000 at least).
        max_attribute_chars: longer string values are cut, with a marker.
        busy_timeout_s: how long a write waits for another writer before failing.

    Raises:
        SpanStoreError: the file cannot be created or opened, or holds another schema version.
    """

    def __init__(
        self,
        path: Path,
        *,
        retention_days: float = 7,
        max_spans: int = 2_000_000,
        max_attribute_chars: int = 8192,
        busy_timeout_s: float = 10.0,
    ) -> None:
        self.path = Path(path)
        self.retention_days, self.max_spans, self.max_attribute_chars = retention_days, max_spans, max_attribute_chars
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()  # guards the fields below and `_connections`
        self._idle = threading.Condition(self._lock)  # notified when no work is running (`_busy` back at 0)
        self._busy = 0
        self._closed = False
        self._since_prune = 0
        self._pruner: threading.Thread | None = None
        self._prune_every = max(1_000, min(10_000, max_spans // 10))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SpanStoreError(f"span store {self.path}: {e}") from e
        self._create_schema()

    def add(self, spans: Sequence[dict[str, Any]]) -> int:
        records = [checked(s, self.max_attribute_chars) for s in spans]
        if not records:
            return 0
        rows = [_span_row(r) for r in records]
        with self._writing() as db:
            db.executemany(f"INSERT OR REPLACE INTO spans ({_FACTS}, trace_id, text, record) "
                           f"VALUES ({', '.join('?' * (len(_FACT_NAMES) + 3))})", rows)  # fmt: skip
            for trace_id in dict.fromkeys(r["trace_id"] for r in records):
                self._summarize(db, trace_id)
        with self._lock:
            self._since_prune += len(records)
            if self._since_prune >= self._prune_every and not (self._pruner and self._pruner.is_alive()):
                self._since_prune = 0
                # off the caller's thread: an exporter adds from the traced code's thread (the event loop)
                self._pruner = threading.Thread(target=self._prune_quietly, name="span-store-prune", daemon=True)
                self._pruner.start()
        return len(records)

    def traces(self, query: TraceQuery) -> TracePage:
        sql, params = list_sql(query)
        rows = self._fetch(sql, params)
        items = [_summary(row) for row in rows[: query.limit]]
        more = len(rows) > query.limit
        return TracePage(items, encode_cursor(items[-1].start_ns, items[-1].trace_id) if more else None)

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        rows = self._fetch("SELECT record FROM spans WHERE trace_id = ? ORDER BY start_ns, span_id", [trace_id])
        if not rows:
            raise TraceNotFoundError(f"no trace {trace_id}")
        return [json.loads(row[0]) for row in rows]

    def prune(self, now_ns: int | None = None) -> int:
        now_ns = time.time_ns() if now_ns is None else now_ns
        cutoff = now_ns - int(self.retention_days * 86_400 * 1e9)
        deleted = 0
        while old := self._fetch("SELECT trace_id FROM traces WHERE start_ns < ? ORDER BY start_ns LIMIT ?",
                                 [cutoff, DELETE_CHUNK]):  # fmt: skip
            deleted += self._delete([row[0] for row in old])
        excess = self.count() - self.max_spans
        while excess > 0:
            oldest = self._fetch("SELECT trace_id, span_count FROM traces ORDER BY start_ns, trace_id LIMIT ?",
                                 [DELETE_CHUNK])  # fmt: skip
            if not oldest:
                break
            chosen, covered = [], 0
            for trace_id, span_count in oldest:
                if covered >= excess:
                    break
                chosen.append(trace_id)
                covered += span_count
            removed = self._delete(chosen)
            deleted += removed
            excess -= removed
        return deleted

    def count(self) -> int:
        return int(self._fetch("SELECT COUNT(*) FROM spans", [])[0][0])

    def close(self) -> None:
        """Refuse new work, wait for the statements running in other threads, then close every connection."""
        with self._idle:
            self._closed = True
            self._idle.wait_for(lambda: self._busy == 0)  # closing a connection in use would crash SQLite
            connections, self._connections = self._connections, []
        for db in connections:
            db.close()

    def _prune_quietly(self) -> None:
        try:
            self.prune()
        except SpanStoreError as e:  # the spans are stored; the next prune catches up
            if not self._closed:
                log.warning("pruning the span store failed: %s", e)

    def _summarize(self, db: sqlite3.Connection, trace_id: str) -> None:
        """Recompute the trace's summary row from the facts of its stored spans."""
        rows = db.execute(f"SELECT {_FACTS} FROM spans WHERE trace_id = ?", (trace_id,)).fetchall()
        summary = summarize(trace_id, [_facts(row) for row in rows])
        values = {**dataclasses.asdict(summary), "processes": json.dumps(summary.processes)}
        db.execute(
            f"INSERT OR REPLACE INTO traces ({_SUMMARY}, tokens) VALUES ({', '.join('?' * (len(values) + 1))})",
            (*values.values(), summary.input_tokens + summary.output_tokens),
        )

    def _delete(self, trace_ids: list[str]) -> int:
        """Delete whole traces; the number of spans deleted."""
        marks = ", ".join("?" * len(trace_ids))
        with self._writing() as db:
            spans = db.execute(f"DELETE FROM spans WHERE trace_id IN ({marks})", trace_ids).rowcount
            db.execute(f"DELETE FROM traces WHERE trace_id IN ({marks})", trace_ids)
        return int(spans)

    def _create_schema(self) -> None:
        self._use_wal()
        with self._writing() as tx:
            version = tx.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise SpanStoreError(f"{self.path} has span store schema {version}; this Chimera has {SCHEMA_VERSION}")
            for statement in SCHEMA:
                tx.execute(statement)
            tx.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _use_wal(self) -> None:
        """Switch the file to WAL (persistent: set once per file, kept by every later connection). Two processes
        creating the file at once may find it locked: SQLite does not wait for this pragma, so we do."""
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            try:
                with contextlib.closing(sqlite3.connect(self.path, timeout=self.busy_timeout_s)) as db:
                    db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise SpanStoreError(f"span store {self.path}: {e}") from e
                time.sleep(0.05)

    def _fetch(self, sql: str, params: list[Any]) -> list[Any]:
        with self._connection() as db:
            return db.execute(sql, params).fetchall()

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the write lock from its start (waiting up to `busy_timeout_s`)."""
        with self._connection() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if db.in_transaction:
                    db.rollback()
                raise
            db.execute("COMMIT")

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection for one piece of work (counted, so that `close` waits for it); SQLite's and
        the file system's errors as `SpanStoreError`."""
        with self._idle:
            if self._closed:
                raise SpanStoreError(f"the span store {self.path} is closed")
            self._busy += 1
        try:
            yield self._db()
        except (sqlite3.Error, OSError) as e:
            raise SpanStoreError(f"span store {self.path}: {e}") from e
        finally:
            with self._idle:
                self._busy -= 1
                if not self._busy:
                    self._idle.notify_all()

    def _db(self) -> sqlite3.Connection:
        """This thread's connection (a new one in a forked child: a connection never crosses a fork)."""
        held: tuple[int, sqlite3.Connection] | None = getattr(self._local, "db", None)
        if held is not None and held[0] == os.getpid():
            return held[1]
        db = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA synchronous = NORMAL")  # WAL: a commit survives the process; only power loss may lose it
        db.execute("PRAGMA journal_size_limit = 67108864")  # the WAL shrinks back to 64 MiB after checkpoints
        with self._lock:
            self._connections.append(db)
        self._local.db = (os.getpid(), db)
        return db


def _span_row(record: dict[str, Any]) -> tuple[Any, ...]:
    """The `spans` row of a record: its facts (`_FACTS`), then trace_id, text, record."""
    text = json.dumps(record, ensure_ascii=False, default=str, separators=(",", ":"))
    return (*dataclasses.astuple(facts(record)), record["trace_id"], search_text(record), text)


def _facts(row: tuple[Any, ...]) -> SpanFacts:
    values = dict(zip(_FACT_NAMES, row, strict=True))
    return SpanFacts(**{**values, "error": bool(values["error"])})


def _summary(row: tuple[Any, ...]) -> TraceSummary:
    values = dict(zip(_SUMMARY_NAMES, row, strict=True))
    return TraceSummary(**{**values, "error": bool(values["error"]), "processes": json.loads(values["processes"])})
