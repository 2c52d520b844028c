"""The SQLite span store's tables and indexes, and the list query built from a `TraceQuery`.

`spans` holds each record (JSON) beside the facts its trace's summary is computed from; `traces` holds one summary
row per trace, indexed for the list: newest first overall, and newest first within one tenant, session, model,
expert or task, and among failed traces.
"""

from typing import Any

from chimera.spans.store import TraceQuery, decode_cursor

SCHEMA_VERSION = 1
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS spans (
        trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_id TEXT, name TEXT NOT NULL,
        start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL, error INTEGER NOT NULL,
        model TEXT, llm_model TEXT, route_expert TEXT, expert TEXT, session TEXT, tenant TEXT, task TEXT,
        input_tokens INTEGER, output_tokens INTEGER, process TEXT NOT NULL,
        text TEXT NOT NULL, record TEXT NOT NULL,
        PRIMARY KEY (trace_id, span_id))""",
    """CREATE TABLE IF NOT EXISTS traces (
        trace_id TEXT PRIMARY KEY, root_name TEXT NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,
        duration_ms REAL NOT NULL, span_count INTEGER NOT NULL, error INTEGER NOT NULL,
        model TEXT, expert TEXT, session TEXT, tenant TEXT, task TEXT,
        input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, processes TEXT NOT NULL,
        tokens INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS traces_by_start ON traces (start_ns, trace_id)",
    "CREATE INDEX IF NOT EXISTS traces_failed ON traces (start_ns, trace_id) WHERE error = 1",
    *(f"CREATE INDEX IF NOT EXISTS traces_by_{c} ON traces ({c}, start_ns, trace_id) WHERE {c} IS NOT NULL"
      for c in ("tenant", "session", "model", "expert", "task")),
)  # fmt: skip

_COLUMNS = ("trace_id, root_name, start_ns, end_ns, duration_ms, span_count, error, model, expert, session, "
            "tenant, task, input_tokens, output_tokens, processes")  # fmt: skip
_EQUAL = ("model", "expert", "session", "tenant", "task")  # fields and columns of the same name
_BOUNDS = (("since_ns", "start_ns >= ?"), ("until_ns", "start_ns <= ?"), ("min_duration_ms", "duration_ms >= ?"),
           ("max_duration_ms", "duration_ms <= ?"), ("min_tokens", "tokens >= ?"))  # fmt: skip


def list_sql(query: TraceQuery) -> tuple[str, list[Any]]:
    """The SELECT of one page (one row more than `limit`, which tells whether a next page exists)."""
    where: list[str] = []
    params: list[Any] = []
    for field in _EQUAL:
        value = getattr(query, field)
        if value is not None:
            where.append(f"{field} = ?")
            params.append(value)
    for field, condition in _BOUNDS:
        value = getattr(query, field)
        if value is not None:
            where.append(condition)
            params.append(value)
    if query.status is not None:
        where.append("error = 1" if query.status == "error" else "error = 0")
    if query.text is not None:
        where.append("EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = traces.trace_id AND s.text LIKE ? ESCAPE '\\')")
        params.append(f"%{_escape_like(query.text.casefold())}%")
    if query.cursor is not None:
        where.append("(start_ns, trace_id) < (?, ?)")
        params.extend(decode_cursor(query.cursor))
    sql = f"SELECT {_COLUMNS} FROM traces"
    if where:
        sql += " WHERE " + " AND ".join(where)
    params.append(query.limit + 1)
    return sql + " ORDER BY start_ns DESC, trace_id DESC LIMIT ?", params


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
