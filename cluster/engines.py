"""Start the config's engines as Ray Serve applications and hand back one `LLMEngine` client per engine.

Each engine is one Serve application (`deployments.py` maps its spec to Serve options); its replicas are
`ExpertServer` actors that own an `engine_cls` engine (vLLM by default). The caller must be connected to Ray
(`ray_runtime.connect_ray`). Nothing else in Chimera deploys to Serve.
"""

import logging

from chimera.cluster.deployments import app_name, deployment_options, engine_args_for_cluster
from chimera.cluster.serve_client import ServeEngineClient
from chimera.config import ChimeraConfig
from chimera.models import provision
from chimera.models.engine.base import LLMEngine
from chimera.models.specs import EngineSpec

log = logging.getLogger(__name__)


def local_engine_specs(config: ChimeraConfig, *, prepare: bool = True) -> dict[str, EngineSpec]:
    """Engine specs with `packaged:` models resolved to local folders (prepared first when `prepare`)."""
    if prepare:
        for name in provision.packaged_names_in_use([s.model for s in config.engines.values()]):
            provision.prepare(name, config.data_dir)
    return {
        name: spec.model_copy(update={"model": str(provision.resolve_model_path(spec.model, config.data_dir))})
        for name, spec in config.engines.items()
    }


def start_engines(config: ChimeraConfig, engine_cls: type[LLMEngine] | None = None) -> dict[str, LLMEngine]:
    """Deploy every engine of the config on Serve and wait until each serves.

    Args:
        config: its `engines` (model, vLLM arguments, replicas, placement).
        engine_cls: the engine each replica runs (None: `VLLMEngine`); it must be importable on every node.

    Returns:
        A client per engine name, streaming through the engine's Serve handle.
    """
    from ray import serve

    from chimera.cluster.expert_server import ExpertServer

    serve.start(proxy_location="Disabled")  # the API process is the HTTP server; see docs/architecture.md
    clients: dict[str, LLMEngine] = {}
    for name, spec in local_engine_specs(config).items():
        spec = engine_args_for_cluster(spec)
        deployment = serve.deployment(**deployment_options(spec))(ExpertServer)
        app = deployment.bind(spec) if engine_cls is None else deployment.bind(spec, engine_cls)
        clients[name] = ServeEngineClient(serve.run(app, name=app_name(name), route_prefix=None))
        log.info("engine %s is serving", name)
    return clients


def stop_engines(names: list[str]) -> None:
    """Delete these engines' Serve applications (other applications on the cluster are left running)."""
    from ray import serve

    for name in names:
        serve.delete(app_name(name))


def engine_clients(config: ChimeraConfig) -> dict[str, LLMEngine]:
    """Clients of the config's engines already running on Serve (deployed by `start_engines` in another
    process): what a task worker uses."""
    from ray import serve

    return {name: ServeEngineClient(serve.get_app_handle(app_name(name))) for name in config.engines}
