"""Durable tasks: Chimera's queue beside Celery on the same redis-server, same trivial task, same worker count.

One embedded redis-server for the whole run; Chimera uses database 1, Celery database 2, each emptied before a
phase. Workers are separate processes for both, each running one task at a time: Chimera's `TaskWorker(...,
concurrency=1)` (this file, run as `_worker`), Celery's `celery worker --pool=solo` (bench/_celery_side.py, run
under its own environment `bench/.venv-celery`, so Chimera's venv never gets Celery). The trivial task records
when it started (host clock); submit→start is that minus the submitter's clock just before the submit call.

- latency: idle workers, one task at a time (a random 20-50 ms pause before each): p50/p99 of submit→start, and
  the median of submit→result seen by the client (`roundtrip_p50`); taken in `--repeats` chunks, the two systems
  alternating, each chunk on fresh workers after a warm-up.
- throughput: for each worker count, one client submits `--tasks` tasks in a loop (sequentially, as Celery's
  `delay()` does) and the clock runs from the first submit until every task has finished (Chimera: its tenant's
  stream is empty, every entry completed; Celery: every result is stored). Then the drain, the workers' own
  rate without the client in the way: the workers are stopped (SIGSTOP), `--tasks` more are submitted, and the
  clock runs from their SIGCONT until every task has finished. `--repeats` runs per worker count, Chimera and
  Celery alternating (the machine may be shared): the medians, and every run; the ratios are medians of each
  pair's. Also the CPU each task took while draining, in the workers and in redis-server (`/proc`, `INFO cpu`),
  which a busy machine distorts less than it does the rates.
- kill (Chimera only): two workers, `lease_s` = `--lease-s`; a task that sleeps 60 s; the worker running it is
  SIGKILLed (at a different point of its heartbeat cycle each time, after the first heartbeat); the time until
  the task's `retry` event (the Redis stream id of the event: server clock, same host).

    .venv/bin/python bench/tasks.py [--workers 1 2 4] [--tasks 2000] [--repeats 5] [--latency-samples 200]
                                    [--skip-celery] [--json bench/results/tasks.json] [--quick]

Goals (issue 14): submit→start p50 <= 10 ms; throughput >= Celery's at every worker count; SIGKILL → running
again within lease + 2 s.
"""

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import redis

from chimera.identity.principal import Principal
from chimera.memory.redis_server import EmbeddedRedis
from chimera.tasks.model import TaskRecord
from chimera.tasks.queue import TaskQueue
from chimera.tasks.worker import Outcome, Progress, TaskContext, TaskRunner, TaskWorker

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CELERY_PYTHON = HERE / ".venv-celery" / "bin" / "python"
BENCH = Principal("bench", tenant="bench")
CHIMERA_DB, CELERY_DB = 1, 2
THROUGHPUT_WARMUP = 20


class NoopRunner:
    """The trivial task: it ends at once, its result saying when it started."""

    async def run(self, ctx: TaskContext) -> AsyncIterator[Progress | Outcome]:
        yield Outcome("succeeded", {"started_at": time.time()})


class SleepRunner:
    """A task that outlives its worker in the kill phase."""

    async def run(self, ctx: TaskContext) -> AsyncIterator[Progress | Outcome]:
        await asyncio.sleep(60)
        yield Outcome("succeeded", {"started_at": time.time()})


async def _worker(url: str, name: str, lease_s: float) -> None:
    """One worker process: runs `noop` and `sleep` tasks until SIGTERM."""

    async def noop() -> TaskRunner:
        return NoopRunner()

    async def sleep() -> TaskRunner:
        return SleepRunner()

    queue = TaskQueue(url, lease_s=lease_s, max_attempts=3)
    worker = TaskWorker(queue, {"noop": noop, "sleep": sleep}, name=name, concurrency=1)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.stop)
    print("ready", flush=True)
    await worker.run()
    await queue.close()


