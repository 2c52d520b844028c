"""The document knowledge graph: chunks, the entities they mention, and how often two entities share a chunk.

Every query here is Cypher that runs unchanged on Ladybug (Kùzu dialect) and Neo4j 5; what differs between them
(schema declarations) is the store's job. Two habits keep it portable and fast:

- bulk writes are `UNWIND $rows AS r …` batches, one transaction per call;
- endpoints are bound by separate `MATCH` clauses, never `MATCH (a …), (b …)`: Ladybug plans the comma form as a
  cross product and runs about 60× slower.
"""

import itertools
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self, TypedDict

from chimera.memory.graph.base import GraphStore, Statement
from chimera.memory.graph.schema import GraphSchema, NodeType, RelType

KNOWLEDGE_SCHEMA = GraphSchema(
    nodes=(
        NodeType("Chunk", (("id", "STRING"), ("tenant", "STRING"), ("source", "STRING")), key="id"),
        NodeType("Entity", (("id", "STRING"), ("name", "STRING"), ("kind", "STRING")), key="id"),
    ),
    relationships=(
        RelType("MENTIONS", "Chunk", "Entity", (("count", "INT64"),)),
        RelType("CO_OCCURS", "Entity", "Entity", (("weight", "INT64"),)),
    ),
)

_EXISTING = (
    "UNWIND $ids AS cid MATCH (c:Chunk {id: cid}) OPTIONAL MATCH (c)-[m:MENTIONS]->(e:Entity) "
    "RETURN c.id AS chunk, e.id AS entity, m.count AS count"
)
_UPSERT_CHUNKS = "UNWIND $rows AS r MERGE (c:Chunk {id: r.id}) SET c.tenant = r.tenant, c.source = r.source"
_MERGE_ENTITIES = "UNWIND $rows AS r MERGE (e:Entity {id: r.id}) ON CREATE SET e.name = r.name, e.kind = r.kind"
_CREATE_MENTIONS = (
    "UNWIND $rows AS r MATCH (c:Chunk {id: r.chunk}) MATCH (e:Entity {id: r.entity}) "
    "CREATE (c)-[:MENTIONS {count: r.count}]->(e)"
)
_ADD_PAIRS = (
    "UNWIND $rows AS r MATCH (a:Entity {id: r.a}) MATCH (b:Entity {id: r.b}) MERGE (a)-[w:CO_OCCURS]->(b) "
    "ON CREATE SET w.weight = r.n ON MATCH SET w.weight = w.weight + r.n"
)
_SUBTRACT_PAIRS = (
    "UNWIND $rows AS r MATCH (a:Entity {id: r.a}) MATCH (b:Entity {id: r.b}) MATCH (a)-[w:CO_OCCURS]->(b) "
    "SET w.weight = w.weight - r.n WITH w WHERE w.weight <= 0 DELETE w"
)
_DELETE_CHUNKS = "UNWIND $ids AS cid MATCH (c:Chunk {id: cid}) DETACH DELETE c"
_DELETE_ORPHANS = (
    "UNWIND $ids AS eid MATCH (e:Entity {id: eid}) WHERE NOT EXISTS { MATCH (:Chunk)-[:MENTIONS]->(e) } DETACH DELETE e"
)
_ALL_MENTIONS = (
    "MATCH (c:Chunk)-[m:MENTIONS]->(e:Entity) RETURN c.id AS chunk, e.id AS entity, m.count AS count "
    "ORDER BY chunk, entity"
)
_ENTITIES = "MATCH (e:Entity) RETURN e.id AS id, e.name AS name, e.kind AS kind ORDER BY id"
_CO_OCCURRING = (
    "MATCH (e:Entity {id: $id})-[w:CO_OCCURS]-(o:Entity) RETURN o.id AS id, w.weight AS weight "
    "ORDER BY weight DESC, id LIMIT $limit"
)
_COUNTS = (
    "RETURN COUNT { MATCH (c:Chunk) } AS chunks, COUNT { MATCH (e:Entity) } AS entities, "
    "COUNT { MATCH (:Chunk)-[m:MENTIONS]->(:Entity) } AS mentions, "
    "COUNT { MATCH (:Entity)-[w:CO_OCCURS]->(:Entity) } AS co_occurs"
)


