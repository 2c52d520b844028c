"""Documents ingested while the server runs are searched by the agent, and its answer cites them."""

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from tests.integration.conftest import TestServer

pytestmark = pytest.mark.integration

HANDBOOK = """# Zephyr project handbook

## Budget

The Zephyr project has a budget of 4.2 million euros for 2027, approved by the board in March.

## Team

The Zephyr project is led by Ingrid Halvorsen from the Oslo office.
"""


def _cli(server: TestServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chimera.cli", "--config", str(server.config_path), *args],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def handbook(server: TestServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("docs")
    (folder / "zephyr.md").write_text(HANDBOOK)
    done = _cli(server, "ingest", str(folder))
    assert done.returncode == 0, done.stdout + done.stderr
    yield folder / "zephyr.md"
    # leave the shared server without documents, as the other modules expect it
    removed = _cli(server, "ingest", "--delete", str(folder))
    assert removed.returncode == 0, removed.stdout + removed.stderr


def test_agent_answer_cites_the_ingested_document(server: TestServer, handbook: Path) -> None:
    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused", timeout=180)
    completion = client.chat.completions.create(
        model="chimera",
        messages=[{"role": "user", "content": "Search the documents: what is the budget of the Zephyr project?"}],
        max_tokens=64,
    )
    citations = (completion.model_extra or {}).get("chimera", {}).get("citations", [])
    assert citations, completion.model_dump_json()
    assert citations[0]["n"] == 1
    assert citations[0]["source"] == str(handbook.resolve())
    assert any("4.2 million euros" in c["text"] for c in citations)
    assert any(c["heading_path"][-1] == "Budget" for c in citations)
    answer = completion.choices[0].message.content or ""
    assert f"[1] {handbook.resolve()}" in answer  # the source list under the answer


def test_streamed_answer_carries_the_citations_on_its_finish_chunk(server: TestServer, handbook: Path) -> None:
    body = {
        "model": "chimera",
        "messages": [{"role": "user", "content": "Search the documents: who leads the Zephyr project?"}],
        "max_tokens": 48,
        "stream": True,
    }
    import json

    finish = None
    events = []
    text = ""
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=180) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                if chunk.get("chimera", {}).get("event"):
                    events.append(chunk["chimera"]["event"])
                if chunk.get("choices"):
                    text += chunk["choices"][0]["delta"].get("content") or ""
                    if chunk["choices"][0].get("finish_reason"):
                        finish = chunk
    assert finish is not None
    # the agent's progress came first: the grounding search, as a tool result with its passages
    assert events and events[0]["type"] == "tool_result" and events[0]["tool"] == "hybrid_search"
    assert "Ingrid Halvorsen" in events[0]["observation"]
    # the finish chunk carries the checked citations: what the answer cites, each verified or not, numbered as
    # the markers in its body (whatever the small model wrote)
    citations = finish["chimera"].get("citations", [])
    body_text = text.split("\n\nSources:\n", 1)[0]
    assert {int(n) for n in re.findall(r"(?<![\w\])\[])\[(\d+)\]", body_text)} <= {c["n"] for c in citations}
    assert [c["n"] for c in citations] == list(range(1, len(citations) + 1))
    assert all(isinstance(c.get("verified"), bool) for c in citations)
