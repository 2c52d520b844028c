"""Soak: N concurrent streaming clients against a real `chimera serve` for a while; errors, memory, file descriptors
and Redis keys over time.

Every client loops: a streamed `model=auto` request without a session id (anonymous, one-shot), with a short
answer. Each `--sample-s` the API process's RSS and open file descriptors (the process tree: API + raylet workers
show up separately in `/proc`; the API process is the one that grows if anything leaks there) and the Redis key
count are sampled. Prints JSON and writes it to bench/results/.

    python bench/soak.py --config configs/local.yaml [--clients 32] [--minutes 10] [--unnamed-ttl-s 120]

Goal (issue 21): 0 errors; flat RSS, file descriptors and Redis key counts (the last sample within a few percent of
the one after warm-up; Redis keys bounded by `redis.unnamed_session_ttl_s`, not growing with requests). One-shot
sessions' keys live for that TTL, so they can only level off after it: warm-up is the first sample past it
(`--unnamed-ttl-s` sets it in the soak's copy of the config, so a 10-minute run can show the plateau).
"""

import argparse
import asyncio
import json
import os
import platform
import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml

from chimera.config import load_config
from chimera.server_process import ServerProcess, free_port

RESULTS = Path(__file__).parent / "results"
PROMPTS = [
    "What is the capital of Japan?",
    "Give me one tip for a good night's sleep.",
    "What is 15% of 240?",
    "Write a haiku about autumn rain.",
    "How do I reverse a string in JavaScript?",
    "Summarize: the meeting moved the launch to March.",
]


def _process(pid: int) -> dict[str, int]:
    """RSS (KiB) and open file descriptors of one process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return {"rss_kib": rss, "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def _api_pid(port: int) -> int:
    """The process listening on `port` (the API: uvicorn in the Ray driver)."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
            inode = fields[9]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]" for fd in os.listdir(f"/proc/{pid}/fd")):
                return int(pid)
        except OSError:
            continue
    raise RuntimeError(f"no process listens on port {port}")


async def _client(http: httpx.AsyncClient, stop: float, counts: dict[str, int], errors: list[str]) -> None:
    while time.monotonic() < stop:
        body = {"model": "auto", "messages": [{"role": "user", "content": random.choice(PROMPTS)}],
                "max_tokens": 16, "stream": True}  # fmt: skip
        try:
            async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    errors.append(f"HTTP {response.status_code}: {(await response.aread())[:200]!r}")
                    continue
                async for line in response.aiter_lines():
                    if line.startswith('data: {"error"'):
                        errors.append(line[:200])
            counts["requests"] += 1
        except httpx.HTTPError as e:
            errors.append(f"{type(e).__name__}: {e}")


async def soak(
    url: str, pid: int, redis_url: str, clients: int, seconds: float, sample_s: float, warm_up_s: float
) -> dict[str, Any]:
    counts: dict[str, int] = {"requests": 0}
    errors: list[str] = []
    samples: list[dict[str, Any]] = []
    keys = redis.Redis.from_url(redis_url)
    started = time.monotonic()
    stop = started + seconds
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=clients)) as http:
        workers = [asyncio.create_task(_client(http, stop, counts, errors)) for _ in range(clients)]
        while time.monotonic() < stop:
            await asyncio.sleep(sample_s)
            samples.append({"t_s": round(time.monotonic() - started), "requests": counts["requests"],
                            "errors": len(errors), "redis_keys": keys.dbsize(), **_process(pid)})  # fmt: skip
            print(json.dumps(samples[-1]), flush=True)
        await asyncio.gather(*workers)
    keys.close()
    warm = next((x for x in samples if x["t_s"] >= warm_up_s), samples[-1])
    last = samples[-1]
    growth = {k: round(last[k] / warm[k], 3) if warm[k] else None for k in ("rss_kib", "fds", "redis_keys")}
    return {
        "clients": clients,
        "seconds": seconds,
        "requests": counts["requests"],
        "errors": len(errors),
        "first_errors": errors[:10],
        "warm_up_s": warm["t_s"],
        "growth_after_warmup": growth,
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/local.yaml")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--sample-s", type=float, default=30.0)
    parser.add_argument(
        "--unnamed-ttl-s", type=int, help="redis.unnamed_session_ttl_s for the soak (default: the config's)"
    )
    args = parser.parse_args()

    config = load_config(args.config)
    data_dir = config.data_dir.resolve() / "bench-soak"
    data_dir.mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load(Path(args.config).read_text())
    raw["data_dir"] = str(data_dir)
    if args.unnamed_ttl_s is not None:
        raw["redis"] = {**(raw.get("redis") or {}), "unnamed_session_ttl_s": args.unnamed_ttl_s}
    config_path = data_dir / "config.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    ttl = load_config(config_path).redis.unnamed_session_ttl_s
    port = free_port()
    with ServerProcess(config_path, port, data_dir / "server.log"):
        redis_url = config.redis.url or f"unix://{data_dir / 'redis' / 'redis.sock'}"
        result = asyncio.run(soak(f"http://127.0.0.1:{port}", _api_pid(port), redis_url, args.clients,
                                  args.minutes * 60, args.sample_s, warm_up_s=ttl + args.sample_s))  # fmt: skip
    result["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform()}
    result["when"] = datetime.now(UTC).isoformat(timespec="seconds")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"soak-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