def entity_id(name: str) -> str:
    """The id of the entity called `name`: lower-cased, runs of whitespace collapsed to one space, trimmed."""
    return " ".join(name.split()).lower()


@dataclass(frozen=True)
class EntityMention:
    """An entity a chunk mentions `count` times; `id` is `entity_id(name)` (see `EntityMention.of`)."""

    id: str
    name: str
    kind: str
    count: int

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("an entity id must not be empty")
        if self.count < 1:
            raise ValueError(f"entity {self.id!r}: count must be at least 1")

    @classmethod
    def of(cls, name: str, kind: str, count: int = 1) -> Self:
        """The mention of the entity called `name`, its id derived with `entity_id`."""
        return cls(entity_id(name), name, kind, count)


@dataclass(frozen=True)
class ChunkMentions:
    """A chunk of a document and the entities found in it."""

    chunk_id: str
    tenant: str
    source: str
    entities: tuple[EntityMention, ...]

    def __post_init__(self) -> None:
        if not self.chunk_id:
            raise ValueError("a chunk id must not be empty")


class GraphCounts(TypedDict):
    """How many of each thing the graph holds; `co_occurs` counts unordered pairs."""

    chunks: int
    entities: int
    mentions: int
    co_occurs: int


def _batches(rows: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


class KnowledgeGraph:
    """Chunks mention entities; entities that share chunks are joined by a weighted `CO_OCCURS` edge.

    `CO_OCCURS` is stored once per unordered pair, from the lower id to the higher, and its weight is the number
    of chunks in which both entities are among the chunk's `max_pair_entities` most-mentioned entities (ties go
    to the lower id). The cap bounds the quadratic number of pairs; it is part of what the weights mean, so open
    a graph with the cap it was built with, or `remove_chunks` will subtract other pairs than were added.

    Writes of one instance are serialised; two processes must not write the same chunk ids at the same time.
    """

    def __init__(self, store: GraphStore, *, max_pair_entities: int = 12, batch_size: int = 10_000) -> None:
        """Wrap `store`, declaring the schema there if needed.

        Args:
            store: The graph database.
            max_pair_entities: How many of a chunk's most-mentioned entities form co-occurrence pairs (>= 2).
            batch_size: Rows per `UNWIND` statement.
        """
        if max_pair_entities < 2:
            raise ValueError("max_pair_entities must be at least 2")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._store = store
        self._max_pair_entities = max_pair_entities
        self._batch_size = batch_size
        self._write_lock = threading.Lock()
        store.ensure_schema(KNOWLEDGE_SCHEMA)

    def add_chunks(self, items: Sequence[ChunkMentions]) -> None:
        """Add chunks with their mentions and co-occurrences, in one transaction.

        A chunk id already in the graph is replaced: its old mentions and pairs are taken back first. Two mentions
        of the same entity id within one chunk are merged (counts added, the first name and kind kept); an entity
        that already exists keeps its name and kind.

        Args:
            items: The chunks; each chunk id at most once.

        Raises:
            ValueError: A chunk id appears twice in `items`.
            GraphStoreError: The database failed; nothing was changed.
        """
        duplicates = [cid for cid, n in Counter(item.chunk_id for item in items).items() if n > 1]
        if duplicates:
            raise ValueError(f"chunk ids given more than once: {duplicates[:5]}")
        if not items:
            return
        chunks = [(item, self._merge_mentions(item.entities)) for item in items]
        names: dict[str, tuple[str, str]] = {}
        for item, _ in chunks:
            for mention in item.entities:
                names.setdefault(mention.id, (mention.name, mention.kind))
        pairs: Counter[tuple[str, str]] = Counter()
        for _, counts in chunks:
            pairs.update(self._pairs(counts.items()))
        with self._write_lock:
            statements = self._removal([item.chunk_id for item in items], keep=names.keys())
            statements += self._batched(
                _UPSERT_CHUNKS,
                "rows",
                [{"id": item.chunk_id, "tenant": item.tenant, "source": item.source} for item, _ in chunks],
            )
            statements += self._batched(
                _MERGE_ENTITIES,
                "rows",
                [{"id": eid, "name": name, "kind": kind} for eid, (name, kind) in names.items()],
            )
            statements += self._batched(
                _CREATE_MENTIONS,
                "rows",
                [
                    {"chunk": item.chunk_id, "entity": eid, "count": n}
                    for item, counts in chunks
                    for eid, n in counts.items()
                ],
            )
            statements += self._batched(_ADD_PAIRS, "rows", [{"a": a, "b": b, "n": n} for (a, b), n in pairs.items()])
            self._store.execute_in_transaction(statements)

    def remove_chunks(self, chunk_ids: Sequence[str]) -> None:
        """Remove chunks, their mentions and their share of co-occurrence weights, in one transaction.

        Pairs whose weight drops to 0 are deleted, and so are entities no chunk mentions any more. Unknown ids are
        ignored.

        Raises:
            GraphStoreError: The database failed; nothing was changed.
        """
        if not chunk_ids:
            return
        with self._write_lock:
            self._store.execute_in_transaction(self._removal(list(dict.fromkeys(chunk_ids)), keep=()))

    def mentions(self) -> list[tuple[str, str, int]]:
        """Every mention as `(chunk_id, entity_id, count)`, sorted by chunk then entity."""
        rows = self._store.execute(_ALL_MENTIONS)
        return [(row["chunk"], row["entity"], row["count"]) for row in rows]

    def entities(self) -> list[tuple[str, str, str]]:
        """Every entity as `(id, name, kind)`, sorted by id."""
        return [(row["id"], row["name"], row["kind"]) for row in self._store.execute(_ENTITIES)]

    def co_occurring(self, entity_id: str, limit: int = 10) -> list[tuple[str, int]]:
        """The entities that share chunks with `entity_id`, as `(id, weight)`, heaviest first, then by id.

        Args:
            entity_id: An entity id (see `entity_id`); an unknown id has no neighbours.
            limit: At most this many neighbours (>= 1).
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        rows = self._store.execute(_CO_OCCURRING, {"id": entity_id, "limit": limit})
        return [(row["id"], row["weight"]) for row in rows]

    def counts(self) -> GraphCounts:
        """How many chunks, entities, mentions and co-occurring pairs the graph holds."""
        (row,) = self._store.execute(_COUNTS)
        return GraphCounts(
            chunks=row["chunks"], entities=row["entities"], mentions=row["mentions"], co_occurs=row["co_occurs"]
        )

    @staticmethod
    def _merge_mentions(mentions: Iterable[EntityMention]) -> dict[str, int]:
        """Entity id → count for one chunk, adding up repeated ids."""
        counts: Counter[str] = Counter()
        for mention in mentions:
            counts[mention.id] += mention.count
        return dict(counts)

    def _pairs(self, counts: Iterable[tuple[str, int]]) -> Iterator[tuple[str, str]]:
        """The `(lower id, higher id)` pairs one chunk contributes: among its most-mentioned entities only."""
        top = sorted(counts, key=lambda item: (-item[1], item[0]))[: self._max_pair_entities]
        return itertools.combinations(sorted(eid for eid, _ in top), 2)

    def _removal(self, chunk_ids: list[str], *, keep: Iterable[str]) -> list[Statement]:
        """Statements that take the stored chunks among `chunk_ids` out of the graph.

        Entities left unmentioned are deleted, except those in `keep` (about to be mentioned again).
        """
        existing: dict[str, dict[str, int]] = {}
        for batch in _batches(chunk_ids, self._batch_size):
            for row in self._store.execute(_EXISTING, {"ids": list(batch)}):
                counts = existing.setdefault(row["chunk"], {})
                if row["entity"] is not None:
                    counts[row["entity"]] = row["count"]
        if not existing:
            return []
        pairs: Counter[tuple[str, str]] = Counter()
        for counts in existing.values():
            pairs.update(self._pairs(counts.items()))
        kept = set(keep)
        orphans = sorted({eid for counts in existing.values() for eid in counts} - kept)
        statements = self._batched(_SUBTRACT_PAIRS, "rows", [{"a": a, "b": b, "n": n} for (a, b), n in pairs.items()])
        statements += self._batched(_DELETE_CHUNKS, "ids", list(existing))
        statements += self._batched(_DELETE_ORPHANS, "ids", orphans)
        return statements

    def _batched(self, cypher: str, name: str, rows: Sequence[Mapping[str, Any] | str]) -> list[Statement]:
        """One statement per batch of rows; none for no rows (Ladybug cannot type an empty list parameter)."""
        return [Statement(cypher, {name: list(batch)}) for batch in _batches(rows, self._batch_size)]
