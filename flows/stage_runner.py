"""A warm stage runner: `gadflow repro` imports the stack once and forks one child per DVC stage.

Every DVC stage is a new `gadflow` process, and an experiment stage spends seconds importing torch,
mlflow, sklearn and matplotlib on 2 cores (docs/benchmarks.md).
`gadflow repro` therefore starts this runner beside `dvc repro`. The runner imports those
modules once, then for each stage's `gadflow <command>` it forks a child that already has them
loaded. The child takes the stage's stdin/stdout/stderr, working folder and environment, runs the
same typer command, and the runner returns its exit status to the stage's process.

Both ends are in this file. The client end (`delegate`) is what the `gadflow` entry point calls
first, and it imports only the standard library. The stage's result must not depend on where it
ran, so the runner refuses a request, and the stage runs in its own process as before, when:
- the environment that configures the stack differs from the runner's (Prefect reads its settings
  when it is imported, so a child would otherwise run with the runner's settings);
- the Python interpreter differs;
- the runner has started threads (forking a threaded process is unsafe).
A runner that is not there, or that dies, also means the stage runs in its own process.

Protocol: SOCK_SEQPACKET over a Unix socket, one JSON message per packet.
  client -> runner: {"argv", "cwd", "env", "python"} with the client's fds 0, 1 and 2 attached;
  runner -> client: {"refused": reason} or {"pid": n}, then {"exit": status} or {"signal": n}.
The client forwards SIGINT / SIGTERM / SIGHUP to the child; a client that goes away kills it.
"""

from __future__ import annotations

import atexit
import importlib
import json
import logging
import os
import selectors
import signal
import socket
import sys
import threading
from pathlib import Path

SOCKET_ENV = "GADFLOW_STAGE_RUNNER"  # the runner's socket path; set by `gadflow repro` for its stages
CONFIG_PREFIXES = ("PREFECT_", "MLFLOW_", "GADFLOW_", "TORCH", "CUDA", "OMP_", "MKL_", "PYTHON", "DO_NOT_TRACK", "HOME")
WARM_MODULES = (  # what the stage commands import; the child finds them loaded
    "torch", "torch._dynamo",  # torch.optim imports torch._dynamo on a process's first optimiser (2.6 s per stage here)
    "numpy", "pandas", "pyarrow.parquet", "sklearn.metrics", "scipy.stats", "matplotlib.pyplot",
    "mlflow", "mlflow.pyfunc", "mlflow.models", "mlflow.tracking", "tqdm.auto",
    "flows.cli", "flows.dvc_stages", "tasks.params", "tasks.steps.run", "tasks.steps.prepare", "tasks.sources.download",
    "tasks.adapters.image", "tasks.adapters.tabular", "tasks.adapters.series", "tasks.reports.image", "tasks.reports.series",
)
MAX_PACKET = 1 << 20

log = logging.getLogger("gadflow.stage_runner")


def config_environment(env: dict[str, str]) -> dict[str, str]:
    """The part of an environment that configures the stack (compared between client and runner).

    DVC_* is left out: dvc sets DVC_ROOT and DVC_STAGE for each stage, and no stage code reads them.
    """
    return {k: v for k, v in env.items() if k.startswith(CONFIG_PREFIXES) and k != SOCKET_ENV}


# ---------------------------------------------------------------- client end (standard library only)


def delegate(argv: list[str]) -> int | None:
    """Run `gadflow <argv>` in the warm runner; its exit status, or None to run in this process."""
    path = os.environ.get(SOCKET_ENV)
    if not path:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "python": sys.executable}
    try:
        sock.connect(path)
        socket.send_fds(sock, [json.dumps(request).encode()], [0, 1, 2])
        reply = json.loads(sock.recv(MAX_PACKET) or b'{"refused": "the runner closed the connection"}')
    except (OSError, ValueError) as exc:
        sock.close()
        log.warning("gadflow: the stage runner at %s is not available (%s); running in this process", path, exc)
        return None
    if "refused" in reply:
        sock.close()
        log.warning("gadflow: the stage runner refused this command (%s); running in this process", reply["refused"])
        return None
    pid = int(reply["pid"])

    def forward(signum: int, _frame) -> None:  # Ctrl-C, or dvc stopping the stage, reaches the child
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    with sock:
        message = sock.recv(MAX_PACKET)  # blocks until the child ends; retried after a forwarded signal (PEP 475)
    if not message:
        log.error("gadflow: the stage runner stopped while it ran this command (pid %d)", pid)
        return 1
    status = json.loads(message)
    return int(status["exit"]) if "exit" in status else 128 + int(status["signal"])


# ---------------------------------------------------------------- runner end


