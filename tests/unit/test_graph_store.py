"""Contract suite of `GraphStore` and `KnowledgeGraph`, run against every store, plus the read-only checker.

Ladybug always runs, on a database in tmp_path. Neo4j runs when `NEO4J_URI` is set (`NEO4J_USER` and
`NEO4J_PASSWORD` default to neo4j/neo4j); the server may hold other data, so every test writes ids under a
unique prefix, compares counts against a baseline, and deletes its prefix at teardown.
"""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from chimera.memory.graph._cypher import find_write_clause, is_single_statement
from chimera.memory.graph.base import GraphStore, GraphStoreError, QueryTimeoutError, ReadOnlyViolation, Statement
from chimera.memory.graph.knowledge import (
    KNOWLEDGE_SCHEMA,
    ChunkMentions,
    EntityMention,
    GraphCounts,
    KnowledgeGraph,
    entity_id,
)
from chimera.memory.graph.ladybug_store import LadybugGraphStore

pytestmark = pytest.mark.unit

Snapshot = tuple[list[tuple[str, str, int]], list[tuple[str, str, str]], dict[str, list[tuple[str, int]]], GraphCounts]


@pytest.fixture
def prefix() -> str:
    """A lower-case prefix unique to the test, for chunk ids and entity names."""
    return f"t{uuid.uuid4().hex[:10]}-"


def _open_neo4j() -> GraphStore:
    uri = os.environ.get("NEO4J_URI")
    if not uri:
        pytest.skip("NEO4J_URI is not set: no Neo4j server to run the contract against")
    from chimera.memory.graph.neo4j_store import Neo4jGraphStore

    return Neo4jGraphStore(uri, os.environ.get("NEO4J_USER", "neo4j"), os.environ.get("NEO4J_PASSWORD", "neo4j"))


@pytest.fixture(params=["ladybug", "neo4j"])
def store(request: pytest.FixtureRequest, tmp_path: Path, prefix: str) -> Iterator[GraphStore]:
    opened = LadybugGraphStore(tmp_path / "graph.lbug") if request.param == "ladybug" else _open_neo4j()
    opened.ensure_schema(KNOWLEDGE_SCHEMA)
    try:
        yield opened
    finally:
        for label in ("Chunk", "Entity"):
            opened.execute(f"MATCH (n:{label}) WHERE n.id STARTS WITH $p DETACH DELETE n", {"p": prefix})
        opened.close()


def _chunk(prefix: str, name: str, **counts: int) -> ChunkMentions:
    mentions = tuple(EntityMention.of(f"{prefix}{entity}", "PERSON", n) for entity, n in counts.items())
    return ChunkMentions(f"{prefix}{name}", "acme", f"{name}.md", mentions)


def _snapshot(kg: KnowledgeGraph, prefix: str, baseline: GraphCounts) -> Snapshot:
    """Everything under `prefix`, and the counts relative to `baseline`."""
    mentions = [m for m in kg.mentions() if m[0].startswith(prefix)]
    entities = [e for e in kg.entities() if e[0].startswith(prefix)]
    neighbours = {eid: kg.co_occurring(eid, limit=100) for eid, _, _ in entities}
    now = kg.counts()
    delta = GraphCounts(
        chunks=now["chunks"] - baseline["chunks"],
        entities=now["entities"] - baseline["entities"],
        mentions=now["mentions"] - baseline["mentions"],
        co_occurs=now["co_occurs"] - baseline["co_occurs"],
    )
    return mentions, entities, neighbours, delta


# --- the store -------------------------------------------------------------------------------------------------


def test_execute_round_trips_rows_and_params(store: GraphStore, prefix: str) -> None:
    assert store.execute("RETURN $n AS n, $s AS s, $xs AS xs", {"n": 7, "s": "é", "xs": [1, 2]}) == [
        {"n": 7, "s": "é", "xs": [1, 2]}
    ]
    store.execute(
        "UNWIND $rows AS r CREATE (:Chunk {id: r.id, tenant: r.tenant, source: r.source})",
        {
            "rows": [
                {"id": f"{prefix}b", "tenant": "t", "source": "b.md"},
                {"id": f"{prefix}a", "tenant": "t", "source": "a.md"},
            ]
        },
    )
    rows = store.execute(
        "MATCH (c:Chunk) WHERE c.id STARTS WITH $p RETURN c.id AS id, c.source AS source ORDER BY id", {"p": prefix}
    )
    assert rows == [{"id": f"{prefix}a", "source": "a.md"}, {"id": f"{prefix}b", "source": "b.md"}]


