"""The load monitor: polled load per expert, failures (and engines that do not answer in time) that make an engine
unhealthy, logged once per streak and counted."""

import asyncio
import logging
import time

import pytest

from chimera.cluster.load import LoadMonitor
from chimera.models.engine.base import EngineHealth, EngineUnavailableError


class FlakyEngine:
    """Answers `health` from a script: an int is the running count, an exception is raised."""

    def __init__(self, script: list[int | Exception]) -> None:
        self.script = list(script)

    async def health(self) -> EngineHealth:
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return EngineHealth(model="flaky", healthy=True, running=step)


async def test_failed_polls_make_load_unknown_warn_once_per_streak_and_are_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    script: list[int | Exception] = [
        3,
        EngineUnavailableError("replica restarting"),
        TypeError("a bug"),
        5,
        KeyError("x"),
    ]
    monitor = LoadMonitor({"e": FlakyEngine(script)}, {"chat": "e"}, {"e": 8})
    caplog.set_level(logging.DEBUG, logger="chimera.cluster.load")

    await monitor.poll_once()
    assert monitor.snapshot()["chat"].ongoing == 3
    await monitor.poll_once()
    down = monitor.snapshot()["chat"]
    assert not down.healthy and down.saturated  # never reported as idle: the router spills, requests fail fast
    assert "restarting" in str(monitor.engine_health()["e"])
    await monitor.poll_once()  # the same streak: debug only
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "restarting" in warnings[0].getMessage()
    assert not warnings[0].exc_info  # an engine error needs no traceback
    await monitor.poll_once()
    assert monitor.snapshot()["chat"].ongoing == 5
    await monitor.poll_once()  # a new streak, and not an engine error: warned again, with the traceback
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and warnings[1].exc_info
    assert monitor.failures["e"] == 3


class HangingEngine:
    """A dead replica Serve has not replaced yet: `health` never answers."""

    async def health(self) -> EngineHealth:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


async def test_an_engine_that_never_answered_is_unhealthy_within_the_timeout_and_the_others_are_read() -> None:
    monitor = LoadMonitor(
        {"dead": HangingEngine(), "ok": FlakyEngine([2])}, {"chat": "dead", "code": "ok"}, {"dead": 4, "ok": 4},
        timeout_s=0.3,
    )  # fmt: skip
    started = time.monotonic()
    await monitor.poll_once()
    assert time.monotonic() - started < 1.0
    snapshot = monitor.snapshot()
    assert not snapshot["chat"].healthy and snapshot["code"].ongoing == 2 and snapshot["code"].healthy
    assert "no answer within 0.3 s" in str(monitor.engine_health()["dead"])


class SlowEngine:
    """Answers its first poll, then each only after `delay_s` (a busy replica on a loaded machine, or a hung one)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s, self.polls = delay_s, 0

    async def health(self) -> EngineHealth:
        self.polls += 1
        if self.polls > 1:
            await asyncio.sleep(self.delay_s)
        return EngineHealth(model="slow", healthy=True, running=1)


async def test_late_polls_keep_the_last_report_for_the_patience_then_make_the_engine_unhealthy() -> None:
    monitor = LoadMonitor({"e": SlowEngine(10)}, {"chat": "e"}, {"e": 4}, timeout_s=0.1, patience_s=0.5)
    await monitor.poll_once()
    started = time.monotonic()
    while time.monotonic() - started < 0.4:
        await monitor.poll_once()  # late, but within the patience: still the last report
        assert monitor.snapshot()["chat"].healthy and monitor.snapshot()["chat"].ongoing == 1
    while monitor.snapshot()["chat"].healthy:
        assert time.monotonic() - started < 1.5, "late polls never made the engine unhealthy"
        await monitor.poll_once()
    assert "no answer within 0.1 s" in str(monitor.engine_health()["e"])


async def test_a_failed_poll_makes_an_engine_unhealthy_at_once_however_patient() -> None:
    monitor = LoadMonitor({"e": FlakyEngine([2, EngineUnavailableError("gone")])}, {"chat": "e"}, {"e": 4},
                          patience_s=60)  # fmt: skip
    await monitor.poll_once()
    await monitor.poll_once()
    assert not monitor.snapshot()["chat"].healthy
