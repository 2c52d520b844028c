"""Where a deployment's span store lives and how it is opened from the config."""

from pathlib import Path

from chimera.config import TracingConfig
from chimera.spans.sqlite import SqliteSpanStore

STORE_FILE = "traces.sqlite"


def span_store_path(data_dir: Path) -> Path:
    """The span store file of the deployment whose data dir is `data_dir`."""
    return data_dir / STORE_FILE


def open_span_store(tracing: TracingConfig, path: Path) -> SqliteSpanStore:
    """The store at `path` with the config's retention and attribute limit."""
    return SqliteSpanStore(
        path,
        retention_days=tracing.retention_days,
        max_spans=tracing.max_spans,
        max_attribute_chars=tracing.max_attribute_chars,
    )