def test_execute_takes_one_statement(store: GraphStore) -> None:
    with pytest.raises(GraphStoreError, match="one Cypher statement"):
        store.execute("RETURN 1 AS a; RETURN 2 AS b")
    assert store.execute("RETURN 1 AS a;") == [{"a": 1}]


WRITES = [
    "CREATE (:Chunk {id: $id, tenant: 't', source: 's'})",
    "MERGE (c:Chunk {id: $id})",
    "MATCH (c:Chunk {id: $id}) DELETE c",
    "MATCH (c:Chunk {id: $id}) DETACH DELETE c",
    "MATCH (c:Chunk) WHERE c.id = $id SET c.source = 'x'",
    "match (c:Chunk) where c.id = $id set c.source = 'lower case'",
    "MATCH (c:Chunk {id: $id}) REMOVE c.source",
    "DROP TABLE Chunk",
    "ALTER TABLE Chunk ADD extra INT64",
    "COPY Chunk FROM 'chunks.csv'",
    "LOAD FROM 'chunks.csv' RETURN *",
    "LOAD CSV FROM 'file:///chunks.csv' AS line RETURN line",
    "INSTALL json",
    "ATTACH 'other.lbug' AS other (dbtype lbug)",
    "CALL threads = 1",
    "CALL dbms.security.createUser('mallory', 'secret', false)",
    "CALL db.createLabel('Mallory')",
    "FOREACH (x IN [1] | CREATE (:Chunk {id: $id}))",
    "MATCH (c:Chunk) RETURN c.id AS id; CREATE (:Chunk {id: $id})",
    "RETURN 1 AS one /* a comment */ CREATE (:Chunk {id: $id})",
]


@pytest.mark.parametrize("cypher", WRITES)
def test_execute_read_rejects_writes_before_running_them(store: GraphStore, prefix: str, cypher: str) -> None:
    with pytest.raises(ReadOnlyViolation):
        store.execute_read(cypher, {"id": f"{prefix}w"})
    assert store.execute("MATCH (c:Chunk) WHERE c.id = $id RETURN c.id AS id", {"id": f"{prefix}w"}) == []


def test_execute_read_accepts_keywords_inside_strings_and_names(store: GraphStore, prefix: str) -> None:
    store.execute("CREATE (:Chunk {id: $id, tenant: 't', source: 'created; then SET'})", {"id": f"{prefix}r"})
    rows = store.execute_read(
        "MATCH (c:Chunk) WHERE c.source = 'created; then SET' AND c.id = $id RETURN c.id AS created",
        {"id": f"{prefix}r"},
    )
    assert rows == [{"created": f"{prefix}r"}]
    assert store.execute_read("WITH {created_at: 'now'} AS n RETURN n.created_at AS created_at") == [
        {"created_at": "now"}
    ]


def test_execute_read_caps_rows(store: GraphStore) -> None:
    assert store.execute_read("UNWIND range(1, 50) AS i RETURN i", max_rows=7) == [{"i": i} for i in range(1, 8)]
    assert len(store.execute("UNWIND range(1, 50) AS i RETURN i")) == 50
    with pytest.raises(ValueError):
        store.execute_read("RETURN 1 AS one", max_rows=0)


def test_execute_read_stops_at_the_timeout(store: GraphStore) -> None:
    endless = (
        "UNWIND range(1, 5000) AS a UNWIND range(1, 5000) AS b UNWIND range(1, 5000) AS c "
        "WITH a + b + c AS s WHERE s < 0 RETURN count(*) AS n"
    )
    with pytest.raises(QueryTimeoutError):
        store.execute_read(endless, timeout_s=0.2)
    assert store.execute_read("RETURN 1 AS one") == [{"one": 1}]  # the connection is usable afterwards


