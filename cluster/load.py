"""Live load of each expert, read from its engine deployment: what the router's capacity rule looks at."""

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Mapping
from typing import Protocol

from chimera.models.engine.base import EngineError, EngineHealth
from chimera.models.router.base import ExpertLoad
from chimera.models.specs import ExpertName

log = logging.getLogger(__name__)


class HealthSource(Protocol):
    async def health(self) -> EngineHealth: ...


class LoadMonitor:
    """Polls every engine's `health()` (requests it holds now) and serves the newest snapshot per expert.

    Polling keeps the request path free of an extra round trip: the router reads a snapshot at most
    `interval_s` old, and /healthz reads the last reports instead of calling the engines. Engines are polled
    together, each within `timeout_s`. A poll that fails (the replica is dead, the deployment gone) makes the
    engine unhealthy at once, so requests for it fail fast instead of hanging. A poll that only comes too late
    is ambiguous (a hung replica, or a busy one on a loaded machine): the last report stands until polls have
    been late for `patience_s`, then the engine is unhealthy too. Before its first answer an engine's load is
    unknown (never saturated).
    """

    def __init__(
        self,
        engines: Mapping[str, HealthSource],
        expert_engines: Mapping[ExpertName, str],
        capacity: Mapping[str, int],
        interval_s: float = 0.2,
        timeout_s: float = 1.0,
        patience_s: float = 3.0,
    ) -> None:
        self._engines = dict(engines)
        self._expert_engines = dict(expert_engines)
        self._capacity = dict(capacity)
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.patience_s = patience_s
        self._late_since: dict[str, float] = {}  # when each engine whose polls come too late first missed one
        self._reports: dict[str, EngineHealth] = {}  # the last answer of each engine that answered its last poll
        self._errors: dict[str, str] = {}  # why each engine whose last poll failed is unhealthy
        self.failures: Counter[str] = Counter()  # failed polls per engine, since start
        self._task: asyncio.Task[None] | None = None

    def snapshot(self) -> dict[ExpertName, ExpertLoad]:
        """Each expert's engine load, for experts whose engine has been polled (unhealthy when the last failed)."""
        loads: dict[ExpertName, ExpertLoad] = {}
        for expert, engine in self._expert_engines.items():
            if (report := self._reports.get(engine)) is not None:
                loads[expert] = ExpertLoad(
                    ongoing=report.running, capacity=self._capacity[engine], healthy=report.healthy
                )
            elif engine in self._errors:
                loads[expert] = ExpertLoad(ongoing=0, capacity=self._capacity[engine], healthy=False)
        return loads

    def engine_health(self) -> dict[str, EngineHealth | str]:
        """Each polled engine's last report, or why its last poll failed (engines not polled yet are absent)."""
        return {**self._reports, **self._errors}

    async def poll_once(self) -> None:
        """Read every engine's load once, all together. A failure, or no answer within `timeout_s` for longer
        than `patience_s`, makes that engine unhealthy; the first failure of a streak is logged at warning (with
        the traceback when it is not an engine error: a bug here would otherwise go unseen), the rest at debug;
        all are counted (late polls within the patience are not failures)."""
        await asyncio.gather(*(self._poll(name, engine) for name, engine in self._engines.items()))

    async def _poll(self, name: str, engine: HealthSource) -> None:
        try:
            report = await asyncio.wait_for(engine.health(), self.timeout_s)
        except Exception as e:  # the poll loop must outlive any one failure; each is logged and counted
            if isinstance(e, TimeoutError) and name in self._reports:
                late_since = self._late_since.setdefault(name, time.monotonic())
                if time.monotonic() - late_since < self.patience_s:
                    log.debug("engine %s answered no poll within %g s; its last report stands", name, self.timeout_s)
                    return
            self._reports.pop(name, None)
            self.failures[name] += 1
            reason = str(e) or f"no answer within {self.timeout_s:g} s"
            if name in self._errors:
                log.debug("engine %s still unhealthy: %s", name, reason)
            else:
                log.warning(
                    "engine %s unhealthy: %s", name, reason, exc_info=not isinstance(e, EngineError | TimeoutError)
                )
            self._errors[name] = reason
            return
        self._late_since.pop(name, None)
        if self._errors.pop(name, None) is not None:
            log.info("engine %s answers again", name)
        self._reports[name] = report

    def start(self) -> None:
        """Start polling in the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="chimera-load-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self.interval_s)
