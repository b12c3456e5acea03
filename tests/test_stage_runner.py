"""The warm stage runner (flows/stage_runner.py), through the real `gadflow` entry point and a real runner process.

One runner serves the module; each test's `gadflow` client runs in a subprocess, as a DVC stage's would.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from flows.local_server import warm_stage_runner
from flows.stage_runner import SOCKET_ENV, config_environment

from tests.helpers.project import REPO

GADFLOW = Path(sys.executable).with_name("gadflow")
SLOW = "unreachable"  # a dataset whose files are at a file:// URL that is not there: its download retries with backoff for ~30 s


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project folder with params.yaml plus a dataset that cannot be fetched: `gadflow download unreachable` runs until stopped."""
    root = tmp_path_factory.mktemp("runner-project")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["download"][SLOW] = {"format": "kdd99", "files": {role: {"file": f"{role}.gz", "sha256": "0" * 64, "urls": [f"file://{root}/absent/{role}.gz"]}
                                                            for role in ("train", "test")}}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


@pytest.fixture(scope="module")
def stage_env(project: Path) -> dict[str, str]:
    """The stages' environment: no dataset mirror (the download goes to the dataset's own URLs) and no tracking store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "GADFLOW_DATA_MIRROR", SOCKET_ENV))}
    env.update(PREFECT_HOME=str(project / ".prefect"), DO_NOT_TRACK="true", MLFLOW_DISABLE_TELEMETRY="true",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", DVC_NO_ANALYTICS="1")
    return env


@pytest.fixture(scope="module")
def runner(project: Path, stage_env: dict[str, str]):
    """(socket path, runner log) of a runner started as `gadflow repro` starts it."""
    socket_dir = Path(tempfile.mkdtemp(prefix="gf-runner-"))  # short: a Unix socket path has at most 107 bytes
    log_file = project / ".prefect" / "stage-runner.log"
    with warm_stage_runner(socket_dir / "runner.sock", log_file, stage_env) as socket_path:
        yield socket_path, log_file
    shutil.rmtree(socket_dir, ignore_errors=True)
    assert not (socket_dir / "runner.sock").exists()  # the runner removes its socket when it stops


def gadflow(args: list[str], cwd: Path, env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(GADFLOW), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, **kwargs)


def served(log_file: Path, command: str) -> int:
    """How many times the runner's log says it forked a child for `gadflow <command>`."""
    return log_file.read_text().count(f"runs `gadflow {command}`")


def test_a_delegated_command_prints_and_exits_as_in_its_own_process(project, stage_env, runner):
    socket_path, log_file = runner
    cold = gadflow(["check-params"], project, stage_env)
    warm = gadflow(["check-params"], project, {**stage_env, SOCKET_ENV: str(socket_path)})
    assert warm.returncode == cold.returncode == 0
    assert warm.stdout == cold.stdout and "experiments" in warm.stdout
    assert "running in this process" not in warm.stderr
    assert served(log_file, "check-params") == 1


def test_a_user_error_keeps_its_message_and_exit_status(project, stage_env, runner):
    socket_path, log_file = runner
    result = gadflow(["run", "no-such-experiment"], project, {**stage_env, SOCKET_ENV: str(socket_path)})
    assert result.returncode == 2
    assert "gadflow: error: unknown experiment 'no-such-experiment'" in result.stderr
    assert served(log_file, "run no-such-experiment") == 1


def test_a_different_stack_configuration_is_refused_and_runs_in_its_own_process(project, stage_env, runner):
    socket_path, log_file = runner
    env = {**stage_env, SOCKET_ENV: str(socket_path), "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'other.db'}"}
    result = gadflow(["check-params"], project, env)
    assert result.returncode == 0 and "experiments" in result.stdout
    assert "refused this command (the environment differs from the runner's in MLFLOW_TRACKING_URI)" in result.stderr
    assert served(log_file, "check-params") <= 1  # only the first test's


def test_the_environment_compared_leaves_out_what_dvc_sets_per_stage():
    env = {"PREFECT_HOME": "/p", "DVC_STAGE": "train.x", "DVC_ROOT": "/r", SOCKET_ENV: "/s", "TERM": "xterm", "OMP_NUM_THREADS": "1"}
    assert config_environment(env) == {"PREFECT_HOME": "/p", "OMP_NUM_THREADS": "1"}


def test_without_a_runner_the_command_runs_in_its_own_process(project, stage_env, tmp_path):
    result = gadflow(["check-params"], project, {**stage_env, SOCKET_ENV: str(tmp_path / "absent.sock")})
    assert result.returncode == 0 and "experiments" in result.stdout
    assert "is not available" in result.stderr and "running in this process" in result.stderr


def child_pid(log_file: Path, command: str, timeout_s: float = 30) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.findall(rf"pid (\d+) runs `gadflow {re.escape(command)}`", log_file.read_text())
        if found:
            return int(found[-1])
        time.sleep(0.1)
    raise AssertionError(f"the runner did not start `gadflow {command}`")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pid: int, timeout_s: float = 20) -> bool:
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not alive(pid)


def test_ctrl_c_reaches_the_child_which_stops_as_a_stage_interrupted_in_its_own_process(project, stage_env, runner):
    socket_path, log_file = runner
    client = subprocess.Popen([str(GADFLOW), "download", SLOW], cwd=project, env={**stage_env, SOCKET_ENV: str(socket_path)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid = child_pid(log_file, f"download {SLOW}")
    time.sleep(1.0)  # the child is waiting between its download attempts
    assert client.poll() is None and alive(pid)
    client.send_signal(signal.SIGINT)
    _, stderr = client.communicate(timeout=30)
    assert client.returncode == 130
    assert "interrupted; rerun the same command to resume" in stderr
    assert wait_gone(pid)


def test_a_client_that_is_killed_takes_its_child_with_it(project, stage_env, runner):
    socket_path, log_file = runner
    before = served(log_file, f"download {SLOW}")
    client = subprocess.Popen([str(GADFLOW), "download", SLOW], cwd=project, env={**stage_env, SOCKET_ENV: str(socket_path)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while served(log_file, f"download {SLOW}") == before and time.monotonic() < deadline:
        time.sleep(0.1)
    pid = child_pid(log_file, f"download {SLOW}")
    client.kill()  # SIGKILL: nothing is forwarded, the runner sees the connection close
    client.wait()
    assert wait_gone(pid)
    assert f"the client of pid {pid} went away" in log_file.read_text()