class ChimeraWorkers:
    """N worker processes of this file; stopped (SIGTERM, then SIGKILL) on exit, whatever happens."""

    def __init__(self, url: str, count: int, lease_s: float, log_dir: Path) -> None:
        self.url, self.count, self.lease_s, self.log_dir = url, count, lease_s, log_dir
        self.processes: dict[int, subprocess.Popen[str]] = {}

    def __enter__(self) -> "ChimeraWorkers":
        try:
            for i in range(self.count):
                log = (self.log_dir / f"chimera-w{i}.log").open("wb")
                command = [sys.executable, str(Path(__file__).resolve()), "_worker", self.url, f"bench-w{i}",
                           str(self.lease_s)]  # fmt: skip
                p = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
                self.processes[p.pid] = p
            for p in self.processes.values():
                if p.stdout is None or p.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"a chimera worker did not start; see {self.log_dir}")
        except BaseException:
            self.__exit__()
            raise
        return self

    def send(self, sig: signal.Signals) -> None:
        for p in self.processes.values():
            p.send_signal(sig)

    def cpu_s(self) -> float:
        return sum(process_cpu_s(pid) for pid in self.processes)

    def kill(self, pid: int) -> None:
        self.processes[pid].send_signal(signal.SIGKILL)
        self.processes.pop(pid).wait()

    def __exit__(self, *_: object) -> None:
        for p in self.processes.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # the worker claims nothing more and ends when its task has
        for p in self.processes.values():
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.processes.clear()


def _record(kind: str) -> TaskRecord:
    return TaskRecord(id=uuid.uuid4().hex, kind=kind, owner=BENCH, input={}, created_at=time.time())  # type: ignore[arg-type]


async def _submit(queue: TaskQueue, kind: str) -> tuple[str, float]:
    """Enqueue one task; its id and the submitter's clock just before the call."""
    record = _record(kind)
    submitted = time.time()
    await queue.submit(record, "-")
    return record.id, submitted


async def chimera_latency(url: str, samples: int, warmup: int) -> dict[str, Any]:
    """Submit→start (and submit→result seen) of one task at a time on idle workers, each in ms."""
    queue = TaskQueue(url)
    starts, roundtrips = [], []
    try:
        for i in range(warmup + samples):
            await asyncio.sleep(random.uniform(0.02, 0.05))  # the workers are idle, blocked on the bell
            task_id, submitted = await _submit(queue, "noop")
            async for event in await queue.follow(task_id, BENCH):
                if event is not None and event.terminal:
                    done = time.time()
                    if i >= warmup:
                        starts.append((event.data["started_at"] - submitted) * 1000)
                        roundtrips.append((done - submitted) * 1000)
                    break
    finally:
        await queue.close()
    return {"starts_ms": starts, "roundtrips_ms": roundtrips}


async def chimera_throughput(url: str, tasks: int, workers: "ChimeraWorkers") -> dict[str, Any]:
    """`tasks` trivial tasks from one client, tasks/s from the first submit until every one has finished; then
    the drain: `tasks` more submitted to stopped workers (SIGSTOP), tasks/s from their SIGCONT until all finished."""
    queue = TaskQueue(url)
    stream = f"{queue.prefix}tasks:q:{BENCH.tenant}:normal"

    async def finished() -> None:  # every entry of the stream completed (and deleted)
        deadline = time.monotonic() + 600
        while await queue.redis.xlen(stream):
            if time.monotonic() > deadline:
                raise RuntimeError("the chimera tasks did not all finish within 600 s; see the worker logs")
            await asyncio.sleep(0.01)

    try:
        ids = [(await _submit(queue, "noop"))[0] for _ in range(THROUGHPUT_WARMUP)]
        await finished()
        begin = time.perf_counter()
        ids += [(await _submit(queue, "noop"))[0] for _ in range(tasks)]
        submitted = time.perf_counter()
        await finished()
        elapsed = time.perf_counter() - begin
        workers.send(signal.SIGSTOP)
        ids += [(await _submit(queue, "noop"))[0] for _ in range(tasks)]
        cpu = workers.cpu_s(), _redis_cpu_s(await queue.redis.info("cpu"))
        resumed = time.perf_counter()
        workers.send(signal.SIGCONT)
        await finished()
        drained = time.perf_counter() - resumed
        cpu = workers.cpu_s() - cpu[0], _redis_cpu_s(await queue.redis.info("cpu")) - cpu[1]
        async with queue.redis.pipeline(transaction=False) as pipe:
            for task_id in ids:
                pipe.hget(queue._record(task_id), "status")
            statuses = await pipe.execute()
    finally:
        workers.send(signal.SIGCONT)
        await queue.close()
    if statuses.count(b"succeeded") != len(statuses):
        raise RuntimeError(f"only {statuses.count(b'succeeded')} of {len(statuses)} chimera tasks succeeded")
    per_task = {"workers": round(cpu[0] / tasks * 1000, 3), "redis": round(cpu[1] / tasks * 1000, 3)}
    return {"per_s": round(tasks / elapsed, 1), "elapsed_s": round(elapsed, 3), "submit_s": round(submitted - begin, 3),
            "drain_per_s": round(tasks / drained, 1), "drain_cpu_ms_per_task": per_task}  # fmt: skip


