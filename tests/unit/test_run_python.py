"""`run_python` runs real sandboxed subprocesses: output, errors, limits, and every escape the issue lists.

Safety tests run in each isolation mode this machine supports: "namespaces" (user, network and PID namespaces, plus
Landlock when the kernel has it), "landlock" (no namespaces) and "hook-only" (no namespaces, no Landlock: the audit
hook and rlimits alone, the weakest configuration a server may end up with). The last tests fool the audit hook on
purpose, to show that the kernel layers hold without it.
"""

import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from chimera.tools.base import ToolError
from chimera.tools.run_python import RunPython

pytestmark = pytest.mark.unit

MODES: dict[str, dict[str, Any]] = {
    "namespaces": {"namespaces": True},
    "landlock": {"namespaces": False, "landlock": True},
    "hook-only": {"namespaces": False, "landlock": False},
}
CPU_SECONDS = 1
WALL_SECONDS = 2.0


async def _sandbox(mode: str, **limits: Any) -> RunPython:
    tool = RunPython(**{"cpu_seconds": CPU_SECONDS, "wall_seconds": WALL_SECONDS, **MODES[mode], **limits})
    try:
        await tool.isolation()
    except ToolError as e:
        pytest.skip(f"{mode}: {e}")
    return tool


@pytest.fixture(params=list(MODES))
async def sandbox(request: pytest.FixtureRequest) -> RunPython:
    return await _sandbox(request.param)


async def _run(tool: RunPython, code: str) -> str:
    result = await tool.call({"code": code})
    assert isinstance(result, str)
    return result


