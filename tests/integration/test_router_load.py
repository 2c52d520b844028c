"""The router beside real expert deployments: when the code engine is really busy, a close call spills to the
runner-up while a confident code request waits for the code expert.

Its own server: the code expert gets its own engine with two batch slots, so that it can be saturated alone.
"""

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from chimera.messages import ChatMessage
from chimera.models.router.factory import build_router
from tests.integration.conftest import ROOT, TestServer

CLOSE_CALL = "Explain what an API is."  # code first, chat a close second (gap ~0.2 with the shipped cascade)
CONFIDENT = "```python\ndef add(a, b):\n    return a - b\n```\nFix the bug in this Python function."


@pytest.fixture(scope="module")
def busy_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestServer]:
    data_dir = tmp_path_factory.mktemp("chimera-load")
    raw = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    raw["data_dir"] = str(data_dir)
    general = {**raw["engines"]["smollm2"], "model": str(model_dir), "kv_cache_memory_bytes": 536870912}
    raw["engines"] = {"general": general, "coder": {**general, "max_num_seqs": 2}}
    for name, expert in raw["experts"].items():
        expert["engine"] = "coder" if name == "code" else "general"
    raw["router"] = {**raw.get("router", {}), "kind": "learned", "spill_margin": 0.5, "load_poll_s": 0.1}
    raw["tracing"] = {"exporter": "none"}
    config_path = data_dir / "config.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    with TestServer(config_path, data_dir) as proc:
        yield proc


def test_prompts_are_a_close_call_and_a_confident_one() -> None:
    from chimera.config import RouterConfig

    router = build_router(RouterConfig(kind="learned"))
    close = router.route([ChatMessage(role="user", content=CLOSE_CALL)])
    confident = router.route([ChatMessage(role="user", content=CONFIDENT)])
    assert close.expert == "code" and close.runner_up is not None
    assert close.probabilities["code"] - close.probabilities[close.runner_up] <= 0.5
    assert (
        confident.expert == "code"
        and confident.probabilities["code"] - max(p for e, p in confident.probabilities.items() if e != "code") > 0.5
    )


def _ask(http: httpx.Client, text: str) -> httpx.Response:
    body = {"model": "auto", "messages": [{"role": "user", "content": text}], "max_tokens": 8}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response


def test_saturated_expert_spills_close_calls_only(busy_server: TestServer) -> None:
    http = httpx.Client(base_url=busy_server.url, timeout=300)
    calm = _ask(http, CLOSE_CALL)
    assert calm.headers["x-chimera-expert"] == "code" and calm.headers["x-chimera-route-spilled"] == "false"
    runner_up = calm.headers["x-chimera-route-runner-up"]

    def occupy(_: int) -> None:  # long generations that fill both of the coder engine's batch slots
        body = {"model": "chimera-code", "messages": [{"role": "user", "content": "Write a long program."}],
                "max_tokens": 400, "ignore_eos": True}  # fmt: skip
        assert http.post("/v1/chat/completions", json=body).status_code == 200

    with ThreadPoolExecutor(2) as pool:
        occupiers = [pool.submit(occupy, i) for i in range(2)]
        deadline = time.monotonic() + 60
        while http.get("/healthz").json()["engines"]["coder"]["running"] < 2:
            assert time.monotonic() < deadline, "the coder engine never got busy"
            time.sleep(0.1)
        time.sleep(0.3)  # the load monitor's next poll

        spilled = _ask(http, CLOSE_CALL)
        assert spilled.headers["x-chimera-route-spilled"] == "true"
        assert spilled.headers["x-chimera-expert"] == runner_up
        assert spilled.headers["x-chimera-route-runner-up"] == "code"

        waited = _ask(http, CONFIDENT)
        assert waited.headers["x-chimera-expert"] == "code"
        assert waited.headers["x-chimera-route-spilled"] == "false"
        assert "saturated_but_confident" in waited.headers["x-chimera-route-signals"]
        for occupier in occupiers:
            occupier.result()

    explicit = http.post("/v1/chat/completions", json={"model": "chimera-code", "max_tokens": 4,
                         "messages": [{"role": "user", "content": CLOSE_CALL}]})  # fmt: skip
    assert explicit.headers["x-chimera-expert"] == "code" and explicit.headers["x-chimera-route-spilled"] == "false"
