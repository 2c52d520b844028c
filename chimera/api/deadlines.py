"""Request deadlines (`server.request_timeout_s`): a chat or resume request is stopped when its time is up.

The deadline counts from the request's arrival and covers reading its body, starting the chat (session, rails,
routing, the first delta) and every delta of its stream. Past it the work in progress is cancelled, which closes
the run behind the stream and aborts its engine requests, and `DeadlineExceededError` is raised: a 504 when
nothing was sent yet, an in-band error event on a stream already under way.
"""

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import Request

from chimera.chat import ChatDelta, ChatStream
from chimera.config import ServerConfig
from chimera.errors import ChimeraError


class DeadlineExceededError(ChimeraError):
    """The request ran past `server.request_timeout_s` and was stopped."""


@dataclass(frozen=True)
class Deadline:
    """When a request must be done: `timeout_s` after its arrival, as a time of the event loop's clock."""

    at: float
    timeout_s: float

    @classmethod
    def of(cls, request: Request) -> "Deadline":
        """The deadline of `request`: `server.request_timeout_s` after the app received it."""
        limits: ServerConfig = request.app.state.limits
        waited = time.perf_counter() - request.state.started
        return cls(asyncio.get_running_loop().time() + limits.request_timeout_s - waited, limits.request_timeout_s)

    @asynccontextmanager
    async def enforced(self) -> AsyncIterator[None]:
        """Run the block until the deadline at most: past it the block is cancelled.

        Raises:
            DeadlineExceededError: the deadline passed while the block ran.
        """
        timeout = asyncio.timeout_at(self.at)
        try:
            async with timeout:
                yield
        except TimeoutError as e:
            if not timeout.expired():  # a timeout of the work's own, not ours
                raise
            raise DeadlineExceededError(
                f"the request ran past its deadline of {self.timeout_s:g} s (server.request_timeout_s) and was stopped"
            ) from e

    def bound(self, chat: ChatStream) -> ChatStream:
        """`chat` with every delta due by the deadline; past it the stream is closed and raises
        `DeadlineExceededError` (each wait is cancelled in the task that reads the stream, so the run stops where
        it is, as when a client leaves)."""

        async def deltas() -> AsyncIterator[ChatDelta]:
            inner = chat.deltas()
            try:
                while True:
                    async with self.enforced():
                        delta = await anext(inner, None)
                    if delta is None:
                        return
                    yield delta
            finally:
                await inner.aclose()

        return dataclasses.replace(chat, _deltas=deltas())
