"""`chimera deploy` and `chimera cluster status`: put the engines on a Ray cluster, and see what runs where."""

import argparse
import json

import yaml

from chimera.config import ChimeraConfig
from chimera.errors import ConfigError


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register `deploy` and `cluster status` on the top-level subparsers."""
    p = sub.add_parser("deploy", help="deploy (or update) the config's engines on the Ray cluster, then exit")
    p.add_argument(
        "--serve-config", action="store_true", help="print the Ray Serve config instead (for KubeRay's serveConfigV2)"
    )
    p.add_argument("--delete", action="store_true", help="delete the config's engines from the cluster")
    p.set_defaults(func=_deploy)

    p = sub.add_parser("cluster", help="the Ray cluster Chimera runs on")
    cluster_sub = p.add_subparsers(dest="cluster_command", required=True)
    status = cluster_sub.add_parser("status", help="nodes, engine replicas and where they run, task queue, health")
    status.add_argument("--json", action="store_true", help="print the report as JSON")
    status.set_defaults(func=_status)


def _deploy(config: ChimeraConfig, args: argparse.Namespace) -> int:
    from chimera.cluster.engines import serve_config, start_engines, stop_engines
    from chimera.cluster.ray_runtime import ray_connection

    if args.serve_config:
        print(yaml.safe_dump(serve_config(config), sort_keys=False), end="")
        return 0
    if config.ray.address is None:
        raise ConfigError("`chimera deploy` puts the engines on a running Ray cluster: set ray.address (or "
                          "CHIMERA_RAY_ADDRESS); on one machine `chimera serve` deploys them itself")  # fmt: skip
    with ray_connection(config):
        if args.delete:
            stop_engines(list(config.engines))
            print(f"deleted engines: {', '.join(config.engines)}")
            return 0
        start_engines(config)
    print(f"engines serving on the cluster: {', '.join(config.engines)}")
    return 0


def _status(config: ChimeraConfig, args: argparse.Namespace) -> int:
    from chimera.cluster.ray_runtime import ray_connection
    from chimera.cluster.status import cluster_status

    with ray_connection(config):
        report = cluster_status(config, config.redis.url)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for node in report["nodes"]:
        resources = ", ".join(f"{k}={v:g}" for k, v in sorted(node["resources"].items()) if k not in ("memory",
                              "object_store_memory"))  # fmt: skip
        print(f"node {node['node_id'][:12]} {node['address']} {'alive' if node['alive'] else 'DEAD'}: {resources}")
    for name, engine in report["engines"].items():
        health = engine["health"]
        print(f"engine {name}: {engine['status'].lower()}, {len(engine['replicas'])}/{engine['target_replicas']} "
              f"replicas, {'healthy' if health['healthy'] else 'unhealthy: ' + health.get('error', '')}")  # fmt: skip
        for r in engine["replicas"]:
            print(f"  replica {r['id']} {r['state'].lower()} on node {(r['node_id'] or '?')[:12]} (pid {r['pid']})")
    if "tasks" in report:
        t = report["tasks"]
        print(f"tasks: {t['waiting']} waiting, {t['running']} running, {t['workers']} workers")
    return 0