def test_transaction_is_all_or_nothing(store: GraphStore, prefix: str) -> None:
    create = Statement("CREATE (:Chunk {id: $id, tenant: 't', source: 's'})", {"id": f"{prefix}tx"})
    with pytest.raises(GraphStoreError):
        store.execute_in_transaction([create, create])  # the second violates the key
    assert store.execute("MATCH (c:Chunk {id: $id}) RETURN c.id AS id", {"id": f"{prefix}tx"}) == []
    store.execute_in_transaction([create])
    assert store.execute("MATCH (c:Chunk {id: $id}) RETURN c.id AS id", {"id": f"{prefix}tx"}) == [
        {"id": f"{prefix}tx"}
    ]


def test_closed_store_refuses_queries(tmp_path: Path) -> None:
    with LadybugGraphStore(tmp_path / "graph.lbug") as store:
        assert store.execute("RETURN 1 AS one") == [{"one": 1}]
    store.close()  # closing twice is allowed
    with pytest.raises(GraphStoreError, match="closed"):
        store.execute("RETURN 1 AS one")


def test_neo4j_store_reports_an_unreachable_server() -> None:
    from chimera.memory.graph.neo4j_store import Neo4jGraphStore

    with pytest.raises(GraphStoreError, match="cannot connect to Neo4j"):
        Neo4jGraphStore("bolt://127.0.0.1:9", "neo4j", "wrong")


# --- the knowledge graph ----------------------------------------------------------------------------------------


def test_add_chunks_builds_mentions_entities_and_co_occurrences(store: GraphStore, prefix: str) -> None:
    kg = KnowledgeGraph(store)
    baseline = kg.counts()
    kg.add_chunks(
        [
            _chunk(prefix, "c1", Alice=2, Bob=1, Carol=1),
            _chunk(prefix, "c2", Alice=1, Bob=3),
            _chunk(prefix, "c3", Dave=1),
        ]
    )
    alice, bob, carol, dave = (f"{prefix}{n}" for n in ("alice", "bob", "carol", "dave"))
    mentions, entities, neighbours, delta = _snapshot(kg, prefix, baseline)
    assert mentions == [
        (f"{prefix}c1", alice, 2),
        (f"{prefix}c1", bob, 1),
        (f"{prefix}c1", carol, 1),
        (f"{prefix}c2", alice, 1),
        (f"{prefix}c2", bob, 3),
        (f"{prefix}c3", dave, 1),
    ]
    assert entities == [
        (alice, f"{prefix}Alice", "PERSON"),
        (bob, f"{prefix}Bob", "PERSON"),
        (carol, f"{prefix}Carol", "PERSON"),
        (dave, f"{prefix}Dave", "PERSON"),
    ]
    assert neighbours == {
        alice: [(bob, 2), (carol, 1)],
        bob: [(alice, 2), (carol, 1)],
        carol: [(alice, 1), (bob, 1)],
        dave: [],
    }
    assert kg.co_occurring(alice, limit=1) == [(bob, 2)]
    assert delta == GraphCounts(chunks=3, entities=4, mentions=6, co_occurs=3)
    pairs = store.execute(
        "MATCH (a:Entity)-[w:CO_OCCURS]->(b:Entity) WHERE a.id STARTS WITH $p RETURN a.id AS a, b.id AS b",
        {"p": prefix},
    )
    assert all(row["a"] < row["b"] for row in pairs)  # one edge per pair, lower id → higher id


def test_remove_chunks_restores_the_previous_graph(store: GraphStore, prefix: str) -> None:
    kg = KnowledgeGraph(store)
    baseline = kg.counts()
    kg.add_chunks([_chunk(prefix, "c1", Alice=2, Bob=1, Carol=1), _chunk(prefix, "c3", Dave=1)])
    before = _snapshot(kg, prefix, baseline)
    kg.add_chunks([_chunk(prefix, "c2", Alice=1, Bob=3, Erin=1)])
    with_c2 = _snapshot(kg, prefix, baseline)

    kg.remove_chunks([f"{prefix}c2", f"{prefix}unknown"])
    assert _snapshot(kg, prefix, baseline) == before  # weights back, Erin (only in c2) gone

    kg.add_chunks([_chunk(prefix, "c2", Alice=1, Bob=3, Erin=1)])
    assert _snapshot(kg, prefix, baseline) == with_c2

    kg.remove_chunks([f"{prefix}c1", f"{prefix}c2", f"{prefix}c3"])
    assert _snapshot(kg, prefix, baseline) == ([], [], {}, GraphCounts(chunks=0, entities=0, mentions=0, co_occurs=0))


