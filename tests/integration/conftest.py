"""One real Chimera server for the whole session: `chimera serve` in a subprocess on 127.0.0.1.

It runs the embedded stack (local Ray, the SmolLM2 engine in a Serve replica, the embedded redis-server) with
its data dir in a temporary folder; the converted model is shared with `make demo` under `.chimera/models`.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from chimera.config import load_config
from chimera.server_process import ServerProcess, free_port
from chimera.spans.factory import span_store_path
from chimera.spans.sqlite import SqliteSpanStore
from chimera.spans.store import TraceNotFoundError

ROOT = Path(__file__).parents[2]


class TestServer(ServerProcess):
    """The server plus where its data lives."""

    __test__ = False

    def __init__(self, config_path: Path, data_dir: Path) -> None:
        # no OTLP endpoint from the environment: spans go to the span store the tests read
        super().__init__(config_path, free_port(), data_dir / "server.log", env={"OTEL_EXPORTER_OTLP_ENDPOINT": ""})
        self.data_dir = data_dir

    def trace_spans(self, trace_id: str) -> list[dict[str, Any]]:
        """The spans of one trace the server's processes have written to the span store so far."""
        store = SqliteSpanStore(span_store_path(self.data_dir))
        try:
            return store.trace(trace_id)
        except TraceNotFoundError:
            return []
        finally:
            store.close()


@pytest.fixture(scope="session")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestServer]:
    data_dir = tmp_path_factory.mktemp("chimera-data")
    raw = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    raw["data_dir"] = str(data_dir)
    raw["engines"]["smollm2"]["model"] = str(model_dir)
    raw["tracing"] = {"exporter": "store"}
    raw["tasks"] = {"lease_s": 6.0, "min_workers": 1, "max_workers": 2}  # a killed worker's task is back in seconds
    config_path = data_dir / "config.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    load_config(config_path)  # fail here, readably, if the test config is wrong
    with TestServer(config_path, data_dir) as proc:
        yield proc
