"""One local Prefect server for a whole `dvc repro`, instead of a temporary server per stage.

Without PREFECT_API_URL every `gadflow run` starts and stops Prefect's temporary server, about 10 s
per experiment stage on 2 cores (docs/benchmarks.md). `gadflow repro` starts one server on loopback,
points every stage at it through PREFECT_API_URL, and stops it when the repro ends, however it ends.
Its database is the project's own (PREFECT_HOME), so the runs stay browsable afterwards.
`warm_stage_runner` starts the runner of flows/stage_runner.py the same way, for the same repro.
"""

from __future__ import annotations

import logging
import os
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

SERVER_LOG = "local-server.log"  # in PREFECT_HOME: the local Prefect server's output
RUNNER_LOG = "stage-runner.log"  # in PREFECT_HOME: the warm stage runner's


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def stop(process: subprocess.Popen, timeout_s: float = 20) -> None:
    """SIGTERM, then SIGKILL if it has not exited within timeout_s."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until_healthy(api_url: str, timeout_s: float, server: subprocess.Popen | None = None, log_file: Path | None = None) -> None:
    """Poll {api_url}/health until it answers; a clear error if the server exits or the time runs out."""
    where = f"; see {log_file}" if log_file else ""
    deadline = time.monotonic() + timeout_s
    while not _healthy(api_url):
        if server is not None and server.poll() is not None:
            raise GadflowError(f"the local Prefect server exited with status {server.returncode} at start-up{where}")
        if time.monotonic() > deadline:
            raise GadflowError(f"the Prefect server did not answer {api_url}/health within {timeout_s:.0f}s{where}")
        time.sleep(0.5)


@contextmanager
def local_prefect_server(log_file: Path, startup_timeout_s: float = 90.0, wait: bool = True) -> Iterator[str]:
    """Start `prefect server start` on a free loopback port; yield its API URL; stop it on exit.

    wait=False yields at once, while the server is still starting (about 10-20 s on 2 cores): the data
    stages need no Prefect, and `gadflow run` waits for the server (GADFLOW_PREFECT_WAIT_S) itself.
    """
    port = free_loopback_port()
    api_url = f"http://127.0.0.1:{port}/api"
    prefect = Path(sys.executable).with_name("prefect")
    command = [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--analytics-off"]
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PREFECT_API_URL": ""})
    try:
        if wait:
            wait_until_healthy(api_url, startup_timeout_s, server, log_file)
            log.info("local Prefect server at %s (log: %s)", api_url, log_file)
        else:
            log.info("local Prefect server starting at %s (log: %s)", api_url, log_file)
        yield api_url
    finally:
        stop(server)


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
