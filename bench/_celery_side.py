"""The Celery side of bench/tasks.py: the Celery app, its one trivial task, and the driver of each phase.

It runs under the benchmark's own environment (`bench/.venv-celery`, Celery and redis-py only: Chimera's venv never
gets Celery), started by bench/tasks.py, and prints one JSON line with what it measured. The driver starts its own
`celery worker` processes (one per worker, `--pool=solo`: one task at a time in the worker's own process, no
prefork child and no IPC between the two) and stops them before it exits.

    python bench/_celery_side.py latency --socket /path/redis.sock --db 2 --workers 1 --samples 200
    python bench/_celery_side.py throughput --socket /path/redis.sock --db 2 --workers 4 --tasks 2000

Broker and result backend are the same Redis database (`redis+socket://…?virtual_host=N`).
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
from celery import Celery

HERE = Path(__file__).parent
SOCKET_ENV, DB_ENV, PREFETCH_ENV = "BENCH_REDIS_SOCKET", "BENCH_REDIS_DB", "BENCH_CELERY_PREFETCH"
WORKER_FLAGS = ["--pool=solo", "--concurrency=1", "--loglevel=WARNING", "--without-gossip", "--without-mingle",
                "--without-heartbeat"]  # fmt: skip


def _broker_url() -> str:
    return f"redis+socket://{os.environ.get(SOCKET_ENV, '/nonexistent')}?virtual_host={os.environ.get(DB_ENV, '0')}"


app = Celery("bench", broker=_broker_url(), backend=_broker_url())
app.conf.update(
    worker_prefetch_multiplier=int(os.environ.get(PREFETCH_ENV, "1")),  # like Chimera: one task taken at a time
    task_acks_late=False,  # the default: acknowledged when it starts
    task_ignore_result=False,  # results stored, as Chimera always stores a task's result and events
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop")
def noop() -> float:
    """The trivial task: when it started (host clock)."""
    return time.time()


def settings() -> dict[str, object]:
    """What this side ran with, for the report."""
    import celery
    import kombu

    return {
        "celery": celery.__version__, "kombu": kombu.__version__, "redis_py": redis.__version__,
        "pool": "solo", "concurrency_per_worker": 1, "worker_flags": WORKER_FLAGS,
        "worker_prefetch_multiplier": app.conf.worker_prefetch_multiplier, "task_acks_late": app.conf.task_acks_late,
        "result_backend": "redis (same server, same db)", "task_ignore_result": app.conf.task_ignore_result,
        "serializer": "json",
    }  # fmt: skip


class Workers:
    """N `celery worker` processes, in this driver's process group (bench/tasks.py stops the group if need be)."""

    def __init__(self, count: int, log_dir: Path) -> None:
        self.count = count
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> "Workers":
        env = {**os.environ, "PYTHONPATH": str(HERE)}
        for i in range(self.count):
            log = (self.log_dir / f"celery-w{i}.log").open("wb")
            command = [sys.executable, "-m", "celery", "-A", "_celery_side", "worker", "-n", f"w{i}@bench",
                       *WORKER_FLAGS]  # fmt: skip
            self.processes.append(subprocess.Popen(command, cwd=HERE, env=env, stdout=log, stderr=log))
        deadline = time.monotonic() + 90
        while len(app.control.ping(timeout=0.5)) < self.count:
            for p in self.processes:
                if p.poll() is not None:
                    raise RuntimeError(f"a celery worker exited with {p.returncode}; see {self.log_dir}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the celery workers did not answer a ping within 90 s; see {self.log_dir}")
        return self

    def send(self, sig: signal.Signals) -> None:
        for p in self.processes:
            p.send_signal(sig)

    def cpu_s(self) -> float:
        return sum(_process_cpu_s(p.pid) for p in self.processes)

    def __exit__(self, *_: object) -> None:
        for p in self.processes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # warm shutdown
        for p in self.processes:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def latency(samples: int, warmup: int) -> dict[str, object]:
    """Submit one task at a time to idle workers; submit→start and submit→result of each, in ms."""
    starts, roundtrips = [], []
    for i in range(warmup + samples):
        time.sleep(random.uniform(0.02, 0.05))  # the workers are idle, waiting on the broker
        submitted = time.time()
        started = noop.delay().get(timeout=30)
        done = time.time()
        if i >= warmup:
            starts.append((started - submitted) * 1000)
            roundtrips.append((done - submitted) * 1000)
    return {"starts_ms": [round(ms, 3) for ms in starts], "roundtrips_ms": [round(ms, 3) for ms in roundtrips]}


