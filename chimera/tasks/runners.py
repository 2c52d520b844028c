"""The runner of each task kind: an agent run through the chat service, an ingestion, an evaluation.

An agent task is a chat request on its own session (`task-<id>`, or the session it names), so it gets what a chat
gets: input and output rails, routing, the caller's document scope, the session's memory, and an agent run
checkpointed in Redis under the session. A reclaimed agent task (its worker died) continues that run from its
last checkpoint instead of starting over; a task paused for approval continues when resumed.
"""

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

from chimera.chat import ChatOutcome, ChatRequest, ChatService, ChatStream
from chimera.config import ChimeraConfig
from chimera.documents import INGEST_LOCK
from chimera.errors import ChimeraError
from chimera.evaluations import run_evaluation
from chimera.memory.sessions.base import InvalidSessionIdError, SessionError, SessionNotFoundError
from chimera.models.engine.base import EngineUnavailableError
from chimera.models.expert import SamplingOverrides
from chimera.tasks.inputs import AgentInput, EvalInput, IngestInput
from chimera.tasks.model import TaskRunError
from chimera.tasks.worker import Outcome, Progress, TaskContext, TaskRunner

if TYPE_CHECKING:
    from chimera.models.engine.base import LLMEngine
    from chimera.tools.ingest.pipeline import FileOutcome


class AgentRunner:
    """Agent tasks (and plain expert answers, by `model`) on a chat service."""

    def __init__(self, chat: ChatService) -> None:
        self.chat = chat

    async def run(self, ctx: TaskContext) -> AsyncIterator[Progress | Outcome]:
        task = ctx.task
        assert task.session_id is not None  # every agent task has one from submit on
        try:
            stream = await self._stream(ctx)
        except ChimeraError as e:
            if _transient(e):
                raise
            raise TaskRunError(str(e)) from e  # a model it does not serve, a prompt too long: a retry fails alike
        if isinstance(stream, Outcome):
            yield stream
            return
        async with contextlib.aclosing(stream.deltas()) as deltas:  # closing it stops the graph between steps
            async for delta in deltas:
                ctx.check_cancelled()
                if isinstance(delta, str):
                    yield Progress("delta", {"text": delta})
                elif isinstance(delta, ChatOutcome):
                    yield _outcome(delta, stream)
                elif delta.kind != "paused":  # the paused outcome lists the pending work itself
                    yield Progress(delta.kind, delta.as_dict())

    async def _stream(self, ctx: TaskContext) -> ChatStream | Outcome:
        """Where this delivery starts: a resume the user asked for, the last checkpoint of a run a dead worker left,
        the answer such a run already stored, or a new run."""
        task, chat = ctx.task, self.chat
        session, principal = task.session_id or "", task.owner
        if task.resume_approve is not None:
            return await chat.resume(session, principal, approve=task.resume_approve, parent=ctx.parent)
        if task.attempt > 1:
            status = await chat.run_status(session, principal)
            if status.status == "paused" and status.reason == "interrupted":
                ctx.report("checkpoint", {"next": list(status.next), "message": "continuing from the last checkpoint"})
                return await chat.resume(session, principal, approve=True, parent=ctx.parent)
            if status.status == "paused":  # the worker died after the run paused, before it said so
                pending = [p.as_dict() for p in status.pending]
                return Outcome("paused", {"session_id": session, "next": list(status.next)}, pending)
            history = await chat.sessions.load(session)
            if status.status == "done" and history and history[-1].role == "assistant":
                return Outcome("succeeded", {"text": history[-1].content, "session_id": session})
        spec = AgentInput.model_validate(task.input)
        request = ChatRequest(
            model=task.model or "chimera",
            messages=spec.conversation,
            sampling=SamplingOverrides(max_tokens=spec.max_tokens, temperature=spec.temperature),
            session_id=session,
            interrupt_before=spec.interrupt_before,
            principal=principal,
        )
        return await chat.start(request, parent=ctx.parent)


def _transient(e: ChimeraError) -> bool:
    """An error another attempt may not meet: an engine restarting or saturated, Redis away."""
    if isinstance(e, InvalidSessionIdError | SessionNotFoundError):
        return False
    return isinstance(e, EngineUnavailableError | SessionError)


def _outcome(done: ChatOutcome, stream: ChatStream) -> Outcome:
    result: dict[str, Any] = {
        "text": done.text,
        "finish_reason": done.finish_reason,
        "usage": {
            "prompt_tokens": done.prompt_tokens,
            "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens,
        },
        "citations": [c.as_dict() for c in done.citations],
        "stop_reason": done.stop_reason,
        "session_id": stream.session_id,
        "expert": stream.decision.expert,
        "guardrail": stream.guardrail,
    }
    if done.paused:
        return Outcome("paused", {**result, "next": list(done.run.next)}, [p.as_dict() for p in done.run.pending])
    return Outcome("succeeded", result)


