"""`GraphStore` on a Neo4j server (5.x or later) through the official driver, imported lazily."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from chimera.memory.graph.base import GraphStore, GraphStoreError, QueryTimeoutError, Row, Statement
from chimera.memory.graph.schema import GraphSchema

if TYPE_CHECKING:
    from neo4j import Driver, ManagedTransaction


class Neo4jGraphStore(GraphStore):
    """A Neo4j database shared by any number of processes.

    Reads from `execute_read` run in READ access mode, so the server refuses writes as well as our own check, and
    under a server-side transaction timeout. Node keys become uniqueness constraints (Neo4j needs no other schema).
    """

    def __init__(self, uri: str, user: str, password: str, database: str | None = None) -> None:
        """Connect and check that the server answers.

        Args:
            uri: The server, e.g. `neo4j://localhost:7687` or `bolt://host:7687`.
            user: The user name.
            password: The password.
            database: The database to use; None for the server's default database.

        Raises:
            GraphStoreError: The server cannot be reached or refuses the credentials.
        """
        import neo4j

        self._neo4j = neo4j
        self._database = database
        self._closed = False
        with self._errors("connect to Neo4j"):
            self._driver: Driver = neo4j.GraphDatabase.driver(uri, auth=(user, password))
            try:
                self._driver.verify_connectivity()
            except BaseException:
                self._driver.close()
                raise

    def ensure_schema(self, schema: GraphSchema) -> None:
        for node in schema.nodes:
            name = f"{node.label.lower()}_{node.key}_unique"
            self.execute(
                f"CREATE CONSTRAINT {name} IF NOT EXISTS FOR (n:{node.label}) REQUIRE n.{node.key} IS UNIQUE",
            )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._driver.close()

    def _run(
        self,
        cypher: str,
        params: dict[str, Any],
        *,
        max_rows: int | None,
        timeout_s: float | None,
        read_only: bool,
    ) -> list[Row]:
        mode = self._neo4j.READ_ACCESS if read_only else self._neo4j.WRITE_ACCESS
        query = self._neo4j.Query(cypher, timeout=timeout_s)
        with self._errors("run a Neo4j query", timeout_s), self._session(mode) as session:
            result = session.run(query, params)
            if max_rows is None:
                return result.data()
            return [record.data() for record in result.fetch(max_rows)]

    def _run_transaction(self, statements: list[Statement]) -> None:
        def work(tx: "ManagedTransaction") -> None:
            for statement in statements:
                tx.run(statement.cypher, dict(statement.params)).consume()

        with self._errors("run a Neo4j transaction"), self._session(self._neo4j.WRITE_ACCESS) as session:
            session.execute_write(work)

    @contextmanager
    def _session(self, mode: str) -> Iterator[Any]:
        if self._closed:
            raise GraphStoreError("the graph store is closed")
        with self._driver.session(database=self._database, default_access_mode=mode) as session:
            yield session

    @contextmanager
    def _errors(self, doing: str, timeout_s: float | None = None) -> Iterator[None]:
        """Turn the driver's errors into ours; a transaction timeout becomes `QueryTimeoutError`."""
        try:
            yield
        except self._neo4j.exceptions.Neo4jError as e:
            if timeout_s is not None and "TransactionTimedOut" in (e.code or ""):
                raise QueryTimeoutError(f"query stopped after {timeout_s} s") from e
            raise GraphStoreError(f"cannot {doing}: {e}") from e
        except self._neo4j.exceptions.DriverError as e:
            raise GraphStoreError(f"cannot {doing}: {e}") from e
