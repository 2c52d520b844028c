"""`GraphStore` on LadybugDB (the maintained Kùzu fork): an embedded graph database in one local file."""

import threading
from pathlib import Path
from typing import Any

import ladybug

from chimera.memory.graph.base import GraphStore, GraphStoreError, QueryTimeoutError, Row, Statement
from chimera.memory.graph.schema import GraphSchema, NodeType, RelType

# Ladybug reports a query stopped by its timeout (or by `interrupt()`) with this message.
_INTERRUPTED = "Interrupted"


def _node_table_ddl(node: NodeType) -> str:
    columns = ", ".join(f"{name} {type_}" for name, type_ in node.properties)
    return f"CREATE NODE TABLE IF NOT EXISTS {node.label}({columns}, PRIMARY KEY({node.key}))"


def _rel_table_ddl(rel: RelType) -> str:
    columns = "".join(f", {name} {type_}" for name, type_ in rel.properties)
    return f"CREATE REL TABLE IF NOT EXISTS {rel.type}(FROM {rel.source} TO {rel.target}{columns})"


class LadybugGraphStore(GraphStore):
    """A Ladybug database file opened by this process.

    Single-process: Ladybug locks the file, so only one process may open it for writing at a time; share the store
    between threads instead (one connection, serialised by a lock). Use `Neo4jGraphStore` when several processes
    or machines need the same graph.
    """

    def __init__(self, path: Path) -> None:
        """Open (or create) the database at `path`, creating its parent folder.

        Raises:
            GraphStoreError: The file cannot be opened, e.g. another process holds it.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._database = ladybug.Database(str(path))
            self._connection = ladybug.Connection(self._database)
        except RuntimeError as e:
            raise GraphStoreError(f"cannot open the Ladybug database at {path}: {e}") from e
        self._path = path
        self._lock = threading.RLock()
        self._closed = False

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    def ensure_schema(self, schema: GraphSchema) -> None:
        ddl = [_node_table_ddl(node) for node in schema.nodes]
        ddl += [_rel_table_ddl(rel) for rel in schema.relationships]
        with self._lock:
            for statement in ddl:
                self._query(statement, {}, max_rows=None, timeout_s=None)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._connection.close()
            self._database.close()

    def _run(
        self,
        cypher: str,
        params: dict[str, Any],
        *,
        max_rows: int | None,
        timeout_s: float | None,
        read_only: bool,
    ) -> list[Row]:
        # `read_only` needs nothing more here: the base class has already refused write clauses.
        with self._lock:
            return self._query(cypher, params, max_rows=max_rows, timeout_s=timeout_s)

    def _run_transaction(self, statements: list[Statement]) -> None:
        with self._lock:
            self._query("BEGIN TRANSACTION", {}, max_rows=0, timeout_s=None)
            try:
                for statement in statements:
                    self._query(statement.cypher, dict(statement.params), max_rows=0, timeout_s=None)
                self._query("COMMIT", {}, max_rows=0, timeout_s=None)
            except BaseException:
                self._rollback()
                raise

    def _rollback(self) -> None:
        """Roll back the open transaction; a statement that failed has already rolled it back by itself."""
        try:
            result = self._connection.execute("ROLLBACK")
        except RuntimeError as e:
            if "No active transaction" not in str(e):
                raise GraphStoreError(f"rollback failed: {e}") from e
            return
        for part in result if isinstance(result, list) else [result]:
            part.close()

    def _query(
        self, cypher: str, params: dict[str, Any], *, max_rows: int | None, timeout_s: float | None
    ) -> list[Row]:
        """Run one statement on the connection; the caller holds the lock."""
        if self._closed:
            raise GraphStoreError("the graph store is closed")
        # The setting is per connection and applies from the next query on, so every query sets its own.
        self._connection.set_query_timeout(0 if timeout_s is None else max(1, round(timeout_s * 1000)))
        try:
            result = self._connection.execute(cypher, params)
        except RuntimeError as e:
            if timeout_s is not None and _INTERRUPTED in str(e):
                raise QueryTimeoutError(f"query stopped after {timeout_s} s") from e
            raise GraphStoreError(f"Ladybug query failed: {e}") from e
        if isinstance(result, list):  # several statements slipped past the lexer; never expected
            for part in result:
                part.close()
            raise GraphStoreError("give exactly one Cypher statement per query")
        try:
            columns = result.get_column_names()
            rows = result.get_all() if max_rows is None else result.get_n(max_rows)
        finally:
            result.close()
        return [dict(zip(columns, row, strict=True)) for row in rows]
