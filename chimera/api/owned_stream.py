"""A response stream that runs in a task of its own, so that a client who leaves stops it cleanly.

When a client disconnects, Starlette cancels the task group that sends a `StreamingResponse`. That cancellation
is anyio's: every await in the stream's clean-up is cancelled again, so the generators under it (the agent's
graph, the expert's request to the engine, the limiter's release) are cut short instead of closed, and a run
generates on until the garbage collector finds it. `owned` runs the body in a plain asyncio task that is cancelled
once, so every `finally` under it runs to the end: the graph's node is cancelled and the engine aborts the request
at once (tests/unit/test_disconnect.py).
"""

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import TypeVar

T = TypeVar("T")


class _End:
    """The source's last item has been taken (or it raised: `error`)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


async def owned(source: AsyncGenerator[T, None]) -> AsyncIterator[T]:
    """`source`'s items, produced in a task of its own; closing (or cancelling) this stream cancels that task.

    Raises:
        Exception: whatever `source` raised, once its earlier items have been taken.
    """
    queue: asyncio.Queue[T | _End] = asyncio.Queue(maxsize=1)

    async def pump() -> None:
        try:
            async with aclosing(source):
                async for item in source:
                    await queue.put(item)
        except Exception as e:  # handed to the reader, which raises it where the stream is read
            await queue.put(_End(e))
        else:
            await queue.put(_End())

    task = asyncio.create_task(pump())
    try:
        while not isinstance(item := await queue.get(), _End):
            yield item
        if item.error is not None:
            raise item.error
    finally:
        task.cancel()  # a no-op once the source is done; else it is closed where it waits, its clean-up whole
