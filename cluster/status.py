"""What runs where on the Ray cluster: `chimera cluster status`.

Nodes and their resources come from Ray's GCS (`ray.nodes()`); each engine's replicas and their nodes from the
Serve controller (the same instance details `serve status` and the dashboard show); task workers from their
announcements in Redis and the queue's depth. Engine health is asked of each engine, within a timeout.
"""

import asyncio
from typing import Any

from chimera.cluster.deployments import DEPLOYMENT_NAME, app_name
from chimera.cluster.engines import app_statuses, engine_clients, enum_value, serve_details
from chimera.config import ChimeraConfig


def nodes() -> list[dict[str, Any]]:
    """Every node Ray knows: id, address, alive, its resources and its labels (Ray's own left out)."""
    import ray

    return [
        {
            "node_id": n["NodeID"],
            "address": n["NodeManagerAddress"],
            "alive": bool(n["Alive"]),
            "resources": {k: v for k, v in n.get("Resources", {}).items() if not k.startswith("node:")},
            "labels": {k: v for k, v in (n.get("Labels") or {}).items() if not k.startswith("ray.io/node")},
        }
        for n in ray.nodes()
    ]


def engine_replicas(config: ChimeraConfig) -> dict[str, dict[str, Any]]:
    """Each engine's Serve application: status, target replicas, and each replica's state, node and pid."""
    details, statuses = serve_details(), app_statuses(config)
    engines: dict[str, dict[str, Any]] = {}
    for name, spec in config.engines.items():
        deployment = details.get(app_name(name), {}).get("deployments", {}).get(DEPLOYMENT_NAME, {})
        engines[name] = {
            "status": statuses[name],
            "target_replicas": deployment.get("target_num_replicas"),
            "autoscaling": spec.autoscaling.model_dump() if spec.autoscaling else None,
            "replicas": [_replica(r) for r in deployment.get("replicas", [])],
        }
    return engines


def _replica(details: dict[str, Any]) -> dict[str, Any]:
    return {"id": details["replica_id"], "state": enum_value(details["state"]), "node_id": details.get("node_id"),
            "pid": details.get("pid")}  # fmt: skip


async def engine_health(config: ChimeraConfig, timeout_s: float = 2.0) -> dict[str, dict[str, Any]]:
    """Each deployed engine's own report (requests running), or why it did not answer in time."""

    async def one(engine: Any) -> dict[str, Any]:
        try:
            report = await asyncio.wait_for(engine.health(), timeout_s)
        except Exception as e:  # a status page reports every failure, whatever it is
            return {"healthy": False, "error": str(e) or f"no answer within {timeout_s:g} s"}
        return {"healthy": report.healthy, "running": report.running}

    deployed = [name for name, status in app_statuses(config).items() if status != "NOT_DEPLOYED"]
    clients = engine_clients(config, deployed) if deployed else {}
    reports = dict(zip(clients, await asyncio.gather(*(one(c) for c in clients.values())), strict=True))
    return {name: reports.get(name, {"healthy": False, "error": "not deployed"}) for name in config.engines}


async def task_status(config: ChimeraConfig, redis_url: str) -> dict[str, Any]:
    """The task queue's depth and the workers that announced themselves lately."""
    from chimera.service import task_queue

    queue = task_queue(config, redis_url)
    try:
        return {**(await queue.stats()), "worker_details": await queue.workers()}
    finally:
        await queue.close()


def cluster_status(config: ChimeraConfig, redis_url: str | None) -> dict[str, Any]:
    """The whole report: nodes, engines (replicas, placement, health), task queue and workers."""
    engines = engine_replicas(config)
    for name, health in asyncio.run(engine_health(config)).items():
        engines[name]["health"] = health
    status: dict[str, Any] = {"nodes": nodes(), "engines": engines}
    if redis_url is not None:
        status["tasks"] = asyncio.run(task_status(config, redis_url))
    return status
