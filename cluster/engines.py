"""The config's engines as Ray Serve applications, and one `LLMEngine` client per engine.

Each engine is one Serve application (`deployments.py` maps its spec to Serve options); its replicas are
`ExpertServer` actors that own an `engine_cls` engine (vLLM by default). The caller must be connected to Ray
(`ray_runtime.connect_ray`). Nothing else in Chimera deploys to Serve.

Who deploys: `chimera serve` on its own local Ray deploys the engines and deletes them when it stops. On a
cluster the engines outlive any one API process: `chimera deploy` (or KubeRay, from the Serve config that
`serve_config` writes) deploys them, and every API process and task worker attaches (`attach_engines`).
"""

import logging
from pathlib import Path
from typing import Any

from chimera.cluster.deployments import (
    DEPLOYMENT_NAME,
    app_name,
    deployment_options,
    engine_args_for_cluster,
    spec_version,
)
from chimera.cluster.serve_client import ServeEngineClient
from chimera.cluster.tracing import WORKER_SETUP_HOOK, worker_env
from chimera.config import ChimeraConfig
from chimera.errors import ChimeraError
from chimera.models import provision
from chimera.models.engine.base import EngineUnavailableError, LLMEngine
from chimera.models.specs import EngineSpec
from chimera.spans.factory import span_store_path

log = logging.getLogger(__name__)

BUILDER = "chimera.cluster.engines:engine_app_builder"  # the import path a Serve config names


class EnginesNotDeployedError(ChimeraError):
    """An engine the config names is not running on the cluster (not deployed yet, or deleted)."""


def local_engine_specs(config: ChimeraConfig, *, prepare: bool = True) -> dict[str, EngineSpec]:
    """Engine specs with `packaged:` models resolved to local folders (prepared first when `prepare`)."""
    return {name: _local_spec(spec, config.data_dir, prepare=prepare) for name, spec in config.engines.items()}


def _local_spec(spec: EngineSpec, data_dir: Path, *, prepare: bool) -> EngineSpec:
    if prepare:
        for name in provision.packaged_names_in_use([spec.model]):
            provision.prepare(name, data_dir)
    return spec.model_copy(update={"model": str(provision.resolve_model_path(spec.model, data_dir))})


def engine_app(spec: EngineSpec, engine_cls: type[LLMEngine] | None = None) -> Any:
    """The Serve application of one engine (model path already local): its `ExpertServer` deployment."""
    from ray import serve

    from chimera.cluster.expert_server import ExpertServer

    spec = engine_args_for_cluster(spec)
    deployment = serve.deployment(**deployment_options(spec))(ExpertServer)
    return deployment.bind(spec) if engine_cls is None else deployment.bind(spec, engine_cls)


def engine_app_builder(args: dict[str, Any]) -> Any:
    """Serve's application builder (`import_path` of a Serve config): `args` holds the engine `spec` and the
    `data_dir` its packaged model is prepared in."""
    spec = EngineSpec.model_validate(args["spec"])
    return engine_app(_local_spec(spec, Path(args.get("data_dir", ".chimera")), prepare=True))


def start_engines(config: ChimeraConfig, engine_cls: type[LLMEngine] | None = None) -> dict[str, LLMEngine]:
    """Deploy every engine of the config on Serve and wait until each serves. An engine already running with
    the same spec keeps its replicas (the deployment's version is the spec's digest); a changed one rolls.

    Args:
        config: its `engines` (model, vLLM arguments, replicas or autoscaling, placement).
        engine_cls: the engine each replica runs (None: `VLLMEngine`); it must be importable on every node.

    Returns:
        A client per engine name, streaming through the engine's Serve handle.
    """
    from ray import serve

    serve.start(proxy_location="Disabled")  # the API process is the HTTP server; see docs/architecture.md
    clients: dict[str, LLMEngine] = {}
    running = deployed_versions()
    for name, spec in local_engine_specs(config).items():
        if engine_cls is None and running.get(app_name(name)) == spec_version(engine_args_for_cluster(spec)):
            clients[name] = ServeEngineClient(serve.get_app_handle(app_name(name)))
            log.info("engine %s is serving already, with this spec: left as it is", name)
            continue
        handle = serve.run(engine_app(spec, engine_cls), name=app_name(name), route_prefix=None)
        clients[name] = ServeEngineClient(handle)
        log.info("engine %s is serving", name)
    return clients


