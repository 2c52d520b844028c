"""Chimera on a real multi-node Ray cluster on one host: `ray.cluster_utils.Cluster` starts a head and four
raylets, each its own Ray node with its own CPU and labels (`chimera/node-type` a or b stand in for two GPU node
types). Two SmolLM2 engines on vLLM-CPU: `alpha` (code, math) on type a, autoscaled 1-2 replicas; `beta` (text,
chat) on type b, one replica. `chimera deploy` deploys them once; two `chimera serve` processes attach.

The tests run in order on one cluster: placement, two API processes, one API stopping, autoscaling, node loss.
"""

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from chimera.client import Client
from chimera.cluster.ray_runtime import connect_ray, disconnect_ray
from chimera.cluster.status import engine_replicas
from chimera.config import ChimeraConfig, load_config
from chimera.server_process import ServerProcess, free_port

ROOT = Path(__file__).parents[2]
NODE_TYPE = "chimera/node-type"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})  # the head runs GCS and Serve's controller
    for node_type in ("a", "a", "b", "b"):
        cluster.add_node(num_cpus=1, labels={NODE_TYPE: node_type})
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def _node_types() -> dict[str, str]:
    """node id → node type of the live labelled nodes, as Ray reports them."""
    import ray

    return {n["NodeID"]: n["Labels"][NODE_TYPE] for n in ray.nodes() if n["Alive"] and NODE_TYPE in n["Labels"]}


