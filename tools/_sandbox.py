"""The part of `run_python` that runs inside the sandbox: confinement, the audit hook, the snippet's supervisor.

`child_source()` sends these functions to the sandboxed interpreter as source text (it runs with `-I -S`, so it
cannot import Chimera): standard library only, each function importing what it needs and using no name of this
module but the others and `SETUP_FAILED`. See `run_python.py` for the layers and what each stops.
"""

import functools
import inspect
from collections.abc import Callable
from typing import Any

SETUP_FAILED = 70  # the child's exit status when it could not confine itself; the snippet did not run


def _supervise() -> None:
    """The sandbox's first process: read the snippet, fork the confined child, enforce the wall limit, report."""
    import json
    import os
    import select
    import signal
    import sys

    config = json.loads(sys.argv[1])
    code = sys.stdin.read()
    if config["sweep"]:
        _prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: what the snippet orphans comes back to us, to be killed
        _drop_ctypes()
    reason_r, reason_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(config["status_fd"])
        os.close(reason_r)
        try:
            _confine(config)
        except BaseException as e:
            os.write(reason_w, f"setup failed: {type(e).__name__}: {e}".encode())
            os._exit(SETUP_FAILED)
        _run_snippet(code, reason_w)
    os.close(reason_w)
    timed_out = not select.select([os.pidfd_open(child)], [], [], config["wall_seconds"])[0]
    if timed_out:
        os.kill(child, signal.SIGKILL)
    _, status, usage = os.wait4(child, 0)
    if config["sweep"]:
        _sweep_descendants()
    os.set_blocking(reason_r, False)
    try:
        reason = os.read(reason_r, 4096).decode(errors="replace")
    except BlockingIOError:
        reason = ""
    cpu_seconds = usage.ru_utime + usage.ru_stime
    report = {"exit": os.waitstatus_to_exitcode(status), "timed_out": timed_out, "cpu": cpu_seconds, "reason": reason}
    os.write(config["status_fd"], json.dumps(report).encode())


def _sweep_descendants() -> None:
    """SIGKILL this process's children until none is left (as subreaper, the snippet's orphans are among them)."""
    import contextlib
    import os
    import signal

    for _ in range(1000):
        children = []
        for entry in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as stat:
                if int(stat.read().rpartition(")")[2].split()[1]) == os.getpid():
                    children.append(int(entry))
        if not children:
            return
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _confine(config: dict[str, Any]) -> None:
    """Apply Landlock, the resource limits and the audit hook to this process, in that order."""
    import os
    import resource
    import sys

    work = os.path.realpath(os.getcwd())
    stdlib = tuple(os.path.realpath(p) for p in sys.path if p and os.path.isdir(p))
    if config["landlock"]:
        system = ("/usr", "/lib", "/lib64", "/etc/ld.so.cache", "/etc/localtime", "/dev/urandom")
        _landlock_restrict(stdlib + system, (work, "/dev/null"))
    cpu, memory, files, processes = (config[k] for k in ("cpu", "memory", "file_bytes", "processes"))
    for limit, soft, hard in (
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_AS, memory, memory),
        (resource.RLIMIT_FSIZE, files, files),
        (resource.RLIMIT_NOFILE, 256, 256),
        (resource.RLIMIT_CORE, 0, 0),
        (resource.RLIMIT_NPROC, processes, processes),
    ):
        resource.setrlimit(limit, (soft, hard))
    import _posixsubprocess
    import linecache  # noqa: F401  (these three are imported before the hook: the snippet's traceback needs
    import subprocess  # noqa: F401  them, and asyncio imports subprocess, whose process creation fails below)
    import traceback  # noqa: F401

    def refuse(*args: object, **kwargs: object) -> int:
        raise PermissionError("blocked: starting or signalling processes is not allowed in run_python")

    _posixsubprocess.fork_exec = refuse
    _install_audit_hook(work, stdlib)
    sys.argv = ["<snippet>"]


