"""Local processes the CLI and the tests start: a free loopback port, one health poll for any HTTP server (Prefect's,
MLflow's), stopping a process, and the warm stage runner of `gadflow repro` (flows/stage_runner.py)."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from models.errors import GadflowError

log = logging.getLogger(__name__)

RUNNER_LOG = "stage-runner.log"  # in PREFECT_HOME: the warm stage runner's output


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def healthy(url: str) -> bool:
    """Whether ``url`` answers 200 (a server's health endpoint: Prefect's <api>/health, MLflow's /health)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_until_healthy(url: str, timeout_s: float, server: subprocess.Popen | None = None, log_file: Path | None = None,
                       name: str = "the server") -> None:
    """Poll ``url`` until it answers 200; a clear error if ``server`` exits first or the time runs out."""
    where = f"; see {log_file}" if log_file else ""
    deadline = time.monotonic() + timeout_s
    while not healthy(url):
        if server is not None and server.poll() is not None:
            raise GadflowError(f"{name} exited with status {server.returncode} at start-up{where}")
        if time.monotonic() > deadline:
            raise GadflowError(f"{name} did not answer {url} within {timeout_s:.0f}s{where}")
        time.sleep(0.5)


def stop(process: subprocess.Popen, timeout_s: float = 20) -> None:
    """SIGTERM, then SIGKILL if it has not exited within timeout_s."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def warm_stage_runner(socket_path: Path, log_file: Path, env: dict[str, str]) -> Iterator[Path]:
    """Start flows/stage_runner.py on socket_path with the stages' environment; stop it on exit.

    It runs in its own session, so a Ctrl-C in the terminal reaches it only through the stage's
    client, which forwards the signal to the stage's child.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        runner = subprocess.Popen([sys.executable, "-m", "flows.stage_runner", str(socket_path)], stdout=out,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not socket_path.exists() and runner.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the socket is bound before the imports, within a fraction of a second
        log.info("warm stage runner on %s (log: %s)", socket_path, log_file)
        yield socket_path
    finally:
        stop(runner)
