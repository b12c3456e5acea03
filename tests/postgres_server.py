"""A throwaway PostgreSQL server for tests (Debian's `postgresql`): a new cluster in a work folder, on a free
loopback port, trust authentication, stopped and removed on exit. As root, the cluster runs as user `postgres`."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .mlflow_server import free_port


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
    port = free_port()
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