def _leftovers(token: str = "") -> list[int]:
    """Processes of a sandbox still alive: its interpreter (by its program text), or any carrying `token`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline, environ = (entry / "cmdline").read_bytes(), (entry / "environ").read_bytes()
        except OSError:
            continue  # gone meanwhile
        if b"_supervise()" in cmdline or (token and token.encode() in cmdline + environ):
            found.append(int(entry.name))
    return found


# --- ordinary use ----------------------------------------------------------------------------------------------


async def test_prints_output_and_exit_status() -> None:
    tool = RunPython()
    assert await _run(tool, "print(6 * 7)\nprint('done')") == "exit code 0\n42\ndone\n"
    assert await _run(tool, "pass") == "exit code 0\n(no output)"
    assert (await _run(tool, "import sys; sys.exit(3)")).startswith("exit code 3")


async def test_an_exception_comes_back_as_a_traceback() -> None:
    result = await _run(RunPython(), "x = 1\nraise ValueError(f'bad value {x}')")
    assert result.startswith("exit code 1\n")
    assert 'File "<snippet>", line 2, in <module>' in result
    assert "raise ValueError(f'bad value {x}')" in result  # the source line, as Python shows it
    assert result.rstrip().endswith("ValueError: bad value 1")


async def test_a_syntax_error_comes_back_as_an_observation() -> None:
    result = await _run(RunPython(), "def f(:\n    pass")
    assert result.startswith("exit code 1\n")
    assert "SyntaxError" in result
    assert "_supervise" not in result  # no frame of the sandbox itself


async def test_output_is_truncated_with_a_marker() -> None:
    result = await _run(RunPython(max_output_chars=1000), "print('BEGIN' + 'a' * 50_000 + 'END')")
    assert result.startswith("exit code 0\nBEGIN")
    assert "bytes of output omitted" in result
    assert result.rstrip().endswith("END")
    assert len(result) < 1200


async def test_the_working_directory_is_private_and_writable(sandbox: RunPython) -> None:
    code = (
        "import os, json, decimal, sqlite3\n"
        "with open('notes.txt', 'w') as f: f.write('kept')\n"
        "os.mkdir('sub'); open('sub/x.json', 'w').write(json.dumps({'n': 1}))\n"
        "print(open('notes.txt').read(), sorted(os.listdir('.')), json.load(open('sub/x.json')))"
    )
    assert await _run(sandbox, code) == "exit code 0\nkept ['notes.txt', 'sub'] {'n': 1}\n"
    assert "[]" in await _run(sandbox, "import os; print(os.listdir('.'))")  # a fresh directory each call


async def test_invalid_arguments_are_a_tool_error() -> None:
    tool = RunPython()
    for arguments in ({}, {"code": 5}, {"code": ""}, {"code": "x = 1\n" * 5000}, {"source": "print(1)"}):
        with pytest.raises(ToolError, match="invalid arguments for run_python"):
            await tool.call(arguments)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="cpu_seconds"):
        RunPython(cpu_seconds=0)


# --- blocked -----------------------------------------------------------------------------------------------------


async def test_a_socket_is_blocked(sandbox: RunPython) -> None:
    result = await _run(sandbox, "import socket\ns = socket.socket()\ns.connect(('1.1.1.1', 80))")
    assert "PermissionError: blocked: network access is not allowed in run_python" in result


async def test_urlopen_is_blocked(sandbox: RunPython) -> None:
    result = await _run(sandbox, "import urllib.request\nurllib.request.urlopen('http://example.com', timeout=2)")
    assert "<urlopen error blocked: network access is not allowed in run_python>" in result


async def test_reading_outside_the_working_directory_is_blocked(sandbox: RunPython) -> None:
    for path in ("/etc/passwd", "../", "/"):
        result = await _run(sandbox, f"print(open({path!r}).read())")
        assert "blocked: run_python may only read files in its working directory" in result, path
    result = await _run(sandbox, "import os; print(os.listdir('/etc'))")
    assert "blocked: run_python may only read files" in result


async def test_writing_outside_the_working_directory_is_blocked(sandbox: RunPython) -> None:
    name = f"chimera-escape-{uuid.uuid4().hex}"
    for code in (
        f"open('../{name}', 'w').write('x')",
        f"import os; os.symlink('/etc', 'etc'); open('etc/{name}', 'w')",
    ):
        assert "blocked: run_python may only write files in its working directory" in await _run(sandbox, code)
    assert not (Path(tempfile.gettempdir()) / name).exists()  # the working directory's parent


async def test_a_fork_bomb_is_blocked_and_leaves_nothing(sandbox: RunPython) -> None:
    result = await _run(sandbox, "import os\nwhile True:\n    os.fork()")
    assert "blocked: starting or signalling processes is not allowed in run_python" in result
    assert _leftovers() == []


async def test_a_subprocess_is_blocked_and_leaves_nothing(sandbox: RunPython) -> None:
    token = f"stray{uuid.uuid4().hex}"
    for code in (
        f"import subprocess\nsubprocess.run(['sh', '-c', 'sleep 30; echo {token}'])",
        f"import os\nos.system('sleep 30; echo {token}')",
        f"import os\nos.posix_spawn('/bin/sh', ['sh', '-c', 'sleep 30; echo {token}'], {{}})",
        f"import _posixsubprocess\n_posixsubprocess.fork_exec(['sh', '-c', 'sleep 30 # {token}'])",
    ):
        assert "blocked: starting or signalling processes is not allowed in run_python" in await _run(sandbox, code)
    assert _leftovers(token) == []


async def test_native_code_signals_and_limits_are_blocked(sandbox: RunPython) -> None:
    assert "blocked: loading native code" in await _run(sandbox, "import ctypes")
    result = await _run(sandbox, "import os\nos.kill(os.getppid(), 9)")
    assert "blocked: starting or signalling processes" in result
    assert "blocked: changing resource limits" in await _run(
        sandbox, "import resource\nresource.setrlimit(resource.RLIMIT_CPU, (100, 100))"
    )


# --- killed ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(MODES))
async def test_an_endless_loop_is_killed_by_the_cpu_limit(mode: str) -> None:
    sandbox = await _sandbox(mode, wall_seconds=10.0)  # room enough that the CPU limit, not the clock, ends it
    start = time.monotonic()
    result = await _run(sandbox, "print('spinning', flush=True)\nwhile True:\n    pass")
    assert result == f"killed: CPU time limit ({CPU_SECONDS} s)\nspinning\n"
    assert time.monotonic() - start < CPU_SECONDS + 3
    assert _leftovers() == []


async def test_sleeping_forever_is_killed_by_the_wall_limit(sandbox: RunPython) -> None:
    start = time.monotonic()
    result = await _run(sandbox, "import time\ntime.sleep(100)")
    assert result.startswith(f"killed: wall time limit ({WALL_SECONDS:g} s)")
    assert time.monotonic() - start < WALL_SECONDS + 1.5
    assert _leftovers() == []


async def test_a_cancelled_call_leaves_nothing(sandbox: RunPython) -> None:
    task = asyncio.create_task(_run(sandbox, "import time\nprint('started', flush=True)\ntime.sleep(100)"))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _leftovers() == []


async def test_a_huge_allocation_hits_the_memory_limit(sandbox: RunPython) -> None:
    result = await _run(sandbox, "data = bytearray(2 * 10**9)\nprint('allocated')")
    assert result.startswith("stopped: memory limit (512 MiB), exit code 1")
    assert "MemoryError" in result
    assert "allocated" not in result


# --- the kernel layers, with the audit hook fooled -----------------------------------------------------------

FOOL_THE_HOOK = "import os, posixpath\nposixpath.abspath = lambda path: os.getcwd()  # every path now looks inside\n"


@pytest.mark.parametrize("mode", ["namespaces", "landlock"])
async def test_landlock_refuses_files_the_fooled_hook_lets_through(mode: str) -> None:
    tool = await _sandbox(mode)
    if not (await tool.isolation()).landlock_abi:
        pytest.skip("the kernel offers no Landlock")
    name = f"chimera-escape-{uuid.uuid4().hex}"
    result = await _run(tool, FOOL_THE_HOOK + "open('/etc/passwd').read()")
    assert "PermissionError: [Errno 13] Permission denied: '/etc/passwd'" in result  # the kernel, not the hook
    assert "blocked:" not in result
    result = await _run(tool, FOOL_THE_HOOK + f"open('../{name}', 'w')")
    assert "[Errno 13] Permission denied" in result
    assert not (Path(tempfile.gettempdir()) / name).exists()


async def test_the_network_namespace_has_only_a_loopback() -> None:
    tool = await _sandbox("namespaces")
    result = await _run(tool, "import os, socket\nprint(os.getpid(), socket.if_nameindex())")
    assert result == "exit code 0\n2 [(1, 'lo')]\n"  # the snippet is the second process of its own PID namespace
