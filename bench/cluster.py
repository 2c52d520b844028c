"""Chimera on a simulated multi-node Ray cluster: replica scaling, one vs two API processes, recovery from a node kill.

A `ray.cluster_utils.Cluster` on this host: a head (no CPUs) and three raylets of one CPU each, labelled as one node
type. One SmolLM2 engine on vLLM-CPU serves every expert. Measured, side by side in one run:
- output tokens/s at concurrency C through one API process, with 1 and then 2 replicas of the engine (the scaling
  efficiency is the ratio over 2);
- TTFT p50/p99 at concurrency C through one API process and through two (the same requests, split);
- recovery after SIGKILL of the node of one of the two replicas: seconds from the kill to the first successful new
  request, to the first success through a fresh connection, and until Serve has a replacement replica running.

The nodes share this machine's cores (2 here), so replicas compete for the same CPUs: a second replica adds batch
slots, not compute. Writes bench/results/cluster-<when>.json and prints it.

    python bench/cluster.py --requests 32 --concurrency 8
"""

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from serving import RunStats, Sample, _stats, load_prompts

from chimera.cluster.ray_runtime import connect_ray, disconnect_ray
from chimera.cluster.status import engine_replicas
from chimera.config import load_config
from chimera.models import provision
from chimera.server_process import ServerProcess, free_port

ROOT = Path(__file__).parents[1]
RESULTS = ROOT / "bench" / "results"
LABEL = {"chimera/node-type": "cpu"}


def write_config(folder: Path, cluster_address: str, redis_url: str, replicas: int) -> Path:
    raw = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    engine = raw["engines"].pop("smollm2")
    model = provision.prepare("smollm2-135m-instruct", ROOT / ".chimera")
    engine |= {"model": str(model), "max_model_len": 2048, "kv_cache_memory_bytes": 256 * 2**20,
               "num_replicas": replicas, "label_selector": LABEL}  # fmt: skip
    raw["engines"] = {"solo": engine}
    for expert in raw["experts"].values():
        expert["engine"] = "solo"
    raw |= {"data_dir": str(folder), "redis": {"url": redis_url}, "ray": {"address": cluster_address},
            "tasks": {"min_workers": 0}, "tracing": {"exporter": "none"}}  # fmt: skip
    path = folder / f"cluster-{replicas}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def deploy(config_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "chimera.cli", "--config", str(config_path), "deploy"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"chimera deploy failed:\n{done.stderr[-3000:]}")


async def stream_one(http: httpx.AsyncClient, url: str, prompt: str, output_tokens: int) -> Sample:
    body = {"model": "chimera-chat", "messages": [{"role": "user", "content": prompt}], "temperature": 0.0,
            "max_tokens": output_tokens, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    began = time.perf_counter()
    ttft, tokens = 0.0, 0
    async with http.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise SystemExit(f"{url} answered {response.status_code}: {(await response.aread())[:300]!r}")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if "error" in event:
                raise SystemExit(f"{url}: stream error {event['error']}")
            if not ttft and any(c["delta"].get("content") for c in event.get("choices", [])):
                ttft = time.perf_counter() - began
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
    return Sample(ttft, tokens)


async def drive(urls: list[str], prompts: list[str], concurrency: int, output_tokens: int) -> RunStats:
    """All prompts at `concurrency` in flight, request i to `urls[i % len(urls)]`."""
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=64)) as http:

        async def gated(i: int, prompt: str) -> Sample:
            async with gate:
                return await stream_one(http, urls[i % len(urls)], prompt, output_tokens)

        await asyncio.gather(*(gated(i, p) for i, p in enumerate(prompts[: 2 * len(urls)])))  # warm-up
        began = time.perf_counter()
        samples = await asyncio.gather(*(gated(i, p) for i, p in enumerate(prompts)))
        return _stats(concurrency, list(samples), time.perf_counter() - began)


