"""Ray Serve deployment options and applications, derived from engine specs (config is data; this maps it)."""

import hashlib
from typing import Any

from chimera.models.specs import EngineSpec

DEPLOYMENT_NAME = "ExpertServer"  # one per Serve application, so the name needs no engine in it


def app_name(engine: str) -> str:
    """Serve application (and deployment) name of an engine."""
    return f"chimera-engine-{engine}"


def deployment_options(spec: EngineSpec) -> dict[str, Any]:
    """Serve options for one engine's deployment: replicas or autoscaling, resources, node placement, and the
    placement group of tensor parallelism.

    With `tensor_parallel_size > 1`, vLLM starts one Ray worker per GPU shard; the replica reserves them as a
    placement group whose first bundle also holds the replica actor itself. STRICT_PACK keeps all shards on one
    node, where NVLink makes tensor parallelism pay; the node-type resources and labels then go on every bundle.

    The deployment's `user_config` carries the spec's digest, so that deploying an unchanged engine again
    (`chimera deploy` run twice) can leave its replicas alone (`engines.start_engines`).
    """
    options: dict[str, Any] = {
        "name": DEPLOYMENT_NAME,
        "user_config": {"spec_version": spec_version(spec)},
        "max_ongoing_requests": spec.max_ongoing_requests,
        "health_check_period_s": 10.0,
        "health_check_timeout_s": 30.0,
        "graceful_shutdown_timeout_s": 30.0,
        "logging_config": {"enable_access_log": False},  # a line per call: the load monitor polls 5 times a second
    }
    if spec.autoscaling is None:
        options["num_replicas"] = spec.num_replicas
    else:
        scaling = spec.autoscaling
        options["autoscaling_config"] = scaling.model_dump() | {"initial_replicas": scaling.min_replicas}
    if spec.max_replicas_per_node is not None:
        options["max_replicas_per_node"] = spec.max_replicas_per_node
    actor: dict[str, Any] = {"num_cpus": spec.num_cpus}
    if spec.tensor_parallel_size > 1:
        shard = {"GPU": spec.gpus_per_worker} if spec.gpus_per_worker else {"CPU": 1.0}
        first = {"CPU": spec.num_cpus, **shard, **spec.resources}
        rest = [{**shard, **spec.resources} for _ in range(spec.tensor_parallel_size - 1)]
        options["placement_group_bundles"] = [first, *rest]
        options["placement_group_strategy"] = "STRICT_PACK"
        if spec.label_selector:
            options["placement_group_bundle_label_selector"] = [dict(spec.label_selector)] * spec.tensor_parallel_size
        actor["num_gpus"] = spec.gpus_per_worker
    else:
        actor["num_gpus"] = spec.num_gpus
        if spec.resources:
            actor["resources"] = dict(spec.resources)
        if spec.label_selector:
            actor["label_selector"] = dict(spec.label_selector)
    options["ray_actor_options"] = actor
    return options


def spec_version(spec: EngineSpec) -> str:
    """A short digest of the whole spec: an engine deployed with the same digest needs no new deployment."""
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:16]


def engine_args_for_cluster(spec: EngineSpec) -> EngineSpec:
    """Engine spec as a replica runs it: tensor parallelism inside Serve goes through vLLM's Ray executor."""
    if spec.tensor_parallel_size > 1 and "distributed_executor_backend" not in spec.engine_kwargs:
        return spec.model_copy(update={"engine_kwargs": {**spec.engine_kwargs, "distributed_executor_backend": "ray"}})
    return spec


def engine_capacity(spec: EngineSpec, capacity_factor: float) -> int:
    """Ongoing requests at which an engine counts as saturated: its batch slots times the capacity factor.

    Past `max_num_seqs` per replica, vLLM queues requests instead of batching them: that is where waiting starts.
    """
    return max(1, round(capacity_factor * spec.max_num_seqs * spec.most_replicas))
