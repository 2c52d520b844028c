"""Python SDK for a running Chimera server: `Client` (chat, agent runs, and durable tasks as `client.tasks`) and
`AsyncClient` (durable tasks for asyncio). The task classes live in `chimera.task_client`."""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from chimera.errors import ChimeraError


class ClientError(ChimeraError):
    """The server refused the request or could not be reached; `status` and `code` say how, when it answered."""

    def __init__(self, message: str, status: int | None = None, *, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code  # the error JSON's `code` (e.g. `task_not_found`), where known


@dataclass(frozen=True)
class ChatReply:
    """An answer and how it was produced."""

    text: str
    model: str
    expert: str
    route_confidence: float
    trace_id: str
    session_id: str
    finish_reason: str
    usage: dict[str, int]
    citations: tuple[dict[str, Any], ...] = ()  # the passages the answer cites: n, id, source, page, text
    paused: dict[str, Any] | None = None  # an agent run awaiting approval: next nodes, pending work (see `resume`)


class Client:
    """Talks to Chimera's OpenAI-compatible endpoint and reads its `x-chimera-*` headers."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None, timeout: float = 300.0):
        from chimera.task_client import Tasks  # here, not at the top: task_client's errors derive from ClientError

        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=_auth(api_key), timeout=timeout)
        self.tasks: Tasks = Tasks(self._http)

    def chat(self, message: str | list[dict[str, str]], *, model: str = "chimera",
             session_id: str | None = None, **params: Any) -> ChatReply:  # fmt: skip
        """Ask once; `message` is a user text or a list of OpenAI-style messages.

        Agent models take `interrupt_before=["act"]` (or `["specialist"]` for the team): the reply then comes back
        `paused` before each tool call (or the team's plan) until `resume` approves or declines it.
        """
        body = {"model": model, "messages": _messages(message), "stream": False, **params}
        return _reply(self._send("/v1/chat/completions", body, session_id))

    def resume(self, session_id: str, *, approve: bool = True) -> ChatReply:
        """Continue the session's paused agent run (or one a restart cut short); `approve=False` declines."""
        return _reply(self._send(f"/v1/sessions/{session_id}/resume", {"approve": approve}, None))

    def run_status(self, session_id: str) -> dict[str, Any]:
        """The session's last agent run: `status` none, done or paused, with `next`, `pending` and `reason`."""
        try:
            response = self._http.get(f"/v1/sessions/{session_id}/run")
        except httpx.HTTPError as e:
            raise ClientError(f"no Chimera server at {self._http.base_url}: {e}") from e
        if response.status_code != 200:
            raise _error(response)
        return response.json()

    def _send(self, path: str, body: dict[str, Any], session_id: str | None) -> httpx.Response:
        headers = {"x-session-id": session_id} if session_id else {}
        try:
            response = self._http.post(path, json=body, headers=headers)
        except httpx.HTTPError as e:
            raise ClientError(f"no Chimera server at {self._http.base_url}: {e}") from e
        if response.status_code != 200:
            raise _error(response)
        return response

    def stream(self, message: str | list[dict[str, str]], *, model: str = "chimera",
               session_id: str | None = None, **params: Any) -> Iterator[str]:  # fmt: skip
        """Yield the answer's text as it is generated."""
        body = {"model": model, "messages": _messages(message), "stream": True, **params}
        headers = {"x-session-id": session_id} if session_id else {}
        with self._http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
            if response.status_code != 200:
                response.read()
                raise _error(response)
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line.removeprefix("data: "))
                if "error" in event:
                    raise ClientError(event["error"]["message"])
                for choice in event.get("choices", []):
                    if choice["delta"].get("content"):
                        yield choice["delta"]["content"]

    def health(self) -> dict[str, Any]:
        try:
            return self._http.get("/healthz").json()
        except httpx.HTTPError as e:
            raise ClientError(f"no Chimera server at {self._http.base_url}: {e}") from e

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """The asyncio client: `tasks` (submit, follow and control durable tasks) and `health`."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None, timeout: float = 300.0):
        from chimera.task_client import AsyncTasks  # see Client.__init__

        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=_auth(api_key), timeout=timeout)
        self.tasks: AsyncTasks = AsyncTasks(self._http)

    async def health(self) -> dict[str, Any]:
        """The server's `/healthz` answer (also when it says unhealthy, with 503)."""
        try:
            return (await self._http.get("/healthz")).json()
        except httpx.HTTPError as e:
            raise ClientError(f"no Chimera server at {self._http.base_url}: {e}") from e

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _auth(api_key: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {api_key}"} if api_key else {}


def _reply(response: httpx.Response) -> ChatReply:
    body = response.json()
    choice = body["choices"][0]
    extension = body.get("chimera", {})
    return ChatReply(
        text=choice["message"]["content"],
        model=body["model"],
        expert=response.headers.get("x-chimera-expert", ""),
        route_confidence=float(response.headers.get("x-chimera-route-confidence", "0")),
        trace_id=response.headers.get("x-chimera-trace-id", ""),
        session_id=response.headers.get("x-session-id", ""),
        finish_reason=choice["finish_reason"],
        usage=body["usage"],
        citations=tuple(extension.get("citations", [])),
        paused=extension.get("run"),
    )


def _messages(message: str | list[dict[str, str]]) -> list[dict[str, str]]:
    return [{"role": "user", "content": message}] if isinstance(message, str) else message


def _error(response: httpx.Response) -> ClientError:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text
    return ClientError(f"HTTP {response.status_code}: {message}", response.status_code)
