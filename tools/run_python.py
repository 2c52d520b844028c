"""`run_python`: run a model-written Python snippet in a confined subprocess and return what it printed.

Layers, outermost first; each is used where the machine supports it, and `RunPython.isolation` says which are on:

- **Namespaces** (`unshare --user --map-root-user --net --pid`, when unprivileged user namespaces work): a network
  namespace with only a loopback that is down, so no packet leaves, TCP or UDP; a PID namespace whose first process
  is our supervisor, so when it ends the kernel kills every process the snippet started, however it detached.
  They do not hide files, and pathname Unix sockets stay reachable: they live in the file system.
- **Landlock** (Linux 5.13+, used at the highest ABI the kernel offers): a kernel file-system allowlist that holds
  even for root and even against native code: read the standard library and system libraries, read and write the
  temporary working directory, nothing else. From ABI 4 TCP bind/connect are refused; from ABI 6 signals to
  processes outside the sandbox and abstract Unix sockets are. UDP is not covered by Landlock (the network
  namespace covers it).
- **Resource limits** (`setrlimit`): CPU seconds (SIGXCPU, then SIGKILL one second later), address space, file
  size, open files, no core dumps, and `RLIMIT_NPROC`. The kernel ignores `RLIMIT_NPROC` for root, so when the
  server runs as root nothing in the kernel caps how many processes the snippet may start; as another user it
  counts the processes of the call's own user namespace, or without namespaces every process and thread of that
  user, the server's included (so the snippet can then start none).
- **Audit hook** (`sys.addaudithook`, always on): refuses sockets, `os.fork`/`exec`/`spawn`/`system`/`posix_spawn`,
  `subprocess.Popen` (and `_posixsubprocess`), ctypes, signals to other processes, `setrlimit`, tracing, gc
  introspection, code-object construction, and file access outside the working directory (the standard library
  stays readable), each with a readable `blocked: …` message. It is not a security boundary: it runs inside the
  interpreter it guards, native code never raises its events, and Python code can fool it (its file checks use
  `os.path`, which a snippet may patch; bytecode loaded through `marshal` is unchecked). Against such code the
  kernel layers above are what hold, and for root nothing but this hook caps the number of processes.
- **Clock and cleanup**: the supervisor kills the snippet at the wall limit. Without a PID namespace the supervisor
  is a child subreaper and kills every process the snippet left behind before it reports; the server kills the
  whole process group if the supervisor itself has not ended shortly after the wall limit.

The interpreter runs isolated (`-I -S -B`: no site-packages, no `PYTHON*` variables, no bytecode writes) with an
almost empty environment, so only the standard library can be imported. Linux only.
"""

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel, Field

from chimera.tools._sandbox import SETUP_FAILED, child_source, landlock_abi
from chimera.tools.base import Tool, ToolError

_MAX_CODE_CHARS = 20_000
_KILL_GRACE_S = 2.0  # how long past the wall limit the server waits for the supervisor before killing the group
_DRAIN_S = 2.0  # how long the server waits for the rest of the output once the sandbox has ended


# --- the server side -------------------------------------------------------------------------------------------

_UNSHARE = ("--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child", "--")


@dataclass(frozen=True)
class Isolation:
    """The kernel layers a `RunPython` uses on this machine; rlimits and the audit hook always apply."""

    namespaces: bool
    landlock_abi: int  # 0: Landlock not used


@dataclass(frozen=True)
class _Report:
    """What the supervisor says about the snippet's process."""

    exit: int  # the exit status, or minus the signal that killed it
    timed_out: bool
    cpu_seconds: float
    reason: str  # "memory", "setup failed: …", or empty

    @classmethod
    def read(cls, fd: int) -> "_Report | None":
        """The report written to the pipe `fd`; None when the supervisor died before writing one."""
        os.set_blocking(fd, False)
        try:
            data = json.loads(os.read(fd, 65536))
        except (BlockingIOError, ValueError):
            return None
        return cls(int(data["exit"]), bool(data["timed_out"]), float(data["cpu"]), str(data["reason"]))