class IngestRunner:
    """Ingestion into the shared index, one at a time across the cluster (a Redis lock): the embedded graph store
    admits one writer."""

    def __init__(self, config: ChimeraConfig, redis_url: str, *, lock_timeout_s: float = 30.0) -> None:
        self.config = config
        self.redis = aioredis.Redis.from_url(redis_url)
        self.lock_timeout_s = lock_timeout_s

    async def run(self, ctx: TaskContext) -> AsyncIterator[Progress | Outcome]:
        spec = IngestInput.model_validate(ctx.task.input)
        tenant = spec.tenant or ctx.task.owner.tenant
        lock = self.redis.lock(INGEST_LOCK, timeout=self.lock_timeout_s)
        yield Progress("progress", {"files_done": 0, "files_total": None, "message": "waiting for the index"})
        while not await lock.acquire(blocking_timeout=1.0):
            ctx.check_cancelled()
        renew = asyncio.create_task(self._renew(lock))
        try:
            report = await asyncio.to_thread(self._ingest, spec, tenant, ctx)
        finally:
            renew.cancel()
            with contextlib.suppress(ChimeraError, aioredis.RedisError):
                await lock.release()
        yield Outcome("succeeded", report)

    async def _renew(self, lock: Any) -> None:
        while True:
            await asyncio.sleep(self.lock_timeout_s / 3)
            await lock.reacquire()

    def _ingest(self, spec: IngestInput, tenant: str, ctx: TaskContext) -> dict[str, Any]:
        from chimera.tools.search.factory import build_ingestor, open_index

        def on_file(done: int, total: int, outcome: "FileOutcome") -> None:
            ctx.report(
                "progress",
                {
                    "files_done": done,
                    "files_total": total,
                    "source": outcome.source,
                    "status": outcome.status,
                    "chunks": outcome.chunks,
                },
            )
            ctx.check_cancelled()

        search, index_dir = self.config.search, self.config.index_dir
        with open_index(search, index_dir) as index:
            ingestor = build_ingestor(search, index, index_dir)
            ingestor.progress = False
            paths = [Path(p) for p in spec.paths]
            if spec.delete:
                report = ingestor.delete(paths, tenant=tenant)
            else:
                report = ingestor.ingest(paths, tenant=tenant, acl=spec.acl, on_file=on_file)
        counts = {s: report.count(s) for s in ("added", "replaced", "unchanged", "removed", "skipped")}
        return {**counts, "tenant": tenant, "chunks_indexed": report.chunks_indexed, "seconds": report.seconds,
                "files": [dataclasses.asdict(o) for o in report.outcomes[:1000]]}  # fmt: skip


class EvalRunner:
    """`chimera eval router|guard|retrieval` as a task; the result is the same JSON report."""

    def __init__(self, config: ChimeraConfig) -> None:
        self.config = config

    async def run(self, ctx: TaskContext) -> AsyncIterator[Progress | Outcome]:
        spec = EvalInput.model_validate(ctx.task.input)
        yield Progress("progress", {"message": f"evaluating the {spec.eval} on {spec.data}"})
        try:
            report = await asyncio.to_thread(
                run_evaluation, self.config, spec.eval, Path(spec.data), max_queries=spec.max_queries
            )
        except (ChimeraError, ValueError, OSError) as e:  # the data is malformed: a retry reads the same bytes
            raise TaskRunError(f"the {spec.eval} evaluation failed: {e}") from e
        yield Outcome("succeeded", report)


def default_runners(
    config: ChimeraConfig, redis_url: str, engines: "Callable[[], Mapping[str, LLMEngine]]"
) -> dict[str, "Callable[[], Awaitable[TaskRunner]]"]:
    """The runner of each kind, each built when a worker first meets its kind; agent tasks get the whole chat
    service on `engines()` (the running engines' clients)."""

    async def agent() -> TaskRunner:
        from chimera.service import build_service

        service = await asyncio.to_thread(build_service, config, engines(), redis_url=redis_url)
        await service.astart()
        return AgentRunner(service.chat)

    async def ingest() -> TaskRunner:
        return IngestRunner(config, redis_url)

    async def evaluation() -> TaskRunner:
        return EvalRunner(config)

    return {"agent": agent, "ingest": ingest, "eval": evaluation}
