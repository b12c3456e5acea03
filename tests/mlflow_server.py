"""A real `mlflow server` for tests: sqlite (or the given) backend, proxied artifacts in a work folder,
on a free loopback port, run as its own process group and killed with it."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from flows.local_server import free_loopback_port as free_port  # noqa: F401  (re-exported for the tests)

from .project_copy import BIN

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 120.0
STOP_GRACE_S = 10.0
_RUNNING: dict[str, subprocess.Popen] = {}  # URL -> server process, for stop_mlflow_server


def _log_tail(log_file: Path, chars: int = 3000) -> str:
    return log_file.read_text(errors="replace")[-chars:] if log_file.is_file() else "(no log)"


def _healthy(url: str) -> bool:
    """True when GET <url>/health answers 200."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait_healthy(proc: subprocess.Popen, url: str, log_file: Path) -> None:
    """Wait until the server answers /health; fail with the log tail if it exits or times out first."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode} before answering {url}/health:\n{_log_tail(log_file)}")
        if _healthy(url):
            return
        time.sleep(0.5)
    raise RuntimeError(f"mlflow server at {url} not healthy after {STARTUP_TIMEOUT_S:.0f} s:\n{_log_tail(log_file)}")


def _group_alive(pgid: int) -> bool:
    """True while any process of group ``pgid`` is left."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left of it after STOP_GRACE_S."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None and not _group_alive(proc.pid):
            return
        time.sleep(0.2)
    if _group_alive(proc.pid):
        log.warning("mlflow server (process group %d) still up after SIGTERM: SIGKILL", proc.pid)
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@contextmanager
def running_mlflow_server(workdir: Path, backend_uri: str | None = None) -> Iterator[str]:
    """Run `mlflow server` with its store in ``workdir`` (or ``backend_uri``) and yield its http://127.0.0.1:<port> URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_file = workdir / "mlflow-server.log"
    command = [str(BIN / "mlflow"), "server",
               "--backend-store-uri", backend_uri or f"sqlite:///{workdir / 'mlflow.db'}",
               "--artifacts-destination", str(workdir / "mlartifacts"),
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
    # no GenAI job runner: it adds eight worker processes that tests of runs and models never use
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true", MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    with log_file.open("ab") as log_out:
        proc = subprocess.Popen(command, cwd=workdir, env=env, stdout=log_out, stderr=subprocess.STDOUT, start_new_session=True)
    _RUNNING[url] = proc
    try:
        _wait_healthy(proc, url, log_file)
        log.info("mlflow server up at %s (log: %s)", url, log_file)
        yield url
    finally:
        _RUNNING.pop(url, None)
        _stop(proc)


def stop_mlflow_server(url: str) -> None:
    """Stop the server at ``url`` now, inside its ``running_mlflow_server`` block (fault tests)."""
    _stop(_RUNNING[url])