def serve(socket_path: Path) -> None:
    """Listen on socket_path, import the stack, then fork one child per request until SIGTERM."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(socket_path))  # bound before the imports: early clients wait in the backlog
    listener.listen(16)
    started_env = config_environment(dict(os.environ))  # before the imports: importing torch._dynamo sets TORCHINDUCTOR_CACHE_DIR
    for module in WARM_MODULES:
        importlib.import_module(module)
    log.info("imported %d modules; serving %s (pid %d)", len(WARM_MODULES), socket_path, os.getpid())
    wake_read, wake_write = socket.socketpair()
    wake_read.setblocking(False)
    wake_write.setblocking(False)
    signal.set_wakeup_fd(wake_write.fileno())
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a child's end wakes the loop through the wakeup fd
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "listener")
    selector.register(wake_read, selectors.EVENT_READ, "wake")
    children: dict[int, socket.socket] = {}  # child pid -> its client's connection
    try:
        while True:
            for key, _ in selector.select():
                if key.data == "listener":
                    _accept(listener, selector, children, started_env, closing=(listener, wake_read, wake_write, *children.values()))
                elif key.data == "wake":
                    while True:
                        try:
                            if not wake_read.recv(4096):
                                break
                        except BlockingIOError:
                            break
                    _reap(selector, children)
                else:  # a client's connection: readable only when the client went away
                    pid = key.data
                    if pid not in children:  # reaped earlier in this same round
                        continue
                    selector.unregister(key.fileobj)
                    log.warning("the client of pid %d went away; stopping it", pid)
                    _kill_group(pid, signal.SIGTERM)
    finally:
        for pid in children:
            _kill_group(pid, signal.SIGTERM)
        listener.close()
        socket_path.unlink(missing_ok=True)


def _accept(listener: socket.socket, selector: selectors.BaseSelector, children: dict[int, socket.socket], started_env: dict[str, str],
            closing: tuple) -> None:
    conn, _ = listener.accept()
    try:
        data, fds, _, _ = socket.recv_fds(conn, MAX_PACKET, 3)
        request = json.loads(data)
    except (OSError, ValueError) as exc:
        log.warning("a malformed request (%s); closed", exc)
        conn.close()
        return
    reason = _refusal(request, fds, started_env)
    if not reason:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # nothing of the runner's own output is duplicated into the child
        try:
            pid = os.fork()
        except OSError as exc:  # out of processes or memory: the stage runs in its own process
            reason = f"fork failed: {exc}"
    if reason:
        log.info("refused `gadflow %s`: %s", " ".join(request.get("argv", [])), reason)
        _send(conn, {"refused": reason})
        conn.close()
        for fd in fds:
            os.close(fd)
        return
    if pid == 0:
        _child(request, fds, conn, (selector, *closing))  # never returns
    for fd in fds:
        os.close(fd)
    _send(conn, {"pid": pid})  # a client already gone is noticed by the selector, which stops the child
    children[pid] = conn
    selector.register(conn, selectors.EVENT_READ, pid)
    log.info("pid %d runs `gadflow %s`", pid, " ".join(request["argv"]))


def _refusal(request: dict, fds: list[int], started_env: dict[str, str]) -> str:
    """Why this request may not be forked from the runner ("" when it may); started_env: the runner's own, as started."""
    if len(fds) != 3:
        return f"expected stdin, stdout and stderr, got {len(fds)} file descriptors"
    if request.get("python") != sys.executable:
        return f"another Python ({request.get('python')}, the runner's is {sys.executable})"
    ours, theirs = started_env, config_environment(request.get("env", {}))
    differing = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
    if differing:
        return f"the environment differs from the runner's in {', '.join(differing)}"
    if threading.active_count() > 1:
        return f"the runner has {threading.active_count()} threads; forking it is unsafe"
    return ""


def _reap(selector: selectors.BaseSelector, children: dict[int, socket.socket]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is None:
            continue
        reply = {"exit": os.WEXITSTATUS(status)} if os.WIFEXITED(status) else {"signal": os.WTERMSIG(status)}
        log.info("pid %d ended: %s", pid, reply)
        try:
            selector.unregister(conn)
        except KeyError:  # already unregistered: the client went away
            pass
        _send(conn, reply)
        conn.close()


def _send(conn: socket.socket, message: dict) -> None:
    try:
        conn.send(json.dumps(message).encode())
    except OSError:  # the client went away
        pass


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _child(request: dict, fds: list[int], conn: socket.socket, inherited: tuple) -> None:
    """In the forked child: become the stage's process, run its command, exit with its status."""
    code = 1
    try:
        os.setpgid(0, 0)  # its own group: a client that goes away stops it and whatever it started
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        inherited[0].close()
        for sock in (*inherited[1:], conn):
            sock.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ.pop(SOCKET_ENV, None)  # its own subprocesses run in their own processes
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        sys.argv = ["gadflow", *request["argv"]]
        from flows.cli import app

        try:
            app(args=request["argv"], prog_name="gadflow")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - whatever happens, the child must exit here, not return into serve()
        import traceback

        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()  # what a normal interpreter exit would run (Prefect's log flush, logging)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    serve(Path(sys.argv[1]))


if __name__ == "__main__":
    main()
