"""Ingestion: files and folders → parsed sections → chunks → the hybrid index, incrementally.

A file is identified by its absolute path and tenant; its content hash decides what happens on re-ingest:
unchanged files are skipped, changed files have their chunks replaced, files gone from an ingested folder have
theirs removed. A file that cannot be read is reported with its reason and skipped; nothing already indexed is
lost, because a file's old chunks go only once its new ones are parsed and chunked in full.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from tqdm import tqdm

from chimera.tools.ingest.chunking import Chunker
from chimera.tools.ingest.parsers import ParseError, is_supported, parse
from chimera.tools.search.index import HybridIndex
from chimera.tools.search.types import DEFAULT_TENANT, Chunk, Section

Status = Literal["added", "replaced", "unchanged", "removed", "skipped"]
_HASH_BLOCK = 1 << 20
_BATCH = 256


@dataclass(frozen=True, slots=True)
class FileOutcome:
    """What happened to one file."""

    source: str
    status: Status
    chunks: int = 0
    reason: str | None = None


@dataclass(slots=True)
class IngestReport:
    """Outcomes of one ingest run, and its throughput."""

    outcomes: list[FileOutcome] = field(default_factory=list)
    chunks_indexed: int = 0
    seconds: float = 0.0

    @property
    def chunks_per_s(self) -> float:
        return self.chunks_indexed / self.seconds if self.seconds > 0 else 0.0

    def count(self, status: Status) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    def summary(self) -> str:
        parts = [f"{self.count(s)} {s}" for s in ("added", "replaced", "unchanged", "removed", "skipped")]
        return f"{', '.join(parts)}; {self.chunks_indexed} chunks in {self.seconds:.1f} s ({self.chunks_per_s:.0f}/s)"


class Ingestor:
    """Feeds documents into a `HybridIndex` and saves it.

    Args:
        index: the index to write.
        chunker: cuts parsed sections into chunks.
        index_dir: where `index` is saved after each run (None: not saved, e.g. an evaluation).
        max_file_bytes: larger files are skipped with a reason.
        progress: show a progress bar (files, chunks, chunks/s); None: only on a terminal.
    """

    def __init__(
        self,
        index: HybridIndex,
        chunker: Chunker,
        *,
        index_dir: Path | None = None,
        max_file_bytes: int = 64 << 20,
        progress: bool | None = None,
    ) -> None:
        self.index = index
        self.chunker = chunker
        self.index_dir = index_dir
        self.max_file_bytes = max_file_bytes
        self.progress = sys.stderr.isatty() if progress is None else progress
        self._pending: list[Chunk] = []

    def ingest(
        self,
        paths: Sequence[Path],
        *,
        tenant: str = DEFAULT_TENANT,
        acl: Sequence[str] = (),
        on_file: Callable[[int, int, FileOutcome], None] | None = None,
    ) -> IngestReport:
        """Index files and folders (recursively); re-ingesting is incremental.

        Args:
            on_file: called after each file with (files done, files in all, its outcome); an exception it raises
                stops the run before anything is saved (a cancelled ingestion task).
        """
        report = IngestReport()
        start = time.perf_counter()
        files, missing = _expand(paths)
        report.outcomes.extend(FileOutcome(str(p), "skipped", reason="no such file or folder") for p in missing)
        known = self.index.sources(tenant)
        for folder in (p.resolve() for p in paths if p.is_dir()):
            present = {str(f) for f in files}
            gone = [s for s in known if s.startswith(f"{folder}{os.sep}") and s not in present]
            for source in gone:
                report.outcomes.append(FileOutcome(source, "removed", self.index.remove_sources([source], tenant)))
        # A file re-ingested with other ACL tags is re-indexed, not skipped as unchanged: its chunks carry the tags.
        known_acl = {c.source: c.acl for c in self.index.table if c.tenant == tenant}
        bar = tqdm(files, unit="file", disable=not self.progress, dynamic_ncols=True)
        for done, path in enumerate(bar, 1):
            source = str(path)
            outcome = self._ingest_file(path, tenant, tuple(acl), known.get(source), known_acl.get(source))
            report.outcomes.append(outcome)
            if outcome.status in ("added", "replaced"):
                report.chunks_indexed += outcome.chunks
            elapsed = time.perf_counter() - start
            bar.set_postfix(chunks=report.chunks_indexed, per_s=f"{report.chunks_indexed / elapsed:.0f}")
            if on_file is not None:
                on_file(done, len(files), outcome)
        self._save()
        report.seconds = time.perf_counter() - start
        return report

    def delete(self, paths: Sequence[Path], *, tenant: str = DEFAULT_TENANT) -> IngestReport:
        """Remove the chunks of files, or of every indexed file under a folder, from every index and the graph."""
        report = IngestReport()
        start = time.perf_counter()
        known = self.index.sources(tenant)
        for path in paths:
            target = str(path.resolve())
            sources = [s for s in known if s == target or s.startswith(f"{target}{os.sep}")]
            if not sources:
                report.outcomes.append(FileOutcome(target, "skipped", reason="not in the index"))
            for source in sources:
                report.outcomes.append(FileOutcome(source, "removed", self.index.remove_sources([source], tenant)))
        self._save()
        report.seconds = time.perf_counter() - start
        return report

    def add_document(
        self,
        doc_id: str,
        sections: Iterable[Section],
        *,
        source: str | None = None,
        content_hash: str = "",
        tenant: str = DEFAULT_TENANT,
        acl: tuple[str, ...] = (),
        metadata: dict[str, str] | None = None,
    ) -> int:
        """Chunk one document given as sections and queue it for indexing, replacing its old chunks.

        Chunks are indexed in batches across documents (embedding and graph writes are much faster in bulk);
        call `flush` after the last document.
        """
        source = source or doc_id
        meta = MappingProxyType(dict(metadata or {}))
        ingested_at = time.time()
        chunks = [
            Chunk(
                id=Chunk.make_id(tenant, doc_id, i, piece.text),
                doc_id=doc_id, text=piece.text, source=source, ordinal=i, content_hash=content_hash,
                page=piece.page, heading_path=piece.heading_path, tenant=tenant, acl=acl, metadata=meta,
                ingested_at=ingested_at,
            )
            for i, piece in enumerate(self.chunker.chunk(sections))
        ]  # fmt: skip
        if any(c.source == source and c.tenant == tenant for c in self._pending):
            self.flush()
        self.index.remove_sources([source], tenant)
        self._pending.extend(chunks)
        if len(self._pending) >= _BATCH:
            self.flush()
        return len(chunks)

    def flush(self) -> None:
        """Index every queued chunk."""
        while self._pending:
            batch, self._pending = self._pending[:_BATCH], self._pending[_BATCH:]
            self.index.add(batch)

    def _ingest_file(
        self, path: Path, tenant: str, acl: tuple[str, ...], known_hash: str | None, known_acl: tuple[str, ...] | None
    ) -> FileOutcome:
        source = str(path)
        try:
            size = path.stat().st_size
            if size > self.max_file_bytes:
                raise ParseError(f"file too large ({size / 1e6:.1f} MB > {self.max_file_bytes / 1e6:.1f} MB limit)")
            content_hash = _file_hash(path)
            if content_hash == known_hash and acl == known_acl:
                return FileOutcome(source, "unchanged")
            sections = list(parse(path, max_bytes=self.max_file_bytes))
        except ParseError as e:
            return FileOutcome(source, "skipped", reason=str(e))
        except OSError as e:
            return FileOutcome(source, "skipped", reason=f"cannot read: {e.strerror or e}")
        metadata = {"type": path.suffix.lower().lstrip("."), "filename": path.name}
        count = self.add_document(
            source, sections, source=source, content_hash=content_hash, tenant=tenant, acl=acl, metadata=metadata
        )
        return FileOutcome(source, "replaced" if known_hash else "added", count)

    def _save(self) -> None:
        self.flush()
        if self.index_dir is not None:
            self.index.save(self.index_dir)


def _expand(paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """Supported files under `paths` (absolute, sorted, each once), and the paths that do not exist."""
    files: dict[Path, None] = {}
    missing = []
    for path in paths:
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                if f.is_file() and is_supported(f) and not any(p.startswith(".") for p in f.relative_to(path).parts):
                    files.setdefault(f.resolve(), None)
        elif path.is_file():
            files.setdefault(path.resolve(), None)
        else:
            missing.append(path)
    return list(files), missing


def _file_hash(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()