def deployed_versions() -> dict[str, str]:
    """Serve application → the spec digest its engine deployment runs, for the applications that are RUNNING
    (one deploying, unhealthy or failed is deployed again; applications that are not Chimera engines are left out)."""
    versions = {}
    for name, app in serve_details().items():
        config = app.get("deployments", {}).get(DEPLOYMENT_NAME, {}).get("deployment_config", {})
        version = (config.get("user_config") or {}).get("spec_version")
        if enum_value(app.get("status")) == "RUNNING" and version:
            versions[name] = version
    return versions


def serve_details() -> dict[str, Any]:
    """Serve application name → its details (status, deployments and their config, replicas and their nodes), as
    the Serve controller reports them to `serve status` and the dashboard; empty when Serve is not running."""
    from ray.serve.context import _get_global_client
    from ray.serve.exceptions import RayServeException

    try:
        client = _get_global_client()  # connects to the cluster's Serve controller
    except RayServeException:  # Serve is not running on this cluster
        return {}
    return dict(client.get_serve_details().get("applications", {})) if client is not None else {}


def enum_value(value: Any) -> str:
    """One of Serve's enums (`ApplicationStatus.RUNNING`) as its value (`RUNNING`)."""
    return str(getattr(value, "value", value))


def stop_engines(names: list[str]) -> None:
    """Delete these engines' Serve applications (other applications on the cluster are left running)."""
    from ray import serve

    for name in names:
        serve.delete(app_name(name))


NOT_SERVING = ("NOT_DEPLOYED", "DEPLOY_FAILED", "DELETING")


def attach_engines(config: ChimeraConfig) -> dict[str, LLMEngine]:
    """Clients of the config's engines deployed on the cluster already (by `chimera deploy`, KubeRay or another
    process): what a second API process uses. An engine still deploying, or missing replicas, is attached all
    the same (its calls wait in Serve, and /healthz says degraded until it serves).

    Raises:
        EnginesNotDeployedError: an engine is not deployed, failed to deploy, or is being deleted.
    """
    missing = {name: status for name, status in app_statuses(config).items() if status in NOT_SERVING}
    if missing:
        listed = ", ".join(f"{n} ({s.lower().replace('_', ' ')})" for n, s in missing.items())
        raise EnginesNotDeployedError(
            f"engines not on this Ray cluster: {listed}; deploy them first with `chimera deploy --config …`"
        )
    return engine_clients(config)


def app_statuses(config: ChimeraConfig) -> dict[str, str]:
    """Each engine's Serve application status: RUNNING, DEPLOYING, UNHEALTHY, DEPLOY_FAILED, … or NOT_DEPLOYED."""
    details = serve_details()
    return {name: enum_value(details.get(app_name(name), {}).get("status", "NOT_DEPLOYED")) for name in config.engines}


def engine_clients(config: ChimeraConfig, names: list[str] | None = None) -> dict[str, LLMEngine]:
    """Clients of the config's engines (or those `names`) as they are on Serve now, whatever their state (a task
    worker's engines; calls fail as `EngineUnavailableError` while an engine is away).

    Raises:
        EngineUnavailableError: an engine is not deployed on the cluster.
    """
    from ray import serve
    from ray.serve.exceptions import RayServeException

    try:
        return {name: ServeEngineClient(serve.get_app_handle(app_name(name))) for name in names or config.engines}
    except RayServeException as e:  # the application does not exist
        raise EngineUnavailableError(f"an engine is not deployed on the cluster ({e}); run `chimera deploy`") from None


def serve_config(config: ChimeraConfig) -> dict[str, Any]:
    """The Ray Serve config (`serve deploy`, KubeRay `RayService.spec.serveConfigV2`) that deploys the config's
    engines exactly as `start_engines` does: one application per engine, built by `engine_app_builder`."""
    data_dir = config.data_dir
    env = worker_env(config.tracing, store_path=span_store_path(data_dir))
    return {
        "proxy_location": "Disabled",  # Chimera's API processes are the HTTP servers
        "applications": [
            {
                "name": app_name(name),
                "route_prefix": None,
                "import_path": BUILDER,
                "runtime_env": {"worker_process_setup_hook": WORKER_SETUP_HOOK, "env_vars": dict(env)},
                "args": {"data_dir": str(data_dir), "spec": spec.model_dump(mode="json", exclude_defaults=True)},
            }
            for name, spec in config.engines.items()
        ],
    }
