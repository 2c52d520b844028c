"""Live load of each expert, read from its engine deployment: what the router's capacity rule looks at."""

import asyncio
import contextlib
import logging
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
    `interval_s` old. An engine that cannot be read counts as unknown (never saturated), not as idle.
    """

    def __init__(
        self,
        engines: Mapping[str, HealthSource],
        expert_engines: Mapping[ExpertName, str],
        capacity: Mapping[str, int],
        interval_s: float = 0.2,
    ) -> None:
        self._engines = dict(engines)
        self._expert_engines = dict(expert_engines)
        self._capacity = dict(capacity)
        self.interval_s = interval_s
        self._ongoing: dict[str, int] = {}
        self.failures: Counter[str] = Counter()  # failed polls per engine, since start
        self._failing: set[str] = set()  # engines whose last poll failed (warned once until they answer again)
        self._task: asyncio.Task[None] | None = None

    def snapshot(self) -> dict[ExpertName, ExpertLoad]:
        """Each expert's engine load, for experts whose engine answered the last poll."""
        return {
            expert: ExpertLoad(ongoing=self._ongoing[engine], capacity=self._capacity[engine])
            for expert, engine in self._expert_engines.items()
            if engine in self._ongoing
        }

    async def poll_once(self) -> None:
        """Read every engine's load once. A failure makes that engine's load unknown; the first failure of a
        streak is logged at warning (with the traceback when it is not an engine error: a bug here would
        otherwise leave load unknown forever), the rest at debug; all are counted in `failures`."""
        for name, engine in self._engines.items():
            try:
                self._ongoing[name] = (await engine.health()).running
            except Exception as e:  # the poll loop must outlive any one failure; each is logged and counted
                self._ongoing.pop(name, None)
                self.failures[name] += 1
                if name in self._failing:
                    log.debug("load of engine %s still unknown: %s", name, e)
                else:
                    self._failing.add(name)
                    log.warning("load of engine %s unknown: %s", name, e, exc_info=not isinstance(e, EngineError))
            else:
                if name in self._failing:
                    self._failing.discard(name)
                    log.info("load of engine %s known again", name)

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
