"""The one way a Chimera process joins Ray: `connect_ray(config)`.

`chimera serve`, the CLI commands that need actors, the benchmarks and the tests all connect here, so every
worker of every job gets the same tracing setup hook and namespace. A process that finds Ray already connected
(a test that started a multi-node `Cluster`, a notebook) keeps that connection.
"""

import contextlib
import logging
from collections.abc import Iterator

from chimera.cluster.tracing import WORKER_SETUP_HOOK, worker_env
from chimera.config import ChimeraConfig
from chimera.spans.factory import span_store_path

log = logging.getLogger(__name__)


def connect_ray(config: ChimeraConfig, *, address: str | None = None) -> bool:
    """Connect this process to the configured Ray cluster, or start a local one when no address is set.

    Args:
        config: `ray.address` (None: start a local Ray with `ray.num_cpus`), `ray.namespace`, and the tracing
            settings every worker process is set up with.
        address: overrides `ray.address` (tests pass a `ray.cluster_utils.Cluster`'s address).

    Returns:
        True when this call connected (the caller disconnects with `disconnect_ray`), False when this process
        was connected already.
    """
    import ray

    if ray.is_initialized():
        return False
    address = address or config.ray.address
    store_path = span_store_path(config.data_dir.resolve())
    ray.init(
        address=address,
        num_cpus=config.ray.num_cpus if address is None else None,
        namespace=config.ray.namespace,
        include_dashboard=False,
        runtime_env={
            "worker_process_setup_hook": WORKER_SETUP_HOOK,
            "env_vars": worker_env(config.tracing, store_path=store_path),
        },
    )
    log.info("connected to Ray at %s (namespace %s)", address or "a new local cluster", config.ray.namespace)
    return True


def disconnect_ray() -> None:
    """Leave Ray; a local Ray this process started stops with it (engines first: `stop_engines`)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


@contextlib.contextmanager
def ray_connection(config: ChimeraConfig, *, address: str | None = None) -> Iterator[None]:
    """Connected to Ray for the block; disconnects only if it connected."""
    connected = connect_ray(config, address=address)
    try:
        yield
    finally:
        if connected:
            disconnect_ray()
