"""The Redis a command-line tool works on: the config's, or the embedded one (reused while `chimera serve` runs)."""

from collections.abc import Iterator
from contextlib import contextmanager

from chimera.config import ChimeraConfig


@contextmanager
def redis_url(config: ChimeraConfig) -> Iterator[str]:
    """The config's Redis URL; the embedded server is reused if running, else started for the command."""
    if config.redis.url is not None:
        yield config.redis.url
        return
    from chimera.memory.redis_server import EmbeddedRedis

    server = EmbeddedRedis(config.data_dir / "redis")
    url = server.start()
    try:
        yield url
    finally:
        server.stop()  # only if this command started it (or adopted an orphan): a running server's stays
