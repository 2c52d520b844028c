"""Schemathesis against the served OpenAPI document: generated requests (valid and not) for every operation, over
real HTTP (uvicorn in a thread), real Redis and the real rails, a scripted engine. No request may get a 5xx, and
every response must match what the document declares (all of schemathesis's checks but one: a schema-valid request
may still be refused, as the contract has rules a JSON schema cannot state — a user message among the messages,
the key's `max_tokens` cap, the prompt's size, a session of one's own. `ignored_auth` is left out too: it resends
our own bearer header, so it cannot tell; test_isolation.py checks that requests without a valid key get 401).

Bounded (`max_examples`) to keep the suite fast; `bench/` is the place for long fuzzing runs.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance

from chimera.config import load_config
from chimera.guardrails.nemo_rails import NemoRails
from tests.unit.fakes import ScriptedEngine
from tests.unit.http_server import served

ROOT = Path(__file__).parents[2]
KEY = "fuzz-key-0123456789abcdef"


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory, redis_url: str, nemo_rails: NemoRails) -> Iterator[str]:
    raw = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    raw["data_dir"] = str(tmp_path_factory.mktemp("chimera-fuzz"))
    raw["server"] = {**raw.get("server", {}), "api_keys": [KEY]}
    path = Path(raw["data_dir"]) / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    with served(load_config(path), ScriptedEngine(["Fine."] * 100_000), redis_url, nemo_rails) as base:
        yield base


@pytest.fixture(scope="module")
def api_schema(url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{url}/openapi.json")


OPERATIONS = [("post", "/v1/chat/completions"), ("post", "/v1/sessions/{session_id}/resume"),
              ("get", "/v1/sessions/{session_id}/run"), ("get", "/v1/sessions"), ("get", "/v1/sessions/{session_id}"),
              ("delete", "/v1/sessions/{session_id}"), ("post", "/v1/embeddings"), ("get", "/v1/models"),
              ("get", "/v1/models/{model_id}"), ("get", "/healthz"), ("get", "/v1/documents"),
              ("get", "/v1/documents/{source}"), ("delete", "/v1/documents/{source}"),
              ("post", "/v1/tasks"), ("get", "/v1/tasks"), ("get", "/v1/tasks/{task_id}"),
              ("post", "/v1/tasks/{task_id}/cancel"), ("post", "/v1/tasks/{task_id}/resume"),
              ("delete", "/v1/tasks/{task_id}"), ("get", "/v1/tasks/{task_id}/events"),
              ("post", "/v1/traces"), ("get", "/v1/traces"), ("get", "/v1/traces/{trace_id}")]  # fmt: skip


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_no_input_gets_a_server_error(api_schema: schemathesis.BaseSchema, url: str, method: str, path: str) -> None:
    operation = api_schema[path][method]

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=operation.as_strategy())
    def call(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=url, headers={"authorization": f"Bearer {KEY}"},
                               excluded_checks=[positive_data_acceptance, ignored_auth])  # fmt: skip

    call()


def test_every_operation_is_fuzzed(api_schema: schemathesis.BaseSchema) -> None:
    operations = {(op.ok().method.lower(), op.ok().path) for op in api_schema.get_all_operations()}
    assert operations == set(OPERATIONS)
