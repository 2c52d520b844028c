"""An event loop on a daemon thread: the saver's synchronous methods hand it their async twins and wait.

LangGraph calls a checkpointer's sync methods when a graph runs with `invoke`/`stream`, from its own worker
threads and with no event loop of theirs. Rather than keep a second, blocking copy of every Redis operation,
the saver runs the async one here and blocks on the result (the pattern of langgraph's `AsyncPostgresSaver`,
except that the loop is the saver's own, so plain synchronous programs work too).
"""

import asyncio
import threading
from collections.abc import AsyncGenerator, Coroutine, Iterator
from typing import Any, TypeVar, cast

from chimera.memory.checkpoint.base import CheckpointError

T = TypeVar("T")


class BackgroundLoop:
    """One event loop, started on first use on a daemon thread, that runs coroutines for sync callers."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        """Whether the loop is running (it starts on the first `run`)."""
        return self._loop is not None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the loop and return its result (or raise its exception) in the calling thread.

        Raises:
            CheckpointError: Called from the loop's own thread, where waiting would deadlock.
        """
        loop = self._started()
        if _running_loop() is loop:
            coro.close()
            raise CheckpointError("a synchronous checkpoint call from the saver's own event loop; use the a* methods")
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def iterate(self, agen: AsyncGenerator[T, None]) -> Iterator[T]:
        """Drive an async generator on the loop, one item per step; close it if the caller stops early."""
        try:
            while True:
                more, item = self.run(_step(agen))
                if not more:
                    return
                yield cast(T, item)  # `more` says there is one
        finally:
            self.run(agen.aclose())

    def stop(self) -> None:
        """Stop the loop and join its thread; the next `run` starts a fresh one."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop


async def _step(agen: AsyncGenerator[T, None]) -> tuple[bool, T | None]:
    try:
        return True, await anext(agen)
    except StopAsyncIteration:
        return False, None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