def _prctl(option: int, value: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def _drop_ctypes() -> None:
    """Forget ctypes, so that the snippet cannot reuse it: re-importing it is refused by the audit hook."""
    import gc
    import sys

    for name in [n for n in sys.modules if n in ("ctypes", "_ctypes") or n.startswith("ctypes.")]:
        del sys.modules[name]
    gc.collect()


def landlock_abi() -> int:
    """The Landlock ABI version the kernel offers, 0 when it has none (or this is not Linux)."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return max(0, int(libc.syscall(ctypes.c_long(444), None, ctypes.c_long(0), ctypes.c_long(1))))
    except (OSError, AttributeError):
        return 0


def _landlock_restrict(read_only: tuple[str, ...], read_write: tuple[str, ...]) -> None:
    """Allow this process and its children only these paths (those that exist), for good; then drop ctypes."""
    import ctypes
    import os
    import struct

    abi = landlock_abi()
    if abi < 1:
        raise OSError("Landlock is not available")
    syscall = ctypes.CDLL(None, use_errno=True).syscall

    def call(number: int, *args: int | bytes) -> int:
        result = int(syscall(ctypes.c_long(number), *(a if isinstance(a, bytes) else ctypes.c_long(a) for a in args)))
        if result < 0:
            raise OSError(ctypes.get_errno(), f"landlock syscall {number}: {os.strerror(ctypes.get_errno())}")
        return result

    handled = (1 << {1: 13, 2: 14, 3: 15, 4: 15}.get(abi, 16)) - 1  # every file-system right this ABI knows
    file_rights = handled & (1 | 2 | 4 | 1 << 14 | 1 << 15)  # execute, write, read, truncate, ioctl_dev
    read = 1 | 4 | 8  # execute, read file, read dir
    network = 0b11 if abi >= 4 else 0  # TCP bind and connect, with no rule allowing any port
    scoped = 0b11 if abi >= 6 else 0  # abstract Unix sockets and signals outside the domain
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = call(444, struct.pack("QQQ", handled, network, scoped)[:size], size, 0)
    try:
        for paths, rights in ((read_only, read), (read_write, handled)):
            for path in filter(os.path.exists, paths):
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                try:
                    allowed = rights if os.path.isdir(path) else rights & file_rights
                    call(445, ruleset, 1, struct.pack("=Qi", allowed, fd), 0)
                finally:
                    os.close(fd)
        _prctl(38, 1)  # PR_SET_NO_NEW_PRIVS, which landlock_restrict_self requires
        call(446, ruleset, 0)
    finally:
        os.close(ruleset)
    _drop_ctypes()


def _install_audit_hook(work: str, read_roots: tuple[str, ...]) -> None:
    """Refuse, with a readable PermissionError, what a snippet must not do; see the module docstring.

    Everything the hook consults is captured here and immutable: a snippet that reaches the hook's frames (through
    an `__fspath__` it wrote) cannot edit its tables.
    """
    import os
    import sys
    from types import MappingProxyType

    realpath, isdir, fspath, fsdecode, getpid = os.path.realpath, os.path.isdir, os.fspath, os.fsdecode, os.getpid
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    devices = ("/dev/null", "/dev/urandom")
    processes = "starting or signalling processes"
    native = "loading native code (ctypes, cffi, test modules)"
    refused = MappingProxyType(  # event → what it does; "socket." and "ctypes." events are matched by prefix
        dict.fromkeys(("os.fork", "os.forkpty", "os.system", "os.exec", "os.spawn", "os.posix_spawn"), processes)
        | {"subprocess.Popen": processes, "code.__new__": "building code objects"}
        | dict.fromkeys(("resource.setrlimit", "resource.prlimit"), "changing resource limits")
        | dict.fromkeys(("sys.settrace", "sys.setprofile", "sys._current_frames"), "tracing")
        | dict.fromkeys(("gc.get_objects", "gc.get_referrers", "gc.get_referents"), "gc introspection")
    )
    modules = MappingProxyType(  # module name (any dotted part) → why it may not be imported
        dict.fromkeys(("_posixsubprocess", "_xxsubinterpreters", "_xxinterpchannels"), processes)
        | dict.fromkeys(("ctypes", "_ctypes", "cffi", "_cffi_backend"), native)
    )
    read_events = frozenset(("os.listdir", "os.scandir", "os.listxattr", "os.getxattr"))
    one_path = ("chdir", "chmod", "chown", "chflags", "mkdir", "remove", "rmdir", "truncate", "utime", "setxattr")
    write_events = MappingProxyType(  # event → how many leading arguments are paths
        {f"os.{name}": 1 for name in (*one_path, "removexattr")} | {"os.rename": 2, "os.link": 2}
    )

    def blocked(what: str) -> PermissionError:
        return PermissionError(f"blocked: {what} is not allowed in run_python")

    def within(path: str, roots: tuple[str, ...]) -> bool:
        return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)

    def check_path(path: object, *, writing: bool = False, listing: bool = False) -> None:
        if isinstance(path, int):
            return  # an open file descriptor, checked when it was opened
        real = realpath(fsdecode(fspath(path if path is not None else ".")))  # type: ignore[call-overload]
        if within(real, (work,)) or real in devices:
            return
        if not writing and within(real, read_roots) and (listing or not isdir(real)):
            return  # the standard library; opened only as files, so that no `dir_fd` resolves outside it
        verb = "write" if writing else "read"
        raise PermissionError(f"blocked: run_python may only {verb} files in its working directory, not {path!r}")

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            path, mode, flags = args
            writing = bool(flags & write_flags) or (isinstance(mode, str) and any(c in mode for c in "wax+"))
            check_path(path, writing=writing)
        elif event.startswith("socket."):
            raise blocked("network access")
        elif event.startswith("ctypes."):
            raise blocked(native)
        elif event in refused:
            raise blocked(refused[event])
        elif event in ("os.kill", "os.killpg") and args[0] != getpid():
            raise blocked(processes)
        elif event == "import":
            for part in str(args[0]).split("."):
                if part in modules or part.startswith("_test"):
                    raise blocked(modules.get(part, native))
        elif event in read_events:
            check_path(args[0], listing=True)
        elif event in write_events:
            for path in args[: write_events[event]]:
                check_path(path, writing=True)
        elif event == "os.symlink":
            check_path(args[1], writing=True)  # where the link goes; opening through it is checked then

    sys.addaudithook(hook)


def _run_snippet(code: str, reason_fd: int) -> None:
    """Run the snippet as `__main__`, print its traceback as Python would, and exit with its status."""
    import contextlib
    import linecache
    import os
    import sys
    import traceback

    linecache.cache["<snippet>"] = (len(code), None, code.splitlines(True), "<snippet>")
    status = 0
    try:
        exec(compile(code, "<snippet>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            status = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            status = 1
    except BaseException as e:
        if isinstance(e, MemoryError):
            os.write(reason_fd, b"memory")
        tb = None if isinstance(e, SyntaxError) else e.__traceback__ and e.__traceback__.tb_next
        traceback.print_exception(type(e), e, tb)
        status = 1
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(status)


@functools.cache
def child_source() -> str:
    """The program the sandboxed interpreter runs: the functions above, then `_supervise()`."""
    functions: list[Callable[..., object]] = [_supervise, _sweep_descendants, _confine, _prctl, _drop_ctypes]
    functions += [landlock_abi, _landlock_restrict, _install_audit_hook, _run_snippet]
    body = "\n\n".join(inspect.getsource(function) for function in functions)
    return f"from __future__ import annotations\n\nSETUP_FAILED = {SETUP_FAILED}\n\n{body}\n_supervise()\n"