def throughput(tasks: int, warmup: int, workers: Workers) -> dict[str, object]:
    """Submit `tasks` trivial tasks as fast as one client can, tasks/s from the first submit until every result is
    stored; then the drain: `tasks` more submitted to stopped workers (SIGSTOP), tasks/s from their SIGCONT."""
    client = redis.Redis(unix_socket_path=os.environ[SOCKET_ENV], db=int(os.environ[DB_ENV]))

    def finished(keys: list[str]) -> None:
        """Until every result is stored; polling the newest (it ends about last), so the polls cost Redis little."""
        deadline = time.monotonic() + 600
        while keys:
            if client.exists(keys[-1]):
                with client.pipeline(transaction=False) as pipe:
                    for key in keys:
                        pipe.exists(key)
                    keys = [key for key, found in zip(keys, pipe.execute(), strict=True) if not found]
                continue
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(keys)} celery tasks did not finish within 600 s")
            time.sleep(0.01)

    try:
        for result in [noop.delay() for _ in range(warmup)]:
            result.get(timeout=30)
        begin = time.perf_counter()
        keys = [f"celery-task-meta-{noop.delay().id}" for _ in range(tasks)]
        submitted = time.perf_counter()
        finished(keys)
        elapsed = time.perf_counter() - begin
        workers.send(signal.SIGSTOP)
        keys = [f"celery-task-meta-{noop.delay().id}" for _ in range(tasks)]
        cpu = workers.cpu_s(), _redis_cpu_s(client)
        resumed = time.perf_counter()
        workers.send(signal.SIGCONT)
        finished(keys)
        drained = time.perf_counter() - resumed
        cpu = workers.cpu_s() - cpu[0], _redis_cpu_s(client) - cpu[1]
    finally:
        workers.send(signal.SIGCONT)
        client.close()
    per_task = {"workers": round(cpu[0] / tasks * 1000, 3), "redis": round(cpu[1] / tasks * 1000, 3)}
    return {"per_s": round(tasks / elapsed, 1), "elapsed_s": round(elapsed, 3), "submit_s": round(submitted - begin, 3),
            "drain_per_s": round(tasks / drained, 1), "drain_cpu_ms_per_task": per_task}  # fmt: skip


def _redis_cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _exit_on_sigterm(signum: int, _: object) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=["latency", "throughput", "settings"])
    parser.add_argument("--socket", type=Path, help="the redis-server's unix socket")
    parser.add_argument("--db", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--prefetch", type=int, default=1, help="worker_prefetch_multiplier")
    parser.add_argument("--log-dir", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so that a SIGTERM, too, stops what this process started
    if args.phase == "settings":
        print(json.dumps(settings()))
        return
    # the app reads these when the module is imported: by the workers, and here once more for the driver's app
    os.environ.update({SOCKET_ENV: str(args.socket), DB_ENV: str(args.db), PREFETCH_ENV: str(args.prefetch)})
    app.conf.broker_url = app.conf.result_backend = _broker_url()
    app.conf.worker_prefetch_multiplier = args.prefetch
    redis.Redis(unix_socket_path=str(args.socket), db=args.db).flushdb()
    with Workers(args.workers, args.log_dir) as workers:
        if args.phase == "latency":
            measured = latency(args.samples, args.warmup)
        else:
            measured = throughput(args.tasks, args.warmup, workers)
    print(json.dumps({"phase": args.phase, "workers": args.workers, **measured, "settings": settings()}))


if __name__ == "__main__":
    main()
