"""Run `chimera serve` as a child process and wait until it is healthy: used by the demo, the benchmark and tests."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from chimera.errors import ChimeraError


class LaunchError(ChimeraError):
    """The server exited or did not become healthy in time."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`chimera serve` in its own process group, restartable on the same port; its output goes to `log`."""

    def __init__(
        self,
        config_path: Path,
        port: int,
        log: Path,
        *,
        env: dict[str, str] | None = None,
        start_timeout_s: float = 300,
    ) -> None:
        self.config_path, self.port, self.log = config_path, port, log
        self.env = {**os.environ, **(env or {})}
        self.url = f"http://127.0.0.1:{port}"
        self.start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and return once `/healthz` answers 200.

        Raises:
            LaunchError: it exited early or stayed unhealthy; the message carries the log's tail.
        """
        self.log.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "chimera.cli", "--config", str(self.config_path), "serve"]
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [*command, "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # our Ctrl-C is not its Ctrl-C: stop() shuts it down in order
            )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                raise LaunchError(f"chimera serve exited early; log {self.log}:\n{self._tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.stop()
        raise LaunchError(f"chimera serve not healthy in {self.start_timeout_s:.0f}s; log {self.log}:\n{self._tail()}")

    def stop(self) -> None:
        """SIGINT (a clean shutdown: Serve, Ray, Redis), then SIGKILL of the group if it hangs."""
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> "ServerProcess":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


def isolated_config(config_path: Path, data_dir: Path) -> Path:
    """A copy of the config with its own data dir, index, embedded graph and span store (evals and benchmarks
    that must not touch the user's); packaged models stay where `chimera models prepare` put them."""
    import yaml

    from chimera.cluster.engines import local_engine_specs
    from chimera.config import load_config

    config = load_config(config_path)
    raw = yaml.safe_load(config_path.read_text()) or {}
    raw["data_dir"] = str(data_dir)
    for name, spec in local_engine_specs(config).items():
        raw["engines"][name]["model"] = spec.model
    raw["tracing"] = {**(raw.get("tracing") or {}), "exporter": "store"}
    raw["search"] = {**(raw.get("search") or {}), "index_dir": str(data_dir / "index"), "graph_store": "embedded",
                     "neo4j_uri": None}  # fmt: skip
    out = data_dir / "config.yaml"
    out.write_text(yaml.safe_dump(raw))
    load_config(out)  # fail here, readably
    return out


def ingest(config_path: Path, docs: Path, env: dict[str, str]) -> str:
    """`chimera ingest` `docs` with that config (a child process, as a user would); its summary line.

    Raises:
        LaunchError: the ingestion failed.
    """
    command = [sys.executable, "-m", "chimera.cli", "--config", str(config_path), "ingest", str(docs)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise LaunchError(f"ingesting {docs} failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]
