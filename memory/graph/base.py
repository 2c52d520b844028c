"""The graph-store seam: Cypher in, rows out, with a guarded read-only path for model-written queries."""

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from chimera.errors import ChimeraError
from chimera.memory.graph._cypher import find_write_clause, is_single_statement
from chimera.memory.graph.schema import GraphSchema

Row = dict[str, Any]


class GraphStoreError(ChimeraError):
    """The graph database refused or failed a query, or the store is closed."""


class ReadOnlyViolation(GraphStoreError):
    """A query given to `execute_read` could write (or is not one statement); it was not run."""


class QueryTimeoutError(GraphStoreError):
    """A query ran past its time limit and was stopped."""


@dataclass(frozen=True)
class Statement:
    """One Cypher statement and its parameters, for `GraphStore.execute_in_transaction`."""

    cypher: str
    params: Mapping[str, Any] = field(default_factory=dict)


class GraphStore(ABC):
    """A Cypher graph database: each query returns its rows as dicts of column name to value.

    Subclasses implement `_run`, `_run_transaction`, `ensure_schema` and `close`; the checks around them
    (one statement per call, the read-only guard, argument limits) live here, once for every backend.
    """

    def execute(self, cypher: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        """Run one statement (read or write) in its own transaction.

        Args:
            cypher: One Cypher statement, parameters written `$name`.
            params: The parameter values.

        Returns:
            Every row, each a dict column name → value.

        Raises:
            GraphStoreError: The text is not one statement, or the database failed the query.
        """
        self._check_single(cypher)
        return self._run(cypher, dict(params or {}), max_rows=None, timeout_s=None, read_only=False)

    def execute_read(
        self,
        cypher: str,
        params: Mapping[str, Any] | None = None,
        *,
        max_rows: int = 1000,
        timeout_s: float = 5.0,
    ) -> list[Row]:
        """Run a query that must only read, such as one a model wrote; check it before it runs.

        Args:
            cypher: One Cypher statement without write clauses or unknown procedure calls.
            params: The parameter values.
            max_rows: Return at most this many rows (the first ones); the rest are dropped, not an error.
            timeout_s: Stop the query after this many seconds.

        Returns:
            Up to `max_rows` rows, each a dict column name → value.

        Raises:
            ReadOnlyViolation: The query could write or is not one statement; nothing was run.
            QueryTimeoutError: The query ran past `timeout_s`.
            GraphStoreError: The database failed the query.
            ValueError: `max_rows` < 1 or `timeout_s` <= 0.
        """
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        reason = find_write_clause(cypher)
        if reason is not None:
            raise ReadOnlyViolation(f"not a read-only query: {reason}")
        return self._run(cypher, dict(params or {}), max_rows=max_rows, timeout_s=timeout_s, read_only=True)

    def execute_in_transaction(self, statements: Sequence[Statement]) -> None:
        """Run write statements in order in one transaction: all take effect, or none does.

        Args:
            statements: The statements; their result rows are discarded.

        Raises:
            GraphStoreError: A statement is not one statement, or the database failed one (all are rolled back).
        """
        for statement in statements:
            self._check_single(statement.cypher)
        if statements:
            self._run_transaction(
                [Statement(statement.cypher, dict(statement.params)) for statement in statements],
            )

    @abstractmethod
    def ensure_schema(self, schema: GraphSchema) -> None:
        """Declare the schema's node and relationship types (and keys) if they are not there yet; idempotent."""

    @abstractmethod
    def close(self) -> None:
        """Release the database; later calls raise `GraphStoreError`. Closing twice is allowed."""

    @abstractmethod
    def _run(
        self,
        cypher: str,
        params: dict[str, Any],
        *,
        max_rows: int | None,
        timeout_s: float | None,
        read_only: bool,
    ) -> list[Row]:
        """Run one already-checked statement; `None` limits mean unlimited."""

    @abstractmethod
    def _run_transaction(self, statements: list[Statement]) -> None:
        """Run already-checked statements in one write transaction, rolling back on any failure."""

    @staticmethod
    def _check_single(cypher: str) -> None:
        if not is_single_statement(cypher):
            raise GraphStoreError("give exactly one Cypher statement per query")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