def heartbeat_every_s(lease_s: float) -> float:
    """How often a `TaskWorker` renews a lease (as `TaskWorker._keep_lease` does): the kill phase spreads its kills
    over one such cycle."""
    return max(0.05, min(1.0, lease_s / 3))


def _redis_cpu_s(info: dict[str, Any]) -> float:
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def chimera_kill(url: str, lease_s: float, reps: int, log_dir: Path) -> list[dict[str, Any]]:
    """SIGKILL the worker running a task; how long until the task runs again (its `retry` event).

    The lease runs from the last heartbeat, and an idle worker claims once a second (its wait on the bell times
    out): each kill comes at another point after the first heartbeat, and the submit at another point of the idle
    workers' one-second cycle (they start together, which would otherwise align it with the claim)."""
    samples = []
    heartbeat_s = heartbeat_every_s(lease_s)
    for rep in range(reps):
        redis.Redis.from_url(url).flushdb()
        with ChimeraWorkers(url, 2, lease_s, log_dir) as workers:
            queue = TaskQueue(url, lease_s=lease_s)
            try:
                phase_s = (reps - rep - 0.5) / reps
                await asyncio.sleep(phase_s)
                task_id, _ = await _submit(queue, "sleep")
                started = await _event(queue, task_id, "started", timeout_s=30)
                delay_s = heartbeat_s * (1 + (rep + 0.1) / reps)  # from just after the first heartbeat
                await asyncio.sleep(delay_s)
                killed_at = time.time()
                workers.kill(started.data["pid"])
                retry = await _event(queue, task_id, "retry", timeout_s=lease_s + 60)
            finally:
                await queue.close()
                for pid in list(workers.processes):  # the survivor sleeps through the task: no waiting for it
                    workers.kill(pid)
        if retry.data["pid"] == started.data["pid"]:
            raise RuntimeError("the task ran again on the worker that was killed")
        rerun_s = int(retry.id.split("-")[0]) / 1000 - killed_at  # the event's id: Redis's clock, in ms
        samples.append({"kill_to_rerun_s": round(rerun_s, 3), "killed_after_start_s": round(delay_s, 3),
                        "submitted_after_workers_ready_s": round(phase_s, 3), "attempt": retry.attempt})  # fmt: skip
    return samples


