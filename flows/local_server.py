"""One local Prefect server for a whole `dvc repro`, instead of a temporary server per stage.

Without PREFECT_API_URL every `gadflow run` starts and stops Prefect's temporary server, about 10 s
per experiment stage on 2 cores (docs/benchmarks.md). `gadflow repro` starts one server on loopback,
points every stage at it through PREFECT_API_URL, and stops it when the repro ends, however it ends.
Its database is the project's own (PREFECT_HOME), so the runs stay browsable afterwards.
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


@contextmanager
def local_prefect_server(log_file: Path, startup_timeout_s: float = 90.0) -> Iterator[str]:
    """Start `prefect server start` on a free loopback port; yield its API URL; stop it on exit."""
    port = free_loopback_port()
    api_url = f"http://127.0.0.1:{port}/api"
    prefect = Path(sys.executable).with_name("prefect")
    command = [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--analytics-off"]
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PREFECT_API_URL": ""})
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not _healthy(api_url):
            if server.poll() is not None:
                raise GadflowError(f"the local Prefect server exited with status {server.returncode} at start-up; see {log_file}")
            if time.monotonic() > deadline:
                raise GadflowError(f"the local Prefect server did not answer {api_url}/health within {startup_timeout_s:.0f}s; see {log_file}")
            time.sleep(0.5)
        log.info("local Prefect server at %s (log: %s)", api_url, log_file)
        yield api_url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
