"""Python SDK for a running Chimera server: `Client` (chat, agent runs, and durable tasks as `client.tasks`) and
`AsyncClient` (durable tasks for asyncio). The task classes live in `chimera.task_client`."""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from chimera.errors import ChimeraError

DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"  # the packaged embedder's id (`search.embedding_model` sets another)


class ClientError(ChimeraError):
    """The server refused the request or could not be reached; `status` and `code` say how, when it answered."""

    def __init__(self, message: str, status: int | None = None, *, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code  # the error JSON's `code` (e.g. `task_not_found`), where known


@dataclass(frozen=True)
class Page:
    """One page of a list: `Client.sessions` (each session's `id`, `updated_at`, `messages` count) or
    `Client.documents` (each document's `source`, `tenant`, `acl`, `chunk_count`, `ingested_at`)."""

    data: tuple[dict[str, Any], ...]
    has_more: bool
    last_id: str | None  # `after` for the next page


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
        return self._call("GET", f"/v1/sessions/{quote(session_id, safe='')}/run")

    def sessions(self, *, limit: int = 20, after: str | None = None) -> Page:
        """One page of this key's sessions, most recently used first; pass the page's `last_id` as `after` for the
        next one (or use `all_sessions`)."""
        return self._page("/v1/sessions", limit, after)

    def all_sessions(self, *, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Every session of this key (`id`, `updated_at`, `messages`), most recently used first, page by page."""
        return self._all("/v1/sessions", page_size)

    def session(self, session_id: str) -> dict[str, Any]:
        """The session's stored `messages` (oldest first) and its last agent `run`; 404 for another key's."""
        return self._call("GET", f"/v1/sessions/{quote(session_id, safe='')}")

    def delete_session(self, session_id: str) -> None:
        """Forget the session: its turns, its agent run's checkpoints and its long-context memory."""
        self._call("DELETE", f"/v1/sessions/{quote(session_id, safe='')}")

    def documents(self, *, limit: int = 20, after: str | None = None) -> Page:
        """One page of the indexed documents this key's tenant and groups see, by source; pass the page's `last_id`
        as `after` for the next one (or use `all_documents`)."""
        return self._page("/v1/documents", limit, after)

    def all_documents(self, *, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Every indexed document this key sees, by source, page by page."""
        return self._all("/v1/documents", page_size)

    def _page(self, path: str, limit: int, after: str | None) -> Page:
        params: dict[str, str | int] = {"limit": limit, **({"after": after} if after else {})}
        body = self._call("GET", path, params=params)
        return Page(tuple(body["data"]), body["has_more"], body["last_id"])

    def _all(self, path: str, page_size: int) -> Iterator[dict[str, Any]]:
        after = None
        while True:
            page = self._page(path, page_size, after)
            yield from page.data
            if not page.has_more:
                return
            after = page.last_id

    def document(self, source: str) -> dict[str, Any]:
        """The document indexed from `source` with its `chunks`; `ClientError` 404 when this key cannot see it."""
        return self._call("GET", f"/v1/documents/{quote(source, safe='')}")

    def delete_document(self, source: str) -> None:
        """Remove the document from every index and the knowledge graph."""
        self._call("DELETE", f"/v1/documents/{quote(source, safe='')}")

    def models(self) -> list[dict[str, Any]]:
        """The models served: agents, `auto`, the experts, then the embedding model."""
        return list(self._call("GET", "/v1/models")["data"])

    def model(self, model_id: str) -> dict[str, Any]:
        """One model's card (`ClientError` with status 404 for an unknown id)."""
        return self._call("GET", f"/v1/models/{quote(model_id, safe='')}")

    def embed(self, texts: str | list[str], *, model: str = DEFAULT_EMBEDDING_MODEL) -> list[list[float]]:
        """One unit-norm vector per text (the vectors the document search holds for the same text)."""
        body = self._call("POST", "/v1/embeddings", json={"input": texts, "model": model})
        return [item["embedding"] for item in sorted(body["data"], key=lambda item: item["index"])]

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON answer of a request; `ClientError` when the server refuses it or cannot be reached."""
        try:
            response = self._http.request(method, path, **kwargs)
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
        error = response.json()["error"]
        message, code = error["message"], error.get("code")
    except (ValueError, KeyError, TypeError, AttributeError):
        message, code = response.text, None
    return ClientError(f"HTTP {response.status_code}: {message}", response.status_code, code=code)
