"""One real Chimera server for the whole session: `chimera serve` in a subprocess on 127.0.0.1.

It runs the embedded stack (local Ray, the SmolLM2 engine in a Serve replica, the embedded redis-server) with
its data dir in a temporary folder; the converted model is shared with `make demo` under `.chimera/models`.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from chimera.config import load_config
from chimera.models import provision

ROOT = Path(__file__).parents[2]
START_TIMEOUT_S = 300


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The SmolLM2 HF folder, converted once from the packaged GGUF (idempotent)."""
    return provision.prepare("smollm2-135m-instruct", ROOT / ".chimera")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`chimera serve` as a child process, restartable on the same port and data dir."""

    def __init__(self, config_path: Path, data_dir: Path, port: int) -> None:
        self.config_path, self.data_dir, self.port = config_path, data_dir, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = data_dir / "server.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "chimera.cli",
                    "--config",
                    str(self.config_path),
                    "serve",
                    "--port",
                    str(self.port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": ""},
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"chimera serve exited early:\n{self.log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"chimera serve not healthy in {START_TIMEOUT_S}s:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
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

    @property
    def trace_file(self) -> Path:
        return self.data_dir / "traces.jsonl"


@pytest.fixture(scope="session")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("chimera-data")
    raw = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    raw["data_dir"] = str(data_dir)
    raw["engines"]["smollm2"]["model"] = str(model_dir)
    raw["tracing"] = {"exporter": "file"}
    config_path = data_dir / "config.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    load_config(config_path)  # fail here, readably, if the test config is wrong
    proc = ServerProcess(config_path, data_dir, _free_port())
    proc.start()
    yield proc
    proc.stop()
