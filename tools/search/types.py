"""What retrieval passes around: chunks of documents, search filters, and scored results."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

DEFAULT_TENANT = "default"


@dataclass(frozen=True, slots=True)
class Section:
    """A run of text that shares one place in a document: a page, under one heading path.

    Parsers yield sections in document order; the chunker cuts them into chunks.
    """

    text: str
    page: int | None = None
    heading_path: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Chunk:
    """One indexed piece of a document, with everything a citation needs.

    `id` is stable: the same text at the same place of the same source gets the same id on every ingest.
    """

    id: str
    doc_id: str
    text: str
    source: str
    ordinal: int
    content_hash: str
    page: int | None = None
    heading_path: tuple[str, ...] = ()
    tenant: str = DEFAULT_TENANT
    acl: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    ingested_at: float = 0.0  # Unix time its document was indexed at (0: before the index recorded it)

    @property
    def index_text(self) -> str:
        """What the retrievers index: the heading path gives a chunk its context (title, section)."""
        if not self.heading_path:
            return self.text
        return " / ".join(self.heading_path) + "\n" + self.text

    @staticmethod
    def make_id(tenant: str, doc_id: str, ordinal: int, text: str) -> str:
        """A stable chunk id from where the chunk is and what it says."""
        key = f"{tenant}\0{doc_id}\0{ordinal}\0{text}".encode()
        return hashlib.blake2b(key, digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    """One indexed document as its chunks describe it (every chunk of a document shares these)."""

    source: str
    doc_id: str
    tenant: str
    acl: tuple[str, ...]
    chunk_count: int
    content_hash: str
    ingested_at: float  # 0: indexed before ingestion times were recorded
    metadata: Mapping[str, str]

    def visible_to(self, groups: frozenset[str]) -> bool:
        """Whether a caller with `groups` may see it: untagged documents are visible to the whole tenant."""
        return not self.acl or bool(groups.intersection(self.acl))


@dataclass(frozen=True, slots=True)
class SearchFilters:
    """Which chunks a query may see. Retrievers apply these before top-k, never after.

    Attributes:
        tenant: only chunks of this tenant (None: the default tenant).
        acl: the caller's groups; a chunk with ACL tags is visible only if it shares one with them.
            A chunk without tags is visible to everyone in its tenant.
        sources: only chunks whose source starts with one of these prefixes.
        metadata: only chunks whose metadata has each of these key/value pairs.
    """

    tenant: str | None = None
    acl: frozenset[str] | None = None
    sources: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def admits(self, chunk: Chunk) -> bool:
        """Whether `chunk` passes these filters."""
        if chunk.tenant != (self.tenant or DEFAULT_TENANT):
            return False
        if chunk.acl and self.acl is not None and not self.acl.intersection(chunk.acl):
            return False
        if chunk.acl and self.acl is None:
            return False
        if self.sources and not chunk.source.startswith(self.sources):
            return False
        return all(chunk.metadata.get(k) == v for k, v in self.metadata.items())


@dataclass(frozen=True, slots=True)
class RetrievedChunk:
    """A chunk a retriever found, with its score (higher is better) and who found it."""

    chunk: Chunk
    score: float
    retriever: str

    @property
    def id(self) -> str:
        return self.chunk.id

    @property
    def text(self) -> str:
        return self.chunk.text

    @property
    def source(self) -> str:
        return self.chunk.source


@dataclass(frozen=True, slots=True)
class Citation:
    """A passage an answer may cite as `[n]`; `chunk_id` is stable across re-ingests of an unchanged file.

    `verified` and `score` are set once the answer has been checked against the passage (agents/citations.py):
    whether every claim citing it is supported by it, and the lowest support among them.
    """

    n: int
    chunk_id: str
    source: str
    page: int | None
    heading_path: tuple[str, ...]
    text: str
    verified: bool | None = None
    score: float | None = None

    @staticmethod
    def of(n: int, found: RetrievedChunk) -> Citation:
        c = found.chunk
        return Citation(n, c.id, c.source, c.page, c.heading_path, c.text)

    @property
    def label(self) -> str:
        """`[n] path, page p, "heading"` — how the answer's source list names it."""
        page = f", page {self.page}" if self.page else ""
        heading = f', "{self.heading_path[-1]}"' if self.heading_path else ""
        return f"[{self.n}] {self.source}{page}{heading}"

    def as_dict(self) -> dict[str, object]:
        """The wire form (the API's `chimera.citations` items); `verified` and `score` once checked."""
        wire: dict[str, object] = {"n": self.n, "id": self.chunk_id, "source": self.source, "page": self.page,
                                   "heading_path": list(self.heading_path), "text": self.text}  # fmt: skip
        if self.verified is not None:
            wire["verified"] = self.verified
            wire["score"] = None if self.score is None else round(self.score, 3)
        return wire
