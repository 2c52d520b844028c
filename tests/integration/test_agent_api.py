"""Human-in-the-loop through the real server: an agent run paused by `interrupt_before`, its status, approval
or refusal through POST /v1/sessions/{id}/resume (JSON and streamed), and the errors of bad resumes."""

import json
import uuid
from typing import Any

import httpx
import openai
import pytest

from chimera.client import Client, ClientError
from tests.integration.conftest import TestServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def http(server: TestServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=180)


def _session() -> str:
    return f"hitl-{uuid.uuid4().hex[:8]}"


def _paused(http: httpx.Client, model: str, text: str, session: str, nodes: list[str]) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 32,
            "interrupt_before": nodes}  # fmt: skip
    response = http.post("/v1/chat/completions", json=body, headers={"x-session-id": session})
    assert response.status_code == 200, response.text
    return response.json()


def test_react_run_pauses_reports_and_resumes_when_approved(http: httpx.Client, server: TestServer) -> None:
    session = _session()
    paused = _paused(http, "chimera-react", "What is 12 * 12?", session, ["decide"])
    run = paused["chimera"]["run"]
    assert run == {"status": "paused", "next": ["decide"], "pending": [], "resume": f"/v1/sessions/{session}/resume"}
    assert paused["choices"][0]["message"]["content"].startswith("[paused for approval before decide")

    status = http.get(f"/v1/sessions/{session}/run").json()
    assert status == {"session": session, "status": "paused", "graph": "react", "next": ["decide"], "pending": [],
                      "reason": "approval"}  # fmt: skip

    for _ in range(4):  # the run pauses before every decision: one more after each tool call
        resumed = http.post(f"/v1/sessions/{session}/resume", json={"approve": True})
        assert resumed.status_code == 200, resumed.text
        body = resumed.json()
        assert body["model"] == "chimera-react" and resumed.headers["x-session-id"] == session
        assert body["choices"][0]["message"]["content"].strip()
        if "run" not in body.get("chimera", {}):
            break
    assert body["chimera"]["stop_reason"] in {"answered", "repeated_call", "repeated_result", "step_budget",
                                              "token_budget"}  # fmt: skip
    assert http.get(f"/v1/sessions/{session}/run").json()["status"] == "done"
    again = http.post(f"/v1/sessions/{session}/resume", json={})
    assert again.status_code == 409 and again.json()["error"]["code"] == "nothing_to_resume"


def test_team_plan_declined_streams_an_answer_without_running_specialists(http: httpx.Client) -> None:
    session = _session()
    paused = _paused(http, "chimera-team", "Calculate 12 * 12.", session, ["specialist"])
    pending = paused["chimera"]["run"]["pending"]
    assert paused["chimera"]["run"]["next"] == ["specialist"] and 1 <= len(pending) <= 3
    assert all(p["agent"] in {"math", "code", "research"} and p["task"] for p in pending)
    assert all(len(p["task"].split()) >= 2 and p["tools"] for p in pending)  # what a person can approve

    with http.stream("POST", f"/v1/sessions/{session}/resume", json={"approve": False, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    finishes = [c for c in chunks if c["choices"] and c["choices"][0].get("finish_reason")]
    assert text.strip() and len(finishes) == 1
    assert finishes[0]["chimera"]["stop_reason"].endswith(":declined")
    events = [c["chimera"]["event"] for c in chunks if c.get("chimera", {}).get("event")]
    assert not [e for e in events if e["type"] == "tool_call"]  # no specialist ran a tool


def test_openai_client_passes_interrupts_and_bad_ones_are_400(server: TestServer) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)
    session = _session()
    raw = client.chat.completions.with_raw_response.create(
        model="chimera",
        messages=[{"role": "user", "content": "Hello"}],
        max_tokens=16,
        extra_body={"interrupt_before": ["decide"]},
        extra_headers={"x-session-id": session},
    )
    assert raw.parse().model_extra["chimera"]["run"]["status"] == "paused"
    with pytest.raises(openai.BadRequestError, match="is not a node of the react graph") as e:
        client.chat.completions.create(
            model="chimera-react",
            messages=[{"role": "user", "content": "Hi"}],
            extra_body={"interrupt_before": ["plan"]},
        )
    assert e.value.body["param"] == "interrupt_before"  # type: ignore[index]


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v1/sessions/never-seen/resume", {}, 404, "session_not_found"),  # nobody's session: as unknown as another's
        ("/v1/sessions/bad%20id/resume", {}, 400, "invalid_session_id"),
        ("/v1/sessions/s/resume", {"approve": "maybe"}, 400, "invalid_value"),
        ("/v1/sessions/s/resume", "not json", 400, "invalid_json"),
    ],
)
def test_bad_resumes_get_clear_errors(http: httpx.Client, path: str, body: Any, status: int, code: str) -> None:
    content = body if isinstance(body, str) else json.dumps(body)
    response = http.post(path, content=content, headers={"content-type": "application/json"})
    assert response.status_code == status and response.json()["error"]["code"] == code, response.text
    assert http.get("/v1/sessions/never-seen/run").json()["error"]["code"] == "session_not_found"


def test_sdk_pauses_reports_and_resumes(server: TestServer) -> None:
    client = Client(server.url)
    session = _session()
    reply = client.chat("What is 2 + 2?", model="chimera-react", session_id=session, interrupt_before=["decide"],
                        max_tokens=16)  # fmt: skip
    assert reply.paused is not None and reply.paused["next"] == ["decide"]
    assert client.run_status(session)["status"] == "paused"
    for _ in range(4):
        reply = client.resume(session)
        if reply.paused is None:
            break
    assert reply.paused is None and reply.text.strip() and reply.session_id == session
    with pytest.raises(ClientError, match="HTTP 409") as e:
        client.resume(session)
    assert e.value.status == 409
    client.close()