async def _event(queue: TaskQueue, task_id: str, type_: str, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for event in await queue.events(task_id):
            if event.type == type_:
                return event
        await asyncio.sleep(0.02)
    raise RuntimeError(f"task {task_id} had no {type_} event within {timeout_s:g} s")


def celery(phase: str, socket: Path, log_dir: Path, **options: int) -> dict[str, Any]:
    """One phase of bench/_celery_side.py under its environment; it starts and stops its own workers (this
    process stops their whole process group too, should it be interrupted)."""
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    command = [str(CELERY_PYTHON), str(HERE / "_celery_side.py"), phase, f"--socket={socket}", f"--db={CELERY_DB}",
               f"--log-dir={log_dir}", *flags]  # fmt: skip
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)  # fmt: skip
    try:
        out, err = driver.communicate(timeout=900)
    finally:
        _stop_group(driver)
    if driver.returncode != 0:
        raise RuntimeError(f"the celery side failed ({driver.returncode}):\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def _stop_group(driver: subprocess.Popen[str]) -> None:
    """The driver and any celery worker it left behind (they share its process group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(driver.pid, sig)
        except ProcessLookupError:
            break
        try:
            driver.wait(timeout=10)
        except subprocess.TimeoutExpired:
            continue
        time.sleep(0.5 if sig == signal.SIGTERM else 0)  # its workers' warm shutdown


def latency_summary(samples: dict[str, list[float]]) -> dict[str, Any]:
    """p50/p99 of submit→start, and the median of submit→result seen, in ms."""
    ordered = sorted(samples["starts_ms"])
    return {"p50": round(statistics.median(ordered), 3), "p99": round(ordered[int(0.99 * (len(ordered) - 1))], 3),
            "n": len(ordered), "roundtrip_p50": round(statistics.median(samples["roundtrips_ms"]), 3)}  # fmt: skip


def _exit_on_sigterm(signum: int, _: object) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="worker counts for throughput")
    parser.add_argument("--latency-workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5, help="throughput runs per worker count (medians)")
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20, help="latency warm-up tasks")
    parser.add_argument("--lease-s", type=float, default=5.0, help="the kill phase's lease")
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--skip-celery", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 200 tasks, 50 samples, 1 kill")
    parser.add_argument("--json", type=Path, default=RESULTS / "tasks.json")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so that a SIGTERM, too, stops what this process started
    if args.quick:
        args.tasks, args.latency_samples, args.warmup, args.kills, args.repeats = 200, 50, 10, 1, 1
    if not args.skip_celery and not CELERY_PYTHON.exists():
        parser.error(f"no {CELERY_PYTHON}: python -m venv bench/.venv-celery && "
                     "bench/.venv-celery/bin/pip install 'celery[redis]'  (or pass --skip-celery)")  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="chimera-bench-tasks-") as tmp:
        work = Path(tmp)
        server = EmbeddedRedis(work / "redis")
        url = f"{server.start()}?db={CHIMERA_DB}"
        try:
            report = run(args, url, server.socket, work)
        finally:
            server.stop()
    print_table(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {args.json}")


def run(args: argparse.Namespace, url: str, socket: Path, work: Path) -> dict[str, Any]:
    """Every phase; Chimera and Celery alternating at each worker count."""
    load_at_start = os.getloadavg()[0]  # the machine may be shared: the load beside the benchmark's own
    flush = redis.Redis.from_url(url).flushdb
    with_celery = not args.skip_celery
    latency: dict[str, Any] = {"chimera": {}, "celery": {}}
    repeats = range(args.repeats)
    chunks = [args.latency_samples // args.repeats + (i < args.latency_samples % args.repeats) for i in repeats]
    for n in args.latency_workers:
        our_ms: dict[str, list[float]] = {"starts_ms": [], "roundtrips_ms": []}
        their_ms: dict[str, list[float]] = {"starts_ms": [], "roundtrips_ms": []}
        for chunk in chunks:  # the samples in chunks, alternating, each with its own warm-up
            flush()
            with ChimeraWorkers(url, n, 30.0, work):
                for key, values in asyncio.run(chimera_latency(url, chunk, args.warmup)).items():
                    our_ms[key] += values
            if with_celery:
                measured = celery("latency", socket, work, workers=n, samples=chunk, warmup=args.warmup)
                for key in their_ms:
                    their_ms[key] += measured[key]
        latency["chimera"][str(n)] = latency_summary(our_ms)
        latency["celery"][str(n)] = latency_summary(their_ms) if with_celery else None
        print(f"latency, {n} worker(s): done", file=sys.stderr)
    throughput = []
    for n in args.workers:
        ours, theirs = [], []
        for _ in range(args.repeats):  # alternating, so that a change in the machine's load hits both
            flush()
            with ChimeraWorkers(url, n, 30.0, work) as workers:
                ours.append(asyncio.run(chimera_throughput(url, args.tasks, workers)))
            if with_celery:
                theirs.append(celery("throughput", socket, work, workers=n, tasks=args.tasks))
        throughput.append(throughput_row(n, ours, theirs))
        print(f"throughput, {n} worker(s): done", file=sys.stderr)
    kills = asyncio.run(chimera_kill(url, args.lease_s, args.kills, work))
    redis_version = redis.Redis.from_url(url).info("server")["redis_version"]
    return {
        "latency_ms": latency,
        "throughput": throughput,
        "tasks": args.tasks,
        "repeats": args.repeats,
        "kill_to_rerun_s": {
            "lease_s": args.lease_s,
            "heartbeat_s": heartbeat_every_s(args.lease_s),
            "idle_claim_every_s": 1.0,
            "samples": kills,
            "max_s": max(k["kill_to_rerun_s"] for k in kills),
        },
        "machine": {
            "loadavg_1m": {"start": round(load_at_start, 2), "end": round(os.getloadavg()[0], 2)},
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "redis_server": redis_version,
        },
        "chimera": {
            "concurrency_per_worker": 1,
            "lease_s": 30.0,
            "submit": "TaskQueue.submit, one await at a time",
            "task_kind": "noop (a runner that yields its Outcome at once)",
        },
        "celery": celery("settings", socket, work) if with_celery else None,
    }


def throughput_row(workers: int, ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> dict[str, Any]:
    """One worker count's medians over the repeats (and every run's rates); a ratio is the median of the ratios of
    each Chimera run to the Celery run right after it, the fairest on a machine whose load changes."""
    row: dict[str, Any] = {"workers": workers}
    for system, runs in (("chimera", ours), ("celery", theirs)):
        for key in ("per_s", "drain_per_s", "submit_s", "elapsed_s"):
            row[f"{system}_{key}"] = round(statistics.median(r[key] for r in runs), 3) if runs else None
        cpu = [r["drain_cpu_ms_per_task"] for r in runs]
        row[f"{system}_drain_cpu_ms_per_task"] = (
            {part: round(statistics.median(c[part] for c in cpu), 3) for part in ("workers", "redis")} if runs else None
        )
        row[f"{system}_runs"] = [{k: r[k] for k in ("per_s", "drain_per_s", "drain_cpu_ms_per_task")} for r in runs]
    for key, ratio in (("per_s", "ratio"), ("drain_per_s", "drain_ratio")):  # of each pair of adjacent runs
        pairs = [a[key] / b[key] for a, b in zip(ours, theirs, strict=False)]
        row[ratio] = round(statistics.median(pairs), 2) if pairs else None
        row[f"{ratio}_runs"] = [round(r, 2) for r in pairs]
    return row


def print_table(report: dict[str, Any]) -> None:
    def cell(value: object) -> str:
        return "-" if value is None else str(value)

    print("\nsubmit→start latency, idle workers (ms)       p50      p99   roundtrip p50    n")
    for system, by_workers in report["latency_ms"].items():
        for n, m in by_workers.items():
            if m is None:
                continue
            print(f"  {system:8} {n} worker(s){'':22}{m['p50']:8.2f} {m['p99']:8.2f} {m['roundtrip_p50']:11.2f}"
                  f" {m['n']:6}")  # fmt: skip
    print(f"\nthroughput, {report['tasks']} trivial tasks (tasks/s, medians of {report['repeats']} runs)")
    print("  workers   chimera   celery  ratio   | drain: chimera   celery  ratio  | submit s: chimera  celery")
    for row in report["throughput"]:
        print(
            f"  {row['workers']:7} {row['chimera_per_s']:9} {cell(row['celery_per_s']):>8} {cell(row['ratio']):>6}"
            f"   |  {row['chimera_drain_per_s']:13} {cell(row['celery_drain_per_s']):>8} {cell(row['drain_ratio']):>6}"
            f"  |  {row['chimera_submit_s']:15} {cell(row['celery_submit_s']):>7}"
        )
    print("\nCPU per task while draining (ms, medians)   chimera: workers  redis   | celery: workers  redis")
    for row in report["throughput"]:
        ours, theirs = row["chimera_drain_cpu_ms_per_task"], row["celery_drain_cpu_ms_per_task"] or {}
        print(f"  {row['workers']} worker(s){'':33}{ours['workers']:7} {ours['redis']:6}   |"
              f" {cell(theirs.get('workers')):>14} {cell(theirs.get('redis')):>6}")  # fmt: skip
    kill = report["kill_to_rerun_s"]
    times = ", ".join(f"{s['kill_to_rerun_s']:.2f}" for s in kill["samples"])
    print(f"\nSIGKILL → running again (lease {kill['lease_s']:g} s): {times} s")


if __name__ == "__main__":
    if sys.argv[1:2] == ["_worker"]:
        asyncio.run(_worker(sys.argv[2], sys.argv[3], float(sys.argv[4])))
    else:
        main()
