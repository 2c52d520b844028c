"""`graph_query` on a real Ladybug store, filled through `KnowledgeGraph`: rows, parameters, limits, refusals."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from chimera.memory.graph.base import GraphStore, GraphStoreError
from chimera.memory.graph.knowledge import ChunkMentions, EntityMention, KnowledgeGraph
from chimera.memory.graph.ladybug_store import LadybugGraphStore
from chimera.tools.base import ToolError
from chimera.tools.graph_query import GraphQuery

pytestmark = pytest.mark.unit

ADA = EntityMention.of("Ada Lovelace", "PERSON")
BABBAGE = EntityMention.of("Charles Babbage", "PERSON")
LONDON = EntityMention.of("London", "PLACE")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[GraphStore]:
    with LadybugGraphStore(tmp_path / "graph") as opened:
        KnowledgeGraph(opened).add_chunks(
            [
                ChunkMentions("c1", "acme", "engine.md", (ADA, BABBAGE)),
                ChunkMentions("c2", "acme", "notes.md", (ADA, LONDON)),
                ChunkMentions("c3", "acme", "letters.md", (ADA, BABBAGE, LONDON)),
            ]
        )
        yield opened


@pytest.fixture
def tool(store: GraphStore) -> GraphQuery:
    return GraphQuery(lambda: store)


async def _query(tool: GraphQuery, cypher: str, **params: str | int | float | bool) -> str:
    result = await tool.call({"cypher": cypher, "params": params})
    assert isinstance(result, str)
    return result


async def test_a_match_returns_a_table(tool: GraphQuery) -> None:
    result = await _query(tool, "MATCH (e:Entity) RETURN e.id AS id, e.kind AS kind ORDER BY id")
    assert result == ("id | kind\nada lovelace | PERSON\ncharles babbage | PERSON\nlondon | PLACE\n(3 rows)")


async def test_parameters_are_bound(tool: GraphQuery) -> None:
    cypher = (
        "MATCH (e:Entity {id: $id})-[w:CO_OCCURS]-(o:Entity) WHERE w.weight >= $min "
        "RETURN o.name AS name, w.weight AS weight ORDER BY weight DESC, name"
    )
    assert await _query(tool, cypher, id="ada lovelace", min=1) == (
        "name | weight\nCharles Babbage | 2\nLondon | 2\n(2 rows)"
    )
    assert await _query(tool, cypher, id="ada lovelace", min=3) == "no rows"


async def test_nodes_and_nulls_are_rendered_on_one_line(tool: GraphQuery) -> None:
    result = await _query(tool, "MATCH (c:Chunk {id: 'c1'}) RETURN c, NULL AS nothing")
    header, row, footer = result.split("\n")
    assert header == "c | nothing"
    assert '"source": "engine.md"' in row and row.endswith(" | null")
    assert footer == "(1 row)"


async def test_the_row_limit_is_reported(store: GraphStore) -> None:
    tool = GraphQuery(lambda: store, max_rows=2)
    result = await _query(tool, "MATCH (c:Chunk) RETURN c.id AS id ORDER BY id")
    assert result == "id\nc1\nc2\n(only the first 2 rows are shown, more matched: add ORDER BY and LIMIT)"
    assert (await _query(tool, "MATCH (c:Chunk) RETURN c.id ORDER BY c.id LIMIT 2")).endswith("(2 rows)")


async def test_long_tables_are_cut_at_a_row(store: GraphStore) -> None:
    tool = GraphQuery(lambda: store, max_chars=30)
    result = await _query(tool, "MATCH (c:Chunk) RETURN c.id AS id, c.source AS source ORDER BY id")
    assert result == "id | source\nc1 | engine.md\n(cut after 1 rows at 30 characters: return fewer or shorter columns)"


@pytest.mark.parametrize(
    ("cypher", "reason"),
    [
        ("CREATE (:Entity {id: 'x', name: 'X', kind: 'PERSON'})", "write clause CREATE"),
        ("MERGE (e:Entity {id: 'x'}) RETURN e", "write clause MERGE"),
        ("MATCH (c:Chunk) DELETE c", "write clause DELETE"),
        ("MATCH (c:Chunk) DETACH DELETE c", "write clause DETACH"),
        ("MATCH (e:Entity) SET e.name = 'x'", "write clause SET"),
        ("MATCH (e:Entity) REMOVE e.name", "write clause REMOVE"),
        ("CALL dbms.components() YIELD name RETURN name", "procedure dbms.components is not known to be read-only"),
        ("CALL db.create.setNodeVectorProperty(1, 'x', [1.0])", "procedure db.create.setnodevectorproperty"),
        ("MATCH (c:Chunk) RETURN c; MATCH (c:Chunk) DELETE c", "more than one statement"),
        ("MATCH (c) WHERE c.id = 'x RETURN c", "cannot lex the query"),
    ],
)
async def test_writes_and_procedures_are_rejected(
    tool: GraphQuery, store: GraphStore, cypher: str, reason: str
) -> None:
    with pytest.raises(ToolError, match="rejected: graph_query is read-only") as caught:
        await _query(tool, cypher)
    assert reason in str(caught.value)
    assert "nothing was run" in str(caught.value)
    assert store.execute("MATCH (n) RETURN count(n) AS n") == [{"n": 6}]  # 3 chunks, 3 entities, untouched


async def test_known_read_only_procedures_run(tool: GraphQuery) -> None:
    result = await _query(tool, "CALL show_tables() RETURN name ORDER BY name")
    assert result == "name\nCO_OCCURS\nChunk\nEntity\nMENTIONS\n(4 rows)"


@pytest.mark.parametrize(
    ("cypher", "message"),
    [("MATCH (e:Entity RETURN e", "Parser exception"), ("MATCH (p:Person) RETURN p", "Table Person does not exist")],
)
async def test_a_bad_query_is_a_tool_error(tool: GraphQuery, cypher: str, message: str) -> None:
    with pytest.raises(ToolError, match="the query failed") as caught:
        await _query(tool, cypher)
    assert message in str(caught.value)


async def test_a_slow_query_is_stopped(store: GraphStore) -> None:
    tool = GraphQuery(lambda: store, timeout_s=0.05)
    with pytest.raises(ToolError, match=r"ran past 0\.05 s and was stopped"):
        await _query(tool, "UNWIND range(1, 30000000) AS x RETURN count(x)")


async def test_invalid_arguments_are_a_tool_error(tool: GraphQuery) -> None:
    for arguments in (
        {},
        {"cypher": ""},
        {"cypher": 5},
        {"cypher": "MATCH (n) RETURN n" + " " * 4000},
        {"cypher": "RETURN $x", "params": {"x": [1, 2]}},
        {"cypher": "RETURN $x", "params": "x=1"},
    ):
        with pytest.raises(ToolError, match="invalid arguments for graph_query"):
            await tool.call(arguments)


async def test_the_store_is_opened_lazily_and_once(store: GraphStore) -> None:
    opened: list[GraphStore] = []

    def open_store() -> GraphStore:
        opened.append(store)
        return store

    tool = GraphQuery(open_store)
    assert opened == []
    for _ in range(2):
        assert (await _query(tool, "MATCH (c:Chunk) RETURN count(c) AS n")).startswith("n\n3\n")
    assert len(opened) == 1


async def test_a_store_that_cannot_open_is_a_tool_error(tmp_path: Path) -> None:
    def open_store() -> GraphStore:
        raise GraphStoreError("another process holds the database")

    with pytest.raises(ToolError, match="knowledge graph is unavailable: another process holds"):
        await _query(GraphQuery(open_store), "MATCH (c:Chunk) RETURN c.id")


async def test_without_keep_open_the_store_is_closed_after_each_call(tmp_path: Path) -> None:
    path = tmp_path / "graph"
    with LadybugGraphStore(path) as seed:
        KnowledgeGraph(seed).add_chunks([ChunkMentions("c1", "acme", "a.md", (ADA,))])
    opened: list[LadybugGraphStore] = []

    def open_store() -> GraphStore:
        opened.append(LadybugGraphStore(path))
        return opened[-1]

    tool = GraphQuery(open_store, keep_open=False)
    assert (await _query(tool, "MATCH (e:Entity) RETURN e.name AS name")) == "name\nAda Lovelace\n(1 row)"
    with pytest.raises(ToolError, match="rejected"):
        await _query(tool, "MATCH (e:Entity) DELETE e")
    assert len(opened) == 2
    for store in opened:
        with pytest.raises(GraphStoreError, match="closed"):
            store.execute("RETURN 1")