def test_adding_a_stored_chunk_replaces_it(store: GraphStore, prefix: str) -> None:
    kg = KnowledgeGraph(store)
    baseline = kg.counts()
    kg.add_chunks([_chunk(prefix, "c2", Alice=1, Bob=3)])
    expected = _snapshot(kg, prefix, baseline)
    kg.add_chunks([_chunk(prefix, "c1", Alice=2, Bob=1, Carol=1)])
    kg.add_chunks([_chunk(prefix, "c1", Alice=5, Erin=1)])
    kg.remove_chunks([f"{prefix}c1"])
    assert _snapshot(kg, prefix, baseline) == expected

    kg.add_chunks([_chunk(prefix, "c1", Alice=5, Erin=1)])
    alice, bob, erin = f"{prefix}alice", f"{prefix}bob", f"{prefix}erin"
    assert kg.co_occurring(alice) == [(bob, 1), (erin, 1)]
    assert [m for m in kg.mentions() if m[0] == f"{prefix}c1"] == [(f"{prefix}c1", alice, 5), (f"{prefix}c1", erin, 1)]


def test_only_the_most_mentioned_entities_form_pairs(store: GraphStore, prefix: str) -> None:
    kg = KnowledgeGraph(store, max_pair_entities=2)
    baseline = kg.counts()
    kg.add_chunks([_chunk(prefix, "c1", Carol=2, Bob=2, Alice=3, Dave=1)])  # top two: Alice, then Bob before Carol
    _, _, neighbours, delta = _snapshot(kg, prefix, baseline)
    assert neighbours[f"{prefix}alice"] == [(f"{prefix}bob", 1)]
    assert neighbours[f"{prefix}carol"] == []
    assert delta == GraphCounts(chunks=1, entities=4, mentions=4, co_occurs=1)
    kg.remove_chunks([f"{prefix}c1"])
    assert kg.counts() == baseline


def test_repeated_mentions_in_a_chunk_are_merged(store: GraphStore, prefix: str) -> None:
    kg = KnowledgeGraph(store)
    repeated = (EntityMention.of(f"{prefix}Ada  Lovelace", "PERSON", 2), EntityMention.of(f"{prefix}ada lovelace", "X"))
    kg.add_chunks([ChunkMentions(f"{prefix}c1", "acme", "a.md", repeated)])
    assert [m for m in kg.mentions() if m[0].startswith(prefix)] == [(f"{prefix}c1", f"{prefix}ada lovelace", 3)]
    assert [e for e in kg.entities() if e[0].startswith(prefix)] == [
        (f"{prefix}ada lovelace", f"{prefix}Ada  Lovelace", "PERSON")
    ]
    with pytest.raises(ValueError, match="more than once"):
        kg.add_chunks([_chunk(prefix, "c9", Alice=1), _chunk(prefix, "c9", Bob=1)])


def test_ladybug_graph_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "kg" / "graph.lbug"
    with LadybugGraphStore(path) as store:
        KnowledgeGraph(store).add_chunks([_chunk("", "c1", Alice=2, Bob=1), _chunk("", "c2", Bob=1)])
    with LadybugGraphStore(path) as store:
        kg = KnowledgeGraph(store)
        assert kg.mentions() == [("c1", "alice", 2), ("c1", "bob", 1), ("c2", "bob", 1)]
        assert kg.co_occurring("bob") == [("alice", 1)]
        assert kg.counts() == GraphCounts(chunks=2, entities=2, mentions=3, co_occurs=1)


def test_entity_ids_are_normalised_names() -> None:
    assert entity_id("  Ada \t Lovelace\n") == "ada lovelace"
    assert EntityMention.of("New  York", "PLACE", 2) == EntityMention("new york", "New  York", "PLACE", 2)
    with pytest.raises(ValueError):
        EntityMention.of("x", "THING", 0)


# --- the read-only checker, without a database ------------------------------------------------------------------