@pytest.fixture(scope="module")
def config_path(cluster: Any, model_dir: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("cluster-data")
    raw = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    smollm2 = raw["engines"].pop("smollm2") | {"model": str(model_dir), "max_model_len": 2048,
                                               "kv_cache_memory_bytes": 256 * 2**20}  # fmt: skip
    scaling = {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1, "upscale_delay_s": 1,
               "downscale_delay_s": 5, "look_back_period_s": 2}  # fmt: skip
    raw["engines"] = {
        "alpha": smollm2 | {"label_selector": {NODE_TYPE: "a"}, "autoscaling": scaling},
        "beta": smollm2 | {"label_selector": {NODE_TYPE: "b"}},
    }
    for expert, engine in {"code": "alpha", "math": "alpha", "text": "beta", "chat": "beta"}.items():
        raw["experts"][expert]["engine"] = engine
    raw |= {"data_dir": str(data_dir), "redis": {"url": f"{redis_url}?db=9"}, "ray": {"address": cluster.address},
            "tracing": {"exporter": "store"}, "tasks": {"min_workers": 1, "max_workers": 1}}  # fmt: skip
    path = data_dir / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    load_config(path)
    return path


@pytest.fixture(scope="module")
def config(config_path: Path) -> Iterator[ChimeraConfig]:
    """The test's config, with this process connected to the cluster (to read where replicas run)."""
    loaded = load_config(config_path)
    connect_ray(loaded)
    yield loaded
    disconnect_ray()


def _cli(config_path: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": ""}
    return subprocess.run([sys.executable, "-m", "chimera.cli", "--config", str(config_path), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)  # fmt: skip


@pytest.fixture(scope="module")
def deployed(config_path: Path, config: ChimeraConfig) -> ChimeraConfig:
    done = _cli(config_path, "deploy")
    assert done.returncode == 0, done.stderr[-3000:]
    return config


@pytest.fixture(scope="module")
def apis(deployed: ChimeraConfig, config_path: Path) -> Iterator[list[ServerProcess]]:
    servers = [ServerProcess(config_path, free_port(), config_path.parent / f"api-{n}.log",
                             env={"OTEL_EXPORTER_OTLP_ENDPOINT": ""}) for n in range(2)]  # fmt: skip
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def _placement(config: ChimeraConfig) -> dict[str, list[tuple[str, str]]]:
    """engine → [(replica id, node id)] of its running replicas."""
    return {name: [(r["id"], r["node_id"]) for r in engine["replicas"] if r["state"] == "RUNNING"]
            for name, engine in engine_replicas(config).items()}  # fmt: skip


def _chat(url: str, model: str, text: str, session: str | None = None, **params: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 16, **params}
    headers = {"x-session-id": session} if session else {}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=180)


def test_deploy_places_each_engine_on_its_node_type_and_deploying_again_changes_nothing(
    deployed: ChimeraConfig, config_path: Path
) -> None:
    types = _node_types()
    placed = _placement(deployed)
    assert [types[node] for _, node in placed["alpha"]] == ["a"]
    assert [types[node] for _, node in placed["beta"]] == ["b"]

    again = _cli(config_path, "deploy")  # the same specs: the same deployment versions, the replicas stay
    assert again.returncode == 0, again.stderr[-3000:]
    assert _placement(deployed) == placed

    status = _cli(config_path, "cluster", "status", "--json", timeout=120)
    assert status.returncode == 0, status.stderr[-3000:]
    report = json.loads(status.stdout)
    assert {n["node_id"] for n in report["nodes"] if n["alive"]} >= set(types)
    assert {name: e["status"] for name, e in report["engines"].items()} == {"alpha": "RUNNING", "beta": "RUNNING"}
    assert all(e["health"]["healthy"] for e in report["engines"].values())
    assert report["engines"]["alpha"]["autoscaling"]["max_replicas"] == 2


def test_an_api_process_refuses_to_start_without_deployed_engines(config_path: Path, tmp_path: Path) -> None:
    raw = yaml.safe_load(config_path.read_text())
    raw["engines"]["gamma"] = raw["engines"]["beta"]
    raw["experts"]["text"]["engine"] = "gamma"
    path = tmp_path / "gamma.yaml"
    path.write_text(yaml.safe_dump(raw))
    server = ServerProcess(path, free_port(), tmp_path / "api.log", start_timeout_s=180)
    with pytest.raises(Exception, match=r"gamma \(not deployed\).*chimera deploy"):
        server.start()


def test_two_api_processes_serve_the_same_sessions_runs_and_tasks(apis: list[ServerProcess]) -> None:
    one, two = (server.url for server in apis)
    session = f"cluster-{uuid.uuid4().hex[:8]}"
    alone = _chat(one, "chimera-chat", "What did I just tell you?").json()["usage"]["prompt_tokens"]
    told = _chat(one, "chimera-chat", "My favourite colour is teal.", session)
    assert told.status_code == 200, told.text
    asked = _chat(two, "chimera-chat", "What did I just tell you?", session)  # the other process, the same session
    assert asked.status_code == 200 and asked.headers["x-session-id"] == session
    assert asked.json()["usage"]["prompt_tokens"] > alone + 5  # the turn stored through process one is in it

    run_session = f"cluster-run-{uuid.uuid4().hex[:8]}"
    paused = _chat(one, "chimera-react", "What is 12 * 12?", run_session, max_tokens=32, interrupt_before=["decide"])
    assert paused.json()["chimera"]["run"]["status"] == "paused"
    assert httpx.get(f"{two}/v1/sessions/{run_session}/run").json()["status"] == "paused"
    for _ in range(4):  # resumed through process two, from the checkpoint process one wrote
        resumed = httpx.post(f"{two}/v1/sessions/{run_session}/resume", json={"approve": True}, timeout=180)
        assert resumed.status_code == 200, resumed.text
        if "run" not in resumed.json().get("chimera", {}):
            break
    assert httpx.get(f"{one}/v1/sessions/{run_session}/run").json()["status"] == "done"

    with Client(one) as submitter:
        task = submitter.tasks.submit("agent", {"prompt": "Name a river.", "max_tokens": 16}, model="chimera-chat")
    with Client(two) as reader:
        done = reader.tasks.get(task.id).wait(timeout=300)
    assert done.status == "succeeded", done


def test_one_api_process_stopping_leaves_the_engines_serving_the_other(
    apis: list[ServerProcess], deployed: ChimeraConfig
) -> None:
    before = _placement(deployed)
    apis[0].stop()
    response = _chat(apis[1].url, "chimera-code", "Print hello in Python.")
    assert response.status_code == 200, response.text
    assert _placement(deployed) == before
    assert httpx.get(f"{apis[1].url}/healthz", timeout=10).status_code == 200


def _wait_for(what: str, check: Any, timeout_s: float, every_s: float = 1.0) -> float:
    """Seconds until `check()` is true."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout_s, f"{what}: not within {timeout_s:.0f} s"
        time.sleep(every_s)
    return time.monotonic() - start


def test_sustained_load_scales_an_engine_to_two_replicas_and_idle_scales_it_back(
    apis: list[ServerProcess], deployed: ChimeraConfig
) -> None:
    url, stop = apis[1].url, threading.Event()
    statuses: list[int] = []

    def load() -> None:
        while not stop.is_set():
            statuses.append(_chat(url, "chimera-code", "Write a long Python class for a bank account.",
                                  max_tokens=128).status_code)  # fmt: skip

    with ThreadPoolExecutor(4) as pool:
        for _ in range(4):
            pool.submit(load)
        try:
            _wait_for("a second alpha replica", lambda: len(_placement(deployed)["alpha"]) == 2, timeout_s=300)
        finally:
            stop.set()
    types = _node_types()
    assert [types[node] for _, node in _placement(deployed)["alpha"]] == ["a", "a"]
    assert len({node for _, node in _placement(deployed)["alpha"]}) == 2  # one CPU per node: one replica each
    assert 200 in statuses and set(statuses) <= {200, 503}, statuses  # 503: refused with Retry-After, never lost
    _wait_for("alpha back to one replica", lambda: len(_placement(deployed)["alpha"]) == 1, timeout_s=180)


def _stream(url: str, model: str, events: list[dict[str, Any]], started: threading.Event) -> str:
    """Stream one answer; every data event goes into `events`. Returns how it ended: done, error or http-<code>."""
    body = {"model": model, "messages": [{"role": "user", "content": "Tell me a long story about a lighthouse."}],
            "max_tokens": 400, "stream": True}  # fmt: skip
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=120) as response:
        if response.status_code != 200:
            return f"http-{response.status_code}"
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                return "done"
            event = json.loads(line[len("data: ") :])
            events.append(event)
            if any(choice["delta"].get("content") for choice in event.get("choices", [])):
                started.set()  # the engine is generating
            if "error" in event:
                return "error"
    return "cut"  # the connection closed without [DONE] or an error event


def test_losing_the_node_of_an_engine_replica_mid_stream(
    apis: list[ServerProcess], deployed: ChimeraConfig, cluster: Any
) -> None:
    url = apis[1].url
    ((_, victim_id),) = _placement(deployed)["beta"]
    victim = next(node for node in cluster.worker_nodes if node.node_id == victim_id)
    events: list[list[dict[str, Any]]] = [[] for _ in range(3)]
    started = [threading.Event() for _ in range(3)]
    with ThreadPoolExecutor(3) as pool:
        streams = [pool.submit(_stream, url, "chimera-chat", events[i], started[i]) for i in range(3)]
        assert all(s.wait(120) for s in started), "the streams never started"
        cluster.remove_node(victim, allow_graceful=False)
        killed_at = time.monotonic()
        endings = [s.result(timeout=120) for s in streams]
    cut_after_s = time.monotonic() - killed_at
    # every stream ended (none hangs), and one that was cut says so with an error event, never a silent close
    assert all(e in ("done", "error") for e in endings), endings
    for ending, stream in zip(endings, events, strict=True):
        if ending == "error":
            assert stream[-1]["error"]["message"] and stream[-1]["error"]["type"] != "internal_error", stream[-1]

    def answers() -> bool:
        return _chat(url, "chimera-chat", "Say hi.").status_code == 200

    recovered_s = _wait_for("a chat answer after the node loss", answers, timeout_s=300)
    types = _node_types()
    ((_, replacement),) = _placement(deployed)["beta"]
    assert replacement != victim_id and types[replacement] == "b"  # Serve placed it on the other type-b node
    print(f"\nnode loss: streams {endings}, all ended {cut_after_s:.1f} s after the kill; "
          f"first new answer {recovered_s:.1f} s after that")  # fmt: skip


async def test_a_memory_actor_whose_node_is_lost_restarts_on_another_and_its_session_goes_on(
    cluster: Any, config: ChimeraConfig, redis_url: str, tmp_path: Path
) -> None:
    """A tiny random Mamba-2 memory actor on one of two `memory_node` nodes; that node is killed mid-session. Ray
    restarts the actor on the other node (its restart policy), which loads the session's state from Redis."""
    import psutil

    from chimera.config import MemoryConfig
    from chimera.memory.long_context.mamba import MambaMemory
    from tests.unit import tiny_mamba

    nodes = [cluster.add_node(num_cpus=1, resources={"memory_node": 1}) for _ in range(2)]
    cluster.wait_for_nodes()
    checkpoint = tiny_mamba.save_mamba2(tmp_path / "mamba", seed=0)
    settings = MemoryConfig(checkpoint=checkpoint, read_chunk_tokens=4096, num_cpus=0.5, resources={"memory_node": 1})
    memory = MambaMemory.start(settings, f"{redis_url}?db=8", name="cluster-memory")
    try:
        before = await memory.read("survivor", tiny_mamba.text(2000, seed=3))
        (pid_before,) = [h.pid for h in await memory.health()]
        raylets = {node.all_processes["raylet"][0].process.pid: node for node in nodes}
        host = next(raylets[p.pid] for p in psutil.Process(pid_before).parents() if p.pid in raylets)
        cluster.remove_node(host, allow_graceful=False)
        _wait_for("the actor's process to go with its node", lambda: not psutil.pid_exists(pid_before), timeout_s=60)

        info = await memory.state_info("survivor")  # retried while Ray restarts the actor on the other node
        assert info.tokens_read == before.tokens_read and info.revision == before.revision
        assert [h.pid for h in await memory.health()] != [pid_before]  # a new process, on the one node left for it
        after = await memory.read("survivor", tiny_mamba.text(500, seed=4))
        assert after.tokens_read > before.tokens_read
    finally:
        await memory.close()
