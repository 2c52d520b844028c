"""Ray Serve deployment options and applications, derived from engine specs (config is data; this maps it)."""

from typing import Any

from chimera.models.specs import EngineSpec

DEPLOYMENT_NAME = "ExpertServer"  # one per Serve application, so the name needs no engine in it


def app_name(engine: str) -> str:
    """Serve application (and deployment) name of an engine."""
    return f"chimera-engine-{engine}"


def deployment_options(spec: EngineSpec) -> dict[str, Any]:
    """Serve options for one engine's deployment: replicas, resources, and placement for tensor parallelism.

    With `tensor_parallel_size > 1`, vLLM starts one Ray worker per GPU shard; the replica reserves them as a
    placement group whose first bundle also holds the replica actor itself. STRICT_PACK keeps all shards on one
    node, where NVLink makes tensor parallelism pay.
    """
    options: dict[str, Any] = {
        "name": DEPLOYMENT_NAME,
        "num_replicas": spec.num_replicas,
        "max_ongoing_requests": spec.max_ongoing_requests,
        "health_check_period_s": 10.0,
        "health_check_timeout_s": 30.0,
        "graceful_shutdown_timeout_s": 30.0,
    }
    if spec.tensor_parallel_size > 1:
        shard = {"GPU": spec.gpus_per_worker} if spec.gpus_per_worker else {"CPU": 1.0}
        first = {"CPU": spec.num_cpus, **shard}
        options["placement_group_bundles"] = [first] + [dict(shard) for _ in range(spec.tensor_parallel_size - 1)]
        options["placement_group_strategy"] = "STRICT_PACK"
        options["ray_actor_options"] = {"num_cpus": spec.num_cpus, "num_gpus": spec.gpus_per_worker}
    else:
        options["ray_actor_options"] = {"num_cpus": spec.num_cpus, "num_gpus": spec.num_gpus}
    return options


def engine_args_for_cluster(spec: EngineSpec) -> EngineSpec:
    """Engine spec as a replica runs it: tensor parallelism inside Serve goes through vLLM's Ray executor."""
    if spec.tensor_parallel_size > 1 and "distributed_executor_backend" not in spec.engine_kwargs:
        return spec.model_copy(update={"engine_kwargs": {**spec.engine_kwargs, "distributed_executor_backend": "ray"}})
    return spec


def engine_capacity(spec: EngineSpec, capacity_factor: float) -> int:
    """Ongoing requests at which an engine counts as saturated: its batch slots times the capacity factor.

    Past `max_num_seqs` per replica, vLLM queues requests instead of batching them: that is where waiting starts.
    """
    return max(1, round(capacity_factor * spec.max_num_seqs * spec.num_replicas))