READS = [
    "MATCH (n:Chunk) RETURN n.id",
    "MATCH (n) WHERE n.created_at > 3 RETURN n.created_at AS created",
    "MATCH (n) WHERE n.name = 'CREATE (x) SET x.a = 1; DROP TABLE y' RETURN n",
    'MATCH (n) WHERE n.name = "it\'s \\" DELETE" RETURN n',
    "MATCH (n) RETURN n.set, n.delete, n. merge, n.`create`",
    "MATCH (n:Delete)-[:SET]->(m:Create) RETURN m",
    "MATCH (n) RETURN n AS `CREATE`",
    "MATCH (n) // a comment that says CREATE\nRETURN n",
    "MATCH (n) /* DETACH DELETE n */ RETURN n;",
    "MATCH (n) WHERE n.id STARTS WITH $create RETURN n",
    "MATCH (n) WHERE n.id STARTS WITH 'a' RETURN n ORDER BY n.id DESC LIMIT 5",
    "CALL show_tables() RETURN *",
    "call DB.Labels()",
    "CALL { MATCH (n) RETURN n } RETURN n",
    "MATCH (n) WITH n, COUNT { MATCH (n)--() } AS degree RETURN n.id, degree",
    "UNWIND range(1, 10) AS i RETURN i",
    "MATCH (n) WHERE n.x = 'it\\' CREATE (m) //' RETURN n",
]

REJECTED = [
    ("CREATE (n)", "CREATE"),
    ("create (n)", "CREATE"),
    ("MATCH (n) WITH n MERGE (m {id: n.id})", "MERGE"),
    ("MATCH (n) DETACH DELETE n", "DETACH"),
    ("MATCH (n) DELETE n", "DELETE"),
    ("MATCH (n) SET n.x = 1", "SET"),
    ("MATCH (n) REMOVE n.x", "REMOVE"),
    ("DROP TABLE Chunk", "DROP"),
    ("ALTER TABLE Chunk ADD x INT64", "ALTER"),
    ("COPY Chunk FROM 'x.csv'", "COPY"),
    ("LOAD FROM 'x.csv' RETURN *", "LOAD"),
    ("INSTALL httpfs", "INSTALL"),
    ("ATTACH 'x.lbug' AS x", "ATTACH"),
    ("USE other MATCH (n) RETURN n", "USE"),
    ("FOREACH (x IN [1] | CREATE ())", "FOREACH"),
    ("BEGIN TRANSACTION", "BEGIN"),
    ("SHOW USERS", "SHOW"),
    ("CALL dbms.killQueries(['1'])", "procedure dbms.killqueries"),
    ("CALL apoc.create.node(['X'], {})", "procedure apoc.create.node"),
    ("CALL `db`.`createLabel`('X')", "procedure db.createlabel"),
    ("CALL threads=4", "procedure threads"),
    ("CALL { CREATE (n) } RETURN 1", "CREATE"),
    ("WITH 1CREATE (n)", "CREATE"),
    ("WITH 1.CREATE (n)", "CREATE"),
    ("RETURN 1 AS a; RETURN 2 AS b", "more than one statement"),
    ("MATCH (n) RETURN n; MATCH (m) SET m.x = 1", "more than one statement"),
    ("MATCH (n) WHERE n.x = 'open RETURN n", "unterminated string"),
    ("MATCH (n) WHERE n.x = 'a\\\\' CREATE (m) //' RETURN n", "CREATE"),
    ("// it's a comment\nCREATE (n) // '", "CREATE"),
    ("MATCH (n) /* CREATE", "unterminated block comment"),
    ("MATCH (`n) RETURN 1", "unterminated quoted name"),
]


@pytest.mark.parametrize("cypher", READS)
def test_checker_accepts_reads(cypher: str) -> None:
    assert find_write_clause(cypher) is None


@pytest.mark.parametrize(("cypher", "reason"), REJECTED)
def test_checker_rejects_writes(cypher: str, reason: str) -> None:
    found = find_write_clause(cypher)
    assert found is not None
    assert reason in found


def test_statement_count() -> None:
    assert is_single_statement("RETURN 1;")
    assert is_single_statement("RETURN ';'")
    assert not is_single_statement("RETURN 1; RETURN 2")
    assert not is_single_statement("  ;  ")
    assert not is_single_statement("RETURN 'unterminated")