class _Output:
    """The head and the tail of a byte stream, and how much was dropped between them."""

    def __init__(self, max_bytes: int) -> None:
        self._head_limit = max_bytes * 3 // 4
        self._tail_limit = max_bytes - self._head_limit
        self._head = bytearray()
        self._tail = bytearray()
        self._total = 0

    async def drain(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self._total += len(chunk)
            room = self._head_limit - len(self._head)
            self._head += chunk[:room]
            self._tail += chunk[max(room, 0) :]
            del self._tail[: -self._tail_limit or len(self._tail)]

    def text(self) -> str:
        head, tail = self._head.decode(errors="replace"), self._tail.decode(errors="replace")
        dropped = self._total - len(self._head) - len(self._tail)
        return f"{head}\n[… {dropped} bytes of output omitted …]\n{tail}" if dropped else head + tail


class RunPythonArgs(BaseModel):
    code: str = Field(
        min_length=1,
        max_length=_MAX_CODE_CHARS,
        description="Python 3.11 source, run as a script; print what you want to see.",
    )


class RunPython(Tool):
    """Run a Python snippet in a sandbox; the observation is its exit status and its (truncated) output.

    Args:
        cpu_seconds: CPU time of the snippet; SIGXCPU at the limit, SIGKILL one second later.
        wall_seconds: Wall-clock time before the snippet is killed.
        memory_bytes: Address-space limit (RLIMIT_AS); allocations past it raise MemoryError.
        max_output_chars: Output kept (stdout and stderr together, counted in UTF-8 bytes): head and tail.
        max_processes: RLIMIT_NPROC (ignored by the kernel for root; see the module docstring).
        max_file_bytes: Largest file the snippet may write.
        namespaces: Run under `unshare` (network and PID namespaces): True requires it, None uses it when it
            works here, False never.
        landlock: Confine files (and TCP, signals) with Landlock: True requires it, None uses it when the kernel
            has it, False never.
    """

    name: ClassVar[str] = "run_python"
    description: ClassVar[str] = (
        "Runs a Python 3.11 snippet in a sandbox and returns its exit status and printed output (stdout and "
        "stderr, truncated). Standard library only; no network, no subprocesses; files only in its own empty "
        "working directory; a few seconds of CPU and limited memory. Print the results you need. "
        "Arguments: {'code': 'print(2 ** 100)'}."
    )
    Args: ClassVar[type[BaseModel]] = RunPythonArgs

    def __init__(
        self,
        *,
        cpu_seconds: int = 5,
        wall_seconds: float = 10.0,
        memory_bytes: int = 512 * 2**20,
        max_output_chars: int = 4000,
        max_processes: int = 16,
        max_file_bytes: int = 64 * 2**20,
        namespaces: bool | None = None,
        landlock: bool | None = None,
    ) -> None:
        for label, value in (("cpu_seconds", cpu_seconds), ("wall_seconds", wall_seconds),
                             ("memory_bytes", memory_bytes), ("max_output_chars", max_output_chars),
                             ("max_processes", max_processes), ("max_file_bytes", max_file_bytes)):  # fmt: skip
            if value <= 0:
                raise ValueError(f"{label} must be positive")
        self.cpu_seconds = cpu_seconds
        self.wall_seconds = wall_seconds
        self.memory_bytes = memory_bytes
        self.max_output_chars = max_output_chars
        self.max_processes = max_processes
        self.max_file_bytes = max_file_bytes
        self._namespaces = namespaces
        self._landlock = landlock
        self._isolation: Isolation | None = None

    def available(self) -> bool:
        return sys.platform == "linux"

    async def isolation(self) -> Isolation:
        """The kernel layers in use, probed on first use.

        Raises:
            ToolError: A layer the constructor required is not available here.
        """
        if self._isolation is None:
            namespaces = self._namespaces is not False and await _namespaces_work()
            abi = landlock_abi() if self._landlock is not False else 0
            if self._namespaces and not namespaces:
                raise ToolError("run_python is unavailable: user namespaces (unshare) do not work on this machine")
            if self._landlock and not abi:
                raise ToolError("run_python is unavailable: the kernel offers no Landlock")
            self._isolation = Isolation(namespaces=namespaces, landlock_abi=abi)
        return self._isolation

    async def run(self, args: RunPythonArgs) -> str:
        isolation = await self.isolation()
        work = tempfile.mkdtemp(prefix="chimera-run-python-")
        try:
            report, output, killed = await self._execute(args.code, work, isolation)
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)
        return f"{self._status(report, killed, output)}\n{output or '(no output)'}"

    async def _execute(self, code: str, work: str, isolation: Isolation) -> tuple[_Report | None, str, bool]:
        """Run the snippet in `work`; return the supervisor's report, the output, and whether we had to kill it."""
        status_r, status_w = os.pipe()
        config = {
            "status_fd": status_w,
            "cpu": self.cpu_seconds,
            "wall_seconds": self.wall_seconds,
            "memory": self.memory_bytes,
            "file_bytes": self.max_file_bytes,
            "processes": self.max_processes,
            "landlock": isolation.landlock_abi > 0,
            "sweep": not isolation.namespaces,  # without a PID namespace, the supervisor kills what is left
        }
        command = [sys.executable, "-I", "-S", "-B", "-u", "-c", child_source(), json.dumps(config)]
        if isolation.namespaces:
            command = [shutil.which("unshare") or "unshare", *_UNSHARE, *command]
        env = {"PATH": "/usr/bin:/bin", "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8"}
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=work,
                env=env,
                pass_fds=(status_w,),
                start_new_session=True,
            )
        except BaseException:
            os.close(status_r)
            raise
        finally:
            os.close(status_w)
        assert process.stdin is not None and process.stdout is not None
        output = _Output(self.max_output_chars)
        reader = asyncio.create_task(output.drain(process.stdout))
        killed = False
        try:
            process.stdin.write(code.encode(errors="replace"))
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await process.stdin.drain()
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), self.wall_seconds + _KILL_GRACE_S)
            except TimeoutError:
                killed = True
        finally:
            if process.returncode is None:  # the supervisor is stuck, or this call was cancelled
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)  # the group is this run's alone: a new session
                await process.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader, _DRAIN_S)
            report = _Report.read(status_r)
            os.close(status_r)
        return report, output.text(), killed

    def _status(self, report: _Report | None, killed: bool, output: str) -> str:
        """The first line of the observation: how the snippet ended."""
        if report is None:
            if killed:  # the supervisor itself did not end in time
                return f"killed: wall time limit ({self.wall_seconds:g} s)"
            raise ToolError(f"run_python could not start its sandbox: {output.strip()[:500]}")
        if report.exit == SETUP_FAILED and report.reason.startswith("setup failed"):
            raise ToolError(f"run_python could not confine the snippet ({report.reason}); nothing was run")
        if report.timed_out:
            return f"killed: wall time limit ({self.wall_seconds:g} s)"
        hard_cpu_kill = report.exit == -signal.SIGKILL and report.cpu_seconds >= self.cpu_seconds
        if report.exit == -signal.SIGXCPU or hard_cpu_kill:
            return f"killed: CPU time limit ({self.cpu_seconds} s)"
        if report.reason == "memory":
            return f"stopped: memory limit ({self.memory_bytes / 2**20:g} MiB), exit code {report.exit}"
        if report.exit < 0:
            return f"killed by signal {signal.Signals(-report.exit).name}"
        return f"exit code {report.exit}"


async def _namespaces_work() -> bool:
    """Whether `unshare` can give an unprivileged interpreter its own user, network and PID namespaces here."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    process = await asyncio.create_subprocess_exec(
        unshare, *_UNSHARE, sys.executable, "-I", "-S", "-c", "pass",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    return await process.wait() == 0