def replicas_running(config_path: Path) -> list[str]:
    """Node ids of the engine's running replicas."""
    replicas = engine_replicas(load_config(config_path))["solo"]["replicas"]
    return [r["node_id"] for r in replicas if r["state"] == "RUNNING"]


def recovery(cluster: Any, url: str, config_path: Path) -> dict[str, float]:
    """Kill the node of one replica; time until a new request succeeds, and until a replacement runs."""
    victim_id = replicas_running(config_path)[0]
    victim = next(node for node in cluster.worker_nodes if node.node_id == victim_id)
    body = {"model": "chimera-chat", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8}
    cluster.remove_node(victim, allow_graceful=False)
    killed = time.monotonic()
    first_ok, failures = None, 0
    while first_ok is None and time.monotonic() - killed < 600:
        try:
            if httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120).status_code == 200:
                first_ok = time.monotonic() - killed
                break
        except httpx.HTTPError:
            pass
        failures += 1
        time.sleep(0.2)
    # Serve lists the lost replica as running until it notices; the replacement is a second one on a live node
    while len([n for n in replicas_running(config_path) if n != victim_id]) < 2 and time.monotonic() - killed < 900:
        time.sleep(1)
    replaced = time.monotonic() - killed
    return {"first_success_s": first_ok if first_ok is not None else float("nan"), "failed_attempts": failures,
            "replacement_running_s": replaced}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=Path, help="JSONL with a `text` field (default: a built-in set)")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from ray.cluster_utils import Cluster

    from chimera.memory.redis_server import EmbeddedRedis

    prompts = load_prompts(args.prompts, args.requests, args.seed)
    c, tokens = args.concurrency, args.output_tokens
    with tempfile.TemporaryDirectory(prefix="chimera-cluster-bench-") as tmp:
        folder = Path(tmp)
        redis = EmbeddedRedis(folder / "redis")
        redis_url = redis.start()
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        for _ in range(3):
            cluster.add_node(num_cpus=1, labels=LABEL)
        cluster.wait_for_nodes()
        one_replica, two_replicas = (write_config(folder, cluster.address, redis_url, n) for n in (1, 2))
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = ""
        connect_ray(load_config(one_replica))
        apis = [ServerProcess(one_replica, free_port(), folder / f"api-{n}.log") for n in range(2)]
        try:
            deploy(one_replica)
            for api in apis:
                api.start()
            urls = [api.url for api in apis]
            single = asyncio.run(drive(urls[:1], prompts, c, tokens))
            split = asyncio.run(drive(urls, prompts, c, tokens))
            deploy(two_replicas)  # the API processes keep their handles: Serve routes over both replicas
            deadline = time.monotonic() + 900
            while len(replicas_running(two_replicas)) < 2:
                if time.monotonic() > deadline:
                    raise SystemExit("the second replica never started")
                time.sleep(1)
            doubled = asyncio.run(drive(urls[:1], prompts, c, tokens))
            recovered = recovery(cluster, urls[0], two_replicas)
        finally:
            for api in apis:
                api.stop()
            disconnect_ray()
            cluster.shutdown()
            redis.stop()

    report = {
        "benchmark": "cluster",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "nodes": "head (0 CPU) + 3 raylets of 1 CPU on one host: the nodes share its cores",
        },
        "model": "SmolLM2-135M-Instruct (vLLM-CPU, fp32)",
        "requests": args.requests,
        "output_tokens": tokens,
        "concurrency": c,
        "one_api_one_replica": asdict(single),
        "two_apis_one_replica": asdict(split),
        "one_api_two_replicas": asdict(doubled),
        "replica_scaling_efficiency": doubled.output_tokens_per_s / (2 * single.output_tokens_per_s),
        "two_apis_vs_one_ttft_p50_ratio": split.ttft_p50_ms / single.ttft_p50_ms,
        "node_kill_recovery": recovered,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"cluster-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
