"""`graph_query`: model-written, read-only Cypher over the document knowledge graph, rows back as a compact table.

The guard is `GraphStore.execute_read`: write clauses and unknown procedures are refused before anything runs, the
rows are capped and the query is stopped at a time limit. This tool turns each refusal into an observation the model
can act on. The graph holds every tenant's chunks, so `scoped` offers it only to callers that may read all of it.
"""

import asyncio
import json
import threading
from collections.abc import Callable, Mapping
from typing import ClassVar

from pydantic import BaseModel, Field

from chimera.memory.graph.base import GraphStore, GraphStoreError, QueryTimeoutError, ReadOnlyViolation, Row
from chimera.tools.base import Scope, Tool, ToolError

_MAX_CELL_CHARS = 200
_BACKSTOP_S = 5.0  # beyond the query's own limit: a store that does not stop in time still answers the model

Param = str | int | float | bool


class GraphQueryArgs(BaseModel):
    cypher: str = Field(
        min_length=1,
        max_length=4000,
        description="One read-only Cypher statement (MATCH … RETURN …); write values as $name parameters.",
    )
    params: dict[str, Param] = Field(default_factory=dict, description="Values of the $parameters, by name.")


class GraphQuery(Tool):
    """Read-only Cypher on the knowledge graph (see `chimera.memory.graph.knowledge`).

    Args:
        open_store: Returns the graph store; called on first use, so that a server opens it only when needed.
        max_rows: Rows shown; a query that matches more is told so.
        timeout_s: Time limit of one query.
        max_chars: Length of the table shown; longer tables are cut at a row boundary.
        keep_open: Keep the store open between calls (until `close`). False opens and closes it around each call,
            which lets another process (e.g. `chimera ingest` on the embedded store) write in between.
    """

    name: ClassVar[str] = "graph_query"
    description: ClassVar[str] = (
        "Runs one read-only Cypher query on the document knowledge graph and returns the rows as a table. "
        "Schema: (:Chunk {id, tenant, source})-[:MENTIONS {count}]->(:Entity {id, name, kind}) and "
        "(:Entity)-[:CO_OCCURS {weight}]->(:Entity), the number of chunks two entities share, stored once per pair "
        "(match it undirected: -[w:CO_OCCURS]-). Entity ids are lower-cased names. Return properties, not whole "
        "nodes, and use ORDER BY and LIMIT. Arguments: {'cypher': 'MATCH (e:Entity {id: $id})-[w:CO_OCCURS]-"
        "(o:Entity) RETURN o.name, w.weight ORDER BY w.weight DESC LIMIT 10', 'params': {'id': 'ada lovelace'}}."
    )
    Args: ClassVar[type[BaseModel]] = GraphQueryArgs

    def __init__(
        self,
        open_store: Callable[[], GraphStore],
        *,
        max_rows: int = 50,
        timeout_s: float = 5.0,
        max_chars: int = 4000,
        keep_open: bool = True,
        available: Callable[[], bool] | None = None,
    ) -> None:
        if max_rows < 1 or timeout_s <= 0 or max_chars < 1:
            raise ValueError("max_rows, timeout_s and max_chars must be positive")
        self._open_store = open_store
        self.max_rows = max_rows
        self.timeout_s = timeout_s
        self.max_chars = max_chars
        self.keep_open = keep_open
        self._store: GraphStore | None = None
        self._lock = threading.Lock()
        self._available = available

    def available(self) -> bool:
        """Offered to the agent only when there is a graph to query (None: always)."""
        return self._available() if self._available is not None else True

    def scoped(self, scope: Scope) -> "GraphQuery | None":
        """The graph is not partitioned by tenant or group: only a caller that may read all of it gets the tool."""
        return self if scope.whole_graph else None

    def close(self) -> None:
        """Close the store if this tool opened it; a later call opens it again."""
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    async def run(self, args: GraphQueryArgs) -> str:
        try:
            rows = await asyncio.wait_for(
                asyncio.to_thread(self._query, args.cypher, args.params), self.timeout_s + _BACKSTOP_S
            )
        except TimeoutError as e:
            raise ToolError(f"the query did not stop within {self.timeout_s:g} s: narrow the MATCH, add a LIMIT") from e
        return self._table(rows)

    def _query(self, cypher: str, params: Mapping[str, Param]) -> list[Row]:
        """Run the query on the store (one more row than shown, to tell whether there were more)."""
        with self._lock:
            store = self._store or self._open()
            try:
                return store.execute_read(cypher, params, max_rows=self.max_rows + 1, timeout_s=self.timeout_s)
            except ReadOnlyViolation as e:
                reason = str(e).removeprefix("not a read-only query: ")
                raise ToolError(f"rejected: graph_query is read-only ({reason}); nothing was run") from e
            except QueryTimeoutError as e:
                raise ToolError(
                    f"the query ran past {self.timeout_s:g} s and was stopped: narrow it or add a LIMIT"
                ) from e
            except GraphStoreError as e:
                raise ToolError(f"the query failed: {e}") from e
            finally:
                if self.keep_open:
                    self._store = store
                else:
                    store.close()

    def _open(self) -> GraphStore:
        try:
            return self._open_store()
        except GraphStoreError as e:
            raise ToolError(f"the knowledge graph is unavailable: {e}") from e

    def _table(self, rows: list[Row]) -> str:
        """Rows as `a | b` lines under a header, cut to `max_rows` rows and `max_chars` characters, with a footer."""
        if not rows:
            return "no rows"
        shown = rows[: self.max_rows]
        columns = list(shown[0])
        lines = [" | ".join(columns)]
        lines += [" | ".join(_cell(row.get(column)) for column in columns) for row in shown]
        kept, length = 0, 0
        while kept < len(lines) and length + len(lines[kept]) + 1 <= self.max_chars:
            length += len(lines[kept]) + 1
            kept += 1
        kept = max(kept, 1)
        notes = []
        if len(rows) > self.max_rows:
            notes.append(f"only the first {self.max_rows} rows are shown, more matched: add ORDER BY and LIMIT")
        if kept < len(lines):
            notes.append(f"cut after {kept - 1} rows at {self.max_chars} characters: return fewer or shorter columns")
        footer = "; ".join(notes) if notes else f"{len(shown)} row{'s' if len(shown) != 1 else ''}"
        return "\n".join(lines[:kept]) + f"\n({footer})"


def _cell(value: object) -> str:
    """One value on one line: strings as they are, the rest as JSON (nodes and relationships are dicts)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split()) if "\n" in text or "\r" in text else text
    return text if len(text) <= _MAX_CELL_CHARS else text[: _MAX_CELL_CHARS - 1] + "…"
