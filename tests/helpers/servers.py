"""Real servers for tests: `mlflow server` (sqlite or the given backend, proxied artifacts in a work folder) and a
throwaway PostgreSQL cluster, each on a free loopback port, run as its own process group and stopped with it."""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from flows.local_server import free_loopback_port, wait_until_healthy

from .project import BIN

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 120.0
STOP_GRACE_S = 10.0
_RUNNING: dict[str, subprocess.Popen] = {}  # URL -> server process, for stop_mlflow_server


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
    port = free_loopback_port()
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
        wait_until_healthy(f"{url}/health", STARTUP_TIMEOUT_S, proc, log_file, name="the mlflow server")
        log.info("mlflow server up at %s (log: %s)", url, log_file)
        yield url
    finally:
        _RUNNING.pop(url, None)
        _stop(proc)


def stop_mlflow_server(url: str) -> None:
    """Stop the server at ``url`` now, inside its ``running_mlflow_server`` block (fault tests)."""
    _stop(_RUNNING[url])


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL bin folder (the one holding initdb), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    return Path(found[-1]).parent if found else None


def _as_owner(command: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as `postgres` then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def running_postgres(database: str = "mlflow") -> Iterator[str]:
    """Yield a SQLAlchemy URI postgresql://postgres@127.0.0.1:<port>/<database> of a fresh server.
    Its cluster sits in a new folder under the system temp dir (pytest's tmp folders are private to root)."""
    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (Debian package postgresql; .ci/run installs it)")
    workdir = Path(tempfile.mkdtemp(prefix="gadflow-pg-"))
    data = workdir / "pgdata"
    data.mkdir()
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for folder in (workdir, data):
            os.chown(folder, owner.pw_uid, owner.pw_gid)
    port = free_loopback_port()
    log_file = workdir / "postgres.log"
    subprocess.run(_as_owner([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
                   check=True, capture_output=True, timeout=120)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off"
    subprocess.run(_as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log_file), "-o", options, "-w", "-t", "60", "start"]),
                   check=True, capture_output=True, timeout=90)
    try:
        subprocess.run(_as_owner([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", database]),
                       check=True, capture_output=True, timeout=60)
        yield f"postgresql://postgres@127.0.0.1:{port}/{database}"
    finally:
        subprocess.run(_as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]), capture_output=True, timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)
